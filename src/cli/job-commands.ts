/**
 * The long jobs: `stream backup`, `stream restore`, `account backup`, `account restore`. Each
 * starts its job without waiting, follows the job's status events (a bar, log lines, or nothing
 * with --json) and ends with a summary; any job that does not complete is a non-zero exit.
 */
import { Command, Option } from "commander";
import type { NatsConnection } from "@nats-io/nats-core";
import type { BackupAccountRequest, BackupStreamRequest, JobRecord, RestoreAccountRequest, RestoreStreamRequest } from "../protocol/schemas.ts";
import { Subjects } from "../protocol/subjects.ts";
import { CliError } from "./ask.ts";
import { connectFor } from "./client-connection.ts";
import { followJob, startJob } from "./follow-job.ts";
import { chooseView, jobTitle } from "./job-view.ts";
import { failures, summary } from "./summaries.ts";
import { durationFlag, wholeNumber } from "./serve.ts";

interface OutputFlags {
  json?: boolean;
  progress?: boolean;
}

/** Repeatable flags: each use adds one value. */
const collect = (value: string, previous: string[] = []) => [...previous, value];

function withOutput(cmd: Command): Command {
  return cmd
    .option("--json", "print only the final job record, as JSON")
    .option("--no-progress", "print one log line per status event instead of a progress bar (there is no bar when stdout is not a terminal)");
}

/** `placement` from --cluster and --tag, when either was given. */
function placement(o: { cluster?: string; tag?: string[] }): RestoreStreamRequest["placement"] | undefined {
  const tags = o.tag ?? [];
  if (!o.cluster && tags.length === 0) return undefined;
  return { ...(o.cluster ? { cluster: o.cluster } : {}), ...(tags.length ? { tags } : {}) };
}

export function addJobCommands(program: Command): void {
  const stream = program.command("stream").description("back up or restore one stream through the service");

  withOutput(
    stream
      .command("backup")
      .description("back up a stream into the bucket")
      .argument("<stream>", "the stream")
      .option("--no-consumers", "leave out the stream's consumers and their state")
      .option("--check", "have the server verify every message checksum first")
      .option("--tag <tag>", "a free label kept in the manifest")
      .option("--keep-last <n>", "the stream's retention from now on: keep its N newest backups (0: no limit)", wholeNumber("--keep-last"))
      .option("--max-age <age>", "the stream's retention from now on: remove its backups older than AGE (30d, 12h; 0: no limit)", durationFlag("--max-age")),
  ).action(async (name: string, o: OutputFlags & { consumers: boolean; check?: boolean; tag?: string; keepLast?: number; maxAge?: string | number }, cmd: Command) => {
    const body: Partial<BackupStreamRequest> = {
      ...(o.consumers === false ? { consumers: false } : {}),
      ...(o.check ? { check: true } : {}),
      ...(o.tag !== undefined ? { tag: o.tag } : {}),
      ...(o.keepLast !== undefined ? { keep_last: o.keepLast } : {}),
      ...(o.maxAge !== undefined ? { max_age: o.maxAge } : {}),
    };
    await runJob(cmd, Subjects.backupStream(name), body, o, name);
  });

  withOutput(
    stream
      .command("restore")
      .description("restore a stream from a backup (default: its newest); the stream must not exist")
      .argument("<stream>", "the stream")
      .option("--backup <id>", "the backup to restore")
      .option("--replicas <n>", "replicas of the restored stream instead of the backup's", wholeNumber("--replicas"))
      .option("--cluster <cluster>", "place the stream in this cluster")
      .option("--tag <tag>", "place the stream on servers with this tag (repeatable)", collect),
  ).action(async (name: string, o: OutputFlags & { backup?: string; replicas?: number; cluster?: string; tag?: string[] }, cmd: Command) => {
    const where = placement(o);
    const body: Partial<RestoreStreamRequest> = {
      ...(o.backup ? { backup: o.backup } : {}),
      ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
      ...(where ? { placement: where } : {}),
    };
    await runJob(cmd, Subjects.restoreStream(name), body, o);
  });

  const account = program.command("account").description("back up or restore every stream and consumer of the account through the service");

  withOutput(
    account
      .command("backup")
      .description("save the configuration of every stream and durable consumer (with --data their messages too)")
      .option("--data", "also take a full snapshot of each stream")
      .option("--no-consumers", "leave out the durable consumers")
      .option("--stream <stream>", "only this stream (repeatable)", collect)
      .option("--tag <tag>", "a free label kept in the manifest"),
  ).action(async (o: OutputFlags & { data?: boolean; consumers: boolean; stream?: string[]; tag?: string }, cmd: Command) => {
    const body: Partial<BackupAccountRequest> = {
      ...(o.data ? { data: true } : {}),
      ...(o.consumers === false ? { consumers: false } : {}),
      ...(o.stream?.length ? { streams: o.stream } : {}),
      ...(o.tag !== undefined ? { tag: o.tag } : {}),
    };
    await runJob(cmd, Subjects.backupAccount, body, o);
  });

  withOutput(
    account
      .command("restore")
      .description("create the streams and consumers of an account backup (default: the newest without failed streams)")
      .option("--backup <id>", "the account backup to restore")
      .option("--update-streams", "edit streams that already exist to the saved configuration (messages kept)")
      .addOption(new Option("--no-data", "create the streams from their configuration only"))
      .option("--stream <stream>", "only this stream of the backup (repeatable)", collect)
      .option("--replicas <n>", "replicas of every restored stream", wholeNumber("--replicas"))
      .option("--cluster <cluster>", "place every stream in this cluster")
      .option("--tag <tag>", "place every stream on servers with this tag (repeatable)", collect),
  ).action(
    async (
      o: OutputFlags & { backup?: string; updateStreams?: boolean; data: boolean; stream?: string[]; replicas?: number; cluster?: string; tag?: string[] },
      cmd: Command,
    ) => {
      const where = placement(o);
      const body: Partial<RestoreAccountRequest> = {
        ...(o.backup ? { backup: o.backup } : {}),
        ...(o.updateStreams ? { update_streams: true } : {}),
        ...(o.data === false ? { data: false } : {}),
        ...(o.stream?.length ? { streams: o.stream } : {}),
        ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
        ...(where ? { placement: where } : {}),
      };
      await runJob(cmd, Subjects.restoreAccount, body, o);
    },
  );
}

/** A stream's bytes, for a backup's bar; undefined when the user may not ask JetStream (a backup-only operator) or it did not answer. */
async function streamBytes(nc: NatsConnection, stream: string): Promise<number | undefined> {
  try {
    const reply = await nc.request(`$JS.API.STREAM.INFO.${stream}`, "", { timeout: 3000 });
    const bytes = reply.json<{ state?: { bytes?: number } }>().state?.bytes;
    return typeof bytes === "number" && bytes > 0 ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/** Starts the job, follows it with the view the flags choose, and ends as the job ended. */
async function runJob(cmd: Command, subject: string, body: object, o: OutputFlags, backupOf?: string): Promise<void> {
  const nc = await connectFor(cmd);
  try {
    const barWanted = !o.json && o.progress !== false && process.stdout.isTTY === true;
    const size = backupOf !== undefined && barWanted ? await streamBytes(nc, backupOf) : undefined;
    const started = await startJob(nc, subject, body);
    const view = chooseView({ ...o, ...(size !== undefined ? { streamBytes: size } : {}) });
    const stop = new AbortController();
    const onSigint = () =>
      stop.abort(new CliError(`stopped following job ${started.id}; it goes on in the service (nats-backup watch ${started.id})`, 130));
    process.once("SIGINT", onSigint);
    let record: JobRecord;
    try {
      record = await followJob(nc, started.id, (r) => view.update(r), { signal: stop.signal, justStarted: true });
    } catch (err) {
      view.stop();
      throw err;
    } finally {
      process.removeListener("SIGINT", onSigint);
    }
    view.stop(record);
    report(record, o);
  } finally {
    await nc.close();
  }
}

/** Prints the job's outcome; throws (a non-zero exit) unless it completed. */
export function report(record: JobRecord, o: OutputFlags): void {
  if (o.json) process.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
  if (record.state === "failed") {
    const e = record.error;
    for (const line of failures(record)) process.stderr.write(`${line}\n`);
    throw new CliError(`${jobTitle(record)} job ${record.id} failed: ${e?.description ?? "no reason given"}`, 1, e?.code);
  }
  if (!o.json) for (const line of summary(record)) process.stdout.write(`${line}\n`);
  if (record.state === "partial") {
    for (const line of failures(record)) process.stderr.write(`${line}\n`);
    throw new CliError(`${jobTitle(record)} job ${record.id} ended partial: some streams or consumers failed (listed above)`);
  }
}
