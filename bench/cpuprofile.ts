/**
 * Where a V8 .cpuprofile (node --cpu-prof) spent its time: self time by module and by function.
 * `npx tsx bench/cpuprofile.ts FILE.cpuprofile [--top N]`
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function moduleOf(url: string, fn: string): string {
  if (!url) return fn.startsWith("(") ? fn : "(native)";
  if (url.startsWith("node:")) return url;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] as string;
  const src = /\/(src|bench|test)\/(.+)$/.exec(url);
  if (src) return `${src[1]}/${src[2]}`;
  return url;
}

/** Self time by module and by function, summed over one or more profiles. */
export function summarizeProfile(files: string | string[], top = 25, label?: string): string {
  const list = Array.isArray(files) ? files : [files];
  let total = 0;
  const byModule = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const file of list) {
    const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const self = new Map<number, number>();
    for (let i = 0; i < p.samples.length; i++) {
      const id = p.samples[i] as number;
      self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
    }
    total += [...self.values()].reduce((a, b) => a + b, 0);
    for (const [id, us] of self) {
      const n = byId.get(id)!;
      const mod = moduleOf(n.callFrame.url, n.callFrame.functionName);
      byModule.set(mod, (byModule.get(mod) ?? 0) + us);
      const where = n.callFrame.url ? n.callFrame.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/(src|bench|test)\//, "$1/") : mod;
      const fname = `${n.callFrame.functionName || "(anonymous)"}  ${where}:${n.callFrame.lineNumber + 1}`;
      byFunction.set(fname, (byFunction.get(fname) ?? 0) + us);
    }
  }
  const idle = byModule.get("(idle)") ?? 0;
  const lines: string[] = [];
  lines.push(label ?? list.join(", "));
  lines.push(`wall ${(total / 1e6).toFixed(2)} s, busy ${((total - idle) / 1e6).toFixed(2)} s (idle ${(idle / 1e6).toFixed(2)} s)`);
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .filter(([k]) => !k.startsWith("(idle)"))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => `  ${(us / 1e6).toFixed(3).padStart(8)} s  ${((us / (total - idle)) * 100).toFixed(1).padStart(5)}%  ${k}`);
  lines.push("self time by module (share of busy):", ...rows(byModule));
  lines.push("self time by function:", ...rows(byFunction));
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const topIdx = argv.indexOf("--top");
  const top = topIdx >= 0 ? Number(argv[topIdx + 1]) : 25;
  const files = argv.filter((a, i) => !a.startsWith("--") && !(topIdx >= 0 && i === topIdx + 1));
  console.log(summarizeProfile(files, top));
}
