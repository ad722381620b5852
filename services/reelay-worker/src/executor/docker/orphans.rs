//! Containers of this node that belong to no known attempt: left by a worker that lost its
//! state, or by an attempt the coordinator superseded.

use std::collections::{HashMap, HashSet};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use super::engine::{describe, is_not_found};
use super::{LABEL_ATTEMPT, LABEL_JOB_ID, LABEL_NODE_ID};

/// Removes (force) the containers labelled with `node_id` whose (job id, attempt) is not in
/// `known`; returns a description of each.
pub(super) async fn remove_orphans(
    docker: &Docker,
    node_id: &str,
    known: &[(String, u32)],
) -> Vec<String> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_NODE_ID}={node_id}")])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = match docker.list_containers(Some(options)).await {
        Ok(containers) => containers,
        Err(err) => {
            tracing::warn!(error = %describe(&err), "cannot list containers to remove orphans");
            return Vec::new();
        }
    };
    let known: HashSet<(&str, u32)> = known
        .iter()
        .map(|(job_id, attempt)| (job_id.as_str(), *attempt))
        .collect();
    let mut removed = Vec::new();
    for container in containers {
        let Some(id) = container.id.as_deref() else {
            continue;
        };
        let label = |name: &str| {
            container
                .labels
                .as_ref()
                .and_then(|labels| labels.get(name))
        };
        let job_id = label(LABEL_JOB_ID).map_or("?", String::as_str);
        let attempt = label(LABEL_ATTEMPT).map_or("?", String::as_str);
        if attempt
            .parse::<u32>()
            .is_ok_and(|attempt| known.contains(&(job_id, attempt)))
        {
            continue;
        }
        let name = container
            .names
            .as_ref()
            .and_then(|names| names.first())
            .map_or(id, |name| name.trim_start_matches('/'));
        let state = container
            .state
            .map_or_else(|| "unknown".to_owned(), |state| state.to_string());
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        match docker.remove_container(id, Some(options)).await {
            Ok(()) => removed.push(format!(
                "container {name} ({}, {state}) of job {job_id} attempt {attempt}",
                &id[..id.len().min(12)]
            )),
            Err(err) if is_not_found(&err) => {}
            Err(err) => {
                tracing::warn!(container = name, error = %describe(&err), "cannot remove an orphan container");
            }
        }
    }
    removed
}
