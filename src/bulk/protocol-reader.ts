/**
 * The server-to-client half of the NATS protocol, parsed incrementally from socket reads. A
 * message's payload is handed on in the pieces the socket delivered (views into its buffers,
 * valid during the call), never assembled: bulk data is hashed where it lands, without the
 * copies and garbage a general client makes of every payload that spans two reads.
 */

/** What the reader found, in order. */
export interface ProtocolEvents {
  info(json: string): void;
  ping(): void;
  pong(): void;
  /** `-ERR`: the server's text, quotes removed. */
  error(text: string): void;
  /** A message begins; `size` payload bytes follow in `part` calls (none when 0), then `end`. */
  begin(sid: number, subject: string, reply: string | undefined, headers: Uint8Array | undefined, size: number): void;
  part(sid: number, bytes: Uint8Array): void;
  end(sid: number): void;
}

export class ProtocolError extends Error {}

/** Longest control line accepted (INFO carries cluster URLs; a MSG line its subjects). */
const MaxLine = 64 * 1024;
const NL = 0x0a;
const CR = 0x0d;

const State = {
  Line: 0,
  Headers: 1,
  Payload: 2,
  Trailer: 3,
} as const;
type State = (typeof State)[keyof typeof State];

export class ProtocolReader {
  #state: State = State.Line;
  /** Pieces of a control line that spans reads (copied: the socket may reuse its buffer). */
  #line: Buffer[] = [];
  #lineLength = 0;
  #sid = 0;
  #subject = "";
  #reply: string | undefined;
  #headers: Buffer | undefined;
  #headersFilled = 0;
  #payloadSize = 0;
  #payloadLeft = 0;
  #trailerLeft = 0;

  constructor(private readonly events: ProtocolEvents) {}

  /** Consumes one socket read. Throws ProtocolError on anything it cannot parse. */
  feed(buf: Buffer): void {
    let i = 0;
    const n = buf.length;
    while (i < n) {
      switch (this.#state) {
        case State.Line: {
          const nl = buf.indexOf(NL, i);
          if (nl < 0) {
            this.#keepLinePiece(buf.subarray(i));
            return;
          }
          let line: Buffer;
          if (this.#line.length > 0) {
            this.#keepLinePiece(buf.subarray(i, nl));
            line = Buffer.concat(this.#line, this.#lineLength);
            this.#line = [];
            this.#lineLength = 0;
          } else {
            line = buf.subarray(i, nl);
          }
          i = nl + 1;
          this.#controlLine(line.length > 0 && line[line.length - 1] === CR ? line.subarray(0, line.length - 1) : line);
          break;
        }
        case State.Headers: {
          const headers = this.#headers as Buffer;
          const take = Math.min(headers.length - this.#headersFilled, n - i);
          buf.copy(headers, this.#headersFilled, i, i + take);
          this.#headersFilled += take;
          i += take;
          if (this.#headersFilled === headers.length) this.#startPayload();
          break;
        }
        case State.Payload: {
          const take = Math.min(this.#payloadLeft, n - i);
          this.#payloadLeft -= take;
          this.events.part(this.#sid, buf.subarray(i, i + take));
          i += take;
          if (this.#payloadLeft === 0) this.#state = State.Trailer;
          break;
        }
        case State.Trailer: {
          const take = Math.min(this.#trailerLeft, n - i);
          i += take;
          this.#trailerLeft -= take;
          if (this.#trailerLeft === 0) {
            this.#state = State.Line;
            this.events.end(this.#sid);
          }
          break;
        }
      }
    }
  }

  #keepLinePiece(piece: Buffer): void {
    this.#lineLength += piece.length;
    if (this.#lineLength > MaxLine) throw new ProtocolError(`a protocol line longer than ${MaxLine} bytes`);
    this.#line.push(Buffer.from(piece));
  }

  #controlLine(line: Buffer): void {
    const text = line.toString("utf8");
    const space = text.indexOf(" ");
    const op = (space < 0 ? text : text.slice(0, space)).toUpperCase();
    const rest = space < 0 ? "" : text.slice(space + 1).trim();
    switch (op) {
      case "MSG":
      case "HMSG":
        return this.#messageLine(op, rest);
      case "PING":
        return this.events.ping();
      case "PONG":
        return this.events.pong();
      case "+OK":
      case "":
        return;
      case "-ERR":
        return this.events.error(rest.replace(/^'|'$/g, ""));
      case "INFO":
        return this.events.info(rest);
      default:
        throw new ProtocolError(`unexpected protocol line ${JSON.stringify(text.slice(0, 80))}`);
    }
  }

  /** `MSG <subject> <sid> [reply] <size>` or `HMSG <subject> <sid> [reply] <header size> <total size>`. */
  #messageLine(op: "MSG" | "HMSG", args: string): void {
    const parts = args.split(/[ \t]+/);
    const sizes = op === "HMSG" ? 2 : 1;
    if (parts.length !== 2 + sizes && parts.length !== 3 + sizes) throw new ProtocolError(`malformed ${op} line ${JSON.stringify(args.slice(0, 200))}`);
    const numbers = parts.slice(parts.length - sizes).map(Number);
    const sid = Number(parts[1]);
    if (!Number.isSafeInteger(sid) || numbers.some((v) => !Number.isSafeInteger(v) || v < 0)) {
      throw new ProtocolError(`malformed ${op} line ${JSON.stringify(args.slice(0, 200))}`);
    }
    this.#sid = sid;
    this.#subject = parts[0] as string;
    this.#reply = parts.length === 3 + sizes ? parts[2] : undefined;
    const total = numbers[numbers.length - 1] as number;
    const headerSize = op === "HMSG" ? (numbers[0] as number) : 0;
    if (headerSize > total) throw new ProtocolError(`malformed ${op} line ${JSON.stringify(args.slice(0, 200))}`);
    this.#payloadSize = total - headerSize;
    if (headerSize > 0) {
      this.#headers = Buffer.allocUnsafe(headerSize);
      this.#headersFilled = 0;
      this.#state = State.Headers;
    } else {
      this.#headers = undefined;
      this.#startPayload();
    }
  }

  #startPayload(): void {
    this.#payloadLeft = this.#payloadSize;
    this.#trailerLeft = 2;
    this.#state = this.#payloadSize > 0 ? State.Payload : State.Trailer;
    this.events.begin(this.#sid, this.#subject, this.#reply, this.#headers, this.#payloadSize);
  }
}
