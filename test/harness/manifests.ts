/**
 * Manifests written straight into a bucket, as another writer would, and manifests of backups
 * that never ran, dated as a test wants: for tests of listing and retention, not of backing up
 * (thousands in seconds).
 */
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { ManifestMetadataKey, objectNames } from "../../src/catalogue/catalogue.ts";
import { putSmallObject } from "../../src/catalogue/object-writes.ts";
import type { StreamManifest } from "../../src/mod.ts";

/** Stores `manifest` as its backup's manifest object, with no parts: listed, not restorable. */
export async function writeManifest(nc: NatsConnection, manifest: StreamManifest, bucket = "backups"): Promise<void> {
  const json = JSON.stringify(manifest);
  await putSmallObject(jetstream(nc), bucket, objectNames(manifest.id).manifest, new TextEncoder().encode(json), {
    metadata: { [ManifestMetadataKey]: json },
  });
}

const Crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID made at `time`; ids of different milliseconds sort as their times. */
export function ulidAt(time: number): string {
  let id = "";
  for (let t = time, i = 0; i < 10; i++, t = Math.floor(t / 32)) id = Crockford[t % 32] + id;
  for (const byte of randomBytes(16)) id += Crockford[byte % 32];
  return id;
}

/** The manifest of a backup of `stream` that started at `time`. */
export function fakeManifest(stream: string, time: number, extra: Partial<StreamManifest> = {}): StreamManifest {
  const id = ulidAt(time);
  return {
    type: "io.nats.backup.v1.manifest",
    id,
    scope: "stream",
    stream,
    created: new Date(time).toISOString(),
    completed: new Date(time + 50).toISOString(),
    size: 1024,
    chunks: 1,
    sha256: "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
    messages: 10,
    bytes: 900,
    first_seq: 1,
    last_seq: 10,
    consumers: [],
    checked: false,
    objects: objectNames(id),
    server: { name: "fake", version: "0.0.0" },
    ...extra,
  };
}

/** Writes the manifests, `parallel` at a time. */
export async function writeManifests(nc: NatsConnection, manifests: StreamManifest[], bucket = "backups", parallel = 100): Promise<void> {
  for (let i = 0; i < manifests.length; i += parallel) {
    await Promise.all(manifests.slice(i, i + parallel).map((m) => writeManifest(nc, m, bucket)));
  }
}
