// An in-memory coordinator for component tests: real clients over connect's router transport.

import { create } from "@bufbuild/protobuf";
import { createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import { JobService, type JobEvent } from "../gen/reelay/v1/job_pb";
import { NodeService } from "../gen/reelay/v1/node_pb";
import { PipelineService } from "../gen/reelay/v1/pipeline_pb";
import { ConnectionTracker } from "../lib/connection";
import type { UploadHttp } from "../lib/upload";
import { createServicesOn, type Services } from "../state/services";

export interface FakeServer {
  jobs?: Partial<ServiceImpl<typeof JobService>>;
  nodes?: Partial<ServiceImpl<typeof NodeService>>;
  pipelines?: Partial<ServiceImpl<typeof PipelineService>>;
  /** The upload endpoints; by default every call fails (tests that upload pass their own). */
  uploads?: UploadHttp;
}

const noUploads: UploadHttp = {
  get: () => Promise.reject(new Error("no upload endpoint in this test")),
  post: () => Promise.reject(new Error("no upload endpoint in this test")),
};

/** A stream handler that sends `events` then stays open until the client leaves. */
export function holdOpen(events: JobEvent[] | (() => AsyncIterable<JobEvent>)) {
  return async function* (_req: unknown, ctx: { signal: AbortSignal }) {
    if (Array.isArray(events)) yield* events;
    else yield* events();
    await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
  };
}

export function fakeServices(server: FakeServer): Services {
  const transport = createRouterTransport(({ service }) => {
    service(JobService, {
      watchJobs: holdOpen([]),
      listJobs: () => ({ jobs: [], nextPageToken: "" }),
      ...server.jobs,
    });
    service(NodeService, { listNodes: () => ({ nodes: [] }), ...server.nodes });
    service(PipelineService, { listPipelines: () => ({ pipelines: [] }), ...server.pipelines });
  });
  return createServicesOn(transport, new ConnectionTracker(), server.uploads ?? noUploads);
}

export { create };
