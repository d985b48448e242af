#!/usr/bin/env bash
# Validates OpenAPI documents with openapi-spec-validator (PyPI), the checker generated-client
# tool chains run first: the document against the OpenAPI 3.x schema, plus what a schema cannot
# say (unique operation ids, path parameters declared, resolvable references). Installs the
# pinned validator into a virtualenv under target/ on first use (and python3-venv if missing).
#
#   bash scripts/openapi-validate.sh FILE...     # exit 0 when every file is valid
#
# The test `openapi::the_document_passes_openapi_spec_validator` runs it on /api/openapi.json.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=scripts/openapi-validator/requirements.txt
venv=${OPENAPI_VALIDATOR_VENV:-target/openapi-validator-venv}
wanted=$(sed -n 's/^openapi-spec-validator==//p' "$requirements")
# Several tests may call this at once: one installs, the others wait for it.
mkdir -p target
exec 9>target/openapi-validator.lock
flock 9
if [ "$("$venv/bin/pip" show openapi-spec-validator 2>/dev/null | sed -n 's/^Version: //p')" != "$wanted" ]; then
  echo "openapi-validate.sh: installing openapi-spec-validator $wanted into $venv" >&2
  if ! python3 -c "import ensurepip" 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
fi
flock -u 9
exec "$venv/bin/openapi-spec-validator" --validation-errors all "$@"
