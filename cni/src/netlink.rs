//! Synchronous rtnetlink: just the link, address and route operations the plugins need.
//!
//! The plugins are short-lived single-purpose processes, so a blocking socket with one request
//! in flight is both the simplest and the fastest choice (no async runtime to start). A netlink
//! socket acts in the network namespace of the thread that opened it, which is why
//! [`in_netns`] runs a closure on a fresh thread that has joined the target namespace.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    LinkProtoInfoBridge,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::cidr::IpNet;

/// A netlink failure: the kernel's errno, or a reply we could not decode.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink {op}: {source}")]
    Kernel { op: &'static str, source: io::Error },
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("netlink decode: {0}")]
    Decode(String),
}

impl NetlinkError {
    /// The errno the kernel answered with, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// One rtnetlink socket bound to the calling thread's network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

/// What the plugins need to know of a link.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub up: bool,
    pub controller: Option<u32>,
    pub kind: Option<String>,
}

impl Netlink {
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Self { sock, seq: 0 })
    }

    fn request(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(NetlinkError::Socket)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(NetlinkError::Socket)?;
            let mut off = 0usize;
            while off + 16 <= data.len() {
                let len =
                    u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]])
                        as usize;
                if len < 16 || off + len > data.len() {
                    return Err(NetlinkError::Decode("truncated message".into()));
                }
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..off + len])
                    .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                off += (len + 3) & !3;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(NetlinkError::Kernel {
                                op,
                                source: io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(inner) => {
                        out.push(inner);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Looks a link up by name; `None` when it does not exist.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request("get link", RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(mut v) => Ok(v.pop().and_then(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(&l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msg = LinkMessage::default();
        let v = self.request("dump links", RouteNetlinkMessage::GetLink(msg), NLM_F_DUMP)?;
        Ok(v.iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })
            .collect())
    }

    /// Creates a bridge; an existing link of that name is not an error (concurrent ADDs race here).
    pub fn add_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        match self.request(
            "add bridge",
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Creates a veth pair whose peer is born inside the namespace `peer_netns` as `peer_name`,
    /// so no interface with a pod's name ever appears on the host.
    pub fn add_veth(
        &mut self,
        host_name: &str,
        peer_name: &str,
        peer_netns: RawFd,
        mtu: Option<u32>,
    ) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_string()));
        peer.attributes.push(LinkAttribute::NetNsFd(peer_netns));
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(host_name.to_string()));
        if let Some(mtu) = mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            "add veth",
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(|_| ())
    }

    /// Changes flags, controller (bridge) or MTU of a link.
    pub fn set_link(
        &mut self,
        index: u32,
        up: Option<bool>,
        promisc: Option<bool>,
        controller: Option<u32>,
        mtu: Option<u32>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(up) = up {
            msg.header.change_mask |= LinkFlags::Up;
            if up {
                msg.header.flags |= LinkFlags::Up;
            }
        }
        if let Some(p) = promisc {
            msg.header.change_mask |= LinkFlags::Promisc;
            if p {
                msg.header.flags |= LinkFlags::Promisc;
            }
        }
        if let Some(c) = controller {
            msg.attributes.push(LinkAttribute::Controller(c));
        }
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.request("set link", RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(|_| ())
    }

    /// Lets a bridge port send frames back out the port they came in on (pod to its own
    /// hostPort through the gateway). Done over netlink (IFLA_BRPORT_MODE) rather than sysfs,
    /// because /sys shows the namespace it was mounted in, not the caller's.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        const IFLA_BRPORT_MODE: u16 = 4;
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::ProtoInfoBridge(vec![
            LinkProtoInfoBridge::Other(DefaultNla::new(IFLA_BRPORT_MODE, vec![on as u8])),
        ]));
        self.request("set hairpin", RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(|_| ())
    }

    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request("del link", RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)
            .map(|_| ())
    }

    /// Adds an address; `exist_ok` tolerates it being there already (a bridge's gateway address).
    pub fn add_addr(&mut self, index: u32, net: IpNet, exist_ok: bool) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(net.addr);
        msg.header.prefix_len = net.prefix;
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        msg.attributes.push(AddressAttribute::Local(net.addr));
        msg.attributes.push(AddressAttribute::Address(net.addr));
        if !net.is_ipv4() {
            // Addresses come from our allocator: skip duplicate address detection, so the
            // address is usable at once instead of "tentative" for a second or more.
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        if let (IpAddr::V4(_), IpAddr::V4(b)) = (net.addr, net.last())
            && net.prefix < 31
        {
            msg.attributes.push(AddressAttribute::Broadcast(b));
        }
        match self.request(
            "add address",
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if exist_ok && e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// The addresses of one link.
    pub fn addrs(&mut self, index: u32) -> Result<Vec<IpNet>> {
        let msg = AddressMessage::default();
        let v = self.request(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(msg),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in v {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                if a.header.index != index {
                    continue;
                }
                let ip = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let ip = ip.or_else(|| {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
                if let Some(ip) = ip {
                    out.push(IpNet {
                        addr: ip,
                        prefix: a.header.prefix_len,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Adds a route in the main table; without a gateway it is a link-scope route.
    pub fn add_route(&mut self, dst: IpNet, gw: Option<IpAddr>, oif: u32) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(dst.addr);
        msg.header.destination_prefix_length = dst.prefix;
        msg.header.table = libc::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if gw.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        msg.header.kind = RouteType::Unicast;
        if dst.prefix > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    dst.network(),
                )));
        }
        if let Some(gw) = gw {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(oif));
        match self.request(
            "add route",
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn to_link(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: String::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        controller: None,
        kind: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(m) => link.mac = format_mac(m),
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn format_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `f` on a new thread that has joined the network namespace at `path`; the thread is
/// thrown away afterwards, so no other code ever runs in the wrong namespace.
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let ns = File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid fd only changes this (scoped, discarded) thread's namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("netns worker panicked"))?
    })
}
