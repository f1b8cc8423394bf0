//! The readers of `tcptrace::host` on the live host, as root: what the unit
//! tests check on fixtures, checked once more on the running kernel (a
//! kernel whose files changed shape would fail here first).

use std::{fs, net::TcpListener, os::unix::fs::MetadataExt as _, path::Path};

use tcptrace::{
    features,
    host::{
        btf::{self, Btf},
        kallsyms, kconfig, netstat, preflight, snapshot,
    },
    model::TcpState,
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
