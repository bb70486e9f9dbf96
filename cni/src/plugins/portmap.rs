//! `berth-portmap`: publishes `hostPort -> pod:containerPort` (TCP and UDP) with nftables.
//!
//! Everything lives in one `inet berth_portmap` table:
//! - `prerouting` and `output` (nat) send packets addressed to any local address into
//!   `hostports`, so a hostPort answers from other hosts and from the host itself;
//! - `hostports` jumps to one chain per attachment, holding its DNAT rules;
//! - `postrouting` masquerades DNATed traffic from 127.0.0.0/8 (which also needs
//!   `route_localnet` on the bridge) and hairpin traffic from the pod to itself.
//!
//! Rules in shared chains carry a comment naming the attachment's chain, which is how DEL
//! finds them. A marker file per attachment under `/run/berth-portmap/<netns inode>/` lets
//! DEL skip nft entirely for pods that published no port, and drop the whole table in one
//! transaction when the last attachment goes; a lock file there serialises our ADD/DEL.

use std::fs::OpenOptions;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{Args, Plugin, PluginError, prev_result, short_hash, sysctl};
use crate::client::result::CniResult;
use crate::nft;

const TABLE: &str = "berth_portmap";
const STATE_ROOT: &str = "/run/berth-portmap";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mapping {
    host_port: u16,
    container_port: u16,
    #[serde(default)]
    protocol: String,
    #[serde(rename = "hostIP", default)]
    host_ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<Mapping>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conf {
    #[serde(default)]
    runtime_config: RuntimeConfig,
    #[serde(default)]
    snat: Option<bool>,
}

fn tag(a: &Args) -> String {
    format!("p{}", short_hash(&[&a.container_id, &a.ifname]))
}

/// Held for its Drop: closing the file releases the flock.
struct Lock(#[allow(dead_code)] std::fs::File);

/// The state dir of the network namespace this plugin runs in (nft tables are per netns).
fn state_dir() -> Result<PathBuf, PluginError> {
    let ino = std::fs::metadata("/proc/self/ns/net")?.ino();
    let d = Path::new(STATE_ROOT).join(ino.to_string());
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn lock(dir: &Path) -> Result<Lock, PluginError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // SAFETY: flock on our own fd; released on close.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(Lock(f))
}

/// Attachments with rules in this namespace, by marker file.
fn attachments(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('p'))
                .collect()
        })
        .unwrap_or_default()
}

/// The nft script for one attachment (table and base chains are created idempotently).
fn add_script(
    tag: &str,
    maps: &[Mapping],
    pod4: Option<IpAddr>,
    pod6: Option<IpAddr>,
    snat: bool,
) -> Result<String, PluginError> {
    let t = TABLE;
    let mut s = format!(
        "add table inet {t}\n\
         add chain inet {t} hostports\n\
         add chain inet {t} masq\n\
         add chain inet {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain inet {t} output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain inet {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain inet {t} prerouting\n\
         flush chain inet {t} output\n\
         flush chain inet {t} postrouting\n\
         add rule inet {t} prerouting fib daddr type local jump hostports\n\
         add rule inet {t} output fib daddr type local jump hostports\n\
         add rule inet {t} postrouting ct status dnat jump masq\n\
         add chain inet {t} {tag}\n\
         flush chain inet {t} {tag}\n"
    );
    for m in maps {
        let proto = match m.protocol.to_ascii_lowercase().as_str() {
            "" | "tcp" => "tcp",
            "udp" => "udp",
            "sctp" => "sctp",
            p => return Err(PluginError::config(format!("unsupported protocol {p:?}"))),
        };
        let host_ip: Option<IpAddr> = match m.host_ip.as_deref() {
            None | Some("") | Some("0.0.0.0") | Some("::") => None,
            Some(h) => Some(
                h.parse()
                    .map_err(|_| PluginError::config(format!("invalid hostIP {h:?}")))?,
            ),
        };
        for pod in [pod4, pod6].into_iter().flatten() {
            if host_ip.is_some_and(|h| h.is_ipv4() != pod.is_ipv4()) {
                continue;
            }
            let (fam, nfproto) = if pod.is_ipv4() {
                ("ip", "ipv4")
            } else {
                ("ip6", "ipv6")
            };
            let dest = if pod.is_ipv4() {
                format!("{pod}:{}", m.container_port)
            } else {
                format!("[{pod}]:{}", m.container_port)
            };
            let hmatch = host_ip
                .map(|h| format!("{fam} daddr {h} "))
                .unwrap_or_default();
            s.push_str(&format!(
                "add rule inet {t} {tag} meta nfproto {nfproto} {hmatch}{proto} dport {} dnat {fam} to {dest}\n",
                m.host_port
            ));
        }
    }
    s.push_str(&format!(
        "add rule inet {t} hostports jump {tag} comment \"{tag}\"\n"
    ));
    if snat {
        if let Some(p) = pod4 {
            s.push_str(&format!("add rule inet {t} masq ip saddr 127.0.0.0/8 ip daddr {p} masquerade comment \"{tag}\"\n"));
            s.push_str(&format!(
                "add rule inet {t} masq ip saddr {p} ip daddr {p} masquerade comment \"{tag}\"\n"
            ));
        }
        if let Some(p) = pod6 {
            s.push_str(&format!(
                "add rule inet {t} masq ip6 saddr {p} ip6 daddr {p} masquerade comment \"{tag}\"\n"
            ));
        }
    }
    Ok(s)
}

pub struct Portmap;

impl Plugin for Portmap {
    fn add(&self, a: &Args) -> Result<CniResult, PluginError> {
        let c: Conf = a.conf()?;
        let raw: Value = a.conf()?;
        let prev = prev_result(&raw)?
            .ok_or_else(|| PluginError::config("portmap must be chained: no prevResult"))?;
        let maps = &c.runtime_config.port_mappings;
        if maps.is_empty() {
            return Ok(prev);
        }
        let ips = prev.sandbox_ips();
        let pod4 = ips.iter().find(|n| n.is_ipv4()).map(|n| n.addr);
        let pod6 = ips.iter().find(|n| !n.is_ipv4()).map(|n| n.addr);
        if pod4.is_none() && pod6.is_none() {
            return Err(PluginError::config(
                "portmap: prevResult has no pod address",
            ));
        }
        let snat = c.snat.unwrap_or(true);
        if snat && pod4.is_some() {
            // 127.0.0.1 -> pod needs the host side to route loopback sources out of the bridge.
            if let Some(host_if) = prev
                .interfaces
                .iter()
                .find(|i| i.sandbox.as_deref().is_none_or(str::is_empty))
                .filter(|i| {
                    // The name comes from another plugin's output and lands in a /proc path.
                    !i.name.is_empty()
                        && i.name.len() <= 15
                        && !i.name.contains('/')
                        && !i.name.starts_with('.')
                })
            {
                sysctl(
                    &format!("net/ipv4/conf/{}/route_localnet", host_if.name),
                    "1",
                )?;
            }
        }
        let t = tag(a);
        let script = add_script(&t, maps, pod4, pod6, snat)?;
        let dir = state_dir()?;
        let _l = lock(&dir)?;
        // Marker first: a crash after it leaves a DEL that still looks in nft.
        std::fs::write(dir.join(&t), &a.container_id)?;
        nft::apply(&script)?;
        // UDP flows that hit these ports before the mapping existed would bypass it until
        // their conntrack entries expire; drop them now (best effort, as the reference does).
        for m in maps
            .iter()
            .filter(|m| m.protocol.eq_ignore_ascii_case("udp"))
        {
            for (fam, pod) in [(libc::AF_INET, pod4), (libc::AF_INET6, pod6)] {
                if pod.is_some() {
                    let _ = crate::conntrack::delete_by_dst_port(
                        fam as u8,
                        libc::IPPROTO_UDP as u8,
                        m.host_port,
                    );
                }
            }
        }
        Ok(prev)
    }

    fn del(&self, a: &Args) -> Result<(), PluginError> {
        let t = tag(a);
        let dir = state_dir()?;
        let _l = lock(&dir)?;
        let marker = dir.join(&t);
        if !marker.exists() {
            // ADD published no port here (or DEL already ran): nothing in nft is ours.
            return Ok(());
        }
        if attachments(&dir).iter().any(|x| *x != t) {
            nft::delete_tagged("inet", TABLE, &t)?;
        } else if nft::list_table("inet", TABLE)?.is_some() {
            // The last attachment: the table goes as a whole, in one transaction.
            nft::apply(&format!("delete table inet {TABLE}\n"))?;
        }
        std::fs::remove_file(&marker)?;
        Ok(())
    }

    /// Usable only where the nft CLI is installed.
    fn status(&self, _a: &Args) -> Result<(), PluginError> {
        nft::available().map_err(|e| PluginError::new(super::code::NOT_AVAILABLE, e.to_string()))
    }

    fn gc(&self, _a: &Args, valid: &[(String, String)]) -> Result<(), PluginError> {
        let dir = state_dir()?;
        let _l = lock(&dir)?;
        let keep: Vec<String> = valid
            .iter()
            .map(|(id, ifname)| format!("p{}", short_hash(&[id, ifname])))
            .collect();
        nft::delete_untagged_except("inet", TABLE, 'p', &keep)?;
        for m in attachments(&dir) {
            if !keep.contains(&m) {
                let _ = std::fs::remove_file(dir.join(m));
            }
        }
        Ok(())
    }

    fn check(&self, a: &Args) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        if c.runtime_config.port_mappings.is_empty() {
            return Ok(());
        }
        let l = nft::list_table("inet", TABLE)?
            .ok_or_else(|| PluginError::internal("portmap table missing"))?;
        if l.chains.iter().any(|ch| *ch == tag(a)) {
            Ok(())
        } else {
            Err(PluginError::internal("portmap chain missing"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_has_dnat_and_masq_per_family() {
        let m = Mapping {
            host_port: 18080,
            container_port: 80,
            protocol: "TCP".into(),
            host_ip: None,
        };
        let u = Mapping {
            host_port: 5353,
            container_port: 53,
            protocol: "udp".into(),
            host_ip: Some("10.0.0.1".into()),
        };
        let s = add_script(
            "pabc",
            &[m, u],
            Some("10.88.0.5".parse().unwrap()),
            Some("fd00::5".parse().unwrap()),
            true,
        )
        .unwrap();
        assert!(
            s.contains("meta nfproto ipv4 tcp dport 18080 dnat ip to 10.88.0.5:80"),
            "{s}"
        );
        assert!(
            s.contains("meta nfproto ipv6 tcp dport 18080 dnat ip6 to [fd00::5]:80"),
            "{s}"
        );
        assert!(
            s.contains("ip daddr 10.0.0.1 udp dport 5353 dnat ip to 10.88.0.5:53"),
            "{s}"
        );
        assert!(!s.contains("ip6 daddr 10.0.0.1"), "{s}");
        assert!(s.contains("ip saddr 127.0.0.0/8 ip daddr 10.88.0.5 masquerade comment \"pabc\""));
    }
}
