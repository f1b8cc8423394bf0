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

use crate::model::Comm;

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

/// The owners of a destination, "nginx[812], nginx[813]", joined by `sep`;
/// `unknown` when there are none.
pub fn owners(owners: &[(u32, String)], sep: &str, unknown: &str) -> String {
    match owners {
        [] => unknown.into(),
        owners => owners
            .iter()
            .map(|(pid, comm)| format!("{comm}[{pid}]"))
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
