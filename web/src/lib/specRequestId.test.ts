// Request ids of several jobs: the same rule and the same vector as the CLI (job/batch.rs).

import { describe, expect, it } from "vitest";
import { specJson, specRequestIds, type SpecFields } from "./specRequestId";

const vector: SpecFields = {
  pipeline: "copy",
  params: { zeta: 'a"b\n\u0001', label: "x", é: "ü", "😀": "smile", "\uff01": "bang" },
  inputPath: "",
  inputUri: "upload:0a1b2c3d-0000-8000-8000-000000000000",
  nodeId: "",
  priority: -2,
  maxAttempts: 1,
  timeoutSeconds: 0,
  labels: { zone: "a" },
};

describe("specRequestIds", () => {
  it("writes the spec as serde_json does: compact, keys sorted by code point, escapes", () => {
    expect(specJson(vector)).toBe(
      '{"input_path":"","input_uri":"upload:0a1b2c3d-0000-8000-8000-000000000000","labels":{"zone":"a"},"max_attempts":1,"node_id":"",' +
        '"params":{"label":"x","zeta":"a\\"b\\n\\u0001","é":"ü","！":"bang","😀":"smile"},"pipeline":"copy","priority":-2,"timeout_seconds":0}',
    );
  });

  it("derives the id the CLI derives for the same spec", () => {
    expect(specRequestIds([vector])).toEqual(["spec-ccff377ec1145a3743d43b897fa1c7d0"]);
  });

  it("gives the same spec twice -2, and other specs other ids, stable across calls", () => {
    const other = { ...vector, inputUri: "upload:ffffffff-0000-8000-8000-000000000000" };
    const ids = specRequestIds([vector, other, { ...vector }]);
    expect(ids[0]).toBe("spec-ccff377ec1145a3743d43b897fa1c7d0");
    expect(ids[2]).toBe("spec-ccff377ec1145a3743d43b897fa1c7d0-2");
    expect(ids[1]).toMatch(/^spec-[0-9a-f]{32}$/);
    expect(ids[1]).not.toBe(ids[0]);
    expect(specRequestIds([vector, other, vector])).toEqual(ids);
    // Key order as given does not matter.
    const reordered = { ...vector, params: Object.fromEntries(Object.entries(vector.params).reverse()) };
    expect(specRequestIds([reordered])[0]).toBe(ids[0]);
  });
});
