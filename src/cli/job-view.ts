/**
 * What a client shows of a job while it runs: a progress bar on a terminal (cli-progress), one
 * log line per status event otherwise (or with --no-progress), nothing with --json.
 */
import cliProgress from "cli-progress";
import type { JobRecord } from "../protocol/schemas.ts";
import { bytes, count, plural } from "./format.ts";

export interface JobView {
  /** Every record of the job as it comes: the first read, each status event, the last. */
  update(record: JobRecord): void;
  /** The job ended (or the client stops following it): the bar is finished or left as it is. */
  stop(record?: JobRecord): void;
}

export interface ViewChoice {
  json?: boolean;
  progress?: boolean;
  /** For a stream backup: the stream's bytes when it started, the bar's total (a backup's own progress has no total). */
  streamBytes?: number;
}

export function chooseView(choice: ViewChoice, out: NodeJS.WriteStream = process.stdout): JobView {
  if (choice.json) return { update: () => {}, stop: () => {} };
  if (choice.progress === false || !out.isTTY) return new LogLines(out);
  return new ProgressBar(out, choice.streamBytes);
}

/** `backup of stream ORDERS`, `account restore`. */
export function jobTitle(r: Pick<JobRecord, "operation" | "scope" | "stream">): string {
  return r.scope === "account" ? `account ${r.operation}` : `${r.operation} of stream ${r.stream ?? "?"}`;
}

/** Uncompressed bytes moved, where the service reports them (newer services; a backup's archive is compressed). */
function uncompressed(r: JobRecord): number | undefined {
  const u = (r.progress as { uncompressed_bytes?: unknown }).uncompressed_bytes;
  return typeof u === "number" ? u : undefined;
}

/** One line for a status event: `04:40:01 01J… backup of stream ORDERS: running, 3.2 MiB in 13 chunks, 12 MiB/s`. */
export function eventLine(r: JobRecord): string {
  const time = (r.updated ?? r.created).slice(11, 19);
  const head = `${time} ${r.id} ${jobTitle(r)}${r.tenant !== undefined ? ` (tenant ${r.tenant})` : ""}`;
  if (r.state === "failed") return `${head}: failed: ${r.error?.description ?? "no reason given"}${r.error ? ` (code ${r.error.code})` : ""}`;
  const p = r.progress;
  const parts = [`${bytes(p.bytes)} in ${plural(p.chunks, "chunk")}`];
  const u = uncompressed(r);
  if (u !== undefined) parts.push(`${bytes(u)} uncompressed`);
  if (p.bytes_expected !== undefined) parts.push(`${p.percent ?? 0}% of ${bytes(p.bytes_expected)}`);
  if (p.streams) {
    const running = p.streams.running.length ? ` (now ${p.streams.running.join(", ")})` : "";
    parts.push(`${count(p.streams.done)} of ${count(p.streams.total)} streams done${running}`);
  }
  if (r.state === "running") parts.push(`${bytes(p.rate)}/s`);
  if (r.waiting) parts.push(`waiting for ${r.waiting}`);
  return `${head}: ${r.state}, ${parts.join(", ")}`;
}

class LogLines implements JobView {
  constructor(private readonly out: NodeJS.WriteStream) {}
  update(record: JobRecord): void {
    this.out.write(`${eventLine(record)}\n`);
  }
  stop(): void {}
}

/** Where a record puts the bar: streams done of the total (account jobs), or bytes of a known total. */
interface Measure {
  value: number;
  total: number;
}

class ProgressBar implements JobView {
  #bar: cliProgress.SingleBar | null = null;
  #unit: "streams" | "bytes" | "none" | null = null;
  #last: Measure = { value: 0, total: 0 };

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly streamBytes: number | undefined,
  ) {}

  update(record: JobRecord): void {
    // A job that ended before its first record was read still gets its bar, drawn once, full.
    if (record.state !== "running" && (this.#bar || record.state === "failed")) return this.stop(record);
    const m = this.#measure(record);
    const payload = this.#payload(record);
    if (!this.#bar) {
      this.#bar = new cliProgress.SingleBar(
        {
          stream: this.out,
          format: this.#format(record),
          hideCursor: true,
          // The client's own SIGINT handler stops the bar (and says that the job goes on).
          gracefulExit: false,
          barsize: 30,
          // A total not known yet is an empty bar, not a full one.
          emptyOnZero: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(m.total, m.value, payload);
    } else {
      if (m.total !== this.#last.total) this.#bar.setTotal(m.total);
      this.#bar.update(m.value, payload);
    }
    this.#last = m;
    if (record.state !== "running") this.stop(record);
  }

  stop(record?: JobRecord): void {
    const bar = this.#bar;
    if (!bar) return;
    this.#bar = null;
    if (record) {
      const m = this.#measure(record);
      // A completed job's bar is full, whatever its last progress event said.
      const value = record.state === "completed" ? m.total : m.value;
      if (m.total !== this.#last.total) bar.setTotal(m.total);
      bar.update(value, this.#payload(record));
    }
    bar.stop();
  }

  #format(record: JobRecord): string {
    const title = jobTitle(record);
    if (record.scope === "account") {
      this.#unit = "streams";
      return `${title} {bar} {percentage}% | {value}/{total} streams | {moved} | {speed}`;
    }
    // A restore knows its archive's size once it has read the manifest, which can be after its first record.
    if (record.progress.bytes_expected !== undefined || record.operation === "restore") {
      this.#unit = "bytes";
      return `${title} {bar} {percentage}% | {moved} of {size} | {chunks} | {speed}`;
    }
    if (this.streamBytes) {
      // A backup's bar runs against the stream's size: uncompressed bytes where the service
      // reports them, else the archive's, which are compressed (the bar then ends early).
      this.#unit = "bytes";
      return `${title} {bar} {percentage}% | {moved} of {size} | {chunks} | {speed}`;
    }
    this.#unit = "none";
    return `${title} {moved} | {chunks} | {speed}`;
  }

  #measure(record: JobRecord): Measure {
    const p = record.progress;
    if (this.#unit === "streams" || (this.#unit === null && record.scope === "account")) {
      return { value: p.streams?.done ?? 0, total: Math.max(1, p.streams?.total ?? 1) };
    }
    if (p.bytes_expected !== undefined) return { value: Math.min(p.bytes, p.bytes_expected), total: p.bytes_expected };
    const total = this.streamBytes ?? 0;
    // The archive is compressed: its bytes against the stream's are a floor, never past the end before it ends.
    const moved = uncompressed(record) ?? p.bytes;
    return { value: Math.min(moved, Math.floor(total * 0.99)), total };
  }

  #payload(record: JobRecord): Record<string, string> {
    const p = record.progress;
    const u = uncompressed(record);
    const size = p.bytes_expected ?? this.streamBytes ?? 0;
    return {
      // A restore moves the archive towards the archive's size; a backup's archive is compressed.
      moved: p.bytes_expected !== undefined ? bytes(p.bytes) : u !== undefined ? bytes(u) : `${bytes(p.bytes)} stored`,
      size: bytes(size),
      chunks: plural(p.chunks, "chunk"),
      speed: `${bytes(p.rate)}/s`,
    };
  }
}
