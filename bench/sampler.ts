/**
 * Latency of the service's cheap requests while it works: one request at a time, in turn
 * `bench.echo` (the baseline: a responder that does nothing, in its own process), `$SRV.PING.backup`
 * and `$BACKUP.list`, until stopped.
 */
import type { NatsConnection } from "@nats-io/nats-core";

export const SampledRequests = ["echo", "ping", "list"] as const;
export type SampledRequest = (typeof SampledRequests)[number];

const requests: Record<SampledRequest, { subject: string; body: string }> = {
  echo: { subject: "bench.echo", body: "" },
  ping: { subject: "$SRV.PING.backup", body: "" },
  list: { subject: "$BACKUP.list", body: "{}" },
};

/** Milliseconds per request, and failures. */
export type LatencySamples = Record<SampledRequest, number[]> & { errors: Record<SampledRequest, number> };

export function emptySamples(): LatencySamples {
  return { echo: [], ping: [], list: [], errors: { echo: 0, ping: 0, list: 0 } };
}

export function sampleCount(s: LatencySamples): number {
  return SampledRequests.reduce((n, k) => n + s[k].length + s.errors[k], 0);
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
      const kind = SampledRequests[i % SampledRequests.length]!;
      const { subject, body } = requests[kind];
      const t0 = performance.now();
      try {
        const reply = await this.nc.request(subject, body, { timeout: this.timeoutMs });
        const ms = performance.now() - t0;
        if (reply.headers?.get("Nats-Service-Error-Code")) throw new Error(reply.string());
        this.samples[kind].push(ms);
      } catch {
        this.samples.errors[kind]++;
      }
    }
  }
}

/** The same, for a fixed number of requests while the service is idle. */
export async function idleLatency(nc: NatsConnection, count: number): Promise<LatencySamples> {
  const sampler = new LatencySampler(nc);
  sampler.start();
  while (sampleCount(sampler.samples) < count) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return sampler.stop();
}
