/**
 * Commands as README.md prints them, so that a test runs what the README tells users to type and
 * fails, naming the command, when the README no longer says it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

const readmePath = join(import.meta.dirname, "..", "..", "README.md");

export function readme(): string {
  return readFileSync(readmePath, "utf8");
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * `command`, checked to be in README.md as a command of its own: at the start of a code block's
 * line or in inline code, followed by the end of the line, spaces (a comment or more flags) or
 * the closing backtick.
 */
export function readmeCommand(command: string): string {
  const pattern = new RegExp(`(^|\`)${escape(command)}(\\s|\`|$)`, "m");
  if (!pattern.test(readme())) throw new Error(`README.md no longer has the command ${command}`);
  return command;
}

/** The first fenced code block after the line containing `marker`, without its fences. */
export function readmeCodeBlockAfter(marker: string): string {
  const text = readme();
  const at = text.indexOf(marker);
  if (at < 0) throw new Error(`README.md no longer has ${JSON.stringify(marker)}`);
  const block = /^```[a-z]*\n([\s\S]*?)^```$/m.exec(text.slice(at));
  if (!block) throw new Error(`README.md has no code block after ${JSON.stringify(marker)}`);
  return block[1] as string;
}
