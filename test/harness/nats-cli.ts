/**
 * The real nats CLI (natscli), run as a user types it: a shell command line (`sh -c`), so that
 * quoting is the shell's, with `nats` on PATH being the binary binaries.ts found and NATS_URL
 * naming the test's server. Nothing of the developer's is read: HOME and XDG_CONFIG_HOME are an
 * empty temporary directory (no nats context) and no other NATS_* variable is passed on.
 * Every command runs in a process group of its own, killed by its PID on a timeout, on close()
 * and when the test process exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { waitUntil } from "./inspect.ts";

export interface CliResult {
  command: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Working directory; default the CLI's temporary home. */
  cwd?: string;
  /** Killed (its whole process group) after this long; default 60 s. */
  timeoutMs?: number;
}

/** Process groups still running, SIGKILLed when the test process exits. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(proc: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    process.kill(-proc.pid, signal); // the group this child leads: sh and the nats it started
  } catch {
    // already gone
  }
}

function describe(r: CliResult): string {
  return `\`${r.command}\` exited with ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

export class NatsCli {
  readonly #env: NodeJS.ProcessEnv;
  readonly #watches = new Set<CliWatch>();

  /** `bin`: the nats binary; `url`: the server the commands talk to (as NATS_URL). */
  constructor(
    readonly bin: string,
    readonly url: string,
    readonly home: string = mkdtempSync(join(tmpdir(), "nats-backup-natscli-")),
  ) {
    const binDir = join(home, "bin");
    mkdirSync(binDir, { recursive: true });
    symlinkSync(bin, join(binDir, "nats"));
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_")));
    this.#env = {
      ...inherited,
      PATH: `${binDir}${delimiter}${process.env.PATH ?? ""}`,
      HOME: home,
      XDG_CONFIG_HOME: join(home, ".config"),
      NATS_URL: url,
    };
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once("exit", () => running.forEach((p) => killGroup(p)));
    }
  }

  #spawn(command: string, cwd: string | undefined): ChildProcess {
    const proc = spawn("/bin/sh", ["-c", command], {
      cwd: cwd ?? this.home,
      env: this.#env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // a process group of its own, to be killed whole
    });
    running.add(proc);
    proc.once("exit", () => running.delete(proc));
    return proc;
  }

  /** Runs `command` to its end; resolves whatever its exit code, rejects (after killing it) on timeout. */
  run(command: string, opts: RunOptions = {}): Promise<CliResult> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const proc = this.#spawn(command, opts.cwd);
    let stdout = "";
    let stderr = "";
    proc.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        killGroup(proc);
        reject(new Error(`\`${command}\` did not end within ${timeoutMs} ms (killed)\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
      }, timeoutMs);
      proc.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      // "close", not "exit": the output is read to its end.
      proc.once("close", (code, signal) => {
        clearTimeout(timer);
        resolve({ command, code, signal, stdout, stderr });
      });
    });
  }

  /** Runs `command`, which must exit 0, and parses its standard output as one JSON document. */
  async json<T>(command: string, opts: RunOptions = {}): Promise<T> {
    const result = await this.ok(command, opts);
    try {
      return JSON.parse(result.stdout) as T;
    } catch (err) {
      throw new Error(`the output of ${describe(result)}\nis not JSON: ${(err as Error).message}`);
    }
  }

  /** Runs `command`, which must exit 0. */
  async ok(command: string, opts: RunOptions = {}): Promise<CliResult> {
    const result = await this.run(command, opts);
    if (result.code !== 0) throw new Error(describe(result));
    return result;
  }

  /** Starts a command that runs until stopped (`nats sub …`), its output kept line by line. */
  watch(command: string, opts: { cwd?: string } = {}): CliWatch {
    const watch = new CliWatch(command, this.#spawn(command, opts.cwd));
    this.#watches.add(watch);
    return watch;
  }

  /** Stops every watch still running and removes the temporary home. */
  async close(): Promise<void> {
    await Promise.all([...this.#watches].map((w) => w.stop()));
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** A long-running CLI command: its complete stdout lines, as they come. */
export class CliWatch {
  readonly lines: string[] = [];
  #partial = "";
  #stderr = "";
  readonly exited: Promise<void>;

  constructor(
    readonly command: string,
    readonly proc: ChildProcess,
  ) {
    proc.stdout!.on("data", (d: Buffer) => {
      const parts = (this.#partial + d.toString()).split("\n");
      this.#partial = parts.pop() ?? "";
      this.lines.push(...parts.filter((l) => l.trim() !== ""));
    });
    proc.stderr!.on("data", (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-20_000)));
    this.exited = new Promise((resolve) => proc.once("close", () => resolve()));
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The first line for which `parse` returns a value, waited for up to `timeoutMs`. */
  async waitFor<T>(what: string, parse: (line: string) => T | undefined, timeoutMs = 60_000): Promise<T> {
    try {
      return await waitUntil(
        what,
        () => {
          if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
            throw new Error(`\`${this.command}\` exited (${this.proc.exitCode ?? this.proc.signalCode})`);
          }
          for (const line of this.lines) {
            const value = parse(line);
            if (value !== undefined) return value;
          }
          return undefined;
        },
        timeoutMs,
        50,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- stdout of \`${this.command}\`\n${this.lines.join("\n")}\n--- stderr\n${this.#stderr}`);
    }
  }

  /** Kills its process group (by the PID it was started with) and waits for it to end. */
  async stop(): Promise<void> {
    killGroup(this.proc, "SIGTERM");
    const timer = setTimeout(() => killGroup(this.proc), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}
