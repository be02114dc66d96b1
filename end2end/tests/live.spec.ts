import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Browser, type Page, type WebSocketRoute } from "@playwright/test";
import { ADMIN, USER, signIn, watchErrors } from "./helpers";

// The admin panel and the end-user app, live, through the tab's realtime
// client: the hub's socket when it can connect, polling when it cannot,
// and a resume without gaps when the socket comes back. Against the
// `--demo` server (simulated lockers that answer after ~0.6 s and fail one
// open in ten) unless said otherwise. DEMO-3 is this file's bank
// (open_demo.spec.ts uses DEMO-1, hub.spec.ts DEMO-2).
const demo = `http://127.0.0.1:${process.env.E2E_DEMO_PORT ?? 3101}`;
const HUB = /\/app\/[^/?]+\?protocol=7/;

type Bank = { id: string; serial: string; name: string; online: boolean; compartments: { id: string; number: number }[] };

async function page(browser: Browser, who: typeof ADMIN, base = demo): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ baseURL: base, viewport: who === USER ? { width: 390, height: 800 } : undefined });
  const page = await context.newPage();
  const errors = watchErrors(page);
  return { page, errors };
}

async function onlineBank(p: Page, serial: string): Promise<Bank> {
  let bank: Bank | undefined;
  await expect
    .poll(
      async () => {
        const banks: Bank[] = await (await p.request.get("/api/v1/locker-banks")).json();
        bank = banks.find((b) => b.serial === serial && b.online);
        return bank !== undefined;
      },
      { timeout: 30_000 },
    )
    .toBe(true);
  return (await p.request.get(`/api/v1/locker-banks/${bank!.id}`)).json();
}

async function grant(admin: Page, compartmentId: string, base = demo): Promise<{ id: string }> {
  const res = await admin.request.post(`/api/v1/compartments/${compartmentId}/grants`, {
    headers: { Origin: base },
    data: { user_email: USER.email },
  });
  expect(res.status()).toBe(201);
  return res.json();
}

const connection = (p: Page) => p.getByTestId("connection");

/** Signs in and waits for the landing page, hydrated. */
async function login(p: Page, who: typeof ADMIN): Promise<void> {
  await signIn(p, who);
  await expect(p).toHaveURL(who === ADMIN ? /\/admin$/ : /\/my$/);
  await p.locator("body[data-hydrated]").waitFor();
}

/** The user's card of compartment `n` of the bank named `bank`. */
const card = (p: Page, bank: string, n: number) => p.getByTestId(`compartment-${n}`).filter({ hasText: `${bank} · #${n}` });

/** Taps Open on compartment `n` of /my until one ends `opened` (a simulated
 *  locker fails one in ten); returns the statuses the card showed. */
async function openUntilOpened(card: ReturnType<Page["getByTestId"]>): Promise<string> {
  const status = card.getByTestId("open-status");
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = (await status.count()) ? await status.getAttribute("data-command-id") : null;
    await card.getByTestId("open").click();
    if (before) await expect(status).not.toHaveAttribute("data-command-id", before);
    await expect(status).toHaveAttribute("data-status", /^(opened|failed)$/, { timeout: 20_000 });
    if ((await status.getAttribute("data-status")) === "opened") return (await status.getAttribute("data-command-id"))!;
    await expect(status).toHaveText("Failed: device error (jammed)");
  }
  throw new Error("five opens, none opened");
}

test("a user's Open: accepted at once, then sent and opened live over the hub, no reload", async ({ browser }) => {
  const { page: admin } = await page(browser, ADMIN);
  await login(admin, ADMIN);
  const bank = await onlineBank(admin, "DEMO-3");
  await grant(admin, bank.compartments[0].id);

  const { page: user, errors } = await page(browser, USER);
  await login(user, USER);
  await expect(connection(user)).toHaveAttribute("data-state", "live");
  // Every status the card shows, in order (a reload would lose this).
  await user.evaluate(() => {
    const w = window as any;
    w.__shown = [];
    new MutationObserver(() => {
      document.querySelectorAll("[data-testid=compartment-1] [data-testid=open-status]").forEach((e) => {
        if (!e.closest("li")?.textContent?.includes("DEMO-3")) return;
        const s = `${e.getAttribute("data-command-id")}:${e.getAttribute("data-status")}`;
        if (w.__shown[w.__shown.length - 1] !== s) w.__shown.push(s);
      });
    }).observe(document.body, { subtree: true, childList: true, attributes: true });
  });
  const commandId = await openUntilOpened(card(user, bank.name, 1));
  const shown: string[] = await user.evaluate(() => (window as any).__shown);
  const mine = shown.filter((s) => s.startsWith(commandId)).map((s) => s.split(":")[1]);
  // The answer (accepted) came first, then the locker's real result; the
  // tab spared its own echo (X-Socket-ID), so no status went backwards.
  expect(mine[0]).toMatch(/^(accepted|sent)$/);
  expect(mine[mine.length - 1]).toBe("opened");
  expect(mine).toEqual([...new Set(mine)]);
  // The header says how it arrived.
  await expect(connection(user)).toHaveText("live");
  expect(errors).toEqual([]);
});

test("WebSocket blocked: the same open reaches opened by polling; unblocked, it goes live again", async ({ browser }) => {
  test.setTimeout(90_000);
  const { page: admin } = await page(browser, ADMIN);
  await login(admin, ADMIN);
  const bank = await onlineBank(admin, "DEMO-3");
  await grant(admin, bank.compartments[1].id);

  const { page: user } = await page(browser, USER);
  let blocked = true;
  let refused = 0;
  await user.routeWebSocket(HUB, (ws) => {
    if (blocked) {
      refused++;
      return ws.close({ code: 1011, reason: "blocked by the test" });
    }
    ws.connectToServer();
  });
  await login(user, USER);
  await expect(connection(user)).toHaveAttribute("data-state", "polling", { timeout: 15_000 });
  expect(refused).toBeGreaterThanOrEqual(2);
  const polls = user.waitForRequest((r) => r.url().includes("/api/v1/events/since"));
  await openUntilOpened(card(user, bank.name, 2));
  await polls;
  await expect(connection(user)).toHaveAttribute("data-state", "polling");
  // The socket is let through: the client, still retrying, goes live.
  blocked = false;
  await expect(connection(user)).toHaveAttribute("data-state", "live", { timeout: 20_000 });
  await openUntilOpened(card(user, bank.name, 2));
});

test("gap: the socket is cut while five opens complete; the hub's resume fills the history, once each", async ({ browser }) => {
  test.setTimeout(90_000);
  const { page: admin, errors } = await page(browser, ADMIN);
  // Through a proxy the test controls: "pass" relays to the server (and
  // notes the replayed envelopes), "hang" accepts the socket but never
  // answers, as a dead network would.
  let mode: "pass" | "hang" = "pass";
  let live: WebSocketRoute | undefined;
  const replayed: number[] = [];
  await admin.routeWebSocket(HUB, (ws) => {
    if (mode === "hang") return;
    live = ws;
    const server = ws.connectToServer();
    server.onMessage((m) => {
      const frame = JSON.parse(String(m));
      if (typeof frame.data === "string" && frame.data.includes('"replay":true')) {
        replayed.push(JSON.parse(frame.data).seq);
      }
      ws.send(m);
    });
  });
  await login(admin, ADMIN);
  const bank = await onlineBank(admin, "DEMO-3");
  await admin.goto("/admin/commands");
  await admin.locator("body[data-hydrated]").waitFor();
  await expect(connection(admin)).toHaveAttribute("data-state", "live");
  await admin.evaluate(() => ((window as any).__same_page = true));

  // Cut: the socket drops, and the reconnect hangs.
  mode = "hang";
  await live!.close({ code: 1006 });
  await expect(connection(admin)).toHaveAttribute("data-state", "reconnecting");
  // Five opens (admin overrides, through the API) complete meanwhile.
  const ids: string[] = [];
  for (const c of bank.compartments.slice(0, 5)) {
    const res = await admin.request.post(`/api/v1/compartments/${c.id}/open`, {
      headers: { Origin: demo },
      data: { override: true, reason: "gap test" },
    });
    expect(res.status()).toBe(202);
    ids.push((await res.json()).command_id);
  }
  for (const id of ids) {
    await expect
      .poll(async () => (await (await admin.request.get(`/api/v1/compartments/open-requests/${id}`)).json()).status, { timeout: 15_000 })
      .toMatch(/^(opened|failed)$/);
  }
  // Not one of them is on the page yet.
  for (const id of ids) {
    await expect(admin.locator(`[data-testid=command-row][data-command-id="${id}"]`)).toHaveCount(0);
  }
  // Restored: the hung attempt times out, the next one goes through, and
  // the hub replays what the tab missed.
  mode = "pass";
  await expect(connection(admin)).toHaveAttribute("data-state", "live", { timeout: 30_000 });
  for (const id of ids) {
    await expect(admin.locator(`[data-testid=command-row][data-command-id="${id}"]`)).toHaveCount(1);
  }
  expect(replayed.length).toBeGreaterThanOrEqual(ids.length);
  expect(await admin.evaluate(() => (window as any).__same_page)).toBe(true);
  const api = await (await admin.request.get("/api/v1/compartments/open-requests?per_page=1")).json();
  await expect(admin.getByTestId("command-total")).toHaveAttribute("data-total", String(api.total));
  expect(errors).toEqual([]);
});

test("two contexts: the admin's history and dashboard show a user's open live; the toast is for the admin's own override only", async ({ browser }) => {
  test.setTimeout(90_000);
  const { page: admin, errors } = await page(browser, ADMIN);
  await login(admin, ADMIN);
  const bank = await onlineBank(admin, "DEMO-3");
  await grant(admin, bank.compartments[5].id);
  const dashboard = await admin.context().newPage();
  await dashboard.goto("/admin");
  await dashboard.locator("body[data-hydrated]").waitFor();
  await admin.goto("/admin/commands");
  await admin.locator("body[data-hydrated]").waitFor();
  await expect(connection(admin)).toHaveAttribute("data-state", "live");
  const openedBefore = Number(await dashboard.getByTestId("stat-opened-today").getAttribute("data-value"));
  // A filter chosen but not applied yet survives the live refresh below.
  await admin.getByTestId("filter-status").selectOption("opened");

  const { page: user } = await page(browser, USER);
  await login(user, USER);
  await user.locator("body[data-hydrated]").waitFor();
  const commandId = await openUntilOpened(card(user, bank.name, 6));
  const row = admin.locator(`[data-testid=command-row][data-command-id="${commandId}"]`);
  await expect(row).toHaveAttribute("data-status", "opened");
  await expect(row).toHaveAttribute("data-new", "true");
  await expect(admin.getByTestId("filter-status")).toHaveValue("opened");
  await admin.getByTestId("filter-apply").click();
  await expect(admin).toHaveURL(/status=opened/);
  await expect(admin.locator("[data-testid=command-row]:not([data-status=opened])")).toHaveCount(0);
  await expect(row).toBeVisible();
  await expect(dashboard.getByTestId("stat-opened-today")).not.toHaveAttribute("data-value", String(openedBefore));
  // The user's command is not the admin's: no toast.
  await expect(admin.getByTestId("toast")).toHaveCount(0);

  // The admin's own override, from the bank page: the command id at once,
  // the result live, and a toast.
  await admin.goto(`/admin/banks/${bank.id}`);
  await admin.locator("body[data-hydrated]").waitFor();
  const adminCard = admin.getByTestId("compartment-6");
  await adminCard.getByTestId("admin-open").click();
  await admin.getByTestId("open-reason").fill("courier at the door");
  await admin.getByTestId("open-confirm").click();
  // The command id at once...
  const answer = admin.getByTestId("open-answer");
  await expect(answer).toHaveAttribute("data-status", "accepted");
  const overrideId = await answer.getAttribute("data-command-id");
  await expect(admin.getByTestId("toast")).toHaveCount(1, { timeout: 20_000 });
  await expect(admin.getByTestId("toast")).toContainText(/opened|failed/);
  // ...the result live on the card, under the same command.
  await expect(adminCard.getByTestId("open-status")).toHaveAttribute("data-status", /^(opened|failed)$/);
  await expect(adminCard.getByTestId("latest-command")).toHaveAttribute("href", `/admin/commands/${overrideId}`);
  // Its timeline: requested, authorized, sent, then the result, with the reason.
  await admin.goto(`/admin/commands/${overrideId}`);
  await expect(admin.getByTestId("timeline-step")).toHaveCount(4);
  await expect(admin.getByText("courier at the door")).toBeVisible();
  // It is in the notification list, unread, with the count in the sidebar;
  // marked read, the count goes.
  await expect(admin.getByTestId("unread-count")).toBeVisible();
  await admin.goto("/admin/notifications");
  await admin.locator("body[data-hydrated]").waitFor();
  const note = admin.locator(`[data-testid=note][data-command="${overrideId}"]`);
  await expect(note).toHaveAttribute("data-unread", "true");
  await admin.getByTestId("notes-mark-read").click();
  await expect(note).toHaveAttribute("data-unread", "false");
  await expect(admin.getByTestId("notes-unread")).toHaveText("0 unread");
  await expect(admin.getByTestId("unread-count")).toHaveCount(0);
  expect(errors).toEqual([]);
});

test("denied, with its reason in words, when the grant was revoked after the page loaded", async ({ browser, baseURL }) => {
  const base = baseURL!;
  const { page: admin } = await page(browser, ADMIN, base);
  await login(admin, ADMIN);
  const bankRes = await admin.request.post("/api/v1/locker-banks", {
    headers: { Origin: base },
    data: { serial: "E2E-LIVE-1", name: "Live Hall", compartments: [{ number: 1, size: "medium" }] },
  });
  expect(bankRes.status()).toBe(201);
  const bank = await bankRes.json();
  const g = await grant(admin, bank.compartments[0].id, base);

  const { page: user } = await page(browser, USER, base);
  await login(user, USER);
  const hall = card(user, "Live Hall", 1);
  await expect(hall).toBeVisible();
  const revoke = await admin.request.delete(`/api/v1/compartments/${bank.compartments[0].id}/grants/${g.id}`, {
    headers: { Origin: base },
  });
  expect(revoke.ok()).toBe(true);
  await hall.getByTestId("open").click();
  await expect(hall.getByTestId("open-status")).toHaveAttribute("data-status", "denied");
  await expect(hall.getByTestId("open-status")).toHaveText("Denied: no access");
});

test("accessibility: no serious or critical axe violation on any page", async ({ browser }) => {
  test.setTimeout(90_000);
  const { page: admin } = await page(browser, ADMIN);
  const check = async (p: Page, path: string) => {
    await p.goto(path);
    await p.locator("body[data-hydrated]").waitFor();
    const { violations } = await new AxeBuilder({ page: p }).analyze();
    const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    expect(bad.map((v) => `${path}: ${v.id} (${v.impact}) ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)).toEqual([]);
  };
  await check(admin, "/login");
  await login(admin, ADMIN);
  const bank = await onlineBank(admin, "DEMO-3");
  const history = await (await admin.request.get("/api/v1/compartments/open-requests?per_page=1")).json();
  for (const path of [
    "/admin",
    "/admin/banks",
    `/admin/banks/${bank.id}`,
    `/admin/banks/${bank.id}/provisioning`,
    "/admin/provisioning",
    "/admin/commands",
    "/admin/access",
    "/admin/users",
    "/admin/notifications",
  ]) {
    await check(admin, path);
  }
  if (history.items.length) await check(admin, `/admin/commands/${history.items[0].command_id}`);
  const { page: user } = await page(browser, USER);
  await login(user, USER);
  await check(user, "/my");
});
