# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint lint-imports typecheck pytest browser bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/broadcast demo

test: $(STAMP) lint lint-imports typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check broadcast channels audiences tests
	$(BIN)/ruff format --check broadcast channels audiences tests

# The layers (pyproject.toml's [tool.importlinter]): a stage never imports the stages after it.
lint-imports: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser
	$(BIN)/pytest

# Debian's Chromium and a CJK font for the browser tests (installed only when missing).
browser:
	@bash tests/install-browser.sh

bench: $(STAMP)
	$(BIN)/broadcast bench all

clean:
	rm -rf $(VENV) var
