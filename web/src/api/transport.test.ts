// Tests of the auth interceptor: one token prompt for concurrent refused calls, resend, cancel.

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { JobSchema, JobService } from "../gen/reelay/v1/job_pb";
import { AuthStore } from "./auth";
import { authInterceptor } from "./transport";

class MemoryStorage {
  private data = new Map<string, string>();
  get length() {
    return this.data.size;
  }
  clear() {
    this.data.clear();
  }
  getItem(key: string) {
    return this.data.get(key) ?? null;
  }
  key() {
    return null;
  }
  removeItem(key: string) {
    this.data.delete(key);
  }
  setItem(key: string, value: string) {
    this.data.set(key, value);
  }
}

function setup(accept: string) {
  const auth = new AuthStore(new MemoryStorage() as unknown as Storage);
  const seen: (string | null)[] = [];
  const transport = createRouterTransport(
    ({ service }) => {
      service(JobService, {
        getJob: (req, ctx) => {
          const header = ctx.requestHeader.get("authorization");
          seen.push(header);
          if (header !== `Bearer ${accept}`) throw new ConnectError("missing or wrong API token", Code.Unauthenticated);
          return create(JobSchema, { id: req.id });
        },
      });
    },
    { transport: { interceptors: [authInterceptor(auth)] } },
  );
  return { auth, seen, client: createClient(JobService, transport) };
}

describe("the auth interceptor", () => {
  it("asks once for a token, resends the refused calls with it, and keeps it", async () => {
    const { auth, seen, client } = setup("s3cret");
    const calls = [client.getJob({ id: "a" }), client.getJob({ id: "b" })];
    await new Promise((r) => setTimeout(r, 10));
    const pending = auth.pendingRequest;
    expect(pending?.reason).toBe("missing or wrong API token");
    pending!.resolve("s3cret");
    const jobs = await Promise.all(calls);
    expect(jobs.map((j) => j.id)).toEqual(["a", "b"]);
    expect(auth.token).toBe("s3cret");
    expect(seen.filter((h) => h === null)).toHaveLength(2);
    await client.getJob({ id: "c" });
    expect(seen[seen.length - 1]).toBe("Bearer s3cret");
    expect(auth.pendingRequest).toBeNull();
  });

  it("gives the error back when the user cancels", async () => {
    const { auth, client } = setup("s3cret");
    const call = client.getJob({ id: "a" });
    await new Promise((r) => setTimeout(r, 10));
    auth.pendingRequest!.resolve(null);
    await expect(call).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(auth.token).toBeNull();
  });
});
