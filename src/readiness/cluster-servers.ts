/**
 * The servers of the cluster, online now, as any account may learn them: without a system
 * account, `$SYS.REQ.ACCOUNT.PING.CONNZ` (a service every server exports to every account, the
 * account's connections) is answered by every server reachable, each naming itself, its cluster,
 * its tags and whether it runs JetStream. Seen on 2.9.10 and 2.15.3: 4 answers from a 4-node
 * cluster, 3 once a node was stopped. A scatter request has no end of its own: it ends when as
 * many servers answered as the connection's INFO lists (`connect_urls`) or after `timeoutMs`.
 */
import { createInbox, type NatsConnection } from "@nats-io/nats-core";

export interface ServerSeen {
  name: string;
  cluster: string | null;
  tags: string[];
  jetstream: boolean;
}

export type ClusterServers = { known: true; servers: ServerSeen[] } | { known: false; servers: ServerSeen[]; note: string };

const PingSubject = "$SYS.REQ.ACCOUNT.PING.CONNZ";

interface ConnzAnswer {
  server?: { name?: string; cluster?: string; tags?: string[]; jetstream?: boolean };
}

export async function clusterServers(nc: NatsConnection, timeoutMs = 1500): Promise<ClusterServers> {
  const seen = new Map<string, ServerSeen>();
  // A server outside a cluster is the only one to wait for; a clustered one that advertises no URLs gives no count.
  const expected = nc.info?.connect_urls?.length ?? (nc.info?.cluster ? 0 : 1);
  const ownCluster = nc.info?.cluster;
  let refused: string | null = null;
  await new Promise<void>((resolve) => {
    const inbox = nc.subscribe(createInbox(), {
      callback: (err, msg) => {
        if (err) return;
        // A status message (503: no responders) is no server.
        if (msg.headers?.code && msg.headers.code >= 300) {
          refused = `${msg.headers.code} ${msg.headers.description}`;
          return finish();
        }
        try {
          const server = (JSON.parse(msg.string()) as ConnzAnswer).server;
          if (server?.name) {
            seen.set(server.name, { name: server.name, cluster: server.cluster ?? null, tags: server.tags ?? [], jetstream: server.jetstream === true });
          }
        } catch {
          return; // not an answer we can read: not counted
        }
        const mine = [...seen.values()].filter((s) => ownCluster === undefined || s.cluster === ownCluster).length;
        if (expected > 0 && mine >= expected) finish();
      },
    });
    const timer = setTimeout(() => finish(), timeoutMs);
    function finish() {
      clearTimeout(timer);
      inbox.unsubscribe();
      resolve();
    }
    nc.publish(PingSubject, JSON.stringify({ limit: 1 }), { reply: inbox.getSubject() });
  });
  const servers = [...seen.values()].sort((a, b) => a.name.localeCompare(b.name));
  if (servers.length === 0) {
    return {
      known: false,
      servers,
      note: `no server answered ${PingSubject}${refused ? ` (${refused})` : ""}: the account may not import the system account's services, or may not publish there`,
    };
  }
  return { known: true, servers };
}
