//! Test fixtures every stage's unit tests share: tasks and transitions as
//! the decoder hands them over.

use crate::model::{Comm, Task, TcpState, TimeInState, Transition};

pub(crate) fn task(pid: u32, name: &str) -> Task {
    Task {
        pid,
        tid: pid,
        comm: Comm::from_name(name),
    }
}

/// Builds transitions the way the kernel reports them, 1 µs apart.
pub(crate) struct Script {
    pub ts: u64,
}

impl Script {
    pub(crate) fn t(
        &mut self,
        sock: u64,
        local: &str,
        remote: &str,
        old: TcpState,
        new: TcpState,
        task: Option<Task>,
    ) -> Transition {
        self.ts += 1_000;
        Transition {
            ts_ns: self.ts,
            sock,
            netns: 1,
            local: local.parse().expect("a socket address"),
            remote: remote.parse().expect("a socket address"),
            old,
            new,
            // As decoded: the tracker measures the rest.
            in_old: if Transition::opens(old, new) {
                TimeInState::NewSocket
            } else {
                TimeInState::Unknown
            },
            task,
            owner: task,
            timewait: None,
        }
    }
}
