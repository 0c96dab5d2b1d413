import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { BulkConnection, BulkConnectionError, type BulkHandler, type BulkMessage } from "../src/bulk/bulk-connection.ts";
import { ProtocolReader, type ProtocolEvents } from "../src/bulk/protocol-reader.ts";
import { NatsServer, freePort } from "./harness/nats-server.ts";

interface Received {
  msg: BulkMessage;
  data: Buffer;
  parts: number;
}

/** Reassembles what a bulk subscription hands over, checking the calls come in order. */
function collector(): { handler: BulkHandler; received: Received[]; lost: Promise<Error>; arrived: (n: number) => Promise<void> } {
  const received: Received[] = [];
  let open: { msg: BulkMessage; parts: Buffer[] } | null = null;
  let onLost!: (err: Error) => void;
  const lost = new Promise<Error>((resolve) => (onLost = resolve));
  const waiters: { n: number; resolve: () => void }[] = [];
  const handler: BulkHandler = {
    begin(msg) {
      assert.equal(open, null, "begin while a message is open");
      open = { msg, parts: [] };
    },
    part(bytes) {
      assert.ok(open, "part outside a message");
      // A view into the socket's buffer: copy it, as a real consumer that keeps bytes must.
      open.parts.push(Buffer.from(bytes));
    },
    end() {
      assert.ok(open, "end outside a message");
      received.push({ msg: open.msg, data: Buffer.concat(open.parts), parts: open.parts.length });
      open = null;
      for (const w of waiters.filter((w) => received.length >= w.n)) w.resolve();
    },
    lost: (err) => onLost(err),
  };
  const arrived = (n: number) =>
    received.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }));
  return { handler, received, lost, arrived };
}

describe("bulk connection", () => {
  let server: NatsServer;
  let nc: NatsConnection;

  before(async () => {
    server = await NatsServer.start({ config: 'authorization { users: [ { user: "bulk", password: "s3cret" } ] }' });
    nc = await server.connect({ user: "bulk", pass: "s3cret" });
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
  });

  test("delivers every payload byte for byte, with headers and reply subjects, whatever its size", async () => {
    const bulk = await BulkConnection.like(nc, "test-bulk");
    const { handler, received, arrived } = collector();
    bulk.subscribe("bulk.data.>", handler);
    await bulk.flush();
    const sizes = [0, 1, 100, 65535, 65536, 65537, 256 * 1024, 1024 * 1024 - 200];
    const sent: { data: Buffer; withHeaders: boolean }[] = [];
    for (const [i, size] of sizes.entries()) {
      for (const withHeaders of [false, true]) {
        const data = randomBytes(size);
        const h = headers();
        h.set("Bulk-Index", `${i}`);
        nc.publish(`bulk.data.${i}`, data, { reply: `reply.${i}`, ...(withHeaders ? { headers: h } : {}) });
        sent.push({ data, withHeaders });
      }
    }
    await nc.flush();
    await arrived(sent.length);
    assert.equal(received.length, sent.length);
    for (const [i, got] of received.entries()) {
      const want = sent[i]!;
      const index = Math.floor(i / 2);
      assert.equal(got.msg.subject, `bulk.data.${index}`);
      assert.equal(got.msg.reply, `reply.${index}`);
      assert.equal(got.msg.size, want.data.length);
      assert.ok(got.data.equals(want.data), `payload ${i} (${want.data.length} bytes) differs`);
      assert.equal(got.msg.headers?.get("Bulk-Index"), want.withHeaders ? `${index}` : undefined);
    }
    // A megabyte arrives in several socket reads: proof the pieces are handed over unassembled.
    assert.ok(received.at(-1)!.parts > 1, "expected the largest payload in more than one piece");
    bulk.close();
  });

  test("publishes acks the server routes, and unsubscribes", async () => {
    const bulk = await BulkConnection.like(nc, "test-bulk");
    const acks = nc.subscribe("bulk.ack.>", { max: 3 });
    await nc.flush();
    for (let i = 0; i < 3; i++) bulk.publish(`bulk.ack.${i}`);
    const seen: string[] = [];
    for await (const m of acks) seen.push(`${m.subject}:${m.data.length}`);
    assert.deepEqual(seen, ["bulk.ack.0:0", "bulk.ack.1:0", "bulk.ack.2:0"]);

    const { handler, received, arrived } = collector();
    const sub = bulk.subscribe("bulk.unsub", handler);
    await bulk.flush();
    nc.publish("bulk.unsub", "one");
    await nc.flush();
    await arrived(1);
    sub.unsubscribe();
    await bulk.flush();
    nc.publish("bulk.unsub", "two");
    await nc.flush();
    await bulk.flush();
    assert.deepEqual(received.map((r) => r.data.toString()), ["one"]);
    bulk.close();
  });

  test("refuses bad credentials with the server's reason", async () => {
    await assert.rejects(
      BulkConnection.open({ server: `127.0.0.1:${server.port}`, name: "test-bulk", authenticator: () => ({ user: "bulk", pass: "wrong" }) }),
      /Authorization Violation/i,
    );
  });

  test("a server it cannot reach is a 503 that names the address", async () => {
    const port = await freePort();
    await assert.rejects(BulkConnection.open({ server: `127.0.0.1:${port}`, name: "test-bulk" }), (err: unknown) => {
      assert.ok(err instanceof BulkConnectionError, String(err));
      assert.equal(err.code, 503);
      assert.match(err.description, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
    await assert.rejects(BulkConnection.open({ server: "nats://[bad", name: "test-bulk" }), BulkConnectionError);
  });

  test("a handler that throws is unsubscribed and told; others go on", async () => {
    const bulk = await BulkConnection.like(nc, "test-bulk");
    const bad = collector();
    const good = collector();
    bulk.subscribe("bulk.throw", { ...bad.handler, part: () => { throw new Error("handler broke"); } });
    bulk.subscribe("bulk.throw", good.handler);
    await bulk.flush();
    nc.publish("bulk.throw", "x");
    nc.publish("bulk.throw", "y");
    await nc.flush();
    assert.match((await bad.lost).message, /handler broke/);
    await good.arrived(2);
    assert.equal(bad.received.length, 0);
    bulk.close();
  });

  test("tells its subscriptions when the server goes away", async () => {
    const other = await NatsServer.start();
    try {
      const bulk = await BulkConnection.open({ server: other.url, name: "test-bulk" });
      const { handler, lost } = collector();
      bulk.subscribe("bulk.gone", handler);
      await bulk.flush();
      await other.halt();
      assert.match((await lost).message, /closed the data connection|failed/);
      assert.ok(bulk.isClosed);
      assert.ok((await bulk.closed) instanceof Error);
    } finally {
      await other.stop();
    }
  });
});

describe("bulk connection over TLS", () => {
  let dir: string;
  let server: NatsServer | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "nats-backup-tls-"));
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("upgrades when the server requires TLS, with the main connection's settings", async (t) => {
    try {
      execFileSync("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
      ], { stdio: "ignore" });
    } catch {
      t.skip("openssl is not installed");
      return;
    }
    server = await NatsServer.start({ config: `tls { cert_file: "${join(dir, "cert.pem")}", key_file: "${join(dir, "key.pem")}" }` });
    const nc = await server.connect({ tls: { caFile: join(dir, "cert.pem") } });
    try {
      const bulk = await BulkConnection.like(nc, "test-bulk");
      const { handler, received, arrived } = collector();
      bulk.subscribe("tls.data", handler);
      await bulk.flush();
      const data = randomBytes(300 * 1024);
      nc.publish("tls.data", data);
      await nc.flush();
      await arrived(1);
      assert.ok(received[0]!.data.equals(data));
      bulk.close();
      await assert.rejects(
        BulkConnection.open({ server: server.url, name: "test-bulk" }),
        /certificate|self.signed/i,
        "without the CA the server's certificate must be refused",
      );
    } finally {
      await nc.close();
    }
  });
});

describe("protocol reader", () => {
  /** Records events as text, so two parses can be compared. */
  function recorder(): { events: ProtocolEvents; log: string[] } {
    const log: string[] = [];
    let payload: Buffer[] = [];
    return {
      log,
      events: {
        info: (json) => log.push(`INFO ${json}`),
        ping: () => log.push("PING"),
        pong: () => log.push("PONG"),
        error: (text) => log.push(`ERR ${text}`),
        begin: (sid, subject, reply, hdrs, size) => {
          payload = [];
          log.push(`BEGIN ${sid} ${subject} ${reply ?? "-"} ${hdrs ? Buffer.from(hdrs).toString("hex") : "-"} ${size}`);
        },
        part: (_sid, bytes) => payload.push(Buffer.from(bytes)),
        end: (sid) => log.push(`END ${sid} ${Buffer.concat(payload).toString("hex")}`),
      },
    };
  }

  test("gives the same events however the bytes are split", () => {
    const hdr = "NATS/1.0\r\nA: b\r\n\r\n";
    const body = randomBytes(5000);
    const stream = Buffer.concat([
      Buffer.from('INFO {"server_id":"x"}\r\nPING\r\n+OK\r\n'),
      Buffer.from(`MSG a.b 1 ${body.length}\r\n`), body, Buffer.from("\r\n"),
      Buffer.from(`HMSG c.d 2 _INBOX.r ${hdr.length} ${hdr.length + 3}\r\n${hdr}xyz\r\n`),
      Buffer.from(`HMSG e 3 ${hdr.length} ${hdr.length}\r\n${hdr}\r\n`),
      Buffer.from("MSG f 4 0\r\n\r\nPONG\r\n-ERR 'Permissions Violation'\r\n"),
    ]);
    const whole = recorder();
    new ProtocolReader(whole.events).feed(stream);
    assert.equal(whole.log.length, 12);
    assert.equal(whole.log.at(-1), "ERR Permissions Violation");
    for (let round = 0; round < 200; round++) {
      const split = recorder();
      const reader = new ProtocolReader(split.events);
      for (let at = 0; at < stream.length; ) {
        const n = 1 + Math.floor(Math.random() * (round % 2 ? 7 : 1500));
        reader.feed(stream.subarray(at, at + n));
        at += n;
      }
      assert.deepEqual(split.log, whole.log);
    }
  });

  test("refuses what is not the protocol", () => {
    const reader = new ProtocolReader(recorder().events);
    assert.throws(() => reader.feed(Buffer.from("HELLO there\r\n")), /unexpected protocol line/);
    assert.throws(() => new ProtocolReader(recorder().events).feed(Buffer.from("MSG a b c\r\n")), /malformed MSG/);
    assert.throws(() => new ProtocolReader(recorder().events).feed(Buffer.alloc(70_000, 0x41)), /longer than/);
  });
});
