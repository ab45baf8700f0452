//! Image calls: list, inspect, pull (with the progress deadline), remove, disk usage.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::client::DockerClient;
use super::error::{Error, Result};

/// An image as the domain layer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:<hex>` image ID.
    pub id: String,
    /// `name:tag` references.
    pub repo_tags: Vec<String>,
    /// `name@sha256:<hex>` references.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// The image config's `User` (may be `name`, `uid`, `uid:gid`, `name:group` or empty).
    pub user: String,
    /// The image config's labels.
    pub labels: BTreeMap<String, String>,
    /// The rest of the image config; only filled in by [`ImageApi::inspect_image`].
    pub details: Option<ImageDetails>,
}

/// What `inspect` tells beyond the summary (for verbose `ImageStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDetails {
    /// Creation time as Docker reports it (RFC 3339).
    pub created: String,
    pub author: String,
    pub architecture: String,
    pub os: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    /// `port/proto` keys.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: String,
    /// `layers`.
    pub rootfs_type: String,
    /// Layer diff IDs, `sha256:<hex>`.
    pub diff_ids: Vec<String>,
}

/// One entry of an image's history (`docker history`), newest first as Docker reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    pub comment: String,
    /// Bytes the step added (0: no layer).
    pub size: i64,
}

/// Registry credentials for a pull (the CRI `AuthConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullAuth {
    pub username: String,
    pub password: String,
    /// base64(`username:password`).
    pub auth: String,
    pub server_address: String,
    pub identity_token: String,
    pub registry_token: String,
}

/// Image-level Docker calls.
#[async_trait]
pub trait ImageApi {
    /// All images (tagged or not; no intermediate build layers).
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;
    /// Inspect by ID, ID prefix, tag or digest; `NotFound` if absent.
    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo>;
    /// Pull `reference` (`name:tag` or `name@digest`; a bare name means `:latest`, never "all
    /// tags"). Fails with `Timeout` when no progress message arrives for `progress_deadline`
    /// (zero: no deadline); the pull is then cancelled in dockerd by closing the request.
    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<PullAuth>,
        progress_deadline: Duration,
    ) -> Result<()>;
    /// Remove one reference or ID (`force` also untags every tag of an ID).
    async fn remove_image(&self, reference: &str, force: bool) -> Result<()>;
    /// Bytes used by image layers (shared layers counted once where Docker reports sharing).
    async fn images_disk_usage(&self) -> Result<u64>;
    /// The image's history, newest step first.
    async fn image_history(&self, id: &str) -> Result<Vec<HistoryEntry>>;
    /// IDs of the containers (running or not) created from image `id` or from an image built
    /// on it — the containers that keep Docker from removing it.
    async fn containers_using_image(&self, id: &str) -> Result<Vec<String>>;
}

/// Split `name[:tag][@digest]` into what `/images/create` takes as `fromImage` and `tag`.
fn split_pull_reference(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        // Docker pulls by digest when `tag` is a digest; a tag next to it is ignored anyway.
        let name = match name.rfind(':') {
            Some(i) if name.rfind('/').is_none_or(|s| i > s) => &name[..i],
            _ => name,
        };
        return (name, digest);
    }
    match reference.rfind(':') {
        Some(i) if reference.rfind('/').is_none_or(|s| i > s) => {
            (&reference[..i], &reference[i + 1..])
        }
        _ => (reference, "latest"),
    }
}

fn credentials(a: PullAuth) -> DockerCredentials {
    let opt = |s: String| (!s.is_empty()).then_some(s);
    DockerCredentials {
        username: opt(a.username),
        password: opt(a.password),
        auth: opt(a.auth),
        email: None,
        serveraddress: opt(a.server_address),
        identitytoken: opt(a.identity_token),
        registrytoken: opt(a.registry_token),
    }
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn from_inspect(i: bollard::models::ImageInspect) -> ImageInfo {
    let config = i.config.unwrap_or_default();
    let root_fs = i.root_fs;
    ImageInfo {
        id: i.id.unwrap_or_default(),
        repo_tags: i.repo_tags.unwrap_or_default(),
        repo_digests: i.repo_digests.unwrap_or_default(),
        size: non_negative(i.size.unwrap_or_default()),
        user: config.user.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        details: Some(ImageDetails {
            created: i.created.unwrap_or_default(),
            author: i.author.unwrap_or_default(),
            architecture: i.architecture.unwrap_or_default(),
            os: i.os.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            working_dir: config.working_dir.unwrap_or_default(),
            exposed_ports: config.exposed_ports.unwrap_or_default(),
            volumes: config.volumes.unwrap_or_default(),
            stop_signal: config.stop_signal.unwrap_or_default(),
            rootfs_type: root_fs.as_ref().map(|r| r.typ.clone()).unwrap_or_default(),
            diff_ids: root_fs.and_then(|r| r.layers).unwrap_or_default(),
        }),
    }
}

/// Docker reports `<none>:<none>` / `<none>@<none>` for untagged images in some versions.
fn real_refs(refs: Vec<String>) -> Vec<String> {
    refs.into_iter()
        .filter(|r| !r.starts_with("<none>"))
        .collect()
}

/// When another removal of the same image wins the race, dockerd answers HTTP 500 instead of
/// 404 ("unrecognized image ID …", "reference does not exist"): the image is gone all the same.
fn removal_race_is_not_found(e: Error) -> Error {
    match e {
        Error::Api {
            status: 500,
            message,
        } if message.contains("unrecognized image ID")
            || message.contains("reference does not exist")
            || message.contains("No such image") =>
        {
            Error::NotFound(message)
        }
        other => other,
    }
}

#[async_trait]
impl ImageApi for DockerClient {
    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let opts = ListImagesOptionsBuilder::default().all(false).build();
        let images = self
            .call(
                "list_images",
                |d| async move { d.list_images(Some(opts)).await },
            )
            .await?;
        Ok(images
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                repo_tags: real_refs(i.repo_tags),
                repo_digests: real_refs(i.repo_digests),
                size: non_negative(i.size),
                user: String::new(),
                labels: i.labels.into_iter().collect(),
                details: None,
            })
            .collect())
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo> {
        let r = reference.to_string();
        let i = self
            .call(
                "inspect_image",
                |d| async move { d.inspect_image(&r).await },
            )
            .await?;
        let mut info = from_inspect(i);
        info.repo_tags = real_refs(info.repo_tags);
        info.repo_digests = real_refs(info.repo_digests);
        Ok(info)
    }

    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<PullAuth>,
        progress_deadline: Duration,
    ) -> Result<()> {
        let (from_image, tag) = split_pull_reference(reference);
        let opts = CreateImageOptionsBuilder::default()
            .from_image(from_image)
            .tag(tag)
            .build();
        let creds = auth.map(credentials);
        let reference = reference.to_string();
        // The outer Result carries dockerd's errors (so `call` can reset a dead connection);
        // the inner one our own deadline. Measured as one operation, deadline included.
        let pull = self.call_unmeasured(|d| async move {
                let mut stream = d.create_image(Some(opts), None, creds);
                loop {
                    let next = if progress_deadline.is_zero() {
                        Ok(stream.next().await)
                    } else {
                        tokio::time::timeout(progress_deadline, stream.next()).await
                    };
                    match next {
                        Err(_elapsed) => {
                            return Ok(Err(Error::Timeout(format!(
                                "pulling image {reference:?} made no progress for {progress_deadline:?} \
                                 (--image-pull-progress-deadline); cancelled"
                            ))));
                        }
                        Ok(None) => return Ok(Ok(())),
                        Ok(Some(Ok(info))) => {
                            tracing::trace!(
                                image = %reference,
                                status = info.status.as_deref().unwrap_or(""),
                                id = info.id.as_deref().unwrap_or(""),
                                "pull progress"
                            );
                        }
                        Ok(Some(Err(e))) => return Err(e),
                    }
                }
            });
        super::client::measure("pull_image", async move {
            pull.await
                .and_then(|pulled| pulled)
                .map_err(super::error::classify_pull_error)
        })
        .await
    }

    async fn remove_image(&self, reference: &str, force: bool) -> Result<()> {
        let r = reference.to_string();
        let opts = RemoveImageOptionsBuilder::default()
            .force(force)
            .noprune(false)
            .build();
        self.call("remove_image", |d| async move {
            d.remove_image(&r, Some(opts), None).await
        })
        .await
        .map(|_| ())
        .map_err(removal_race_is_not_found)
    }

    async fn images_disk_usage(&self) -> Result<u64> {
        // API 1.41 (Docker 20.10) answers `/system/df` in a format newer clients no longer parse,
        // so sum what the image list reports, as the Go cri-dockerd does.
        let opts = ListImagesOptionsBuilder::default()
            .all(false)
            .shared_size(true)
            .build();
        let images = self
            .call(
                "list_images",
                |d| async move { d.list_images(Some(opts)).await },
            )
            .await?;
        let mut images_bytes = 0u64;
        let mut shared = std::collections::BTreeSet::new();
        for i in &images {
            if i.shared_size < 0 {
                // Docker < 23 does not report sharing: count the image's full size.
                images_bytes += non_negative(i.size);
            } else {
                images_bytes += non_negative(i.size - i.shared_size);
                shared.insert(i.shared_size);
            }
        }
        images_bytes += shared.into_iter().map(non_negative).sum::<u64>();
        Ok(images_bytes)
    }

    async fn image_history(&self, id: &str) -> Result<Vec<HistoryEntry>> {
        let id = id.to_string();
        let h = self
            .call(
                "image_history",
                |d| async move { d.image_history(&id).await },
            )
            .await?;
        Ok(h.into_iter()
            .map(|e| HistoryEntry {
                created: e.created,
                created_by: e.created_by,
                comment: e.comment,
                size: e.size,
            })
            .collect())
    }

    async fn containers_using_image(&self, id: &str) -> Result<Vec<String>> {
        let filters = std::collections::HashMap::from([("ancestor", vec![id])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .call("list_containers", |d| async move {
                d.list_containers(Some(opts)).await
            })
            .await?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_pull_references() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let with_digest = format!("127.0.0.1:5000/a/b@{d}");
        let with_both = format!("127.0.0.1:5000/a/b:v1@{d}");
        let cases: Vec<(&str, (&str, &str))> = vec![
            (
                "docker.io/library/busybox:latest",
                ("docker.io/library/busybox", "latest"),
            ),
            ("busybox", ("busybox", "latest")),
            ("127.0.0.1:5000/a/b", ("127.0.0.1:5000/a/b", "latest")),
            ("127.0.0.1:5000/a/b:v2", ("127.0.0.1:5000/a/b", "v2")),
            (&with_digest, ("127.0.0.1:5000/a/b", d)),
            (&with_both, ("127.0.0.1:5000/a/b", d)),
        ];
        for (input, want) in cases {
            assert_eq!(split_pull_reference(input), want, "{input}");
        }
    }

    #[test]
    fn lost_removal_races_are_not_found() {
        let race = Error::Api {
            status: 500,
            message: "unrecognized image ID sha256:d3e3".into(),
        };
        assert!(matches!(
            removal_race_is_not_found(race),
            Error::NotFound(_)
        ));
        let other = Error::Api {
            status: 500,
            message: "driver failed".into(),
        };
        assert!(matches!(
            removal_race_is_not_found(other),
            Error::Api { status: 500, .. }
        ));
    }

    #[test]
    fn credentials_leave_empty_fields_out() {
        let c = credentials(PullAuth {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        });
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p"));
        assert!(c.auth.is_none() && c.identitytoken.is_none() && c.serveraddress.is_none());
    }
}
