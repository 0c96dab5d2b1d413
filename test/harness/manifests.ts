/** Manifests written straight into a bucket, as another writer would: for tests of listing, not of backing up. */
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { ManifestMetadataKey, objectNames } from "../../src/catalogue/catalogue.ts";
import { putSmallObject } from "../../src/catalogue/object-writes.ts";
import type { BackupManifest } from "../../src/mod.ts";

/** Stores `manifest` as its backup's manifest object, with no parts: listed, not restorable. */
export async function writeManifest(nc: NatsConnection, manifest: BackupManifest, bucket = "backups"): Promise<void> {
  const json = JSON.stringify(manifest);
  await putSmallObject(jetstream(nc), bucket, objectNames(manifest.id).manifest, new TextEncoder().encode(json), {
    metadata: { [ManifestMetadataKey]: json },
  });
}
