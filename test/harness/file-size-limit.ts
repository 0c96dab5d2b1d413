/**
 * A nats-server that may write no file larger than a limit (RLIMIT_FSIZE, set with util-linux's
 * prlimit): a write past it fails with EFBIG (Go ignores SIGXFSZ), as on a full disk, and only
 * for the files that grow that large. A wrapper script to pass as `NatsServer.start({ bin })`.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { natsServerBin } from "./binaries.ts";

/** The path of a script that runs `bin` with files limited to `maxBytes`; throws when prlimit is missing. */
export function fileSizeLimitedServer(maxBytes: number, bin: string = natsServerBin()): string {
  execFileSync("prlimit", ["--version"], { stdio: "ignore" });
  const dir = mkdtempSync(join(tmpdir(), "nats-backup-fsize-"));
  const wrapper = join(dir, "nats-server");
  writeFileSync(wrapper, `#!/bin/sh\nexec prlimit --fsize=${maxBytes}:${maxBytes} -- ${JSON.stringify(bin)} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}
