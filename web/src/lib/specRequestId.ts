// Request ids for several jobs sent in one CreateJobs call, derived from each job's spec exactly as
// the CLI derives them (services/reelay-cli/src/job/batch.rs): `spec-<first 32 hex digits of the
// SHA-256 of the spec as JSON>`, keys sorted, every field present; the n-th job with the same spec
// in one submit gets `-n` (n ≥ 2). Submitting the same files with the same form again — after a
// lost answer, a reload, a click too many — returns the jobs made the first time instead of new ones.

import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils.js";

/** The fields of a JobSpec that a request id covers (what the form sends). */
export interface SpecFields {
  pipeline: string;
  params: Record<string, string>;
  inputPath: string;
  inputUri: string;
  nodeId: string;
  priority: number;
  maxAttempts: number;
  timeoutSeconds: number;
  labels: Record<string, string>;
}

/** Orders strings as Rust does (by UTF-8 bytes, which is code point order), not by UTF-16 units. */
function byCodePoint(a: string, b: string): number {
  const left = Array.from(a);
  const right = Array.from(b);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const diff = (left[i].codePointAt(0) ?? 0) - (right[i].codePointAt(0) ?? 0);
    if (diff !== 0) return diff;
  }
  return left.length - right.length;
}

function sortedMap(map: Record<string, string>): string {
  const keys = Object.keys(map).sort(byCodePoint);
  return `{${keys.map((key) => `${JSON.stringify(key)}:${JSON.stringify(map[key])}`).join(",")}}`;
}

/**
 * The spec as the CLI's `json::spec` prints it through serde_json: compact, keys sorted. JSON.stringify
 * escapes strings as serde_json does (`"`, `\`, control characters; lowercase `\u00xx`).
 */
export function specJson(spec: SpecFields): string {
  const fields: [string, string][] = [
    ["input_path", JSON.stringify(spec.inputPath)],
    ["input_uri", JSON.stringify(spec.inputUri)],
    ["labels", sortedMap(spec.labels)],
    ["max_attempts", String(spec.maxAttempts)],
    ["node_id", JSON.stringify(spec.nodeId)],
    ["params", sortedMap(spec.params)],
    ["pipeline", JSON.stringify(spec.pipeline)],
    ["priority", String(spec.priority)],
    ["timeout_seconds", String(spec.timeoutSeconds)],
  ];
  return `{${fields.map(([key, value]) => `"${key}":${value}`).join(",")}}`;
}

/** The first 32 hex digits of the SHA-256 of the spec as JSON. */
export function specHash(spec: SpecFields): string {
  return bytesToHex(sha256(utf8ToBytes(specJson(spec)))).slice(0, 32);
}

/** One request id per spec, in order: `spec-<hash>`, `-2`, `-3`… for the same spec again. */
export function specRequestIds(specs: SpecFields[]): string[] {
  const seen = new Map<string, number>();
  return specs.map((spec) => {
    const hash = specHash(spec);
    const count = (seen.get(hash) ?? 0) + 1;
    seen.set(hash, count);
    return count === 1 ? `spec-${hash}` : `spec-${hash}-${count}`;
  });
}
