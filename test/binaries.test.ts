/**
 * Which nats-server and nats CLI the tests run (test/harness/binaries.ts): the variable first,
 * then the newest built one in the cache, then PATH. Fake binaries in a temp dir stand in for
 * the real ones; they print what `--version` prints.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { findCliBinary, findServerBinary, needsServer, parseVersion, serverVersion } from "./harness/binaries.ts";

describe("the nats-server and nats CLI binaries", () => {
  const root = mkdtempSync(join(tmpdir(), "nats-backup-binaries-"));
  after(() => rmSync(root, { recursive: true, force: true }));

  const fake = (path: string, printed: string): string => {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, `#!/bin/sh\necho '${printed}'\n`);
    chmodSync(path, 0o755);
    return path;
  };
  const cache = join(root, "cache");
  const pathDir = join(root, "path");
  const newest = fake(join(cache, "nats-server-2.15.3", "nats-server"), "nats-server: v2.15.3");
  fake(join(cache, "nats-server-2.9.10", "nats-server"), "nats-server: v2.9.10");
  fake(join(cache, "nats-server-2.10.27", "nats-server"), "nats-server: v2.10.27");
  mkdirSync(join(cache, "nats-server-2.16.0"), { recursive: true }); // a build that left no binary
  const onPath = fake(join(pathDir, "nats-server"), "nats-server: v2.9.10");
  const cli = fake(join(cache, "natscli-0.5.0", "nats"), "v0.5.0");
  const cliOnPath = fake(join(pathDir, "nats"), "v0.4.0");
  const explicitBin = fake(join(root, "elsewhere", "nats-server"), "nats-server: v2.12.15");

  test("NATS_SERVER_BIN wins, as a path or a command on PATH; a wrong one is an error", () => {
    assert.equal(findServerBinary({ NATS_SERVER_BIN: explicitBin, NATS_BACKUP_BIN_CACHE: cache, PATH: pathDir }).path, explicitBin);
    assert.equal(findServerBinary({ NATS_SERVER_BIN: "nats-server", NATS_BACKUP_BIN_CACHE: cache, PATH: pathDir }).path, onPath);
    assert.throws(() => findServerBinary({ NATS_SERVER_BIN: join(root, "nope"), NATS_BACKUP_BIN_CACHE: cache }), /NATS_SERVER_BIN=.*nope: no such executable/);
  });

  test("unset, the newest version built in the cache (by version, not by name)", () => {
    assert.equal(findServerBinary({ NATS_BACKUP_BIN_CACHE: cache, PATH: pathDir }).path, newest);
    assert.equal(findServerBinary({ NATS_SERVER_BIN: "", NATS_BACKUP_BIN_CACHE: cache, PATH: pathDir }).path, newest);
  });

  test("with nothing built, nats-server on PATH; with none there either, an error that says what to do", () => {
    assert.equal(findServerBinary({ NATS_BACKUP_BIN_CACHE: join(root, "empty"), PATH: pathDir }).path, onPath);
    assert.throws(() => findServerBinary({ NATS_BACKUP_BIN_CACHE: join(root, "empty"), PATH: join(root, "empty") }), /scripts\/nats-binaries\.sh/);
  });

  test("the version is what --version prints, and a skip reason names it", () => {
    assert.deepEqual(serverVersion(newest), { major: 2, minor: 15, patch: 3, text: "2.15.3" });
    assert.deepEqual(parseVersion("nats-server: v2.9.10"), { major: 2, minor: 9, patch: 10, text: "2.9.10" });
    assert.equal(needsServer("2.15.0", "snapshot a memory stream", newest), false);
    assert.equal(
      needsServer("2.15.0", "snapshot a memory stream", onPath),
      "nats-server 2.9.10 cannot snapshot a memory stream (needs 2.15.0 or newer)",
    );
  });

  test("the nats CLI: NATS_CLI_BIN, else the cache, else PATH, else none with the reason", () => {
    assert.equal(findCliBinary({ NATS_CLI_BIN: cliOnPath, NATS_BACKUP_BIN_CACHE: cache }).path, cliOnPath);
    assert.equal(findCliBinary({ NATS_BACKUP_BIN_CACHE: cache, PATH: pathDir }).path, cli);
    assert.equal(findCliBinary({ NATS_BACKUP_BIN_CACHE: join(root, "empty"), PATH: pathDir }).path, cliOnPath);
    const none = findCliBinary({ NATS_BACKUP_BIN_CACHE: join(root, "empty"), PATH: join(root, "empty") });
    assert.equal(none.path, null);
    assert.match(none.reason ?? "", /no nats CLI: set NATS_CLI_BIN, or run scripts\/nats-binaries\.sh/);
  });
});
