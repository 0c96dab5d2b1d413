/**
 * A tenant's connection options, built by the same code as `serve`'s (connect.ts), from the
 * tenant's own settings only: no flag, variable or nats context of the service leaks into them.
 */
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { connectionOptionsFrom } from "../connection/connect.ts";
import type { Tenant } from "./tenants-file.ts";

/**
 * Options to connect as `tenant`: its url, else `serviceServers` (the service's --server or
 * NATS_URL), and its creds, nkey, user+password or token and TLS settings. Reads the files it
 * names; `label` is how messages name the tenant (default `tenant "<name>"`).
 */
export function tenantConnectionOptions(
  tenant: Tenant,
  serviceServers: string | string[],
  label = `tenant ${JSON.stringify(tenant.name)}`,
): NodeConnectionOptions {
  const setting = (field: string, value: string | undefined) => (value === undefined ? undefined : { value, from: `${label}: ${field}` });
  return connectionOptionsFrom({
    servers: tenant.url ?? (Array.isArray(serviceServers) ? serviceServers.join(",") : serviceServers),
    creds: setting("creds", tenant.creds),
    nkey: setting("nkey", tenant.nkey),
    user: tenant.user,
    password: tenant.password,
    token: tenant.token,
    cert: setting("tls.cert", tenant.tls?.cert),
    key: setting("tls.key", tenant.tls?.key),
    ca: setting("tls.ca", tenant.tls?.ca),
    tlsFirst: tenant.tls?.first,
  });
}
