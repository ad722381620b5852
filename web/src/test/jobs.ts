// Builders of Job / JobEvent messages for tests.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { JobChange, JobEventSchema, JobSchema, JobState, PieceSchema, StepsSchema, type Job, type JobEvent, type Piece, type Steps } from "../gen/reelay/v1/job_pb";

export function job(id: string, version: number, state: JobState = JobState.RUNNING, extra: Partial<Omit<Job, "$typeName">> = {}): Job {
  return create(JobSchema, {
    id,
    version: BigInt(version),
    state,
    spec: { pipeline: "count", params: {} },
    createdAt: timestampFromMs(1_700_000_000_000 + parseInt(id.replace(/\D/g, "").slice(-6) || "0", 10) * 1000),
    nodeId: "node-1",
    nodeReachable: true,
    ...extra,
  });
}

export function event(j: Job, change: JobChange = JobChange.PROGRESS): JobEvent {
  return create(JobEventSchema, { jobId: j.id, version: j.version, job: j, change });
}

/** A parent's piece view (`Piece`) as the coordinator sends it in `Job.steps`. */
export function piece(jobId: string, state: JobState, extra: Partial<Omit<Piece, "$typeName">> = {}): Piece {
  return create(PieceSchema, { jobId, state, ...extra });
}

/** A parent's `steps`: the split, the pieces, the join (when given). */
export function steps(split: Piece | undefined, pieces: Piece[], join?: Piece, extra: Partial<Omit<Steps, "$typeName">> = {}): Steps {
  return create(StepsSchema, { split, pieces, join, ...extra });
}
