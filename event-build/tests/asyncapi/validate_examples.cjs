// Validates example payloads against their JSON Schema 2020-12 documents with ajv (a full
// validator), for event-build/tests/catalog.rs: `node validate_examples.cjs FILE`, FILE holding
// `[{"name": ..., "schema": {...}, "example": ...}, ...]`, with NODE_PATH pointing at the
// node_modules that scripts/install-asyncapi-parser.sh fills. Prints one line per document;
// exits 1 when an example is invalid.
'use strict';
const { readFileSync } = require('node:fs');
const Ajv2020 = require('ajv/dist/2020');

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
let failed = false;
for (const { name, schema, example } of cases) {
  // One validator per document: two services may publish the same `$id`.
  const validate = new Ajv2020({ strict: false, validateFormats: false }).compile(schema);
  if (validate(example)) {
    console.log(`valid: ${name}`);
  } else {
    failed = true;
    console.log(`INVALID: ${name}: ${JSON.stringify(validate.errors)}`);
  }
}
process.exit(failed ? 1 : 0);
