/**
 * The service's restore path without its digest check, run by the bench itself: the bucket's
 * stream delivers the archive to the server's restore (the service's own code and window), then
 * the server builds the stream. It is the floor of any restore fed by the bucket on this server
 * and machine: the service's restore can only add the check to it, which the integrity contract
 * requires before the build. Measured beside the others so that the restore ratio can be read
 * against what the server itself allows.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Catalogue } from "../src/catalogue/catalogue.ts";
import { DefaultTuning } from "../src/jobs/context.ts";
import { startRestore } from "../src/snapshot/restore.ts";

export interface UncheckedRestore {
  seconds: number;
  /** From the first chunk's delivery to the last chunk's answer. */
  deliverySeconds: number;
}

export async function uncheckedRestore(nc: NatsConnection, bucket: string, stream: string, backupId: string): Promise<UncheckedRestore> {
  const catalogue = await Catalogue.open(nc, { bucket });
  const t0 = performance.now();
  const archive = await catalogue.archiveInfo(backupId);
  const session = await startRestore(nc, stream, await catalogue.readConfig(backupId), 600_000);
  const t1 = performance.now();
  const delivery = await catalogue.deliverArchive(archive, session.deliverSubject, {
    window: DefaultTuning.restoreWindow,
    stallMs: DefaultTuning.snapshotIdleMs,
  });
  try {
    await delivery.done(() => {}, new AbortController().signal);
  } catch (err) {
    session.abort();
    throw err;
  } finally {
    await delivery.stop();
  }
  const t2 = performance.now();
  await session.finish();
  return { seconds: (performance.now() - t0) / 1000, deliverySeconds: (t2 - t1) / 1000 };
}
