/** Command line of `npm run bench`. */
import { parseArgs } from "node:util";
import type { PayloadKind } from "./fill.ts";
import type { ServiceKind } from "./service-proc.ts";

export const Ops = ["snapshot", "backup", "restore-raw", "restore-svc"] as const;
export type Op = (typeof Ops)[number];

export interface BenchArgs {
  sizeMB: number;
  rounds: number;
  /** Rounds run first and left out of the figures (JIT, page cache, the server's write-back after the build). */
  warmup: number;
  payloads: PayloadKind[];
  /** chunk_size in the service's backup request; undefined: the service's default. */
  chunkSize?: number;
  /** chunk_size of the raw (CLI-style) snapshot. */
  rawChunkSize: number;
  ops: Op[];
  sampler: boolean;
  /** bin: `node bin/nats-backup.js serve`; child: bench/service-child.ts (needed by --profile, --no-async-traces). */
  service: ServiceKind;
  /** Per-operation CPU profiles of the service (child only). */
  profile: boolean;
  /** The service's connection with noAsyncTraces (child only). */
  noAsyncTraces: boolean;
  publishWindow: number;
  /** Before each operation, wait (up to 30 s) until the machine is this % idle; 0: don't. */
  waitIdle: number;
  out?: string;
  /** --account: the account bench (bench/account.ts) instead of the stream bench. */
  account?: AccountArgs;
  /** --tenants: the tenants bench (bench/tenants.ts): one service, N accounts backing up at once. */
  tenants?: TenantsArgs;
  /** --decode: the archive decoding bench (bench/decode.ts) instead. */
  decode?: boolean;
}

export interface TenantsArgs {
  /** Accounts T01..TNN, each a tenant of the one service. */
  count: number;
  /** MiB of 1 KiB messages in each tenant's stream. */
  sizeMB: number;
}

export const AccountSets = ["data", "empty"] as const;
export type AccountSet = (typeof AccountSets)[number];

export interface AccountArgs {
  sets: AccountSet[];
  /** Streams of the data set, and MiB of 1 KiB messages in each. */
  dataStreams: number;
  dataSizeMB: number;
  /** Streams of the empty set. */
  emptyStreams: number;
  /** `nats-backup serve --account-parallel N`; undefined: the service's default. */
  parallel?: number;
}

export const usage = `npm run bench -- [options]

  --size MB            payload per stream in MiB, as 1 KiB messages   [256]
  --rounds N           rounds; each runs every operation once per payload [3]
  --warmup N           extra rounds run first and left out of the figures [1]
  --payload KIND       random | compressible | both                   [both]
  --chunk-size BYTES   chunk_size in the service's backup request (e.g. 131072, 128k, 1m) [service default]
  --raw-chunk-size B   chunk_size of the CLI-style raw snapshot        [128k]
  --ops LIST           subset of ${Ops.join(",")}                      [all]
  --no-sampler         no ping/list latency sampler during the service's backup
  --service KIND       bin: node --max-semi-space-size=16 bin/nats-backup.js serve (built JS, as npm start); child: bench/service-child.ts;
                       bundle: src/cli/main.ts bundled by esbuild, run by plain node [bin]
  --profile            a CPU profile of the service per backup and restore (implies --service child;
                       profiles in bench/results/prof-<timestamp>/, summaries on stdout)
  --no-async-traces    connect the service with noAsyncTraces (implies --service child)
  --publish-window N   JetStream publishes in flight while building streams [2000]
  --wait-idle PCT      before each operation wait (≤ 30 s) until the machine's CPUs are PCT% idle; 0: no [60]
  --out FILE           results JSON                                   [bench/results/<timestamp>.json]

  --account            the account bench instead: $BACKUP.account / $RESTORE.account against
                       nats account backup / restore (the real CLI) on the same account; --size, --ops,
                       --chunk-size, --raw-chunk-size and the sampler do not apply; --payload picks one kind [random]
  --account-sets LIST  subset of ${AccountSets.join(",")}                                  [all]
  --account-streams N  streams in the data set                         [100]
  --account-size MB    MiB per stream in the data set, as 1 KiB messages [2]
  --account-empty N    streams in the empty set                        [300]
  --account-parallel N serve --account-parallel N: streams one account job works on at once (bin, bundle) [service default]

  --tenants            the tenants bench instead: one \`serve --tenants FILE\` for N accounts, each backing up
                       its own small stream at the same moment; one round; only --wait-idle, --publish-window
                       and --out apply
  --tenant-count N     accounts (tenants)                              [50]
  --tenant-size MB     MiB per tenant's stream, as 1 KiB random messages [1]

  --decode             the decoding bench instead: src/archive's S2 decoder and archive inspector on a real
                       archive of --size MiB per --payload (made once by the server under test, kept in
                       .cache/bench-archives/), MB/s of uncompressed output and peak RSS; only --size,
                       --rounds, --warmup, --payload and --out apply
`;

function bytes(flag: string, text: string): number {
  const m = /^(\d+)\s*([kKmM]?)(i?[bB])?$/.exec(text.trim());
  if (!m) throw new Error(`${flag} takes a byte count (131072, 128k, 1m), not ${JSON.stringify(text)}`);
  const unit = (m[2] ?? "").toLowerCase();
  return Number(m[1]) * (unit === "k" ? 1024 : unit === "m" ? 1024 * 1024 : 1);
}

function positive(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} takes a positive whole number, not ${JSON.stringify(text)}`);
  return n;
}

function whole(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} takes a whole number, not ${JSON.stringify(text)}`);
  return n;
}

export function parseBenchArgs(argv: string[]): BenchArgs | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: "string" },
      rounds: { type: "string" },
      warmup: { type: "string" },
      payload: { type: "string" },
      "chunk-size": { type: "string" },
      "raw-chunk-size": { type: "string" },
      ops: { type: "string" },
      "no-sampler": { type: "boolean" },
      service: { type: "string" },
      profile: { type: "boolean" },
      "no-async-traces": { type: "boolean" },
      "publish-window": { type: "string" },
      out: { type: "string" },
      "wait-idle": { type: "string" },
      account: { type: "boolean" },
      "account-sets": { type: "string" },
      "account-streams": { type: "string" },
      "account-size": { type: "string" },
      "account-empty": { type: "string" },
      "account-parallel": { type: "string" },
      tenants: { type: "boolean" },
      "tenant-count": { type: "string" },
      "tenant-size": { type: "string" },
      decode: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return null;
  const payload = values.payload ?? (values.account ? "random" : "both");
  const accountOnly = ["account-sets", "account-streams", "account-size", "account-empty", "account-parallel"] as const;
  for (const flag of accountOnly) if (values[flag] !== undefined && !values.account) throw new Error(`--${flag} needs --account`);
  for (const flag of ["tenant-count", "tenant-size"] as const) if (values[flag] !== undefined && !values.tenants) throw new Error(`--${flag} needs --tenants`);
  if (values.tenants && (values.service === "child" || values.profile || values["no-async-traces"])) {
    throw new Error("--tenants runs `serve --tenants`: --service bin or bundle");
  }
  if (values.decode && (values.tenants || values.account)) throw new Error("--decode is a bench of its own: not with --account or --tenants");
  if (values.tenants && values.account) throw new Error("--tenants and --account are separate benches: one at a time");
  if (values.account && payload === "both") throw new Error("--account takes one --payload: random or compressible");
  if (values.account && values["account-parallel"] && values.service === "child") {
    throw new Error("--account-parallel is a serve option: --service bin or bundle");
  }
  if (values.service && !["bin", "child", "bundle"].includes(values.service)) throw new Error("--service is bin, child or bundle");
  if ((values.profile || values["no-async-traces"]) && values.service && values.service !== "child") {
    throw new Error("--profile and --no-async-traces need --service child");
  }
  if (!["random", "compressible", "both"].includes(payload)) throw new Error(`--payload is random, compressible or both`);
  const ops = values.ops ? values.ops.split(",").map((s) => s.trim()) : [...Ops];
  for (const op of ops) if (!(Ops as readonly string[]).includes(op)) throw new Error(`unknown op ${op}; ops are ${Ops.join(",")}`);
  if (ops.includes("restore-raw") && !ops.includes("snapshot")) throw new Error("restore-raw needs snapshot");
  if (ops.includes("restore-svc") && !ops.includes("backup")) throw new Error("restore-svc needs backup");
  return {
    sizeMB: values.size ? positive("--size", values.size) : 256,
    rounds: values.rounds ? positive("--rounds", values.rounds) : 3,
    warmup: values.warmup !== undefined ? whole("--warmup", values.warmup) : 1,
    payloads: payload === "both" ? ["random", "compressible"] : [payload as PayloadKind],
    ...(values["chunk-size"] ? { chunkSize: bytes("--chunk-size", values["chunk-size"]) } : {}),
    rawChunkSize: values["raw-chunk-size"] ? bytes("--raw-chunk-size", values["raw-chunk-size"]) : 128 * 1024,
    ops: Ops.filter((op) => ops.includes(op)),
    sampler: !values["no-sampler"],
    service: values.profile || values["no-async-traces"] ? "child" : ((values.service ?? "bin") as ServiceKind),
    profile: values.profile ?? false,
    noAsyncTraces: values["no-async-traces"] ?? false,
    publishWindow: values["publish-window"] ? positive("--publish-window", values["publish-window"]) : 2000,
    waitIdle: values["wait-idle"] !== undefined ? whole("--wait-idle", values["wait-idle"]) : 60,
    ...(values.out ? { out: values.out } : {}),
    ...(values.account ? { account: accountArgs(values) } : {}),
    ...(values.decode ? { decode: true } : {}),
    ...(values.tenants
      ? {
          tenants: {
            count: values["tenant-count"] ? positive("--tenant-count", values["tenant-count"]) : 50,
            sizeMB: values["tenant-size"] ? positive("--tenant-size", values["tenant-size"]) : 1,
          },
        }
      : {}),
  };
}

function accountArgs(values: Record<string, string | boolean | undefined>): AccountArgs {
  const text = (flag: string) => values[flag] as string | undefined;
  const sets = text("account-sets") ? text("account-sets")!.split(",").map((s) => s.trim()) : [...AccountSets];
  for (const set of sets) if (!(AccountSets as readonly string[]).includes(set)) throw new Error(`unknown account set ${set}; sets are ${AccountSets.join(",")}`);
  const parallel = text("account-parallel");
  return {
    sets: AccountSets.filter((s) => sets.includes(s)),
    dataStreams: text("account-streams") ? positive("--account-streams", text("account-streams")!) : 100,
    dataSizeMB: text("account-size") ? positive("--account-size", text("account-size")!) : 2,
    emptyStreams: text("account-empty") ? positive("--account-empty", text("account-empty")!) : 300,
    ...(parallel ? { parallel: positive("--account-parallel", parallel) } : {}),
  };
}
