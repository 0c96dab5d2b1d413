/**
 * The tenants file (`--tenants FILE`, JSON or YAML): the accounts one service serves, each with
 * how to connect as that account and its own bucket, domain and limits. Loading validates it and
 * names a bad entry by position and name; paths in it are read relative to the file's folder.
 */
import { accessSync, constants, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, extname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { Tenant, TenantsFile } from "../protocol/tenants-file.ts";
import { tenantConnectionOptions } from "./tenant-connection.ts";

export { parseByteSize, Tenant, TenantLimits, TenantsFile, TenantTls } from "../protocol/tenants-file.ts";

/** A tenants file that cannot be used; `problems` holds each problem found, without the file's name. */
export class TenantsFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`tenants file ${file}: ${problems.join("; ")}`);
    this.name = "TenantsFileError";
  }
}

/** `tenants[1] ("B")`, or `tenants[1]` when the entry has no name to show. */
function entryLabel(input: unknown, index: number): string {
  const name = (input as { tenants?: { name?: unknown }[] } | null)?.tenants?.[index]?.name;
  return typeof name === "string" ? `tenants[${index}] (${JSON.stringify(name)})` : `tenants[${index}]`;
}

/** `tenants[1] ("B"): tls.ca` for a path into the file. */
function pathLabel(input: unknown, path: PropertyKey[]): string {
  if (path[0] === "tenants" && typeof path[1] === "number") {
    const rest = path.slice(2).map(String).join(".");
    return rest ? `${entryLabel(input, path[1])}: ${rest}` : entryLabel(input, path[1]);
  }
  return path.map(String).join(".");
}

function issueText(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "unrecognized_keys":
      return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    case "invalid_type":
      // With reportInput, a present value is reported; a missing one is not.
      return issue.input === undefined ? "required" : issue.message.replace(/^Invalid input: /, "");
    case "invalid_union": {
      // The branch of the value's own type says best what is wrong with it.
      const ofItsType = issue.errors.find((branch) => branch.some((i) => i.code !== "invalid_type"));
      return ofItsType ? issueText(ofItsType.find((i) => i.code !== "invalid_type")!) : issue.message;
    }
    default:
      return issue.message;
  }
}

function issueLine(input: unknown, issue: z.core.$ZodIssue): string {
  const where = pathLabel(input, issue.path);
  return where ? `${where}: ${issueText(issue)}` : issueText(issue);
}

/** `~/x` from the home directory, a relative path from the tenants file's folder. */
function resolvePath(baseDir: string, path: string): string {
  const home = path.replace(/^~(?=\/|$)/, homedir());
  return isAbsolute(home) ? home : resolve(baseDir, home);
}

function withResolvedPaths(tenant: Tenant, baseDir: string): Tenant {
  const at = (path: string | undefined) => (path === undefined ? undefined : resolvePath(baseDir, path));
  return {
    ...tenant,
    ...(tenant.creds !== undefined ? { creds: at(tenant.creds) } : {}),
    ...(tenant.nkey !== undefined ? { nkey: at(tenant.nkey) } : {}),
    ...(tenant.tls
      ? {
          tls: {
            ...tenant.tls,
            ...(tenant.tls.ca !== undefined ? { ca: at(tenant.tls.ca) } : {}),
            ...(tenant.tls.cert !== undefined ? { cert: at(tenant.tls.cert) } : {}),
            ...(tenant.tls.key !== undefined ? { key: at(tenant.tls.key) } : {}),
          },
        }
      : {}),
  };
}

/** Why a file a tenant names cannot be read, or undefined when it can. */
function unreadable(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return "not a file";
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "no such file" : code === "EACCES" ? "not readable" : (err as Error).message;
  }
}

function fileProblems(tenant: Tenant, index: number, input: unknown): string[] {
  const files: [string, string | undefined][] = [
    ["creds", tenant.creds],
    ["nkey", tenant.nkey],
    ["tls.ca", tenant.tls?.ca],
    ["tls.cert", tenant.tls?.cert],
    ["tls.key", tenant.tls?.key],
  ];
  const problems: string[] = [];
  for (const [field, path] of files) {
    const why = path === undefined ? undefined : unreadable(path);
    if (why) problems.push(`${entryLabel(input, index)}: ${field} ${path}: ${why}`);
  }
  return problems;
}

/**
 * Validates a parsed tenants file (JSON or YAML alike) and resolves its paths against `baseDir`;
 * each file a tenant names must be a readable file, an nkey file must hold a seed. Throws a TenantsFileError naming `file`.
 */
export function validateTenantsFile(input: unknown, file: string, baseDir: string): TenantsFile {
  const parsed = TenantsFile.safeParse(input, { reportInput: true });
  if (!parsed.success) throw new TenantsFileError(file, parsed.error.issues.map((issue) => issueLine(input, issue)));
  const tenants = parsed.data.tenants.map((tenant) => withResolvedPaths(tenant, baseDir));
  const missing = tenants.flatMap((tenant, i) => fileProblems(tenant, i, input));
  if (missing.length) throw new TenantsFileError(file, missing);
  // Building each tenant's options reads its nkey seed: a bad one is the file's fault, found now.
  const unusable = tenants.flatMap((tenant, i) => {
    try {
      tenantConnectionOptions(tenant, "nats://127.0.0.1", entryLabel(input, i));
      return [];
    } catch (err) {
      return [(err as Error).message];
    }
  });
  if (unusable.length) throw new TenantsFileError(file, unusable);
  return { tenants };
}

/** The file's text as data: JSON for .json, YAML for .yaml and .yml. */
export function parseTenantsText(text: string, file: string): unknown {
  const ext = extname(file).toLowerCase();
  try {
    if (ext === ".json") return JSON.parse(text);
    if (ext === ".yaml" || ext === ".yml") return parseYaml(text);
  } catch (err) {
    throw new TenantsFileError(file, [`not valid ${ext === ".json" ? "JSON" : "YAML"}: ${(err as Error).message}`]);
  }
  throw new TenantsFileError(file, [`unknown extension ${JSON.stringify(ext)}: use .json, .yaml or .yml`]);
}

/** Reads, parses and validates a tenants file; relative paths in it are resolved against its folder. */
export async function loadTenantsFile(file: string): Promise<TenantsFile> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new TenantsFileError(file, [(err as Error).message]);
  }
  return validateTenantsFile(parseTenantsText(text, file), file, dirname(resolve(file)));
}
