/**
 * `serve --tenants FILE`: the tenants file read, each tenant served by a `TenantHost`, the file
 * read again on SIGHUP and when it changes (a file that does not load is logged and the tenants
 * keep running as they were), and the tenants' states answered on `$BACKUP.tenants` on the admin
 * connection (the one `serve`'s own flags make).
 */
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service } from "@nats-io/services";
import type { Logger } from "pino";
import { JobSlots } from "../jobs/job-slots.ts";
import { packageVersion } from "../version.ts";
import type { BackupServiceOptions } from "../service/service.ts";
import { TenantHost, type TenantSpec } from "./tenant-host.ts";
import { tenantConnectionOptions } from "./tenant-connection.ts";
import { loadTenantsFile, type Tenant } from "./tenants-file.ts";

/** Where the admin connection answers the tenants' states. */
export const TenantsSubject = "$BACKUP.tenants";
export const AdminServiceName = "backup-admin";

export interface ServeTenantsOptions {
  file: string;
  /** The servers a tenant without its own `url` connects to. */
  servers: string;
  log: Logger;
  /** Jobs of every tenant running at once, shared fairly. */
  maxJobsTotal: number;
  /** Every tenant's service options unless the tenant's own entry says otherwise. */
  defaults: Omit<BackupServiceOptions, "tenant" | "slots" | "logger" | "connectionOptions">;
  /** Where `$BACKUP.tenants` is answered (an admin or system account's connection), if anywhere. */
  admin?: NatsConnection;
  backoffMs?: { first: number; max: number };
}

export interface ServedTenants {
  host: TenantHost;
  /** Reads the file again and applies it; rejects (and changes nothing) when it does not load. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

export async function serveTenants(opts: ServeTenantsOptions): Promise<ServedTenants> {
  const { log } = opts;
  const specs = async () => (await loadTenantsFile(opts.file)).tenants.map((t) => specOf(t, opts));
  const first = await specs(); // a bad file at start is an error of `serve` itself
  const host = new TenantHost({ log, slots: new JobSlots(opts.maxJobsTotal), ...(opts.backoffMs ? { backoffMs: opts.backoffMs } : {}) });
  await host.apply(first);

  let reloading = Promise.resolve();
  const reload = () =>
    (reloading = reloading.then(async () => {
      await host.apply(await specs());
    }));
  const reloadLogged = (why: string) =>
    void reload().catch((err: unknown) => log.error({ err, file: opts.file, why }, "the tenants file did not load; the tenants stay as they were"));

  const onHup = () => reloadLogged("SIGHUP");
  process.on("SIGHUP", onHup);
  // The folder is watched, not the file: editors replace files, which ends a watch on the file.
  let debounce: NodeJS.Timeout | undefined;
  const watcher: FSWatcher = watch(dirname(opts.file), (_event, name) => {
    if (name !== basename(opts.file)) return;
    clearTimeout(debounce);
    debounce = setTimeout(() => reloadLogged("the file changed"), 200);
  });
  watcher.on("error", (err) => log.warn({ err }, "cannot watch the tenants file; SIGHUP still reloads it"));

  let admin: Service | undefined;
  if (opts.admin) {
    admin = await new Svcm(opts.admin).add({
      name: AdminServiceName,
      version: packageVersion,
      description: "nats-backup: the tenants this process serves, and their states",
    });
    admin.addEndpoint("tenants", {
      subject: TenantsSubject,
      metadata: { description: "Every tenant of this process: serving, connecting or retrying (with the last error)" },
      handler: (err, msg) => {
        if (!err) msg.respond(JSON.stringify({ tenants: host.status() }));
      },
    });
  }

  return {
    host,
    reload,
    stop: async () => {
      process.off("SIGHUP", onHup);
      clearTimeout(debounce);
      watcher.close();
      await admin?.stop();
      await reloading.catch(() => {});
      await host.stop();
    },
  };
}

/** A tenants file entry as the host runs it: its connection options, and its service's options over the defaults. */
function specOf(tenant: Tenant, opts: ServeTenantsOptions): TenantSpec {
  const limits = tenant.limits ?? {};
  const retention = {
    ...opts.defaults.retention,
    ...(limits.keep_last !== undefined ? { keep_last: limits.keep_last } : {}),
    ...(limits.max_age !== undefined ? { max_age: limits.max_age } : {}),
  };
  return {
    name: tenant.name,
    source: tenant,
    connection: tenantConnectionOptions(tenant, opts.servers),
    service: {
      ...opts.defaults,
      ...(tenant.bucket !== undefined ? { bucket: tenant.bucket } : {}),
      ...(tenant.replicas !== undefined ? { replicas: tenant.replicas } : {}),
      ...(tenant.domain !== undefined ? { domain: tenant.domain } : {}),
      ...(limits.max_jobs !== undefined ? { maxJobs: limits.max_jobs } : {}),
      ...(limits.max_backup_bytes !== undefined ? { maxBackupBytes: limits.max_backup_bytes } : {}),
      ...(Object.keys(retention).length > 0 ? { retention } : {}),
    },
  };
}
