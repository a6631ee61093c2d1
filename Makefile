# marginsim — every target creates .venv and installs what it needs on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# ape-vyper only uses the pip-installed compiler when the venv's bin/ is on PATH
# (otherwise it tries to download one, and this machine has no internet).
export PATH := $(abspath $(BIN)):$(PATH)
STAMP  := $(VENV)/.installed

.PHONY: install test compile clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

compile: $(STAMP)
	$(BIN)/ape compile

## Every test, on the embedded local chain.
test: $(STAMP)
	$(BIN)/ape test tests -q

clean:
	rm -rf .build .pytest_cache deployments/local.json
