//! `--json`: one JSON object per line. Field names are part of the interface
//! (documented in tcptrace/doc/json.md); add fields, never rename them.

use std::{
    fmt,
    io::{self, Write as _},
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;
use serde_json::json;

use crate::{
    aggregate::ports::{DestReport, Level},
    model::{BindFailure, Closed, ResetNames, Task, Transition, TwNote},
    render::{clock::WallClock, ports, summary},
    report::Report,
    words::push_ip,
};

pub struct JsonPrinter {
    clock: WallClock,
    time: String,
    /// The record being written, reused.
    buf: Vec<u8>,
    /// The kernel's names of the reasons for resets.
    reset_names: ResetNames,
}

/// An address as text on the stack: the longest is a v4-mapped IPv6
/// address ("ffff:...:255.255.255.255").
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn of(ip: IpAddr) -> Self {
        let mut text = Self {
            buf: [0; 48],
            len: 0,
        };
        // Cannot fail: every address fits.
        let _ = push_ip(&mut text, ip);
        text
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, hex, dots and colons are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// An address as a JSON string.
struct Ip(IpAddr);

impl Serialize for Ip {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(IpText::of(self.0).as_str())
    }
}

impl JsonPrinter {
    pub fn new(clock: WallClock) -> Self {
        Self {
            clock,
            time: String::with_capacity(40),
            buf: Vec::with_capacity(512),
            reset_names: ResetNames::default(),
        }
    }

    /// Names the reasons of the resets sent as the running kernel does.
    pub fn with_reset_names(mut self, names: ResetNames) -> Self {
        self.reset_names = names;
        self
    }

    /// Starts a per-event record in the reused buffer with the keys both
    /// kinds begin with: `{"type":...,"time":...,"ts_ns":...,"sock":"0x...",
    /// "netns":...`.
    fn begin(&mut self, kind: &str, ts_ns: u64, sock: u64, netns: u32) -> &mut Vec<u8> {
        self.time.clear();
        self.clock.push_rfc3339(&mut self.time, ts_ns);
        let b = &mut self.buf;
        b.clear();
        let mut n = itoa::Buffer::new();
        b.extend_from_slice(b"{\"type\":\"");
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(b"\",\"time\":\"");
        b.extend_from_slice(self.time.as_bytes());
        b.extend_from_slice(b"\",\"ts_ns\":");
        b.extend_from_slice(n.format(ts_ns).as_bytes());
        let _ = write!(b, ",\"sock\":\"{sock:#x}\",\"netns\":");
        b.extend_from_slice(n.format(netns).as_bytes());
        b
    }

    /// One transition. Written by hand, not through serde: every key and
    /// most values are fixed ASCII, and this is the per-event path. Only
    /// `comm` can need escaping, and gets serde_json's.
    pub fn transition<W: io::Write>(&mut self, out: &mut W, t: &Transition) -> io::Result<()> {
        let b = self.begin("transition", t.ts_ns, t.sock, t.netns);
        let mut n = itoa::Buffer::new();
        match &t.owner {
            Some(owner) => {
                b.extend_from_slice(b",\"pid\":");
                b.extend_from_slice(n.format(owner.pid).as_bytes());
                b.extend_from_slice(b",\"tid\":");
                b.extend_from_slice(n.format(owner.tid).as_bytes());
                b.extend_from_slice(b",\"comm\":");
                push_comm(b, Some(owner))?;
            }
            None => b.extend_from_slice(b",\"pid\":null,\"tid\":null,\"comm\":null"),
        }
        b.extend_from_slice(if t.task.is_some() {
            b",\"ctx\":\"process\""
        } else {
            b",\"ctx\":\"softirq\""
        });
        push_endpoints(b, &mut n, t.local, t.remote);
        b.extend_from_slice(b",\"old\":\"");
        b.extend_from_slice(t.old.name().as_bytes());
        b.extend_from_slice(b"\",\"new\":\"");
        b.extend_from_slice(t.new.name().as_bytes());
        b.extend_from_slice(b"\",\"dur_ns\":");
        push_opt(b, &mut n, t.in_old.ns());
        b.extend_from_slice(b",\"dur\":\"");
        b.extend_from_slice(t.in_old.kind().as_bytes());
        b.extend_from_slice(b"\",\"timewait\":");
        match t.timewait {
            None => b.extend_from_slice(b"null"),
            Some(note) => push_tw_note(b, note)?,
        }
        b.extend_from_slice(b"}\n");
        out.write_all(b)
    }
}

/// `,"family":...,"laddr":...,"lport":...,"raddr":...,"rport":...`: the
/// same keys in transitions and closed records.
fn push_endpoints(b: &mut Vec<u8>, n: &mut itoa::Buffer, local: SocketAddr, remote: SocketAddr) {
    b.extend_from_slice(b",\"family\":\"");
    b.extend_from_slice(family(&local).as_bytes());
    b.extend_from_slice(b"\",\"laddr\":\"");
    b.extend_from_slice(IpText::of(local.ip()).as_str().as_bytes());
    b.extend_from_slice(b"\",\"lport\":");
    b.extend_from_slice(n.format(local.port()).as_bytes());
    b.extend_from_slice(b",\"raddr\":\"");
    b.extend_from_slice(IpText::of(remote.ip()).as_str().as_bytes());
    b.extend_from_slice(b"\",\"rport\":");
    b.extend_from_slice(n.format(remote.port()).as_bytes());
}

/// `null`, or the number.
fn push_opt(b: &mut Vec<u8>, n: &mut itoa::Buffer, v: Option<impl itoa::Integer>) {
    match v {
        Some(v) => b.extend_from_slice(n.format(v).as_bytes()),
        None => b.extend_from_slice(b"null"),
    }
}

/// `null`, or a task's command as a JSON string: the one value that can
/// need escaping, and gets serde_json's.
fn push_comm(b: &mut Vec<u8>, task: Option<&Task>) -> io::Result<()> {
    match task {
        Some(task) => serde_json::to_writer(&mut *b, &*task.comm.as_str())?,
        None => b.extend_from_slice(b"null"),
    }
    Ok(())
}

/// The `timewait` object of a transition of a timewait socket. Its keys
/// are in alphabetical order, as they were when serde_json built it.
fn push_tw_note(b: &mut Vec<u8>, note: TwNote) -> io::Result<()> {
    let mut n = itoa::Buffer::new();
    match note {
        TwNote::Begins { timer_ns } | TwNote::Changes { timer_ns } => {
            b.extend_from_slice(match note {
                TwNote::Begins { .. } => b"{\"event\":\"begins\",\"timer_ns\":",
                _ => b"{\"event\":\"changes\",\"timer_ns\":",
            });
            push_opt(b, &mut n, timer_ns);
        }
        TwNote::Ends {
            reason,
            rearms,
            by,
            fin_unseen,
        } => {
            b.extend_from_slice(b"{\"by_comm\":");
            push_comm(b, by.as_ref())?;
            b.extend_from_slice(b",\"by_pid\":");
            push_opt(b, &mut n, by.map(|t| t.pid));
            b.extend_from_slice(b",\"event\":\"ends\",\"fin_unseen\":");
            b.extend_from_slice(if fin_unseen { b"true" } else { b"false" });
            b.extend_from_slice(b",\"rearms\":");
            b.extend_from_slice(n.format(rearms).as_bytes());
            b.extend_from_slice(b",\"reason\":\"");
            b.extend_from_slice(reason.name().as_bytes());
            b.push(b'"');
        }
    }
    b.push(b'}');
    Ok(())
}

impl JsonPrinter {
    /// A `closed` record. Written by hand, as transitions are: one per
    /// connection, and serde_json's derived form (which escapes every key,
    /// byte by byte), with the timewait notes' maps, took a quarter of the
    /// loop's time in `--json`.
    pub fn closed<W: io::Write>(&mut self, out: &mut W, c: &Closed) -> io::Result<()> {
        let reason = c.reset_reason.map(|r| self.reset_names.name(r));
        let b = self.begin("closed", c.ts_ns, c.sock, c.netns);
        let mut n = itoa::Buffer::new();
        b.extend_from_slice(b",\"pid\":");
        push_opt(b, &mut n, c.owner.map(|o| o.pid));
        b.extend_from_slice(b",\"comm\":");
        push_comm(b, c.owner.as_ref())?;
        push_endpoints(b, &mut n, c.local, c.remote);
        b.extend_from_slice(b",\"role\":\"");
        b.extend_from_slice(c.role.name().as_bytes());
        b.extend_from_slice(b"\",\"verdict\":\"");
        b.extend_from_slice(c.verdict.name().as_bytes());
        b.extend_from_slice(b"\",\"reset_reason\":");
        match reason {
            Some(name) => {
                b.push(b'"');
                b.extend_from_slice(name.as_bytes());
                b.push(b'"');
            }
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(b",\"syn_retransmits\":");
        b.extend_from_slice(n.format(c.syn_retransmits).as_bytes());
        b.extend_from_slice(b",\"lifetime_ns\":");
        push_opt(b, &mut n, c.lifetime_ns);
        b.extend_from_slice(b",\"states\":[");
        for (i, (state, ns)) in c.in_state.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            b.extend_from_slice(b"{\"state\":\"");
            b.extend_from_slice(state.name().as_bytes());
            b.extend_from_slice(b"\",\"ns\":");
            b.extend_from_slice(n.format(ns).as_bytes());
            b.push(b'}');
        }
        b.extend_from_slice(b"],\"missed_records\":");
        b.extend_from_slice(if c.missed { b"true" } else { b"false" });
        b.extend_from_slice(b",\"timewait\":");
        match c.timewait {
            None => b.extend_from_slice(b"null"),
            Some(tw) => {
                b.extend_from_slice(b"{\"reason\":");
                match tw.reason {
                    Some(r) => {
                        b.push(b'"');
                        b.extend_from_slice(r.name().as_bytes());
                        b.push(b'"');
                    }
                    None => b.extend_from_slice(b"null"),
                }
                b.extend_from_slice(b",\"rearms\":");
                b.extend_from_slice(n.format(tw.rearms).as_bytes());
                b.push(b'}');
            }
        }
        b.extend_from_slice(b"}\n");
        out.write_all(b)
    }

    /// A `bind_failed` record.
    pub fn bind_failed<W: io::Write>(&mut self, out: &mut W, b: &BindFailure) -> io::Result<()> {
        self.time.clear();
        self.clock.push_rfc3339(&mut self.time, b.ts_ns);
        let record = json!({
            "type": "bind_failed",
            "time": self.time,
            "ts_ns": b.ts_ns,
            "netns": b.netns,
            "pid": b.task.map(|t| t.pid),
            "tid": b.task.map(|t| t.tid),
            "comm": b.task.map(|t| t.comm.as_str().into_owned()),
            "family": family(&b.local),
            "laddr": Ip(b.local.ip()),
            "lport": b.local.port(),
            "errno": "EADDRINUSE",
        });
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")
    }

    /// A summary object, at the current time.
    pub fn summary<W: io::Write>(&mut self, out: &mut W, report: &Report) -> io::Result<()> {
        self.time.clear();
        self.clock.push_rfc3339(&mut self.time, report.at_ns);
        serde_json::to_writer(&mut *out, &summary::to_json(report, &self.time))?;
        out.write_all(b"\n")
    }

    /// A `ports_alert` record: a destination crossed 50 % or 80 % of its
    /// ports, or connects to it began to fail for lack of one.
    pub fn ports_alert<W: io::Write>(
        &mut self,
        out: &mut W,
        level: Level,
        r: &DestReport,
        netns_name: Option<&str>,
        now_mono_ns: u64,
    ) -> io::Result<()> {
        self.time.clear();
        self.clock.push_rfc3339(&mut self.time, now_mono_ns);
        let mut record = ports::dest_json(r, netns_name, &self.reset_names);
        if let Some(map) = record.as_object_mut() {
            map.insert("type".into(), json!("ports_alert"));
            map.insert("time".into(), json!(self.time));
            map.insert("ts_ns".into(), json!(now_mono_ns));
            map.insert("level".into(), json!(level.name()));
        }
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")
    }
}

fn family(addr: &SocketAddr) -> &'static str {
    match addr {
        SocketAddr::V4(_) => "ipv4",
        SocketAddr::V6(_) => "ipv6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{
            ClosedTw, Comm, ResetReason, Role, StateTimes, Task, TcpState, TimeInState, TwEnd,
            TwNote, Verdict,
        },
        render::clock::Zone,
    };

    const OFFSET: i64 = 1_795_316_645_000_000_000 - 1_000_000_000_000;

    #[test]
    fn json_snapshot() {
        let mut p = JsonPrinter::new(WallClock::with_offset(OFFSET, Zone::Utc));
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut t = Transition {
            ts_ns: 1_000_000_000_000 + 42,
            sock: 0xffff_8880_0000_1000,
            local: "[::1]:41000".parse().unwrap(),
            remote: "[::1]:8080".parse().unwrap(),
            old: TcpState::FinWait1,
            new: TcpState::FinWait2,
            in_old: TimeInState::Measured(12_345),
            task: Some(Task {
                pid: 7,
                tid: 8,
                comm: Comm::new(comm),
            }),
            owner: Some(Task {
                pid: 7,
                tid: 8,
                comm: Comm::new(comm),
            }),
            netns: 4026531840,
            timewait: None,
        };
        let mut out = Vec::new();
        p.transition(&mut out, &t).unwrap();
        t.owner = None;
        t.in_old = TimeInState::Unknown;
        p.transition(&mut out, &t).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = concat!(
            r#"{"type":"transition","time":"2026-11-22T03:04:05.000000042Z","ts_ns":1000000000042,"sock":"0xffff888000001000","netns":4026531840,"pid":7,"tid":8,"comm":"curl","ctx":"process","family":"ipv6","laddr":"::1","lport":41000,"raddr":"::1","rport":8080,"old":"FIN_WAIT1","new":"FIN_WAIT2","dur_ns":12345,"dur":"measured","timewait":null}"#,
            "\n",
            r#"{"type":"transition","time":"2026-11-22T03:04:05.000000042Z","ts_ns":1000000000042,"sock":"0xffff888000001000","netns":4026531840,"pid":null,"tid":null,"comm":null,"ctx":"process","family":"ipv6","laddr":"::1","lport":41000,"raddr":"::1","rport":8080,"old":"FIN_WAIT1","new":"FIN_WAIT2","dur_ns":null,"dur":"unknown","timewait":null}"#,
            "\n"
        );
        assert_eq!(text, expected);
    }

    /// The `timewait` object of each kind of note, with and without its
    /// optional values: an interface too.
    #[test]
    fn timewait_notes_snapshot() {
        let mut p = JsonPrinter::new(WallClock::with_offset(OFFSET, Zone::Utc));
        let mut t = Transition {
            ts_ns: 1_000_000_000_000 + 42,
            sock: 0xffff_8880_0000_2000,
            local: "10.0.0.2:41000".parse().unwrap(),
            remote: "10.0.0.1:8080".parse().unwrap(),
            old: TcpState::FinWait2,
            new: TcpState::TimeWait,
            in_old: TimeInState::Measured(30_000),
            task: None,
            owner: None,
            netns: 4026531840,
            timewait: None,
        };
        let killer = Task {
            pid: 9,
            tid: 10,
            comm: Comm::from_name("s\\s"),
        };
        let mut out = Vec::new();
        for note in [
            TwNote::Begins {
                timer_ns: Some(60_000_000_000),
            },
            TwNote::Begins { timer_ns: None },
            TwNote::Changes {
                timer_ns: Some(59_000_000_000),
            },
            TwNote::Changes { timer_ns: None },
            TwNote::Ends {
                reason: TwEnd::Expired,
                rearms: 2,
                by: None,
                fin_unseen: false,
            },
            TwNote::Ends {
                reason: TwEnd::Killed,
                rearms: 0,
                by: Some(killer),
                fin_unseen: true,
            },
        ] {
            t.timewait = Some(note);
            p.transition(&mut out, &t).unwrap();
        }
        insta::assert_snapshot!(String::from_utf8(out).unwrap());
    }

    /// The `closed` record is an interface: this snapshot changes only when
    /// fields are added.
    #[test]
    fn closed_records_snapshot() {
        let names = ResetNames::new(vec![(12, "TCP_ABORT_ON_LINGER".into())]);
        let mut p =
            JsonPrinter::new(WallClock::with_offset(OFFSET, Zone::Utc)).with_reset_names(names);
        let mut in_state = StateTimes::default();
        in_state.add(TcpState::SynSent, 75_000);
        in_state.add(TcpState::Established, 200_627_000);
        in_state.add(TcpState::FinWait1, 40_000);
        in_state.add(TcpState::FinWait2, 30_000);
        in_state.add(TcpState::TimeWait, 61_203_000_000);
        let active = Closed {
            ts_ns: 1_000_000_000_000 + 42,
            sock: 0xffff_8880_0000_1000,
            netns: 4026531840,
            local: "10.0.0.2:41000".parse().unwrap(),
            remote: "10.0.0.1:8080".parse().unwrap(),
            role: Role::Active,
            owner: Some(Task {
                pid: 7,
                tid: 8,
                comm: Comm::from_name("curl"),
            }),
            verdict: Verdict::Local,
            lifetime_ns: Some(61_403_772_000),
            in_state,
            missed: false,
            reset_reason: None,
            syn_retransmits: 0,
            timewait: Some(ClosedTw {
                reason: Some(TwEnd::Expired),
                rearms: 1,
            }),
        };
        let mut passive = active.clone();
        passive.local = "[::1]:8080".parse().unwrap();
        passive.remote = "[::ffff:10.0.0.2]:41000".parse().unwrap();
        passive.role = Role::Passive;
        passive.verdict = Verdict::Peer;
        passive.lifetime_ns = Some(200_800_000);
        passive.in_state = StateTimes::default();
        passive.in_state.add(TcpState::CloseWait, 100_000);
        passive.timewait = None;
        let mut midlife = active.clone();
        midlife.role = Role::Unknown;
        midlife.owner = None;
        midlife.verdict = Verdict::AbortReceived;
        midlife.lifetime_ns = None;
        midlife.timewait = Some(ClosedTw {
            reason: None,
            rearms: 0,
        });
        // SO_LINGER 0, and a reason this kernel does not name.
        let mut aborted = passive.clone();
        aborted.verdict = Verdict::AbortSent;
        aborted.reset_reason = Some(ResetReason(12));
        let mut unnamed = aborted.clone();
        unnamed.reset_reason = Some(ResetReason(40));
        let mut out = Vec::new();
        for c in [&active, &passive, &midlife, &aborted, &unnamed] {
            p.closed(&mut out, c).unwrap();
        }
        insta::assert_snapshot!(String::from_utf8(out).unwrap());
    }
}

#[cfg(test)]
mod ip_tests {
    use super::Ip;

    #[test]
    fn addresses_serialize_as_strings() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.4",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            let json = serde_json::to_string(&Ip(ip.parse().unwrap())).unwrap();
            assert_eq!(json, format!("\"{ip}\""));
        }
    }
}

#[cfg(test)]
mod escaping_tests {
    use super::*;
    use crate::{
        model::{Comm, Task, TcpState, TimeInState},
        render::clock::Zone,
    };

    #[test]
    fn hand_written_records_stay_valid_json() {
        let mut p = JsonPrinter::new(WallClock::with_offset(0, Zone::Utc));
        let mut raw = [0u8; 16];
        raw[..7].copy_from_slice(b"a\"b\\c\n\x01");
        let task = Task {
            pid: 1,
            tid: 2,
            comm: Comm::new(raw),
        };
        let t = Transition {
            ts_ns: 5,
            sock: 0xffff_8880_0000_0001,
            netns: 7,
            local: "10.0.0.1:80".parse().unwrap(),
            remote: "[::ffff:192.0.2.1]:5000".parse().unwrap(),
            old: TcpState::Established,
            new: TcpState::CloseWait,
            in_old: TimeInState::Measured(9),
            task: None,
            owner: Some(task),
            timewait: None,
        };
        let mut out = Vec::new();
        p.transition(&mut out, &t).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["comm"], "a\"b\\c\n\u{1}");
        assert_eq!(
            (v["laddr"].as_str(), v["lport"].as_u64()),
            (Some("10.0.0.1"), Some(80))
        );
        assert_eq!(v["raddr"], "::ffff:192.0.2.1");
        assert_eq!(
            (v["ctx"].as_str(), v["pid"].as_u64(), v["tid"].as_u64()),
            (Some("softirq"), Some(1), Some(2))
        );
        assert_eq!(v["dur_ns"], 9);
    }
}
