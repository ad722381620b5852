// Render tests of the new-job form: defaults, client checks, server errors by field, submit.

import { Code, ConnectError } from "@connectrpc/connect";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { JobState, type CreateJobRequest, type CreateJobsRequest } from "../gen/reelay/v1/job_pb";
import { ServicesContext } from "../state/services";
import { specRequestIds } from "../lib/specRequestId";
import { uploadId, type UploadHttp, type UploadInfo, type UploadQuery } from "../lib/upload";
import { fakeServices } from "../test/fakeServer";
import { job } from "../test/jobs";
import { NewJobPage } from "./NewJobPage";

const pipelines = [
  {
    name: "count",
    description: "Counts",
    params: [
      { name: "steps", default: "20", pattern: "^[0-9]+$" },
      { name: "interval_ms", default: "100", pattern: "^[0-9]+$" },
    ],
  },
];

function renderPage(createJob: (req: CreateJobRequest) => unknown, uploads?: UploadHttp, createJobs?: (req: CreateJobsRequest) => unknown) {
  const services = fakeServices({
    uploads,
    pipelines: { listPipelines: () => ({ pipelines }) },
    nodes: { listNodes: () => ({ nodes: [{ id: "node-a", slots: 2 }] }) },
    jobs: { createJob: createJob as never, ...(createJobs ? { createJobs: createJobs as never } : {}) },
  });
  render(
    <ServicesContext.Provider value={services}>
      <NewJobPage />
    </ServicesContext.Provider>,
  );
  return services;
}

describe("NewJobPage", () => {
  beforeEach(() => history.replaceState(null, "", "/jobs/new"));
  afterEach(() => history.replaceState(null, "", "/"));

  it("offers the pipelines' params with their defaults and the nodes", async () => {
    renderPage(() => job("x", 1));
    const steps = (await screen.findByLabelText(/^steps/)) as HTMLInputElement;
    expect(steps.name).toBe("params.steps");
    expect(steps.value).toBe("20");
    expect((screen.getByLabelText(/^interval_ms/) as HTMLInputElement).value).toBe("100");
    await screen.findByRole("option", { name: /node-a/ });
    expect((screen.getByLabelText("Pipeline") as HTMLSelectElement).name).toBe("pipeline");
  });

  it("refuses a value that does not match the pattern, next to the field, without calling the server", async () => {
    let calls = 0;
    renderPage(() => {
      calls++;
      return job("x", 1);
    });
    const steps = await screen.findByLabelText(/^steps/);
    fireEvent.change(steps, { target: { value: "ten" } });
    fireEvent.click(screen.getByTestId("submit-job"));
    expect((await screen.findByTestId("error-params.steps")).textContent).toMatch(/must match/);
    expect(steps.getAttribute("aria-invalid")).toBe("true");
    expect(calls).toBe(0);
  });

  it("shows the server's INVALID_ARGUMENT next to the field it names, the rest at the top", async () => {
    renderPage(() => {
      throw new ConnectError("spec.params.steps: at most 10000; spec.labels: unknown label", Code.InvalidArgument);
    });
    await screen.findByLabelText(/^steps/);
    fireEvent.click(screen.getByTestId("submit-job"));
    expect((await screen.findByTestId("error-params.steps")).textContent).toBe("at most 10000");
    expect(screen.getByTestId("form-error").textContent).toBe("spec.labels: unknown label");
  });

  it("sends the spec with a request id and opens the new job's page", async () => {
    const seen: CreateJobRequest[] = [];
    renderPage((req) => {
      seen.push(req);
      return job("0198new", 1, JobState.QUEUED);
    });
    fireEvent.change(await screen.findByLabelText(/^steps/), { target: { value: "600" } });
    fireEvent.change(screen.getByLabelText("Priority"), { target: { value: "5" } });
    fireEvent.click(screen.getByTestId("submit-job"));
    await waitFor(() => expect(location.pathname).toBe("/jobs/0198new"));
    expect(seen[0].spec?.pipeline).toBe("count");
    expect(seen[0].spec?.params).toEqual({ steps: "600", interval_ms: "100" });
    expect(seen[0].spec?.priority).toBe(5);
    expect(seen[0].requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("uploads a chosen file with its progress, then submits the job with its input_uri", async () => {
    const posts: UploadQuery[] = [];
    let finish: (info: UploadInfo) => void = () => {};
    const uploads: UploadHttp = {
      get: async () => null,
      post: (query, body, onProgress) => {
        posts.push(query);
        onProgress(body.size / 2);
        return new Promise((resolve) => {
          finish = resolve;
        });
      },
    };
    const seen: CreateJobRequest[] = [];
    renderPage((req) => {
      seen.push(req);
      return job("0198up", 1, JobState.QUEUED);
    }, uploads);
    await screen.findByLabelText(/^steps/);
    const file = new File([new TextEncoder().encode("hello")], "hello.txt");
    fireEvent.change(screen.getByTestId("upload-input"), { target: { files: [file] } });
    await waitFor(() => expect(posts).toHaveLength(1));
    const id = uploadId("hello.txt", 5, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    expect(posts[0]).toMatchObject({ name: "hello.txt", size: 5, id, offset: 0 });
    expect(screen.getByTestId("upload-status").getAttribute("data-status")).toBe("uploading");
    expect(screen.getByTestId("upload-progress").getAttribute("aria-valuenow")).toBe("50");
    expect(screen.getByTestId("upload-detail").textContent).toMatch(/^Uploading 2\.5 B of 5 B/);

    // Submitted while the upload runs: the job is created once the upload is complete.
    fireEvent.click(screen.getByTestId("submit-job"));
    await waitFor(() => expect(screen.getByTestId("submit-job").textContent).toBe("Uploading, then submitting…"));
    expect(seen).toHaveLength(0);
    finish({ id, name: "hello.txt", size: 5, sha256: posts[0].sha256, received: 5, complete: true });
    await waitFor(() => expect(location.pathname).toBe("/jobs/0198up"));
    expect(seen[0].spec?.inputUri).toBe(`upload:${id}`);
    expect(seen[0].spec?.inputPath).toBe("");
  });

  it("shows a failed upload with a retry, and does not submit without it", async () => {
    let calls = 0;
    const uploads: UploadHttp = {
      get: async () => null,
      post: async () => {
        calls++;
        const { UploadHttpError } = await import("../lib/upload");
        throw new UploadHttpError(403, "this token may only read; uploading needs an --api-token");
      },
    };
    const seen: CreateJobRequest[] = [];
    renderPage((req) => {
      seen.push(req);
      return job("x", 1);
    }, uploads);
    await screen.findByLabelText(/^steps/);
    fireEvent.change(screen.getByTestId("upload-input"), { target: { files: [new File(["abc"], "a.bin")] } });
    await waitFor(() => expect(screen.getByTestId("upload-status").getAttribute("data-status")).toBe("failed"));
    expect(screen.getByTestId("upload-detail").textContent).toBe("HTTP 403: this token may only read; uploading needs an --api-token");
    fireEvent.click(screen.getByTestId("submit-job"));
    await waitFor(() => expect(screen.getByTestId("submit-job").textContent).toBe("Submit job"));
    expect(seen).toHaveLength(0);
    fireEvent.click(screen.getByTestId("upload-retry"));
    await waitFor(() => expect(calls).toBe(2));
    fireEvent.click(screen.getByTestId("upload-remove"));
    expect(screen.queryByTestId("upload-status")).toBeNull();
  });
  it("uploads several files, then creates a job each in one CreateJobs call and opens the jobs list", async () => {
    // A coordinator that stores every upload at once.
    const posts: UploadQuery[] = [];
    const uploads: UploadHttp = {
      get: async () => null,
      post: async (query) => {
        posts.push(query);
        return { id: query.id, name: query.name, size: query.size, sha256: query.sha256, received: query.size, complete: true };
      },
    };
    const batches: CreateJobsRequest[] = [];
    const services = renderPage(
      () => {
        throw new Error("one job at a time was asked for");
      },
      uploads,
      (req) => {
        batches.push(req);
        return { results: req.requests.map((_, i) => ({ result: { case: "job", value: job(`0198j${i}`, 1, JobState.QUEUED) }, created: true })) };
      },
    );
    await screen.findByLabelText(/^steps/);
    const chosen = ["a.bin", "b.bin", "c.bin"].map((name) => new File([name], name));
    fireEvent.change(screen.getByTestId("upload-input"), { target: { files: chosen } });
    fireEvent.drop(screen.getByTestId("upload-drop"), { dataTransfer: { files: [new File(["d"], "d.bin"), new File(["e"], "e.bin")] } });
    await waitFor(() => expect(screen.getAllByTestId("upload-status").every((row) => row.getAttribute("data-status") === "done")).toBe(true));
    expect(screen.getAllByTestId("upload-name").map((n) => n.textContent)).toEqual(["a.bin", "b.bin", "c.bin", "d.bin", "e.bin"]);
    expect(posts.map((p) => p.name).sort()).toEqual(["a.bin", "b.bin", "c.bin", "d.bin", "e.bin"]);
    expect(screen.getByTestId("upload-overall").textContent).toMatch(/^5 of 5 files uploaded · 17 B of 17 B$/);
    expect(screen.getByTestId("submit-job").textContent).toBe("Submit 5 jobs");

    fireEvent.click(screen.getByTestId("submit-job"));
    await waitFor(() => expect(location.pathname).toBe("/jobs"));
    expect(batches).toHaveLength(1);
    const requests = batches[0].requests;
    const ids = posts.map((p) => p.id);
    expect(requests.map((r) => r.spec?.inputUri)).toEqual(["a.bin", "b.bin", "c.bin", "d.bin", "e.bin"].map((name) => `upload:${ids[posts.findIndex((p) => p.name === name)]}`));
    expect(requests.every((r) => r.spec?.pipeline === "count" && r.spec.params.steps === "20")).toBe(true);
    // Derived from the spec as the CLI derives them.
    const expected = specRequestIds(
      requests.map((r) => ({ pipeline: "count", params: { steps: "20", interval_ms: "100" }, inputPath: "", inputUri: r.spec?.inputUri ?? "", nodeId: "", priority: 0, maxAttempts: 1, timeoutSeconds: 0, labels: {} })),
    );
    expect(requests.map((r) => r.requestId)).toEqual(expected);
    // The new jobs are in the feed the jobs list shows.
    expect(Array.from(services.feed.map.values(), (j) => j.id).sort()).toEqual(["0198j0", "0198j1", "0198j2", "0198j3", "0198j4"]);
  });

  it("shows a refused file's error next to it, and a second submit sends only that one, under the same id", async () => {
    const uploads: UploadHttp = {
      get: async () => null,
      post: async (query) => ({ id: query.id, name: query.name, size: query.size, sha256: query.sha256, received: query.size, complete: true }),
    };
    const batches: CreateJobsRequest[] = [];
    renderPage(() => job("x", 1), uploads, (req) => {
      batches.push(req);
      return {
        results: req.requests.map((r, i) =>
          batches.length === 1 && i === 1
            ? { result: { case: "error", value: { code: 3, message: "spec.params.steps: at most 100 for this file" } } }
            : { result: { case: "job", value: job(`job-${r.requestId.slice(-4)}`, 1, JobState.QUEUED) }, created: true },
        ),
      };
    });
    await screen.findByLabelText(/^steps/);
    fireEvent.change(screen.getByTestId("upload-input"), { target: { files: [new File(["1"], "one.bin"), new File(["2"], "two.bin")] } });
    await waitFor(() => expect(screen.getAllByTestId("upload-status").every((row) => row.getAttribute("data-status") === "done")).toBe(true));
    fireEvent.click(screen.getByTestId("submit-job"));
    const refusal = await screen.findByTestId("upload-job-error");
    expect(refusal.textContent).toBe("Not submitted: spec.params.steps: at most 100 for this file");
    expect(refusal.closest("[data-testid=upload-status]")?.getAttribute("data-name")).toBe("two.bin");
    const made = screen.getByTestId("upload-job");
    expect(made.closest("[data-testid=upload-status]")?.getAttribute("data-name")).toBe("one.bin");
    expect(screen.getByTestId("form-error").textContent).toMatch(/^1 of 2 jobs submitted; 1 refused/);
    expect(location.pathname).toBe("/jobs/new");

    fireEvent.click(screen.getByTestId("submit-job"));
    await waitFor(() => expect(location.pathname).toBe("/jobs"));
    expect(batches).toHaveLength(2);
    expect(batches[1].requests).toHaveLength(1);
    expect(batches[1].requests[0].requestId).toBe(batches[0].requests[1].requestId);
  });

  it("does not submit several files while one of them failed to upload", async () => {
    const uploads: UploadHttp = {
      get: async () => null,
      post: async (query) => {
        if (query.name === "bad.bin") {
          const { UploadHttpError } = await import("../lib/upload");
          throw new UploadHttpError(400, "sha256: mismatch");
        }
        return { id: query.id, name: query.name, size: query.size, sha256: query.sha256, received: query.size, complete: true };
      },
    };
    let batches = 0;
    renderPage(() => job("x", 1), uploads, () => {
      batches++;
      return { results: [] };
    });
    await screen.findByLabelText(/^steps/);
    fireEvent.change(screen.getByTestId("upload-input"), { target: { files: [new File(["1"], "good.bin"), new File(["2"], "bad.bin")] } });
    fireEvent.click(screen.getByTestId("submit-job"));
    expect((await screen.findByTestId("form-error")).textContent).toMatch(/^1 of 2 uploads failed: retry or remove them/);
    const failed = screen.getAllByTestId("upload-status").find((row) => row.getAttribute("data-name") === "bad.bin");
    expect(failed?.getAttribute("data-status")).toBe("failed");
    expect(failed?.querySelector("[data-testid=upload-detail]")?.textContent).toBe("HTTP 400: sha256: mismatch");
    expect(batches).toBe(0);
  });
});
