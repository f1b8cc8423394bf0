//! The per-CPU ring buffers, merged back into one stream in time order.
//!
//! Each CPU writes its records to its own ring (a shared ring costs every
//! record a contended spinlock). Records of one socket can come from several
//! CPUs (its owner's system calls on one, packets in softirq on another), so
//! the agent must not process one ring after the other: [`Merger`] keeps what
//! was read and hands records out in timestamp order, but only those older
//! than a cutoff a little before the read began. A record stamped earlier
//! than that and still not readable would have been in flight (between its
//! program's clock read and its commit) for longer than the margin: programs
//! take microseconds, so that takes a stalled virtual CPU. Records within the
//! margin wait for the next drain, at most `MARGIN_NS` plus one drain
//! interval later.
//!
//! `Merger` is I/O-free and unit tested; [`Rings`] is the aya glue.

use std::{collections::VecDeque, future::poll_fn, io, task::Poll};

use aya::maps::{MapData, RingBuf};
use tcptrace_common::TransitionEvent;
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    kernel::decode,
    model::{DecodeError, Event},
};

/// How far behind the start of a read the cutoff is.
pub const MARGIN_NS: u64 = 10_000_000;

/// Drains between two looks at whether the lanes' memory can go back: ~10 s
/// at the default drain interval on a quiet host, less on a busy one (each
/// wake-up drains too), more with a longer `--drain-interval`. A lane that
/// grows for the backlog of every pause (a frame of `top`, a scrape) keeps
/// its memory rather than giving it back and faulting it in again a second
/// later.
const SHRINK_EVERY: u32 = 512;

/// Records read from each CPU's ring, not yet handed out.
#[derive(Debug, Default)]
pub struct Merger {
    lanes: Vec<VecDeque<TransitionEvent>>,
    /// The most records one lane held since the last look at shrinking.
    peak: usize,
    /// Drains since then.
    drains: u32,
}

impl Merger {
    pub fn new(lanes: usize) -> Self {
        Self {
            lanes: (0..lanes).map(|_| VecDeque::new()).collect(),
            ..Self::default()
        }
    }

    /// Adds a record read from `lane`'s ring (in that ring's order).
    pub fn push(&mut self, lane: usize, event: TransitionEvent) {
        if let Some(queue) = self.lanes.get_mut(lane) {
            queue.push_back(event);
            self.peak = self.peak.max(queue.len());
        }
    }

    /// Hands `f` the earliest record stamped before `cutoff`, in place, and
    /// drops it; `None` if there is none. Each ring is in time order already
    /// (bar programs nesting on one CPU, which a single ring has too), so this
    /// compares the lanes' first records only; ties go to the lower lane.
    pub fn pop_before<T>(
        &mut self,
        cutoff: u64,
        f: impl FnOnce(&TransitionEvent) -> T,
    ) -> Option<T> {
        let lane = self.earliest(cutoff)?;
        let queue = &mut self.lanes[lane];
        let out = queue.front().map(f);
        queue.pop_front();
        out
    }

    fn earliest(&self, cutoff: u64) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, queue) in self.lanes.iter().enumerate() {
            if let Some(front) = queue.front()
                && front.ts_ns < cutoff
                && best.is_none_or(|(_, ts)| front.ts_ns < ts)
            {
                best = Some((i, front.ts_ns));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.iter().all(VecDeque::is_empty)
    }

    /// Call after each drain: every `SHRINK_EVERY` drains, returns the
    /// memory of lanes that grew for a burst and stayed small since.
    pub fn shrink(&mut self) {
        self.drains += 1;
        if self.drains < SHRINK_EVERY {
            return;
        }
        let keep = self.peak * 2;
        for queue in &mut self.lanes {
            if queue.capacity() > 16_384 && keep < queue.capacity() / 4 {
                queue.shrink_to(keep);
            }
        }
        self.peak = 0;
        self.drains = 0;
    }
}

/// The rings, watched for wake-ups.
pub struct Rings {
    rings: Vec<AsyncFd<RingBuf<MapData>>>,
    merger: Merger,
}

impl Rings {
    /// Registers each CPU's ring with the runtime (must run inside it).
    pub fn new(rings: Vec<RingBuf<MapData>>) -> io::Result<Self> {
        let merger = Merger::new(rings.len());
        let rings = rings
            .into_iter()
            .map(|ring| {
                // SAFETY: each ring buffer owns its fd, which stays open and
                // unchanged until the AsyncFd (and with it the ring) is dropped.
                unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                    .map_err(Into::into)
            })
            .collect::<io::Result<_>>()?;
        Ok(Self { rings, merger })
    }

    /// Waits until the kernel wakes us for any ring.
    pub async fn woken(&mut self) -> io::Result<()> {
        poll_fn(|cx| {
            for ring in &mut self.rings {
                match ring.poll_read_ready_mut(cx) {
                    Poll::Ready(Ok(mut guard)) => {
                        // Cleared before the drain that follows: a wake-up
                        // arriving during it is not lost.
                        guard.clear_ready();
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Reads everything the rings hold into the merger; records too short to
    /// decode go to `bad`. Returns the cutoff for `pop_before`: now less the
    /// margin, or everything when `all` (at exit).
    pub fn read(&mut self, all: bool, mut bad: impl FnMut(DecodeError)) -> u64 {
        // Taken before reading: see the module documentation.
        let cutoff = match all {
            true => u64::MAX,
            false => crate::kernel::monotonic_ns().saturating_sub(MARGIN_NS),
        };
        for (lane, ring) in self.rings.iter_mut().enumerate() {
            let ring = ring.get_mut();
            while let Some(item) = ring.next() {
                match decode::raw(&item) {
                    Ok(event) => self.merger.push(lane, event),
                    Err(err) => bad(err),
                }
            }
        }
        cutoff
    }

    /// Decodes the next record in time order stamped before `cutoff`.
    pub fn next(&mut self, cutoff: u64) -> Option<Result<Event, DecodeError>> {
        self.merger.pop_before(cutoff, decode::from_raw)
    }

    /// Call after each drain.
    pub fn end_drain(&mut self) {
        self.merger.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts_ns: u64, skaddr: u64) -> TransitionEvent {
        TransitionEvent {
            ts_ns,
            skaddr,
            ..TransitionEvent::default()
        }
    }

    fn drain(m: &mut Merger, cutoff: u64) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| m.pop_before(cutoff, |e| (e.ts_ns, e.skaddr))).collect()
    }

    #[test]
    fn interleaves_lanes_in_time_order() {
        let mut m = Merger::new(3);
        // One socket: connect on CPU 0, its SYN-ACK in softirq on CPU 1,
        // close on CPU 0 again; another socket on CPU 2.
        m.push(0, at(10, 1));
        m.push(0, at(40, 1));
        m.push(1, at(20, 1));
        m.push(2, at(15, 2));
        m.push(2, at(20, 2));
        assert_eq!(
            drain(&mut m, u64::MAX),
            [(10, 1), (15, 2), (20, 1), (20, 2), (40, 1)]
        );
        assert!(m.is_empty());
    }

    #[test]
    fn records_within_the_margin_wait_for_the_next_read() {
        let mut m = Merger::new(2);
        m.push(0, at(100, 1));
        m.push(0, at(300, 1));
        m.push(1, at(250, 2));
        assert_eq!(drain(&mut m, 260), [(100, 1), (250, 2)]);
        assert_eq!(m.len(), 1);
        // A record of CPU 1 stamped before the one held back arrives late:
        // it still comes first.
        m.push(1, at(290, 2));
        assert_eq!(drain(&mut m, 1_000), [(290, 2), (300, 1)]);
    }

    #[test]
    fn pop_in_place_sees_the_same_record() {
        let mut m = Merger::new(2);
        m.push(1, at(5, 7));
        m.push(0, at(9, 8));
        assert_eq!(m.pop_before(100, |e| e.skaddr), Some(7));
        assert_eq!(m.pop_before(9, |e| e.skaddr), None);
        assert_eq!(m.pop_before(10, |e| e.skaddr), Some(8));
        assert!(m.is_empty());
    }

    #[test]
    fn unknown_lane_is_ignored_and_shrink_keeps_records() {
        let mut m = Merger::new(1);
        m.push(5, at(1, 1));
        assert!(m.is_empty());
        for ts in 0..100_000 {
            m.push(0, at(ts, 0));
        }
        assert_eq!(drain(&mut m, 99_990).len(), 99_990);
        let grown = m.lanes[0].capacity();
        // The burst's memory stays for the next look...
        m.shrink();
        assert_eq!(m.lanes[0].capacity(), grown);
        for _ in 1..SHRINK_EVERY {
            m.shrink();
        }
        assert_eq!(
            m.lanes[0].capacity(),
            grown,
            "the burst was seen in this window"
        );
        // ...and goes back after a whole window without one.
        for _ in 0..SHRINK_EVERY {
            m.shrink();
        }
        assert!(m.lanes[0].capacity() < grown / 4);
        assert_eq!(m.len(), 10);
        assert_eq!(m.pop_before(u64::MAX, |e| e.ts_ns), Some(99_990));
    }
}
