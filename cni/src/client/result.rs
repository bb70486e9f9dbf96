//! The CNI result types (spec "Success" output), shared by the client and our plugins.
//!
//! One struct serves 0.3.x/0.4.0 and 1.x: the only wire difference we care about is the
//! per-IP `version` field that 1.0 removed, which [`CniResult::to_version`] adds or drops.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cidr::IpNet;

/// What a plugin chain reports after ADD: the interfaces it made, their IPs, routes and DNS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the pod; absent for host-side interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpConfig {
    /// "4" or "6"; present only in 0.x results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The spec's error output: what a failing plugin prints on stdout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorOutput {
    #[serde(default)]
    pub cni_version: String,
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniResult {
    /// The result in the wire form of `version` (adds the per-IP `version` for 0.x).
    pub fn to_version(&self, version: &str) -> CniResult {
        let mut r = self.clone();
        r.cni_version = version.to_string();
        let old = version.starts_with("0.");
        for ip in &mut r.ips {
            ip.version = if old {
                Some(if ip.address.is_ipv4() { "4" } else { "6" }.to_string())
            } else {
                None
            };
        }
        r
    }

    /// The IPs assigned to interfaces inside the sandbox (or unattributed ones).
    pub fn sandbox_ips(&self) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(
                |ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                    Some(iface) => iface.sandbox.as_deref().is_some_and(|s| !s.is_empty()),
                    None => true,
                },
            )
            .map(|ip| ip.address)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_generations_and_converts() {
        let v04 = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/run/netns/x"}],
            "ips":[{"version":"4","address":"10.1.2.3/24","gateway":"10.1.2.1","interface":0}],
            "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;
        let r: CniResult = serde_json::from_str(v04).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.1.2.3/24");
        assert_eq!(r.sandbox_ips().len(), 1);
        let v1 = serde_json::to_value(r.to_version("1.0.0")).unwrap();
        assert!(v1["ips"][0].get("version").is_none());
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert!(v1.get("dns").is_none());
        let back = serde_json::to_value(r.to_version("0.4.0")).unwrap();
        assert_eq!(back["ips"][0]["version"], "4");
    }
}
