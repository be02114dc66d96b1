import { expect, test } from "@playwright/test";
import { ADMIN, USER, signIn, watchErrors } from "./helpers";

// Against the `--demo` server: three simulated locker banks provision
// themselves over the embedded broker and answer commands (after ~0.6 s;
// one in ten fails with a device error, by design).
const demo = `http://127.0.0.1:${process.env.E2E_DEMO_PORT ?? 3101}`;

test("with demo lockers, Open ends opened, live", async ({ browser }) => {
  const admin = await browser.newPage({ baseURL: demo });
  await signIn(admin, ADMIN);
  await expect(admin).toHaveURL(/\/admin$/);
  // The simulated banks provision themselves: wait for one to be online.
  let bank: { id: string; serial: string; compartments: { id: string; number: number }[] } | undefined;
  await expect
    .poll(
      async () => {
        const res = await admin.request.get("/api/v1/locker-banks");
        const banks = await res.json();
        bank = banks.find((b: { serial: string; online: boolean }) => b.serial === "DEMO-1" && b.online);
        return bank !== undefined;
      },
      { timeout: 30_000 },
    )
    .toBe(true);
  const full = await (await admin.request.get(`/api/v1/locker-banks/${bank!.id}`)).json();
  const compartment = full.compartments.find((c: { number: number }) => c.number === 1);
  const grant = await admin.request.post(`/api/v1/compartments/${compartment.id}/grants`, {
    headers: { Origin: demo },
    data: { user_email: USER.email },
  });
  expect(grant.status()).toBe(201);

  const page = await browser.newPage({ baseURL: demo, viewport: { width: 390, height: 800 } });
  const errors = watchErrors(page);
  await signIn(page, USER);
  await expect(page).toHaveURL(/\/my$/);
  await page.locator("body[data-hydrated]").waitFor();
  // Other tests grant this user compartments of other banks too.
  const row = page.getByTestId("compartment-1").filter({ hasText: "DEMO-1 · #1" });
  await expect(row).toContainText("DEMO-1");
  const status = row.getByTestId("open-status");
  // A simulated locker fails one open in ten (device_error): up to five
  // taps, each ending opened or failed, and one of them opened.
  let opened = false;
  for (let attempt = 0; attempt < 5 && !opened; attempt++) {
    const before = attempt === 0 ? null : await status.getAttribute("data-command-id");
    await row.getByTestId("open").click();
    if (before) {
      await expect(status).not.toHaveAttribute("data-command-id", before);
    }
    await expect(status).toHaveAttribute("data-status", /^(opened|failed)$/, { timeout: 15_000 });
    const final = await status.getAttribute("data-status");
    if (final === "failed") {
      await expect(status).toHaveText("Failed: device error (jammed)");
    } else {
      opened = true;
      await expect(status).toHaveText("Opened");
    }
  }
  expect(opened).toBe(true);
  const commandId = await status.getAttribute("data-command-id");
  const view = await (await page.request.get(`/api/v1/compartments/open-requests/${commandId}`)).json();
  expect(view.status).toBe("opened");
  expect(view.sent_at).not.toBeNull();
  expect(view.opened_at).not.toBeNull();
  expect(errors).toEqual([]);
});
