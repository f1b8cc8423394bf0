//! What this kernel lets tcptrace do: the checks without which nothing can
//! run (privileges, BTF, tracefs, record layouts) and the decisions about
//! each optional feature, taken here once. A feature that is off is said in
//! one line, with why.

use std::{fs, io, path::Path};

use tcptrace_common::{KernelOffsets, TimewaitConfig};

use crate::{
    host::{
        btf::{self, Btf, BtfError},
        kallsyms, kconfig,
        preflight::{self, Mounted, PreflightError},
    },
    kernel::loader::TIMEWAIT_PROGRAMS,
    model::ResetNames,
};

/// What runs on this kernel.
#[derive(Debug)]
pub struct Features {
    /// Offsets to read a socket's network namespace (zeros: unknown, shown as 0).
    pub offsets: KernelOffsets,
    /// What the timewait programs need; `None`: TIME_WAIT is not tracked.
    pub timewait: Option<TimewaitConfig>,
    /// The kernel's timer frequency, to turn timer lengths into seconds.
    pub hz: Option<u32>,
    /// Failed binds (EADDRINUSE) are seen through the syscall tracepoints.
    pub binds: bool,
    /// The kernel's reasons for the resets it sends, named as it names
    /// them; empty: reasons are off.
    pub reset_names: ResetNames,
    /// Retransmits are seen: connecting sockets' SYNs (records), listeners'
    /// SYN-ACKs and data (counted in the kernel).
    pub retransmits: bool,
    /// The retransmit tracepoint says which attempts failed (6.17+): those
    /// are skipped.
    pub retransmit_err: bool,
    /// Where the BTF tracepoint program reads a socket; `None`: the
    /// transitions come through the classic tracepoint (dearer, the same
    /// records).
    pub sock_btf: Option<btf::SockOffsets>,
    /// The timewait programs may be BTF tracepoints (their test of each
    /// timer a plain load); else raw ones (the same records, dearer).
    pub timer_btf: bool,
}

/// Why TIME_WAIT cannot be tracked on this kernel.
#[derive(Debug, thiserror::Error)]
pub enum TimewaitError {
    #[error("{0}")]
    Btf(#[from] BtfError),
    #[error("cannot read /proc/kallsyms: {0}")]
    Kallsyms(io::Error),
    #[error("tw_timer_handler is not in /proc/kallsyms")]
    NoHandler,
    #[error("tracepoint timer:{0} not found in tracefs")]
    Tracepoint(&'static str),
}

/// What the kernel is pretended to lack (`--pretend-missing`, for the tests
/// of how tcptrace degrades): kernel symbols (`tw_timer_handler`,
/// `reqsk_timer_handler`), tracepoints (`timer_start`, `sys_exit_bind`...),
/// BTF members (`net.ns.inum`), tracepoint fields (`reason`), program
/// types (`tp_btf`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Missing<'a>(pub &'a [String]);

impl Missing<'_> {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|m| m == name)
    }
}

/// Checks the host and decides the features. `no_timewait`: the user turned
/// TIME_WAIT tracking off. `notice` gets one line per feature that is off or
/// degraded, and per change made to the host, as soon as it is known (so it
/// is said even when a later check fails).
pub fn probe(
    no_timewait: bool,
    missing: Missing<'_>,
    mut notice: impl FnMut(&str),
) -> Result<Features, PreflightError> {
    preflight::check_privileges()?;
    let btf_path = Path::new(preflight::BTF_PATH);
    preflight::check_btf(btf_path)?;
    let btf = Btf::from_file(btf_path);
    let offsets = match btf.as_ref().map_err(ToString::to_string).and_then(|btf| {
        match missing.has("net.ns.inum") {
            true => Err("BTF struct net.ns has no member inum".to_owned()),
            false => btf::kernel_offsets(btf).map_err(|e| e.to_string()),
        }
    }) {
        Ok(offsets) => offsets,
        Err(err) => {
            notice(&format!(
                "warning: network namespaces unavailable ({err}); netns is shown as 0"
            ));
            KernelOffsets::default()
        }
    };
    // Only where namespaces are known: the BTF program reads them itself.
    let sock_btf = match btf.as_ref().map_err(ToString::to_string).and_then(|btf| {
        match (missing.has("tp_btf"), offsets.net_inum) {
            (true, _) => Err("tp_btf is missing (pretended)".to_owned()),
            (false, 0) => Err("namespaces are unavailable".to_owned()),
            (false, _) => btf::sock_offsets(btf).map_err(|e| e.to_string()),
        }
    }) {
        Ok(offsets) => Some(offsets),
        Err(err) => {
            // Nothing is lost: the classic tracepoint sends the same records.
            log::debug!("transitions through the classic tracepoint: {err}");
            None
        }
    };
    let tracefs = preflight::ensure_tracefs()?;
    match tracefs.mounted {
        Mounted::No => {}
        Mounted::WasMissing => notice(&format!(
            "tracefs was not mounted; mounted it on {} (left mounted)",
            tracefs.path.display()
        )),
        Mounted::OverUnreadable => notice(&format!(
            "tracefs could not be read; mounted it again on {} over what was there \
             (left mounted)",
            tracefs.path.display()
        )),
    }
    preflight::check_tracepoints(&tracefs.path)?;
    let timewait = match (no_timewait, &btf) {
        (true, _) => None,
        (false, Err(err)) => {
            notice(&format!("warning: TIME_WAIT not tracked: {err}"));
            None
        }
        (false, Ok(btf)) => match timewait_config(btf, &tracefs.path, missing) {
            Ok(config) => {
                if config.reqsk_handler == 0 {
                    notice(
                        "warning: reqsk_timer_handler not in /proc/kallsyms: \
                         reopened timewait sockets are reported as killed",
                    );
                }
                Some(config)
            }
            Err(err) => {
                notice(&format!("warning: TIME_WAIT not tracked: {err}"));
                None
            }
        },
    };
    let binds = match optional(&tracefs.path, &preflight::BIND_TRACEPOINTS, missing) {
        Ok(()) => true,
        Err(err) => {
            notice(&format!(
                "warning: failed binds (EADDRINUSE) not counted: {err}"
            ));
            false
        }
    };
    let retransmits = match optional(&tracefs.path, &preflight::RETRANSMIT_TRACEPOINTS, missing) {
        Ok(()) => true,
        Err(err) => {
            notice(&format!(
                "warning: retransmits (SYN, SYN-ACK and data) not counted: {err}"
            ));
            false
        }
    };
    // Before 6.17 the tracepoint fires only for segments sent again.
    let retransmit_err = retransmits
        && fs::read_to_string(tracefs.path.join("events/tcp/tcp_retransmit_skb/format")).is_ok_and(
            |format| {
                preflight::check_layout(
                    "tcp:tcp_retransmit_skb",
                    &format,
                    &[tcptrace_common::TCP_RETRANSMIT_SKB_ERR],
                )
                .is_ok()
            },
        );
    let reset_names = fs::read_to_string(tracefs.path.join("events/tcp/tcp_send_reset/format"))
        .map_err(|err| err.to_string())
        .and_then(|format| preflight::reset_reasons(&format))
        .and_then(|names| match missing.has("reason") {
            true => Err("field reason is missing (pretended)".into()),
            false => Ok(names),
        })
        .unwrap_or_else(|err| {
            notice(&format!(
                "warning: the kernel's reasons for resets are off ({err}); verdicts as usual"
            ));
            ResetNames::default()
        });
    Ok(Features {
        offsets,
        timewait,
        hz: kconfig::kernel_hz(),
        binds,
        reset_names,
        retransmits,
        retransmit_err,
        sock_btf,
        timer_btf: !missing.has("tp_btf"),
    })
}

/// Checks the formats of optional tracepoints, and that none is pretended
/// missing.
fn optional(
    tracefs: &Path,
    tracepoints: &[(&str, &str, &preflight::Fields)],
    missing: Missing<'_>,
) -> Result<(), PreflightError> {
    preflight::check_formats(tracefs, tracepoints)?;
    match tracepoints.iter().find(|(_, name, _)| missing.has(name)) {
        Some((category, name, _)) => Err(PreflightError::TracepointMissing(format!(
            "{category}:{name}"
        ))),
        None => Ok(()),
    }
}

/// What the timewait programs need on this kernel: the timer callbacks'
/// addresses, the offsets from BTF, and the timer tracepoints. Without
/// `reqsk_timer_handler`, reopened timewait sockets are reported as killed.
pub fn timewait_config(
    btf: &Btf,
    tracefs: &Path,
    missing: Missing<'_>,
) -> Result<TimewaitConfig, TimewaitError> {
    let mut config = btf::timewait_offsets(btf)?;
    let [tw, reqsk] = kallsyms::kallsyms(["tw_timer_handler", "reqsk_timer_handler"])
        .map_err(TimewaitError::Kallsyms)?;
    let tw = tw.filter(|_| !missing.has("tw_timer_handler"));
    let reqsk = reqsk.filter(|_| !missing.has("reqsk_timer_handler"));
    config.tw_handler = tw.ok_or(TimewaitError::NoHandler)?;
    config.reqsk_handler = reqsk.unwrap_or(0);
    // Attached as BTF or raw tracepoints (arguments, not a record: no
    // layout to check), so only their presence is.
    for name in TIMEWAIT_PROGRAMS {
        if !tracefs.join("events/timer").join(name).is_dir() || missing.has(name) {
            return Err(TimewaitError::Tracepoint(name));
        }
    }
    Ok(config)
}
