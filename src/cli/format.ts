/** Numbers, sizes, durations and tables as the nats CLI prints them. */

const Units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/** Bytes as go-humanize's IBytes writes them (the nats CLI's sizes): `812 B`, `1.2 MiB`, `13 MiB`. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  let e = 0;
  let value = n;
  while (value >= 1024 && e < Units.length - 1) {
    value /= 1024;
    e++;
  }
  // go-humanize rounds to one decimal first, then drops it from 10 on.
  const rounded = Math.round(value * 10) / 10;
  return rounded < 10 ? `${rounded.toFixed(1)} ${Units[e]}` : `${Math.round(value)} ${Units[e]}`;
}

/** A count with thousands separators: `1,000`. */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** A duration in milliseconds: `812ms`, `1.22s`, `2m3.4s`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes}m${((ms % 60_000) / 1000).toFixed(1)}s`;
}

/** Milliseconds between two RFC 3339 times of a record (0 when either is missing). */
export function between(from: string | undefined, to: string | undefined): number {
  if (!from || !to) return 0;
  return Math.max(0, Date.parse(to) - Date.parse(from));
}

/** An RFC 3339 time as `2026-12-02 04:40:01` (UTC), for tables. */
export function timestamp(iso: string | undefined): string {
  if (!iso) return "";
  return iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "");
}

/** `1 stream`, `2 streams`. */
export function plural(n: number, word: string): string {
  return `${count(n)} ${word}${n === 1 ? "" : "s"}`;
}

/** Rows under a header, columns padded to their widest cell; `right` names the columns aligned right. */
export function table(header: string[], rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
