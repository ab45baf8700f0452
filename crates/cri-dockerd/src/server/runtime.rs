//! CRI v1 RuntimeService: thin handlers over [`service::Runtime`](crate::service::Runtime).

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::service::Runtime;
use crate::service::runtime_info::CRI_V1_API_VERSION;

/// The v1 RuntimeService.
#[derive(Clone)]
pub struct RuntimeV1 {
    pub(crate) rt: Arc<Runtime>,
}

type Res<T> = Result<Response<T>, Status>;

fn unimplemented<T>(call: &str) -> Res<T> {
    Err(Status::unimplemented(format!(
        "{call} is not implemented by cri-dockerd yet"
    )))
}

#[tonic::async_trait]
impl RuntimeService for RuntimeV1 {
    async fn version(&self, _req: Request<cri::VersionRequest>) -> Res<cri::VersionResponse> {
        Ok(Response::new(self.rt.version(CRI_V1_API_VERSION).await?))
    }

    async fn run_pod_sandbox(
        &self,
        _req: Request<cri::RunPodSandboxRequest>,
    ) -> Res<cri::RunPodSandboxResponse> {
        unimplemented("RunPodSandbox")
    }

    async fn stop_pod_sandbox(
        &self,
        _req: Request<cri::StopPodSandboxRequest>,
    ) -> Res<cri::StopPodSandboxResponse> {
        unimplemented("StopPodSandbox")
    }

    async fn remove_pod_sandbox(
        &self,
        _req: Request<cri::RemovePodSandboxRequest>,
    ) -> Res<cri::RemovePodSandboxResponse> {
        unimplemented("RemovePodSandbox")
    }

    async fn pod_sandbox_status(
        &self,
        _req: Request<cri::PodSandboxStatusRequest>,
    ) -> Res<cri::PodSandboxStatusResponse> {
        unimplemented("PodSandboxStatus")
    }

    async fn list_pod_sandbox(
        &self,
        _req: Request<cri::ListPodSandboxRequest>,
    ) -> Res<cri::ListPodSandboxResponse> {
        unimplemented("ListPodSandbox")
    }

    async fn create_container(
        &self,
        _req: Request<cri::CreateContainerRequest>,
    ) -> Res<cri::CreateContainerResponse> {
        unimplemented("CreateContainer")
    }

    async fn start_container(
        &self,
        _req: Request<cri::StartContainerRequest>,
    ) -> Res<cri::StartContainerResponse> {
        unimplemented("StartContainer")
    }

    async fn stop_container(
        &self,
        _req: Request<cri::StopContainerRequest>,
    ) -> Res<cri::StopContainerResponse> {
        unimplemented("StopContainer")
    }

    async fn remove_container(
        &self,
        _req: Request<cri::RemoveContainerRequest>,
    ) -> Res<cri::RemoveContainerResponse> {
        unimplemented("RemoveContainer")
    }

    async fn list_containers(
        &self,
        _req: Request<cri::ListContainersRequest>,
    ) -> Res<cri::ListContainersResponse> {
        unimplemented("ListContainers")
    }

    async fn container_status(
        &self,
        _req: Request<cri::ContainerStatusRequest>,
    ) -> Res<cri::ContainerStatusResponse> {
        unimplemented("ContainerStatus")
    }

    async fn update_container_resources(
        &self,
        _req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Res<cri::UpdateContainerResourcesResponse> {
        unimplemented("UpdateContainerResources")
    }

    async fn reopen_container_log(
        &self,
        _req: Request<cri::ReopenContainerLogRequest>,
    ) -> Res<cri::ReopenContainerLogResponse> {
        unimplemented("ReopenContainerLog")
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> Res<cri::ExecSyncResponse> {
        Ok(Response::new(self.rt.exec_sync(req.get_ref()).await?))
    }

    async fn exec(&self, _req: Request<cri::ExecRequest>) -> Res<cri::ExecResponse> {
        unimplemented("Exec")
    }

    async fn attach(&self, _req: Request<cri::AttachRequest>) -> Res<cri::AttachResponse> {
        unimplemented("Attach")
    }

    async fn port_forward(
        &self,
        _req: Request<cri::PortForwardRequest>,
    ) -> Res<cri::PortForwardResponse> {
        unimplemented("PortForward")
    }

    async fn container_stats(
        &self,
        _req: Request<cri::ContainerStatsRequest>,
    ) -> Res<cri::ContainerStatsResponse> {
        unimplemented("ContainerStats")
    }

    async fn list_container_stats(
        &self,
        _req: Request<cri::ListContainerStatsRequest>,
    ) -> Res<cri::ListContainerStatsResponse> {
        unimplemented("ListContainerStats")
    }

    async fn pod_sandbox_stats(
        &self,
        _req: Request<cri::PodSandboxStatsRequest>,
    ) -> Res<cri::PodSandboxStatsResponse> {
        unimplemented("PodSandboxStats")
    }

    async fn list_pod_sandbox_stats(
        &self,
        _req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Res<cri::ListPodSandboxStatsResponse> {
        unimplemented("ListPodSandboxStats")
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Res<cri::UpdateRuntimeConfigResponse> {
        self.rt.update_runtime_config(&req.into_inner())?;
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, req: Request<cri::StatusRequest>) -> Res<cri::StatusResponse> {
        Ok(Response::new(
            self.rt.status(req.into_inner().verbose).await?,
        ))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<cri::CheckpointContainerRequest>,
    ) -> Res<cri::CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
    }

    type GetContainerEventsStream =
        Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Res<Self::GetContainerEventsStream> {
        unimplemented("GetContainerEvents")
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Res<cri::ListMetricDescriptorsResponse> {
        unimplemented("ListMetricDescriptors")
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Res<cri::ListPodSandboxMetricsResponse> {
        unimplemented("ListPodSandboxMetrics")
    }

    async fn runtime_config(
        &self,
        _req: Request<cri::RuntimeConfigRequest>,
    ) -> Res<cri::RuntimeConfigResponse> {
        Ok(Response::new(self.rt.runtime_config().await?))
    }
}
