# Every command a developer or CI runs. `make run` and `make test` work on a fresh machine.
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/geotrack
export DATABASE_URL
CARGO ?= cargo

.PHONY: run test test-browser schemathesis deny db nats lint fmt build release

## Start the service on http://127.0.0.1:8080 against the local PostgreSQL (installs PostGIS if
## needed), with a demo fleet of 50 vehicles and demo fences in Paris. Ctrl-C stops both.
run: db release
	./target/release/geotrack migrate
	./target/release/geotrack serve --demo

## The whole suite: formatting, lints, unit and integration tests (real PostGIS, real sockets,
## the local NATS with JetStream for the cluster tests).
test: db nats lint
	bash scripts/drop-test-dbs.sh
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --lib --bins --tests --no-fail-fast; \
	else \
		$(CARGO) test --workspace --lib --bins --tests --no-fail-fast; \
	fi

## The web map in headless Chromium (installs chromium and playwright-core when missing).
test-browser: db
	bash scripts/test-browser.sh

## The API against its own OpenAPI document with schemathesis (installed in target/ when
## missing): no 5xx, every response as documented, no token ignored.
schemathesis: db
	bash scripts/schemathesis.sh

## cargo-deny (installed when missing): licences, duplicate versions, sources; advisories when
## the RustSec database is reachable (deny.toml, scripts/deny.sh).
deny:
	bash scripts/deny.sh

## Make sure PostgreSQL has PostGIS (apt-get installs it when missing) and the database exists.
db:
	bash scripts/ensure-postgis.sh

## Check that NATS with JetStream answers at 127.0.0.1:4222 (the machine runs it; nothing is
## installed): the cluster tests use it, each with a stream/bucket prefix of its own.
nats:
	bash scripts/check-nats.sh

## Benches are compiled (clippy --all-targets) but run only on demand: `cargo bench -p fences`.
## check-layout: no import loops, files <= 600 lines, functions <= 80, domain crates without
## HTTP, the service crate under 35% of the code, nothing citing files outside the repo.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 scripts/check-layout.py --quiet

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build

release:
	$(CARGO) build --release
