//! Open connections grouped by their current state, with the one that has
//! been in its state the longest (a CLOSE_WAIT that never closes shows here).

use std::net::SocketAddr;

use crate::model::{Comm, Open, ServiceSockets, TcpState};

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

/// How long `o` has been in its state at `now_ns`: from its transition into
/// it, or, for a socket found at start-up, at least since
/// `existing_since_ns`, when it was known to exist. The one rule every
/// table of open sockets uses.
pub fn age_ns(o: &Open<'_>, now_ns: u64, existing_since_ns: Option<u64>) -> Option<u64> {
    o.since_ns
        .or(existing_since_ns)
        .map(|since| now_ns.saturating_sub(since))
}

/// Groups open connections by state, oldest first within each.
pub fn open_by_state<'a>(
    open: impl Iterator<Item = Open<'a>>,
    now_ns: u64,
    existing_since_ns: Option<u64>,
) -> Vec<OpenState> {
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
        if let Some(age) = age_ns(&o, now_ns, existing_since_ns)
            && entry.oldest.as_ref().is_none_or(|(a, _)| age > *a)
        {
            let conn = OpenConn {
                local: o.local,
                remote: o.remote,
                netns: o.netns,
                owner: o.owner.map(|t| (t.pid, t.comm)),
            };
            entry.oldest = Some((age, conn));
        }
    }
    states.sort_by_key(|s| s.state);
    states
}

/// Open sockets of one namespace in one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketsRow {
    pub netns: u32,
    pub state: TcpState,
    pub count: u64,
    /// How long the oldest of them has been in that state (ns), if known.
    pub oldest_ns: Option<u64>,
}

/// Counts open connections by namespace and state, with the age of the
/// oldest of each, in (namespace, state) order.
pub fn sockets_by_netns<'a>(
    open: impl Iterator<Item = Open<'a>>,
    now_ns: u64,
    existing_since_ns: Option<u64>,
) -> Vec<SocketsRow> {
    let mut rows: std::collections::BTreeMap<(u32, TcpState), SocketsRow> = Default::default();
    for o in open {
        let row = rows.entry((o.netns, o.state)).or_insert(SocketsRow {
            netns: o.netns,
            state: o.state,
            count: 0,
            oldest_ns: None,
        });
        row.count += 1;
        row.oldest_ns = row.oldest_ns.max(age_ns(&o, now_ns, existing_since_ns));
    }
    rows.into_values().collect()
}

/// Connections in CLOSE_WAIT of one service (or of owners unknown, in one
/// namespace): a pile that grows when an application does not close after
/// its peers did.
#[derive(Clone, Debug, PartialEq)]
pub struct Pile {
    /// Whose, and how many.
    pub sockets: ServiceSockets,
    /// How long the oldest has been in CLOSE_WAIT; for those found in it at
    /// start-up, at least since then (0 if neither is known).
    pub oldest_age_s: f64,
    /// The peers most of them were connected to (address, port 0), most
    /// first, at most 3.
    pub peers: Vec<(SocketAddr, u64)>,
}

/// Groups the connections in CLOSE_WAIT by service, largest pile first. `existing_since_ns`: when those of unknown age (found at
/// start-up) were known to exist, so that their age counts from then.
pub fn close_wait_piles<'a>(
    open: impl Iterator<Item = Open<'a>>,
    now_ns: u64,
    existing_since_ns: Option<u64>,
) -> Vec<Pile> {
    type Key = (u32, Option<Comm>);
    let mut piles: std::collections::HashMap<
        Key,
        (Pile, std::collections::HashMap<SocketAddr, u64>),
    > = std::collections::HashMap::new();
    for o in open.filter(|o| o.state == TcpState::CloseWait) {
        let key = ServiceSockets::key(o.netns, o.owner);
        let (pile, peers) = piles.entry(key).or_insert_with(|| {
            (
                Pile {
                    sockets: ServiceSockets::new(key),
                    oldest_age_s: 0.0,
                    peers: Vec::new(),
                },
                std::collections::HashMap::new(),
            )
        });
        pile.sockets.add(o.owner);
        if let Some(age) = age_ns(&o, now_ns, existing_since_ns) {
            pile.oldest_age_s = pile.oldest_age_s.max(age as f64 / 1e9);
        }
        if peers.len() < 1024 {
            *peers.entry(SocketAddr::new(o.remote.ip(), 0)).or_default() += 1;
        }
    }
    let mut out: Vec<Pile> = piles
        .into_values()
        .map(|(mut pile, peers)| {
            let mut peers: Vec<(SocketAddr, u64)> = peers.into_iter().collect();
            peers.sort_by_key(|(addr, n)| (std::cmp::Reverse(*n), *addr));
            peers.truncate(3);
            pile.peers = peers;
            pile
        })
        .collect();
    out.sort_by_key(|p| (std::cmp::Reverse(p.sockets.count), p.sockets.netns));
    out
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
        let states = open_by_state(open.into_iter(), 1_000, None);
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].state, TcpState::Established);
        assert_eq!(states[0].oldest, None);
        let (age, conn) = states[1].oldest.clone().unwrap();
        assert_eq!((states[1].count, age, conn.remote.port()), (2, 950, 3));
    }

    /// A socket found at start-up in CLOSE_WAIT: the summary's table, the
    /// metrics' rows and the findings' piles give it the same age, counted
    /// from when it was known to exist.
    #[test]
    fn every_table_ages_a_socket_found_at_start_up_alike() {
        let open = || {
            [Open {
                state: TcpState::CloseWait,
                since_ns: None,
                local: "1.1.1.1:1".parse().unwrap(),
                remote: "2.2.2.2:2".parse().unwrap(),
                netns: 4,
                owner: None,
                role: Role::Passive,
            }]
            .into_iter()
        };
        let (now, since) = (90_000_000_000, Some(30_000_000_000));
        let by_state = open_by_state(open(), now, since);
        let by_netns = sockets_by_netns(open(), now, since);
        let piles = close_wait_piles(open(), now, since);
        assert_eq!(
            by_state[0].oldest.as_ref().map(|o| o.0),
            Some(60_000_000_000)
        );
        assert_eq!(by_netns[0].oldest_ns, Some(60_000_000_000));
        assert_eq!(piles[0].oldest_age_s, 60.0);
    }

    #[test]
    fn close_wait_piles_by_service_with_age_and_peers() {
        // Two processes of one program: one pile.
        let (app, worker, other) = (task(7, "app"), task(9, "app"), task(8, "other"));
        let open = |owner, remote: &str, since: Option<u64>| Open {
            state: TcpState::CloseWait,
            since_ns: since,
            local: "10.0.0.1:8080".parse().unwrap(),
            remote: remote.parse().unwrap(),
            netns: 1,
            owner,
            role: Role::Passive,
        };
        let all = [
            open(Some(&app), "10.0.0.3:5000", Some(1_000_000_000)),
            open(Some(&app), "10.0.0.3:5001", Some(40_000_000_000)),
            open(Some(&worker), "10.0.0.4:5000", None),
            open(Some(&other), "10.0.0.5:5000", Some(49_000_000_000)),
        ];
        let piles = close_wait_piles(all.into_iter(), 50_000_000_000, None);
        assert_eq!(piles.len(), 2);
        let app = &piles[0].sockets;
        assert_eq!(app.count, 3);
        assert_eq!(app.comm.unwrap().as_str(), "app");
        assert_eq!(app.pids.examples(), [7, 9]);
        assert_eq!(piles[0].oldest_age_s, 49.0);
        assert_eq!(piles[0].peers[0], ("10.0.0.3:0".parse().unwrap(), 2));
        assert_eq!(piles[1].oldest_age_s, 1.0);
        // One found in CLOSE_WAIT at start-up (t = 0.5 s): at least 49.5 s old.
        let piles = close_wait_piles(all.into_iter(), 50_000_000_000, Some(500_000_000));
        assert_eq!(piles[0].oldest_age_s, 49.5);
    }
}
