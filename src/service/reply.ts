/** Replies: JSON results, and errors with the micro error headers and a JetStream-style body. */
import type { ServiceMsg } from "@nats-io/services";
import type { Logger } from "pino";
import { headers } from "@nats-io/nats-core";
import { BackupError, ErrorCode, JobHeader } from "../protocol/errors.ts";

const MaxDescription = 2048;

export function respondJson(msg: ServiceMsg, body: unknown): void {
  msg.respond(JSON.stringify(body));
}

export function respondError(msg: ServiceMsg, err: unknown, log: Logger): void {
  const e = BackupError.from(err);
  if (e.code >= ErrorCode.Internal) log.error({ err, subject: msg.subject }, e.description);
  // A header value cannot hold CR or LF (the client throws); the body repeats the header, so
  // both stay short enough to fit any max_payload.
  const flat = e.description.replace(/[\r\n]+/g, " ");
  const description = flat.length > MaxDescription ? `${flat.slice(0, MaxDescription)}…` : flat;
  const h = headers();
  if (e.job) h.set(JobHeader, e.job);
  msg.respondError(e.code, description, JSON.stringify({ error: { code: e.code, description } }), { headers: h });
}
