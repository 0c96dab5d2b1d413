/**
 * src/archive: the S2 decoder and the archive inspector.
 *  - Real archives made by every nats-server at hand (the built ones and Debian's 2.9.10) with the
 *    real nats CLI: the inspector's summary against what the stream and backup.json say, the
 *    decoded bytes against klauspost's Go decoder, the tar's entries against GNU tar's listing.
 *  - The block format against klauspost's Go encoder (fast, better, best: repeat offsets; Snappy
 *    framing; padding), byte for byte.
 *  - Malformed input, made by hand and by a seeded fuzz of mutations of the real archives: every
 *    case decodes or throws ArchiveError, in bounded time and memory.
 * One test run loops over the servers itself (it is in CI once, not per server).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, describe, test } from "node:test";
import { pack } from "tar-stream";
import { ArchiveError, ArchiveInspector, archiveReader, OffThreadInspector, maskedCrc, S2Decoder, s2Decompress, type ArchiveSummary } from "../src/archive/mod.ts";
import { makeRealArchives, textPayload, type RealArchive } from "./harness/archives.ts";
import { prng } from "./harness/prng.ts";
import { cachedServers, compareVersions, serverVersion, type Version } from "./harness/binaries.ts";
import { NatsCli } from "./harness/nats-cli.ts";
import { NatsServer, natsCliBinary } from "./harness/nats-server.ts";
import { s2DecodeGo, s2Encode, s2tool } from "./harness/s2tool.ts";

/** Every nats-server at hand, newest first: the cache's and Debian's 2.9.10. */
function servers(): { bin: string; version: Version }[] {
  const found = cachedServers().map((s) => ({ bin: s.path, version: s.version }));
  const debian = "/usr/sbin/nats-server";
  try {
    const version = serverVersion(debian);
    if (!found.some((s) => compareVersions(s.version, version) === 0)) found.push({ bin: debian, version });
  } catch {
    // not installed
  }
  return found;
}

/** `input` through an inspector on a worker thread, in 256 KiB pieces. */
async function inspectOffThread(input: Uint8Array): Promise<ArchiveSummary> {
  const reader = archiveReader(true);
  assert.ok(reader instanceof OffThreadInspector, "a worker thread reads it");
  for (let p = 0; p < input.length; p += 262144) reader.push(input.subarray(p, p + 262144));
  return reader.finish();
}

/** Decodes `input` pushed in pieces of random sizes; the decoded bytes joined. */
function decodeAll(input: Uint8Array, rnd = prng(1), maxPiece = 200_000): { bytes: Buffer; decoder: S2Decoder } {
  const decoder = new S2Decoder();
  const parts: Uint8Array[] = [];
  for (let p = 0; p < input.length; ) {
    const n = 1 + (rnd() % maxPiece);
    decoder.push(input.subarray(p, p + n), (b) => parts.push(b));
    p += n;
  }
  decoder.end();
  return { bytes: Buffer.concat(parts), decoder };
}

async function inspect(input: Uint8Array, rnd = prng(2), maxPiece = 100_000): Promise<ArchiveSummary> {
  const inspector = new ArchiveInspector();
  for (let p = 0; p < input.length; ) {
    const n = 1 + (rnd() % maxPiece);
    inspector.push(input.subarray(p, p + n));
    p += n;
  }
  return inspector.finish();
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** The tar's entry names as GNU tar lists them: a reader independent of the one under test (tar-stream). */
function tarEntries(tar: Buffer): { name: string }[] {
  const listing = execFileSync("tar", ["-tf", "-"], { input: tar, maxBuffer: 64 * 2 ** 20 }).toString();
  return listing.split("\n").filter(Boolean).map((name) => ({ name }));
}

const cli = natsCliBinary();
const tool = s2tool();
/** Every real archive made below, for the malformed-input tests. */
const realArchives: (RealArchive & { decoded: Buffer; format: "v1" | "v2" })[] = [];

describe("real archives from every nats-server at hand", () => {
  const work = mkdtempSync(join(tmpdir(), "nats-backup-archives-"));
  after(() => rmSync(work, { recursive: true, force: true }));

  for (const { bin, version } of servers()) {
    // Without Go (no s2tool) the decoded bytes are not compared with klauspost's; the rest runs.
    const skip = cli.path === null ? cli.reason : false;
    test(`nats-server ${version.text}: the inspector's summary matches the stream, backup.json and klauspost's decoder`, { skip }, async () => {
      const started = performance.now();
      const server = await NatsServer.start({ bin });
      const nc = await server.connect();
      const natsCli = new NatsCli(cli.path!, server.url);
      try {
        const archives = await makeRealArchives(nc, natsCli, join(work, version.text), version.text);
        const format = compareVersions(version, { major: 2, minor: 15, patch: 0, text: "2.15.0" }) >= 0 ? "v2" : "v1";
        for (const a of archives) {
          const what = `${version.text} ${a.stream}`;
          const { bytes, decoder } = decodeAll(a.archive);
          const truth = tool.bin ? s2DecodeGo(a.archive) : bytes;
          assert.equal(bytes.length, truth.length, `${what}: decoded length`);
          assert.equal(sha256(bytes), sha256(truth), `${what}: decoded bytes equal Go's`);
          assert.equal(decoder.compressedBytes, a.archive.length);

          const summary = await inspect(a.archive);
          // The same reader on a worker thread (large backups are checked there) finds the same.
          assert.deepEqual(await inspectOffThread(a.archive), summary, `${what}: read on a worker thread`);
          assert.equal(summary.format, format, `${what}: format`);
          assert.equal(a.file, format === "v2" ? "stream.arc.s2" : "stream.tar.s2", `${what}: the CLI's file name`);
          assert.equal(summary.compressedBytes, a.archive.length);
          assert.equal(summary.uncompressedBytes, truth.length, `${what}: uncompressedBytes`);
          assert.equal(summary.frames, decoder.frames);
          assert.ok(summary.frames >= 1);
          assert.deepEqual([...summary.consumers].sort(), a.consumers, `${what}: consumers`);
          assert.equal(summary.errorsTxt, undefined, `${what}: no errors.txt`);
          if (format === "v2") {
            assert.equal(summary.messages, a.backup.state.messages, `${what}: messages`);
            assert.equal(summary.entries, 1 + a.consumers.length + a.backup.state.messages, `${what}: records`);
            assert.equal(summary.state?.messages, a.backup.state.messages);
            assert.equal(summary.state?.first_seq, a.backup.state.first_seq);
            assert.equal(summary.state?.last_seq, a.backup.state.last_seq);
            assert.equal(summary.state?.consumer_count, a.consumers.length);
            assert.equal(summary.blocks, undefined);
            assert.equal(summary.config, undefined, "a v2 archive holds no configuration");
          } else {
            assert.equal(summary.stream, a.stream, `${what}: stream name`);
            // meta.inf is the store's copy, backup.json the CLI's (which drops some empty fields).
            const config = summary.config!;
            for (const key of ["name", "subjects", "retention", "storage", "max_msgs", "max_bytes", "discard", "num_replicas", "duplicate_window"]) {
              assert.deepEqual(config[key], a.backup.config[key], `${what}: meta.inf's ${key}`);
            }
            assert.match(summary.created ?? "", /^\d{4}-\d\d-\d\dT/);
            assert.equal(summary.messages, undefined);
            const entries = tarEntries(truth);
            assert.equal(summary.entries, entries.length, `${what}: entries as GNU tar lists them`);
            assert.equal(summary.blocks, entries.filter((e) => /^msgs\/[^/]+\.blk$/.test(e.name)).length);
            assert.ok(summary.blocks! >= 1, `${what}: at least one message block`);
            const names = entries.map((e) => e.name);
            assert.ok(names.includes("meta.inf") && names.includes("meta.sum"), names.join(" "));
            const obs = new Set(names.filter((n) => n.startsWith("obs/")).map((n) => n.split("/")[1]));
            assert.deepEqual([...obs].sort(), a.consumers);
          }
          realArchives.push({ ...a, decoded: truth, format });
        }
        const text = realArchives.find((a) => a.server === version.text && a.stream === "TEXT")!;
        assert.ok(text.archive.length * 2 < text.decoded.length, `the text stream's archive compresses: ${text.archive.length} of ${text.decoded.length}`);
      } finally {
        await natsCli.close();
        await nc.close();
        await server.stop();
      }
      console.log(`# nats-server ${version.text}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    });
  }
});

/** An S2 stream of `data` framed by hand as uncompressed chunks (valid CRCs), `block` bytes each. */
function frameUncompressed(data: Uint8Array, block = 65536): Buffer {
  const parts: Buffer[] = [Buffer.from([0xff, 6, 0, 0, ...Buffer.from("S2sTwO")])];
  for (let p = 0; p < data.length; p += block) {
    const body = data.subarray(p, p + block);
    parts.push(chunkHeader(0x01, body.length + 4), crcBytes(body), Buffer.from(body));
  }
  return Buffer.concat(parts);
}

function chunkHeader(type: number, length: number): Buffer {
  return Buffer.from([type, length & 0xff, (length >> 8) & 0xff, (length >> 16) & 0xff]);
}

function crcBytes(data: Uint8Array): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(maskedCrc(data));
  return b;
}

/** A compressed chunk of a hand-made block (declared length, then elements), with the right CRC of `decoded`. */
function compressedChunk(block: number[], decoded: Uint8Array): Buffer {
  return Buffer.concat([chunkHeader(0x00, block.length + 4), crcBytes(decoded), Buffer.from(block)]);
}

const Identifier = Buffer.from([0xff, 6, 0, 0, ...Buffer.from("S2sTwO")]);

/** Counts S2 repeat elements (copy1 with offset 0) in the compressed blocks of a framed stream. */
function countRepeats(stream: Buffer): number {
  let repeats = 0;
  for (let p = 0; p < stream.length; ) {
    const type = stream[p]!;
    const length = stream.readUIntLE(p + 1, 3);
    if (type === 0x00) {
      const end = p + 4 + length;
      let s = p + 8;
      while (stream[s]! & 0x80) s++; // the decoded length
      s++;
      while (s < end) {
        const tag = stream[s]!;
        if ((tag & 3) === 0) {
          const x = tag >>> 2;
          const n = x < 60 ? 0 : x - 59;
          const lit = (n === 0 ? x : stream.readUIntLE(s + 1, n)) + 1;
          s += 1 + n + lit;
        } else if ((tag & 3) === 1) {
          const offset = ((tag & 0xe0) << 3) | stream[s + 1]!;
          const len = (tag >>> 2) & 7;
          s += 2;
          if (offset === 0) {
            repeats++;
            s += len === 5 ? 1 : len === 6 ? 2 : len === 7 ? 3 : 0;
          }
        } else s += (tag & 3) === 2 ? 3 : 5;
      }
    }
    p += 4 + length;
  }
  return repeats;
}

describe("the block format against klauspost's encoder", { skip: tool.bin === null ? tool.reason : false }, () => {
  const rnd = prng(11);
  const text = Buffer.concat(Array.from({ length: 5000 }, (_, i) => textPayload(rnd, i)));
  const random = Buffer.from(Array.from({ length: 3 << 20 }, () => rnd() & 0xff));
  // Short periods (overlapping copies of every offset below 40) between random stretches.
  const periodic = Buffer.concat(
    Array.from({ length: 400 }, (_, i) => {
      const period = Buffer.from(Array.from({ length: 1 + (i % 40) }, () => rnd() & 0xff));
      return Buffer.concat([Buffer.alloc(1 + (rnd() % 5000), period), random.subarray(i * 100, i * 100 + (rnd() % 300))]);
    }),
  );
  const inputs: Record<string, Buffer> = {
    "one byte": Buffer.from([7]),
    "five bytes": Buffer.from("hello"),
    zeros: Buffer.alloc(2 << 20),
    text,
    random,
    periodic,
    "text and random": Buffer.concat([text.subarray(0, 1 << 20), random.subarray(0, 1 << 20), text.subarray(1 << 20)]),
  };

  for (const level of ["fast", "better", "best"] as const) {
    for (const block of [64 << 10, 1 << 20, 4 << 20]) {
      test(`level ${level}, ${block >> 10} KiB blocks: every input decodes to itself`, () => {
        for (const [name, data] of Object.entries(inputs)) {
          const encoded = s2Encode(data, { level, block });
          const { bytes, decoder } = decodeAll(encoded, prng(data.length + block), 70_000);
          assert.equal(bytes.length, data.length, `${name}: length`);
          assert.ok(bytes.equals(data), `${name}: bytes`);
          assert.equal(decoder.uncompressedBytes, data.length);
          assert.equal(decoder.compressedBytes, encoded.length);
        }
      });
    }
  }

  test("an empty input: Go's writer writes nothing, which the decoder refuses as no stream", () => {
    const encoded = s2Encode(Buffer.alloc(0));
    assert.equal(encoded.length, 0);
    const decoder = new S2Decoder();
    decoder.push(encoded, () => assert.fail("no output"));
    assert.throws(() => decoder.end(), (err: unknown) => err instanceof ArchiveError && /before the stream identifier/.test(err.message));
  });

  test("the better and best levels write repeat offsets, and they decode", () => {
    for (const level of ["better", "best"] as const) {
      const encoded = s2Encode(text, { level });
      const repeats = countRepeats(encoded);
      assert.ok(repeats > 100, `${level}: ${repeats} repeats`);
      assert.ok(decodeAll(encoded).bytes.equals(text));
    }
  });

  test("Snappy framing, padding chunks, and pushes of one byte at a time", () => {
    const snappy = s2Encode(text, { snappy: true, block: 65536 });
    assert.equal(snappy.subarray(4, 10).toString(), "sNaPpY");
    assert.ok(decodeAll(snappy).bytes.equals(text));
    const padded = s2Encode(periodic, { level: "better", pad: 4096 });
    assert.equal(padded.length % 4096, 0);
    assert.ok(decodeAll(padded).bytes.equals(periodic));
    const small = s2Encode(text.subarray(0, 20_000), { level: "best", block: 4096 });
    const { bytes } = decodeAll(small, prng(3), 1);
    assert.ok(bytes.equals(text.subarray(0, 20_000)));
  });

  test("s2Decompress: a Transform that pipes with backpressure to the same bytes", async () => {
    const encoded = s2Encode(Buffer.concat([text, random]), { level: "better" });
    const pieces = Array.from({ length: Math.ceil(encoded.length / 50_000) }, (_, i) => encoded.subarray(i * 50_000, (i + 1) * 50_000));
    const out: Buffer[] = [];
    await pipeline(Readable.from(pieces), s2Decompress({ readableHighWaterMark: 1 << 16 }), async function* (source) {
      for await (const b of source) {
        out.push(b as Buffer);
        yield* [];
      }
    });
    assert.ok(Buffer.concat(out).equals(Buffer.concat([text, random])));
    await assert.rejects(pipeline(Readable.from([encoded.subarray(0, encoded.length - 10)]), s2Decompress(), async function* (s) {
      for await (const _ of s) yield* [];
    }), (err: unknown) => err instanceof ArchiveError && /ends inside a frame/.test(err.message));
  });
});

/** Expects `run` to throw (or reject with) an ArchiveError whose message matches `pattern`. */
async function refuses(what: string, run: () => unknown, pattern: RegExp): Promise<ArchiveError> {
  let caught: unknown;
  try {
    await run();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ArchiveError, `${what}: ${caught === undefined ? "accepted" : `threw ${String(caught)}`}`);
  assert.match(caught.message, pattern, what);
  return caught;
}

function uvarint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

interface V2Record {
  name: string;
  ts?: number;
  seq?: number;
  hdr?: number;
  payload: Uint8Array | string;
}

/** A NATSARC1 archive's bytes, as archive.go writes them. */
function natsArc(records: V2Record[], sentinel = true): Buffer {
  const parts: Buffer[] = [Buffer.from("NATSARC1")];
  for (const r of [...records, ...(sentinel ? [{ name: "", payload: "" }] : [])]) {
    const payload = Buffer.from(r.payload);
    const name = Buffer.from(r.name);
    const hdr = r.hdr ?? 0;
    parts.push(Buffer.from([...uvarint(name.length), ...uvarint((r.ts ?? 0) * 2), ...uvarint(r.seq ?? 0), ...uvarint(hdr), ...uvarint(payload.length - hdr)]), name, payload);
  }
  return Buffer.concat(parts);
}

function v2Records(opts: { consumers?: string[]; seqs?: number[]; state?: Record<string, unknown> } = {}): V2Record[] {
  const consumers = opts.consumers ?? ["C1"];
  const seqs = opts.seqs ?? [1, 2, 4];
  const state = opts.state ?? { messages: seqs.length, bytes: 100, first_seq: 1, last_seq: 4, consumer_count: consumers.length };
  return [
    { name: "state.json", ts: 1, payload: JSON.stringify(state) },
    ...consumers.map((c) => ({ name: `consumers/${c}`, ts: 1, payload: JSON.stringify({ config: { name: c }, state: {} }) })),
    ...seqs.map((seq) => ({ name: `ORDERS.${seq}`, ts: 1_700_000_000_000_000_000 + seq, seq, hdr: 12, payload: `NATS/1.0\r\n\r\nmessage ${seq}` })),
  ];
}

/** A tar (tar-stream's pack, PAX headers where needed) of the given files. */
async function tarOf(files: { name: string; data: Uint8Array | string }[]): Promise<Buffer> {
  const p = pack();
  for (const f of files) p.entry({ name: f.name }, Buffer.from(f.data));
  p.finalize();
  const out: Buffer[] = [];
  for await (const chunk of p) out.push(chunk as Buffer);
  return Buffer.concat(out);
}

const MetaInf = JSON.stringify({ name: "ORDERS", subjects: ["ORDERS.>"], storage: "file", Created: "2025-01-01T00:00:00Z" });

describe("malformed input: a clear ArchiveError, never another exception", () => {
  test("on a worker thread as in this one: an end inside a frame, a CRC mismatch", async () => {
    const tar = await tarOf([{ name: "meta.inf", data: MetaInf }, { name: "msgs/1.blk", data: Buffer.alloc(300_000, 7) }]);
    const framed = frameUncompressed(tar);
    await refuses("cut inside a frame", () => inspectOffThread(framed.subarray(0, framed.length - 100)), /ends inside a frame/);
    const badCrc = Buffer.from(framed);
    badCrc[14]! ^= 1; // the first chunk's checksum (after the 10-byte identifier and its 4-byte header)
    await refuses("a bad CRC", () => inspectOffThread(badCrc), /CRC mismatch/);
    assert.equal((await inspectOffThread(framed)).blocks, 1, "and the whole one is read");
  });

  test("S2 framing: no stream identifier, a bad one, reserved chunk types, chunks that cannot be", async () => {
    await refuses("an empty input", () => inspect(Buffer.alloc(0)), /before the stream identifier/);
    await refuses("a stream identifier only", () => inspect(Identifier), /empty/);
    await refuses("a tar with no S2 framing", () => new ArchiveInspector().push(Buffer.alloc(1024)), /not an S2 stream.*type 0x00/);
    await refuses("gzip", () => new S2Decoder().push(Buffer.from([0x1f, 0x8b, 8, 0]), () => {}), /not an S2 stream/);
    await refuses("a wrong magic", () => new S2Decoder().push(Buffer.from([0xff, 6, 0, 0, ...Buffer.from("S2sTwX")]), () => {}), /bad stream identifier/);
    await refuses("an identifier of 7 bytes", () => new S2Decoder().push(Buffer.from([0xff, 7, 0, 0]), () => {}), /length is 7/);
    for (const type of [0x02, 0x40, 0x7f]) {
      const err = await refuses(`reserved type ${type}`, () => new S2Decoder().push(Buffer.concat([Identifier, chunkHeader(type, 3), Buffer.alloc(3)]), () => {}), /reserved unskippable/);
      assert.equal(err.offset, 10, "the offset of the bad chunk");
    }
    // Skippable chunks are skipped, whatever their length.
    const skippable = Buffer.concat([Identifier, chunkHeader(0x80, 5), Buffer.alloc(5), chunkHeader(0xfe, 0), frameUncompressed(Buffer.from("abc")).subarray(10)]);
    assert.equal(decodeAll(skippable).bytes.toString(), "abc");
    await refuses("a compressed chunk of 3 bytes", () => new S2Decoder().push(Buffer.concat([Identifier, chunkHeader(0x00, 3), Buffer.alloc(3)]), () => {}), /cannot hold its checksum/);
  });

  test("declared lengths too large are refused at the header, before anything is allocated", async () => {
    const before = process.memoryUsage().arrayBuffers;
    // A 16 MiB compressed chunk; a 5 MiB uncompressed one; blocks declaring 4 MiB + 1 and 2^32.
    await refuses("a 16 MiB chunk", () => new S2Decoder().push(Buffer.concat([Identifier, chunkHeader(0x00, 0xffffff)]), () => {}), /larger than a 4194304-byte block/);
    await refuses("a 5 MiB uncompressed chunk", () => new S2Decoder().push(Buffer.concat([Identifier, chunkHeader(0x01, 5 << 20)]), () => {}), /more than the largest block/);
    await refuses("a block declaring 4 MiB + 1", () => new S2Decoder().push(Buffer.concat([Identifier, compressedChunk([...uvarint((4 << 20) + 1), 0], Buffer.alloc(0))]), () => {}), /declares 4194305 bytes/);
    await refuses("a block declaring 2^32", () => new S2Decoder().push(Buffer.concat([Identifier, compressedChunk([...uvarint(2 ** 32), 0], Buffer.alloc(0))]), () => {}), /not a valid uvarint/);
    await refuses("a 6-byte uvarint", () => new S2Decoder().push(Buffer.concat([Identifier, compressedChunk([0x81, 0x80, 0x80, 0x80, 0x80, 0], Buffer.alloc(0))]), () => {}), /not a valid uvarint/);
    await refuses("maxBlockSize 64 KiB", () => new S2Decoder({ maxBlockSize: 65536 }).push(frameUncompressed(Buffer.alloc(70_000), 70_000), () => {}), /more than the largest block \(65536\)/);
    await refuses("a Snappy frame's block above 64 KiB", () => new S2Decoder().push(Buffer.concat([Buffer.from([0xff, 6, 0, 0, ...Buffer.from("sNaPpY")]), frameUncompressed(Buffer.alloc(70_000), 70_000).subarray(10)]), () => {}), /Snappy-framed block/);
    assert.ok(process.memoryUsage().arrayBuffers - before < 4 << 20, "no buffer of the declared size was made");
  });

  test("blocks: copies before the block's start, repeats before any offset, literals and copies past the end", async () => {
    const abcd = Buffer.from("abcd");
    const bad: [string, number[], Uint8Array, RegExp][] = [
      // literal "abcd" (tag 3<<2), then copy2 of 4 bytes from 10 back
      ["an offset before the block's start", [8, 3 << 2, ...abcd, (3 << 2) | 2, 10, 0], Buffer.from("abcdabcd"), /from 10 back, at output 4/],
      ["a copy4 offset of 2^32-1", [8, 3 << 2, ...abcd, (3 << 2) | 3, 0xff, 0xff, 0xff, 0xff], Buffer.from("abcdabcd"), /from 4294967295 back/],
      ["a repeat before any offset", [8, 3 << 2, ...abcd, 1, 0], Buffer.from("abcdabcd"), /from 0 back/],
      ["a copy past the declared length", [6, 3 << 2, ...abcd, (3 << 2) | 2, 4, 0], Buffer.from("abcdab"), /copy of 4 bytes/],
      ["a literal past the declared length", [2, 3 << 2, ...abcd], Buffer.from("ab"), /literal of 4 bytes runs past/],
      ["a literal past the block's end", [8, 7 << 2, ...abcd], Buffer.alloc(8), /literal of 8 bytes runs past/],
      ["a literal length past the block's end", [8, 61 << 2, 1], Buffer.alloc(8), /literal's length runs past/],
      ["a copy cut short", [8, 3 << 2, ...abcd, (3 << 2) | 3, 4, 0], Buffer.alloc(8), /copy runs past/],
      ["a repeat's length cut short", [12, 3 << 2, ...abcd, (3 << 2) | 2, 4, 0, (7 << 2) | 1, 0, 1], Buffer.alloc(12), /repeat runs past/],
      ["a block shorter than declared", [9, 3 << 2, ...abcd], Buffer.from("abcd"), /decodes to 4 bytes, not the 9/],
    ];
    for (const [what, block, decoded, pattern] of bad) {
      await refuses(what, () => decodeAll(Buffer.concat([Identifier, compressedChunk(block, decoded)])), pattern);
    }
    // The same elements done right decode: a copy and an overlapping repeat of offset 4.
    const good = Buffer.concat([Identifier, compressedChunk([16, 3 << 2, ...abcd, (0 << 2) | 1, 4, (4 << 2) | 1, 0], Buffer.from("abcd".repeat(4)))]);
    assert.equal(decodeAll(good).bytes.toString(), "abcd".repeat(4));
  });

  test("a bad CRC, in compressed and uncompressed chunks", async () => {
    const framed = frameUncompressed(Buffer.from("hello, world"));
    framed[14]! ^= 1;
    await refuses("uncompressed", () => decodeAll(framed), /CRC mismatch in a uncompressed|CRC mismatch in an? uncompressed/);
    const compressed = Buffer.concat([Identifier, compressedChunk([4, 3 << 2, ...Buffer.from("abcd")], Buffer.from("abce"))]);
    await refuses("compressed", () => decodeAll(compressed), /CRC mismatch in a compressed/);
  });

  test("errors are sticky: the next push and end throw the same error", () => {
    const d = new S2Decoder();
    assert.throws(() => d.push(Buffer.from([0x00, 0, 0, 0]), () => {}), ArchiveError);
    assert.throws(() => d.push(Identifier, () => {}), /not an S2 stream/);
    assert.throws(() => d.end(), /not an S2 stream/);
  });

  test("real archives cut short anywhere are refused: inside a frame by the decoder, between frames as truncated", async () => {
    assert.ok(realArchives.length > 0, "the real archives were made");
    let cases = 0;
    for (const a of realArchives) {
      // 20 cuts spread over the archive, 6 in its last 40 bytes (the tar's end, the sentinel).
      const rnd = prng(a.archive.length);
      const cuts = new Set<number>();
      const step = Math.max(1, Math.floor(a.archive.length / 20));
      for (let cut = 0; cut < a.archive.length; cut += step) cuts.add(Math.min(a.archive.length - 1, cut + (rnd() % step)));
      for (let i = 0; i < 6; i++) cuts.add(Math.max(0, a.archive.length - 1 - (rnd() % 40)));
      for (const cut of cuts) {
        await refuses(`${a.server} ${a.stream} cut at ${cut} of ${a.archive.length}`, () => inspect(a.archive.subarray(0, cut), prng(cut)), /ends inside a frame|truncated|before the stream identifier|empty/);
        cases++;
      }
    }
    console.log(`# ${cases} truncations refused`);
  });

  test("tar: truncated, no end blocks, a bad checksum, data after the end, errors.txt reported", async () => {
    const files = [
      { name: "meta.inf", data: MetaInf },
      { name: "meta.sum", data: "0123456789abcdef" },
      { name: "msgs/1.blk", data: Buffer.alloc(3000, 7) },
      { name: "obs/C1/meta.inf", data: "{}" },
      { name: "obs/C1/o.dat", data: "x" },
    ];
    const tar = await tarOf(files);
    const ok = await inspect(frameUncompressed(tar));
    assert.deepEqual({ ...ok, config: undefined, compressedBytes: 0 }, {
      format: "v1",
      compressedBytes: 0,
      uncompressedBytes: tar.length,
      frames: Math.ceil(tar.length / 65536),
      entries: 5,
      blocks: 1,
      consumers: ["C1"],
      stream: "ORDERS",
      config: undefined,
      created: "2025-01-01T00:00:00Z",
    });
    assert.deepEqual(ok.config, { name: "ORDERS", subjects: ["ORDERS.>"], storage: "file" });
    const dataEnd = tar.length - 1024; // before the two zero blocks
    await refuses("no end blocks", () => inspect(frameUncompressed(tar.subarray(0, dataEnd))), /tar: the tar is truncated: it ends without its end-of-archive blocks/);
    await refuses("one end block", () => inspect(frameUncompressed(tar.subarray(0, dataEnd + 512))), /truncated/);
    await refuses("cut inside a block file", () => inspect(frameUncompressed(tar.subarray(0, 2048 + 512 + 100))), /tar: the tar is truncated: it ends inside an entry/);
    const badSum = Buffer.from(tar);
    badSum[0]! ^= 1;
    await refuses("a bad checksum", () => inspect(frameUncompressed(badSum)), /checksum does not match/);
    await refuses("data after the end", () => inspect(frameUncompressed(Buffer.concat([tar, Buffer.from("x")]))), /tar: the tar is truncated/);
    assert.equal((await inspect(frameUncompressed(Buffer.concat([tar, Buffer.alloc(9216)])))).entries, 5, "zero padding after the end is fine");
    await refuses("meta.inf not JSON", async () => inspect(frameUncompressed(await tarOf([{ name: "meta.inf", data: "{" }]))), /meta.inf is not JSON/);
    // Servers up to 2.10 report a failed snapshot only as errors.txt: its first 4 KiB.
    const message = "Could not read message block [3]: " + "x".repeat(10_000);
    const withErrors = await inspect(frameUncompressed(await tarOf([...files.slice(0, 2), { name: "errors.txt", data: message }])));
    assert.equal(withErrors.errorsTxt, message.slice(0, 4096));
    // A long name (PAX path) is read as tar-stream writes it.
    const long = `obs/${"L".repeat(150)}/o.dat`;
    assert.deepEqual((await inspect(frameUncompressed(await tarOf([{ name: long, data: "x" }])))).consumers, ["L".repeat(150)]);
  });

  test("v2: state first, consumers as counted, sequences in order, the end sentinel present and last", async () => {
    const ok = await inspect(frameUncompressed(natsArc(v2Records())));
    assert.equal(ok.format, "v2");
    assert.equal(ok.messages, 3);
    assert.equal(ok.entries, 5);
    assert.deepEqual(ok.consumers, ["C1"]);
    assert.equal(ok.state?.last_seq, 4);
    const cases: [string, Buffer, RegExp][] = [
      ["sequences out of order", natsArc(v2Records({ seqs: [1, 3, 2] })), /v2 archive: message sequence 2 out of order \(after 3\)/],
      ["a repeated sequence", natsArc(v2Records({ seqs: [1, 1] })), /sequence 1 out of order/],
      ["a sequence before first_seq", natsArc(v2Records({ consumers: [], seqs: [1], state: { messages: 1, first_seq: 2, last_seq: 4 } })), /sequence 1 out of order/],
      ["no end sentinel", natsArc(v2Records(), false), /truncated: it ends without its end sentinel/],
      ["data after the sentinel", Buffer.concat([natsArc(v2Records()), Buffer.from([0])]), /data after the end sentinel/],
      ["a record after the sentinel", Buffer.concat([natsArc(v2Records()), natsArc(v2Records()).subarray(8)]), /data after the end sentinel/],
      ["state.json not first", natsArc(v2Records().slice(1)), /first record is "consumers\/C1", not state.json/],
      ["a consumer missing", natsArc(v2Records({ state: { messages: 3, first_seq: 1, last_seq: 4, consumer_count: 2 } })), /expected a consumer record, found "ORDERS.1"/],
      ["a sequence 0 that is no sentinel", natsArc([...v2Records(), { name: "X", seq: 0, payload: "" }]), /expected a message sequence, found 0/],
      ["state.json not JSON", natsArc([{ name: "state.json", payload: "{" }]), /state.json is not JSON/],
      ["an inconsistent state", natsArc(v2Records({ seqs: [], state: { messages: 5, first_seq: 1, last_seq: 2 } })), /inconsistent/],
      ["a name of 2 MiB", Buffer.concat([Buffer.from("NATSARC1"), Buffer.from([...uvarint(2 << 20), 0, 0, 0, 0])]), /record name of 2097152 bytes/],
      ["a varint of 11 bytes", Buffer.concat([Buffer.from("NATSARC1"), Buffer.alloc(10, 0xff), Buffer.from([1])]), /overflows 64 bits/],
      ["a varint of 11 bytes, a whole header's worth after it", Buffer.concat([Buffer.from("NATSARC1"), Buffer.alloc(10, 0xff), Buffer.alloc(64, 1)]), /overflows 64 bits/],
      ["a later field's varint of 11 bytes", Buffer.concat([Buffer.from("NATSARC1"), Buffer.from([10, 0, 0]), Buffer.alloc(10, 0x80), Buffer.alloc(64, 1)]), /overflows 64 bits/],
      ["cut inside a record", natsArc(v2Records()).subarray(0, 60), /truncated: it ends inside a record/],
      ["cut inside the magic", Buffer.from("NATSARC"), /truncated|tar/],
    ];
    // Blocks of 37 bytes read every record header a byte at a time; one block, in one go.
    for (const block of [37, 65536]) {
      for (const [what, bytes, pattern] of cases) await refuses(`${what} (blocks of ${block})`, () => inspect(frameUncompressed(bytes, block)), pattern);
    }
  });
});

describe("a seeded fuzz of mutations of real archives", { skip: tool.bin === null ? tool.reason : false }, () => {
  /** Random edits of `input`: bits flipped, bytes set, ranges cut, repeated or inserted, the end cut off. */
  function mutate(input: Buffer, rnd: () => number): Buffer {
    let b = Buffer.from(input);
    const edits = 1 + (rnd() % 4);
    for (let e = 0; e < edits && b.length > 0; e++) {
      const at = rnd() % b.length;
      const len = 1 + (rnd() % Math.min(64, b.length - at));
      switch (rnd() % 7) {
        case 0:
        case 1:
          b[at] = b[at]! ^ (1 << (rnd() % 8));
          break;
        case 2:
          b[at] = rnd() & 0xff;
          break;
        case 3:
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
          break;
        case 4:
          b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
          break;
        case 5:
          b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: len }, () => rnd() & 0xff)), b.subarray(at)]);
          break;
        default:
          b = b.subarray(0, at);
      }
    }
    return b;
  }

  test("every case decodes or throws ArchiveError, in bounded time and memory", async () => {
    const small = realArchives.filter((a) => a.stream === "SMALL" || a.stream === "EMPTY");
    // The real archives come from new streams each run (random payloads); the mutations are seeded.
    assert.ok(small.length >= 2, "small real archives were made");
    // Three layers to aim at: the server's S2 (fast), klauspost's best (repeats), and the
    // decoded tar / v2 framed with valid CRCs (so mutations reach the tar and v2 readers).
    const sources = small.flatMap((a) => [
      { what: `${a.server} ${a.stream} as sent`, bytes: a.archive, framed: false },
      { what: `${a.server} ${a.stream} best`, bytes: s2Encode(a.decoded, { level: "best", block: 8192 }), framed: false },
      { what: `${a.server} ${a.stream} decoded`, bytes: a.decoded, framed: true },
    ]);
    const rnd = prng(20260601);
    const start = performance.now();
    const mem0 = process.memoryUsage();
    let peakRss = mem0.rss;
    let peakArrayBuffers = mem0.arrayBuffers;
    const outcomes = { decoded: 0, refused: 0 };
    let cases = 0;
    for (; cases < 4000 && performance.now() - start < 20_000; cases++) {
      const source = sources[rnd() % sources.length]!;
      const mutated = mutate(source.bytes, rnd);
      const input = source.framed ? frameUncompressed(mutated, 1 + (rnd() % 4096)) : mutated;
      const t0 = performance.now();
      try {
        await inspect(input, prng(cases), 1 + (rnd() % 5000));
        outcomes.decoded++;
      } catch (err) {
        assert.ok(err instanceof ArchiveError, `case ${cases} (${source.what}): ${(err as Error).stack}`);
        outcomes.refused++;
      }
      assert.ok(performance.now() - t0 < 2_000, `case ${cases} (${source.what}) took ${performance.now() - t0} ms`);
      if (cases % 50 === 0) {
        const m = process.memoryUsage();
        peakRss = Math.max(peakRss, m.rss);
        peakArrayBuffers = Math.max(peakArrayBuffers, m.arrayBuffers);
      }
    }
    console.log(`# fuzz: ${cases} cases in ${((performance.now() - start) / 1000).toFixed(1)} s, ${outcomes.decoded} decoded, ${outcomes.refused} refused; rss +${((peakRss - mem0.rss) / 2 ** 20).toFixed(0)} MiB, arrayBuffers peak ${(peakArrayBuffers / 2 ** 20).toFixed(0)} MiB`);
    assert.ok(cases >= 1000, `at least 1000 cases ran (${cases})`);
    assert.ok(outcomes.refused > cases / 2, "most mutations are caught");
    assert.ok(peakRss - mem0.rss < 256 * 2 ** 20, `rss grew by ${peakRss - mem0.rss}`);
    assert.ok(peakArrayBuffers < 256 * 2 ** 20, `arrayBuffers peaked at ${peakArrayBuffers}`);
  });
});
