//! gRPC reflection (v1 and v1alpha) over Reelay's and the health service's descriptors.
//!
//! Both versions are served: grpcurl 1.8 speaks only v1alpha, `buf curl` uses v1. Each server lists
//! only the services it really serves (the coordinator does not list WorkerService), while every
//! message type stays resolvable.

use tonic_reflection::server::{Builder, Error};

/// Services the coordinator serves.
pub const COORDINATOR_SERVICES: &[&str] = &[
    "reelay.v1.JobService",
    "reelay.v1.NodeService",
    "reelay.v1.PipelineService",
    "grpc.health.v1.Health",
];
/// Services a worker serves.
pub const WORKER_SERVICES: &[&str] = &["reelay.v1.WorkerService", "grpc.health.v1.Health"];

fn builder(services: &[&str]) -> Builder<'static> {
    let mut builder = Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for service in services {
        builder = builder.with_service_name(*service);
    }
    builder
}

/// `grpc.reflection.v1.ServerReflection` listing `services`.
pub fn v1(
    services: &[&str],
) -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    Error,
> {
    builder(services).build_v1()
}

/// `grpc.reflection.v1alpha.ServerReflection` listing `services`.
pub fn v1alpha(
    services: &[&str],
) -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    Error,
> {
    builder(services).build_v1alpha()
}
