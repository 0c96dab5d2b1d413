/**
 * Latency of the service's cheap requests while it works: one request at a time, alternating
 * `$SRV.PING.backup` and `$BACKUP.list`, until stopped.
 */
import type { NatsConnection } from "@nats-io/nats-core";

export interface LatencySamples {
  ping: number[];
  list: number[];
  pingErrors: number;
  listErrors: number;
}

export function emptySamples(): LatencySamples {
  return { ping: [], list: [], pingErrors: 0, listErrors: 0 };
}

export class LatencySampler {
  readonly samples = emptySamples();
  #stopped = false;
  #loop: Promise<void> | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs = 5_000,
  ) {}

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<LatencySamples> {
    this.#stopped = true;
    await this.#loop;
    return this.samples;
  }

  async #run(): Promise<void> {
    for (let i = 0; !this.#stopped; i++) {
      const list = i % 2 === 1;
      const t0 = performance.now();
      try {
        const reply = await this.nc.request(list ? "$BACKUP.list" : "$SRV.PING.backup", list ? "{}" : "", {
          timeout: this.timeoutMs,
        });
        const ms = performance.now() - t0;
        if (reply.headers?.get("Nats-Service-Error-Code")) throw new Error(reply.string());
        (list ? this.samples.list : this.samples.ping).push(ms);
      } catch {
        if (list) this.samples.listErrors++;
        else this.samples.pingErrors++;
      }
    }
  }
}

/** The same, for a fixed number of requests while the service is idle. */
export async function idleLatency(nc: NatsConnection, count: number): Promise<LatencySamples> {
  const sampler = new LatencySampler(nc);
  sampler.start();
  while (sampler.samples.ping.length + sampler.samples.list.length + sampler.samples.pingErrors + sampler.samples.listErrors < count) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return sampler.stop();
}
