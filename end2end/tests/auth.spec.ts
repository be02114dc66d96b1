import { expect, test } from "@playwright/test";
import { ADMIN, USER, signIn, watchErrors } from "./helpers";

test("admin signs in and gets a working, hydrated admin dashboard", async ({ page }) => {
  const errors = watchErrors(page);
  await signIn(page, ADMIN);
  await expect(page).toHaveURL(/\/admin$/);
  await expect(page.getByTestId("admin-dashboard")).toBeVisible();
  await page.locator("body[data-hydrated]").waitFor();

  // The sidebar's links navigate within the panel (client-side).
  await page.getByRole("link", { name: "Users" }).click();
  await expect(page).toHaveURL(/\/admin\/users$/);
  await expect(page.getByRole("link", { name: "Users" })).toHaveAttribute("aria-current", "page");
  // Typing filters the user table: only possible once hydrated.
  // (admin.spec.ts may have added accounts to this server before.)
  const rows = page.getByTestId("user-rows").locator("tr");
  await expect(rows.filter({ hasText: USER.email })).toHaveCount(1);
  const all = await rows.count();
  expect(all).toBeGreaterThanOrEqual(2);
  await page.getByTestId("user-filter").fill("uma");
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText(USER.email);
  await page.getByTestId("user-filter").fill("");
  await expect(rows).toHaveCount(all);

  // On a phone-sized screen the menu button opens the navigation.
  await page.setViewportSize({ width: 390, height: 800 });
  const toggle = page.getByTestId("nav-toggle");
  await expect(toggle).toHaveAttribute("aria-expanded", "false");
  await expect(page.locator("#admin-nav")).toBeHidden();
  await toggle.click();
  await expect(toggle).toHaveAttribute("aria-expanded", "true");
  await expect(page.locator("#admin-nav")).toBeVisible();

  // Signing out ends the session: the admin URL now asks for sign-in.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByTestId("sign-out").click();
  await expect(page).toHaveURL(/\/login/);
  await page.goto("/admin");
  await expect(page).toHaveURL(/\/login\?next=\/admin$/);
  expect(errors).toEqual([]);
});

test("a user gets the user app and is refused the admin panel", async ({ page }) => {
  const errors = watchErrors(page);
  await signIn(page, USER);
  await expect(page).toHaveURL(/\/my$/);
  await expect(page.getByTestId("user-app")).toBeVisible();
  await expect(page.getByText("My compartments")).toBeVisible();
  await expect(page.getByRole("heading", { name: "Hello, Uma User" })).toBeVisible();

  const response = await page.goto("/admin");
  expect(response?.status()).toBe(403);
  await expect(page.getByTestId("forbidden")).toBeVisible();
  await expect(page.getByTestId("admin-dashboard")).toHaveCount(0);
  // The 403 page load logs a console error for the failed document request.
  expect(errors.filter((e) => !e.includes("403"))).toEqual([]);
});

test("a wrong password shows the error and signs nobody in", async ({ page }) => {
  await signIn(page, { email: ADMIN.email, password: "not-the-password" });
  await expect(page.getByTestId("login-error")).toHaveText("Wrong email or password.");
  await expect(page).toHaveURL(/\/login/);
  const me = await page.request.get("/api/v1/me");
  expect(me.status()).toBe(401);
});
