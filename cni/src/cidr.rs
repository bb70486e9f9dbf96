//! A small IP network type (`10.88.0.5/16`) shared by the client's result parser and the plugins.
//!
//! Kept in-house because the plugins need only parsing, containment and integer arithmetic over
//! addresses (host-local walks a range as numbers), and both families fit in a `u128`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address with a prefix length; the address need not be the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Why a CIDR string did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cidr {0:?}")]
pub struct CidrError(pub String);

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > max_prefix(addr) {
            return Err(CidrError(format!("{addr}/{prefix}")));
        }
        Ok(Self { addr, prefix })
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The first address of the network.
    pub fn network(&self) -> IpAddr {
        from_u128(self.addr, to_u128(self.addr) & self.mask())
    }

    /// The last address of the network (the IPv4 broadcast address).
    pub fn last(&self) -> IpAddr {
        from_u128(
            self.addr,
            to_u128(self.addr) | (!self.mask() & all_ones(self.addr)),
        )
    }

    /// The same network, normalised to its first address.
    pub fn trunc(&self) -> Self {
        Self {
            addr: self.network(),
            prefix: self.prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && (to_u128(ip) & self.mask()) == (to_u128(self.addr) & self.mask())
    }

    fn mask(&self) -> u128 {
        let bits = max_prefix(self.addr) as u32;
        let host = bits - self.prefix as u32;
        let ones = all_ones(self.addr);
        if host >= 128 {
            0
        } else {
            (ones >> host) << host & ones
        }
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn all_ones(ip: IpAddr) -> u128 {
    if ip.is_ipv4() {
        u32::MAX as u128
    } else {
        u128::MAX
    }
}

/// An address as an integer, so ranges can be walked; IPv4 uses the low 32 bits.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The inverse of [`to_u128`], in the family of `like`.
pub fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

impl FromStr for IpNet {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(err)?;
        let addr: IpAddr = a.parse().map_err(|_| err())?;
        let prefix: u8 = p.parse().map_err(|_| err())?;
        Self::new(addr, prefix).map_err(|_| err())
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_computes_bounds() {
        let n: IpNet = "10.88.3.7/16".parse().unwrap();
        assert_eq!(n.network().to_string(), "10.88.0.0");
        assert_eq!(n.last().to_string(), "10.88.255.255");
        assert!(n.contains("10.88.200.1".parse().unwrap()));
        assert!(!n.contains("10.89.0.1".parse().unwrap()));
        let z: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("1.2.3.4".parse().unwrap()));
        let v6: IpNet = "fd00:10::5/64".parse().unwrap();
        assert_eq!(v6.network().to_string(), "fd00:10::");
        assert_eq!(v6.last().to_string(), "fd00:10::ffff:ffff:ffff:ffff");
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("10.0.0.0".parse::<IpNet>().is_err());
    }
}
