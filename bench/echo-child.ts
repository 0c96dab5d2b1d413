/**
 * The latency baseline: a responder that does nothing (`bench.echo`, an empty reply), in a process
 * of its own on its own connection, like the service. What a request costs it during a backup is
 * what the server and the machine cost any request; the service's PING and list are read against it.
 * Usage: node --import tsx bench/echo-child.ts --server URL
 */
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";

const { values } = parseArgs({ options: { server: { type: "string" } } });
const nc = await connect({ servers: values.server ?? "nats://127.0.0.1:4222", name: "bench-echo" });
nc.subscribe("bench.echo", { callback: (_, msg) => void msg.respond() });

const stop = async () => {
  await nc.drain();
  process.exit(0);
};
process.once("SIGINT", () => void stop());
process.once("SIGTERM", () => void stop());
