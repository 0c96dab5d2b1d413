/**
 * Endpoint statistics for asynchronous handlers. The micro library times only the synchronous
 * call and counts only errors thrown from it, and leaves `last_error` out until one happens;
 * `$SRV.STATS` must count every error reply and always carry `last_error` (ADR-32 schema).
 */
import type { Endpoint } from "@nats-io/services";

interface Counters {
  requests: number;
  errors: number;
  lastError: string;
  processingNs: number;
}

export class EndpointStats {
  readonly #counters = new Map<string, Counters>();
  /** What each endpoint reports as its stats' `data` (ADR-32: additional statistics), set by its handler. */
  readonly #data = new Map<string, unknown>();

  /** The endpoint's stats `data` from now on (kept small: `$SRV.STATS` sends it on every request). */
  setData(endpoint: string, data: unknown): void {
    this.#data.set(endpoint, data);
  }

  /** Runs one request's handling and counts it; `handle` resolves to the error it replied with, if any. */
  async track(endpoint: string, handle: () => Promise<{ code: number; description: string } | null>): Promise<void> {
    const started = process.hrtime.bigint();
    const error = await handle();
    const c = this.#get(endpoint);
    c.requests++;
    c.processingNs += Number(process.hrtime.bigint() - started);
    if (error) {
      c.errors++;
      c.lastError = `${error.code}:${error.description}`;
    }
  }

  /** The service's `statsHandler`: writes our counts over the library's for that endpoint. */
  readonly statsHandler = async (endpoint: Endpoint): Promise<unknown> => {
    // At run time the library passes its named endpoint, whose `stats` it then reports.
    const { name, stats } = endpoint as unknown as { name?: string; stats?: Record<string, unknown> };
    if (!name || !stats) return undefined;
    const c = this.#get(name);
    Object.assign(stats, {
      num_requests: c.requests,
      num_errors: c.errors,
      last_error: c.lastError,
      processing_time: c.processingNs,
      average_processing_time: c.requests ? Math.round(c.processingNs / c.requests) : 0,
    });
    // The library sets the endpoint's `data` to what this returns.
    return this.#data.get(name);
  };

  #get(endpoint: string): Counters {
    let c = this.#counters.get(endpoint);
    if (!c) this.#counters.set(endpoint, (c = { requests: 0, errors: 0, lastError: "", processingNs: 0 }));
    return c;
  }
}
