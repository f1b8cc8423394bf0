//! Real servers from Debian's packages, each case in a pair of namespaces
//! of its own under its own `tcptrace diagnose`: run healthy (no warning,
//! exit 0, every time) and with one fault injected (its finding, naming the
//! right service). Our own peers hide the traps real software sets: a
//! master and its workers, health checks that end with a RST. The binary
//! is also the load generator, as a peer (see `common::net`).

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{
    Tracer,
    net::{Net, Peer, SERVER_IP},
    peer::{linger_zero, say},
};
use serde_json::Value;

// ---------------------------------------------------------------- peers --

/// The load: `http N` makes N HTTP requests, a connection each;
/// `redis N/keepalive` N PINGs on one connection, `redis N/close` and
/// `redis N/linger0` a connection each, closed with a FIN or a RST;
/// `connect N/hold` and `connect N/close` N connects (300 ms each at
/// most) to a server that accepts nothing, kept open or closed after 1 s.
/// Says `done OK` with the answers that were right (connects made), then
/// waits to be told to exit.
fn peer(args: &[String]) -> ! {
    let (role, mode, addr) = common::net::become_peer(args);
    let (n, how) = mode.split_once('/').unwrap_or((mode, ""));
    let n: usize = n.parse().unwrap();
    let mut ok = 0;
    match role {
        "http" => {
            for _ in 0..n {
                let Ok(mut conn) = TcpStream::connect(addr) else {
                    continue;
                };
                let _ = conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = conn.read_to_string(&mut answer);
                // "HTTP/1.1 200" (nginx), "HTTP/1.0 200" (Python).
                ok +=
                    usize::from(answer.starts_with("HTTP/1.") && answer.get(8..12) == Some(" 200"));
            }
        }
        "redis" if how == "keepalive" => {
            let mut conn = TcpStream::connect(addr).unwrap();
            for _ in 0..n {
                ok += usize::from(ping(&mut conn));
                thread::sleep(Duration::from_millis(10));
            }
        }
        "redis" => {
            for _ in 0..n {
                let Ok(mut conn) = TcpStream::connect(addr) else {
                    continue;
                };
                ok += usize::from(ping(&mut conn));
                if how == "linger0" {
                    linger_zero(&conn);
                }
            }
        }
        "connect" => {
            let mut kept = Vec::new();
            for _ in 0..n {
                if let Ok(conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                    kept.push(conn);
                }
            }
            ok = kept.len();
            if how == "close" {
                thread::sleep(Duration::from_secs(1));
                kept.clear();
            }
            say(&format!("done {ok}"));
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            std::process::exit(0)
        }
        other => panic!("role {other}"),
    }
    say(&format!("done {ok}"));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::process::exit(0)
}

/// One PING, and whether PONG came back.
fn ping(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 7];
    conn.write_all(b"PING\r\n").is_ok() && conn.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

// -------------------------------------------------------------- servers --

/// A server started from its Debian package inside a namespace, in a
/// process group of its own (a master and its workers), killed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    /// Writes `config` to `file` in a directory of its own, and runs
    /// `program ARGS` in namespace `ns`, `{dir}` in ARGS and the config
    /// replaced by that directory; waits until `ready` accepts.
    fn start(ns: &str, tag: &str, file: &str, config: &str, args: &[&str], ready: &str) -> Self {
        let dir = Self::dir(tag);
        let d = dir.to_str().unwrap();
        std::fs::write(dir.join(file), config.replace("{dir}", d)).unwrap();
        Self::run(ns, dir, args, ready)
    }

    /// A new, empty directory for server `tag`'s files.
    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tt-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `program ARGS` in namespace `ns`, `{dir}` in ARGS replaced by
    /// `dir`; waits until `ready` accepts.
    fn run(ns: &str, dir: PathBuf, args: &[&str], ready: &str) -> Self {
        let d = dir.to_str().unwrap();
        let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", d)).collect();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(&args)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e} (run ./x setup)"));
        let server = Self { child, dir };
        server.wait_ready(ns, ready);
        server
    }

    /// Waits until something listens on `addr` in namespace `ns`.
    fn wait_ready(&self, ns: &str, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "ss", "-Hltn", "src", addr])
                .output()
                .unwrap();
            if !out.stdout.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on {addr}: {}",
                std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends the whole process group `signal` (SIGSTOP: it accepts nothing
    /// more).
    fn signal(&self, signal: nix::sys::signal::Signal) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        nix::sys::signal::kill(group, signal).unwrap();
    }

    /// Stops it, workers and all.
    fn stop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx, a master and two workers. `{upstream}`: the proxy's `upstream`
/// block's body.
const NGINX: &str = "
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backend { {upstream} }
    server {
        listen {listen};
        location / { {location} }
    }
}
";

/// nginx serving `location` on `listen` in `ns`, with `upstream` for a proxy.
fn nginx(ns: &str, tag: &str, listen: &str, location: &str, upstream: &str) -> Server {
    let config = NGINX
        .replace("{listen}", listen)
        .replace("{location}", location)
        .replace("{upstream}", upstream);
    Server::start(
        ns,
        tag,
        "nginx.conf",
        &config,
        &["nginx", "-c", "{dir}/nginx.conf", "-g", "daemon off;"],
        listen,
    )
}

// ------------------------------------------------------------- diagnose --

/// What one `tcptrace diagnose` of the case's namespaces said.
struct Diagnosis {
    code: i32,
    findings: Vec<Value>,
}

impl Diagnosis {
    fn warnings(&self) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|f| f["severity"] != "info")
            .collect()
    }

    fn finding(&self, kind: &str) -> &Value {
        self.findings
            .iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} finding in {:#?}", self.findings))
    }
}

/// Runs `diagnose --for SECS` over `net`'s namespaces while `load` runs.
fn diagnose(net: &Net, secs: u64, load: impl FnOnce()) -> Diagnosis {
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&[
        "diagnose",
        "--for",
        &secs.to_string(),
        "--json",
        "--netns",
        &netns,
    ]);
    load();
    let finished = tracer.wait();
    let summary = finished.records("summary").pop().expect("the report");
    Diagnosis {
        code: finished.status.code().unwrap_or(-1),
        findings: summary["findings"].as_array().unwrap().clone(),
    }
}

/// A fault: `diagnose --for SECS` over `net` while `load` runs warns (exit
/// 3) with a finding of `kind`; the diagnosis and that finding's headline.
fn fault(net: &Net, secs: u64, load: impl FnOnce(), kind: &str) -> (Diagnosis, String) {
    let d = diagnose(net, secs, load);
    assert_eq!(d.code, 3, "{:#?}", d.findings);
    let headline = d.finding(kind)["headline"].as_str().unwrap().to_owned();
    (d, headline)
}

/// Runs a load peer in `ns` and waits for its answers: how many were right.
fn load(ns: &str, name: &str, role: &str, mode: &str, addr: &str) -> usize {
    let mut peer = Peer::spawn(ns, name, role, mode, addr);
    let done = peer.expect("done");
    peer.tell("exit");
    peer.wait();
    done.trim_start_matches("done ").parse().unwrap()
}

/// Healthy runs of each case: they must give no warning every time.
const HEALTHY_RUNS: usize = 3;

/// `HEALTHY_RUNS` runs of `diagnose --for SECS` over `net` while `load`
/// runs: no warning and exit 0 every time (`what` says which case). The
/// first run's diagnosis.
fn healthy(net: &Net, secs: u64, what: &str, mut load: impl FnMut()) -> Diagnosis {
    let mut first = None;
    for run in 0..HEALTHY_RUNS {
        let d = diagnose(net, secs, &mut load);
        assert!(
            d.warnings().is_empty(),
            "{what}, run {run}: {:#?}",
            d.warnings()
        );
        assert_eq!(d.code, 0, "{what}, run {run}");
        first.get_or_insert(d);
    }
    first.unwrap()
}

// ------------------------------------------------------------ scenarios --

/// nginx as a reverse proxy (master and workers, in the client's
/// namespace) in front of an nginx upstream (in the server's): a new
/// upstream connection per request, then with upstream keep-alive. Healthy:
/// nothing above info, every run. Fault: the upstream stops, and the proxy's
/// connects are refused: the finding names the proxy's service and the
/// upstream.
fn nginx_proxy_in_front_of_nginx() {
    let net = Net::new("ngx");
    let upstream_addr = format!("{SERVER_IP}:8081");
    // An nginx answering "ok" (its unused upstream block points nowhere).
    let start_upstream = || {
        nginx(
            &net.server,
            "ngx-up",
            &upstream_addr,
            "return 200 \"ok\\n\";",
            "server 127.0.0.1:1;",
        )
    };
    let _upstream = start_upstream();
    let front = "127.0.0.1:8080";
    for (variant, upstream, location) in [
        (
            "no keep-alive",
            format!("server {upstream_addr};"),
            "proxy_pass http://backend;".to_owned(),
        ),
        (
            "keep-alive",
            format!("server {upstream_addr}; keepalive 8;"),
            "proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";"
                .to_owned(),
        ),
    ] {
        let _proxy = nginx(&net.client, "ngx-proxy", front, &location, &upstream);
        healthy(&net, 6, variant, || {
            let ok = load(&net.client, "tt-load", "http", "400", front);
            assert_eq!(ok, 400, "{variant}: every request answered");
        });
    }
    // The upstream goes away: 502s, and the proxy's connects refused.
    drop(_upstream);
    let upstream = format!("server {upstream_addr};");
    let through_proxy = |location: &str, secs, requests, kind| {
        let _proxy = nginx(&net.client, "ngx-proxy", front, location, &upstream);
        let load = || {
            load(&net.client, "tt-load", "http", requests, front);
        };
        let (_, headline) = fault(&net, secs, load, kind);
        assert!(
            headline.starts_with(&format!("{upstream_addr} ")),
            "{headline}"
        );
        // The workers' connects, named as the service.
        assert!(headline.contains("from nginx ("), "{headline}");
        headline
    };
    let headline = through_proxy("proxy_pass http://backend;", 5, "50", "upstream-refuses");
    assert!(headline.contains("refuses connections"), "{headline}");

    // An upstream whose packets are dropped: the proxy's connects time out.
    let _upstream = start_upstream();
    net.nft(
        &net.server,
        "table inet tt {\n chain in {\n type filter hook input priority 0;\n tcp dport 8081 drop\n }\n}\n",
    );
    through_proxy(
        "proxy_pass http://backend; proxy_connect_timeout 1s;",
        14,
        "10",
        "upstream-unreachable",
    );
}

/// haproxy (master-worker) in front of redis, checking it every 1.2 s (its
/// checks connect, then end with a RST): a client with keep-alive is the
/// only other traffic, so nearly every connection redis sees is reset by a
/// check. Healthy: said at most as info, every run. Fault: clients that
/// close with SO_LINGER 0: haproxy's connections are reset, a warning that
/// names haproxy.
fn haproxy_in_front_of_redis() {
    let net = Net::new("hap");
    let redis_addr = format!("{SERVER_IP}:6379");
    let _redis = Server::start(
        &net.server,
        "hap-redis",
        "redis.conf",
        &format!(
            "bind {SERVER_IP}\nport 6379\nprotected-mode no\nsave \"\"\nappendonly no\ndir {{dir}}\n"
        ),
        &["redis-server", "{dir}/redis.conf"],
        &redis_addr,
    );
    let front = "127.0.0.1:6380";
    let config = format!(
        "global\n    master-worker\n    pidfile {{dir}}/haproxy.pid\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         listen redis\n    bind {front}\n    server r1 {redis_addr} check inter 1200\n"
    );
    let _haproxy = Server::start(
        &net.client,
        "hap-haproxy",
        "haproxy.cfg",
        &config,
        &["haproxy", "-W", "-db", "-f", "{dir}/haproxy.cfg"],
        front,
    );
    // 30 s: 25 checks, above the 20 resets the rules count.
    let d = healthy(&net, 30, "haproxy", || {
        let ok = load(&net.client, "tt-load", "redis", "200/keepalive", front);
        assert_eq!(ok, 200, "every PING answered");
    });
    // The checks are seen, and said for what they are.
    assert!(
        d.findings.iter().any(|f| f["headline"]
            .as_str()
            .unwrap()
            .contains("at the pace of health checks")),
        "{:#?}",
        d.findings
    );
    // Clients without keep-alive: a connection per PING, healthy too.
    let mut ok = 0;
    let d = diagnose(&net, 5, || {
        ok = load(&net.client, "tt-load", "redis", "300/close", front)
    });
    assert_eq!(ok, 300);
    assert!(d.warnings().is_empty(), "{:#?}", d.warnings());
    assert_eq!(d.code, 0);

    // Clients that reset: 300 connections closed with SO_LINGER 0.
    let d = diagnose(&net, 5, || {
        load(&net.client, "tt-resetter", "redis", "300/linger0", front);
    });
    assert_eq!(d.code, 3, "{:#?}", d.findings);
    let reset = d
        .findings
        .iter()
        .find(|f| f["kind"] == "abort-received" && f["comm"] == "haproxy")
        .unwrap_or_else(|| panic!("haproxy's connections reset: {:#?}", d.findings));
    assert_eq!(reset["severity"], "warning", "{reset}");
    // The clients' own resets, and haproxy passing them on to redis.
    for (comm, toward) in [
        ("tt-resetter", front.to_owned()),
        ("haproxy", redis_addr.clone()),
    ] {
        let sent = d
            .findings
            .iter()
            .find(|f| f["kind"] == "abort-sent" && f["comm"] == comm)
            .unwrap_or_else(|| panic!("{comm} resets: {:#?}", d.findings));
        assert!(
            sent["headline"]
                .as_str()
                .unwrap()
                .contains(&format!("toward {toward}")),
            "{sent}"
        );
    }

    // Ports exhausted toward redis: haproxy closes its side first (its
    // clients did), and holds TIME_WAIT; 100 ports are gone in a second.
    net.sysctl(&net.client, "net.ipv4.ip_local_port_range", "40000 40099");
    let d = diagnose(&net, 5, || {
        load(&net.client, "tt-load", "redis", "300/close", front);
    });
    assert_eq!(d.code, 4, "{:#?}", d.findings);
    let exhausted = d.finding("port-exhaustion");
    assert_eq!(exhausted["severity"], "critical", "{exhausted}");
    let headline = exhausted["headline"].as_str().unwrap();
    assert!(
        headline.starts_with("haproxy")
            && headline.contains(&format!("cannot connect to {redis_addr}")),
        "{headline}"
    );
}

/// PostgreSQL, a process per connection, under pgbench -C (a new
/// connection per transaction, 100 a second). Healthy: nothing above info,
/// every run, though every connection is another process. Fault: the
/// postmaster stops accepting (SIGSTOP) and clients keep connecting: the
/// listen queue overflows, and the finding names postgres's listener.
fn postgres_under_pgbench() {
    let net = Net::new("pg");
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (run ./x setup)")
        .filter_map(Result::ok)
        .map(|v| v.path().join("bin"))
        .find(|b| b.join("initdb").exists())
        .expect("initdb");
    let dir = Server::dir("pg");
    let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    nix::unistd::chown(&dir, Some(postgres.uid), Some(postgres.gid)).unwrap();
    let as_postgres = ["--reuid=postgres", "--regid=postgres", "--init-groups"];
    let data = dir.join("data");
    let out = Command::new("setpriv")
        .args(as_postgres)
        .arg(bin.join("initdb"))
        .args(["--auth=trust", "-U", "postgres", "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The client's namespace may connect, without a password.
    let hba = data.join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&hba).unwrap();
    rules.push_str("host all all 10.77.0.0/24 trust\n");
    std::fs::write(&hba, rules).unwrap();
    let addr = format!("{SERVER_IP}:5432");
    let postgres_bin = bin.join("postgres");
    let server = Server::run(
        &net.server,
        dir,
        &[
            "setpriv",
            as_postgres[0],
            as_postgres[1],
            as_postgres[2],
            postgres_bin.to_str().unwrap(),
            "-D",
            "{dir}/data",
            "-k",
            "{dir}",
            "-c",
            &format!("listen_addresses={SERVER_IP}"),
            "-c",
            "max_connections=20",
            "-c",
            "fsync=off",
        ],
        &addr,
    );
    let pgbench = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.client])
            .arg(bin.join("pgbench"))
            .args(["-h", SERVER_IP, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pgbench {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    pgbench(&["-i", "-q"]);
    healthy(&net, 8, "pgbench -C", || {
        let said = pgbench(&["-C", "-S", "-c", "4", "-j", "2", "-R", "100", "-T", "6"]);
        assert!(said.contains("number of failed transactions: 0"), "{said}");
    });
    // The postmaster stops accepting; 200 connects queue up and overflow.
    server.signal(nix::sys::signal::Signal::SIGSTOP);
    let load = || {
        load(&net.client, "tt-load", "connect", "200/hold", &addr);
    };
    let (_, headline) = fault(&net, 6, load, "listen-overflow");
    assert!(
        headline.contains(&addr) && headline.contains("postgres"),
        "{headline}"
    );
}

/// Python's http.server (a thread per connection, closing first). Healthy:
/// its TIME_WAIT is information at most. Fault: it stops (SIGSTOP) while
/// clients connect and then give up: the connections waiting in its
/// accept queue stay in CLOSE_WAIT, and after 30 s that is a leak named
/// python3; its listen queue overflowed too.
fn python_http_server() {
    let net = Net::new("py");
    let addr = format!("{SERVER_IP}:8000");
    let server = Server::run(
        &net.server,
        Server::dir("py"),
        &[
            "/usr/bin/python3",
            "-m",
            "http.server",
            "--bind",
            SERVER_IP,
            "--directory",
            "{dir}",
            "8000",
        ],
        &addr,
    );
    healthy(&net, 5, "http.server", || {
        let ok = load(&net.client, "tt-load", "http", "300", &addr);
        assert_eq!(ok, 300, "every request answered");
    });
    server.signal(nix::sys::signal::Signal::SIGSTOP);
    let load = || {
        load(&net.client, "tt-load", "connect", "20/close", &addr);
    };
    let (d, headline) = fault(&net, 45, load, "close-wait-leak");
    assert!(headline.starts_with("python3"), "{headline}");
    assert!(
        d.finding("listen-overflow")["headline"]
            .as_str()
            .unwrap()
            .contains(&addr)
    );
}

fn main() {
    common::scenario_main(
        peer,
        &[
            (
                "nginx_proxy_in_front_of_nginx",
                nginx_proxy_in_front_of_nginx,
            ),
            ("haproxy_in_front_of_redis", haproxy_in_front_of_redis),
            ("postgres_under_pgbench", postgres_under_pgbench),
            ("python_http_server", python_http_server),
        ],
    )
}
