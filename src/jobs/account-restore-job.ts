/**
 * An account restore: every stream of an account backup (or the named ones), a bounded number at
 * once, each after the streams it mirrors or sources from. A stream that does not exist is
 * restored from its snapshot where the backup holds one (messages and consumer state, as a stream
 * restore does it: `restoreSnapshot`), else created from its configuration; then its saved
 * consumers that are missing are created. A stream that exists is left alone (`already exist`),
 * unless `update_streams`: then its configuration, and its consumers', are edited to the saved
 * ones and its messages kept. Every stream and consumer gets an item saying what was done.
 */
import pLimit from "p-limit";
import { JetStreamApiError, JsErrCode, jsApiRequest } from "../jetstream/jsapi.ts";
import { rawMembers } from "../jetstream/raw-json.ts";
import { Capabilities, parseServerVersion } from "../jetstream/server-version.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { AccountManifest, AccountRestoreResult, AccountStream, RestoreAccountRequest } from "../protocol/schemas.ts";
import type { Catalogue } from "../catalogue/catalogue.ts";
import type { JobContext } from "./context.ts";
import type { Job } from "./job.ts";
import { configOverrides, restoreSnapshot } from "./restore-job.ts";
import { JobFailed, type Finished, type Hold } from "./pipeline.ts";
import { StreamsProgress } from "./streams-progress.ts";

type StreamItem = AccountRestoreResult["streams"][number];
type ConsumerItem = StreamItem["consumers"][number];

/** Actions that mean the item is as the backup has it. */
const Succeeded = new Set<StreamItem["action"]>(["created", "restored", "updated", "unchanged"]);
/** Configuration objects read at once while planning. */
const ConfigReads = 32;

/**
 * The backup an account restore reads (`id`, or the newest without failed streams), or the 4xx
 * refusing it: 404 when there is none, 400 for a stream backup. Asked before a job is recorded,
 * so that such a request touches nothing, and again by the job.
 */
export async function chosenAccountBackup(catalogue: Catalogue, id: string | undefined): Promise<AccountManifest> {
  const chosen = id ? await catalogue.info(id) : await catalogue.latestAccount();
  if (chosen.scope !== "account") {
    throw BackupError.badRequest(`backup ${chosen.id} is a backup of stream ${chosen.stream}, not an account backup: restore it with $RESTORE.stream.${chosen.stream}`);
  }
  return chosen;
}

/** The 4xx refusing an account restore before its job is recorded: its backup (chosenAccountBackup), and `streams` it does not hold. */
export async function checkAccountRestore(catalogue: Catalogue, req: RestoreAccountRequest, ownStreams: ReadonlyMap<string, string>): Promise<void> {
  const chosen = await chosenAccountBackup(catalogue, req.backup);
  if (req.streams) chooseStreams(chosen.id, (await catalogue.readContents(chosen.id)).streams, req.streams, ownStreams);
}

export async function restoreAccount(
  ctx: JobContext,
  job: Job,
  req: RestoreAccountRequest,
  accepted: () => void,
  hold: Hold,
  ownStreams: ReadonlyMap<string, string>,
): Promise<Finished> {
  const { nc, catalogue } = ctx;
  const chosen = await chosenAccountBackup(catalogue, req.backup);
  job.setBackup(chosen.id);
  // Nobody may delete it while it is read; and it may have been deleted just before.
  await hold({ backup: chosen.id });
  const manifest = await chosenAccountBackup(catalogue, chosen.id);
  const contents = await catalogue.readContents(manifest.id);
  const entries = chooseStreams(manifest.id, contents.streams, req.streams, ownStreams);
  const configs = await readConfigs(ctx, entries);
  accepted();

  const clustered = nc.info?.cluster !== undefined;
  const warnings: string[] = [];
  const withData = (e: AccountStream) => req.data && e.data !== undefined;
  // Bytes of the snapshots to restore; less those of streams that end without theirs (skipped, updated, failed).
  const expected = entries.reduce((n, e) => n + (withData(e) ? e.data!.size : 0), 0);
  const tracked = new StreamsProgress(job, entries.length, expected);

  const restoreOne = async (entry: AccountStream): Promise<StreamItem> => {
    const stream = entry.name;
    tracked.started(stream);
    const progress = (bytes: number, chunks: number) => tracked.moved(stream, bytes, chunks);
    const item = await restoreStreamItem(ctx, {
      entry,
      configText: configs.get(stream)!,
      req,
      clustered,
      hold,
      withData: withData(entry),
      warn: (w) => warnings.push(`stream ${stream}: ${w}`),
      restoreData: (data) =>
        restoreSnapshot(ctx, { stream, backup: manifest.id, data, takenOn: manifest.server?.version, job: { id: job.id, signal: job.signal, progress } }, req, () => {}),
    });
    tracked.ended(stream, withData(entry) && item.action !== "restored" ? entry.data!.size : 0);
    return item;
  };

  // A stream starts once the streams it mirrors or sources from ended; a slot is taken only then.
  // One at a time where a restore races any stream created or deleted meanwhile (2.15).
  const version = parseServerVersion(nc.info?.version);
  const parallel = version && Capabilities.restoresRaceStreamChanges(version) ? 1 : ctx.tuning.accountParallel;
  const limit = pLimit(Math.max(1, parallel));
  const byName = new Map(entries.map((e) => [e.name, e]));
  const started = new Map<string, Promise<StreamItem>>();
  const start = (entry: AccountStream, path: Set<string>): Promise<StreamItem> => {
    let item = started.get(entry.name);
    if (item) return item;
    const inner = new Set(path).add(entry.name);
    const origins = originsOf(configs.get(entry.name)!).filter((o) => byName.has(o) && !inner.has(o)); // (a cycle is cut)
    item = Promise.all(origins.map((o) => start(byName.get(o)!, inner)))
      .then(() => (job.signal.aborted ? abortedItem(entry, job.signal.reason) : limit(() => restoreOne(entry))));
    started.set(entry.name, item);
    return item;
  };
  const items = await Promise.all(entries.map((e) => start(e, new Set())));
  if (job.signal.aborted) throw BackupError.from(job.signal.reason);

  const result: AccountRestoreResult = { backup: manifest.id, streams: items, ...(warnings.length ? { warnings } : {}) };
  const whole = items.every((i) => Succeeded.has(i.action) && i.consumers.every((c) => Succeeded.has(c.action)));
  if (whole) return { result, state: "completed" };
  if (items.some((i) => Succeeded.has(i.action))) return { result, state: "partial" };
  throw new JobFailed(allFailed(manifest.id, items), result);
}

/** The backup's saved streams to restore: the named ones (404 for one it does not hold), else all. */
function chooseStreams(
  backup: string,
  held: AccountStream[],
  named: string[] | undefined,
  ownStreams: ReadonlyMap<string, string>,
): AccountStream[] {
  const saved = held.filter((s) => s.state === "completed" && !ownStreams.has(s.name));
  if (!named) return saved;
  const byName = new Map(saved.map((s) => [s.name, s]));
  const missing = [...new Set(named)].filter((s) => !byName.has(s));
  if (missing.length > 0) throw BackupError.notFound(`backup ${backup} holds no ${missing.length === 1 ? "stream" : "streams"} ${missing.join(", ")}`);
  return [...new Set(named)].sort().map((s) => byName.get(s)!);
}

/** Each stream's saved configuration text, by name. */
async function readConfigs(ctx: JobContext, entries: AccountStream[]): Promise<Map<string, string>> {
  const limit = pLimit(ConfigReads);
  const texts = await Promise.all(
    entries.map((e) =>
      limit(() => {
        if (!e.config) throw new BackupError(ErrorCode.Internal, `the account backup names no configuration object for stream ${e.name}`);
        return ctx.catalogue.readText(e.config);
      }),
    ),
  );
  return new Map(entries.map((e, i) => [e.name, texts[i]!]));
}

/** The streams of this account a configuration mirrors or sources from (not those of another domain or account). */
function originsOf(configText: string): string[] {
  const config = JSON.parse(configText) as { mirror?: Origin; sources?: Origin[] };
  return [config.mirror, ...(config.sources ?? [])].filter((o): o is Origin => !!o && !o.external && !!o.name).map((o) => o.name!);
}
interface Origin {
  name?: string;
  external?: unknown;
}

interface StreamPlan {
  entry: AccountStream;
  configText: string;
  req: RestoreAccountRequest;
  clustered: boolean;
  hold: Hold;
  /** Restore the messages (the backup holds them and the request wants them). */
  withData: boolean;
  warn(warning: string): void;
  restoreData(data: NonNullable<AccountStream["data"]>): Promise<{ messages: number; warnings?: string[] }>;
}

/** One stream and its consumers, under the stream's lock; failures are its item, not thrown. */
async function restoreStreamItem(ctx: JobContext, plan: StreamPlan): Promise<StreamItem> {
  const { nc } = ctx;
  const { entry, req } = plan;
  const stream = entry.name;
  const consumersLeft = (reason: string): ConsumerItem[] => entry.consumers.map((c) => ({ name: c.name, action: "skipped", reason }));
  let release: (() => Promise<void>) | undefined;
  try {
    release = await plan.hold({ stream });
    const current = await currentConfig(nc, `STREAM.INFO.${stream}`);
    const { config, warnings } = configOverrides(plan.configText, req, plan.clustered);
    if (current !== null) {
      if (!req.update_streams) {
        return { stream, action: "skipped", reason: `stream ${stream} already exist`, consumers: consumersLeft(`stream ${stream} was left as it is`) };
      }
      const changed = changedFields(current.config, config);
      if (changed.length > 0) await jsApiRequest(nc, `STREAM.UPDATE.${stream}`, config);
      const consumers = await restoreConsumers(ctx, stream, entry, true);
      return { stream, action: changed.length > 0 ? "updated" : "unchanged", ...(changed.length ? { changed } : {}), messages: current.messages, consumers };
    }
    if (plan.withData) {
      const restored = await plan.restoreData(entry.data!);
      for (const w of restored.warnings ?? []) plan.warn(w);
      // The snapshot carried the consumers it had; any saved one it lacks is created.
      const consumers = await restoreConsumers(ctx, stream, entry, false, "restored");
      return { stream, action: "restored", messages: restored.messages, consumers };
    }
    for (const w of warnings) plan.warn(w);
    await jsApiRequest(nc, `STREAM.CREATE.${stream}`, config);
    const consumers = await restoreConsumers(ctx, stream, entry, false);
    return { stream, action: "created", messages: 0, consumers };
  } catch (err) {
    const e = BackupError.from(err);
    const why = err instanceof JetStreamApiError ? `${e.description} (${err.errCode})` : e.description;
    return { stream, action: "failed", error: { code: e.code, description: why }, consumers: consumersLeft(`stream ${stream} failed`) };
  } finally {
    await release?.();
  }
}

/**
 * The stream's saved consumers: a missing one is created; an existing one is `present` (its
 * snapshot brought it), or with `update` edited to the saved configuration where it differs.
 */
async function restoreConsumers(
  ctx: JobContext,
  stream: string,
  entry: AccountStream,
  update: boolean,
  present: ConsumerItem["action"] = "unchanged",
): Promise<ConsumerItem[]> {
  const { nc, catalogue } = ctx;
  const items: ConsumerItem[] = [];
  for (const { name, config: object } of entry.consumers) {
    try {
      const saved = await catalogue.readText(object);
      const current = await currentConfig(nc, `CONSUMER.INFO.${stream}.${name}`);
      const body = `{"stream_name":${JSON.stringify(stream)},"config":${saved}}`;
      if (current === null) {
        await jsApiRequest(nc, `CONSUMER.CREATE.${stream}.${name}`, body);
        items.push({ name, action: "created" });
        continue;
      }
      const changed = changedFields(current.config, saved);
      if (changed.length === 0 || !update) {
        items.push({ name, action: present });
        continue;
      }
      await jsApiRequest(nc, `CONSUMER.CREATE.${stream}.${name}`, body);
      items.push({ name, action: "updated", changed });
    } catch (err) {
      const e = BackupError.from(err);
      const why = err instanceof JetStreamApiError ? `${e.description} (${err.errCode})` : e.description;
      items.push({ name, action: "failed", error: { code: e.code, description: why } });
    }
  }
  return items;
}

/** The configuration (and message count) an INFO request returns; null when there is no such stream or consumer. */
async function currentConfig(nc: JobContext["nc"], subject: string): Promise<{ config: string; messages: number } | null> {
  try {
    const info = rawMembers(await jsApiRequest(nc, subject));
    const state = JSON.parse(info.get("state") ?? "{}") as { messages?: number };
    return { config: info.get("config") ?? "{}", messages: state.messages ?? 0 };
  } catch (err) {
    if (err instanceof JetStreamApiError && (err.errCode === JsErrCode.StreamNotFound || err.errCode === JsErrCode.ConsumerNotFound)) return null;
    throw err;
  }
}

/**
 * The fields whose value differs between `current` and `wanted`. A field only `current` has is a
 * change (the update drops it, a description added since, say) unless its value is empty (false,
 * 0, "", [], {}): such a field is a default a newer server writes out, which the saved
 * configuration of an older one lacks.
 */
export function changedFields(current: string, wanted: string): string[] {
  const have = withoutServerMetadata(JSON.parse(current) as Record<string, unknown>);
  const want = withoutServerMetadata(JSON.parse(wanted) as Record<string, unknown>);
  const differ = Object.keys(want).filter((k) => canonical(want[k]) !== canonical(have[k]) && !(have[k] === undefined && isEmpty(want[k])));
  const dropped = Object.keys(have).filter((k) => !(k in want) && !isEmpty(have[k]));
  return [...differ, ...dropped].sort();
}

/** The configuration without the `_nats.*` metadata the server writes itself (2.11+): not the user's to change. */
function withoutServerMetadata(config: Record<string, unknown>): Record<string, unknown> {
  const metadata = config.metadata as Record<string, unknown> | undefined;
  if (!metadata || typeof metadata !== "object") return config;
  return { ...config, metadata: Object.fromEntries(Object.entries(metadata).filter(([k]) => !k.startsWith("_nats."))) };
}

function isEmpty(value: unknown): boolean {
  if (value === null || value === false || value === 0 || value === "") return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === "object" && Object.keys(value as object).length === 0;
}

/** JSON with object keys sorted, so that member order does not count as a change. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "undefined";
}

function abortedItem(entry: AccountStream, reason: unknown): StreamItem {
  const e = BackupError.from(reason);
  return { stream: entry.name, action: "failed", error: { code: e.code, description: e.description }, consumers: [] };
}

/** The error of a restore none of whose streams was restored. */
function allFailed(backup: string, items: StreamItem[]): BackupError {
  const skipped = items.filter((i) => i.action === "skipped");
  if (skipped.length === items.length) {
    return BackupError.conflict(
      `no stream of backup ${backup} was restored: ${skipped.length === 1 ? `stream ${skipped[0]!.stream} already exist` : `all ${skipped.length} streams already exist`} (update_streams edits them to the saved configuration)`,
    );
  }
  const failed = items.filter((i) => i.action === "failed");
  const first = failed[0]?.error;
  const summary = failed.map((i) => `${i.stream}: ${i.error!.description}`).slice(0, 5).join("; ");
  return new BackupError(first?.code ?? ErrorCode.Internal, `no stream of backup ${backup} was restored: ${summary}`);
}
