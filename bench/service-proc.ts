/**
 * The backup service as a child process (`node bin/nats-backup.js serve`), so its memory and CPU
 * are its own; also the latency baseline's responder (echo-child.ts). Stopped by their own PIDs.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/nats-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export type ServiceKind = "bin" | "child" | "bundle";

/**
 * src/cli/main.ts bundled into one plain JS file with esbuild (the one tsx brings), so the
 * service runs without tsx's loader: the same code, for comparing memory and CPU.
 */
export function bundleCli(): string {
  const out = join(root, ".cache", "bench-bundle", "nats-backup.bundle.mjs");
  execFileSync(
    join(root, "node_modules", ".bin", "esbuild"),
    [
      join(root, "src", "cli", "main.ts"),
      "--bundle",
      "--platform=node",
      "--format=esm",
      "--target=node20",
      `--outfile=${out}`,
      "--log-level=warning",
      // A native addon (CRC-32C) stays a package: the bundle lies inside the project, so require() finds it in node_modules.
      "--external:@node-rs/crc32",
      // CommonJS dependencies (pino) call require(): give the ESM bundle one.
      "--banner:js=import{createRequire as __bench_cr}from'module';const require=__bench_cr(import.meta.url);",
    ],
    { cwd: root, stdio: ["ignore", "inherit", "inherit"] },
  );
  return out;
}

/** The node flags `npm start` and the Dockerfile run the service with. */
const ServiceNodeFlags = ["--max-semi-space-size=16"];

export class ServiceProcess {
  #log = "";
  private constructor(readonly proc: ChildProcess) {}

  get pid(): number {
    return this.proc.pid as number;
  }
  get log(): string {
    return this.#log;
  }
  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /**
   * Starts it and waits until it answers `ready` on `nc` (default `$SRV.PING.backup`; a service
   * with --tenants answers `$BACKUP.tenants` on its admin connection instead): `bin` is
   * `nats-backup serve` (with `serveArgs` added), `child` is bench/service-child.ts with `childArgs`.
   */
  static async start(
    nc: NatsConnection,
    url: string,
    opts: { kind: ServiceKind; childArgs?: string[]; serveArgs?: string[]; ready?: string } = { kind: "bin" },
  ): Promise<ServiceProcess> {
    const serveArgs = ["serve", "--server", url, "--log-level", "warn", "--shutdown-grace", "2", ...(opts.serveArgs ?? [])];
    const argv =
      opts.kind === "bin"
        ? [...ServiceNodeFlags, join(root, "bin", "nats-backup.js"), ...serveArgs]
        : opts.kind === "bundle"
          ? [bundleCli(), ...serveArgs]
          : ["--import", "tsx", join(root, "bench", "service-child.ts"), "--server", url, ...(opts.childArgs ?? [])];
    return ServiceProcess.#spawn(nc, argv, opts.ready ?? "$SRV.PING.backup");
  }

  /** The baseline responder of bench/echo-child.ts, answering `bench.echo`. */
  static echo(nc: NatsConnection, url: string): Promise<ServiceProcess> {
    return ServiceProcess.#spawn(nc, ["--import", "tsx", join(root, "bench", "echo-child.ts"), "--server", url], "bench.echo");
  }

  /** Spawns node with `argv` and waits until the child answers `ready`. */
  static async #spawn(nc: NatsConnection, argv: string[], ready: string): Promise<ServiceProcess> {
    const proc = spawn(process.execPath, argv, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    const svc = new ServiceProcess(proc);
    const keep = (chunk: Buffer) => {
      svc.#log = (svc.#log + chunk.toString()).slice(-20_000);
    };
    proc.stdout!.on("data", keep);
    proc.stderr!.on("data", keep);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (!svc.alive) throw new Error(`${argv.join(" ")} exited with ${proc.exitCode ?? proc.signalCode}:\n${svc.#log}`);
      try {
        await nc.request(ready, "", { timeout: 500 });
        return svc;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await svc.stop();
    throw new Error(`${argv.join(" ")} did not answer ${ready} within 30s:\n${svc.#log}`);
  }

  /** SIGTERM (it stops its service and drains), SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((resolve) => this.proc.once("exit", () => resolve()));
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Synchronous last resort (process exit handlers). */
  killNow(): void {
    if (this.alive) this.proc.kill("SIGKILL");
  }
}
