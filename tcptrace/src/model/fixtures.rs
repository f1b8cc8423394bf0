//! Test fixtures every stage's unit tests share: tasks, and state changes
//! as the decoder hands them over.

use crate::model::{Closed, Comm, Role, StateChange, Task, TcpState, Transition, Verdict};

/// A connection `owner` opened toward 10.0.0.2:80, closed at 1 ns.
pub(crate) fn closed(owner: Task, verdict: Verdict) -> Closed {
    Closed {
        ts_ns: 1,
        sock: 1,
        netns: 1,
        local: "10.0.0.1:40000".parse().unwrap(),
        remote: "10.0.0.2:80".parse().unwrap(),
        role: Role::Active,
        owner: Some(owner),
        verdict,
        lifetime_ns: Some(1),
        in_state: Default::default(),
        missed: false,
        reset_reason: None,
        syn_retransmits: 0,
        timewait: None,
    }
}

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
