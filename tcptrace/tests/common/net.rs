//! Network namespaces for the scenario tests, and peers: processes of the
//! test binary itself (`BINARY peer NETNS NAME ROLE MODE ADDR`) that join a
//! namespace, take a command name and play a role.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::MetadataExt as _,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

/// The server's and the client's addresses on the veth pair.
pub(crate) const SERVER_IP: &str = "10.77.0.1";
pub(crate) const CLIENT_IP: &str = "10.77.0.2";

pub(crate) fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; removed on drop.
pub(crate) struct Net {
    pub client: String,
    pub server: String,
    pub client_ino: u64,
    pub server_ino: u64,
}

impl Net {
    pub(crate) fn new(tag: &str) -> Self {
        let id = std::process::id();
        let (client, server) = (format!("tt-{id}-{tag}-c"), format!("tt-{id}-{tag}-s"));
        let (cdev, sdev) = (
            format!("tt{}c", id % 100_000),
            format!("tt{}s", id % 100_000),
        );
        let _ = Command::new("ip").args(["netns", "del", &client]).output();
        let _ = Command::new("ip").args(["netns", "del", &server]).output();
        run("ip", &["netns", "add", &client]);
        run("ip", &["netns", "add", &server]);
        let net = Net {
            client_ino: ino(&client),
            server_ino: ino(&server),
            client,
            server,
        };
        run(
            "ip",
            &[
                "link",
                "add",
                &cdev,
                "netns",
                &net.client,
                "type",
                "veth",
                "peer",
                "name",
                &sdev,
                "netns",
                &net.server,
            ],
        );
        for (ns, dev, ip) in [
            (&net.client, &cdev, CLIENT_IP),
            (&net.server, &sdev, SERVER_IP),
        ] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// The namespaces of another thread's `Net`, not removed on drop.
    pub(crate) fn borrowed(client: &str, server: &str) -> std::mem::ManuallyDrop<Self> {
        std::mem::ManuallyDrop::new(Net {
            client: client.to_owned(),
            server: server.to_owned(),
            client_ino: ino(client),
            server_ino: ino(server),
        })
    }

    pub(crate) fn nft(&self, ns: &str, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft (run ./x setup)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft failed: {script}");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server])
            .output();
    }
}

/// Sockets `ss -Htan FILTER...` lists in namespace `ns`.
pub(crate) fn ss_count(ns: &str, filter: &[&str]) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-Htan"])
        .args(filter)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

pub(crate) fn ino(ns: &str) -> u64 {
    std::fs::metadata(format!("/run/netns/{ns}")).unwrap().ino()
}

/// A running peer process; killed on drop.
pub(crate) struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    pub(crate) fn spawn(netns: &str, name: &str, role: &str, mode: &str, addr: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["peer", netns, name, role, mode, addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn expect(&mut self, what: &str) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(
            line.trim().starts_with(what),
            "peer said {line:?}, expected {what:?}"
        );
        line.trim().to_owned()
    }

    pub(crate) fn tell(&mut self, what: &str) {
        writeln!(self.stdin, "{what}").unwrap();
    }

    pub(crate) fn wait(&mut self) {
        let status =
            super::wait_timeout(&mut self.child, Duration::from_secs(60)).expect("peer exits");
        assert!(status.success(), "peer failed: {status:?}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Net {
    /// Sets a sysctl inside namespace `ns`.
    pub(crate) fn sysctl(&self, ns: &str, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                &format!("echo '{value}' > {path}"),
            ],
        );
    }

    /// Deletes the client's namespace now (its timewait sockets are purged).
    pub(crate) fn remove_client(&self) {
        run("ip", &["netns", "del", &self.client]);
    }
}

/// What a peer process does first, from its arguments `NETNS NAME ROLE
/// MODE ADDR`: join namespace NETNS, take the command name NAME; returns
/// (ROLE, MODE, ADDR).
pub(crate) fn become_peer(args: &[String]) -> (&str, &str, std::net::SocketAddr) {
    let [netns, name, role, mode, addr] = args else {
        panic!("peer NETNS NAME ROLE MODE ADDR")
    };
    join(netns, name);
    (role, mode, addr.parse().unwrap())
}

/// Joins namespace `netns` (an `ip netns` name) and takes the command name
/// `name`.
pub(crate) fn join(netns: &str, name: &str) {
    let ns = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    nix::sys::prctl::set_name(&std::ffi::CString::new(name).unwrap()).unwrap();
}
