/**
 * What a job's data connection takes from the main connection: the server it is on, the host
 * name its TLS check used, its credentials and its TLS settings. Only public API: the server from
 * `nc.getServer()`/`getServers()`, TLS offered from `nc.info`, and the rest from the options the
 * application connected with (startBackupService's `connectionOptions`).
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { ConnectionOptions as TlsConnectionOptions } from "node:tls";
import { buildAuthenticator, type ConnectionOptions, type NatsConnection, type Server, type TlsOptions } from "@nats-io/nats-core";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { BulkConnectionError, type BulkConnectOptions } from "./bulk-connection.ts";

/** nats.js's TLS options, and node's tls.connect options, which nats.js passes through too. */
export type BulkTlsOptions = TlsOptions & Omit<TlsConnectionOptions, "ca" | "cert" | "key" | "socket" | "host" | "port">;

/**
 * Settings for a data connection like `nc`. `options` are those `nc` was connected with; when
 * the application gave none, nats.js's own copy on the connection is read (not part of its typed
 * API, so an application should pass them).
 */
export function settingsLike(nc: NatsConnection, options?: NodeConnectionOptions): BulkConnectOptions {
  const opts: NodeConnectionOptions = options ?? (nc as { options?: NodeConnectionOptions }).options ?? {};
  const servers = [opts.servers ?? []].flat();
  if (servers.some((url) => /^wss?:\/\//i.test(url))) {
    throw new BulkConnectionError(`bulk data needs a TCP connection to NATS; ${servers.join(", ")} is WebSocket`);
  }
  const server = nc.getServer();
  if (!server) throw new BulkConnectionError("not connected to NATS, so there is no server to open a data connection to");
  const pool = nc.getServers();
  const current = pool.find((s) => s.listen === server);
  const tlsName = current ? certificateName(current, pool) : undefined;
  const tls = opts.tls as BulkTlsOptions | null | undefined;
  const info = nc.info;
  const authenticator = buildAuthenticator(opts as ConnectionOptions);
  return {
    server,
    name: `${opts.name ?? "nats"}-data`,
    authenticator,
    ...(tls !== undefined ? { tls } : {}),
    ...(tlsName ? { tlsName } : {}),
    expectTls: tls?.handshakeFirst === true || info?.tls_required === true || (info?.tls_available === true && tls !== null),
    ...(opts.timeout !== undefined ? { timeoutMs: opts.timeout } : {}),
  };
}

/**
 * The host name a server's certificate must carry. A server the cluster gossiped is known by its
 * address; it stands for the host name the connection was configured with (nats.js's tlsName,
 * which it sets only on servers gossiped in the first INFO; else the configured server it
 * connected to).
 */
function certificateName(current: Server, pool: readonly Server[]): string {
  if (current.tlsName) return current.tlsName;
  if (!current.gossiped || !isIP(current.hostname)) return current.hostname;
  const configured = pool.filter((s) => !s.gossiped && !isIP(s.hostname));
  return (configured.find((s) => s.didConnect) ?? configured[0])?.hostname ?? current.hostname;
}

/**
 * node's tls.connect options for `tls`, as nats.js builds them: the certificate is checked, for
 * `tlsName` unless `tls.servername` says otherwise; files are read; every other option passes.
 */
export function tlsSettings(tls: BulkTlsOptions, tlsName: string): TlsConnectionOptions {
  const { handshakeFirst: _first, caFile, certFile, keyFile, ca, cert, key, ...node } = tls;
  const read = (what: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new BulkConnectionError(`cannot read the TLS ${what} file ${file}: ${(err as Error).message}`);
    }
  };
  const name = node.servername ?? tlsName;
  return {
    rejectUnauthorized: true,
    // An IP address is no server name (RFC 6066): then node checks as it does for nats.js, whose
    // tlsName is never an address.
    ...(isIP(name) ? {} : { servername: name }),
    ...node,
    ...(caFile ? { ca: [read("CA", caFile)] } : ca ? { ca } : {}),
    ...(certFile ? { cert: read("certificate", certFile) } : cert ? { cert } : {}),
    ...(keyFile ? { key: read("key", keyFile) } : key ? { key } : {}),
  };
}

/** What the server's certificate is checked against, for error messages: "for nats.example.com against the CA in ca.pem". */
export function tlsCheck(tls: BulkTlsOptions, tlsName: string): string {
  const name = tls.servername ?? tlsName;
  const against = tls.rejectUnauthorized === false ? "(not verified: rejectUnauthorized is false)" : tls.caFile ? `against the CA in ${tls.caFile}` : tls.ca ? "against the CA given" : "against the system's CAs";
  return isIP(name) ? against : `for ${name} ${against}`;
}
