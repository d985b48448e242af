#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (part of CI; rules in deny.toml): licences, duplicate
# versions, wildcard requirements and sources must pass. Advisories need the RustSec database,
# which is cloned from GitHub: where GitHub cannot be reached the advisories check is reported
# as SKIPPED (loudly, never as passed); anywhere else a known vulnerability fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$VERSION"; then
  echo "deny: installing cargo-deny $VERSION from crates.io (a few minutes, once)"
  cargo install --locked --quiet "cargo-deny@$VERSION"
fi
cargo deny --log-level error check licenses bans sources
set +e
advisories=$(cargo deny --log-level error check advisories 2>&1)
status=$?
set -e
if [ $status -ne 0 ] && grep -q "failed to fetch advisory database" <<<"$advisories"; then
  echo "deny: advisories SKIPPED: the RustSec database (github.com/RustSec/advisory-db) is unreachable from here"
elif [ $status -ne 0 ]; then
  echo "$advisories"
  exit $status
else
  echo "deny: advisories ok"
fi
