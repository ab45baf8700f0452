//! GetContainerEvents and the event-fed List view against the real dockerd: events in order
//! for containers and sandboxes, several subscribers, List consistent right after each
//! lifecycle RPC, a container removed behind our back, and a dockerd "restart" (a proxy in
//! front of the real socket that drops every connection) with a container stopped meanwhile.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Daemon;
use common::pods::{
    Pod, Rt, container_config, remove_pod_sandbox, start_container, stop_pod_sandbox, wait_until,
};
use common::proxy::DockerProxy;
use k8s_cri::v1 as cri;
use tonic::Code;

type Events = tonic::Streaming<cri::ContainerEventResponse>;

use cri::ContainerEventType as E;

/// The events of a container (or sandbox) that was created, started, stopped and removed.
const FULL_LIFECYCLE: [E; 4] = [
    E::ContainerCreatedEvent,
    E::ContainerStartedEvent,
    E::ContainerStoppedEvent,
    E::ContainerDeletedEvent,
];

async fn pod(rt: &mut Rt, d: &Daemon) -> Pod {
    Pod::run(rt, d, "evpod", "evtest").await
}

async fn create(rt: &mut Rt, p: &Pod, name: &str) -> String {
    let script = "trap 'exit 0' TERM; sleep 300 & wait";
    p.create(rt, container_config(name, &["sh", "-c", script]))
        .await
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

/// A container in pod `p` that prints `run-<uuid>` every 0.1 s, a new uuid each time it starts
/// (and ends at once on SIGTERM), logging to `<name>.log` in the pod's log directory: its id
/// and that CRI log.
async fn create_run_printer(rt: &mut Rt, p: &Pod, name: &str) -> (String, PathBuf) {
    let script = "trap 'exit 0' TERM; n=$(cat /proc/sys/kernel/random/uuid); \
                  while :; do echo run-$n; sleep 0.1; done";
    let c = p
        .create(
            rt,
            cri::ContainerConfig {
                log_path: format!("{name}.log"),
                ..container_config(name, &["sh", "-c", script])
            },
        )
        .await;
    (
        c,
        Path::new(&p.config.log_directory).join(format!("{name}.log")),
    )
}

/// The runs of a [`create_run_printer`] container whose output is in its CRI log.
fn runs(log: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|w| w.starts_with("run-"))
        .map(str::to_string)
        .collect()
}

/// Wait until the CRI log holds the output of `n` runs.
async fn wait_runs(log: &Path, n: usize, what: &str) {
    wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        what,
        async || (runs(log).len() == n).then_some(()),
    )
    .await;
}

/// Wait until the log follower of `c` has ended after its exit (the daemon logs at debug
/// level in these tests).
async fn wait_log_drained(d: &Daemon, c: &str) {
    wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "the log follower ending after the stop",
        async || {
            d.log()
                .lines()
                .any(|l| l.contains("log drained") && l.contains(c))
                .then_some(())
        },
    )
    .await;
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
    start_container(&mut rt, &c).await;
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
        assert_eq!(types(&evs), FULL_LIFECYCLE);
        for e in &evs {
            assert_eq!(
                e.pod_sandbox_status.as_ref().unwrap().id,
                p.id,
                "the event names the container's pod"
            );
            assert!(e.created_at > 0);
        }
    }

    stop_pod_sandbox(&mut rt, &p.id).await;
    assert_eq!(
        sandbox_listed(&mut rt, &p.id).await,
        Some(cri::PodSandboxState::SandboxNotready)
    );
    remove_pod_sandbox(&mut rt, &p.id).await;
    assert_eq!(sandbox_listed(&mut rt, &p.id).await, None);
    // The sandbox has its own events, with container_id = sandbox id (as containerd sends).
    let evs = events_until(&mut a, &p.id, E::ContainerDeletedEvent, &p.uid).await;
    assert_eq!(types(&evs), FULL_LIFECYCLE);
}

#[tokio::test]
async fn container_removed_behind_our_back_leaves_the_list() {
    require_docker!();
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    let mut ev = subscribe(&mut rt).await;
    let p = pod(&mut rt, &d).await;
    let c = create(&mut rt, &p, "victim").await;
    start_container(&mut rt, &c).await;
    assert!(list_state(&mut rt, &c).await.is_some());

    common::docker(&["rm", "-f", &c]);
    wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "still listed 5 s after docker rm -f",
        async || list_state(&mut rt, &c).await.is_none().then_some(()),
    )
    .await;
    let evs = events_until(&mut ev, &c, E::ContainerDeletedEvent, &p.uid).await;
    assert_eq!(types(&evs), FULL_LIFECYCLE);
}

#[tokio::test]
async fn container_started_again_behind_our_back_is_listed_running_and_logged() {
    require_docker!();
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    let mut ev = subscribe(&mut rt).await;
    let p = pod(&mut rt, &d).await;
    let (c, log) = create_run_printer(&mut rt, &p, "revived").await;
    start_container(&mut rt, &c).await;
    wait_runs(&log, 1, "the first run's output in the CRI log").await;
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

    // The first run's log copy has ended (the daemon logs at debug level in these tests).
    wait_log_drained(&d, &c).await;

    // An operator's `docker start`: CRI never does this, but the list must not go on
    // claiming the container has exited while it runs.
    common::docker(&["start", &c]);
    wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "still listed exited 5 s after docker start",
        async || {
            (list_state(&mut rt, &c).await == Some(cri::ContainerState::ContainerRunning))
                .then_some(())
        },
    )
    .await;
    let status = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: c.clone(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    // Its output after the restart reaches the CRI log, and the log can be reopened.
    wait_runs(&log, 2, "the second run's output in the CRI log").await;
    rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: c.clone(),
    })
    .await
    .expect("ReopenContainerLog of the restarted container");

    common::docker(&["stop", "-t", "1", &c]);
    wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "still listed running 5 s after docker stop",
        async || {
            (list_state(&mut rt, &c).await == Some(cri::ContainerState::ContainerExited))
                .then_some(())
        },
    )
    .await;
    // Created, started, stopped by CRI; started and stopped again by hand.
    let mut evs = events_until(&mut ev, &c, E::ContainerStoppedEvent, &p.uid).await;
    while evs.len() < 5 {
        let e = tokio::time::timeout(Duration::from_secs(10), ev.stream.message())
            .await
            .unwrap_or_else(|_| panic!("no further event for {c} in time; got {evs:#?}"))
            .expect("event stream")
            .expect("event stream open");
        if e.container_id == c {
            evs.push(e.clone());
        }
        ev.seen.push(e);
    }
    assert_eq!(
        types(&evs),
        [
            E::ContainerCreatedEvent,
            E::ContainerStartedEvent,
            E::ContainerStoppedEvent,
            E::ContainerStartedEvent,
            E::ContainerStoppedEvent,
        ]
    );
    stop_pod_sandbox(&mut rt, &p.id).await;
    remove_pod_sandbox(&mut rt, &p.id).await;
}

#[tokio::test]
async fn start_container_of_an_exited_container_lists_it_running_at_once() {
    require_docker!();
    let d = Daemon::start(&["--network-plugin=no-op"]).await;
    let mut rt = d.runtime().await;
    let p = pod(&mut rt, &d).await;
    let (c, log) = create_run_printer(&mut rt, &p, "again").await;
    start_container(&mut rt, &c).await;
    wait_runs(&log, 1, "the first run's output").await;
    rt.stop_container(cri::StopContainerRequest {
        container_id: c.clone(),
        timeout: 10,
    })
    .await
    .expect("StopContainer");
    wait_log_drained(&d, &c).await;

    // CRI never restarts a container, but a client may ask (crictl start); Docker does it.
    start_container(&mut rt, &c).await;
    assert_eq!(
        list_state(&mut rt, &c).await,
        Some(cri::ContainerState::ContainerRunning),
        "a List right after StartContainer reflects it"
    );
    wait_runs(&log, 2, "the second run's output").await;
    stop_pod_sandbox(&mut rt, &p.id).await;
    remove_pod_sandbox(&mut rt, &p.id).await;
}

#[tokio::test]
async fn subscriber_survives_a_dockerd_restart_and_sees_what_happened_meanwhile() {
    require_docker!();
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::started(&dir.path().join("docker.sock"));
    let d = Daemon::start(&["--network-plugin=no-op", &proxy.endpoint_flag()]).await;
    let mut rt = d.runtime().await;
    let mut ev = subscribe(&mut rt).await;
    let p = pod(&mut rt, &d).await;
    let c = create(&mut rt, &p, "survivor").await;
    start_container(&mut rt, &c).await;
    let evs = events_until(&mut ev, &c, E::ContainerStartedEvent, &p.uid).await;
    assert_eq!(
        types(&evs),
        vec![E::ContainerCreatedEvent, E::ContainerStartedEvent]
    );

    // dockerd "goes away": List must not serve the last-known view as if all were fine.
    proxy.stop().await;
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

    // Away again while the container is started by hand, longer than the replay margin of
    // the event subscription: the start event is missed, the resync's list (confirmed by an
    // inspect) brings the container back to running.
    proxy.stop().await;
    common::docker(&["start", &c]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.start();
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "listed running after the reconnect",
        async || {
            (list_state(&mut rt, &c).await == Some(cri::ContainerState::ContainerRunning))
                .then_some(())
        },
    )
    .await;
    let evs = events_until(&mut ev, &c, E::ContainerStoppedEvent, &p.uid).await;
    assert_eq!(evs.len(), 3, "{evs:?}");
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = ev.stream.message().await.expect("stream").expect("open");
            if e.container_id == c {
                break e;
            }
        }
    })
    .await
    .expect("the missed start is reported after the resync");
    assert_eq!(again.container_event_type, E::ContainerStartedEvent as i32);

    // And the live stream works again: a new container's events arrive.
    let c2 = create(&mut rt, &p, "after").await;
    let evs = events_until(&mut ev, &c2, E::ContainerCreatedEvent, &p.uid).await;
    assert_eq!(types(&evs), vec![E::ContainerCreatedEvent]);
    remove_pod_sandbox(&mut rt, &p.id).await;
    let evs = events_until(&mut ev, &c2, E::ContainerDeletedEvent, &p.uid).await;
    assert_eq!(
        types(&evs),
        vec![E::ContainerCreatedEvent, E::ContainerDeletedEvent]
    );
}
