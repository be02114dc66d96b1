import { expect, test } from "@playwright/test";
import { ADMIN, USER, signIn, watchErrors } from "./helpers";

test("a user taps Open: the answer comes at once, the real result live", async ({ browser, baseURL }) => {
  // The admin registers a bank and grants the user a compartment (API,
  // with the session cookie and this site's Origin).
  const admin = await browser.newPage();
  await signIn(admin, ADMIN);
  await expect(admin).toHaveURL(/\/admin$/);
  const headers = { Origin: baseURL ?? "" };
  const bankRes = await admin.request.post("/api/v1/locker-banks", {
    headers,
    data: { serial: "E2E-1", name: "E2E Lobby", compartments: [{ number: 1, size: "small", label: "Parcels" }] },
  });
  expect(bankRes.status()).toBe(201);
  const bank = await bankRes.json();
  const grantRes = await admin.request.post(`/api/v1/compartments/${bank.compartments[0].id}/grants`, {
    headers,
    data: { user_email: USER.email },
  });
  expect(grantRes.status()).toBe(201);
  // Without the Origin header the same request is refused (CSRF guard).
  const forged = await admin.request.post("/api/v1/locker-banks", {
    data: { serial: "E2E-2", name: "x", compartments: [{ number: 1, size: "small" }] },
  });
  expect(forged.status()).toBe(403);

  const page = await browser.newPage({ viewport: { width: 390, height: 800 } });
  const errors = watchErrors(page);
  await signIn(page, USER);
  await expect(page).toHaveURL(/\/my$/);
  await page.locator("body[data-hydrated]").waitFor();
  const row = page.getByTestId("compartment-1");
  await expect(row).toContainText("E2E Lobby · #1 Parcels");
  await expect(row.getByTestId("open-status")).toHaveCount(0);

  await row.getByTestId("open").click();
  const status = row.getByTestId("open-status");
  // At once: accepted (then sent, as the server hands it to the gateway).
  await expect(status).toHaveAttribute("data-status", /^(accepted|sent)$/);
  // This server runs without a broker (LOCKSTEP_MQTT=off), so no locker
  // answers: the durable timeout (3 s here) fails the command, and the page
  // learns it from the log. open_demo.spec.ts has lockers that answer.
  await expect(status).toHaveAttribute("data-status", "failed", { timeout: 15_000 });
  await expect(status).toHaveText("Failed: timeout");

  // The read model agrees, under the same command id.
  const commandId = await status.getAttribute("data-command-id");
  const view = await page.request.get(`/api/v1/compartments/open-requests/${commandId}`);
  expect(view.status()).toBe(200);
  const body = await view.json();
  expect(body.status).toBe("failed");
  expect(body.failure_reason).toBe("timeout");
  expect(body.sent_at).not.toBeNull();

  // A reload shows the same state from the server.
  await page.reload();
  await expect(page.getByTestId("compartment-1").getByTestId("open-status")).toHaveAttribute("data-status", "failed");
  expect(errors).toEqual([]);
});
