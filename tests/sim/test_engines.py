"""One scenario, two engines: the short crash on ape's embedded chain and on revm in process
(`marginsim.chain.revm`), with the same senders and the same start time, gives the same
liquidations, bad debt, insurance, pool and keeper figures to the wei; only gas differs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from marginsim.chain.revm import Account, RevmChain
from marginsim.sim.engine import run_simulation
from marginsim.sim.scenario import load_scenario

SCENARIO = Path(__file__).parent / "scenarios" / "short-crash.toml"
GAS_FIELDS = {"gas_used", "gas_cost_usd"}


def _figures(result) -> dict:
    """Everything a run measures but its gas, its wall time and where its blocks start."""
    return {
        "liquidations": [{k: v for k, v in asdict(r).items() if k not in GAS_FIELDS} for r in result.liquidations],
        "bad debt": [asdict(r) for r in result.bad_debt],
        "series": [asdict(p) for p in result.series],
        "rounds": [asdict(r) for r in result.rounds],
        "keepers": {n: {k: v for k, v in asdict(s).items() if k != "gas_spent_usd"} for n, s in result.keepers.items()},
        "end": (
            result.still_liquidatable_at_end,
            result.underwater_at_end,
            result.underwater_at_end_usd,
            result.peak_open_interest_usd,
            result.trader_topups,
            result.trader_closes,
            result.steps,
        ),
    }


@pytest.fixture(scope="module")
def runs(project, chain, accounts):
    scenario = load_scenario(SCENARIO)
    start = chain.pending_timestamp + 10_000
    chain.pending_timestamp = start
    on_ape = run_simulation(project, chain, list(accounts), scenario)
    revm = RevmChain()
    revm.pending_timestamp = start
    signers = [Account(revm, str(a.address)) for a in accounts]
    on_revm = run_simulation(revm.project, revm, signers, scenario, network="revm")
    # before the run: the empty block `pending_timestamp = start` mined, then a block per deployment
    # and funding transaction; the rest of revm's count was sent by the run
    on_revm.sent_on_chain = revm.transactions - (on_revm.started_block - 1)
    return on_ape, on_revm


def test_short_crash__same_figures_on_both_engines(runs):
    on_ape, on_revm = runs
    assert len(on_ape.liquidations) > 0 and on_ape.keepers["fast"].orders_filled > 0  # the run does something
    assert _figures(on_revm) == _figures(on_ape)


def test_short_crash__only_gas_differs_and_revm_counts_less(runs):
    on_ape, on_revm = runs
    ape_gas = sum(r.gas_used for r in on_ape.liquidations)
    revm_gas = sum(r.gas_used for r in on_revm.liquidations)
    print(f"\nliquidation gas: embedded chain {ape_gas:,}, revm {revm_gas:,} ({revm_gas / ape_gas:.0%})")
    assert 0 < revm_gas < ape_gas  # no intrinsic gas, slots warm after their first touch


def test_short_crash__transactions_are_the_ones_sent_not_the_blocks_mined(runs):
    """The run counted every block since its start, the empty block each clock move mines
    included (709 of the demo's 2,142): it counts the transactions its loop sent now, the same
    on both engines, and on revm equal to the transactions the chain executed."""
    on_ape, on_revm = runs
    assert on_ape.transactions == on_revm.transactions == on_revm.sent_on_chain > 0
