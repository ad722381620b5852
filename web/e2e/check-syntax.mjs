// `node --check` of every e2e script (they are plain ESM, outside the TypeScript build).

import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = dirname(fileURLToPath(import.meta.url));
for (const file of readdirSync(dir).filter((f) => f.endsWith(".mjs"))) {
  execFileSync(process.execPath, ["--check", join(dir, file)], { stdio: "inherit" });
}
