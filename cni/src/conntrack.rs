//! Deleting stale conntrack entries over ctnetlink (NETLINK_NETFILTER), raw.
//!
//! Why: a UDP flow that reached a host port before a hostPort mapping existed keeps its
//! un-NATed conntrack entry, and every later datagram of that flow bypasses the new DNAT
//! until the entry times out. The reference portmap flushes such entries on ADD; so do we.
//! Only dump-and-delete of the original tuple is needed, so the few message layouts are
//! written out here rather than pulling in a conntrack crate.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Iterates the netlink attributes in `buf` as (type without flags, payload, whole attribute).
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off + 4 > buf.len() {
            return None;
        }
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & NLA_TYPE_MASK;
        if len < 4 || off + len > buf.len() {
            return None;
        }
        let item = (ty, &buf[off + 4..off + len], &buf[off..off + len]);
        off += (len + 3) & !3;
        Some(item)
    })
}

fn message(ty: u16, flags: u16, seq: u32, family: u8, body: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | ty).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
    m.extend_from_slice(body);
    m
}

/// Reads replies to `seq` until DONE or an ACK/error; returns the payloads after nfgenmsg.
fn collect(sock: &Socket, seq: u32) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full()?;
        let mut off = 0usize;
        while off + 16 <= data.len() {
            let len = u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]])
                as usize;
            if len < 16 || off + len > data.len() {
                return Err(io::Error::other("truncated netlink message"));
            }
            let ty = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
            let mseq =
                u32::from_ne_bytes([data[off + 8], data[off + 9], data[off + 10], data[off + 11]]);
            let msg = &data[off + 16..off + len];
            off += (len + 3) & !3;
            if mseq != seq {
                continue;
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = msg
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    return if code == 0 {
                        Ok(out)
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
                _ if msg.len() >= 4 => out.push(msg[4..].to_vec()),
                _ => {}
            }
        }
    }
}

/// Deletes every conntrack entry (of `family`, libc::AF_INET or AF_INET6) whose original
/// direction is `proto` to destination port `port`. Returns how many were deleted.
pub fn delete_by_dst_port(family: u8, proto: u8, port: u16) -> io::Result<usize> {
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    sock.send(
        &message(
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            family,
            &[],
        ),
        0,
    )?;
    let entries = collect(&sock, 1)?;
    let mut deleted = 0;
    for (i, e) in entries.iter().enumerate() {
        let Some((_, tuple, whole)) = attrs(e).find(|(t, _, _)| *t == CTA_TUPLE_ORIG) else {
            continue;
        };
        let Some((_, p, _)) = attrs(tuple).find(|(t, _, _)| *t == CTA_TUPLE_PROTO) else {
            continue;
        };
        let num = attrs(p)
            .find(|(t, _, _)| *t == CTA_PROTO_NUM)
            .and_then(|(_, v, _)| v.first().copied());
        let dport = attrs(p)
            .find(|(t, _, _)| *t == CTA_PROTO_DST_PORT)
            .and_then(|(_, v, _)| v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])));
        if num != Some(proto) || dport != Some(port) {
            continue;
        }
        let seq = 2 + i as u32;
        sock.send(
            &message(
                IPCTNL_MSG_CT_DELETE,
                NLM_F_REQUEST | NLM_F_ACK,
                seq,
                family,
                whole,
            ),
            0,
        )?;
        match collect(&sock, seq) {
            Ok(_) => deleted += 1,
            // Gone meanwhile (expired or deleted by someone else): that is the goal anyway.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_nested_attributes() {
        // CTA_TUPLE_ORIG { CTA_TUPLE_PROTO { NUM=17, DST_PORT=53 } }, with NLA_F_NESTED set.
        let num = [5u8, 0, 1, 0, 17, 0, 0, 0];
        let port = [6u8, 0, 3, 0, 0, 53, 0, 0];
        let mut proto = vec![20u8, 0, 2, 0x80];
        proto.extend_from_slice(&num);
        proto.extend_from_slice(&port);
        let mut orig = vec![24u8, 0, 1, 0x80];
        orig.extend_from_slice(&proto);
        let (t, tuple, whole) = attrs(&orig).next().unwrap();
        assert_eq!((t, whole.len()), (CTA_TUPLE_ORIG, 24));
        let (_, p, _) = attrs(tuple)
            .find(|(t, _, _)| *t == CTA_TUPLE_PROTO)
            .unwrap();
        let got: Vec<_> = attrs(p).map(|(t, v, _)| (t, v.to_vec())).collect();
        assert_eq!(got, vec![(1, vec![17]), (3, vec![0, 53])]);
    }
}
