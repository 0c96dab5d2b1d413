/**
 * `$BACKUP.report`: every stream of the account (KV and object store buckets included), judged
 * by assess.ts, worst first, with counts per verdict. What it asks: STREAM.LIST (a page of 256
 * streams each, with each stream's cluster block, lost streams included), one scatter request
 * for the servers online, and the catalogue's manifests (from its index).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Catalogue } from "../catalogue/catalogue.ts";
import { streamOf } from "../catalogue/object-format.ts";
import { jsApiRequest, JetStreamApiError } from "../jetstream/jsapi.ts";
import { durationMs } from "../protocol/duration.ts";
import { BackupError } from "../protocol/errors.ts";
import { countFitting } from "../protocol/reply-size.ts";
import { Verdict, VerdictOrder, type ReportReply, type ReportRequest, type StreamReadiness, type VerdictCounts } from "../protocol/readiness.ts";
import { assessStream, type StreamListing } from "./assess.ts";
import { clusterServers } from "./cluster-servers.ts";
import { newestBackups } from "./newest-backups.ts";

/** The service's own streams by name, and what each is (as service.ts names them for its jobs). */
export function serviceBuckets(bucket: string): Map<string, string> {
  return new Map([
    [streamOf(bucket), `backup bucket ${bucket}`],
    [`KV_${bucket}-jobs`, `job record bucket ${bucket}-jobs`],
    [`KV_${bucket}-locks`, `lock bucket ${bucket}-locks`],
  ]);
}

interface ListPage {
  total?: number;
  streams?: StreamListing[] | null;
  missing?: string[] | null;
}

/** Every stream STREAM.LIST gives, and the names it could not describe (no leader answered: `missing`). */
export async function listStreams(nc: NatsConnection): Promise<{ listed: StreamListing[]; missing: string[] }> {
  const listed: StreamListing[] = [];
  const missing = new Set<string>();
  for (let offset = 0; ; ) {
    const page = JSON.parse(await jsApiRequest(nc, "STREAM.LIST", JSON.stringify({ offset }), 10_000)) as ListPage;
    const batch = page.streams ?? [];
    listed.push(...batch);
    for (const name of page.missing ?? []) missing.add(name);
    offset += batch.length;
    if (batch.length === 0 || offset >= (page.total ?? 0)) break;
  }
  for (const s of listed) missing.delete(s.config.name);
  return { listed, missing: [...missing] };
}

/** A stream the list named as missing: what STREAM.INFO says, or no more than its name (no leader: lost). */
async function describeMissing(nc: NatsConnection, name: string): Promise<StreamListing> {
  try {
    return JSON.parse(await jsApiRequest(nc, `STREAM.INFO.${name}`)) as StreamListing;
  } catch (err) {
    if (err instanceof JetStreamApiError || (err instanceof BackupError && err.code === 503)) return { config: { name }, cluster: {} };
    throw err;
  }
}

export const emptyCounts = (): VerdictCounts => Object.fromEntries(Object.values(Verdict).map((v) => [v, 0])) as VerdictCounts;

/**
 * The report, its streams from `req.offset` on cut to `maxBytes` of JSON (a reply must fit the
 * server's max_payload, and an account may hold thousands of streams); `counts` covers them all.
 */
export async function takeReport(nc: NatsConnection, catalogue: Catalogue, req: ReportRequest, maxBytes: number, now = new Date()): Promise<ReportReply> {
  const recentMs = durationMs(req.recent);
  const { listed, missing } = await listStreams(nc);
  const all = [...listed, ...(await Promise.all(missing.map((name) => describeMissing(nc, name))))];
  let chosen = all;
  if (req.streams) {
    const want = new Set(req.streams);
    const absent = req.streams.filter((s) => !all.some((l) => l.config.name === s));
    if (absent.length) throw BackupError.notFound(`no such stream${absent.length > 1 ? "s" : ""}: ${absent.slice(0, 20).join(", ")}`);
    chosen = all.filter((l) => want.has(l.config.name));
  }
  const [servers, backups] = await Promise.all([clusterServers(nc), newestBackups(catalogue, new Set(chosen.map((l) => l.config.name)))]);
  const own = serviceBuckets(catalogue.bucket);

  const streams: StreamReadiness[] = chosen.map((listing) => {
    const serviceBucket = own.get(listing.config.name);
    return assessStream({
      listing,
      servers,
      backup: serviceBucket ? undefined : backups.get(listing.config.name),
      now,
      recentMs,
      ...(serviceBucket ? { serviceBucket } : {}),
    });
  });
  streams.sort((a, b) => VerdictOrder.indexOf(a.verdict) - VerdictOrder.indexOf(b.verdict) || a.stream.localeCompare(b.stream));

  const counts = emptyCounts();
  for (const s of streams) counts[s.verdict]++;
  const whole: ReportReply = {
    taken: now.toISOString(),
    recent_seconds: recentMs / 1000,
    servers: {
      known: servers.known,
      names: servers.servers.map((s) => ({ name: s.name, cluster: s.cluster, tags: s.tags })),
      ...(servers.known ? {} : { note: servers.note }),
    },
    counts,
    // The service's own buckets cannot be backed up: their single copy shows in their verdict, not here, or the alert would never clear.
    single_copy_without_recent_backup: streams.filter((s) => s.verdict === Verdict.singleCopy && !s.service_bucket && !s.backup?.recent).length,
    streams,
    total: streams.length,
  };
  return cutReport(whole, req.offset, maxBytes);
}

/** Room in a page for its `next_offset`. */
const NextOffsetBytes = Buffer.byteLength(`,"next_offset":${Number.MAX_SAFE_INTEGER}`);

/** The streams from `offset` that fit `maxBytes` with the rest of the reply; at least one, when one is left. */
export function cutReport(whole: ReportReply, offset: number, maxBytes: number): ReportReply {
  const envelope = Buffer.byteLength(JSON.stringify({ ...whole, streams: [] })) + NextOffsetBytes;
  const next = offset + countFitting(whole.streams, offset, envelope, maxBytes);
  return { ...whole, streams: whole.streams.slice(offset, next), ...(next < whole.streams.length ? { next_offset: next } : {}) };
}

/** What `$SRV.STATS.backup` shows as the report endpoint's `data`: the last whole report's counts, cheap to send. */
export function readinessStats(report: ReportReply): { taken: string; counts: VerdictCounts; single_copy_without_recent_backup: number } {
  return { taken: report.taken, counts: report.counts, single_copy_without_recent_backup: report.single_copy_without_recent_backup };
}
