/**
 * The backup protocol's rules as they are written down, for tests that judge the service from
 * outside (an oracle that shares no code with src/): the JSON Schemas in protocol/schemas/
 * (draft 2020-12, validated with ajv), the body rules of protocol/README.md, and nats-server's
 * stream-name rules, written here from its documentation and source.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020Module from "ajv/dist/2020.js";
import type { ValidateFunction } from "ajv";

// ajv is CommonJS: under ESM its class is the module itself, which TypeScript sees as `.default`.
const Ajv2020 = Ajv2020Module.default;

const schemaDir = fileURLToPath(new URL("../../protocol/schemas/", import.meta.url));

/** Every schema of protocol/schemas, by file name without `.json`, compiled once. */
export class ProtocolSchemas {
  readonly #ajv = new Ajv2020({ strict: false, allErrors: false });
  readonly #validators = new Map<string, ValidateFunction>();
  readonly raw = new Map<string, Record<string, unknown>>();

  constructor(dir = schemaDir) {
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
      const schema = JSON.parse(readFileSync(join(dir, file), "utf8")) as Record<string, unknown>;
      const name = file.slice(0, -".json".length);
      this.raw.set(name, schema);
      this.#validators.set(name, this.#ajv.compile(schema));
    }
  }

  /** Null when `value` satisfies the schema, else ajv's description of why not. */
  problem(name: string, value: unknown): string | null {
    const validate = this.#validators.get(name);
    if (!validate) throw new Error(`protocol/schemas/${name}.json does not exist`);
    return validate(value) ? null : this.#ajv.errorsText(validate.errors);
  }

  /**
   * The id rule the schemas write for every backup and job id (backup_manifest's `id`), as a
   * RegExp with the `u` flag as JSON Schema's patterns are read.
   */
  idPattern(): RegExp {
    // The manifest is one of a stream's or an account's; both write the same id rule.
    const manifest = this.raw.get("backup_manifest") as { properties?: unknown; oneOf?: { properties?: unknown }[] } | undefined;
    const properties = manifest?.properties ?? manifest?.oneOf?.[0]?.properties;
    const id = (properties as Record<string, { pattern?: string }> | undefined)?.id;
    if (!id?.pattern) throw new Error("backup_manifest.json has no id pattern");
    return new RegExp(id.pattern, "u");
  }
}

/** JSON's own whitespace (RFC 8259: space, tab, line feed, carriage return). */
const JsonWhitespaceOnly = /^[ \t\n\r]*$/;

/**
 * A request body as protocol/README.md reads it: "empty or a JSON object. Empty (or only
 * whitespace) means every default"; malformed JSON or a body that is not an object is a 400.
 * JSON text is UTF-8 (RFC 8259), so bytes that are not are malformed too. Returns the object, or
 * null when the body is refused before any schema is applied.
 */
export function requestObject(body: Uint8Array): Record<string, unknown> | null {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    return null;
  }
  if (JsonWhitespaceOnly.test(text)) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null; // malformed, or nested past what a parser takes
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  return value as Record<string, unknown>;
}

/**
 * A stream name as nats-server takes it. Its docs ("Naming Streams, Consumers, and Accounts",
 * docs.nats.io) prohibit spaces, tabs, `.`, `>`, `*` and the path separators `/` and `\`; its
 * source refuses the whitespace " \t\r\n\f" and `.*>` (server/jetstream.go isValidName), `/`
 * and `\` from 2.12.8 (isValidAssetName), and names longer than 255 bytes (JSMaxNameLen, Go's
 * len: UTF-8 bytes). Nothing else is forbidden: control characters and other Unicode are names.
 */
export function serverTakesStreamName(name: string): boolean {
  if (name.length === 0 || Buffer.byteLength(name, "utf8") > 255) return false;
  for (const c of name) if (" \t\r\n\f.*>/\\".includes(c)) return false;
  return true;
}

/** U+0000–U+001F and U+007F–U+009F: characters with no printable form. */
const ControlCharacter = /[\u0000-\u001f\u007f-\u009f]/u;

/**
 * Whether `name` is a stream name by the rules written down, where they agree:
 * - "valid": nats-server takes it (above), and so does the protocol's own schema for a stream
 *   name (list_request.json's `stream`: its pattern, and at most 255 characters);
 * - "invalid": neither does;
 * - "unsettled": the written rules disagree, and a service may answer either way. That is a name
 *   of at most 255 characters but more than 255 bytes (the schema takes it, the server does
 *   not), whitespace beyond the server's five (the schema's `\s` refuses it, the server takes
 *   it), or a control character (the server and the schema take it; NATS clients such as
 *   nats.java refuse non-printable characters in names they put into API subjects, and the
 *   docs recommend printable ASCII).
 */
export function streamNameVerdict(schemas: ProtocolSchemas, name: string): "valid" | "invalid" | "unsettled" {
  const server = serverTakesStreamName(name);
  const schema = schemas.problem("list_request", { stream: name }) === null;
  if (server !== schema) return "unsettled";
  if (server && ControlCharacter.test(name)) return "unsettled";
  return server ? "valid" : "invalid";
}
