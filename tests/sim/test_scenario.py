"""Scenario files: the shipped ones load; a bad file fails with one line naming the field."""

from pathlib import Path

import numpy as np
import pytest

from marginsim.sim.scenario import ScenarioError, load_scenario, parse_scenario

SCENARIOS = sorted((Path(__file__).parents[2] / "scenarios").glob("*.toml"))

MINIMAL = {
    "name": "t",
    "feed": {"ETH-PERP": {"kind": "gbm", "mu": 0.0, "sigma": 0.5, "s0": 2000.0, "duration_seconds": 3600}},
    "gas": {"constant_gwei": 10},
    "keepers": [{"name": "k"}],
}


def with_changes(**changes):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in MINIMAL.items()}
    for dotted, value in changes.items():
        table = raw
        *parents, last = dotted.split("__")
        for key in parents:
            table = table.setdefault(key, {})
        table[last] = value
    return raw


def test_shipped_scenarios__all_load():
    names = {load_scenario(path).name for path in SCENARIOS}
    assert {"black-thursday-2020", "may-2021", "gbm-calm", "flash-crash"} <= names


def test_minimal_scenario__defaults():
    scenario = parse_scenario(MINIMAL)
    assert scenario.step_seconds == 60 and scenario.traders.count == 20
    assert scenario.keepers[0].delay_blocks == 0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"seed": -1}, "scenario <scenario>: seed: must be in [0, inf], got -1"),
        ({"step_seconds": 0}, "scenario <scenario>: step_seconds: must be in [1, 3600], got 0"),
        (
            {"traders__leverage": [0, 5]},
            "scenario <scenario>: traders.leverage: must be two numbers [low, high] with 1.0 <= low <= high, got [0, 5]",
        ),
        ({"traders__long_share": 1.5}, "scenario <scenario>: traders.long_share: must be in [0, 1], got 1.5"),
        (
            {"traders__collateral": ["DOGE"]},
            "scenario <scenario>: traders.collateral: must be a non-empty list from "
            "['USDC', 'USDT', 'WBTC', 'WETH'], got ['DOGE']",
        ),
        (
            {"traders__markets": ["BTC-PERP"]},
            "scenario <scenario>: traders.markets: must be a non-empty list from ['ETH-PERP'], got ['BTC-PERP']",
        ),
        ({"gas": {"constant_gwei": 10, "file": "x.csv"}}, "scenario <scenario>: gas: give exactly one of file or constant_gwei"),
        (
            {"gas": {"file": "gas_price_10min_2020-03-12.csv", "percentile": "p99"}},
            "scenario <scenario>: gas.percentile: must be one of mean, p30, p60, p90, max, got 'p99'",
        ),
        ({"keepers": []}, "scenario <scenario>: keepers: at least one [[keepers]] entry is required"),
        ({"keepers": [{"name": "a"}, {"name": "a"}]}, "scenario <scenario>: keepers: keeper names must be unique"),
        (
            {"keepers": [{"name": "a", "censored": [[10, 5]]}]},
            "scenario <scenario>: keepers[0].censored: must be a list of [start, end] second pairs "
            "with start < end, got [[10, 5]]",
        ),
        (
            {"feed": {"ETH-PERP": {"kind": "brownian"}}},
            "scenario <scenario>: feed.ETH-PERP.kind: must be one of replay, gbm, jump, garch, shock, got 'brownian'",
        ),
        ({"feed": {"SOL-PERP": {"kind": "gbm"}}}, "scenario <scenario>: feed.SOL-PERP: market must be ETH-PERP or BTC-PERP"),
        (
            {"feed": {"ETH-PERP": {"kind": "replay", "file": "nope.csv"}}},
            "scenario <scenario>: feed.ETH-PERP.file: no such data file:",
        ),
        (
            {"feed": {"ETH-PERP": {"kind": "gbm", "mu": 0.0, "sigma": -0.1, "s0": 2000.0}}},
            "scenario <scenario>: feed.ETH-PERP: feeds: sigma must be >= 0, got -0.1",
        ),
        (
            {"traders__size_distribution": "lognormal"},
            "scenario <scenario>: traders.size_distribution: must be one of uniform, pareto, got 'lognormal'",
        ),
        ({"traders__size_tail": 0}, "scenario <scenario>: traders.size_tail: must be in [0.1, 10], got 0"),
        (
            {"traders__leverage_distribution": "log"},
            "scenario <scenario>: traders.leverage_distribution: must be one of uniform, log-uniform, got 'log'",
        ),
        (
            {"traders__collateral": ["USDC", "WETH"], "traders__collateral_mix": [1]},
            "scenario <scenario>: traders.collateral_mix: must be 2 weights >= 0 (one per traders.collateral), "
            "not all 0, got [1]",
        ),
        (
            {"traders__collateral_mix": [0]},
            "scenario <scenario>: traders.collateral_mix: must be 1 weights >= 0 (one per traders.collateral), "
            "not all 0, got [0]",
        ),
        ({"protocol__liquidation_bufer": 0.1}, "scenario <scenario>: protocol.liquidation_bufer: unknown field"),
        ({"colour": "red"}, "scenario <scenario>: colour: unknown field"),
    ],
)
def test_bad_scenario__one_line_naming_the_field(changes, message):
    with pytest.raises(ScenarioError) as error:
        parse_scenario(with_changes(**changes))
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(message)


def test_load_scenario__missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ScenarioError, match="^scenario: no such file: "):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ScenarioError, match="^scenario bad.toml: not valid TOML: "):
        load_scenario(bad)


def test_market_overrides__validated():
    scenario = parse_scenario(with_changes(market={"ETH-PERP": {"oi_cap": 100_000, "skew_scale": 20_000_000}}))
    assert scenario.markets == {"ETH-PERP": {"oi_cap": 100_000.0, "skew_scale": 20_000_000.0}}
    with pytest.raises(ScenarioError, match=r"^scenario <scenario>: market.ETH-PERP.colour: unknown field"):
        parse_scenario(with_changes(market={"ETH-PERP": {"colour": 1}}))


def test_trader_draws__uniform_by_default_and_unchanged():
    """Without the new fields a trader is drawn as before (the same calls on the generator), so
    every shipped scenario's figures stand."""
    spec = parse_scenario(MINIMAL).traders
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(50):
        assert spec.draw_collateral(a) == spec.collateral[int(b.integers(len(spec.collateral)))]
        assert spec.draw_collateral_usd(a) == float(b.uniform(*spec.collateral_usd))
        assert spec.draw_leverage(a) == float(b.uniform(*spec.leverage))


def test_trader_draws__pareto_sizes_log_uniform_leverage_and_a_mix():
    """The crowd: sizes within their bounds with the top fifth holding about four fifths of the
    money (tail 1.16, Pareto's 80/20), leverage log-uniform (as many traders below the bounds'
    geometric mean as above it), and collateral in the mix's shares."""
    spec = parse_scenario(
        with_changes(
            traders__collateral=["USDC", "WETH"],
            traders__collateral_mix=[3, 1],
            traders__collateral_usd=[200, 2_000_000],
            traders__size_distribution="pareto",
            traders__size_tail=1.16,
            traders__leverage=[1.5, 24],
            traders__leverage_distribution="log-uniform",
        )
    ).traders
    rng = np.random.default_rng(1)
    sizes = sorted(spec.draw_collateral_usd(rng) for _ in range(20_000))
    assert sizes[0] >= 200 and sizes[-1] <= 2_000_000
    top_fifth = sum(sizes[-4_000:]) / sum(sizes)
    assert 0.7 < top_fifth < 0.9
    assert 300 < sizes[10_000] < 400  # the median of the law: 200 * 2 ** (1 / 1.16) = 363
    leverage = [spec.draw_leverage(rng) for _ in range(20_000)]
    assert all(1.5 <= x <= 24 for x in leverage)
    below = sum(x < 6 for x in leverage) / len(leverage)  # 6 = sqrt(1.5 * 24)
    assert 0.48 < below < 0.52
    usdc = sum(spec.draw_collateral(rng) == "USDC" for _ in range(20_000)) / 20_000
    assert 0.73 < usdc < 0.77
