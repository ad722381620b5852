// The upload logic without a network: the id the CLI derives too, streaming hashes, and the
// resume loop against a scripted coordinator (GET /upload/{id}, POST /upload) on a fake clock.

import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { describe, expect, it } from "vitest";
import { FakeClock, flush } from "../test/fakeClock";
import {
  MAX_FAILURES,
  RateMeter,
  UploadAborted,
  UploadHttpError,
  hashBlob,
  uploadFile,
  uploadId,
  type UploadHttp,
  type UploadInfo,
  type UploadProgress,
  type UploadQuery,
} from "./upload";

const MiB = 1024 * 1024;

function bytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + 3) % 251;
  return out;
}

/**
 * A coordinator that keeps whole 8 MiB parts, as the real one does. `script` may fail a POST:
 * return an error to throw after `storeFirst` bytes of the body were stored.
 */
class FakeCoordinator implements UploadHttp {
  received = 0;
  complete = false;
  readonly posts: { query: UploadQuery; bodySize: number }[] = [];
  gets = 0;
  failPost: ((n: number) => { error: UploadHttpError; storeFirst: number } | null) | null = null;
  failGet: ((n: number) => UploadHttpError | null) | null = null;
  constructor(
    readonly name: string,
    readonly size: number,
    readonly sha: string,
    readonly partSize = 8 * MiB,
  ) {}

  private info(): UploadInfo {
    return { id: uploadId(this.name, this.size, this.sha), name: this.name, size: this.size, sha256: this.sha, received: this.complete ? this.size : this.received, complete: this.complete };
  }

  async get(id: string): Promise<UploadInfo | null> {
    this.gets++;
    const failure = this.failGet?.(this.gets);
    if (failure) throw failure;
    expect(id).toBe(uploadId(this.name, this.size, this.sha));
    return this.received === 0 && !this.complete ? null : this.info();
  }

  async post(query: UploadQuery, body: Blob, onProgress: (sent: number) => void): Promise<UploadInfo> {
    this.posts.push({ query, bodySize: body.size });
    if (query.offset !== this.received) throw new UploadHttpError(409, `resume from offset ${this.received}`);
    const failure = this.failPost?.(this.posts.length);
    if (failure) {
      onProgress(failure.storeFirst);
      this.received = Math.floor((query.offset + failure.storeFirst) / this.partSize) * this.partSize;
      throw failure.error;
    }
    onProgress(body.size / 2);
    onProgress(body.size);
    const digest = bytesToHex(sha256(new Uint8Array(await body.arrayBuffer())));
    if (query.offset === 0 && digest !== query.sha256) throw new UploadHttpError(400, "sha256: mismatch; nothing was kept");
    this.complete = true;
    return this.info();
  }
}

describe("upload ids", () => {
  it("are the UUID v8 the CLI derives from name, size and SHA-256", () => {
    // The same vector as services/reelay-cli/src/job/upload/digest.rs.
    const sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    expect(uploadId("hello.txt", 5, sha)).toBe("6c7e50bb-e9d3-864e-96af-bb351c085c9f");
    expect(uploadId("hello2.txt", 5, sha)).not.toBe(uploadId("hello.txt", 5, sha));
    expect(uploadId("hello.txt", 5, sha)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe("hashBlob", () => {
  it("hashes in chunks to the one-shot SHA-256, reporting progress", async () => {
    expect(await hashBlob(new Blob([new TextEncoder().encode("hello")]))).toBe("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    const data = bytes(10_000);
    const seen: number[] = [];
    const digest = await hashBlob(new Blob([data]), (done) => seen.push(done), undefined, 4096);
    expect(digest).toBe(bytesToHex(sha256(data)));
    expect(seen.slice(0, 3)).toEqual([4096, 8192, 10_000]);
    expect(await hashBlob(new Blob([]))).toBe(bytesToHex(sha256(new Uint8Array())));
  });

  it("stops when aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(hashBlob(new Blob([bytes(10)]), () => {}, controller.signal)).rejects.toBeInstanceOf(UploadAborted);
  });
});

describe("RateMeter", () => {
  it("counts from the last restart", async () => {
    const clock = new FakeClock();
    const meter = new RateMeter(clock);
    expect(meter.rate(100)).toBe(0);
    expect(meter.eta(100, 1000)).toBeNull();
    meter.restart(400);
    await clock.advance(2000);
    expect(meter.rate(600)).toBe(100);
    expect(meter.eta(600, 1000)).toBe(4);
  });
});

describe("uploadFile", () => {
  const data = bytes(20 * MiB + 123);
  const digest = bytesToHex(sha256(data));
  const file = () => new File([data], "clip.mp4");

  it("hashes, sends everything from offset 0 and resolves with the complete upload", async () => {
    const coordinator = new FakeCoordinator("clip.mp4", data.length, digest);
    const progress: UploadProgress[] = [];
    const upload = await uploadFile(file(), coordinator, { onProgress: (p) => progress.push(p), clock: new FakeClock() });
    expect(upload.complete).toBe(true);
    expect(upload.id).toBe(uploadId("clip.mp4", data.length, digest));
    expect(coordinator.posts).toEqual([{ query: { name: "clip.mp4", size: data.length, sha256: digest, id: upload.id, offset: 0 }, bodySize: data.length }]);
    expect(progress[0].phase).toBe("hashing");
    expect(progress.at(-1)).toMatchObject({ phase: "uploading", done: data.length, total: data.length, resumedFrom: 0 });
  });

  it("resumes what the coordinator kept of an earlier try, and sends nothing for a complete one", async () => {
    const coordinator = new FakeCoordinator("clip.mp4", data.length, digest);
    coordinator.received = 16 * MiB;
    const progress: UploadProgress[] = [];
    await uploadFile(file(), coordinator, { onProgress: (p) => progress.push(p), clock: new FakeClock(), sha256: digest });
    expect(coordinator.posts.map((p) => [p.query.offset, p.bodySize])).toEqual([[16 * MiB, data.length - 16 * MiB]]);
    expect(progress.find((p) => p.phase === "uploading")).toMatchObject({ done: 16 * MiB, resumedFrom: 16 * MiB });

    const again = await uploadFile(file(), coordinator, { clock: new FakeClock(), sha256: digest });
    expect(again.complete).toBe(true);
    expect(coordinator.posts).toHaveLength(1);
  });

  it("after a broken request asks what is stored and sends only the rest", async () => {
    const coordinator = new FakeCoordinator("clip.mp4", data.length, digest);
    // The first POST breaks after 10 MiB went: one 8 MiB part is kept.
    coordinator.failPost = (n) => (n === 1 ? { error: new UploadHttpError(0, "the connection broke"), storeFirst: 10 * MiB } : null);
    const clock = new FakeClock();
    const progress: UploadProgress[] = [];
    const done = uploadFile(file(), coordinator, { onProgress: (p) => progress.push(p), clock, random: () => 0, sha256: digest });
    await flush(200);
    expect(clock.delays).toEqual([500]);
    expect(progress.at(-1)?.retrying).toBe("the connection broke");
    await clock.advance(500);
    const upload = await done;
    expect(upload.complete).toBe(true);
    expect(coordinator.posts.map((p) => p.query.offset)).toEqual([0, 8 * MiB]);
    expect(coordinator.posts[1].bodySize).toBe(data.length - 8 * MiB);
  });

  it("does not retry what cannot succeed: a refused hash is reported as the coordinator says it", async () => {
    const coordinator = new FakeCoordinator("clip.mp4", data.length, "00".repeat(32));
    const lying = uploadFile(file(), coordinator, { clock: new FakeClock(), sha256: "00".repeat(32) });
    await expect(lying).rejects.toMatchObject({ status: 400, message: "sha256: mismatch; nothing was kept" });
    expect(coordinator.posts).toHaveLength(1);
  });

  it("gives up after failures in a row that store nothing more, saying how to resume", async () => {
    const coordinator = new FakeCoordinator("clip.mp4", data.length, digest);
    coordinator.failPost = () => ({ error: new UploadHttpError(503, "shutting down"), storeFirst: 0 });
    const clock = new FakeClock();
    const done = uploadFile(file(), coordinator, { clock, random: () => 0, sha256: digest });
    const outcome = done.catch((error: unknown) => error);
    for (let i = 0; i < MAX_FAILURES + 1; i++) await clock.advance(10_000);
    const error = (await outcome) as Error;
    expect(error.message).toMatch(/failed 5 times in a row \(HTTP 503: shutting down\).*choose the same file again to resume/);
    expect(coordinator.posts).toHaveLength(MAX_FAILURES);
    expect(clock.delays).toEqual([500, 1000, 2000, 4000]);
  });

  it("reports a coordinator that cannot be reached at once", async () => {
    const coordinator = new FakeCoordinator("clip.mp4", data.length, digest);
    coordinator.failGet = () => new UploadHttpError(0, "Failed to fetch");
    await expect(uploadFile(file(), coordinator, { clock: new FakeClock(), sha256: digest })).rejects.toMatchObject({ message: "Failed to fetch" });
    expect(coordinator.posts).toHaveLength(0);
  });

  it("stops when aborted", async () => {
    const coordinator = new FakeCoordinator("clip.mp4", data.length, digest);
    const controller = new AbortController();
    controller.abort();
    await expect(uploadFile(file(), coordinator, { clock: new FakeClock(), signal: controller.signal, sha256: digest })).rejects.toBeInstanceOf(UploadAborted);
    expect(coordinator.posts).toHaveLength(0);
  });
});
