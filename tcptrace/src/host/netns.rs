//! Names for network namespaces, the way users know them: an `ip netns`
//! name (a bind mount under /run/netns), "host" for the initial namespace,
//! or a process in it and its container (from its cgroup path).

use std::{
    fs,
    io::{self, BufRead, BufReader},
    os::unix::fs::MetadataExt as _,
};

use rustc_hash::FxHashMap as HashMap;

use crate::model::{Comm, NetnsName};

/// Where `ip netns` keeps its bind mounts.
pub const IP_NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// `ip netns` names by namespace inode, from the bind mounts in `dirs`.
pub fn ip_netns_names(dirs: &[&str]) -> HashMap<u32, String> {
    let mut names = HashMap::default();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if let (Ok(meta), Some(name)) = (fs::metadata(entry.path()), entry.file_name().to_str())
            {
                names
                    .entry(meta.ino() as u32)
                    .or_insert_with(|| name.to_owned());
            }
        }
    }
    names
}

/// The container a process runs in, from its `/proc/PID/cgroup` text: the
/// last component of its cgroup path (the unified hierarchy's, else the
/// first controller's that is not the root), without `.scope`, with a
/// 64-digit container id cut to 12 as `docker ps` shows it. `None` at the
/// root or in a login session.
pub fn container_of(reader: impl BufRead) -> Option<String> {
    let paths: Vec<String> = reader
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| Some(line.splitn(3, ':').nth(2)?.to_owned()))
        .collect();
    let unified = paths.last().filter(|p| p.as_str() != "/");
    let path = unified.or_else(|| paths.iter().find(|p| p.as_str() != "/"))?;
    if path.starts_with("/user.slice") || path.starts_with("/init.scope") {
        return None;
    }
    let last = path.rsplit('/').find(|c| !c.is_empty())?;
    let last = last.strip_suffix(".scope").unwrap_or(last);
    Some(shorten_id(last))
}

/// "docker-<64 hex>" -> "docker-<12 hex>".
fn shorten_id(name: &str) -> String {
    let (prefix, id) = match name.rfind(['-', ':']) {
        Some(i) => name.split_at(i + 1),
        None => ("", name),
    };
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{prefix}{}", &id[..12])
    } else {
        name.to_owned()
    }
}

/// Runs `f` in a short-lived thread that has joined network namespace
/// `netns` through process `pid` (which must be in it): what reads
/// `/proc/sys/net` or opens a netlink socket there. The rest of tcptrace
/// stays where it is.
pub fn in_namespace<T: Send>(
    pid: u32,
    netns: u32,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let ns = fs::File::open(format!("/proc/{pid}/ns/net"))?;
    if ns.metadata()?.ino() as u32 != netns {
        return Err(io::Error::other("process left the namespace"));
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace reader panicked")))
    })
}

/// Names namespace `netns`, in which process `pid` runs.
pub fn name_of(netns: u32, pid: u32, ip_names: &HashMap<u32, String>) -> NetnsName {
    // The initial namespace: that of kernel threads (kthreadd is PID 2
    // everywhere), or of PID 1 where tcptrace sees its own PID namespace.
    let host = ["/proc/2/ns/net", "/proc/1/ns/net"]
        .iter()
        .any(|p| fs::metadata(p).is_ok_and(|m| m.ino() as u32 == netns));
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    let container = fs::File::open(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|f| container_of(BufReader::new(f)));
    NetnsName {
        name: ip_names
            .get(&netns)
            .cloned()
            .or_else(|| host.then(|| "host".to_owned())),
        process: comm.map(|c| (pid, Comm::from_name(c.trim_end()).as_str().into_owned())),
        container: container.filter(|_| !host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_from_cgroup_paths() {
        let id = "3f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3";
        let docker = format!("0::/system.slice/docker-{id}.scope\n");
        assert_eq!(
            container_of(docker.as_bytes()).as_deref(),
            Some("docker-3f1c2a9b8e7d")
        );
        let k8s = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{id}.scope\n"
        );
        assert_eq!(
            container_of(k8s.as_bytes()).as_deref(),
            Some("cri-containerd-3f1c2a9b8e7d")
        );
        assert_eq!(container_of("0::/\n".as_bytes()), None);
        assert_eq!(
            container_of("0::/user.slice/user-1000.slice/session-2.scope\n".as_bytes()),
            None
        );
        // cgroup v1 (this machine): the first controller not at the root.
        let v1 = "9:name=systemd:/\n4:memory:/process_api/48d2f6be29a4\n1:cpu:/\n0::/\n";
        assert_eq!(container_of(v1.as_bytes()).as_deref(), Some("48d2f6be29a4"));
    }

    #[test]
    fn labels() {
        let mut n = NetnsName {
            name: None,
            process: Some((42, "nginx".into())),
            container: None,
        };
        assert_eq!(n.label().as_deref(), Some("nginx[42]"));
        n.container = Some("docker-abc".into());
        assert_eq!(n.label().as_deref(), Some("docker-abc"));
        n.name = Some("proxy".into());
        assert_eq!(n.label().as_deref(), Some("proxy"));
        assert_eq!(NetnsName::default().label(), None);
    }
}
