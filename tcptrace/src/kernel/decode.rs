//! Decoding of the ring buffer's records (`TransitionEvent`) into checked,
//! typed events. Nothing here trusts the bytes: unknown states, families or
//! kinds are errors, never transmutes.

use std::{
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tcptrace_common::{
    AF_INET, AF_INET6, COUNTED_NO_SOCKET_RESET, CounterKey, FLAG_NET_DYING, FLAG_PROCESS_CTX,
    FLAG_RESET_REASON, KIND_BIND_FAILED, KIND_RESET_RECEIVED, KIND_RESET_SENT, KIND_RETRANSMIT,
    KIND_SYN_RETRANSMIT, KIND_SYNACK_RETRANSMIT, KIND_TRANSITION, KIND_TW_ARMED, KIND_TW_CANCEL,
    KIND_TW_EXPIRED, KIND_TW_REQUEST, TransitionEvent,
};

use crate::model::{
    BindFailure, Comm, Counted, DecodeError, Event, Reset, ResetDirection, ResetReason,
    StateChange, Task, TcpState, TwAction, TwEvent,
};

fn state(value: u8) -> Result<TcpState, DecodeError> {
    TcpState::from_kernel(value).ok_or(DecodeError::State(value))
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    from_raw(&raw(bytes)?)
}

/// Copies a ring buffer record out as the wire struct, undecoded (any bytes
/// are a valid `TransitionEvent`: it is `Pod`). Measured against
/// `ptr::read_unaligned`: the same code.
pub fn raw(bytes: &[u8]) -> Result<TransitionEvent, DecodeError> {
    let size = size_of::<TransitionEvent>();
    match bytes.get(..size) {
        Some(record) => Ok(bytemuck::pod_read_unaligned(record)),
        None => Err(DecodeError::Short(bytes.len(), size)),
    }
}

/// Decodes a record copied out of the ring.
pub fn from_raw(raw: &TransitionEvent) -> Result<Event, DecodeError> {
    let action = match raw.kind {
        KIND_TW_ARMED => Some(TwAction::Armed {
            jiffies: raw.dur_ns,
        }),
        KIND_TW_CANCEL => Some(TwAction::Cancelled {
            task: task(raw),
            net_dying: raw.flags & FLAG_NET_DYING != 0,
        }),
        KIND_TW_EXPIRED => Some(TwAction::Expired),
        KIND_TW_REQUEST => Some(TwAction::Request),
        _ => None,
    };
    if let Some(action) = action {
        let (local, remote) = endpoints(raw)?;
        return Ok(Event::Timewait(TwEvent {
            ts_ns: raw.ts_ns,
            sock: raw.skaddr,
            netns: raw.netns,
            local,
            remote,
            substate: match action {
                // A request socket has no substate.
                TwAction::Request => TcpState::SynRecv,
                _ => state(raw.oldstate)?,
            },
            action,
        }));
    }
    if raw.kind == KIND_BIND_FAILED {
        let (local, _) = endpoints(raw)?;
        return Ok(Event::BindFailed(BindFailure {
            ts_ns: raw.ts_ns,
            netns: raw.netns,
            local,
            task: task(raw),
        }));
    }
    let direction = match raw.kind {
        KIND_TRANSITION => return change(raw).map(Event::Change),
        KIND_SYN_RETRANSMIT => {
            return Ok(Event::SynRetransmit {
                ts_ns: raw.ts_ns,
                sock: raw.skaddr,
            });
        }
        KIND_RESET_SENT => ResetDirection::Sent,
        KIND_RESET_RECEIVED => ResetDirection::Received,
        other => return Err(DecodeError::Kind(other)),
    };
    Ok(Event::Reset(Reset {
        ts_ns: raw.ts_ns,
        sock: raw.skaddr,
        netns: raw.netns,
        direction,
        task: task(raw),
        ports: (raw.sport, raw.dport),
        reason: (raw.flags & FLAG_RESET_REASON != 0).then_some(ResetReason(raw.newstate)),
    }))
}

/// Decodes a key of what the kernel side counts itself.
pub fn counted(key: &CounterKey) -> Result<Counted, DecodeError> {
    match key.kind {
        COUNTED_NO_SOCKET_RESET => Ok(Counted::NoSocketReset { port: key.port }),
        KIND_SYNACK_RETRANSMIT => Ok(Counted::SynAckRetransmit {
            netns: key.netns,
            port: key.port,
        }),
        KIND_RETRANSMIT => {
            let (local, remote) = addresses(key.family, &key.saddr, &key.daddr)?;
            Ok(Counted::Retransmit {
                netns: key.netns,
                local,
                remote: SocketAddr::new(remote, key.port),
            })
        }
        other => Err(DecodeError::Kind(other)),
    }
}

fn task(raw: &TransitionEvent) -> Option<Task> {
    (raw.flags & FLAG_PROCESS_CTX != 0).then(|| Task {
        pid: raw.pid,
        tid: raw.tid,
        comm: Comm::new(raw.comm),
    })
}

/// Two addresses of `family`, as the wire types encode them.
fn addresses(
    family: u16,
    local: &[u8; 16],
    remote: &[u8; 16],
) -> Result<(IpAddr, IpAddr), DecodeError> {
    match family {
        AF_INET => Ok((ipv4(local), ipv4(remote))),
        AF_INET6 => Ok((
            IpAddr::V6(Ipv6Addr::from(*local)),
            IpAddr::V6(Ipv6Addr::from(*remote)),
        )),
        other => Err(DecodeError::Family(other)),
    }
}

/// The endpoints of a record, decoded by its family.
fn endpoints(raw: &TransitionEvent) -> Result<(SocketAddr, SocketAddr), DecodeError> {
    let (local_ip, remote_ip) = addresses(raw.family, &raw.saddr, &raw.daddr)?;
    Ok((
        SocketAddr::new(local_ip, raw.sport),
        SocketAddr::new(remote_ip, raw.dport),
    ))
}

/// A transition record: the state change the kernel reported.
pub fn change(raw: &TransitionEvent) -> Result<StateChange, DecodeError> {
    let (local, remote) = endpoints(raw)?;
    Ok(StateChange {
        ts_ns: raw.ts_ns,
        sock: raw.skaddr,
        netns: raw.netns,
        local,
        remote,
        old: state(raw.oldstate)?,
        new: state(raw.newstate)?,
        task: task(raw),
    })
}

fn ipv4(bytes: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcptrace_common::tcp_state;

    /// A raw IPv4 record as the eBPF program would write it.
    fn raw_v4(old: u8, new: u8) -> TransitionEvent {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
        TransitionEvent {
            ts_ns: 5_000_000_000,
            skaddr: 0xffff_8880_1234_5678,
            dur_ns: 1_234_567,
            saddr,
            daddr,
            pid: 4242,
            tid: 4243,
            comm,
            sport: 41000,
            dport: 80,
            family: AF_INET,
            oldstate: old,
            newstate: new,
            flags: FLAG_PROCESS_CTX,
            kind: KIND_TRANSITION,
            _pad: 0,
            netns: 4026531840,
        }
    }

    fn bytes_of(raw: &TransitionEvent) -> Vec<u8> {
        bytemuck::bytes_of(raw).to_vec()
    }

    #[test]
    fn decodes_ipv4_record() {
        let raw = raw_v4(tcp_state::SYN_SENT, tcp_state::ESTABLISHED);
        let Event::Change(t) = decode(&bytes_of(&raw)).unwrap() else {
            panic!("not a transition")
        };
        assert_eq!(t.netns, 4026531840);
        assert_eq!(t.local, "127.0.0.1:41000".parse().unwrap());
        assert_eq!(t.remote, "10.1.2.3:80".parse().unwrap());
        assert_eq!((t.old, t.new), (TcpState::SynSent, TcpState::Established));
        let task = t.task.unwrap();
        assert_eq!(
            (task.pid, task.tid, &*task.comm.as_str()),
            (4242, 4243, "curl")
        );
        assert_eq!(t.sock, 0xffff_8880_1234_5678);
    }

    #[test]
    fn decodes_ipv6_and_v4_mapped() {
        let mut raw = raw_v4(tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1);
        raw.family = AF_INET6;
        raw.saddr = "::1".parse::<Ipv6Addr>().unwrap().octets();
        raw.daddr = "::ffff:192.0.2.7".parse::<Ipv6Addr>().unwrap().octets();
        let t = change(&raw).unwrap();
        assert_eq!(t.local.to_string(), "[::1]:41000");
        assert_eq!(t.remote.to_string(), "[::ffff:192.0.2.7]:80");
    }

    #[test]
    fn softirq_transitions_have_no_task() {
        let mut raw = raw_v4(tcp_state::SYN_SENT, tcp_state::ESTABLISHED);
        raw.flags = 0;
        assert_eq!(change(&raw).unwrap().task, None);
    }

    #[test]
    fn rejects_bad_records() {
        let raw = raw_v4(0, tcp_state::CLOSE);
        assert_eq!(change(&raw), Err(DecodeError::State(0)));
        let raw = raw_v4(tcp_state::CLOSE, 13);
        assert_eq!(change(&raw), Err(DecodeError::State(13)));
        let mut raw = raw_v4(tcp_state::CLOSE, tcp_state::LISTEN);
        raw.family = 1;
        assert_eq!(change(&raw), Err(DecodeError::Family(1)));
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Short(10, 96)));
    }

    #[test]
    fn decodes_failed_binds() {
        let mut raw = raw_v4(0, 0);
        raw.kind = KIND_BIND_FAILED;
        raw.saddr = [0; 16];
        raw.sport = 8080;
        let Event::BindFailed(b) = from_raw(&raw).unwrap() else {
            panic!("not a bind failure")
        };
        assert_eq!(b.local, "0.0.0.0:8080".parse().unwrap());
        assert_eq!((b.netns, b.task.unwrap().pid), (4026531840, 4242));
    }

    #[test]
    fn decodes_resets() {
        let mut raw = raw_v4(tcp_state::ESTABLISHED, 0);
        raw.kind = KIND_RESET_RECEIVED;
        raw.flags = 0;
        let Event::Reset(r) = from_raw(&raw).unwrap() else {
            panic!("not a reset")
        };
        assert_eq!(
            (r.direction, r.task, r.sock),
            (ResetDirection::Received, None, raw.skaddr)
        );
        raw.kind = KIND_RESET_SENT;
        raw.flags = FLAG_PROCESS_CTX;
        let Event::Reset(r) = from_raw(&raw).unwrap() else {
            panic!("not a reset")
        };
        assert_eq!(r.direction, ResetDirection::Sent);
        assert_eq!(r.task.unwrap().pid, 4242);
        assert_eq!(r.ports, (raw.sport, raw.dport));
        assert_eq!(r.reason, None, "no reason without its flag");
        raw.flags |= FLAG_RESET_REASON;
        raw.newstate = 12;
        let Event::Reset(r) = from_raw(&raw).unwrap() else {
            panic!("not a reset")
        };
        assert_eq!(r.reason, Some(ResetReason(12)));
    }

    #[test]
    fn decodes_what_the_kernel_side_counts() {
        let mut key = CounterKey {
            kind: KIND_RETRANSMIT,
            family: AF_INET,
            port: 5432,
            netns: 7,
            ..CounterKey::default()
        };
        key.saddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        key.daddr[..4].copy_from_slice(&[10, 0, 0, 7]);
        assert_eq!(
            counted(&key),
            Ok(Counted::Retransmit {
                netns: 7,
                local: "10.0.0.2".parse().unwrap(),
                remote: "10.0.0.7:5432".parse().unwrap(),
            })
        );
        key.family = 99;
        assert_eq!(counted(&key), Err(DecodeError::Family(99)));
        let key = CounterKey {
            kind: COUNTED_NO_SOCKET_RESET,
            port: 9,
            ..CounterKey::default()
        };
        assert_eq!(counted(&key), Ok(Counted::NoSocketReset { port: 9 }));
        let key = CounterKey {
            kind: KIND_SYNACK_RETRANSMIT,
            port: 443,
            netns: 3,
            ..CounterKey::default()
        };
        assert_eq!(
            counted(&key),
            Ok(Counted::SynAckRetransmit {
                netns: 3,
                port: 443
            })
        );
        let key = CounterKey {
            kind: KIND_TRANSITION,
            ..CounterKey::default()
        };
        assert_eq!(counted(&key), Err(DecodeError::Kind(KIND_TRANSITION)));
    }
}
