"""Designs side by side (issue 10): overlays of one scenario, checked by the contracts, run on the
same seeds, with paired differences; collateral and oracle parameters reach the deployment; a
halted oracle stops liquidations in the simulator as it does on chain."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from marginsim.chain.revm import RevmChain
from marginsim.protocol import deploy_protocol, wad
from marginsim.sim.compare import (
    METRICS,
    compare_html,
    compare_rows,
    compare_runs,
    compare_table,
    load_designs,
    run_compare,
    write_compare,
)
from marginsim.sim.engine import check_parameters, protocol_config, run_on_revm
from marginsim.sim.scenario import ScenarioError, load_scenario, parse_scenario
from marginsim.sim.sweep import Quantile, SeedRun

SCENARIOS = Path(__file__).parent / "scenarios"
SHORT = SCENARIOS / "short-crash.toml"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- designs and their checks


def test_designs__overlay_the_scenario_key_by_key_and_the_baseline_comes_first(tmp_path):
    design = _write(
        tmp_path,
        "harder.toml",
        'description = "d"\n[protocol]\nliquidation_buffer = 0.2\noracle_confirmation_delay = 600\n'
        "[market.ETH-PERP]\npenalty = 0.03\n[collateral.WETH]\nweight = 0.8\n[collateral.WETH.feed]\nmax_deviation = 0.3\n"
        "[liquidity]\ninsurance_usd = 20000\n",
    )
    base, harder = load_designs(SHORT, [design])
    assert (base.name, base.overlay) == ("baseline", {})
    assert base.scenario == load_scenario(SHORT)
    assert harder.name == "harder" and harder.description == "d"  # the file's stem when it names none
    s = harder.scenario
    assert s.protocol == {"liquidation_buffer": 0.2, "oracle_confirmation_delay": 600}
    assert isinstance(s.protocol["oracle_confirmation_delay"], int)
    assert s.markets == {"ETH-PERP": {"penalty": 0.03}}
    assert s.collaterals == {"WETH": {"weight": 0.8, "feed": {"max_deviation": 0.3}}}
    # what the design does not name stays the scenario's: the pool, the traders, the path
    assert (s.pool_usd, s.insurance_usd) == (base.scenario.pool_usd, 20_000.0)
    assert s.traders == base.scenario.traders and s.feeds == base.scenario.feeds


def test_designs__collateral_and_oracle_parameters_reach_the_deployed_contracts(tmp_path):
    """Today's gap (issue 10): collateral weights and discounts, the breaker and its confirmation
    delay could not be overridden. They are read back from the contracts a run deploys."""
    design = _write(
        tmp_path,
        "d.toml",
        "[protocol]\noracle_confirmation_delay = 600\n[collateral.WETH]\nweight = 0.8\nliquidation_discount = 0.07\n"
        "cap = 5000\n[collateral.WETH.feed]\nmax_deviation = 0.3\nheartbeat = 7200\n",
    )
    scenario = load_designs(SHORT, [design])[1].scenario
    chain = RevmChain()
    protocol = deploy_protocol(chain.project, chain.signers(1)[0], protocol_config(scenario, {"ETH-PERP": 2_000.0}))
    weth = protocol.tokens["WETH"]
    listed = protocol.clearinghouse.collaterals(protocol.clearinghouse.collateral_slot(weth))
    assert (listed.weight, listed.liquidation_discount, listed.cap) == (wad(0.8), wad(0.07), 5_000 * 10**18)
    feed = protocol.oracle.feeds(weth)
    assert (feed.max_deviation, feed.heartbeat) == (wad(0.3), 7_200)
    assert protocol.oracle.confirmation_delay() == 600
    wbtc = protocol.clearinghouse.collaterals(protocol.clearinghouse.collateral_slot(protocol.tokens["WBTC"]))
    assert wbtc.weight == wad(0.85)  # the defaults elsewhere


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("[protocol]\nliquidation_buffer = 5\n", "configurator: bad buffer"),
        ("[collateral.WETH]\nweight = 0.99\n", "configurator: bad discount"),
        ("[collateral.WETH.feed]\nmax_deviation = 0.001\n", "oracle: bad deviation"),
        ("[protocol]\noracle_confirmation_delay = 86401\n", "oracle: bad confirmation delay"),
        ("[market.ETH-PERP]\npenalty = 0.2\n", "configurator: bad penalty"),
    ],
)
def test_designs__the_contracts_refusal_is_one_line_before_any_run(tmp_path, overlay, message):
    design = _write(tmp_path, "bad.toml", overlay)
    scenario = load_designs(SHORT, [design])[1].scenario
    with pytest.raises(ScenarioError) as error:
        check_parameters(scenario)
    assert str(error.value) == f"scenario short-crash.toml + bad.toml: the contracts refuse its parameters: {message}"


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("[oracle]\ndelay = 3\n", "design bad.toml: oracle: unknown field (a design sets name, description and the tables"),
        ("keepers = 3\n", "design bad.toml: keepers: must be [[keepers]] tables"),
        ("[traders]\nleverage = [0, 5]\n", "scenario short-crash.toml + bad.toml: traders.leverage: must be two numbers"),
        ("[[keepers]]\ndelay_blocks = 1\n", "scenario short-crash.toml + bad.toml: keepers[0].name: must be a non-empty string"),
        ("protocol = 3\n", "design bad.toml: protocol: must be a table"),
        ('name = ""\n', "design bad.toml: name: must be a non-empty string, got ''"),
        ("[collateral.DOGE]\nweight = 0.5\n", "scenario short-crash.toml + bad.toml: collateral.DOGE: unknown field"),
        ("[collateral.WETH]\nhaircut = 0.5\n", "scenario short-crash.toml + bad.toml: collateral.WETH.haircut: unknown field"),
        (
            "[collateral.WETH.feed]\nbreaker = 0.5\n",
            "scenario short-crash.toml + bad.toml: collateral.WETH.feed.breaker: unknown",
        ),
        (
            "[collateral.WETH]\ncap = 1.5\n",
            "scenario short-crash.toml + bad.toml: collateral.WETH.cap: must be an integer, got 1.5",
        ),
        (
            "[protocol]\nsettlement_delay = 0.5\n",
            "scenario short-crash.toml + bad.toml: protocol.settlement_delay: must be an integer",
        ),
        (
            "[protocol]\nliquidation_buffer = -1\n",
            "scenario short-crash.toml + bad.toml: protocol.liquidation_buffer: must be in [0",
        ),
        ("[protocol\n", "design bad.toml: not valid TOML"),
    ],
)
def test_designs__a_bad_file_fails_with_one_line_naming_the_field(tmp_path, overlay, message):
    design = _write(tmp_path, "bad.toml", overlay)
    with pytest.raises(ScenarioError) as error:
        load_designs(SHORT, [design])
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_designs__overlay_the_traders_key_by_key_and_replace_the_keepers(tmp_path):
    """A design may change who trades and who liquidates: `[traders]` merges key by key,
    `[[keepers]]` replaces the scenario's keepers whole (a compare of keeper populations)."""
    design = _write(
        tmp_path,
        "crowd.toml",
        '[traders]\ntopup_share = 0.9\nsize_distribution = "pareto"\n[[keepers]]\nname = "lone"\ndelay_blocks = 3\n',
    )
    base, crowd = load_designs(SHORT, [design])
    traders = crowd.scenario.traders
    assert (traders.topup_share, traders.size_distribution) == (0.9, "pareto")
    assert traders.count == base.scenario.traders.count and traders.leverage == base.scenario.traders.leverage
    assert [(k.name, k.delay_blocks) for k in crowd.scenario.keepers] == [("lone", 3)]
    assert len(base.scenario.keepers) > 1


def test_designs__need_at_least_one_unique_name_and_existing_files(tmp_path):
    with pytest.raises(ScenarioError, match="^compare: give at least one design file"):
        load_designs(SHORT, [])
    with pytest.raises(ScenarioError, match="^design: no such file: "):
        load_designs(SHORT, [tmp_path / "missing.toml"])
    a = _write(tmp_path, "a.toml", 'name = "same"\n')
    b = _write(tmp_path, "b.toml", 'name = "same"\n')
    with pytest.raises(ScenarioError, match="^compare: two designs are named 'same'; names must be unique$"):
        load_designs(SHORT, [a, b])
    c = _write(tmp_path, "c.toml", 'name = "baseline"\n')
    with pytest.raises(ScenarioError, match="named 'baseline'"):
        load_designs(SHORT, [c])


def test_designs__the_shipped_designs_load_and_the_contracts_accept_them():
    designs = sorted((Path(__file__).parents[2] / "designs").glob("*.toml"))
    assert len(designs) >= 3
    scenario = Path(__file__).parents[2] / "scenarios" / "black-thursday-2020.toml"
    for design in load_designs(scenario, designs):
        check_parameters(design.scenario)


# ---------------------------------------------------------------- paired differences


def test_difference__is_the_statistic_of_one_less_the_other_with_a_paired_interval():
    base = [float(v) for v in range(1, 41)]
    shifted = [v + 10.0 for v in base]
    # every seed moved by the same amount: the paired difference is exact, whatever the resample
    shift = Quantile.difference(base, shifted, None)
    assert (shift.value, shift.low, shift.high) == pytest.approx((10.0, 10.0, 10.0))
    assert Quantile.difference(base, base) == Quantile(0.0, 0.0, 0.0)
    noisy = [v + (5.0 if i % 2 else -3.0) for i, v in enumerate(base)]
    d = Quantile.difference(base, noisy, 0.95)
    assert d.value == Quantile.of(noisy).value - Quantile.of(base).value
    assert d.low <= d.value <= d.high
    mean = Quantile.difference(base, noisy, None)
    assert mean.value == pytest.approx(1.0) and mean.low < 1.0 < mean.high
    assert Quantile.difference(base, noisy, 0.95) == d  # reproducible: a fixed bootstrap seed
    with pytest.raises(ValueError, match="paired by seed"):
        Quantile.difference(base, base[:-1])


def _run(seed: int, shortfall: float, liquidations: int = 1) -> SeedRun:
    return SeedRun(seed, shortfall, 0.0, liquidations, 100.0 * liquidations, 1, 0.0, 0.0, accounts=4)


def test_compare_runs__every_metric_for_every_design_and_the_difference_from_the_baseline(tmp_path):
    designs = load_designs(SHORT, [_write(tmp_path, "b.toml", 'name = "b"\n[protocol]\nliquidation_buffer = 0.2\n')])
    runs = {"baseline": [_run(s, 100.0 * s) for s in range(1, 21)], "b": [_run(s, 50.0 * s, 2) for s in range(1, 21)]}
    metrics = compare_runs(designs, runs)
    assert [m.key for m in metrics] == [m.key for m in METRICS]
    var = next(m for m in metrics if m.key == "var95_shortfall")
    assert (var.values[0].value, var.values[1].value, var.differences[0].value) == (1_900.0, 950.0, -950.0)
    liquidations = next(m for m in metrics if m.key == "mean_liquidations")
    assert liquidations.differences[0] == Quantile(1.0, 1.0, 1.0)
    left = next(m for m in metrics if m.key == "mean_left_share")
    assert left.values[0].value == 0.25
    header, rows = compare_rows(designs, metrics)
    assert header[:3] == ["metric", "design", "value"] and len(rows) == 2 * len(METRICS)
    assert rows[0][:3] == ["VaR95: bad debt + negative equity left open", "baseline", "$1,900.00"]
    assert rows[1][1:3] == ["b", "$950.00"] and rows[1][4] == "-$950.00"
    table = compare_table(designs, list(range(1, 21)), metrics)
    assert "short-crash: 2 designs x 20 seeds" in table and '{"protocol": {"liquidation_buffer": 0.2}}' in table


# ---------------------------------------------------------------- end to end, on revm


def test_compare__end_to_end_the_same_seeds_for_every_design_and_one_offline_page(tmp_path):
    design = _write(tmp_path, "wide.toml", 'name = "wide"\n[protocol]\nliquidation_buffer = 0.3\n')
    designs = load_designs(SHORT, [design])
    runs = run_compare(designs, [5, 6], workers=1)
    assert [r.seed for r in runs["baseline"]] == [r.seed for r in runs["wide"]] == [5, 6]
    # seed 5 is the scenario's own: the baseline's run is the plain revm run of the scenario
    single, _ = run_on_revm(designs[0].scenario, 5)
    assert runs["baseline"][0] == replace(SeedRun.of(single), wall_seconds=runs["baseline"][0].wall_seconds)
    # a wider buffer closes more of each account it liquidates
    assert sum(r.liquidated_notional_usd for r in runs["wide"]) != sum(r.liquidated_notional_usd for r in runs["baseline"])
    metrics = compare_runs(designs, runs)
    paths = write_compare(designs, [5, 6], runs, metrics, tmp_path / "out")
    page = paths["html"].read_text()
    assert (
        page.count("<script") >= 3 and "plotly" in page.lower() and 'src="http' not in page
    )  # self-contained: no script from a CDN
    assert "wide" in page and "liquidation_buffer" in page
    assert "VaR95" in compare_html(designs, [5, 6], runs, metrics)
    data = json.loads(paths["json"].read_text())
    assert data["seeds"] == [5, 6] and set(data["runs"]) == {"baseline", "wide"}


# ---------------------------------------------------------------- a halted oracle in the simulator


def _halting(breaker: float) -> tuple:
    raw = tomllib.loads(SHORT.read_text())
    raw["feed"]["ETH-PERP"].update(shock_return=-0.12, shock_duration_seconds=60, heartbeat=120, flat_after_seconds=1_800)
    raw["traders"].update(count=6, leverage=[10, 14])
    raw["protocol"] = {"oracle_confirmation_delay": 600}
    raw["collateral"] = {"WETH": {"feed": {"max_deviation": breaker}}}
    return parse_scenario(raw, "halting")


def test_halted_oracle__liquidations_wait_for_the_confirmed_level_and_the_run_completes():
    """A -12% round trips a 5% breaker: the contracts cannot value ETH until rounds at the new
    level have held for the confirmation delay, so the simulator's keepers (and traders, and the
    pool's figure) wait instead of failing the run; with a 20% breaker they liquidate at once."""
    halted, _ = run_on_revm(_halting(0.05), 5)
    open_, _ = run_on_revm(_halting(0.20), 5)
    shock_at = 600 + 60  # the flat start, then the one-step shock
    assert open_.liquidations and halted.liquidations
    first_open = min(liq.time for liq in open_.liquidations)
    first_halted = min(liq.time for liq in halted.liquidations)
    assert first_open <= shock_at + 60
    assert first_halted >= shock_at + 600  # the confirmation delay
    during = [p for p in halted.series if shock_at <= p.time < shock_at + 600]
    assert during and all(p.open_accounts == 0 for p in during)  # no account holding ETH can be valued
    assert halted.unpriced_at_end == 0


def test_censored_delay__an_account_never_liquidated_counts_with_its_wait_to_the_end():
    """Liquidation delay counted accounts never liquidated as if they did not exist (issue 10):
    with the only keeper censored for the whole run, every liquidatable account is censored."""
    raw = tomllib.loads(SHORT.read_text())
    raw["keepers"] = [{"name": "censored", "censored": [[0, 10**9]]}]
    run, _ = run_on_revm(parse_scenario(raw, "censored"), 5)
    assert run.liquidations == [] and run.still_liquidatable_at_end > 0
    assert len(run.censored_delays) == run.still_liquidatable_at_end
    delays = run.delay_quantiles()
    assert delays["censored"] == len(run.censored_delays) and delays["max"] == max(run.censored_delays) > 0
    assert SeedRun.of(run).liquidation_delay_p90_blocks > 0


# ---------------------------------------------------------------- the command


def _compare_cli():
    import importlib.util

    path = Path(__file__).parents[2] / "scripts" / "compare.py"
    spec = importlib.util.spec_from_file_location("marginsim_script_compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cli.callback


def test_compare_command__a_refused_design_stops_with_one_line_and_runs_nothing(tmp_path):
    bad = _write(tmp_path, "bad.toml", "[protocol]\nliquidation_buffer = 5\n")
    with pytest.raises(SystemExit) as stop:
        _compare_cli()((str(bad),), str(SHORT), "1-2", str(tmp_path / "out"), 1)
    refusal = "scenario short-crash.toml + bad.toml: the contracts refuse its parameters: configurator: bad buffer"
    assert stop.value.code == refusal
    with pytest.raises(SystemExit) as stop:
        _compare_cli()((str(bad),), str(SHORT), "2-1", str(tmp_path / "out"), 1)
    assert stop.value.code == "sweep: --seeds must look like 1-20 or 1,5,9, got '2-1'"
    assert not (tmp_path / "out").exists()


def test_compare_command__prints_the_table_and_writes_both_files(tmp_path, capsys):
    wide = _write(tmp_path, "wide.toml", "[protocol]\nliquidation_buffer = 0.3\n")
    _compare_cli()((str(wide),), str(SHORT), "5", str(tmp_path / "out"), 1)
    printed = capsys.readouterr().out
    assert "short-crash: 2 designs x 1 seeds" in printed and "VaR95" in printed and "wide" in printed
    assert (tmp_path / "out" / "compare.json").exists() and (tmp_path / "out" / "compare.html").exists()


@pytest.mark.slow
def test_compare_command__on_the_embedded_chain_the_figures_of_revm(tmp_path, capsys):
    """`--engine ape` runs each design on the connected network (here the embedded chain), one
    run after another, each rolled back: the same figures as on revm but gas."""
    wide = _write(tmp_path, "wide.toml", "[protocol]\nliquidation_buffer = 0.3\n")
    _compare_cli()((str(wide),), str(SHORT), "5", str(tmp_path / "ape"), None, None, "ape")
    _compare_cli()((str(wide),), str(SHORT), "5", str(tmp_path / "revm"), 1)
    on_ape, on_revm = (json.loads((tmp_path / engine / "compare.json").read_text()) for engine in ("ape", "revm"))
    assert "short-crash: 2 designs x 1 seeds" in capsys.readouterr().out
    for name in ("baseline", "wide"):
        [a], [r] = on_ape["runs"][name], on_revm["runs"][name]
        same = ("liquidations", "bad_debt_usd", "liquidated_notional_usd", "insurance_end_usd", "still_liquidatable_at_end")
        assert {k: a[k] for k in same} == {k: r[k] for k in same}
        assert a["liquidations"] > 0
    with pytest.raises(SystemExit) as stop:
        _compare_cli()((str(wide),), str(SHORT), "5", str(tmp_path / "x"), 2, None, "ape")
    refusal = "compare: --engine ape runs one at a time on the connected network; --workers and --dask are for revm"
    assert stop.value.code == refusal
