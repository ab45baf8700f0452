//! Image references as Docker 20.10 parses and normalises them (the `distribution/reference`
//! grammar): `busybox` == `docker.io/library/busybox:latest`; image IDs and ID prefixes.

use std::fmt;

/// The registry Docker assumes when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A reference that is not valid, with a message naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ParseError {
    /// What the caller gave.
    pub input: String,
    /// Why it is refused.
    pub reason: String,
}

/// What an image string names: an image ID (full or prefix) or a repository reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `sha256:<hex>` or bare `<hex>`: a full image ID (64 hex digits) or a prefix of one.
    Id {
        /// The hex digits, lowercase, without `sha256:`.
        hex: String,
    },
    /// A normalised repository reference.
    Named(Named),
}

/// A fully normalised repository reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Registry host (and port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub domain: String,
    /// Repository path, e.g. `library/busybox`.
    pub path: String,
    /// Tag; `latest` is filled in when neither tag nor digest is given.
    pub tag: Option<String>,
    /// `sha256:<hex>` digest.
    pub digest: Option<String>,
    /// Whether the input named neither tag nor digest (so `latest` was assumed).
    pub name_only: bool,
}

impl Named {
    /// `domain/path`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form Docker reports in `RepoTags`/`RepoDigests` (`busybox`, `127.0.0.1:5000/x`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The tag or digest part Docker's pull API takes as `tag` (`latest`, `sha256:…`).
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn err(input: &str, reason: impl Into<String>) -> ParseError {
    ParseError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parse what a CRI `ImageSpec.image` holds: an image ID (`sha256:<hex>`, a 64-digit hex ID,
/// or — when no repository of that name is meant — a hex prefix) or a repository reference.
///
/// A bare hex string shorter than 64 digits is also a valid repository name; it is returned as
/// [`ImageRef::Named`] and Docker itself falls back to an ID-prefix lookup for it.
pub fn parse(input: &str) -> Result<ImageRef, ParseError> {
    if input.is_empty() {
        return Err(err(input, "image name is empty"));
    }
    if let Some(hex) = input.strip_prefix("sha256:") {
        if is_hex(hex) && hex.len() <= 64 {
            return Ok(ImageRef::Id {
                hex: hex.to_string(),
            });
        }
        return Err(err(
            input,
            "an image ID must be sha256: followed by up to 64 lowercase hex digits",
        ));
    }
    if input.len() == 64 && is_hex(input) {
        return Ok(ImageRef::Id {
            hex: input.to_string(),
        });
    }
    parse_named(input).map(ImageRef::Named)
}

/// Parse and normalise a repository reference the way `docker pull` does.
pub fn parse_named(input: &str) -> Result<Named, ParseError> {
    if input.is_empty() {
        return Err(err(input, "image name is empty"));
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (input, None),
    };
    if let Some(d) = digest {
        validate_digest(input, d)?;
    }
    // A ':' after the last '/' separates the tag; one before it belongs to a registry port.
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(i) if last_slash.is_none_or(|s| i > s) => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        validate_tag(input, t)?;
    }
    if name.is_empty() {
        return Err(err(input, "repository name is empty"));
    }
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(err(
            input,
            format!("repository name is longer than {NAME_TOTAL_LENGTH_MAX} characters"),
        ));
    }
    if name.len() == 64 && is_hex(name) {
        return Err(err(
            input,
            "a repository name cannot be a 64-digit hexadecimal string",
        ));
    }
    let (domain, path) = split_domain(name);
    if let Some(explicit) = domain_of(name) {
        validate_domain(input, explicit)?;
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(err(input, "repository name must be lowercase"));
    }
    for component in path.split('/') {
        validate_path_component(input, component)?;
    }
    Ok(Named {
        domain: domain.to_string(),
        path,
        name_only: tag.is_none() && digest.is_none(),
        tag: match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        },
        digest: digest.map(str::to_string),
    })
}

/// The explicit registry part of `name`, if its first component is one.
fn domain_of(name: &str) -> Option<&str> {
    let (first, _) = name.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost").then_some(first)
}

/// Docker's `splitDockerDomain`: the registry and the (normalised) repository path.
fn split_domain(name: &str) -> (&str, String) {
    let (domain, remainder) = match domain_of(name) {
        Some(d) => (d, &name[d.len() + 1..]),
        None => (DEFAULT_DOMAIN, name),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{remainder}")
    } else {
        remainder.to_string()
    };
    (domain, path)
}

fn validate_domain(input: &str, domain: &str) -> Result<(), ParseError> {
    let (host, port) = if domain.starts_with('[') {
        match domain.find(']') {
            Some(i) => {
                let rest = &domain[i + 1..];
                match rest.strip_prefix(':') {
                    Some(p) => (&domain[..=i], Some(p)),
                    None if rest.is_empty() => (&domain[..=i], None),
                    None => return Err(err(input, format!("invalid registry {domain:?}"))),
                }
            }
            None => return Err(err(input, format!("invalid registry {domain:?}"))),
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err(input, format!("registry port {p:?} is not a number")));
    }
    let ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        !host.is_empty()
            && host.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            })
    };
    if ok {
        Ok(())
    } else {
        Err(err(input, format!("invalid registry host {host:?}")))
    }
}

/// `[a-z0-9]+ ((?:[._]|__|[-]+) [a-z0-9]+)*`
fn validate_path_component(input: &str, c: &str) -> Result<(), ParseError> {
    let bad = || {
        err(
            input,
            format!(
                "invalid repository path component {c:?} (lowercase letters, digits and \
                 single separators '.', '_', '__' or '-' only)"
            ),
        )
    };
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(input: &str, t: &str) -> Result<(), ParseError> {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(err(
            input,
            format!("invalid tag {t:?} (letters, digits, '_', '.', '-'; at most 128)"),
        ))
    }
}

fn validate_digest(input: &str, d: &str) -> Result<(), ParseError> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(err(
            input,
            format!("invalid digest {d:?}: expected <algorithm>:<hex>"),
        ));
    };
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(err(input, format!("unsupported digest algorithm {alg:?}")));
        }
    };
    if hex.len() != want || !is_hex(hex) {
        return Err(err(
            input,
            format!("invalid digest {d:?}: {alg} needs {want} lowercase hex digits"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn named(s: &str) -> String {
        match parse(s) {
            Ok(ImageRef::Named(n)) => n.to_string(),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
            ("foo/bar", "docker.io/foo/bar:latest"),
            (
                "127.0.0.1:5000/test/busybox",
                "127.0.0.1:5000/test/busybox:latest",
            ),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/a/b:v1", "localhost:5000/a/b:v1"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("Example.COM/x", "Example.COM/x:latest"),
            ("a-b__c/e_f.g--h", "docker.io/a-b__c/e_f.g--h:latest"),
            (
                "cri-dockerd-test/multi:a",
                "docker.io/cri-dockerd-test/multi:a",
            ),
            ("[::1]:5000/x:y", "[::1]:5000/x:y"),
        ];
        for (input, want) in cases {
            assert_eq!(named(input), want, "{input}");
        }
        let with_digest = format!("busybox@{D}");
        assert_eq!(
            named(&with_digest),
            format!("docker.io/library/busybox@{D}")
        );
        let both = format!("127.0.0.1:5000/x:v1@{D}");
        assert_eq!(named(&both), format!("127.0.0.1:5000/x:v1@{D}"));
    }

    #[test]
    fn familiar_names_and_pull_parts() {
        let n = parse_named("docker.io/library/busybox").unwrap();
        assert_eq!(n.familiar_name(), "busybox");
        assert!(n.name_only);
        assert_eq!(n.tag_or_digest(), "latest");
        let n = parse_named("foo/bar:x").unwrap();
        assert_eq!(n.familiar_name(), "foo/bar");
        assert!(!n.name_only);
        let n = parse_named(&format!("127.0.0.1:5000/a/b:t@{D}")).unwrap();
        assert_eq!(n.familiar_name(), "127.0.0.1:5000/a/b");
        assert_eq!(n.name(), "127.0.0.1:5000/a/b");
        assert_eq!(n.tag_or_digest(), D);
    }

    #[test]
    fn ids_and_prefixes() {
        let full = &D["sha256:".len()..];
        assert_eq!(
            parse(D).unwrap(),
            ImageRef::Id {
                hex: full.to_string()
            }
        );
        assert_eq!(
            parse(full).unwrap(),
            ImageRef::Id {
                hex: full.to_string()
            }
        );
        assert_eq!(
            parse("sha256:0123ab").unwrap(),
            ImageRef::Id {
                hex: "0123ab".into()
            }
        );
        // A short hex string is a valid repository name too; Docker falls back to the ID prefix.
        assert!(matches!(parse("0123ab").unwrap(), ImageRef::Named(_)));
    }

    #[test]
    fn refuses_malformed_references() {
        let long = "a".repeat(256);
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("UPPER/Case", "lowercase"),
            ("Busybox", "lowercase"),
            ("a::b", "component"),
            ("busybox:", "tag"),
            ("busybox@sha256:zz", "digest"),
            ("busybox@sha256:0123", "digest"),
            ("busybox@md5:0123", "algorithm"),
            ("busybox@", "digest"),
            ("-busybox", "component"),
            ("busy..box", "component"),
            ("busybox/", "component"),
            ("/busybox", "component"),
            ("a//b", "component"),
            ("busybox:-x", "tag"),
            ("bad host:5000/x", "host"),
            ("host:port/x", "port"),
            ("sha256:xyz", "hex"),
            (&long, "longer"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef:v",
                "hexadecimal",
            ),
        ];
        for (input, needle) in cases {
            let e = parse(input).expect_err(input);
            assert!(
                e.to_string().contains(needle),
                "{input:?}: {e} should mention {needle}"
            );
        }
    }
}
