import { randomUUID } from "node:crypto";
import { expect, test, type Browser, type BrowserContext, type Page } from "@playwright/test";
import Pusher from "pusher";
import {
  ADMIN,
  PUSHER_APP_ID,
  PUSHER_APP_KEY,
  PUSHER_APP_SECRET,
  USER,
  signIn,
  watchErrors,
} from "./helpers";

// The realtime hub against unmodified third-party clients: pusher-js and
// Laravel Echo run in the real page (the session cookie, the page's origin
// and its Content-Security-Policy are a user's), the `pusher` REST library
// in Node. Against the `--demo` server, whose simulated lockers answer.
const demoPort = Number(process.env.E2E_DEMO_PORT ?? 3101);
const demo = `http://127.0.0.1:${demoPort}`;

// The libraries' browser bundles as published: pusher-js's UMD build sets
// `window.Pusher`; laravel-echo's IIFE build sets `window.Echo` to its module
// namespace (the class is `Echo.default`).
const vendor: Record<string, string> = {
  "pusher.min.js": require.resolve("pusher-js/dist/web/pusher.min.js"),
  "echo.iife.js": require.resolve("laravel-echo/iife"),
};

type Me = { id: string; name: string; email: string; role: string; tenant_id: string };
type Bank = { id: string; serial: string; online: boolean; compartments: { id: string; number: number }[] };
type Envelope = {
  v: number;
  event: string;
  event_id: string;
  channel: string;
  seq: number;
  occurred_at: string;
  tenant: string;
  subject: { type: string; id: string };
  sender: { type: string; id?: string };
  correlation_id: string;
  data: { command_id: string; status: string; reason: string | null; [k: string]: unknown };
  meta: { replay: boolean };
};

function rest(): Pusher {
  return new Pusher({
    appId: PUSHER_APP_ID,
    key: PUSHER_APP_KEY,
    secret: PUSHER_APP_SECRET,
    host: "127.0.0.1",
    port: String(demoPort),
    useTLS: false,
  });
}

/** A signed-in page of its own context (its own session), on /admin or /my. */
async function signedIn(browser: Browser, who: typeof ADMIN): Promise<{ context: BrowserContext; page: Page; errors: string[]; me: Me }> {
  const context = await browser.newContext({ baseURL: demo });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await signIn(page, who);
  await expect(page).toHaveURL(who === ADMIN ? /\/admin$/ : /\/my$/);
  await page.locator("body[data-hydrated]").waitFor();
  const res = await page.request.get("/api/v1/me");
  expect(res.status()).toBe(200);
  return { context, page, errors, me: await res.json() };
}

/**
 * Loads pusher-js and Echo into the page and connects. The bundles are
 * served under this site's origin (intercepted, never reaching the server),
 * so the page's CSP (`script-src 'self' 'nonce-…'`, `connect-src 'self'`)
 * stays in force. `window.__rec(tag)` makes a callback that appends its
 * argument to `window.__hub[tag]`, read back with `seen(page, tag)`.
 */
async function withEcho(page: Page): Promise<void> {
  await page.route("**/__e2e__/vendor/*", async (route) => {
    const file = vendor[new URL(route.request().url()).pathname.split("/").pop() ?? ""];
    if (file) {
      await route.fulfill({ path: file, contentType: "text/javascript; charset=utf-8" });
    } else {
      await route.fallback();
    }
  });
  await page.addScriptTag({ url: "/__e2e__/vendor/pusher.min.js" });
  await page.addScriptTag({ url: "/__e2e__/vendor/echo.iife.js" });
  await page.evaluate(
    ({ key, port }) => {
      const w = window as any;
      w.__hub = {};
      w.__rec = (tag: string) => (x: unknown) => {
        (w.__hub[tag] ??= []).push(x === undefined ? null : x);
      };
      const Echo = w.Echo.default;
      w.Echo = new Echo({
        broadcaster: "pusher",
        key,
        cluster: "mt1",
        wsHost: "127.0.0.1",
        wsPort: port,
        forceTLS: false,
        enabledTransports: ["ws"],
        authEndpoint: "/broadcasting/auth",
        disableStats: true,
      });
    },
    { key: PUSHER_APP_KEY, port: demoPort },
  );
  await page.waitForFunction(() => (window as any).Echo.connector.pusher.connection.state === "connected");
  expect(await page.evaluate(() => (window as any).Echo.socketId())).toMatch(/^\d+\.\d+$/);
}

async function seen<T = any>(page: Page, tag: string): Promise<T[]> {
  return page.evaluate((t) => (window as any).__hub[t] ?? [], tag);
}

/** The demo bank `serial`, once it has provisioned itself and is online. */
async function onlineBank(page: Page, serial: string): Promise<Bank> {
  let bank: Bank | undefined;
  await expect
    .poll(
      async () => {
        const banks: Bank[] = await (await page.request.get("/api/v1/locker-banks")).json();
        bank = banks.find((b) => b.serial === serial && b.online);
        return bank !== undefined;
      },
      { timeout: 30_000 },
    )
    .toBe(true);
  return (await page.request.get(`/api/v1/locker-banks/${bank!.id}`)).json();
}

// The browser reports a refused XHR (here: /broadcasting/auth answering
// 403) as a console error; a refusal test expects exactly those.
const refusedAuth = (e: string) => /status of 403 \(Forbidden\)/.test(e);

test("Echo on the user's own channel: the open's status envelopes arrive live, in order", async ({ browser }) => {
  test.setTimeout(60_000);
  const admin = await signedIn(browser, ADMIN);
  const user = await signedIn(browser, USER);
  // DEMO-2, not DEMO-1: /my shows a compartment's latest open, and
  // open_demo.spec.ts opens DEMO-1 #1 on this same server.
  const bank = await onlineBank(admin.page, "DEMO-2");
  const compartment = bank.compartments.find((c) => c.number === 1)!;
  const channel = `private-user.${user.me.id}`;

  await withEcho(user.page);
  // pusher-js asks the auth endpoint, with the page's session cookie.
  const auth = user.page.waitForResponse((r) => new URL(r.url()).pathname === "/broadcasting/auth");
  await user.page.evaluate((id) => {
    const w = window as any;
    w.Echo.private("user." + id)
      .subscribed(w.__rec("subscribed"))
      .error(w.__rec("error"))
      .listenToAll((event: string, data: unknown) => w.__rec("all")({ event, data }))
      .listen(".CompartmentOpenStatusUpdated", w.__rec("status"));
  }, user.me.id);
  const authRes = await auth;
  expect(authRes.status()).toBe(200);
  expect(new URLSearchParams(authRes.request().postData() ?? "").get("channel_name")).toBe(channel);
  expect((await authRes.json()).auth).toMatch(new RegExp(`^${PUSHER_APP_KEY}:[0-9a-f]{64}$`));
  await expect.poll(() => seen(user.page, "subscribed")).toHaveLength(1);
  expect(await seen(user.page, "error")).toEqual([]);

  const grantRes = await admin.page.request.post(`/api/v1/compartments/${compartment.id}/grants`, {
    headers: { Origin: demo },
    data: { user_email: USER.email },
  });
  expect(grantRes.status()).toBe(201);
  const grant = await grantRes.json();
  const revoke = () =>
    admin.page.request.delete(`/api/v1/compartments/${compartment.id}/grants/${grant.id}`, {
      headers: { Origin: demo },
    });
  let revoked = false;
  try {
    // A simulated locker fails one open in ten (device_error): up to five
    // opens, each ending opened or failed, and one of them opened.
    const commands: string[] = [];
    let opened = false;
    for (let attempt = 0; attempt < 5 && !opened; attempt++) {
      // From the page, same origin, with the session cookie.
      const reply = await user.page.evaluate(async (id) => {
        const res = await fetch(`/api/v1/compartments/${id}/open`, { method: "POST" });
        return { status: res.status, body: await res.json() };
      }, compartment.id);
      expect(reply.status).toBe(202);
      expect(reply.body.status).toBe("accepted");
      const commandId: string = reply.body.command_id;
      commands.push(commandId);
      const phases = async () =>
        (await seen<Envelope>(user.page, "status")).filter((e) => e.data.command_id === commandId).map((e) => e.data.status);
      await expect.poll(phases, { timeout: 15_000 }).toContainEqual(expect.stringMatching(/^(opened|failed)$/));
      const these = (await seen<Envelope>(user.page, "status")).filter((e) => e.data.command_id === commandId);
      const statuses = these.map((e) => e.data.status);
      expect([
        ["accepted", "sent", "opened"],
        ["accepted", "sent", "failed"],
      ]).toContainEqual(statuses);
      if (statuses[2] === "failed") {
        expect(these[2].data.reason).toBe("device_error");
      } else {
        opened = true;
      }
    }
    expect(opened).toBe(true);

    // What Echo handed the listener is the whole envelope, pushed live.
    const status = await seen<Envelope>(user.page, "status");
    for (const e of status) {
      expect(e).toMatchObject({
        v: 1,
        event: "CompartmentOpenStatusUpdated",
        channel,
        tenant: user.me.tenant_id,
        subject: { type: "Compartment", id: compartment.id },
        correlation_id: e.data.command_id,
        data: { compartment_id: compartment.id, locker_bank_id: bank.id },
        meta: { replay: false },
      });
      expect(e.event_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(Number.isNaN(Date.parse(e.occurred_at))).toBe(false);
    }
    // The accepted phase names the user who asked.
    for (const e of status.filter((e) => e.data.status === "accepted")) {
      expect(e.sender).toEqual({ type: "user", id: user.me.id });
    }
    expect(new Set(status.map((e) => e.data.command_id))).toEqual(new Set(commands));

    // Everything the channel carried since the subscription (the grant's
    // envelope too): every seq once, gap-free; the status listener saw
    // exactly the status envelopes among them.
    const all = await seen<{ event: string; data: Envelope }>(user.page, "all");
    const seqs = all.map((m) => m.data.seq);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0] + i));
    for (const m of all) {
      expect(m.event).toBe("." + m.data.event);
      expect(m.data.channel).toBe(channel);
      expect(m.data.meta).toEqual({ replay: false });
    }
    expect(all.filter((m) => m.event === ".CompartmentOpenStatusUpdated").map((m) => m.data)).toEqual(status);

    const res = await revoke();
    expect(res.ok()).toBe(true);
    revoked = true;
  } finally {
    if (!revoked) await revoke().catch(() => undefined);
  }
  expect(user.errors).toEqual([]);
  expect(admin.errors).toEqual([]);
  await user.context.close();
  await admin.context.close();
});

test("presence: an admin in two tabs is one member; a user may not join", async ({ browser }) => {
  // Run alone, it may first wait for the demo banks to provision.
  test.setTimeout(60_000);
  const pusher = rest();
  const a = await signedIn(browser, ADMIN);
  const bank = await onlineBank(a.page, "DEMO-1");
  const channel = `presence-locker-bank.${bank.id}`;
  const usersOf = async () => (await pusher.get({ path: `/channels/${channel}/users` })).json();
  const presenceList = async () =>
    (await pusher.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } })).json();
  // Everything published after a page's subscription took effect reaches
  // it after any presence frame that subscription caused: a marker on a
  // public channel awaited on that page shows nothing else is on its way.
  let markers = 0;
  const barrier = async (page: Page) => {
    const n = ++markers;
    await pusher.trigger("e2e-barrier", "marker", { n });
    await expect.poll(async () => (await seen<{ n: number }>(page, "marker")).map((m) => m.n)).toContain(n);
  };

  await withEcho(a.page);
  await a.page.evaluate((bankId) => {
    const w = window as any;
    w.Echo.join("locker-bank." + bankId)
      .here(w.__rec("here"))
      .joining(w.__rec("joining"))
      .leaving(w.__rec("leaving"))
      .error(w.__rec("error"));
    w.Echo.channel("e2e-barrier").subscribed(w.__rec("barrier")).listen(".marker", w.__rec("marker"));
  }, bank.id);
  await expect.poll(() => seen(a.page, "barrier")).toHaveLength(1);
  // Echo's `here` gets the members' `user_info`s: the admin, by name.
  await expect.poll(() => seen(a.page, "here")).toEqual([[expect.objectContaining({ name: a.me.name })]]);
  expect(await seen(a.page, "error")).toEqual([]);
  // pusher-js keys the member by the signed channel_data's user_id.
  expect(
    await a.page.evaluate((name) => {
      const members = (window as any).Echo.connector.channels[name].subscription.members;
      return { me: members.me.id, count: members.count };
    }, channel),
  ).toEqual({ me: a.me.id, count: 1 });
  expect(await usersOf()).toEqual({ users: [{ id: a.me.id }] });
  expect((await presenceList()).channels[channel]).toEqual({ user_count: 1 });

  // The same admin in a second tab (a second session): still one member,
  // and the first tab hears no `joining`.
  const b = await signedIn(browser, ADMIN);
  await withEcho(b.page);
  await b.page.evaluate((bankId) => {
    const w = window as any;
    w.Echo.join("locker-bank." + bankId).here(w.__rec("here")).joining(w.__rec("joining")).error(w.__rec("error"));
  }, bank.id);
  await expect.poll(() => seen(b.page, "here")).toEqual([[expect.objectContaining({ name: a.me.name })]]);
  await barrier(a.page);
  expect(await seen(a.page, "joining")).toEqual([]);
  expect(await usersOf()).toEqual({ users: [{ id: a.me.id }] });
  expect((await presenceList()).channels[channel]).toEqual({ user_count: 1 });
  const subscriptions = async () =>
    (await (await pusher.get({ path: `/channels/${channel}`, params: { info: "subscription_count" } })).json())
      .subscription_count;
  expect(await subscriptions()).toBe(2);

  // The second tab closes: the user is still here (no `leaving`).
  await b.context.close();
  await expect.poll(subscriptions).toBe(1);
  await barrier(a.page);
  expect(await seen(a.page, "leaving")).toEqual([]);
  expect(await usersOf()).toEqual({ users: [{ id: a.me.id }] });

  // A user (role user) is refused: /broadcasting/auth answers 403 and
  // Echo's `.error()` fires; the channel's members stay as they were.
  const u = await signedIn(browser, USER);
  await withEcho(u.page);
  await u.page.evaluate((bankId) => {
    const w = window as any;
    w.Echo.join("locker-bank." + bankId).here(w.__rec("here")).error(w.__rec("error"));
  }, bank.id);
  await expect.poll(() => seen(u.page, "error")).toHaveLength(1);
  expect((await seen(u.page, "error"))[0]).toMatchObject({ type: "AuthError", status: 403 });
  expect(await seen(u.page, "here")).toEqual([]);
  await barrier(a.page);
  expect(await seen(a.page, "joining")).toEqual([]);
  expect(await usersOf()).toEqual({ users: [{ id: a.me.id }] });

  // The admin leaves: the channel is empty and no longer listed.
  await a.page.evaluate((bankId) => (window as any).Echo.leave("locker-bank." + bankId), bank.id);
  await expect.poll(usersOf).toEqual({ users: [] });
  expect((await presenceList()).channels[channel]).toBeUndefined();

  expect(a.errors).toEqual([]);
  expect(b.errors).toEqual([]);
  expect(u.errors.filter((e) => !refusedAuth(e))).toEqual([]);
  await u.context.close();
  await a.context.close();
});

test("another user's or tenant's channel is refused through /broadcasting/auth", async ({ browser }) => {
  const admin = await signedIn(browser, ADMIN);
  const user = await signedIn(browser, USER);
  await withEcho(user.page);
  const refused = {
    // A real user of the same tenant (an admin may read it; a user not).
    admin: `user.${admin.me.id}`,
    // Nobody's (or another tenant's user).
    stranger: `user.${randomUUID()}`,
    // Another tenant's lockers.
    tenant: `tenant.${randomUUID()}.lockers`,
  };
  await user.page.evaluate(
    ({ own, refused }) => {
      const w = window as any;
      w.Echo.private(own).subscribed(w.__rec("own-subscribed")).error(w.__rec("own-error"));
      for (const [tag, name] of Object.entries(refused)) {
        w.Echo.private(name)
          .subscribed(w.__rec(`${tag}-subscribed`))
          .error(w.__rec(`${tag}-error`));
      }
    },
    { own: `user.${user.me.id}`, refused },
  );
  // Her own channel joins on the same connection: the refusals are about
  // the channels, not a broken client.
  await expect.poll(() => seen(user.page, "own-subscribed")).toHaveLength(1);
  expect(await seen(user.page, "own-error")).toEqual([]);
  for (const tag of Object.keys(refused)) {
    await expect.poll(() => seen(user.page, `${tag}-error`)).toHaveLength(1);
    expect((await seen(user.page, `${tag}-error`))[0]).toMatchObject({ type: "AuthError", status: 403 });
  }
  // pusher-js never sent those subscribes (no signature), so no
  // subscription_succeeded can follow.
  for (const tag of Object.keys(refused)) {
    expect(await seen(user.page, `${tag}-subscribed`)).toEqual([]);
  }
  expect(
    await user.page.evaluate(
      (names) => names.map((n) => (window as any).Echo.connector.pusher.channel(n)?.subscribed ?? null),
      Object.values(refused).map((n) => `private-${n}`),
    ),
  ).toEqual([false, false, false]);
  expect(user.errors.filter((e) => !refusedAuth(e))).toEqual([]);
  expect(admin.errors).toEqual([]);
  await user.context.close();
  await admin.context.close();
});

test("the HTTP API publishes to a public channel, excluding a socket", async ({ browser }) => {
  const pusher = rest();
  const one = await signedIn(browser, USER);
  const two = await signedIn(browser, USER);
  for (const p of [one.page, two.page]) {
    await withEcho(p);
    await p.evaluate(() => {
      const w = window as any;
      w.Echo.channel("e2e-public").subscribed(w.__rec("subscribed")).listen(".greeting", w.__rec("greeting"));
    });
    await expect.poll(() => seen(p, "subscribed")).toHaveLength(1);
  }

  const res = await pusher.trigger("e2e-public", "greeting", { hello: "world" });
  expect(res.status).toBe(200);
  await expect.poll(() => seen(one.page, "greeting")).toEqual([{ hello: "world" }]);
  await expect.poll(() => seen(two.page, "greeting")).toEqual([{ hello: "world" }]);

  // Excluding the first page's socket: the second page gets it, the first
  // not; a later message to both proves the first had everything before it.
  const socketId: string = await one.page.evaluate(() => (window as any).Echo.socketId());
  expect(socketId).toMatch(/^\d+\.\d+$/);
  expect(socketId).not.toBe(await two.page.evaluate(() => (window as any).Echo.socketId()));
  await pusher.trigger("e2e-public", "greeting", { n: 2 }, { socket_id: socketId });
  await expect.poll(() => seen(two.page, "greeting")).toEqual([{ hello: "world" }, { n: 2 }]);
  expect(await seen(one.page, "greeting")).toEqual([{ hello: "world" }]);
  await pusher.trigger("e2e-public", "greeting", { n: 3 });
  await expect.poll(() => seen(one.page, "greeting")).toEqual([{ hello: "world" }, { n: 3 }]);
  await expect.poll(() => seen(two.page, "greeting")).toEqual([{ hello: "world" }, { n: 2 }, { n: 3 }]);

  expect(one.errors).toEqual([]);
  expect(two.errors).toEqual([]);
  await one.context.close();
  await two.context.close();
});

test("the HTTP API may not publish to Lockstep's own channels", async ({ browser }) => {
  const pusher = rest();
  const user = await signedIn(browser, USER);
  const failure = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e);
  for (const channel of [
    `private-user.${user.me.id}`,
    `private-tenant.${user.me.tenant_id}.open-requests`,
    `presence-locker-bank.${randomUUID()}`,
  ]) {
    const err = await failure(
      pusher.trigger(channel, "CompartmentOpenStatusUpdated", { command_id: randomUUID(), status: "opened" }),
    );
    expect(err, channel).toBeInstanceOf(Pusher.RequestError);
    const e = err as Pusher.RequestError;
    expect(e.status, channel).toBe(403);
    expect(JSON.parse(e.body ?? "{}"), channel).toMatchObject({ code: 403 });
  }
  // Another app's private channel (a Laravel app's own) is the HTTP API's
  // to write: the refusal is about Lockstep's channels, not the request.
  const ok = await pusher.trigger("private-App.Models.User.1", "Greeting", { hello: "laravel" });
  expect(ok.status).toBe(200);
  expect(user.errors).toEqual([]);
  await user.context.close();
});
