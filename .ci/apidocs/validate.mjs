// Validates the committed AsyncAPI documents (docs/api/*.asyncapi.json) with the AsyncAPI project's own
// parser, independently of the Python code that generated them. Exits 1 on any error-level diagnostic.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Parser } from "@asyncapi/parser";

const folder = process.argv[2] ?? "docs/api";
const parser = new Parser();
let failed = false;
const names = readdirSync(folder).filter((n) => n.endsWith(".asyncapi.json")).sort();
if (names.length === 0) {
  console.error(`no AsyncAPI documents in ${folder}`);
  process.exit(1);
}
for (const name of names) {
  const { document, diagnostics } = await parser.parse(readFileSync(join(folder, name), "utf8"));
  const errors = diagnostics.filter((d) => d.severity === 0);
  if (!document || errors.length) {
    failed = true;
    console.error(`${name}: INVALID`);
    for (const e of errors) console.error(`  ${e.path.join(".")}: ${e.message}`);
  } else {
    console.log(`${name}: valid AsyncAPI ${document.version()} (${document.channels().length} channels, ${diagnostics.length} warnings)`);
  }
}
process.exit(failed ? 1 : 0);
