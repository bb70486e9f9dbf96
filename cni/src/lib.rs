//! Pod networking: a CNI-spec client and Berth's own CNI plugins.
//!
//! Speaks the CNI spec at its edge (plugins as executables, JSON on stdin/stdout) and knows
//! nothing of the CRI.
//!
//! - [`client`]: what a runtime uses: load the network config, run plugin chains (ADD, DEL,
//!   CHECK, STATUS), cache results, time out hung plugins.
//! - [`plugins`]: the code of our plugin executables (`berth-bridge`, `berth-host-local`,
//!   `berth-loopback`, `berth-portmap`, in `src/bin/`), built on [`netlink`] and [`nft`].

pub mod cidr;
pub mod client;
pub mod conntrack;
pub mod netlink;
pub mod nft;
pub mod plugins;
