/**
 * A backup written straight into the bucket around an archive of the test's choosing: the
 * backup.json of a real backup, the given bytes as its archive, and a manifest whose size,
 * chunks and digest are those bytes', so the service's own checks pass and only the server can
 * refuse what it is given.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import { objectNames } from "../../src/catalogue/catalogue.ts";
import { putSmallObject } from "../../src/catalogue/object-writes.ts";
import type { StreamManifest } from "../../src/mod.ts";
import { ulidAt, writeManifest } from "./manifests.ts";

/** Stores a new backup of `like.stream`, newer than any before, whose archive is `archive`; returns its manifest. */
export async function plantBackup(nc: NatsConnection, like: StreamManifest, archive: Uint8Array, bucket = "backups"): Promise<StreamManifest> {
  const js = jetstream(nc);
  const config = await (await new Objm(js).open(bucket)).getBlob(objectNames(like.id).config);
  if (!config) throw new Error(`backup ${like.id} has no backup.json in bucket ${bucket}`);
  const now = Date.now();
  const id = ulidAt(now);
  const names = objectNames(id);
  await putSmallObject(js, bucket, names.config, config);
  const { meta } = await putSmallObject(js, bucket, names.archive, archive);
  const manifest: StreamManifest = {
    ...like,
    id,
    created: new Date(now).toISOString(),
    completed: new Date(now).toISOString(),
    size: meta.size,
    chunks: meta.chunks,
    sha256: meta.digest,
    objects: names,
  };
  await writeManifest(nc, manifest, bucket);
  return manifest;
}
