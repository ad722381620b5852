//! PipelineService over gRPC: the pipelines of the config, for forms and the CLI.

use reelay_proto::v1;
use reelay_proto::v1::pipeline_service_server::PipelineService;
use tonic::{Request, Response, Status};

use super::ApiState;

/// PipelineService.
#[derive(Debug, Clone)]
pub struct PipelineApi(pub ApiState);

#[tonic::async_trait]
impl PipelineService for PipelineApi {
    async fn list_pipelines(
        &self,
        request: Request<v1::ListPipelinesRequest>,
    ) -> Result<Response<v1::ListPipelinesResponse>, Status> {
        self.0.read(&request)?;
        let pipelines = self
            .0
            .engine
            .pipelines()
            .iter()
            .map(|pipeline| v1::Pipeline {
                name: pipeline.name.clone(),
                description: pipeline.description.clone(),
                params: pipeline
                    .params
                    .iter()
                    .map(|param| v1::PipelineParam {
                        name: param.name.clone(),
                        description: param.description.clone(),
                        default: param.default.clone().unwrap_or_default(),
                        // The stored pattern is anchored as `^(?:...)$`; clients get it as written.
                        pattern: param
                            .pattern
                            .as_ref()
                            .map(|regex| unanchor(regex.as_str()).to_owned())
                            .unwrap_or_default(),
                        required: param.required,
                    })
                    .collect(),
                timeout_seconds: pipeline.timeout_seconds,
                input_required: pipeline.input_required,
            })
            .collect();
        Ok(Response::new(v1::ListPipelinesResponse { pipelines }))
    }
}

fn unanchor(pattern: &str) -> &str {
    pattern
        .strip_prefix("^(?:")
        .and_then(|rest| rest.strip_suffix(")$"))
        .unwrap_or(pattern)
}
