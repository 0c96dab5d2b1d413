/**
 * Holds a child service's snapshot acks back for exactly as long as the server takes to give up:
 * the service is frozen (SIGSTOP) the moment it asks for a snapshot of the stream, and thawed once
 * the server's snapshot-complete advisory says that snapshot ended, whichever way. A frozen service
 * reads and acks nothing, so a server with flow control (2.10.12+) ends the snapshot with 408 after
 * its own limit, and one without sends everything; no timing is guessed. Every request is frozen
 * for (a service that lost its watch asks again). A request the server refuses thaws it at once.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { ServiceProcess } from "./proc-service.ts";

export interface FrozenSnapshot {
  /** How long the service was frozen. */
  frozenMs: number;
  /** The advisory's `error` (2.15+ name the failure there), or how the freeze ended otherwise. */
  ended: string;
}

export class SnapshotFreezer {
  readonly frozen: FrozenSnapshot[] = [];
  readonly #subs: Subscription[] = [];
  /** Ends seen before their request: the server can answer and finish a tiny snapshot before it hands the test its copy of the request. */
  readonly #endedEarly: string[] = [];
  #frozenAt = 0;
  #guard: NodeJS.Timeout | undefined;

  private constructor(
    private readonly svc: ServiceProcess,
    private readonly maxFreezeMs: number,
  ) {}

  /** `maxFreezeMs` bounds each freeze, should the server never end the snapshot. */
  static async start(nc: NatsConnection, svc: ServiceProcess, stream: string, maxFreezeMs = 60_000): Promise<SnapshotFreezer> {
    const freezer = new SnapshotFreezer(svc, maxFreezeMs);
    freezer.#subs.push(
      nc.subscribe(`$JS.API.STREAM.SNAPSHOT.${stream}`, {
        callback: (err, msg) => {
          if (err) return;
          const early = freezer.#endedEarly.shift();
          if (early !== undefined) return void freezer.frozen.push({ frozenMs: 0, ended: `${early}, before its request was seen` });
          freezer.#freeze();
          // The server's answer goes to the frozen service; a copy tells whether it went ahead.
          if (msg.reply) {
            freezer.#subs.push(
              nc.subscribe(msg.reply, {
                max: 1,
                callback: (_, answer) => {
                  if (/"error"/.test(answer.string())) freezer.#thaw(`refused: ${answer.string()}`);
                },
              }),
            );
          }
        },
      }),
      nc.subscribe(`$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_COMPLETE.${stream}`, {
        callback: (err, msg) => {
          if (err) return;
          const { error } = JSON.parse(msg.string()) as { error?: string };
          const ended = error ? `error: ${error}` : "complete";
          if (freezer.#frozenAt) freezer.#thaw(ended);
          else freezer.#endedEarly.push(ended);
        },
      }),
    );
    await nc.flush();
    return freezer;
  }

  #freeze(): void {
    this.svc.pause();
    this.#frozenAt = Date.now();
    this.#guard = setTimeout(() => this.#thaw(`not ended within ${this.maxFreezeMs} ms`), this.maxFreezeMs);
  }

  #thaw(ended: string): void {
    if (!this.#frozenAt) return;
    clearTimeout(this.#guard);
    this.svc.resume();
    this.frozen.push({ frozenMs: Date.now() - this.#frozenAt, ended });
    this.#frozenAt = 0;
  }

  /** Thaws the service if frozen and listens no more. */
  stop(): void {
    this.#thaw("stopped");
    for (const s of this.#subs) s.unsubscribe();
  }
}
