//! Recovering what losses hid: after transition records were lost, a
//! connection whose CLOSE was among them would stay open forever. The
//! kernel's own list of connections (sock_diag) settles them.

use std::io;

use rustc_hash::FxHashMap as HashMap;

use super::Session;
use crate::model::{Listed, RecordKind};

/// After losses, how often (at most) the kernel's connections are listed to
/// end those whose CLOSE was lost (`clear_doubts`).
const DOUBTS_EVERY_S: u64 = 10;

/// A drain that read the rings this long after a moment has taken every
/// record stamped before it (the rings' merge margin is 10 ms).
const MERGED_AFTER_NS: u64 = 100_000_000;

/// Where the search for connections in doubt stands.
#[derive(Default)]
pub(super) struct Doubts {
    /// The kernel's connections in the namespaces with some in doubt, as
    /// listed at the time given, to act on at the next second.
    listed: Option<(u64, Vec<(u32, Listed)>)>,
    /// When connections in doubt were last looked for (s).
    checked_s: Option<u64>,
}

impl<W: io::Write, E: io::Write> Session<W, E> {
    /// After transition records were lost, connections whose CLOSE may have
    /// been among them could stay open forever: at most every
    /// `DOUBTS_EVERY_S`, the kernel's connections are listed in the
    /// namespaces that have some in doubt; at a later second, once a drain
    /// has taken every record from before that listing, they are listed
    /// again, and those neither listing shows are ended (a dump is not a
    /// snapshot: a socket moved within the kernel's tables while it runs can
    /// be skipped once), verdict unknown where nothing told.
    pub(super) fn clear_doubts(&mut self, now_ns: u64) -> io::Result<()> {
        if let Some((listed_ns, _)) = &self.doubts.listed {
            if self.drained_ns < listed_ns + MERGED_AFTER_NS {
                return Ok(());
            }
            let Some((listed_ns, lists)) = self.doubts.listed.take() else {
                return Ok(());
            };
            let again = self.list_connections(lists.iter().map(|(netns, _)| *netns).collect());
            {
                let mut sink = self.sinks.all();
                for (netns, first) in &lists {
                    // Not listed again (the namespace could not be entered):
                    // nothing is concluded.
                    let Some((_, second)) = again.iter().find(|(n, _)| n == netns) else {
                        continue;
                    };
                    self.pipeline
                        .end_gone(*netns, [first, second], listed_ns, &mut sink)?;
                }
            }
            return self.sinks.out.flush();
        }
        let now_s = now_ns / 1_000_000_000;
        let due = self
            .doubts
            .checked_s
            .is_none_or(|at| now_s >= at + DOUBTS_EVERY_S);
        if self.pipeline.lost().get(RecordKind::Transition) == 0 || !due {
            return Ok(());
        }
        self.doubts.checked_s = Some(now_s);
        let doubtful = self.pipeline.in_doubt(now_ns);
        if !doubtful.is_empty() {
            let lists = self.list_connections(doubtful);
            self.doubts.listed = Some((now_ns, lists));
        }
        Ok(())
    }

    /// The kernel's connections in each of `namespaces` that it can enter
    /// (through a process of theirs); those it cannot are left out.
    fn list_connections(&mut self, namespaces: Vec<u32>) -> Vec<(u32, Listed)> {
        let pids: HashMap<u32, u32> = self.pipeline.namespaces().with_process().collect();
        let sockets = self.readers.sockets;
        namespaces
            .into_iter()
            .filter_map(|netns| {
                let listed = sockets(*pids.get(&netns)?, netns).ok()?;
                Some((netns, listed.iter().map(|s| (s.local, s.remote)).collect()))
            })
            .collect()
    }
}
