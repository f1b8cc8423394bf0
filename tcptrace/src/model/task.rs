//! The processes sockets belong to.

use std::{borrow::Cow, fmt};

/// A task's `comm`, as the kernel stores it (NUL-padded, at most 15 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Comm([u8; 16]);

impl Comm {
    pub fn new(raw: [u8; 16]) -> Self {
        Self(raw)
    }

    /// A name as the kernel would store it: cut to 15 bytes.
    pub fn from_name(name: &str) -> Self {
        let mut raw = [0u8; 16];
        let name = name.as_bytes();
        let len = name.len().min(15);
        raw[..len].copy_from_slice(&name[..len]);
        Self(raw)
    }

    pub fn as_str(&self) -> Cow<'_, str> {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        String::from_utf8_lossy(&self.0[..len])
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_str(), f)
    }
}

/// The task a transition ran in, when it ran in process context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul_and_survives_bad_utf8() {
        let mut raw = [0u8; 16];
        raw[..3].copy_from_slice(b"nginx"[..3].as_ref());
        assert_eq!(Comm::new(raw).as_str(), "ngi");
        let full = [b'a'; 16];
        assert_eq!(Comm::new(full).as_str().len(), 16);
        let mut bad = [0u8; 16];
        bad[0] = 0xff;
        assert_eq!(Comm::new(bad).as_str(), "\u{fffd}");
    }

    #[test]
    fn names_are_cut_like_the_kernel_does() {
        assert_eq!(Comm::from_name("nginx").as_str(), "nginx");
        assert_eq!(
            Comm::from_name("a-very-long-process-name").as_str(),
            "a-very-long-pro"
        );
    }
}
