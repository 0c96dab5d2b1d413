/**
 * The v2 archive (nats-server 2.15+, server/archive/archive.go, written by streamSnapshotV2 in
 * server/stream_backup.go), read as it goes by. After the magic `NATSARC1`, each record is
 * uvarint name length, varint timestamp, uvarint sequence, uvarint header size, uvarint payload
 * size, the name, then header+payload bytes. The server writes `state.json` (a StreamState:
 * messages, bytes, first/last sequence, consumer_count; no configuration), then consumer_count
 * records `consumers/<name>`, then one record per message (name: its subject; sequence > 0, in
 * increasing order), then an all-zero end sentinel, and nothing after it.
 *
 * Checked here as RestoreStreamV2 checks it (its order, state.json's consistency, the sentinel:
 * "backup was truncated"), plus nothing after the sentinel. Payloads are skipped, not kept.
 */
import { Capture, FormatError } from "./format-error.ts";

export const Magic = "NATSARC1";
/** archive.go's maxNameLen. */
const MaxNameLen = 1 << 20;
/** state.json is a small object; more than this is not the server's. */
const MaxStateJson = 1 << 20;
const MaxConsumers = 100_000;
const Int64Limit = 2 ** 63;
/** A record header's five uvarints at their longest (10 bytes each). */
const MaxHeader = 50;

const enum Phase {
  Magic,
  Header,
  Name,
  Payload,
  Ended,
}

const enum Expect {
  State,
  Consumer,
  Message,
}

export interface NatsArcContents {
  /** Records: state, consumers, messages (the sentinel not counted). */
  entries: number;
  messages: number;
  consumers: string[];
  state: Record<string, unknown>;
}

export class NatsArcReader {
  #pos = 0;
  #phase = Phase.Magic;
  #magicFill = 0;

  /** The record header being read: field index, its value so far, its bytes so far. */
  readonly #fields = [0, 0, 0, 0, 0];
  #field = 0;
  #value = 0;
  #scale = 1;
  #varintBytes = 0;
  #recordStart = 0;

  #name: Capture | null = null;
  #nameLeft = 0;
  #payloadLeft = 0;
  #payload: Capture | null = null;

  #expect = Expect.State;
  #consumersLeft = 0;
  #lastSeq = 0;
  #state: Record<string, unknown> | null = null;
  #entries = 0;
  #messages = 0;
  readonly #consumers: string[] = [];

  push(src: Uint8Array): void {
    let p = 0;
    const n = src.length;
    while (p < n) {
      switch (this.#phase) {
        case Phase.Magic:
          if (src[p] !== Magic.charCodeAt(this.#magicFill)) throw new FormatError("not a NATSARC1 archive", this.#pos);
          p++;
          this.#pos++;
          if (++this.#magicFill === Magic.length) this.#startRecord();
          break;
        case Phase.Header: {
          if (this.#field === 0 && this.#varintBytes === 0 && n - p >= MaxHeader) {
            p = this.#wholeHeader(src, p);
            break;
          }
          const b = src[p++]!;
          this.#pos++;
          this.#varint(b);
          break;
        }
        case Phase.Name: {
          const take = Math.min(this.#nameLeft, n - p);
          this.#name?.add(src, p, p + take);
          this.#nameLeft -= take;
          p += take;
          this.#pos += take;
          if (this.#nameLeft === 0) this.#onName();
          break;
        }
        case Phase.Payload: {
          const take = Math.min(this.#payloadLeft, n - p);
          this.#payload?.add(src, p, p + take);
          this.#payloadLeft -= take;
          p += take;
          this.#pos += take;
          if (this.#payloadLeft === 0) this.#onPayload();
          break;
        }
        case Phase.Ended:
          throw new FormatError("data after the end sentinel", this.#pos);
      }
    }
  }

  finish(): NatsArcContents {
    if (this.#phase !== Phase.Ended) {
      const where =
        this.#phase === Phase.Magic
          ? "inside the magic"
          : this.#phase === Phase.Header && this.#field === 0 && this.#varintBytes === 0
            ? "without its end sentinel"
            : "inside a record";
      throw new FormatError(`the archive is truncated: it ends ${where}`, this.#pos);
    }
    return { entries: this.#entries, messages: this.#messages, consumers: this.#consumers, state: this.#state! };
  }

  #startRecord(): void {
    this.#phase = Phase.Header;
    this.#field = 0;
    this.#value = 0;
    this.#scale = 1;
    this.#varintBytes = 0;
    this.#recordStart = this.#pos;
  }

  /**
   * A record header whole in `src` from `p` (the usual case): the same checks as #varint's, read
   * in one go instead of a call per byte. Returns where the header ends.
   */
  #wholeHeader(src: Uint8Array, p: number): number {
    const start = p;
    const fields = this.#fields;
    for (let f = 0; f < 5; f++) {
      let value = 0;
      let scale = 1;
      for (let bytes = 1; ; bytes++) {
        const b = src[p++]!;
        if (bytes === 10 && b > 1) throw new FormatError("a record header's varint overflows 64 bits", this.#pos + (p - 1 - start));
        value += (b & 0x7f) * scale;
        if (b < 0x80) break;
        scale *= 128;
      }
      fields[f] = value;
    }
    this.#pos += p - start;
    this.#field = 5;
    this.#onHeader();
    return p;
  }

  /** One byte of a header field (Go's binary.ReadUvarint: at most 10 bytes, the 10th at most 1). */
  #varint(b: number): void {
    this.#varintBytes++;
    if (this.#varintBytes === 10 && b > 1) throw new FormatError("a record header's varint overflows 64 bits", this.#pos - 1);
    this.#value += (b & 0x7f) * this.#scale;
    if (b >= 0x80) {
      this.#scale *= 128;
      return;
    }
    this.#fields[this.#field++] = this.#value;
    this.#value = 0;
    this.#scale = 1;
    this.#varintBytes = 0;
    if (this.#field === 5) this.#onHeader();
  }

  #onHeader(): void {
    // Indexed, not destructured: an array pattern goes through the iterator, per record.
    const f = this.#fields;
    const nameLen = f[0]!;
    const headerSize = f[3]!;
    const payloadSize = f[4]!;
    const at = this.#recordStart;
    if (nameLen > MaxNameLen) throw new FormatError(`a record name of ${nameLen} bytes (at most ${MaxNameLen})`, at);
    if (headerSize >= Int64Limit || payloadSize >= Int64Limit || headerSize + payloadSize >= Int64Limit) {
      throw new FormatError("a record's sizes are negative as int64", at);
    }
    // Names are kept only where they are read: state.json and consumers/<name>.
    this.#name = this.#expect === Expect.Message ? null : new Capture(nameLen);
    this.#nameLeft = nameLen;
    this.#phase = Phase.Name;
    if (nameLen === 0) this.#onName();
  }

  #onName(): void {
    const f = this.#fields;
    const nameLen = f[0]!;
    const timestamp = f[1]!;
    const seq = f[2]!;
    const headerSize = f[3]!;
    const payloadSize = f[4]!;
    const at = this.#recordStart;
    const name = this.#name?.text();
    this.#payload = null;
    switch (this.#expect) {
      case Expect.State:
        if (name !== "state.json") throw new FormatError(`the first record is ${JSON.stringify(name)}, not state.json`, at);
        if (headerSize + payloadSize > MaxStateJson) throw new FormatError(`state.json of ${headerSize + payloadSize} bytes`, at);
        this.#payload = new Capture(headerSize + payloadSize);
        break;
      case Expect.Consumer: {
        if (!name?.startsWith("consumers/")) throw new FormatError(`expected a consumer record, found ${JSON.stringify(name)}`, at);
        if (this.#consumers.length >= MaxConsumers) throw new FormatError(`more than ${MaxConsumers} consumers`, at);
        this.#consumers.push(name.slice("consumers/".length));
        if (--this.#consumersLeft === 0) this.#expect = Expect.Message;
        break;
      }
      case Expect.Message:
        if (seq === 0) {
          if (nameLen === 0 && timestamp === 0 && headerSize === 0 && payloadSize === 0) {
            this.#phase = Phase.Ended;
            return;
          }
          throw new FormatError("expected a message sequence, found 0", at);
        }
        if (seq <= this.#lastSeq) throw new FormatError(`message sequence ${seq} out of order (after ${this.#lastSeq})`, at);
        this.#lastSeq = seq;
        this.#messages++;
        break;
    }
    this.#entries++;
    this.#payloadLeft = headerSize + payloadSize;
    this.#phase = Phase.Payload;
    if (this.#payloadLeft === 0) this.#onPayload();
  }

  #onPayload(): void {
    if (this.#expect === Expect.State && this.#payload) this.#onState(this.#payload.text());
    this.#payload = null;
    this.#startRecord();
  }

  /** state.json, checked as RestoreStreamV2 checks it. */
  #onState(text: string): void {
    const at = this.#recordStart;
    let state: unknown;
    try {
      state = JSON.parse(text);
    } catch {
      throw new FormatError("state.json is not JSON", at);
    }
    if (typeof state !== "object" || state === null || Array.isArray(state)) throw new FormatError("state.json is not an object", at);
    const s = state as Record<string, unknown>;
    const count = (key: string): number => {
      const v = s[key] ?? 0;
      if (typeof v !== "number" || !Number.isInteger(v)) throw new FormatError(`state.json's ${key} is not a whole number`, at);
      return v;
    };
    const consumers = count("consumer_count");
    const [first, last, msgs] = [count("first_seq"), count("last_seq"), count("messages")];
    if (consumers < 0) throw new FormatError("state.json: negative consumer count", at);
    const consistent = first === 0 ? last === 0 && msgs === 0 : first > last ? first - 1 === last && msgs === 0 : msgs <= last - first + 1;
    if (!consistent) throw new FormatError("state.json: inconsistent message count or sequence range", at);
    this.#state = s;
    // The server starts at first_seq - 1 in uint64: with first_seq 0 every message is out of order.
    this.#lastSeq = first === 0 ? Infinity : first - 1;
    this.#consumersLeft = consumers;
    this.#expect = consumers > 0 ? Expect.Consumer : Expect.Message;
  }
}
