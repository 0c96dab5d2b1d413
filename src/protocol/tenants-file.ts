/**
 * The tenants file's schema (`--tenants FILE`, JSON or YAML): the accounts one service serves,
 * each with how to connect as that account and its own bucket, domain and limits. A contract, so
 * it lives with the protocol; src/tenants/tenants-file.ts loads and checks a file with it.
 */
import { z } from "zod";
import { RetentionPolicy } from "./schemas.ts";

/** One subject token's worth of letters, digits, `_` and `-`: safe in logs, records and subjects. */
const TokenPattern = /^[A-Za-z0-9_-]+$/;

const filePath = (what: string) =>
  z.string().min(1).describe(`${what}; a relative path is read from the tenants file's folder, ~/ from the home directory`);

const ByteUnits: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
};
const ByteSizePattern = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/;

/**
 * Bytes in a size such as `500MB` or `10GiB`: KB, MB, GB, TB are powers of 1000, KiB, MiB, GiB,
 * TiB powers of 1024 (unlike nats-server's configuration, where GB means GiB). Undefined when the
 * text is not such a size.
 */
export function parseByteSize(text: string): number | undefined {
  const m = ByteSizePattern.exec(text.trim());
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * ByteUnits[m[2]!]!);
}

const byteCount = z.union(
  [
    z.int().min(1),
    z
      .string()
      .regex(ByteSizePattern, "a size such as 500MB or 10GiB (KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024)")
      .transform((text, ctx) => {
        const bytes = parseByteSize(text)!;
        if (bytes < 1) ctx.addIssue({ code: "custom", message: "at least one byte", input: text });
        return bytes;
      }),
  ],
  { error: "a byte count (an integer of at least 1) or a size such as 500MB or 10GiB" },
);

export const TenantLimits = z.strictObject({
  max_jobs: z.int().min(1).optional().describe("at most this many of the tenant's jobs run at once (within the service's global limit)"),
  max_backup_bytes: byteCount
    .optional()
    .describe(
      "the largest backup allowed: bytes, or a size such as 500MB or 10GiB (KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024)",
    ),
  keep_last: RetentionPolicy.shape.keep_last.describe(
    "the tenant's default retention: keep the N newest completed backups of a stream (0: no limit by count)",
  ),
  max_age: RetentionPolicy.shape.max_age.describe(
    "the tenant's default retention: remove a stream's completed backups older than this, never its newest (0: no limit by age)",
  ),
});
export type TenantLimits = z.infer<typeof TenantLimits>;

export const TenantTls = z
  .strictObject({
    ca: filePath("the CA certificate (PEM) to trust the server with").optional(),
    cert: filePath("the client certificate (PEM); needs key").optional(),
    key: filePath("the client certificate's key (PEM); needs cert").optional(),
    first: z.boolean().optional().describe("TLS before the server's INFO (the server's handshake_first), as --tlsfirst"),
  })
  .superRefine((tls, ctx) => {
    if (tls.cert && !tls.key) ctx.addIssue({ code: "custom", path: ["key"], message: "required with cert" });
    if (tls.key && !tls.cert) ctx.addIssue({ code: "custom", path: ["cert"], message: "required with key" });
    if (!tls.ca && !tls.cert && !tls.key && tls.first === undefined) {
      ctx.addIssue({ code: "custom", message: "give at least one of ca, cert+key, first" });
    }
  })
  .describe("TLS settings; any of them makes TLS required (without tls, TLS when the server offers it)");
export type TenantTls = z.infer<typeof TenantTls>;

/** How a tenant may authenticate: exactly one of these. */
const AuthMethods = ["creds", "nkey", "user+password", "token"] as const;

export const Tenant = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(64)
      .regex(TokenPattern, "letters, digits, _ and - only (one subject token)")
      .describe("the tenant's name in logs, events and job records: letters, digits, _ and -"),
    url: z
      .string()
      .min(1)
      .optional()
      .describe("the server(s) to connect to, several separated by commas; default the service's --server (NATS_URL)"),
    creds: filePath("a .creds file (JWT and nkey seed) of a user of the tenant's account").optional(),
    nkey: filePath("a file holding the nkey seed of a user of the tenant's account").optional(),
    user: z.string().min(1).optional().describe("a user of the tenant's account; needs password"),
    password: z.string().min(1).optional().describe("the user's password; needs user"),
    token: z.string().min(1).optional().describe("an authentication token"),
    tls: TenantTls.optional(),
    bucket: z
      .string()
      .min(1)
      .max(255)
      .regex(TokenPattern, "letters, digits, _ and - only (an object store bucket name)")
      .optional()
      .describe("the object store bucket for the tenant's backups, in its account; default the service's --bucket (backups)"),
    replicas: z.int().min(1).max(5).optional().describe("replicas of the bucket when the service creates it; default the service's --replicas"),
    domain: z
      .string()
      .min(1)
      .max(255)
      .regex(TokenPattern, "letters, digits, _ and - only (a JetStream domain)")
      .optional()
      .describe("the JetStream domain to use: requests go to $JS.<domain>.API (a leaf node's or hub's JetStream)"),
    limits: TenantLimits.optional().describe("the tenant's own limits, within the service's"),
  })
  .superRefine((tenant, ctx) => {
    const given = AuthMethods.filter((method) =>
      method === "user+password" ? tenant.user !== undefined || tenant.password !== undefined : tenant[method] !== undefined,
    );
    if (given.length !== 1) {
      ctx.addIssue({ code: "custom", message: `give exactly one of ${AuthMethods.join(", ")}` });
    } else if (tenant.user !== undefined && tenant.password === undefined) {
      ctx.addIssue({ code: "custom", path: ["password"], message: "required with user" });
    } else if (tenant.password !== undefined && tenant.user === undefined) {
      ctx.addIssue({ code: "custom", path: ["user"], message: "required with password" });
    }
  })
  .describe("an account to serve, and how to connect as one of its users: exactly one of creds, nkey, user+password, token");
export type Tenant = z.infer<typeof Tenant>;

export const TenantsFile = z
  .strictObject({
    tenants: z.array(Tenant).min(1).describe("the accounts to serve; names unique"),
  })
  .superRefine((file, ctx) => {
    const firstAt = new Map<string, number>();
    file.tenants.forEach((tenant, i) => {
      const first = firstAt.get(tenant.name);
      if (first === undefined) firstAt.set(tenant.name, i);
      else ctx.addIssue({ code: "custom", message: `duplicate tenant name ${JSON.stringify(tenant.name)} (tenants[${first}] and tenants[${i}])` });
    });
  });
export type TenantsFile = z.infer<typeof TenantsFile>;
