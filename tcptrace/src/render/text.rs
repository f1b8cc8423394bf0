//! The default live log: one fixed-width line per transition.

use std::{io, net::SocketAddr};

use crate::{
    model::{
        BindFailure, Closed, ResetNames, Task, TcpState, TimeInState, Transition, TwEnd, TwNote,
    },
    render::clock::{WallClock, push_padded},
    words::push_endpoint,
};

/// Width of an address column that fits any IPv4 endpoint ("255.255.255.255:65535").
pub const ADDR_WIDTH_V4: usize = 21;
/// Width of an address column that fits v4-mapped IPv6 endpoints and most IPv6
/// ones; longer IPv6 endpoints overflow their column rather than being cut.
pub const ADDR_WIDTH_V6: usize = 30;

pub struct TextPrinter {
    clock: WallClock,
    addr_width: usize,
    line: String,
    scratch: String,
    /// The kernel's names of the reasons for resets.
    reset_names: ResetNames,
}

impl TextPrinter {
    pub fn new(clock: WallClock, addr_width: usize) -> Self {
        Self {
            clock,
            addr_width,
            line: String::with_capacity(256),
            scratch: String::with_capacity(64),
            reset_names: ResetNames::default(),
        }
    }

    /// Names the reasons of the resets sent as the running kernel does.
    pub fn with_reset_names(mut self, names: ResetNames) -> Self {
        self.reset_names = names;
        self
    }

    pub fn header<W: io::Write>(&mut self, out: &mut W) -> io::Result<()> {
        let w = self.addr_width;
        writeln!(
            out,
            "{:<15} {:<7} {:<16} {:<w$} {:<w$} {:<12}    {:<12} {:>10}",
            "TIME", "PID", "COMM", "LOCAL", "REMOTE", "OLD", "NEW", "MS"
        )
    }

    pub fn transition<W: io::Write>(&mut self, out: &mut W, t: &Transition) -> io::Result<()> {
        self.start_line(t.ts_ns, t.owner.as_ref(), &t.local, &t.remote);
        let line = &mut self.line;
        pad(line, t.old.name(), 12);
        line.push_str(" -> ");
        pad(line, t.new.name(), 12);
        line.push(' ');
        self.scratch.clear();
        match t.in_old {
            TimeInState::Measured(ns) => push_ms(&mut self.scratch, ns),
            TimeInState::NewSocket => self.scratch.push('-'),
            TimeInState::Unknown => self.scratch.push('?'),
        }
        right(line, &self.scratch, 10);
        if let Some(note) = t.timewait {
            push_tw_note(line, t.new, note);
        }
        line.push('\n');
        out.write_all(line.as_bytes())
    }

    /// A `closed` line: `closed :: VERDICT` where the transition goes, the
    /// lifetime in the MS column, then the role and the time in each state.
    pub fn closed<W: io::Write>(&mut self, out: &mut W, c: &Closed) -> io::Result<()> {
        self.start_line(c.ts_ns, c.owner.as_ref(), &c.local, &c.remote);
        let line = &mut self.line;
        pad(line, "closed", 12);
        line.push_str(" :: ");
        pad(line, c.verdict.name(), 12);
        line.push(' ');
        self.scratch.clear();
        match c.lifetime_ns {
            Some(ns) => push_ms(&mut self.scratch, ns),
            None => self.scratch.push('?'),
        }
        right(line, &self.scratch, 10);
        line.push_str("  ");
        line.push_str(c.role.name());
        for (state, ns) in c.in_state.iter() {
            line.push(' ');
            line.push_str(state.name());
            line.push('=');
            push_ms(line, ns);
        }
        if c.missed {
            line.push_str(" records-lost");
        }
        if let Some(reason) = c.reset_reason {
            line.push_str(" reset=");
            line.push_str(&self.reset_names.name(reason));
        }
        if let Some(tw) = c.timewait {
            line.push_str(" timewait=");
            line.push_str(tw.reason.map_or("ongoing", TwEnd::name));
            if tw.rearms > 0 {
                line.push_str(" rearms=");
                line.push_str(itoa::Buffer::new().format(tw.rearms));
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())
    }

    /// A failed bind(): `bind() -> EADDRINUSE` where the transition goes.
    pub fn bind_failed<W: io::Write>(&mut self, out: &mut W, b: &BindFailure) -> io::Result<()> {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        self.start_line(b.ts_ns, b.task.as_ref(), &b.local, &nowhere);
        let line = &mut self.line;
        pad(line, "bind()", 12);
        line.push_str(" -> ");
        pad(line, "EADDRINUSE", 12);
        line.push(' ');
        right(line, "-", 10);
        line.push_str("  address in use (timewait sockets on the port? SO_REUSEADDR)\n");
        out.write_all(line.as_bytes())
    }

    /// Starts a line with TIME, PID, COMM, LOCAL and REMOTE.
    fn start_line(
        &mut self,
        ts_ns: u64,
        owner: Option<&Task>,
        local: &SocketAddr,
        remote: &SocketAddr,
    ) {
        let line = &mut self.line;
        line.clear();
        self.clock.push_time_of_day(line, ts_ns);
        line.push(' ');
        match owner {
            Some(task) => {
                pad(line, itoa::Buffer::new().format(task.pid), 7);
                line.push(' ');
                pad(line, &task.comm.as_str(), 16);
            }
            None => {
                pad(line, "-", 7);
                line.push(' ');
                pad(line, "-", 16);
            }
        }
        for addr in [local, remote] {
            line.push(' ');
            self.scratch.clear();
            push_endpoint(&mut self.scratch, addr);
            pad(line, &self.scratch, self.addr_width);
        }
        line.push(' ');
    }
}

/// What a timewait socket's line adds after the MS column.
fn push_tw_note(line: &mut String, new: TcpState, note: TwNote) {
    let timer = |line: &mut String, timer_ns: Option<u64>| {
        if let Some(ns) = timer_ns {
            line.push_str(", timer ");
            push_ms(line, ns);
            line.push_str(" ms");
        }
    };
    match note {
        TwNote::Begins { timer_ns } => {
            line.push_str(if new == TcpState::FinWait2 {
                "  timewait socket (orphan waiting for the peer's FIN)"
            } else {
                "  timewait socket"
            });
            timer(line, timer_ns);
        }
        TwNote::Changes { timer_ns } => {
            line.push_str("  timewait socket got the peer's FIN");
            timer(line, timer_ns);
        }
        TwNote::Ends {
            reason,
            rearms,
            by,
            fin_unseen,
        } => {
            line.push_str("  ");
            line.push_str(reason.name());
            if let Some(task) = by {
                line.push_str(" by ");
                line.push_str(&task.comm.as_str());
                line.push('[');
                line.push_str(itoa::Buffer::new().format(task.pid));
                line.push(']');
            }
            if rearms > 0 {
                line.push_str(", timer re-armed ");
                line.push_str(itoa::Buffer::new().format(rearms));
                line.push('x');
            }
            if fin_unseen {
                line.push_str(", was FIN_WAIT2 until the peer's FIN");
            }
        }
    }
}

/// Appends `s` right-aligned in `width` columns.
fn right(line: &mut String, s: &str, width: usize) {
    line.push_str(&SPACES[..width.saturating_sub(s.len()).min(SPACES.len())]);
    line.push_str(s);
}

const SPACES: &str = "                                                                ";

/// Appends `s` left-aligned in `width` columns (never truncated).
fn pad(line: &mut String, s: &str, width: usize) {
    line.push_str(s);
    let used = if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    };
    line.push_str(&SPACES[..width.saturating_sub(used).min(SPACES.len())]);
}

/// Appends nanoseconds as milliseconds with three decimals ("1.235").
pub(super) fn push_ms(out: &mut String, ns: u64) {
    out.push_str(itoa::Buffer::new().format(ns / 1_000_000));
    out.push('.');
    // Rounded to the microsecond below; exact values are in --json.
    push_padded(out, (ns / 1_000) % 1_000, 3);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Comm, Role, StateTimes, Task, TcpState, Verdict},
        render::clock::Zone,
    };

    const OFFSET: i64 = 1_795_316_645_000_000_000 - 1_000_000_000_000;

    fn printer(width: usize) -> TextPrinter {
        TextPrinter::new(WallClock::with_offset(OFFSET, Zone::Utc), width)
    }

    fn transition() -> Transition {
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"nginx");
        Transition {
            ts_ns: 1_000_000_000_000 + 5_000,
            sock: 0xffff_8880_0000_1000,
            local: "10.0.0.1:41000".parse().unwrap(),
            remote: "10.0.0.2:8080".parse().unwrap(),
            old: TcpState::SynSent,
            new: TcpState::Established,
            in_old: TimeInState::Measured(1_234_567),
            task: Some(Task {
                pid: 4242,
                tid: 4242,
                comm: Comm::new(comm),
            }),
            owner: Some(Task {
                pid: 4242,
                tid: 4242,
                comm: Comm::new(comm),
            }),
            netns: 1,
            timewait: None,
        }
    }

    fn render(p: &mut TextPrinter, t: &Transition) -> String {
        let mut out = Vec::new();
        p.transition(&mut out, t).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn line_snapshot() {
        let mut p = printer(ADDR_WIDTH_V4);
        let mut out = Vec::new();
        p.header(&mut out).unwrap();
        let t = transition();
        let mut softirq = t;
        softirq.task = None;
        softirq.owner = None;
        softirq.old = TcpState::Established;
        softirq.new = TcpState::CloseWait;
        softirq.in_old = TimeInState::Unknown;
        let mut new = t;
        new.old = TcpState::Close;
        new.new = TcpState::SynSent;
        new.in_old = TimeInState::NewSocket;
        new.local = "0.0.0.0:0".parse().unwrap();
        let text = String::from_utf8(out).unwrap()
            + &render(&mut p, &new)
            + &render(&mut p, &t)
            + &render(&mut p, &softirq);
        let expected = "\
TIME            PID     COMM             LOCAL                 REMOTE                OLD             NEW                  MS
03:04:05.000005 4242    nginx            *:*                   10.0.0.2:8080         CLOSE        -> SYN_SENT              -
03:04:05.000005 4242    nginx            10.0.0.1:41000        10.0.0.2:8080         SYN_SENT     -> ESTABLISHED       1.234
03:04:05.000005 -       -                10.0.0.1:41000        10.0.0.2:8080         ESTABLISHED  -> CLOSE_WAIT            ?
";
        assert_eq!(text, expected);
    }

    #[test]
    fn closed_line_snapshot() {
        let mut p = printer(ADDR_WIDTH_V4);
        let t = transition();
        let closed = Closed {
            ts_ns: t.ts_ns,
            sock: t.sock,
            netns: 1,
            local: t.local,
            remote: t.remote,
            role: Role::Active,
            owner: t.owner,
            verdict: Verdict::Local,
            lifetime_ns: Some(201_213_000),
            in_state: {
                let mut times = StateTimes::default();
                times.add(TcpState::Established, 200_627_000);
                times.add(TcpState::SynSent, 75_000);
                times
            },
            missed: false,
            reset_reason: None,
            syn_retransmits: 0,
            timewait: None,
        };
        let mut out = Vec::new();
        p.closed(&mut out, &closed).unwrap();
        let mut midlife = closed.clone();
        midlife.lifetime_ns = None;
        midlife.owner = None;
        p.closed(&mut out, &midlife).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "03:04:05.000005 4242    nginx            10.0.0.1:41000        10.0.0.2:8080         closed       :: local           201.213  active SYN_SENT=0.075 ESTABLISHED=200.627\n\
             03:04:05.000005 -       -                10.0.0.1:41000        10.0.0.2:8080         closed       :: local                 ?  active SYN_SENT=0.075 ESTABLISHED=200.627\n"
        );
    }

    #[test]
    fn columns_stay_aligned_for_ipv6() {
        let mut p = printer(ADDR_WIDTH_V6);
        let mut t = transition();
        let a = render(&mut p, &t);
        t.local = "[::ffff:192.168.100.200]:65535".parse().unwrap();
        t.remote = "[fe80::1]:1".parse().unwrap();
        let b = render(&mut p, &t);
        assert_eq!(a.len(), b.len());
        assert_eq!(a.find("SYN_SENT"), b.find("SYN_SENT"));
    }

    #[test]
    fn milliseconds() {
        let ms = |ns| {
            let mut s = String::new();
            push_ms(&mut s, ns);
            s
        };
        assert_eq!(ms(0), "0.000");
        assert_eq!(ms(999), "0.000");
        assert_eq!(ms(1_000), "0.001");
        assert_eq!(ms(61_234_567_890), "61234.567");
    }
}
