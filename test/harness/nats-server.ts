/**
 * Real nats-server processes for tests: free loopback ports, temporary store directories,
 * stopped by their own PID. Single servers, servers from a config (accounts), and clusters.
 * Which binary runs is decided in binaries.ts (NATS_SERVER_BIN, else the newest built one).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NodeConnectionOptions } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { natsServerBin, serverVersion, type Version } from "./binaries.ts";

export {
  natsServerBin,
  natsServerBinary,
  natsCliBinary,
  serverVersion,
  serverAtLeast,
  needsServer,
  cachedServers,
  type Version,
} from "./binaries.ts";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface ServerOptions {
  /** Extra configuration appended to the generated file (accounts, limits, cluster). */
  config?: string;
  /** Reuse a store directory (for restarts). */
  storeDir?: string;
  port?: number;
  serverName?: string;
  /** The nats-server binary; by default the one binaries.ts chooses. */
  bin?: string;
}

export class NatsServer {
  #proc: ChildProcess | null = null;
  #log = "";
  /** The configuration appended to the generated file: `opts.config` until a `reload` replaces it. */
  #config: string;
  readonly dir: string;
  readonly storeDir: string;
  readonly port: number;
  readonly url: string;
  readonly name: string;
  readonly bin: string;

  private constructor(
    port: number,
    private readonly opts: ServerOptions,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), "nats-backup-test-"));
    this.storeDir = opts.storeDir ?? join(this.dir, "store");
    this.port = port;
    this.url = `nats://127.0.0.1:${port}`;
    this.name = opts.serverName ?? `s${port}`;
    this.bin = opts.bin ?? natsServerBin();
    this.#config = opts.config ?? "";
  }

  static async start(opts: ServerOptions = {}): Promise<NatsServer> {
    const server = new NatsServer(opts.port ?? (await freePort()), opts);
    await server.#spawn();
    return server;
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }
  get log(): string {
    return this.#log;
  }
  /** The version of the binary this server runs. */
  get version(): Version {
    return serverVersion(this.bin);
  }

  /** Writes the configuration file; returns its path. */
  #writeConfig(): string {
    const conf = join(this.dir, "server.conf");
    writeFileSync(
      conf,
      [
        `server_name: ${JSON.stringify(this.name)}`,
        `listen: "127.0.0.1:${this.port}"`,
        `jetstream { store_dir: ${JSON.stringify(this.storeDir)} }`,
        this.#config,
      ].join("\n"),
    );
    return conf;
  }

  async #spawn(): Promise<void> {
    const conf = this.#writeConfig();
    this.#log = "";
    const proc = spawn(this.bin, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
    this.#proc = proc;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.bin} did not start:\n${this.#log}`)), 15_000);
      const onData = (chunk: Buffer) => {
        this.#log = (this.#log + chunk.toString()).slice(-20_000);
        if (this.#log.includes("Server is ready")) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout!.on("data", onData);
      proc.stderr!.on("data", onData);
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${this.bin} exited with ${code}:\n${this.#log}`));
      });
    });
    await ready;
  }

  connect(opts: NodeConnectionOptions = {}): Promise<NatsConnection> {
    return connect({ servers: this.url, ...opts });
  }

  /**
   * Stops the process (SIGTERM, then SIGKILL), keeping the store. A server that just took tens of
   * MB can need more than 5 s to shut down; a SIGKILL then loses writes it had not flushed, so a
   * restart would look like a crash.
   */
  async halt(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const proc = this.#proc;
    this.#proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
  }

  /**
   * Replaces the extra configuration (what `config` gave at start) and has the running server
   * reload it: SIGHUP to this server's own process. Resolves once its log says it reloaded;
   * rejects with the server's words when it refused the new configuration. A later `restart`
   * starts from the new configuration.
   */
  async reload(config: string, timeoutMs = 15_000): Promise<void> {
    const proc = this.#proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) throw new Error("the server is not running");
    this.#config = config;
    this.#writeConfig();
    // Only what the server logs from now on counts: the kept log may hold an earlier reload's line.
    let since = "";
    const outcome = new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        proc.stdout!.off("data", onData);
        proc.stderr!.off("data", onData);
        proc.off("exit", onExit);
        if (err) reject(err);
        else resolve();
      };
      const onData = (chunk: Buffer) => {
        since += chunk.toString();
        if (since.includes("Reloaded server configuration")) done();
        else {
          const failed = /Failed to reload server configuration[^\n]*/.exec(since);
          if (failed) done(new Error(`${this.bin} refused the new configuration: ${failed[0]}`));
        }
      };
      const onExit = (code: number | null) => done(new Error(`${this.bin} exited with ${code} while reloading:\n${since}`));
      const timer = setTimeout(() => done(new Error(`${this.bin} did not reload within ${timeoutMs} ms:\n${since}`)), timeoutMs);
      proc.stdout!.on("data", onData);
      proc.stderr!.on("data", onData);
      proc.once("exit", onExit);
    });
    proc.kill("SIGHUP");
    await outcome;
  }

  /** Starts the same server again on the same port and store. */
  async restart(): Promise<void> {
    await this.halt();
    await this.#spawn();
  }

  /** Stops it and removes its files. */
  async stop(): Promise<void> {
    await this.halt();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A JetStream cluster of `size` servers on loopback. */
export class NatsCluster {
  private constructor(readonly servers: NatsServer[]) {}

  static async start(size = 3, opts: { name?: string; tags?: (i: number) => string[]; bin?: string } = {}): Promise<NatsCluster> {
    const clusterName = opts.name ?? "C1";
    const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
    const routes = routePorts.map((p) => `"nats-route://127.0.0.1:${p}"`).join(", ");
    // One after another: nodes that all dial each other at the same instant race on duplicate
    // routes, and a 2.10.27 cluster was then left, about one start in 20, with a meta leader that
    // never could place an R3 stream.
    const cluster = new NatsCluster([]);
    try {
      for (const [i, routePort] of routePorts.entries()) {
        cluster.servers.push(
          await NatsServer.start({
            bin: opts.bin,
            serverName: `${clusterName}-n${i + 1}`,
            config: [
              `cluster { name: ${clusterName}, listen: "127.0.0.1:${routePort}", routes: [${routes}] }`,
              opts.tags ? `server_tags: ${JSON.stringify(opts.tags(i))}` : "",
            ].join("\n"),
          }),
        );
      }
      // 60 s: once, on 2.9.10, a 4-node cluster placed nothing on all its nodes for 30 s (readiness.test here, session 8).
      await cluster.waitForMetaLeader(60_000);
    } catch (err) {
      // Nothing the caller cannot stop is left running.
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  connect(opts: NodeConnectionOptions = {}): Promise<NatsConnection> {
    return connect({ servers: this.urls, ...opts });
  }

  /**
   * Waits until the meta leader can place a stream on every node: a leader alone is not enough,
   * as a 2.10 leader elected before it has heard from all peers answers an R3 create with
   * "no suitable peers for placement" (10005). A probe stream of as many replicas as nodes is
   * created and deleted.
   */
  async waitForMetaLeader(timeoutMs = 30_000): Promise<void> {
    const nc = await this.connect();
    const probe = "HARNESS_CLUSTER_READY";
    let last = "no answer";
    try {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        try {
          const reply = await nc.request(
            `$JS.API.STREAM.CREATE.${probe}`,
            JSON.stringify({ name: probe, subjects: [`harness.${probe}`], storage: "memory", num_replicas: this.servers.length }),
            { timeout: 2000 },
          );
          const created = reply.json<{ error?: { description?: string } }>();
          if (!created.error) {
            const deleted = (await nc.request(`$JS.API.STREAM.DELETE.${probe}`, "", { timeout: 5000 })).json<{ error?: { description?: string } }>();
            if (deleted.error) throw new Error(`could not delete the probe stream: ${deleted.error.description}`);
            return;
          }
          last = created.error.description ?? JSON.stringify(created.error);
        } catch (err) {
          if (err instanceof Error && err.message.startsWith("could not delete")) throw err;
          last = String(err);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(`the cluster could not place a stream on all ${this.servers.length} nodes within ${timeoutMs} ms: ${last}`);
    } finally {
      await nc.close();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}
