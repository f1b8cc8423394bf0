//! The kinds of record the kernel side sends, counted by kind, and what the
//! agent knows of those it lost: when, at the latest, a record of each kind
//! may have gone missing. The trackers ask that before they conclude
//! anything from a record's absence, so a loss makes a conclusion unknown,
//! never wrong.

use tcptrace_common::{
    KIND_BIND_FAILED, KIND_RESET_RECEIVED, KIND_RESET_SENT, KIND_RETRANSMIT, KIND_SYN_RETRANSMIT,
    KIND_SYNACK_RETRANSMIT, KIND_TRANSITION, KIND_TW_ARMED, KIND_TW_CANCEL, KIND_TW_EXPIRED,
    KIND_TW_REQUEST, LOST_KINDS, LostRecords,
};

/// What a record from the kernel side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Transition,
    ResetSent,
    ResetReceived,
    TimewaitArmed,
    TimewaitCancelled,
    TimewaitExpired,
    /// A SYN that reopened a timewait socket.
    TimewaitRequest,
    BindFailed,
    /// A connecting socket's SYN retransmitted.
    SynRetransmit,
    /// A listener's SYN-ACK retransmitted (counted in the kernel: lost
    /// only where its count found no room).
    SynAckRetransmit,
    /// A segment retransmitted (counted in the kernel, likewise).
    Retransmit,
}

impl RecordKind {
    pub const ALL: [Self; 11] = [
        Self::Transition,
        Self::ResetSent,
        Self::ResetReceived,
        Self::TimewaitArmed,
        Self::TimewaitCancelled,
        Self::TimewaitExpired,
        Self::TimewaitRequest,
        Self::BindFailed,
        Self::SynRetransmit,
        Self::SynAckRetransmit,
        Self::Retransmit,
    ];

    /// Its `KIND_*` number on the wire.
    pub const fn wire(self) -> u8 {
        match self {
            Self::Transition => KIND_TRANSITION,
            Self::ResetSent => KIND_RESET_SENT,
            Self::ResetReceived => KIND_RESET_RECEIVED,
            Self::TimewaitArmed => KIND_TW_ARMED,
            Self::TimewaitCancelled => KIND_TW_CANCEL,
            Self::TimewaitExpired => KIND_TW_EXPIRED,
            Self::TimewaitRequest => KIND_TW_REQUEST,
            Self::BindFailed => KIND_BIND_FAILED,
            Self::SynRetransmit => KIND_SYN_RETRANSMIT,
            Self::SynAckRetransmit => KIND_SYNACK_RETRANSMIT,
            Self::Retransmit => KIND_RETRANSMIT,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Transition => "transition",
            Self::ResetSent => "reset_sent",
            Self::ResetReceived => "reset_received",
            Self::TimewaitArmed => "timewait_armed",
            Self::TimewaitCancelled => "timewait_cancelled",
            Self::TimewaitExpired => "timewait_expired",
            Self::TimewaitRequest => "timewait_request",
            Self::BindFailed => "bind_failed",
            Self::SynRetransmit => "syn_retransmit",
            Self::SynAckRetransmit => "synack_retransmit",
            Self::Retransmit => "retransmit",
        }
    }
}

/// A count per record kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerKind([u64; LOST_KINDS]);

impl PerKind {
    /// These counts, the other kinds 0.
    pub fn of(counts: &[(RecordKind, u64)]) -> Self {
        let mut all = Self::default();
        for &(kind, n) in counts {
            all.0[usize::from(kind.wire())] += n;
        }
        all
    }

    pub fn add(&mut self, kind: RecordKind) {
        self.add_n(kind, 1);
    }

    pub fn add_n(&mut self, kind: RecordKind, n: u64) {
        self.0[usize::from(kind.wire())] += n;
    }

    pub fn get(&self, kind: RecordKind) -> u64 {
        self.0[usize::from(kind.wire())]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every kind with its count, in `RecordKind::ALL` order.
    pub fn iter(&self) -> impl Iterator<Item = (RecordKind, u64)> + '_ {
        RecordKind::ALL.into_iter().map(|k| (k, self.get(k)))
    }
}

impl From<LostRecords> for PerKind {
    /// Counts of kinds the agent does not know (none today) are dropped.
    fn from(lost: LostRecords) -> Self {
        let mut counts = Self::default();
        for kind in RecordKind::ALL {
            let i = usize::from(kind.wire());
            counts.0[i] = lost.by_kind[i];
        }
        counts
    }
}

/// The records the kernel side lost so far, and for each kind the latest
/// moment at which one may have been lost: the time of the first read of
/// the counters that showed it (a record lost at `t` is counted before any
/// read after `t`). What happened after the last read is not known yet.
/// The default has read nothing: anything may have been lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    counts: PerKind,
    until_ns: [u64; LOST_KINDS],
    /// The last read.
    read_ns: u64,
}

impl Losses {
    /// Nothing lost, ever (for tests).
    pub const NONE: Self = Self {
        counts: PerKind([0; LOST_KINDS]),
        until_ns: [0; LOST_KINDS],
        read_ns: u64::MAX,
    };

    /// The kernel side's counts, as read just before `now_ns`
    /// (CLOCK_MONOTONIC, the records' time base).
    pub fn update(&mut self, counts: PerKind, now_ns: u64) {
        self.update_read(counts, now_ns, now_ns);
    }

    /// The kernel side's counts, read between `from_ns` and `to_ns`: what
    /// they show was lost before `to_ns`, and they tell nothing of what
    /// came after `from_ns`.
    pub fn update_read(&mut self, counts: PerKind, from_ns: u64, to_ns: u64) {
        for (i, (now, before)) in counts.0.iter().zip(self.counts.0).enumerate() {
            if *now > before {
                self.until_ns[i] = to_ns;
            }
        }
        self.counts = counts;
        self.read_ns = self.read_ns.max(from_ns);
    }

    /// Whether a record of one of `kinds` may have been lost at or after
    /// `since_ns`: one was, or the counters were not read since.
    pub fn any_since(&self, kinds: &[RecordKind], since_ns: u64) -> bool {
        since_ns > self.read_ns
            || kinds.iter().any(|k| {
                let until = self.until_ns[usize::from(k.wire())];
                until != 0 && until >= since_ns
            })
    }

    pub fn counts(&self) -> PerKind {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(kind: RecordKind, n: u64) -> PerKind {
        PerKind::of(&[(kind, n)])
    }

    #[test]
    fn a_loss_is_dated_by_the_read_that_showed_it() {
        let mut l = Losses::default();
        assert!(l.any_since(&RecordKind::ALL, 1), "nothing read yet");
        l.update(PerKind::default(), 500);
        assert!(
            !l.any_since(&RecordKind::ALL, 500),
            "nothing lost until 500"
        );
        assert!(l.any_since(&RecordKind::ALL, 501), "not known after 500");
        l.update(lost(RecordKind::ResetReceived, 2), 1_000);
        assert!(l.any_since(&[RecordKind::ResetReceived], 1_000));
        assert!(l.any_since(&[RecordKind::ResetReceived], 10));
        assert!(
            l.any_since(&[RecordKind::ResetReceived], 1_001),
            "not read since"
        );
        assert!(!l.any_since(&[RecordKind::ResetSent, RecordKind::Transition], 0));
        // The same count read again later: nothing new was lost.
        l.update(lost(RecordKind::ResetReceived, 2), 5_000);
        assert!(!l.any_since(&[RecordKind::ResetReceived], 1_001));
        l.update(lost(RecordKind::ResetReceived, 3), 9_000);
        assert!(l.any_since(&[RecordKind::ResetReceived], 5_000));
        assert_eq!(l.counts().get(RecordKind::ResetReceived), 3);
        assert_eq!(l.counts().total(), 3);
    }

    #[test]
    fn kernel_counts_by_wire_kind() {
        let mut raw = LostRecords::default();
        raw.by_kind[usize::from(KIND_TW_EXPIRED)] = 7;
        raw.by_kind[15] = 9; // no such kind: not counted
        let counts = PerKind::from(raw);
        assert_eq!(counts.get(RecordKind::TimewaitExpired), 7);
        assert_eq!(counts.total(), 7);
        let names: Vec<_> = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| k.name())
            .collect();
        assert_eq!(names, ["timewait_expired"]);
    }
}
