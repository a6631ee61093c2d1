"""The run report of marginsim.sim.report: summary figures, CSV/JSON files and the offline HTML.

Every test builds a synthetic `SimulationResult` (no chain, no simulation loop): `make_run`
gives a small plausible crash — 30 one-minute steps over ETH-PERP and BTC-PERP, a handful of
oracle rounds, three liquidations by two keepers and one bad-debt record; `make_scenario` the
setting it could have come from. The plotly charts are checked on the figures `report_figures`
builds, the page on its text.
"""

import csv
import json
import math
import re
from datetime import datetime

import pytest

from marginsim.sim.report import (
    HEALTH_PLOT_CAP,
    compact_number,
    format_usd,
    report_figures,
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
from marginsim.sim.scenario import FeedSpec, GasSpec, KeeperSpec, Scenario, TraderSpec

STEP_SECONDS = 60.0
BLOCKS_PER_STEP = 5
# the report's charts by element id, in page order (with a scenario, "chart-gas" follows)
CHART_IDS = (
    "chart-price-ETH-PERP",
    "chart-price-BTC-PERP",
    "chart-health",
    "chart-liquidations",
    "chart-pool",
    "chart-bad-debt",
    "chart-open-interest",
)
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
        "skipped_unprofitable", "losses_realised",
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


def make_scenario(keepers=None, **overrides) -> Scenario:
    """The setting of `make_run`: two keepers, the slow one censored from minute 5 to 15, a constant
    gas price and one override of each kind."""
    fields = dict(
        name="eth-crash-30m",
        description="ETH falls 40% in half an hour",
        seed=7,
        step_seconds=60,
        block_seconds=12,
        duration_seconds=None,
        feeds=(FeedSpec("ETH-PERP", "gbm", {"mu": 0.0, "sigma": 0.8, "s0": 2_000.0}),),
        gas=GasSpec(constant_gwei=30.0),
        traders=TraderSpec(count=25, collateral=("USDC", "WETH"), leverage=(2.0, 12.0), long_share=0.8),
        keepers=keepers or (KeeperSpec("keeper-fast"), KeeperSpec("keeper-slow", delay_blocks=10, censored=((300.0, 900.0),))),
        pool_usd=2_000_000.0,
        insurance_usd=50_000.0,
        protocol={"liquidation_buffer": 0.2},
        markets={"ETH-PERP": {"oi_cap": 100_000.0}},
        collaterals={"WETH": {"weight": 0.8, "feed": {"max_deviation": 0.3}}},
        source="eth-crash.toml",
    )
    fields.update(overrides)
    return Scenario(**fields)


def report_text(run, tmp_path, scenario=None) -> str:
    return write_outputs(run, tmp_path, scenario)["report"].read_text(encoding="utf-8")


def figure_div_ids(html_text: str) -> list[str]:
    return re.findall(r'<div id="([^"]*)" class="plotly-graph-div"', html_text)


def all_y(figure) -> list:
    return [y for trace in figure.data for y in (trace.y or ())]


def rects(figure) -> list[tuple]:
    return [(s.x0, s.x1) for s in figure.layout.shapes if s.type == "rect"]


def annotations(figure) -> list[str]:
    return [a.text for a in figure.layout.annotations]


def test_report_html__one_plotly_bundle_and_one_figure_per_chart(tmp_path):
    html_text = report_text(make_run(), tmp_path / "plain")
    assert html_text.count("* plotly.js v") == 1  # the bundle's header: inlined once, with the first chart
    assert figure_div_ids(html_text) == list(CHART_IDS)
    assert html_text.count("Plotly.newPlot(") == len(CHART_IDS)
    with_scenario = report_text(make_run(), tmp_path / "scenario", make_scenario())
    assert with_scenario.count("* plotly.js v") == 1
    assert figure_div_ids(with_scenario) == [*CHART_IDS, "chart-gas"]
    assert with_scenario.count("Plotly.newPlot(") == len(CHART_IDS) + 1


def test_report_html__no_external_references(tmp_path):
    html_text = report_text(make_run(), tmp_path, make_scenario())
    assert 'src="http' not in html_text
    scripts = re.findall(r"<script\b[^>]*>", html_text, flags=re.I)
    assert len(scripts) >= len(CHART_IDS) and not any("src" in tag for tag in scripts)
    # outside the scripts (plotly.js holds the URLs of its own links, unused offline): no URL at all
    page = re.sub(r"<script\b.*?</script>", "", html_text, flags=re.I | re.S)
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page, flags=re.I)
    assert not re.search(r"https?:|//[a-z]|@import|url\(", page, flags=re.I)


def test_report_html__escapes_the_scenario_name_and_keeper_names(tmp_path):
    name = '<script>alert("x")</script> & co'
    scenario = make_scenario(name=name, description="<b>bold</b>", keepers=(KeeperSpec("<i>k</i>", censored=((60.0, 120.0),)),))
    html_text = report_text(make_run(scenario=name), tmp_path, scenario)
    assert name not in html_text and "<b>bold</b>" not in html_text and "<i>k</i>" not in html_text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html_text
    assert "&lt;b&gt;bold&lt;/b&gt;" in html_text and "&lt;i&gt;k&lt;/i&gt;" in html_text


def test_price_figure__market_price_line_and_oracle_step_line_of_the_rounds():
    figure = report_figures(make_run())["chart-price-ETH-PERP"]
    price, oracle = figure.data
    assert price.mode == "lines" and len(price.y) == 30 and price.y[0] == pytest.approx(2_000.0)
    assert oracle.line.shape == "hv"
    # the three ETH rounds, the last one held to the end of the run (minute 29) without a marker
    assert list(oracle.x) == [0.0, 10.0, 20.0, 29.0]
    assert list(oracle.y) == [2_000.0, 1_720.0, 1_440.0, 1_440.0]
    assert max(oracle.marker.size) <= 5 and oracle.marker.size[-1] == 0


def test_time_axis__minutes_for_short_synthetic_runs_and_hours_for_long():
    short = report_figures(make_run())["chart-health"]
    assert short.layout.xaxis.title.text == "time since start (min)"
    assert short.data[0].x[-1] == pytest.approx(29.0)
    long_run = make_run()
    long_run.series = [make_point(s, eth=2_000.0, btc=30_000.0, time=s * 600.0) for s in range(30)]  # 4.8 hours
    long = report_figures(long_run)["chart-health"]
    assert long.layout.xaxis.title.text == "time since start (h)"
    assert long.data[0].x[-1] == pytest.approx(29 * 600 / 3_600)


def test_time_axis__a_replay_is_drawn_in_utc_clock_time():
    run = make_run()
    run.clock_start = 1_583_971_200  # 2020-03-12 00:00 UTC
    figures = report_figures(run, make_scenario())
    price = figures["chart-price-ETH-PERP"].data[0]
    assert price.x[0] == datetime(2020, 3, 12, 0, 0) and price.x[-1] == datetime(2020, 3, 12, 0, 29)
    assert figures["chart-health"].layout.xaxis.title.text == "time (UTC)"
    assert rects(figures["chart-pool"]) == [(datetime(2020, 3, 12, 0, 5), datetime(2020, 3, 12, 0, 15))]


def test_liquidations_figure__liquidatable_accounts_and_liquidations_by_keeper():
    figure = report_figures(make_run())["chart-liquidations"]
    liquidatable, *keepers = figure.data
    assert list(liquidatable.y) == [1 if 10 <= s < 20 else 0 for s in range(30)]
    assert {t.name: len(t.x) for t in keepers} == {"liquidated by keeper-fast": 2, "liquidated by keeper-slow": 1}
    assert all(t.mode == "markers" and t.yaxis == "y2" for t in keepers)
    assert sorted(y for t in keepers for y in t.y) == [25_000.0, 40_000.0, 60_000.0]


def test_health_figure__bands_median_and_open_accounts_on_a_second_axis():
    run = make_run()
    run.series[5] = make_point(5, eth=2_000.0, btc=30_000.0, open_accounts=0)
    figure = report_figures(run)["chart-health"]
    by_name = {t.name: t for t in figure.data if t.name}
    assert set(by_name) == {"p5-p95", "p25-p75", "median", "open accounts"}
    assert by_name["median"].y[0] == pytest.approx(1.6) and by_name["p5-p95"].y[0] == pytest.approx(5.0)
    assert by_name["median"].y[5] is None  # no open accounts: a gap, not a value
    assert by_name["open accounts"].yaxis == "y2" and by_name["open accounts"].y[5] == 0


ZERO_FIELDS = ("insurance_usd", "open_interest_usd", "bad_debt_usd")


def test_figures__infinite_health_and_all_zero_series__plot_finite_values():
    run = make_run()
    run.series = [
        make_point(s, eth=2_000.0, btc=30_000.0, health=(math.inf,) * 5, **{name: 0.0 for name in ZERO_FIELDS}) for s in range(30)
    ]
    run.bad_debt, run.peak_open_interest_usd = [], 0.0
    figures = report_figures(run, make_scenario())
    for chart_id, figure in figures.items():
        values = all_y(figure)
        assert values and all(v is not None and math.isfinite(v) for v in values), chart_id
    median = next(t for t in figures["chart-health"].data if t.name == "median")
    assert set(median.y) == {HEALTH_PLOT_CAP}, "infinite health is drawn at the cap, not dropped"
    for chart_id in ("chart-bad-debt", "chart-open-interest"):
        assert set(all_y(figures[chart_id])) == {0.0}
    # no peak line without open interest (the shaded censorship window is the only shape)
    assert [s.type for s in figures["chart-open-interest"].layout.shapes] == ["rect"]


def test_report_figures__censorship_windows_shaded_only_with_the_scenario():
    run = make_run()
    assert all(not rects(f) for f in report_figures(run).values())
    slow = KeeperSpec("keeper-slow", censored=((300.0, 900.0), (1_500.0, 9_000.0), (5_000.0, 6_000.0)))
    figures = report_figures(run, make_scenario(keepers=(KeeperSpec("keeper-fast"), slow)))
    # minutes 5-15, and 25 to the end of the run (minute 29); the window after the run is left out
    for chart_id, figure in figures.items():
        assert rects(figure) == [(5.0, 15.0), (25.0, 29.0)], chart_id
        assert annotations(figure).count("keeper-slow censored") == 2


def test_gas_figure__from_the_scenario_gas_source():
    assert "chart-gas" not in report_figures(make_run())
    gas = report_figures(make_run(), make_scenario())["chart-gas"]
    assert len(gas.data) == 1 and set(gas.data[0].y) == {30.0} and len(gas.data[0].y) == 30
    assert "constant 30 gwei" in gas.layout.title.text


def test_report_html__says_what_was_simulated(tmp_path):
    html_text = report_text(make_run(), tmp_path / "scenario", make_scenario())
    section = html_text[html_text.index("<h2>What was simulated</h2>") : html_text.index("<h2>Summary</h2>")]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section))
    assert "ETH falls 40% in half an hour" in text and "eth-crash-30m (eth-crash.toml)" in text
    assert "25 on ETH-PERP, collateral USDC, WETH; leverage 2x to 12x" in text and "80% long" in text
    assert "30% top up their margin below health 1.3" in text
    assert "constant 30 gwei" in text and "pool $2,000,000.00, insurance fund $50,000.00" in text
    assert "keeper-fast 0 $0.00 none" in text
    assert "keeper-slow 10 $0.00 300-900 s (5 min to 15 min)" in text
    assert "protocol.liquidation_buffer 0.2 0.1" in text
    assert "market.ETH-PERP.oi_cap 100,000 7,500" in text
    assert "collateral.WETH.weight 0.8 0.85" in text and "collateral.WETH.feed.max_deviation 0.3 0.2" in text
    assert "What was simulated" not in report_text(make_run(), tmp_path / "plain")


def test_write_outputs__empty_run__writes_a_valid_report(tmp_path):
    run = make_empty_run()
    paths = write_outputs(run, tmp_path)
    html_text = paths["report"].read_text(encoding="utf-8")
    assert figure_div_ids(html_text) == list(CHART_IDS)
    assert "no liquidations" in annotations(report_figures(run)["chart-liquidations"])
    assert "No keepers recorded." in html_text
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["liquidations"] == 0 and summary["bad_debt_usd"] == 0.0 and summary["keepers"] == []
    assert len(read_csv(paths["liquidations"])) == 1  # header only
    assert len(read_csv(paths["series"])) == 2


def test_write_outputs__run_without_any_records__writes_every_chart(tmp_path):
    run = SimulationResult(scenario="never-ran", seed=0, network="local", started_block=0)
    html_text = write_outputs(run, tmp_path, make_scenario())["report"].read_text(encoding="utf-8")
    ids = [
        "chart-price",
        "chart-health",
        "chart-liquidations",
        "chart-pool",
        "chart-bad-debt",
        "chart-open-interest",
        "chart-gas",
    ]
    assert figure_div_ids(html_text) == ids
    figures = report_figures(run, make_scenario())
    for chart_id, figure in figures.items():
        assert ("no liquidations" if chart_id == "chart-liquidations" else "no data") in annotations(figure), chart_id
        assert not rects(figure), chart_id  # a run of no time has no censorship window to shade


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


def test_liquidation_delay__counts_accounts_never_liquidated_with_their_wait_to_the_end():
    """An account left liquidatable at the end was dropped from the delay figures (issue 10): a
    run whose keepers never came looked fast. It counts now, with the blocks it waited."""
    run = make_run()
    assert run.delay_quantiles() == {"p50": 3.0, "p90": 6.0, "max": 6.0, "censored": 0}
    run.censored_delays = [400, 500]
    assert run.delay_quantiles() == {"p50": 6.0, "p90": 500.0, "max": 500.0, "censored": 2}
    assert "p50 6, p90 500, max 500 (2 never liquidated, counted to the end)" in summary_table(run)
