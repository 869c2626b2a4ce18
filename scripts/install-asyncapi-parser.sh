#!/usr/bin/env bash
# Installs the official AsyncAPI parser (@asyncapi/parser, with ajv) from npm into
# $EVT_ASYNCAPI_PARSER (default $HOME/.cache/evt-asyncapi), for event-build's test that validates
# every generated AsyncAPI document with it (event-build/tests/catalog.rs). Idempotent: does
# nothing when the pinned versions are there. Without node and npm it prints a warning and exits
# 0 (the test then skips, or fails under CI).
set -euo pipefail

dir="${EVT_ASYNCAPI_PARSER:-$HOME/.cache/evt-asyncapi}"
parser="@asyncapi/parser@3.6.6"
ajv="ajv@8.20.0"
if [ -f "$dir/node_modules/@asyncapi/parser/package.json" ] \
  && grep -q '"version": "3.6.6"' "$dir/node_modules/@asyncapi/parser/package.json" \
  && [ -f "$dir/node_modules/ajv/package.json" ]; then
  exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "warning: node and npm are needed for the AsyncAPI parser test" >&2
  exit 0
fi
mkdir -p "$dir"
echo "installing $parser and $ajv into $dir (npm)" >&2
if ! npm install --prefix "$dir" --no-audit --no-fund --silent "$parser" "$ajv" >&2; then
  echo "warning: npm could not install $parser" >&2
fi
