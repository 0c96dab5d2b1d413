/**
 * Thousands of random and malformed requests against one service: every one is answered in time
 * with a well-formed error or a valid result, and nothing that exists changes. The requests come
 * from a seeded PRNG (FUZZ_SEED, FUZZ_REQUESTS to replay or vary a run); none of them is a valid
 * request that would legitimately change state (a backup of an existing stream, a delete of the
 * real backup, a restore that could succeed). What each reply should be is decided by the
 * protocol as written (protocol/README.md, the JSON Schemas in protocol/schemas, nats-server's
 * stream-name rules: harness/protocol-rules.ts), never by the service's own code; where those
 * rules disagree on a stream name, either answer passes and the run counts them.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { StreamManifest, BackupService, JobRecord } from "../src/mod.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { consumerStates, makeStream, readStream } from "./harness/fixtures.ts";
import { jsApi, streamState } from "./harness/inspect.ts";
import { ProtocolSchemas, requestObject, streamNameVerdict } from "./harness/protocol-rules.ts";
import { request, startService } from "./harness/service.ts";

const Seed = Number(process.env.FUZZ_SEED ?? 0x5eedf00d) >>> 0;
const Total = Number(process.env.FUZZ_REQUESTS ?? 3000);
const InFlight = 16;
const RequestTimeoutMs = 20_000;
const Streams = ["ALPHA", "BETA"] as const;
const KiB = 1024;

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const chance = (p: number) => next() < p;
  const bytes = (n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
    return out;
  };
  return { next, int, pick, chance, bytes };
}
type Rng = ReturnType<typeof prng>;

const Crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/**
 * The oracle judges by the protocol as written, sharing no code with src/: the JSON Schemas in
 * protocol/schemas, protocol/README.md's body rules, and nats-server's stream-name rules (all in
 * harness/protocol-rules.ts).
 */
const Schemas = new ProtocolSchemas();
const IdPattern = Schemas.idPattern();

/** The body's object when the request schema `name` takes it, else null (a 400). */
function accepted(name: string, body: Uint8Array): Record<string, unknown> | null {
  const value = requestObject(body);
  return value !== null && Schemas.problem(name, value) === null ? value : null;
}

const enc = (s: string) => new TextEncoder().encode(s);

interface FuzzRequest {
  kind: string;
  subject: string;
  body: Uint8Array;
  /** The codes this request may get; 200 is a valid result. Checked on top of the general rules. */
  expect: number[];
  /**
   * Of those, the codes that come from a job that started (protocol/README.md: every error reply
   * about a job names it in Nats-Backup-Job). The others (a 400 for the body or subject, a 404 or
   * 400 for a stream or backup refused before the job, a 429) create none, but for `eitherWay`
   * codes, where the written rules do not say.
   */
  fromJob: number[];
  eitherWay?: number[];
  /** For results: the reply schema in protocol/schemas, or "srv" for the micro discovery replies. */
  reply: "list_reply" | "backup_manifest" | "job_record" | "srv" | "none";
}

describe(`fuzzing the service (seed ${Seed}, ${Total} requests)`, { timeout: 900_000 }, () => {
  let server: NatsServer;
  let serviceNc: NatsConnection;
  let nc: NatsConnection;
  let svc: BackupService;
  let backup: StreamManifest;
  let backupJob: JobRecord;
  let existing: string[];

  interface Fingerprint {
    names: string[];
    streams: Record<string, { messages: number; last_seq: number; first_seq: number; hash: string; consumers: unknown }>;
    list: StreamManifest[];
    objects: { name: string; size: number; digest: string; nuid: string }[];
  }

  async function streamNames(): Promise<string[]> {
    const reply = await jsApi<{ streams: string[] | null }>(nc, "STREAM.NAMES", {});
    assert.equal(reply.error, undefined, JSON.stringify(reply.error));
    return (reply.streams ?? []).slice().sort();
  }

  async function fingerprint(): Promise<Fingerprint> {
    const streams: Fingerprint["streams"] = {};
    for (const name of Streams) {
      const state = await streamState(nc, name);
      assert.ok(state, `${name} exists`);
      const messages = await readStream(nc, name);
      streams[name] = {
        messages: state.messages,
        first_seq: state.first_seq,
        last_seq: state.last_seq,
        hash: createHash("sha256").update(JSON.stringify(messages)).digest("hex"),
        consumers: await consumerStates(nc, name),
      };
    }
    const list = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    assert.equal(list.errorCode, null, list.raw);
    const store = await new Objm(jetstream(nc)).open("backups");
    const objects = (await store.list())
      .filter((o) => !o.deleted)
      .map((o) => ({ name: o.name, size: o.size, digest: o.digest, nuid: o.nuid }))
      .sort((a, b) => a.name.localeCompare(b.name));
    return { names: await streamNames(), streams, list: list.body.backups, objects };
  }

  let baseline: Fingerprint;

  before(async () => {
    server = await NatsServer.start();
    serviceNc = await server.connect();
    nc = await server.connect();
    svc = await startService(serviceNc);
    await makeStream(nc, "ALPHA", { messages: 300, deleteEvery: 13 });
    await makeStream(nc, "BETA", { messages: 120, consumers: false });
    const done = await request<JobRecord>(nc, "$BACKUP.stream.ALPHA", { wait: true, tag: "fuzz" }, 120_000);
    assert.equal(done.errorCode, null, done.raw);
    backupJob = done.body;
    backup = done.body.result as StreamManifest;
    existing = await streamNames();
    baseline = await fingerprint();
    assert.deepEqual(baseline.list, [backup]);
    assert.equal(baseline.objects.length, 3);
  });

  after(async () => {
    await svc?.stop();
    await serviceNc?.close();
    await nc?.close();
    await server?.stop();
  });

  /** The service's own buckets' streams (bucket `backups`, and its `-jobs` and `-locks` KV buckets). */
  const OwnStreams = ["OBJ_backups", "KV_backups-jobs", "KV_backups-locks"];

  /** For a stream token the written rules disagree on: a 400 for the token (no job) is as right as `request`'s answers. */
  function unsettled(request: FuzzRequest): FuzzRequest {
    const eitherWay = request.expect.includes(400) ? [400] : [];
    return {
      ...request,
      kind: request.kind.replace("/", " (unsettled name)/"),
      expect: [...new Set([...request.expect, 400])],
      fromJob: request.fromJob.filter((c) => c !== 400),
      eitherWay,
    };
  }

  /** Request generators. Everything is drawn from `r` in order, so a seed replays a run exactly. */
  function generator(r: Rng) {
    const ulid = () => {
      for (;;) {
        let s = "";
        for (let i = 0; i < 26; i++) s += r.pick([...Crockford]);
        if (s !== backup.id && s !== backupJob.id) return s;
      }
    };
    const unicode = ["ü", "é", "ß", "ストリーム", "流", "😀", "🔥💾", "\u200b", "\u202e", "Ω≈ç√", "\ufeff", "ｆｕｌｌ"];
    const punct = [..."-_~!@#$%^&()[]{}|;:'\",<>?=+`"];
    const randomString = (max: number) => {
      const n = r.int(0, max);
      let s = "";
      for (let i = 0; i < n; i++) {
        const c = r.int(0, 9);
        s += c < 5 ? r.pick([..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"]) : c < 8 ? r.pick(punct) : r.pick(unicode);
      }
      return s;
    };

    /** Tokens for `$BACKUP.stream.*` and `$RESTORE.stream.*`: none of them an existing stream (checked by the callers). */
    const streamToken = (): string => {
      switch (r.int(0, 11)) {
        case 0:
          return `NOPE_${r.int(0, 1e9)}`;
        case 1:
          return r.pick(unicode) + r.pick(unicode);
        case 2:
          return "S".repeat(r.int(256, 3000)); // too long for a stream name
        case 3:
          return "L".repeat(255); // the longest valid name, of no stream
        case 4:
          return `a${r.pick(["*", ">", "/", "\\"])}b`;
        case 5:
          return r.pick(punct) + randomString(20);
        case 6:
          return r.pick(["alpha", "Alpha", "beta", "ALPHA_", "_BETA", "ALPH", "OBJ_backup", "KV_backups-job"]);
        case 7:
          return `x${r.pick(["\u0001", "\u007f", "\u001b"])}y`;
        case 8:
          return randomString(40) || "z";
        case 9:
          return ulid();
        case 10:
          return `${r.pick(unicode)}${"ü".repeat(r.int(100, 1000))}`;
        default:
          return `NOPE-${randomString(10).replace(/[.*> \\/]/g, "")}`;
      }
    };

    /** Tokens for `$BACKUP.info|delete|job.*`: never the real backup's id unless `allowReal`. */
    const idToken = (allowReal: boolean): string => {
      switch (r.int(0, 9)) {
        case 0:
        case 1:
        case 2:
          return ulid();
        case 3:
          return backup.id.toLowerCase();
        case 4:
          return backup.id + r.pick([...Crockford]);
        case 5:
          return backup.id.slice(0, r.int(1, 25));
        case 6:
          return backup.id.slice(0, 25) + r.pick(["I", "L", "O", "U", "i", "-", "_", "ü"]);
        case 7:
          return r.chance(0.5) ? "X".repeat(r.int(27, 3000)) : randomString(30) || "0";
        case 8:
          return allowReal ? r.pick([backup.id, backupJob.id]) : ulid();
        default:
          return r.pick(unicode) + ulid().slice(2);
      }
    };

    const wrongValues = (): unknown =>
      r.pick<unknown>([
        null, 0, -1, 1.5, -0.0, 1e308, 2 ** 53 + 1, "", "true", "false", "yes", "4096", [], [true], {}, { a: 1 },
        true, false, "ü😀", Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, "x".repeat(300),
      ]);

    const fields = ["consumers", "check", "chunk_size", "wait", "tag", "backup", "replicas", "placement", "stream"];
    const deep = (depth: number, open: string, close: string, inner = "") => open.repeat(depth) + inner + close.repeat(depth);
    // Up to 512 KiB: a reply that echoes it whole (an unknown field's name) no longer fits max_payload.
    const huge = () => (r.chance(0.5) ? 512 * KiB : r.int(300 * KiB, 500 * KiB));

    /** A body: anything from random bytes to a well-formed request. */
    const body = (): { kind: string; data: Uint8Array } => {
      const k = r.int(0, 99);
      const json = (v: unknown) => enc(JSON.stringify(v));
      if (k < 10) return { kind: "random bytes", data: r.bytes(r.int(1, 512)) };
      if (k < 20) {
        const bad = [
          "{", "}", "{\"wait\":", "{\"wait\":true,}", "{'wait':true}", "{wait:true}", "[1,2", "nul", "tru", "{\"a\":NaN}",
          "{\"a\":Infinity}", "{\"a\":01}", "{\"a\":\"\\x\"}", "{\"a\":\"\u0001\"}", "{}}", "{\"wait\":true}{}", "\u0000",
          "{\"tag\":\"\\ud800\"", "/* */{}", "{\"a\":1e400}", "--", "\"", "{\"stream\":\"ALPHA\"",
        ];
        let text = r.pick(bad);
        if (r.chance(0.3)) {
          const whole = JSON.stringify({ wait: r.chance(0.5), tag: randomString(10), replicas: r.int(0, 7) });
          text = whole.slice(0, r.int(1, whole.length - 1));
        }
        return { kind: "bad JSON", data: enc(text) };
      }
      if (k < 26) {
        const depth = r.pick([64, 1000, 10_000, 100_000]);
        const shape = r.int(0, 3);
        const text =
          shape === 0
            ? deep(depth, "[", "]")
            : shape === 1
              ? deep(depth, '{"a":', "}", "1")
              : shape === 2
                ? `{"placement":{"tags":${deep(depth, "[", "]")}}}`
                : `{"${r.pick(fields)}":${deep(depth, '{"x":[', "]}", "null")}}`;
        return { kind: "deep nesting", data: enc(text) };
      }
      if (k < 40) {
        const obj: Record<string, unknown> = {};
        for (let i = r.int(1, 3); i > 0; i--) {
          const f = r.pick([...fields, "placement.cluster", "placement.tags"]);
          if (f.startsWith("placement.")) obj.placement = { [f.slice(10)]: wrongValues() };
          else obj[f] = wrongValues();
        }
        return { kind: "wrong types", data: json(obj) };
      }
      if (k < 44) {
        const n = huge();
        const text = r.pick([
          () => JSON.stringify({ tag: "t".repeat(n) }),
          () => JSON.stringify({ backup: "B".repeat(n) }),
          () => JSON.stringify({ stream: "s".repeat(n) }),
          () => JSON.stringify({ placement: { cluster: "c".repeat(n) } }),
          () => JSON.stringify({ placement: { tags: Array.from({ length: Math.floor(n / 8) }, (_, i) => `t${i}`) } }),
          () => JSON.stringify({ [`k${"k".repeat(n)}`]: 1 }),
          () => JSON.stringify("q".repeat(n)),
          () => " ".repeat(n) + "{}",
          () => JSON.stringify({ tag: "ü".repeat(Math.floor(n / 2)) }),
        ])();
        return { kind: "huge strings", data: enc(text) };
      }
      if (k < 54) {
        const obj: Record<string, unknown> = {};
        if (r.chance(0.5)) obj.wait = r.chance(0.5);
        const key = r.pick(["foo", "WAIT", "Wait", "__proto__", "constructor", "toString", "", " ", "ü", "backup ", "chunkSize", "num_replicas", "$schema", randomString(12)]);
        // Written by hand: JSON.stringify of an object cannot carry an own "__proto__" member.
        const members = [...Object.entries(obj).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`), `${JSON.stringify(key)}:${JSON.stringify(wrongValues())}`];
        return { kind: "unknown fields", data: enc(`{${r.chance(0.5) ? members.join(",") : members.reverse().join(",")}}`) };
      }
      if (k < 62) {
        const obj = r.pick<Record<string, unknown>>([
          { chunk_size: r.pick([0, -1, 4095, 1048577, 4096.5, 1e20, -4096, 2 ** 31, 2 ** 63]) },
          { replicas: r.pick([0, 6, -1, 1.5, 1e9, 255, 2 ** 53]) },
          { tag: "t".repeat(r.int(257, 4000)) },
          { placement: { tags: Array.from({ length: r.int(33, 100) }, (_, i) => `t${i}`) } },
          { placement: { cluster: "" } },
          { placement: { tags: [""] } },
          { stream: "s".repeat(r.int(256, 2000)) },
          { stream: "" },
        ]);
        return { kind: "out of range", data: json(obj) };
      }
      if (k < 68) {
        return { kind: "not an object", data: enc(r.pick(["null", "[]", "[{}]", "42", "-1", "\"str\"", "true", "false", "0.5", "[null]", "\"{}\"", "1e999"])) };
      }
      if (k < 74) {
        const u = () => r.pick(unicode) + randomString(6);
        const obj = r.pick<Record<string, unknown>>([
          { tag: u() },
          { stream: u() },
          { [u()]: u() },
          { placement: { cluster: u(), tags: [u()] } },
          { backup: u() },
        ]);
        const data = r.chance(0.3) ? Uint8Array.from([...enc(JSON.stringify(obj)).slice(0, -1), 0xff, 0xfe, 0x7d]) : json(obj);
        return { kind: "unicode", data };
      }
      if (k < 82) {
        const obj: Record<string, unknown> = { backup: r.chance(0.9) ? ulid() : ulid().slice(0, 25) };
        if (r.chance(0.3)) obj.wait = r.chance(0.5);
        return { kind: "random backup id", data: json(obj) };
      }
      if (k < 92) {
        // Well-formed requests: only ever sent where they cannot change anything (the callers decide).
        const obj = r.pick<Record<string, unknown>>([
          {},
          { wait: r.chance(0.5) },
          { consumers: r.chance(0.5), check: r.chance(0.5), chunk_size: r.int(4096, 1048576), tag: randomString(20) },
          { replicas: r.int(1, 5), placement: { tags: ["ssd"] } },
          { backup: backup.id, wait: r.chance(0.5) },
          { stream: r.pick(Streams) },
          { stream: streamToken() },
        ]);
        return { kind: "well-formed", data: r.chance(0.2) ? enc(r.pick(["", " ", "\n\t ", "{}"])) : json(obj) };
      }
      return { kind: "empty", data: enc(r.pick(["", " ", "\r\n", "{}", " {} "])) };
    };

    /** A subject token the server routes as one literal token: never empty, never a lone wildcard. */
    const literal = (token: string) => (token === "" || token === "*" || token === ">" ? `x${token}` : token);

    /** One request, and what it may get back. */
    return (): FuzzRequest => {
      const which = r.int(0, 99);
      const b = body();
      if (which < 25) {
        // $BACKUP.stream.<token>: a body the service would take only for a stream that does not exist.
        const stream = r.chance(0.25) ? r.pick(existing) : literal(streamToken());
        let data = b.data;
        let kind = b.kind;
        if (existing.includes(stream)) {
          for (let tries = 0; accepted("backup_stream_request", data) !== null; tries++) {
            const again = tries < 20 ? body() : { kind: "wrong types", data: enc('{"wait":"yes"}') };
            data = again.data;
            kind = again.kind;
          }
          return { kind: `backup existing/${kind}`, subject: `$BACKUP.stream.${stream}`, body: data, expect: [400], fromJob: [], reply: "none" };
        }
        const subject = `$BACKUP.stream.${stream}`;
        const name = streamNameVerdict(Schemas, stream);
        if (name === "invalid" || accepted("backup_stream_request", data) === null) {
          return { kind: `backup ${name === "invalid" ? "bad token" : "missing"}/${kind}`, subject, body: data, expect: [400], fromJob: [], reply: "none" };
        }
        // No such stream: a 404 before any job (protocol/README.md, Errors), so never a lock's 409 or the job limit's 429.
        const request: FuzzRequest = { kind: `backup missing/${kind}`, subject, body: data, expect: [404], fromJob: [], reply: "none" };
        return name === "unsettled" ? unsettled(request) : request;
      }
      if (which < 45) {
        // $RESTORE.stream.<token>: the only backup is of ALPHA, which exists, so no restore can succeed.
        const stream = r.chance(0.4) ? r.pick(Streams) : r.chance(0.1) ? r.pick(existing) : literal(streamToken());
        const req = accepted("restore_stream_request", b.data);
        const kind = `restore ${Streams.includes(stream as never) ? stream : "other"}/${b.kind}`;
        const subject = `$RESTORE.stream.${stream}`;
        const name = streamNameVerdict(Schemas, stream);
        if (name === "invalid" || !req) return { kind, subject, body: b.data, expect: [400], fromJob: [], reply: "none" };
        let expect: number;
        if (req.backup !== undefined && req.backup !== backup.id) expect = 404; // no such backup
        else if (req.backup === undefined && stream !== "ALPHA") expect = 404; // no backup of this stream
        else if (stream !== "ALPHA") expect = 400; // a backup of another stream
        else expect = 409; // ALPHA exists
        // The service's own buckets, a missing backup or another stream's: refused before any job. Onto
        // ALPHA, a job: it may find the stream busy with another of these requests (409), or the
        // instance at its job limit (429).
        if (OwnStreams.includes(stream)) return { kind, subject, body: b.data, expect: [400], fromJob: [], reply: "none" };
        const request: FuzzRequest =
          expect === 409
            ? { kind, subject, body: b.data, expect: [409, 429], fromJob: [409], reply: "none" }
            : { kind, subject, body: b.data, expect: [expect], fromJob: [], reply: "none" };
        return name === "unsettled" ? unsettled(request) : request;
      }
      if (which < 55) {
        const req = accepted("list_request", b.data);
        return { kind: `list/${b.kind}`, subject: "$BACKUP.list", body: b.data, expect: req ? [200] : [400], fromJob: [], reply: "list_reply" };
      }
      if (which < 65 || which >= 90) {
        const isJob = which >= 90;
        const id = literal(idToken(true));
        const valid = IdPattern.test(id) && accepted("empty_request", b.data) !== null;
        const known = isJob ? id === backupJob.id : id === backup.id;
        return {
          kind: `${isJob ? "job" : "info"}/${b.kind}`,
          subject: `$BACKUP.${isJob ? "job" : "info"}.${id}`,
          body: b.data,
          expect: !valid ? [400] : known ? [200] : [404],
          fromJob: [],
          reply: isJob ? "job_record" : "backup_manifest",
        };
      }
      if (which < 85) {
        const id = literal(idToken(false));
        assert.notEqual(id, backup.id);
        const valid = IdPattern.test(id) && accepted("empty_request", b.data) !== null;
        return { kind: `delete/${b.kind}`, subject: `$BACKUP.delete.${id}`, body: b.data, expect: valid ? [404] : [400], fromJob: [], reply: "none" };
      }
      return { kind: "srv", subject: `$SRV.${r.pick(["PING", "INFO", "STATS"])}.backup`, body: b.data, expect: [200], fromJob: [], reply: "srv" };
    };
  }

  interface Outcome {
    code: number | "timeout" | "invalid";
    problem?: string;
    /** The job an error reply names (Nats-Backup-Job). */
    job?: string;
  }

  /** Checks one reply against the protocol's written rules and the request's own expectation. */
  function judge(req: FuzzRequest, msg: Msg): Outcome {
    const text = msg.string();
    const codeHeader = msg.headers?.get("Nats-Service-Error-Code");
    if (codeHeader) {
      // protocol/README.md, Errors: the JetStream API's body and the micro error headers, with the same code and description.
      const code = Number(codeHeader);
      const header = msg.headers?.get("Nats-Service-Error") ?? "";
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return { code: "invalid", problem: `error ${code} with a body that is not JSON: ${text.slice(0, 200)}` };
      }
      if (!(Number.isInteger(code) && code >= 400 && code <= 599)) return { code: "invalid", problem: `error code ${codeHeader} out of 400-599` };
      const invalid = Schemas.problem("error_reply", body);
      if (invalid) return { code: "invalid", problem: `error body does not match error_reply.json (${invalid}): ${text.slice(0, 300)}` };
      const error = (body as { error: { code: number; description: string } }).error;
      if (error.code !== code || error.description !== header) {
        return { code: "invalid", problem: `error body ${text.slice(0, 300)} does not repeat the headers ${code} ${header.slice(0, 300)}` };
      }
      if (header.length === 0) return { code: "invalid", problem: `error ${code} without a description` };
      if (!req.expect.includes(code)) return { code, problem: `expected ${req.expect.join("|")}, got ${code}: ${header.slice(0, 300)}` };
      const job = msg.headers?.get("Nats-Backup-Job") ?? "";
      if (job && !IdPattern.test(job)) return { code, problem: `Nats-Backup-Job ${JSON.stringify(job)} is not a job id` };
      if (req.fromJob.includes(code) && !job) return { code, problem: `a ${code} from a job that names no job (Nats-Backup-Job): ${header.slice(0, 200)}` };
      if (!req.fromJob.includes(code) && !req.eitherWay?.includes(code) && job) {
        return { code, problem: `a ${code} refused before any job started names job ${job}: ${header.slice(0, 200)}` };
      }
      return job ? { code, job } : { code };
    }
    if (msg.headers?.hasError) return { code: "invalid", problem: `a status reply ${msg.headers.code} ${msg.headers.description}` };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { code: "invalid", problem: `a result that is not JSON: ${text.slice(0, 200)}` };
    }
    if (req.reply === "none") return { code: "invalid", problem: `a job request succeeded: ${text.slice(0, 300)}` };
    if (req.reply === "srv") {
      // ADR-32: `$SRV.<VERB>.<name>` replies are typed io.nats.micro.v1.<verb>_response and name the service.
      const verb = req.subject.split(".")[1]!.toLowerCase();
      const srv = body as { type?: string; name?: string } | null;
      if (srv?.type !== `io.nats.micro.v1.${verb}_response` || srv.name !== "backup") {
        return { code: "invalid", problem: `a $SRV reply that is not the backup service's ${verb}: ${text.slice(0, 200)}` };
      }
    } else {
      const invalid = Schemas.problem(req.reply, body);
      if (invalid) return { code: "invalid", problem: `result does not match ${req.reply}.json (${invalid}): ${text.slice(0, 300)}` };
    }
    if (!req.expect.includes(200)) return { code: 200, problem: `expected ${req.expect.join("|")}, got a result: ${text.slice(0, 200)}` };
    if (req.reply === "list_reply") {
      // "{"stream": "ORDERS"} lists only that stream's backups; an empty body lists all."
      const stream = accepted("list_request", req.body)?.stream;
      const want = stream === undefined || stream === "ALPHA" ? [backup] : [];
      try {
        assert.deepEqual((body as { backups: unknown }).backups, want);
      } catch {
        return { code: 200, problem: `list for ${JSON.stringify(stream)} replied ${text.slice(0, 300)}` };
      }
    }
    if (req.reply === "backup_manifest") {
      try {
        assert.deepEqual(body, backup);
      } catch {
        return { code: 200, problem: `info replied another manifest: ${text.slice(0, 300)}` };
      }
    }
    if (req.reply === "job_record") {
      const job = body as JobRecord;
      if (job.id !== backupJob.id || job.state !== "completed") {
        return { code: 200, problem: `the record of job ${backupJob.id} replied as ${text.slice(0, 300)}` };
      }
    }
    return { code: 200 };
  }

  test(`${Total} random and malformed requests, ${InFlight} in flight (seed ${Seed}; FUZZ_SEED=${Seed} replays)`, async (t) => {
    const next = generator(prng(Seed));
    const counts = new Map<string, number>();
    const byKind = new Map<string, Map<string, number>>();
    // Broken: no reply in time, or a reply that is neither a well-formed error nor a valid result.
    // Unexpected: a well-formed reply with a code this request should not get.
    const problems = { broken: [] as string[], unexpected: [] as string[] };
    const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
    let sent = 0;
    let bytes = 0;
    const started = Date.now();
    /** Jobs named by error replies, with the code they replied: their records are read afterwards. */
    const named = new Map<string, { code: number; index: number }>();

    const worker = async () => {
      while (sent < Total) {
        const index = sent++;
        const req = next();
        bytes += req.body.length;
        let outcome: Outcome;
        try {
          const msg = await nc.request(req.subject, req.body, { timeout: RequestTimeoutMs });
          outcome = judge(req, msg);
        } catch (err) {
          const message = (err as Error).message;
          outcome = { code: /timeout/i.test(message) ? "timeout" : "invalid", problem: `no reply: ${message}` };
        }
        bump(counts, String(outcome.code));
        if (outcome.job && typeof outcome.code === "number" && named.size < 40) named.set(outcome.job, { code: outcome.code, index });
        const group = req.kind.split("/")[0] as string;
        if (!byKind.has(group)) byKind.set(group, new Map());
        bump(byKind.get(group)!, String(outcome.code));
        const list = typeof outcome.code === "number" ? problems.unexpected : problems.broken;
        if (outcome.problem && list.length < 50) {
          const shown = req.body.length > 120 ? `${req.body.length} bytes` : JSON.stringify(new TextDecoder().decode(req.body));
          list.push(`#${index} ${req.kind} ${req.subject.slice(0, 120)} body ${shown}: ${outcome.problem}`);
        }
      }
    };
    await Promise.all(Array.from({ length: InFlight }, worker));
    const seconds = (Date.now() - started) / 1000;

    const summary = [...counts.entries()].sort().map(([c, n]) => `${c}: ${n}`).join(", ");
    t.diagnostic(`seed ${Seed}: ${sent} requests (${(bytes / 1024 / 1024).toFixed(1)} MiB of bodies) in ${seconds.toFixed(1)} s; replies by code: ${summary}`);
    for (const [kind, m] of [...byKind.entries()].sort()) {
      t.diagnostic(`  ${kind}: ${[...m.entries()].sort().map(([c, n]) => `${c}: ${n}`).join(", ")}`);
    }
    // "Every error reply about a job carries the header Nats-Backup-Job: <id>, so its record can be read with $BACKUP.job.<id>."
    for (const [job, { code, index }] of named) {
      const reply = await request<JobRecord>(nc, `$BACKUP.job.${job}`, "", RequestTimeoutMs);
      const invalid = reply.errorCode === null ? Schemas.problem("job_record", reply.body) : `error ${reply.raw}`;
      const record = reply.body;
      if (invalid || record.id !== job || record.state !== "failed" || record.error?.code !== code || !record.ended) {
        problems.unexpected.push(`#${index}: the reply named job ${job} with ${code}, whose record is ${invalid ?? reply.raw.slice(0, 300)}`);
      }
    }
    t.diagnostic(`read the records of ${named.size} jobs named by error replies`);
    for (const p of problems.broken) t.diagnostic(`BROKEN ${p}`);
    for (const p of problems.unexpected) t.diagnostic(`UNEXPECTED ${p}`);
    const replay = `seed ${Seed}: FUZZ_SEED=${Seed} FUZZ_REQUESTS=${Total} replays this run`;
    assert.equal(sent, Total, replay);
    assert.ok(named.size > 0, `no error reply named a job: the job-header checks did not run (${replay})`);
    assert.deepEqual(problems, { broken: [], unexpected: [] }, `requests answered wrongly, listed above (${replay})`);
  });

  test("the service still answers, and nothing that existed changed", async () => {
    const ping = await nc.request("$SRV.PING.backup", "", { timeout: 10_000 });
    assert.equal(ping.json<{ name: string }>().name, "backup");
    const list = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    assert.equal(list.errorCode, null, list.raw);
    assert.deepEqual(list.body.backups, [backup]);
    const info = await request<StreamManifest>(nc, `$BACKUP.info.${backup.id}`);
    assert.deepEqual(info.body, backup);

    const now = await fingerprint();
    assert.deepEqual(now.names, baseline.names, "no stream was created or removed");
    assert.deepEqual(now.streams, baseline.streams, "both streams are as they were");
    assert.deepEqual(now.list, baseline.list, "the backup lists with the same manifest");
    assert.deepEqual(now.objects, baseline.objects, "the bucket holds the same objects");
  });
});
