// One job per uploaded file, all sent in one CreateJobs call (batches of at most 1,000, the
// server's limit), each with a request id derived from its spec (lib/specRequestId.ts, the CLI's
// rule): sending the same files with the same form again returns the jobs made before. Each file
// gets its own outcome: its job, or the item's error to show next to it.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CreateJobsRequestSchema, CreateJobsResponse, Job } from "../gen/reelay/v1/job_pb";
import { specRequestIds, type SpecFields } from "./specRequestId";

/** Requests per CreateJobs call at most (`reelay_proto::MAX_CREATE_JOBS`). */
export const CREATE_JOBS_AT_MOST = 1000;

/** A file of the form, uploaded. */
export interface UploadedFile {
  /** The row it belongs to. */
  key: string;
  uploadId: string;
}

/** What became of one file's job. */
export type FileOutcome = { key: string; job: Job; created: boolean } | { key: string; error: string };

/** `JobService.CreateJobs` (the grpc-web client's method). */
export type CreateJobs = (request: MessageInitShape<typeof CreateJobsRequestSchema>) => Promise<CreateJobsResponse>;

/** The spec of each file's job: the form's fields with `input_uri = upload:<id>`. */
export function specsFor(files: readonly UploadedFile[], form: Omit<SpecFields, "inputUri">): SpecFields[] {
  return files.map((file) => ({ ...form, inputUri: `upload:${file.uploadId}` }));
}

/**
 * Creates the jobs of `files[i]` for every i in `send` (all when omitted). Request ids are derived
 * over all `files`, so a later call for the ones refused before gives each the same id again.
 */
export async function createJobsForFiles(
  files: readonly UploadedFile[],
  form: Omit<SpecFields, "inputUri">,
  createJobs: CreateJobs,
  send: readonly number[] = files.map((_, index) => index),
): Promise<FileOutcome[]> {
  const specs = specsFor(files, form);
  const ids = specRequestIds(specs);
  const outcomes: FileOutcome[] = [];
  for (let start = 0; start < send.length; start += CREATE_JOBS_AT_MOST) {
    const chunk = send.slice(start, start + CREATE_JOBS_AT_MOST);
    const requests = chunk.map((index) => ({ requestId: ids[index], spec: specs[index] }));
    const { results } = await createJobs({ requests });
    if (results.length !== chunk.length) {
      throw new Error(`the coordinator answered ${results.length} results for ${chunk.length} jobs; is it an older version?`);
    }
    chunk.forEach((index, position) => {
      const key = files[index].key;
      const result = results[position];
      if (result.result.case === "job") outcomes.push({ key, job: result.result.value, created: result.created });
      else if (result.result.case === "error") outcomes.push({ key, error: result.result.value.message || `error code ${result.result.value.code}` });
      else outcomes.push({ key, error: "the coordinator sent an empty result" });
    });
  }
  return outcomes;
}
