//! Docker's event stream (`GET /events`), reduced to the container lifecycle events we act on.

use std::collections::HashMap;
use std::pin::Pin;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};

use super::client::DockerClient;
use super::error::{Error, Result};

/// What happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerAction {
    Create,
    Start,
    /// The main process exited (also after a kill or stop).
    Die,
    /// Removed.
    Destroy,
    Pause,
    Unpause,
    Oom,
    Rename,
    /// Any other container action (`kill`, `stop`, `update`, …).
    Other(String),
}

impl ContainerAction {
    /// From Docker's action word (`exec_*` and `health_status: …` land in `Other`).
    pub fn parse(action: &str) -> ContainerAction {
        match action {
            "create" => ContainerAction::Create,
            "start" => ContainerAction::Start,
            "die" => ContainerAction::Die,
            "destroy" => ContainerAction::Destroy,
            "pause" => ContainerAction::Pause,
            "unpause" => ContainerAction::Unpause,
            "oom" => ContainerAction::Oom,
            "rename" => ContainerAction::Rename,
            other => ContainerAction::Other(other.to_string()),
        }
    }
}

/// One container event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    pub action: ContainerAction,
    /// Unix nanoseconds, Docker's clock.
    pub time_nano: i64,
    /// The container's labels plus Docker's own attributes (`name`, `image`, `exitCode`, …).
    pub attributes: HashMap<String, String>,
}

/// A live stream of container events; it ends (or yields an error) when the connection to
/// dockerd is lost.
pub type ContainerEventStream = Pin<Box<dyn Stream<Item = Result<ContainerEvent>> + Send>>;

/// Docker's event stream.
#[async_trait]
pub trait EventsApi {
    /// Container events carrying the label `label` (a key, or `key=value`), from Unix time
    /// `since_secs` on (Docker replays what it still holds in memory), then live.
    async fn container_events(&self, label: &str, since_secs: i64) -> Result<ContainerEventStream>;
}

/// The Docker actions the stream asks for; exec and health events are not wanted.
const ACTIONS: &[&str] = &[
    "create", "start", "die", "destroy", "pause", "unpause", "oom", "rename",
];

#[async_trait]
impl EventsApi for DockerClient {
    async fn container_events(&self, label: &str, since_secs: i64) -> Result<ContainerEventStream> {
        let docker = self.conn().await?;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![label.to_string()]),
            (
                "event".to_string(),
                ACTIONS.iter().map(|a| a.to_string()).collect(),
            ),
        ]);
        let options = bollard::query_parameters::EventsOptions {
            since: Some(since_secs.to_string()),
            until: None,
            filters: Some(filters),
        };
        let client = self.clone();
        let stream = docker
            .events(Some(options))
            .then(move |item| {
                let client = client.clone();
                async move {
                    match item {
                        Ok(m) => Ok(from_message(m)),
                        Err(e) => {
                            let e = Error::from(e);
                            if e.is_unavailable() {
                                client.forget_connection().await;
                            }
                            Err(e)
                        }
                    }
                }
            })
            .filter_map(|r| async move { r.transpose() });
        Ok(Box::pin(stream))
    }
}

fn from_message(m: bollard::models::EventMessage) -> Option<ContainerEvent> {
    let actor = m.actor?;
    let id = actor.id.filter(|i| !i.is_empty())?;
    let action = m.action.unwrap_or_default();
    Some(ContainerEvent {
        id,
        action: ContainerAction::parse(&action),
        time_nano: m
            .time_nano
            .or_else(|| m.time.map(|t| t.saturating_mul(1_000_000_000)))
            .unwrap_or(0),
        attributes: actor.attributes.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse() {
        for (word, want) in [
            ("create", ContainerAction::Create),
            ("start", ContainerAction::Start),
            ("die", ContainerAction::Die),
            ("destroy", ContainerAction::Destroy),
            ("pause", ContainerAction::Pause),
            ("unpause", ContainerAction::Unpause),
            ("oom", ContainerAction::Oom),
            ("rename", ContainerAction::Rename),
            (
                "exec_start: sh",
                ContainerAction::Other("exec_start: sh".into()),
            ),
        ] {
            assert_eq!(ContainerAction::parse(word), want, "{word}");
        }
    }

    #[test]
    fn message_maps_to_event() {
        let m = bollard::models::EventMessage {
            action: Some("die".into()),
            actor: Some(bollard::models::EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([("exitCode".into(), "0".into())])),
            }),
            time: Some(2),
            time_nano: None,
            ..Default::default()
        };
        let e = from_message(m).unwrap();
        assert_eq!(e.id, "abc");
        assert_eq!(e.action, ContainerAction::Die);
        assert_eq!(e.time_nano, 2_000_000_000);
        assert_eq!(e.attributes["exitCode"], "0");
        assert!(from_message(bollard::models::EventMessage::default()).is_none());
    }
}
