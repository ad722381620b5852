// Tests of a parent's steps as shown: row order and labels, the jobs table's summary, step names.

import { describe, expect, it } from "vitest";
import { JobState } from "../gen/reelay/v1/job_pb";
import { job, piece, steps } from "../test/jobs";
import { isParent, isStep, piecesSummary, runningPieces, stepName, stepRows } from "./steps";

describe("steps", () => {
  it("lists the split, each piece in order, then the join", () => {
    const view = steps(piece("s", JobState.SUCCEEDED), [piece("p0", JobState.SUCCEEDED), piece("p1", JobState.RUNNING)], piece("j", JobState.QUEUED));
    const rows = stepRows(view);
    expect(rows.map((row) => [row.kind, row.index, row.label, row.piece.jobId])).toEqual([
      ["split", 0, "Split", "s"],
      ["map", 0, "Piece 1 of 2", "p0"],
      ["map", 1, "Piece 2 of 2", "p1"],
      ["join", 0, "Join", "j"],
    ]);
    // Before the split told how many pieces: the split alone.
    expect(stepRows(steps(piece("s", JobState.RUNNING), [])).map((row) => row.kind)).toEqual(["split"]);
    expect(stepRows(undefined)).toEqual([]);
  });

  it("summarises a parent's pieces for its row in the jobs table", () => {
    const parent = (view: ReturnType<typeof steps>) => job("p", 1, JobState.RUNNING, { nodeId: "", steps: view });
    expect(piecesSummary(parent(steps(piece("s", JobState.RUNNING), [])))).toBe("splitting");
    const pieces = [
      piece("a", JobState.SUCCEEDED),
      piece("b", JobState.RUNNING),
      piece("c", JobState.ASSIGNED),
      piece("d", JobState.SUCCEEDED),
      piece("e", JobState.QUEUED),
    ];
    expect(piecesSummary(parent(steps(piece("s", JobState.SUCCEEDED), pieces)))).toBe("2 of 5 pieces");
    expect(runningPieces(steps(undefined, pieces))).toBe(2);
    const all = pieces.map((p) => piece(p.jobId, JobState.SUCCEEDED));
    expect(piecesSummary(parent(steps(piece("s", JobState.SUCCEEDED), all, piece("j", JobState.RUNNING))))).toBe("5 of 5 pieces · joining");
    expect(piecesSummary(parent(steps(piece("s", JobState.SUCCEEDED), all, piece("j", JobState.SUCCEEDED))))).toBe("5 of 5 pieces");
    expect(piecesSummary(parent(steps(piece("s", JobState.SUCCEEDED), [piece("a", JobState.RUNNING)])))).toBe("0 of 1 piece");
    // A job of its own says nothing here.
    expect(piecesSummary(job("x", 1))).toBe("");
  });

  it("names a step by its place in its parent", () => {
    const step = (kind: string, index = 0) => job("s", 1, JobState.RUNNING, { parentId: "p", step: kind, piece: index });
    expect(stepName(step("split"))).toBe("the split step");
    expect(stepName(step("map", 2))).toBe("piece 3");
    expect(stepName(step("join"))).toBe("the join step");
    expect(isStep(step("map"))).toBe(true);
    expect(isStep(job("x", 1))).toBe(false);
    expect(isParent(job("x", 1, JobState.RUNNING, { steps: steps(undefined, []) }))).toBe(true);
    expect(isParent(job("x", 1))).toBe(false);
  });
});
