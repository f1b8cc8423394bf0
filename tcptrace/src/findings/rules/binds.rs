//! bind() failing with EADDRINUSE.

use super::*;

/// A bind() that failed with EADDRINUSE: a server that cannot bind its port
/// again (timewait sockets on it: a warning), bind-time ephemeral exhaustion
/// (port 0), or another socket on the port (said once, as information: a
/// "find a free port" loop or a dual-stack retry does this too).
pub(super) fn binds_in_use(ev: &Evidence<'_>) -> Vec<Finding> {
    ev.binds
        .iter()
        .map(|b| {
            let who = process(&b.process);
            let ns = namespace(ev, b.netns);
            let addr = words::endpoint(&b.local);
            let (severity, headline, explanation, remedy, myths) = if b.local.port() == 0 {
                (
                    Severity::Warning,
                    format!("{who} in {ns} cannot bind {addr}: no free ephemeral port (EADDRINUSE, {} times)", b.count),
                    "bind() to port 0 picks from ip_local_port_range a port no other socket holds for any \
                     destination: binding before connect() spends the range much faster than connect() alone."
                        .to_owned(),
                    vec![
                        "Set IP_BIND_ADDRESS_NO_PORT before bind() when binding a source address for a connect(): \
                         the port is then chosen per destination at connect()."
                            .to_owned(),
                        "Reuse connections, or widen ip_local_port_range.".to_owned(),
                    ],
                    Vec::new(),
                )
            } else if b.timewait_on_port > 0 {
                (
                    Severity::Warning,
                    format!(
                        "{who} in {ns} cannot bind {addr} (EADDRINUSE, {} times): {} timewait sockets hold port {}",
                        b.count,
                        b.timewait_on_port,
                        b.local.port()
                    ),
                    "A restarted server whose previous connections left TIME_WAIT on its port cannot bind it \
                     again without SO_REUSEADDR."
                        .to_owned(),
                    vec!["Set SO_REUSEADDR on the listening socket before bind(), as every server should.".to_owned()],
                    vec![
                        "SO_REUSEADDR lets a server bind its port despite TIME_WAIT; it frees no ephemeral ports for \
                         outgoing connections."
                            .to_owned(),
                    ],
                )
            } else {
                (
                    Severity::Info,
                    format!("{who} in {ns} could not bind {addr} (EADDRINUSE, {} times): another socket holds it", b.count),
                    "Another socket (a listener, or a UDP socket on the same port) holds the address; SO_REUSEADDR \
                     does not help there."
                        .to_owned(),
                    vec![format!("Find the holder: ss -lntup 'sport = :{}' in that namespace.", b.local.port())],
                    Vec::new(),
                )
            };
            Finding {
                kind: Kind::BindInUse,
                severity,
                headline,
                explanation,
                numbers: vec![
                    ("netns", json!(b.netns)),
                    ("pid", json!(b.process.map(|p| p.0))),
                    ("comm", json!(b.process.map(|p| p.1.as_str().into_owned()))),
                    ("laddr", json!(b.local.ip().to_string())),
                    ("lport", json!(b.local.port())),
                    ("count", json!(b.count)),
                    ("timewait_on_port", json!(b.timewait_on_port)),
                ],
                remedy,
                myths,
                bites_in_s: None,
            }
        })
        .collect()
}
