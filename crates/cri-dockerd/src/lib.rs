//! cri-dockerd: the Kubernetes Container Runtime Interface (CRI v1 and v1alpha2) for Docker Engine.
//!
//! Layers, dependencies pointing one way: [`server`] (gRPC, listeners) -> [`service`] (the CRI
//! domain) -> [`docker`] (the only user of the Docker client crate), [`network`], [`store`].

pub mod cgroups;
pub mod config;
pub mod docker;
pub mod doctor;
pub mod memory;
pub mod metrics;
pub mod network;
pub mod server;
pub mod service;
pub mod store;
pub mod version;
