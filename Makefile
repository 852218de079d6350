# codexd: `make run` starts the daemon in the foreground; `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools/npm
# The agent CLIs the tests run against, pinned (see docs/operations.md to change them), and
# the previous pins, which the provider tests also run against (codexd.runs.compat.TESTED).
CODEX_VERSION := 0.171.0
CLAUDE_VERSION := 2.1.332
CODEX_PREVIOUS := 0.169.0
CLAUDE_PREVIOUS := 2.1.197
NPM_BIN := $(TOOLS)/node_modules/.bin
PREVIOUS_TOOLS := .tools/npm-previous
# A stamp per pinned pair: changing a version above reinstalls.
CLI_STAMP := $(TOOLS)/.pinned-codex-$(CODEX_VERSION)-claude-$(CLAUDE_VERSION)
PREVIOUS_STAMP := $(PREVIOUS_TOOLS)/.pinned-codex-$(CODEX_PREVIOUS)-claude-$(CLAUDE_PREVIOUS)
# The TypeScript client and the web console; their build tools are pinned in their
# package-lock.json files, installed into their (git-ignored) node_modules.
TS_CLIENT := clients/typescript
WEB := web
WEB_DIST := codexd/web/dist/index.html
WEB_SOURCES := $(wildcard $(WEB)/src/* $(WEB)/build.mjs $(TS_CLIENT)/src/*.ts \
	$(TS_CLIENT)/scripts/* docs/schema/*.json)

.PHONY: run test test-deps venv dev-deps cli-tools codex-cli system-deps ts-deps ts-client web \
	screenshots lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed
dev-deps: $(VENV)/.installed-dev

$(CLI_STAMP):
	rm -f $(TOOLS)/.pinned-*
	npm install --prefix $(TOOLS) --no-save --no-audit --no-fund --loglevel=error \
		@openai/codex@$(CODEX_VERSION) @anthropic-ai/claude-code@$(CLAUDE_VERSION)
	touch $@

$(PREVIOUS_STAMP):
	rm -f $(PREVIOUS_TOOLS)/.pinned-*
	npm install --prefix $(PREVIOUS_TOOLS) --no-save --no-audit --no-fund --loglevel=error \
		@openai/codex@$(CODEX_PREVIOUS) @anthropic-ai/claude-code@$(CLAUDE_PREVIOUS)
	touch $@

$(NPM_BIN)/codex: | $(CLI_STAMP)

# `make run` uses a codex already on PATH; otherwise the pinned one in .tools/.
codex-cli:
	@command -v codex >/dev/null 2>&1 || $(MAKE) --no-print-directory $(CLI_STAMP)

cli-tools: $(CLI_STAMP) $(PREVIOUS_STAMP)

$(TS_CLIENT)/node_modules/.package-lock.json: $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund --loglevel=error

ts-deps: $(TS_CLIENT)/node_modules/.package-lock.json

$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error

# The console, type-checked and bundled into the package (served at / on the WebSocket port).
# (Rebuilt when the pinned CLIs change: the console's types include the app-server's.)
$(WEB_DIST): $(WEB_SOURCES) $(WEB)/node_modules/.package-lock.json \
		$(TS_CLIENT)/node_modules/.package-lock.json $(wildcard $(CLI_STAMP))
	$(MAKE) --no-print-directory codex-cli
	PATH="$(CURDIR)/$(NPM_BIN):$$PATH" node $(WEB)/build.mjs

web: $(WEB_DIST)

# Screenshots for docs/: the browser tests, saving where the docs look.
screenshots: test-deps
	CODEXD_SCREENSHOTS=$(CURDIR)/docs/screenshots PATH="$(CURDIR)/$(NPM_BIN):$$PATH" \
		$(BIN)/python -m pytest -q tests/test_console_browser.py

# Types generated from docs/schema/ and the pinned app-server, then strict tsc.
ts-client: ts-deps $(NPM_BIN)/codex
	cd $(TS_CLIENT) && PATH="$(CURDIR)/$(NPM_BIN):$$PATH" npm run --silent build

# Debian packages the tests use, as command:package (socat: the by-hand socket test; tmux:
# driving `codexctl term attach` and the stock TUI like a person; systemd: systemd-analyze
# verifies the rendered units, systemd-socket-activate starts the daemon on a connection; git
# and ripgrep: files/* and git/* run them; chromium: the web console's tests, headless;
# dbus-daemon: a session bus for the desktop notification tests).
# Installed when we can; their tests skip otherwise.
SYSTEM_TOOLS := socat:socat tmux:tmux systemd-analyze:systemd systemd-socket-activate:systemd \
	git:git rg:ripgrep chromium:chromium dbus-daemon:dbus
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $${t%%:*} >/dev/null 2>&1 || \
		case " $$missing " in *" $${t##*:} "*) ;; *) missing="$$missing $${t##*:}";; esac; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$missing"; \
			(apt-get install -y -qq $$missing >/dev/null 2>&1 || \
			 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$missing >/dev/null 2>&1)) \
			|| echo "could not install$$missing; their tests will be skipped"; \
		else echo "missing$$missing and not root; their tests will be skipped"; fi; fi

run: venv codex-cli web
	PATH="$(CURDIR)/$(NPM_BIN):$$PATH" $(BIN)/codexd run --log-format console

test-deps: dev-deps cli-tools system-deps ts-deps web

test: test-deps
	PATH="$(CURDIR)/$(NPM_BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: dev-deps
	$(BIN)/ruff check codexd tests bench
	$(BIN)/mypy

bench: venv
	$(BIN)/python bench/bench_status.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis \
		$(TS_CLIENT)/node_modules $(TS_CLIENT)/dist $(TS_CLIENT)/src/generated \
		$(WEB)/node_modules codexd/web/dist
