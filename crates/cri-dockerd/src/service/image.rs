//! ImageService: list, status, pull, remove, filesystem info.

use k8s_cri::v1 as cri;

use super::{Error, Result, Runtime};

impl Runtime {
    /// `ListImages`.
    pub async fn list_images(
        &self,
        _req: &cri::ListImagesRequest,
    ) -> Result<cri::ListImagesResponse> {
        Err(Error::Unimplemented(
            "ListImages is not implemented yet".into(),
        ))
    }
    /// `ImageStatus`.
    pub async fn image_status(
        &self,
        _req: &cri::ImageStatusRequest,
    ) -> Result<cri::ImageStatusResponse> {
        Err(Error::Unimplemented(
            "ImageStatus is not implemented yet".into(),
        ))
    }
    /// `PullImage`.
    pub async fn pull_image(&self, _req: &cri::PullImageRequest) -> Result<cri::PullImageResponse> {
        Err(Error::Unimplemented(
            "PullImage is not implemented yet".into(),
        ))
    }
    /// `RemoveImage`.
    pub async fn remove_image(&self, _req: &cri::RemoveImageRequest) -> Result<()> {
        Err(Error::Unimplemented(
            "RemoveImage is not implemented yet".into(),
        ))
    }
    /// `ImageFsInfo`.
    pub async fn image_fs_info(&self) -> Result<cri::ImageFsInfoResponse> {
        Err(Error::Unimplemented(
            "ImageFsInfo is not implemented yet".into(),
        ))
    }
}
