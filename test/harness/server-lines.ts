/**
 * nats-server binaries by release line, for tests that run two versions side by side (a backup
 * taken on one, restored on another): the built ones in the cache (scripts/nats-binaries.sh) and
 * the one on PATH (Debian's 2.9.10 here). A missing one comes with the reason to skip with.
 */
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { cachedServers, compareVersions, serverVersion, type Version } from "./binaries.ts";

export type LineBinary = { bin: string; version: Version; reason?: undefined } | { bin: null; version?: undefined; reason: string };

/** Every known nats-server, newest first: the cache's, then PATH's when its version is not among them. */
function knownServers(): { bin: string; version: Version }[] {
  const found = cachedServers().map((s) => ({ bin: s.path, version: s.version }));
  const onPath = pathServer();
  if (onPath && !found.some((s) => compareVersions(s.version, onPath.version) === 0)) found.push(onPath);
  return found.sort((a, b) => compareVersions(b.version, a.version));
}

function pathServer(): { bin: string; version: Version } | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const bin = join(dir, "nats-server");
    try {
      accessSync(bin, constants.X_OK);
    } catch {
      continue;
    }
    return { bin, version: serverVersion(bin) };
  }
  return null;
}

/** The newest nats-server of release line `line` ("2.10"), or why there is none. */
export function serverOfLine(line: string): LineBinary {
  const [major, minor] = line.split(".").map(Number);
  const found = knownServers().find((s) => s.version.major === major && s.version.minor === minor);
  if (found) return found;
  return { bin: null, reason: `no nats-server ${line} is built: run scripts/nats-binaries.sh (CI builds every tested version)` };
}

/** The newest nats-server known. */
export function newestServer(): LineBinary {
  return knownServers()[0] ?? { bin: null, reason: "no nats-server: run scripts/nats-binaries.sh, or install one on PATH" };
}
