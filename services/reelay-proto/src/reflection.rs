//! gRPC reflection (v1 and v1alpha) over Reelay's and the health service's descriptors.
//!
//! Both versions are served: grpcurl 1.8 speaks only v1alpha, `buf curl` uses v1.

use tonic_reflection::server::{Builder, Error};

fn builder() -> Builder<'static> {
    Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// `grpc.reflection.v1.ServerReflection`.
pub fn v1() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    Error,
> {
    builder().build_v1()
}

/// `grpc.reflection.v1alpha.ServerReflection`.
pub fn v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    Error,
> {
    builder().build_v1alpha()
}
