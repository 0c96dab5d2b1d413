/**
 * Starting a long job and following it to its end. The service publishes a job's first event
 * before it replies, so a client that subscribes to `$BACKUP.status.<id>` after the reply may also
 * miss the terminal event of a short job: it subscribes, makes sure the server has the
 * subscription, and only then reads the record once (`$BACKUP.job.<id>`). The record is stored
 * before its terminal event is published, so either that read is terminal or the event is still
 * to come. A job whose events stop (its instance died: a sweeper ends its record later) is read
 * again after a few quiet seconds.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { JobRecord, JobStarted } from "../protocol/schemas.ts";
import { Subjects } from "../protocol/subjects.ts";
import { ask, CliError } from "./ask.ts";

/** How long the start of a job may take to be answered: a restore can wait for another one on the same server connection. */
export const StartTimeoutMs = 120_000;
/** Events come at least once a second while a job runs; after this long without one the record is read. */
const QuietMs = 5_000;

/** Sends a backup or restore request (`wait:false`) and returns the job it started; an error reply is thrown in the service's words. */
export async function startJob(nc: NatsConnection, subject: string, body: object): Promise<JobStarted> {
  return ask<JobStarted>(nc, subject, { ...body, wait: false }, StartTimeoutMs);
}

/** How long a job this client just started may be unknown to `$BACKUP.job.<id>` (its first record is stored without waiting). */
const UnknownForMs = 30_000;

/**
 * Follows job `id` to its end, handing `onRecord` every record as it comes (never an older running
 * one after a newer); returns the terminal record. `justStarted`: the caller started the job, so
 * a 404 from `$BACKUP.job.<id>` means its record is not stored yet (another instance may answer),
 * not that there is no such job.
 */
export async function followJob(
  nc: NatsConnection,
  id: string,
  onRecord: (record: JobRecord) => void,
  opts: { signal?: AbortSignal; justStarted?: boolean } = {},
): Promise<JobRecord> {
  const { signal, justStarted = false } = opts;
  const sub = nc.subscribe(Subjects.status(id));
  const since = Date.now();
  let newest = "";
  const seen = (record: JobRecord): boolean => {
    // A terminal record is never dropped, whatever clock stamped it.
    if (record.id !== id || (record.state === "running" && record.updated < newest)) return false;
    newest = record.updated;
    onRecord(record);
    return true;
  };
  /** The stored record; undefined while a job just started is not stored yet. */
  const read = async (): Promise<JobRecord | undefined> => {
    try {
      return await ask<JobRecord>(nc, Subjects.job(id));
    } catch (err) {
      if (justStarted && err instanceof CliError && err.code === 404 && newest === "" && Date.now() - since < UnknownForMs) return undefined;
      throw err;
    }
  };
  try {
    await nc.flush();
    const first = await read();
    if (first) {
      seen(first);
      if (first.state !== "running") return first;
    }

    return await new Promise<JobRecord>((resolve, reject) => {
      let quietSince = Date.now();
      let reading = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (fn: () => void) => {
        clearInterval(timer);
        signal?.removeEventListener("abort", onAbort);
        fn();
      };
      const onAbort = () => finish(() => reject(signal?.reason ?? new CliError("stopped")));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      timer = setInterval(() => {
        if (reading || Date.now() - quietSince < QuietMs) return;
        reading = true;
        read()
          .then((record) => {
            quietSince = Date.now();
            if (record && seen(record) && record.state !== "running") finish(() => resolve(record));
          })
          .catch((err: unknown) => finish(() => reject(err)))
          .finally(() => (reading = false));
      }, 1000);
      void (async () => {
        for await (const m of sub) {
          quietSince = Date.now();
          let record: JobRecord;
          try {
            record = m.json<JobRecord>();
          } catch {
            continue;
          }
          if (seen(record) && record.state !== "running") return finish(() => resolve(record));
        }
      })().catch((err: unknown) => finish(() => reject(err)));
    });
  } finally {
    sub.unsubscribe();
  }
}
