//! Where to fetch images from, and with which credentials.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Per-registry-host settings, keyed by the host as it appears in references (`docker.io`, `localhost:5000`).
///
/// ```toml
/// [hosts."docker.io"]
/// mirrors = ["https://mirror.example.com", "http://10.0.0.5:5000"]
/// [hosts."registry.k8s.io"]
/// server = "http://airgap.local:5000"   # upstream is never contacted, not even resolved
/// insecure = true
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    pub hosts: HashMap<String, HostConfig>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Tried in order before the upstream (or `server`); `host[:port]` or a URL with scheme.
    pub mirrors: Vec<String>,
    /// Replaces the upstream outright: requests for this host go here and never to the host itself.
    pub server: Option<String>,
    /// Allow plain http (and, for https, any certificate) for this host and its mirrors. Loopback is always allowed.
    pub insecure: bool,
}

/// Credentials for one pull, as the CRI's `AuthConfig` carries them.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`, as in a docker config.json.
    pub auth: Option<String>,
    /// An OAuth2 refresh token, exchanged at the token endpoint.
    pub identity_token: Option<String>,
    /// A bearer token sent to the registry as is.
    pub registry_token: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "registry_token",
                &self.registry_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Auth {
    pub fn basic(username: &str, password: &str) -> Auth {
        Auth {
            username: Some(username.into()),
            password: Some(password.into()),
            ..Default::default()
        }
    }

    /// (username, password) from either the explicit fields or the base64 `auth` field.
    pub fn user_pass(&self) -> Option<(String, String)> {
        use base64::Engine as _;
        if let (Some(u), Some(p)) = (&self.username, &self.password)
            && !u.is_empty()
        {
            return Some((u.clone(), p.clone()));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_ref()?.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }
}

/// One place to send registry requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    pub base: String,
    /// The host used in error messages and as the bearer-token `service` fallback.
    pub host: String,
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map(|(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let h = h
        .unwrap_or(host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn endpoint(spec: &str, insecure: bool) -> Endpoint {
    let spec = spec.trim_end_matches('/');
    if let Some((_, rest)) = spec.split_once("://") {
        return Endpoint {
            base: spec.to_string(),
            host: rest.split('/').next().unwrap_or(rest).to_string(),
        };
    }
    let scheme = if insecure || is_loopback(spec) {
        "http"
    } else {
        "https"
    };
    Endpoint {
        base: format!("{scheme}://{spec}"),
        host: spec.to_string(),
    }
}

impl RegistryConfig {
    /// The endpoints to try, in order, for images of `registry`: mirrors, then `server` or the upstream.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let host = self.hosts.get(registry);
        let insecure = host.is_some_and(|h| h.insecure);
        let mut v: Vec<Endpoint> = host
            .map(|h| h.mirrors.iter().map(|m| endpoint(m, insecure)).collect())
            .unwrap_or_default();
        match host.and_then(|h| h.server.as_deref()) {
            Some(server) => v.push(endpoint(server, insecure)),
            None if registry == crate::reference::DOCKER_HUB => {
                v.push(endpoint("registry-1.docker.io", insecure))
            }
            None => v.push(endpoint(registry, insecure)),
        }
        v
    }

    /// Whether https endpoints of `registry` may skip certificate checks.
    pub fn insecure(&self, registry: &str) -> bool {
        self.hosts.get(registry).is_some_and(|h| h.insecure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_config() {
        let cfg: RegistryConfig = serde_json::from_str(
            r#"{"hosts":{"docker.io":{"mirrors":["mirror.example.com","http://10.0.0.1:5000"]},
                "registry.k8s.io":{"server":"airgap.local:5000","insecure":true}}}"#,
        )
        .unwrap();
        let b = |r: &str| {
            cfg.endpoints(r)
                .into_iter()
                .map(|e| e.base)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            b("docker.io"),
            [
                "https://mirror.example.com",
                "http://10.0.0.1:5000",
                "https://registry-1.docker.io"
            ]
        );
        assert_eq!(b("registry.k8s.io"), ["http://airgap.local:5000"]);
        assert_eq!(b("127.0.0.1:5000"), ["http://127.0.0.1:5000"]);
        assert_eq!(b("localhost:5000"), ["http://localhost:5000"]);
        assert_eq!(b("quay.io"), ["https://quay.io"]);
    }

    #[test]
    fn auth_field_decodes() {
        let a = Auth {
            auth: Some("YWxpY2U6czNjcmV0".into()),
            ..Default::default()
        };
        assert_eq!(a.user_pass(), Some(("alice".into(), "s3cret".into())));
    }
}
