//! The agent's main loop: drain the ring buffer (when woken, and periodically),
//! print, watch the loss counters, stop on a signal or a closed stdout.

use std::{
    fmt, io,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    bpf::{BpfError, Counters, Tracer},
    event::Transition,
    output::Printer,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot watch the ring buffer: {0}")]
    Poll(io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("writing output failed: {0}")]
    Output(io::Error),
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

/// How the run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// SIGINT or SIGTERM: print the summary.
    Signal,
    /// The reader of stdout went away: exit quietly.
    BrokenPipe,
}

/// What the exit summary reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub transitions: u64,
    pub counters: Counters,
    pub recursion_misses: u64,
    pub undecodable: u64,
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} transitions in {:.1} s, {} lost (ring buffer full)",
            self.transitions,
            self.elapsed.as_secs_f64(),
            self.counters.lost
        )?;
        if self.recursion_misses > 0 {
            write!(
                f,
                ", {} missed by the kernel (BPF recursion)",
                self.recursion_misses
            )?;
        }
        if self.counters.track_full > 0 {
            write!(
                f,
                ", {} sockets untracked (tracking map full)",
                self.counters.track_full
            )?;
        }
        if self.undecodable > 0 {
            write!(f, ", {} undecodable records", self.undecodable)?;
        }
        Ok(())
    }
}

pub struct Agent<W: io::Write> {
    tracer: Tracer,
    printer: Printer,
    out: W,
    drain_interval: Duration,
    verbose: bool,
    transitions: u64,
    undecodable: u64,
    reported: Counters,
}

impl<W: io::Write> Agent<W> {
    pub fn new(
        tracer: Tracer,
        printer: Printer,
        out: W,
        drain_interval: Duration,
        verbose: bool,
    ) -> Self {
        Self {
            tracer,
            printer,
            out,
            drain_interval,
            verbose,
            transitions: 0,
            undecodable: 0,
            reported: Counters::default(),
        }
    }

    /// Runs until a signal or a closed stdout. Must be called inside a tokio
    /// runtime with I/O and time enabled.
    pub async fn run(&mut self, events: RingBuf<MapData>) -> Result<(Ending, Summary), AgentError> {
        let started = Instant::now();
        // SAFETY: the ring buffer owns its fd, which stays open and unchanged
        // until the AsyncFd (and with it the ring buffer) is dropped.
        let mut events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|e| AgentError::Poll(e.into()))?;
        let mut logger = match self.verbose {
            // SAFETY: as above, for the aya-log ring buffer.
            true => self.tracer.logger().and_then(|l| {
                unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }.ok()
            }),
            false => None,
        };
        let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
        let mut drain_tick = interval(self.drain_interval);
        drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut counters_tick = interval(Duration::from_secs(1));
        counters_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

        if let Err(err) = self
            .printer
            .header(&mut self.out)
            .and_then(|()| self.out.flush())
        {
            return self.output_failed(err, started);
        }
        let ending = loop {
            let drained = tokio::select! {
                guard = events.readable_mut() => {
                    let mut guard = guard.map_err(AgentError::Poll)?;
                    let result = self.drain(guard.get_inner_mut());
                    guard.clear_ready();
                    result
                }
                _ = drain_tick.tick() => self.drain(events.get_mut()),
                _ = counters_tick.tick() => {
                    self.report_losses()?;
                    Ok(())
                }
                Some(guard) = async { match logger.as_mut() { Some(l) => l.readable_mut().await.ok(), None => std::future::pending().await } } => {
                    let mut guard = guard;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                    Ok(())
                }
                _ = sigint.recv() => break Ending::Signal,
                _ = sigterm.recv() => break Ending::Signal,
            };
            if let Err(err) = drained {
                return self.output_failed(err, started);
            }
        };
        // Whatever arrived before the signal is still printed.
        if let Err(err) = self.drain(events.get_mut()) {
            return self.output_failed(err, started);
        }
        Ok((ending, self.summary(started)?))
    }

    fn output_failed(
        &self,
        err: io::Error,
        started: Instant,
    ) -> Result<(Ending, Summary), AgentError> {
        match err.kind() {
            io::ErrorKind::BrokenPipe => Ok((Ending::BrokenPipe, self.summary(started)?)),
            _ => Err(AgentError::Output(err)),
        }
    }

    /// Prints every pending record, then flushes once.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> io::Result<()> {
        while let Some(item) = ring.next() {
            match Transition::decode(&item) {
                Ok(t) => {
                    self.transitions += 1;
                    self.printer.transition(&mut self.out, &t)?;
                }
                Err(err) => {
                    if self.undecodable == 0 {
                        log::warn!("skipping an undecodable record: {err}");
                    }
                    self.undecodable += 1;
                }
            }
        }
        self.out.flush()
    }

    /// Says on stderr when the kernel side had to drop transitions.
    fn report_losses(&mut self) -> Result<(), AgentError> {
        let now = self.tracer.counters()?;
        if now.lost > self.reported.lost {
            eprintln!(
                "tcptrace: warning: {} transitions lost (ring buffer full, {} in total); raise --ring-size",
                now.lost - self.reported.lost,
                now.lost
            );
        }
        if now.track_full > self.reported.track_full && self.reported.track_full == 0 {
            eprintln!("tcptrace: warning: socket tracking map full; raise --max-sockets");
        }
        self.reported = now;
        Ok(())
    }

    fn summary(&self, started: Instant) -> Result<Summary, AgentError> {
        Ok(Summary {
            transitions: self.transitions,
            counters: self.tracer.counters()?,
            recursion_misses: self.tracer.recursion_misses(),
            undecodable: self.undecodable,
            elapsed: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let mut s = Summary {
            transitions: 1234,
            counters: Counters {
                lost: 5,
                track_full: 0,
            },
            elapsed: Duration::from_millis(12_345),
            ..Summary::default()
        };
        assert_eq!(
            s.to_string(),
            "1234 transitions in 12.3 s, 5 lost (ring buffer full)"
        );
        s.recursion_misses = 2;
        s.counters.track_full = 7;
        s.undecodable = 1;
        assert_eq!(
            s.to_string(),
            "1234 transitions in 12.3 s, 5 lost (ring buffer full), 2 missed by the kernel (BPF recursion), \
             7 sockets untracked (tracking map full), 1 undecodable records"
        );
    }
}
