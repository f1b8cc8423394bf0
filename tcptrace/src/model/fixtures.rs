//! Test fixtures every stage's unit tests share: tasks, and state changes
//! as the decoder hands them over.

use crate::model::{Comm, StateChange, Task, TcpState, Transition};

pub(crate) fn task(pid: u32, name: &str) -> Task {
    Task {
        pid,
        tid: pid,
        comm: Comm::from_name(name),
    }
}

/// Builds state changes the way the kernel reports them, 1 µs apart.
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
    ) -> StateChange {
        self.ts += 1_000;
        StateChange {
            ts_ns: self.ts,
            sock,
            netns: 1,
            local: local.parse().expect("a socket address"),
            remote: remote.parse().expect("a socket address"),
            old,
            new,
            task,
        }
    }

    /// A transition as concluded where nothing more is known than the
    /// change itself: its owner the task, its time in state unmeasured.
    pub(crate) fn tr(
        &mut self,
        sock: u64,
        local: &str,
        remote: &str,
        old: TcpState,
        new: TcpState,
        task: Option<Task>,
    ) -> Transition {
        let c = self.t(sock, local, remote, old, new, task);
        c.concluded(c.unmeasured_in_old(), task)
    }
}
