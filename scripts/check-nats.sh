#!/usr/bin/env bash
# Checks that NATS with JetStream answers at 127.0.0.1:4222 (or $NATS_HOST:$NATS_PORT): the
# cluster tests need it. The machines of this project start it themselves (Debian's
# nats-server with JetStream on); this script installs nothing, it only says clearly what is
# missing. A NATS server greets every client with an INFO line that says whether JetStream is on.
set -euo pipefail
host="${NATS_HOST:-127.0.0.1}"
port="${NATS_PORT:-4222}"
fail() {
    echo "check-nats: $1" >&2
    echo "check-nats: the cluster tests need NATS with JetStream at $host:$port (nats-server -js)." >&2
    exit 1
}
{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || fail "nothing listens on $host:$port"
IFS= read -r -t 5 greeting <&3 || fail "$host:$port accepted a connection but sent no greeting"
exec 3>&-
[[ "$greeting" == INFO* ]] || fail "$host:$port is not a NATS server (it said: ${greeting:0:80})"
[[ "$greeting" == *'"jetstream":true'* ]] || fail "the NATS server at $host:$port runs without JetStream"
version=$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' <<<"$greeting")
echo "check-nats: NATS ${version:-?} with JetStream at $host:$port"
