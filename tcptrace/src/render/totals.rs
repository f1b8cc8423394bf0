//! The one line tcptrace ends with on stderr: what was seen, what was lost
//! and why, what could not be followed.

use std::fmt;

use crate::report::Totals;

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} transitions in {:.1} s",
            self.transitions,
            self.elapsed.as_secs_f64(),
        )?;
        if self.timewait_transitions > 0 {
            write!(
                f,
                " (and {} of timewait sockets, from the kernel's timers)",
                self.timewait_transitions
            )?;
        }
        write!(f, ", {} lost (ring buffer full", self.lost.total())?;
        let mut sep = ": ";
        for (kind, n) in self.lost.iter().filter(|(_, n)| *n > 0) {
            write!(f, "{sep}{n} {}", kind.name())?;
            sep = ", ";
        }
        f.write_str(")")?;
        if self.recursion_misses > 0 {
            write!(
                f,
                ", {} missed by the kernel (BPF recursion)",
                self.recursion_misses
            )?;
        }
        if self.untracked_conns > 0 {
            write!(
                f,
                ", {} connections not followed (--max-sockets)",
                self.untracked_conns
            )?;
        }
        if self.untracked_timewaits > 0 {
            write!(
                f,
                ", {} timewait sockets not followed (twice --max-sockets)",
                self.untracked_timewaits
            )?;
        }
        if self.undecodable > 0 {
            write!(f, ", {} undecodable records", self.undecodable)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn exit_line_without_losses() {
        let s = Totals {
            transitions: 9,
            elapsed: Duration::from_secs(1),
            ..Totals::default()
        };
        assert_eq!(
            s.to_string(),
            "9 transitions in 1.0 s, 0 lost (ring buffer full)"
        );
    }

    #[test]
    fn exit_line() {
        let mut s = Totals {
            transitions: 1234,
            lost: crate::model::PerKind::of(&[
                (crate::model::RecordKind::Transition, 4),
                (crate::model::RecordKind::ResetSent, 1),
            ]),
            elapsed: Duration::from_millis(12_345),
            ..Totals::default()
        };
        assert_eq!(
            s.to_string(),
            "1234 transitions in 12.3 s, 5 lost (ring buffer full: 4 transition, 1 reset_sent)"
        );
        // Timewait sockets found at start-up that expired: printed too, so
        // said too (not "0 transitions" after thousands of lines).
        s.timewait_transitions = 15_313;
        assert_eq!(
            s.to_string(),
            "1234 transitions in 12.3 s (and 15313 of timewait sockets, from the kernel's timers), \
             5 lost (ring buffer full: 4 transition, 1 reset_sent)"
        );
        s.timewait_transitions = 0;
        s.recursion_misses = 2;
        s.untracked_conns = 7;
        s.untracked_timewaits = 3;
        s.undecodable = 1;
        assert_eq!(
            s.to_string(),
            "1234 transitions in 12.3 s, 5 lost (ring buffer full: 4 transition, 1 reset_sent), 2 missed by the kernel (BPF recursion), \
             7 connections not followed (--max-sockets), 3 timewait sockets not followed (twice --max-sockets), \
             1 undecodable records"
        );
    }
}
