//! GetContainerEvents and the event-fed List view against the real dockerd: events in order
//! for containers and sandboxes, several subscribers, List consistent right after each
//! lifecycle RPC, a container removed behind our back, and a dockerd "restart" (a proxy in
//! front of the real socket that drops every connection) with a container stopped meanwhile.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Daemon;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{AbortHandle, JoinHandle};
use tonic::Code;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;
type Events = tonic::Streaming<cri::ContainerEventResponse>;

const BUSYBOX: &str = "cri-dockerd-test/busybox:latest";
use cri::ContainerEventType as E;

fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n & 0xffff_ffff, std::process::id())
}

/// Removes every container of a pod uid on drop, also when the test failed.
struct PodCleanup(String);

impl Drop for PodCleanup {
    fn drop(&mut self) {
        let (_, ids) = common::docker_try(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.kubernetes.pod.uid={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            let _ = common::docker_try(&["rm", "-f", id]);
        }
    }
}

struct Pod {
    id: String,
    uid: String,
    config: cri::PodSandboxConfig,
    _cleanup: PodCleanup,
}

async fn pod(rt: &mut Rt, d: &Daemon) -> Pod {
    let uid = unique();
    let cleanup = PodCleanup(uid.clone());
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("evpod-{uid}"),
            namespace: "evtest".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        log_directory: d
            .dir
            .path()
            .join("pods")
            .join(&uid)
            .to_string_lossy()
            .into_owned(),
        ..Default::default()
    };
    let id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    Pod {
        id,
        uid,
        config,
        _cleanup: cleanup,
    }
}

async fn create(rt: &mut Rt, p: &Pod, name: &str) -> String {
    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec![
            "sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; sleep 300 & wait".into(),
        ],
        ..Default::default()
    };
    rt.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: p.id.clone(),
        config: Some(config),
        sandbox_config: Some(p.config.clone()),
    })
    .await
    .expect("CreateContainer")
    .into_inner()
    .container_id
}

async fn subscribe(rt: &mut Rt) -> Sub {
    Sub {
        stream: rt
            .get_container_events(cri::GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner(),
        seen: Vec::new(),
    }
}

/// A subscription and every event it has delivered so far.
struct Sub {
    stream: Events,
    seen: Vec<cri::ContainerEventResponse>,
}

/// Read events until `id` has had an event of type `last`; returns all events of `id` so far
/// (and checks that every event carries the pod's metadata).
async fn events_until(
    s: &mut Sub,
    id: &str,
    last: E,
    uid: &str,
) -> Vec<cri::ContainerEventResponse> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let of_id = |seen: &[cri::ContainerEventResponse]| -> Vec<cri::ContainerEventResponse> {
        seen.iter()
            .filter(|e| e.container_id == id)
            .cloned()
            .collect()
    };
    loop {
        let mine = of_id(&s.seen);
        if mine.iter().any(|e| e.container_event_type == last as i32) {
            return mine;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, s.stream.message())
            .await
            .unwrap_or_else(|_| panic!("no {last:?} for {id} in time; got {mine:#?}"))
            .expect("event stream")
            .expect("event stream open");
        if ev.container_id == id {
            let md = ev
                .pod_sandbox_status
                .as_ref()
                .and_then(|s| s.metadata.as_ref())
                .expect("every event has the pod sandbox status with metadata");
            assert_eq!(md.uid, uid, "{ev:?}");
        }
        s.seen.push(ev);
    }
}

fn types(evs: &[cri::ContainerEventResponse]) -> Vec<E> {
    evs.iter()
        .map(|e| E::try_from(e.container_event_type).unwrap())
        .collect()
}

async fn list_state(rt: &mut Rt, id: &str) -> Option<cri::ContainerState> {
    rt.list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| cri::ContainerState::try_from(c.state).unwrap())
}

async fn sandbox_listed(rt: &mut Rt, id: &str) -> Option<cri::PodSandboxState> {
    rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
        .into_iter()
        .find(|s| s.id == id)
        .map(|s| cri::PodSandboxState::try_from(s.state).unwrap())
}

#[tokio::test]
async fn lifecycle_events_in_order_for_two_subscribers_and_lists_stay_consistent() {
    require_docker!();
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    let mut a = subscribe(&mut rt).await;
    let mut b = subscribe(&mut rt).await;

    let p = pod(&mut rt, &d).await;
    assert_eq!(
        sandbox_listed(&mut rt, &p.id).await,
        Some(cri::PodSandboxState::SandboxReady),
        "listed READY right after RunPodSandbox"
    );
    let c = create(&mut rt, &p, "app").await;
    assert_eq!(
        list_state(&mut rt, &c).await,
        Some(cri::ContainerState::ContainerCreated)
    );
    rt.start_container(cri::StartContainerRequest {
        container_id: c.clone(),
    })
    .await
    .expect("StartContainer");
    assert_eq!(
        list_state(&mut rt, &c).await,
        Some(cri::ContainerState::ContainerRunning)
    );
    // Statuses are taken when the event is sent: wait for it while the container runs.
    let a_seen = events_until(&mut a, &c, E::ContainerStartedEvent, &p.uid).await;
    let started = a_seen.last().unwrap();
    let st = started
        .containers_statuses
        .iter()
        .find(|s| s.id == c)
        .unwrap_or_else(|| {
            panic!("the pod's container statuses include the container: {started:?}")
        });
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(
        started.pod_sandbox_status.as_ref().unwrap().state,
        cri::PodSandboxState::SandboxReady as i32
    );
    rt.stop_container(cri::StopContainerRequest {
        container_id: c.clone(),
        timeout: 10,
    })
    .await
    .expect("StopContainer");
    assert_eq!(
        list_state(&mut rt, &c).await,
        Some(cri::ContainerState::ContainerExited)
    );
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: c.clone(),
    })
    .await
    .expect("RemoveContainer");
    assert_eq!(list_state(&mut rt, &c).await, None);

    let a_seen = events_until(&mut a, &c, E::ContainerDeletedEvent, &p.uid).await;
    let b_seen = events_until(&mut b, &c, E::ContainerDeletedEvent, &p.uid).await;
    for evs in [a_seen, b_seen] {
        assert_eq!(
            types(&evs),
            vec![
                E::ContainerCreatedEvent,
                E::ContainerStartedEvent,
                E::ContainerStoppedEvent,
                E::ContainerDeletedEvent
            ]
        );
        for e in &evs {
            assert_eq!(
                e.pod_sandbox_status.as_ref().unwrap().id,
                p.id,
                "the event names the container's pod"
            );
            assert!(e.created_at > 0);
        }
    }

    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: p.id.clone(),
    })
    .await
    .expect("StopPodSandbox");
    assert_eq!(
        sandbox_listed(&mut rt, &p.id).await,
        Some(cri::PodSandboxState::SandboxNotready)
    );
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: p.id.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    assert_eq!(sandbox_listed(&mut rt, &p.id).await, None);
    // The sandbox has its own events, with container_id = sandbox id (as containerd sends).
    let evs = events_until(&mut a, &p.id, E::ContainerDeletedEvent, &p.uid).await;
    assert_eq!(
        types(&evs),
        vec![
            E::ContainerCreatedEvent,
            E::ContainerStartedEvent,
            E::ContainerStoppedEvent,
            E::ContainerDeletedEvent
        ]
    );
}

#[tokio::test]
async fn container_removed_behind_our_back_leaves_the_list() {
    require_docker!();
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    let mut ev = subscribe(&mut rt).await;
    let p = pod(&mut rt, &d).await;
    let c = create(&mut rt, &p, "victim").await;
    rt.start_container(cri::StartContainerRequest {
        container_id: c.clone(),
    })
    .await
    .expect("StartContainer");
    assert!(list_state(&mut rt, &c).await.is_some());

    common::docker(&["rm", "-f", &c]);
    let started = Instant::now();
    while list_state(&mut rt, &c).await.is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still listed 5 s after docker rm -f"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let evs = events_until(&mut ev, &c, E::ContainerDeletedEvent, &p.uid).await;
    assert_eq!(
        types(&evs),
        vec![
            E::ContainerCreatedEvent,
            E::ContainerStartedEvent,
            E::ContainerStoppedEvent,
            E::ContainerDeletedEvent
        ]
    );
}

/// A proxy from `path` to the real docker socket; stopping it also cuts every open connection,
/// as a dockerd restart does.
struct Proxy {
    path: PathBuf,
    task: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    fn new(path: &Path) -> Proxy {
        Proxy {
            path: path.to_path_buf(),
            task: None,
            conns: Arc::default(),
        }
    }

    fn start(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind proxy");
        let upstream = common::docker_endpoint()
            .trim_start_matches("unix://")
            .to_string();
        let conns = self.conns.clone();
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    break;
                };
                let upstream = upstream.clone();
                let t = tokio::spawn(async move {
                    if let Ok(mut up) = UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                conns.lock().unwrap().push(t.abort_handle());
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn subscriber_survives_a_dockerd_restart_and_sees_what_happened_meanwhile() {
    require_docker!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let mut proxy = Proxy::new(&sock);
    proxy.start();
    let d = Daemon::start(&[
        "--network-plugin=no-op",
        &format!("--docker-endpoint=unix://{}", sock.display()),
    ])
    .await;
    let mut rt = d.runtime().await;
    let mut ev = subscribe(&mut rt).await;
    let p = pod(&mut rt, &d).await;
    let c = create(&mut rt, &p, "survivor").await;
    rt.start_container(cri::StartContainerRequest {
        container_id: c.clone(),
    })
    .await
    .expect("StartContainer");
    let evs = events_until(&mut ev, &c, E::ContainerStartedEvent, &p.uid).await;
    assert_eq!(
        types(&evs),
        vec![E::ContainerCreatedEvent, E::ContainerStartedEvent]
    );

    // dockerd "goes away": List must not serve the last-known view as if all were fine.
    proxy.stop();
    let started = Instant::now();
    loop {
        match rt
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
        {
            Err(e) if e.code() == Code::Unavailable => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(5),
                "List kept answering {other:?} with dockerd unreachable"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Meanwhile the container is stopped behind our back.
    common::docker(&["stop", "-t", "0", &c]);

    proxy.start();
    let evs = events_until(&mut ev, &c, E::ContainerStoppedEvent, &p.uid).await;
    assert_eq!(
        types(&evs),
        vec![
            E::ContainerCreatedEvent,
            E::ContainerStartedEvent,
            E::ContainerStoppedEvent
        ],
        "the stop missed while disconnected is reported once, after the resync"
    );
    assert_eq!(
        list_state(&mut rt, &c).await,
        Some(cri::ContainerState::ContainerExited)
    );

    // And the live stream works again: a new container's events arrive.
    let c2 = create(&mut rt, &p, "after").await;
    let evs = events_until(&mut ev, &c2, E::ContainerCreatedEvent, &p.uid).await;
    assert_eq!(types(&evs), vec![E::ContainerCreatedEvent]);
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: p.id.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    let evs = events_until(&mut ev, &c2, E::ContainerDeletedEvent, &p.uid).await;
    assert_eq!(
        types(&evs),
        vec![E::ContainerCreatedEvent, E::ContainerDeletedEvent]
    );
}
