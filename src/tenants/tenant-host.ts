/**
 * Many tenants (accounts) in one process: for each, a connection as that account and a backup
 * service on it (`startBackupService`, the same as a single-account `serve`), so that each
 * account calls `$BACKUP.*` in its own subject space and its backups live in its own bucket under
 * its own JetStream limits. The server does not let one account snapshot another's streams
 * (nats-server #2477): the service acts inside each account with that account's credentials.
 *
 * A tenant that cannot connect, or whose connection closes for good (credentials revoked), is
 * retried with backoff without holding up the others, and its state is reported (`status`). A new
 * tenants list is applied tenant by tenant: added ones start, removed ones stop, changed ones
 * restart; unchanged ones are left running.
 */
import { isDeepStrictEqual } from "node:util";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { connect } from "@nats-io/transport-node";
import type { JobSlots } from "../jobs/job-slots.ts";
import { startBackupService, type BackupService, type BackupServiceOptions } from "../service/service.ts";

/** What the host needs of one tenant: its name, how to connect as it, and its service's options. */
export interface TenantSpec {
  name: string;
  /** What the tenant was made from (its tenants file entry): a tenant whose source changed is restarted on apply. */
  source: unknown;
  connection: NodeConnectionOptions;
  /** Options of its backup service (bucket, replicas, limits, retention); the host adds tenant, slots and logger. */
  service: Omit<BackupServiceOptions, "tenant" | "slots" | "logger" | "connectionOptions">;
}

export type TenantState = "connecting" | "serving" | "retrying" | "stopped";

export interface TenantStatus {
  name: string;
  state: TenantState;
  /** When it entered this state. */
  since: string;
  /** The service instance id while serving. */
  instance?: string;
  bucket?: string;
  /** Why it is not serving (retrying): the last error. */
  error?: string;
  /** Failed tries in a row. */
  attempts: number;
  /** When it tries again (retrying). */
  next_attempt?: string;
}

export interface TenantHostOptions {
  log: Logger;
  /** The job limit every tenant's service shares. */
  slots: JobSlots;
  /** Options every tenant's service gets unless its own say otherwise (shutdown grace, tuning). */
  serviceDefaults?: Omit<BackupServiceOptions, "tenant" | "slots" | "logger" | "connectionOptions">;
  /** Backoff between tries: the first delay and the most (doubling in between). */
  backoffMs?: { first: number; max: number };
}

const DefaultBackoff = { first: 1_000, max: 60_000 } as const;

export class TenantHost {
  readonly #tenants = new Map<string, Tenant>();
  #stopped = false;

  constructor(private readonly opts: TenantHostOptions) {}

  /** Serves exactly `specs` from now on; resolves once removed and changed tenants stopped (new ones connect in the background). */
  async apply(specs: TenantSpec[]): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    if (this.#stopped) throw new Error("the tenant host is stopped");
    const wanted = new Map(specs.map((s) => [s.name, s]));
    const added: string[] = [];
    const removed: string[] = [];
    const changed: string[] = [];
    for (const [name, tenant] of this.#tenants) {
      const spec = wanted.get(name);
      if (spec && isDeepStrictEqual(spec.source, tenant.spec.source)) continue;
      (spec ? changed : removed).push(name);
      await tenant.stop();
      this.#tenants.delete(name);
    }
    for (const spec of specs) {
      if (this.#tenants.has(spec.name)) continue;
      if (!changed.includes(spec.name)) added.push(spec.name);
      const tenant = new Tenant(spec, this.opts);
      this.#tenants.set(spec.name, tenant);
      tenant.start();
    }
    this.opts.log.info({ added, removed, changed, tenants: specs.length }, "tenants applied");
    return { added, removed, changed };
  }

  status(): TenantStatus[] {
    return [...this.#tenants.values()].map((t) => t.status());
  }

  /** A tenant's running service, if it is serving. */
  service(name: string): BackupService | undefined {
    return this.#tenants.get(name)?.service;
  }

  /** Waits until every tenant has tried to connect once (served, or retrying). */
  async settled(): Promise<void> {
    await Promise.all([...this.#tenants.values()].map((t) => t.firstTry));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#tenants.values()].map((t) => t.stop()));
    this.#tenants.clear();
  }
}

/** One tenant: connects, serves, and after a failure or a lost connection tries again with backoff. */
class Tenant {
  service: BackupService | undefined;
  readonly firstTry: Promise<void>;
  #resolveFirstTry!: () => void;
  #nc: NatsConnection | undefined;
  #state: TenantState = "connecting";
  #since = new Date();
  #error: string | undefined;
  #attempts = 0;
  #nextAttempt: Date | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  readonly #log: Logger;

  constructor(
    readonly spec: TenantSpec,
    private readonly opts: TenantHostOptions,
  ) {
    this.#log = opts.log.child({ tenant: spec.name });
    this.firstTry = new Promise((resolve) => (this.#resolveFirstTry = resolve));
  }

  start(): void {
    this.#loop = this.#run();
  }

  status(): TenantStatus {
    return {
      name: this.spec.name,
      state: this.#state,
      since: this.#since.toISOString(),
      ...(this.service ? { instance: this.service.id, bucket: this.service.bucket } : {}),
      ...(this.#error ? { error: this.#error } : {}),
      attempts: this.#attempts,
      ...(this.#state === "retrying" && this.#nextAttempt ? { next_attempt: this.#nextAttempt.toISOString() } : {}),
    };
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    const { service } = this;
    this.service = undefined;
    await service?.stop().catch((err: unknown) => this.#log.warn({ err }, "the tenant's service did not stop cleanly"));
    await this.#nc?.close().catch(() => {});
    await this.#loop;
    this.#set("stopped");
  }

  async #run(): Promise<void> {
    const backoff = this.opts.backoffMs ?? DefaultBackoff;
    while (!this.#stopping) {
      try {
        this.#set("connecting");
        // The tenant's own connection: it does not reconnect forever on its own, so that a
        // revoked or unreachable tenant comes back here and is reported.
        const nc = await connect({ ...this.spec.connection, name: `nats-backup-${this.spec.name}`, maxReconnectAttempts: 10 });
        this.#nc = nc;
        if (this.#stopping) break;
        this.service = await startBackupService(nc, {
          ...this.opts.serviceDefaults,
          ...this.spec.service,
          tenant: this.spec.name,
          slots: this.opts.slots,
          logger: this.opts.log,
          connectionOptions: this.spec.connection,
        });
        this.#attempts = 0;
        this.#error = undefined;
        this.#set("serving");
        this.#log.info({ server: nc.getServer(), instance: this.service.id, bucket: this.service.bucket }, "tenant served");
        this.#resolveFirstTry();
        const closed = await nc.closed();
        if (this.#stopping) break;
        const service = this.service;
        this.service = undefined;
        await service?.stop().catch(() => {});
        throw closed ?? new Error("the connection closed");
      } catch (err) {
        if (this.#stopping) break;
        await this.#nc?.close().catch(() => {});
        this.#attempts++;
        this.#error = (err as Error).message;
        const delay = Math.min(backoff.max, backoff.first * 2 ** Math.min(16, this.#attempts - 1));
        this.#nextAttempt = new Date(Date.now() + delay);
        this.#set("retrying");
        this.#log.warn({ error: this.#error, attempts: this.#attempts, retry_in_ms: delay }, "tenant not served; trying again");
        this.#resolveFirstTry();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
    this.#resolveFirstTry();
  }

  #set(state: TenantState): void {
    if (state !== this.#state) this.#since = new Date();
    this.#state = state;
  }
}
