//! ImageService over a real socket against the real dockerd and the local registries
//! (`scripts/test-env.sh`): list, status, pull (tag, digest, private registry, progress deadline),
//! remove, fs info and bad input — for CRI v1 and v1alpha2.
//!
//! Every image a test pulls or removes is one it created itself (a `docker import` with a random
//! label, so its ID is unique), pushed to a random repository; shared images are only read.
#![allow(clippy::unwrap_used)]

mod common;
mod fake_registry;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::Daemon;
use fake_registry::{FakeRegistry, LayerMode};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1alpha2 as alpha;
use k8s_cri::v1alpha2::image_service_client::ImageServiceClient as AlphaImageServiceClient;
use tonic::Code;
use tonic::transport::Channel;

const REGISTRY: &str = "127.0.0.1:5000";
const PRIVATE_REGISTRY: &str = "127.0.0.1:5001";
const REG_USER: &str = "testuser";
const REG_PASS: &str = "testpass";

fn suffix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

type Img = ImageServiceClient<Channel>;

/// PullImage of `reference` without auth; panics on failure.
async fn pull(img: &mut Img, reference: &str) -> cri::PullImageResponse {
    img.pull_image(cri::PullImageRequest {
        image: spec(reference),
        ..Default::default()
    })
    .await
    .expect("PullImage")
    .into_inner()
}

/// ImageStatus of `reference`, which must be present.
async fn status(img: &mut Img, reference: &str) -> cri::Image {
    img.image_status(cri::ImageStatusRequest {
        image: spec(reference),
        verbose: false,
    })
    .await
    .expect("ImageStatus")
    .into_inner()
    .image
    .expect("image present")
}

/// RemoveImage of `reference`; panics on failure.
async fn remove(img: &mut Img, reference: &str) {
    img.remove_image(cri::RemoveImageRequest {
        image: spec(reference),
    })
    .await
    .expect("RemoveImage");
}

/// ListImages matching `filter`; panics on failure.
async fn list(img: &mut Img, filter: &str) -> Vec<cri::Image> {
    img.list_images(cri::ListImagesRequest {
        filter: Some(cri::ImageFilter {
            image: spec(filter),
        }),
    })
    .await
    .expect("ListImages")
    .into_inner()
    .images
}

/// v1alpha2 ImageStatus of `reference`; panics on failure.
async fn alpha_status(
    a: &mut AlphaImageServiceClient<Channel>,
    reference: &str,
) -> alpha::ImageStatusResponse {
    a.image_status(alpha::ImageStatusRequest {
        image: aspec(reference),
        verbose: false,
    })
    .await
    .expect("ImageStatus")
    .into_inner()
}

fn aspec(image: &str) -> Option<alpha::ImageSpec> {
    Some(alpha::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

fn image_id(reference: &str) -> Option<String> {
    let (ok, out) = common::docker_try(&["image", "inspect", "--format", "{{.Id}}", reference]);
    ok.then(|| out.trim().to_string())
}

/// Removes the images (by unique ID) and registry manifests a test created, also on panic.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    image_ids: Vec<String>,
    manifests: Vec<(String, String, String)>, // registry, repo, digest
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = common::docker_try(&["rm", "-f", c]);
        }
        for id in &self.image_ids {
            let _ = common::docker_try(&["rmi", "-f", id]);
        }
        for (registry, repo, digest) in &self.manifests {
            let mut cmd = Command::new("curl");
            cmd.args(["-s", "-o", "/dev/null", "-X", "DELETE"]);
            if registry == PRIVATE_REGISTRY {
                cmd.args(["-u", &format!("{REG_USER}:{REG_PASS}")]);
            }
            cmd.arg(format!("http://{registry}/v2/{repo}/manifests/{digest}"));
            let _ = cmd.stderr(Stdio::null()).status();
        }
    }
}

/// Build a unique image (`docker import` of a tiny tar with a random label and `changes`) and
/// tag it `tag`. Returns its ID. The ID is registered for cleanup.
fn unique_image(cleanup: &mut Cleanup, tag: &str, changes: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello"), suffix()).unwrap();
    let label = format!("LABEL cri-dockerd-test={}", suffix());
    let mut args = vec!["import".to_string(), "--change".into(), label];
    for c in changes {
        args.push("--change".into());
        args.push(c.to_string());
    }
    args.push("-".into());
    args.push(tag.into());
    let tar = Command::new("tar")
        .args(["-C", &dir.path().to_string_lossy(), "-c", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut child = Command::new("docker")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = image_id(tag).unwrap();
    cleanup.image_ids.push(id.clone());
    id
}

/// Push a unique image to `registry/repo:tag` and delete every local trace of it, so that a
/// CRI pull really fetches it. Returns (image ID, manifest digest).
fn unique_image_in_registry(
    cleanup: &mut Cleanup,
    registry: &str,
    repo: &str,
    tag: &str,
    changes: &[&str],
) -> (String, String) {
    let reference = format!("{registry}/{repo}:{tag}");
    let id = unique_image(cleanup, &reference, changes);
    let config_dir = tempfile::tempdir().unwrap();
    let cfg = config_dir.path().to_string_lossy().to_string();
    if registry == PRIVATE_REGISTRY {
        let mut login = Command::new("docker")
            .args([
                "--config",
                &cfg,
                "login",
                "-u",
                REG_USER,
                "--password-stdin",
                registry,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        login
            .stdin
            .take()
            .unwrap()
            .write_all(REG_PASS.as_bytes())
            .unwrap();
        assert!(login.wait_with_output().unwrap().status.success());
    }
    common::docker(&["--config", &cfg, "push", &reference]);
    let digests = common::docker(&["image", "inspect", "--format", "{{json .RepoDigests}}", &id]);
    let digests: Vec<String> = serde_json::from_str(&digests).unwrap();
    let digest = digests
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{registry}/{repo}@")))
        .unwrap_or_else(|| panic!("no repo digest for {reference}: {digests:?}"))
        .to_string();
    cleanup
        .manifests
        .push((registry.into(), repo.into(), digest.clone()));
    common::docker(&["rmi", "-f", &id]);
    assert!(image_id(&id).is_none());
    (id, digest)
}

fn assert_gone(id: &str) {
    assert!(image_id(id).is_none(), "image {id} is still present");
}

#[tokio::test]
async fn list_and_status_v1_and_v1alpha2() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut img = d.image().await;
    let busybox = image_id("cri-dockerd-test/busybox:latest").expect("run scripts/test-env.sh");
    let user_uid = image_id("cri-dockerd-test/user-uid:latest").unwrap();
    let user_name = image_id("cri-dockerd-test/user-name:latest").unwrap();
    let pause = image_id("cri-dockerd-test/pause:latest").unwrap();
    let multi = image_id("cri-dockerd-test/multi:a").unwrap();

    let all = img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    let b = all
        .iter()
        .find(|i| i.id == busybox)
        .expect("busybox listed");
    assert!(
        b.repo_tags
            .contains(&"cri-dockerd-test/busybox:latest".to_string())
    );
    assert!(b.size > 0);
    assert!(!b.pinned);
    let p = all.iter().find(|i| i.id == pause).unwrap();
    assert!(p.pinned, "the configured pod infra image is pinned");

    // Filter by short name (all tags), full name, tag, ID.
    for (filter, want) in [
        ("cri-dockerd-test/multi", vec![multi.clone()]),
        ("docker.io/cri-dockerd-test/multi:b", vec![multi.clone()]),
        ("cri-dockerd-test/busybox", vec![busybox.clone()]),
        (busybox.as_str(), vec![busybox.clone()]),
        (
            "cri-dockerd-test/user-*",
            vec![user_uid.clone(), user_name.clone()],
        ),
        ("cri-dockerd-test/absent-xyz", vec![]),
    ] {
        let got = list(&mut img, filter).await;
        let mut ids: Vec<String> = got.iter().map(|i| i.id.clone()).collect();
        ids.sort();
        let mut want = want;
        want.sort();
        assert_eq!(ids, want, "filter {filter}");
    }
    let multi_tags = list(&mut img, "cri-dockerd-test/multi:c").await;
    for t in ["a", "b", "c"] {
        assert!(
            multi_tags[0]
                .repo_tags
                .contains(&format!("cri-dockerd-test/multi:{t}"))
        );
    }

    // Status: USER variants, by every name form.
    let status = |s: cri::ImageStatusResponse| s.image.expect("image present");
    let mut client = img.clone();
    let mut get = async |name: &str, verbose: bool| {
        client
            .image_status(cri::ImageStatusRequest {
                image: spec(name),
                verbose,
            })
            .await
            .unwrap_or_else(|e| panic!("status {name}: {e:?}"))
            .into_inner()
    };
    let u = status(get("cri-dockerd-test/user-uid:latest", false).await);
    assert_eq!(u.id, user_uid);
    assert_eq!(u.uid, Some(cri::Int64Value { value: 1234 }));
    assert_eq!(u.username, "");
    let n = status(get("cri-dockerd-test/user-name", false).await);
    assert_eq!(n.id, user_name);
    assert_eq!(n.uid, None);
    assert_eq!(n.username, "nobody");
    let hex = busybox.strip_prefix("sha256:").unwrap();
    for name in [
        "cri-dockerd-test/busybox",
        "cri-dockerd-test/busybox:latest",
        "docker.io/cri-dockerd-test/busybox:latest",
        busybox.as_str(),
        hex,
        &busybox[..19],
        &hex[..12],
    ] {
        let s = get(name, false).await;
        let i = status(s.clone());
        assert_eq!(i.id, busybox, "{name}");
        assert_eq!(i.uid, None, "{name}");
        assert_eq!(i.username, "", "{name}");
        assert!(!i.pinned);
        assert!(i.size > 0);
        assert!(s.info.is_empty());
    }
    let v = get("cri-dockerd-test/user-uid:latest", true).await;
    let info: serde_json::Value = serde_json::from_str(&v.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["User"], "1234:5678");
    assert_eq!(info["imageSpec"]["config"]["Cmd"][0], "sh");
    assert_eq!(info["imageSpec"]["rootfs"]["type"], "layers");
    let history = info["imageSpec"]["history"].as_array().unwrap();
    assert!(!history.is_empty(), "{info}");
    assert!(history[0]["created"].as_str().unwrap().ends_with('Z'));

    // Absent: an empty response, not an error.
    let absent_name = format!("cri-dockerd-test/absent-{}:x", suffix());
    for name in [
        absent_name.as_str(),
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let s = get(name, true).await;
        assert!(s.image.is_none(), "{name}: {s:?}");
        assert!(s.info.is_empty());
    }

    // v1alpha2: the same answers.
    let mut a = d.image_alpha().await;
    let al = a
        .list_images(alpha::ListImagesRequest {
            filter: Some(alpha::ImageFilter {
                image: aspec("cri-dockerd-test/user-uid"),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(al.len(), 1);
    assert_eq!(al[0].id, user_uid);
    let s = alpha_status(&mut a, "cri-dockerd-test/user-uid")
        .await
        .image
        .unwrap();
    assert_eq!(s.uid, Some(alpha::Int64Value { value: 1234 }));
    let s = alpha_status(&mut a, "cri-dockerd-test/user-name")
        .await
        .image
        .unwrap();
    assert_eq!(s.username, "nobody");
    let s = alpha_status(&mut a, &absent_name).await;
    assert!(s.image.is_none());
}

/// An untagged PullImage (critest pulls `<registry-prefix>/<path>` with no tag) fetches
/// `:latest` only — Docker's API alone would pull every tag of the repository.
#[tokio::test]
async fn untagged_pull_fetches_latest_only() {
    require_docker!();
    let mut cleanup = Cleanup::default();
    let repo = format!("cri-test/untagged-{}", suffix());
    let (latest, _) = unique_image_in_registry(&mut cleanup, REGISTRY, &repo, "latest", &[]);
    let (other, _) = unique_image_in_registry(&mut cleanup, REGISTRY, &repo, "v1", &[]);
    let d = Daemon::start(&[]).await;
    let mut img = d.image().await;
    let bare = format!("{REGISTRY}/{repo}");
    let r = pull(&mut img, &bare).await;
    assert_eq!(r.image_ref, latest);
    assert!(image_id(&other).is_none(), "the :v1 tag was pulled too");
    let s = status(&mut img, &bare).await;
    assert_eq!(s.id, latest);
    assert_eq!(s.repo_tags, vec![format!("{bare}:latest")]);
    remove(&mut img, &bare).await;
    assert_gone(&latest);
}

#[tokio::test]
async fn pull_by_tag_and_digest_returns_the_image_id_then_remove() {
    require_docker!();
    let mut cleanup = Cleanup::default();
    let repo = format!("cri-test/pull-{}", suffix());
    let (id, digest) =
        unique_image_in_registry(&mut cleanup, REGISTRY, &repo, "v1", &["USER 1234:5678"]);
    let d = Daemon::start(&[]).await;
    let mut img = d.image().await;
    let by_tag = format!("{REGISTRY}/{repo}:v1");
    let by_digest = format!("{REGISTRY}/{repo}@{digest}");

    // By tag.
    let r = pull(&mut img, &by_tag).await;
    assert_eq!(r.image_ref, id, "image_ref is the image ID");
    let s = status(&mut img, &by_tag).await;
    assert_eq!(s.id, id);
    assert_eq!(s.repo_tags, vec![by_tag.clone()]);
    assert_eq!(s.repo_digests, vec![by_digest.clone()]);
    assert_eq!(s.uid, Some(cri::Int64Value { value: 1234 }));
    let listed = img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(listed.iter().any(|i| i.id == r.image_ref));

    // Remove by tag: gone entirely.
    remove(&mut img, &by_tag).await;
    assert_gone(&id);

    // By digest: the same image ID.
    let r = pull(&mut img, &by_digest).await;
    assert_eq!(r.image_ref, id);
    let s = status(&mut img, &by_digest).await;
    assert_eq!(s.id, id);
    assert!(s.repo_digests.contains(&by_digest));
    remove(&mut img, &by_digest).await;
    assert_gone(&id);

    // v1alpha2: pull by tag, remove by ID.
    let mut a = d.image_alpha().await;
    let r = a
        .pull_image(alpha::PullImageRequest {
            image: aspec(&by_tag),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.image_ref, id);
    a.remove_image(alpha::RemoveImageRequest { image: aspec(&id) })
        .await
        .unwrap();
    assert_gone(&id);
    // Removing again (absent) is success, by tag and by ID.
    a.remove_image(alpha::RemoveImageRequest { image: aspec(&id) })
        .await
        .unwrap();
    remove(&mut img, &by_tag).await;
}

#[tokio::test]
async fn private_registry_needs_the_right_credentials() {
    require_docker!();
    let mut cleanup = Cleanup::default();
    let repo = format!("private/pull-{}", suffix());
    let (id, _) = unique_image_in_registry(&mut cleanup, PRIVATE_REGISTRY, &repo, "latest", &[]);
    let reference = format!("{PRIVATE_REGISTRY}/{repo}:latest");
    let d = Daemon::start(&[]).await;
    let mut img = d.image().await;
    let auth = |user: &str, pass: &str| {
        Some(cri::AuthConfig {
            username: user.into(),
            password: pass.into(),
            server_address: PRIVATE_REGISTRY.into(),
            ..Default::default()
        })
    };

    for (what, a) in [
        ("no credentials", None),
        ("wrong password", auth(REG_USER, "wrong")),
        ("unknown user", auth("nobody", REG_PASS)),
    ] {
        let e = img
            .pull_image(cri::PullImageRequest {
                image: spec(&reference),
                auth: a,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied),
            "{what}: {e:?}"
        );
        assert!(e.message().contains(&reference), "{what}: {}", e.message());
        assert!(
            e.message().contains("auth") || e.message().contains("unauthorized"),
            "{what}: {}",
            e.message()
        );
        assert_gone(&id);
    }

    // Username/password.
    let r = img
        .pull_image(cri::PullImageRequest {
            image: spec(&reference),
            auth: auth(REG_USER, REG_PASS),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.image_ref, id);
    remove(&mut img, &reference).await;
    assert_gone(&id);

    // The `auth` field (base64 user:password), over v1alpha2.
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{REG_USER}:{REG_PASS}"));
    let mut a = d.image_alpha().await;
    let r = a
        .pull_image(alpha::PullImageRequest {
            image: aspec(&reference),
            auth: Some(alpha::AuthConfig {
                auth: encoded,
                server_address: PRIVATE_REGISTRY.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.image_ref, id);
    let e = a
        .pull_image(alpha::PullImageRequest {
            image: aspec(&format!("{PRIVATE_REGISTRY}/{repo}-other:latest")),
            auth: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    a.remove_image(alpha::RemoveImageRequest {
        image: aspec(&reference),
    })
    .await
    .unwrap();
    assert_gone(&id);
}

#[tokio::test]
async fn unreachable_registry_is_unavailable() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut img = d.image().await;
    // Nothing listens on port 1; dockerd tries the registry over HTTPS, then (loopback being
    // an insecure registry by default) plain HTTP, and gives up at once.
    let reference = format!("127.0.0.1:1/nowhere/busybox:{}", suffix());
    let t = Instant::now();
    let e = img
        .pull_image(cri::PullImageRequest {
            image: spec(&reference),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(&reference) && e.message().contains("registry unreachable"),
        "{}",
        e.message()
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

#[tokio::test]
async fn remove_multi_tagged_image_by_tag_and_by_id() {
    require_docker!();
    let mut cleanup = Cleanup::default();
    let d = Daemon::start(&[]).await;
    let mut img = d.image().await;
    let mut a = d.image_alpha().await;
    for by_id in [false, true] {
        let repo = format!("cri-dockerd-test/rm-{}", suffix());
        let id = unique_image(&mut cleanup, &format!("{repo}:x"), &[]);
        common::docker(&["tag", &id, &format!("{repo}:y")]);
        common::docker(&["tag", &id, &format!("{repo}-other:z")]);
        let s = img
            .image_status(cri::ImageStatusRequest {
                image: spec(&format!("{repo}:y")),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        assert_eq!(s.repo_tags.len(), 3, "{:?}", s.repo_tags);
        if by_id {
            a.remove_image(alpha::RemoveImageRequest { image: aspec(&id) })
                .await
                .unwrap();
        } else {
            img.remove_image(cri::RemoveImageRequest {
                image: spec(&format!("{repo}:y")),
            })
            .await
            .unwrap();
        }
        assert_gone(&id);
        for t in [
            format!("{repo}:x"),
            format!("{repo}:y"),
            format!("{repo}-other:z"),
        ] {
            assert!(image_id(&t).is_none(), "{t} survived");
        }
    }
    // The shared multi-tag image is untouched by all this.
    assert!(image_id("cri-dockerd-test/multi:a").is_some());
}

#[tokio::test]
async fn remove_of_an_image_in_use_is_refused_untouched() {
    require_docker!();
    let mut cleanup = Cleanup::default();
    let repo = format!("cri-dockerd-test/rm-used-{}", suffix());
    let id = unique_image(&mut cleanup, &format!("{repo}:a"), &[]);
    common::docker(&["tag", &id, &format!("{repo}:b")]);
    let name = format!("cri-dockerd-test-user-{}", suffix());
    cleanup.containers.push(name.clone());
    let container = common::docker(&["create", "--name", &name, &id, "/nothing"]);
    let d = Daemon::start(&[]).await;
    let mut img = d.image().await;
    let e = img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&format!("{repo}:a")),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&container[..12]), "{}", e.message());
    // Nothing was untagged.
    assert_eq!(image_id(&format!("{repo}:a")).as_deref(), Some(id.as_str()));
    assert_eq!(image_id(&format!("{repo}:b")).as_deref(), Some(id.as_str()));
    common::docker(&["rm", &name]);
    img.remove_image(cri::RemoveImageRequest {
        image: spec(&format!("{repo}:a")),
    })
    .await
    .unwrap();
    assert_gone(&id);
}

#[tokio::test]
async fn concurrent_removes_of_one_image_all_succeed() {
    require_docker!();
    let mut cleanup = Cleanup::default();
    let repo = format!("cri-dockerd-test/rm-conc-{}", suffix());
    let id = unique_image(&mut cleanup, &format!("{repo}:a"), &[]);
    for t in ["b", "c", "d"] {
        common::docker(&["tag", &id, &format!("{repo}:{t}")]);
    }
    let d = Daemon::start(&[]).await;
    let names = [
        format!("{repo}:a"),
        format!("{repo}:b"),
        id.clone(),
        format!("{repo}:c"),
        format!("{repo}:d"),
        id.clone(),
        format!("{repo}:a"),
        format!("docker.io/{repo}:b"),
    ];
    let mut tasks = Vec::new();
    for n in names.iter().chain(names.iter()).cloned() {
        let mut c = d.image().await;
        tasks.push(tokio::spawn(async move {
            c.remove_image(cri::RemoveImageRequest { image: spec(&n) })
                .await
                .map_err(|e| (n, e))
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("every concurrent RemoveImage succeeds");
    }
    assert_gone(&id);
}

#[tokio::test]
async fn image_fs_info_reports_docker_root_usage() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let root = common::docker(&["info", "--format", "{{.DockerRootDir}}"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let r = d
        .image()
        .await
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.image_filesystems.len(), 1);
    assert_eq!(r.container_filesystems.len(), 1);
    let i = &r.image_filesystems[0];
    assert_eq!(i.fs_id.as_ref().unwrap().mountpoint, root);
    assert!(
        (i.timestamp - now).abs() < 60_000_000_000,
        "timestamp in ns"
    );
    // At least the test images are there.
    let bb: u64 = common::docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Size}}",
        "cri-dockerd-test/busybox:latest",
    ])
    .parse()
    .unwrap();
    assert!(i.used_bytes.as_ref().unwrap().value >= bb);
    assert!(i.inodes_used.as_ref().unwrap().value > 0);
    let c = &r.container_filesystems[0];
    assert_eq!(c.fs_id.as_ref().unwrap().mountpoint, root);
    assert!(c.used_bytes.is_some());

    let a = d
        .image_alpha()
        .await
        .image_fs_info(alpha::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        a.image_filesystems[0].fs_id.as_ref().unwrap().mountpoint,
        root
    );
    assert!(a.image_filesystems[0].used_bytes.as_ref().unwrap().value >= bb);
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_left_behind() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut img = d.image().await;
    let mut a = d.image_alpha().await;
    let absent_repo = format!("{REGISTRY}/cri-test/absent-{}", suffix());
    let before = common::docker(&["images", "-q", "--no-trunc"]);
    for bad in [
        "",
        "UPPER/Case",
        "a::b",
        "busybox@sha256:zz",
        "busybox:",
        "-x",
    ] {
        let e = img
            .pull_image(cri::PullImageRequest {
                image: spec(bad),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "pull {bad:?}: {e:?}");
        if bad.is_empty() {
            assert!(e.message().contains("empty"), "{}", e.message());
        } else {
            assert!(e.message().contains(bad), "{}", e.message());
        }
        let e = img
            .image_status(cri::ImageStatusRequest {
                image: spec(bad),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "status {bad:?}: {e:?}");
        let e = img
            .remove_image(cri::RemoveImageRequest { image: spec(bad) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "remove {bad:?}: {e:?}");
        let e = a
            .pull_image(alpha::PullImageRequest {
                image: aspec(bad),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "alpha pull {bad:?}: {e:?}");
        if !bad.is_empty() {
            let e = img
                .list_images(cri::ListImagesRequest {
                    filter: Some(cri::ImageFilter { image: spec(bad) }),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "list {bad:?}: {e:?}");
        }
    }
    // No ImageSpec at all.
    let e = img
        .pull_image(cri::PullImageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // An image ID is not pullable.
    let e = img
        .pull_image(cri::PullImageRequest {
            image: spec("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A repository the local registry does not have, by tag and by digest.
    for r in [
        format!("{absent_repo}:latest"),
        format!(
            "{absent_repo}@sha256:0000000000000000000000000000000000000000000000000000000000000000"
        ),
    ] {
        let e = img
            .pull_image(cri::PullImageRequest {
                image: spec(&r),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{r}: {e:?}");
        assert!(e.message().contains(&r), "{}", e.message());
    }
    // Unknown images: RemoveImage succeeds, ImageStatus is empty.
    let unknown = format!("cri-dockerd-test/unknown-{}:x", suffix());
    remove(&mut img, &unknown).await;
    remove(
        &mut img,
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await;
    let after = common::docker(&["images", "-q", "--no-trunc"]);
    let before: std::collections::BTreeSet<_> = before.lines().collect();
    let leaked: Vec<_> = after.lines().filter(|l| !before.contains(l)).collect();
    // Other tests create images concurrently; ours would be tagged with absent_repo.
    let (_, ours) = common::docker_try(&["images", "-q", &absent_repo]);
    assert!(
        ours.trim().is_empty(),
        "left behind: {ours} (new overall: {leaked:?})"
    );
}

#[tokio::test]
async fn progress_deadline_cancels_a_stalled_pull() {
    require_docker!();
    let label = suffix();
    let reg = FakeRegistry::start(
        &format!("fake/stall-{label}"),
        &label,
        64 * 1024,
        LayerMode::Stall,
    )
    .await;
    let d = Daemon::start(&["--image-pull-progress-deadline=2s"]).await;
    let mut img = d.image().await;
    let started = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        img.pull_image(cri::PullImageRequest {
            image: spec(&reg.reference()),
            ..Default::default()
        }),
    )
    .await
    .expect("PullImage must not hang")
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("no progress"), "{}", e.message());
    assert!(e.message().contains(&reg.reference()), "{}", e.message());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "took {took:?}"
    );
    assert!(
        reg.layer_requests.load(Ordering::SeqCst) >= 1,
        "the layer was requested"
    );
    // dockerd cancelled its pull when we closed the request: a second pull starts a fresh
    // layer download instead of joining a transfer still in flight. (Docker 20.10 does leave
    // the stalled registry connection itself open, so that is not what we check.)
    let e = img
        .pull_image(cri::PullImageRequest {
            image: spec(&reg.reference()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert_eq!(
        reg.layer_requests.load(Ordering::SeqCst),
        2,
        "the second pull downloaded the layer anew"
    );
    // v1alpha2 sees the same code.
    let e = d
        .image_alpha()
        .await
        .pull_image(alpha::PullImageRequest {
            image: aspec(&reg.reference()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert_gone(&reg.config_digest);
}

#[tokio::test]
async fn slow_but_moving_pull_is_not_cancelled() {
    require_docker!();
    let label = suffix();
    // 48 KiB in 4 KiB pieces every 400 ms: ~5 s in all, never 2 s without a byte.
    let reg = FakeRegistry::start(
        &format!("fake/slow-{label}"),
        &label,
        44 * 1024,
        LayerMode::Drip {
            chunk: 4096,
            every: Duration::from_millis(400),
        },
    )
    .await;
    let mut cleanup = Cleanup::default();
    cleanup.image_ids.push(reg.config_digest.clone());
    let d = Daemon::start(&["--image-pull-progress-deadline=2s"]).await;
    let mut img = d.image().await;
    let started = Instant::now();
    let r = img
        .pull_image(cri::PullImageRequest {
            image: spec(&reg.reference()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", d.log()))
        .into_inner();
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "the pull really was slow"
    );
    assert_eq!(r.image_ref, reg.config_digest, "image ID = config digest");
    img.remove_image(cri::RemoveImageRequest {
        image: spec(&reg.reference()),
    })
    .await
    .unwrap();
    assert_gone(&reg.config_digest);
}

#[tokio::test]
async fn image_calls_without_docker_are_unavailable() {
    // No dockerd needed: point at a socket that does not exist. Absent-image shortcuts
    // (empty ImageStatus, successful RemoveImage) must not hide that dockerd is down.
    let d = Daemon::start(&["--docker-endpoint=unix:///nonexistent/docker.sock"]).await;
    let mut img = d.image().await;
    let e = img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = img
        .image_status(cri::ImageStatusRequest {
            image: spec("busybox"),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = img
        .remove_image(cri::RemoveImageRequest {
            image: spec("busybox"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = img
        .pull_image(cri::PullImageRequest {
            image: spec("busybox"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
}
