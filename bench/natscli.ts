/**
 * The real nats CLI's `account backup` and `account restore`, run as the user would (found as the
 * tests find it: test/harness/binaries.ts), the baseline of the account bench.
 */
import { execFileSync, spawn } from "node:child_process";
import { natsCliBinary } from "../test/harness/binaries.ts";
import { reapedChildrenCpuSeconds } from "./proc.ts";

export interface CliRun {
  seconds: number;
  /** The CLI's own CPU seconds (user + system). */
  cpuSeconds: number;
  /** The end of what it printed (stdout and stderr). */
  outputTail: string;
}

export interface NatsCli {
  path: string;
  version: string;
  /** `nats account backup --force DIR`: every stream of the account, one after another, into DIR/<stream>/. */
  accountBackup(url: string, dir: string): Promise<CliRun>;
  /** `nats account restore DIR`: refuses to start when any stream in DIR exists. */
  accountRestore(url: string, dir: string): Promise<CliRun>;
}

export function natsCli(): NatsCli {
  const found = natsCliBinary();
  if (!found.path) throw new Error(`the account bench runs the nats CLI: ${found.reason}`);
  const path = found.path;
  const version = execFileSync(path, ["--version"], { encoding: "utf8" }).trim();
  const run = (args: string[]) => runCli(path, args, 1800_000);
  return {
    path,
    version,
    accountBackup: (url, dir) => run(["--server", url, "account", "backup", "--force", dir]),
    accountRestore: (url, dir) => run(["--server", url, "account", "restore", dir]),
  };
}

/** Runs the CLI to its end; a non-zero exit or `timeoutMs` passing is an error naming its output. */
function runCli(path: string, args: string[], timeoutMs: number): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const cpu0 = reapedChildrenCpuSeconds();
    const started = performance.now();
    const proc = spawn(path, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8000);
    };
    proc.stdout.on("data", keep);
    proc.stderr.on("data", keep);
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once("close", (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      if (code !== 0) {
        reject(new Error(`nats ${args.join(" ")} exited with ${code ?? signal} after ${seconds.toFixed(1)} s:\n${output.slice(-3000)}`));
        return;
      }
      resolve({ seconds, cpuSeconds: reapedChildrenCpuSeconds() - cpu0, outputTail: output.slice(-2000) });
    });
  });
}
