import { expect, test, type Browser, type Page } from "@playwright/test";
import { ADMIN, ADMIN2, OTHER, signIn, watchErrors } from "./helpers";

// Live record sync, as two admins of one tenant use it (A: admin@, B:
// Bea Admin), and a third of another tenant who must see nothing. Against
// the plain server.

const HUB = /\/app\/[^/?]+\?protocol=7/;

async function admin(browser: Browser, base: string, who: { email: string; password: string }) {
  const context = await browser.newContext({ baseURL: base });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await signIn(page, who);
  await expect(page).toHaveURL(/\/admin$/);
  return { page, errors };
}

async function open(p: Page, path: string, state = "live") {
  await p.goto(path);
  await p.locator("body[data-hydrated]").waitFor();
  await expect(p.getByTestId("connection")).toHaveAttribute("data-state", state, { timeout: 20_000 });
}

async function newBank(p: Page, base: string, compartments = 2) {
  const serial = `E2E-REC-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const res = await p.request.post("/api/v1/locker-banks", {
    headers: { Origin: base },
    data: {
      serial,
      name: serial,
      compartments: Array.from({ length: compartments }, (_, i) => ({ number: i + 1, size: "small" })),
    },
  });
  expect(res.status()).toBe(201);
  return (await res.json()) as { id: string; name: string };
}

/// A PATCH as a script makes it: If-Match with the current version.
async function patchBank(p: Page, base: string, id: string, body: object) {
  const got = await p.request.get(`/api/v1/locker-banks/${id}`);
  const res = await p.request.patch(`/api/v1/locker-banks/${id}`, {
    headers: { Origin: base, "If-Match": got.headers()["etag"] },
    data: body,
  });
  expect(res.status()).toBe(200);
}

async function stored(p: Page, id: string) {
  return (await (await p.request.get(`/api/v1/locker-banks/${id}`)).json()) as {
    name: string;
    location: string | null;
    notes: string | null;
  };
}

const editor = (p: Page) => p.getByTestId("editor-locker-bank");
const field = (p: Page, name: string) => editor(p).getByTestId(`field-${name}`);

test("editor: presence, silent refresh when clean, banner when dirty, the conflict dialog, no echo", async ({ browser, baseURL }) => {
  test.setTimeout(60_000);
  const base = baseURL!;
  const { page: a, errors } = await admin(browser, base, ADMIN);
  const { page: b } = await admin(browser, base, ADMIN2);
  const bank = await newBank(a, base);
  await open(a, `/admin/banks/${bank.id}`);
  await open(b, `/admin/banks/${bank.id}`);

  // Who else is here, and "editing" while their form is dirty.
  const bea = editor(a).getByTestId("record-other").filter({ hasText: ADMIN2.name });
  await expect(bea).toHaveAttribute("data-editing", "false");
  await field(b, "location").fill("typing");
  await expect(bea).toHaveAttribute("data-editing", "true");
  await field(b, "location").fill("");
  await expect(bea).toHaveAttribute("data-editing", "false");

  // A is clean: B's save refreshes A's fields silently, A's focus stays.
  await field(a, "name").focus();
  await field(b, "location").fill("Hall 2");
  await b.getByTestId("record-save").click();
  await expect(field(a, "location")).toHaveValue("Hall 2");
  await expect(field(a, "name")).toBeFocused();
  await expect(editor(a).getByTestId("record-banner")).toHaveCount(0);
  // B's own tab: no banner for B's own save.
  await expect(editor(b).getByTestId("record-status")).toHaveText("Saved.");
  await expect(editor(b).getByTestId("record-banner")).toHaveCount(0);

  // A is dirty (notes); B renames: A's banner names B within 2 s.
  await field(a, "notes").fill("A's note");
  const renamed = `${bank.name} by Bea`;
  await field(b, "name").fill(renamed);
  await b.getByTestId("record-save").click();
  await expect(editor(a).getByTestId("record-banner")).toContainText(`Updated by ${ADMIN2.name}`, { timeout: 2_000 });
  await expect(field(a, "notes")).toHaveValue("A's note");
  await expect(editor(b).getByTestId("record-banner")).toHaveCount(0);

  // Dismiss, then save on the stale version: the dialog, nothing written.
  await editor(a).getByTestId("banner-dismiss").click();
  await expect(editor(a).getByTestId("record-banner")).toHaveCount(0);
  await editor(a).getByTestId("record-save").click();
  const dialog = a.getByTestId("conflict");
  await expect(dialog).toBeVisible();
  await expect(dialog.locator("#conflict-h")).toBeFocused();
  await expect(dialog.getByTestId("conflict-name")).toHaveAttribute("data-clash", "false");
  await expect(dialog.getByTestId("conflict-name").getByTestId("theirs")).toHaveText(renamed);
  await expect(dialog.getByTestId("conflict-notes").getByTestId("mine")).toContainText("A's note");
  expect(await stored(a, bank.id)).toMatchObject({ name: renamed, notes: null });

  // Re-apply mine: B's name stays, A's note lands.
  await dialog.getByTestId("conflict-reapply").click();
  await expect(dialog).toHaveCount(0);
  await expect(editor(a).getByTestId("record-status")).toHaveText("Saved.");
  expect(await stored(a, bank.id)).toMatchObject({ name: renamed, location: "Hall 2", notes: "A's note" });
  await expect(field(b, "notes")).toHaveValue("A's note");

  // Both change the location: the person chooses; "Take theirs" shows B's.
  await field(a, "location").fill("A's hall");
  await field(b, "location").fill("B's hall");
  await b.getByTestId("record-save").click();
  await expect(editor(a).getByTestId("record-banner")).toBeVisible();
  await editor(a).getByTestId("record-save").click();
  await expect(dialog.getByTestId("conflict-location")).toHaveAttribute("data-clash", "true");
  await expect(dialog.getByTestId("conflict-reapply")).toBeDisabled();
  await dialog.getByTestId("conflict-location").getByTestId("keep-mine").check();
  await expect(dialog.getByTestId("conflict-reapply")).toBeEnabled();
  await dialog.getByTestId("conflict-theirs").click();
  await expect(field(a, "location")).toHaveValue("B's hall");
  expect((await stored(a, bank.id)).location).toBe("B's hall");

  // "Reload latest" asks first, then discards A's changes for B's.
  await field(a, "notes").fill("to be discarded");
  await field(b, "notes").fill("B's note");
  await b.getByTestId("record-save").click();
  await editor(a).getByTestId("banner-reload").click();
  await expect(field(a, "notes")).toHaveValue("to be discarded");
  await editor(a).getByTestId("banner-reload-confirm").click();
  await expect(field(a, "notes")).toHaveValue("B's note");
  await expect(editor(a).getByTestId("record-banner")).toHaveCount(0);

  // A compartment's editor: B's card shows the new label, live.
  await a.getByTestId("compartment-1").getByTestId("compartment-edit").click();
  const compartment = a.getByTestId("editor-compartment");
  await compartment.getByTestId("field-label").fill("Parcels");
  await compartment.getByTestId("field-size").selectOption("large");
  await compartment.getByTestId("record-save").click();
  await expect(compartment.getByTestId("record-status")).toHaveText("Saved.");
  await expect(b.getByTestId("compartment-1")).toContainText("#1 Parcels");
  await expect(b.getByTestId("compartment-1")).toContainText("large");
  // The refused saves are the browser's own log lines; nothing else.
  expect(errors.filter((e) => !e.includes("409 (Conflict)"))).toEqual([]);
});

test("without a socket: B's polling tab gets no echo; A's banner comes by version polling", async ({ browser, baseURL }) => {
  test.setTimeout(90_000);
  const base = baseURL!;
  const { page: a } = await admin(browser, base, ADMIN);
  const { page: b } = await admin(browser, base, ADMIN2);
  const bank = await newBank(a, base);
  // A: no socket, and no log polling either: only the version endpoint.
  await a.routeWebSocket(HUB, (ws) => ws.close({ code: 1011, reason: "blocked by the test" }));
  await a.route("**/api/v1/events/since*", (r) => r.abort());
  // B: no socket; it polls the log.
  await b.routeWebSocket(HUB, (ws) => ws.close({ code: 1011, reason: "blocked by the test" }));
  // (Its log polls fail, so its indicator says offline.)
  await open(a, `/admin/banks/${bank.id}`, "offline");
  await open(b, `/admin/banks/${bank.id}`, "polling");

  await field(a, "notes").fill("A was here");
  await field(b, "location").fill("Polled hall");
  const version = a.waitForResponse((r) => r.url().includes(`/api/v1/records/locker-bank/${bank.id}/version`), {
    timeout: 30_000,
  });
  await b.getByTestId("record-save").click();
  await expect(editor(b).getByTestId("record-status")).toHaveText("Saved.");
  await version;
  await expect(editor(a).getByTestId("record-banner")).toContainText(`Updated by ${ADMIN2.name}`, { timeout: 15_000 });

  // B's own log polls after its save leave its own change out: no banner,
  // and its form is not reloaded under it.
  await field(b, "notes").fill("B keeps typing");
  for (let i = 0; i < 2; i++) {
    await b.waitForResponse((r) => r.url().includes("/api/v1/events/since"));
  }
  await expect(editor(b).getByTestId("record-banner")).toHaveCount(0);
  await expect(field(b, "notes")).toHaveValue("B keeps typing");
});

test("tables: ten quick changes, one refresh; an inline edit holds it; an import of 200 refreshes once", async ({ browser, baseURL }) => {
  test.setTimeout(90_000);
  const base = baseURL!;
  const { page: a, errors } = await admin(browser, base, ADMIN);
  const { page: b } = await admin(browser, base, ADMIN2);
  const { page: o } = await admin(browser, base, OTHER);
  const banks = [await newBank(a, base), await newBank(a, base), await newBank(a, base), await newBank(a, base)];

  await a.clock.install();
  await open(a, "/admin/banks");
  await open(o, "/admin/banks");
  let lists = 0;
  a.on("request", (r) => {
    if (r.url().includes("/sfn/bank_list")) lists++;
  });
  // From here A's timers run only when the test says.
  await a.clock.pauseAt(new Date(Date.now() + 60_000));
  const table = a.getByTestId("bank-table");

  for (let i = 0; i < 10; i++) {
    await patchBank(b, base, banks[i % 3].id, { location: `Quick ${i}` });
  }
  await expect(table).toHaveAttribute("data-waiting", "10");
  expect(lists).toBe(0);
  // A half-typed search keeps its text and focus through the refresh.
  await a.getByTestId("bank-search").fill("half-typ");
  await a.clock.runFor(3_100);
  await expect(table).toHaveAttribute("data-refreshes", "1");
  await expect(a.getByTestId("bank-search")).toBeFocused();
  await expect(a.getByTestId("bank-search")).toHaveValue("half-typ");
  await expect(table.locator(`[data-bank-id="${banks[0].id}"]`)).toContainText("Quick 9");
  await expect(table.locator(`[data-bank-id="${banks[0].id}"]`)).toHaveAttribute("data-changed", "true");
  expect(lists).toBe(1);
  await a.clock.runFor(10_000);
  expect(lists).toBe(1);

  // An inline edit open: changes wait, the prompt counts them, A's text stays.
  const row = table.locator(`[data-bank-id="${banks[1].id}"]`);
  await row.getByTestId("bank-rename").click();
  await row.getByTestId("bank-rename-input").fill("Typed by A");
  await patchBank(b, base, banks[0].id, { location: "While A types" });
  await patchBank(b, base, banks[2].id, { location: "While A types" });
  await expect(a.getByTestId("rows-changed")).toContainText("2 rows changed");
  await a.clock.runFor(10_000);
  expect(lists).toBe(1);
  await expect(row.getByTestId("bank-rename-input")).toHaveValue("Typed by A");
  await a.getByTestId("rows-keep").click();
  await expect(a.getByTestId("rows-changed")).toHaveCount(0);
  await patchBank(b, base, banks[3].id, { location: "And once more" });
  await expect(a.getByTestId("rows-changed")).toContainText("3 rows changed");
  await a.getByTestId("rows-reload").click();
  await expect(table).toHaveAttribute("data-refreshes", "2");
  expect(lists).toBe(2);
  await expect(row.getByTestId("bank-rename-input")).toHaveValue("Typed by A");
  await row.getByTestId("bank-rename-save").click();
  await expect(row).toContainText("Typed by A");

  // Paused: nothing refreshes, the toggle says how many wait.
  await a.getByTestId("live-pause").click();
  await patchBank(b, base, banks[2].id, { location: "Paused" });
  await expect(a.getByTestId("live-pause")).toContainText("1 waiting");
  await a.clock.runFor(10_000);
  const before = lists;
  await a.getByTestId("live-pause").click();
  await expect.poll(() => lists).toBe(before + 1);

  // The other tenant's admin heard none of it.
  await expect(o.getByTestId("bank-table")).toHaveAttribute("data-waiting", "0");
  await expect(o.getByTestId("bank-table")).toHaveAttribute("data-refreshes", "0");
  expect(errors).toEqual([]);

  // An import of 200 compartments: one summary envelope, one refresh of
  // A's bank page.
  const target = banks[0];
  const pages: string[] = [];
  await a.clock.resume();
  const p = await a.context().newPage();
  await open(p, `/admin/banks/${target.id}`);
  p.on("request", (r) => {
    if (r.url().includes("/sfn/bank_page")) pages.push(r.url());
  });
  const head = await p.request.get(`/api/v1/events/since?channel=private-locker-bank.${target.id}&seq=0&limit=1000`);
  const seq = ((await head.json()) as { seq: number }).seq;
  const csv = ["number,size,label", ...Array.from({ length: 200 }, (_, i) => `${i + 1},medium,Row ${i + 1}`)].join("\n");
  const imported = await b.request.post(`/api/v1/locker-banks/${target.id}/compartments/import`, {
    headers: { Origin: base, "Content-Type": "text/csv" },
    data: csv,
  });
  expect(imported.status()).toBe(200);
  expect(await imported.json()).toMatchObject({ added: 198, updated: 2 });
  await expect(p.getByTestId("compartments").locator("li")).toHaveCount(200);
  const after = (await (
    await p.request.get(`/api/v1/events/since?channel=private-locker-bank.${target.id}&seq=${seq}&limit=1000`)
  ).json()) as { events: { event: string }[] };
  expect(after.events.map((e) => e.event)).toEqual(["RecordsImported"]);
  expect(pages.length).toBe(1);

  // The same import from the bank page: one more compartment, in words.
  await p.getByTestId("import-csv").fill("number,size,label\n201,large,From the page");
  await p.getByTestId("import-submit").click();
  await expect(p.getByTestId("import-result")).toHaveText("Imported: 1 added, 0 updated, 0 unchanged.");
  await expect(p.getByTestId("compartments").locator("li")).toHaveCount(201);
  await p.getByTestId("import-csv").fill("number,size\n1,gigantic");
  await p.getByTestId("import-submit").click();
  await expect(p.getByTestId("import-result")).toContainText("gigantic");
});

test("the users table: another admin's edit refreshes it once, in place; the filter typed stays", async ({ browser, baseURL }) => {
  const base = baseURL!;
  const { page: a, errors } = await admin(browser, base, ADMIN);
  const { page: b } = await admin(browser, base, ADMIN2);
  await open(a, "/admin/users");
  const filter = a.getByTestId("user-filter");
  await filter.fill("e2e.test");
  const users = (await (await b.request.get("/api/v1/users")).json()) as { id: string; email: string }[];
  const uma = users.find((u) => u.email === "user@e2e.test")!;
  const got = await b.request.get(`/api/v1/users/${uma.id}`);
  const name = `Uma ${Date.now()}`;
  const res = await b.request.patch(`/api/v1/users/${uma.id}`, {
    headers: { Origin: base, "If-Match": got.headers()["etag"] },
    data: { name },
  });
  expect(res.status()).toBe(200);
  const row = a.locator('[data-testid=user-row][data-email="user@e2e.test"]');
  await expect(row).toContainText(name);
  await expect(row).toHaveAttribute("data-changed", "true");
  await expect(a.getByTestId("user-table")).toHaveAttribute("data-refreshes", "1");
  await expect(filter).toBeFocused();
  await expect(filter).toHaveValue("e2e.test");
  expect(errors).toEqual([]);
});

test("timers outlive nothing: leaving a table with a refresh armed, or an editor, breaks nothing", async ({ browser, baseURL }) => {
  const base = baseURL!;
  const { page: a, errors } = await admin(browser, base, ADMIN);
  const { page: b } = await admin(browser, base, ADMIN2);
  const bank = await newBank(a, base);
  await a.clock.install();
  await open(a, "/admin/banks");
  await a.clock.pauseAt(new Date(Date.now() + 60_000));
  await patchBank(b, base, bank.id, { location: "Armed" });
  await expect(a.getByTestId("bank-table")).toHaveAttribute("data-waiting", "1");
  // Away with the throttle armed, then past it.
  await a.locator(`[data-bank-id="${bank.id}"] a`).first().click();
  await expect(field(a, "name")).toHaveValue(bank.name);
  await a.clock.runFor(3_500);
  // Away from the editor, then past its version poll.
  await a.getByRole("navigation", { name: "Admin" }).getByRole("link", { name: "Locker banks" }).click();
  await expect(a.getByTestId("bank-table")).toBeVisible();
  await a.clock.runFor(31_000);
  // Still a working app.
  await a.locator(`[data-bank-id="${bank.id}"]`).getByTestId("bank-rename").click();
  await expect(a.locator(`[data-bank-id="${bank.id}"]`).getByTestId("bank-rename-input")).toHaveValue(bank.name);
  expect(errors).toEqual([]);
});

test("the other tenant's admin is refused on the record channels and the version endpoint", async ({ browser, baseURL }) => {
  const base = baseURL!;
  const { page: a } = await admin(browser, base, ADMIN);
  const { page: o } = await admin(browser, base, OTHER);
  const bank = await newBank(a, base);
  for (const channel of [`private-record.locker-bank.${bank.id}`, `presence-record.locker-bank.${bank.id}`]) {
    const res = await o.request.post("/broadcasting/auth", {
      headers: { Origin: base },
      form: { socket_id: "1234.5678", channel_name: channel },
    });
    expect(res.status(), channel).toBe(403);
    const mine = await a.request.post("/broadcasting/auth", {
      headers: { Origin: base },
      form: { socket_id: "1234.5678", channel_name: channel },
    });
    expect(mine.status(), channel).toBe(200);
  }
  expect((await o.request.get(`/api/v1/records/locker-bank/${bank.id}/version`)).status()).toBe(404);
  expect((await a.request.get(`/api/v1/records/locker-bank/${bank.id}/version`)).status()).toBe(200);
});
