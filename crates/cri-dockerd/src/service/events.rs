//! CRI container events (`GetContainerEvents`, kubelet's evented PLEG): every transition the
//! container view observes becomes a `ContainerEventResponse` carrying the pod's sandbox status
//! and the statuses of its containers, published once to all subscribers.
//!
//! Sandboxes get events too, with `container_id` = the sandbox ID (as containerd sends them).
//! Each subscriber has a bounded queue ([`SUBSCRIBER_QUEUE`]); one that falls behind loses its
//! stream with an error (and must resubscribe and relist) instead of growing memory.

use std::sync::Arc;

use futures_util::Stream;
use k8s_cri::v1 as cri;
use tokio::sync::{broadcast, mpsc};

use super::labels::{self, SANDBOX_ID, TYPE_CONTAINER};
use super::state::SandboxEntry;
use super::view::{Change, Transition};
use super::{Error, Result, Runtime};

/// Events a subscriber may have pending before it is cut off.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// The broadcast side of the container events.
pub struct EventHub {
    tx: broadcast::Sender<cri::ContainerEventResponse>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(SUBSCRIBER_QUEUE).0,
        }
    }
}

fn event_type(c: Change) -> cri::ContainerEventType {
    match c {
        Change::Created => cri::ContainerEventType::ContainerCreatedEvent,
        Change::Started => cri::ContainerEventType::ContainerStartedEvent,
        Change::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        Change::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A sandbox status from what is still known once Docker has nothing (a deleted pod): kubelet
/// needs at least the pod's metadata in every event.
fn fallback_sandbox_status(entry: &SandboxEntry, t: &Transition) -> cri::PodSandboxStatus {
    let mut metadata = entry.metadata();
    if metadata.uid.is_empty() {
        // Neither the pause container nor the checkpoint is left: the container's own labels.
        let l = &t.last.labels;
        let get = |k: &str| l.get(k).cloned().unwrap_or_default();
        metadata.name = get(labels::POD_NAME);
        metadata.namespace = get(labels::POD_NAMESPACE);
        metadata.uid = get(labels::POD_UID);
    }
    let (labels, annotations) = entry.labels();
    cri::PodSandboxStatus {
        id: entry.id.clone(),
        metadata: Some(metadata),
        state: cri::PodSandboxState::SandboxNotready as i32,
        created_at: entry.created_at(),
        labels,
        annotations,
        runtime_handler: entry.runtime_handler(),
        ..Default::default()
    }
}

impl Runtime {
    /// A new subscriber to the container events.
    pub fn subscribe_container_events(&self) -> broadcast::Receiver<cri::ContainerEventResponse> {
        self.events.tx.subscribe()
    }

    /// The container events for one new subscriber, in order. The stream ends with
    /// `Unavailable` if the subscriber falls [`SUBSCRIBER_QUEUE`] events behind: it must then
    /// resubscribe and relist, as after any stream error.
    pub fn container_events(
        &self,
    ) -> impl Stream<Item = Result<cri::ContainerEventResponse>> + Send + 'static {
        tracing::info!("container events subscriber connected");
        let rx = self.subscribe_container_events();
        futures_util::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(ev) => Some((Ok(ev), Some(rx))),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let e = Error::Unavailable(format!(
                        "container events subscriber fell behind: {n} events dropped; resubscribe and relist"
                    ));
                    Some((Err(e), None))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }

    /// The CRI event for a transition, with the pod's current statuses.
    async fn container_event(&self, t: &Transition) -> cri::ContainerEventResponse {
        let sandbox_status = match self
            .pod_sandbox_status(&cri::PodSandboxStatusRequest {
                pod_sandbox_id: t.sandbox_id.clone(),
                verbose: false,
            })
            .await
        {
            Ok(r) => r.status,
            Err(e) => {
                if !matches!(e, Error::NotFound(_)) {
                    tracing::debug!(pod_sandbox_id = %t.sandbox_id, "sandbox status for an event: {e}");
                }
                None
            }
        };
        let sandbox_status = sandbox_status.unwrap_or_else(|| {
            let container = if t.is_sandbox {
                Some(t.last.clone())
            } else {
                self.view.get(&t.sandbox_id)
            };
            let entry = SandboxEntry {
                id: t.sandbox_id.clone(),
                container: container.map(|mut c| {
                    c.state = "exited".into();
                    c
                }),
                checkpoint: self.checkpoints.read(&t.sandbox_id).ok().flatten(),
            };
            fallback_sandbox_status(&entry, t)
        });
        let mut containers_statuses = Vec::new();
        match self.list_of_type(TYPE_CONTAINER).await {
            Ok(list) => {
                for c in list
                    .iter()
                    .filter(|c| c.labels.get(SANDBOX_ID) == Some(&t.sandbox_id))
                {
                    match self
                        .container_status(&cri::ContainerStatusRequest {
                            container_id: c.id.clone(),
                            verbose: false,
                        })
                        .await
                    {
                        Ok(r) => containers_statuses.extend(r.status),
                        Err(Error::NotFound(_)) => {}
                        Err(e) => {
                            tracing::debug!(container_id = %c.id, "container status for an event: {e}")
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("listing containers for an event: {e}"),
        }
        cri::ContainerEventResponse {
            container_id: t.id.clone(),
            container_event_type: event_type(t.change) as i32,
            created_at: now_nanos(),
            pod_sandbox_status: Some(sandbox_status),
            containers_statuses,
        }
    }

    /// Turn the view's transitions into CRI events for the subscribers (no work while there
    /// are none). Call once at start-up.
    pub(crate) fn spawn_event_publisher(self: &Arc<Self>) {
        let Some(rx) = self.view.take_transitions() else {
            return;
        };
        let rt = self.clone();
        tokio::spawn(publish(rt, rx));
    }
}

async fn publish(rt: Arc<Runtime>, mut rx: mpsc::UnboundedReceiver<Transition>) {
    while let Some(t) = rx.recv().await {
        if rt.events.tx.receiver_count() == 0 {
            continue;
        }
        let ev = rt.container_event(&t).await;
        tracing::debug!(container_id = %ev.container_id, event = ?t.change, "container event");
        // Fails only when every subscriber left meanwhile.
        let _ = rt.events.tx.send(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ContainerSummary;
    use std::collections::HashMap;

    #[test]
    fn deleted_pod_keeps_its_metadata() {
        let last = ContainerSummary {
            id: "c1".into(),
            labels: HashMap::from([
                (labels::POD_NAME.to_string(), "web".to_string()),
                (labels::POD_NAMESPACE.to_string(), "prod".to_string()),
                (labels::POD_UID.to_string(), "u-1".to_string()),
            ]),
            ..Default::default()
        };
        let t = Transition {
            change: Change::Deleted,
            id: "c1".into(),
            sandbox_id: "sb".into(),
            is_sandbox: false,
            last,
        };
        let entry = SandboxEntry {
            id: "sb".into(),
            container: None,
            checkpoint: None,
        };
        let s = fallback_sandbox_status(&entry, &t);
        assert_eq!(s.id, "sb");
        let md = s.metadata.unwrap();
        assert_eq!(
            (md.name.as_str(), md.namespace.as_str(), md.uid.as_str()),
            ("web", "prod", "u-1")
        );
        assert_eq!(s.state, cri::PodSandboxState::SandboxNotready as i32);
    }

    #[test]
    fn changes_map_to_cri_event_types() {
        use cri::ContainerEventType as E;
        assert_eq!(event_type(Change::Created), E::ContainerCreatedEvent);
        assert_eq!(event_type(Change::Started), E::ContainerStartedEvent);
        assert_eq!(event_type(Change::Stopped), E::ContainerStoppedEvent);
        assert_eq!(event_type(Change::Deleted), E::ContainerDeletedEvent);
    }
}
