/**
 * Where an account operation's time goes, seen from the wire: the JetStream API requests made
 * during it (`$JS.API.>`, by kind, with the times of the first and last) and each snapshot's span,
 * from its STREAM.SNAPSHOT request to the last chunk ack (`$JS.SNAPSHOT.ACK.<stream>.<id>`). The
 * same for the CLI and the service, so their phases can be read side by side. Copies of requests
 * only: no chunk data reaches the bench.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { spread, type Spread } from "./stats.ts";

export interface ApiKindTrace {
  n: number;
  /** Seconds from the start of the operation. */
  first: number;
  last: number;
}

export interface TraceSummary {
  seconds: number;
  api: Record<string, ApiKindTrace>;
  /** STREAM.SNAPSHOT requests, and the spans of the snapshots whose chunks were acked. */
  snapshots?: RequestSeries & { acked?: AckedSpans };
  /** STREAM.RESTORE requests. */
  restores?: RequestSeries;
}

/** Requests of one kind, one per stream: how many, when the first and the last, the seconds between one and the next. */
export interface RequestSeries {
  streams: number;
  firstRequest: number;
  lastRequest: number;
  gap: Spread;
}

/** Snapshots with acked chunks (a tiny one is a single unacked chunk): seconds from request to last ack, their sum over the wall time. */
export interface AckedSpans {
  streams: number;
  span: Spread;
  overlap: number;
  lastAck: number;
}

/** STREAM.SNAPSHOT, CONSUMER.MSG.NEXT, INFO…: the request's kind without the stream and consumer names. */
export function apiKind(subject: string): string {
  const t = subject.split(".").slice(2);
  if (t[0] !== "STREAM" && t[0] !== "CONSUMER") return t.slice(0, 2).filter((x) => /^[A-Z]+$/.test(x)).join(".");
  const deep = ["MSG", "LEADER", "PEER", "DURABLE"].includes(t[1] ?? "");
  return t.slice(0, deep ? 3 : 2).join(".");
}

export class ApiTrace {
  #subs: Subscription[] = [];
  #t0 = 0;
  #api = new Map<string, ApiKindTrace>();
  #snapshotStart = new Map<string, number>();
  #lastAck = new Map<string, number>();
  #restoreAt: number[] = [];

  constructor(private readonly nc: NatsConnection) {}

  async start(): Promise<void> {
    this.#t0 = performance.now();
    const now = () => (performance.now() - this.#t0) / 1000;
    this.#subs.push(
      this.nc.subscribe("$JS.API.>", {
        callback: (_, msg) => {
          const at = now();
          const kind = apiKind(msg.subject);
          const k = this.#api.get(kind);
          if (k) {
            k.n++;
            k.last = at;
          } else this.#api.set(kind, { n: 1, first: at, last: at });
          const stream = msg.subject.split(".")[4] ?? "";
          if (kind === "STREAM.SNAPSHOT" && !this.#snapshotStart.has(stream)) this.#snapshotStart.set(stream, at);
          if (kind === "STREAM.RESTORE") this.#restoreAt.push(at);
        },
      }),
      this.nc.subscribe("$JS.SNAPSHOT.ACK.>", {
        callback: (_, msg) => {
          this.#lastAck.set(msg.subject.split(".")[3] ?? "", now());
        },
      }),
    );
    // Both subscriptions are in place on the server before the operation starts.
    await this.nc.flush();
  }

  async stop(seconds: number): Promise<TraceSummary> {
    // What the server sent before the operation's reply is delivered before the flush's pong.
    await this.nc.flush();
    for (const s of this.#subs) s.unsubscribe();
    const summary: TraceSummary = { seconds, api: Object.fromEntries([...this.#api].sort((a, b) => b[1].n - a[1].n)) };
    const snapshotAt = [...this.#snapshotStart.values()];
    if (snapshotAt.length) {
      const spans = [...this.#snapshotStart]
        .filter(([stream]) => this.#lastAck.has(stream))
        .map(([stream, at]) => ({ at, end: this.#lastAck.get(stream) as number }));
      const lengths = spans.map((s) => s.end - s.at);
      summary.snapshots = {
        ...series(snapshotAt),
        ...(spans.length
          ? {
              acked: {
                streams: spans.length,
                span: spread(lengths),
                overlap: lengths.reduce((a, b) => a + b, 0) / Math.max(1e-9, seconds),
                lastAck: Math.max(...spans.map((s) => s.end)),
              },
            }
          : {}),
      };
    }
    if (this.#restoreAt.length) summary.restores = series(this.#restoreAt);
    return summary;
  }
}

function series(at: number[]): RequestSeries {
  return {
    streams: at.length,
    firstRequest: at[0] as number,
    lastRequest: at[at.length - 1] as number,
    gap: spread(at.slice(1).map((t, i) => t - (at[i] as number))),
  };
}
