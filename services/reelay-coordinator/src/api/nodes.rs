//! NodeService over gRPC.

use reelay_core::names::validate_node_id;
use reelay_proto::auth::Access;
use reelay_proto::v1;
use reelay_proto::v1::node_service_server::NodeService;
use tonic::{Request, Response, Status};

use super::ApiState;
use crate::engine::Registration;
use crate::error::CoordinatorError;

/// NodeService.
#[derive(Debug, Clone)]
pub struct NodeApi(pub ApiState);

fn node_id(id: &str) -> Result<&str, Status> {
    validate_node_id(id, "id").map_err(CoordinatorError::from)?;
    Ok(id)
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn register_node(
        &self,
        request: Request<v1::RegisterNodeRequest>,
    ) -> Result<Response<v1::RegisterNodeResponse>, Status> {
        // Workers authenticate with the cluster token; without one configured, an API token will do.
        let checked = if self.0.cluster.is_open() {
            self.0.write(&request)
        } else {
            self.0
                .cluster
                .check(&request, Access::Write)
                .map(drop)
                .map_err(|status| {
                    Status::new(
                        status.code(),
                        format!(
                            "{}: workers must send this coordinator's cluster token (set the same \
                             --cluster-token or REELAY_CLUSTER_TOKEN on the coordinator and its workers)",
                            status.message()
                        ),
                    )
                })
        };
        if let Err(status) = checked {
            tracing::warn!(
                node = ?request.get_ref().id,
                peer = ?request.remote_addr(),
                code = ?status.code(),
                "RegisterNode refused: the worker's token is missing or wrong"
            );
            return Err(status);
        }
        let request = request.into_inner();
        let registration = Registration {
            id: request.id,
            address: request.address,
            labels: request.labels.into_iter().collect(),
            slots: request.slots,
            version: request.version,
            executor: request.executor,
        };
        let node = self.0.engine.register(registration).await?;
        Ok(Response::new(v1::RegisterNodeResponse {
            store: Some(v1::StoreAccess::clone(&self.0.store_access)),
            node: Some((&node).into()),
        }))
    }

    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        self.0.read(&request)?;
        let nodes = self
            .0
            .engine
            .cluster()
            .nodes()
            .iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(v1::ListNodesResponse { nodes }))
    }

    async fn get_node(
        &self,
        request: Request<v1::GetNodeRequest>,
    ) -> Result<Response<v1::Node>, Status> {
        self.0.read(&request)?;
        let request = request.into_inner();
        let id = node_id(&request.id)?;
        let node = self
            .0
            .engine
            .cluster()
            .node(id)
            .ok_or_else(|| Status::not_found(format!("node not found: {id}")))?;
        Ok(Response::new((&node).into()))
    }

    async fn drain_node(
        &self,
        request: Request<v1::DrainNodeRequest>,
    ) -> Result<Response<v1::Node>, Status> {
        self.0.write(&request)?;
        let id = node_id(&request.get_ref().id)?.to_owned();
        let node = self.0.engine.set_drained(id, true).await?;
        Ok(Response::new((&node).into()))
    }

    async fn undrain_node(
        &self,
        request: Request<v1::UndrainNodeRequest>,
    ) -> Result<Response<v1::Node>, Status> {
        self.0.write(&request)?;
        let id = node_id(&request.get_ref().id)?.to_owned();
        let node = self.0.engine.set_drained(id, false).await?;
        Ok(Response::new((&node).into()))
    }

    type WatchNodesStream = super::ServerStream<v1::NodeEvent>;

    async fn watch_nodes(
        &self,
        request: Request<v1::WatchNodesRequest>,
    ) -> Result<Response<Self::WatchNodesStream>, Status> {
        self.0.read(&request)?;
        Ok(Response::new(super::watch::nodes(self.0.clone())))
    }

    async fn remove_node(
        &self,
        request: Request<v1::RemoveNodeRequest>,
    ) -> Result<Response<v1::RemoveNodeResponse>, Status> {
        self.0.write(&request)?;
        let id = node_id(&request.get_ref().id)?.to_owned();
        self.0.engine.remove_node(id).await?;
        Ok(Response::new(v1::RemoveNodeResponse {}))
    }
}
