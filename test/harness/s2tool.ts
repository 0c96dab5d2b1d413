/**
 * klauspost/compress's own S2 encoder and decoder (test/fixtures/s2tool), the truth the tests of
 * src/archive compare against. Built with Go on first use into .cache/s2tool (git-ignored), and
 * rebuilt when its source is newer; the module is the one the nats-server builds already fetched.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const source = join(root, "test", "fixtures", "s2tool");
const binary = join(root, ".cache", "s2tool", "s2tool");

export type S2Tool = { bin: string; reason?: undefined } | { bin: null; reason: string };

let built: S2Tool | undefined;

/** The built tool, or why there is none (for a test's `skip`). */
export function s2tool(): S2Tool {
  return (built ??= build());
}

function build(): S2Tool {
  const newest = Math.max(...["main.go", "go.mod", "go.sum"].map((f) => statSync(join(source, f)).mtimeMs));
  if (existsSync(binary) && statSync(binary).mtimeMs >= newest) return { bin: binary };
  const env = { ...process.env, PATH: `${process.env.PATH ?? ""}${delimiter}/usr/local/go/bin` };
  try {
    execFileSync("go", ["build", "-o", binary, "."], { cwd: source, env, stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    return { bin: null, reason: `cannot build test/fixtures/s2tool with go: ${e.stderr?.toString().trim() || e.message}` };
  }
  return { bin: binary };
}

function run(args: string[], input: Uint8Array): Buffer {
  const tool = s2tool();
  if (!tool.bin) throw new Error(tool.reason);
  const r = spawnSync(tool.bin, args, { input, maxBuffer: 2 ** 31 });
  if (r.status !== 0) throw new Error(`s2tool ${args.join(" ")} exited with ${r.status ?? r.signal}: ${r.stderr?.toString()}`);
  return r.stdout;
}

export interface EncodeOptions {
  level?: "fast" | "better" | "best";
  block?: number;
  /** Pad the output to a multiple of this (skippable padding chunks). */
  pad?: number;
  snappy?: boolean;
}

/** `data` as klauspost's s2.Writer frames it. */
export function s2Encode(data: Uint8Array, opts: EncodeOptions = {}): Buffer {
  const args = ["encode", "-level", opts.level ?? "fast"];
  if (opts.block) args.push("-block", String(opts.block));
  if (opts.pad) args.push("-pad", String(opts.pad));
  if (opts.snappy) args.push("-snappy");
  return run(args, data);
}

/** `data` decoded by klauspost's s2.Reader; throws when it refuses it. */
export function s2DecodeGo(data: Uint8Array): Buffer {
  return run(["decode"], data);
}
