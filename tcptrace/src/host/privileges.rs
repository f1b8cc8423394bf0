//! Least privilege once tracing runs. Loading and attaching the programs,
//! mapping the rings, mounting tracefs and reading the start-up snapshot
//! need much of root; what tcptrace does after that needs two capabilities.
//! Capabilities belong to threads: each thread drops what it does not need
//! before it does anything else, and threads started later inherit the
//! main thread's set.

use caps::{CapSet, Capability, CapsHashSet};

/// What tcptrace keeps once it traces, and why (the README lists them).
pub const KEPT: [(Capability, &str); 2] = [
    (
        Capability::CAP_SYS_ADMIN,
        "enter network namespaces (setns) to read their sysctls, counters and listeners, \
         also those that appear later",
    ),
    (
        Capability::CAP_SYS_PTRACE,
        "open /proc/PID/ns/net of processes of other users, to enter their namespace",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("cannot drop capabilities: {0}")]
    Drop(#[from] caps::errors::CapsError),
}

/// Forbids this thread and those it starts to gain privileges by exec
/// (set-user-ID files, file capabilities, root's own). Call it before any
/// thread is started: the flag is per thread and inherited.
pub fn no_new_privs() -> Result<(), PrivilegeError> {
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)
}

/// Drops every capability of the calling thread but `keep` (those of them
/// it has), from its effective, permitted and bounding sets, and empties
/// its inheritable and ambient sets. The bounding set is left as it is
/// without CAP_SETPCAP (no_new_privs already keeps exec from using it; the
/// systemd unit grants CAP_SETPCAP for this).
pub fn keep_only(keep: &[Capability]) -> Result<(), PrivilegeError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = keep
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)? {
        // Those this kernel knows (an older one refuses the newer ones).
        for cap in caps::runtime::thread_all_supported().difference(&kept) {
            if caps::has_cap(None, CapSet::Bounding, *cap)? {
                caps::drop(None, CapSet::Bounding, *cap)?;
            }
        }
    }
    // The effective set first: it must stay within the permitted one.
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    Ok(())
}

/// [`keep_only`] with what tcptrace keeps after start-up.
pub fn keep_only_needed() -> Result<(), PrivilegeError> {
    keep_only(&KEPT.map(|(cap, _)| cap))?;
    for (cap, why) in KEPT {
        log::debug!("kept {cap} after start-up: {why}");
    }
    Ok(())
}
