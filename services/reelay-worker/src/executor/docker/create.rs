//! Making an attempt's container: the image (per the pull policy), the user, the output
//! directory's owner, the container's configuration, then create and start.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, ImageInspect, Mount, MountType};
use bollard::query_parameters::{CreateContainerOptionsBuilder, CreateImageOptionsBuilder};
use futures::StreamExt;
use reelay_core::pipeline::PullPolicy;

use super::engine::{describe, engine_error, is_not_found, remove_quietly};
use super::{LABEL_ATTEMPT, LABEL_JOB_ID, LABEL_MANAGED, LABEL_NODE_ID, LABEL_PIPELINE};
use crate::executor::{ExecError, RunSpec};

/// The user a container runs as when neither the pipeline nor the image names one.
pub(super) const DEFAULT_USER: &str = "1000:1000";
/// Where the container sees the output directory.
pub(super) const OUTPUT_TARGET: &str = "/output";
/// Where the container sees the input file (`/input/<file name>`).
const INPUT_DIR: &str = "/input";

/// `reelay-<job id>-<attempt>`.
pub(super) fn container_name(spec: &RunSpec) -> String {
    format!("reelay-{}-{}", spec.job_id, spec.attempt)
}

/// Makes sure `image` is on the node according to `pull` and returns its description.
pub(super) async fn ensure_image(
    docker: &Docker,
    image: &str,
    pull: PullPolicy,
) -> Result<ImageInspect, ExecError> {
    let present = match docker.inspect_image(image).await {
        Ok(inspect) => Some(inspect),
        Err(err) if is_not_found(&err) => None,
        Err(err) => return Err(engine_error(&err)),
    };
    match (pull, present) {
        (PullPolicy::Never | PullPolicy::IfMissing, Some(inspect)) => Ok(inspect),
        (PullPolicy::Never, None) => Err(ExecError::Start(format!("image not found: {image}"))),
        (PullPolicy::IfMissing, None) => {
            pull_image(docker, image).await.map_err(|reason| {
                ExecError::Start(format!(
                    "image not found: {image} (pulling it failed: {reason})"
                ))
            })?;
            inspect_after_pull(docker, image).await
        }
        (PullPolicy::Always, _) => {
            pull_image(docker, image).await.map_err(|reason| {
                ExecError::Start(format!("cannot pull image {image}: {reason}"))
            })?;
            inspect_after_pull(docker, image).await
        }
    }
}

async fn inspect_after_pull(docker: &Docker, image: &str) -> Result<ImageInspect, ExecError> {
    docker.inspect_image(image).await.map_err(|err| {
        ExecError::Start(format!(
            "image {image} was pulled but cannot be inspected: {}",
            describe(&err)
        ))
    })
}

/// Pulls `image` (`name[:tag]` or `name@digest`); the error says why it failed.
async fn pull_image(docker: &Docker, image: &str) -> Result<(), String> {
    tracing::info!(image, "pulling image");
    let options = CreateImageOptionsBuilder::new().from_image(image).build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        step.map_err(|err| describe(&err))?;
    }
    tracing::info!(image, "pulled image");
    Ok(())
}

/// The user to set on the container (`None`: the image's own) and the user it will run as.
///
/// The pipeline's `user` wins; else the image's `User` when it names one; else [`DEFAULT_USER`].
pub(super) fn choose_user(
    pipeline_user: Option<&str>,
    image: &ImageInspect,
) -> (Option<String>, String) {
    if let Some(user) = pipeline_user.map(str::trim).filter(|user| !user.is_empty()) {
        return (Some(user.to_owned()), user.to_owned());
    }
    let image_user = image
        .config
        .as_ref()
        .and_then(|config| config.user.as_deref())
        .map(str::trim)
        .filter(|user| !user.is_empty());
    match image_user {
        Some(user) => (None, user.to_owned()),
        None => (Some(DEFAULT_USER.to_owned()), DEFAULT_USER.to_owned()),
    }
}

/// Makes the output directory writable by `user`: chown to its numeric uid (and gid), else mode
/// 0777 (a user given by name, or a worker that may not chown).
pub(super) fn prepare_output_dir(dir: &Path, user: &str) -> Result<(), ExecError> {
    std::fs::create_dir_all(dir).map_err(|err| {
        ExecError::Start(format!(
            "cannot create the output directory {}: {err}",
            dir.display()
        ))
    })?;
    let (uid, gid) = numeric_ids(user);
    if uid == Some(0) {
        return Ok(());
    }
    if let Some(uid) = uid {
        match std::os::unix::fs::chown(dir, Some(uid), gid) {
            Ok(()) => return Ok(()),
            Err(err) => {
                tracing::debug!(dir = %dir.display(), uid, error = %err, "cannot chown the output directory; making it writable by all");
            }
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(|err| {
        ExecError::Start(format!(
            "cannot make the output directory {} writable for user {user}: {err}",
            dir.display()
        ))
    })
}

/// Logs a warning when the input file is plainly not readable by `user` (judged from its mode,
/// owner and group, for numeric ids only): the pipeline will fail to open it.
pub(super) fn warn_if_unreadable(input: Option<&Path>, user: &str) {
    let (Some(path), (Some(uid), gid)) = (input, numeric_ids(user)) else {
        return;
    };
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.mode();
    let readable = uid == 0
        || mode & 0o004 != 0
        || (metadata.uid() == uid && mode & 0o400 != 0)
        || (gid == Some(metadata.gid()) && mode & 0o040 != 0);
    if !readable {
        tracing::warn!(input = %path.display(), user, mode = format!("{:o}", mode & 0o7777),
            owner = metadata.uid(), "the container's user cannot read the input file");
    }
}

/// The numeric uid and gid of `uid[:gid]`, when they are numbers.
fn numeric_ids(user: &str) -> (Option<u32>, Option<u32>) {
    let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
    (uid.parse().ok(), gid.parse().ok())
}

/// The input's bind mount and its path in the container, after checking it exists: the directory
/// of the job's inputs from the artifact store at `/input`, or the one file a job names on the node
/// in it.
fn input_mount(spec: &RunSpec) -> Result<Option<(Mount, String)>, ExecError> {
    let Some(path) = &spec.input_path else {
        return Ok(None);
    };
    if let Some(dir) = &spec.input_dir {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mount = Mount {
            target: Some(INPUT_DIR.to_owned()),
            source: Some(dir.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        };
        return Ok(Some((mount, format!("{INPUT_DIR}/{name}"))));
    }
    let Some(file_name) = path.file_name() else {
        return Err(ExecError::Start(format!(
            "input path {} names no file",
            path.display()
        )));
    };
    if !path.is_file() {
        return Err(ExecError::Start(format!(
            "input file not found: {}",
            path.display()
        )));
    }
    let target = format!("{INPUT_DIR}/{}", file_name.to_string_lossy());
    let mount = Mount {
        target: Some(target.clone()),
        source: Some(path.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    };
    Ok(Some((mount, target)))
}

/// The container's configuration.
pub(super) fn container_body(
    spec: &RunSpec,
    image: &str,
    user: Option<String>,
    init: bool,
) -> Result<ContainerCreateBody, ExecError> {
    let input = input_mount(spec)?;
    let env = spec
        .protocol_env(
            Some(input.as_ref().map_or("", |(_, target)| target.as_str())),
            spec.input_dir.as_ref().map(|_| INPUT_DIR),
            OUTPUT_TARGET,
        )
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut mounts: Vec<Mount> = input.into_iter().map(|(mount, _)| mount).collect();
    mounts.push(Mount {
        target: Some(OUTPUT_TARGET.to_owned()),
        source: Some(spec.output_dir.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(false),
        ..Default::default()
    });
    let labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_JOB_ID.to_owned(), spec.job_id.clone()),
        (LABEL_NODE_ID.to_owned(), spec.node_id.clone()),
        (LABEL_ATTEMPT.to_owned(), spec.attempt.to_string()),
        (LABEL_PIPELINE.to_owned(), spec.pipeline.name.clone()),
    ]);
    let resources = spec.pipeline.resources;
    let memory = resources
        .memory_mb
        .filter(|mb| *mb > 0)
        .and_then(|mb| i64::try_from(mb.saturating_mul(1024 * 1024)).ok());
    let network = match spec.pipeline.network.trim() {
        "" => "none".to_owned(),
        network => network.to_owned(),
    };
    let host_config = HostConfig {
        mounts: Some(mounts),
        network_mode: Some(network),
        nano_cpus: resources
            .cpus
            .filter(|cpus| *cpus > 0.0)
            .map(|cpus| (cpus * 1e9).round() as i64),
        memory,
        memory_swap: memory,
        init: init.then_some(true),
        auto_remove: Some(false),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: (!spec.pipeline.command.is_empty()).then(|| spec.pipeline.command.clone()),
        env: Some(env),
        user,
        working_dir: Some(OUTPUT_TARGET.to_owned()),
        labels: Some(labels),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// Creates the container named `name`; a container left with that name by an earlier try of the
/// same attempt is removed first (its output directory was emptied, so it starts over).
pub(super) async fn create(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<String, ExecError> {
    let options = || CreateContainerOptionsBuilder::new().name(name).build();
    let created = match docker.create_container(Some(options()), body.clone()).await {
        Err(DockerError::DockerResponseServerError {
            status_code: 409, ..
        }) => {
            tracing::info!(
                container = name,
                "replacing a container left by an earlier try of this attempt"
            );
            remove_quietly(docker, name).await;
            docker.create_container(Some(options()), body).await
        }
        other => other,
    };
    let created = created.map_err(|err| match err {
        DockerError::DockerResponseServerError { message, .. } => {
            ExecError::Start(format!("cannot create the container: {message}"))
        }
        err => engine_error(&err),
    })?;
    for warning in &created.warnings {
        tracing::warn!(container = name, warning, "docker warning");
    }
    Ok(created.id)
}
