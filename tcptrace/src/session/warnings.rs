//! The one owner of the error stream: every warning a session says, one
//! line per problem, and the rate limits of those that repeat. In daemon
//! mode a journal, not a terminal, reads them: a repeating warning is said
//! at most once a minute, with the counts in between added up.

use std::{fmt, io};

use rustc_hash::FxHashMap as HashMap;

use crate::{aggregate::netns::Rise, model::PerKind};

/// In daemon mode, a repeating warning is said at most this often.
const QUIET_REPEAT_S: u64 = 60;

/// What repeats: the losses, or one namespace's timewait overflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Repeating {
    Losses,
    Overflows(u32),
}

pub struct Warnings<E> {
    out: E,
    /// Daemon mode: repeating warnings at most once a minute.
    quiet: bool,
    /// The kernel side's losses as last said.
    lost_said: PerKind,
    untracked_said: bool,
    untracked_tw_said: bool,
    /// When each repeating warning was last said (seconds).
    said_at: HashMap<Repeating, u64>,
    /// Overflows counted but not said yet, by namespace.
    overflows_unsaid: HashMap<u32, u64>,
}

impl<E: io::Write> Warnings<E> {
    pub fn new(out: E) -> Self {
        Self {
            out,
            quiet: false,
            lost_said: PerKind::default(),
            untracked_said: false,
            untracked_tw_said: false,
            said_at: HashMap::default(),
            overflows_unsaid: HashMap::default(),
        }
    }

    /// Daemon mode: repeating warnings at most once a minute each.
    pub fn quiet(&mut self) {
        self.quiet = true;
    }

    /// A line on the error stream, "tcptrace: " first. A line that cannot
    /// be written (stderr closed) is dropped: there is nowhere to say it.
    pub fn line(&mut self, message: fmt::Arguments<'_>) {
        let _ = writeln!(self.out, "tcptrace: {message}");
    }

    /// A warning: one line per problem.
    pub fn warn(&mut self, message: fmt::Arguments<'_>) {
        self.line(format_args!("warning: {message}"));
    }

    /// Records lost since the last time said, by kind.
    pub fn losses(&mut self, lost: PerKind, now_s: u64) {
        if lost.total() <= self.lost_said.total() || !self.due(Repeating::Losses, now_s) {
            return;
        }
        let said = self.lost_said;
        let kinds: Vec<String> = lost
            .iter()
            .zip(said.iter())
            .filter(|((_, now), (_, before))| now > before)
            .map(|((kind, now), (_, before))| format!("{} {}", now - before, kind.name()))
            .collect();
        self.warn(format_args!(
            "{} records lost (ring buffer full: {}; {} in total); \
             their connections' verdicts and durations are unknown where they would have told; raise --ring-size",
            lost.total() - said.total(),
            kinds.join(", "),
            lost.total(),
        ));
        self.lost_said = lost;
    }

    /// Sockets not followed (`--max-sockets` reached): said once each.
    pub fn untracked(&mut self, conns: u64, timewaits: u64) {
        if conns > 0 && !self.untracked_said {
            self.untracked_said = true;
            self.warn(format_args!(
                "already following --max-sockets sockets; \
                 others get unknown durations and no verdict (raise --max-sockets)"
            ));
        }
        if timewaits > 0 && !self.untracked_tw_said {
            self.untracked_tw_said = true;
            self.warn(format_args!(
                "already following twice --max-sockets timewait sockets; \
                 others' TIME_WAIT is not measured (raise --max-sockets)"
            ));
        }
    }

    /// A namespace's `TcpExtTCPTimeWaitOverflow` rose: connections closed
    /// without a timewait socket.
    pub fn overflows(&mut self, rise: &Rise, now_s: u64) {
        *self.overflows_unsaid.entry(rise.netns).or_default() += rise.new;
        if !self.due(Repeating::Overflows(rise.netns), now_s) {
            return;
        }
        let new = self
            .overflows_unsaid
            .remove(&rise.netns)
            .unwrap_or(rise.new);
        self.warn(format_args!(
            "netns {}: {} connections closed without a timewait socket \
             (tcp_max_tw_buckets reached, TcpExtTCPTimeWaitOverflow; {} since start)",
            rise.netns, new, rise.since_start
        ));
    }

    /// Whether a warning that repeats may be said now: always, but in
    /// daemon mode at most once every `QUIET_REPEAT_S` each.
    fn due(&mut self, what: Repeating, now_s: u64) -> bool {
        if !self.quiet {
            return true;
        }
        if self
            .said_at
            .get(&what)
            .is_some_and(|at| now_s < at + QUIET_REPEAT_S)
        {
            return false;
        }
        self.said_at.insert(what, now_s);
        true
    }

    /// What was written, for the tests.
    #[cfg(test)]
    pub fn written(&self) -> &E {
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RecordKind;

    fn said(w: &Warnings<Vec<u8>>) -> Vec<String> {
        String::from_utf8_lossy(w.written())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn lost(n: u64) -> PerKind {
        PerKind::of(&[(RecordKind::Transition, n)])
    }

    #[test]
    fn losses_are_said_as_they_grow_and_only_then() {
        let mut w = Warnings::new(Vec::new());
        w.losses(lost(0), 1);
        w.losses(lost(5), 2);
        w.losses(lost(5), 3);
        w.losses(lost(7), 4);
        let lines = said(&w);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "tcptrace: warning: 5 records lost (ring buffer full: 5 transition; 5 in total)"
            ),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("tcptrace: warning: 2 records lost"),
            "{lines:?}"
        );
    }

    #[test]
    fn quiet_says_a_repeating_warning_once_a_minute_with_the_sum() {
        let mut w = Warnings::new(Vec::new());
        w.quiet();
        let rise = |new| Rise {
            netns: 7,
            new,
            since_start: 0,
        };
        w.overflows(&rise(3), 100);
        w.overflows(&rise(4), 130);
        w.overflows(&rise(5), 159);
        w.overflows(&rise(6), 160);
        w.losses(lost(1), 100);
        w.losses(lost(2), 101);
        let lines = said(&w);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].contains("netns 7: 3 connections closed"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("netns 7: 15 connections closed"),
            "{lines:?}"
        );
        assert!(lines[2].contains("1 records lost"), "{lines:?}");
    }

    #[test]
    fn sockets_not_followed_are_said_once() {
        let mut w = Warnings::new(Vec::new());
        w.untracked(0, 0);
        w.untracked(1, 0);
        w.untracked(2, 1);
        w.untracked(3, 2);
        assert_eq!(said(&w).len(), 2);
    }
}
