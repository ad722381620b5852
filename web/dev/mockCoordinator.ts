// An in-memory stand-in for the Rust coordinator, for UI work and for running the browser tests
// without it (`npm run dev:mock`, `npm run e2e:mock`). It runs the demo "count" pipeline with
// timers, keeps versions/history/logs like the real one, serves /download, can require a token
// (REELAY_MOCK_TOKEN) and can fake a restart (POST /__mock/restart cuts every stream and refuses
// calls for a while). Behaviour follows DESIGN.md; it is no specification of the real server.

import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createHash } from "node:crypto";
import {
  JobChange,
  JobEventSchema,
  JobSchema,
  JobService,
  JobState,
  LogLineSchema,
  LogStream,
  OutputFileSchema,
  type Job,
  type JobEvent,
  type LogLine,
} from "../src/gen/reelay/v1/job_pb.ts";
import { NodeEventSchema, NodeSchema, NodeService, NodeState, type Node, type NodeEvent } from "../src/gen/reelay/v1/node_pb.ts";
import { PipelineService } from "../src/gen/reelay/v1/pipeline_pb.ts";
import { GrpcWebRouter, RpcError, type CallContext } from "./grpcWeb.ts";

const ACTIVE = [JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING];
const TERMINAL = [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED];

const pipelines = [
  {
    name: "count",
    description: "Counts in steps, printing progress; writes count.txt",
    params: [
      { name: "steps", default: "20", pattern: "^[0-9]{1,5}$", description: "how many steps" },
      { name: "interval_ms", default: "100", pattern: "^[0-9]{1,6}$", description: "milliseconds per step" },
    ],
    inputRequired: false,
  },
  {
    name: "fail",
    description: "Fails after a second",
    params: [],
    inputRequired: false,
  },
];

/** A queue of values an async generator waits on; closed when the client leaves. */
class Channel<T> {
  private items: T[] = [];
  private wake: (() => void) | null = null;
  private closed = false;

  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *drain(signal: AbortSignal): AsyncGenerator<T> {
    signal.addEventListener("abort", () => this.close());
    for (;;) {
      while (this.items.length) yield this.items.shift()!;
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }
}

export class MockCoordinator {
  readonly router = new GrpcWebRouter();
  private readonly jobs = new Map<string, Job>();
  private readonly history = new Map<string, JobEvent[]>();
  private readonly logs = new Map<string, LogLine[]>();
  private readonly outputs = new Map<string, Map<string, Uint8Array>>();
  private readonly timers = new Map<string, ReturnType<typeof setInterval>>();
  private readonly requests = new Map<string, string>();
  private readonly watchers = new Set<(event: JobEvent) => void>();
  private readonly logWatchers = new Set<(jobId: string, line: LogLine | null) => void>();
  private readonly nodeWatchers = new Set<(node: Node) => void>();
  private readonly node: Node;
  private downUntil = 0;
  private readonly token = process.env.REELAY_MOCK_TOKEN || "";

  constructor() {
    this.node = create(NodeSchema, {
      id: "mock-node",
      address: "127.0.0.1:7071",
      labels: { zone: "local" },
      slots: 2,
      running: 0,
      state: NodeState.READY,
      lastSeen: timestampNow(),
      version: "0.0.0-mock",
      executor: "process",
      registeredAt: timestampNow(),
    });
    this.router.guard = (ctx) => this.guard(ctx);
    this.router.add(JobService, this.jobHandlers());
    this.router.add(NodeService, {
      listNodes: () => ({ nodes: [this.touchNode()] }),
      getNode: () => this.touchNode(),
      drainNode: () => this.setDrained(true),
      undrainNode: () => this.setDrained(false),
      watchNodes: (_req: unknown, ctx: CallContext) => this.watchNodes(ctx),
    });
    this.router.add(PipelineService, { listPipelines: () => ({ pipelines }) });
  }

  /** Connect-style middleware: grpc-web calls, downloads, and the restart hook. */
  middleware = (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    const path = (req.url ?? "").split("?")[0];
    if (path === "/__mock/restart" && req.method === "POST") {
      const ms = Number(new URL(req.url ?? "", "http://x").searchParams.get("down_ms") ?? "2000");
      this.restart(ms);
      res.end("restarting\n");
      return;
    }
    if (path.startsWith("/download/")) {
      this.download(path, req, res);
      return;
    }
    if (Date.now() < this.downUntil && path.startsWith("/reelay.v1.")) {
      req.socket.destroy(); // as if nothing listened
      return;
    }
    this.router.handle(req, res).then((handled) => {
      if (!handled) next();
    });
  };

  private guard(ctx: CallContext): void {
    if (!this.token) return;
    if (ctx.headers.authorization !== `Bearer ${this.token}`) throw new RpcError(16, "missing or wrong API token");
  }

  private restart(ms: number): void {
    this.downUntil = Date.now() + ms;
    for (const res of this.router.open) res.destroy();
  }

  private touchNode(): Node {
    this.node.lastSeen = timestampNow();
    this.node.running = [...this.jobs.values()].filter((j) => j.nodeId === this.node.id && ACTIVE.includes(j.state) && j.state !== JobState.QUEUED).length;
    return this.node;
  }

  private setDrained(drained: boolean): Node {
    this.node.drained = drained;
    this.node.state = drained ? NodeState.DRAINING : NodeState.READY;
    const node = this.touchNode();
    this.publishNode();
    return node;
  }

  /** Tells WatchNodes watchers about the node (after a drain, or a job changing state). */
  private publishNode(): void {
    const node = create(NodeSchema, { ...this.touchNode() });
    for (const watcher of this.nodeWatchers) watcher(node);
  }

  /**
   * The node, `synced`, then each change of it (like the coordinator: `last_seen` alone is no
   * change). One node and an unbounded channel: no watcher lags, so no re-send.
   */
  private async *watchNodes(ctx: CallContext): AsyncGenerator<NodeEvent> {
    const channel = new Channel<NodeEvent>();
    const key = (node: Node) => JSON.stringify([node.state, node.running, node.drained, node.condition]);
    let sent = "";
    const watcher = (node: Node) => {
      if (key(node) === sent) return;
      sent = key(node);
      channel.push(create(NodeEventSchema, { node, removed: false }));
    };
    this.nodeWatchers.add(watcher);
    try {
      const node = create(NodeSchema, { ...this.touchNode() });
      sent = key(node);
      yield create(NodeEventSchema, { node, removed: false });
      yield create(NodeEventSchema, { synced: true });
      yield* channel.drain(ctx.signal);
    } finally {
      this.nodeWatchers.delete(watcher);
    }
  }

  private get(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new RpcError(5, `job ${id} not found`);
    return job;
  }

  /** Applies a change to a job: version+1, history, fan-out. */
  private change(job: Job, change: JobChange, mutate: (j: Job) => void, previous = job.state): Job {
    const next = create(JobSchema, { ...job });
    mutate(next);
    next.version = job.version + 1n;
    next.updatedAt = timestampNow();
    this.jobs.set(next.id, next);
    const event = create(JobEventSchema, { jobId: next.id, version: next.version, job: next, change, previousState: previous, time: timestampNow() });
    this.history.get(next.id)?.push(event);
    for (const watcher of this.watchers) watcher(event);
    if (change === JobChange.STATE) this.publishNode();
    return next;
  }

  private log(id: string, text: string, stream = LogStream.STDOUT): void {
    const lines = this.logs.get(id)!;
    const job = this.jobs.get(id)!;
    const line = create(LogLineSchema, { number: BigInt(lines.length + 1), text, stream, time: timestampNow(), attempt: job.attempt });
    lines.push(line);
    for (const watcher of this.logWatchers) watcher(id, line);
  }

  private finishLogs(id: string): void {
    for (const watcher of this.logWatchers) watcher(id, null);
  }

  /** Runs an attempt of the job: assigned, running with progress, then the outcome. */
  private run(id: string): void {
    let job = this.get(id);
    const attempt = job.attempt + 1;
    job = this.change(job, JobChange.STATE, (j) => {
      j.state = JobState.ASSIGNED;
      j.nodeId = this.node.id;
      j.nodeReachable = true;
      j.attempt = attempt;
      j.pendingReason = "";
      j.progress = 0;
      j.stage = "";
      j.error = "";
      j.exitCode = undefined;
    });
    this.log(id, `starting attempt ${attempt} on ${this.node.id}`, LogStream.SYSTEM);
    const params = job.spec?.params ?? {};
    const steps = job.spec?.pipeline === "fail" ? 5 : Math.max(1, Number(params.steps ?? "20"));
    const interval = job.spec?.pipeline === "fail" ? 200 : Math.max(10, Number(params.interval_ms ?? "100"));
    let i = 0;
    setTimeout(() => {
      if (this.jobs.get(id)?.state !== JobState.ASSIGNED) return;
      this.change(this.get(id), JobChange.STATE, (j) => {
        j.state = JobState.RUNNING;
        j.startedAt = timestampNow();
      });
      const timer = setInterval(() => {
        i += 1;
        const progress = Math.floor((i * 100) / steps);
        this.log(id, `::progress ${progress} counting`);
        this.change(this.get(id), JobChange.PROGRESS, (j) => {
          j.progress = progress;
          j.stage = "counting";
        });
        if (i < steps) return;
        clearInterval(timer);
        this.timers.delete(id);
        if (this.get(id).spec?.pipeline === "fail") {
          this.log(id, "giving up", LogStream.STDERR);
          this.end(id, JobState.FAILED, 1, "pipeline exited with code 1");
          return;
        }
        const bytes = new TextEncoder().encode(`counted to ${steps}\n`);
        this.outputs.set(id, new Map([["count.txt", bytes]]));
        this.change(this.get(id), JobChange.OUTPUT, (j) => {
          j.outputs = [create(OutputFileSchema, { name: "count.txt", size: BigInt(bytes.length), sha256: createHash("sha256").update(bytes).digest("hex") })];
        });
        this.end(id, JobState.SUCCEEDED, 0, "");
      }, interval);
      this.timers.set(id, timer);
    }, 50);
  }

  private end(id: string, state: JobState, exitCode: number | undefined, error: string): void {
    this.log(id, `attempt ended: ${JobState[state].toLowerCase()}`, LogStream.SYSTEM);
    this.change(this.get(id), JobChange.STATE, (j) => {
      j.state = state;
      j.exitCode = exitCode;
      j.error = error;
      j.finishedAt = timestampNow();
      j.cancelRequested = false;
      if (state === JobState.SUCCEEDED) j.progress = 100;
    });
    this.finishLogs(id);
  }

  private jobHandlers() {
    return {
      createJob: (req: { spec?: Job["spec"]; requestId: string }) => {
        if (req.requestId && this.requests.has(req.requestId)) return this.get(this.requests.get(req.requestId)!);
        const spec = req.spec;
        const pipeline = pipelines.find((p) => p.name === spec?.pipeline);
        if (!pipeline) throw new RpcError(3, `spec.pipeline: no pipeline named "${spec?.pipeline ?? ""}"`);
        for (const [name, value] of Object.entries(spec?.params ?? {})) {
          const param = pipeline.params.find((p) => p.name === name);
          if (!param) throw new RpcError(3, `spec.params.${name}: the pipeline has no such parameter`);
          if (!new RegExp(param.pattern).test(value)) throw new RpcError(3, `spec.params.${name}: must match ${param.pattern}`);
        }
        if (spec?.nodeId && spec.nodeId !== this.node.id) throw new RpcError(3, `spec.node_id: no node named "${spec.nodeId}"`);
        const id = uuidv7();
        const job = create(JobSchema, { id, spec, state: JobState.QUEUED, createdAt: timestampNow(), updatedAt: timestampNow(), version: 1n, requestId: req.requestId, pendingReason: "waiting for a slot", queuePosition: 1 });
        this.jobs.set(id, job);
        this.history.set(id, [create(JobEventSchema, { jobId: id, version: 1n, job, change: JobChange.CREATED, time: timestampNow() })]);
        this.logs.set(id, []);
        if (req.requestId) this.requests.set(req.requestId, id);
        for (const watcher of this.watchers) watcher(this.history.get(id)![0]);
        setTimeout(() => this.run(id), 30);
        return job;
      },
      getJob: (req: { id: string }) => this.get(req.id),
      listJobs: (req: { pageSize: number; pageToken: string; states: JobState[]; nodeId: string }) => {
        const all = [...this.jobs.values()]
          .filter((j) => (req.states.length === 0 || req.states.includes(j.state)) && (!req.nodeId || j.nodeId === req.nodeId))
          .sort((a, b) => (a.id < b.id ? 1 : -1));
        const start = req.pageToken ? Number(req.pageToken) : 0;
        const size = req.pageSize || 50;
        const page = all.slice(start, start + size);
        return { jobs: page, nextPageToken: start + size < all.length ? String(start + size) : "" };
      },
      watchJob: (req: { id: string; afterVersion: bigint }, ctx: CallContext) => {
        this.get(req.id); // NOT_FOUND before the stream starts, as a trailers-only response
        return this.watchJob(req, ctx);
      },
      watchJobs: (req: { states: JobState[]; noSnapshot: boolean }, ctx: CallContext) => this.watchJobs(req, ctx),
      cancelJob: (req: { id: string }) => {
        const job = this.get(req.id);
        if (!ACTIVE.includes(job.state)) throw new RpcError(9, `job ${req.id} is ${JobState[job.state].toLowerCase()}, not active`);
        const timer = this.timers.get(req.id);
        if (timer) clearInterval(timer);
        this.timers.delete(req.id);
        this.change(job, JobChange.INFO, (j) => (j.cancelRequested = true));
        this.end(req.id, JobState.CANCELLED, 143, "cancelled");
        return this.get(req.id);
      },
      retryJob: (req: { id: string }) => {
        const job = this.get(req.id);
        if (!TERMINAL.includes(job.state)) throw new RpcError(9, `job ${req.id} is still active`);
        this.change(job, JobChange.STATE, (j) => {
          j.state = JobState.QUEUED;
          j.finishedAt = undefined;
        });
        setTimeout(() => this.run(req.id), 30);
        return this.get(req.id);
      },
      deleteJob: (req: { id: string }) => {
        const job = this.get(req.id);
        if (!TERMINAL.includes(job.state)) throw new RpcError(9, `job ${req.id} is still active; cancel it first`);
        this.jobs.delete(req.id);
        const event = create(JobEventSchema, { jobId: req.id, version: job.version + 1n, job, change: JobChange.DELETED, time: timestampNow() });
        for (const watcher of this.watchers) watcher(event);
        return {};
      },
      getJobLogs: (req: { id: string; follow: boolean; afterLine: bigint }, ctx: CallContext) => {
        this.get(req.id);
        return this.followLogs(req, ctx);
      },
      listOutputs: (req: { id: string }) => ({ files: this.get(req.id).outputs }),
      getJobHistory: (req: { id: string; afterVersion: bigint }) => {
        this.get(req.id);
        return { events: (this.history.get(req.id) ?? []).filter((e) => e.version > req.afterVersion) };
      },
    };
  }

  private async *watchJobs(req: { states: JobState[]; noSnapshot: boolean }, ctx: CallContext): AsyncGenerator<JobEvent> {
    const channel = new Channel<JobEvent>();
    const matches = (j: Job) => req.states.length === 0 || req.states.includes(j.state);
    const watcher = (event: JobEvent) => {
      if (event.job && matches(event.job)) channel.push(event);
    };
    this.watchers.add(watcher);
    try {
      if (!req.noSnapshot) {
        for (const job of this.jobs.values()) {
          if (ACTIVE.includes(job.state) && matches(job)) yield create(JobEventSchema, { jobId: job.id, version: job.version, job, change: JobChange.SNAPSHOT, time: timestampNow() });
        }
      }
      yield* channel.drain(ctx.signal);
    } finally {
      this.watchers.delete(watcher);
    }
  }

  private async *watchJob(req: { id: string; afterVersion: bigint }, ctx: CallContext): AsyncGenerator<JobEvent> {
    const job = this.get(req.id);
    const channel = new Channel<JobEvent>();
    const watcher = (event: JobEvent) => {
      if (event.jobId === req.id) channel.push(event);
    };
    this.watchers.add(watcher);
    try {
      if (req.afterVersion === 0n) yield create(JobEventSchema, { jobId: job.id, version: job.version, job, change: JobChange.SNAPSHOT, time: timestampNow() });
      else for (const event of this.history.get(req.id) ?? []) if (event.version > req.afterVersion) yield event;
      if (TERMINAL.includes(this.get(req.id).state)) return;
      for await (const event of channel.drain(ctx.signal)) {
        yield event;
        if (event.job && TERMINAL.includes(event.job.state) && event.change === JobChange.STATE) return;
        if (event.change === JobChange.DELETED) return;
      }
    } finally {
      this.watchers.delete(watcher);
    }
  }

  private async *followLogs(req: { id: string; follow: boolean; afterLine: bigint }, ctx: CallContext): AsyncGenerator<LogLine> {
    this.get(req.id);
    const channel = new Channel<LogLine | null>();
    const watcher = (jobId: string, line: LogLine | null) => {
      if (jobId === req.id) channel.push(line);
    };
    this.logWatchers.add(watcher);
    try {
      let last = req.afterLine;
      for (const line of this.logs.get(req.id) ?? []) {
        if (line.number > last) {
          last = line.number;
          yield line;
        }
      }
      if (!req.follow || TERMINAL.includes(this.get(req.id).state)) return;
      for await (const line of channel.drain(ctx.signal)) {
        if (line === null) return;
        if (line.number > last) {
          last = line.number;
          yield line;
        }
      }
    } finally {
      this.logWatchers.delete(watcher);
    }
  }

  private download(path: string, req: IncomingMessage, res: ServerResponse): void {
    const [, , jobId, ...rest] = path.split("/");
    const name = rest.map(decodeURIComponent).join("/");
    if (this.token && req.headers.authorization !== `Bearer ${this.token}`) {
      res.statusCode = 401;
      res.end("missing or wrong API token\n");
      return;
    }
    const bytes = this.outputs.get(decodeURIComponent(jobId ?? ""))?.get(name);
    if (!bytes) {
      res.statusCode = 404;
      res.end("no such output\n");
      return;
    }
    res.setHeader("content-type", "application/octet-stream");
    res.setHeader("content-length", String(bytes.length));
    res.setHeader("content-disposition", `attachment; filename="${name.split("/").pop()}"`);
    res.end(Buffer.from(bytes));
  }
}

/** A UUIDv7: time-ordered like the coordinator's ids. */
function uuidv7(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  const ms = BigInt(Date.now());
  for (let i = 0; i < 6; i++) bytes[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
