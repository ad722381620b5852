// Render tests of the new-job form: defaults, client checks, server errors by field, submit.

import { Code, ConnectError } from "@connectrpc/connect";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { JobState, type CreateJobRequest } from "../gen/reelay/v1/job_pb";
import { ServicesContext } from "../state/services";
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

function renderPage(createJob: (req: CreateJobRequest) => unknown, uploads?: UploadHttp) {
  const services = fakeServices({
    uploads,
    pipelines: { listPipelines: () => ({ pipelines }) },
    nodes: { listNodes: () => ({ nodes: [{ id: "node-a", slots: 2 }] }) },
    jobs: { createJob: createJob as never },
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
});
