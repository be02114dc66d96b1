import { randomUUID } from "node:crypto";
import { expect, test, type Page } from "@playwright/test";
import mqtt from "mqtt";
import { ADMIN, signIn, watchErrors } from "./helpers";

// Provisioning from the admin panel, with a locker of the test's own: an
// MQTT.js client written from docs/mqtt.md alone (the demo server's
// embedded broker, on the port and provisioning password serve.sh sets).
const demo = `http://127.0.0.1:${process.env.E2E_DEMO_PORT ?? 3101}`;
const MQTT_URL = `mqtt://127.0.0.1:${process.env.E2E_DEMO_MQTT_PORT ?? 3183}`;
const PROVISIONING_PASSWORD = "e2e-provisioning-password";

type Reply = { ok: boolean; locker_bank_id: string; username: string; password: string; broker_url: string | null; error: string | null };

async function admin(browser: import("@playwright/test").Browser): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ baseURL: demo });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await signIn(page, ADMIN);
  await expect(page).toHaveURL(/\/admin$/);
  await page.locator("body[data-hydrated]").waitFor();
  return { page, errors };
}

/** docs/mqtt.md, "Provisioning": the provisioning login, subscribe to the
 *  reply topic first, then register. */
async function register(serial: string, key: string | null): Promise<Reply> {
  const clientId = `prov-${randomUUID()}`;
  const client = await mqtt.connectAsync(MQTT_URL, {
    clientId,
    username: "provisioning",
    password: PROVISIONING_PASSWORD,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  try {
    await client.subscribeAsync(`provisioning/${clientId}/reply`, { qos: 1 });
    const reply = new Promise<Reply>((resolve) => client.on("message", (_t, payload) => resolve(JSON.parse(payload.toString()))));
    const registration: Record<string, unknown> = {
      v: 1,
      client_id: clientId,
      serial,
      name: `Hall ${serial}`,
      model: "JS-1",
      firmware: "0.1.0",
      compartments: [{ number: 1, size: "small", label: null }, { number: 2, size: "large", label: null }],
    };
    if (key) registration.provisioning_key = key;
    await client.publishAsync("provisioning/register", JSON.stringify(registration), { qos: 1 });
    return await reply;
  } finally {
    await client.endAsync();
  }
}

test("a key from the panel, a locker provisioning with it, each step live on the progress page, then the bank's page", async ({ browser }) => {
  test.setTimeout(60_000);
  const { page, errors } = await admin(browser);
  await page.getByRole("link", { name: "Provisioning" }).click();
  await expect(page).toHaveURL(/\/admin\/provisioning$/);
  await page.getByTestId("key-name").fill("e2e key");
  await page.getByTestId("key-create").click();
  const secret = (await page.getByTestId("key-secret").textContent())!.trim();
  expect(secret.length).toBeGreaterThan(20);
  await expect(page.getByTestId("key-row").filter({ hasText: "e2e key" })).toHaveCount(1);

  const serial = `E2E-PROV-${Date.now()}`;
  const reply = await register(serial, secret);
  expect(reply.ok).toBe(true);
  expect(reply.username).toBe(`locker-${reply.locker_bank_id}`);
  // The new bank shows up live among those on their way.
  const waiting = page.locator(`[data-testid=waiting-bank][data-serial="${serial}"]`);
  await expect(waiting).toBeVisible();
  await waiting.getByRole("link").click();
  await expect(page).toHaveURL(new RegExp(`/admin/banks/${reply.locker_bank_id}/provisioning$`));
  const step = (s: string) => page.locator(`[data-testid=step][data-step="${s}"]`);
  for (const s of ["received", "validated", "credentials_created", "delivered"]) {
    await expect(step(s)).toHaveAttribute("data-done", "true");
  }
  await expect(step("first_heartbeat")).toHaveAttribute("data-done", "false");
  await expect(page.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "80");

  // The locker comes up on its own account and beats: the last step
  // appears, then the page moves on to the bank.
  const locker = await mqtt.connectAsync(reply.broker_url ?? MQTT_URL, {
    clientId: reply.username,
    username: reply.username,
    password: reply.password,
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  try {
    await locker.publishAsync(`locker/${reply.locker_bank_id}/state`, JSON.stringify({ v: 1, firmware: "0.1.0" }), { qos: 1 });
    await expect(step("first_heartbeat")).toHaveAttribute("data-done", "true");
    await expect(page).toHaveURL(new RegExp(`/admin/banks/${reply.locker_bank_id}$`), { timeout: 15_000 });
    await expect(page.getByTestId("bank-online")).toHaveText("online");
  } finally {
    await locker.endAsync();
  }

  // A bank that is provisioned already shows as complete (and stays).
  await page.goto(`/admin/banks/${reply.locker_bank_id}/provisioning`);
  await expect(page.getByTestId("progress")).toHaveAttribute("data-complete", "true");
  await expect(page.getByTestId("progress-status")).toHaveText("Provisioned: the locker is online.");

  // Revoked, the key admits nobody.
  await page.goto("/admin/provisioning");
  await page.locator("body[data-hydrated]").waitFor();
  await page.getByTestId("key-row").filter({ hasText: "e2e key" }).getByTestId("key-revoke").click();
  await expect(page.getByTestId("key-row").filter({ hasText: "e2e key" })).toContainText("revoked");
  const refused = await register(`${serial}-2`, secret);
  expect(refused.ok).toBe(false);
  expect(refused.error).toBe("invalid_key");
  expect(errors).toEqual([]);
});

/// Opens an admin page and waits until it is interactive: the marker the
/// app sets once hydrated comes before the page's own lazy chunk has
/// hydrated, and a field filled before that is emptied by its hydration;
/// the header's live indicator changes only once the whole tree has.
async function open(p: Page, path: string) {
  await p.goto(path);
  await p.locator("body[data-hydrated]").waitFor();
  await expect(p.getByTestId("connection")).toHaveAttribute("data-state", "live");
}

test("pre-registering a bank leads to its progress page, waiting for its locker", async ({ browser }) => {
  const { page, errors } = await admin(browser);
  await open(page, "/admin/provisioning");
  const serial = `E2E-PRE-${Date.now()}`;
  await page.getByTestId("pre-serial").fill(serial);
  await page.getByTestId("pre-name").fill("Pre Hall");
  // Meanwhile another admin pre-registers a bank: the live list refetches
  // under the half-filled form, which must keep what was typed.
  const other = await admin(browser);
  await open(other.page, "/admin/provisioning");
  const otherSerial = `${serial}-OTHER`;
  await other.page.getByTestId("pre-serial").fill(otherSerial);
  await other.page.getByTestId("pre-name").fill("Other Hall");
  await other.page.getByTestId("pre-register").click();
  await expect(other.page).toHaveURL(/\/admin\/banks\/[0-9a-f-]+\/provisioning$/);
  await expect(page.locator(`[data-testid=waiting-bank][data-serial="${otherSerial}"]`)).toBeVisible();
  await expect(page.getByTestId("pre-serial")).toHaveValue(serial);
  await expect(page.getByTestId("pre-name")).toHaveValue("Pre Hall");
  await page.getByTestId("pre-register").click();
  await expect(page).toHaveURL(/\/admin\/banks\/[0-9a-f-]+\/provisioning$/);
  await expect(page.getByTestId("progress-status")).toHaveText("Waiting for the locker to register…");
  // Its locker needs no key: the serial was registered.
  const reply = await register(serial, null);
  expect(reply.ok).toBe(true);
  await expect(page.locator('[data-testid=step][data-step="delivered"]')).toHaveAttribute("data-done", "true");
  expect(errors).toEqual([]);
  expect(other.errors).toEqual([]);
});
