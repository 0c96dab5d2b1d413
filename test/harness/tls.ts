/**
 * Certificates for TLS tests, made at test time with `openssl` into a directory the test owns
 * (never committed): a CA, and server or client certificates it signs. EC P-256 keys, valid one day.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface CertificateAuthority {
  /** The CA's certificate (PEM file): what a peer is given to trust. */
  cert: string;
  key: string;
  dir: string;
  name: string;
}

export interface Certificate {
  cert: string;
  key: string;
  /** The files' contents, for settings that take PEM text rather than files. */
  certPem(): string;
  keyPem(): string;
}

/** Whether openssl can be run here; tests skip with this message when not. */
export function opensslMissing(): false | string {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return false;
  } catch {
    return "openssl is not installed";
  }
}

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args[0]} failed: ${stderr || (err as Error).message}`);
  }
}

const EcKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export function certificateAuthority(dir: string, name = "test-ca"): CertificateAuthority {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}-key.pem`);
  openssl([
    "req", "-x509", ...EcKey, "-days", "1", "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-keyout", key, "-out", cert,
  ]);
  return { cert, key, dir, name };
}

/**
 * A certificate signed by `ca`. `names` become its subject alternative names ("localhost" is a
 * DNS name, "127.0.0.1" an IP address); `use` its extended key usage.
 */
export function issue(ca: CertificateAuthority, name: string, opts: { names?: string[]; use: "server" | "client" }): Certificate {
  const cert = join(ca.dir, `${name}.pem`);
  const key = join(ca.dir, `${name}-key.pem`);
  const csr = join(ca.dir, `${name}.csr`);
  const ext = join(ca.dir, `${name}.ext`);
  const sans = (opts.names ?? []).map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`));
  writeFileSync(
    ext,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${opts.use === "server" ? "serverAuth" : "clientAuth"}`,
      ...(sans.length ? [`subjectAltName=${sans.join(",")}`] : []),
    ].join("\n"),
  );
  openssl(["req", ...EcKey, "-subj", `/CN=${name}`, "-keyout", key, "-out", csr]);
  openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", cert]);
  return { cert, key, certPem: () => readFileSync(cert, "utf8"), keyPem: () => readFileSync(key, "utf8") };
}

/** The server's `tls { … }` block for `cert` (and, to check client certificates, the CA that signs them). */
export function serverTlsBlock(cert: Certificate, extra: { verifyWith?: CertificateAuthority; handshakeFirst?: boolean } = {}): string {
  const lines = [`cert_file: ${JSON.stringify(cert.cert)}`, `key_file: ${JSON.stringify(cert.key)}`];
  if (extra.verifyWith) lines.push(`ca_file: ${JSON.stringify(extra.verifyWith.cert)}`, "verify: true");
  if (extra.handshakeFirst) lines.push("handshake_first: true");
  return `tls {\n  ${lines.join("\n  ")}\n}`;
}
