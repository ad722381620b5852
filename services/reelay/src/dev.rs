//! `reelay dev`: a coordinator and one worker in one process, with a built-in example config.
//!
//! The built-in config has `count`, which needs nothing installed (it counts through progress and
//! writes `count.txt`), `transcode`, the reference ffmpeg pipeline, and `transcode-chunked`, the
//! same cut into pieces (its steps `chunk-split`, `chunk-encode`, `chunk-join`). Their scripts are
//! written to `<data-dir>/bin/`; they need ffmpeg on the PATH.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reelay_core::pipeline::Pipelines;

use crate::logging;
use crate::servers::{self, CommonArgs, CoordinatorTuning, NodeTuning};

/// The reference transcode pipeline, shipped inside the binary.
const TRANSCODE_SCRIPT: &str = include_str!("../../../deploy/pipeline/reelay-transcode");
/// The steps of `transcode-chunked` (split, encode a piece, join), shipped inside the binary.
const CHUNK_SCRIPT: &str = include_str!("../../../deploy/pipeline/reelay-chunk");

/// The `count` demo: progress lines, a log line per step, an output file; stops cleanly on SIGTERM.
const COUNT_SCRIPT: &str = r#"set -eu
steps=${REELAY_PARAM_STEPS}
ms=${REELAY_PARAM_INTERVAL_MS}
pause=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
i=0
trap 'echo "stopped at step $i of $steps" >&2; exit 143' TERM
echo "counting to $steps, one step every ${ms}ms"
while [ "$i" -lt "$steps" ]; do
  i=$((i + 1))
  echo "::progress $((i * 100 / steps)) counting"
  echo "step $i" >> "$REELAY_OUTPUT_DIR/count.txt"
  sleep "$pause" & wait $!
done
echo "done: $REELAY_OUTPUT_DIR/count.txt"
exit "${REELAY_PARAM_EXIT_CODE}"
"#;

/// Flags of `reelay dev`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DevArgs {
    /// Address of the coordinator: gRPC, grpc-web, the web UI.
    #[arg(long, env = "REELAY_LISTEN", default_value = "127.0.0.1:7070")]
    pub(crate) listen: SocketAddr,
    /// Address of the built-in worker (port 0: any free port).
    #[arg(long, env = "REELAY_WORKER_LISTEN", default_value = "127.0.0.1:0")]
    pub(crate) worker_listen: SocketAddr,
    /// Where state and outputs go (`coordinator/`, `worker/` inside); a relative path is taken from
    /// the directory the command runs in.
    #[arg(long, env = "REELAY_DATA_DIR", default_value = "reelay-data", value_parser = servers::absolute_path)]
    pub(crate) data_dir: PathBuf,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) coordinator: CoordinatorTuning,
    #[command(flatten)]
    pub(crate) node: NodeTuning,
    /// Id of the built-in worker.
    #[arg(long, env = "REELAY_NODE_ID", default_value = "local")]
    pub(crate) node_id: String,
}

pub(crate) async fn run(mut args: DevArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.common.log_format);
    // `dev` has no tokens: both of its ports stay on loopback unless told --insecure.
    for address in [args.listen, args.worker_listen] {
        servers::check_exposure(
            address,
            false,
            args.common.insecure,
            "--api-token (use `reelay coordinator`)",
        )?;
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    // TLS, when given, is served on both ports; the built-in worker and the coordinator verify
    // each other with --tls-ca (or the system's roots), so the certificate must be valid for the
    // loopback address they use.
    let tls = args.common.tls.server()?;
    let peer_tls = args.common.tls.peers()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let pipelines = match &args.common.config {
        Some(path) => servers::load_pipelines(Some(path))?,
        None => builtin_pipelines(&args.data_dir)?,
    };
    if args.node.executor == "auto" {
        // The embedded default: local processes, nothing else to install.
        args.node.executor = "process".to_owned();
    }
    let coordinator_listener = servers::bind(args.listen, "coordinator").await?;
    let worker_listener = servers::bind(args.worker_listen, "built-in worker").await?;
    let coordinator_address = coordinator_listener.local_addr()?;
    let worker_address = worker_listener.local_addr()?;
    let executor = reelay_worker::make_executor(&args.node.executor).await?;
    let shutdown = servers::shutdown_on_signal();

    let coordinator = reelay_coordinator::run(
        servers::coordinator_config(
            args.data_dir.join("coordinator"),
            pipelines.clone(),
            &args.coordinator,
            servers::Tokens::default(),
            tls.clone(),
            peer_tls.clone(),
            args.common.drain_grace,
        ),
        coordinator_listener,
        shutdown.clone(),
    );
    let worker = reelay_worker::run(
        reelay_worker::WorkerConfig {
            node: args
                .node
                .settings(args.node_id.clone(), args.data_dir.join("worker")),
            pipelines,
            coordinator: Some(format!("{scheme}://{}", loopback(coordinator_address))),
            advertise: format!("{scheme}://{}", loopback(worker_address)),
            cluster_token: None,
            shutdown_grace: Duration::from_secs(10),
            drain_grace: args.common.drain_grace,
            tls,
            coordinator_tls: peer_tls,
        },
        executor,
        worker_listener,
        shutdown.clone(),
    );
    let address = loopback(coordinator_address);
    let connect = match (scheme, &args.common.tls.tls_ca) {
        ("https", Some(ca)) => format!(" --server https://{address} --tls-ca {}", ca.display()),
        ("https", None) => format!(" --server https://{address}"),
        _ => String::new(),
    };
    eprintln!(
        "\n  Reelay is running: open {scheme}://{address}\n  Try:  reelay job submit count --param steps=50 --watch{connect}\n  Stop: Ctrl-C\n"
    );
    let (coordinator, worker) = tokio::join!(coordinator, worker);
    coordinator?;
    worker?;
    Ok(ExitCode::SUCCESS)
}

/// The address to reach a listener at from this machine.
fn loopback(address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], address.port()))
    } else {
        address
    }
}

/// The built-in example config; writes the transcode script next to the data.
fn builtin_pipelines(data_dir: &Path) -> anyhow::Result<Pipelines> {
    let bin = data_dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let write = |name: &str, script: &str| -> anyhow::Result<PathBuf> {
        let path = bin.join(name);
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(std::fs::canonicalize(&path)?)
    };
    let transcode = write("reelay-transcode", TRANSCODE_SCRIPT)?;
    let chunk = write("reelay-chunk", CHUNK_SCRIPT)?;
    let config = builtin_config(&transcode.to_string_lossy(), &chunk.to_string_lossy());
    Pipelines::parse(&config, "(built-in config)")
        .map_err(|err| anyhow::anyhow!("built-in config: {err}"))
}

fn builtin_config(transcode: &str, chunk: &str) -> String {
    let count = toml_string(COUNT_SCRIPT);
    let transcode = toml_string(transcode);
    let chunk = toml_string(chunk);
    format!(
        r#"[[pipeline]]
name = "count"
description = "Counts to `steps`, reporting progress; needs nothing installed"
image = "reelay/busybox:latest"
command = ["sh", "-c", {count}]
input_required = false
outputs = ["count.txt"]
timeout_seconds = 3600
params = [
  {{ name = "steps", default = "20", pattern = "[0-9]{{1,5}}", description = "how many steps" }},
  {{ name = "interval_ms", default = "100", pattern = "[0-9]{{1,6}}", description = "pause per step" }},
  {{ name = "exit_code", default = "0", pattern = "[0-9]{{1,3}}", description = "exit code at the end" }},
]

[[pipeline]]
name = "transcode"
description = "H.264 transcode with a thumbnail (needs ffmpeg)"
image = "reelay/pipeline:latest"
command = [{transcode}]
input_required = true
outputs = ["final_without_post_process__*.mp4", "thumbnail.jpg"]
timeout_seconds = 3600
params = [
  {{ name = "height", default = "720", pattern = "[0-9]{{2,3}}[02468]", description = "output height in pixels (even)" }},
  {{ name = "crf", default = "23", pattern = "[0-9]{{1,2}}", description = "quality: lower is better" }},
  {{ name = "preset", default = "veryfast", pattern = "[a-z]+", description = "x264 preset" }},
]

[[pipeline]]
name = "transcode-chunked"
description = "H.264 transcode, the pieces encoded in parallel (needs ffmpeg)"
input_required = true
steps = {{ split = "chunk-split", map = "chunk-encode", join = "chunk-join" }}
params = [
  {{ name = "height", default = "720", pattern = "[0-9]{{2,3}}[02468]", description = "output height in pixels (even)" }},
  {{ name = "crf", default = "23", pattern = "[0-9]{{1,2}}", description = "quality: lower is better" }},
  {{ name = "preset", default = "veryfast", pattern = "[a-z]+", description = "x264 preset" }},
  {{ name = "segment_seconds", default = "10", pattern = "[0-9]{{1,5}}", description = "about how long each piece is" }},
]

[[pipeline]]
name = "chunk-split"
description = "transcode-chunked, step 1: pieces, audio, manifest"
image = "reelay/pipeline:latest"
command = [{chunk}, "split"]
input_required = true
outputs = ["manifest.json"]
params = [ {{ name = "segment_seconds", default = "10", pattern = "[0-9]{{1,5}}" }} ]

[[pipeline]]
name = "chunk-encode"
description = "transcode-chunked, step 2: one piece to H.264"
image = "reelay/pipeline:latest"
command = [{chunk}, "encode"]
input_required = true
outputs = ["piece-*.mp4"]
params = [
  {{ name = "height", default = "720", pattern = "[0-9]{{2,3}}[02468]" }},
  {{ name = "crf", default = "23", pattern = "[0-9]{{1,2}}" }},
  {{ name = "preset", default = "veryfast", pattern = "[a-z]+" }},
]

[[pipeline]]
name = "chunk-join"
description = "transcode-chunked, step 3: joined, checked frame by frame"
image = "reelay/pipeline:latest"
command = [{chunk}, "join"]
input_required = true
outputs = ["final_without_post_process__*.mp4", "thumbnail.jpg"]
"#
    )
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_config_parses() {
        let pipelines = Pipelines::parse(
            &builtin_config("/x/reelay-transcode", "/x/reelay-chunk"),
            "builtin",
        )
        .unwrap();
        let count = pipelines.get("count").unwrap();
        assert_eq!(count.command[0], "sh");
        assert!(count.command[2].contains("::progress"));
        assert!(!count.input_required);
        assert!(pipelines.get("transcode").unwrap().input_required);
        let chunked = pipelines.get("transcode-chunked").unwrap();
        assert_eq!(chunked.steps.as_ref().unwrap().map, "chunk-encode");
        assert_eq!(pipelines.get("chunk-join").unwrap().command[1], "join");
    }
}
