//! The readers of `tcptrace::host` on the live host, as root: what the unit
//! tests check on fixtures, checked once more on the running kernel (a
//! kernel whose files changed shape would fail here first).

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::Read as _,
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::Path,
    thread,
    time::Duration,
};

use tcptrace::{
    features,
    host::{
        btf::{self, Btf},
        kallsyms, kconfig, netstat, preflight,
        snapshot::{self, Family, Source},
    },
    model::{Comm, Existing, Task, TcpState, TwSeed},
};

fn own_netns() -> u32 {
    fs::metadata("/proc/self/ns/net").unwrap().ino() as u32
}

#[test]
fn snapshot_finds_our_own_listener_and_its_owner() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let found = snapshot::take(|_| {});
    let mine = found
        .sockets
        .iter()
        .find(|e| e.state == TcpState::Listen && e.local.port() == port)
        .expect("our listener");
    assert_eq!(mine.owner.unwrap().pid, std::process::id());
    assert_eq!(mine.netns, own_netns());
    assert!(
        found
            .namespaces
            .iter()
            .any(|(netns, _)| *netns == own_netns())
    );
}

/// The sockets of this process's namespace whose endpoints are among
/// `pairs`, as `source` lists them: full sockets as (local, remote, state,
/// owner), timewait ones as (local, remote, substate) with their time left.
#[expect(clippy::type_complexity, reason = "a test's tally")]
fn listed(
    source: Source,
    pairs: &[(SocketAddr, SocketAddr)],
) -> (
    BTreeSet<(SocketAddr, SocketAddr, TcpState, Option<u32>)>,
    HashMap<(SocketAddr, SocketAddr, TcpState), u64>,
) {
    let pid = std::process::id();
    let comm = Comm::from_name("test");
    let owners = own_socket_inodes()
        .into_iter()
        .map(|inode| {
            (
                inode,
                Task {
                    pid,
                    tid: pid,
                    comm,
                },
            )
        })
        .collect();
    let (mut found, mut tw): (Vec<Existing>, Vec<TwSeed>) = (Vec::new(), Vec::new());
    for family in Family::BOTH {
        snapshot::read_namespace(
            source,
            family,
            pid,
            own_netns(),
            &owners,
            &mut |s| tw.push(*s),
            &mut found,
        )
        .unwrap();
    }
    let ours = |a: &SocketAddr, b: &SocketAddr| pairs.contains(&(*a, *b));
    (
        found
            .iter()
            .filter(|e| ours(&e.local, &e.remote))
            .map(|e| (e.local, e.remote, e.state, e.owner.map(|o| o.pid)))
            .collect(),
        tw.iter()
            .filter(|t| ours(&t.local, &t.remote))
            .map(|t| ((t.local, t.remote, t.substate), t.remaining_ms))
            .collect(),
    )
}

/// The socket inodes this process holds.
fn own_socket_inodes() -> Vec<u64> {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            t.parse().ok()
        })
        .collect()
}

/// The start-up snapshot reads sock_diag, and /proc/net/tcp where sock_diag
/// is missing: both must list the same sockets, states, owners and
/// timewait sockets (a dump whose offsets were wrong would differ here).
/// Only the sockets made here are compared: others on the host come and go
/// between the two readings.
#[test]
fn snapshot_sources_agree() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    // An established pair, a pair whose server end closed (CLOSE_WAIT on
    // the client, an orphan's FIN_WAIT2 timewait socket on the server), and
    // a pair closed by the client first (TIME_WAIT on the client).
    let established = TcpStream::connect(server).unwrap();
    let (established_server, _) = listener.accept().unwrap();
    let half = TcpStream::connect(server).unwrap();
    let (half_server, _) = listener.accept().unwrap();
    drop(half_server);
    let timewait = TcpStream::connect(server).unwrap();
    let tw_client = timewait.local_addr().unwrap();
    let (mut tw_server, _) = listener.accept().unwrap();
    drop(timewait);
    let _ = tw_server.read(&mut [0; 1]);
    drop(tw_server);
    thread::sleep(Duration::from_millis(100));
    let (client, half_client) = (
        established.local_addr().unwrap(),
        half.local_addr().unwrap(),
    );
    let me = Some(std::process::id());
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let expected = BTreeSet::from([
        (server, any, TcpState::Listen, me),
        (client, server, TcpState::Established, me),
        (server, client, TcpState::Established, me),
        (half_client, server, TcpState::CloseWait, me),
    ]);
    let tw_key = (tw_client, server, TcpState::TimeWait);
    let fw2_key = (server, half_client, TcpState::FinWait2);
    let pairs: Vec<_> = expected
        .iter()
        .map(|e| (e.0, e.1))
        .chain([tw_key, fw2_key].map(|k| (k.0, k.1)))
        .collect();

    let (diag_full, diag_tw) = listed(Source::SockDiag, &pairs);
    let (proc_full, proc_tw) = listed(Source::ProcNet, &pairs);
    assert_eq!(diag_full, expected);
    assert_eq!(proc_full, expected);
    let keys = |tw: &HashMap<_, u64>| tw.keys().copied().collect::<BTreeSet<_>>();
    assert_eq!(keys(&diag_tw), BTreeSet::from([tw_key, fw2_key]));
    assert_eq!(keys(&proc_tw), keys(&diag_tw));
    for key in [tw_key, fw2_key] {
        let (d, p) = (diag_tw[&key], proc_tw[&key]);
        assert!(d > 0 && d <= 60_000, "{key:?}: {d} ms left");
        // /proc counts in hundredths of a second, and was read after.
        assert!(d.abs_diff(p) < 1_000, "{key:?}: {d} against {p} ms");
    }
    drop((established_server, listener));
}

#[test]
fn kallsyms_has_the_timer_callbacks() {
    let [tw, reqsk] = kallsyms::kallsyms(["tw_timer_handler", "reqsk_timer_handler"]).unwrap();
    assert!(tw.is_some(), "tw_timer_handler not in /proc/kallsyms");
    assert!(reqsk.is_some(), "reqsk_timer_handler not in /proc/kallsyms");
}

#[test]
fn kernel_config_gives_hz() {
    assert!(matches!(kconfig::kernel_hz(), Some(100 | 250 | 300 | 1000)));
}

#[test]
fn netstat_is_read_through_a_process_in_the_namespace() {
    let pid = std::process::id();
    let counters = netstat::read(pid, own_netns(), "netstat").unwrap();
    assert!(counters.get("TcpExt", "TW").is_some());
    let snmp = netstat::read(pid, own_netns(), "snmp").unwrap();
    assert!(snmp.get("Tcp", "ActiveOpens").is_some());
    assert!(netstat::tw_overflows(pid, own_netns()).is_ok());
    assert!(
        netstat::tw_overflows(pid, own_netns().wrapping_add(1)).is_err(),
        "a process outside the namespace is refused"
    );
}

#[test]
fn btf_of_the_running_kernel_has_what_the_programs_read() {
    let btf = Btf::from_file(Path::new(preflight::BTF_PATH)).expect("this kernel has BTF");
    assert_eq!(btf.member_offset("sock", &["__sk_common"]).unwrap(), 0);
    let offsets = btf::kernel_offsets(&btf).unwrap();
    assert!(
        offsets.sock_net > 0 && offsets.sock_net < 256,
        "{offsets:?}"
    );
    assert!(
        offsets.net_inum > 0 && offsets.net_inum < 4096,
        "{offsets:?}"
    );
    // Timewait and request sockets start with the same sock_common.
    assert_eq!(
        btf.member_offset("inet_timewait_sock", &["__tw_common"])
            .unwrap(),
        0
    );
    assert_eq!(
        btf.member_offset("request_sock", &["__req_common"])
            .unwrap(),
        0
    );
    let tw = btf::timewait_offsets(&btf).unwrap();
    assert_eq!((tw.skc_daddr, tw.skc_rcv_saddr), (0, 4), "{tw:?}");
    assert_eq!((tw.skc_dport, tw.skc_num), (12, 14), "{tw:?}");
    assert!(tw.net_refcount > 0, "{tw:?}");
    assert!(
        tw.tw_timer > 0 && tw.tw_substate > 0 && tw.rsk_timer > 0,
        "{tw:?}"
    );
}

#[test]
fn tracepoint_layouts_match_the_running_kernel() {
    let tracefs = preflight::ensure_tracefs().unwrap();
    preflight::check_tracepoints(&tracefs.path).unwrap();
}

#[test]
fn every_feature_is_on_with_this_kernel() {
    let mut notices = Vec::new();
    let f = features::probe(false, features::Missing::default(), |n| {
        notices.push(n.to_owned())
    })
    .unwrap();
    assert!(
        notices.iter().all(|n| !n.starts_with("warning")),
        "{notices:?}"
    );
    assert!(f.offsets.sock_net > 0);
    let tw = f.timewait.expect("TIME_WAIT tracked");
    assert!(tw.tw_handler != 0 && tw.reqsk_handler != 0);
    assert!(f.hz.is_some());
    let off = features::probe(true, features::Missing::default(), |_| {}).unwrap();
    assert!(off.timewait.is_none(), "--no-timewait");
}
