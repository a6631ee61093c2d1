"""Traders who top up or close as their health falls, and bad debt over seeds."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from marginsim.sim.agents import TraderState
from marginsim.sim.engine import _traders_act, run_simulation
from marginsim.sim.scenario import load_scenario
from marginsim.sim.sweep import nearest_rank, parse_seeds, run_sweep, summarise_sweep, sweep_table

SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture(scope="module")
def reacting(project, chain, accounts):
    scenario = load_scenario(SCENARIOS / "traders-react.toml")
    return scenario, run_simulation(project, chain, list(accounts), scenario, verify_mirror=True)


def test_traders__top_up_and_close_below_their_thresholds(reacting):
    _, run = reacting
    assert run.trader_topups > 0
    assert run.trader_closes > 0


class _Recorder:
    """A stand-in for the Clearinghouse, the protocol and the order book: records what the traders send."""

    def __init__(self):
        self.calls = []
        self.settlement = "USDC"
        self.markets = {"ETH-PERP": 1}
        self.clearinghouse = self

    def deposit(self, token, amount, subaccount, sender):
        self.calls.append(("deposit", sender, amount))

    def positions(self, account, market):
        return SimpleNamespace(size=5 * 10**18)

    def commit(self, signer, market, size_delta):  # the order book's commit
        self.calls.append(("order", signer, size_delta))


def test_traders__act_exactly_below_their_thresholds_and_top_up_at_most_three_times():
    """The thresholds by value (issue 9, item 7: the test above only counts): at a health equal
    to its threshold a trader does nothing, one wei below it acts; a top-up adds half the first
    deposit, three times at most, and a closer closes its whole position once."""
    wad = 10**18
    topper = TraderState("t", "topper", 1, "ETH-PERP", True, False, 1_000.0, int(1.6 * wad), int(1.5 * wad))
    closer = TraderState("c", "closer", 2, "ETH-PERP", False, True, 1_000.0, int(1.6 * wad), int(1.5 * wad))
    ch = _Recorder()
    at_threshold = {1: topper.topup_below, 2: closer.close_below}
    assert _traders_act([topper, closer], at_threshold, ch, 10**6, 0, 0, ch) == (0, 0)
    assert ch.calls == []
    below = {1: topper.topup_below - 1, 2: closer.close_below - 1}
    for _ in range(5):
        topups, closes = _traders_act([topper, closer], below, ch, 10**6, 0, 0, ch)
    assert (
        ch.calls
        == [("deposit", "topper", 500 * 10**6), ("order", "closer", -5 * 10**18)] + [("deposit", "topper", 500 * 10**6)] * 2
    )
    assert (topper.topped_up, closer.closed) == (3, True)


def test_sweep__quantiles_are_runs_not_interpolations():
    assert nearest_rank([3.0, 1.0, 2.0], 0.5) == 2.0
    values = [float(i) for i in range(1, 21)]
    assert nearest_rank(values, 0.95) == 19.0
    assert nearest_rank(values, 1.0) == 20.0
    assert nearest_rank([7.0], 0.95) == 7.0
    with pytest.raises(ValueError, match="^sweep: no runs to summarise$"):
        nearest_rank([], 0.5)


@pytest.mark.parametrize(
    "text, seeds",
    [("1-3", [1, 2, 3]), ("7", [7]), ("1,5,9", [1, 5, 9]), ("2-3,8", [2, 3, 8])],
)
def test_sweep__parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-", "-2"])
def test_sweep__bad_seeds_are_one_line_errors(text):
    with pytest.raises(ValueError, match=r"^sweep: --seeds must"):
        parse_seeds(text)


def test_sweep__two_seeds_roll_back_and_summarise(reacting, project, chain, accounts):
    scenario, single = reacting
    head = chain.blocks.head.number
    runs = run_sweep(project, chain, list(accounts), scenario, [11, 12])
    assert chain.blocks.head.number == head  # each run rolled back to its snapshot
    assert [r.seed for r in runs] == [11, 12]
    assert runs[0] != runs[1]  # a different population per seed
    summary = summarise_sweep(scenario.name, runs)
    debts = sorted(r.bad_debt_usd for r in runs)
    assert summary.bad_debt_p95_usd == debts[1] and summary.bad_debt_p50_usd == debts[0]
    assert summary.bad_debt_max_usd == debts[1]
    assert "2 seeds" in sweep_table(summary, runs)
    # seed 11 is the scenario's own seed: the sweep reproduces the single run
    assert runs[0].liquidations == len(single.liquidations)
    assert runs[0].bad_debt_usd == single.total_bad_debt_usd


@pytest.mark.slow  # two processes, each with its own revm chain: about 30 s
def test_sweep_on_revm__in_parallel_the_same_runs_as_on_the_embedded_chain(reacting, project, chain, accounts):
    """The revm sweep (a chain per seed, two processes) gives each seed the run the embedded
    chain gives it, figure for figure (the senders are ape's test accounts on both); only the
    wall time differs. Seed 11 is the scenario's own: the single run on the embedded chain."""
    from dataclasses import replace

    from marginsim.sim.sweep import SeedRun, run_sweep_revm

    scenario, single = reacting
    parallel = run_sweep_revm(scenario, [11, 12], workers=2)
    serial = run_sweep_revm(scenario, [11, 12], workers=1)

    def same(runs):
        return [replace(r, wall_seconds=0.0) for r in runs]

    assert same(parallel) == same(serial)
    assert same(parallel)[0] == replace(SeedRun.of(single), wall_seconds=0.0)
    assert parallel[0] != parallel[1]


def _seed_run(seed, bad_debt, underwater=0.0, liquidated=0.0):
    from marginsim.sim.sweep import SeedRun

    return SeedRun(seed, bad_debt, 0.0, 1, liquidated, 0, 0.0, 0.0, underwater_at_end_usd=underwater)


def test_sweep__var95_counts_the_negative_equity_left_open_with_a_bootstrap_interval():
    """VaR95 is the nearest-rank p95 of bad debt plus the negative equity still open at the end
    (issue 10: a run reporting $0 of bad debt with an account at -$3,899 lost $3,899); its
    interval comes from resampling the runs, holds the value and is the same on every call."""
    from marginsim.sim.sweep import Quantile

    runs = [_seed_run(s, float(s * 100), underwater=3_899.0 if s == 7 else 0.0, liquidated=float(s)) for s in range(1, 41)]
    summary = summarise_sweep("x", runs)
    shortfalls = sorted(r.shortfall_usd for r in runs)
    assert summary.var95_shortfall.value == shortfalls[37] == 3_900.0  # the 38th of 40 (seed 7 moved to the top)
    assert summary.var95_shortfall.low <= summary.var95_shortfall.value <= summary.var95_shortfall.high
    assert summary.var95_shortfall.low in shortfalls and summary.var95_shortfall.high in shortfalls
    assert summarise_sweep("x", runs).var95_shortfall == summary.var95_shortfall  # reproducible
    assert summary.lar95_liquidated.value == 38.0
    assert Quantile.of([5.0]) == Quantile(5.0, 5.0, 5.0) and Quantile.of([2.0, 2.0]) == Quantile(2.0, 2.0, 2.0)
    assert "VaR95" in sweep_table(summary, runs)
