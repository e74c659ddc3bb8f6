# Plaza: `make run` starts the embedded profile, `make test` runs every test.
# `make help` lists the targets.

SHELL := /bin/bash
CARGO ?= cargo
# Crates the domain must never depend on (I/O, engines, web). See DESIGN.md section 3.
IO_CRATES := tokio tokio-postgres postgres rusqlite libsqlite3-sys rdkafka redis axum hyper reqwest eventstore elasticsearch tantivy sqlx mio socket2 deadpool-postgres

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run Plaza, embedded profile (SQLite in ./data, http://127.0.0.1:8080)
	$(CARGO) run --release --bin plaza -- serve

.PHONY: test
test: services check-architecture clean-test-dbs ## Run all tests (starts PostgreSQL, Redis and Kafka if needed)
	@log=$$(mktemp); set -o pipefail; \
	$(CARGO) test --workspace --all-targets --no-fail-fast 2>&1 | tee "$$log"; status=$$?; \
	$(MAKE) --no-print-directory test-eventstoredb 2>&1 | tee -a "$$log" || status=1; \
	$(MAKE) --no-print-directory test-elasticsearch 2>&1 | tee -a "$$log" || status=1; \
	$(MAKE) --no-print-directory test-openapi 2>&1 | tee -a "$$log" || status=1; \
	$(MAKE) --no-print-directory test-fuzz 2>&1 | tee -a "$$log" || status=1; \
	awk '/^test result:/ { passed += $$4; failed += $$6; ignored += $$8 } \
	     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$$log"; \
	grep '^test .* FAILED$$' "$$log" || true; \
	grep -m1 '^eventstoredb:' "$$log" || true; \
	grep -m1 '^elasticsearch:' "$$log" || true; \
	grep -m1 '^schemathesis: the REST API' "$$log" || echo "schemathesis: FAILED"; \
	grep -m1 '^fuzz: every target' "$$log" || echo "fuzz: FAILED"; \
	rm -f "$$log"; exit $$status

# Seconds each fuzz target runs in `make test` (FUZZ_SECONDS) and in `make fuzz`.
FUZZ_SECONDS ?= 10
FUZZ_LONG_SECONDS ?= 600

.PHONY: test-openapi
test-openapi: ## Check the live REST API against its OpenAPI document with schemathesis (installs it the first time)
	$(CARGO) build --bin plaza
	scripts/schemathesis.sh "$${CARGO_TARGET_DIR:-target}/debug/plaza" 60

.PHONY: test-fuzz
test-fuzz: ## Run every cargo-fuzz target for FUZZ_SECONDS (installs cargo-fuzz the first time)
	scripts/fuzz.sh $(FUZZ_SECONDS)

.PHONY: fuzz
fuzz: ## Run every cargo-fuzz target for FUZZ_LONG_SECONDS (default 10 minutes each)
	scripts/fuzz.sh $(FUZZ_LONG_SECONDS)

.PHONY: test-eventstoredb
test-eventstoredb: ## EventStoreDB adapter: always built; its conformance suite runs when PLAZA_TEST_EVENTSTOREDB_URL names a server
	@if [ -n "$${PLAZA_TEST_EVENTSTOREDB_URL:-}" ]; then \
	  $(CARGO) test -p plaza-infra --features eventstoredb --test event_store eventstoredb:: \
	  && echo "eventstoredb: conformance suite passed against $$PLAZA_TEST_EVENTSTOREDB_URL"; \
	else \
	  $(CARGO) check -p plaza-infra --features eventstoredb --all-targets \
	  && echo "eventstoredb: adapter builds; its live conformance suite was SKIPPED (no server here: set PLAZA_TEST_EVENTSTOREDB_URL=esdb://host:2113?tls=false to run it)"; \
	fi

.PHONY: test-elasticsearch
test-elasticsearch: ## Elasticsearch search adapter: always built and unit tested; its conformance suite runs when PLAZA_TEST_ELASTICSEARCH_URL names a server
	@$(CARGO) check -p plaza-infra --features elasticsearch --all-targets \
	&& $(CARGO) test -p plaza-infra --features elasticsearch --lib elasticsearch:: \
	&& if [ -n "$${PLAZA_TEST_ELASTICSEARCH_URL:-}" ]; then \
	  $(CARGO) test -p plaza-infra --features elasticsearch --test search elasticsearch:: \
	  && echo "elasticsearch: adapter builds, its unit tests pass and its conformance suite passed against $$PLAZA_TEST_ELASTICSEARCH_URL"; \
	else \
	  echo "elasticsearch: adapter builds and its unit tests pass; its live conformance suite was SKIPPED (no server here: set PLAZA_TEST_ELASTICSEARCH_URL=http://host:9200 to run it)"; \
	fi

.PHONY: services
services: ## Install and start PostgreSQL, Redis and tansu (Kafka) unless already reachable
	@scripts/services.sh

.PHONY: check-architecture
check-architecture: ## Fail if the domain crate depends on an I/O crate, or the read side on the write side
	@deps=$$($(CARGO) tree -p plaza-domain -e normal,build --prefix none --format '{p}' | awk '{print $$1}' | sort -u); \
	bad=$$(for c in $(IO_CRATES); do grep -qx "$$c" <<<"$$deps" && echo "$$c"; done); \
	if [ -n "$$bad" ]; then echo "plaza-domain must not depend on I/O crates, found: $$bad"; exit 1; fi; \
	echo "architecture: plaza-domain depends on no I/O crate"; \
	if $(CARGO) tree -p plaza-read-api -e normal --prefix none --format '{p}' | awk '{print $$1}' | grep -qx plaza-commands; then \
		echo "plaza-read-api must not depend on plaza-commands (the write side)"; exit 1; fi; \
	echo "architecture: the read API does not depend on the write side"

.PHONY: clean-test-dbs
clean-test-dbs: ## Drop databases left behind by earlier test runs
	@psql -h 127.0.0.1 -U postgres -d postgres -tAc \
	  "select datname from pg_database where datname like 'plaza_test_%' or datname like 'plaza_e2e_%'" 2>/dev/null \
	  | while read -r db; do [ -n "$$db" ] && psql -h 127.0.0.1 -U postgres -d postgres -qc "drop database if exists $$db with (force)"; done; true

.PHONY: lint
lint: check-architecture ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p plaza-infra --features eventstoredb --all-targets -- -D warnings
	$(CARGO) clippy -p plaza -p plaza-infra --features elasticsearch --all-targets -- -D warnings

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: bench
bench: services ## Measure throughput and latency (release build); writes docs/benchmarks.md (BEFORE=path/to/plaza compares an earlier build)
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (HTTP load generator)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q wrk; else sudo -n apt-get install -y -q wrk; fi; }
	$(CARGO) build --release -p plaza -p plaza-bench
	$(CARGO) build --release --manifest-path bench/peer/Cargo.toml --target-dir "$${CARGO_TARGET_DIR:-$(CURDIR)/target}"
	"$${CARGO_TARGET_DIR:-target}/release/plaza-bench" --out docs/benchmarks.md $(if $(BEFORE),--before "$(BEFORE)")

.PHONY: clean
clean: ## Remove build output and the embedded profile's ./data
	$(CARGO) clean
	rm -rf data
