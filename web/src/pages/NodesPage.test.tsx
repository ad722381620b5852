// Render test of the nodes page: one WatchNodes stream while it is shown (no ListNodes), the list
// shows at `synced`, rows change in place (state, slots, removed, a lag re-send), drain shows at
// once, the stream closes on unmount.

import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { NodeState, type NodeEvent } from "../gen/reelay/v1/node_pb";
import { ServicesContext } from "../state/services";
import { fakeServices } from "../test/fakeServer";
import { node, nodeEvent, removedId, syncedEvent } from "../test/nodes";
import { NodesPage } from "./NodesPage";

describe("NodesPage", () => {
  it("is live over one WatchNodes stream, closed when the page goes away", async () => {
    const queue: NodeEvent[] = [nodeEvent(node("w1")), nodeEvent(node("w2", NodeState.READY, { running: 1 }))];
    let push: ((e: NodeEvent) => void) | null = null;
    let watchCalls = 0;
    let listCalls = 0;
    let open = 0;
    const services = fakeServices({
      nodes: {
        listNodes: () => {
          listCalls++;
          return { nodes: [] };
        },
        drainNode: (req) => node(req.id, NodeState.DRAINING, { drained: true }),
        watchNodes: async function* (_req, ctx) {
          watchCalls++;
          open++;
          try {
            for (;;) {
              while (queue.length) yield queue.shift()!;
              await new Promise<void>((resolve) => {
                push = (e) => {
                  queue.push(e);
                  resolve();
                };
                ctx.signal.addEventListener("abort", () => resolve());
              });
              if (ctx.signal.aborted) return;
            }
          } finally {
            open--;
          }
        },
      },
    });
    const view = render(
      <ServicesContext.Provider value={services}>
        <NodesPage />
      </ServicesContext.Provider>,
    );
    await waitFor(() => expect(push).not.toBeNull()); // both nodes applied, no `synced` yet
    expect(screen.getByText("Loading…")).toBeDefined();
    expect(screen.queryAllByTestId("node-row")).toHaveLength(0);
    await act(async () => push!(syncedEvent()));
    await waitFor(() => expect(screen.getAllByTestId("node-row")).toHaveLength(2));
    const row = (id: string) => screen.getAllByTestId("node-row").find((r) => r.getAttribute("data-node-id") === id);
    expect(row("w2")?.querySelector("[data-testid=node-slots]")?.textContent).toBe("1/2");
    expect(services.connection.state).toBe("connected");

    await act(async () => push!(nodeEvent(node("w1", NodeState.OFFLINE, { condition: "connection lost" }))));
    await waitFor(() => expect(row("w1")?.getAttribute("data-state")).toBe("offline"));
    expect(row("w1")?.textContent).toContain("connection lost");

    await act(async () => push!(nodeEvent(node("w2"), true)));
    await waitFor(() => expect(screen.getAllByTestId("node-row")).toHaveLength(1));

    await act(async () => push!(nodeEvent(node("w3"))));
    await waitFor(() => expect(row("w3")).toBeDefined());
    fireEvent.click(row("w3")!.querySelector("[data-testid=node-drain]")!);
    await waitFor(() => expect(row("w3")?.getAttribute("data-state")).toBe("draining"));
    expect(row("w3")?.querySelector("[data-testid=node-undrain]")).not.toBeNull();

    // A lag re-send: w1 gone meanwhile, w3 sent again, w4 new, `synced` again.
    await act(async () => {
      push!(removedId("w1"));
      push!(nodeEvent(node("w3", NodeState.DRAINING, { drained: true })));
      push!(nodeEvent(node("w4")));
      push!(syncedEvent());
    });
    await waitFor(() => expect(screen.getAllByTestId("node-row").map((r) => r.getAttribute("data-node-id"))).toEqual(["w3", "w4"]));

    expect(watchCalls).toBe(1);
    expect(listCalls).toBe(0);
    expect(open).toBe(1);
    view.unmount();
    await waitFor(() => expect(open).toBe(0));
  });
});
