/**
 * The backup service as `nats-backup serve` runs it (startBackupService on its own connection,
 * pino at warn), plus what the bench needs to look inside it, on a second connection:
 *  - `bench.memory`: process.memoryUsage() (rss, heapTotal, heapUsed, external, arrayBuffers);
 *  - `--profile DIR`: CPU profiles on demand over NATS (`bench.profile.start` / `bench.profile.stop`,
 *    the reply to stop is the .cpuprofile's path), so each operation gets its own profile;
 *  - `--no-async-traces`: the connection option that stops nats.js from making an Error per request.
 * Usage: node --import tsx bench/service-child.ts --server URL [--profile DIR] [--no-async-traces]
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { startBackupService } from "../src/mod.ts";

const { values } = parseArgs({
  options: {
    server: { type: "string" },
    profile: { type: "string" },
    "no-async-traces": { type: "boolean" },
  },
});
const log = pino({ name: "nats-backup", level: "warn" });
const nc = await connect({
  servers: values.server ?? "nats://127.0.0.1:4222",
  name: "nats-backup",
  maxReconnectAttempts: -1,
  ...(values["no-async-traces"] ? { noAsyncTraces: true } : {}),
});
const svc = await startBackupService(nc, { logger: log });

// A separate connection, so the bench's requests do not share the service's socket.
const control = await connect({ servers: values.server ?? "nats://127.0.0.1:4222", name: "bench-control" });
control.subscribe("bench.memory", {
  callback: (_, msg) => {
    msg.respond(JSON.stringify(process.memoryUsage()));
  },
});

if (values.profile) {
  const dir = values.profile;
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 200 });
  control.subscribe("bench.profile.start", {
    callback: (_, msg) => {
      void session.post("Profiler.start").then(() => msg.respond("started"));
    },
  });
  control.subscribe("bench.profile.stop", {
    callback: (_, msg) => {
      const name = msg.string() || `profile-${Date.now()}`;
      void session.post("Profiler.stop").then(({ profile }) => {
        const file = join(dir, `${name}.cpuprofile`);
        writeFileSync(file, JSON.stringify(profile));
        msg.respond(file);
      });
    },
  });
}

const stop = async () => {
  await svc.stop();
  await control.close();
  await nc.drain();
  process.exit(0);
};
process.once("SIGINT", () => void stop());
process.once("SIGTERM", () => void stop());
