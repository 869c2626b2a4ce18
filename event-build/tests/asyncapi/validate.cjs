// Validates AsyncAPI documents with the official parser (@asyncapi/parser), for
// event-build/tests/catalog.rs: `node validate.cjs DOC [POINTER=JSON ...]`, with NODE_PATH
// pointing at the node_modules that scripts/install-asyncapi-parser.sh fills. Prints every
// diagnostic; exits 1 on an error diagnostic, or when a sample JSON value is not valid against
// the schema at POINTER of DOC (read as the draft-07 the document declares, by ajv).
'use strict';
const { readFileSync } = require('node:fs');
const { Parser } = require('@asyncapi/parser');
const Ajv = require('ajv');

async function main() {
  const [path, ...samples] = process.argv.slice(2);
  const text = readFileSync(path, 'utf8');
  const { document, diagnostics } = await new Parser().parse(text, { source: path });
  let failed = !document;
  for (const d of diagnostics) {
    const level = ['error', 'warning', 'info', 'hint'][d.severity];
    console.log(`${level}: ${d.code}: ${d.message} at /${(d.path || []).join('/')}`);
    if (d.severity === 0) failed = true;
  }
  const ajv = new Ajv({ strict: false, validateFormats: false, validateSchema: false });
  ajv.addSchema(JSON.parse(text), 'doc');
  for (const sample of samples) {
    const at = sample.indexOf('=');
    const pointer = sample.slice(0, at);
    const value = JSON.parse(sample.slice(at + 1));
    const validate = ajv.getSchema(`doc#${pointer}`);
    if (!validate) {
      console.log(`error: no schema at ${pointer}`);
      failed = true;
    } else if (!validate(value)) {
      console.log(`error: ${JSON.stringify(value)} is not valid at ${pointer}: ${ajv.errorsText(validate.errors)}`);
      failed = true;
    } else {
      console.log(`ok: ${JSON.stringify(value)} is valid at ${pointer}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.log(`error: ${err.stack || err}`);
  process.exit(1);
});
