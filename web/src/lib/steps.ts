// Jobs made of jobs, for the screen: the rows of a parent's steps (split, each piece, join) from
// the `steps` its own record carries, the "4 of 12 pieces" of its row in the jobs table, and what
// a step job says about its parent. No I/O here: the page already holds the parent's record.

import { JobState, type Job, type Piece, type Steps } from "../gen/reelay/v1/job_pb";
import { isActive } from "./jobMap";

export type StepKind = "split" | "map" | "join";

/** One row of a parent's steps table. */
export interface StepRow {
  kind: StepKind;
  /** For a piece: its index from 0 (as in `Job.piece`); 0 for the split and the join. */
  index: number;
  /** "Split", "Piece 3 of 12", "Join". */
  label: string;
  piece: Piece;
}

/** The steps of a parent in their order: the split, every piece, the join (those made so far). */
export function stepRows(steps: Steps | undefined): StepRow[] {
  if (!steps) return [];
  const rows: StepRow[] = [];
  if (steps.split) rows.push({ kind: "split", index: 0, label: "Split", piece: steps.split });
  const count = steps.pieces.length;
  steps.pieces.forEach((piece, index) => rows.push({ kind: "map", index, label: `Piece ${index + 1} of ${count}`, piece }));
  if (steps.join) rows.push({ kind: "join", index: 0, label: "Join", piece: steps.join });
  return rows;
}

/** Whether a job is a parent (its pipeline is made of steps). */
export function isParent(job: Job): boolean {
  return job.steps !== undefined;
}

/** Whether a job is a step of another job. */
export function isStep(job: Job): boolean {
  return job.parentId !== "";
}

/**
 * What a parent's row in the jobs table says of its steps: "4 of 12 pieces" once the split told
 * how many (with "joining" while the join runs), "splitting" before; "" for other jobs.
 */
export function piecesSummary(job: Job): string {
  const steps = job.steps;
  if (!steps) return "";
  const count = steps.pieces.length;
  if (count === 0) return steps.split && isActive(steps.split.state) ? "splitting" : "";
  const done = steps.pieces.filter((piece) => piece.state === JobState.SUCCEEDED).length;
  const summary = `${done} of ${count} piece${count === 1 ? "" : "s"}`;
  return steps.join && isActive(steps.join.state) ? `${summary} · joining` : summary;
}

/** The pieces running now (assigned or running), for a count next to the steps table. */
export function runningPieces(steps: Steps | undefined): number {
  if (!steps) return 0;
  return steps.pieces.filter((piece) => piece.state === JobState.RUNNING || piece.state === JobState.ASSIGNED).length;
}

/** What a step job is to its parent: "the split step", "piece 3", "the join step". */
export function stepName(job: Job): string {
  switch (job.step) {
    case "split":
      return "the split step";
    case "join":
      return "the join step";
    case "map":
      return `piece ${job.piece + 1}`;
    default:
      return job.step ? `the ${job.step} step` : "a step";
  }
}
