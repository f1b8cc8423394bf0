//! Rendering: the live log (text or JSON lines) as a sink of facts, and the
//! summaries of the aggregates. Printers are generic over the writer and do
//! no other I/O, so they are tested against in-memory buffers.

pub mod clock;
pub mod findings;
mod json;
pub mod metrics;
pub mod output;
pub mod ports;
pub mod summary;
mod text;
pub mod top;
pub mod totals;

use std::io;

pub use json::JsonPrinter;
pub use text::{ADDR_WIDTH_V4, ADDR_WIDTH_V6, TextPrinter};

use crate::{
    aggregate::ports::{DestReport, Level},
    model::{BindFailure, Closed, Fact, Sink, Transition},
};

/// The selected output format.
pub enum Printer {
    Text(TextPrinter),
    Json(JsonPrinter),
}

impl Printer {
    pub fn header<W: io::Write>(&mut self, out: &mut W) -> io::Result<()> {
        match self {
            Self::Text(p) => p.header(out),
            Self::Json(_) => Ok(()),
        }
    }

    pub fn transition<W: io::Write>(&mut self, out: &mut W, t: &Transition) -> io::Result<()> {
        match self {
            Self::Text(p) => p.transition(out, t),
            Self::Json(p) => p.transition(out, t),
        }
    }

    pub fn closed<W: io::Write>(&mut self, out: &mut W, c: &Closed) -> io::Result<()> {
        match self {
            Self::Text(p) => p.closed(out, c),
            Self::Json(p) => p.closed(out, c),
        }
    }

    pub fn bind_failed<W: io::Write>(&mut self, out: &mut W, b: &BindFailure) -> io::Result<()> {
        match self {
            Self::Text(p) => p.bind_failed(out, b),
            Self::Json(p) => p.bind_failed(out, b),
        }
    }

    pub fn summary<W: io::Write>(
        &mut self,
        out: &mut W,
        report: &crate::report::Report,
    ) -> io::Result<()> {
        match self {
            Self::Text(_) => summary::write_text(out, report),
            Self::Json(p) => p.summary(out, report),
        }
    }

    /// A destination's ports ran low: a record of its own in JSON (the text
    /// log says it on stderr only).
    pub fn ports_alert<W: io::Write>(
        &mut self,
        out: &mut W,
        level: Level,
        r: &DestReport,
        netns_name: Option<&str>,
        now_mono_ns: u64,
    ) -> io::Result<()> {
        match self {
            Self::Text(_) => Ok(()),
            Self::Json(p) => p.ports_alert(out, level, r, netns_name, now_mono_ns),
        }
    }
}

/// The live log: every transition and every complete connection record,
/// as they come.
pub struct LiveLog<'a, W> {
    pub printer: &'a mut Printer,
    pub out: &'a mut W,
}

impl<W: io::Write> Sink for LiveLog<'_, W> {
    fn fact(&mut self, fact: Fact<'_>) -> io::Result<()> {
        match fact {
            Fact::Transition(t) => self.printer.transition(self.out, t),
            // Printed once complete.
            Fact::Closed(_) => Ok(()),
            Fact::Record(c) => self.printer.closed(self.out, c),
            Fact::BindFailed(b) => self.printer.bind_failed(self.out, b),
            // Counts per destination, not events of a connection.
            Fact::Retransmits(_) => Ok(()),
        }
    }
}
