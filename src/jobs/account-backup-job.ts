/**
 * An account backup: every stream's configuration and every durable consumer's, and with `data`
 * each stream's snapshot, taken as a stream backup takes it (`takeSnapshot`), a bounded number of
 * streams at once (`Tuning.accountParallel`; the server takes one snapshot per stream at a time,
 * which the stream's lock guarantees). A stream that fails (deleted meanwhile, its lock held, its
 * snapshot refused) does not stop the others: the backup is committed with what it holds, and the
 * job ends `partial`. Its objects are laid out as `accountObjectNames` says.
 */
import pLimit from "p-limit";
import { accountObjectNames, ManifestUnsettled, type ManifestPart } from "../catalogue/catalogue.ts";
import { JetStreamApiError, JsErrCode, jsApiRequest, listNames } from "../jetstream/jsapi.ts";
import { rawMembers } from "../jetstream/raw-json.ts";
import { Capabilities, parseServerVersion } from "../jetstream/server-version.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { AccountContents, AccountManifest, AccountStream, BackupAccountRequest } from "../protocol/schemas.ts";
import { snapshotSummary, takeSnapshot } from "./backup-job.ts";
import type { JobContext } from "./context.ts";
import type { Job } from "./job.ts";
import type { Finished, Hold } from "./pipeline.ts";
import { StreamsProgress } from "./streams-progress.ts";

/** Consumer configurations read at once, per stream. */
const ConsumerReads = 16;

export async function backupAccount(
  ctx: JobContext,
  job: Job,
  req: BackupAccountRequest,
  accepted: () => void,
  hold: Hold,
  ownStreams: ReadonlyMap<string, string>,
): Promise<Finished> {
  const { nc, catalogue } = ctx;
  const names = accountObjectNames(job.id);
  const streams = await chosenAccountStreams(ctx, req.streams, ownStreams);
  accepted();
  const created = new Date().toISOString();

  const tracked = new StreamsProgress(job, streams.length);

  const saved: AccountStream[] = [];
  const limit = pLimit(Math.max(1, ctx.tuning.accountParallel));
  await Promise.all(
    streams.map((stream) =>
      limit(async () => {
        if (job.signal.aborted) return;
        tracked.started(stream);
        const progress = (bytes: number, chunks: number) => tracked.moved(stream, bytes, chunks);
        const entry = await saveStream(ctx, { id: job.id, signal: job.signal, progress }, stream, req, hold, names);
        saved.push(entry);
        tracked.ended(stream);
        if (entry.state === "failed") ctx.log.warn({ job: job.id, stream, error: entry.error }, "a stream of the account backup failed");
      }),
    ),
  );
  try {
    if (job.signal.aborted) throw BackupError.from(job.signal.reason);
    const held = saved.filter((s) => s.state === "completed");
    const failed = saved.filter((s) => s.state === "failed");
    if (streams.length > 0 && held.length === 0) {
      const first = failed[0]!.error!;
      throw new BackupError(first.code, `no stream of the account could be saved: ${failed.map((s) => `${s.name}: ${s.error!.description}`).slice(0, 5).join("; ")}`);
    }
    const byName = [...saved].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const contents: AccountContents = { type: "io.nats.backup.v1.account_contents", id: job.id, streams: byName };
    await catalogue.putText(names.contents, JSON.stringify(contents));
    const info = nc.info;
    const manifest: AccountManifest = {
      type: "io.nats.backup.v1.manifest",
      id: job.id,
      scope: "account",
      created,
      completed: new Date().toISOString(),
      data: req.data,
      streams: held.map((s) => s.name).sort(),
      streams_with_data: held.filter((s) => s.data).length,
      consumers: held.reduce((n, s) => n + s.consumers.length, 0),
      failed: failed.map((s) => ({ stream: s.name, description: s.error!.description })),
      size: held.reduce((n, s) => n + (s.data?.size ?? 0), 0),
      messages: held.reduce((n, s) => n + (s.data?.messages ?? 0), 0),
      ...(req.tag !== undefined ? { tag: req.tag } : {}),
      objects: { manifest: names.manifest, contents: names.contents },
      server: { name: info?.server_name, version: info?.version, cluster: info?.cluster },
    };
    await job.confirmOwnership();
    await catalogue.commit(manifest, partsOf(names.contents, held));
    const outcomes = saved.map((s) => ({
      stream: s.name,
      state: s.state,
      data: s.data !== undefined,
      ...(s.no_data ? { no_data: s.no_data } : {}),
      consumers: s.consumers.length,
      ...(s.error ? { error: s.error } : {}),
    }));
    return { result: { ...manifest, outcomes }, state: failed.length > 0 ? "partial" : "completed" };
  } catch (err) {
    // Not committed, and never will be: its objects go. (Unsettled: it may be listed yet, whole.)
    if (!(err instanceof ManifestUnsettled)) {
      await catalogue.discardAll(job.id).catch((e: unknown) => ctx.log.warn({ err: e, job: job.id }, "could not remove an incomplete account backup"));
    }
    throw err;
  }
}

/**
 * The streams to back up, in name order: the named ones (404 for one that does not exist, 400
 * for the service's own), else every one but the service's own. Asked before a job is recorded,
 * so that such a request touches nothing, and again by the job.
 */
export async function chosenAccountStreams(ctx: Pick<JobContext, "nc">, named: string[] | undefined, ownStreams: ReadonlyMap<string, string>): Promise<string[]> {
  const own = (named ?? []).filter((s) => ownStreams.has(s));
  if (own.length > 0) throw BackupError.badRequest(`${own.map((s) => `stream ${s} is this service's own ${ownStreams.get(s)}`).join("; ")}: it is never backed up`);
  const existing = (await listNames(ctx.nc, "STREAM.NAMES", "streams")).filter((s) => !ownStreams.has(s));
  if (!named) return existing;
  const known = new Set(existing);
  const missing = [...new Set(named)].filter((s) => !known.has(s));
  if (missing.length > 0) throw BackupError.notFound(`${missing.length === 1 ? "stream" : "streams"} ${missing.join(", ")} not found`);
  return [...new Set(named)].sort();
}

/** One stream's part of the backup, under its lock; failures are its outcome, not thrown (bar the job's own abort). */
async function saveStream(
  ctx: JobContext,
  job: Pick<Job, "id" | "signal" | "progress">,
  stream: string,
  req: BackupAccountRequest,
  hold: Hold,
  names: ReturnType<typeof accountObjectNames>,
): Promise<AccountStream> {
  const { nc, catalogue } = ctx;
  const written: string[] = [];
  let release: (() => Promise<void>) | undefined;
  try {
    release = await hold({ stream });
    const info = await jsApiRequest(nc, `STREAM.INFO.${stream}`).catch((err: unknown) => {
      // Deleted since the account's streams were listed: in the server's words.
      if (err instanceof JetStreamApiError) throw new BackupError(err.code, `stream ${stream}: ${err.serverDescription} (${err.errCode})`);
      throw err;
    });
    const members = rawMembers(info);
    const configText = members.get("config");
    if (!configText) throw new BackupError(ErrorCode.Internal, `STREAM.INFO of ${stream} has no config`);
    const config = names.streamConfig(stream);
    await catalogue.putText(config, configText);
    written.push(config);
    const consumerNames = req.consumers ? await listNames(nc, `CONSUMER.NAMES.${stream}`, "consumers") : [];
    const consumers = req.consumers ? await saveConsumers(ctx, stream, consumerNames, names, written) : [];

    let data: AccountStream["data"];
    let noData: string | undefined;
    if (req.data) {
      const version = parseServerVersion(nc.info?.version);
      const storage = (JSON.parse(configText) as { storage?: string }).storage ?? "file";
      if (storage === "memory" && version && !Capabilities.snapshotsMemoryStreams(version)) {
        noData = `memory storage, which nats-server ${version.text} cannot snapshot (2.15 and later can): its configuration is saved, not its messages`;
      } else {
        const objects = names.data(stream);
        const state = JSON.parse(members.get("state") ?? "{}") as { bytes?: number };
        const described = { created: JSON.parse(members.get("created") ?? '""') as string, storage, bytes: state.bytes ?? 0 };
        const taken = await takeSnapshot(ctx, { stream, objects, job }, { consumers: req.consumers, check: false }, () => {}, {
          described,
          consumers: consumerNames,
        });
        written.push(objects.config, objects.archive);
        data = { objects, ...snapshotSummary(taken) };
      }
    }
    return { name: stream, state: "completed", config, consumers, ...(data ? { data } : {}), ...(noData ? { no_data: noData } : {}) };
  } catch (err) {
    const e = job.signal.aborted ? BackupError.from(job.signal.reason) : BackupError.from(err);
    await catalogue.discard(written).catch((de: unknown) => ctx.log.warn({ err: de, stream }, "could not remove a failed stream's objects"));
    return { name: stream, state: "failed", consumers: [], error: { code: e.code, description: e.description } };
  } finally {
    await release?.();
  }
}

/** Saves the configuration of each durable consumer of `stream`; one deleted meanwhile is left out. */
async function saveConsumers(
  ctx: JobContext,
  stream: string,
  consumerNames: string[],
  names: ReturnType<typeof accountObjectNames>,
  written: string[],
): Promise<AccountStream["consumers"]> {
  const { nc, catalogue } = ctx;
  const saved: AccountStream["consumers"] = [];
  const limit = pLimit(ConsumerReads);
  await Promise.all(
    consumerNames.map((consumer) =>
      limit(async () => {
        let info: string;
        try {
          info = await jsApiRequest(nc, `CONSUMER.INFO.${stream}.${consumer}`);
        } catch (err) {
          if (err instanceof JetStreamApiError && err.errCode === JsErrCode.ConsumerNotFound) return;
          throw err;
        }
        const configText = rawMembers(info).get("config");
        if (!configText || !(JSON.parse(configText) as { durable_name?: string }).durable_name) return; // ephemeral
        const config = names.consumerConfig(stream, consumer);
        await catalogue.putText(config, configText);
        written.push(config);
        saved.push({ name: consumer, config });
      }),
    ),
  );
  return saved.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Every object the commit checks: the contents list, and each held stream's configurations and snapshot. */
function partsOf(contents: string, held: AccountStream[]): ManifestPart[] {
  // The configurations are small objects written here, each chunk acked first: present is whole.
  const parts: ManifestPart[] = [{ name: contents, countChunks: false }];
  for (const s of held) {
    if (s.config) parts.push({ name: s.config, countChunks: false });
    for (const c of s.consumers) parts.push({ name: c.config, countChunks: false });
    if (s.data) {
      parts.push({ name: s.data.objects.config, countChunks: false }, { name: s.data.objects.archive, archive: { sha256: s.data.sha256, size: s.data.size } });
    }
  }
  return parts;
}
