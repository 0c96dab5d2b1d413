/**
 * Running a program in a pseudo-terminal and reading its screen back: util-linux `script` gives
 * the program a pty (so its stdout is a TTY), and @xterm/headless plays what it wrote onto a
 * screen of a known size, as a terminal would show it.
 */
import { spawn, spawnSync } from "node:child_process";
import xterm from "@xterm/headless";

export interface TerminalRun {
  code: number | null;
  /** Everything the program wrote to the terminal, escape sequences and all. */
  raw: string;
  /** The screen's lines once everything was drawn, trailing blanks trimmed, empty lines at the end dropped. */
  screen: string[];
}

/** The reason `script` cannot be used here, or null. */
export function scriptMissing(): string | null {
  const found = spawnSync("script", ["--version"], { encoding: "utf8" });
  return found.status === 0 && /util-linux/.test(found.stdout) ? null : "needs util-linux `script` for a pseudo-terminal";
}

/** `arg` quoted for sh. */
function quote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** Runs `argv` in a pty of `cols` x `rows` with `env`; kills it (by its PID) after `timeoutMs`. */
export async function runInTerminal(
  argv: string[],
  opts: { env: NodeJS.ProcessEnv; cols?: number; rows?: number; timeoutMs?: number },
): Promise<TerminalRun> {
  const cols = opts.cols ?? 120;
  const rows = opts.rows ?? 40;
  // script's pty takes its size from a terminal this test does not have: set it first.
  const line = `stty cols ${cols} rows ${rows}; exec ${argv.map(quote).join(" ")}`;
  const proc = spawn("script", ["-qfec", line, "/dev/null"], { env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
  let raw = "";
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (d: string) => (raw += d));
  proc.stderr!.on("data", (d: Buffer) => (raw += d.toString()));
  const timer = setTimeout(() => proc.pid && process.kill(proc.pid, "SIGKILL"), opts.timeoutMs ?? 60_000);
  const code = await new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, raw, screen: await screenOf(raw, cols, rows) };
}

/** What a terminal of `cols` x `rows` shows after `raw` was written to it. */
export async function screenOf(raw: string, cols: number, rows: number): Promise<string[]> {
  const term = new xterm.Terminal({ cols, rows, allowProposedApi: true });
  await new Promise<void>((resolve) => term.write(raw, resolve));
  const lines: string[] = [];
  const buffer = term.buffer.active;
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i)?.translateToString(true) ?? "");
  term.dispose();
  while (lines.length && lines[lines.length - 1] === "") lines.pop();
  return lines;
}
