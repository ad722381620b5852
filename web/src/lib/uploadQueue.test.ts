// The queue of a form's files without a network: a few at once, the rest waiting their turn; each
// with its own status; a file chosen twice listed once; a retry that resumes without hashing again;
// a removed file stopped; `settled` once every file is done or failed.

import { describe, expect, it } from "vitest";
import { flush } from "../test/fakeClock";
import { UploadHttpError, type UploadInfo, type UploadOptions } from "./upload";
import { UploadQueue, isBusy } from "./uploadQueue";

/** A scripted upload per call: the test resolves or rejects each one by file name. */
class Uploads {
  readonly calls: { file: File; options: UploadOptions; resolve: (info: UploadInfo) => void; reject: (error: unknown) => void }[] = [];

  run = (file: File, options: UploadOptions): Promise<UploadInfo> =>
    new Promise((resolve, reject) => {
      this.calls.push({ file, options, resolve, reject });
    });

  call(name: string, nth = 0) {
    const found = this.calls.filter((c) => c.file.name === name)[nth];
    if (!found) throw new Error(`no call ${nth} for ${name}`);
    return found;
  }

  running(): string[] {
    return this.calls.map((c) => c.file.name);
  }
}

function info(file: File): UploadInfo {
  return { id: `id-${file.name}`, name: file.name, size: file.size, sha256: "ab".repeat(32), received: file.size, complete: true };
}

const files = (...names: string[]) => names.map((name) => new File([name], name, { lastModified: 1 }));

describe("UploadQueue", () => {
  it("runs at most the limit at once and starts the next when one ends", async () => {
    const uploads = new Uploads();
    const queue = new UploadQueue(uploads.run, 2);
    let changes = 0;
    queue.subscribe(() => changes++);
    queue.add(files("a", "b", "c", "d", "e"));
    expect(uploads.running()).toEqual(["a", "b"]);
    expect(queue.items.map((i) => i.status)).toEqual(["hashing", "hashing", "waiting", "waiting", "waiting"]);
    expect(changes).toBeGreaterThan(0);

    uploads.call("a").options.onProgress?.({ phase: "uploading", done: 1, total: 1, rate: 0, etaSeconds: null, resumedFrom: 0, retrying: null });
    expect(queue.items[0].status).toBe("uploading");
    expect(queue.items[0].progress?.done).toBe(1);

    uploads.call("b").resolve(info(queue.items[1].file));
    await flush();
    expect(queue.items[1].status).toBe("done");
    expect(queue.items[1].upload?.id).toBe("id-b");
    expect(uploads.running()).toEqual(["a", "b", "c"]);

    uploads.call("a").reject(new UploadHttpError(403, "this token may only read"));
    await flush();
    expect(queue.items[0]).toMatchObject({ status: "failed", error: "HTTP 403: this token may only read" });
    expect(uploads.running()).toEqual(["a", "b", "c", "d"]);
    expect(queue.items.filter(isBusy).map((i) => i.file.name)).toEqual(["c", "d", "e"]);
  });

  it("lists a file chosen twice once, and the same name with other content twice", () => {
    const uploads = new Uploads();
    const queue = new UploadQueue(uploads.run);
    const [a] = files("a.bin");
    queue.add([a]);
    expect(queue.add([a, new File(["a.bin"], "a.bin", { lastModified: 1 })])).toEqual([]);
    queue.add([new File(["other bytes"], "a.bin", { lastModified: 1 })]);
    expect(queue.items.map((i) => i.file.name)).toEqual(["a.bin", "a.bin"]);
    expect(new Set(queue.items.map((i) => i.key)).size).toBe(2);
  });

  it("retries a failed file from its known hash (it resumes; nothing is hashed again)", async () => {
    const uploads = new Uploads();
    const queue = new UploadQueue(uploads.run);
    queue.add(files("a"));
    const first = uploads.call("a");
    expect(first.options.sha256).toBeUndefined();
    first.options.onHashed?.("cd".repeat(32));
    first.reject(new UploadHttpError(0, "the connection broke"));
    await flush();
    expect(queue.items[0].status).toBe("failed");
    expect(queue.items[0].sha256).toBe("cd".repeat(32));

    queue.retry(queue.items[0].key);
    const second = uploads.call("a", 1);
    expect(second.options.sha256).toBe("cd".repeat(32));
    expect(queue.items[0]).toMatchObject({ status: "uploading", error: null });
    second.resolve(info(second.file));
    await flush();
    expect(queue.items[0].status).toBe("done");
    // Retrying a file that did not fail does nothing.
    queue.retry(queue.items[0].key);
    expect(uploads.calls).toHaveLength(2);
  });

  it("stops a removed file's upload, ignores its end, and lets a waiting one start", async () => {
    const uploads = new Uploads();
    const queue = new UploadQueue(uploads.run, 1);
    queue.add(files("a", "b"));
    const a = uploads.call("a");
    queue.remove(queue.items[0].key);
    expect(a.options.signal?.aborted).toBe(true);
    expect(queue.items.map((i) => i.file.name)).toEqual(["b"]);
    expect(uploads.running()).toEqual(["a", "b"]);
    a.reject(new Error("the upload was stopped"));
    await flush();
    expect(queue.items.map((i) => [i.file.name, i.status])).toEqual([["b", "hashing"]]);

    queue.clear();
    expect(uploads.call("b").options.signal?.aborted).toBe(true);
    expect(queue.items).toEqual([]);
  });

  it("settles once every file is done or failed", async () => {
    const uploads = new Uploads();
    const queue = new UploadQueue(uploads.run, 3);
    expect(await queue.settled()).toEqual([]);
    queue.add(files("a", "b"));
    let settled: readonly { status: string }[] | null = null;
    void queue.settled().then((items) => {
      settled = items;
    });
    uploads.call("a").resolve(info(queue.items[0].file));
    await flush();
    expect(settled).toBeNull();
    uploads.call("b").reject(new Error("boom"));
    await flush();
    expect(settled!.map((i) => i.status)).toEqual(["done", "failed"]);
  });
});
