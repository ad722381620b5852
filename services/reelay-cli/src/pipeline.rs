//! `reelay pipeline …`: what jobs can run, with their parameters.

use std::process::ExitCode;

use clap::Subcommand;
use reelay_proto::v1;

use crate::format::{self, Table};
use crate::{Ctx, json};

/// The subcommands of `reelay pipeline`.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// List the pipelines of the coordinator's config, with their parameters (default, pattern,
    /// whether required).
    #[command(after_help = "\
Pipelines come from the coordinator's config file; nobody can run an arbitrary command through the
API. Use a pipeline's parameters with `reelay job submit PIPELINE --param NAME=VALUE`.

Examples:
  reelay pipeline list
  reelay pipeline list -o json | jq -r .name")]
    List,
}

pub(crate) async fn run(ctx: &Ctx, command: PipelineCommand) -> anyhow::Result<ExitCode> {
    match command {
        PipelineCommand::List => {
            let pipelines = ctx
                .conn
                .pipelines()
                .list_pipelines(v1::ListPipelinesRequest {})
                .await?
                .into_inner()
                .pipelines;
            if ctx.json() {
                for pipeline in &pipelines {
                    json::print_line(&json::pipeline(pipeline))?;
                }
            } else if pipelines.is_empty() {
                eprintln!("no pipelines: the coordinator's config defines none");
            } else {
                crate::out::text(&describe(&pipelines))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each pipeline with a line of facts and a table of its parameters.
fn describe(pipelines: &[v1::Pipeline]) -> String {
    let mut out = String::new();
    for (index, pipeline) in pipelines.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&pipeline.name);
        if !pipeline.description.is_empty() {
            out.push_str(&format!(": {}", pipeline.description));
        }
        out.push('\n');
        let input = if pipeline.input_required {
            "input: required (--input PATH)"
        } else {
            "input: none"
        };
        let timeout = match pipeline.timeout_seconds {
            0 => "timeout: none".to_owned(),
            secs => format!(
                "timeout: {}",
                format::duration(std::time::Duration::from_secs(u64::from(secs)))
            ),
        };
        out.push_str(&format!("  {input}, {timeout}\n"));
        if pipeline.params.is_empty() {
            out.push_str("  no parameters\n");
            continue;
        }
        let mut table = Table::new(&["PARAM", "REQUIRED", "DEFAULT", "PATTERN", "DESCRIPTION"]);
        for param in &pipeline.params {
            table.row(vec![
                param.name.clone(),
                if param.required { "yes" } else { "no" }.to_owned(),
                if param.default.is_empty() {
                    "-".to_owned()
                } else {
                    param.default.clone()
                },
                if param.pattern.is_empty() {
                    "-".to_owned()
                } else {
                    param.pattern.clone()
                },
                param.description.clone(),
            ]);
        }
        for line in table.render().lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_show_their_params() {
        let text = describe(&[v1::Pipeline {
            name: "count".into(),
            description: "counts".into(),
            params: vec![
                v1::PipelineParam {
                    name: "steps".into(),
                    default: "20".into(),
                    pattern: "^[0-9]+$".into(),
                    ..Default::default()
                },
                v1::PipelineParam {
                    name: "label".into(),
                    required: true,
                    ..Default::default()
                },
            ],
            timeout_seconds: 600,
            input_required: false,
        }]);
        assert_eq!(
            text,
            "count: counts\n  input: none, timeout: 10m00s\n  \
             PARAM  REQUIRED  DEFAULT  PATTERN   DESCRIPTION\n  \
             steps  no        20       ^[0-9]+$\n  \
             label  yes       -        -\n"
        );
    }
}
