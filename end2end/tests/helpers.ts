import type { Page } from "@playwright/test";

export const ADMIN = { email: "admin@e2e.test", password: "admin-e2e-password" };
export const USER = { email: "user@e2e.test", password: "user-e2e-password" };
// serve.sh: a second admin of the same tenant, and an admin of another.
export const ADMIN2 = { email: "admin2@e2e.test", password: "admin2-e2e-password", name: "Bea Admin" };
export const OTHER = { email: "other@e2e.test", password: "other-e2e-password" };

// The realtime hub's Pusher app, fixed for both servers by serve.sh
// (LOCKSTEP_PUSHER_APP_ID / _KEY / _SECRET).
export const PUSHER_APP_ID = "e2e-app";
export const PUSHER_APP_KEY = "e2e-key";
export const PUSHER_APP_SECRET = "e2e-secret-0123456789abcdef";

// Collects browser errors so a broken hydration (e.g. a bad wasm-opt)
// fails the test even when the server-rendered page looks right.
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  return errors;
}

export async function signIn(page: Page, who: { email: string; password: string }) {
  await page.goto("/login");
  await page.locator("body[data-hydrated]").waitFor();
  await page.getByLabel("Email").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await page.getByTestId("sign-in").click();
}
