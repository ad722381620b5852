// Tests of the job form's client-side checks against pipeline parameters.

import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { PipelineParamSchema, PipelineSchema } from "../gen/reelay/v1/pipeline_pb";
import { defaultParams, isRequired, paramsToSend, validateJobForm, validateParam } from "./params";

const height = create(PipelineParamSchema, { name: "height", default: "720", pattern: "^[0-9]{3,4}$" });
const steps = create(PipelineParamSchema, { name: "steps", default: "20", pattern: "[0-9]+" });
const label = create(PipelineParamSchema, { name: "label", pattern: "[a-z]+", required: true });
const optional = create(PipelineParamSchema, { name: "tag", pattern: "[a-z]+", required: false });
const loose = create(PipelineParamSchema, { name: "note", default: "x" });

describe("validateParam", () => {
  it("checks the pattern against the whole value", () => {
    expect(validateParam(height, "720")).toBeNull();
    expect(validateParam(height, "72")).toMatch(/must match/);
    expect(validateParam(steps, "20")).toBeNull();
    expect(validateParam(steps, "20x")).toMatch(/must match/); // unanchored pattern still covers the whole value
  });

  it("requires a value when the server marks the parameter required", () => {
    expect(isRequired(label)).toBe(true);
    expect(validateParam(label, "")).toBe("required");
    expect(validateParam(optional, "")).toBeNull(); // no default, explicitly optional
    expect(validateParam(optional, "X")).toMatch(/must match/);
    expect(validateParam(height, "")).toBeNull();
    expect(validateParam(create(PipelineParamSchema, { name: "r", default: "1", required: true }), "")).toBe("required");
  });

  it("accepts anything without a pattern, and skips patterns JS cannot read", () => {
    expect(validateParam(loose, "anything at all")).toBeNull();
    expect(validateParam(create(PipelineParamSchema, { name: "p", default: "a", pattern: "(?P<x>a)" }), "zzz")).toBeNull();
  });
});

describe("the job form", () => {
  const count = create(PipelineSchema, { name: "count", params: [steps, create(PipelineParamSchema, { name: "interval_ms", default: "100", pattern: "[0-9]+" })] });
  const transcode = create(PipelineSchema, { name: "transcode", params: [height], inputRequired: true });

  it("starts from the defaults and sends only set values", () => {
    expect(defaultParams(count)).toEqual({ steps: "20", interval_ms: "100" });
    expect(paramsToSend({ steps: "600", interval_ms: "" })).toEqual({ steps: "600" });
  });

  it("names each problem by its spec field", () => {
    const errors = validateJobForm({ pipeline: "transcode", params: { height: "abc" }, inputPath: " ", nodeId: "", priority: "1.5", maxAttempts: "-1" }, transcode);
    expect(errors).toEqual({
      "params.height": "must match ^[0-9]{3,4}$",
      input_path: "required",
      priority: "must be a whole number",
      max_attempts: "must be a whole number ≥ 0",
    });
    expect(validateJobForm({ pipeline: "count", params: defaultParams(count), inputPath: "", nodeId: "", priority: "0", maxAttempts: "1" }, count)).toEqual({});
  });

  it("takes a file to upload as the input, but not a file and a path", () => {
    const values = { pipeline: "transcode", params: { height: "720" }, inputPath: "", nodeId: "", priority: "0", maxAttempts: "1" };
    expect(validateJobForm(values, transcode, true)).toEqual({});
    expect(validateJobForm({ ...values, inputPath: "/srv/in.mp4" }, transcode, true)).toEqual({
      input_path: "choose a file to upload or give a path on the worker, not both",
    });
  });
});
