//! The CNI client: what a container runtime calls to give a pod its network.
//!
//! How the pieces fit:
//! - [`CniClient`] owns the paths (conf dir, bin dirs, cache dir) and the current
//!   [`Network`], reloaded whenever the conf dir changes ([`config::DirFingerprint`]).
//! - [`Network::add`] runs the plugin chain in order, handing each plugin the previous
//!   result (`prevResult`) and the runtime capabilities it declares; the final result is
//!   parsed into a [`CniResult`] and cached ([`cache`]).
//! - [`CniClient::del`] tears down with the *cached* config and result when there is one, so it
//!   works after a daemon restart or a config change; plugins run in reverse order.
//! - Plugins are run by [`exec`] with a timeout; their error JSON becomes [`CniError::Plugin`].
//! - A failed ADD is rolled back with a best-effort DEL before the error is returned.
//!
//! How a runtime uses it (RunPodSandbox / StopPodSandbox / Status):
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth_cni::client::CniError> {
//! use berth_cni::client::{ClientOptions, CniClient, PodNetwork, PortMapping, config::DefaultNetwork};
//!
//! let cni = CniClient::new(ClientOptions::default());
//! cni.ensure_default(&DefaultNetwork::default())?; // at start-up, if the conf dir is empty
//! if let Err(why) = cni.ready().await {
//!     // report NetworkReady=false with `why.to_string()` as the message
//! }
//! let pod = PodNetwork {
//!     id: "sandbox-id".into(),
//!     netns: "/run/berth/pods/sandbox-id/ns/net".into(),
//!     ifname: "eth0".into(),
//!     name: "web".into(),
//!     namespace: "default".into(),
//!     uid: "pod-uid".into(),
//!     port_mappings: vec![PortMapping { host_port: 18080, container_port: 80, protocol: "tcp".into(), host_ip: None }],
//!     ..Default::default()
//! };
//! let result = cni.add(&pod).await?;      // RunPodSandbox
//! let pod_ips = result.sandbox_ips();     // PodSandboxStatus.network (both families)
//! cni.del(&pod).await?;                   // StopPodSandbox: works after a restart too
//! # Ok(()) }
//! ```

pub mod cache;
pub mod config;
pub mod exec;
pub mod result;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use self::cache::CacheEntry;
use self::config::{ConfigError, DirFingerprint, NetworkConfigList};
use self::exec::Invocation;
pub use self::result::CniResult;

/// Everything that can go wrong between the runtime and a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CniError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cni plugin {plugin} not found in {dirs:?}")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("run cni plugin {plugin}: {source}")]
    Spawn {
        plugin: String,
        source: std::io::Error,
    },
    #[error("cni plugin {plugin} {command} timed out after {timeout:?}")]
    Timeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    /// The plugin reported an error per the spec.
    #[error("cni plugin {plugin} {command} failed (code {code}): {msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u32,
        msg: String,
        details: String,
    },
    /// The plugin failed without a spec error on stdout.
    #[error("cni plugin {plugin} {command} exited with {status}: {output}")]
    Crashed {
        plugin: String,
        command: &'static str,
        status: String,
        output: String,
    },
    #[error("cni plugin {plugin} returned an invalid result: {reason}")]
    InvalidResult { plugin: String, reason: String },
    #[error("cni cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    #[error("no cached result for container {0}: nothing to check")]
    NotAdded(String),
    #[error("invalid pod network: {0}")]
    InvalidPod(String),
    /// ADD twice without DEL is forbidden by the spec; rolling the second back would tear
    /// down the first, so the client refuses before running anything.
    #[error("container {id} is already attached to network {network} as {ifname}")]
    AlreadyAdded {
        id: String,
        network: String,
        ifname: String,
    },
}

/// Where the client looks for things, and how long a plugin may take.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            cache_dir: "/var/lib/berth/cni".into(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A `hostPort -> containerPort` publication (the `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp" (lowercase, as plugins expect).
    pub protocol: String,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

/// The `dns` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DnsCapability {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The `bandwidth` capability (bits per second and bits).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// One pod's attachment: who it is, where its netns is, and what it asks for.
#[derive(Debug, Clone, Default)]
pub struct PodNetwork {
    /// The sandbox id (CNI_CONTAINERID).
    pub id: String,
    pub netns: PathBuf,
    /// Interface name inside the pod; `eth0` when empty.
    pub ifname: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub port_mappings: Vec<PortMapping>,
    pub dns: Option<DnsCapability>,
    /// Requested addresses (the `ips` capability), e.g. "10.88.0.9/16".
    pub ips: Vec<String>,
    pub bandwidth: Option<Bandwidth>,
    /// Extra CNI_ARGS pairs.
    pub extra_args: Vec<(String, String)>,
}

impl PodNetwork {
    /// Ids and names end up in file names and plugin environments: keep them plain.
    fn validate(&self) -> Result<(), CniError> {
        let bad = |s: &str| s.is_empty() || s.contains(['/', '\0', ';', '=']) || s.starts_with('.');
        if bad(&self.id) {
            return Err(CniError::InvalidPod(format!("container id {:?}", self.id)));
        }
        if bad(self.ifname()) || self.ifname().len() > 15 {
            return Err(CniError::InvalidPod(format!(
                "interface name {:?}",
                self.ifname()
            )));
        }
        Ok(())
    }

    fn ifname(&self) -> &str {
        if self.ifname.is_empty() {
            "eth0"
        } else {
            &self.ifname
        }
    }

    fn cni_args(&self) -> Vec<(String, String)> {
        let mut a = vec![
            ("IgnoreUnknown".to_string(), "1".to_string()),
            ("K8S_POD_NAMESPACE".to_string(), self.namespace.clone()),
            ("K8S_POD_NAME".to_string(), self.name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".to_string(), self.id.clone()),
            ("K8S_POD_UID".to_string(), self.uid.clone()),
        ];
        a.extend(self.extra_args.iter().cloned());
        a
    }

    fn capability_args(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if !self.port_mappings.is_empty() {
            m.insert(
                "portMappings".into(),
                serde_json::to_value(&self.port_mappings).unwrap_or_default(),
            );
        }
        if let Some(d) = &self.dns {
            m.insert("dns".into(), serde_json::to_value(d).unwrap_or_default());
        }
        if !self.ips.is_empty() {
            m.insert(
                "ips".into(),
                serde_json::to_value(&self.ips).unwrap_or_default(),
            );
        }
        if let Some(b) = &self.bandwidth {
            m.insert(
                "bandwidth".into(),
                serde_json::to_value(b).unwrap_or_default(),
            );
        }
        m
    }
}

/// A loaded network config bound to the client's bin and cache dirs.
#[derive(Debug, Clone)]
pub struct Network {
    pub config: NetworkConfigList,
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    timeout: Duration,
}

/// The config handed to one plugin: its own JSON plus name, version, the capabilities it
/// declared (as `runtimeConfig`) and the previous result.
fn plugin_stdin(
    list: &NetworkConfigList,
    idx: usize,
    caps: &Map<String, Value>,
    prev: Option<&Value>,
) -> Vec<u8> {
    let p = &list.plugins[idx];
    let mut conf = p.raw.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    let mut rc = Map::new();
    for (k, v) in caps {
        if p.capabilities.get(k) == Some(&true) {
            rc.insert(k.clone(), v.clone());
        }
    }
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

impl Network {
    pub fn new(config: NetworkConfigList, opts: &ClientOptions) -> Self {
        Self {
            config,
            bin_dirs: opts.bin_dirs.clone(),
            cache_dir: opts.cache_dir.clone(),
            timeout: opts.timeout,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn invocation(&self, command: &'static str, pod: &PodNetwork) -> Invocation {
        Invocation {
            command,
            container_id: pod.id.clone(),
            netns: pod.netns.to_string_lossy().into_owned(),
            ifname: pod.ifname().to_string(),
            args: pod.cni_args(),
            path: self.bin_dirs.clone(),
        }
    }

    async fn run_plugin(
        &self,
        list: &NetworkConfigList,
        idx: usize,
        inv: &Invocation,
        caps: &Map<String, Value>,
        prev: Option<&Value>,
    ) -> Result<Vec<u8>, CniError> {
        let plugin = exec::find_plugin(&list.plugins[idx].plugin_type, &self.bin_dirs)?;
        let stdin = plugin_stdin(list, idx, caps, prev);
        exec::run(&plugin, inv, &stdin, self.timeout).await
    }

    /// Attaches the pod: runs every plugin's ADD in order and caches the final result.
    pub async fn add(&self, pod: &PodNetwork) -> Result<CniResult, CniError> {
        pod.validate()?;
        let list = &self.config;
        if cache::load(&self.cache_dir, &list.name, &pod.id, pod.ifname())
            .is_some_and(|e| e.result.is_some())
        {
            return Err(CniError::AlreadyAdded {
                id: pod.id.clone(),
                network: list.name.clone(),
                ifname: pod.ifname().to_string(),
            });
        }
        let inv = self.invocation("ADD", pod);
        let caps = pod.capability_args();
        let mut entry = CacheEntry {
            kind: cache::KIND.into(),
            container_id: pod.id.clone(),
            if_name: pod.ifname().to_string(),
            network_name: list.name.clone(),
            netns: inv.netns.clone(),
            config: list.raw.clone(),
            cni_args: inv.args.clone(),
            capability_args: caps.clone(),
            result: None,
        };
        cache::save(&self.cache_dir, &entry)?;
        let prev = match self.add_chain(list, &inv, &caps).await {
            Ok(v) => v,
            Err(e) => {
                // Undo what the plugins before the failing one did, so a failed ADD leaks
                // nothing; the cache entry stays if this DEL fails too, for a later retry.
                let _ = self.del_with(pod, list, &caps, None).await;
                return Err(e);
            }
        };
        let result: CniResult =
            serde_json::from_value(prev.clone()).map_err(|e| CniError::InvalidResult {
                plugin: list
                    .plugins
                    .last()
                    .map(|p| p.plugin_type.clone())
                    .unwrap_or_default(),
                reason: e.to_string(),
            })?;
        entry.result = Some(prev);
        cache::save(&self.cache_dir, &entry)?;
        Ok(result)
    }

    async fn add_chain(
        &self,
        list: &NetworkConfigList,
        inv: &Invocation,
        caps: &Map<String, Value>,
    ) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for idx in 0..list.plugins.len() {
            let out = self.run_plugin(list, idx, inv, caps, prev.as_ref()).await?;
            let plugin = &list.plugins[idx].plugin_type;
            let v: Value = serde_json::from_slice(&out).map_err(|e| CniError::InvalidResult {
                plugin: plugin.clone(),
                reason: e.to_string(),
            })?;
            if !v.is_object() {
                return Err(CniError::InvalidResult {
                    plugin: plugin.clone(),
                    reason: "not a json object".into(),
                });
            }
            prev = Some(v);
        }
        Ok(prev.unwrap_or_default())
    }

    /// Detaches the pod with this network's config (see [`CniClient::del`] for the cached path).
    pub async fn del(&self, pod: &PodNetwork) -> Result<(), CniError> {
        pod.validate()?;
        let entry = cache::load(&self.cache_dir, &self.config.name, &pod.id, pod.ifname());
        match entry {
            Some(e) => self.del_entry(pod, &e).await,
            None => {
                let caps = pod.capability_args();
                self.del_with(pod, &self.config, &caps, None).await
            }
        }
    }

    async fn del_entry(&self, pod: &PodNetwork, e: &CacheEntry) -> Result<(), CniError> {
        // A caller that no longer knows the netns path (e.g. after a restart) gets ADD's.
        let with_netns;
        let pod = if pod.netns.as_os_str().is_empty() && !e.netns.is_empty() {
            with_netns = PodNetwork {
                netns: e.netns.clone().into(),
                ..pod.clone()
            };
            &with_netns
        } else {
            pod
        };
        let list = NetworkConfigList::parse(
            &serde_json::to_vec(&e.config).unwrap_or_default(),
            false,
            Path::new("<cache>"),
        )
        .unwrap_or_else(|_| self.config.clone());
        self.del_with(pod, &list, &e.capability_args, e.result.as_ref())
            .await?;
        cache::remove(&self.cache_dir, &e.network_name, &pod.id, pod.ifname())
    }

    /// DEL in reverse order; every plugin runs even if one fails, and the first error is
    /// returned, so one broken plugin does not leak what the others hold.
    async fn del_with(
        &self,
        pod: &PodNetwork,
        list: &NetworkConfigList,
        caps: &Map<String, Value>,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let inv = self.invocation("DEL", pod);
        let prev = prev.filter(|_| list.version_at_least(0, 4));
        let mut first_err = None;
        for idx in (0..list.plugins.len()).rev() {
            if let Err(e) = self.run_plugin(list, idx, &inv, caps, prev).await {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => {
                cache::remove(&self.cache_dir, &list.name, &pod.id, pod.ifname())?;
                Ok(())
            }
        }
    }

    /// CHECK (0.4.0+): each plugin verifies the cached result still holds.
    pub async fn check(&self, pod: &PodNetwork) -> Result<(), CniError> {
        let list = &self.config;
        if !list.version_at_least(0, 4) || list.disable_check {
            return Ok(());
        }
        let e = cache::load(&self.cache_dir, &list.name, &pod.id, pod.ifname())
            .and_then(|e| e.result.map(|r| (e.capability_args, r)))
            .ok_or_else(|| CniError::NotAdded(pod.id.clone()))?;
        let inv = self.invocation("CHECK", pod);
        for idx in 0..list.plugins.len() {
            self.run_plugin(list, idx, &inv, &e.0, Some(&e.1)).await?;
        }
        Ok(())
    }

    /// STATUS (1.1.0): asks each plugin whether it can serve ADDs; a no-op for older versions.
    pub async fn status(&self) -> Result<(), CniError> {
        let list = &self.config;
        if !list.version_at_least(1, 1) {
            return Ok(());
        }
        let inv = Invocation {
            command: "STATUS",
            path: self.bin_dirs.clone(),
            ..Default::default()
        };
        for idx in 0..list.plugins.len() {
            self.run_plugin(list, idx, &inv, &Map::new(), None).await?;
        }
        Ok(())
    }

    /// GC (1.1.0): tells each plugin which attachments are still valid so it can release the
    /// rest; a no-op for older versions.
    pub async fn gc(&self, valid: &[(String, String)]) -> Result<(), CniError> {
        let list = &self.config;
        if !list.version_at_least(1, 1) {
            return Ok(());
        }
        let inv = Invocation {
            command: "GC",
            path: self.bin_dirs.clone(),
            ..Default::default()
        };
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| serde_json::json!({"containerID": id, "ifname": ifname}))
            .collect();
        let mut first_err = None;
        for idx in 0..list.plugins.len() {
            let mut conf: Value =
                serde_json::from_slice(&plugin_stdin(list, idx, &Map::new(), None))
                    .unwrap_or_default();
            conf["cni.dev/valid-attachments"] = Value::Array(attachments.clone());
            let plugin = match exec::find_plugin(&list.plugins[idx].plugin_type, &self.bin_dirs) {
                Ok(p) => p,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let stdin = serde_json::to_vec(&conf).unwrap_or_default();
            if let Err(e) = exec::run(&plugin, &inv, &stdin, self.timeout).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Whether every plugin of the chain is installed.
    pub fn plugins_present(&self) -> Result<(), CniError> {
        for p in &self.config.plugins {
            exec::find_plugin(&p.plugin_type, &self.bin_dirs)?;
        }
        Ok(())
    }
}

/// The runtime's handle on pod networking: holds the paths and the current network.
pub struct CniClient {
    opts: ClientOptions,
    current: Mutex<Option<(DirFingerprint, Arc<Network>)>>,
}

impl CniClient {
    pub fn new(opts: ClientOptions) -> Self {
        Self {
            opts,
            current: Mutex::new(None),
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The current network, reloaded if the conf dir changed since the last call.
    pub fn network(&self) -> Result<Arc<Network>, CniError> {
        let fp = DirFingerprint::of(&self.opts.conf_dir);
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old, net)) = cur.as_ref()
            && *old == fp
        {
            return Ok(net.clone());
        }
        let list = config::load_dir(&self.opts.conf_dir)?;
        let net = Arc::new(Network::new(list, &self.opts));
        *cur = Some((fp, net.clone()));
        Ok(net)
    }

    /// Writes the default network if the conf dir has none (see [`config::DefaultNetwork`]).
    pub fn ensure_default(
        &self,
        net: &config::DefaultNetwork,
    ) -> Result<Option<PathBuf>, CniError> {
        Ok(config::ensure_default(&self.opts.conf_dir, net)?)
    }

    /// Ready when a network loads, its plugins are installed and (1.1) report STATUS ok;
    /// the error says why not, for the CRI `NetworkReady` condition.
    pub async fn ready(&self) -> Result<(), CniError> {
        let net = self.network()?;
        net.plugins_present()?;
        net.status().await
    }

    pub async fn add(&self, pod: &PodNetwork) -> Result<CniResult, CniError> {
        self.network()?.add(pod).await
    }

    /// Tears a pod down using whatever ADD cached (config and result), falling back to the
    /// current network when nothing is cached. Idempotent.
    pub async fn del(&self, pod: &PodNetwork) -> Result<(), CniError> {
        pod.validate()?;
        let ifname = pod.ifname().to_string();
        let entries = cache::for_container(&self.opts.cache_dir, &pod.id, &ifname);
        if entries.is_empty() {
            return self.network()?.del(pod).await;
        }
        let mut first_err = None;
        for e in entries {
            let list = NetworkConfigList::parse(
                &serde_json::to_vec(&e.config).unwrap_or_default(),
                false,
                Path::new("<cache>"),
            )?;
            let net = Network::new(list, &self.opts);
            if let Err(err) = net.del_entry(pod, &e).await {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub async fn check(&self, pod: &PodNetwork) -> Result<(), CniError> {
        self.network()?.check(pod).await
    }

    /// Garbage-collects attachments the runtime no longer knows (e.g. after a crash):
    /// every cached attachment not in `valid` (sandbox id, ifname) is torn down with its cached
    /// config, then (1.1) the plugins get a GC with the valid list to release anything else.
    pub async fn gc(&self, valid: &[(String, String)]) -> Result<(), CniError> {
        let mut first_err = None;
        for e in cache::all(&self.opts.cache_dir) {
            if valid
                .iter()
                .any(|(id, ifn)| *id == e.container_id && *ifn == e.if_name)
            {
                continue;
            }
            let arg = |k: &str| {
                e.cni_args
                    .iter()
                    .find(|(a, _)| a == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let pod = PodNetwork {
                id: e.container_id.clone(),
                netns: e.netns.clone().into(),
                ifname: e.if_name.clone(),
                name: arg("K8S_POD_NAME"),
                namespace: arg("K8S_POD_NAMESPACE"),
                uid: arg("K8S_POD_UID"),
                extra_args: e
                    .cni_args
                    .iter()
                    .filter(|(k, _)| !k.starts_with("K8S_") && k != "IgnoreUnknown")
                    .cloned()
                    .collect(),
                ..Default::default()
            };
            let list = match NetworkConfigList::parse(
                &serde_json::to_vec(&e.config).unwrap_or_default(),
                false,
                Path::new("<cache>"),
            ) {
                Ok(l) => l,
                Err(err) => {
                    first_err.get_or_insert(err.into());
                    continue;
                }
            };
            if let Err(err) = Network::new(list, &self.opts).del_entry(&pod, &e).await {
                first_err.get_or_insert(err);
            }
        }
        match self.network() {
            Ok(net) => {
                if let Err(err) = net.gc(valid).await {
                    first_err.get_or_insert(err);
                }
            }
            Err(err) => {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
