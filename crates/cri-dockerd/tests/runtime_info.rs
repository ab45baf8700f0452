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
