// Starts a Lockstep cluster for a browser test, the way docs/deploy.md
// describes one: a fresh PostgreSQL database, Mosquitto from
// deploy/mosquitto, a NATS server, N `lockstep serve` nodes (the release
// binary) and HAProxy from deploy/haproxy, every one on free ports.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(__dirname, "../..");
export const BIN = process.env.LOCKSTEP_BIN ?? join(ROOT, "target/release/lockstep");
const PG = process.env.E2E_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
export const APP = { id: "cluster-e2e", key: "cluster-e2e-key", secret: "cluster-e2e-secret-0123456789" };
export const PROVISIONING_PASSWORD = "cluster-e2e-provisioning";
const BRIDGE_PASSWORD = "cluster-e2e-bridge";
export const ADMIN = { email: "admin@cluster-e2e.test", password: "cluster-e2e-admin" };

/** True when PostgreSQL answers (the cluster needs it). */
export function postgresUp(): boolean {
  try {
    execFileSync("pg_isready", ["-h", "127.0.0.1", "-p", "5432", "-q"]);
    return true;
  } catch {
    return false;
  }
}

export async function freePort(): Promise<number> {
  return await new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

async function until(what: string, ms: number, check: () => Promise<boolean>) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} within ${ms} ms`);
}

const ok = (url: string) => async () => (await fetch(url)).status === 200;

export type Node = { port: number; url: string; clientId: string; log: string; child?: ChildProcess };

export class Cluster {
  dir = mkdtempSync(join(tmpdir(), "lockstep-cluster-e2e-"));
  nodes: Node[] = [];
  lb = "";
  lbPort = 0;
  dynsecPort = 0;
  provisioningPort = 0;
  databaseUrl = "";
  private env: Record<string, string> = {};
  private others: ChildProcess[] = [];

  static async start(count: number): Promise<Cluster> {
    const c = new Cluster();
    try {
      await c.boot(count);
    } catch (e) {
      // Nothing it started outlives a failed start.
      await c.stop();
      throw e;
    }
    return c;
  }

  private async boot(count: number) {
    // Mosquitto, started as root, drops to its own user: it must reach
    // its files (mkdtemp makes the directory 0700).
    chmodSync(this.dir, 0o755);
    const db = `lockstep_e2e_${Date.now()}_${process.pid}`;
    execFileSync("psql", [`${PG}/postgres`, "-qc", `CREATE DATABASE ${db}`]);
    this.databaseUrl = `${PG}/${db}`;
    this.dynsecPort = await freePort();
    this.provisioningPort = await freePort();
    execFileSync("bash", [
      join(ROOT, "deploy/mosquitto/init"), join(this.dir, "mosquitto"),
      "--dynsec-port", String(this.dynsecPort), "--provisioning-port", String(this.provisioningPort), "--bind", "127.0.0.1",
    ], { env: { ...process.env, LOCKSTEP_BROKER_PASSWORD: BRIDGE_PASSWORD, PROVISIONING_PASSWORD } });
    const brokerLog = openSync(join(this.dir, "mosquitto.log"), "a");
    this.others.push(spawn("mosquitto", ["-c", join(this.dir, "mosquitto", "mosquitto.conf")], { stdio: ["ignore", brokerLog, brokerLog] }));
    const natsPort = await freePort();
    const natsLog = openSync(join(this.dir, "nats.log"), "a");
    this.others.push(spawn("nats-server", ["-a", "127.0.0.1", "-p", String(natsPort)], { stdio: ["ignore", natsLog, natsLog] }));
    await until("mosquitto and nats listen", 10_000, async () => {
      const probe = (port: number) => new Promise<boolean>((r) => {
        const s = connect(port, "127.0.0.1");
        s.once("connect", () => { s.end(); r(true); });
        s.once("error", () => r(false));
      });
      return (await probe(this.provisioningPort)) && (await probe(natsPort));
    }).catch((e) => {
      const log = (f: string) => { try { return readFileSync(join(this.dir, f), "utf8"); } catch { return "(none)"; } };
      throw new Error(`${e}\nmosquitto: ${log("mosquitto.log")}\nnats: ${log("nats.log")}`);
    });
    this.env = {
      ...process.env as Record<string, string>,
      DATABASE_URL: this.databaseUrl,
      NATS_URL: `nats://127.0.0.1:${natsPort}`,
      MQTT_URL: `mqtt://lockstep:${BRIDGE_PASSWORD}@127.0.0.1:${this.dynsecPort}`,
      LOCKSTEP_PUSHER_APP_ID: APP.id,
      LOCKSTEP_PUSHER_APP_KEY: APP.key,
      LOCKSTEP_PUSHER_APP_SECRET: APP.secret,
      LOCKSTEP_ADMIN_EMAIL: ADMIN.email,
      LOCKSTEP_ADMIN_PASSWORD: ADMIN.password,
      LOCKSTEP_NODE_LEASE_SECS: "3",
      LOCKSTEP_DRAIN_DELAY_SECS: "0",
      LOCKSTEP_OPEN_TIMEOUT_SECS: "10",
      LOCKSTEP_TRUSTED_PROXIES: "127.0.0.1",
      LOCKSTEP_HUB_RATE_LIMIT: "0",
      LEPTOS_ENV: "PROD",
      LEPTOS_SITE_ROOT: join(ROOT, "target/site"),
    };
    delete this.env.LOCKSTEP_DATA_DIR;
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      this.nodes.push({ port, url: `http://127.0.0.1:${port}`, clientId: `lockstep-e2e-node-${i}`, log: join(this.dir, `node-${i}.log`) });
    }
    // The first alone: it migrates and makes the admin.
    this.spawnNode(0);
    await until("node 0 ready", 60_000, ok(`${this.nodes[0].url}/readyz`));
    for (let i = 1; i < count; i++) this.spawnNode(i);
    for (const n of this.nodes) await until(`${n.url} ready`, 60_000, ok(`${n.url}/readyz`));
    this.lbPort = await freePort();
    this.lb = `http://127.0.0.1:${this.lbPort}`;
    const cfg = join(this.dir, "haproxy.cfg");
    execFileSync("bash", [join(ROOT, "deploy/haproxy/render"), cfg, `127.0.0.1:${this.lbPort}`, ...this.nodes.map((n) => `127.0.0.1:${n.port}`)]);
    this.others.push(spawn("haproxy", ["-db", "-f", cfg], { stdio: "ignore" }));
    await until("haproxy ready", 20_000, ok(`${this.lb}/readyz`));
  }

  spawnNode(i: number) {
    const n = this.nodes[i];
    const out = openSync(n.log, "a");
    n.child = spawn(BIN, ["serve"], {
      cwd: ROOT,
      env: { ...this.env, LOCKSTEP_ADDR: `127.0.0.1:${n.port}`, MQTT_CLIENT_ID: n.clientId, LOCKSTEP_DATA_DIR: join(this.dir, `data-${i}`) },
      stdio: ["ignore", out, out],
    });
  }

  /** SIGKILL: no drain, no goodbye. */
  kill(i: number) {
    this.nodes[i].child?.kill("SIGKILL");
    this.nodes[i].child = undefined;
  }

  async restart(i: number) {
    this.spawnNode(i);
    await until(`node ${i} ready again`, 60_000, ok(`${this.nodes[i].url}/readyz`));
  }

  /** The CLI against the cluster's database; its last line. */
  cli(...args: string[]): string {
    const out = execFileSync(BIN, args, { env: this.env, cwd: ROOT }).toString().trim().split("\n");
    return out[out.length - 1];
  }

  /** WebSocket connections node `i` holds (its /metrics; loopback). */
  async connections(i: number): Promise<number> {
    const text = await (await fetch(`${this.nodes[i].url}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith("lockstep_hub_connections "));
    return line ? Number(line.split(" ")[1]) : 0;
  }

  logs(): string {
    return this.nodes.map((n, i) => `---- node ${i}\n${readFileSync(n.log, "utf8").slice(-4000)}`).join("\n");
  }

  async stop() {
    for (const n of this.nodes) n.child?.kill("SIGKILL");
    for (const o of this.others) o.kill("SIGKILL");
    if (!this.databaseUrl) return;
    try {
      execFileSync("psql", [`${PG}/postgres`, "-qc", `DROP DATABASE IF EXISTS ${this.databaseUrl.split("/").pop()} WITH (FORCE)`]);
    } catch {
      // left for .ci/run's cleanup
    }
  }
}
