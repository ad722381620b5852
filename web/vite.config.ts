// Vite build + dev server (with a proxy to a running coordinator) + vitest settings.
/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Where `npm run dev` sends grpc-web calls, uploads and downloads.
const coordinator = process.env.REELAY_DEV_TARGET ?? "http://127.0.0.1:7070";
// REELAY_MOCK=1: serve an in-memory mock coordinator instead of proxying (dev/mockCoordinator.ts).
const mock = process.env.REELAY_MOCK === "1";

export default defineConfig(async () => ({
  // The mock is loaded only when asked for, so normal builds never touch dev/.
  plugins: [react(), mock ? (await import("./dev/mockPlugin.ts")).mockCoordinator() : null],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
  },
  server: {
    proxy: mock
      ? undefined
      : {
          "^/reelay\\.v1\\..*": { target: coordinator, changeOrigin: true },
          "/download": { target: coordinator, changeOrigin: true },
          "/upload": { target: coordinator, changeOrigin: true },
        },
  },
  test: {
    environment: "happy-dom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test/setup.ts"],
  },
}));
