//! Types shared by the eBPF programs (`tcptrace-ebpf`) and the agent
//! (`tcptrace`). Every type here crosses the kernel/user boundary, so each is
//! `#[repr(C)]` with explicit padding and no enums: the agent validates raw
//! values (states, families) when it decodes them instead of trusting bytes.
#![cfg_attr(not(test), no_std)]
// The wire types are defined once, here: each says what it carries.
#![warn(missing_docs)]

/// Linux TCP state numbers as the kernel uses them (`include/net/tcp_states.h`).
/// Kept as plain constants: the wire carries `u8`s, decoding is the agent's job.
pub mod tcp_state {
    /// `TCP_ESTABLISHED`.
    pub const ESTABLISHED: u8 = 1;
    /// `TCP_SYN_SENT`.
    pub const SYN_SENT: u8 = 2;
    /// `TCP_SYN_RECV`.
    pub const SYN_RECV: u8 = 3;
    /// `TCP_FIN_WAIT1`.
    pub const FIN_WAIT1: u8 = 4;
    /// `TCP_FIN_WAIT2`.
    pub const FIN_WAIT2: u8 = 5;
    /// `TCP_TIME_WAIT`.
    pub const TIME_WAIT: u8 = 6;
    /// `TCP_CLOSE`.
    pub const CLOSE: u8 = 7;
    /// `TCP_CLOSE_WAIT`.
    pub const CLOSE_WAIT: u8 = 8;
    /// `TCP_LAST_ACK`.
    pub const LAST_ACK: u8 = 9;
    /// `TCP_LISTEN`.
    pub const LISTEN: u8 = 10;
    /// `TCP_CLOSING`.
    pub const CLOSING: u8 = 11;
    /// `TCP_NEW_SYN_RECV` (a request socket).
    pub const NEW_SYN_RECV: u8 = 12;
}

/// `AF_INET`: IPv4.
pub const AF_INET: u16 = 2;
/// `AF_INET6`: IPv6 (v4-mapped addresses included).
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`, as the tracepoint's `protocol` field gives it.
pub const IPPROTO_TCP: u16 = 6;

/// `TransitionEvent::flags`: the transition ran in process context (a syscall of
/// the socket's owner: connect, listen, close, shutdown...), so `pid`/`comm` name
/// the owner. Without it the transition ran in softirq context (packet receive,
/// timers) and `pid`/`comm` are whatever task happened to be interrupted.
pub const FLAG_PROCESS_CTX: u16 = 1 << 0;
/// `TransitionEvent::kind`: a `sock:inet_sock_set_state` transition.
pub const KIND_TRANSITION: u8 = 1;
/// `TransitionEvent::kind`: `tcp:tcp_send_reset`: this host sent a RST, on
/// a full socket, or for no socket at all (`skaddr` 0: a segment to a port
/// nobody listens on, or to a connection the host forgot; `netns` 0). For a
/// socket, `oldstate` is its state then; with `FLAG_RESET_REASON`,
/// `newstate` is the kernel's `enum sk_rst_reason`. Only `ts_ns`, `skaddr`,
/// `netns`, the ports and the task fields are filled in.
pub const KIND_RESET_SENT: u8 = 2;
/// `TransitionEvent::kind`: `tcp:tcp_receive_reset`: the peer reset the socket.
/// Filled in like `KIND_RESET_SENT`.
pub const KIND_RESET_RECEIVED: u8 = 3;

/// `TransitionEvent::kind`: the timer of a timewait socket was armed
/// (`timer:timer_start` with `tw_timer_handler`): a new timewait socket, or a
/// re-arm (the agent tells them apart by `skaddr`). `skaddr` is the timewait
/// socket, the endpoints and `netns` are its own, `oldstate` is its substate
/// (`TIME_WAIT`, or `FIN_WAIT2` for an orphan), and `dur_ns` holds the timer's
/// length in *jiffies* (`expires - now`), not nanoseconds.
pub const KIND_TW_ARMED: u8 = 4;
/// `TransitionEvent::kind`: the timer of a timewait socket was taken off the
/// timer wheel (`timer:timer_cancel`): right before it runs (expiry), before a
/// re-arm, or because the socket is ended early. Filled in like
/// `KIND_TW_ARMED` (without `dur_ns`), plus the task fields and
/// `FLAG_NET_DYING`.
pub const KIND_TW_CANCEL: u8 = 5;
/// `TransitionEvent::kind`: a timewait socket's timer ran out
/// (`timer:timer_expire_entry`). Filled in like `KIND_TW_CANCEL`.
pub const KIND_TW_EXPIRED: u8 = 6;
/// `TransitionEvent::kind`: a request socket was created (its SYN-ACK timer
/// armed) on a CPU that had just ended a timewait socket while serving a
/// softirq: the SYN that reopened it. `skaddr` is the request socket; the
/// endpoints and `netns` are its own.
pub const KIND_TW_REQUEST: u8 = 7;

/// `TransitionEvent::kind`: a bind() failed with `EADDRINUSE`
/// (`syscalls:sys_exit_bind`), e.g. a server restarting onto a port that
/// timewait sockets still hold. `saddr`/`sport` are the address asked for
/// (`sport` in host order), `family` its family, `netns` the calling task's
/// namespace, `dur_ns` the errno; `skaddr` is 0.
pub const KIND_BIND_FAILED: u8 = 8;

/// `TransitionEvent::kind`: a connecting socket's SYN was retransmitted
/// (`tcp:tcp_retransmit_skb` in `SYN_SENT`): the far side, or the path,
/// dropped it. `skaddr`, `netns`, the ports and `family` are the socket's;
/// `oldstate` is `SYN_SENT`.
pub const KIND_SYN_RETRANSMIT: u8 = 9;

/// `CounterKey::kind`: a listener retransmitted a SYN-ACK
/// (`tcp:tcp_retransmit_synack`): the client did not complete the
/// handshake. Counted in the kernel per listener (`netns`, `port`), never
/// sent as a record: a SYN flood makes a storm of them.
pub const KIND_SYNACK_RETRANSMIT: u8 = 10;

/// `CounterKey::kind`: a segment of an established (or closing) connection
/// retransmitted (`tcp:tcp_retransmit_skb` in any state but `SYN_SENT`):
/// counted in the kernel per (`netns`, `saddr`, `daddr`, `port`: the remote
/// one), never sent as a record: a lossy path makes a storm of them.
pub const KIND_RETRANSMIT: u8 = 11;

/// `CounterKey::kind` `KIND_RESET_SENT`: a RST sent for no socket (a segment
/// to a port nobody listens on, or to a connection the host forgot), counted
/// in the kernel per local `port` (its namespace unknown), never sent as a
/// record: a SYN flood toward a closed port makes a storm of them.
pub const COUNTED_NO_SOCKET_RESET: u8 = KIND_RESET_SENT;

/// What the eBPF side counts itself (in the per-CPU `COUNTS` map, summed
/// by the agent) rather than sending a record for each. Fields a kind does
/// not use are 0. `Pod`, like `TransitionEvent`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CounterKey {
    /// `KIND_RETRANSMIT`, `KIND_SYNACK_RETRANSMIT` or
    /// `COUNTED_NO_SOCKET_RESET`.
    pub kind: u8,
    /// Explicit padding, always 0.
    pub _pad: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Host byte order; which port depends on `kind`.
    pub port: u16,
    /// Explicit padding, always 0.
    pub _pad2: u16,
    /// Inode number of the socket's network namespace, 0 if unknown.
    pub netns: u32,
    /// `KIND_RETRANSMIT`: the local address, encoded as in
    /// `TransitionEvent`.
    pub saddr: [u8; 16],
    /// `KIND_RETRANSMIT`: the remote address, likewise.
    pub daddr: [u8; 16],
}

/// Entries of the `COUNTS` map: the least recently counted keys make room.
pub const MAX_COUNTED: u32 = 8192;

/// `EADDRINUSE` on Linux.
pub const EADDRINUSE: i64 = 98;

/// `TransitionEvent::flags` of `KIND_TW_CANCEL`: the socket's network
/// namespace was being dismantled (its reference count was 0).
pub const FLAG_NET_DYING: u16 = 1 << 3;

/// `TransitionEvent::flags` of `KIND_RESET_SENT`: `newstate` holds the
/// kernel's reason for the RST (`enum sk_rst_reason`, named in the
/// tracepoint's format).
pub const FLAG_RESET_REASON: u16 = 1 << 4;

/// One event of a TCP socket, as sent through the `EVENTS` ring buffer: a
/// state transition, or a reset sent or received (see `KIND_*`). `Pod` (for
/// the agent, which copies records out of the ring with bytemuck): every
/// field an integer, no implicit padding (checked by the derive).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct TransitionEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at the transition.
    pub ts_ns: u64,
    /// Kernel address of the `struct sock`: stable for the socket's life, so it
    /// identifies one socket across its transitions.
    pub skaddr: u64,
    /// `KIND_TW_ARMED`: the timer's length in jiffies; 0 otherwise. (Time
    /// spent in a state is measured by the agent, which sees every
    /// transition of a socket: a per-socket map here cost the kernel more
    /// than a tenth of the tracing.)
    pub dur_ns: u64,
    /// Local address: IPv4 in the first 4 bytes for `AF_INET`, else IPv6.
    pub saddr: [u8; 16],
    /// Remote address, same encoding as `saddr`.
    pub daddr: [u8; 16],
    /// Thread group id (the "pid" users know) of the current task.
    pub pid: u32,
    /// Thread id of the current task.
    pub tid: u32,
    /// `comm` of the current task, NUL-padded.
    pub comm: [u8; 16],
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// The state left (`tcp_state`).
    pub oldstate: u8,
    /// The state entered (`tcp_state`).
    pub newstate: u8,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// `KIND_*`.
    pub kind: u8,
    /// Explicit padding, always 0.
    pub _pad: u8,
    /// Inode number of the socket's network namespace (as in
    /// /proc/PID/ns/net), 0 if unknown.
    pub netns: u32,
}

/// Records the eBPF side could not send because its CPU's ring was full, by
/// record kind: `by_kind[KIND_*]` (index 0 and those above the last kind
/// stay 0). One per CPU, in the one entry of the per-CPU `LOST` array, so
/// the agent reads every kind's count of every CPU in one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LostRecords {
    /// Records lost (for the kinds counted in the kernel, counts that
    /// found no room in `COUNTS`), indexed by `KIND_*`.
    pub by_kind: [u64; LOST_KINDS],
}

/// Entries of `LostRecords::by_kind`: a power of two above the last
/// `KIND_*`, so that masking a kind with `LOST_KINDS - 1` keeps the eBPF
/// side's index in bounds.
pub const LOST_KINDS: usize = 16;

impl LostRecords {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }
}

/// Up to this many ports per `--lport` / `--rport` filter (kernel side).
pub const MAX_PORT_FILTER: usize = 8;

/// Size of the eBPF side's per-CPU ring array (the agent sets it to the
/// number of possible CPUs at load time).
pub const MAX_CPUS: usize = 4096;

/// Load-time filter, applied in the kernel before anything is recorded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFilter {
    /// `AF_INET` or `AF_INET6`; 0 for both.
    pub family: u16,
    /// How many of `lports` are used; 0: any local port.
    pub lport_count: u16,
    /// How many of `rports` are used; 0: any remote port.
    pub rport_count: u16,
    /// Explicit padding, always 0.
    pub _pad: u16,
    /// Local ports accepted (host byte order).
    pub lports: [u16; MAX_PORT_FILTER],
    /// Remote ports accepted (host byte order).
    pub rports: [u16; MAX_PORT_FILTER],
}

impl KernelFilter {
    /// Whether a socket with this family and ports passes.
    #[inline(always)]
    pub fn accepts(&self, family: u16, lport: u16, rport: u16) -> bool {
        (self.family == 0 || self.family == family)
            && listed(&self.lports, self.lport_count, lport)
            && listed(&self.rports, self.rport_count, rport)
    }
}

#[inline(always)]
fn listed(ports: &[u16; MAX_PORT_FILTER], count: u16, port: u16) -> bool {
    if count == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_PORT_FILTER {
        if (i as u16) < count && ports[i] == port {
            return true;
        }
        i += 1;
    }
    false
}

/// Offsets in kernel structures, taken from the running kernel's BTF by the
/// agent and passed as a load-time global. 0 means "not available".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct sock` -> `__sk_common.skc_net.net` (a `struct net *`).
    pub sock_net: u32,
    /// `struct net` -> `ns.inum` (a `u32`).
    pub net_inum: u32,
    /// `struct task_struct` -> `nsproxy` (a `struct nsproxy *`).
    pub task_nsproxy: u32,
    /// `struct nsproxy` -> `net_ns` (a `struct net *`).
    pub nsproxy_net: u32,
}

/// What the timewait programs need, found by the agent at run time: timer
/// callback addresses from /proc/kallsyms and structure offsets from the
/// kernel's BTF. `tw_handler` 0 turns TIME_WAIT tracking off;
/// `reqsk_handler` 0 only turns off the detection of reopened sockets;
/// `net_refcount` 0 only that of purged ones.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimewaitConfig {
    /// Address of `tw_timer_handler`.
    pub tw_handler: u64,
    /// Address of `reqsk_timer_handler`.
    pub reqsk_handler: u64,
    /// `struct inet_timewait_sock` -> `tw_timer` (a `struct timer_list`).
    pub tw_timer: u32,
    /// `struct inet_timewait_sock` -> `tw_substate` (a byte).
    pub tw_substate: u32,
    /// `struct request_sock` -> `rsk_timer`.
    pub rsk_timer: u32,
    /// `struct timer_list` -> `function`.
    pub timer_function: u32,
    /// `struct timer_list` -> `expires` (jiffies).
    pub timer_expires: u32,
    /// Explicit padding, always 0.
    pub _pad: u32,
    /// `struct sock_common` members, shared by full, timewait and request
    /// sockets: remote and local IPv4 address (network order), remote port
    /// (network order), local port (host order), family, IPv6 addresses.
    pub skc_daddr: u32,
    /// `skc_rcv_saddr`: the local IPv4 address.
    pub skc_rcv_saddr: u32,
    /// `skc_dport`: the remote port.
    pub skc_dport: u32,
    /// `skc_num`: the local port.
    pub skc_num: u32,
    /// `skc_family`.
    pub skc_family: u32,
    /// `skc_v6_daddr`: the remote IPv6 address.
    pub skc_v6_daddr: u32,
    /// `skc_v6_rcv_saddr`: the local IPv6 address.
    pub skc_v6_rcv_saddr: u32,
    /// `struct net` -> its namespace reference count (a `u32`).
    pub net_refcount: u32,
}

/// Layout of the `sock:inet_sock_set_state` record that the eBPF program reads
/// directly (constant offsets are what the verifier allows for cheap context
/// loads). The agent checks it field by field against the tracepoint's `format`
/// file before loading, and refuses to run on a kernel where it differs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct InetSockSetStateArgs {
    /// `common_type`, `common_flags`, `common_preempt_count`, `common_pid`.
    pub common: u64,
    /// The socket's address: its identity while it lives.
    pub skaddr: u64,
    /// The state left.
    pub oldstate: i32,
    /// The state entered.
    pub newstate: i32,
    /// Local port, host byte order (0 before it is chosen).
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// `IPPROTO_TCP`, or SCTP or MPTCP (not followed).
    pub protocol: u16,
    /// Local IPv4 address, network order.
    pub saddr: [u8; 4],
    /// Remote IPv4 address, network order.
    pub daddr: [u8; 4],
    /// Local IPv6 address (v4-mapped for IPv4).
    pub saddr_v6: [u8; 16],
    /// Remote IPv6 address (v4-mapped for IPv4).
    pub daddr_v6: [u8; 16],
}

/// The fields of `tcp:tcp_send_reset` that the eBPF program reads
/// (name, offset, size): `skaddr` is NULL for resets sent without a socket;
/// `saddr` and `daddr` are a `struct sockaddr_in6` or `sockaddr_in` each
/// (family at 0, port in network order at 2).
pub const TCP_SEND_RESET_FIELDS: [(&str, usize, usize); 4] = [
    ("skaddr", 16, 8),
    ("state", 24, 4),
    ("saddr", 32, 28),
    ("daddr", 60, 28),
];
/// The field of `tcp:tcp_send_reset` that carries the kernel's reason for a
/// RST (Linux 6.10 and later), read where the format has it there.
pub const TCP_SEND_RESET_REASON: (&str, usize, usize) = ("reason", 28, 4);
/// `tcp:tcp_retransmit_skb`'s `err` (Linux 6.17 and later): the tracepoint
/// fires for attempts that failed too (the segment still queued, a zero
/// window...), which are no retransmit; read where the format has it.
pub const TCP_RETRANSMIT_SKB_ERR: (&str, usize, usize) = ("err", 76, 4);
/// The fields of `tcp:tcp_retransmit_skb` that the eBPF program reads
/// (ports in host order).
pub const TCP_RETRANSMIT_SKB_FIELDS: [(&str, usize, usize); 9] = [
    ("skaddr", 16, 8),
    ("state", 24, 4),
    ("sport", 28, 2),
    ("dport", 30, 2),
    ("family", 32, 2),
    ("saddr", 34, 4),
    ("daddr", 38, 4),
    ("saddr_v6", 42, 16),
    ("daddr_v6", 58, 16),
];
/// The fields of `tcp:tcp_retransmit_synack` that the eBPF program reads
/// (ports in host order).
pub const TCP_RETRANSMIT_SYNACK_FIELDS: [(&str, usize, usize); 4] = [
    ("skaddr", 8, 8),
    ("sport", 24, 2),
    ("dport", 26, 2),
    ("family", 28, 2),
];
/// The fields of `syscalls:sys_enter_bind` that the eBPF program reads.
pub const SYS_ENTER_BIND_FIELDS: [(&str, usize, usize); 1] = [("umyaddr", 24, 8)];
/// The fields of `syscalls:sys_exit_bind` that the eBPF program reads.
pub const SYS_EXIT_BIND_FIELDS: [(&str, usize, usize); 1] = [("ret", 16, 8)];

/// The fields of `tcp:tcp_receive_reset` that the eBPF program reads
/// (ports in host order).
pub const TCP_RECEIVE_RESET_FIELDS: [(&str, usize, usize); 4] = [
    ("skaddr", 8, 8),
    ("sport", 16, 2),
    ("dport", 18, 2),
    ("family", 20, 2),
];

/// (name, offset, size) of each `InetSockSetStateArgs` field after the common
/// header, in the spelling of the tracepoint's `format` file.
pub const INET_SOCK_SET_STATE_FIELDS: [(&str, usize, usize); 11] = [
    ("skaddr", 8, 8),
    ("oldstate", 16, 4),
    ("newstate", 20, 4),
    ("sport", 24, 2),
    ("dport", 26, 2),
    ("family", 28, 2),
    ("protocol", 30, 2),
    ("saddr", 32, 4),
    ("daddr", 36, 4),
    ("saddr_v6", 40, 16),
    ("daddr_v6", 56, 16),
];

// The table above must describe the struct exactly; checked at compile time.
const _: () = {
    use core::mem::{offset_of, size_of};
    type A = InetSockSetStateArgs;
    assert!(offset_of!(A, skaddr) == 8);
    assert!(offset_of!(A, oldstate) == 16);
    assert!(offset_of!(A, newstate) == 20);
    assert!(offset_of!(A, sport) == 24);
    assert!(offset_of!(A, dport) == 26);
    assert!(offset_of!(A, family) == 28);
    assert!(offset_of!(A, protocol) == 30);
    assert!(offset_of!(A, saddr) == 32);
    assert!(offset_of!(A, daddr) == 36);
    assert!(offset_of!(A, saddr_v6) == 40);
    assert!(offset_of!(A, daddr_v6) == 56);
    assert!(size_of::<A>() == 72);
    assert!(size_of::<TransitionEvent>() == 96);
    assert!(size_of::<KernelFilter>() == 40);
    assert!(size_of::<TimewaitConfig>() == 72);
    assert!(size_of::<CounterKey>() == 44);
    assert!(KIND_RETRANSMIT < LOST_KINDS as u8 && LOST_KINDS.is_power_of_two());
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, `#[repr(C)]`, integer fields only, padding explicit.
    unsafe impl aya::Pod for super::TransitionEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelFilter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TimewaitConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LostRecords {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CounterKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_filter() {
        let any = KernelFilter::default();
        assert!(any.accepts(AF_INET, 1, 2));
        let mut f = KernelFilter {
            family: AF_INET6,
            lport_count: 2,
            ..KernelFilter::default()
        };
        f.lports[..2].copy_from_slice(&[80, 443]);
        assert!(f.accepts(AF_INET6, 443, 5000));
        assert!(!f.accepts(AF_INET, 443, 5000));
        assert!(!f.accepts(AF_INET6, 8080, 5000));
        f.rport_count = 1;
        f.rports[0] = 5000;
        assert!(f.accepts(AF_INET6, 80, 5000));
        assert!(!f.accepts(AF_INET6, 80, 5001));
        // Ports past the count are ignored.
        f.lports[2] = 8080;
        assert!(!f.accepts(AF_INET6, 8080, 5000));
    }
}
