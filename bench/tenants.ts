/**
 * The tenants bench (`--tenants`, issue 13): one `serve --tenants FILE` for N accounts T01..TNN of
 * one nats-server, each account with a small stream S; all N tenants request `$BACKUP.stream.S`
 * `{"wait":true}` at the same moment, one connection per account. Reports each tenant's time from
 * request to reply, the wall time of the lot, and the service's peak RSS meanwhile.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NatsServer } from "../test/harness/nats-server.ts";
import type { BenchArgs, TenantsArgs } from "./args.ts";
import { buildStream, MessageSize } from "./fill.ts";
import { serviceRequest } from "./jsapi.ts";
import { cpuSeconds, memory, MemoryWatch, waitForQuiet, type MemoryWindow } from "./proc.ts";
import { table, type Target } from "./report.ts";
import { fmt, MB, quantile } from "./stats.ts";

/** Where `serve --tenants` answers the tenants' states (src/tenants/serve-tenants.ts TenantsSubject). */
export const TenantsSubject = "$BACKUP.tenants";
const StreamName = "S";
const Admin = { user: "admin", pass: "admin-secret" };

export interface TenantAccount {
  name: string;
  user: string;
  pass: string;
}

export interface TenantsSetup {
  accounts: TenantAccount[];
  /** Appended to the bench server's configuration. */
  serverConfig: string;
  /** How the bench and the service's admin connection log in (account ADMIN, no JetStream). */
  admin: { user: string; pass: string };
  tenantsFile: string;
  /** Added to `nats-backup serve`. */
  serveArgs: string[];
}

/** Accounts T01..TNN (JetStream, one user each) and ADMIN; the tenants file for them, written to `dir`. */
export function tenantsSetup(count: number, dir: string): TenantsSetup {
  const width = Math.max(2, String(count).length);
  const accounts = Array.from({ length: count }, (_, i) => {
    const name = `T${String(i + 1).padStart(width, "0")}`;
    return { name, user: name.toLowerCase(), pass: `${name.toLowerCase()}-secret` };
  });
  const serverConfig = [
    "accounts {",
    ...accounts.map((a) => `  ${a.name}: { jetstream: enabled, users: [ { user: "${a.user}", password: "${a.pass}" } ] }`),
    `  ADMIN: { users: [ { user: "${Admin.user}", password: "${Admin.pass}" } ] }`,
    "}",
  ].join("\n");
  const tenantsFile = join(dir, "tenants.json");
  writeFileSync(tenantsFile, JSON.stringify({ tenants: accounts.map((a) => ({ name: a.name, user: a.user, password: a.pass })) }, null, 1));
  return {
    accounts,
    serverConfig,
    admin: Admin,
    tenantsFile,
    serveArgs: ["--tenants", tenantsFile, "--user", Admin.user, "--password", Admin.pass],
  };
}

interface TenantState {
  name: string;
  state: string;
  error?: string;
}

/** Polls `$BACKUP.tenants` until every tenant is `serving`; returns the seconds it took. */
async function waitAllServing(admin: NatsConnection, count: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  let last: TenantState[] = [];
  while (performance.now() - started < timeoutMs) {
    try {
      last = (await serviceRequest<{ tenants: TenantState[] }>(admin, TenantsSubject, "", 5_000)).tenants;
      if (last.length === count && last.every((t) => t.state === "serving")) return (performance.now() - started) / 1000;
    } catch {
      // not answering yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const notServing = last.filter((t) => t.state !== "serving").map((t) => `${t.name}: ${t.state}${t.error ? ` (${t.error})` : ""}`);
  throw new Error(`not all ${count} tenants serving within ${timeoutMs / 1000} s (${last.length} listed); ${notServing.slice(0, 5).join("; ")}`);
}

export interface TenantBackup {
  tenant: string;
  /** From request to the terminal reply, from the moment all requests were sent at once. */
  seconds: number;
  state: string;
  backupId?: string;
  archiveBytes?: number;
  error?: string;
}

export interface TenantsRun {
  accounts: number;
  messagesPerStream: number;
  storedBytesPerStream: number;
  servingSeconds: number;
  buildSeconds: number;
  rssMB: { allServing: number; afterBuild: number; hwmBeforeBackups: number };
  idle?: { waitedSeconds: number; idlePercent: number };
  wallSeconds: number;
  backups: TenantBackup[];
  memory: MemoryWindow;
  cpuSeconds: { service: number; server: number };
  failures: string[];
}

export async function runTenantsBench(opts: {
  args: BenchArgs & { tenants: TenantsArgs };
  setup: TenantsSetup;
  server: NatsServer;
  admin: NatsConnection;
  servicePid: number;
  log: (text: string) => void;
}): Promise<TenantsRun> {
  const { args, setup, server, admin, servicePid, log } = opts;
  const serverPid = server.pid as number;
  const count = setup.accounts.length;
  const failures: string[] = [];

  const servingSeconds = await waitAllServing(admin, count, 120_000);
  log(`all ${count} tenants serving (${fmt(servingSeconds, 1)} s after the service answered $BACKUP.tenants)`);
  const rssServing = (memory(servicePid)?.rssKiB ?? NaN) / 1024;

  const conns: NatsConnection[] = [];
  try {
    for (const a of setup.accounts) conns.push(await server.connect({ name: `bench-${a.name}`, user: a.user, pass: a.pass }));
    const messages = Math.round((args.tenants.sizeMB * MB) / MessageSize);
    log(`building ${StreamName} in each of ${count} accounts: ${messages} x ${MessageSize} B random`);
    const buildStarted = performance.now();
    const states = await Promise.all(
      conns.map((nc) => buildStream(nc, StreamName, "random", messages, Math.max(64, Math.floor(args.publishWindow / count)))),
    );
    const buildSeconds = (performance.now() - buildStarted) / 1000;
    const storedBytesPerStream = states[0]!.state.bytes;
    const after = memory(servicePid);
    const rssAfterBuild = (after?.rssKiB ?? NaN) / 1024;
    // VmHWM so far (start, tenants' services, stream building); the watch below resets it.
    const hwmBeforeBackups = (after?.hwmKiB ?? NaN) / 1024;

    const idle = args.waitIdle > 0 ? await waitForQuiet(args.waitIdle, 30_000) : undefined;
    if (idle) log(`machine ${fmt(idle.idlePercent, 0)}% idle (waited ${fmt(idle.waitedSeconds, 1)} s)`);

    log(`${count} backups of ${StreamName}, one per tenant, all at once`);
    const watch = new MemoryWatch(servicePid);
    const cpu0 = { service: cpuSeconds(servicePid), server: cpuSeconds(serverPid) };
    watch.start();
    const started = performance.now();
    const backups = await Promise.all(
      conns.map(async (nc, i): Promise<TenantBackup> => {
        const tenant = setup.accounts[i]!.name;
        try {
          const reply = await serviceRequest<{ state: string; result?: { id: string; size?: number } }>(
            nc,
            `$BACKUP.stream.${StreamName}`,
            { wait: true },
            300_000,
          );
          return {
            tenant,
            seconds: (performance.now() - started) / 1000,
            state: reply.state,
            ...(reply.result?.id ? { backupId: reply.result.id } : {}),
            ...(reply.result?.size !== undefined ? { archiveBytes: reply.result.size } : {}),
          };
        } catch (err) {
          return { tenant, seconds: (performance.now() - started) / 1000, state: "error", error: String((err as Error).message ?? err) };
        }
      }),
    );
    const wallSeconds = (performance.now() - started) / 1000;
    const mem = watch.stop();
    const cpu = { service: cpuSeconds(servicePid) - cpu0.service, server: cpuSeconds(serverPid) - cpu0.server };
    for (const b of backups) {
      if (b.state !== "completed") failures.push(`${b.tenant}: backup ended ${b.state}${b.error ? `: ${b.error}` : ""}`);
    }
    return {
      accounts: count,
      messagesPerStream: messages,
      storedBytesPerStream,
      servingSeconds,
      buildSeconds,
      rssMB: { allServing: rssServing, afterBuild: rssAfterBuild, hwmBeforeBackups },
      ...(idle ? { idle } : {}),
      wallSeconds,
      backups,
      memory: mem,
      cpuSeconds: cpu,
      failures,
    };
  } finally {
    for (const c of conns) await c.close().catch(() => undefined);
  }
}

export interface TenantsSummary {
  completed: number;
  seconds: { min: number; median: number; p90: number; max: number };
  maxOverMedian: number;
  wallSeconds: number;
  /** The service's peak RSS during the backups (the 50 ms poll and the reset VmHWM), MiB. */
  peakRssMB: number;
  /** The larger of that and VmHWM before the backups: the process's peak over the whole run. */
  runPeakRssMB: number;
  targets: Target[];
}

export function summarizeTenants(run: TenantsRun): TenantsSummary {
  const times = run.backups
    .filter((b) => b.state === "completed")
    .map((b) => b.seconds)
    .sort((a, b) => a - b);
  const seconds = {
    min: times[0] ?? NaN,
    median: quantile(times, 0.5),
    p90: quantile(times, 0.9),
    max: times[times.length - 1] ?? NaN,
  };
  const maxOverMedian = seconds.max / seconds.median;
  const peakRssMB = run.memory.peakMB;
  const runPeakRssMB = Math.max(peakRssMB, Number.isFinite(run.rssMB.hwmBeforeBackups) ? run.rssMB.hwmBeforeBackups : 0);
  return {
    completed: times.length,
    seconds,
    maxOverMedian,
    wallSeconds: run.wallSeconds,
    peakRssMB,
    runPeakRssMB,
    targets: [
      { name: `slowest tenant's backup over the median (${run.accounts} tenants)`, value: maxOverMedian, limit: "≤ 3", pass: maxOverMedian <= 3 },
      { name: `service peak RSS MB during the backups (${run.accounts} tenants)`, value: peakRssMB, limit: "< 300", pass: peakRssMB < 300 },
      { name: "service peak RSS MB over the whole run", value: runPeakRssMB, limit: "< 300", pass: runPeakRssMB < 300 },
    ],
  };
}

export function printTenantsReport(args: BenchArgs, run: TenantsRun, s: TenantsSummary, env: { serverVersion: string; node: string }): void {
  const out: string[] = [""];
  out.push(
    `nats-backup tenants bench: ${env.serverVersion}, node ${env.node}; service ${args.service} serve --tenants (${run.accounts} accounts, ` +
      `--max-jobs-total default); one round`,
  );
  out.push(
    `each tenant: stream ${StreamName}, ${run.messagesPerStream} x 1 KiB random messages, ${fmt(run.storedBytesPerStream / MB, 2)} MB stored; ` +
      `built in ${fmt(run.buildSeconds, 1)} s (all accounts at once)`,
  );
  out.push(`all tenants serving ${fmt(run.servingSeconds, 1)} s after the service first answered; RSS then ${fmt(run.rssMB.allServing, 0)} MB, after the build ${fmt(run.rssMB.afterBuild, 0)} MB`);
  out.push("times: seconds from the moment all requests were sent to each tenant's terminal reply; MB = 2^20 bytes");
  out.push("");
  out.push(
    table(
      ["backups", "ok/failed", "min s", "median s", "p90 s", "max s", "max/median", "wall s", "peak RSS MB", "CPU s svc/server"],
      [
        [
          `$BACKUP.stream.${StreamName} x ${run.accounts}`,
          `${s.completed}/${run.backups.length - s.completed}`,
          fmt(s.seconds.min),
          fmt(s.seconds.median),
          fmt(s.seconds.p90),
          fmt(s.seconds.max),
          `${fmt(s.maxOverMedian)}x`,
          fmt(s.wallSeconds),
          `${fmt(s.peakRssMB, 0)} (start ${fmt(run.memory.startMB, 0)}, end ${fmt(run.memory.endMB, 0)})`,
          `${fmt(run.cpuSeconds.service, 1)}/${fmt(run.cpuSeconds.server, 1)}`,
        ],
      ],
      1,
    ),
  );
  const slowest = [...run.backups].sort((a, b) => b.seconds - a.seconds).slice(0, 5);
  out.push("");
  out.push(`slowest: ${slowest.map((b) => `${b.tenant} ${fmt(b.seconds)} s${b.state === "completed" ? "" : ` (${b.state})`}`).join(", ")}`);
  out.push("");
  out.push("targets (informational):");
  for (const t of s.targets) out.push(`  ${t.pass ? "PASS" : "FAIL"}  ${t.name}: ${fmt(t.value)} (target ${t.limit})`);
  console.log(out.join("\n"));
}
