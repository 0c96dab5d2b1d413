/**
 * `nats-backup` run as a user runs it: `node --import tsx src/cli/main.ts …` from the project's
 * folder, with NATS_URL naming the test's server and no other NATS_* variable of the developer's.
 * Each run is its own process, killed by its PID on a timeout.
 */
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const projectDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface NatsBackupRun {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

export function natsBackup(url: string, args: string[], timeoutMs = 120_000): Promise<NatsBackupRun> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_") || k === "NATS_SERVER_BIN"));
  const proc = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: projectDir,
    env: { ...env, NATS_URL: url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  proc.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`nats-backup ${args.join(" ")} did not end within ${timeoutMs} ms\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
    }, timeoutMs);
    proc.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once("close", (code) => {
      clearTimeout(timer);
      resolve({ args, code, stdout, stderr });
    });
  });
}

/** Runs it; it must exit 0. */
export async function natsBackupOk(url: string, args: string[], timeoutMs?: number): Promise<NatsBackupRun> {
  const run = await natsBackup(url, args, timeoutMs);
  if (run.code !== 0) throw new Error(`nats-backup ${args.join(" ")} exited with ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`);
  return run;
}
