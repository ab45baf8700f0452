//! ImageService: list, status, pull, remove, filesystem info — over the Docker adapter.

pub mod reference;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use k8s_cri::v1 as cri;
use tracing::instrument;

use self::reference::{ImageRef, Named};
use super::{Error, Result, Runtime};
use crate::docker::{self, ImageInfo, PullAuth};

impl Runtime {
    /// `ListImages`: every image, or those matching the filter's image spec (a reference —
    /// `busybox` matches every `busybox` tag —, an image ID or ID prefix, or a Docker-style
    /// wildcard pattern such as `busybox:*`).
    #[instrument(skip_all)]
    pub async fn list_images(
        &self,
        req: &cri::ListImagesRequest,
    ) -> Result<cri::ListImagesResponse> {
        let filter = req
            .filter
            .as_ref()
            .and_then(|f| f.image.as_ref())
            .map(|s| s.image.as_str())
            .filter(|s| !s.is_empty());
        let filter = filter.map(ImageFilter::parse).transpose()?;
        let images = self.docker.list_images().await?;
        let images: Vec<cri::Image> = images
            .into_iter()
            .filter(|i| filter.as_ref().is_none_or(|f| f.matches(i)))
            .map(|i| self.to_cri_image(i))
            .collect();
        tracing::debug!(count = images.len(), "listed images");
        Ok(cri::ListImagesResponse { images })
    }

    /// `ImageStatus`: the image named by reference, ID or ID prefix. An absent image is an empty
    /// response (`image: None`), not an error, as the CRI requires.
    #[instrument(skip_all, fields(image = tracing::field::Empty))]
    pub async fn image_status(
        &self,
        req: &cri::ImageStatusRequest,
    ) -> Result<cri::ImageStatusResponse> {
        let name = image_name(req.image.as_ref(), "ImageStatus")?;
        tracing::Span::current().record("image", name);
        reference::parse(name).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let info = match self.docker.inspect_image(name).await {
            Ok(i) => i,
            Err(docker::Error::NotFound(_)) => {
                tracing::debug!("image not present");
                return Ok(cri::ImageStatusResponse::default());
            }
            Err(e) => return Err(context(e, &format!("inspect image {name:?}"))),
        };
        let info_map = if req.verbose {
            let history = self
                .docker
                .image_history(&info.id)
                .await
                .map_err(|e| context(e, &format!("history of image {name:?}")))?;
            [("info".to_string(), verbose_info(&info, &history))].into()
        } else {
            Default::default()
        };
        tracing::debug!(id = %info.id, "image status");
        Ok(cri::ImageStatusResponse {
            image: Some(self.to_cri_image(info)),
            info: info_map,
        })
    }

    /// `PullImage`: pull by tag or digest with the request's credentials, under
    /// `--image-pull-progress-deadline`. Returns the image ID (`sha256:…`) as `image_ref`.
    #[instrument(skip_all, fields(image = tracing::field::Empty))]
    pub async fn pull_image(&self, req: &cri::PullImageRequest) -> Result<cri::PullImageResponse> {
        let name = image_name(req.image.as_ref(), "PullImage")?;
        tracing::Span::current().record("image", name);
        let named = match reference::parse(name) {
            Ok(ImageRef::Named(n)) => n,
            Ok(ImageRef::Id { .. }) => {
                return Err(Error::InvalidArgument(format!(
                    "cannot pull {name:?}: an image ID is not a pullable reference"
                )));
            }
            Err(e) => return Err(Error::InvalidArgument(e.to_string())),
        };
        let auth = req.auth.as_ref().map(pull_auth).transpose()?;
        let full = named.to_string();
        tracing::info!(reference = %full, "pulling image");
        self.docker
            .pull_image(&full, auth, self.config.image_pull_progress_deadline)
            .await
            .map_err(|e| context(e, &format!("pull image {name:?}")))?;
        // The pull may have moved a tag the view knows containers by.
        self.view.forget_image_ids();
        let id = self
            .docker
            .inspect_image(&pulled_reference(&named))
            .await
            .map_err(|e| context(e, &format!("inspect pulled image {name:?}")))?
            .id;
        tracing::info!(reference = %full, image_ref = %id, "pulled image");
        Ok(cri::PullImageResponse { image_ref: id })
    }

    /// `RemoveImage`: remove the image named by reference, ID or digest with all its tags and
    /// digests. An absent image (also one removed concurrently) is success.
    #[instrument(skip_all, fields(image = tracing::field::Empty))]
    pub async fn remove_image(&self, req: &cri::RemoveImageRequest) -> Result<()> {
        let name = image_name(req.image.as_ref(), "RemoveImage")?;
        tracing::Span::current().record("image", name);
        reference::parse(name).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let info = match self.docker.inspect_image(name).await {
            Ok(i) => i,
            Err(docker::Error::NotFound(_)) => {
                tracing::debug!("image already absent");
                return Ok(());
            }
            Err(e) => return Err(context(e, &format!("inspect image {name:?}"))),
        };
        // Refuse up front, before untagging anything, when containers still use the image.
        let users = self
            .docker
            .containers_using_image(&info.id)
            .await
            .map_err(|e| context(e, &format!("list containers using image {name:?}")))?;
        if !users.is_empty() {
            let short: Vec<&str> = users.iter().map(|c| &c[..c.len().min(12)]).collect();
            return Err(Error::FailedPrecondition(format!(
                "cannot remove image {name:?} ({}): in use by container(s) {}",
                info.id,
                short.join(", ")
            )));
        }
        // Untag every name first: removing the ID of an image with several names is refused
        // without force, and force would also drop images that stopped containers still use.
        let refs = info.repo_tags.iter().chain(&info.repo_digests);
        for r in refs.chain(std::iter::once(&info.id)) {
            match self.docker.remove_image(r, false).await {
                Ok(()) | Err(docker::Error::NotFound(_)) => {}
                Err(docker::Error::Conflict(m)) => {
                    return Err(Error::FailedPrecondition(format!(
                        "remove image {name:?} ({}): {m}",
                        info.id
                    )));
                }
                Err(e) => return Err(context(e, &format!("remove image {name:?} ({r})"))),
            }
        }
        self.view.forget_image_ids();
        tracing::info!(id = %info.id, "removed image");
        Ok(())
    }

    /// `ImageFsInfo`: usage of Docker's root directory — image layers as the image filesystem,
    /// the CRI containers' writable layers as the container filesystem. Inodes are those used on
    /// the filesystem holding the root directory (Docker does not count them per store).
    ///
    /// The writable layers come from the stats path's background walker (started here if no
    /// stats call has started it; until its first pass a container counts as 0), never from
    /// Docker's `/containers/json?size=true`, which sizes every container on the host per call:
    /// kubelet asks every few seconds, and with a few hundred containers that took a minute.
    #[instrument(skip_all)]
    pub async fn image_fs_info(&self) -> Result<cri::ImageFsInfoResponse> {
        let info = self.docker.info().await?;
        let images_bytes = self.docker.images_disk_usage().await?;
        let containers_bytes = self.writable_layers_bytes();
        let root = info.docker_root_dir;
        let inodes_used = inodes_used(Path::new(&root));
        let timestamp = now_ns();
        let fs = |used: u64| cri::FilesystemUsage {
            timestamp,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: root.clone(),
            }),
            used_bytes: Some(cri::UInt64Value { value: used }),
            inodes_used: inodes_used.map(|value| cri::UInt64Value { value }),
        };
        tracing::debug!(
            root = %root,
            images_bytes,
            containers_bytes,
            "image fs info"
        );
        Ok(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs(images_bytes)],
            container_filesystems: vec![fs(containers_bytes)],
        })
    }

    fn to_cri_image(&self, i: ImageInfo) -> cri::Image {
        let pinned = self.is_pinned(&i);
        let (uid, username) = user_from_image_user(&i.user);
        cri::Image {
            id: i.id,
            repo_tags: i.repo_tags,
            repo_digests: i.repo_digests,
            size: i.size,
            uid: uid.map(|value| cri::Int64Value { value }),
            username,
            spec: None,
            pinned,
        }
    }

    /// The sandbox (pause) image is pinned, so kubelet's image GC never removes it — as the Go
    /// cri-dockerd and containerd do. Every other image is unpinned.
    fn is_pinned(&self, i: &ImageInfo) -> bool {
        let Ok(pause) = reference::parse_named(&self.config.pause_image) else {
            return false;
        };
        let pause = pause.to_string();
        i.repo_tags
            .iter()
            .any(|t| reference::parse_named(t).is_ok_and(|n| n.to_string() == pause))
    }
}

/// The image string of a request, refusing an absent or empty one.
fn image_name<'a>(spec: Option<&'a cri::ImageSpec>, call: &str) -> Result<&'a str> {
    match spec.map(|s| s.image.as_str()) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Error::InvalidArgument(format!(
            "{call}: image name is empty (ImageSpec.image is required)"
        ))),
    }
}

/// What to inspect after a pull: Docker records a digest pull only under `name@digest`.
fn pulled_reference(n: &Named) -> String {
    match &n.digest {
        Some(d) => format!("{}@{d}", n.name()),
        None => n.to_string(),
    }
}

/// The CRI `AuthConfig` as Docker credentials; `auth` (base64 `user:password`) is decoded
/// into username and password, since dockerd itself only reads those.
fn pull_auth(a: &cri::AuthConfig) -> Result<PullAuth> {
    let mut out = PullAuth {
        username: a.username.clone(),
        password: a.password.clone(),
        auth: String::new(),
        server_address: a.server_address.clone(),
        identity_token: a.identity_token.clone(),
        registry_token: a.registry_token.clone(),
    };
    if !a.auth.is_empty() && out.username.is_empty() {
        let bad = |why: &str| Error::InvalidArgument(format!("AuthConfig.auth {why}"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|_| bad("is not valid base64"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad("must encode \"username:password\""))?;
        out.username = user.to_string();
        out.password = pass.to_string();
    }
    Ok(out)
}

/// Split an image's `USER` (`uid`, `uid:gid`, `name`, `name:group`) into a numeric uid or a
/// user name, as the Go cri-dockerd and containerd do. Empty means neither.
pub fn user_from_image_user(user: &str) -> (Option<i64>, String) {
    let user = user.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

/// The verbose `info` JSON: the image's labels and an OCI-image-spec shaped view of its config
/// and history (the Go cri-dockerd's shape).
fn verbose_info(i: &ImageInfo, history: &[docker::HistoryEntry]) -> String {
    let d = i.details.clone().unwrap_or_default();
    let set = |v: &[String]| {
        v.iter()
            .map(|k| (k.clone(), serde_json::json!({})))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::json!({
        "id": i.id,
        "labels": i.labels,
        "imageSpec": {
            "created": d.created,
            "author": d.author,
            "architecture": d.architecture,
            "os": d.os,
            "config": {
                "User": i.user,
                "ExposedPorts": set(&d.exposed_ports),
                "Env": d.env,
                "Entrypoint": d.entrypoint,
                "Cmd": d.cmd,
                "Volumes": set(&d.volumes),
                "WorkingDir": d.working_dir,
                "Labels": i.labels,
                "StopSignal": d.stop_signal,
            },
            "rootfs": { "type": d.rootfs_type, "diff_ids": d.diff_ids },
            // OCI order: oldest step first.
            "history": history.iter().rev().map(|h| serde_json::json!({
                "created": chrono::DateTime::from_timestamp(h.created, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                "created_by": h.created_by,
                "comment": h.comment,
                "empty_layer": h.size == 0,
            })).collect::<Vec<_>>(),
        },
    })
    .to_string()
}

/// Attach what we were doing to an adapter error, keeping its classification.
fn context(e: docker::Error, what: &str) -> Error {
    match Error::from(e) {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{what}: {m}")),
        Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
        Error::AlreadyExists(m) => Error::AlreadyExists(format!("{what}: {m}")),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(format!("{what}: {m}")),
        Error::Unauthenticated(m) => Error::Unauthenticated(format!(
            "{what}: {m} (check the pull credentials for this registry)"
        )),
        Error::PermissionDenied(m) => Error::PermissionDenied(format!("{what}: {m}")),
        Error::Unavailable(m) => Error::Unavailable(format!("{what}: {m}")),
        Error::DeadlineExceeded(m) => Error::DeadlineExceeded(format!("{what}: {m}")),
        Error::Unimplemented(m) => Error::Unimplemented(format!("{what}: {m}")),
        Error::Internal(m) => Error::Internal(format!("{what}: {m}")),
    }
}

fn inodes_used(root: &Path) -> Option<u64> {
    match rustix::fs::statvfs(root) {
        Ok(s) => Some(s.f_files.saturating_sub(s.f_ffree)),
        Err(e) => {
            tracing::debug!(root = %root.display(), error = %e, "statvfs of docker root failed");
            None
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A `ListImages` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ImageFilter {
    /// Docker-style wildcard pattern over familiar references (`busybox:*`, `*/test/*`).
    Pattern(String),
    /// An image ID or ID prefix (hex, no `sha256:`).
    Id(String),
    /// A reference; `any_tag` when it named neither tag nor digest. `hex` keeps a short hex
    /// name, which may also be an ID prefix.
    Named {
        named: Named,
        any_tag: bool,
        hex: Option<String>,
    },
}

impl ImageFilter {
    fn parse(s: &str) -> Result<Self> {
        if s.contains(['*', '?', '[']) {
            return Ok(ImageFilter::Pattern(s.to_string()));
        }
        match reference::parse(s).map_err(|e| Error::InvalidArgument(e.to_string()))? {
            ImageRef::Id { hex } => Ok(ImageFilter::Id(hex)),
            ImageRef::Named(named) => Ok(ImageFilter::Named {
                any_tag: named.name_only,
                hex: s
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    .then(|| s.to_string()),
                named,
            }),
        }
    }

    fn matches(&self, i: &ImageInfo) -> bool {
        let id_hex = i.id.strip_prefix("sha256:").unwrap_or(&i.id);
        let refs = || i.repo_tags.iter().chain(&i.repo_digests);
        match self {
            ImageFilter::Id(hex) => id_hex.starts_with(hex.as_str()),
            ImageFilter::Pattern(p) => refs().any(|r| {
                let name = match reference::parse_named(r) {
                    Ok(n) => n.familiar_name(),
                    Err(_) => r.clone(),
                };
                glob_match(p, r) || glob_match(p, &name)
            }),
            ImageFilter::Named {
                named,
                any_tag,
                hex,
            } => {
                if hex.as_ref().is_some_and(|h| id_hex.starts_with(h.as_str())) {
                    return true;
                }
                refs().any(|r| {
                    let Ok(n) = reference::parse_named(r) else {
                        return false;
                    };
                    if n.name() != named.name() {
                        return false;
                    }
                    if *any_tag {
                        return true;
                    }
                    match (&named.digest, &named.tag) {
                        (Some(d), _) => n.digest.as_ref() == Some(d),
                        (None, t) => n.digest.is_none() && &n.tag == t,
                    }
                })
            }
        }
    }
}

/// Shell-style match of `*` (any run), `?` (one character) and `[…]` (a class) — what Docker's
/// `reference` filter accepts (Go's `path.Match`, minus the `/` rule, which Docker's use of it
/// does not rely on for image names).
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in p including the brackets).
        let mut i = 1;
        let negate = p.get(1) == Some(&'^') || p.get(1) == Some(&'!');
        if negate {
            i += 1;
        }
        let mut hit = false;
        let start = i;
        while i < p.len() && (p[i] != ']' || i == start) {
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                if p[i] <= c && c <= p[i + 2] {
                    hit = true;
                }
                i += 3;
            } else {
                if p[i] == c {
                    hit = true;
                }
                i += 1;
            }
        }
        (i < p.len()).then_some((hit != negate, i + 1))
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|k| go(&p[1..], &t[k..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('[') => match (t.first(), class(p, *t.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, n))) => go(&p[n..], &t[1..]),
                _ => false,
            },
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn image_user_splits_like_upstream() {
        let cases = [
            ("", None, ""),
            ("1234", Some(1234), ""),
            ("1234:5678", Some(1234), ""),
            ("0", Some(0), ""),
            ("nobody", None, "nobody"),
            ("nobody:nogroup", None, "nobody"),
            ("tester:5678", None, "tester"),
            (":5678", None, ""),
        ];
        for (user, uid, name) in cases {
            assert_eq!(
                user_from_image_user(user),
                (uid, name.to_string()),
                "{user:?}"
            );
        }
    }

    #[test]
    fn empty_image_names_are_invalid() {
        assert!(matches!(
            image_name(None, "X"),
            Err(Error::InvalidArgument(_))
        ));
        let spec = cri::ImageSpec::default();
        assert!(matches!(
            image_name(Some(&spec), "X"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn auth_field_is_decoded() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("testuser:te:st");
        let a = pull_auth(&cri::AuthConfig {
            auth: b64,
            server_address: "127.0.0.1:5001".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("testuser", "te:st")
        );
        assert_eq!(a.server_address, "127.0.0.1:5001");
        assert!(a.auth.is_empty());
        // Explicit username/password win over `auth`.
        let a = pull_auth(&cri::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            auth: "garbage".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        for bad in ["%%%", "bm9jb2xvbg=="] {
            let e = pull_auth(&cri::AuthConfig {
                auth: bad.into(),
                ..Default::default()
            })
            .unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e:?}");
        }
    }

    fn image(id: &str, tags: &[&str], digests: &[&str]) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn list_filter_table() {
        let d = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let busy_digest = format!("127.0.0.1:5000/test/busybox@{d}");
        let busybox = image(
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            &[
                "busybox:latest",
                "busybox:1.36",
                "127.0.0.1:5000/test/busybox:latest",
            ],
            &[&busy_digest],
        );
        let other = image(
            "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
            &["cri-dockerd-test/multi:a"],
            &[],
        );
        let with_digest = format!("127.0.0.1:5000/test/busybox@{d}");
        let cases: Vec<(&str, bool, bool)> = vec![
            ("busybox", true, false),
            ("busybox:1.36", true, false),
            ("busybox:1.37", false, false),
            ("docker.io/library/busybox:latest", true, false),
            ("docker.io/library/busybox", true, false),
            ("127.0.0.1:5000/test/busybox:latest", true, false),
            (&with_digest, true, false),
            ("cri-dockerd-test/multi", false, true),
            ("docker.io/cri-dockerd-test/multi:a", false, true),
            ("cri-dockerd-test/multi:b", false, false),
            ("sha256:0123", true, false),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                true,
                false,
            ),
            ("fedc", false, true),
            ("busy*", true, false),
            ("*/multi:?", false, true),
            ("cri-dockerd-test/[m]ulti:*", false, true),
            ("nothing", false, false),
        ];
        for (f, want_busybox, want_other) in cases {
            let filter = ImageFilter::parse(f).unwrap();
            assert_eq!(filter.matches(&busybox), want_busybox, "{f} vs busybox");
            assert_eq!(filter.matches(&other), want_other, "{f} vs other");
        }
        assert!(matches!(
            ImageFilter::parse("UPPER/Case"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn glob_basics() {
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("[a", "a"));
    }

    #[test]
    fn verbose_info_is_oci_shaped_json() {
        let mut i = image("sha256:1", &["x:y"], &[]);
        i.user = "1234:5678".into();
        i.labels.insert("k".into(), "v".into());
        i.details = Some(docker::ImageDetails {
            created: "2026-01-01T00:00:00Z".into(),
            os: "linux".into(),
            architecture: "amd64".into(),
            exposed_ports: vec!["80/tcp".into()],
            cmd: vec!["sh".into()],
            rootfs_type: "layers".into(),
            diff_ids: vec!["sha256:2".into()],
            ..Default::default()
        });
        let history = [
            docker::HistoryEntry {
                created: 1_700_000_100,
                created_by: "second".into(),
                size: 0,
                ..Default::default()
            },
            docker::HistoryEntry {
                created: 1_700_000_000,
                created_by: "first".into(),
                size: 10,
                ..Default::default()
            },
        ];
        let v: serde_json::Value = serde_json::from_str(&verbose_info(&i, &history)).unwrap();
        assert_eq!(v["imageSpec"]["history"][0]["created_by"], "first");
        assert_eq!(v["imageSpec"]["history"][0]["empty_layer"], false);
        assert_eq!(
            v["imageSpec"]["history"][0]["created"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(v["imageSpec"]["history"][1]["empty_layer"], true);
        assert_eq!(v["labels"]["k"], "v");
        assert_eq!(v["imageSpec"]["config"]["User"], "1234:5678");
        assert_eq!(v["imageSpec"]["config"]["Cmd"][0], "sh");
        assert!(v["imageSpec"]["config"]["ExposedPorts"]["80/tcp"].is_object());
        assert_eq!(v["imageSpec"]["rootfs"]["diff_ids"][0], "sha256:2");
        assert_eq!(v["imageSpec"]["os"], "linux");
    }
}
