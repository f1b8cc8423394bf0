//! The rules that say who closed a connection first, as small pure functions
//! of what the connection tracker saw. The tracker's state machine calls them;
//! they are tested here on their own.

use crate::model::{ResetDirection, TcpState, Verdict};

/// What a transition adds to the evidence of who closed first, given what
/// was known before (`known`). Being in a closing state tells, even when the
/// transition into it was not seen (a socket first seen mid-life, or a lost
/// record); crossing FINs turn "local" into "simultaneous".
pub fn after_transition(known: Option<Verdict>, old: TcpState, new: TcpState) -> Option<Verdict> {
    use TcpState::*;
    let implied = match old {
        FinWait1 | FinWait2 => Some(Verdict::Local),
        CloseWait | LastAck => Some(Verdict::Peer),
        Closing => Some(Verdict::Simultaneous),
        _ => None,
    };
    let known = known.or(implied);
    match (old, new) {
        (Established | SynRecv, FinWait1) => known.or(Some(Verdict::Local)),
        (Established | SynRecv, CloseWait) => known.or(Some(Verdict::Peer)),
        (FinWait1, Closing) if matches!(known, None | Some(Verdict::Local)) => {
            Some(Verdict::Simultaneous)
        }
        _ => known,
    }
}

/// What a RST says, when it is the first evidence.
pub const fn of_reset(direction: ResetDirection) -> Verdict {
    match direction {
        ResetDirection::Sent => Verdict::AbortSent,
        ResetDirection::Received => Verdict::AbortReceived,
    }
}

/// How a socket reached CLOSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ending {
    /// The state it left.
    pub old: TcpState,
    /// It had a local port (connect() assigns one before sending its SYN).
    pub has_port: bool,
    /// In its owner's system call, not in softirq.
    pub process_ctx: bool,
}

/// The verdict when the socket reaches CLOSE: a connect that never completed
/// found no free local port (CLOSE in the connect() call itself, before a
/// port was assigned: `inet_hash_connect` failed with EADDRNOTAVAIL), was
/// refused (answered by a RST) or failed otherwise; otherwise the evidence,
/// if any. `None`: wait for a RST record (an abortive close sets CLOSE
/// before it sends its RST).
pub const fn at_close(close: Ending, evidence: Option<Verdict>) -> Option<Verdict> {
    match (close.old, evidence) {
        (TcpState::SynSent, _) if !close.has_port && close.process_ctx => Some(Verdict::NoPort),
        (TcpState::SynSent, Some(Verdict::AbortReceived)) => Some(Verdict::Refused),
        (TcpState::SynSent, _) => Some(Verdict::ConnectFailed),
        (_, evidence) => evidence,
    }
}

/// The verdict of a connection that closed with neither FIN nor RST seen by
/// the time it is settled: a close in the owner's system call is an abort
/// (its RST is on the way, or was lost); in softirq the kernel gave up on
/// its own (retransmission or keepalive timeout).
pub const fn unresolved(rst_sent: bool, closed_in_process_ctx: bool) -> Verdict {
    if rst_sent || closed_in_process_ctx {
        Verdict::AbortSent
    } else {
        Verdict::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    #[test]
    fn first_fin_decides() {
        assert_eq!(
            after_transition(None, Established, FinWait1),
            Some(Verdict::Local)
        );
        assert_eq!(
            after_transition(None, Established, CloseWait),
            Some(Verdict::Peer)
        );
        assert_eq!(
            after_transition(None, SynRecv, FinWait1),
            Some(Verdict::Local)
        );
        assert_eq!(after_transition(None, SynSent, Established), None);
        // Evidence already there is kept.
        assert_eq!(
            after_transition(Some(Verdict::AbortReceived), Established, CloseWait),
            Some(Verdict::AbortReceived)
        );
    }

    #[test]
    fn closing_states_imply_the_verdict() {
        assert_eq!(
            after_transition(None, FinWait2, Close),
            Some(Verdict::Local)
        );
        assert_eq!(after_transition(None, LastAck, Close), Some(Verdict::Peer));
        assert_eq!(
            after_transition(None, Closing, Close),
            Some(Verdict::Simultaneous)
        );
    }

    #[test]
    fn crossing_fins_are_simultaneous() {
        assert_eq!(
            after_transition(Some(Verdict::Local), FinWait1, Closing),
            Some(Verdict::Simultaneous)
        );
        assert_eq!(
            after_transition(Some(Verdict::AbortSent), FinWait1, Closing),
            Some(Verdict::AbortSent)
        );
    }

    #[test]
    fn connects_that_never_completed() {
        assert_eq!(
            at_close(from(SynSent), Some(Verdict::AbortReceived)),
            Some(Verdict::Refused)
        );
        assert_eq!(at_close(from(SynSent), None), Some(Verdict::ConnectFailed));
        assert_eq!(at_close(from(Established), None), None);
        assert_eq!(
            at_close(from(LastAck), Some(Verdict::Peer)),
            Some(Verdict::Peer)
        );
    }

    fn from(old: TcpState) -> Ending {
        Ending {
            old,
            has_port: true,
            process_ctx: false,
        }
    }

    #[test]
    fn a_connect_without_a_local_port() {
        let no_port = Ending {
            old: SynSent,
            has_port: false,
            process_ctx: true,
        };
        assert_eq!(at_close(no_port, None), Some(Verdict::NoPort));
        // In softirq (a timeout, an ICMP error) a port had been assigned: if
        // the address shows none, it is not a port shortage.
        let softirq = Ending {
            process_ctx: false,
            ..no_port
        };
        assert_eq!(at_close(softirq, None), Some(Verdict::ConnectFailed));
        let refused = Ending {
            has_port: true,
            ..no_port
        };
        assert_eq!(
            at_close(refused, Some(Verdict::AbortReceived)),
            Some(Verdict::Refused)
        );
    }

    #[test]
    fn closes_without_evidence() {
        assert_eq!(unresolved(false, true), Verdict::AbortSent);
        assert_eq!(unresolved(true, false), Verdict::AbortSent);
        assert_eq!(unresolved(false, false), Verdict::Timeout);
        assert_eq!(of_reset(ResetDirection::Received), Verdict::AbortReceived);
    }
}
