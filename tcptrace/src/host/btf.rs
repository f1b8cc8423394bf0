//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): just
//! enough to find the byte offset of a member path such as
//! `sock.__sk_common.skc_net.net`, so the eBPF programs can follow kernel
//! pointers without layouts hard-coded for one kernel. (aya parses BTF too, but
//! keeps its type accessors private.)
//!
//! Format: `include/uapi/linux/btf.h` and Documentation/bpf/btf.rst.

use std::{fs, io, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {err}")]
    Read { path: String, err: io::Error },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF struct {ty} has no member {member}")]
    NoMember { ty: String, member: String },
    #[error("BTF member {0} is not byte-aligned")]
    Bitfield(String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

struct Member {
    name_off: u32,
    ty: u32,
    /// Bit offset from the start of the enclosing struct or union.
    bit_offset: u32,
}

struct Type {
    name_off: u32,
    kind: u32,
    /// `type` for modifiers and typedefs (the referenced type id).
    reference: u32,
    members: Vec<Member>,
}

pub struct Btf {
    /// Index 0 is `void`; ids are indices.
    types: Vec<Type>,
    strings: Vec<u8>,
}

/// Anonymous struct and union members looked into, at most this deep (the
/// kernel's own nest a few levels).
const MAX_NESTING: u32 = 16;

fn u16_at(data: &[u8], at: usize) -> Result<u16, BtfError> {
    let bytes = data
        .get(at..at + 2)
        .ok_or(BtfError::Malformed("truncated"))?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    let bytes = data
        .get(at..at + 4)
        .ok_or(BtfError::Malformed("truncated"))?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = fs::read(path).map_err(|err| BtfError::Read {
            path: path.display().to_string(),
            err,
        })?;
        Self::parse(&data)
    }

    /// Parses little-endian BTF (what x86_64 and arm64 kernels carry).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if u16_at(data, 0)? != MAGIC {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .ok_or(BtfError::Malformed("section out of bounds"))
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();

        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            reference: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < type_data.len() {
            let name_off = u32_at(type_data, at)?;
            let info = u32_at(type_data, at + 4)?;
            let size_or_type = u32_at(type_data, at + 8)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 != 0;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(type_data, m + 8)?;
                        members.push(Member {
                            name_off: u32_at(type_data, m)?,
                            ty: u32_at(type_data, m + 4)?,
                            bit_offset: if kind_flag {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    12 * vlen
                }
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                _ => 0,
            };
            at += extra;
            types.push(Type {
                name_off,
                kind,
                reference: size_or_type,
                members,
            });
        }
        Ok(Self { types, strings })
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedefs and modifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.reference
                }
                _ => break,
            }
        }
        id
    }

    /// Finds `member` in struct/union `id`, looking into anonymous struct and
    /// union members too (at most `MAX_NESTING` deep: hostile BTF can make a
    /// struct its own anonymous member, found by the fuzzer as a stack
    /// overflow). Returns (bit offset, member type id).
    fn find_member(&self, id: u32, member: &str) -> Option<(u32, u32)> {
        self.find_member_within(id, member, MAX_NESTING)
    }

    fn find_member_within(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        let ty = self.types.get(id as usize)?;
        for m in &ty.members {
            if self.name(m.name_off) == member {
                return Some((m.bit_offset, m.ty));
            }
        }
        if depth == 0 {
            return None;
        }
        for m in &ty.members {
            let inner = self.resolve(m.ty);
            if self.name(m.name_off).is_empty()
                && self
                    .types
                    .get(inner as usize)
                    .is_some_and(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION))
                && let Some((bits, ty)) = self.find_member_within(inner, member, depth - 1)
            {
                return Some((m.bit_offset.saturating_add(bits), ty));
            }
        }
        None
    }

    /// Byte offset of `path` (members, each inside the previous one's type)
    /// from the start of `struct name`.
    pub fn member_offset(&self, name: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut id = self
            .types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == name)
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))? as u32;
        let mut bits = 0;
        let mut ty_name = name.to_owned();
        for member in path {
            let (offset, member_ty) =
                self.find_member(id, member)
                    .ok_or_else(|| BtfError::NoMember {
                        ty: ty_name.clone(),
                        member: (*member).to_owned(),
                    })?;
            bits = offset.saturating_add(bits);
            id = self.resolve(member_ty);
            ty_name = format!("{ty_name}.{member}");
        }
        if bits % 8 != 0 {
            return Err(BtfError::Bitfield(ty_name));
        }
        Ok(bits / 8)
    }
}

/// The offsets the eBPF programs need to read a socket's network namespace.
pub fn kernel_offsets(btf: &Btf) -> Result<tcptrace_common::KernelOffsets, BtfError> {
    Ok(tcptrace_common::KernelOffsets {
        sock_net: btf.member_offset("sock", &["__sk_common", "skc_net", "net"])?,
        net_inum: btf.member_offset("net", &["ns", "inum"])?,
        // Only for the namespace of a failed bind(): 0 (unknown) without.
        task_nsproxy: btf.member_offset("task_struct", &["nsproxy"]).unwrap_or(0),
        nsproxy_net: btf.member_offset("nsproxy", &["net_ns"]).unwrap_or(0),
    })
}

/// The offsets the BTF twin of the transitions' program reads a socket
/// with, from the start of its `struct tcp_sock` (see
/// `inet_sock_set_state_btf` in the eBPF crate), and the namespace's
/// number in its `struct net`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    pub family: u32,
    pub dport: u32,
    pub daddr: u32,
    pub v6_daddr: u32,
    pub v6_saddr: u32,
    pub net: u32,
    pub sport: u32,
    pub saddr: u32,
    pub net_inum: u32,
}

impl SockOffsets {
    /// (the eBPF global's name, its value), for the loader.
    pub fn globals(&self) -> [(&'static str, u32); 9] {
        [
            ("SK_FAMILY", self.family),
            ("SK_DPORT", self.dport),
            ("SK_DADDR", self.daddr),
            ("SK_V6_DADDR", self.v6_daddr),
            ("SK_V6_SADDR", self.v6_saddr),
            ("SK_NET", self.net),
            ("INET_SPORT", self.sport),
            ("INET_SADDR", self.saddr),
            ("NET_INUM", self.net_inum),
        ]
    }
}

/// Where the BTF twin of the transitions' program finds what it reads.
pub fn sock_offsets(btf: &Btf) -> Result<SockOffsets, BtfError> {
    const INET: [&str; 2] = ["inet_conn", "icsk_inet"];
    let inet = |member: &str| btf.member_offset("tcp_sock", &[INET[0], INET[1], member]);
    let common = |member: &str| {
        btf.member_offset("tcp_sock", &[INET[0], INET[1], "sk", "__sk_common", member])
    };
    Ok(SockOffsets {
        family: common("skc_family")?,
        dport: common("skc_dport")?,
        daddr: common("skc_daddr")?,
        v6_daddr: common("skc_v6_daddr")?,
        v6_saddr: common("skc_v6_rcv_saddr")?,
        net: btf.member_offset(
            "tcp_sock",
            &[INET[0], INET[1], "sk", "__sk_common", "skc_net", "net"],
        )?,
        sport: inet("inet_sport")?,
        saddr: inet("inet_saddr")?,
        net_inum: btf.member_offset("net", &["ns", "inum"])?,
    })
}

/// The offsets the timewait programs need (callback addresses left 0 for the
/// caller). The namespace reference count is optional: without it, purged
/// timewait sockets are reported as killed.
pub fn timewait_offsets(btf: &Btf) -> Result<tcptrace_common::TimewaitConfig, BtfError> {
    let common = |member: &str| btf.member_offset("sock_common", &[member]);
    let net_refcount = ["__ns_ref", "count"]
        .iter()
        .find_map(|name| btf.member_offset("net", &["ns", name]).ok())
        .unwrap_or(0);
    Ok(tcptrace_common::TimewaitConfig {
        tw_handler: 0,
        reqsk_handler: 0,
        tw_timer: btf.member_offset("inet_timewait_sock", &["tw_timer"])?,
        tw_substate: btf.member_offset("inet_timewait_sock", &["tw_substate"])?,
        rsk_timer: btf.member_offset("request_sock", &["rsk_timer"])?,
        timer_function: btf.member_offset("timer_list", &["function"])?,
        timer_expires: btf.member_offset("timer_list", &["expires"])?,
        _pad: 0,
        skc_daddr: common("skc_daddr")?,
        skc_rcv_saddr: common("skc_rcv_saddr")?,
        skc_dport: common("skc_dport")?,
        skc_num: common("skc_num")?,
        skc_family: common("skc_family")?,
        skc_v6_daddr: common("skc_v6_daddr")?,
        skc_v6_rcv_saddr: common("skc_v6_rcv_saddr")?,
        net_refcount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: the header, `words` as the type section, `strings`.
    fn blob(words: &[u32], strings: &[u8]) -> Vec<u8> {
        let tdata: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        let (types, strs) = (tdata.len() as u32, strings.len() as u32);
        for word in [24u32, 0, types, types, strs] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.extend_from_slice(&tdata);
        data.extend_from_slice(strings);
        data
    }

    #[test]
    fn finds_nested_and_anonymous_members() {
        let names = ["int", "inner", "a", "b", "outer", "x", "in", "deep"];
        let mut strings = vec![0u8];
        let mut at = std::collections::HashMap::new();
        for n in names {
            at.insert(n, strings.len() as u32);
            strings.extend_from_slice(n.as_bytes());
            strings.push(0);
        }
        let s = |n: &str| at[n];
        let st = |vlen: u32| (KIND_STRUCT << 24) | vlen;
        let un = |vlen: u32| (KIND_UNION << 24) | vlen;
        // id 1: int (4 bytes)
        // id 2: struct inner { int a @0; int b @32 bits }
        // id 3: union (anonymous) { int deep @0 }
        // id 4: typedef inner -> 2
        // id 5: struct outer { int x @0; inner_t in @64; union {..} @192 }
        let words: Vec<u32> = vec![
            s("int"),
            KIND_INT << 24,
            4,
            32,
            s("inner"),
            st(2),
            8,
            s("a"),
            1,
            0,
            s("b"),
            1,
            32,
            0,
            un(1),
            4,
            s("deep"),
            1,
            0,
            s("inner"),
            KIND_TYPEDEF << 24,
            2,
            s("outer"),
            st(3),
            28,
            s("x"),
            1,
            0,
            s("in"),
            4,
            64,
            0,
            3,
            192,
        ];
        let btf = Btf::parse(&blob(&words, &strings)).unwrap();
        assert_eq!(btf.member_offset("outer", &["x"]).unwrap(), 0);
        assert_eq!(btf.member_offset("outer", &["in", "b"]).unwrap(), 12);
        assert_eq!(btf.member_offset("outer", &["deep"]).unwrap(), 24);
        assert_eq!(
            btf.member_offset("outer", &["in", "c"])
                .unwrap_err()
                .to_string(),
            "BTF struct outer.in has no member c"
        );
        assert!(matches!(
            btf.member_offset("nope", &["x"]),
            Err(BtfError::NoStruct(_))
        ));
    }

    /// Found by the fuzzer: a struct that is its own anonymous member made
    /// the member search recurse until the stack overflowed.
    #[test]
    fn a_struct_inside_itself_is_not_followed_for_ever() {
        let strings = b"\0loop\0x\0".to_vec();
        // id 1: struct loop { <anonymous> struct loop @0 }
        let words: Vec<u32> = vec![1, (KIND_STRUCT << 24) | 1, 4, 0, 1, 0];
        let btf = Btf::parse(&blob(&words, &strings)).unwrap();
        assert!(matches!(
            btf.member_offset("loop", &["x"]),
            Err(BtfError::NoMember { .. })
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(&[0u8; 8]).is_err());
        assert!(Btf::parse(&[]).is_err());
    }
}
