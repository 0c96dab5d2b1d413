/**
 * Two service instances (child processes) on one server, 20 backup and restore requests sent at
 * once. Every request ends (completed, 409 naming the job that holds the stream, or 429 when an
 * instance is at its job limit); no two jobs ran on one stream at once; every job record is
 * answered by either instance; every completed backup restores to an equal stream. Then the
 * per-instance limit with `maxJobs: 1`.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, JobRecord, JobStarted, RestoreResult } from "../src/mod.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { makeStream } from "./harness/fixtures.ts";
import { request, type Reply } from "./harness/service.ts";
import { Collector, waitUntil } from "./harness/inspect.ts";
import { ServiceProcess, stopAllServices, type ChildServiceOptions } from "./harness/proc-service.ts";
import { bucketView, fingerprint, waitForRecord, type StreamFingerprint } from "./harness/proc-checks.ts";

const BackupStreams = ["S0", "S1", "S2", "S3", "S4"];
const RestoreStreams = ["R0", "R1"];
/** 8 jobs per instance: 20 requests over two instances meet the stream locks first, and sometimes the limit. */
const MaxJobs = 8;
const Options: ChildServiceOptions = { lockTtlMs: 5_000, shutdownGraceMs: 5_000, maxJobs: MaxJobs };
const Id = "[0-9A-HJKMNP-TV-Z]{26}";

interface Sent {
  operation: "backup" | "restore";
  stream: string;
  reply: Reply<JobRecord>;
}

interface Classified extends Sent {
  outcome: "completed" | "busy" | "exists" | "limit";
  /** The job the request became (none for 429: it is refused before a job exists). */
  job?: string;
  /** For 409 busy: the job that held the stream, and its instance. */
  holder?: { job: string; operation: string; instance: string };
}

describe("two instances, many requests at once", { timeout: 900_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let a: ServiceProcess;
  let b: ServiceProcess;
  const originals = new Map<string, StreamFingerprint>();
  const restoreBackups = new Map<string, string>(); // R stream -> backup id
  let results: Classified[] = [];
  let status: Collector<JobRecord>;
  const instanceIds = new Set<string>();

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    for (const s of BackupStreams) await makeStream(nc, s, { messages: 300, deleteEvery: 50 });
    for (const s of RestoreStreams) await makeStream(nc, s, { messages: 200, deleteEvery: 40 });
    for (const s of [...BackupStreams, ...RestoreStreams]) originals.set(s, await fingerprint(nc, s));
    [a, b] = await Promise.all([ServiceProcess.start(server.url, Options), ServiceProcess.start(server.url, Options)]);
    instanceIds.add(a.id).add(b.id);
    // The R streams exist only as backups: restoring them is part of the burst.
    const jsm = await jetstreamManager(nc);
    for (const s of RestoreStreams) {
      const r = await request<JobRecord>(nc, `$BACKUP.stream.${s}`, { wait: true }, 120_000);
      assert.equal(r.errorCode, null, r.raw);
      restoreBackups.set(s, (r.body.result as StreamManifest).id);
      await jsm.streams.delete(s);
    }
  });

  after(async () => {
    status?.stop();
    await stopAllServices();
    await nc?.close();
    await server?.stop();
  });

  function classify(sent: Sent): Classified {
    const { reply, operation, stream } = sent;
    if (reply.errorCode === null) {
      assert.equal(reply.body.state, "completed", reply.raw);
      assert.equal(reply.body.operation, operation);
      assert.equal(reply.body.stream, stream);
      assert.ok(instanceIds.has(reply.body.instance), `instance ${reply.body.instance} is one of ours`);
      return { ...sent, outcome: "completed", job: reply.body.id };
    }
    const description = reply.errorHeader ?? "";
    assert.deepEqual(reply.body, { error: { code: reply.errorCode, description } });
    if (reply.errorCode === 429) {
      assert.match(description, /^this backup service instance is running (\d+) jobs, its limit \(--max-jobs\); try again later$/);
      assert.equal(Number(/running (\d+) jobs/.exec(description)?.[1]), MaxJobs, description);
      assert.equal(reply.job, null, "a 429 creates no job");
      return { ...sent, outcome: "limit" };
    }
    assert.equal(reply.errorCode, 409, `${operation} of ${stream}: ${reply.raw}`);
    // A job refused at its start replies its own error as is (no "job <id> failed:" prefix, whatever
    // wait says) and names itself in the Nats-Backup-Job header.
    assert.match(reply.job ?? "", new RegExp(`^${Id}$`), `a 409 names its job in Nats-Backup-Job: ${reply.raw}`);
    const job = reply.job as string;
    const busy = new RegExp(`^stream ${stream} is busy: (backup|restore) job (${Id}) is running \\(instance (\\S+)\\)$`).exec(
      description,
    );
    if (busy) {
      const [, holderOp, holder, instance] = busy as unknown as [string, string, string, string];
      assert.ok(instanceIds.has(instance), `the holder's instance ${instance} is one of ours`);
      assert.notEqual(holder, job);
      return { ...sent, outcome: "busy", job, holder: { job: holder, operation: holderOp, instance } };
    }
    assert.ok(
      operation === "restore" && description === `stream ${stream} already exist`,
      `an unexpected 409 for a ${operation} of ${stream}: ${description}`,
    );
    return { ...sent, outcome: "exists", job };
  }

  test("20 requests at once: each completes, or is refused with 409 naming the running job, or 429", async (t) => {
    status = await Collector.start<JobRecord>(nc, "$BACKUP.status.>");
    const plan: { operation: "backup" | "restore"; stream: string }[] = [];
    for (let round = 0; round < 3; round++) {
      for (const s of BackupStreams) plan.push({ operation: "backup", stream: s });
      if (round < 2) for (const s of RestoreStreams) plan.push({ operation: "restore", stream: s });
    }
    plan.push({ operation: "backup", stream: "S0" });
    assert.equal(plan.length, 20);

    const sent: Sent[] = await Promise.all(
      plan.map(async (p) => {
        const subject = p.operation === "backup" ? `$BACKUP.stream.${p.stream}` : `$RESTORE.stream.${p.stream}`;
        const body =
          p.operation === "backup" ? { chunk_size: 16_384, wait: true } : { backup: restoreBackups.get(p.stream), wait: true };
        return { ...p, reply: await request<JobRecord>(nc, subject, body, 300_000) };
      }),
    );
    results = sent.map(classify);
    const count = (o: Classified["outcome"]) => results.filter((r) => r.outcome === o).length;
    t.diagnostic(
      `outcomes: ${count("completed")} completed, ${count("busy")} 409 busy, ${count("exists")} 409 stream exists, ${count("limit")} 429`,
    );
    console.log(
      "concurrency.test burst: " +
        JSON.stringify(results.map((r) => `${r.operation} ${r.stream}: ${r.outcome}${r.reply.errorCode ? "" : ` on ${r.reply.body.instance === a.id ? "A" : "B"}`}`)),
    );

    // Each stream was backed up by the first request that took its lock; restores of a missing stream likewise.
    for (const s of BackupStreams) {
      assert.ok(results.some((r) => r.stream === s && r.outcome !== "limit"), `a request for ${s} became a job`);
    }

    // Every job ends: exactly one terminal event per job, and its stored record agrees.
    const jobs = new Set(status.bodies().map((e) => e.id));
    for (const r of results) if (r.job) assert.ok(jobs.has(r.job), `job ${r.job} published events`);
    for (const r of results.filter((x) => x.outcome === "busy" || x.outcome === "exists")) {
      const failed = await status.waitFor(`the failed event of ${r.job}`, (e) => e.id === r.job && e.state === "failed", 10_000);
      assert.deepEqual(failed.error, { code: 409, description: r.reply.errorHeader });
      assert.equal(failed.stream, r.stream);
    }
    assert.equal(jobs.size, results.filter((r) => r.job).length, "one job per request that was not refused with 429");
    for (const id of jobs) {
      await status.waitFor(`the terminal event of job ${id}`, (e) => e.id === id && e.state !== "running", 10_000);
      const terminal = status.bodies((e) => e.id === id && e.state !== "running");
      assert.equal(
        terminal.length,
        1,
        `job ${id}: one terminal event, got ${JSON.stringify(terminal.map((e) => ({ state: e.state, instance: e.instance, error: e.error, updated: e.updated, ended: e.ended })))}`,
      );
      const record = await waitForRecord(nc, id, (r) => r.state !== "running", 30_000);
      assert.equal(record.state, terminal[0]!.state);
      assert.deepEqual(record.error, terminal[0]!.error);
    }
  });

  test("no two jobs ran on one stream at the same time", async () => {
    assert.ok(results.length === 20, "the burst ran");
    const record = async (id: string) => (await waitForRecord(nc, id, (r) => r.state !== "running", 30_000)) as JobRecord;
    for (const s of BackupStreams) {
      // A manifest's created (after the lock was taken) and completed (before it was released)
      // lie inside the job's hold of the stream: they must not overlap between two backups.
      const spans = results
        .filter((r) => r.stream === s && r.outcome === "completed")
        .map((r) => r.reply.body.result as StreamManifest)
        .map((m) => ({ id: m.id, from: Date.parse(m.created), to: Date.parse(m.completed) }))
        .sort((x, y) => x.from - y.from);
      assert.ok(spans.length >= 1, `at least one backup of ${s} completed`);
      for (let i = 1; i < spans.length; i++) {
        assert.ok(spans[i - 1]!.to <= spans[i]!.from, `backups ${spans[i - 1]!.id} and ${spans[i]!.id} of ${s} overlap`);
      }
    }
    for (const s of RestoreStreams) {
      const completed = results.filter((r) => r.stream === s && r.outcome === "completed");
      assert.ok(completed.length <= 1, `at most one restore of ${s} can complete`);
    }
    // Each 409 names a job of the same stream that was running while the refused one tried.
    for (const r of results.filter((x) => x.outcome === "busy")) {
      const refused = await record(r.job!);
      const holder = await record(r.holder!.job);
      assert.equal(refused.state, "failed");
      assert.equal(refused.error?.code, 409);
      assert.equal(holder.stream, r.stream);
      assert.equal(holder.operation, r.holder!.operation);
      assert.equal(holder.instance, r.holder!.instance);
      assert.ok(
        Date.parse(refused.created) <= Date.parse(holder.ended!) && Date.parse(holder.created) <= Date.parse(refused.ended!),
        `refused job ${refused.id} [${refused.created}, ${refused.ended}] and holder ${holder.id} [${holder.created}, ${holder.ended}] overlap`,
      );
    }
  });

  test("every job record is answered by either instance alone", async (t) => {
    const ids = [...new Set(status.bodies().map((e) => e.id))];
    const byInstance = new Map<string, number>();
    for (const e of status.bodies((x) => x.state !== "running")) byInstance.set(e.instance, (byInstance.get(e.instance) ?? 0) + 1);
    t.diagnostic(`jobs by instance: A ${byInstance.get(a.id) ?? 0}, B ${byInstance.get(b.id) ?? 0}`);

    async function allAnswered(by: string): Promise<void> {
      for (const id of ids) {
        const reply = await request<JobRecord>(nc, `$BACKUP.job.${id}`);
        assert.equal(reply.errorCode, null, `${by}: ${reply.raw}`);
        assert.equal(reply.body.id, id);
        assert.notEqual(reply.body.state, "running");
      }
    }
    // While both run, either may answer; then each alone.
    await allAnswered("A and B");
    // SIGTERM: the child stops its service, drains and exits 0.
    assert.deepEqual(await a.terminate(), { code: 0, signal: null });
    await allAnswered("B alone");
    a = await ServiceProcess.start(server.url, Options);
    assert.deepEqual(await b.terminate(), { code: 0, signal: null });
    await allAnswered("a new instance alone (B stopped)");
  });

  test("every completed backup restores to an equal stream", async () => {
    const jsm = await jetstreamManager(nc);
    let restores = 0;
    for (const s of BackupStreams) {
      const ids = results.filter((r) => r.stream === s && r.outcome === "completed").map((r) => r.reply.body.id);
      for (const id of ids) {
        await jsm.streams.delete(s);
        const r = await request<JobRecord>(nc, `$RESTORE.stream.${s}`, { backup: id, wait: true }, 300_000);
        assert.equal(r.errorCode, null, r.raw);
        assert.equal((r.body.result as RestoreResult).backup, id);
        assert.deepEqual(await fingerprint(nc, s), originals.get(s), `${s} restored from ${id}`);
        restores++;
      }
    }
    for (const s of RestoreStreams) {
      if (!results.some((r) => r.stream === s && r.outcome === "completed")) {
        const r = await request<JobRecord>(nc, `$RESTORE.stream.${s}`, { backup: restoreBackups.get(s), wait: true }, 300_000);
        assert.equal(r.errorCode, null, r.raw);
      }
      assert.deepEqual(await fingerprint(nc, s), originals.get(s), `${s} restored`);
      restores++;
    }
    console.log(`concurrency.test: ${restores} streams compared after restores`);
    const v = await bucketView(nc);
    assert.deepEqual(v.unreferenced, []);
    assert.deepEqual(v.damaged, []);
  });

  test("an instance with maxJobs 1 refuses a second job with 429 while the first runs", async () => {
    await stopAllServices();
    // ~20 MB in 4 KiB chunks with 16 KiB in flight: the first job runs for seconds.
    await makeStream(nc, "SLOW", { messages: 1500, consumers: false });
    const one = await ServiceProcess.start(server.url, { ...Options, maxJobs: 1 });
    const first = await request<JobStarted>(nc, "$BACKUP.stream.SLOW", { chunk_size: 4096 });
    assert.equal(first.errorCode, null, first.raw);
    const second = await request(nc, "$BACKUP.stream.S1", { wait: true });
    assert.equal(second.errorCode, 429, second.raw);
    assert.equal(
      second.errorHeader,
      "this backup service instance is running 1 jobs, its limit (--max-jobs); try again later",
    );
    assert.deepEqual(second.body, { error: { code: 429, description: second.errorHeader } });
    assert.equal(second.job, null, "a 429 creates no job");
    const running = await request<JobRecord>(nc, `$BACKUP.job.${first.body.id}`);
    assert.equal(running.errorCode, null, running.raw);
    // The first one was unaffected, and once it ended the instance takes the next.
    const done = await waitForRecord(nc, first.body.id, (r) => r.state !== "running", 120_000);
    assert.equal(done.state, "completed", JSON.stringify(done.error));
    assert.equal(done.instance, one.id);
    const third = await waitUntil(
      "the instance to take a job again",
      async () => {
        const r = await request<JobRecord>(nc, "$BACKUP.stream.S1", { wait: true }, 120_000);
        return r.errorCode === 429 ? false : r;
      },
      10_000,
      100,
    );
    assert.equal(third.errorCode, null, third.raw);
    assert.equal(third.body.state, "completed");
    assert.equal(third.body.instance, one.id);
  });
});
