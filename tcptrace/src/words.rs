//! Words shared by the findings and every view: endpoints spelled as `ss`
//! spells them, processes, namespaces. A leaf: it imports only [`model`]
//! and std, so that findings and renderers both use it without importing
//! each other.
//!
//! [`model`]: crate::model

use std::{
    fmt::{self, Write as _},
    net::{IpAddr, SocketAddr},
};

use crate::model::{Comm, Pids};

/// Appends an address: IPv4 by hand (the live log formats two endpoints per
/// line, and `Ipv4Addr`'s Display goes through the whole formatting
/// machinery), IPv6 as its Display does.
pub fn push_ip(out: &mut impl fmt::Write, ip: IpAddr) -> fmt::Result {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.write_char('.')?;
                }
                out.write_str(digits.format(octet))?;
            }
            Ok(())
        }
        IpAddr::V6(v6) => write!(out, "{v6}"),
    }
}

/// Appends `addr:port` the way `ss` does: IPv6 in brackets, `*` for an
/// unspecified address or port (a listener's remote end, or a connecting
/// socket before its source is chosen).
pub fn push_endpoint(out: &mut String, addr: &SocketAddr) {
    let ip = addr.ip();
    // Writing to a String cannot fail.
    let _ = match ip {
        _ if ip.is_unspecified() => out.write_char('*'),
        IpAddr::V4(_) => push_ip(out, ip),
        IpAddr::V6(_) => {
            out.push('[');
            push_ip(out, ip).and_then(|()| out.write_char(']'))
        }
    };
    out.push(':');
    match addr.port() {
        0 => out.push('*'),
        port => out.push_str(itoa::Buffer::new().format(port)),
    }
}

/// `addr:port` as [`push_endpoint`] spells it.
pub fn endpoint(addr: &SocketAddr) -> String {
    let mut s = String::new();
    push_endpoint(&mut s, addr);
    s
}

/// "nginx[812]", or `unknown` when the process is not known.
pub fn process(key: &Option<(u32, Comm)>, unknown: &str) -> String {
    match key {
        Some((pid, comm)) => format!("{}[{pid}]", comm.as_str()),
        None => unknown.into(),
    }
}

/// A service by its program and processes: "nginx[812]" where it is one
/// process, "nginx (5 processes: 812, 813, 814, 815, ...)" where several,
/// "64+" when more than were counted.
pub fn service(comm: &Comm, pids: &Pids) -> String {
    let name = comm.as_str();
    if let Some(pid) = pids.single() {
        return format!("{name}[{pid}]");
    }
    if pids.count() == 0 {
        return name.into_owned();
    }
    let mut examples: Vec<String> = pids.examples().iter().map(u32::to_string).collect();
    if pids.capped() || pids.count() > examples.len() {
        examples.push("...".into());
    }
    let plus = if pids.capped() { "+" } else { "" };
    format!(
        "{name} ({}{plus} processes: {})",
        pids.count(),
        examples.join(", ")
    )
}

/// A service in a table's few columns: "nginx[812]", "nginx[812,813]",
/// "nginx[812,813,814,815 of 88]", "postgres[... of 64+]".
pub fn service_short(comm: &Comm, pids: &Pids) -> String {
    let examples: Vec<String> = pids.examples().iter().map(u32::to_string).collect();
    let of = match (pids.capped(), pids.count() > examples.len()) {
        (true, _) => format!(" of {}+", pids.count()),
        (false, true) => format!(" of {}", pids.count()),
        (false, false) => String::new(),
    };
    format!("{}[{}{of}]", comm.as_str(), examples.join(","))
}

/// The services of a destination, "nginx (4 processes: ...)" or
/// "nginx[812,813]" in a table (`short`), joined by `sep`; `unknown` when
/// there are none.
pub fn owners(owners: &[(Comm, Pids)], short: bool, sep: &str, unknown: &str) -> String {
    match owners {
        [] => unknown.into(),
        owners => owners
            .iter()
            .map(|(comm, pids)| match short {
                true => service_short(comm, pids),
                false => service(comm, pids),
            })
            .collect::<Vec<_>>()
            .join(sep),
    }
}

/// "4026532300 (proxy)", or the inode alone when the namespace has no name.
pub fn netns_label(netns: u32, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{netns} ({name})"),
        None => netns.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_by_name_and_processes() {
        let nginx = Comm::from_name("nginx");
        let mut pids = Pids::default();
        assert_eq!(service(&nginx, &pids), "nginx");
        pids.add(812);
        assert_eq!(service(&nginx, &pids), "nginx[812]");
        pids.add(813);
        assert_eq!(service(&nginx, &pids), "nginx (2 processes: 812, 813)");
        for pid in 814..850 {
            pids.add(pid);
        }
        assert_eq!(
            service(&nginx, &pids),
            "nginx (38 processes: 812, 813, 814, 815, ...)"
        );
        for pid in 1000..2000 {
            pids.add(pid);
        }
        assert!(service(&nginx, &pids).starts_with("nginx (64+ processes: 812,"));
        assert_eq!(
            service_short(&nginx, &pids),
            "nginx[812,813,814,815 of 64+]"
        );
        let mut one = Pids::default();
        one.add(7);
        assert_eq!(service_short(&nginx, &one), "nginx[7]");
    }

    fn endpoint(s: &str) -> String {
        let mut out = String::new();
        push_endpoint(&mut out, &s.parse().unwrap());
        out
    }

    #[test]
    fn endpoints_print_like_ss() {
        assert_eq!(endpoint("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(endpoint("0.0.0.0:0"), "*:*");
        assert_eq!(endpoint("[::1]:443"), "[::1]:443");
        assert_eq!(endpoint("[::]:0"), "*:*");
        assert_eq!(endpoint("[::ffff:10.0.0.1]:22"), "[::ffff:10.0.0.1]:22");
    }
}
