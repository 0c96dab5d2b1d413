/**
 * `$RESTORE.server-remove`: takes a server that is gone out of the JetStream meta group
 * (`$JS.API.SERVER.REMOVE` with `{peer}`, which only the system account may ask), so that the
 * meta group stops placing new streams on it: 2.9.10 does until it notices the server is gone
 * (see jobs/degraded-placement.ts). Refused before anything is sent: no confirm, no
 * system-account connection, a server that answers the servers' ping (it is online).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { jsApiRequest } from "../jetstream/jsapi.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { ServerRemoveReply, ServerRemoveRequest } from "../protocol/readiness.ts";
import { clusterServers } from "./cluster-servers.ts";
import { serverRemoved } from "./offline-peers.ts";

const untouched = "nothing was changed";

export async function removeServer(system: NatsConnection | undefined, req: ServerRemoveRequest): Promise<ServerRemoveReply> {
  if (req.confirm !== true) {
    throw BackupError.badRequest(`removing server ${req.server} from the cluster changes the cluster: send "confirm":true; ${untouched}`);
  }
  if (!system) {
    throw new BackupError(
      ErrorCode.Unavailable,
      `the service has no system-account connection ($JS.API.SERVER.REMOVE is the system account's): start it with one, or run "nats server raft peer-remove ${req.server}" with a system user; ${untouched}`,
    );
  }
  // The system account's own connections: every server online answers.
  const servers = await clusterServers(system);
  if (!servers.known) throw new BackupError(ErrorCode.Unavailable, `which servers are online cannot be told (${servers.note}); ${untouched}`);
  const online = servers.servers.map((s) => s.name);
  if (online.includes(req.server)) {
    throw BackupError.conflict(`server ${req.server} is online: only a server that is gone is removed (stop it first); ${untouched}`);
  }
  await jsApiRequest(system, "SERVER.REMOVE", JSON.stringify({ peer: req.server }), 10_000);
  serverRemoved(system.info?.cluster, req.server);
  return { server: req.server, removed: true, online };
}
