//! The read path: what sandboxes and containers exist, from the event-fed container view
//! (`view.rs`; one Docker list when the view is not served) plus the checkpoints. List and
//! Status calls go through here.

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1 as cri;

use super::labels::{self, TYPE_CONTAINER, TYPE_SANDBOX};
use super::{Error, Result, Runtime, naming};
use crate::docker::ContainerSummary;
use crate::store::SandboxCheckpoint;

/// A sandbox as listed: its pause container, its checkpoint, or both.
#[derive(Debug, Clone)]
pub struct SandboxEntry {
    pub id: String,
    pub container: Option<ContainerSummary>,
    pub checkpoint: Option<SandboxCheckpoint>,
}

impl SandboxEntry {
    /// READY while the pause container runs.
    pub fn state(&self) -> cri::PodSandboxState {
        match &self.container {
            Some(c) if c.state == "running" => cri::PodSandboxState::SandboxReady,
            _ => cri::PodSandboxState::SandboxNotready,
        }
    }

    /// Metadata from the container name, else the checkpoint.
    pub fn metadata(&self) -> cri::PodSandboxMetadata {
        if let Some(md) = self
            .container
            .as_ref()
            .and_then(|c| naming::parse_sandbox_name(&c.name))
        {
            return md;
        }
        let cp = self.checkpoint.clone().unwrap_or_default();
        cri::PodSandboxMetadata {
            name: cp.name,
            namespace: cp.namespace,
            uid: cp.uid,
            attempt: cp.attempt,
        }
    }

    /// CRI labels and annotations.
    pub fn labels(&self) -> (HashMap<String, String>, HashMap<String, String>) {
        match (&self.container, &self.checkpoint) {
            (Some(c), _) => labels::extract(&c.labels),
            (None, Some(cp)) => (to_hash(&cp.labels), to_hash(&cp.annotations)),
            (None, None) => Default::default(),
        }
    }

    /// Creation time in Unix nanoseconds (the checkpoint's, which is precise; else Docker's).
    pub fn created_at(&self) -> i64 {
        match (&self.checkpoint, &self.container) {
            (Some(cp), _) if cp.created_at != 0 => cp.created_at,
            (_, Some(c)) => c.created.saturating_mul(1_000_000_000),
            _ => 0,
        }
    }

    pub fn runtime_handler(&self) -> String {
        self.checkpoint
            .as_ref()
            .map(|c| c.runtime_handler.clone())
            .unwrap_or_default()
    }

    pub fn to_cri(&self) -> cri::PodSandbox {
        let (labels, annotations) = self.labels();
        cri::PodSandbox {
            id: self.id.clone(),
            metadata: Some(self.metadata()),
            state: self.state() as i32,
            created_at: self.created_at(),
            labels,
            annotations,
            runtime_handler: self.runtime_handler(),
        }
    }
}

fn to_hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// CRI state of a container from Docker's state word.
pub fn container_state(docker_state: &str) -> cri::ContainerState {
    match docker_state {
        "created" => cri::ContainerState::ContainerCreated,
        "running" | "paused" | "restarting" => cri::ContainerState::ContainerRunning,
        "exited" | "dead" => cri::ContainerState::ContainerExited,
        _ => cri::ContainerState::ContainerUnknown,
    }
}

/// A container's CRI metadata: from its Docker name, else from its name label.
pub fn container_metadata(c: &ContainerSummary) -> Option<cri::ContainerMetadata> {
    naming::parse_container_name(&c.name).or_else(|| {
        c.labels
            .get(labels::CONTAINER_NAME)
            .map(|n| cri::ContainerMetadata {
                name: n.clone(),
                attempt: 0,
            })
    })
}

/// A listed container in CRI terms.
pub fn container_to_cri(c: &ContainerSummary) -> cri::Container {
    let (labels, annotations) = labels::extract(&c.labels);
    let metadata = container_metadata(c);
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c
            .labels
            .get(labels::SANDBOX_ID)
            .cloned()
            .unwrap_or_default(),
        metadata,
        image: Some(cri::ImageSpec {
            image: c.image.clone(),
            ..Default::default()
        }),
        image_ref: c.image_id.clone(),
        image_id: c.image_id.clone(),
        state: container_state(&c.state) as i32,
        created_at: c.created.saturating_mul(1_000_000_000),
        labels,
        annotations,
    }
}

/// Whether `id` is `want` or starts with it (an empty `want` matches everything).
pub fn id_matches(id: &str, want: &str) -> bool {
    want.is_empty() || id.starts_with(want)
}

impl Runtime {
    /// Every sandbox: pause containers (from the view) joined with the checkpoints.
    pub(crate) async fn list_sandbox_entries(&self) -> Result<Vec<SandboxEntry>> {
        let containers = self.list_of_type(TYPE_SANDBOX).await?;
        let mut checkpoints: HashMap<String, SandboxCheckpoint> = self
            .checkpoints
            .list()
            .map_err(|e| Error::Internal(e.to_string()))?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut out: Vec<SandboxEntry> = containers
            .into_iter()
            .map(|c| SandboxEntry {
                id: c.id.clone(),
                checkpoint: checkpoints.remove(&c.id),
                container: Some(c),
            })
            .collect();
        let mut rest: Vec<SandboxEntry> = checkpoints
            .into_values()
            .map(|cp| SandboxEntry {
                id: cp.id.clone(),
                container: None,
                checkpoint: Some(cp),
            })
            .collect();
        rest.sort_by(|a, b| a.id.cmp(&b.id));
        out.extend(rest);
        Ok(out)
    }

    /// The sandbox `id` names (full ID or unique prefix); `None` when there is none.
    pub(crate) async fn find_sandbox(&self, id: &str) -> Result<Option<SandboxEntry>> {
        if id.is_empty() {
            return Err(Error::InvalidArgument("pod_sandbox_id is required".into()));
        }
        // A full ID (what kubelet sends) from the view and the checkpoint index directly.
        if let Some(container) = self.view.list_one(id, TYPE_SANDBOX) {
            return Ok(Some(SandboxEntry {
                id: id.to_string(),
                container: Some(container),
                checkpoint: self.checkpoint(id)?,
            }));
        }
        let all = self.list_sandbox_entries().await?;
        if let Some(e) = all.iter().find(|e| e.id == id) {
            return Ok(Some(e.clone()));
        }
        let mut matches = all.into_iter().filter(|e| e.id.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(e), None) => Ok(Some(e)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
                "pod sandbox ID prefix {id:?} is ambiguous"
            ))),
        }
    }

    /// The readable checkpoint of sandbox `id` (an unreadable one counts as none, as in
    /// lists); an error only when the checkpoint directory cannot be read.
    fn checkpoint(&self, id: &str) -> Result<Option<SandboxCheckpoint>> {
        match self.checkpoints.read(id) {
            Ok(cp) => Ok(cp),
            Err(crate::store::Error::Corrupt { .. }) => Ok(None),
            Err(e) => Err(Error::Internal(e.to_string())),
        }
    }

    /// Every CRI container (from the view).
    pub(crate) async fn list_container_summaries(&self) -> Result<Vec<ContainerSummary>> {
        self.list_of_type(TYPE_CONTAINER).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::labels::CONTAINER_TYPE;

    fn summary(id: &str, state: &str, sandbox: &str, labels: &[(&str, &str)]) -> ContainerSummary {
        let mut l: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert(CONTAINER_TYPE.into(), TYPE_CONTAINER.into());
        l.insert(labels::SANDBOX_ID.into(), sandbox.into());
        ContainerSummary {
            id: id.into(),
            name: "k8s_app_p_ns_u_1".into(),
            image: "busybox".into(),
            image_id: "sha256:ab".into(),
            labels: l,
            state: state.into(),
            created: 5,
        }
    }

    #[test]
    fn docker_states_map_to_cri() {
        use cri::ContainerState as S;
        for (d, s) in [
            ("created", S::ContainerCreated),
            ("running", S::ContainerRunning),
            ("paused", S::ContainerRunning),
            ("exited", S::ContainerExited),
            ("dead", S::ContainerExited),
            ("removing", S::ContainerUnknown),
            ("", S::ContainerUnknown),
        ] {
            assert_eq!(container_state(d), s, "{d}");
        }
    }

    #[test]
    fn container_summary_to_cri() {
        let c = container_to_cri(&summary(
            "abc",
            "exited",
            "sb1",
            &[("a", "1"), ("annotation.n", "2")],
        ));
        assert_eq!(c.id, "abc");
        assert_eq!(c.pod_sandbox_id, "sb1");
        assert_eq!(
            c.metadata.unwrap(),
            cri::ContainerMetadata {
                name: "app".into(),
                attempt: 1
            }
        );
        assert_eq!(c.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!(c.created_at, 5_000_000_000);
        assert_eq!(c.image_ref, "sha256:ab");
        assert_eq!(
            c.labels,
            HashMap::from([("a".to_string(), "1".to_string())])
        );
        assert_eq!(
            c.annotations,
            HashMap::from([("n".to_string(), "2".to_string())])
        );
    }

    #[test]
    fn sandbox_entry_from_checkpoint_only_is_notready() {
        let e = SandboxEntry {
            id: "x".into(),
            container: None,
            checkpoint: Some(SandboxCheckpoint {
                id: "x".into(),
                name: "p".into(),
                namespace: "ns".into(),
                uid: "u".into(),
                attempt: 2,
                created_at: 7,
                labels: BTreeMap::from([("l".into(), "v".into())]),
                ..Default::default()
            }),
        };
        let s = e.to_cri();
        assert_eq!(s.state, cri::PodSandboxState::SandboxNotready as i32);
        assert_eq!(s.metadata.unwrap().attempt, 2);
        assert_eq!(s.created_at, 7);
        assert_eq!(s.labels["l"], "v");
    }

    #[test]
    fn id_prefixes() {
        assert!(id_matches("abcdef", ""));
        assert!(id_matches("abcdef", "abc"));
        assert!(id_matches("abcdef", "abcdef"));
        assert!(!id_matches("abcdef", "abd"));
    }
}
