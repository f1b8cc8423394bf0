//! What the pipeline hands its sinks, and the one trait every sink
//! (printers, aggregates) implements. A sink sees only facts that passed the
//! filters, in the order they happened.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
};

use crate::model::{BindFailure, Closed, Retransmits, Task, Transition};

/// One thing that happened, as the trackers concluded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact<'a> {
    /// A state transition, with its owner and time in the old state; those
    /// of timewait sockets (TIME_WAIT begins, changes, ends) carry `timewait`.
    Transition(&'a Transition),
    /// A connection's full socket closed: its verdict is final. Its record
    /// may still grow (its timewait socket's time) until [`Fact::Record`].
    Closed(&'a Closed),
    /// A connection's record is complete: nothing more will be added to it.
    /// Follows its [`Fact::Closed`], at once or when its timewait socket ends.
    Record(&'a Closed),
    /// A bind() failed: the address was in use.
    BindFailed(&'a BindFailure),
    /// Segments retransmitted toward a remote, as the kernel side counted
    /// them since the last reading.
    Retransmits(&'a Retransmits),
}

/// The remote end of what has none (a bind()).
const NO_REMOTE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

impl Fact<'_> {
    /// The socket the fact is about, as the filters see it:
    /// (owner, local, remote, netns).
    pub fn socket(&self) -> (Option<&Task>, &SocketAddr, &SocketAddr, u32) {
        match self {
            Self::Transition(t) => (t.owner.as_ref(), &t.local, &t.remote, t.netns),
            Self::Closed(c) | Self::Record(c) => (c.owner.as_ref(), &c.local, &c.remote, c.netns),
            Self::BindFailed(b) => (b.task.as_ref(), &b.local, &NO_REMOTE, b.netns),
            Self::Retransmits(r) => (None, &r.local, &r.remote, r.netns),
        }
    }
}

/// A consumer of facts: a printer, an aggregate.
pub trait Sink {
    fn fact(&mut self, fact: Fact<'_>) -> io::Result<()>;
}

/// Two sinks fed the same facts, the first first.
impl<A: Sink, B: Sink> Sink for (A, B) {
    fn fact(&mut self, fact: Fact<'_>) -> io::Result<()> {
        self.0.fact(fact)?;
        self.1.fact(fact)
    }
}

/// A sink that may be off (a printer with `--summary`).
impl<S: Sink> Sink for Option<S> {
    fn fact(&mut self, fact: Fact<'_>) -> io::Result<()> {
        match self {
            Some(sink) => sink.fact(fact),
            None => Ok(()),
        }
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn fact(&mut self, fact: Fact<'_>) -> io::Result<()> {
        (**self).fact(fact)
    }
}
