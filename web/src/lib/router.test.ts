// Tests of the path -> page mapping.

import { describe, expect, it } from "vitest";
import { matchRoute, paths } from "./router";

describe("matchRoute", () => {
  it("maps paths to pages", () => {
    expect(matchRoute("/")).toEqual({ page: "jobs" });
    expect(matchRoute("/jobs/")).toEqual({ page: "jobs" });
    expect(matchRoute("/jobs/new")).toEqual({ page: "new" });
    expect(matchRoute("/nodes")).toEqual({ page: "nodes" });
    expect(matchRoute(paths.job("0198c0de-aaaa"))).toEqual({ page: "job", id: "0198c0de-aaaa" });
    expect(matchRoute("/nope/x")).toEqual({ page: "not-found", path: "/nope/x" });
  });
});
