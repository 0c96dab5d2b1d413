#!/usr/bin/env node
// The built CLI (npm run build writes dist/; npm start and npm test build first).
import { existsSync } from "node:fs";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  console.error("nats-backup: dist/ is missing; run `npm run build` first");
  process.exit(1);
}
await import(main.href);
