/** Request bodies and subject tokens, checked before anything is touched. */
import type { ServiceMsg } from "@nats-io/services";
import type { z } from "zod";
import { BackupError } from "../protocol/errors.ts";
import { backupId } from "../protocol/schemas.ts";
import { isValidStreamName, lastToken } from "../protocol/subjects.ts";

/** The body as `schema` reads it; an empty body means all defaults. */
export function parseBody<S extends z.ZodType>(schema: S, msg: ServiceMsg): z.output<S> {
  let value: unknown = {};
  if (msg.data.length > 0) {
    const text = new TextDecoder().decode(msg.data);
    if (text.trim().length > 0) {
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw BackupError.badRequest(`malformed JSON in the request body: ${(err as Error).message}`);
      }
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw BackupError.badRequest("the request body must be a JSON object (or empty)");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const at = issue.path.length ? issue.path.join(".") : "body";
      if (issue.code !== "unrecognized_keys") return `${at}: ${issue.message}`;
      const keys = issue.keys.slice(0, 5).map(quoteShort).join(", ") + (issue.keys.length > 5 ? ", …" : "");
      return `unknown field${issue.keys.length > 1 ? "s" : ""} ${keys}${issue.path.length ? ` in ${at}` : ""}`;
    });
    throw BackupError.badRequest(`invalid request: ${problems.slice(0, 5).join("; ")}`);
  }
  return parsed.data;
}

/** A value from the request, quoted and cut short: an error description never repeats a huge input. */
function quoteShort(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}

/** The stream named by the subject's last token. */
export function streamFromSubject(subject: string): string {
  const stream = lastToken(subject);
  if (!isValidStreamName(stream)) throw BackupError.badRequest(`invalid stream name ${quoteShort(stream)}`);
  return stream;
}

/** The backup or job id named by the subject's last token. */
export function idFromSubject(subject: string): string {
  const id = lastToken(subject);
  if (!backupId.safeParse(id).success) {
    throw BackupError.badRequest(`invalid id ${quoteShort(id)}: ids are 26-character ULIDs`);
  }
  return id;
}
