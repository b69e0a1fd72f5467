//! Image references: parsing `name[:tag][@digest]`, `host[:port]/...` and
//! `oci:/path[:tag]` into a canonical `ImageRef`.

use std::fmt;
use std::path::PathBuf;

use crate::containers::error::ContainerError;

/// Registry used for references without a host, as `docker pull` does.
pub const DEFAULT_REGISTRY: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// `docker://` semantics: `redis:7` is `docker.io/library/redis:7`.
    /// At least one of `tag` and `digest` is set; the digest wins for pulls.
    Registry {
        host: String,
        name: String,
        tag: Option<String>,
        digest: Option<String>,
    },
    /// `oci:/path[:tag]`: a local OCI layout; without a tag, the layout's
    /// only image (skopeo's rule).
    OciLayout { path: PathBuf, tag: Option<String> },
}

impl fmt::Display for ImageRef {
    /// The canonical form, used in messages and as the store key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry {
                host,
                name,
                tag,
                digest,
            } => {
                write!(f, "{host}/{name}")?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
            ImageRef::OciLayout { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses `name[:tag]`, `host[:port]/name[:tag]`, `...@sha256:<hex>`
/// (optionally prefixed `docker://`) and `oci:/abs/path[:tag]`.
pub fn parse_image_ref(s: &str) -> Result<ImageRef, ContainerError> {
    parse(s).map_err(|reason| ContainerError::BadReference {
        reference: s.to_string(),
        reason: reason.to_string(),
    })
}

/// A definition's `image`, checked when the service is defined (PUT, a
/// drop-in file), so a bad reference is refused at once instead of failing
/// the start later. The message names the field.
pub fn check_image_field(image: Option<&str>) -> Result<(), String> {
    match image {
        None => Ok(()),
        Some(r) => parse_image_ref(r)
            .map(|_| ())
            .map_err(|e| format!("`image`: {e}")),
    }
}

/// Why a reference is refused, as the message says it.
type Reason = &'static str;

const BAD_TAG: Reason = "tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -";

fn parse(s: &str) -> Result<ImageRef, Reason> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 1024 {
        return Err("longer than 1024 characters");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    if let Some(rest) = s.strip_prefix("oci:") {
        return parse_oci_layout(rest);
    }
    if let Some((scheme, _)) = s.split_once("://") {
        if scheme != "docker" {
            return Err("only docker:// and oci: references are supported");
        }
    }
    parse_registry(s.strip_prefix("docker://").unwrap_or(s))
}

/// `oci:` already stripped: `/abs/path[:tag]`.
fn parse_oci_layout(rest: &str) -> Result<ImageRef, Reason> {
    // skopeo splits oci:PATH:TAG at the first ':', so a path cannot hold one.
    let (path, tag) = match rest.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (rest, None),
    };
    if !path.starts_with('/') {
        return Err("the path of an oci: reference must be absolute");
    }
    Ok(ImageRef::OciLayout {
        path: PathBuf::from(path),
        tag: checked_tag(tag)?,
    })
}

/// `[host[:port]/]name[:tag][@digest]`, `docker://` already stripped.
fn parse_registry(rest: &str) -> Result<ImageRef, Reason> {
    let (rest, digest) = match rest.split_once('@') {
        Some((_, d)) if !valid_digest(d) => {
            return Err("digest must be sha256:<64 hex> or sha512:<128 hex>")
        }
        Some((r, d)) => (r, Some(d.to_string())),
        None => (rest, None),
    };
    // A ':' after the last '/' separates the tag ("host:5000/x" has none).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest.get(last_slash..).and_then(|t| t.find(':')) {
        Some(i) => (
            rest.get(..last_slash + i).unwrap_or(rest),
            rest.get(last_slash + i + 1..),
        ),
        None => (rest, None),
    };
    let tag = checked_tag(tag)?;
    let (host, name) = split_host(path)?;
    check_repository(&name)?;
    let name = if host == DEFAULT_REGISTRY && !name.contains('/') {
        format!("library/{name}")
    } else {
        name
    };
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(ImageRef::Registry {
        host,
        name,
        tag,
        digest,
    })
}

fn checked_tag(tag: Option<&str>) -> Result<Option<String>, Reason> {
    match tag {
        None => Ok(None),
        Some(t) if valid_tag(t) => Ok(Some(t.to_string())),
        Some(_) => Err(BAD_TAG),
    }
}

/// The registry host (lowercase; Docker Hub's aliases folded into
/// [`DEFAULT_REGISTRY`]) and the repository name. The first part is a host
/// only when it looks like one, as `docker pull` decides.
fn split_host(path: &str) -> Result<(String, String), Reason> {
    let (host, name) = match path.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            if !valid_host(first) {
                return Err("bad registry host");
            }
            (first.to_ascii_lowercase(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), path.to_string()),
    };
    let host = if host == "index.docker.io" || host == "registry-1.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        host
    };
    Ok((host, name))
}

fn check_repository(name: &str) -> Result<(), Reason> {
    if name.is_empty() {
        return Err("no repository name");
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository name must be lowercase");
    }
    if name.len() > 255 || !name.split('/').all(valid_name_component) {
        return Err(
            "repository name must be lowercase letters, digits and separators (. _ __ -) between them, in /-separated parts",
        );
    }
    Ok(())
}

fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub(crate) fn valid_digest(d: &str) -> bool {
    let hex =
        |h: &str, n: usize| h.len() == n && h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    match d.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha512", h)) => hex(h, 128),
        _ => false,
    }
}

fn valid_host(h: &str) -> bool {
    let (name, port) = match h.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest))
                if !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') =>
            {
                match rest {
                    "" => return true,
                    r => match r.strip_prefix(':') {
                        Some(p) => ("v6", Some(p)),
                        None => return false,
                    },
                }
            }
            _ => return false,
        },
        None => match h.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        },
    };
    let name_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    name_ok && port_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the distribution grammar.
fn valid_name_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let Some(&x) = b.get(i) else { break };
        if alnum(&x) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-"+.
        let start = i;
        while b.get(i).is_some_and(|x| !alnum(x)) {
            i += 1;
        }
        let sep = c.get(start..i).unwrap_or("");
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::test_support::D;

    fn reg(host: &str, name: &str, tag: Option<&str>, digest: Option<&str>) -> ImageRef {
        ImageRef::Registry {
            host: host.into(),
            name: name.into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
        }
    }

    #[test]
    fn the_image_field_is_checked_at_definition() {
        for bad in ["Foo", "-oci:/x", "oci:relative/path", "a b", "ftp://x/y"] {
            let e = check_image_field(Some(bad)).unwrap_err();
            assert!(e.starts_with("`image`") && e.contains(bad), "{bad}: {e}");
        }
        for good in ["redis:7", "oci:/images/bb:1", "127.0.0.1:5000/x:tag"] {
            assert_eq!(check_image_field(Some(good)), Ok(()), "{good}");
        }
        assert_eq!(check_image_field(None), Ok(()));
    }

    #[test]
    fn short_names_are_docker_hub_library_images() {
        assert_eq!(
            parse_image_ref("redis:7").unwrap(),
            reg("docker.io", "library/redis", Some("7"), None)
        );
        assert_eq!(
            parse_image_ref("redis").unwrap(),
            reg("docker.io", "library/redis", Some("latest"), None)
        );
        assert_eq!(
            parse_image_ref("docker.io/library/redis:7").unwrap(),
            parse_image_ref("redis:7").unwrap()
        );
        assert_eq!(
            parse_image_ref("docker://index.docker.io/bitnami/redis:7.2").unwrap(),
            reg("docker.io", "bitnami/redis", Some("7.2"), None)
        );
    }

    #[test]
    fn registry_host_with_port_is_not_a_tag() {
        assert_eq!(
            parse_image_ref("127.0.0.1:5000/busybox:1").unwrap(),
            reg("127.0.0.1:5000", "busybox", Some("1"), None)
        );
        assert_eq!(
            parse_image_ref("localhost:5000/a/b").unwrap(),
            reg("localhost:5000", "a/b", Some("latest"), None)
        );
        assert_eq!(
            parse_image_ref("registry:5000/x:tag").unwrap(),
            reg("registry:5000", "x", Some("tag"), None)
        );
        assert_eq!(
            parse_image_ref("[::1]:5000/x:1").unwrap(),
            reg("[::1]:5000", "x", Some("1"), None)
        );
        // A plain first component without '.', ':' is part of the name.
        assert_eq!(
            parse_image_ref("myorg/app:2").unwrap(),
            reg("docker.io", "myorg/app", Some("2"), None)
        );
    }

    #[test]
    fn digests_pin_images() {
        let r = parse_image_ref(&format!("127.0.0.1:5000/busybox@{D}")).unwrap();
        assert_eq!(r, reg("127.0.0.1:5000", "busybox", None, Some(D)));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/busybox@{D}"));
        let r = parse_image_ref(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(r, reg("docker.io", "library/busybox", Some("1"), Some(D)));
    }

    #[test]
    fn oci_layout_references() {
        assert_eq!(
            parse_image_ref("oci:/images/busybox:1").unwrap(),
            ImageRef::OciLayout {
                path: "/images/busybox".into(),
                tag: Some("1".into())
            }
        );
        assert_eq!(
            parse_image_ref("oci:/images/busybox").unwrap(),
            ImageRef::OciLayout {
                path: "/images/busybox".into(),
                tag: None
            }
        );
        assert_eq!(
            parse_image_ref("oci:/images/busybox:1")
                .unwrap()
                .to_string(),
            "oci:/images/busybox:1"
        );
    }

    #[test]
    fn bad_references_say_why() {
        let cases = [
            ("", "empty"),
            ("Redis:7", "lowercase"),
            ("redis:", "tag"),
            ("redis:-x", "tag"),
            ("redis@sha256:abc", "digest"),
            ("redis 7", "whitespace"),
            ("oci:relative/path:1", "absolute"),
            ("oci:/p:bad/tag", "tag"),
            ("http://x/y:1", "only docker://"),
            ("reg.example:99999/x:1", "host"),
            ("reg.example/:1", "name"),
            ("a//b:1", "name"),
            ("a__-b", "separators"),
            ("-x:1", "separators"),
        ];
        for (r, word) in cases {
            let e = parse_image_ref(r).expect_err(r).to_string();
            assert!(e.contains(word), "{r:?}: {e}");
            assert!(
                e.contains(&format!("{r:?}")),
                "{r:?}: message names the reference: {e}"
            );
        }
    }
}
