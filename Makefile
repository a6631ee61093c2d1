# marginsim — every target creates .venv and installs what it needs on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# ape-vyper only uses the pip-installed compiler when the venv's bin/ is on PATH
# (otherwise it tries to download one, and this machine has no internet).
export PATH := $(abspath $(BIN)):$(PATH)
STAMP  := $(VENV)/.installed

.PHONY: install lint format sizes demo story test test-slow fuzz-long mutate gas simulate sweep compare keeper oracle bench-sim bench-scale deploy anvil compile clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# Linters live in their own venv: mamushi pins click==8.1.3, which eth-ape (click>=8.1.6) refuses.
LINT := .lint
$(LINT)/.installed:
	@test -x $(LINT)/bin/python || $(PYTHON) -m venv $(LINT)
	$(LINT)/bin/python -m pip install --quiet ruff==0.17.6 mamushi==0.1.2
	@touch $@

## The lint gates CI runs before the tests: ruff (rules in pyproject.toml), ruff format, mamushi.
lint: $(LINT)/.installed
	$(LINT)/bin/ruff check .
	$(LINT)/bin/ruff format --check .
	$(LINT)/bin/mamushi --check --line-length 130 contracts/

## Format Python and Vyper in place (what `make lint` checks).
format: $(LINT)/.installed
	$(LINT)/bin/ruff check --fix .
	$(LINT)/bin/ruff format .
	$(LINT)/bin/mamushi --line-length 130 contracts/

compile: $(STAMP)
	$(BIN)/ape compile

## The main job: replay Black Thursday (2020-03-12) against a fresh protocol on the embedded chain.
demo: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run demo

## The scripted crash story: seven traders, a 30% fall in twelve rounds, one keeper.
story: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run story

## Every test but the slow ones, on the embedded local chain, in JOBS processes (pytest-xdist; JOBS=1 for one).
JOBS ?= 2
test: $(STAMP)
	$(BIN)/ape test tests -q -n $(JOBS) -m "not slow"

## The slow tests: the invariant fuzzer's CI profile, the Dask cluster runs, compare on the embedded chain.
test-slow: $(STAMP)
	$(BIN)/ape test tests -q -n $(JOBS) -m slow

## The invariant state machine's long profile: 100,000 steps (MARGINSIM_FUZZ_STEPS=N to change).
fuzz-long: $(STAMP)
	MARGINSIM_FUZZ=long $(BIN)/ape test tests/invariants -q -s

## Mutation benchmark (not a test): one planted bug at a time in the money paths, the tests
## that should notice it, and which test killed it; fails on a survivor. MUTANTS=id,id for some.
mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py

## Each deployable's runtime size against the 20,480-byte budget; fails when one is over.
sizes: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run sizes

## Gas benchmark (not a test): prints a table and writes gas-snapshot.json.
gas: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run gas

## A crash scenario (default: Black Thursday 2020 replay); SCENARIO=..., SEED=..., OUT=...
SCENARIO ?= scenarios/black-thursday-2020.toml
simulate: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run simulate --scenario $(SCENARIO) $(if $(SEED),--seed $(SEED)) $(if $(OUT),--out $(OUT)) $(if $(ENGINE),--engine $(ENGINE))

## Bad debt over seeds (p50, p95, max) of SCENARIO; SEEDS=1-20 by default. DASK=tcp://host:8786 runs
## the seeds on that Dask cluster instead of local processes (pip install -e '.[cluster]').
SEEDS ?= 1-20
sweep: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run sweep --scenario $(SCENARIO) --seeds $(SEEDS) $(if $(OUT),--out $(OUT)) $(if $(ENGINE),--engine $(ENGINE)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(DASK),--dask $(DASK))

## Designs side by side: DESIGNS (overlay files) against SCENARIO on the same SEEDS, on revm (DASK= as for sweep).
DESIGNS ?= designs/wide-buffer.toml designs/weth-haircut.toml designs/tight-breaker.toml
compare: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run compare $(DESIGNS) --scenario $(SCENARIO) --seeds $(SEEDS) $(if $(OUT),--out $(OUT)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(DASK),--dask $(DASK))

## Simulator benchmark (not a test): wall time, tx/s and a profile of SCENARIO.
bench-sim: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run bench_sim --scenario $(SCENARIO) $(if $(ENGINE),--engine $(ENGINE))

## Scale benchmark (not a test): a day on revm with TRADERS=1000,3000,10000 traders of SCALE_SCENARIO
## (default: Black Thursday's crowd), time per account-step and the keepers' scan.
TRADERS ?= 1000,3000,10000
bench-scale: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run bench_scale --scenario $(or $(SCALE_SCENARIO),scenarios/black-thursday-crowd.toml) --traders $(TRADERS) $(if $(ENGINE),--engine $(ENGINE))

## Deploy with default markets; NETWORK=ethereum:local:node for a node such as anvil.
NETWORK ?= ethereum:local:test
deploy: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run deploy --network $(NETWORK)

## The long-running bots against a node (make anvil; make deploy NETWORK=ethereum:local:node
## first); Ctrl-C stops them. BOT_NETWORK=... for another network, ARGS=... for their options.
BOT_NETWORK ?= ethereum:local:node
keeper: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run keeper --network $(BOT_NETWORK) $(ARGS)

oracle: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/ape run oracle --network $(BOT_NETWORK) $(ARGS)

## A local anvil node for NETWORK=ethereum:local:node (npm package; chain id matches ape's test accounts).
anvil:
	npm install --silent --prefix .anvil @foundry-rs/anvil
	.anvil/node_modules/.bin/anvil --chain-id 1337 --port 8545 --accounts 40

clean:
	rm -rf .build .pytest_cache .lint deployments/ethereum-local-test.json
