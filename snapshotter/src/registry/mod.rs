//! A client for the OCI distribution API: manifests and blobs of one repository, with the token dance.
//!
//! Auth follows the registry's lead: the first request goes out with whatever we already hold (a registry token,
//! or nothing); a 401 carries a `WWW-Authenticate` challenge saying Basic (send the credentials) or Bearer (fetch a
//! token from `realm` for `service` and `scope`, anonymously or with the credentials / identity token), and the request
//! is retried once with the result.

pub mod manifest;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{Auth, Endpoint};
use crate::error::{Error, Result};

/// Manifests bigger than this are refused, so a hostile registry cannot make us buffer gigabytes.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

pub(crate) struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    repository: String,
    auth: Option<Auth>,
    /// The `Authorization` header value that worked last, reused for every later request.
    authorization: Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    fn parse(header: &str) -> Challenge {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let mut params = vec![];
        let mut s = rest.trim();
        while !s.is_empty() {
            let Some((k, after)) = s.split_once('=') else {
                break;
            };
            let (v, after) = if let Some(q) = after.strip_prefix('"') {
                match q.find('"') {
                    Some(end) => (&q[..end], &q[end + 1..]),
                    None => (q, ""),
                }
            } else {
                after.split_once(',').unwrap_or((after, ""))
            };
            params.push((k.trim().to_ascii_lowercase(), v.to_string()));
            s = after.trim_start_matches([',', ' ']);
        }
        Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        }
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl Client {
    pub(crate) fn new(
        http: reqwest::Client,
        endpoint: Endpoint,
        repository: &str,
        auth: Option<Auth>,
    ) -> Client {
        let initial = auth
            .as_ref()
            .and_then(|a| a.registry_token.clone())
            .map(|t| format!("Bearer {t}"));
        Client {
            http,
            endpoint,
            repository: repository.to_string(),
            auth,
            authorization: Mutex::new(initial),
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn unreachable(&self, url: &str, e: reqwest::Error) -> Error {
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            src = s.source();
        }
        Error::Unreachable {
            url: url.to_string(),
            detail,
        }
    }

    async fn send(&self, url: &str, accept: &str, authorization: Option<&str>) -> Result<Response> {
        let mut req = self.http.get(url).header(ACCEPT, accept);
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        req.send().await.map_err(|e| self.unreachable(url, e))
    }

    /// GET `path` (below `/v2/<repository>/`), answering one auth challenge if needed. Non-2xx answers become errors.
    pub(crate) async fn get(&self, path: &str, accept: &str) -> Result<Response> {
        let url = format!("{}/v2/{}/{path}", self.endpoint.base, self.repository);
        let current = self.authorization.lock().await.clone();
        let mut resp = self.send(&url, accept, current.as_deref()).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|h| h.to_str().ok())
                .map(Challenge::parse);
            let Some(challenge) = challenge else {
                return Err(self.unauthorized(
                    "the registry demands auth but sent no WWW-Authenticate challenge",
                ));
            };
            let authorization = self.answer(&challenge).await?;
            resp = self.send(&url, accept, Some(&authorization)).await?;
            if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
                let detail = if self.auth.as_ref().is_some_and(|a| a.user_pass().is_some()) {
                    "credentials rejected; check the username and password"
                } else {
                    "access denied; this image needs credentials"
                };
                return Err(self.unauthorized(detail));
            }
            *self.authorization.lock().await = Some(authorization);
        }
        let status = resp.status();
        if status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized("access forbidden"));
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let detail: String = body.chars().take(300).collect();
            if status == StatusCode::NOT_FOUND {
                return Err(Error::NotFound(format!(
                    "{url} on registry {}: {}",
                    self.endpoint.host,
                    detail.trim()
                )));
            }
            return Err(Error::Registry {
                registry: self.endpoint.host.clone(),
                status: status.as_u16(),
                url,
                detail: detail.trim().to_string(),
            });
        }
        Ok(resp)
    }

    fn unauthorized(&self, detail: &str) -> Error {
        Error::Unauthorized {
            registry: self.endpoint.host.clone(),
            detail: detail.to_string(),
        }
    }

    fn basic(&self) -> Option<String> {
        use base64::Engine as _;
        let (u, p) = self.auth.as_ref()?.user_pass()?;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ))
    }

    async fn answer(&self, challenge: &Challenge) -> Result<String> {
        match challenge.scheme.as_str() {
            "basic" => self
                .basic()
                .ok_or_else(|| self.unauthorized("the registry wants a username and password")),
            "bearer" => self.bearer(challenge).await.map(|t| format!("Bearer {t}")),
            other => Err(Error::Unsupported(format!(
                "registry auth scheme {other:?}"
            ))),
        }
    }

    async fn bearer(&self, challenge: &Challenge) -> Result<String> {
        let realm = challenge
            .get("realm")
            .ok_or_else(|| self.unauthorized("bearer challenge without realm"))?;
        let service = challenge
            .get("service")
            .unwrap_or(&self.endpoint.host)
            .to_string();
        let default_scope = format!("repository:{}:pull", self.repository);
        let scope = challenge.get("scope").unwrap_or(&default_scope).to_string();
        let identity = self.auth.as_ref().and_then(|a| a.identity_token.clone());
        let resp = if let Some(refresh) = identity {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", service.as_str()),
                ("scope", scope.as_str()),
                ("client_id", "berth"),
            ];
            self.http.post(realm).form(&form).send().await
        } else {
            let mut req = self
                .http
                .get(realm)
                .query(&[("service", &service), ("scope", &scope)]);
            if let Some(b) = self.basic() {
                req = req.header(AUTHORIZATION, b);
            }
            req.send().await
        }
        .map_err(|e| self.unreachable(realm, e))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(self.unauthorized("the token service rejected the credentials"));
        }
        if !resp.status().is_success() {
            return Err(Error::Registry {
                registry: self.endpoint.host.clone(),
                status: resp.status().as_u16(),
                url: realm.to_string(),
                detail: "token request failed".into(),
            });
        }
        let body = resp.bytes().await.map_err(|e| Error::Unreachable {
            url: realm.to_string(),
            detail: e.to_string(),
        })?;
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| Error::invalid("token response", e))?;
        t.token
            .or(t.access_token)
            .ok_or_else(|| self.unauthorized("token response without a token"))
    }

    /// Fetches a manifest by tag or digest: (bytes, content type, digest of the bytes).
    pub(crate) async fn manifest(
        &self,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, String)> {
        let resp = self
            .get(&format!("manifests/{reference}"), manifest::ACCEPT)
            .await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|h: &HeaderValue| h.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_MANIFEST_BYTES)
        {
            return Err(Error::invalid("manifest", "larger than 4 MiB"));
        }
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, reference).await?;
        let digest = crate::content::sha256_digest(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(Error::DigestMismatch {
                what: "manifest".into(),
                expected: reference.into(),
                actual: digest,
            });
        }
        Ok((bytes, content_type, digest))
    }

    /// Starts a blob download; the caller streams and verifies the body.
    pub(crate) async fn blob(&self, digest: &str) -> Result<Response> {
        self.get(&format!("blobs/{digest}"), "*/*").await
    }
}

/// Reads a small body fully, refusing more than `limit` bytes.
pub(crate) async fn read_limited(mut resp: Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Unreachable {
        url: what.into(),
        detail: e.to_string(),
    })? {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > limit {
            return Err(Error::invalid(what, format!("larger than {limit} bytes")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.get("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.get("scope"), Some("repository:library/busybox:pull"));
        assert_eq!(Challenge::parse(r#"Basic realm="x""#).scheme, "basic");
    }
}
