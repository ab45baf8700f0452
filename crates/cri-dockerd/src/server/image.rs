//! CRI v1 ImageService: thin handlers over [`service::Runtime`](crate::service::Runtime).

use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::service::Runtime;

/// The v1 ImageService.
#[derive(Clone)]
pub struct ImageV1 {
    pub(crate) rt: Arc<Runtime>,
}

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ImageService for ImageV1 {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Res<cri::ListImagesResponse> {
        Ok(Response::new(self.rt.list_images(&req.into_inner()).await?))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Res<cri::ImageStatusResponse> {
        Ok(Response::new(
            self.rt.image_status(&req.into_inner()).await?,
        ))
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> Res<cri::PullImageResponse> {
        Ok(Response::new(self.rt.pull_image(&req.into_inner()).await?))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Res<cri::RemoveImageResponse> {
        self.rt.remove_image(&req.into_inner()).await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Res<cri::ImageFsInfoResponse> {
        Ok(Response::new(self.rt.image_fs_info().await?))
    }
}
