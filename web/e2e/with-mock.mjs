// Runs the browser tests against the mock coordinator: serves web/dist with the mock
// (vite preview, REELAY_MOCK=1) on free loopback ports — one open, one that wants a token — runs
// run.mjs and restart-mock.mjs against the first, auth-mock.mjs against the second, and stops both.
// Build first (npm run e2e:mock does).

import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitUntilUp(url, ms = 30_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the mock server did not answer at ${url} within ${ms} ms`);
}

function run(script, env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(web, "e2e", script)], { stdio: "inherit", env });
    child.on("exit", (code) => resolve(code ?? 1));
  });
}

/** Starts `vite preview` with the mock on a free port; returns { url, stop }. */
async function startMock(extraEnv = {}) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = spawn(process.execPath, [join(web, "node_modules", "vite", "bin", "vite.js"), "preview", "--host", "127.0.0.1", "--port", String(port), "--strictPort"], {
    cwd: web,
    env: { ...process.env, REELAY_MOCK: "1", ...extraEnv },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const stop = () => server.kill("SIGTERM");
  try {
    await waitUntilUp(`${url}/jobs`);
  } catch (error) {
    stop();
    throw error;
  }
  return { url, stop };
}

const token = "e2e-secret-token";
const open = await startMock();
const guarded = await startMock({ REELAY_MOCK_TOKEN: token }).catch((error) => {
  open.stop();
  throw error;
});
let code = 1;
try {
  const codes = [
    await run("run.mjs", { ...process.env, REELAY_URL: open.url }),
    await run("restart-mock.mjs", { ...process.env, REELAY_URL: open.url }),
    await run("auth-mock.mjs", { ...process.env, REELAY_URL: guarded.url, REELAY_MOCK_TOKEN: token }),
  ];
  code = codes.find((c) => c !== 0) ?? 0;
} finally {
  open.stop();
  guarded.stop();
}
process.exit(code);
