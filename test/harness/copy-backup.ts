/**
 * Moves a backup from one service's bucket to another's, as an operator would between servers:
 * backup.json and the archive object by object (streamed, never whole in memory), then the
 * manifest, unchanged (it keeps the server version and archive format of the server that took
 * it), committed through the catalogue so the target service lists it.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { StreamManifest } from "../../src/mod.ts";
import { Catalogue, objectNames } from "../../src/catalogue/catalogue.ts";

export async function copyBackup(from: NatsConnection, to: NatsConnection, manifest: StreamManifest, bucket = "backups"): Promise<void> {
  const source = await new Objm(jetstream(from)).open(bucket);
  const target = await new Objm(jetstream(to)).open(bucket);
  const names = objectNames(manifest.id);
  for (const name of [names.config, names.archive]) {
    const read = await source.get(name);
    if (!read) throw new Error(`${name} is not in bucket ${bucket} of the source`);
    const put = await target.put({ name }, read.data);
    const failed = await read.error;
    if (failed) throw new Error(`reading ${name}: ${failed.message}`);
    if (put.size !== read.info.size || put.digest !== read.info.digest) {
      throw new Error(`${name} copied as ${put.size} bytes ${put.digest}, not ${read.info.size} bytes ${read.info.digest}`);
    }
  }
  const catalogue = await Catalogue.open(to, { bucket });
  try {
    await catalogue.commit(manifest);
  } finally {
    catalogue.close();
  }
}
