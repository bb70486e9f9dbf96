//! `berth-host-local`: address allocation from configured ranges, one lease file per IP.
//!
//! Same config keys and on-disk layout as the reference host-local plugin: leases live in
//! `<dataDir>/<network name>/<ip>` holding `<container id>\r\n<ifname>`, the last handed-out
//! address per range set in `last_reserved_ip.<n>`, and every change happens under an
//! exclusive `flock` on `<dir>/lock`, so concurrent ADDs never hand out one address twice.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Args, Plugin, PluginError, code};
use crate::cidr::{IpNet, from_u128, to_u128};
use crate::client::result::{CniResult, Dns, IpConfig, Route};

const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    pub subnet: IpNet,
    #[serde(default)]
    pub range_start: Option<IpAddr>,
    #[serde(default)]
    pub range_end: Option<IpAddr>,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RouteConf {
    pub dst: IpNet,
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    #[serde(default)]
    pub ranges: Vec<Vec<RangeConf>>,
    /// Old single-range form.
    #[serde(default)]
    pub subnet: Option<IpNet>,
    #[serde(default)]
    pub range_start: Option<IpAddr>,
    #[serde(default)]
    pub range_end: Option<IpAddr>,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub routes: Vec<RouteConf>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub dns: Option<Dns>,
    /// A resolv.conf whose nameserver/domain/search/options lines become the result's DNS.
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
}

/// Reads the DNS settings of a resolv.conf file.
fn parse_resolv_conf(path: &Path) -> Result<Dns, PluginError> {
    let text = fs::read_to_string(path)
        .map_err(|e| PluginError::new(code::IO, format!("read {}: {e}", path.display())))?;
    let mut dns = Dns::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
            Some("domain") => dns.domain = words.next().map(str::to_string),
            Some("search") => dns.search = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    Ok(dns)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conf {
    name: String,
    ipam: IpamConf,
    #[serde(default)]
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    ips: Vec<String>,
}

/// A range resolved to concrete bounds.
#[derive(Debug, Clone)]
struct Range {
    subnet: IpNet,
    start: u128,
    end: u128,
    gateway: IpAddr,
}

impl Range {
    fn resolve(r: &RangeConf) -> Result<Self, PluginError> {
        let s = r.subnet.trunc();
        let net = to_u128(s.network());
        let last = to_u128(s.last());
        let v4 = s.is_ipv4();
        if (v4 && s.prefix > 30) || (!v4 && s.prefix > 126) {
            return Err(PluginError::config(format!("subnet {s} is too small")));
        }
        let gateway = r.gateway.unwrap_or_else(|| from_u128(s.addr, net + 1));
        let default_end = if v4 { last - 1 } else { last };
        let start = r.range_start.map(to_u128).unwrap_or(net + 1);
        let end = r.range_end.map(to_u128).unwrap_or(default_end);
        for (what, ip) in [
            ("rangeStart", r.range_start),
            ("rangeEnd", r.range_end),
            ("gateway", r.gateway),
        ] {
            if let Some(ip) = ip
                && !s.contains(ip)
            {
                return Err(PluginError::config(format!(
                    "{what} {ip} not in subnet {s}"
                )));
            }
        }
        if start > end {
            return Err(PluginError::config(format!(
                "rangeStart after rangeEnd in {s}"
            )));
        }
        Ok(Self {
            subnet: s,
            start,
            end,
            gateway,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.subnet.contains(ip) && (self.start..=self.end).contains(&to_u128(ip))
    }
}

impl IpamConf {
    /// The range sets, accepting the old top-level `subnet` form too.
    fn range_sets(&self) -> Result<Vec<Vec<Range>>, PluginError> {
        let mut sets = self.ranges.clone();
        if let Some(subnet) = self.subnet {
            sets.insert(
                0,
                vec![RangeConf {
                    subnet,
                    range_start: self.range_start,
                    range_end: self.range_end,
                    gateway: self.gateway,
                }],
            );
        }
        if sets.is_empty() || sets.iter().any(|s| s.is_empty()) {
            return Err(PluginError::config("ipam: no ranges configured"));
        }
        sets.iter()
            .map(|s| s.iter().map(Range::resolve).collect())
            .collect()
    }
}

/// The lease store of one network, locked for its whole lifetime.
struct Store {
    dir: PathBuf,
    _lock: File,
}

impl Store {
    fn open(data_dir: &Path, network: &str) -> Result<Self, PluginError> {
        if network.is_empty() || network.contains('/') || network.starts_with('.') {
            return Err(PluginError::config(format!(
                "invalid network name {network:?}"
            )));
        }
        let dir = data_dir.join(network);
        fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        // SAFETY: flock on an fd we own; released when the file is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(Self { dir, _lock: lock })
    }

    fn lease_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// Reserves `ip` for the attachment; false when someone else holds it.
    fn reserve(&self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool, PluginError> {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.lease_path(ip))
        {
            Ok(mut f) => {
                f.write_all(format!("{id}\r\n{ifname}").as_bytes())?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every (ip, owner id, ifname) lease.
    fn leases(&self) -> Vec<(IpAddr, String, String)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| {
                let ip: IpAddr = e.file_name().to_str()?.parse().ok()?;
                let body = fs::read_to_string(e.path()).ok()?;
                let mut lines = body.lines().map(str::trim);
                let id = lines.next().unwrap_or_default().to_string();
                let ifname = lines.next().unwrap_or_default().to_string();
                Some((ip, id, ifname))
            })
            .collect()
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(format!("last_reserved_ip.{set}")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn set_last_reserved(&self, set: usize, ip: IpAddr) -> Result<(), PluginError> {
        fs::write(
            self.dir.join(format!("last_reserved_ip.{set}")),
            ip.to_string(),
        )?;
        Ok(())
    }
}

/// Allocates one address per range set (so a dual-stack config yields one of each family).
pub fn allocate(
    conf: &IpamConf,
    network: &str,
    id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Vec<IpConfig>, PluginError> {
    let sets = conf.range_sets()?;
    let store = Store::open(
        conf.data_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_DATA_DIR)),
        network,
    )?;
    let held: Vec<IpAddr> = store
        .leases()
        .into_iter()
        .filter(|(_, i, f)| i == id && f == ifname)
        .map(|(ip, _, _)| ip)
        .collect();
    let mut out = Vec::new();
    for (n, set) in sets.iter().enumerate() {
        let ip = pick(&store, n, set, id, ifname, requested, &held)?;
        let range = set.iter().find(|r| r.contains(ip)).unwrap_or(&set[0]);
        out.push(IpConfig {
            version: None,
            address: IpNet {
                addr: ip,
                prefix: range.subnet.prefix,
            },
            gateway: Some(range.gateway),
            interface: None,
        });
    }
    Ok(out)
}

fn pick(
    store: &Store,
    n: usize,
    set: &[Range],
    id: &str,
    ifname: &str,
    requested: &[IpAddr],
    held: &[IpAddr],
) -> Result<IpAddr, PluginError> {
    // A repeated ADD for the same attachment gets the address it already holds.
    if let Some(ip) = held.iter().find(|ip| set.iter().any(|r| r.contains(**ip))) {
        return Ok(*ip);
    }
    if let Some(ip) = requested
        .iter()
        .find(|ip| set.iter().any(|r| r.subnet.contains(**ip)))
    {
        if !set.iter().any(|r| r.contains(*ip)) || set.iter().any(|r| r.gateway == *ip) {
            return Err(PluginError::config(format!(
                "requested ip {ip} is not allocatable"
            )));
        }
        if !store.reserve(*ip, id, ifname)? {
            return Err(PluginError::new(
                code::INTERNAL,
                format!("requested ip {ip} is already allocated"),
            ));
        }
        return Ok(*ip);
    }
    // Round-robin: start after the last address handed out in this set.
    let last = store.last_reserved(n);
    let mut start_range = 0;
    let mut start_at = None;
    if let Some(last) = last
        && let Some(i) = set.iter().position(|r| r.contains(last))
    {
        start_range = i;
        start_at = Some(to_u128(last) + 1);
    }
    for k in 0..=set.len() {
        let ri = (start_range + k) % set.len();
        let r = &set[ri];
        let (from, to) = match (k, start_at) {
            (0, Some(s)) => (s, r.end),
            (k, Some(s)) if k == set.len() => (r.start, s.saturating_sub(1).min(r.end)),
            (k, None) if k == set.len() => break,
            _ => (r.start, r.end),
        };
        let mut cur = from;
        // Bounded so a huge, full IPv6 range cannot spin forever.
        let mut budget: u32 = 1 << 20;
        while cur <= to && budget > 0 {
            budget -= 1;
            let ip = from_u128(r.subnet.addr, cur);
            cur += 1;
            if ip == r.gateway {
                continue;
            }
            if store.reserve(ip, id, ifname)? {
                store.set_last_reserved(n, ip)?;
                return Ok(ip);
            }
        }
    }
    Err(PluginError::new(
        code::NO_ADDRESSES,
        "no IP addresses available in range set",
    ))
}

/// Releases every lease of the attachment; nothing held is not an error.
pub fn release(conf: &IpamConf, network: &str, id: &str, ifname: &str) -> Result<(), PluginError> {
    let store = Store::open(
        conf.data_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_DATA_DIR)),
        network,
    )?;
    for (ip, i, f) in store.leases() {
        if i == id && f == ifname {
            match fs::remove_file(store.lease_path(ip)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

pub struct HostLocal;

impl Plugin for HostLocal {
    fn add(&self, a: &Args) -> Result<CniResult, PluginError> {
        let c: Conf = a.conf()?;
        let mut requested: Vec<IpAddr> = Vec::new();
        for s in &c.runtime_config.ips {
            let ip = s
                .split('/')
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| PluginError::config(format!("invalid requested ip {s:?}")))?;
            requested.push(ip);
        }
        for (k, v) in &a.args {
            if k == "IP" {
                for s in v.split(',') {
                    requested.push(
                        s.parse()
                            .map_err(|_| PluginError::config(format!("invalid IP arg {s:?}")))?,
                    );
                }
            }
        }
        let ips = allocate(&c.ipam, &c.name, &a.container_id, &a.ifname, &requested)?;
        Ok(CniResult {
            cni_version: a.version.clone(),
            interfaces: Vec::new(),
            ips,
            routes: c
                .ipam
                .routes
                .iter()
                .map(|r| Route {
                    dst: r.dst,
                    gw: r.gw,
                    mtu: None,
                    priority: None,
                    table: None,
                })
                .collect(),
            dns: match (&c.ipam.dns, &c.ipam.resolv_conf) {
                (Some(d), _) => d.clone(),
                (None, Some(p)) => parse_resolv_conf(p)?,
                (None, None) => Dns::default(),
            },
        })
    }

    fn del(&self, a: &Args) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        release(&c.ipam, &c.name, &a.container_id, &a.ifname)
    }

    fn check(&self, a: &Args) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        let store = Store::open(
            c.ipam
                .data_dir
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_DATA_DIR)),
            &c.name,
        )?;
        if store
            .leases()
            .iter()
            .any(|(_, i, f)| *i == a.container_id && *f == a.ifname)
        {
            Ok(())
        } else {
            Err(PluginError::new(
                code::INTERNAL,
                format!("host-local: no lease for {}", a.container_id),
            ))
        }
    }

    fn status(&self, a: &Args) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        c.ipam.range_sets()?;
        Ok(())
    }

    fn gc(&self, a: &Args, valid: &[(String, String)]) -> Result<(), PluginError> {
        let c: Conf = a.conf()?;
        let store = Store::open(
            c.ipam
                .data_dir
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_DATA_DIR)),
            &c.name,
        )?;
        for (ip, id, ifname) in store.leases() {
            if !valid.iter().any(|(v, f)| *v == id && *f == ifname) {
                match fs::remove_file(store.lease_path(ip)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(dir: &Path, json: &str) -> IpamConf {
        let mut c: IpamConf = serde_json::from_str(json).unwrap();
        c.data_dir = Some(dir.to_path_buf());
        c
    }

    #[test]
    fn allocates_round_robin_skipping_gateway_and_releases() {
        let d = tempfile::tempdir().unwrap();
        let c = conf(d.path(), r#"{"ranges":[[{"subnet":"10.9.0.0/29"}]]}"#);
        let a = allocate(&c, "n", "c1", "eth0", &[]).unwrap();
        assert_eq!(a[0].address.to_string(), "10.9.0.2/29");
        assert_eq!(a[0].gateway.unwrap().to_string(), "10.9.0.1");
        // idempotent for the same attachment
        assert_eq!(
            allocate(&c, "n", "c1", "eth0", &[]).unwrap()[0].address,
            a[0].address
        );
        let b = allocate(&c, "n", "c2", "eth0", &[]).unwrap();
        assert_eq!(b[0].address.to_string(), "10.9.0.3/29");
        release(&c, "n", "c1", "eth0").unwrap();
        let c3 = allocate(&c, "n", "c3", "eth0", &[]).unwrap();
        assert_eq!(c3[0].address.to_string(), "10.9.0.4/29");
        for id in ["c4", "c5"] {
            allocate(&c, "n", id, "eth0", &[]).unwrap();
        }
        // wraps around to the released .2
        assert_eq!(
            allocate(&c, "n", "c6", "eth0", &[]).unwrap()[0]
                .address
                .to_string(),
            "10.9.0.2/29"
        );
        assert_eq!(
            allocate(&c, "n", "c7", "eth0", &[]).unwrap_err().code,
            code::NO_ADDRESSES
        );
    }

    #[test]
    fn resolv_conf_becomes_dns() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("resolv.conf");
        fs::write(&p, "# c\nnameserver 10.0.0.10\nnameserver 10.0.0.11\nsearch a.svc b.svc\noptions ndots:5\n").unwrap();
        let dns = parse_resolv_conf(&p).unwrap();
        assert_eq!(dns.nameservers, ["10.0.0.10", "10.0.0.11"]);
        assert_eq!(dns.search, ["a.svc", "b.svc"]);
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn dual_stack_and_old_form_and_requested() {
        let d = tempfile::tempdir().unwrap();
        let c = conf(
            d.path(),
            r#"{"subnet":"10.7.0.0/24","rangeStart":"10.7.0.50","ranges":[[{"subnet":"fd00:7::/64"}]]}"#,
        );
        let a = allocate(&c, "n", "c1", "eth0", &[]).unwrap();
        assert_eq!(a[0].address.to_string(), "10.7.0.50/24");
        assert_eq!(a[1].address.to_string(), "fd00:7::2/64");
        let r = allocate(&c, "n", "c2", "eth0", &["10.7.0.99".parse().unwrap()]).unwrap();
        assert_eq!(r[0].address.to_string(), "10.7.0.99/24");
        assert!(allocate(&c, "n", "c3", "eth0", &["10.7.0.99".parse().unwrap()]).is_err());
        assert!(d.path().join("n/10.7.0.99").exists());
        release(&c, "n", "c2", "eth0").unwrap();
        assert!(!d.path().join("n/10.7.0.99").exists());
    }
}
