// Vite build + dev server (with a proxy to a running coordinator) + vitest settings.
/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Where `npm run dev` sends grpc-web calls and downloads.
const coordinator = process.env.REELAY_DEV_TARGET ?? "http://127.0.0.1:7070";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
  },
  server: {
    proxy: {
      "^/reelay\\.v1\\..*": { target: coordinator, changeOrigin: true },
      "/download": { target: coordinator, changeOrigin: true },
    },
  },
  test: {
    environment: "happy-dom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test/setup.ts"],
  },
});
