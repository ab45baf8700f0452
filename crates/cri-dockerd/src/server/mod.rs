//! The protocol layer: listeners (unix path, tcp, systemd `fd://`), `sd_notify`, graceful
//! shutdown, and the CRI v1 and v1alpha2 gRPC services over one [`Runtime`], measured per call
//! by [`rpc_metrics`].

pub mod alpha;
pub mod image;
pub mod listen;
pub mod notify;
pub mod rpc_metrics;
pub mod runtime;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use k8s_cri::v1alpha2::image_service_server::ImageServiceServer as AlphaImageServiceServer;
use k8s_cri::v1alpha2::runtime_service_server::RuntimeServiceServer as AlphaRuntimeServiceServer;
use tonic::transport::Server;

pub use listen::Listener;

use crate::service::Runtime;

/// Largest gRPC message accepted or sent, as kubelet and the Go original (16 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Serve CRI v1 and v1alpha2 on `listener` until `shutdown` resolves, then drain in-flight calls.
pub async fn serve(
    rt: Arc<Runtime>,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let runtime_v1 = runtime::RuntimeV1 { rt: rt.clone() };
    let image_v1 = image::ImageV1 { rt };
    let runtime_alpha = alpha::RuntimeV1alpha2(runtime_v1.clone());
    let image_alpha = alpha::ImageV1alpha2(image_v1.clone());

    let router = Server::builder()
        .layer(rpc_metrics::RpcMetricsLayer)
        .add_service(
            RuntimeServiceServer::new(runtime_v1)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
        .add_service(
            ImageServiceServer::new(image_v1)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
        .add_service(
            AlphaRuntimeServiceServer::new(runtime_alpha)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
        .add_service(
            AlphaImageServiceServer::new(image_alpha)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        );

    match listener {
        Listener::Unix(l) => {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(l),
                    shutdown,
                )
                .await
        }
        Listener::Tcp(l) => {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(l),
                    shutdown,
                )
                .await
        }
    }
}
