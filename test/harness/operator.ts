/**
 * A decentralized-auth (operator mode) setup made at test time with @nats-io/jwt: an operator,
 * a system account, an account with JetStream, and users of it as creds files. The server gets
 * the operator and the accounts in its config (a memory resolver); nothing is written outside `dir`.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  createAccount,
  createOperator,
  createUser,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
  type KeyPair,
  type Permissions,
} from "@nats-io/jwt";

export interface OperatorSetup {
  /** Config for the server: operator, system account, memory resolver with both accounts. */
  config: string;
  /** Writes a creds file (JWT and seed) for a new user of the account; returns its path. */
  userCreds(name: string, permissions?: Permissions): Promise<string>;
}

export async function operatorSetup(dir: string): Promise<OperatorSetup> {
  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const operatorJwt = await encodeOperator("test-operator", operator, { system_account: system.getPublicKey() });
  const systemJwt = await encodeAccount("SYS", system, {}, { signer: operator });
  const accountJwt = await encodeAccount(
    "APP",
    account,
    // -1: no limit; JetStream is on for an account whose JWT gives it storage.
    { limits: { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1, subs: -1, data: -1, payload: -1, conn: -1 } },
    { signer: operator },
  );
  const config = [
    `operator: ${JSON.stringify(operatorJwt)}`,
    `system_account: ${JSON.stringify(system.getPublicKey())}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${system.getPublicKey()}: ${JSON.stringify(systemJwt)}`,
    `  ${account.getPublicKey()}: ${JSON.stringify(accountJwt)}`,
    "}",
  ].join("\n");
  return {
    config,
    async userCreds(name, permissions) {
      const user: KeyPair = createUser();
      const jwt = await encodeUser(name, user, account, permissions ?? {});
      const file = join(dir, `${name}.creds`);
      writeFileSync(file, fmtCreds(jwt, user), { mode: 0o600 });
      return file;
    },
  };
}
