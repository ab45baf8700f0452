//! Checkpoints: per-sandbox state under `--cri-dockerd-root-directory`, written atomically.
