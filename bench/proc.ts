/**
 * What /proc says of a process: resident memory (VmRSS, and the peak VmHWM, which can be reset
 * through clear_refs) and CPU time (utime+stime). A sampler polls VmRSS every 50 ms during an
 * operation; the reset VmHWM catches peaks between two polls.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

let clkTck = 100;
try {
  clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
} catch {
  // the usual Linux value
}

/** Kilobytes of VmRSS and VmHWM, or null when the process is gone. */
export function memory(pid: number): { rssKiB: number; hwmKiB: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const rss = /VmRSS:\s+(\d+)/.exec(text);
  const hwm = /VmHWM:\s+(\d+)/.exec(text);
  return { rssKiB: Number(rss?.[1] ?? 0), hwmKiB: Number(hwm?.[1] ?? 0) };
}

/** Resets VmHWM to the current RSS (writing 5 to clear_refs); false when not allowed. */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** CPU seconds (user + system) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.system;
}

/** User and system CPU seconds the process has used so far (utime, stime of /proc/<pid>/stat). */
export function cpuTimes(pid: number): { user: number; system: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of stat; fields[0] here is field 3 (state).
    return { user: Number(fields[11]) / clkTck, system: Number(fields[12]) / clkTck };
  } catch {
    return { user: NaN, system: NaN };
  }
}

/**
 * CPU seconds of this process's children that have exited and been waited for (cutime + cstime of
 * /proc/self/stat): the delta around one child's run is that child's CPU when no other child ends meanwhile.
 */
export function reapedChildrenCpuSeconds(): number {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // cutime and cstime are fields 16 and 17 of stat; fields[0] here is field 3.
    return (Number(fields[13]) + Number(fields[14])) / clkTck;
  } catch {
    return NaN;
  }
}

export interface MemoryWindow {
  /** Largest VmRSS seen by the 50 ms poll, MiB. */
  sampledPeakMB: number;
  /** VmHWM at the end, after a reset at the start, MiB (NaN when the reset was refused). */
  hwmPeakMB: number;
  /** The larger of the two. */
  peakMB: number;
  startMB: number;
  endMB: number;
  samples: number;
}

/** Watches one process's memory between start() and stop(). */
export class MemoryWatch {
  #timer: NodeJS.Timeout | null = null;
  #maxKiB = 0;
  #startKiB = 0;
  #samples = 0;
  #reset = false;

  constructor(
    readonly pid: number,
    readonly intervalMs = 50,
  ) {}

  start(): void {
    this.#reset = resetPeak(this.pid);
    const m = memory(this.pid);
    this.#startKiB = m?.rssKiB ?? 0;
    this.#maxKiB = this.#startKiB;
    this.#samples = 0;
    this.#timer = setInterval(() => this.#poll(), this.intervalMs);
  }

  #poll(): void {
    const m = memory(this.pid);
    if (!m) return;
    this.#samples++;
    if (m.rssKiB > this.#maxKiB) this.#maxKiB = m.rssKiB;
  }

  stop(): MemoryWindow {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#poll();
    const m = memory(this.pid);
    const hwm = this.#reset && m ? m.hwmKiB / 1024 : NaN;
    const sampled = this.#maxKiB / 1024;
    return {
      sampledPeakMB: sampled,
      hwmPeakMB: hwm,
      peakMB: Number.isFinite(hwm) ? Math.max(hwm, sampled) : sampled,
      startMB: this.#startKiB / 1024,
      endMB: (m?.rssKiB ?? 0) / 1024,
      samples: this.#samples,
    };
  }
}

/** Machine-wide CPU time from /proc/stat, in seconds: all of it, and the idle part (idle + iowait). */
export function machineCpu(): { total: number; idle: number } {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] as string;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest fields are already in user/nice)
    const total = v.slice(0, 8).reduce((a, b) => a + (b || 0), 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { total: total / clkTck, idle: idle / clkTck };
  } catch {
    return { total: NaN, idle: NaN };
  }
}

/** Share of the machine's CPU that was idle over the next `ms`, 0–100. */
export async function idlePercent(ms: number): Promise<number> {
  const a = machineCpu();
  await new Promise((r) => setTimeout(r, ms));
  const b = machineCpu();
  return ((b.idle - a.idle) / Math.max(1e-9, b.total - a.total)) * 100;
}

/** Waits until the machine is at least `minIdle`% idle over half a second, for at most `maxMs`. */
export async function waitForQuiet(minIdle: number, maxMs: number): Promise<{ waitedSeconds: number; idlePercent: number }> {
  const started = Date.now();
  let idle = await idlePercent(500);
  while (idle < minIdle && Date.now() - started < maxMs) idle = await idlePercent(500);
  return { waitedSeconds: (Date.now() - started) / 1000, idlePercent: idle };
}

/** Largest process.memoryUsage() figures (MiB) the service child reported over `bench.memory`. */
export interface HeapPeaks {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  samples: number;
}

/** Polls the service child's `bench.memory` (one request at a time, every `intervalMs`). */
export class HeapWatch {
  #stopped = false;
  #loop: Promise<void> | null = null;
  readonly peaks: HeapPeaks = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0, samples: 0 };

  constructor(
    private readonly nc: import("@nats-io/nats-core").NatsConnection,
    private readonly intervalMs = 50,
  ) {}

  start(): void {
    this.#loop = (async () => {
      while (!this.#stopped) {
        try {
          const m = (await this.nc.request("bench.memory", "", { timeout: 2000 })).json<Record<keyof HeapPeaks, number>>();
          for (const k of ["rss", "heapTotal", "heapUsed", "external", "arrayBuffers"] as const) {
            this.peaks[k] = Math.max(this.peaks[k], (m[k] ?? 0) / 1024 / 1024);
          }
          this.peaks.samples++;
        } catch {
          // a missed sample
        }
        await new Promise((r) => setTimeout(r, this.intervalMs));
      }
    })();
  }

  async stop(): Promise<HeapPeaks> {
    this.#stopped = true;
    await this.#loop;
    return this.peaks;
  }
}
