//! The types every stage shares: states, tasks, decoded events, the
//! conclusions about connections, and the facts handed to sinks. Nothing
//! here does I/O or imports another stage, so no stage needs another's
//! internals to speak to it.

mod closed;
mod event;
mod fact;
mod namespace;
mod records;
mod reset;
mod service;
mod socket;
pub(crate) mod state;
mod task;

#[cfg(test)]
pub(crate) mod fixtures;

pub use closed::{Closed, ClosedTw, Role, StateTimes, Verdict};
pub use event::{
    BindFailure, Counted, DecodeError, Event, Reading, Reset, ResetDirection, Retransmits,
    StateChange, Transition, TwAction, TwEnd, TwEvent, TwNote,
};
pub use fact::{Fact, Sink};
pub use namespace::{COUNTERS, ListenerSample, NetnsName, Sysctls, Values};
pub use records::{Losses, PerKind, RecordKind};
pub use reset::{ReasonCounts, ResetNames, ResetReason};
pub use service::{Pids, Service, ServiceSockets};
pub use socket::{Existing, Listed, Open, TwCount, TwSeed, TwSocket};
pub use state::{TcpState, TimeInState};
pub use task::{Comm, Task};
