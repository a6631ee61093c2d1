"""A run's records as pandas DataFrames (`SimulationResult.to_frames`), for notebooks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from marginsim.sim.engine import run_on_revm
from marginsim.sim.results import SimulationResult
from marginsim.sim.scenario import load_scenario

ROOT = Path(__file__).parents[2]


def test_to_frames__one_frame_per_record_type_with_every_record_and_field():
    run, _ = run_on_revm(load_scenario(ROOT / "tests" / "sim" / "scenarios" / "short-crash.toml"))
    frames = run.to_frames()
    assert set(frames) == {"series", "rounds", "liquidations", "bad_debt", "keepers"}
    series = frames["series"]
    assert len(series) == len(run.series) and list(series["time"]) == [p.time for p in run.series]
    assert list(series["price_ETH-PERP"]) == [p.market_price["ETH-PERP"] for p in run.series]
    assert list(series["health_p50"]) == [p.health_quantiles[2] for p in run.series]
    assert list(series["pool_value_usd"]) == [p.pool_value_usd for p in run.series]
    liquidations = frames["liquidations"]
    assert len(liquidations) == len(run.liquidations) > 0
    assert list(liquidations["notional_usd"]) == [liq.notional_usd for liq in run.liquidations]
    keepers = frames["keepers"].set_index("name")
    assert keepers.loc["fast", "profit_usd"] == run.keepers["fast"].profit_usd
    assert "time_utc" not in series  # a synthetic path has no clock


def test_to_frames__a_replay_carries_its_utc_clock():
    scenario = load_scenario(ROOT / "scenarios" / "black-thursday-2020.toml")
    scenario = replace(scenario, duration_seconds=1_200, traders=replace(scenario.traders, count=3))
    run, _ = run_on_revm(scenario, 1)
    series = run.to_frames()["series"]
    assert run.clock_start == 1_583_971_200  # 2020-03-12 00:00 UTC, the first bar of the data file
    assert series["time_utc"].iloc[0] == pd.Timestamp("2020-03-12 00:00:00", tz="UTC")
    assert series["time_utc"].iloc[-1] == pd.Timestamp("2020-03-12 00:20:00", tz="UTC")


def test_to_frames__an_empty_run_still_has_its_columns():
    frames = SimulationResult(scenario="never-ran", seed=0, network="local", started_block=0).to_frames()
    assert all(frame.empty for frame in frames.values())
    assert "notional_usd" in frames["liquidations"].columns and "shortfall_usd" in frames["bad_debt"].columns
