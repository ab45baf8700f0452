//! CRI v1alpha2: a thin conversion onto the v1 services. The two APIs share field numbers for
//! everything v1alpha2 has, so each message is re-encoded from one schema into the other (as
//! containerd does) and the v1 handler does the work.

use std::future::Future;
use std::pin::Pin;

use k8s_cri::v1;
use k8s_cri::v1::image_service_server::ImageService as _;
use k8s_cri::v1::runtime_service_server::RuntimeService as _;
use k8s_cri::v1alpha2 as alpha;
use tonic::{Request, Response, Status};

use super::image::ImageV1;
use super::runtime::RuntimeV1;

/// Re-encode a message of one CRI version as the other.
pub fn convert<A: prost::Message, B: prost::Message + Default>(a: &A) -> Result<B, Status> {
    B::decode(a.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("converting between CRI v1alpha2 and v1: {e}")))
}

/// The v1alpha2 RuntimeService.
#[derive(Clone)]
pub struct RuntimeV1alpha2(pub(crate) RuntimeV1);

/// The v1alpha2 ImageService.
#[derive(Clone)]
pub struct ImageV1alpha2(pub(crate) ImageV1);

macro_rules! forward {
    ($($method:ident => $req:ident, $resp:ident;)*) => {
        $(
            // The signature async-trait would generate: the attribute cannot see inside macros.
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                req: Request<alpha::$req>,
            ) -> Pin<Box<dyn Future<Output = Result<Response<alpha::$resp>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    let req: v1::$req = convert(req.get_ref())?;
                    let resp = self.0.$method(Request::new(req)).await?;
                    Ok(Response::new(convert(resp.get_ref())?))
                })
            }
        )*
    };
}

#[tonic::async_trait]
impl alpha::runtime_service_server::RuntimeService for RuntimeV1alpha2 {
    async fn version(
        &self,
        _req: Request<alpha::VersionRequest>,
    ) -> Result<Response<alpha::VersionResponse>, Status> {
        let v = self.0.rt.version("v1alpha2").await?;
        Ok(Response::new(convert(&v)?))
    }

    forward! {
    run_pod_sandbox => RunPodSandboxRequest, RunPodSandboxResponse;
    stop_pod_sandbox => StopPodSandboxRequest, StopPodSandboxResponse;
    remove_pod_sandbox => RemovePodSandboxRequest, RemovePodSandboxResponse;
    pod_sandbox_status => PodSandboxStatusRequest, PodSandboxStatusResponse;
    list_pod_sandbox => ListPodSandboxRequest, ListPodSandboxResponse;
    create_container => CreateContainerRequest, CreateContainerResponse;
    start_container => StartContainerRequest, StartContainerResponse;
    stop_container => StopContainerRequest, StopContainerResponse;
    remove_container => RemoveContainerRequest, RemoveContainerResponse;
    list_containers => ListContainersRequest, ListContainersResponse;
    container_status => ContainerStatusRequest, ContainerStatusResponse;
    update_container_resources => UpdateContainerResourcesRequest, UpdateContainerResourcesResponse;
    reopen_container_log => ReopenContainerLogRequest, ReopenContainerLogResponse;
    exec_sync => ExecSyncRequest, ExecSyncResponse;
    exec => ExecRequest, ExecResponse;
    attach => AttachRequest, AttachResponse;
    port_forward => PortForwardRequest, PortForwardResponse;
    container_stats => ContainerStatsRequest, ContainerStatsResponse;
    list_container_stats => ListContainerStatsRequest, ListContainerStatsResponse;
    pod_sandbox_stats => PodSandboxStatsRequest, PodSandboxStatsResponse;
    list_pod_sandbox_stats => ListPodSandboxStatsRequest, ListPodSandboxStatsResponse;
    update_runtime_config => UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse;
    status => StatusRequest, StatusResponse;    }
}

#[tonic::async_trait]
impl alpha::image_service_server::ImageService for ImageV1alpha2 {
    forward! {
        list_images => ListImagesRequest, ListImagesResponse;
        image_status => ImageStatusRequest, ImageStatusResponse;
        pull_image => PullImageRequest, PullImageResponse;
        remove_image => RemoveImageRequest, RemoveImageResponse;
        image_fs_info => ImageFsInfoRequest, ImageFsInfoResponse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_nested_messages_both_ways() {
        let a = alpha::ImageStatusRequest {
            image: Some(alpha::ImageSpec {
                image: "busybox:latest".into(),
                annotations: [("k".to_string(), "v".to_string())].into(),
            }),
            verbose: true,
        };
        let b: v1::ImageStatusRequest = convert(&a).unwrap();
        assert_eq!(b.image.as_ref().unwrap().image, "busybox:latest");
        assert_eq!(b.image.as_ref().unwrap().annotations["k"], "v");
        assert!(b.verbose);
        let back: alpha::ImageStatusRequest = convert(&b).unwrap();
        assert_eq!(back, a);
    }
}
