//! The Docker adapter (the Go `libdocker/`): the only module that imports `bollard`.
//!
//! [`DockerApi`] is the trait the domain layer calls; [`DockerClient`] implements it over a real
//! Docker Engine, connecting lazily and negotiating the API version on first contact (and again
//! after dockerd comes back), so cri-dockerd starts and reports `RuntimeReady=false` while dockerd
//! is down. Errors are classified here, from the HTTP status, into [`Error`].

mod client;
pub mod container;
mod error;
pub mod events;
pub mod exec;
pub mod image;
pub mod system;

pub use client::DockerClient;
pub use container::{
    ContainerApi, ContainerInfo, ContainerSpec, ContainerState, ContainerSummary, DeviceSpec,
    HostSpec, ListFilter, LogConfig, MountInfo, MountSpec, PortBinding, Propagation, ResourceSpec,
};
pub use error::{Error, Result};
pub use events::{ContainerAction, ContainerEvent, ContainerEventStream, EventsApi};
pub use exec::{AttachSpec, AttachedStreams, ExecApi, ExecInfo, ExecOutput, ExecSpec, OutputChunk};
pub use image::{HistoryEntry, ImageApi, ImageDetails, ImageInfo, PullAuth};
pub use system::{DaemonInfo, SystemApi, VersionInfo};

/// Everything the domain layer needs from Docker.
pub trait DockerApi:
    SystemApi + ImageApi + ContainerApi + ExecApi + EventsApi + Send + Sync + 'static
{
}

impl<T: SystemApi + ImageApi + ContainerApi + ExecApi + EventsApi + Send + Sync + 'static> DockerApi
    for T
{
}
