//! The rules that say who closed a connection first, as small pure functions
//! of what the connection tracker saw. The tracker's state machine calls them;
//! they are tested here on their own.

use crate::model::{ResetDirection, TcpState, Verdict};

/// What a transition adds to the evidence of who closed first, given what
/// was known before (`known`). Being in a closing state tells, even when the
/// transition into it was not seen (a socket first seen mid-life, or a lost
/// record); crossing FINs turn "local" into "simultaneous". After a `gap`
/// (records of this socket were lost just before), the state it was in wins
/// over evidence gathered meanwhile: a RST seen while the socket seemed
/// established came after the FIN whose record was lost, since a reset
/// socket never reaches a closing state.
pub(super) fn after_transition(
    known: Option<Verdict>,
    old: TcpState,
    new: TcpState,
    gap: bool,
) -> Option<Verdict> {
    use TcpState::*;
    let implied = match old {
        FinWait1 | FinWait2 => Some(Verdict::Local),
        CloseWait | LastAck => Some(Verdict::Peer),
        Closing => Some(Verdict::Simultaneous),
        _ => None,
    };
    let known = match (known, implied) {
        // CLOSING is only reached when both FINs crossed.
        (Some(Verdict::Local), Some(Verdict::Simultaneous)) => implied,
        (Some(_), Some(_)) if gap => implied,
        _ => known.or(implied),
    };
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
pub(super) const fn of_reset(direction: ResetDirection) -> Verdict {
    match direction {
        ResetDirection::Sent => Verdict::AbortSent,
        ResetDirection::Received => Verdict::AbortReceived,
    }
}

/// A connect that ended in SYN_SENT, with the evidence seen: answered by
/// a RST (refused), or failed otherwise.
pub(super) const fn of_failed_connect(evidence: Option<Verdict>) -> Verdict {
    match evidence {
        Some(Verdict::AbortReceived) => Verdict::Refused,
        _ => Verdict::ConnectFailed,
    }
}

/// How a socket reached CLOSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ending {
    /// The state it left.
    pub old: TcpState,
    /// It had a local port (connect() assigns one before sending its SYN).
    pub has_port: bool,
    /// In its owner's system call, not in softirq.
    pub process_ctx: bool,
}

/// The verdict when the socket reaches CLOSE: a connect that never completed
/// found no free local port (CLOSE in the connect() call itself, before a
/// port was assigned: `inet_hash_connect` failed with EADDRNOTAVAIL) or was
/// refused (answered by a RST); otherwise the evidence, if any. `None`: wait
/// for a RST record (an abortive close sets CLOSE before it sends its RST),
/// or for the loss counts that say whether a RST record could be missing
/// (a connect that failed without one).
pub(super) const fn at_close(close: Ending, evidence: Option<Verdict>) -> Option<Verdict> {
    match (close.old, evidence) {
        (TcpState::SynSent, _) if !close.has_port && close.process_ctx => Some(Verdict::NoPort),
        (TcpState::SynSent, Some(Verdict::AbortReceived)) => Some(Verdict::Refused),
        (TcpState::SynSent, _) => None,
        (_, evidence) => evidence,
    }
}

/// What was not seen of a connection that closed with neither FIN nor RST
/// by the time it is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Unseen {
    /// It sent a RST (seen before its CLOSE).
    pub rst_sent: bool,
    /// It closed in its owner's system call.
    pub process_ctx: bool,
    /// RST records may have been lost since its record before the CLOSE.
    pub resets_maybe_lost: bool,
}

/// The verdict of a connection that closed (leaving `old`) with neither
/// FIN nor RST seen by the time it is settled: a close in the owner's
/// system call is an abort (its RST is on the way, or was lost); in softirq
/// the kernel gave up on its own (retransmission or keepalive timeout), and
/// a connect failed without a RST — unless a RST record may have been lost,
/// which would have said otherwise: then it is unknown.
pub(super) const fn unresolved(old: TcpState, unseen: Unseen) -> Verdict {
    match old {
        TcpState::SynSent if unseen.resets_maybe_lost => Verdict::Unknown,
        TcpState::SynSent => Verdict::ConnectFailed,
        _ if unseen.rst_sent || unseen.process_ctx => Verdict::AbortSent,
        _ if unseen.resets_maybe_lost => Verdict::Unknown,
        _ => Verdict::Timeout,
    }
}

/// A child socket that closed from SYN_RECV in the softirq that made it,
/// without a reset, within this long of being made, was dropped by the
/// kernel at birth rather than closed as a connection.
pub(super) const DROPPED_AT_BIRTH_NS: u64 = 1_000_000;

/// Whether a passive socket's CLOSE ends a child the kernel dropped as it
/// made it, not a connection: when two CPUs complete the same handshake at
/// once (the final ACK and the first data segment), each makes a child,
/// and the one that loses the race to take the request's place in the
/// established table is closed at once (`inet_ehash_nolisten`: SYN_RECV ->
/// CLOSE in softirq, no reset). The other child is the connection. A child
/// that times out in SYN_RECV (TCP Fast Open) takes a SYN-ACK retransmit
/// timeout, a second or more; one closed by its process is in process
/// context; one reset has evidence.
pub(super) const fn dropped_at_birth(
    passive: bool,
    old: TcpState,
    in_old_ns: Option<u64>,
    evidence: Option<Verdict>,
    process_ctx: bool,
) -> bool {
    passive
        && matches!(old, TcpState::SynRecv)
        && matches!(in_old_ns, Some(ns) if ns < DROPPED_AT_BIRTH_NS)
        && evidence.is_none()
        && !process_ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    #[test]
    fn a_child_closed_as_it_was_made_was_dropped() {
        let quick = Some(5_000);
        assert!(dropped_at_birth(true, SynRecv, quick, None, false));
        // Not: a connection's own end.
        assert!(!dropped_at_birth(false, SynRecv, quick, None, false));
        assert!(!dropped_at_birth(true, Established, quick, None, false));
        assert!(!dropped_at_birth(
            true,
            SynRecv,
            Some(2_000_000_000),
            None,
            false
        ));
        assert!(!dropped_at_birth(true, SynRecv, None, None, false));
        assert!(!dropped_at_birth(
            true,
            SynRecv,
            quick,
            Some(Verdict::AbortReceived),
            false
        ));
        assert!(!dropped_at_birth(true, SynRecv, quick, None, true));
    }

    #[test]
    fn first_fin_decides() {
        assert_eq!(
            after_transition(None, Established, FinWait1, false),
            Some(Verdict::Local)
        );
        assert_eq!(
            after_transition(None, Established, CloseWait, false),
            Some(Verdict::Peer)
        );
        assert_eq!(
            after_transition(None, SynRecv, FinWait1, false),
            Some(Verdict::Local)
        );
        assert_eq!(after_transition(None, SynSent, Established, false), None);
        // Evidence already there is kept.
        assert_eq!(
            after_transition(Some(Verdict::AbortReceived), Established, CloseWait, false),
            Some(Verdict::AbortReceived)
        );
    }

    #[test]
    fn closing_states_imply_the_verdict() {
        assert_eq!(
            after_transition(None, FinWait2, Close, false),
            Some(Verdict::Local)
        );
        assert_eq!(
            after_transition(None, LastAck, Close, false),
            Some(Verdict::Peer)
        );
        assert_eq!(
            after_transition(None, Closing, Close, false),
            Some(Verdict::Simultaneous)
        );
    }

    #[test]
    fn crossing_fins_are_simultaneous() {
        assert_eq!(
            after_transition(Some(Verdict::Local), FinWait1, Closing, false),
            Some(Verdict::Simultaneous)
        );
        assert_eq!(
            after_transition(Some(Verdict::AbortSent), FinWait1, Closing, false),
            Some(Verdict::AbortSent)
        );
    }

    #[test]
    fn connects_that_never_completed() {
        assert_eq!(
            at_close(from(SynSent), Some(Verdict::AbortReceived)),
            Some(Verdict::Refused)
        );
        // Failed without a RST: that waits for the loss counts.
        assert_eq!(at_close(from(SynSent), None), None);
        assert_eq!(of_failed_connect(None), Verdict::ConnectFailed);
        assert_eq!(
            of_failed_connect(Some(Verdict::AbortReceived)),
            Verdict::Refused
        );
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
        assert_eq!(at_close(softirq, None), None, "a failed connect");
        let refused = Ending {
            has_port: true,
            ..no_port
        };
        assert_eq!(
            at_close(refused, Some(Verdict::AbortReceived)),
            Some(Verdict::Refused)
        );
    }

    fn unseen(rst_sent: bool, process_ctx: bool, resets_maybe_lost: bool) -> Unseen {
        Unseen {
            rst_sent,
            process_ctx,
            resets_maybe_lost,
        }
    }

    #[test]
    fn closes_without_evidence() {
        let u = unseen;
        assert_eq!(
            unresolved(Established, u(false, true, false)),
            Verdict::AbortSent
        );
        assert_eq!(
            unresolved(Established, u(true, false, false)),
            Verdict::AbortSent
        );
        assert_eq!(
            unresolved(Established, u(false, false, false)),
            Verdict::Timeout
        );
        assert_eq!(
            unresolved(SynSent, u(false, false, false)),
            Verdict::ConnectFailed
        );
        assert_eq!(of_reset(ResetDirection::Received), Verdict::AbortReceived);
    }

    /// What is concluded from a RST record's absence is unknown when one
    /// may have been lost; what is seen stays known.
    #[test]
    fn absence_is_no_evidence_when_records_were_lost() {
        let u = unseen;
        assert_eq!(
            unresolved(Established, u(false, false, true)),
            Verdict::Unknown
        );
        assert_eq!(unresolved(SynSent, u(false, false, true)), Verdict::Unknown);
        // Its own system call closed it: an abort, RST record or not.
        assert_eq!(
            unresolved(Established, u(false, true, true)),
            Verdict::AbortSent
        );
        assert_eq!(
            unresolved(Established, u(true, false, true)),
            Verdict::AbortSent
        );
    }

    #[test]
    fn after_lost_records_the_state_it_was_in_wins() {
        // FIN_WAIT1's record lost, a RST received, then FIN_WAIT1 -> CLOSE:
        // this side had sent the first FIN.
        assert_eq!(
            after_transition(Some(Verdict::AbortReceived), FinWait1, Close, true),
            Some(Verdict::Local)
        );
        assert_eq!(
            after_transition(Some(Verdict::AbortSent), LastAck, Close, true),
            Some(Verdict::Peer)
        );
        // Without a gap, the first evidence stands.
        assert_eq!(
            after_transition(Some(Verdict::AbortReceived), FinWait1, Close, false),
            Some(Verdict::AbortReceived)
        );
        // FIN_WAIT1 -> CLOSING lost: CLOSING still says both FINs crossed.
        assert_eq!(
            after_transition(Some(Verdict::Local), Closing, Close, true),
            Some(Verdict::Simultaneous)
        );
    }
}
