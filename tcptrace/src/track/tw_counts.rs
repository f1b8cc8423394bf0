//! Live timewait sockets per network namespace, by substate: what
//! `ss -tan state time-wait` would count now, kept as the timewait tracker
//! sees sockets begin, change and end (and those found at start-up).

use std::collections::BTreeMap;

use crate::model::{TcpState, TwCount};

fn slot(count: &mut TwCount, substate: TcpState) -> &mut u64 {
    match substate {
        TcpState::FinWait2 => &mut count.fin_wait2,
        _ => &mut count.time_wait,
    }
}

/// Counts by namespace. Every change goes through `enter` and `leave`.
#[derive(Debug, Default)]
pub struct LiveCounts {
    by_netns: BTreeMap<u32, TwCount>,
}

impl LiveCounts {
    /// A timewait socket in `substate` appeared in `netns`.
    pub fn enter(&mut self, netns: u32, substate: TcpState) {
        *slot(self.by_netns.entry(netns).or_default(), substate) += 1;
    }

    /// A timewait socket in `substate` left `netns` (ended, or changed
    /// substate: then `enter` follows).
    pub fn leave(&mut self, netns: u32, substate: TcpState) {
        let n = slot(self.by_netns.entry(netns).or_default(), substate);
        // Every leave has its enter; saturating keeps a bookkeeping slip
        // from wrapping the count in release builds.
        debug_assert!(*n > 0, "timewait count of netns {netns} below zero");
        *n = n.saturating_sub(1);
    }

    /// Namespaces with live timewait sockets, in inode order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, TwCount)> + '_ {
        self.by_netns
            .iter()
            .filter(|(_, c)| c.time_wait + c.fin_wait2 > 0)
            .map(|(netns, c)| (*netns, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_leave_and_change() {
        let mut live = LiveCounts::default();
        live.enter(7, TcpState::FinWait2);
        live.enter(7, TcpState::TimeWait);
        live.enter(3, TcpState::TimeWait);
        // The orphan got its FIN.
        live.leave(7, TcpState::FinWait2);
        live.enter(7, TcpState::TimeWait);
        assert_eq!(
            live.iter().collect::<Vec<_>>(),
            [
                (
                    3,
                    TwCount {
                        time_wait: 1,
                        fin_wait2: 0
                    }
                ),
                (
                    7,
                    TwCount {
                        time_wait: 2,
                        fin_wait2: 0
                    }
                )
            ]
        );
        live.leave(3, TcpState::TimeWait);
        assert_eq!(live.iter().count(), 1, "empty namespaces are left out");
    }
}
