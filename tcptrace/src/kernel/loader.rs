//! Loading and attaching the eBPF programs, and reading their counters.
//! Programs are detached when the `Tracer` is dropped (and by the kernel when
//! the process dies: nothing is pinned).

use std::{
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{ArrayOfMaps, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, ProgramError, RawTracePoint, TracePoint},
};
use tcptrace_common::{CounterKey, KernelFilter, KernelOffsets, LostRecords, TimewaitConfig};

use crate::{
    host::btf::SockOffsets,
    kernel::decode,
    model::{PerKind, Reading},
};

/// The eBPF object built by build.rs; empty when the build skipped it
/// (`AYA_BUILD_SKIP=1`, for checks on machines without bpf-linker).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrace-ebpf"));

/// A hook and its program, named after it.
#[derive(Clone, Copy)]
enum Hook {
    /// A raw tracepoint (arguments, no record to build).
    Raw(&'static str),
    /// A classic tracepoint: (category, name).
    Classic(&'static str, &'static str),
    /// A BTF tracepoint: (program, tracepoint).
    Btf(&'static str, &'static str),
}

impl Hook {
    const fn name(self) -> &'static str {
        match self {
            Self::Raw(name) | Self::Classic(_, name) | Self::Btf(name, _) => name,
        }
    }
}

/// Exit first: attaching entry first would let a softirq that starts between
/// the two attaches leave its CPU's flag set until the next softirq there, and
/// misattribute that CPU's transitions meanwhile.
const SOFTIRQ_HOOKS: [Hook; 2] = [Hook::Raw("softirq_exit"), Hook::Raw("softirq_entry")];
/// The timewait programs, named after the `timer:` tracepoints they attach to
/// (as raw tracepoints where their BTF twins below cannot be) when TIME_WAIT
/// is tracked, before the state transitions, so that no timewait socket's
/// start is missed for a connection whose CLOSE is seen.
pub const TIMEWAIT_PROGRAMS: [&str; 3] = ["timer_start", "timer_cancel", "timer_expire_entry"];
/// Their BTF twins, used where the kernel's BTF is at hand: each timer's
/// test is then a plain load instead of a helper call.
const TIMEWAIT_BTF: [Hook; 3] = [
    Hook::Btf("timer_start_btf", "timer_start"),
    Hook::Btf("timer_cancel_btf", "timer_cancel"),
    Hook::Btf("timer_expire_entry_btf", "timer_expire_entry"),
];
/// The programs that see failed binds (classic syscall tracepoints).
const BIND_HOOKS: [Hook; 2] = [
    Hook::Classic("syscalls", "sys_enter_bind"),
    Hook::Classic("syscalls", "sys_exit_bind"),
];
/// The programs that see SYNs and SYN-ACKs retransmitted.
const RETRANSMIT_HOOKS: [Hook; 2] = [
    Hook::Classic("tcp", "tcp_retransmit_skb"),
    Hook::Classic("tcp", "tcp_retransmit_synack"),
];
/// Classic tracepoint programs, before the state transitions.
const RESET_HOOKS: [Hook; 2] = [
    Hook::Classic("tcp", "tcp_send_reset"),
    Hook::Classic("tcp", "tcp_receive_reset"),
];
/// The state transitions, last, once everything they rely on is in place:
/// through the BTF tracepoint where the kernel's BTF says where to read a
/// socket, else through the classic one (the same records, dearer).
const TRANSITIONS_BTF: Hook = Hook::Btf("inet_sock_set_state_btf", "inet_sock_set_state");
const TRANSITIONS_CLASSIC: Hook = Hook::Classic("sock", "inet_sock_set_state");

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "this tcptrace was built without its eBPF programs (AYA_BUILD_SKIP=1); rebuild it with ./x build"
    )]
    NoObject,
    #[error("loading the eBPF programs failed: {0}")]
    Load(#[from] EbpfError),
    #[error("eBPF program {0} is missing from the object")]
    MissingProgram(String),
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program {0} needs the kernel's BTF")]
    Btf(String),
    #[error("cannot count the CPUs ({0}): {1}")]
    Cpus(&'static str, std::io::Error),
    #[error("eBPF program {name}: {}", short(source))]
    Program { name: String, source: ProgramError },
    #[error(
        "eBPF program {name}: out of file descriptors (ulimit -n is {limit}); \
         raise it (ulimit -n 1024, or LimitNOFILE= in a unit)"
    )]
    OutOfFds { name: String, limit: u64 },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
}

/// Load-time settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Size of each CPU's events ring buffer in bytes (a power of two, at
    /// least a page).
    pub ring_bytes: u32,
    /// Pending bytes in one ring at which the eBPF side wakes the agent.
    pub wakeup_bytes: u64,
    /// aya-log level for eBPF diagnostics (0: off).
    pub log_level: u8,
    /// Family and port filters, applied in the kernel.
    pub filter: KernelFilter,
    /// Offsets from the kernel's BTF (zeros: no network namespaces).
    pub offsets: KernelOffsets,
    /// What the timewait programs need; `None`: TIME_WAIT is not tracked.
    pub timewait: Option<TimewaitConfig>,
    /// Attach the programs that see failed binds.
    pub binds: bool,
    /// Read the kernel's reason of each reset sent.
    pub reset_reasons: bool,
    /// Attach the programs that see retransmits.
    pub retransmits: bool,
    /// Skip the retransmit attempts that failed (the tracepoint says so).
    pub retransmit_err: bool,
    /// Read the transitions through the BTF tracepoint, at these offsets.
    pub sock_btf: Option<SockOffsets>,
    /// Attach the timewait programs as BTF tracepoints where BTF is at hand.
    pub timer_btf: bool,
    /// Attach the empty "floor" programs instead (benchmark only).
    pub floor: bool,
}

pub struct Tracer {
    ebpf: Ebpf,
    lost: PerCpuArray<MapData, LostRecords>,
    counts: PerCpuHashMap<MapData, CounterKey, u64>,
}

impl Tracer {
    /// Loads the programs and attaches them; returns the tracer and the events
    /// ring buffers, one per possible CPU in CPU order. Call only after
    /// `host::preflight::ensure_tracefs`.
    pub fn attach(config: &Config) -> Result<(Self, Vec<RingBuf<MapData>>), BpfError> {
        check_object()?;
        let cpus = possible_cpus()?;
        // The kernel's BTF, parsed by aya (only the BTF programs need it).
        let timer_btf = config.timer_btf && config.timewait.is_some();
        let wants_btf = config.sock_btf.is_some() || timer_btf;
        let btf = wants_btf
            .then(aya::Btf::from_sys_fs)
            .and_then(|parsed| match parsed {
                Ok(btf) => Some(btf),
                Err(err) => {
                    log::debug!("no BTF tracepoints: BTF: {err}");
                    None
                }
            });
        let sock_globals = config.sock_btf.map(|offsets| offsets.globals());
        let timer_globals = config.timewait.map(|c| {
            [
                ("TIMER_FUNCTION", c.timer_function),
                ("TIMER_EXPIRES", c.timer_expires),
            ]
        });
        let mut loader = EbpfLoader::new();
        for (name, value) in sock_globals.iter().flatten() {
            loader.override_global(name, value, true);
        }
        for (name, value) in timer_globals.iter().flatten() {
            loader.override_global(name, value, true);
        }
        let mut ebpf = loader
            .map_max_entries("EVENTS", cpus)
            .override_global("WAKEUP_BYTES", &config.wakeup_bytes, true)
            .override_global("FILTER", &config.filter, true)
            .override_global("OFFSETS", &config.offsets, true)
            .override_global("TIMEWAIT", &config.timewait.unwrap_or_default(), true)
            .override_global("RESET_REASONS", &u8::from(config.reset_reasons), true)
            .override_global("RETRANSMIT_ERR", &u8::from(config.retransmit_err), true)
            .override_global(aya_log::LEVEL, &config.log_level, false)
            .load(OBJECT)?;
        // Every CPU's ring is in place before any program can run.
        let events = per_cpu_rings(&mut ebpf, cpus, config.ring_bytes)?;

        let timewait = match config.timewait {
            Some(_) => &TIMEWAIT_BTF[..],
            None => &[],
        };
        // The softirq flag must be maintained before transitions are classified.
        for hook in SOFTIRQ_HOOKS {
            attach(&mut ebpf, hook, config.floor, None)?;
        }
        let timers_btf = btf.as_ref().filter(|_| timer_btf);
        for (hook, name) in timewait.iter().zip(TIMEWAIT_PROGRAMS) {
            attach_either(&mut ebpf, *hook, Hook::Raw(name), config.floor, timers_btf)?;
        }
        let binds = match config.binds {
            true => &BIND_HOOKS[..],
            false => &[],
        };
        let retransmits = match config.retransmits {
            true => &RETRANSMIT_HOOKS[..],
            false => &[],
        };
        let hooks = binds
            .iter()
            .copied()
            .chain(retransmits.iter().copied())
            .chain(RESET_HOOKS);
        for hook in hooks {
            attach(&mut ebpf, hook, config.floor, None)?;
        }
        // The transitions: the BTF program where it loads, else the classic
        // one (the same records; a verifier that refuses the BTF program's
        // reads costs only what the classic tracepoint costs).
        let transitions_btf = config.sock_btf.and(btf.as_ref());
        attach_either(
            &mut ebpf,
            TRANSITIONS_BTF,
            TRANSITIONS_CLASSIC,
            config.floor,
            transitions_btf,
        )?;

        let lost = take_map(&mut ebpf, "LOST")?;
        let counts = take_map(&mut ebpf, "COUNTS")?;
        Ok((Self { ebpf, lost, counts }, events))
    }

    /// The eBPF ring of aya-log records, for `-v`.
    pub fn logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf).ok()
    }

    /// Records the eBPF side lost so far (rings full), by kind, summed over
    /// CPUs: one lookup of the per-CPU `LOST` array.
    pub fn lost(&self) -> Result<PerKind, BpfError> {
        let per_cpu = self.lost.get(&0, 0).map_err(|source| BpfError::Map {
            name: "LOST",
            source,
        })?;
        let mut sum = LostRecords::default();
        for cpu in per_cpu.iter() {
            for (total, n) in sum.by_kind.iter_mut().zip(cpu.by_kind) {
                *total += n;
            }
        }
        Ok(PerKind::from(sum))
    }

    /// What the eBPF side counted itself so far (`COUNTS`), each key's
    /// count summed over CPUs. A key evicted to make room starts again from
    /// 0. Every key is one lookup: the map holds the keys counted, few on a
    /// healthy host.
    pub fn counted(&self) -> Result<Reading, BpfError> {
        // (aya's iterator itself skips a key evicted between listing it and
        // reading it.)
        self.counts
            .iter()
            .map(|entry| {
                entry
                    .map(|(key, per_cpu)| (decode::counted(&key), per_cpu.iter().sum()))
                    .map_err(|source| BpfError::Map {
                        name: "COUNTS",
                        source,
                    })
            })
            .collect()
    }

    /// Program runs the kernel skipped because another BPF program was running
    /// on the same CPU (`recursion_misses` in the programs' fdinfo).
    pub fn recursion_misses(&self) -> u64 {
        self.ebpf
            .programs()
            .filter_map(|(_, program)| program.fd().ok())
            .filter_map(|fd| {
                fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()
            })
            .map(|info| fdinfo_value(&info, "recursion_misses"))
            .sum()
    }
}

/// Whether this binary carries its eBPF programs (see `OBJECT`): checked
/// first, before anything asks for root.
pub fn check_object() -> Result<(), BpfError> {
    match OBJECT.is_empty() {
        true => Err(BpfError::NoObject),
        false => Ok(()),
    }
}

/// Attaches `btf_hook` where the kernel's BTF is at hand and the kernel
/// takes its program, else `fallback`: the same records, dearer.
fn attach_either(
    ebpf: &mut Ebpf,
    btf_hook: Hook,
    fallback: Hook,
    floor: bool,
    btf: Option<&aya::Btf>,
) -> Result<(), BpfError> {
    if let Some(btf) = btf {
        match attach(ebpf, btf_hook, floor, Some(btf)) {
            Ok(()) => return Ok(()),
            Err(err) => log::debug!("{} instead: {err}", fallback.name()),
        }
    }
    attach(ebpf, fallback, floor, None)
}

/// Loads and attaches the program of `hook`: the benchmark's empty one
/// ("floor_" prefix) with `floor`.
fn attach(
    ebpf: &mut Ebpf,
    hook: Hook,
    floor: bool,
    btf: Option<&aya::Btf>,
) -> Result<(), BpfError> {
    let name = format!("{}{}", if floor { "floor_" } else { "" }, hook.name());
    // aya reports a tracefs file it could not open as "tracefs not found",
    // whatever the reason: where the reason is the fd limit, say so.
    let err = |source| match out_of_fds() {
        Some(limit) => BpfError::OutOfFds {
            name: name.clone(),
            limit,
        },
        None => BpfError::Program {
            name: name.clone(),
            source,
        },
    };
    match hook {
        Hook::Raw(tracepoint) => {
            let program: &mut RawTracePoint = program_mut(ebpf, &name)?;
            program.load().map_err(err)?;
            program.attach(tracepoint).map_err(err)?;
        }
        Hook::Classic(category, tracepoint) => {
            let program: &mut TracePoint = program_mut(ebpf, &name)?;
            program.load().map_err(err)?;
            program.attach(category, tracepoint).map_err(err)?;
        }
        Hook::Btf(_, tracepoint) => {
            let btf = btf.ok_or_else(|| BpfError::Btf(name.clone()))?;
            let program: &mut BtfTracePoint = program_mut(ebpf, &name)?;
            program.load(tracepoint, btf).map_err(err)?;
            program.attach().map_err(err)?;
        }
    }
    Ok(())
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, BpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| BpfError::MissingProgram(name.to_owned()))?;
    program.try_into().map_err(|source| BpfError::Program {
        name: name.to_owned(),
        source,
    })
}

/// How many CPUs the kernel may ever run programs on (each gets a ring).
pub fn possible_cpus() -> Result<u32, BpfError> {
    aya::util::nr_cpus()
        .map(|n| n.get())
        .map_err(|(what, err)| BpfError::Cpus(what, err))
}

/// Creates one ring buffer per CPU and puts each in `EVENTS` at its CPU's index.
fn per_cpu_rings(
    ebpf: &mut Ebpf,
    cpus: u32,
    bytes: u32,
) -> Result<Vec<RingBuf<MapData>>, BpfError> {
    let err = |source| BpfError::Map {
        name: "EVENTS",
        source,
    };
    // Borrowed, not taken: the object keeps the outer map (and the programs'
    // references to it) alive.
    let map = ebpf
        .map_mut("EVENTS")
        .ok_or(BpfError::MissingMap("EVENTS"))?;
    let mut outer: ArrayOfMaps<&mut MapData, RingBuf<MapData>> = map.try_into().map_err(err)?;
    (0..cpus)
        .map(|cpu| {
            let ring = RingBuf::create(bytes, 0).map_err(err)?;
            outer.set(cpu, &ring, 0).map_err(err)?;
            Ok(ring)
        })
        .collect()
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, BpfError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(BpfError::MissingMap(name))?;
    map.try_into()
        .map_err(|source| BpfError::Map { name, source })
}

/// The soft limit on open files, if this process has reached it (an open
/// fails with EMFILE).
fn out_of_fds() -> Option<u64> {
    match fs::File::open("/dev/null") {
        Err(err) if err.raw_os_error() == Some(libc::EMFILE) => {
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
        _ => None,
    }
}

/// A one-line description of a program error: a verifier rejection carries the
/// verifier's whole log, which is logged at debug level (`-v`) instead.
fn short(err: &ProgramError) -> String {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            log::debug!("verifier log:\n{verifier_log}");
            format!("the kernel refused to load it ({io_error}); run with -v for the verifier log")
        }
        other => other.to_string(),
    }
}

/// Reads a numeric `key:\tvalue` line of an fdinfo file (0 if absent).
fn fdinfo_value(info: &str, key: &str) -> u64 {
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fdinfo_fields() {
        let info = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nrun_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t3\n";
        assert_eq!(fdinfo_value(info, "recursion_misses"), 3);
        assert_eq!(fdinfo_value(info, "verified_insns"), 0);
    }
}
