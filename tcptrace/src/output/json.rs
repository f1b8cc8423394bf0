//! `--json`: one JSON object per line. Field names are part of the interface
//! (documented in README.md); add fields, never rename them.

use std::{io, net::SocketAddr};

use serde::Serialize;

use crate::{
    clock::WallClock,
    conn::{Closed, StateTimes},
    event::Transition,
    output::summary::{self, Report},
};

pub struct JsonPrinter {
    clock: WallClock,
    time: String,
}

/// The kernel socket address as "0xffff…": a string, because JSON numbers
/// above 2^53 lose precision in many parsers.
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// An address as a JSON string; IPv4 formatted by hand (see `push_endpoint`).
struct Ip(std::net::IpAddr);

impl Serialize for Ip {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            std::net::IpAddr::V4(v4) => {
                let mut buf = [0u8; 15];
                let mut len = 0;
                let mut digits = itoa::Buffer::new();
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        buf[len] = b'.';
                        len += 1;
                    }
                    let d = digits.format(octet).as_bytes();
                    buf[len..len + d.len()].copy_from_slice(d);
                    len += d.len();
                }
                // Only ASCII digits and dots were written.
                s.serialize_str(std::str::from_utf8(&buf[..len]).unwrap_or_default())
            }
            std::net::IpAddr::V6(v6) => s.collect_str(&v6),
        }
    }
}

#[derive(Serialize)]
struct Record<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: &'a str,
    ts_ns: u64,
    sock: Hex,
    netns: u32,
    pid: Option<u32>,
    tid: Option<u32>,
    comm: Option<&'a str>,
    ctx: &'static str,
    family: &'static str,
    laddr: Ip,
    lport: u16,
    raddr: Ip,
    rport: u16,
    old: &'static str,
    new: &'static str,
    dur_ns: Option<u64>,
    dur: &'static str,
}

impl JsonPrinter {
    pub fn new(clock: WallClock) -> Self {
        Self {
            clock,
            time: String::with_capacity(40),
        }
    }

    pub fn transition<W: io::Write>(&mut self, out: &mut W, t: &Transition) -> io::Result<()> {
        self.time.clear();
        self.clock.push_rfc3339(&mut self.time, t.ts_ns);
        let comm = t.owner.as_ref().map(|task| task.comm.as_str());
        let record = Record {
            kind: "transition",
            time: &self.time,
            ts_ns: t.ts_ns,
            sock: Hex(t.sock),
            netns: t.netns,
            pid: t.owner.map(|task| task.pid),
            tid: t.owner.map(|task| task.tid),
            comm: comm.as_deref(),
            ctx: if t.task.is_some() {
                "process"
            } else {
                "softirq"
            },
            family: family(&t.local),
            laddr: Ip(t.local.ip()),
            lport: t.local.port(),
            raddr: Ip(t.remote.ip()),
            rport: t.remote.port(),
            old: t.old.name(),
            new: t.new.name(),
            dur_ns: t.in_old.ns(),
            dur: t.in_old.kind(),
        };
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")
    }
}

#[derive(Serialize)]
struct StateTime {
    state: &'static str,
    ns: u64,
}

#[derive(Serialize)]
struct ClosedRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: &'a str,
    ts_ns: u64,
    sock: Hex,
    netns: u32,
    pid: Option<u32>,
    comm: Option<&'a str>,
    family: &'static str,
    laddr: Ip,
    lport: u16,
    raddr: Ip,
    rport: u16,
    role: &'static str,
    verdict: &'static str,
    lifetime_ns: Option<u64>,
    states: States<'a>,
}

/// Time per state as a JSON array of {state, ns}, written without collecting.
struct States<'a>(&'a StateTimes);

impl Serialize for States<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(state, ns)| StateTime {
            state: state.name(),
            ns,
        }))
    }
}

impl JsonPrinter {
    pub fn closed<W: io::Write>(&mut self, out: &mut W, c: &Closed) -> io::Result<()> {
        self.time.clear();
        self.clock.push_rfc3339(&mut self.time, c.ts_ns);
        let comm = c.owner.as_ref().map(|task| task.comm.as_str());
        let record = ClosedRecord {
            kind: "closed",
            time: &self.time,
            ts_ns: c.ts_ns,
            sock: Hex(c.sock),
            netns: c.netns,
            pid: c.owner.map(|o| o.pid),
            comm: comm.as_deref(),
            family: family(&c.local),
            laddr: Ip(c.local.ip()),
            lport: c.local.port(),
            raddr: Ip(c.remote.ip()),
            rport: c.remote.port(),
            role: c.role.name(),
            verdict: c.verdict.name(),
            lifetime_ns: c.lifetime_ns,
            states: States(&c.in_state),
        };
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")
    }

    /// A summary object, at the current time.
    pub fn summary<W: io::Write>(
        &mut self,
        out: &mut W,
        report: &Report<'_>,
        now_mono_ns: u64,
    ) -> io::Result<()> {
        self.time.clear();
        self.clock.push_rfc3339(&mut self.time, now_mono_ns);
        serde_json::to_writer(&mut *out, &summary::to_json(report, &self.time))?;
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
        clock::Zone,
        event::{Comm, Task, TcpState, TimeInState},
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
        };
        let mut out = Vec::new();
        p.transition(&mut out, &t).unwrap();
        t.owner = None;
        t.in_old = TimeInState::Unknown;
        p.transition(&mut out, &t).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = concat!(
            r#"{"type":"transition","time":"2026-11-22T03:04:05.000000042Z","ts_ns":1000000000042,"sock":"0xffff888000001000","netns":4026531840,"pid":7,"tid":8,"comm":"curl","ctx":"process","family":"ipv6","laddr":"::1","lport":41000,"raddr":"::1","rport":8080,"old":"FIN_WAIT1","new":"FIN_WAIT2","dur_ns":12345,"dur":"measured"}"#,
            "\n",
            r#"{"type":"transition","time":"2026-11-22T03:04:05.000000042Z","ts_ns":1000000000042,"sock":"0xffff888000001000","netns":4026531840,"pid":null,"tid":null,"comm":null,"ctx":"process","family":"ipv6","laddr":"::1","lport":41000,"raddr":"::1","rport":8080,"old":"FIN_WAIT1","new":"FIN_WAIT2","dur_ns":null,"dur":"unknown"}"#,
            "\n"
        );
        assert_eq!(text, expected);
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
