// Real Reelay processes for the browser tests: a `reelay coordinator` and a `reelay worker` (the
// binary from REELAY_BIN) on free loopback ports with a temporary data dir and a small pipeline
// config; the coordinator or the worker can be killed (SIGKILL, by PID) and started again with the
// same command; the CLI can be run against the coordinator; everything is stopped by PID at the end.

import { execFile, spawn } from "node:child_process";
import { mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { E2eError, artifactsDir } from "./lib.mjs";

/** The `count` pipeline: `steps` progress lines, one every `tenths`/10 s, and count.txt. */
export const CONFIG = `
[[pipeline]]
name = "count"
description = "counts with a progress line per step"
command = ["sh", "-c", """
trap 'exit 143' TERM
i=0
while [ "$i" -lt "$REELAY_PARAM_STEPS" ]; do
  i=$((i + 1))
  echo "::progress $((i * 100 / REELAY_PARAM_STEPS)) counting"
  echo "step $i" >> "$REELAY_OUTPUT_DIR/count.txt"
  sleep "0.$REELAY_PARAM_TENTHS" & wait $!
done
"""]
input_required = false
params = [
  { name = "steps", default = "20", pattern = "[0-9]{1,4}" },
  { name = "tenths", default = "1", pattern = "[1-9]" },
]
`;

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** The `copy` pipeline: copies its input (required) to copy.bin. */
export const COPY_PIPELINE = `
[[pipeline]]
name = "copy"
description = "copies its input to copy.bin"
command = ["sh", "-c", "echo '::progress 50 copying'; cp \\"$REELAY_INPUT\\" \\"$REELAY_OUTPUT_DIR/copy.bin\\"; echo '::progress 100 done'"]
input_required = true
`;

/**
 * Starts a coordinator (extra flags `coordinatorFlags`) and one worker (`workerFlags`, node id
 * `<name>-w0`), both with CONFIG and `extraConfig`. Returns { url, workerId, dir,
 * restartCoordinator(downMs), killWorker(), startWorker(), cli(...args), stop() }.
 */
export async function startCluster({ name, coordinatorFlags = [], workerFlags = [], extraConfig = "" }) {
  const bin = process.env.REELAY_BIN;
  if (!bin) throw new E2eError("set REELAY_BIN to the reelay binary (scripts/web-e2e.sh does)");
  const dir = mkdtempSync(join(tmpdir(), `reelay-web-${name}-`));
  const config = join(dir, "pipelines.toml");
  writeFileSync(config, CONFIG + extraConfig);
  const port = await freePort();
  const workerPort = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logs = artifactsDir();
  const start = (role, args) => {
    const log = openSync(join(logs, `${name}-${role}.log`), "a");
    return spawn(bin, args, { stdio: ["ignore", log, log] });
  };
  const coordinatorArgs = [
    "coordinator", "--listen", `127.0.0.1:${port}`, "--data-dir", join(dir, "coordinator"), "--config", config,
    ...coordinatorFlags,
  ];
  const workerId = `${name}-w0`;
  const workerArgs = [
    "worker", "--listen", `127.0.0.1:${workerPort}`, "--data-dir", join(dir, "worker"), "--config", config,
    "--coordinator", url, "--node-id", workerId, "--executor", "process", "--slots", "2",
    ...workerFlags,
  ];
  let coordinator = start("coordinator", coordinatorArgs);
  let worker = start("worker", workerArgs);
  const waitServing = async () => {
    for (let i = 0; i < 200; i++) {
      try {
        const response = await fetch(`${url}/`);
        if (response.ok) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new E2eError(`the coordinator at ${url} did not come up (logs in ${logs})`);
  };
  await waitServing();
  const exited = (child) => child.exitCode !== null || child.signalCode !== null;
  return {
    url,
    workerId,
    /** The cluster's temporary folder (removed by stop). */
    dir,
    /** SIGKILL of the coordinator, by its PID, then the same command again after `downMs`. */
    async restartCoordinator(downMs) {
      const gone = new Promise((r) => coordinator.once("exit", r));
      coordinator.kill("SIGKILL");
      await gone;
      await new Promise((r) => setTimeout(r, downMs));
      coordinator = start("coordinator", coordinatorArgs);
      await waitServing();
    },
    /** SIGKILL of the worker, by its PID (its jobs keep their state; the node goes offline). */
    async killWorker() {
      if (exited(worker)) throw new E2eError(`the worker already exited (${worker.exitCode ?? worker.signalCode})`);
      const gone = new Promise((r) => worker.once("exit", r));
      worker.kill("SIGKILL");
      await gone;
    },
    /** The worker again, with the same command (same node id, port and data dir). */
    startWorker() {
      if (!exited(worker)) throw new E2eError(`the worker (PID ${worker.pid}) is still running`);
      worker = start("worker", workerArgs);
    },
    /** Runs `reelay <args> --server <url>` and resolves with its stdout (rejects when it fails). */
    cli(...args) {
      return new Promise((resolve, reject) => {
        execFile(bin, [...args, "--server", url], { timeout: 20_000 }, (error, stdout, stderr) => {
          if (error) reject(new E2eError(`reelay ${args.join(" ")} failed: ${stderr || error.message}`));
          else resolve(stdout);
        });
      });
    },
    async stop() {
      const children = [coordinator, worker];
      for (const child of children) if (!exited(child)) child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 1000));
      for (const child of children) if (!exited(child)) child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
