/**
 * One timed operation with what the bench watches meanwhile: CPU seconds per process (service,
 * nats-server, bench, the rest of the machine), the service's memory, its heap (child), the
 * latency sampler and a CPU profile where asked. Shared by the stream and the account bench.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { cpuTimes, HeapWatch, machineCpu, MemoryWatch, waitForQuiet, type HeapPeaks, type MemoryWindow } from "./proc.ts";
import { LatencySampler, type LatencySamples } from "./sampler.ts";

export interface CpuSeconds {
  service: number;
  server: number;
  serviceSystem: number;
  serverSystem: number;
  bench: number;
  machineBusy: number;
  /** Machine busy minus the three above: other processes, among them a CLI the bench runs. */
  others: number;
}

export interface Measured<T> {
  value: T;
  seconds: number;
  cpu: CpuSeconds;
  /** Machine idle % just before the operation, and how long the bench waited for it. */
  quiet?: { waitedSeconds: number; idlePercent: number };
  memory?: MemoryWindow;
  heapPeaksMB?: HeapPeaks;
  latencySamples?: LatencySamples;
  profile?: string;
}

export interface MeasureSetup {
  nc: NatsConnection;
  samplerNc: NatsConnection;
  servicePid: number;
  serverPid: number;
  /** The service is bench/service-child.ts, which answers `bench.memory`. */
  heapProbe: boolean;
  /** Wait (≤ 30 s) until the machine is this % idle before each operation; 0: don't. */
  waitIdle: number;
  log: (text: string) => void;
}

export interface MeasureOptions {
  memory?: boolean;
  sampler?: boolean;
  /** Name of the CPU profile the service child writes for this operation. */
  profile?: string;
}

export type Measure = <T>(fn: () => Promise<T>, opts?: MeasureOptions) => Promise<Measured<T>>;

export function measurer(setup: MeasureSetup): Measure {
  const { nc, samplerNc, servicePid, serverPid } = setup;
  return async <T>(fn: () => Promise<T>, opts: MeasureOptions = {}): Promise<Measured<T>> => {
    const quiet = setup.waitIdle > 0 ? await waitForQuiet(setup.waitIdle, 30_000) : undefined;
    if (quiet && quiet.idlePercent < setup.waitIdle) {
      setup.log(`machine only ${quiet.idlePercent.toFixed(0)}% idle after ${quiet.waitedSeconds.toFixed(0)} s; measuring anyway`);
    }
    if (opts.profile) await nc.request("bench.profile.start", "", { timeout: 10_000 });
    const watch = opts.memory ? new MemoryWatch(servicePid, 50) : null;
    const heap = opts.memory && setup.heapProbe ? new HeapWatch(samplerNc, 50) : null;
    heap?.start();
    const sampler = opts.sampler ? new LatencySampler(samplerNc) : null;
    const cpu0 = {
      service: cpuTimes(servicePid),
      server: cpuTimes(serverPid),
      bench: process.cpuUsage(),
      machine: machineCpu(),
    };
    watch?.start();
    sampler?.start();
    const t0 = performance.now();
    const value = await fn();
    const seconds = (performance.now() - t0) / 1000;
    const memory = watch?.stop();
    const heapPeaksMB = await heap?.stop();
    const latencySamples = await sampler?.stop();
    const benchCpu = process.cpuUsage(cpu0.bench);
    const machine = machineCpu();
    const profile = opts.profile ? (await nc.request("bench.profile.stop", opts.profile, { timeout: 60_000 })).string() : undefined;
    const svc1 = cpuTimes(servicePid);
    const srv1 = cpuTimes(serverPid);
    const cpu: CpuSeconds = {
      service: Math.max(0, svc1.user + svc1.system - cpu0.service.user - cpu0.service.system),
      server: Math.max(0, srv1.user + srv1.system - cpu0.server.user - cpu0.server.system),
      serviceSystem: svc1.system - cpu0.service.system,
      serverSystem: srv1.system - cpu0.server.system,
      bench: (benchCpu.user + benchCpu.system) / 1e6,
      machineBusy: machine.total - machine.idle - (cpu0.machine.total - cpu0.machine.idle),
      others: 0,
    };
    cpu.others = Math.max(0, cpu.machineBusy - cpu.service - cpu.server - cpu.bench);
    return {
      value,
      seconds,
      cpu,
      ...(quiet ? { quiet } : {}),
      ...(memory ? { memory } : {}),
      ...(heapPeaksMB ? { heapPeaksMB } : {}),
      ...(latencySamples ? { latencySamples } : {}),
      ...(profile ? { profile } : {}),
    };
  };
}
