//! `berth-bridge`: a veth pair from a Linux bridge on the host into the pod's netns, with
//! addresses from the IPAM plugin named in `ipam.type`.
//!
//! Accepts the reference bridge plugin's keys: `bridge`, `mtu`, `isGateway`,
//! `isDefaultGateway`, `ipMasq`, `hairpinMode`, `promiscMode`, `ipam`. The pod end is created
//! directly inside the netns under its final name, so there is no rename step and no window
//! where a pod's interface is visible on the host.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{
    Args, Delegated, Plugin, PluginError, code, delegate, prev_result, short_hash, spawn_delegate,
    sysctl,
};
use crate::cidr::IpNet;
use crate::client::result::{CniResult, Interface};
use crate::netlink::{Link, Netlink, in_netns};
use crate::nft;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conf {
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    ipam: Value,
}

impl Conf {
    fn bridge(&self) -> Result<&str, PluginError> {
        let b = self.bridge.as_deref().unwrap_or("cni0");
        if b.is_empty() || b.len() > 15 || b.contains('/') {
            return Err(PluginError::config(format!("invalid bridge name {b:?}")));
        }
        Ok(b)
    }
    fn ipam_type(&self) -> &str {
        self.ipam
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

const MASQ_TABLE: &str = "berth_bridge";

fn random_veth_name() -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b = (t.subsec_nanos() ^ std::process::id()).to_ne_bytes();
    }
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

pub struct Bridge;

impl Bridge {
    /// Bridge and veth pair: independent of the addresses, so it overlaps the IPAM call.
    fn links(&self, a: &Args, c: &Conf) -> Result<(Netlink, Link, Link), PluginError> {
        let br_name = c.bridge()?;
        let mut nl = Netlink::open()?;
        nl.add_bridge(br_name, c.mtu)?;
        let br = nl
            .link_by_name(br_name)?
            .ok_or_else(|| PluginError::internal(format!("bridge {br_name} vanished")))?;
        if br.kind.as_deref().is_some_and(|k| k != "bridge") {
            return Err(PluginError::config(format!(
                "{br_name} exists and is not a bridge"
            )));
        }
        nl.set_link(
            br.index,
            Some(true),
            c.promisc_mode.then_some(true),
            None,
            None,
        )?;

        let netns = std::fs::File::open(&a.netns)
            .map_err(|e| PluginError::new(code::IO, format!("open netns {}: {e}", a.netns)))?;
        let mut host_name = random_veth_name();
        let mut tries = 0;
        loop {
            match nl.add_veth(&host_name, &a.ifname, netns.as_raw_fd(), c.mtu) {
                Ok(()) => break,
                Err(e) if e.errno() == Some(libc::EEXIST) && tries < 3 => {
                    // Either our random host name clashed, or the pod already has `ifname`.
                    if nl.link_by_name(&host_name)?.is_none() {
                        return Err(PluginError::new(
                            code::IFNAME_EXISTS,
                            format!("container interface {} already exists", a.ifname),
                        ));
                    }
                    tries += 1;
                    host_name = random_veth_name();
                }
                Err(e) => return Err(e.into()),
            }
        }
        let attach = |nl: &mut Netlink| -> Result<Link, PluginError> {
            let host = nl
                .link_by_name(&host_name)?
                .ok_or_else(|| PluginError::internal(format!("veth {host_name} vanished")))?;
            nl.set_link(host.index, Some(true), None, Some(br.index), None)?;
            if c.hairpin_mode {
                nl.set_hairpin(host.index, true)?;
            }
            Ok(host)
        };
        match attach(&mut nl) {
            Ok(host) => Ok((nl, br, host)),
            Err(e) => {
                // Our pair, half set up: remove it (the pod end goes with it).
                if let Ok(Some(l)) = nl.link_by_name(&host_name) {
                    let _ = nl.del_link(l.index);
                }
                Err(e)
            }
        }
    }

    /// Addresses and routes inside the pod, gateway on the bridge, forwarding, masquerade.
    fn configure(
        &self,
        a: &Args,
        c: &Conf,
        (mut nl, br, host): (Netlink, Link, Link),
        ipam: &mut CniResult,
    ) -> Result<CniResult, PluginError> {
        let br_name = c.bridge()?;

        let gw4 = ipam
            .ips
            .iter()
            .find(|i| i.address.is_ipv4())
            .and_then(|i| i.gateway);
        let gw6 = ipam
            .ips
            .iter()
            .find(|i| !i.address.is_ipv4())
            .and_then(|i| i.gateway);
        let mut routes = ipam.routes.clone();
        if c.is_default_gateway {
            for gw in [gw4, gw6].into_iter().flatten() {
                let dst = IpNet {
                    addr: if gw.is_ipv4() {
                        "0.0.0.0".parse().unwrap_or(gw)
                    } else {
                        "::".parse().unwrap_or(gw)
                    },
                    prefix: 0,
                };
                if !routes.iter().any(|r| r.dst == dst) {
                    routes.push(crate::client::result::Route {
                        dst,
                        gw: Some(gw),
                        mtu: None,
                        priority: None,
                        table: None,
                    });
                }
            }
        }
        let addrs: Vec<IpNet> = ipam.ips.iter().map(|i| i.address).collect();
        let ifname = a.ifname.clone();
        let pod_mac = in_netns(Path::new(&a.netns), || -> Result<String, PluginError> {
            let mut nl = Netlink::open()?;
            let l = nl
                .link_by_name(&ifname)?
                .ok_or_else(|| PluginError::internal(format!("{ifname} missing in netns")))?;
            for a in &addrs {
                nl.add_addr(l.index, *a, false)?;
            }
            nl.set_link(l.index, Some(true), None, None, None)?;
            for r in &routes {
                let gw = r.gw.or(if r.dst.is_ipv4() { gw4 } else { gw6 });
                nl.add_route(r.dst, gw, l.index)?;
            }
            Ok(l.mac)
        })
        .map_err(|e| PluginError::new(code::IO, format!("enter netns {}: {e}", a.netns)))??;

        if c.is_gateway || c.is_default_gateway {
            for ip in &ipam.ips {
                if let Some(gw) = ip.gateway {
                    nl.add_addr(
                        br.index,
                        IpNet {
                            addr: gw,
                            prefix: ip.address.prefix,
                        },
                        true,
                    )?;
                }
            }
            if gw4.is_some() {
                sysctl("net/ipv4/ip_forward", "1")?;
            }
            if gw6.is_some() {
                sysctl("net/ipv6/conf/all/forwarding", "1")?;
            }
        }
        if c.ip_masq {
            masquerade_add(a, &ipam.ips.iter().map(|i| i.address).collect::<Vec<_>>())?;
        }
        let br_mac = nl.link_by_name(br_name)?.map(|l| l.mac).unwrap_or_default();
        let mut r = CniResult {
            cni_version: a.version.clone(),
            interfaces: vec![
                Interface {
                    name: br_name.to_string(),
                    mac: br_mac,
                    mtu: None,
                    sandbox: None,
                },
                Interface {
                    name: host.name.clone(),
                    mac: host.mac,
                    mtu: None,
                    sandbox: None,
                },
                Interface {
                    name: a.ifname.clone(),
                    mac: pod_mac,
                    mtu: None,
                    sandbox: Some(a.netns.clone()),
                },
            ],
            ips: std::mem::take(&mut ipam.ips),
            routes,
            dns: std::mem::take(&mut ipam.dns),
        };
        for ip in &mut r.ips {
            ip.interface = Some(2);
        }
        Ok(r)
    }
}

fn masq_tag(a: &Args) -> String {
    format!("m{}", short_hash(&[&a.container_id, &a.ifname]))
}

/// SNAT pod traffic leaving its subnet, in our own table with one chain per attachment.
fn masquerade_add(a: &Args, addrs: &[IpNet]) -> Result<(), PluginError> {
    nft::apply(&masq_script(&masq_tag(a), addrs))?;
    Ok(())
}

fn masq_script(tag: &str, addrs: &[IpNet]) -> String {
    let t = MASQ_TABLE;
    let mut s = format!(
        "add table inet {t}\nadd chain inet {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         add chain inet {t} {tag}\nflush chain inet {t} {tag}\n"
    );
    for n in addrs {
        let fam = if n.is_ipv4() { "ip" } else { "ip6" };
        let mc = if n.is_ipv4() {
            "224.0.0.0/4"
        } else {
            "ff00::/8"
        };
        s.push_str(&format!(
            "add rule inet {t} {tag} {fam} daddr != {} {fam} daddr != {mc} masquerade\n",
            n.trunc()
        ));
        s.push_str(&format!(
            "add rule inet {t} postrouting {fam} saddr {} jump {tag} comment \"{tag}\"\n",
            n.addr
        ));
    }
    s
}

/// Our own host-local, recognised by type, runs in-process: the same code as the
/// `berth-host-local` executable on the same lease files, minus a fork/exec on every ADD/DEL.
const LOCAL_IPAM: &str = "berth-host-local";

/// An IPAM ADD in flight, overlapping the link setup.
enum PendingIpam {
    Local(std::thread::JoinHandle<Result<CniResult, PluginError>>),
    Exec(Delegated),
}

impl PendingIpam {
    fn start(a: &Args, c: &Conf) -> Result<Self, PluginError> {
        if c.ipam_type() == LOCAL_IPAM {
            let a = a.clone();
            Ok(Self::Local(std::thread::spawn(move || {
                super::ipam::HostLocal.add(&a)
            })))
        } else {
            Ok(Self::Exec(spawn_delegate(a, c.ipam_type(), "ADD")?))
        }
    }

    fn wait(self) -> Result<CniResult, PluginError> {
        match self {
            Self::Local(h) => h
                .join()
                .map_err(|_| PluginError::internal("ipam thread panicked"))?,
            Self::Exec(d) => serde_json::from_slice(&d.wait()?)
                .map_err(|e| PluginError::new(code::DECODE, format!("decode ipam result: {e}"))),
        }
    }
}

fn ipam_del(a: &Args, c: &Conf) -> Result<(), PluginError> {
    if c.ipam_type() == LOCAL_IPAM {
        super::ipam::HostLocal.del(a)
    } else {
        delegate(a, c.ipam_type(), "DEL").map(|_| ())
    }
}

impl Plugin for Bridge {
    fn add(&self, a: &Args) -> Result<CniResult, PluginError> {
        let c: Conf = a.conf()?;
        let ipam_run = PendingIpam::start(a, &c)?;
        let links = self.links(a, &c);
        // Only a pair we made may be removed on failure: an `ifname` that already existed
        // (a repeated ADD) belongs to someone else.
        let made_links = links.is_ok();
        let ipam_out = ipam_run.wait();
        let result = (|| {
            let links = links?;
            let mut ipam = ipam_out?;
            if ipam.ips.is_empty() {
                return Err(PluginError::new(
                    code::NO_ADDRESSES,
                    "ipam returned no addresses",
                ));
            }
            self.configure(a, &c, links, &mut ipam)
        })();
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                // Undo: give the address back and drop whatever half-made interface exists.
                if e.code == code::IFNAME_EXISTS {
                    // A repeated ADD: the interface and its lease belong to the first one.
                    return Err(e);
                }
                let _ = ipam_del(a, &c);
                if !made_links {
                    return Err(e);
                }
                let ifname = a.ifname.clone();
                let _ = in_netns(Path::new(&a.netns), move || -> Result<(), PluginError> {
                    let mut nl = Netlink::open()?;
                    if let Some(l) = nl.link_by_name(&ifname)? {
                        nl.del_link(l.index)?;
                    }
                    Ok(())
                });
                Err(e)
            }
        }
    }

    fn del(&self, a: &Args) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        let ipam_run = if c.ipam_type() == LOCAL_IPAM {
            None
        } else {
            Some(spawn_delegate(a, c.ipam_type(), "DEL"))
        };
        if !a.netns.is_empty() && Path::new(&a.netns).exists() {
            let ifname = a.ifname.clone();
            in_netns(Path::new(&a.netns), move || -> Result<(), PluginError> {
                let mut nl = Netlink::open()?;
                if let Some(l) = nl.link_by_name(&ifname)? {
                    match nl.del_link(l.index) {
                        Err(e) if e.errno() == Some(libc::ENODEV) => {}
                        r => r?,
                    }
                }
                Ok(())
            })
            .map_err(|e| PluginError::new(code::IO, format!("enter netns {}: {e}", a.netns)))??;
        } else if let Ok(Some(prev)) = a.conf::<Value>().and_then(|v| prev_result(&v)) {
            // The netns file is gone but the namespace may still be held somewhere: remove the
            // host end named in the cached result, which takes the pod end with it.
            let br = c.bridge()?;
            let mut nl = Netlink::open()?;
            for i in prev
                .interfaces
                .iter()
                .filter(|i| i.sandbox.is_none() && i.name != br)
            {
                if let Some(l) = nl.link_by_name(&i.name)?
                    && l.kind.as_deref() == Some("veth")
                {
                    let _ = nl.del_link(l.index);
                }
            }
        }
        if c.ip_masq {
            nft::delete_tagged("inet", MASQ_TABLE, &masq_tag(a))?;
        }
        match ipam_run {
            Some(run) => run?.wait().map(|_| ()),
            None => super::ipam::HostLocal.del(a),
        }
    }

    fn check(&self, a: &Args) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        let conf: Value = a.conf()?;
        let prev = prev_result(&conf)?
            .ok_or_else(|| PluginError::config("CHECK requires a prevResult"))?;
        let br = c.bridge()?.to_string();
        let mut nl = Netlink::open()?;
        let brl = nl
            .link_by_name(&br)?
            .ok_or_else(|| PluginError::internal(format!("bridge {br} not found")))?;
        for i in prev
            .interfaces
            .iter()
            .filter(|i| i.sandbox.is_none() && i.name != br)
        {
            let l = nl
                .link_by_name(&i.name)?
                .ok_or_else(|| PluginError::internal(format!("host veth {} not found", i.name)))?;
            if l.controller != Some(brl.index) {
                return Err(PluginError::internal(format!(
                    "{} is not attached to {br}",
                    i.name
                )));
            }
        }
        let want: Vec<IpAddr> = prev.sandbox_ips().iter().map(|n| n.addr).collect();
        let ifname = a.ifname.clone();
        in_netns(Path::new(&a.netns), move || -> Result<(), PluginError> {
            let mut nl = Netlink::open()?;
            let l = nl
                .link_by_name(&ifname)?
                .ok_or_else(|| PluginError::internal(format!("{ifname} not found in netns")))?;
            let have: Vec<IpAddr> = nl.addrs(l.index)?.iter().map(|n| n.addr).collect();
            for ip in want {
                if !have.contains(&ip) {
                    return Err(PluginError::internal(format!(
                        "{ifname} lacks address {ip}"
                    )));
                }
            }
            Ok(())
        })
        .map_err(|e| PluginError::new(code::IO, format!("enter netns {}: {e}", a.netns)))??;
        delegate(a, c.ipam_type(), "CHECK").map(|_| ())
    }

    fn status(&self, a: &Args) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        c.bridge()?;
        delegate(a, c.ipam_type(), "STATUS").map(|_| ())
    }

    /// Veths vanish with their pod's netns; what can outlive it is the IPAM lease (delegated)
    /// and masquerade chains.
    fn gc(&self, a: &Args, valid: &[(String, String)]) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        let keep: Vec<String> = valid
            .iter()
            .map(|(id, ifname)| format!("m{}", short_hash(&[id, ifname])))
            .collect();
        nft::delete_untagged_except("inet", MASQ_TABLE, 'm', &keep)?;
        delegate(a, c.ipam_type(), "GC").map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerade_skips_own_subnet_and_multicast() {
        let s = masq_script(
            "mabc",
            &[
                "10.88.0.5/16".parse().unwrap(),
                "fd00::5/64".parse().unwrap(),
            ],
        );
        assert!(s.contains("add rule inet berth_bridge mabc ip daddr != 10.88.0.0/16 ip daddr != 224.0.0.0/4 masquerade"), "{s}");
        assert!(s.contains("add rule inet berth_bridge postrouting ip saddr 10.88.0.5 jump mabc comment \"mabc\""), "{s}");
        assert!(
            s.contains("ip6 daddr != fd00::/64 ip6 daddr != ff00::/8 masquerade"),
            "{s}"
        );
    }
}
