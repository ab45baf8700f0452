//! Version, Status and RuntimeConfig over a real socket, v1 and v1alpha2.

mod common;

use common::Daemon;
use k8s_cri::v1 as cri;
use k8s_cri::v1alpha2 as alpha;

#[tokio::test]
async fn version_v1_and_v1alpha2() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let v = d
        .runtime()
        .await
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "docker");
    assert_eq!(v.runtime_api_version, "v1");
    let server = common::docker(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(v.runtime_version, server);

    let a = d
        .runtime_alpha()
        .await
        .version(alpha::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.runtime_name, "docker");
    assert_eq!(a.runtime_api_version, "v1alpha2");
    assert_eq!(a.runtime_version, server);
}

#[tokio::test]
async fn status_reports_network_not_ready_without_cni_config_then_ready() {
    require_docker!();
    let d = Daemon::start(&["--network-plugin=cni"]).await;
    let mut rt = d.runtime().await;
    let st = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conds = st.status.unwrap().conditions;
    let runtime = conds.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
    assert!(runtime.status, "{runtime:?}");
    let net = conds.iter().find(|c| c.r#type == "NetworkReady").unwrap();
    assert!(!net.status);
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(st.info.contains_key("config"));

    std::fs::create_dir_all(d.cni_conf_dir()).unwrap();
    std::fs::write(
        d.cni_conf_dir().join("10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap();
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let net = st
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(net.status, "{net:?}");
    assert!(st.info.is_empty());
}

#[tokio::test]
async fn status_with_docker_unreachable_is_not_ready_but_serves() {
    // No dockerd needed: point at a socket that does not exist.
    let d = Daemon::start(&[
        "--docker-endpoint=unix:///nonexistent/docker.sock",
        "--network-plugin=no-op",
    ])
    .await;
    let mut rt = d.runtime().await;
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conds = st.status.unwrap().conditions;
    let runtime = conds.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
    assert!(!runtime.status);
    assert_eq!(runtime.reason, "DockerDaemonNotReady");
    assert!(
        runtime.message.contains("/nonexistent/docker.sock"),
        "{}",
        runtime.message
    );
    let net = conds.iter().find(|c| c.r#type == "NetworkReady").unwrap();
    assert!(net.status, "no-op is always ready");
    let err = rt
        .version(cri::VersionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
}

#[tokio::test]
async fn runtime_config_reports_dockers_cgroup_driver() {
    require_docker!();
    let d = Daemon::start(&[]).await;
    let rc = d
        .runtime()
        .await
        .runtime_config(cri::RuntimeConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    let driver = common::docker(&["info", "--format", "{{.CgroupDriver}}"]);
    let expected = if driver == "systemd" {
        cri::CgroupDriver::Systemd
    } else {
        cri::CgroupDriver::Cgroupfs
    };
    assert_eq!(rc.linux.unwrap().cgroup_driver, expected as i32);
}

#[tokio::test]
async fn unserved_version_fails_hard() {
    // A client asking for a service we do not serve gets Unimplemented, as kubelet expects to see.
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut client = tonic::client::Grpc::new(d.channel().await);
    client.ready().await.unwrap();
    let codec = tonic_prost_codec();
    let path = http::uri::PathAndQuery::from_static("/runtime.v9.RuntimeService/Version");
    let err = client
        .unary::<cri::VersionRequest, cri::VersionResponse, _>(
            tonic::Request::new(cri::VersionRequest::default()),
            path,
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}

fn tonic_prost_codec() -> tonic_prost::ProstCodec<cri::VersionRequest, cri::VersionResponse> {
    tonic_prost::ProstCodec::default()
}

#[tokio::test]
async fn v1alpha2_image_service_round_trip() {
    // The v1alpha2 ImageService re-encodes onto v1: pull, status, list, fs info and remove.
    require_docker!();
    let d = Daemon::start(&[]).await;
    let mut img = d.image_alpha().await;
    let busybox_id = common::docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "cri-dockerd-test/busybox:latest",
    ]);

    // Pull by tag from the local registry: image_ref is the image ID.
    let pulled = "127.0.0.1:5000/test/busybox:latest";
    let r = img
        .pull_image(alpha::PullImageRequest {
            image: Some(alpha::ImageSpec {
                image: pulled.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("v1alpha2 PullImage")
        .into_inner();
    assert_eq!(r.image_ref, busybox_id);
    let st = img
        .image_status(alpha::ImageStatusRequest {
            image: Some(alpha::ImageSpec {
                image: pulled.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    let image = st.image.expect("pulled image has a status");
    assert!(
        image.repo_tags.iter().any(|t| t == pulled),
        "{:?}",
        image.repo_tags
    );
    let listed = img
        .list_images(alpha::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.images.iter().any(|i| i.id == busybox_id));
    // Untag only the pulled name: the image is shared with the local test tag.
    common::docker(&["rmi", pulled]);

    let fs = img
        .image_fs_info(alpha::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!fs.image_filesystems.is_empty());
    assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 0);

    // Remove a throwaway image of its own.
    let tag = format!("cri-dockerd-test/alpha-rm-{}:x", std::process::id());
    let tar = tempfile::tempdir().unwrap();
    std::fs::write(tar.path().join("f"), std::process::id().to_string()).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c f | docker import - {tag}",
            tar.path().display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..2 {
        img.remove_image(alpha::RemoveImageRequest {
            image: Some(alpha::ImageSpec {
                image: tag.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("v1alpha2 RemoveImage (idempotent)");
    }
    assert!(
        !common::docker_try(&["image", "inspect", &tag]).0,
        "removed"
    );

    // Bad input keeps its code through the conversion.
    let err = img
        .pull_image(alpha::PullImageRequest {
            image: Some(alpha::ImageSpec {
                image: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn v1alpha2_status_with_docker_unreachable() {
    let d = Daemon::start(&[
        "--docker-endpoint=unix:///nonexistent/docker.sock",
        "--network-plugin=no-op",
    ])
    .await;
    let st = d
        .runtime_alpha()
        .await
        .status(alpha::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let runtime = st
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(!runtime.status);
    assert_eq!(runtime.reason, "DockerDaemonNotReady");
}
