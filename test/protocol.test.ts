/**
 * The protocol/ folder is the service's contract: the checked-in JSON Schemas must be what the
 * zod schemas render now, the examples must validate, every reply of a real service must
 * validate against its schema, and the micro discovery replies against the official ADR-32
 * schemas (when ../shared/schemas is there).
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import Ajv2020Module from "ajv/dist/2020.js";
import AjvModule from "ajv";
import type { ValidateFunction } from "ajv";
import type { BackupService, JobRecord, JobStarted } from "../src/mod.ts";
import { renderProtocolSchemas, schemaId } from "../src/protocol/generate.ts";
import { ProtocolSchemas } from "../src/protocol/schemas.ts";
import { Endpoints, QueueGroup, Subjects } from "../src/protocol/subjects.ts";
import { makeStream } from "./harness/fixtures.ts";
import { waitUntil } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { request, startService, type Reply } from "./harness/service.ts";

// ajv is CommonJS: under ESM its class is the module itself, which TypeScript sees as `.default`.
const Ajv2020 = Ajv2020Module.default;
const Ajv07 = AjvModule.default;

const root = fileURLToPath(new URL("..", import.meta.url));
const schemaDir = join(root, "protocol/schemas");
const exampleDir = join(root, "protocol/examples");
const officialDir = join(root, "../shared/schemas/nats/micro/v1");
const haveOfficial = existsSync(officialDir);
const noOfficial = haveOfficial
  ? false
  : `the official micro schemas are not at ${officialDir} (a clone without ../shared): not checked`;

type SchemaName = keyof typeof ProtocolSchemas;

/** Validators for the checked-in schemas (draft 2020-12), compiled on first use. */
const ajv = new Ajv2020({ strict: true, allErrors: true });
const validators = new Map<string, ValidateFunction>();

function validator(name: string): ValidateFunction {
  let v = validators.get(name);
  if (!v) {
    const path = join(schemaDir, `${name}.json`);
    assert.ok(existsSync(path), `protocol/schemas/${name}.json is missing: run \`npm run protocol\``);
    v = ajv.compile(JSON.parse(readFileSync(path, "utf8")));
    validators.set(name, v);
  }
  return v;
}

function assertValid(name: SchemaName, body: unknown, where = ""): void {
  const v = validator(name);
  assert.ok(v(body), `${where || name} does not validate against ${name}.json: ${ajv.errorsText(v.errors)}\n${JSON.stringify(body)}`);
}

function assertInvalid(name: SchemaName, body: unknown): void {
  assert.equal(validator(name)(body), false, `${name}.json should reject ${JSON.stringify(body)}`);
}

function assertErrorReply(reply: Reply, code: number, description?: RegExp): void {
  assert.equal(reply.errorCode, code, reply.raw);
  assertValid("error_reply", reply.body, `a ${code} reply`);
  const body = reply.body as { error: { code: number; description: string } };
  assert.equal(body.error.code, code);
  assert.equal(reply.errorHeader, body.error.description, "Nats-Service-Error repeats the body's description");
  if (description) assert.match(body.error.description, description);
}

describe("protocol/schemas", () => {
  const rendered = renderProtocolSchemas();

  test("the checked-in schemas are what `npm run protocol` renders now", () => {
    assert.equal(rendered.size, Object.keys(ProtocolSchemas).length + 1, "every body schema, and the tenants file");
    for (const [file, text] of rendered) {
      const path = join(schemaDir, file);
      assert.ok(existsSync(path), `protocol/schemas/${file} is missing: run \`npm run protocol\``);
      assert.equal(readFileSync(path, "utf8"), text, `protocol/schemas/${file} is out of date: run \`npm run protocol\``);
    }
  });

  test("protocol/schemas holds no stale files", () => {
    const stale = readdirSync(schemaDir).filter((file) => !rendered.has(file));
    assert.deepEqual(stale, [], `not generated any more (run \`npm run protocol\`, which removes them): ${stale.join(", ")}`);
  });

  test("each schema is draft 2020-12 and names its file in $id and title", () => {
    for (const [file, text] of rendered) {
      const name = file.replace(/\.json$/, "");
      const schema = JSON.parse(text) as Record<string, unknown>;
      assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
      assert.equal(schema.$id, schemaId(name));
      assert.ok((schema.$id as string).endsWith(`/${file}`));
      assert.equal(schema.title, `io.nats.backup.v1.${name}`);
      assert.equal(typeof schema.description, "string");
      assert.ok(text.endsWith("}\n") && /\n  "(type": "object|oneOf)"/.test(text), `${file}: 2-space indent, trailing newline`);
    }
  });

  test("requests are rendered on the input side: defaulted fields are optional, unknown fields are refused", () => {
    for (const name of ["backup_stream_request", "restore_stream_request", "list_request", "empty_request"] as const) {
      assertValid(name, {});
      assertInvalid(name, { colour: "red" });
    }
    assertValid("backup_stream_request", { consumers: false, check: true, chunk_size: 65536, wait: true, tag: "x" });
    assertInvalid("backup_stream_request", { chunk_size: 1024 });
    assertInvalid("backup_stream_request", { chunk_size: 4096.5 });
    assertInvalid("restore_stream_request", { backup: "not-a-ulid" });
    assertInvalid("restore_stream_request", { replicas: 6 });
    assertInvalid("list_request", { stream: "A.B" });
  });

  test("replies are rendered on the output side: required fields are required", () => {
    const started = { id: "01M8AQ1B6E6J6SP2WFE15H0PRT", operation: "backup", scope: "stream", stream: "S", state: "running", status_subject: "$BACKUP.status.01M8AQ1B6E6J6SP2WFE15H0PRT" };
    assertValid("job_started", started);
    assertInvalid("job_started", { ...started, state: "completed" });
    const { status_subject: _, ...noSubject } = started;
    assertInvalid("job_started", noSubject);
    assertInvalid("error_reply", { error: { code: 400 } });
    assertInvalid("delete_reply", { id: started.id, deleted: false, objects: 3 });
  });
});

describe("protocol/schemas: readiness (issue 15)", () => {
  test("report and peer-remove requests: defaults optional, unknown fields refused", () => {
    for (const name of ["report_request", "peer_remove_request"] as const) assertInvalid(name, { colour: "red" });
    assertValid("report_request", {});
    assertValid("report_request", { streams: ["ORDERS", "KV_config"], recent: "12h" });
    assertValid("report_request", { recent: 3600 });
    assertInvalid("report_request", { recent: "yesterday" });
    assertValid("peer_remove_request", { peer: "n3", confirm: true });
    assertInvalid("peer_remove_request", { confirm: true });
  });

  test("report_reply requires a verdict code from the fixed set", () => {
    const stream = {
      stream: "S", kind: "stream", storage: "file", replicas: 1, cluster: null, leader: null, peers: [],
      quorum: { needed: 1, healthy: 1, holds: true },
      recovery: { automatic: false, spare_nodes: null, reason: "not clustered" },
      backup: null, verdict: "single_copy", reason: "one copy", action: "back it up",
    };
    const counts = { protected: 0, replicated_no_recent_backup: 0, single_copy: 1, degraded: 0, lost: 0 };
    const reply = { taken: "2026-01-01T00:00:00Z", recent_seconds: 86400, servers: { known: true, names: [] }, counts, single_copy_without_recent_backup: 1, streams: [stream], total: 1 };
    assertValid("report_reply", reply);
    assertInvalid("report_reply", { ...reply, streams: [{ ...stream, verdict: "fine" }] });
    assertInvalid("report_reply", { ...reply, counts: { ...counts, fine: 1 } });
  });
});

describe("protocol/examples", () => {
  const files = readdirSync(exampleDir).filter((f) => f.endsWith(".json"));

  test("there is an example of each kind the README points to", () => {
    const schemas = new Set(files.map((f) => f.split(".")[0]));
    for (const name of ["backup_stream_request", "job_started", "job_record", "list_reply", "backup_manifest", "error_reply"]) {
      assert.ok(schemas.has(name), `protocol/examples has no ${name} example`);
    }
    assert.ok(files.some((f) => f.startsWith("job_record.") && JSON.parse(readFileSync(join(exampleDir, f), "utf8")).state === "completed"));
  });

  test("every example validates against the schema its file name names (<schema>[.<variant>].json)", () => {
    assert.ok(files.length >= 6);
    for (const file of files) {
      const name = file.split(".")[0] as SchemaName;
      assert.ok(name in ProtocolSchemas, `${file}: no schema ${name}`);
      assertValid(name, JSON.parse(readFileSync(join(exampleDir, file), "utf8")), `protocol/examples/${file}`);
    }
  });
});

describe("replies of a running service", () => {
  let server: NatsServer;
  let serviceNc: NatsConnection;
  let nc: NatsConnection;
  let svc: BackupService;
  let statusSub: Subscription;
  const events: { subject: string; body: JobRecord }[] = [];
  let backupId = "";

  before(async () => {
    server = await NatsServer.start();
    serviceNc = await server.connect();
    nc = await server.connect();
    svc = await startService(serviceNc);
    statusSub = nc.subscribe(Subjects.statusAll, {
      callback: (_err: Error | null, msg: Msg) => {
        events.push({ subject: msg.subject, body: msg.json<JobRecord>() });
      },
    });
    await nc.flush();
    await makeStream(nc, "ORDERS", { messages: 60, deleteEvery: 13 });
  });
  after(async () => {
    statusSub?.unsubscribe();
    await svc?.stop();
    await serviceNc?.close();
    await nc?.close();
    await server?.stop();
  });

  test("a backup request replies job_started; $BACKUP.job.<id> and every status event are job_records", async () => {
    const started = await request<JobStarted>(nc, Subjects.backupStream("ORDERS"), { tag: "protocol-test" });
    assert.equal(started.errorCode, null, started.raw);
    assertValid("job_started", started.body);
    backupId = started.body.id;
    assert.equal(started.body.status_subject, Subjects.status(backupId));

    const record = await waitForJob(nc, backupId);
    assertValid("job_record", record);
    assert.equal(record.state, "completed", JSON.stringify(record.error));

    await nc.flush();
    const mine = events.filter((e) => e.body.id === backupId);
    assert.ok(mine.length >= 2, `status events: ${JSON.stringify(mine)}`);
    for (const e of mine) {
      assert.equal(e.subject, Subjects.status(backupId));
      assertValid("job_record", e.body, `a status event on ${e.subject}`);
    }
    assert.equal(mine[0]?.body.state, "running");
    assert.deepEqual(
      mine.filter((e) => e.body.state !== "running").map((e) => e.body.state),
      ["completed"],
      "exactly one terminal event",
    );
    assert.equal(mine.at(-1)?.body.state, "completed");
  });

  test("a wait:true backup replies the completed job_record", async () => {
    const reply = await request<JobRecord>(nc, Subjects.backupStream("ORDERS"), { wait: true, consumers: false }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    assertValid("job_record", reply.body);
    assert.equal(reply.body.state, "completed");
    assertValid("backup_manifest", reply.body.result);
  });

  test("$BACKUP.info.<id> replies a backup_manifest", async () => {
    const reply = await request(nc, Subjects.info(backupId));
    assert.equal(reply.errorCode, null, reply.raw);
    assertValid("backup_manifest", reply.body);
    assert.equal((reply.body as { id: string }).id, backupId);
  });

  test("$BACKUP.list replies a list_reply, with and without a stream filter", async () => {
    for (const body of ["", {}, { stream: "ORDERS" }, { stream: "OTHER" }]) {
      const reply = await request<{ backups: { id: string }[] }>(nc, Subjects.list, body);
      assert.equal(reply.errorCode, null, reply.raw);
      assertValid("list_reply", reply.body);
      assert.equal(reply.body.backups.length, typeof body === "object" && body.stream === "OTHER" ? 0 : 2);
    }
  });

  test("a restore with wait:true replies a job_record whose result is the restore's", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete("ORDERS");
    const reply = await request<JobRecord>(nc, Subjects.restoreStream("ORDERS"), { backup: backupId, wait: true }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    assertValid("job_record", reply.body);
    assert.equal(reply.body.operation, "restore");
    assert.equal(reply.body.backup, backupId);
  });

  test("account jobs: job_started, status events, the records and the manifest follow their schemas", async () => {
    const started = await request<JobStarted>(nc, Subjects.backupAccount, { data: true, tag: "protocol-test" });
    assert.equal(started.errorCode, null, started.raw);
    assertValid("job_started", started.body);
    assert.equal(started.body.scope, "account");
    const record = await waitForJob(nc, started.body.id);
    assertValid("job_record", record);
    assert.equal(record.state, "completed", JSON.stringify(record.error));
    const info = await request(nc, Subjects.info(started.body.id));
    assertValid("backup_manifest", info.body);
    assert.equal((info.body as { scope: string }).scope, "account");
    const listed = await request<{ backups: { id: string; scope: string }[] }>(nc, Subjects.list, { scope: "account" });
    assertValid("list_reply", listed.body);
    assert.deepEqual(listed.body.backups.map((b) => [b.id, b.scope]), [[started.body.id, "account"]]);

    const skipped = await request<JobRecord>(nc, Subjects.restoreAccount, { wait: true }, 60_000);
    assertErrorReply(skipped, 409, /already exist/);
    const updated = await request<JobRecord>(nc, Subjects.restoreAccount, { wait: true, update_streams: true }, 60_000);
    assert.equal(updated.errorCode, null, updated.raw);
    assertValid("job_record", updated.body);
    await nc.flush();
    for (const e of events.filter((ev) => ev.body.scope === "account")) assertValid("job_record", e.body, `a status event on ${e.subject}`);
    assertValid("delete_reply", (await request(nc, Subjects.delete(started.body.id))).body);
  });

  test("$BACKUP.delete.<id> replies a delete_reply", async () => {
    const reply = await request(nc, Subjects.delete(backupId));
    assert.equal(reply.errorCode, null, reply.raw);
    assertValid("delete_reply", reply.body);
    assert.deepEqual(reply.body, { id: backupId, deleted: true, objects: 3 });
  });

  test("a 400 is an error_reply with the micro error headers, and creates no job", async () => {
    const before = events.length;
    const reply = await request(nc, Subjects.backupStream("ORDERS"), { chunk_size: 10, colour: "red" });
    assertErrorReply(reply, 400, /unknown field "colour"/);
    assertErrorReply(await request(nc, Subjects.list, "[1]"), 400);
    assertErrorReply(await request(nc, Subjects.job("not-an-id")), 400, /ULID/);
    // A stream that does not exist is refused before a job too: the 404 names none.
    const missing = await request(nc, Subjects.backupStream("NO_SUCH_STREAM"));
    assertErrorReply(missing, 404, /stream NO_SUCH_STREAM not found/);
    assert.equal(missing.job, null, "a 404 before any job names none");
    // A marker job sent after them: once its last event is here, whatever the service published
    // while it handled the requests before it is too.
    const marker = await request<JobRecord>(nc, Subjects.backupStream("ORDERS"), { wait: true, consumers: false }, 60_000);
    assert.equal(marker.errorCode, null, marker.raw);
    await waitUntil("the marker job's terminal event", () => events.some((e) => e.body.id === marker.body.id && e.body.state === "completed"), 30_000, 10);
    const since = events.slice(before).map((e) => `${e.body.id} ${e.body.state}`);
    assert.deepEqual(
      since.filter((e) => !e.startsWith(`${marker.body.id} `)),
      [],
      `a rejected request publishes no job status; the events since: ${JSON.stringify(since)}`,
    );
  });

  test("$BACKUP.report replies a report_reply; peer-remove on a server that is not clustered is an error_reply", async () => {
    const reply = await request(nc, Subjects.report, {});
    assert.equal(reply.errorCode, null, reply.raw);
    assertValid("report_reply", reply.body);
    const orders = (reply.body as { streams: { stream: string; verdict: string }[] }).streams.find((s) => s.stream === "ORDERS");
    assert.equal(orders?.verdict, "single_copy");
    assertErrorReply(await request(nc, Subjects.peerRemove("ORDERS"), { peer: "x" }), 400, /confirm/);
    assertErrorReply(await request(nc, Subjects.peerRemove("ORDERS"), { peer: "x", confirm: true }), 400, /not clustered/);
  });

  test("a 404 is an error_reply with the micro error headers", async () => {
    const unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    assertErrorReply(await request(nc, Subjects.info(unknown)), 404, /not found/);
    assertErrorReply(await request(nc, Subjects.job(unknown)), 404, /not found/);
    assertErrorReply(await request(nc, Subjects.delete(backupId)), 404, /not found/);
    // A start failure: the job existed and failed, and its error is the reply.
    assertErrorReply(await request(nc, Subjects.backupStream("NOPE")), 404, /stream NOPE not found/);
  });

  describe("micro discovery ($SRV)", () => {
    const ajv07 = new Ajv07({ strict: false, allErrors: true });
    ajv07.addFormat("date-time", {
      type: "string",
      validate: (s: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i.test(s) && !Number.isNaN(Date.parse(s)),
    });
    const official = (verb: string) =>
      ajv07.compile(JSON.parse(readFileSync(join(officialDir, `${verb}_response.json`), "utf8")));

    async function discover(verb: "PING" | "INFO" | "STATS"): Promise<Record<string, unknown>> {
      const msg = await nc.request(`$SRV.${verb}.backup`, "", { timeout: 5000 });
      return msg.json<Record<string, unknown>>();
    }

    test("$SRV.INFO.backup lists every endpoint with its subject, metadata and queue group q", async () => {
      const info = (await discover("INFO")) as {
        name: string;
        id: string;
        metadata: Record<string, string>;
        endpoints: { name: string; subject: string; queue_group: string; metadata: Record<string, string> }[];
      };
      assert.equal(info.name, "backup");
      assert.equal(info.id, svc.id);
      assert.deepEqual(info.metadata, { bucket: "backups" });
      assert.equal(info.endpoints.length, Object.keys(Endpoints).length);
      assert.deepEqual(
        info.endpoints.map((e) => e.name).sort(),
        Object.keys(Endpoints).sort(),
      );
      for (const e of info.endpoints) {
        const spec = Endpoints[e.name as keyof typeof Endpoints];
        assert.equal(e.subject, spec.subject);
        assert.equal(e.queue_group, QueueGroup);
        assert.equal(QueueGroup, "q");
        assert.deepEqual(e.metadata, { description: spec.description, request: spec.request, reply: spec.reply });
        assert.ok(spec.request in ProtocolSchemas, `${e.name}: request schema ${spec.request} is in protocol/schemas`);
        for (const reply of spec.reply.match(/[a-z_]+_(?:started|record|reply|manifest)/g) ?? []) {
          assert.ok(reply in ProtocolSchemas, `${e.name}: reply schema ${reply} is in protocol/schemas`);
        }
      }
    });

    test("$SRV.PING.backup validates against the official ping_response schema", { skip: noOfficial }, async () => {
      const body = await discover("PING");
      const validate = official("ping");
      assert.ok(validate(body), `${ajv07.errorsText(validate.errors)}\n${JSON.stringify(body)}`);
      assert.equal(body.type, "io.nats.micro.v1.ping_response");
      assert.equal(body.name, "backup");
    });

    test("$SRV.INFO.backup validates against the official info_response schema", { skip: noOfficial }, async () => {
      const body = await discover("INFO");
      const validate = official("info");
      assert.ok(validate(body), `${ajv07.errorsText(validate.errors)}\n${JSON.stringify(body)}`);
      assert.equal(body.type, "io.nats.micro.v1.info_response");
    });

    test(
      "$SRV.STATS.backup validates against the official stats_response schema",
      { skip: noOfficial },
      async () => {
        const body = (await discover("STATS")) as { endpoints: { name: string; num_requests: number }[] };
        assert.equal(body.endpoints.length, Object.keys(Endpoints).length);
        assert.ok(body.endpoints.find((e) => e.name === "backup-stream")!.num_requests > 0);
        const validate = official("stats");
        assert.ok(validate(body), `${ajv07.errorsText(validate.errors)}\n${JSON.stringify(body)}`);
      },
    );

    test(
      "$SRV.STATS.backup counts the error replies sent above (num_errors, last_error)",
      async () => {
        const body = (await discover("STATS")) as { endpoints: { name: string; num_errors: number; last_error?: string }[] };
        const stats = body.endpoints.find((e) => e.name === "backup-stream")!;
        assert.ok(stats.num_errors > 0, `backup-stream answered a 400 and a 404 above, yet: ${JSON.stringify(stats)}`);
        assert.match(stats.last_error ?? "", /^40[04]:/);
      },
    );
  });
});

async function waitForJob(nc: NatsConnection, id: string, timeoutMs = 60_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const reply = await request<JobRecord>(nc, Subjects.job(id));
    assert.equal(reply.errorCode, null, reply.raw);
    assertValid("job_record", reply.body, `$BACKUP.job.${id}`);
    if (reply.body.state !== "running") return reply.body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not end in ${timeoutMs} ms`);
}
