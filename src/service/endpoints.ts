/** The service's endpoints: each reads its request, hands it to the runner or the catalogue, and replies. */
import type { NatsConnection } from "@nats-io/nats-core";
import type { ServiceMsg } from "@nats-io/services";
import type { Logger } from "pino";
import type { Catalogue } from "../catalogue/catalogue.ts";
import type { JobStore } from "../jobs/job-store.ts";
import type { Job } from "../jobs/job.ts";
import type { JobRunner } from "../jobs/runner.ts";
import { definedPolicy, type Retention } from "../jobs/retention.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import {
  BackupAccountRequest,
  BackupStreamRequest,
  RestoreAccountRequest,
  EmptyRequest,
  ListRequest,
  MiB,
  PruneRequest,
  RestoreStreamRequest,
  type DeleteReply,
} from "../protocol/schemas.ts";
import type { EndpointName } from "../protocol/subjects.ts";
import { PeerRemoveRequest, ReportRequest, ServerRemoveRequest } from "../protocol/readiness.ts";
import { readinessStats, takeReport } from "../readiness/report.ts";
import { removePeer } from "../readiness/peer-remove.ts";
import { removeServer } from "../readiness/server-remove.ts";
import type { EndpointStats } from "./endpoint-stats.ts";
import { idFromSubject, parseBody, streamFromSubject } from "./request.ts";
import { respondError, respondJson } from "./reply.ts";

export interface EndpointDeps {
  runner: JobRunner;
  catalogue: Catalogue;
  jobs: JobStore;
  retention: Retention;
  log: Logger;
  /** Where an endpoint leaves figures for `$SRV.STATS` (the report's counts per verdict). */
  stats?: EndpointStats;
  /** A connection in the system account, for `$RESTORE.server-remove`. */
  systemConnection?: NatsConnection;
}

/** Room left in a reply for what the client adds around the body (headers, should any be set). */
const ReplyHeadroom = 1024;

/** The most bytes of JSON a reply on `nc` can carry: the server's max_payload, less some headroom. */
function replyBudget(nc: NatsConnection): number {
  return (nc.info?.max_payload ?? MiB) - ReplyHeadroom;
}

/** Backups one prune removes at most; fewer on a server with a small max_payload, so that its reply fits. */
const PruneMax = 256;
/** A generous size of one backup in a prune reply: a stream entry of its own, skipped with a description. */
const PruneEntryBytes = 1024;

function pruneBound(nc: NatsConnection): number {
  return Math.max(1, Math.min(PruneMax, Math.floor(replyBudget(nc) / PruneEntryBytes)));
}

type Handler = (msg: ServiceMsg, deps: EndpointDeps) => Promise<unknown>;

/** Replies with the final record (a `partial` one too: its result says what failed), or with the job's error when it failed. */
async function finalReply(job: Job): Promise<unknown> {
  const record = await job.done;
  if (record.state === "failed" && record.error) {
    throw new BackupError(record.error.code, `${record.operation} job ${record.id} failed: ${record.error.description}`).ofJob(record.id);
  }
  return record;
}

export const handlers: Record<EndpointName, Handler> = {
  "backup-stream": async (msg, { runner }) => {
    const stream = streamFromSubject(msg.subject);
    const req = parseBody(BackupStreamRequest, msg);
    const job = await runner.backup(stream, req);
    return req.wait ? finalReply(job) : job.started();
  },
  "restore-stream": async (msg, { runner }) => {
    const stream = streamFromSubject(msg.subject);
    const req = parseBody(RestoreStreamRequest, msg);
    const job = await runner.restore(stream, req);
    return req.wait ? finalReply(job) : job.started();
  },
  "backup-account": async (msg, { runner }) => {
    const req = parseBody(BackupAccountRequest, msg);
    const job = await runner.backupAccount(req);
    return req.wait ? finalReply(job) : job.started();
  },
  "restore-account": async (msg, { runner }) => {
    const req = parseBody(RestoreAccountRequest, msg);
    const job = await runner.restoreAccount(req);
    return req.wait ? finalReply(job) : job.started();
  },
  list: async (msg, { catalogue }) => {
    const req = parseBody(ListRequest, msg);
    return catalogue.page({ ...req, maxBytes: replyBudget(catalogue.nc) });
  },
  info: async (msg, { catalogue }) => {
    const id = idFromSubject(msg.subject);
    parseBody(EmptyRequest, msg);
    return catalogue.info(id);
  },
  delete: async (msg, { runner }) => {
    const id = idFromSubject(msg.subject);
    parseBody(EmptyRequest, msg);
    const objects = await runner.deleteBackup(id);
    return { id, deleted: true, objects } satisfies DeleteReply;
  },
  verify: async (msg, { runner }) => {
    const id = idFromSubject(msg.subject);
    parseBody(EmptyRequest, msg);
    return runner.verify(id);
  },
  prune: async (msg, { catalogue, retention }) => {
    const req = parseBody(PruneRequest, msg);
    const named = req.keep_last !== undefined || req.max_age !== undefined;
    return retention.apply({
      ...(req.stream !== undefined ? { stream: req.stream } : {}),
      // Either field named: the request's policy replaces every stream's own for this prune.
      ...(named ? { policy: definedPolicy({ keep_last: req.keep_last, max_age: req.max_age }) } : {}),
      dryRun: req.dry_run,
      max: pruneBound(catalogue.nc),
      operation: "prune",
    });
  },
  job: async (msg, { runner, jobs }) => {
    const id = idFromSubject(msg.subject);
    parseBody(EmptyRequest, msg);
    const record = runner.running(id)?.record ?? (await jobs.get(id));
    if (!record) throw BackupError.notFound(`job ${id} not found`);
    return record;
  },
  report: async (msg, { catalogue, stats }) => {
    const req = parseBody(ReportRequest, msg);
    const report = await takeReport(catalogue.nc, catalogue, req, replyBudget(catalogue.nc));
    // The readiness metric is the account's: a report of some streams only leaves it as it was.
    if (!req.streams) stats?.setData("report", readinessStats(report));
    return report;
  },
  "peer-remove": async (msg, { catalogue }) => {
    const stream = streamFromSubject(msg.subject);
    const req = parseBody(PeerRemoveRequest, msg);
    return removePeer(catalogue.nc, stream, req);
  },
  "server-remove": async (msg, { systemConnection }) => removeServer(systemConnection, parseBody(ServerRemoveRequest, msg)),
};

/**
 * Runs a handler; a request without a reply subject still runs, and its outcome is only logged.
 * Resolves to the error replied with, if any.
 */
export async function serve(name: EndpointName, msg: ServiceMsg, deps: EndpointDeps): Promise<BackupError | null> {
  let failure: BackupError | null = null;
  let body: unknown;
  try {
    body = await handlers[name](msg, deps);
  } catch (err) {
    failure = BackupError.from(err);
  }
  try {
    if (!msg.reply) {
      if (failure) deps.log.warn({ err: failure, subject: msg.subject }, "request without a reply subject failed");
    } else if (failure) {
      respondError(msg, failure, deps.log);
    } else {
      respondJson(msg, body);
    }
  } catch (err) {
    // Too large for max_payload, most likely: every request still gets an answer.
    deps.log.warn({ err, subject: msg.subject }, "could not send the reply");
    failure = new BackupError(ErrorCode.Internal, `the reply could not be sent: ${(err as Error).message}`);
    try {
      respondError(msg, failure, deps.log);
    } catch {
      // The connection is gone; nothing more to do.
    }
  }
  return failure;
}
