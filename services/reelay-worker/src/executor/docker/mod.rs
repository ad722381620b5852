//! The Docker executor: one container per attempt, through the Docker Engine API (bollard).
//!
//! It owns everything between a [`RunSpec`] and a container: the image, the container's
//! configuration, its log lines, stopping it, re-attaching to it after a worker restart, and
//! removing containers that belong to no known attempt. It does not own the attempt's output
//! directory (the runner creates it, empty; this executor only makes it writable for the
//! container's user) nor what happens to the outputs.
//!
//! # The container
//! - Name `reelay-<job id>-<attempt>`, labels `reelay.managed=true`, `reelay.job-id`,
//!   `reelay.node-id`, `reelay.attempt`, `reelay.pipeline`. A container left with that name by an
//!   earlier try of the same attempt is removed and made again (the runner gives each try an
//!   empty output directory, so the attempt starts over).
//! - `Cmd` = the pipeline's argv, no shell; the image's `Entrypoint` is kept (an image with one
//!   gets the argv as its arguments). Working directory `/output`, as the process executor runs in
//!   the output directory.
//! - Env: the pipeline protocol, with `REELAY_INPUT=/input/<file name>` (empty without input)
//!   and `REELAY_OUTPUT_DIR=/output`. The input file is bind-mounted read-only at
//!   `/input/<file name>`, the output directory read-write at `/output`.
//! - Network: the pipeline's `network`, `none` by default. Limits: `resources.cpus` as
//!   `NanoCpus`, `resources.memory_mb` as `Memory` with `MemorySwap` equal (no swap).
//!   `Init` (docker-init, so SIGTERM reaches the program and zombies are reaped) unless the
//!   engine has no init binary; `no-new-privileges`; not auto-removed (its exit status and logs
//!   must survive a worker restart; [`Executor::cleanup`] removes it).
//!
//! # Decisions
//! - **User**: the pipeline's `user` when set; else the image's `User` when the image names one;
//!   else `1000:1000` — never root by default. A uid needs no `/etc/passwd` entry to run; a
//!   pipeline whose image truly needs root says `user = "0:0"`. The output directory is chowned to
//!   a numeric uid (and gid); for a user given by name, or when chown is not permitted, it is made
//!   mode 0777. The input file must be readable by that user.
//! - **Pull**: `never` — an absent image fails the run with `image not found: NAME`;
//!   `if-missing` — pulled when absent (a failed pull is `image not found: NAME (pulling it
//!   failed: …)`); `always` — pulled before every run, a failed pull fails the run.
//! - **Stop**: SIGTERM through the engine, the grace period, then SIGKILL. With the init
//!   process, a program that dies of the signal makes the container exit 143 (TERM) or 137 (KILL),
//!   reported as signal 15 or 9. A program that cannot be executed makes the container exit 127
//!   with docker-init's reason on stderr (the engine cannot refuse the start).
//! - **Re-attach** finds the container by `run_ref`, else by its job-id and attempt labels (then
//!   it reports [`ExecEvent::Started`] with the id it found). One that exited meanwhile gives its
//!   remaining lines and real exit code; one created but never started is started; with no
//!   `run_ref` and none found, it was never made (the worker stopped just before) and the run
//!   starts now.
//! - **Engine down**: [`Executor::check_ready`] reports it (a node condition) and a run does not
//!   start ([`ExecError::Unavailable`]). A run or re-attach that is under way waits for the engine
//!   to answer again and follows the container from where it was; only a container that is gone
//!   then is [`ExecError::Lost`] (`container lost`). The client negotiates the API version
//!   lazily, so an executor made while the engine is down works once it answers.
//!
//! # Logs
//! Read with `timestamps`: each line's `time` is its log entry's RFC 3339 time with nine fraction
//! digits (plus `k` ns for the `k`-th line of an entry, see the `timestamp` module) and is the resume point
//! of [`Executor::reattach`]. A re-attach resumes right after the line with exactly that time, in
//! log order — not after every line with an earlier time: Docker's stdout and stderr timestamps
//! interleave (see the `follow` module). After the exit the logs are read once more without `follow`,
//! because a follow stream may end before the container's last entry reached it. Lines are split
//! like the process executor's (`\n`, `\r\n`, lone `\r`); Docker itself only ends an entry at
//! `\n` (or after 16 KiB), so a `\r`-only progress meter arrives in 16 KiB batches.

mod create;
mod engine;
mod follow;
mod orphans;
mod timestamp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::ListContainersOptionsBuilder;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use self::engine::{
    Backoff, describe, is_not_found, is_unreachable, remove_quietly, start_error, wait_for_engine,
};
use self::follow::Follower;
use super::{EventSink, ExecError, ExecEvent, Executor, ResumePoint, RunExit, RunSpec};

/// Label on every container Reelay makes.
pub const LABEL_MANAGED: &str = "reelay.managed";
/// Label: the job the container runs an attempt of.
pub const LABEL_JOB_ID: &str = "reelay.job-id";
/// Label: the worker node that made the container.
pub const LABEL_NODE_ID: &str = "reelay.node-id";
/// Label: the attempt number.
pub const LABEL_ATTEMPT: &str = "reelay.attempt";
/// Label: the pipeline's name (for people reading `docker ps`).
pub const LABEL_PIPELINE: &str = "reelay.pipeline";

/// bollard's own default: the longest wait for a response's head (not its streamed body).
const CLIENT_TIMEOUT_SECONDS: u64 = 120;
/// How long a readiness ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs pipelines in Docker containers.
#[derive(Debug)]
pub struct DockerExecutor {
    /// The engine's socket when not the default one (`DOCKER_HOST` or `/var/run/docker.sock`).
    socket: Option<String>,
    /// The engine client, made and version-negotiated the first time the engine answers (bollard
    /// cannot even make a client while the socket file is missing).
    docker: OnceCell<Docker>,
    /// Cleared when the engine turned out to have no docker-init binary.
    init_supported: AtomicBool,
}

impl DockerExecutor {
    /// A client of the local engine (`DOCKER_HOST` or `/var/run/docker.sock`). An engine that does
    /// not answer yet is no error: [`Executor::check_ready`] says so until it does.
    pub async fn connect() -> Result<Self, ExecError> {
        Self::connect_to(None).await
    }

    /// A client of the engine listening on the Unix socket at `path`; like [`Self::connect`].
    pub async fn with_socket(path: &str) -> Result<Self, ExecError> {
        Self::connect_to(Some(path.to_owned())).await
    }

    async fn connect_to(socket: Option<String>) -> Result<Self, ExecError> {
        let executor = DockerExecutor {
            socket,
            docker: OnceCell::new(),
            init_supported: AtomicBool::new(true),
        };
        match tokio::time::timeout(PING_TIMEOUT, executor.engine()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %describe(&err), "docker engine does not answer yet");
            }
            Err(_) => tracing::warn!("docker engine does not answer yet (no reply in time)"),
        }
        Ok(executor)
    }

    /// The client, once the engine answered; the first success is kept.
    async fn engine(&self) -> Result<&Docker, DockerError> {
        self.docker
            .get_or_try_init(|| async {
                let docker = match &self.socket {
                    Some(path) => Docker::connect_with_unix(
                        path,
                        CLIENT_TIMEOUT_SECONDS,
                        bollard::API_DEFAULT_VERSION,
                    )?,
                    None => Docker::connect_with_local_defaults()?,
                };
                docker.negotiate_version().await
            })
            .await
    }

    /// The client, waiting as long as the engine does not answer.
    async fn engine_when_up(&self) -> &Docker {
        let mut backoff = Backoff::default();
        let mut warned = false;
        loop {
            match tokio::time::timeout(PING_TIMEOUT, self.engine()).await {
                Ok(Ok(docker)) => return docker,
                Ok(Err(err)) if !warned => {
                    tracing::warn!(error = %describe(&err), "docker engine does not answer; waiting for it");
                    warned = true;
                }
                Ok(Err(_)) | Err(_) => {}
            }
            backoff.sleep().await;
        }
    }

    /// Creates and starts the attempt's container; returns its id.
    async fn create_and_start(
        &self,
        docker: &Docker,
        spec: &RunSpec,
        image: &str,
        user: Option<String>,
    ) -> Result<String, ExecError> {
        let name = create::container_name(spec);
        let init = self.init_supported.load(Ordering::Relaxed);
        let body = create::container_body(spec, image, user.clone(), init)?;
        let id = create::create(docker, &name, body).await?;
        let Err(err) = docker.start_container(&id, None).await else {
            return Ok(id);
        };
        remove_quietly(docker, &id).await;
        if !(init && describe(&err).contains("docker-init")) {
            return Err(start_error(&err));
        }
        tracing::warn!(error = %describe(&err), "the docker engine has no docker-init: containers run without an init process");
        self.init_supported.store(false, Ordering::Relaxed);
        let body = create::container_body(spec, image, user, false)?;
        let id = create::create(docker, &name, body).await?;
        if let Err(err) = docker.start_container(&id, None).await {
            remove_quietly(docker, &id).await;
            return Err(start_error(&err));
        }
        Ok(id)
    }

    /// The attempt's container: `run_ref` if it is this attempt's, else found by its labels.
    /// `None` when there is none.
    async fn find(
        &self,
        docker: &Docker,
        spec: &RunSpec,
        run_ref: &str,
    ) -> Result<Option<(String, Option<ContainerStateStatusEnum>)>, DockerError> {
        let attempt = spec.attempt.to_string();
        if !run_ref.is_empty() {
            match docker.inspect_container(run_ref, None).await {
                Ok(inspect) => {
                    let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
                    let ours = labels.is_some_and(|labels| {
                        labels.get(LABEL_JOB_ID) == Some(&spec.job_id)
                            && labels.get(LABEL_ATTEMPT) == Some(&attempt)
                    });
                    if let (true, Some(id)) = (ours, inspect.id) {
                        return Ok(Some((id, inspect.state.and_then(|state| state.status))));
                    }
                }
                Err(err) if is_not_found(&err) => {}
                Err(err) => return Err(err),
            }
        }
        let filters = std::collections::HashMap::from([(
            "label",
            vec![
                format!("{LABEL_JOB_ID}={}", spec.job_id),
                format!("{LABEL_ATTEMPT}={attempt}"),
            ],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = docker.list_containers(Some(options)).await?;
        let Some(id) = found.into_iter().find_map(|summary| summary.id) else {
            return Ok(None);
        };
        match docker.inspect_container(&id, None).await {
            Ok(inspect) => Ok(Some((id, inspect.state.and_then(|state| state.status)))),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[async_trait::async_trait]
impl Executor for DockerExecutor {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn check_ready(&self) -> Result<(), String> {
        let ping = async { self.engine().await?.ping().await };
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("docker engine does not answer: {}", describe(&err))),
            Err(_) => Err(format!(
                "docker engine does not answer: no reply within {}s",
                PING_TIMEOUT.as_secs()
            )),
        }
    }

    async fn run(
        &self,
        spec: &RunSpec,
        events: EventSink,
        stop: CancellationToken,
    ) -> Result<RunExit, ExecError> {
        let Some(image) = spec
            .pipeline
            .image
            .as_deref()
            .map(str::trim)
            .filter(|image| !image.is_empty())
        else {
            return Err(ExecError::Start(format!(
                "pipeline {} has no image",
                spec.pipeline.name
            )));
        };
        let docker = self
            .engine()
            .await
            .map_err(|err| engine::engine_error(&err))?;
        let inspect = tokio::select! {
            inspect = create::ensure_image(docker, image, spec.pipeline.pull) => inspect?,
            () = stop.cancelled() => return Ok(RunExit { code: None, signal: None, stopped: true }),
        };
        let (user, runs_as) = create::choose_user(spec.pipeline.user.as_deref(), &inspect);
        create::prepare_output_dir(&spec.output_dir, &runs_as)?;
        create::warn_if_unreadable(spec.input_path.as_deref(), &runs_as);
        let id = self.create_and_start(docker, spec, image, user).await?;
        tracing::debug!(job_id = %spec.job_id, attempt = spec.attempt, container = %id, user = %runs_as, "container started");
        // The receiver only goes away when the worker shuts down; the container goes on.
        let _ = events
            .send(ExecEvent::Started {
                run_ref: id.clone(),
            })
            .await;
        Follower::new(docker.clone(), id, events, stop, spec.grace, None)
            .run_to_exit()
            .await
    }

    async fn reattach(
        &self,
        spec: &RunSpec,
        run_ref: &str,
        resume: &ResumePoint,
        events: EventSink,
        stop: CancellationToken,
    ) -> Result<RunExit, ExecError> {
        let docker = self.engine_when_up().await;
        let found = loop {
            match self.find(docker, spec, run_ref).await {
                Ok(found) => break found,
                Err(err) if is_unreachable(&err) => wait_for_engine(docker).await,
                Err(err) => {
                    return Err(ExecError::Lost(format!(
                        "cannot re-attach to the container: {}",
                        describe(&err)
                    )));
                }
            }
        };
        let Some((id, state)) = found else {
            if run_ref.is_empty() {
                // The worker stopped after recording the attempt as running but before its
                // container existed (no run_ref, nothing with its labels): nothing ran, so the
                // attempt starts now instead of failing as lost.
                tracing::info!(job_id = %spec.job_id, attempt = spec.attempt, "the attempt's container was never made; starting it");
                return self.run(spec, events, stop).await;
            }
            return Err(ExecError::Lost("container lost".to_owned()));
        };
        if id != run_ref {
            let _ = events
                .send(ExecEvent::Started {
                    run_ref: id.clone(),
                })
                .await;
        }
        if state == Some(ContainerStateStatusEnum::CREATED) {
            // Made but never started (the worker stopped in between): start it now.
            docker
                .start_container(&id, None)
                .await
                .map_err(|err| ExecError::Lost(format!("container lost: {}", describe(&err))))?;
        }
        tracing::info!(job_id = %spec.job_id, attempt = spec.attempt, container = %id, ?state, "re-attached");
        let resume_after = Some(resume.last_log_time.clone());
        Follower::new(docker.clone(), id, events, stop, spec.grace, resume_after)
            .run_to_exit()
            .await
    }

    async fn remove_orphans(&self, node_id: &str, known: &[(String, u32)]) -> Vec<String> {
        match self.engine().await {
            Ok(docker) => orphans::remove_orphans(docker, node_id, known).await,
            Err(err) => {
                tracing::warn!(error = %describe(&err), "cannot look for orphan containers: docker engine does not answer");
                Vec::new()
            }
        }
    }

    async fn cleanup(&self, run_ref: &str) {
        if run_ref.is_empty() {
            return;
        }
        match self.engine().await {
            Ok(docker) => {
                if !remove_quietly(docker, run_ref).await {
                    engine::remove_eventually(docker.clone(), run_ref.to_owned());
                }
            }
            Err(err) => {
                tracing::warn!(container = run_ref, error = %describe(&err), "cannot remove the container: docker engine does not answer");
            }
        }
    }
}
