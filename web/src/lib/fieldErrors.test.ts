// Tests of placing server INVALID_ARGUMENT messages next to form fields.

import { describe, expect, it } from "vitest";
import { mapServerErrors, normaliseFieldPath } from "./fieldErrors";

const known = ["pipeline", "input_path", "node_id", "priority", "max_attempts", "params.height"];

describe("server errors on the form", () => {
  it("places field errors next to their field", () => {
    expect(mapServerErrors("spec.params.height: must match ^[0-9]{3,4}$", known)).toEqual({ fields: { "params.height": "must match ^[0-9]{3,4}$" }, general: [] });
    expect(mapServerErrors("spec.input_path: no such file", known).fields).toEqual({ input_path: "no such file" });
  });

  it("keeps what names no known field as a general error", () => {
    expect(mapServerErrors("spec.params.width: unknown parameter", known)).toEqual({ fields: {}, general: ["spec.params.width: unknown parameter"] });
    expect(mapServerErrors("the queue is full", known)).toEqual({ fields: {}, general: ["the queue is full"] });
  });

  it("keeps a reason that contains a semicolon whole", () => {
    const message = 'spec.params.height: pipeline "transcode" has no parameter "h"; its parameters: height, crf';
    expect(mapServerErrors(message, known)).toEqual({ fields: { "params.height": 'pipeline "transcode" has no parameter "h"; its parameters: height, crf' }, general: [] });
  });

  it("splits several errors and normalises field spellings", () => {
    const mapped = mapServerErrors("spec.nodeId: no such node; spec.max_attempts: at most 10", known);
    expect(mapped.fields).toEqual({ node_id: "no such node", max_attempts: "at most 10" });
    expect(normaliseFieldPath("spec.params[\"height\"]")).toBe("params.height");
    expect(normaliseFieldPath("spec.inputPath")).toBe("input_path");
  });
});
