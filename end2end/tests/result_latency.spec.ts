import { randomUUID } from "node:crypto";
import { expect, test } from "@playwright/test";
import mqtt from "mqtt";
import { ADMIN, USER, signIn } from "./helpers";

// A benchmark, not a test (skipped unless BENCH=1): the time from a
// locker publishing its result to the end-user app showing `opened`, in
// Chromium, over the hub's socket. The locker is MQTT.js on the demo
// server's embedded broker; the browser stamps the moment the card turns
// `opened` (a MutationObserver), the locker the moment before it
// publishes (one machine, one clock). The baseline it names, in the same
// run: the server's own commit of that result (`opened_at` in the API),
// so the ratio shows what the channel log, the hub, the socket and the
// page add on top of recording the result.
//
//   BENCH=1 LOCKSTEP_BIN=… npx playwright test -c end2end/playwright.config.ts result_latency
const demo = `http://127.0.0.1:${process.env.E2E_DEMO_PORT ?? 3101}`;
const MQTT_URL = `mqtt://127.0.0.1:${process.env.E2E_DEMO_MQTT_PORT ?? 3183}`;
const OPENS = Number(process.env.BENCH_OPENS ?? 40);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.round((s.length - 1) * p))];
};

test("bench: locker result → the browser shows opened", async ({ browser }) => {
  test.skip(!process.env.BENCH, "a benchmark: BENCH=1 runs it");
  test.setTimeout(180_000);
  const context = await browser.newContext({ baseURL: demo });
  const admin = await context.newPage();
  await signIn(admin, ADMIN);
  await expect(admin).toHaveURL(/\/admin$/);
  const key = await (await admin.request.post("/api/v1/provisioning-keys", { headers: { Origin: demo }, data: { name: "latency bench" } })).json();

  // docs/mqtt.md: provision, then be the locker.
  const clientId = `prov-${randomUUID()}`;
  const prov = await mqtt.connectAsync(MQTT_URL, { clientId, username: "provisioning", password: "e2e-provisioning-password", protocolVersion: 4, reconnectPeriod: 0 });
  await prov.subscribeAsync(`provisioning/${clientId}/reply`, { qos: 1 });
  const replied = new Promise<any>((resolve) => prov.on("message", (_t, p) => resolve(JSON.parse(p.toString()))));
  const serial = `LAT-${Date.now()}`;
  await prov.publishAsync(
    "provisioning/register",
    JSON.stringify({ v: 1, client_id: clientId, serial, name: serial, model: "JS-1", firmware: "1", compartments: [{ number: 1, size: "small", label: null }], provisioning_key: key.secret }),
    { qos: 1 },
  );
  const reply = await replied;
  await prov.endAsync();
  expect(reply.ok).toBe(true);
  const bank = reply.locker_bank_id;
  const locker = await mqtt.connectAsync(reply.broker_url ?? MQTT_URL, {
    clientId: reply.username, username: reply.username, password: reply.password, clean: false, protocolVersion: 4, reconnectPeriod: 0,
  });
  const published = new Map<string, number>();
  await locker.subscribeAsync([`locker/${bank}/command`, `locker/${bank}/ack`], { qos: 1 });
  locker.on("message", (topic, payload) => {
    if (!topic.endsWith("/command")) return;
    const c = JSON.parse(payload.toString());
    published.set(c.command_id, Date.now());
    locker.publish(`locker/${bank}/status`, JSON.stringify({ v: 1, command_id: c.command_id, result: "action_completed" }), { qos: 1 });
  });
  await locker.publishAsync(`locker/${bank}/state`, JSON.stringify({ v: 1 }), { qos: 1 });
  const detail = await (await admin.request.get(`/api/v1/locker-banks/${bank}`)).json();
  const grant = await admin.request.post(`/api/v1/compartments/${detail.compartments[0].id}/grants`, { headers: { Origin: demo }, data: { user_email: USER.email } });
  expect(grant.status()).toBe(201);

  const userContext = await browser.newContext({ baseURL: demo, viewport: { width: 390, height: 800 } });
  const user = await userContext.newPage();
  await signIn(user, USER);
  await expect(user).toHaveURL(/\/my$/);
  await user.locator("body[data-hydrated]").waitFor();
  await expect(user.getByTestId("connection")).toHaveAttribute("data-state", "live");
  await user.evaluate(() => {
    const w = window as any;
    w.__openedAt = {};
    new MutationObserver(() => {
      document.querySelectorAll("[data-testid=open-status][data-status=opened]").forEach((e) => {
        const id = e.getAttribute("data-command-id")!;
        if (!(id in w.__openedAt)) w.__openedAt[id] = Date.now();
      });
    }).observe(document.body, { subtree: true, childList: true, attributes: true });
  });
  const card = user.getByTestId("compartment-1").filter({ hasText: `${serial} · #1` });
  const status = card.getByTestId("open-status");
  const toBrowser: number[] = [];
  const toCommit: number[] = [];
  for (let i = 0; i < OPENS; i++) {
    const before = (await status.count()) ? await status.getAttribute("data-command-id") : null;
    await card.getByTestId("open").click();
    if (before) await expect(status).not.toHaveAttribute("data-command-id", before);
    await expect(status).toHaveAttribute("data-status", "opened", { timeout: 20_000 });
    const id = (await status.getAttribute("data-command-id"))!;
    const shown: number = await user.evaluate((id) => (window as any).__openedAt[id], id);
    const view = await (await user.request.get(`/api/v1/compartments/open-requests/${id}`)).json();
    const sent = published.get(id)!;
    toBrowser.push(shown - sent);
    toCommit.push(view.opened_at - sent);
  }
  await locker.endAsync();
  const line = (name: string, xs: number[]) => `${name}: p50 ${pct(xs, 0.5)} ms, p95 ${pct(xs, 0.95)} ms, max ${Math.max(...xs)} ms`;
  console.log(`RESULT_LATENCY ${OPENS} opens, one locker (MQTT.js) on the embedded broker, Chromium over the hub's socket`);
  console.log(`  baseline  ${line("result published → server commit (opened_at)", toCommit)}`);
  console.log(`  measured  ${line("result published → card shows opened", toBrowser)}`);
  console.log(`  ratio (p50): ${(pct(toBrowser, 0.5) / Math.max(1, pct(toCommit, 0.5))).toFixed(2)}x the baseline`);
});
