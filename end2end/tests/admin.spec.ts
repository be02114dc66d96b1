import { expect, test, type Browser, type Page } from "@playwright/test";
import { ADMIN, USER, signIn, watchErrors } from "./helpers";

// The admin panel's access and account pages, used as an admin uses them:
// a grant made with a validity window appears live in a second admin's
// tab and is revoked there; an account created with a generated password
// signs in, and once disabled can no longer. Against the plain server
// (the demo one takes most of the suite's sign-ins, and the sign-in
// throttle limits them per address).

async function admin(browser: Browser, base: string): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ baseURL: base });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await signIn(page, ADMIN);
  await expect(page).toHaveURL(/\/admin$/);
  return { page, errors };
}

async function open(p: Page, path: string) {
  await p.goto(path);
  await p.locator("body[data-hydrated]").waitFor();
  await expect(p.getByTestId("connection")).toHaveAttribute("data-state", "live");
}

test("access: a grant with a window appears live in another admin's tab, which revokes it", async ({ browser, baseURL }) => {
  const base = baseURL!;
  const { page: a, errors } = await admin(browser, base);
  const serial = `E2E-ACCESS-${Date.now()}`;
  const res = await a.request.post("/api/v1/locker-banks", {
    headers: { Origin: base },
    data: { serial, name: serial, compartments: [{ number: 1, size: "small" }, { number: 2, size: "large" }] },
  });
  expect(res.status()).toBe(201);
  const { page: b } = await admin(browser, base);
  await open(a, "/admin/access");
  await open(b, "/admin/access");

  const mine = (p: Page) => p.locator("[data-testid=grant-row]").filter({ hasText: `${serial} · #2` });
  await a.getByTestId("grant-compartment").selectOption({ label: `${serial} · #2` });
  await a.getByTestId("grant-email").fill(USER.email);
  await a.getByTestId("grant-from").fill("2099-01-01T08:30");
  await a.getByTestId("grant-until").fill("2099-01-02T08:30");
  await a.getByTestId("grant-submit").click();
  await expect(a.getByTestId("grant-done")).toBeVisible();
  for (const p of [a, b]) {
    await expect(mine(p)).toHaveCount(1);
    await expect(mine(p)).toHaveAttribute("data-state", "scheduled");
    await expect(mine(p)).toContainText("2099-01-01 08:30:00 UTC");
  }
  // The other tab revokes it: gone from both without a reload.
  await mine(b).getByTestId("grant-revoke").click();
  await expect(mine(b)).toHaveCount(0);
  await expect(mine(a)).toHaveCount(0);
  // Still listed as revoked when asked.
  await a.getByTestId("grants-revoked").check();
  await expect(mine(a)).toHaveAttribute("data-state", "revoked");
  // A window that ends before it starts: the reason, in place.
  await a.getByTestId("grant-from").fill("2099-01-02T08:30");
  await a.getByTestId("grant-until").fill("2099-01-01T08:30");
  await a.getByTestId("grant-submit").click();
  await expect(a.getByRole("alert")).toContainText("valid_until must be after valid_from");
  // The browser logs the refused call's 422; nothing else went wrong.
  expect(errors.filter((e) => !e.includes("status of 422"))).toEqual([]);
});

test("users: an account created with a generated password signs in; disabled, it cannot", async ({ browser, baseURL }) => {
  const base = baseURL!;
  const { page: a, errors } = await admin(browser, base);
  await open(a, "/admin/users");
  const email = `nia-${Date.now()}@e2e.test`;
  await a.getByTestId("new-user-email").fill(email);
  await a.getByTestId("new-user-name").fill("Nia");
  await a.getByTestId("new-user-create").click();
  const password = (await a.getByTestId("new-user-password").textContent())!.trim();
  expect(password.length).toBeGreaterThanOrEqual(20);
  const row = a.locator(`[data-testid=user-row][data-email="${email}"]`);
  await expect(row.getByTestId("user-status")).toHaveText("active");

  const context = await browser.newContext({ baseURL: base });
  const nia = await context.newPage();
  await signIn(nia, { email, password });
  await expect(nia).toHaveURL(/\/my$/);

  await row.getByTestId("user-toggle").click();
  await expect(row.getByTestId("user-status")).toHaveText("disabled");
  // Her open session is nobody's now, and signing in again fails.
  await nia.reload();
  await expect(nia).toHaveURL(/\/login/);
  await signIn(nia, { email, password });
  await expect(nia.getByRole("alert")).toContainText("Wrong email or password");
  // The admin's own row offers neither a role nor a switch.
  const me = a.locator(`[data-testid=user-row][data-email="${ADMIN.email}"]`);
  await expect(me.getByTestId("user-toggle")).toHaveCount(0);
  await expect(me.getByTestId("user-role")).toHaveCount(0);
  expect(errors).toEqual([]);
});
