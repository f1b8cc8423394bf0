//! Findings: what is wrong, in plain words, with the numbers behind it and
//! the remedy — the classify stage over the aggregates. Each rule is a small
//! pure function of [`Evidence`] (`rules.rs`); a healthy host gives no
//! warning-level finding (false alarms are bugs). Rendering is `render`'s.

mod rules;

use std::net::SocketAddr;

use serde_json::Value;

use crate::{
    aggregate::{
        listeners::Queue,
        netns::NetnsReport,
        open::Pile,
        ports::DestReport,
        stats::{BindRow, ProcessKey, ServiceCounts, ServiceKey},
    },
    model::{ResetNames, ServiceSockets},
};

pub use rules::THRESHOLDS;

/// How bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing, nothing to fix (or a fix that would be wrong).
    Info,
    /// Getting worse or hurting some connections.
    Warning,
    /// Connections fail now.
    Critical,
}

impl Severity {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// What kind of problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    PortExhaustion,
    ServerTimewait,
    TimewaitOverflow,
    CloseWaitLeak,
    AbortSent,
    AbortReceived,
    ListenOverflow,
    SynQueue,
    UpstreamRefuses,
    UpstreamUnreachable,
    /// Connects whose SYN was retransmitted: they stall a second or more.
    SynRetransmits,
    /// A listener's SYN-ACKs retransmitted: clients do not complete the
    /// handshake.
    SynAckRetransmits,
    /// Segments toward a destination retransmitted far more than toward
    /// the others: packets lost on the way.
    Retransmits,
    BindInUse,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Self::PortExhaustion,
        Self::ServerTimewait,
        Self::TimewaitOverflow,
        Self::CloseWaitLeak,
        Self::AbortSent,
        Self::AbortReceived,
        Self::ListenOverflow,
        Self::SynQueue,
        Self::UpstreamRefuses,
        Self::UpstreamUnreachable,
        Self::SynRetransmits,
        Self::SynAckRetransmits,
        Self::Retransmits,
        Self::BindInUse,
    ];

    /// Stable name (JSON `kind`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::PortExhaustion => "port-exhaustion",
            Self::ServerTimewait => "server-timewait",
            Self::TimewaitOverflow => "timewait-overflow",
            Self::CloseWaitLeak => "close-wait-leak",
            Self::AbortSent => "abort-sent",
            Self::AbortReceived => "abort-received",
            Self::ListenOverflow => "listen-overflow",
            Self::SynQueue => "syn-queue",
            Self::UpstreamRefuses => "upstream-refuses",
            Self::UpstreamUnreachable => "upstream-unreachable",
            Self::SynRetransmits => "syn-retransmits",
            Self::SynAckRetransmits => "synack-retransmits",
            Self::Retransmits => "retransmits",
            Self::BindInUse => "bind-in-use",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    /// One line: what, who, how bad.
    pub headline: String,
    /// Why, in a sentence or two, with the numbers.
    pub explanation: String,
    /// The numbers behind it, as (JSON field, value).
    pub numbers: Vec<(&'static str, Value)>,
    /// What to change, in the order an expert would try it.
    pub remedy: Vec<String>,
    /// Popular advice that is wrong here, said where it matters.
    pub myths: Vec<String>,
    /// Seconds until it gets worse (ports run out), for the ranking.
    pub bites_in_s: Option<f64>,
}

/// What the rules look at: the aggregates, as one summary sees them.
pub struct Evidence<'a> {
    /// Seconds traced.
    pub elapsed_s: f64,
    pub ports: &'a [DestReport],
    pub namespaces: &'a [NetnsReport],
    pub binds: &'a [BindRow],
    /// Who closes first, by service.
    pub by_service: &'a [(ServiceKey, ServiceCounts)],
    /// Connections in CLOSE_WAIT, by namespace and owner.
    pub close_waits: &'a [Pile],
    /// Timewait sockets of connections this host accepted (a server that
    /// closes first), by service.
    pub server_timewait: &'a [ServiceSockets],
    /// Listening sockets by (netns, local address).
    pub listeners: &'a [Listener],
    /// The kernel's names of the reasons for resets.
    pub reset_names: &'a ResetNames,
    /// SYN-ACKs retransmitted, by listener ((namespace, port), count).
    pub synack_retransmits: &'a [((u32, u16), u64)],
}

/// A listening socket, sampled once a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub netns: u32,
    pub local: SocketAddr,
    pub owner: ProcessKey,
    /// Its accept queue: the most seen waiting at one sample, and its limit
    /// (the backlog given to listen(), capped by `net.core.somaxconn`).
    pub queue: Queue,
}

/// Every finding, worst first, soonest first within a severity.
pub fn diagnose(evidence: &Evidence<'_>) -> Vec<Finding> {
    let mut all = rules::all(evidence);
    all.sort_by(|a, b| {
        b.severity.cmp(&a.severity).then_with(|| {
            let soon = |f: &Finding| f.bites_in_s.unwrap_or(f64::INFINITY);
            soon(a)
                .partial_cmp(&soon(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    all
}

/// Whether anything at warning level or worse was found.
pub fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

#[cfg(test)]
mod tests;
