//! Image references, normalised the way Docker and the kubelet do.

use std::fmt;

use crate::error::{Error, Result};

pub const DOCKER_HUB: &str = "docker.io";

/// A fully-qualified image reference: `registry/repository[:tag][@digest]`.
///
/// `busybox` parses to `docker.io/library/busybox:latest`; `localhost:5000/x@sha256:..` keeps the digest and no tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn invalid(reference: &str, reason: &str) -> Error {
    Error::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    }
}

/// `sha256:<64 lowercase hex>`; the only algorithm we accept.
pub fn is_valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference> {
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid(input, "empty reference"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !is_valid_digest(d) {
                    return Err(invalid(
                        input,
                        "digest must be sha256: followed by 64 lowercase hex digits",
                    ));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (name, tag) = match name.rfind(':') {
            Some(i) if !name[i + 1..].contains('/') => {
                (&name[..i], Some(name[i + 1..].to_string()))
            }
            _ => (name, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(invalid(
                    input,
                    "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if registry
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)))
        {
            return Err(invalid(
                input,
                "registry host may hold only letters, digits, '-', '.', ':'",
            ));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty()
            || repository.split('/').any(|c| {
                c.is_empty()
                    || !c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    || !c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            })
        {
            return Err(invalid(
                input,
                "repository must be lowercase path components of [a-z0-9._-]",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host as written (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The repository path within the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
    /// `registry/repository:tag`, if there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }
    /// `registry/repository@digest` for a given manifest digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(p("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(p("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(p("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            p("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("localhost/x"), "localhost/x:latest");
        assert_eq!(p("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(p("127.0.0.1:5000/a/b/c:v1"), "127.0.0.1:5000/a/b/c:v1");
        assert_eq!(
            p("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            p(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            p(&format!("busybox:1@{D}")),
            format!("docker.io/library/busybox:1@{D}")
        );
        let r = Reference::parse("localhost:5000/x").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "x", Some("latest"))
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "UPPER/case",
            "a@sha256:12",
            "a:b:c",
            "a//b",
            "x:-tag",
            "a@md5:abc",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::Reference;

    /// Poor man's fuzzing: no input may panic the parsers that face the network or the user.
    #[test]
    fn parsers_never_panic() {
        let alphabet = b"aZ09:/@._-sha256:[]+ \x00\xff";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let s: Vec<u8> = (0..len)
                .map(|i| alphabet[((x >> (i % 50)) as usize + i) % alphabet.len()])
                .collect();
            let s = String::from_utf8_lossy(&s);
            if let Ok(r) = Reference::parse(&s) {
                assert_eq!(
                    Reference::parse(&r.to_string()).ok(),
                    Some(r.clone()),
                    "round trip of {s:?}"
                );
            }
            let _ = crate::registry::manifest::parse(s.as_bytes(), None);
        }
    }
}
