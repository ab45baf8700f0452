//! `cri-dockerd doctor` on constructed host states: temp dirs, fake CNI plugins, fake and stale
//! sockets, the real dockerd, an unreachable dockerd, and a running daemon.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Run `cri-dockerd doctor <args>`; (exit code, stdout, stderr).
fn doctor(args: &[String]) -> (i32, String, String) {
    let out = Command::new(common::binary())
        .arg("doctor")
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("CRI_DOCKERD_DOCTOR_KUBELET_CONFIG")
        .env_remove("CRI_DOCKERD_DOCTOR_OTHER_CRI_SOCKETS")
        .output()
        .expect("run doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run doctor with `--output json` and return (exit code, the check named `name` -> object).
fn doctor_json(args: &[String]) -> (i32, Value) {
    let mut args = args.to_vec();
    args.push("--output=json".into());
    let (code, stdout, stderr) = doctor(&args);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor JSON does not parse: {e}\n{stdout}\n{stderr}"));
    (code, v)
}

fn find<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn verdict(report: &Value, name: &str) -> String {
    find(report, name)["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn message(report: &Value, name: &str) -> String {
    let c = find(report, name);
    format!(
        "{} | fix: {}",
        c["message"].as_str().unwrap_or_default(),
        c["fix"].as_str().unwrap_or_default()
    )
}

fn write_exe(path: &Path) {
    std::fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn docker_cgroup_driver() -> String {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.CgroupDriver}}"])
        .output()
        .expect("docker info");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn other_driver(d: &str) -> &'static str {
    if d == "systemd" {
        "cgroupfs"
    } else {
        "systemd"
    }
}

/// Flags for a host laid out under `dir`.
fn host_flags(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!(
            "--container-runtime-endpoint=unix://{}",
            dir.join("cri.sock").display()
        ),
        format!(
            "--cri-dockerd-root-directory={}",
            dir.join("root").display()
        ),
        format!("--cni-conf-dir={}", dir.join("net.d").display()),
        format!("--cni-bin-dir={}", dir.join("bin").display()),
        format!("--kubelet-config={}", dir.join("kubelet.yaml").display()),
        format!(
            "--other-cri-sockets={}",
            dir.join("containerd.sock").display()
        ),
        "--pod-infra-container-image=cri-dockerd-test/pause:latest".into(),
    ];
    if !extra.iter().any(|a| a.starts_with("--docker-endpoint")) {
        v.push(format!("--docker-endpoint={}", common::docker_endpoint()));
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[test]
fn broken_host_every_finding_with_its_fix() {
    require_docker!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // kubelet uses the other cgroup driver.
    let docker_driver = docker_cgroup_driver();
    let kubelet_driver = other_driver(&docker_driver);
    std::fs::write(
        d.join("kubelet.yaml"),
        format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: {kubelet_driver}\n"),
    )
    .unwrap();
    // A CNI conflist whose second plugin binary is missing; an invalid file sorts first.
    std::fs::create_dir_all(d.join("net.d")).unwrap();
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::write(d.join("net.d/00-broken.conflist"), "{not json").unwrap();
    std::fs::write(
        d.join("net.d/10-pods.conflist"),
        r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"doctor-missing-plugin"}]}"#,
    )
    .unwrap();
    write_exe(&d.join("bin/bridge"));
    // containerd's socket is there too.
    let _containerd = std::os::unix::net::UnixListener::bind(d.join("containerd.sock")).unwrap();

    let (code, r) = doctor_json(&host_flags(d, &[]));
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["verdict"], "FAIL");

    assert_eq!(verdict(&r, "docker"), "OK");
    let m = message(&r, "docker");
    assert!(m.contains("API version 1."), "{m}");
    assert!(m.contains(&common::docker_endpoint()), "{m}");

    assert_eq!(verdict(&r, "cgroup-driver"), "FAIL");
    let m = message(&r, "cgroup-driver");
    assert!(
        m.contains(&format!(
            "Docker uses the {docker_driver} cgroup driver but kubelet uses {kubelet_driver}"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!("set cgroupDriver: {docker_driver}")),
        "{m}"
    );
    assert!(
        m.contains(&format!("native.cgroupdriver={kubelet_driver}")),
        "{m}"
    );

    assert_eq!(verdict(&r, "network-plugin"), "FAIL");
    let m = message(&r, "network-plugin");
    assert!(m.contains("10-pods.conflist"), "{m}");
    assert!(m.contains("missing from"), "{m}");
    assert!(m.contains("doctor-missing-plugin"), "{m}");
    assert!(
        !m.contains("bridge,") && !m.contains(": bridge"),
        "bridge is present: {m}"
    );

    assert_eq!(verdict(&r, "pause-image"), "OK");
    assert!(
        message(&r, "pause-image").contains("cri-dockerd-test/pause:latest is present (sha256:")
    );

    assert_eq!(verdict(&r, "cri-socket"), "WARN");
    let m = message(&r, "cri-socket");
    assert!(m.contains("cri.sock does not exist"), "{m}");
    assert!(
        m.contains("systemctl enable --now cri-docker.socket"),
        "{m}"
    );

    assert_eq!(verdict(&r, "other-cri-sockets"), "WARN");
    let m = message(&r, "other-cri-sockets");
    assert!(m.contains("containerd.sock"), "{m}");
    assert!(
        m.contains(&format!(
            "--cri-socket unix://{}",
            d.join("cri.sock").display()
        )),
        "{m}"
    );

    assert_eq!(verdict(&r, "cri-versions"), "WARN");
    assert!(message(&r, "cri-versions").contains("not running"));

    // The same findings as text, one line each.
    let (code, text, _) = doctor(&host_flags(d, &[]));
    assert_eq!(code, 1);
    assert!(text.contains("FAIL  cgroup-driver"), "{text}");
    assert!(text.contains("OK    docker"), "{text}");
    assert!(text.contains("WARN  other-cri-sockets"), "{text}");
    assert!(text.trim_end().ends_with("doctor: FAIL"), "{text}");
}

#[tokio::test]
async fn healthy_node_with_a_running_daemon_is_all_ok() {
    require_docker!();
    let daemon = common::Daemon::start(&["--network-plugin=cni"]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("kubelet.yaml"),
        format!(
            "kind: KubeletConfiguration\ncgroupDriver: {}\n",
            docker_cgroup_driver()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("bin")).unwrap();
    for p in ["bridge", "portmap"] {
        write_exe(&d.join("bin").join(p));
    }
    std::fs::create_dir_all(daemon.cni_conf_dir()).unwrap();
    std::fs::write(
        daemon.cni_conf_dir().join("10-pods.conflist"),
        r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
    )
    .unwrap();
    // The daemon's own flags, plus doctor's paths (no other CRI socket exists there).
    let mut args = daemon.args.clone();
    args.push(format!("--cni-bin-dir={}", d.join("bin").display()));
    args.push(format!(
        "--kubelet-config={}",
        d.join("kubelet.yaml").display()
    ));
    args.push(format!(
        "--other-cri-sockets={}",
        d.join("crio.sock").display()
    ));
    let (code, r) = tokio::task::spawn_blocking(move || doctor_json(&args))
        .await
        .unwrap();
    assert_eq!(r["verdict"], "OK", "{r:#}");
    assert_eq!(code, 0);
    for name in [
        "docker",
        "cgroup-driver",
        "network-plugin",
        "pause-image",
        "cri-socket",
        "other-cri-sockets",
        "cri-versions",
    ] {
        assert_eq!(verdict(&r, name), "OK", "{name}: {}", message(&r, name));
    }
    let m = message(&r, "network-plugin");
    assert!(m.contains("uses plugins bridge, portmap found in"), "{m}");
    let m = message(&r, "cri-socket");
    assert!(m.contains("is a socket with a listener (mode 0660"), "{m}");
    let m = message(&r, "cri-versions");
    assert!(m.contains("serves CRI v1 (docker "), "{m}");
    assert!(
        m.contains("and v1alpha2 (v1alpha2)") || m.contains("and v1alpha2 ("),
        "{m}"
    );
    let m = message(&r, "other-cri-sockets");
    assert!(m.starts_with("no other CRI socket found"), "{m}");
}

#[test]
fn dockerd_unreachable_fails_and_skips_docker_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = format!(
        "--docker-endpoint=unix://{}",
        d.join("no-docker.sock").display()
    );
    let (code, r) = doctor_json(&host_flags(d, &[&bad, "--network-plugin=no-op"]));
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(verdict(&r, "docker"), "FAIL");
    let m = message(&r, "docker");
    assert!(m.contains("dockerd is not reachable at unix://"), "{m}");
    assert!(m.contains("systemctl enable --now docker"), "{m}");
    for name in ["cgroup-driver", "pause-image"] {
        assert_eq!(verdict(&r, name), "WARN");
        assert!(message(&r, name).contains("not checked: dockerd is not reachable"));
    }
    assert_eq!(verdict(&r, "network-plugin"), "WARN");
    assert!(message(&r, "network-plugin").contains("172.17"));
    // No other CRI socket at the candidate path.
    assert_eq!(verdict(&r, "other-cri-sockets"), "OK");
}

#[test]
fn socket_states_and_cni_without_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = format!(
        "--docker-endpoint=unix://{}",
        d.join("no-docker.sock").display()
    );

    // A regular file where the socket should be.
    std::fs::write(d.join("cri.sock"), "").unwrap();
    let (_, r) = doctor_json(&host_flags(d, &[&bad]));
    assert_eq!(verdict(&r, "cri-socket"), "FAIL");
    let m = message(&r, "cri-socket");
    assert!(m.contains("exists but is not a socket"), "{m}");
    assert!(m.contains("remove "), "{m}");
    // --network-plugin=cni (the default) and no config dir at all.
    assert_eq!(verdict(&r, "network-plugin"), "WARN");
    let m = message(&r, "network-plugin");
    assert!(m.contains("no valid CNI config in"), "{m}");
    assert!(m.contains("install a CNI"), "{m}");

    // A stale socket: bound, then the listener went away.
    std::fs::remove_file(d.join("cri.sock")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(d.join("cri.sock")).unwrap());
    let (_, r) = doctor_json(&host_flags(d, &[&bad]));
    assert_eq!(verdict(&r, "cri-socket"), "WARN");
    let m = message(&r, "cri-socket");
    assert!(m.contains("nothing is listening: a stale socket"), "{m}");
    assert_eq!(verdict(&r, "cri-versions"), "WARN");

    // Someone else listening there, world-writable: reported, and versions fail (not CRI).
    std::fs::remove_file(d.join("cri.sock")).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(d.join("cri.sock")).unwrap();
    std::fs::set_permissions(d.join("cri.sock"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_, r) = doctor_json(&host_flags(d, &[&bad]));
    assert_eq!(verdict(&r, "cri-socket"), "WARN");
    assert!(message(&r, "cri-socket").contains("world-writable (mode 0777"));
    drop(listener);

    // kubenet needs bridge, host-local, loopback.
    std::fs::create_dir_all(d.join("bin")).unwrap();
    write_exe(&d.join("bin/bridge"));
    let (_, r) = doctor_json(&host_flags(d, &[&bad, "--network-plugin=kubenet"]));
    assert_eq!(verdict(&r, "network-plugin"), "FAIL");
    assert!(message(&r, "network-plugin").contains("missing from"));
    assert!(message(&r, "network-plugin").contains("host-local, loopback"));
}

#[test]
fn bad_output_flag_and_bad_daemon_flag_are_usage_errors() {
    let (code, _, err) = doctor(&["--output=yaml".to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("--output"), "{err}");
    let (code, _, err) = doctor(&["--log-level=loud".to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("--log-level"), "{err}");
    let (code, out, _) = doctor(&["--help".to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("--kubelet-config"), "{out}");
    assert!(out.contains("--network-plugin"), "{out}");
}
