//! Open connections grouped by their current state, with the one that has
//! been in its state the longest (a CLOSE_WAIT that never closes shows here).

use std::net::SocketAddr;

use crate::model::{Comm, Open, TcpState};

/// Open connections in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenState {
    pub state: TcpState,
    pub count: u64,
    /// The one that has been in this state the longest, with its age.
    pub oldest: Option<(u64, OpenConn)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenConn {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub netns: u32,
    pub owner: Option<(u32, Comm)>,
}

/// Groups open connections by state, oldest first within each.
pub fn open_by_state<'a>(open: impl Iterator<Item = Open<'a>>, now_ns: u64) -> Vec<OpenState> {
    let mut states: Vec<OpenState> = Vec::new();
    for o in open {
        let entry = match states.iter_mut().find(|s| s.state == o.state) {
            Some(entry) => entry,
            None => {
                states.push(OpenState {
                    state: o.state,
                    count: 0,
                    oldest: None,
                });
                states.last_mut().expect("just pushed")
            }
        };
        entry.count += 1;
        if let Some(since) = o.since_ns {
            let age = now_ns.saturating_sub(since);
            if entry.oldest.as_ref().is_none_or(|(a, _)| age > *a) {
                let conn = OpenConn {
                    local: o.local,
                    remote: o.remote,
                    netns: o.netns,
                    owner: o.owner.map(|t| (t.pid, t.comm)),
                };
                entry.oldest = Some((age, conn));
            }
        }
    }
    states.sort_by_key(|s| s.state);
    states
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Role, fixtures::task};

    #[test]
    fn open_connections_by_state() {
        let a = task(7, "srv");
        let open = [
            Open {
                state: TcpState::CloseWait,
                since_ns: Some(100),
                local: "1.1.1.1:1".parse().unwrap(),
                remote: "2.2.2.2:2".parse().unwrap(),
                netns: 1,
                owner: Some(&a),
                role: Role::Passive,
            },
            Open {
                state: TcpState::CloseWait,
                since_ns: Some(50),
                local: "1.1.1.1:1".parse().unwrap(),
                remote: "2.2.2.2:3".parse().unwrap(),
                netns: 1,
                owner: None,
                role: Role::Passive,
            },
            Open {
                state: TcpState::Established,
                since_ns: None,
                local: "1.1.1.1:1".parse().unwrap(),
                remote: "2.2.2.2:4".parse().unwrap(),
                netns: 1,
                owner: None,
                role: Role::Passive,
            },
        ];
        let states = open_by_state(open.into_iter(), 1_000);
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].state, TcpState::Established);
        assert_eq!(states[0].oldest, None);
        let (age, conn) = states[1].oldest.clone().unwrap();
        assert_eq!((states[1].count, age, conn.remote.port()), (2, 950, 3));
    }
}
