/**
 * Every stream configuration field that nats-server added since 2.9 (issue 11's table) survives a
 * backup and a restore on a server that has it, byte for byte: backup.json holds the server's own
 * configuration text, and the restored stream shows the configuration it had, with its messages
 * and its durable consumers (their configurations and states). Streams are made through the raw
 * JetStream API with the fields the running server knows; the fields it lacks are named in a
 * diagnostic (2.15.3, the newest, has them all).
 *
 * Needs: the server under test (NATS_SERVER_BIN, by default the newest built); a wire suite.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { objectNames } from "../src/catalogue/catalogue.ts";
import { serverAtLeast, serverVersion } from "./harness/binaries.ts";
import { readStream } from "./harness/fixtures.ts";
import { jsApi, jsApiRaw, memberText } from "./harness/inspect.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";
import { consumerTexts, storedConfig, streamConfigText } from "./harness/stream-config.ts";

/** A field of the table: the release that added it, and the value the test gives it, as JSON text. */
interface Field {
  name: string;
  since: string;
  value: string;
}

const Hour = "3600000000000";

/**
 * Two streams, as the server's checks allow (stream.go, checkStreamCfg): a counter stream cannot
 * have message TTLs or schedules, and async persistence cannot go with atomic batches.
 */
const Streams: { name: string; fields: Field[] }[] = [
  {
    name: "CFG_MAIN",
    fields: [
      { name: "metadata", since: "2.10.0", value: '{"owner":"team \\"a\\"","ü":"😀"}' },
      { name: "compression", since: "2.10.0", value: '"s2"' },
      { name: "subject_transform", since: "2.10.0", value: '{"src":"CFG_MAIN.in.*","dest":"CFG_MAIN.out.{{wildcard(1)}}"}' },
      { name: "first_seq", since: "2.10.0", value: "1000" },
      { name: "consumer_limits", since: "2.10.0", value: `{"inactive_threshold":${Hour},"max_ack_pending":500}` },
      { name: "allow_msg_ttl", since: "2.11.0", value: "true" },
      // Needs allow_msg_ttl and roll-ups (allow_rollup_hdrs below), which the server would otherwise turn on itself.
      { name: "subject_delete_marker_ttl", since: "2.11.0", value: "60000000000" },
      { name: "allow_atomic", since: "2.12.0", value: "true" },
      { name: "allow_msg_schedules", since: "2.12.0", value: "true" },
      { name: "allow_batched", since: "2.14.0", value: "true" },
    ],
  },
  {
    name: "CFG_COUNTER",
    fields: [
      { name: "allow_msg_counter", since: "2.12.0", value: "true" },
      { name: "persist_mode", since: "2.12.0", value: '"async"' },
    ],
  },
];

describe("configuration fields survive backup and restore", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;
  const version = serverVersion().text;

  before(async () => {
    rig = await startRig({ sweep: { intervalMs: 3_600_000 } });
    nc = rig.nc;
  });
  after(async () => {
    await rig?.stop();
  });

  for (const { name: stream, fields } of Streams) {
    test(`stream ${stream}: ${fields.map((f) => f.name).join(", ")}`, async (t) => {
      const known = fields.filter((f) => serverAtLeast(f.since));
      const lacking = fields.filter((f) => !serverAtLeast(f.since));
      if (lacking.length) {
        t.diagnostic(`nats-server ${version} lacks ${lacking.map((f) => `${f.name} (${f.since})`).join(", ")}: not covered here`);
      }
      if (known.length === 0) {
        t.diagnostic(`nats-server ${version} has none of this stream's fields; its stream is backed up and restored all the same`);
      }
      await createStream(nc, stream, known);
      const before = await streamConfigText(nc, stream);
      for (const f of known) {
        // The server adds its own `_nats.*` entries to the metadata (2.11+): the user's stay as given.
        const text = memberText(before.config, f.name);
        const shown = f.name === "metadata" ? withoutServerMetadata(text) : text;
        assert.equal(shown, f.value, `the server keeps ${f.name} as given: ${before.config}`);
      }
      // nats-server 2.10 (to 2.10.27, the newest) purges a file stream whose first message is still
      // at its first_seq each time it opens its store, on a restore as on a restart (filestore.go:
      // `firstSeq <= cfg.FirstSeq`; `<` from 2.11): there the first message goes before the backup,
      // and the test below shows what happens otherwise.
      const dropFirst = known.some((f) => f.name === "first_seq") && !serverAtLeast("2.11.0");
      if (dropFirst) {
        t.diagnostic(`nats-server ${version}: the message at first_seq is deleted first, else the server would purge the restored stream`);
      }
      await fill(nc, stream, known, { dropFirst });
      const messages = await readStream(nc, stream);
      assert.ok(messages.length > 0, "the stream has messages");
      const consumers = await consumerTexts(nc, stream);
      assert.equal(consumers.length, 1, "one durable consumer");

      const done = await request<JobRecord>(nc, `$BACKUP.stream.${stream}`, { wait: true }, 120_000);
      assert.equal(done.errorCode, null, done.raw);
      const manifest = done.body.result as StreamManifest;
      assert.deepEqual(manifest.consumers, ["C1"]);

      const os = await new Objm(jetstream(nc)).open(rig.svc.bucket);
      const blob = await os.getBlob(objectNames(manifest.id).config);
      assert.ok(blob, "backup.json is in the bucket");
      const backupJson = new TextDecoder().decode(blob);
      assert.equal(memberText(backupJson, "config"), storedConfig(before.config), "backup.json holds the server's stored configuration text");

      const deleted = await jsApi<{ success: boolean }>(nc, `STREAM.DELETE.${stream}`);
      assert.equal(deleted.success, true, JSON.stringify(deleted));
      const restored = await request<JobRecord>(nc, `$RESTORE.stream.${stream}`, { wait: true }, 120_000);
      assert.equal(restored.errorCode, null, restored.raw);
      assert.equal(restored.body.state, "completed", restored.raw);

      // Nothing in the configuration text differs on the same server (2.9.10, 2.10.27, 2.12.15,
      // 2.14.10 and 2.15.3 seen): `_nats.req.level` is stored with it, and STREAM.INFO's `_nats.ver`
      // and `_nats.level` are this server's own either way. `created` is not configuration (a v1
      // restore even keeps the original's). Of a consumer, only `last_active` goes (consumerTexts).
      const after = await streamConfigText(nc, stream);
      assert.equal(after.config, before.config, "the restored stream shows the configuration text it had");
      assert.deepEqual(await readStream(nc, stream), messages, "every message, with its headers and time");
      assert.deepEqual(await consumerTexts(nc, stream), consumers, "the consumer's configuration and state");
    });
  }
});

describe("a stream whose first message is at its first_seq", () => {
  let rig: ServiceRig;

  before(async () => {
    rig = await startRig({ sweep: { intervalMs: 3_600_000 } });
  });
  after(async () => {
    await rig?.stop();
  });

  test("is restored with its messages from 2.11 on; nats-server 2.10 purges it as it opens the restored store", async (t) => {
    const version = serverVersion().text;
    if (!serverAtLeast("2.10.0")) {
      t.diagnostic(`nats-server ${version} has no first_seq (2.10.0): a stream starting at 1 is checked instead`);
    }
    const nc = rig.nc;
    const create = { name: "CFG_FIRST", subjects: ["CFG_FIRST.*"], storage: "file", ...(serverAtLeast("2.10.0") ? { first_seq: 500 } : {}) };
    const created = await jsApi(nc, "STREAM.CREATE.CFG_FIRST", create);
    assert.equal(created.error, undefined, JSON.stringify(created));
    const js = jetstream(nc);
    for (let i = 0; i < 10; i++) await js.publish(`CFG_FIRST.${i % 3}`, `message ${i}`);
    const messages = await readStream(nc, "CFG_FIRST");
    assert.equal(messages.length, 10);
    const before = await streamConfigText(nc, "CFG_FIRST");

    const done = await request<JobRecord>(nc, "$BACKUP.stream.CFG_FIRST", { wait: true }, 120_000);
    assert.equal(done.errorCode, null, done.raw);
    assert.equal((done.body.result as StreamManifest).messages, 10);
    await jsApi(nc, "STREAM.DELETE.CFG_FIRST");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.CFG_FIRST", { wait: true }, 120_000);
    assert.equal(restored.errorCode, null, restored.raw);
    const result = restored.body.result as { messages: number };
    assert.equal((await streamConfigText(nc, "CFG_FIRST")).config, before.config);

    if (serverAtLeast("2.10.0") && !serverAtLeast("2.11.0")) {
      // A server bug, not the service's: the same purge empties the original stream on a restart.
      // The restore still completes, reporting the server's count.
      t.diagnostic(`nats-server ${version} purged the restored stream: 0 of its 10 messages are left`);
      assert.deepEqual(await readStream(nc, "CFG_FIRST"), []);
      assert.equal(result.messages, 0);
      return;
    }
    assert.deepEqual(await readStream(nc, "CFG_FIRST"), messages);
    assert.equal(result.messages, 10);
  });
});

/** Metadata's text without the server's `_nats.*` entries (api level, version, required level). */
function withoutServerMetadata(text: string | undefined): string | undefined {
  return text?.replace(/"_nats\.[^"]*":"[^"]*",?/g, "").replace(/,}/g, "}");
}

/** The stream made by STREAM.CREATE from JSON text: the table's fields the server knows, and what they need. */
async function createStream(nc: NatsConnection, stream: string, fields: Field[]): Promise<void> {
  const has = (name: string) => fields.some((f) => f.name === name);
  const members = [
    `"name":"${stream}"`,
    `"subjects":["${stream}.in.*"]`,
    `"storage":"file"`,
    `"max_age":${Hour}`,
    // Subject delete markers and schedules need roll-ups; given here so that the server changes nothing.
    ...(has("subject_delete_marker_ttl") || has("allow_msg_schedules") ? [`"allow_rollup_hdrs":true`] : []),
    ...fields.map((f) => `"${f.name}":${f.value}`),
  ];
  const reply = await jsApiRaw(nc, `STREAM.CREATE.${stream}`, `{${members.join(",")}}`);
  assert.equal(memberText(reply, "error"), undefined, `STREAM.CREATE.${stream}: ${reply}`);
}

/** Some messages (with headers, and a per-message TTL where allowed), and a durable consumer partly acked. */
async function fill(nc: NatsConnection, stream: string, fields: Field[], opts: { dropFirst?: boolean } = {}): Promise<void> {
  const js = jetstream(nc);
  const has = (name: string) => fields.some((f) => f.name === name);
  for (let i = 1; i <= 30; i++) {
    const h = headers();
    h.set("X-Index", String(i));
    // A counter stream takes only increments (Nats-Incr), and keeps their sum as the payload.
    if (has("allow_msg_counter")) h.set("Nats-Incr", `+${i}`);
    else if (has("allow_msg_ttl") && i % 5 === 0) h.set("Nats-TTL", "1h");
    const ack = await js.publish(`${stream}.in.${i % 4}`, has("allow_msg_counter") ? "" : `message ${i}`, { headers: h });
    assert.equal(ack.stream, stream);
  }
  if (opts.dropFirst) {
    const first = JSON.parse(await jsApiRaw(nc, `STREAM.INFO.${stream}`)) as { state: { first_seq: number } };
    const deleted = await jsApi<{ success: boolean }>(nc, `STREAM.MSG.DELETE.${stream}`, { seq: first.state.first_seq });
    assert.equal(deleted.success, true, JSON.stringify(deleted));
  }
  const created = await jsApiRaw(
    nc,
    `CONSUMER.CREATE.${stream}.C1`,
    JSON.stringify({ stream_name: stream, config: { durable_name: "C1", ack_policy: "explicit", ack_wait: Number(Hour) } }),
  );
  assert.equal(memberText(created, "error"), undefined, created);
  const consumer = await js.consumers.get(stream, "C1");
  let received = 0;
  const batch = await consumer.fetch({ max_messages: 12, expires: 2000 });
  for await (const m of batch) {
    if (++received % 2 === 0) await m.ackAck();
  }
  assert.equal(received, 12);
}
