//! Docker labels of our containers, compatible with the Go cri-dockerd: CRI labels as labels,
//! CRI annotations as `annotation.<key>` labels, plus the `io.kubernetes.*` bookkeeping labels.
//! [`extract`] gives back the CRI labels and annotations exactly as they were given.

use std::collections::HashMap;

use super::{Error, Result};

/// Prefix of annotations stored as labels.
pub const ANNOTATION_PREFIX: &str = "annotation.";
/// `podsandbox` or `container`.
pub const CONTAINER_TYPE: &str = "io.kubernetes.docker.type";
pub const TYPE_SANDBOX: &str = "podsandbox";
pub const TYPE_CONTAINER: &str = "container";
/// The kubelet log path of a container.
pub const LOG_PATH: &str = "io.kubernetes.container.logpath";
/// The sandbox a container belongs to.
pub const SANDBOX_ID: &str = "io.kubernetes.sandbox.id";
/// kubelet's own labels (set by kubelet as CRI labels; we add them if absent).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Ours: comma-separated list of the kubelet labels above that we added (they were not CRI
/// labels), so that [`extract`] leaves them out again.
pub const ADDED: &str = "io.kubernetes.cri-dockerd.added-labels";
/// Ours: which cri-dockerd instance (root directory) created the container; used by start-up
/// recovery so that several instances on one dockerd do not clean up each other's calls.
pub const OWNER: &str = "io.kubernetes.cri-dockerd.owner";

/// Keys a CRI client may not set: they hold our bookkeeping.
const INTERNAL: [&str; 5] = [CONTAINER_TYPE, LOG_PATH, SANDBOX_ID, ADDED, OWNER];

/// The bookkeeping part of a container's labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    pub container_type: &'static str,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// `POD` for sandboxes.
    pub container_name: String,
    pub sandbox_id: Option<String>,
    pub log_path: Option<String>,
    pub owner: String,
}

/// Merge CRI `labels` and `annotations` with the bookkeeping labels. Refuses CRI labels that
/// would collide with our keys or be read back as annotations.
pub fn make(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
    b: &Bookkeeping,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::with_capacity(labels.len() + annotations.len() + 8);
    for (k, v) in labels {
        if INTERNAL.contains(&k.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "label {k:?} is reserved for cri-dockerd"
            )));
        }
        if k.starts_with(ANNOTATION_PREFIX) {
            return Err(Error::InvalidArgument(format!(
                "label {k:?}: the prefix {ANNOTATION_PREFIX:?} is reserved for annotations"
            )));
        }
        out.insert(k.clone(), v.clone());
    }
    for (k, v) in annotations {
        out.insert(format!("{ANNOTATION_PREFIX}{k}"), v.clone());
    }
    let mut added = Vec::new();
    for (key, value) in [
        (POD_NAME, &b.pod_name),
        (POD_NAMESPACE, &b.pod_namespace),
        (POD_UID, &b.pod_uid),
        (CONTAINER_NAME, &b.container_name),
    ] {
        if !out.contains_key(key) {
            out.insert(key.to_string(), value.clone());
            added.push(key);
        }
    }
    if !added.is_empty() {
        out.insert(ADDED.into(), added.join(","));
    }
    out.insert(CONTAINER_TYPE.into(), b.container_type.into());
    if let Some(id) = &b.sandbox_id {
        out.insert(SANDBOX_ID.into(), id.clone());
    }
    if let Some(p) = &b.log_path {
        out.insert(LOG_PATH.into(), p.clone());
    }
    if !b.owner.is_empty() {
        out.insert(OWNER.into(), b.owner.clone());
    }
    Ok(out)
}

/// Split Docker labels back into CRI (labels, annotations).
pub fn extract(
    input: &HashMap<String, String>,
) -> (HashMap<String, String>, HashMap<String, String>) {
    let added: Vec<&str> = input
        .get(ADDED)
        .map(|a| a.split(',').collect())
        .unwrap_or_default();
    let is_sandbox = input.get(CONTAINER_TYPE).map(String::as_str) == Some(TYPE_SANDBOX);
    let mut labels = HashMap::new();
    let mut annotations = HashMap::new();
    for (k, v) in input {
        if INTERNAL.contains(&k.as_str()) || added.contains(&k.as_str()) {
            continue;
        }
        // The Go original adds the container-name label to sandboxes itself.
        if is_sandbox && k == CONTAINER_NAME && !input.contains_key(OWNER) {
            continue;
        }
        if let Some(a) = k.strip_prefix(ANNOTATION_PREFIX) {
            annotations.insert(a.to_string(), v.clone());
        } else {
            labels.insert(k.clone(), v.clone());
        }
    }
    (labels, annotations)
}

/// Whether `labels` match every `selector` entry exactly.
pub fn matches_selector(
    labels: &HashMap<String, String>,
    selector: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn book(t: &'static str) -> Bookkeeping {
        Bookkeeping {
            container_type: t,
            pod_name: "p".into(),
            pod_namespace: "ns".into(),
            pod_uid: "u".into(),
            container_name: "c".into(),
            sandbox_id: (t == TYPE_CONTAINER).then(|| "sb".into()),
            log_path: (t == TYPE_CONTAINER).then(|| "/l/c.log".into()),
            owner: "o".into(),
        }
    }

    #[test]
    fn round_trips_exactly() {
        let cases = [
            (m(&[]), m(&[])),
            (
                m(&[("a", "1"), ("b", "")]),
                m(&[("a", "x"), ("note", "=,_")]),
            ),
            (
                m(&[(POD_NAME, "kubelet-set"), (POD_UID, "u")]),
                m(&[("io.kubernetes.container.hash", "abc")]),
            ),
        ];
        for t in [TYPE_SANDBOX, TYPE_CONTAINER] {
            for (l, a) in &cases {
                let merged = make(l, a, &book(t)).unwrap();
                assert_eq!(merged[CONTAINER_TYPE], t);
                assert_eq!(
                    &extract(&merged),
                    &(l.clone(), a.clone()),
                    "{t} {l:?} {a:?}"
                );
            }
        }
    }

    #[test]
    fn adds_kubelet_labels_only_when_absent() {
        let merged = make(&m(&[(POD_NAME, "given")]), &m(&[]), &book(TYPE_CONTAINER)).unwrap();
        assert_eq!(merged[POD_NAME], "given");
        assert_eq!(merged[POD_UID], "u");
        assert_eq!(merged[SANDBOX_ID], "sb");
        assert_eq!(merged[LOG_PATH], "/l/c.log");
        assert_eq!(
            merged[ADDED],
            format!("{POD_NAMESPACE},{POD_UID},{CONTAINER_NAME}")
        );
    }

    #[test]
    fn reads_go_created_labels() {
        // As the Go cri-dockerd writes a sandbox: kubelet's labels plus its own.
        let go = m(&[
            (POD_NAME, "p"),
            (POD_UID, "u"),
            (CONTAINER_NAME, "POD"),
            (CONTAINER_TYPE, TYPE_SANDBOX),
            ("annotation.kubernetes.io/config.source", "api"),
        ]);
        let (l, a) = extract(&go);
        assert_eq!(l, m(&[(POD_NAME, "p"), (POD_UID, "u")]));
        assert_eq!(a, m(&[("kubernetes.io/config.source", "api")]));
    }

    #[test]
    fn refuses_reserved_label_keys() {
        for k in [CONTAINER_TYPE, SANDBOX_ID, LOG_PATH, "annotation.x"] {
            let e = make(&m(&[(k, "v")]), &m(&[]), &book(TYPE_SANDBOX)).unwrap_err();
            assert!(
                matches!(e, Error::InvalidArgument(ref s) if s.contains(k)),
                "{k}"
            );
        }
    }

    #[test]
    fn selector() {
        let l = m(&[("a", "1"), ("b", "2")]);
        assert!(matches_selector(&l, &m(&[])));
        assert!(matches_selector(&l, &m(&[("a", "1")])));
        assert!(!matches_selector(&l, &m(&[("a", "2")])));
        assert!(!matches_selector(&l, &m(&[("c", "")])));
    }
}
