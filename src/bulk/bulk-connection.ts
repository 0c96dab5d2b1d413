/**
 * A NATS connection for one job's bulk reads: subscriptions whose payloads reach their handler in
 * the pieces the socket delivered, and small publishes (acks). It has no reconnect: data that
 * was in flight when a connection broke is gone either way, so its subscriptions are told
 * (`lost`) and the job decides. One per job, so that the server dropping a reader that fell
 * behind (a slow consumer) touches nothing else.
 *
 * Why not a second nats.js connection: its parser copies every payload that spans two socket
 * reads into a growing buffer; at snapshot rates those copies and their garbage took about a third
 * of the service's CPU, and a reader that cannot keep up with a snapshot loses it.
 */
import { connect as tcpConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { MsgHdrsImpl, type Auth, type Authenticator, type MsgHdrs, type NatsConnection, type ServerInfo } from "@nats-io/nats-core";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { packageVersion } from "../version.ts";
import { ProtocolReader, type ProtocolEvents } from "./protocol-reader.ts";
import { settingsLike, tlsCheck, tlsSettings, type BulkTlsOptions } from "./connection-settings.ts";

export interface BulkMessage {
  subject: string;
  reply?: string;
  headers?: MsgHdrs;
  /** Payload bytes that follow in `part` calls. */
  size: number;
}

/** Called synchronously, in order, from the socket's reads. */
export interface BulkHandler {
  begin(msg: BulkMessage): void;
  /** A piece of the payload: a view valid only during the call. */
  part(bytes: Uint8Array): void;
  end(): void;
  /** No more calls: the connection broke, or a call above threw (`err` is what it threw). */
  lost(err: Error): void;
}

/** A payload being relayed: `write` each piece as it is read, then `end`. */
export interface OutgoingPayload {
  write(bytes: Uint8Array): void;
  end(): void;
}

/**
 * Buffers for relayed messages, by size rounded up to 4 KiB (a relay's chunks are all one size
 * but the last), reused once written. Bounded: chunks in flight are bounded by the sender's
 * window, and beyond `keep` per size the rest go to the collector.
 */
class BufferPool {
  #free = new Map<number, Buffer[]>();
  constructor(private readonly keep = 64) {}

  take(size: number): Buffer {
    const cls = Math.ceil(size / 4096) * 4096;
    return this.#free.get(cls)?.pop() ?? Buffer.allocUnsafeSlow(cls);
  }

  give(buffer: Buffer): void {
    const list = this.#free.get(buffer.length) ?? [];
    if (list.length < this.keep) list.push(buffer);
    this.#free.set(buffer.length, list);
  }
}

export interface BulkSubscription {
  unsubscribe(): void;
}

export interface BulkConnectOptions {
  /** `host:port`, or a URL such as nats://host:port. */
  server: string;
  /** Shown by `nats server report connections`. */
  name: string;
  authenticator?: Authenticator;
  /**
   * TLS as nats.js takes it (CA, certificate and key as files or PEM, handshake first); node's
   * tls.connect options in it (rejectUnauthorized, servername, …) pass through as nats.js passes
   * them. An object: TLS is required. null: never TLS. Absent: TLS when the server offers it.
   */
  tls?: BulkTlsOptions | null;
  /** The host name the server's certificate must carry (default: the server's host). */
  tlsName?: string;
  /** The server is known to want TLS (its INFO to the main connection): connect ready to upgrade. */
  expectTls?: boolean;
  timeoutMs?: number;
}

/** Bytes one socket read can deliver (plain TCP). */
const ReadBufferBytes = 256 * 1024;

class TlsRequired extends Error {}

/** The server refused the connection's credentials: cannot authenticate as that user. */
const AuthRefusal = /^(Authorization Violation|User Authentication (Expired|Revoked)|Account Authentication Expired)/i;
/** `Permissions Violation for Subscription to "x"` (quoted from 2.2 on), `… for Publish to "x"`. */
const PermissionViolation = /^Permissions Violation for (Subscription|Publish) to "?([^"\s]+)"?/i;

/** The connection could not be made, or broke: 503, as any lost connection to NATS. */
export class BulkConnectionError extends BackupError {
  constructor(description: string) {
    super(ErrorCode.Unavailable, description);
  }

  /** `err`, named for the work it broke ("restore of stream ORDERS") when it is a BulkConnectionError. */
  static during(what: string, err: unknown): unknown {
    if (!(err instanceof BulkConnectionError)) return err;
    return new BackupError(ErrorCode.Unavailable, `${what} failed: ${err.description}; server restarted or connection lost?`, { cause: err });
  }
}

/**
 * The server refused what the data connection asked for (a subscription, a publish, its
 * credentials): 403, in the server's words and naming the permission the user lacks. Not a
 * BulkConnectionError: nothing is gained by trying again.
 */
export class BulkPermissionError extends BackupError {
  constructor(description: string) {
    super(403, description);
  }
}

export class BulkConnection {
  #socket: Socket;
  #reader: ProtocolReader;
  #handlers = new Map<number, { subject: string; handler: BulkHandler }>();
  #nextSid = 1;
  /** The handler of the message being read (undefined: unsubscribed, skip it). */
  #current: BulkHandler | undefined;
  #currentSid = 0;
  #pongs: { resolve: () => void; reject: (err: Error) => void }[] = [];
  #out: { data: string | Uint8Array; written: (() => void) | undefined }[] = [];
  #pool = new BufferPool();
  #failure: Error | null = null;
  #closed: Promise<Error | null>;
  #onClosed!: (err: Error | null) => void;
  /** While connecting: what the server's INFO and a failure do. */
  #handshake: { info: (info: ServerInfo) => void; fail: (err: Error) => void } | null = null;
  /** While the TLS handshake may fail: what the server's certificate is checked against, for errors. */
  #tlsCheck: string | null = null;

  private constructor(socket: Socket, readonly server: string) {
    this.#socket = socket;
    this.#closed = new Promise((resolve) => (this.#onClosed = resolve));
    this.#reader = new ProtocolReader(this.#events());
  }

  /**
   * A bulk connection to the server `nc` is connected to, with the credentials and TLS settings
   * of `options` (what `nc` was connected with; see settingsLike), named `<name>-data`.
   */
  static like(nc: NatsConnection, options?: NodeConnectionOptions, name?: string): Promise<BulkConnection> {
    try {
      const settings = settingsLike(nc, options);
      return BulkConnection.open({ ...settings, name: name ?? settings.name });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  static async open(opts: BulkConnectOptions): Promise<BulkConnection> {
    try {
      return await BulkConnection.#open(opts);
    } catch (err) {
      // Connected for plain TCP (reads into one reused buffer), but the server wants TLS.
      if (err instanceof TlsRequired) return BulkConnection.#open({ ...opts, expectTls: true });
      throw err;
    }
  }

  static async #open(opts: BulkConnectOptions): Promise<BulkConnection> {
    const { host, port } = hostPort(opts.server);
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const handshakeFirst = opts.tls?.handshakeFirst === true;
    const tlsName = opts.tlsName || host;
    // Without TLS the socket reads into one buffer, reused: no allocation per read, far less garbage.
    const plain = !handshakeFirst && !opts.expectTls && !opts.tls;
    let conn!: BulkConnection;
    let socket: Socket = handshakeFirst
      ? tlsConnect({ host, port, ...tlsSettings(opts.tls!, tlsName) })
      : tcpConnect({
          host,
          port,
          ...(plain ? { onread: { buffer: Buffer.allocUnsafe(ReadBufferBytes), callback: (n: number, buf: Uint8Array) => conn.#receive((buf as Buffer).subarray(0, n)) } } : {}),
        });
    socket.setNoDelay(true);
    conn = new BulkConnection(socket, `${host}:${port}`);
    if (handshakeFirst) conn.#tlsCheck = tlsCheck(opts.tls!, tlsName);
    let timer: NodeJS.Timeout | undefined;
    const handshake = new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new BulkConnectionError(`connecting to ${host}:${port} took more than ${timeoutMs / 1000}s`)), timeoutMs);
      let infoSeen = false;
      conn.#handshake = {
        info: (info) => {
          if (infoSeen) return;
          infoSeen = true;
          // As nats.js decides for the main connection: TLS when required, or offered and not refused (tls: null).
          const upgrade = !handshakeFirst && (info.tls_required === true || (info.tls_available === true && opts.tls !== null));
          if (!handshakeFirst && !upgrade && opts.tls) {
            return reject(new BulkConnectionError(`${host}:${port} does not offer TLS, which the connection's settings require`));
          }
          if (upgrade && plain) return reject(new TlsRequired(`${host}:${port} wants TLS`));
          if (upgrade) {
            socket.removeAllListeners("data");
            socket = tlsConnect({ socket, ...tlsSettings(opts.tls ?? {}, tlsName) });
            conn.#tlsCheck = tlsCheck(opts.tls ?? {}, tlsName);
            conn.#attach(socket, true);
          }
          const auth: Auth | Record<string, never> = opts.authenticator?.(info.nonce) ?? {};
          const connect = {
            verbose: false,
            pedantic: false,
            protocol: 1,
            headers: true,
            no_responders: true,
            lang: "nats-backup",
            version: packageVersion,
            name: opts.name,
            ...(upgrade || handshakeFirst ? { tls_required: true } : {}),
            ...auth,
          };
          conn.#write(`CONNECT ${JSON.stringify(connect)}\r\nPING\r\n`);
          conn.#pongs.push({ resolve, reject });
        },
        fail: reject,
      };
    });
    conn.#attach(socket, !plain);
    try {
      await handshake;
    } catch (err) {
      conn.close(err as Error);
      throw err;
    } finally {
      clearTimeout(timer);
      conn.#handshake = null;
      conn.#tlsCheck = null;
    }
    return conn;
  }

  /** Resolves when the connection is gone, with why (null: closed by this side without error). */
  get closed(): Promise<Error | null> {
    return this.#closed;
  }

  get isClosed(): boolean {
    return this.#failure !== null;
  }

  subscribe(subject: string, handler: BulkHandler): BulkSubscription {
    if (this.#failure) throw this.#failure;
    const sid = this.#nextSid++;
    this.#handlers.set(sid, { subject, handler });
    this.#write(`SUB ${subject} ${sid}\r\n`);
    return {
      unsubscribe: () => {
        if (!this.#handlers.delete(sid)) return;
        if (this.#current && this.#currentSid === sid) this.#current = undefined;
        if (!this.#failure) this.#write(`UNSUB ${sid}\r\n`);
      },
    };
  }

  /**
   * Replies to the requests this connection sends with reply subjects `<prefix>.<token>`: each
   * reply whole (replies are small: acks, errors), with the token of the request it answers.
   */
  subscribeReplies(prefix: string, handler: { reply(token: string, text: string): void; lost(err: Error): void }): BulkSubscription {
    const body: Buffer[] = [];
    let token = "";
    return this.subscribe(`${prefix}.*`, {
      begin: (msg) => {
        token = msg.subject.slice(prefix.length + 1);
        body.length = 0;
      },
      part: (bytes) => void body.push(Buffer.from(bytes)),
      end: () => handler.reply(token, Buffer.concat(body).toString()),
      lost: (err) => handler.lost(err),
    });
  }

  /** Publishes an empty message (an ack). */
  publish(subject: string): void {
    if (this.#failure) throw this.#failure;
    this.#write(`PUB ${subject} 0\r\n\r\n`);
  }

  /**
   * Publishes a message of `size` bytes with a reply subject, its payload written in as it is
   * read: for relaying a chunk. Each piece is copied at once (a part handed to a handler is a view
   * of a reused buffer) into a pooled buffer that goes back to the pool once the socket wrote it,
   * so a relay allocates nothing per chunk: at snapshot rates the allocations alone kept the
   * collector busy enough to stall the endpoints for tens of milliseconds.
   */
  publishPayload(subject: string, reply: string, size: number): OutgoingPayload {
    if (this.#failure) throw this.#failure;
    const head = Buffer.from(`PUB ${subject} ${reply} ${size}\r\n`);
    const total = head.length + size + 2;
    const buffer = this.#pool.take(total);
    head.copy(buffer);
    let at = head.length;
    return {
      write: (bytes) => {
        buffer.set(bytes, at);
        at += bytes.length;
      },
      end: () => {
        if (at !== head.length + size) throw new Error(`a relayed payload of ${size} bytes got ${at - head.length}`);
        buffer.write("\r\n", at, "latin1");
        if (this.#failure) return this.#pool.give(buffer);
        this.#write(buffer.subarray(0, total), () => this.#pool.give(buffer));
      },
    };
  }

  /** Resolves once the server has processed everything sent so far. */
  flush(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#pongs.push({ resolve, reject });
      this.#write("PING\r\n");
    });
  }

  close(err?: Error): void {
    if (this.#failure) return;
    this.#failure = err ?? new BulkConnectionError(`the data connection to ${this.server} was closed`);
    this.#socket.destroy();
    for (const pong of this.#pongs.splice(0)) pong.reject(this.#failure);
    const handlers = [...this.#handlers.values()];
    this.#handlers.clear();
    this.#current = undefined;
    for (const { handler } of handlers) handler.lost(this.#failure);
    this.#handshake?.fail(this.#failure);
    this.#onClosed(err ?? null);
  }

  /** Follows the socket's end; `withData`: its reads come as 'data' events (TLS) rather than into the reused buffer. */
  #attach(socket: Socket, withData: boolean): void {
    this.#socket = socket;
    if (withData) socket.on("data", (buf: Buffer) => this.#receive(buf));
    socket.on("error", (err) => {
      const tls = this.#tlsCheck === null ? "" : ` (TLS handshake; the server's certificate was checked ${this.#tlsCheck})`;
      this.close(new BulkConnectionError(`the data connection to ${this.server} failed: ${err.message}${tls}`));
    });
    socket.on("close", () => this.close(new BulkConnectionError(`the server closed the data connection (${this.server})`)));
  }

  /** Always true: keep reading (the server's flow control is the bound). */
  #receive(buf: Buffer): true {
    // (Parsing is synchronous, so a reused read buffer is free again when this returns.)
    if (this.#failure) return true;
    try {
      this.#reader.feed(buf);
    } catch (err) {
      this.close(new BulkConnectionError(`the data connection to ${this.server} failed: ${(err as Error).message}`));
    }
    return true;
  }

  #events(): ProtocolEvents {
    return {
      info: (json) => this.#handshake?.info(JSON.parse(json) as ServerInfo),
      ping: () => this.#write("PONG\r\n"),
      pong: () => this.#pongs.shift()?.resolve(),
      error: (text) => this.#serverError(text),
      begin: (sid, subject, reply, headers, size) => {
        const handler = this.#handlers.get(sid)?.handler;
        this.#current = handler;
        this.#currentSid = sid;
        if (!handler) return;
        const msg: BulkMessage = { subject, size };
        if (reply !== undefined) msg.reply = reply;
        // (MsgHdrsImpl is exported by the package's main entry: headers() cannot hold a status
        // line without a description, such as a 2.10 snapshot's end, "NATS/1.0 204".)
        if (headers) msg.headers = MsgHdrsImpl.decode(headers);
        this.#call(sid, handler, () => handler.begin(msg));
      },
      part: (sid, bytes) => {
        const handler = this.#current;
        if (handler) this.#call(sid, handler, () => handler.part(bytes));
      },
      end: (sid) => {
        const handler = this.#current;
        this.#current = undefined;
        if (handler) this.#call(sid, handler, () => handler.end());
      },
    };
  }

  /**
   * `-ERR`. A refused subscription (the server keeps the connection) fails the subscriptions on
   * that subject; a refused publish (an ack) or refused credentials end the connection, as 403s
   * in the server's words; anything else the server follows by closing the connection.
   */
  #serverError(text: string): void {
    const violation = PermissionViolation.exec(text);
    if (violation?.[1]?.toLowerCase() === "subscription") {
      const subject = violation[2]!;
      const refused = new BulkPermissionError(
        `the server refused the data connection's subscription to ${subject} (${text}): the user needs permission to subscribe to ${subject}`,
      );
      for (const [sid, entry] of [...this.#handlers]) {
        if (entry.subject !== subject) continue;
        this.#handlers.delete(sid);
        if (this.#currentSid === sid) this.#current = undefined;
        entry.handler.lost(refused);
      }
      return;
    }
    if (violation) {
      const subject = violation[2]!;
      return this.close(
        new BulkPermissionError(`the server refused the data connection's publish to ${subject} (${text}): the user needs permission to publish to ${subject}`),
      );
    }
    if (AuthRefusal.test(text)) {
      return this.close(new BulkPermissionError(`the server refused the data connection's credentials (${this.server}): ${text}`));
    }
    this.close(new BulkConnectionError(`the server refused the data connection's request: ${text}`));
  }

  /** A handler that throws is unsubscribed and told why. */
  #call(sid: number, handler: BulkHandler, call: () => void): void {
    try {
      call();
    } catch (err) {
      if (this.#handlers.get(sid)?.handler === handler) {
        this.#handlers.delete(sid);
        this.#current = undefined;
        if (!this.#failure) this.#write(`UNSUB ${sid}\r\n`);
      }
      handler.lost(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Writes are gathered and sent once per turn of the event loop, as one write of the socket; `written` once the socket is done with `data`. */
  #write(data: string | Uint8Array, written?: () => void): void {
    if (this.#out.push({ data, written }) === 1) {
      queueMicrotask(() => {
        const out = this.#out;
        this.#out = [];
        if (this.#socket.destroyed) return;
        this.#socket.cork();
        for (const item of out) this.#socket.write(item.data, item.written && (() => item.written!()));
        this.#socket.uncork();
      });
    }
  }
}

function hostPort(server: string): { host: string; port: number } {
  let url: URL;
  try {
    url = new URL(/^[a-z]+:\/\//i.test(server) ? server : `nats://${server}`);
  } catch {
    throw new BulkConnectionError(`cannot open a data connection to ${JSON.stringify(server)}: not a server address`);
  }
  return { host: url.hostname.replace(/^\[|\]$/g, ""), port: url.port ? Number(url.port) : 4222 };
}
