// Render tests of the new-job form: defaults, client checks, server errors by field, submit.

import { Code, ConnectError } from "@connectrpc/connect";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { JobState, type CreateJobRequest } from "../gen/reelay/v1/job_pb";
import { ServicesContext } from "../state/services";
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

function renderPage(createJob: (req: CreateJobRequest) => unknown) {
  const services = fakeServices({
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
});
