/**
 * The backup service as a child process (test/harness/child-service.ts): started and waited for
 * (its `READY <id>` line, bounded), killed with SIGKILL or stopped with SIGTERM by its own PID.
 * Every process started here is remembered until it exits; `stopAllServices()` (for `after`)
 * stops the ones still running, and a process exit handler SIGKILLs any left over. `pause()`
 * freezes it (SIGSTOP) until `resume()` (SIGCONT): its sockets go unread, whatever the
 * machine's speed, as long as the test wants.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChildServiceOptions } from "./child-service.ts";

export type { ChildServiceOptions } from "./child-service.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const script = join(root, "test", "harness", "child-service.ts");

const started = new Set<ServiceProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const p of started) p.killNow();
  });
}

export interface StartOptions {
  /** How long to wait for `READY`; default 60 s (tsx compiles the service on a cold start). */
  readyTimeoutMs?: number;
  env?: Record<string, string>;
}

export class ServiceProcess {
  #out = "";
  #err = "";
  #paused = false;
  /** The micro service instance id it printed (job records name it as their instance). */
  id = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly proc: ChildProcess) {
    this.exited = new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        started.delete(this);
        resolve({ code, signal });
      });
    });
    proc.stdout!.on("data", (chunk: Buffer) => {
      this.#out = (this.#out + chunk.toString()).slice(-20_000);
    });
    proc.stderr!.on("data", (chunk: Buffer) => {
      this.#err = (this.#err + chunk.toString()).slice(-50_000);
    });
  }

  /** Starts `child-service.ts` against `servers` and waits for its READY line. */
  static async start(servers: string | string[], opts: ChildServiceOptions = {}, start: StartOptions = {}): Promise<ServiceProcess> {
    installExitHook();
    const url = Array.isArray(servers) ? servers.join(",") : servers;
    const proc = spawn(process.execPath, ["--import", "tsx", script, "--server", url, "--options", JSON.stringify(opts)], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...start.env },
    });
    const svc = new ServiceProcess(proc);
    started.add(svc);
    const timeoutMs = start.readyTimeoutMs ?? 60_000;
    try {
      svc.id = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the child service printed no READY line within ${timeoutMs} ms`)), timeoutMs);
        const onData = () => {
          const m = /^READY (\S+)$/m.exec(svc.#out);
          if (m) {
            clearTimeout(timer);
            proc.stdout!.off("data", onData);
            resolve(m[1] as string);
          }
        };
        proc.stdout!.on("data", onData);
        void svc.exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(new Error(`the child service exited (${code ?? signal}) before it was ready`));
        });
      });
    } catch (err) {
      await svc.kill9();
      throw new Error(`${(err as Error).message}\n--- stderr ---\n${svc.#err}\n--- stdout ---\n${svc.#out}`);
    }
    return svc;
  }

  get pid(): number {
    return this.proc.pid as number;
  }
  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
  /** What it wrote to stderr (its JSON log at TEST_LOG_LEVEL), the last 50 kB. */
  get log(): string {
    return this.#err;
  }

  /**
   * SIGSTOP, at once and synchronously (from inside a message callback too): the process runs
   * nothing, and reads none of its sockets, until `resume()`.
   */
  pause(): void {
    if (this.alive) process.kill(this.pid, "SIGSTOP");
    this.#paused = true;
  }

  /** SIGCONT: it runs again where it stopped. */
  resume(): void {
    if (this.#paused && this.alive) process.kill(this.pid, "SIGCONT");
    this.#paused = false;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** kill -9, at once and synchronously: for killing from inside a message callback. */
  killNow(): void {
    if (this.alive) process.kill(this.pid, "SIGKILL");
  }

  /** kill -9 and wait (bounded) until it is gone. */
  async kill9(timeoutMs = 10_000): Promise<void> {
    this.killNow();
    await this.#waitExit(timeoutMs);
  }

  /** SIGTERM: it stops its service and drains its connection; SIGKILL when it takes longer than `graceMs`. */
  async terminate(graceMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) process.kill(this.pid, "SIGTERM");
    this.resume(); // a stopped process handles its SIGTERM once it runs again
    const timer = setTimeout(() => this.killNow(), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async #waitExit(timeoutMs: number): Promise<void> {
    if (!this.alive) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exited,
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`process ${this.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}

/** Stops every child service still running (SIGTERM, then SIGKILL): for `after`. */
export async function stopAllServices(graceMs = 5_000): Promise<void> {
  await Promise.all([...started].map((p) => p.terminate(graceMs).catch(() => p.killNow())));
}
