/**
 * The tenants file: JSON and YAML read alike, every bad entry named by position and name, paths
 * read from the file's folder, and the examples work: examples/accounts.conf starts a real
 * nats-server and each tenant of examples/tenants.json connects into its own account.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { nkeys } from "@nats-io/nats-core";
import { connectNats } from "../src/connection/connect.ts";
import { loadTenantsFile, parseByteSize, TenantsFileError, type Tenant } from "../src/tenants/tenants-file.ts";
import { tenantConnectionOptions } from "../src/tenants/tenant-connection.ts";
import { freePort, natsServerBin, NatsServer } from "./harness/nats-server.ts";
import { jsApi } from "./harness/inspect.ts";

const Examples = resolve(import.meta.dirname, "..", "examples");

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "nats-backup-tenants-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
/** A tenants file in a folder of its own under the test's directory; returns its path. */
function tenantsFile(content: unknown, ext = "json"): string {
  const folder = join(dir, `f${++fileCount}`);
  mkdirSync(folder);
  const file = join(folder, `tenants.${ext}`);
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

/** The message loading `file` fails with. */
async function loadError(file: string): Promise<string> {
  const err = await loadTenantsFile(file).then(
    () => assert.fail(`${file} loaded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TenantsFileError, String(err));
  return err.message;
}

const A = { name: "A", user: "a", password: "pa" };
const B = { name: "B", user: "b", password: "pb" };
const C = { name: "C", token: "tc" };

describe("valid files", () => {
  test("the example JSON and YAML load to the same tenants", async () => {
    const fromJson = await loadTenantsFile(join(Examples, "tenants.json"));
    const fromYaml = await loadTenantsFile(join(Examples, "tenants.yaml"));
    assert.deepEqual(fromYaml, fromJson);
    assert.deepEqual(
      fromJson.tenants.map((t) => t.name),
      ["A", "B", "C"],
    );
    assert.deepEqual(fromJson.tenants[1], {
      name: "B",
      user: "b-backup",
      password: "b-backup-secret",
      bucket: "b-backups",
      replicas: 1,
      limits: { max_jobs: 2, max_backup_bytes: 500 * 2 ** 20, keep_last: 7, max_age: "30d" },
    });
  });

  test(".yml is YAML too, and a number of bytes stays a number", async () => {
    const file = tenantsFile("tenants:\n  - {name: A, token: t, limits: {max_backup_bytes: 1000, max_age: 3600}}\n", "yml");
    assert.deepEqual(await loadTenantsFile(file), { tenants: [{ name: "A", token: "t", limits: { max_backup_bytes: 1000, max_age: 3600 } }] });
  });

  test("sizes: SI units are powers of 1000, IEC units of 1024", () => {
    assert.equal(parseByteSize("500MB"), 500_000_000);
    assert.equal(parseByteSize("10GiB"), 10 * 2 ** 30);
    assert.equal(parseByteSize("1.5 KiB"), 1536);
    assert.equal(parseByteSize("12B"), 12);
    assert.equal(parseByteSize("10 gigs"), undefined);
    assert.equal(parseByteSize("10gb"), undefined);
  });

  test("paths are read from the tenants file's folder; absolute paths stay", async () => {
    const folder = join(dir, "paths");
    mkdirSync(join(folder, "conf", "keys"), { recursive: true });
    writeFileSync(join(folder, "conf", "keys", "a.nk"), `# A's seed\n${new TextDecoder().decode(nkeys.createUser().getSeed())}\n`);
    writeFileSync(join(folder, "ca.pem"), "not read at load\n");
    writeFileSync(join(folder, "client.pem"), "");
    writeFileSync(join(folder, "client-key.pem"), "");
    writeFileSync(join(folder, "b.creds"), "");
    const file = join(folder, "conf", "tenants.yaml");
    writeFileSync(
      file,
      [
        "tenants:",
        "  - name: A",
        "    nkey: keys/a.nk",
        "    tls: { ca: ../ca.pem, cert: ../client.pem, key: ../client-key.pem, first: true }",
        "  - name: B",
        `    creds: ${join(folder, "b.creds")}`,
      ].join("\n"),
    );
    // Loaded from another working directory, relative to neither.
    const { tenants } = await loadTenantsFile(file);
    assert.equal(tenants[0]!.nkey, join(folder, "conf", "keys", "a.nk"));
    assert.deepEqual(tenants[0]!.tls, {
      ca: join(folder, "ca.pem"),
      cert: join(folder, "client.pem"),
      key: join(folder, "client-key.pem"),
      first: true,
    });
    assert.equal(tenants[1]!.creds, join(folder, "b.creds"));
  });
});

describe("bad files name the entry", () => {
  test("user without password", async () => {
    const file = tenantsFile({ tenants: [A, { name: "B", user: "b" }] });
    assert.equal(await loadError(file), `tenants file ${file}: tenants[1] ("B"): password: required with user`);
  });

  test("password without user", async () => {
    const file = tenantsFile({ tenants: [{ name: "A", password: "p" }] });
    assert.equal(await loadError(file), `tenants file ${file}: tenants[0] ("A"): user: required with password`);
  });

  test("an unknown field, in a tenant and at the top", async () => {
    const inTenant = tenantsFile({ tenants: [A, { name: "B", user: "b", pasword: "pb" }] });
    // The misspelt field is named, and what the tenant then lacks.
    assert.equal(
      await loadError(inTenant),
      `tenants file ${inTenant}: tenants[1] ("B"): unknown field "pasword"; tenants[1] ("B"): password: required with user`,
    );
    const inLimits = tenantsFile({ tenants: [{ ...A, limits: { max_job: 1 } }] });
    assert.equal(await loadError(inLimits), `tenants file ${inLimits}: tenants[0] ("A"): limits: unknown field "max_job"`);
    const atTop = tenantsFile({ tenants: [A], tenant: [] });
    assert.equal(await loadError(atTop), `tenants file ${atTop}: unknown field "tenant"`);
  });

  test("a duplicate name", async () => {
    const file = tenantsFile({ tenants: [A, B, C, { ...A, password: "other" }] });
    assert.equal(await loadError(file), `tenants file ${file}: duplicate tenant name "A" (tenants[0] and tenants[3])`);
  });

  test("none, or more than one, way to authenticate", async () => {
    const two = tenantsFile({ tenants: [A, B, { ...C, user: "c", password: "pc" }] });
    assert.equal(await loadError(two), `tenants file ${two}: tenants[2] ("C"): give exactly one of creds, nkey, user+password, token`);
    const none = tenantsFile({ tenants: [A, B, { name: "C" }] });
    assert.equal(await loadError(none), `tenants file ${none}: tenants[2] ("C"): give exactly one of creds, nkey, user+password, token`);
  });

  test("a name that is not one subject token, and no name", async () => {
    const dotted = tenantsFile({ tenants: [{ ...A, name: "a.b" }] });
    assert.equal(await loadError(dotted), `tenants file ${dotted}: tenants[0] ("a.b"): name: letters, digits, _ and - only (one subject token)`);
    const nameless = tenantsFile({ tenants: [A, { token: "t" }] });
    assert.equal(await loadError(nameless), `tenants file ${nameless}: tenants[1]: name: required`);
  });

  test("several problems are all named", async () => {
    const file = tenantsFile({ tenants: [{ ...A, replicas: 7 }, { ...B, password: 5 }] });
    assert.equal(
      await loadError(file),
      `tenants file ${file}: tenants[0] ("A"): replicas: Too big: expected number to be <=5; tenants[1] ("B"): password: expected string, received number`,
    );
  });

  test("limits: sizes, durations, counts", async () => {
    const size = tenantsFile({ tenants: [{ ...A, limits: { max_backup_bytes: "10 gigs" } }] });
    assert.equal(
      await loadError(size),
      `tenants file ${size}: tenants[0] ("A"): limits.max_backup_bytes: a size such as 500MB or 10GiB (KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024)`,
    );
    const wrongType = tenantsFile({ tenants: [{ ...A, limits: { max_backup_bytes: true } }] });
    assert.equal(
      await loadError(wrongType),
      `tenants file ${wrongType}: tenants[0] ("A"): limits.max_backup_bytes: a byte count (an integer of at least 1) or a size such as 500MB or 10GiB`,
    );
    const zero = tenantsFile({ tenants: [{ ...A, limits: { max_backup_bytes: 0, max_jobs: 0 } }] });
    assert.equal(
      await loadError(zero),
      `tenants file ${zero}: tenants[0] ("A"): limits.max_jobs: Too small: expected number to be >=1; tenants[0] ("A"): limits.max_backup_bytes: Too small: expected number to be >=1`,
    );
    const age = tenantsFile({ tenants: [{ ...A, limits: { max_age: "soon", keep_last: -1 } }] });
    assert.match(await loadError(age), /tenants\[0\] \("A"\): limits\.keep_last: Too small: expected number to be >=0; tenants\[0\] \("A"\): limits\.max_age: a duration as the nats CLI writes it/);
  });

  test("tls: a certificate without its key, and nothing at all", async () => {
    writeFileSync(join(dir, "cert.pem"), "");
    const noKey = tenantsFile({ tenants: [{ ...A, tls: { cert: join(dir, "cert.pem") } }] });
    assert.equal(await loadError(noKey), `tenants file ${noKey}: tenants[0] ("A"): tls.key: required with cert`);
    const empty = tenantsFile({ tenants: [{ ...A, tls: {} }] });
    assert.equal(await loadError(empty), `tenants file ${empty}: tenants[0] ("A"): tls: give at least one of ca, cert+key, first`);
  });

  test("a file a tenant names that is missing, a folder, or no nkey seed", async () => {
    const file = tenantsFile({
      tenants: [
        { name: "A", creds: "a.creds" },
        { name: "B", nkey: "." },
        { ...C, tls: { ca: "ca.pem" } },
      ],
    });
    const folder = resolve(file, "..");
    assert.equal(
      await loadError(file),
      `tenants file ${file}: tenants[0] ("A"): creds ${join(folder, "a.creds")}: no such file; ` +
        `tenants[1] ("B"): nkey ${folder}: not a file; tenants[2] ("C"): tls.ca ${join(folder, "ca.pem")}: no such file`,
    );
    const notSeed = tenantsFile({ tenants: [{ name: "A", nkey: "a.nk" }] });
    writeFileSync(join(notSeed, "..", "a.nk"), "SUAMNOTASEED\n");
    assert.equal(await loadError(notSeed), `tenants file ${notSeed}: tenants[0] ("A"): nkey ${join(notSeed, "..", "a.nk")}: no nkey seed in the file`);
  });

  test("not JSON, not YAML, another extension, no file, no tenants", async () => {
    const json = tenantsFile('{"tenants": [', "json");
    assert.match(await loadError(json), new RegExp(`^tenants file ${json}: not valid JSON: `));
    const yaml = tenantsFile("tenants:\n  - name: A\n   token: [", "yaml");
    assert.match(await loadError(yaml), new RegExp(`^tenants file ${yaml}: not valid YAML: `));
    const toml = tenantsFile("", "toml");
    assert.equal(await loadError(toml), `tenants file ${toml}: unknown extension ".toml": use .json, .yaml or .yml`);
    const missing = join(dir, "none.json");
    assert.match(await loadError(missing), new RegExp(`^tenants file ${missing}: ENOENT`));
    const empty = tenantsFile({ tenants: [] });
    assert.equal(await loadError(empty), `tenants file ${empty}: tenants: Too small: expected array to have >=1 items`);
  });
});

describe("connection options", () => {
  test("from the tenant alone: its url or the service's, never the service's environment", () => {
    const saved = { NATS_USER: process.env.NATS_USER, NATS_TOKEN: process.env.NATS_TOKEN, NATS_URL: process.env.NATS_URL };
    Object.assign(process.env, { NATS_USER: "leak", NATS_TOKEN: "leak", NATS_URL: "nats://leak:4222" });
    try {
      const a: Tenant = { name: "A", user: "a", password: "pa" };
      assert.deepEqual(tenantConnectionOptions(a, ["nats://s1:4222", "nats://s2:4222"]), {
        servers: ["nats://s1:4222", "nats://s2:4222"],
        name: "nats-backup",
        maxReconnectAttempts: -1,
        user: "a",
        pass: "pa",
      });
      const c: Tenant = { name: "C", token: "tc", url: "nats://c1:4222, nats://c2:4222" };
      assert.deepEqual(tenantConnectionOptions(c, "nats://service:4222"), {
        servers: ["nats://c1:4222", "nats://c2:4222"],
        name: "nats-backup",
        maxReconnectAttempts: -1,
        token: "tc",
      });
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  test("a file gone since loading is named with the tenant", () => {
    assert.throws(() => tenantConnectionOptions({ name: "B", creds: join(dir, "gone.creds") }, "nats://x:4222"), {
      message: `tenant "B": creds ${join(dir, "gone.creds")}: no such file`,
    });
  });

  test("an nkey tenant connects into its account", async () => {
    const user = nkeys.createUser();
    const seedFile = tenantsFile(`tenants:\n  - name: N\n    nkey: n.nk\n`, "yaml");
    writeFileSync(join(seedFile, "..", "n.nk"), new TextDecoder().decode(user.getSeed()));
    const server = await NatsServer.start({
      config: `accounts { N { jetstream { max_file: 3MB }, users: [ { nkey: ${user.getPublicKey()} } ] } }`,
    });
    try {
      const { tenants } = await loadTenantsFile(seedFile);
      const nc = await connectNats(tenantConnectionOptions(tenants[0]!, server.url));
      try {
        const info = await jsApi<{ limits: { max_storage: number } }>(nc, "INFO");
        assert.equal(info.error, undefined);
        assert.equal(info.limits.max_storage, 3 * 2 ** 20);
      } finally {
        await nc.close();
      }
    } finally {
      await server.stop();
    }
  });
});

/** examples/accounts.conf as it is (NatsServer writes a config of its own), on a free port and store. */
async function startExampleServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), "nats-backup-example-"));
  const proc: ChildProcess = spawn(natsServerBin(), ["-c", join(Examples, "accounts.conf"), "-p", String(port), "-sd", storeDir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  let log = "";
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      process.kill(proc.pid!, "SIGTERM");
      await exited;
    }
    rmSync(storeDir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`examples/accounts.conf: no "Server is ready" in 15 s:\n${log}`)), 15_000);
      const onData = (chunk: Buffer) => {
        log += chunk.toString();
        if (log.includes("Server is ready")) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout!.on("data", onData);
      proc.stderr!.on("data", onData);
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`examples/accounts.conf: nats-server exited with ${code}:\n${log}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `nats://127.0.0.1:${port}`, stop };
}

describe("the examples", () => {
  test("accounts.conf starts, and each tenant of tenants.json works in its own account", async () => {
    const server = await startExampleServer();
    try {
      const { tenants } = await loadTenantsFile(join(Examples, "tenants.json"));
      // Each account's max_file in accounts.conf (nats-server's GB and MB are GiB and MiB): which
      // account a connection landed in.
      const maxFile: Record<string, number> = { A: 2 * 2 ** 30, B: 2 ** 30, C: 512 * 2 ** 20 };
      assert.deepEqual(tenants.map((t) => t.name).sort(), Object.keys(maxFile));
      for (const tenant of tenants) {
        const nc = await connectNats(tenantConnectionOptions(tenant, server.url));
        try {
          const info = await jsApi<{ limits: { max_storage: number } }>(nc, "INFO");
          assert.equal(info.error, undefined, `${tenant.name}: ${JSON.stringify(info.error)}`);
          assert.equal(info.limits.max_storage, maxFile[tenant.name], `${tenant.name}'s $JS.API.INFO is its account's`);
        } finally {
          await nc.close();
        }
      }
      // The password matters: a wrong one is refused.
      await assert.rejects(connectNats({ ...tenantConnectionOptions({ ...tenants[0]!, password: "wrong" }, server.url), maxReconnectAttempts: 0 }), /Authorization Violation/i);
    } finally {
      await server.stop();
    }
  });
});
