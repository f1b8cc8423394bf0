//! The FINDINGS section that opens every summary (text), and the `findings`
//! array of JSON summaries: `kind`, `severity`, `headline`, `explanation`,
//! the numbers as fields of their own, `remedy`, `myths`.

use std::io;

use serde_json::{Map, Value, json};

use crate::findings::{Finding, Severity};

pub fn write_text<W: io::Write>(out: &mut W, findings: &[Finding]) -> io::Result<()> {
    writeln!(out, "\nFINDINGS")?;
    if findings.iter().all(|f| f.severity == Severity::Info) {
        writeln!(out, "  nothing wrong seen")?;
    }
    for (i, f) in findings.iter().enumerate() {
        writeln!(
            out,
            "  {}. [{}] {}",
            i + 1,
            f.severity.name().to_uppercase(),
            f.headline
        )?;
        if !f.explanation.is_empty() {
            writeln!(out, "     {}", f.explanation)?;
        }
        for (j, r) in f.remedy.iter().enumerate() {
            let lead = if j == 0 { "fix: " } else { "     " };
            writeln!(out, "     {lead}{}. {r}", j + 1)?;
        }
        for m in &f.myths {
            writeln!(out, "     not a fix: {m}")?;
        }
    }
    Ok(())
}

pub fn to_json(findings: &[Finding]) -> Value {
    Value::Array(
        findings
            .iter()
            .map(|f| {
                let mut map = Map::new();
                map.insert("kind".into(), json!(f.kind.name()));
                map.insert("severity".into(), json!(f.severity.name()));
                map.insert("headline".into(), json!(f.headline));
                map.insert("explanation".into(), json!(f.explanation));
                for (name, value) in &f.numbers {
                    map.insert((*name).into(), value.clone());
                }
                map.insert("remedy".into(), json!(f.remedy));
                map.insert("myths".into(), json!(f.myths));
                Value::Object(map)
            })
            .collect(),
    )
}
