// Runs the browser tests against the mock coordinator: serves web/dist with the mock
// (vite preview, REELAY_MOCK=1) on a free loopback port, runs run.mjs and restart-mock.mjs,
// stops the server. Build first (npm run e2e:mock does).

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

const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const server = spawn(process.execPath, [join(web, "node_modules", "vite", "bin", "vite.js"), "preview", "--host", "127.0.0.1", "--port", String(port), "--strictPort"], {
  cwd: web,
  env: { ...process.env, REELAY_MOCK: "1", VITE_CONFIG_NATIVE_IGNORE_WARNING: "true" },
  stdio: ["ignore", "ignore", "inherit"],
});
let code = 1;
try {
  await waitUntilUp(`${url}/jobs`);
  const env = { ...process.env, REELAY_URL: url };
  const first = await run("run.mjs", env);
  const second = await run("restart-mock.mjs", env);
  code = first || second;
} finally {
  server.kill("SIGTERM");
}
process.exit(code);
