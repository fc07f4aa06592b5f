# fanout — every target is one line; logic lives in scripts/.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help build run test test-rust lint fmt check-config openapi check-openapi check-deploy check-load check-fuzz fuzz load resilience state bench cost json-cost bench-pure clean ci

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

build: ## Build the fanout and mockend binaries (debug)
	$(CARGO) build --locked --workspace --bins

run: ## Build and start the demo: five simulated backends + the gateway (Ctrl-C stops both)
	bash scripts/with_demo.sh

test: test-rust check-openapi check-deploy check-load check-fuzz ## Every test: cargo tests, OpenAPI contract, deploy checks, load and fuzz smoke tests
	@echo "test: everything passed"

test-rust: build ## Unit tests and end-to-end tests against the real binary and a real Redis (installed if missing)
	bash scripts/tools.sh redis
	$(CARGO) test --locked --workspace

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all --check && $(CARGO) clippy --locked --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

check-config: build ## Validate the demo config and print its plan
	./target/debug/fanout check --config demo/fanout.yaml

openapi: build ## Regenerate openapi.yaml from the demo config
	./target/debug/fanout openapi --config demo/fanout.yaml > openapi.yaml

check-openapi: ## openapi.yaml drift + validation + schemathesis against the running demo
	bash scripts/check_openapi.sh

check-deploy: ## Lint the Dockerfile, build what it builds, validate the manifests against the config and binary
	bash scripts/check_deploy.sh

check-load: ## make load smoke test against the demo: closed loop and fixed rate, 2 s each
	bash scripts/check_load.sh

check-fuzz: ## Fuzz smoke test: every cargo-fuzz target for 20 s (installs cargo-fuzz if missing)
	FUZZ_TIME=20 bash scripts/fuzz.sh

fuzz: ## Run every fuzz target, one at a time (FUZZ_RUNS=1000000 executions each, or FUZZ_TIME=seconds; docs/fuzzing.md)
	bash scripts/fuzz.sh

load: ## Load-test a running gateway with oha vs a direct-backend baseline (MODE=closed|rate, RATE, DURATION; docs/load-testing.md)
	bash scripts/load.sh

resilience: ## The table of docs/resilience.md: misbehaving backends, each policy off and on, with oha
	bash scripts/resilience.sh

bench: ## End-to-end benchmark with oha: direct backend vs gateway (installs oha if missing)
	bash scripts/bench.sh

state: ## The cache and rate-limit figures (docs/caching.md, docs/rate-limits.md): hit vs miss, Redis vs local, with oha
	bash scripts/state_bench.sh

cost: ## Callgrind instructions and allocation calls per five-call page, deterministic (MODE=off|metrics|otlp, SAMPLING=0.1, LOG_LEVEL)
	bash scripts/callgrind.sh

json-cost: ## Callgrind instructions per byte of the strict JSON check on the 1 KB /bench body, deterministic
	bash scripts/json_cost.sh

bench-pure: ## Criterion benchmarks of the pure composition code (templates, graph, shaping)
	$(CARGO) bench --locked -p compose --bench composition

ci: lint test ## What CI runs
	@echo "ci: lint and tests passed"

clean: ## Remove build output
	$(CARGO) clean
