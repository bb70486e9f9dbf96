//! `berth-loopback`: brings `lo` up inside the pod's netns.
//!
//! As in the reference plugin the interface is always `lo` whatever CNI_IFNAME says, and when
//! chained after other plugins it passes their `prevResult` through unchanged.

use std::path::Path;

use serde_json::Value;

use super::{Args, Plugin, PluginError, code, prev_result};
use crate::client::result::{CniResult, Interface, IpConfig};
use crate::netlink::{Netlink, in_netns};

pub struct Loopback;

fn set_lo(netns: &str, up: bool) -> Result<Vec<crate::cidr::IpNet>, PluginError> {
    in_netns(Path::new(netns), move || -> Result<_, PluginError> {
        let mut nl = Netlink::open()?;
        let lo = nl
            .link_by_name("lo")?
            .ok_or_else(|| PluginError::internal("no lo in netns"))?;
        nl.set_link(lo.index, Some(up), None, None, None)?;
        if up {
            Ok(nl.addrs(lo.index)?)
        } else {
            Ok(Vec::new())
        }
    })
    .map_err(|e| PluginError::new(code::IO, format!("enter netns {netns}: {e}")))?
}

impl Plugin for Loopback {
    fn add(&self, a: &Args) -> Result<CniResult, PluginError> {
        let conf: Value = a.conf()?;
        let addrs = set_lo(&a.netns, true)?;
        if let Some(prev) = prev_result(&conf)? {
            return Ok(prev);
        }
        Ok(CniResult {
            cni_version: a.version.clone(),
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                mtu: None,
                sandbox: Some(a.netns.clone()),
            }],
            ips: addrs
                .into_iter()
                .map(|address| IpConfig {
                    version: None,
                    address,
                    gateway: None,
                    interface: Some(0),
                })
                .collect(),
            ..Default::default()
        })
    }

    fn del(&self, a: &Args) -> Result<(), PluginError> {
        if a.netns.is_empty() || !Path::new(&a.netns).exists() {
            return Ok(());
        }
        set_lo(&a.netns, false).map(|_| ())
    }

    fn check(&self, a: &Args) -> Result<(), PluginError> {
        let up = in_netns(Path::new(&a.netns), || -> Result<bool, PluginError> {
            let mut nl = Netlink::open()?;
            Ok(nl.link_by_name("lo")?.is_some_and(|l| l.up))
        })
        .map_err(|e| PluginError::new(code::IO, format!("enter netns {}: {e}", a.netns)))??;
        if up {
            Ok(())
        } else {
            Err(PluginError::internal("lo is down"))
        }
    }
}
