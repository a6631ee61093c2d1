"""The run report of marginsim.sim.report: summary figures, CSV/JSON files and the offline HTML.

Every test builds a synthetic `SimulationResult` (no chain, no simulation loop): `make_run`
gives a small plausible crash — 30 one-minute steps over ETH-PERP and BTC-PERP, a handful of
oracle rounds, three liquidations by two keepers and one bad-debt record.
"""

import csv
import json
import math
import re

import pytest

from marginsim.sim.report import (
    compact_number,
    format_usd,
    nice_ticks,
    summary_dict,
    summary_table,
    write_outputs,
)
from marginsim.sim.results import (
    BadDebtRecord,
    KeeperStats,
    LiquidationRecord,
    OracleRound,
    SeriesPoint,
    SimulationResult,
)

STEP_SECONDS = 60.0
BLOCKS_PER_STEP = 5
CHART_KINDS = ("price", "health", "liquidations", "insurance", "bad-debt", "open-interest")
BAD_DEBT_USD = 1_234.5
PEAK_OPEN_INTEREST_USD = 250_000.0


def make_point(step: int, *, eth: float, btc: float, health=(0.9, 1.2, 1.6, 2.4, 5.0), open_accounts=8, **overrides):
    fields = dict(
        time=step * STEP_SECONDS,
        block=step * BLOCKS_PER_STEP,
        market_price={"ETH-PERP": eth, "BTC-PERP": btc},
        oracle_price={"ETH-PERP": eth * 1.002, "BTC-PERP": btc * 1.001},
        insurance_usd=50_000.0 - 40.0 * step,
        pool_value_usd=1_000_000.0 + 100.0 * step,
        open_interest_usd=PEAK_OPEN_INTEREST_USD - 3_000.0 * step,
        bad_debt_usd=BAD_DEBT_USD if step >= 20 else 0.0,
        liquidatable_accounts=1 if 10 <= step < 20 else 0,
        health_quantiles=health,
        open_accounts=open_accounts,
    )
    fields.update(overrides)
    return SeriesPoint(**fields)


def make_liquidation(step: int, keeper: str, notional: float, *, least: float, full_close=False, delay=2):
    return LiquidationRecord(
        time=step * STEP_SECONDS,
        block=step * BLOCKS_PER_STEP,
        keeper=keeper,
        account=100 + step,
        market="ETH-PERP",
        size_closed=-notional / 1_500.0,
        notional_usd=notional,
        penalty_usd=notional * 0.01,
        keeper_reward_usd=notional * 0.005,
        gas_used=152_000,
        gas_cost_usd=4.2,
        least_notional_usd=least,
        delay_blocks=delay,
        health_before=0.93,
        health_after=math.inf if full_close else 1.1,
        full_close=full_close,
    )


def make_run(scenario: str = "eth-crash-30m", steps: int = 30) -> SimulationResult:
    """A small plausible run: ETH falls 40% over 30 minutes, BTC 20%."""
    series = [
        make_point(step, eth=2_000.0 * (1 - 0.4 * step / (steps - 1)), btc=30_000.0 * (1 - 0.2 * step / (steps - 1)))
        for step in range(steps)
    ]
    rounds = [
        OracleRound(0.0, 0, "ETH-PERP", 2_000.0, "initial"),
        OracleRound(0.0, 0, "BTC-PERP", 30_000.0, "initial"),
        OracleRound(600.0, 50, "ETH-PERP", 1_720.0, "deviation"),
        OracleRound(1_200.0, 100, "ETH-PERP", 1_440.0, "deviation"),
        OracleRound(1_200.0, 100, "BTC-PERP", 26_000.0, "deviation"),
    ]
    liquidations = [
        make_liquidation(11, "keeper-fast", 40_000.0, least=30_000.0, delay=1),
        make_liquidation(14, "keeper-slow", 25_000.0, least=25_000.0, delay=6),
        make_liquidation(19, "keeper-fast", 60_000.0, least=20_000.0, full_close=True, delay=3),
    ]
    bad_debt = [BadDebtRecord(1_200.0, 100, 119, BAD_DEBT_USD, 1_000.0, 234.5)]
    keepers = {
        "keeper-fast": KeeperStats("keeper-fast", liquidations=2, revenue_usd=500.0, gas_spent_usd=12.6, lost_races=1),
        "keeper-slow": KeeperStats("keeper-slow", liquidations=1, revenue_usd=125.0, gas_spent_usd=8.4, skipped_unprofitable=3),
    }
    return SimulationResult(
        scenario=scenario,
        seed=7,
        network="local",
        started_block=0,
        steps=steps,
        transactions=240,
        wall_seconds=12.0,
        rounds=rounds,
        series=series,
        liquidations=liquidations,
        bad_debt=bad_debt,
        keepers=keepers,
        still_liquidatable_at_end=0,
        underwater_at_end=3,
        underwater_at_end_usd=3_707.25,
        peak_open_interest_usd=PEAK_OPEN_INTEREST_USD,
    )


def make_empty_run() -> SimulationResult:
    """Nothing happened: one step, no liquidations, no bad debt, no keepers."""
    return SimulationResult(
        scenario="quiet",
        seed=1,
        network="local",
        started_block=0,
        steps=1,
        series=[make_point(0, eth=2_000.0, btc=30_000.0)],
    )


def svg_elements(html_text: str) -> dict[str, list[str]]:
    """data-chart kind -> the opening tags of the <svg> elements of that kind."""
    kinds: dict[str, list[str]] = {}
    for tag in re.findall(r"<svg\b[^>]*>", html_text):
        kind = re.search(r'data-chart="([^"]*)"', tag)
        kinds.setdefault(kind.group(1) if kind else "", []).append(tag)
    return kinds


GEOMETRY_ATTRIBUTES = ("d", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "width", "height", "transform")


def svg_geometry_is_finite(html_text: str) -> bool:
    """No coordinate in any chart is nan or inf."""
    pattern = r'\b(?:{})="([^"]*)"'.format("|".join(GEOMETRY_ATTRIBUTES))
    values = re.findall(pattern, html_text)
    assert values, "no geometry found"
    return not any(re.search(r"nan|inf", v, flags=re.I) for v in values)


def chart_svg(html_text: str, kind: str) -> str:
    return re.search(rf'<svg[^>]*data-chart="{kind}".*?</svg>', html_text, flags=re.S).group(0)


def y_tick_labels(svg: str) -> list[str]:
    """The value-axis labels, bottom to top (they are the right-aligned tick labels)."""
    return re.findall(r'class="tick-label"[^>]*text-anchor="end">([^<]*)<', svg)


def trace_paths(svg: str, series: str) -> list[str]:
    group = re.search(rf'<g class="trace" data-series="{series}">(.*?)</g>', svg, flags=re.S)
    return re.findall(r'<path d="([^"]*)"', group.group(1)) if group else []


# --- files -----------------------------------------------------------------------------


def test_write_outputs__creates_every_file(tmp_path):
    out_dir = tmp_path / "runs" / "eth-crash"
    paths = write_outputs(make_run(), out_dir)
    expected = {
        "summary": "summary.json",
        "series": "series.csv",
        "rounds": "rounds.csv",
        "liquidations": "liquidations.csv",
        "bad_debt": "bad_debt.csv",
        "keepers": "keepers.csv",
        "report": "report.html",
    }
    assert {name: path.name for name, path in paths.items()} == expected
    for path in paths.values():
        assert path.parent == out_dir
        assert path.is_file() and path.stat().st_size > 0


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_series_csv__one_row_per_point_with_per_market_columns(tmp_path):
    run = make_run()
    rows = read_csv(write_outputs(run, tmp_path)["series"])
    assert rows[0] == [
        "time", "block",
        "market_price_ETH-PERP", "oracle_price_ETH-PERP", "market_price_BTC-PERP", "oracle_price_BTC-PERP",
        "insurance_usd", "pool_value_usd", "open_interest_usd", "bad_debt_usd", "liquidatable_accounts",
        "health_p5", "health_p25", "health_p50", "health_p75", "health_p95",
        "open_accounts",
    ]  # fmt: skip
    assert len(rows) - 1 == len(run.series) == 30
    last = dict(zip(rows[0], rows[-1], strict=False))
    assert float(last["market_price_ETH-PERP"]) == pytest.approx(1_200.0)
    assert float(last["oracle_price_BTC-PERP"]) == pytest.approx(24_000.0 * 1.001)
    assert int(last["block"]) == 29 * BLOCKS_PER_STEP


def test_record_csvs__one_row_per_record(tmp_path):
    run = make_run()
    paths = write_outputs(run, tmp_path)
    liquidations = read_csv(paths["liquidations"])
    assert len(liquidations) - 1 == len(run.liquidations) == 3
    assert liquidations[0][:3] == ["time", "block", "keeper"]
    assert [row[2] for row in liquidations[1:]] == ["keeper-fast", "keeper-slow", "keeper-fast"]
    assert len(read_csv(paths["rounds"])) - 1 == len(run.rounds)
    assert len(read_csv(paths["bad_debt"])) - 1 == 1
    keepers = read_csv(paths["keepers"])
    assert keepers[0] == [
        "name", "liquidations", "orders_filled", "revenue_usd", "gas_spent_usd", "profit_usd", "lost_races",
        "skipped_unprofitable",
    ]  # fmt: skip
    assert float(dict(zip(keepers[0], keepers[1], strict=False))["profit_usd"]) == pytest.approx(500.0 - 12.6)


def test_summary_json__round_trips_with_bad_debt_total_and_share_of_peak_oi(tmp_path):
    run = make_run()
    run.bad_debt.append(BadDebtRecord(1_500.0, 125, 120, 765.5, 0.0, 765.5))
    loaded = json.loads(write_outputs(run, tmp_path)["summary"].read_text(encoding="utf-8"))
    assert loaded == summary_dict(run)
    assert loaded["bad_debt_usd"] == pytest.approx(BAD_DEBT_USD + 765.5)
    assert loaded["bad_debt_share_of_peak_oi"] == pytest.approx((BAD_DEBT_USD + 765.5) / PEAK_OPEN_INTEREST_USD)
    assert loaded["liquidation_delay_blocks"] == {"p50": 3.0, "p90": 6.0, "max": 6.0, "censored": 0}
    assert [k["name"] for k in loaded["keepers"]] == ["keeper-fast", "keeper-slow"]


def test_summary_dict__figures_of_the_run():
    summary = summary_dict(make_run())
    assert summary["liquidations"] == 3
    assert summary["liquidated_notional_usd"] == pytest.approx(125_000.0)
    # partial closes only: 40k - 30k, and 25k - 25k; the full close is not over-liquidation
    assert summary["over_liquidation_usd"] == pytest.approx(10_000.0)
    assert summary["insurance_start_usd"] == pytest.approx(50_000.0)
    assert summary["insurance_end_usd"] == pytest.approx(50_000.0 - 40.0 * 29)
    assert summary["transactions_per_second"] == pytest.approx(20.0)
    assert summary["oracle_rounds"] == 5
    assert (summary["underwater_at_end"], summary["underwater_at_end_usd"]) == (3, 3_707.25)


def test_summary_dict__zero_wall_time_and_no_series__stays_json_serialisable():
    run = SimulationResult(scenario="never-ran", seed=0, network="local", started_block=0, transactions=5)
    summary = summary_dict(run)
    json.dumps(summary, allow_nan=False)
    assert summary["transactions_per_second"] == 0.0
    assert summary["insurance_start_usd"] is None and summary["pool_value_end_usd"] is None


# --- terminal table ----------------------------------------------------------------------


def test_summary_table__lists_each_keeper_and_the_bad_debt():
    table = summary_table(make_run())
    keeper_rows = [line for line in table.splitlines() if "keeper-" in line]
    assert len(keeper_rows) == 2
    fast = next(line for line in keeper_rows if "keeper-fast" in line).split()
    assert fast[1:] == ["2", "0", "$500.00", "$12.60", "$487.40", "1", "0"]
    assert "$1,234.50" in table
    assert "0.49% of peak OI" in table  # 1,234.5 / 250,000
    assert "p50 3, p90 6, max 6" in table
    # accounts left below zero equity are shown beside the bad debt the books hold, not in it
    [row] = [line for line in table.splitlines() if "underwater at end" in line]
    assert "3 accounts, $3,707.25 of negative equity" in row


# --- HTML report -------------------------------------------------------------------------


def test_report_html__has_an_svg_for_each_chart(tmp_path):
    html_text = write_outputs(make_run(), tmp_path)["report"].read_text(encoding="utf-8")
    kinds = svg_elements(html_text)
    assert set(kinds) == set(CHART_KINDS)
    assert len(kinds["price"]) == 2  # one per market
    assert 'id="chart-price-ETH-PERP"' in html_text and 'id="chart-price-BTC-PERP"' in html_text
    for kind in CHART_KINDS[1:]:
        assert len(kinds[kind]) == 1
    # the liquidations chart has one point per liquidation and names both keepers
    points = dict(re.findall(r'<g class="trace" data-series="([^"]*)">(.*?)</g>', chart_svg(html_text, "liquidations")))
    assert {keeper: group.count("<circle") for keeper, group in points.items()} == {"keeper-fast": 2, "keeper-slow": 1}


def test_report_html__no_external_references(tmp_path):
    html_text = write_outputs(make_run(), tmp_path)["report"].read_text(encoding="utf-8")
    assert set(re.findall(r"https?://[^\s\"'<>)]*", html_text)) <= {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(script|link|img|iframe)\b", html_text, flags=re.I)
    assert "@import" not in html_text and "url(" not in html_text.replace("url(#chart-", "")


def test_report_html__escapes_the_scenario_name(tmp_path):
    run = make_run(scenario='<script>alert("x")</script> & co')
    html_text = write_outputs(run, tmp_path)["report"].read_text(encoding="utf-8")
    assert "<script" not in html_text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html_text


def test_report_html__time_axis_in_minutes_for_short_runs_and_hours_for_long(tmp_path):
    short = write_outputs(make_run(), tmp_path / "short")["report"].read_text(encoding="utf-8")
    long_run = make_run()
    long_run.series = [make_point(s, eth=2_000.0, btc=30_000.0, time=s * 600.0) for s in range(30)]  # 4.8 hours
    long = write_outputs(long_run, tmp_path / "long")["report"].read_text(encoding="utf-8")
    assert "time since start (min)" in short and "time since start (h)" not in short
    assert "time since start (h)" in long and "time since start (min)" not in long


def test_write_outputs__empty_run__writes_a_valid_report(tmp_path):
    run = make_empty_run()
    paths = write_outputs(run, tmp_path)
    html_text = paths["report"].read_text(encoding="utf-8")
    assert set(svg_elements(html_text)) == set(CHART_KINDS)
    assert "no liquidations" in html_text
    assert "No keepers recorded." in html_text
    assert svg_geometry_is_finite(html_text)
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["liquidations"] == 0 and summary["bad_debt_usd"] == 0.0 and summary["keepers"] == []
    assert len(read_csv(paths["liquidations"])) == 1  # header only
    assert len(read_csv(paths["series"])) == 2


ZERO_FIELDS = ("insurance_usd", "open_interest_usd", "bad_debt_usd")


def test_report_html__infinite_health_and_all_zero_series__plot_finite_coordinates(tmp_path):
    run = make_run()
    run.series = [
        make_point(s, eth=2_000.0, btc=30_000.0, health=(math.inf,) * 5, **{name: 0.0 for name in ZERO_FIELDS}) for s in range(30)
    ]
    run.bad_debt, run.peak_open_interest_usd = [], 0.0
    html_text = write_outputs(run, tmp_path)["report"].read_text(encoding="utf-8")
    assert svg_geometry_is_finite(html_text)
    health = chart_svg(html_text, "health")
    assert trace_paths(health, "median"), "infinite health must be drawn at the cap, not dropped"
    assert y_tick_labels(health)[-1] == "10"
    for kind in ("insurance", "bad-debt", "open-interest"):
        labels = y_tick_labels(chart_svg(html_text, kind))
        assert labels[0] == "0" and labels[-1] == "1", (kind, labels)  # a zero series sits on the floor
        assert trace_paths(chart_svg(html_text, kind), kind.replace("-", " ").replace("insurance", "insurance fund"))


def test_write_outputs__run_without_any_records__writes_every_chart(tmp_path):
    run = SimulationResult(scenario="never-ran", seed=0, network="local", started_block=0)
    html_text = write_outputs(run, tmp_path)["report"].read_text(encoding="utf-8")
    kinds = svg_elements(html_text)
    assert set(kinds) == set(CHART_KINDS)
    assert all(len(tags) == 1 for tags in kinds.values())
    assert html_text.count('class="no-data"') == len(CHART_KINDS)
    assert svg_geometry_is_finite(html_text)


# --- formatting helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (0.25, "0.25"), (12.5, "12.5"), (950.0, "950"), (1_234.0, "1.2k"), (34_500.0, "34.5k"),
     (999_960.0, "1M"), (3_400_000.0, "3.4M"), (1.1e9, "1.1B"), (-2_500.0, "-2.5k")],
)  # fmt: skip
def test_compact_number__short_labels(value, text):
    assert compact_number(value) == text


def test_format_usd__thousands_separators_and_sign():
    assert format_usd(1_234.5) == "$1,234.50"
    assert format_usd(-12.0) == "-$12.00"
    assert format_usd(None) == "-"


def test_nice_ticks__round_steps_inside_the_range():
    ticks, step = nice_ticks(0.0, 1_000.0)
    assert step == 200.0 and ticks == [0.0, 200.0, 400.0, 600.0, 800.0, 1_000.0]
    ticks, step = nice_ticks(1_183.0, 2_017.0)
    assert step == 200.0 and ticks[0] == 1_200.0 and ticks[-1] == 2_000.0


def test_liquidation_delay__counts_accounts_never_liquidated_with_their_wait_to_the_end():
    """An account left liquidatable at the end was dropped from the delay figures (issue 10): a
    run whose keepers never came looked fast. It counts now, with the blocks it waited."""
    run = make_run()
    assert run.delay_quantiles() == {"p50": 3.0, "p90": 6.0, "max": 6.0, "censored": 0}
    run.censored_delays = [400, 500]
    assert run.delay_quantiles() == {"p50": 6.0, "p90": 500.0, "max": 500.0, "censored": 2}
    assert "p50 6, p90 500, max 500 (2 never liquidated, counted to the end)" in summary_table(run)
