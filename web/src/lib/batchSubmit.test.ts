// One job per uploaded file through CreateJobs: the requests (spec, input_uri, derived request ids),
// each file's outcome in order, a resubmit of the refused ones under the same ids, batches of 1,000.

import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CreateJobsResponseSchema, type CreateJobsResponse } from "../gen/reelay/v1/job_pb";
import { CREATE_JOBS_AT_MOST, createJobsForFiles, type CreateJobs } from "./batchSubmit";
import { specRequestIds } from "./specRequestId";

const form = { pipeline: "copy", params: { label: "x" }, inputPath: "", nodeId: "", priority: 0, maxAttempts: 1, timeoutSeconds: 0, labels: {} };
const files = [
  { key: "f1", uploadId: "u-1" },
  { key: "f2", uploadId: "u-2" },
  { key: "f3", uploadId: "u-3" },
];

type Sent = { requestId: string; spec: { inputUri: string; pipeline: string; params: Record<string, string> } }[];

/** A coordinator that refuses the uploads named in `refuse` and makes a job of every other request. */
function fakeCreateJobs(refuse: Set<string> = new Set()) {
  const calls: Sent[] = [];
  const createJobs: CreateJobs = async (request) => {
    const requests = (request.requests ?? []) as unknown as Sent;
    calls.push(requests);
    return create(CreateJobsResponseSchema, {
      results: requests.map((r) =>
        refuse.has(r.spec.inputUri)
          ? { result: { case: "error" as const, value: { code: 3, message: `input_uri: ${r.spec.inputUri} is not complete` } } }
          : { result: { case: "job" as const, value: { id: `job-${r.requestId}` } }, created: true },
      ),
    });
  };
  return { calls, createJobs };
}

describe("createJobsForFiles", () => {
  it("sends a request per file with its input_uri and the CLI's request id, and answers per file", async () => {
    const { calls, createJobs } = fakeCreateJobs(new Set(["upload:u-2"]));
    const outcomes = await createJobsForFiles(files, form, createJobs);
    expect(calls).toHaveLength(1);
    const sent = calls[0];
    expect(sent.map((r) => r.spec.inputUri)).toEqual(["upload:u-1", "upload:u-2", "upload:u-3"]);
    expect(sent.every((r) => r.spec.pipeline === "copy" && r.spec.params.label === "x")).toBe(true);
    const ids = specRequestIds(files.map((f) => ({ ...form, inputUri: `upload:${f.uploadId}` })));
    expect(sent.map((r) => r.requestId)).toEqual(ids);
    expect(new Set(ids).size).toBe(3);

    expect(outcomes.map((o) => o.key)).toEqual(["f1", "f2", "f3"]);
    expect(outcomes[0]).toMatchObject({ key: "f1", created: true });
    expect("job" in outcomes[0] && outcomes[0].job.id).toBe(`job-${ids[0]}`);
    expect(outcomes[1]).toEqual({ key: "f2", error: "input_uri: upload:u-2 is not complete" });

    // The refused one again, alone: under the same request id as the first time.
    const again = fakeCreateJobs();
    const retried = await createJobsForFiles(files, form, again.createJobs, [1]);
    expect(again.calls[0].map((r) => r.requestId)).toEqual([ids[1]]);
    expect(retried.map((o) => o.key)).toEqual(["f2"]);
  });

  it("refuses an answer with a result missing, and splits more than 1,000 files into batches", async () => {
    const short: CreateJobs = async () => create(CreateJobsResponseSchema, { results: [] }) as CreateJobsResponse;
    await expect(createJobsForFiles(files, form, short)).rejects.toThrow("answered 0 results for 3 jobs");

    const many = Array.from({ length: CREATE_JOBS_AT_MOST + 5 }, (_, i) => ({ key: `k${i}`, uploadId: `u-${i}` }));
    const { calls, createJobs } = fakeCreateJobs();
    const outcomes = await createJobsForFiles(many, form, createJobs);
    expect(calls.map((c) => c.length)).toEqual([CREATE_JOBS_AT_MOST, 5]);
    expect(outcomes).toHaveLength(many.length);
    expect(outcomes.at(-1)?.key).toBe(`k${many.length - 1}`);
  });
});
