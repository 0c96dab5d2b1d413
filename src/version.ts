/** The package's version, read at run time so that src/ and the built dist/ share one source. */
import { readFileSync } from "node:fs";

export const packageVersion: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;
