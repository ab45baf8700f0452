//! Logging: nothing at info or above while kubelet polls a steady node, one line per failure,
//! and `--log-format=json` writes one JSON object per line.

mod common;

use std::time::Duration;

use common::Daemon;
use common::pods::{
    BUSYBOX, PodCleanup, Rt, container_config, pod_config, run_pod_sandbox, unique,
};
use k8s_cri::v1 as cri;
use tonic::transport::Channel;

/// A running pod with one running container: (sandbox id, container id, sandbox config).
async fn running_pod(
    rt: &mut Rt,
    d: &Daemon,
    uid: &str,
    command: &[&str],
) -> (String, Option<String>, cri::PodSandboxConfig) {
    let config = cri::PodSandboxConfig {
        log_directory: d.dir.path().join("pods").to_string_lossy().into_owned(),
        ..pod_config(&format!("log-{uid}"), "logtest", uid)
    };
    let sid = run_pod_sandbox(rt, &config).await;
    let cid = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sid.clone(),
            config: Some(cri::ContainerConfig {
                log_path: "app.log".into(),
                ..container_config("app", command)
            }),
            sandbox_config: Some(config.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    let started = rt
        .start_container(cri::StartContainerRequest {
            container_id: cid.clone(),
        })
        .await;
    (sid, started.ok().map(|_| cid), config)
}

/// One round of what kubelet calls every second or so on a steady node.
async fn poll_round(
    rt: &mut Rt,
    img: &mut k8s_cri::v1::image_service_client::ImageServiceClient<Channel>,
    sid: &str,
    cid: &str,
) {
    rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap();
    rt.list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap();
    rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: sid.into(),
        verbose: false,
    })
    .await
    .unwrap();
    rt.container_status(cri::ContainerStatusRequest {
        container_id: cid.into(),
        verbose: false,
    })
    .await
    .unwrap();
    rt.status(cri::StatusRequest { verbose: false })
        .await
        .unwrap();
    rt.version(cri::VersionRequest::default()).await.unwrap();
    img.image_fs_info(cri::ImageFsInfoRequest {}).await.unwrap();
    img.list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap();
}

/// Wait until the log stops growing (start-up and pod creation lines written).
async fn settled_log(d: &Daemon) -> String {
    let mut last = d.log();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = d.log();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn steady_state_polling_logs_nothing_at_info() {
    require_docker!();
    let d = Daemon::start(&["--log-level=info", "--network-plugin=no-op"]).await;
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let mut rt = d.runtime().await;
    let mut img = d.image().await;
    let (sid, cid, _) = running_pod(&mut rt, &d, &uid, &["sleep", "3600"]).await;
    let cid = cid.expect("StartContainer");
    // Creating and starting are state changes: they are logged at info.
    let before = settled_log(&d).await;
    assert!(
        before.contains(&sid[..12]) || before.contains(&sid),
        "{before}"
    );
    for _ in 0..20 {
        poll_round(&mut rt, &mut img, &sid, &cid).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = d.log();
    let gained = &after[before.len()..];
    assert_eq!(gained, "", "the daemon logged during steady-state polling");
}

#[tokio::test]
async fn one_line_per_failure_and_json_format() {
    require_docker!();
    let d = Daemon::start(&[
        "--log-level=info",
        "--log-format=json",
        "--network-plugin=no-op",
    ])
    .await;
    let uid = unique();
    let _cleanup = PodCleanup(uid.clone());
    let mut rt = d.runtime().await;
    let (sid, _, _) = running_pod(&mut rt, &d, &uid, &["sleep", "3600"]).await;
    let before = settled_log(&d).await;

    // A start that fails in runc: exactly one line about it, at info or above.
    let bad = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sid.clone(),
            config: Some(cri::ContainerConfig {
                log_path: "broken.log".into(),
                ..container_config("broken", &["/no/such/binary"])
            }),
            sandbox_config: None,
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    let between = settled_log(&d).await;
    let err = rt
        .start_container(cri::StartContainerRequest {
            container_id: bad.clone(),
        })
        .await
        .expect_err("start of a missing binary fails");
    assert_ne!(err.code(), tonic::Code::Unknown, "{err:?}");
    let after = settled_log(&d).await;
    let gained: Vec<&str> = after[between.len()..].lines().collect();
    assert_eq!(gained.len(), 1, "one failure, one line: {gained:#?}");
    let line: serde_json::Value = serde_json::from_str(gained[0]).expect("JSON log line");
    // Docker's 400 (a bad spec) maps to InvalidArgument, logged at info; others at warn.
    assert!(line["level"] == "INFO" || line["level"] == "WARN", "{line}");
    assert_eq!(
        line["fields"]["code"],
        format!("{:?}", err.code()),
        "{line}"
    );
    assert!(
        line["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/no/such/binary")),
        "{line}"
    );

    // A NotFound, as kubelet gets for removed containers all the time: no line at info.
    let _ = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: "0123456789ab-no-such".into(),
            verbose: false,
        })
        .await
        .expect_err("NotFound");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        d.log().len(),
        after.len(),
        "NotFound logged at info:\n{}",
        &d.log()[after.len()..]
    );

    // Every line the daemon wrote is one JSON object.
    for l in d.log().lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{l}"
        );
    }
    assert!(
        before.lines().count() >= 2,
        "start-up and pod creation are logged: {before}"
    );
}

/// `--log-level=debug` shows our own debug lines (the per-call ones kubelet's polling makes) but
/// not the libraries' frame-by-frame and body dumps (h2, hyper, tower, bollard); RUST_LOG still
/// reaches them.
#[tokio::test]
async fn debug_level_is_ours_not_the_libraries() {
    require_docker!();
    let d = Daemon::start(&["--log-level=debug", "--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    let mut img = d.image().await;
    for _ in 0..3 {
        rt.version(cri::VersionRequest::default()).await.unwrap();
        rt.list_containers(cri::ListContainersRequest { filter: None })
            .await
            .unwrap();
        img.image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap();
    }
    let log = settled_log(&d).await;
    assert!(log.contains("DEBUG"), "no debug lines at all: {log}");
    for lib in [" h2::", " hyper", " tower", " bollard", " tonic::"] {
        let noisy: Vec<&str> = log.lines().filter(|l| l.contains(lib)).collect();
        assert!(
            noisy.is_empty(),
            "{lib} lines at --log-level=debug: {noisy:#?}"
        );
    }
}
