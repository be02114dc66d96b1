import { defineConfig, devices } from "@playwright/test";

// Browser tests in Debian's Chromium; Playwright never downloads a browser of its own here.
const port = Number(process.env.E2E_PORT ?? 3100);
// A second server with `--demo`: simulated lockers that answer.
export const demoPort = Number(process.env.E2E_DEMO_PORT ?? 3101);

export default defineConfig({
  testDir: "./tests",
  // Beside this file (ignored by git), not in the repository's root.
  outputDir: "./test-results",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: "off",
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    },
  },
  projects: [
    { name: "desktop", use: { ...devices["Desktop Chrome"], channel: undefined } },
  ],
  webServer: [
    {
      command: "bash end2end/serve.sh",
      cwd: "..",
      url: `http://127.0.0.1:${port}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "pipe",
      stderr: "pipe",
    },
    {
      command: "bash end2end/serve.sh --demo",
      cwd: "..",
      url: `http://127.0.0.1:${demoPort}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "pipe",
      stderr: "pipe",
    },
  ],
});
