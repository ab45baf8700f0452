//! The domain layer (the Go `core/`): every CRI call's logic, over the Docker adapter, the
//! network plugin and the checkpoint store. Uses the CRI v1 message types; v1alpha2 is converted
//! in the server layer.

pub mod convert;
mod error;
pub mod exec;
pub mod host;
pub mod image;
pub mod inputs;
pub mod logs;
pub mod runtime_info;

use std::sync::Arc;

pub use error::{Error, Result};

use crate::config::Config;
use crate::docker::DockerApi;
use crate::network::NetworkPlugin;

/// The runtime: shared by every gRPC handler.
pub struct Runtime {
    pub(crate) docker: Arc<dyn DockerApi>,
    pub(crate) config: Arc<Config>,
    pub(crate) network: Arc<dyn NetworkPlugin>,
    /// Pod CIDR from `UpdateRuntimeConfig` (or `--pod-cidr`).
    pub(crate) pod_cidr: std::sync::RwLock<Option<String>>,
}

impl Runtime {
    /// A runtime over `docker` with `config`.
    pub fn new(docker: Arc<dyn DockerApi>, config: Arc<Config>) -> Self {
        let network = crate::network::from_config(&config);
        Runtime {
            pod_cidr: std::sync::RwLock::new(config.pod_cidr.clone()),
            docker,
            config,
            network,
        }
    }

    /// The configuration the runtime was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
