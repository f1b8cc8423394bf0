//! The Prometheus text exposition format, version 0.0.4: `# HELP` and
//! `# TYPE` once per family, then its samples, label values escaped.
//!
//! Written here rather than with the `prometheus-client` crate: that crate
//! writes OpenMetrics only, and `promtool check metrics` (Debian's 2.42, the
//! checker this project tests against) reads the 0.0.4 format and rejects
//! OpenMetrics output (measured: `unknown metric type "unknown"`, and every
//! counter reported with "no help text" because its samples carry a `_total`
//! its family name lacks). Every Prometheus server scrapes 0.0.4.

use std::fmt::Write as _;

/// The content type of what [`Exposition`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type, as `# TYPE` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
    /// As node_exporter declares the kernel's netstat/snmp counters.
    Untyped,
}

impl Type {
    const fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Untyped => "untyped",
        }
    }
}

/// A sample's value: exact integers, or floats (`+Inf`, `NaN` spelled as
/// Prometheus reads them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

/// The exposition being written. A family's header is written with its
/// first sample, so that families with none leave no trace.
#[derive(Default)]
pub struct Exposition {
    out: String,
    family: Option<(String, Type, &'static str)>,
    header_written: bool,
    samples: usize,
}

/// Labels as (name, value) pairs, in the order written.
pub type Labels<'a> = [(&'a str, &'a str)];

impl Exposition {
    /// Starts a family: its name (with `_total` for a counter), type and
    /// help text.
    pub fn family(&mut self, name: &str, kind: Type, help: &'static str) {
        debug_assert!(
            kind != Type::Counter || name.ends_with("_total"),
            "counter {name} without _total"
        );
        self.family = Some((name.to_owned(), kind, help));
        self.header_written = false;
    }

    fn header(&mut self) -> &str {
        let (name, kind, help) = self.family.as_ref().expect("a family before its samples");
        if !self.header_written {
            let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
            self.header_written = true;
        }
        name
    }

    /// One sample of the current family.
    pub fn sample(&mut self, labels: &Labels<'_>, value: impl Into<Value>) {
        let name = self.header().to_owned();
        self.line(&name, labels, None, value.into());
    }

    /// One histogram of the current family (a histogram family): cumulative
    /// counts at `bounds` (ascending, in the family's unit), then `+Inf`,
    /// `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        labels: &Labels<'_>,
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum: f64,
    ) {
        let name = self.header().to_owned();
        let bucket = format!("{name}_bucket");
        let mut le = String::new();
        for (bound, n) in bounds.iter().zip(cumulative) {
            le.clear();
            write_float(&mut le, *bound);
            self.line(&bucket, labels, Some(&le), Value::Int(*n));
        }
        self.line(&bucket, labels, Some("+Inf"), Value::Int(count));
        self.line(&format!("{name}_sum"), labels, None, Value::Float(sum));
        self.line(&format!("{name}_count"), labels, None, Value::Int(count));
    }

    fn line(&mut self, name: &str, labels: &Labels<'_>, le: Option<&str>, value: Value) {
        self.samples += 1;
        self.out.push_str(name);
        let mut all = labels
            .iter()
            .copied()
            .chain(le.map(|le| ("le", le)))
            .peekable();
        if all.peek().is_some() {
            self.out.push('{');
            for (i, (label, value)) in all.enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_into(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Value::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Value::Float(v) => write_float(&mut self.out, v),
        }
        self.out.push('\n');
    }

    /// Samples written so far (histogram lines included): the series count.
    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A label value as the format quotes it: backslash, double quote and line
/// feed escaped.
fn escape_label_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text: backslash and line feed escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut e = Exposition::default();
        e.family("empty_total", Type::Counter, "never sampled");
        e.family("a_total", Type::Counter, "with \\ and\nnewline");
        e.sample(&[("x", "q\"uo\\te\nd")], 3u64);
        e.sample(&[], 0.25);
        e.family("h_seconds", Type::Histogram, "a histogram");
        e.histogram(&[("s", "tw")], &[0.5, 60.0], &[1, 3], 4, 121.5);
        e.family("g", Type::Gauge, "inf");
        e.sample(&[], f64::INFINITY);
        e.sample(&[], f64::NAN);
        assert_eq!(e.samples(), 2 + 5 + 2);
        assert_eq!(
            e.finish(),
            "# HELP a_total with \\\\ and\\nnewline\n\
             # TYPE a_total counter\n\
             a_total{x=\"q\\\"uo\\\\te\\nd\"} 3\n\
             a_total 0.25\n\
             # HELP h_seconds a histogram\n\
             # TYPE h_seconds histogram\n\
             h_seconds_bucket{s=\"tw\",le=\"0.5\"} 1\n\
             h_seconds_bucket{s=\"tw\",le=\"60\"} 3\n\
             h_seconds_bucket{s=\"tw\",le=\"+Inf\"} 4\n\
             h_seconds_sum{s=\"tw\"} 121.5\n\
             h_seconds_count{s=\"tw\"} 4\n\
             # HELP g inf\n\
             # TYPE g gauge\n\
             g +Inf\n\
             g NaN\n"
        );
    }
}
