// Vite plugin that mounts the mock coordinator on the dev and preview servers (REELAY_MOCK=1).

import type { Plugin } from "vite";
import { MockCoordinator } from "./mockCoordinator.ts";

export function mockCoordinator(): Plugin {
  const mock = new MockCoordinator();
  return {
    name: "reelay-mock-coordinator",
    configureServer(server) {
      server.middlewares.use(mock.middleware);
    },
    configurePreviewServer(server) {
      server.middlewares.use(mock.middleware);
    },
  };
}
