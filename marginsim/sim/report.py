"""What a simulation run looked like: a terminal summary, JSON and CSV files, and an HTML report.

Reads a `SimulationResult` (marginsim.sim.results) and never changes it.

- `summarise(result)` gathers the headline figures into a typed `RunSummary`;
  `summary_table` formats them for the terminal and `summary_dict` as JSON-ready data.
- `write_outputs(result, out_dir, scenario)` writes summary.json, one CSV per record type and
  report.html.
- report.html (`report_html`) is one self-contained page that opens offline: inline CSS and
  interactive plotly charts, plotly.js inlined once (no links, fonts, images or external
  scripts). `report_figures` builds the charts as `plotly.graph_objects.Figure`s, one function
  per chart: each market's price with the oracle's published rounds as a step line, the health
  distribution with the number of open accounts, liquidatable accounts with the liquidations by
  keeper, pool value and insurance fund, cumulative bad debt and open interest. On a replay
  (`result.clock_start` set) the time axis is UTC clock time, otherwise minutes (runs up to three
  hours) or hours since the start.
- Given the `Scenario` the run came from, the report also says what was simulated (feeds,
  traders, keepers with their delays and censorship windows, gas source, pool and insurance, every
  protocol parameter the scenario overrides), charts the gas price the keepers paid (computed
  from the scenario, the result does not record it) and shades the censorship windows.

Units follow results.py: USD as float, time in seconds since the scenario start, blocks relative
to the first simulated block. Account health is capped at `HEALTH_PLOT_CAP` for plotting only;
the CSV files keep every value as recorded.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from marginsim.protocol import DEFAULT_CONFIG
from marginsim.sim.results import (
    BadDebtRecord,
    LiquidationRecord,
    OracleRound,
    SeriesPoint,
    SimulationResult,
)
from marginsim.sim.scenario import FeedSpec, GasSpec, Scenario, gas_price_gwei

HEALTH_PLOT_CAP = 10.0  # health above this is drawn at the cap (healthy enough; inf when no debt)
HEALTH_QUANTILE_NAMES = ("p5", "p25", "p50", "p75", "p95")  # order of SeriesPoint.health_quantiles
MINUTES_AXIS_LIMIT_SECONDS = 3 * 3_600  # runs up to three hours get a time axis in minutes

# Okabe-Ito palette: distinguishable with the common forms of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#999999")
LIQUIDATABLE_RED = "#C0392B"
CENSORED_GREY = "#888888"  # the shading of a keeper's censorship window


# ======================================================================================
# Summary figures
# ======================================================================================


@dataclass(frozen=True)
class KeeperSummary:
    name: str
    liquidations: int
    orders_filled: int
    revenue_usd: float
    gas_spent_usd: float
    profit_usd: float
    lost_races: int
    skipped_unprofitable: int
    losses_realised: int = 0


@dataclass(frozen=True)
class LiquidationDelay:
    """Blocks from an account first being liquidatable to its liquidation; an account never
    liquidated counts with its wait to the end of the run (`censored` of them)."""

    p50: float
    p90: float
    max: float
    censored: int = 0


@dataclass(frozen=True)
class RunSummary:
    """The headline figures of one run. Start/end values are None when the run has no series."""

    scenario: str
    seed: int
    network: str
    steps: int
    transactions: int
    wall_seconds: float
    transactions_per_second: float
    oracle_rounds: int
    liquidations: int
    liquidated_notional_usd: float
    bad_debt_usd: float
    bad_debt_covered_by_insurance_usd: float
    bad_debt_socialised_usd: float
    peak_open_interest_usd: float
    bad_debt_share_of_peak_oi: float  # fraction, 0.01 = 1%
    insurance_start_usd: float | None
    insurance_end_usd: float | None
    pool_value_start_usd: float | None
    pool_value_end_usd: float | None
    liquidation_delay_blocks: LiquidationDelay
    over_liquidation_usd: float
    still_liquidatable_at_end: int
    keepers: tuple[KeeperSummary, ...]
    underwater_at_end: int = 0
    underwater_at_end_usd: float = 0.0


def summarise(result: SimulationResult) -> RunSummary:
    """The headline figures of a run, derived from its records."""
    first = result.series[0] if result.series else None
    last = result.series[-1] if result.series else None
    delays = result.delay_quantiles()
    return RunSummary(
        scenario=result.scenario,
        seed=result.seed,
        network=result.network,
        steps=result.steps,
        transactions=result.transactions,
        wall_seconds=result.wall_seconds,
        transactions_per_second=result.transactions / result.wall_seconds if result.wall_seconds > 0 else 0.0,
        oracle_rounds=len(result.rounds),
        liquidations=len(result.liquidations),
        liquidated_notional_usd=result.liquidated_notional_usd,
        bad_debt_usd=result.total_bad_debt_usd,
        bad_debt_covered_by_insurance_usd=sum(b.covered_by_insurance_usd for b in result.bad_debt),
        bad_debt_socialised_usd=sum(b.socialised_usd for b in result.bad_debt),
        peak_open_interest_usd=result.peak_open_interest_usd,
        bad_debt_share_of_peak_oi=result.bad_debt_share_of_peak_oi,
        insurance_start_usd=first.insurance_usd if first else None,
        insurance_end_usd=last.insurance_usd if last else None,
        pool_value_start_usd=first.pool_value_usd if first else None,
        pool_value_end_usd=last.pool_value_usd if last else None,
        liquidation_delay_blocks=LiquidationDelay(**delays),
        over_liquidation_usd=result.over_liquidation_usd,
        still_liquidatable_at_end=result.still_liquidatable_at_end,
        underwater_at_end=result.underwater_at_end,
        underwater_at_end_usd=result.underwater_at_end_usd,
        keepers=tuple(
            KeeperSummary(
                name=k.name,
                liquidations=k.liquidations,
                orders_filled=k.orders_filled,
                revenue_usd=k.revenue_usd,
                gas_spent_usd=k.gas_spent_usd,
                profit_usd=k.profit_usd,
                lost_races=k.lost_races,
                skipped_unprofitable=k.skipped_unprofitable,
                losses_realised=k.losses_realised,
            )
            for k in result.keepers.values()
        ),
    )


def summary_dict(result: SimulationResult) -> dict[str, Any]:
    """The summary as JSON-ready data: snake_case keys, plain numbers and strings, keepers as a
    list of rows. Non-finite numbers and figures a run without series cannot have are None."""
    return _json_safe(dataclasses.asdict(summarise(result)))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- text formatting -------------------------------------------------------------------


def format_usd(value: float | None) -> str:
    """`$1,234.50`; `-` for a missing figure."""
    if value is None or not math.isfinite(value):
        return "-"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def compact_number(value: float) -> str:
    """A short label for a number: 950, 12.5, 1.2k, 34.5k, 3.4M, 1.1B."""
    if not math.isfinite(value):
        return str(value)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale * 0.9995:
            scaled = value / scale
            return f"{scaled:.{0 if abs(scaled) >= 99.95 else 1}f}".removesuffix(".0") + suffix
    decimals = 0 if abs(value) >= 99.5 else 1 if abs(value) >= 1 else 2
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _format_share(share: float) -> str:
    return f"{share * 100:.2f}%"


def _format_start_end(start: float | None, end: float | None) -> str:
    return f"{format_usd(start)} -> {format_usd(end)}"


def _summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """(label, value) rows shared by the terminal table and the HTML table."""
    delay = summary.liquidation_delay_blocks
    return [
        ("scenario", summary.scenario),
        ("seed", str(summary.seed)),
        ("network", summary.network),
        ("steps", f"{summary.steps:,}"),
        ("transactions", f"{summary.transactions:,}"),
        ("wall time", f"{summary.wall_seconds:,.1f} s"),
        ("throughput", f"{summary.transactions_per_second:,.1f} tx/s"),
        ("oracle rounds", f"{summary.oracle_rounds:,}"),
        ("liquidations", f"{summary.liquidations:,} ({format_usd(summary.liquidated_notional_usd)} notional)"),
        (
            "bad debt",
            f"{format_usd(summary.bad_debt_usd)} ({_format_share(summary.bad_debt_share_of_peak_oi)} of peak OI "
            f"{format_usd(summary.peak_open_interest_usd)})",
        ),
        (
            "bad debt covered / socialised",
            f"{format_usd(summary.bad_debt_covered_by_insurance_usd)} / {format_usd(summary.bad_debt_socialised_usd)}",
        ),
        ("insurance fund", _format_start_end(summary.insurance_start_usd, summary.insurance_end_usd)),
        ("pool value", _format_start_end(summary.pool_value_start_usd, summary.pool_value_end_usd)),
        (
            "liquidation delay (blocks)",
            f"p50 {delay.p50:g}, p90 {delay.p90:g}, max {delay.max:g}"
            + (f" ({delay.censored:,} never liquidated, counted to the end)" if delay.censored else ""),
        ),
        ("over-liquidation", format_usd(summary.over_liquidation_usd)),
        ("still liquidatable at end", f"{summary.still_liquidatable_at_end:,}"),
        (
            "underwater at end (not yet bad debt)",
            f"{summary.underwater_at_end:,} account{'' if summary.underwater_at_end == 1 else 's'}, "
            f"{format_usd(summary.underwater_at_end_usd)} of negative equity",
        ),
    ]


KEEPER_COLUMNS = (
    "keeper",
    "liquidations",
    "orders filled",
    "revenue",
    "gas spent",
    "profit",
    "lost races",
    "skipped unprofitable",
)


def _keeper_rows(keepers: Sequence[KeeperSummary]) -> list[tuple[str, ...]]:
    """The keepers' table, its header first; a "losses realised" column when any keeper realised one."""
    realising = any(k.losses_realised for k in keepers)
    rows = [KEEPER_COLUMNS + (("losses realised",) if realising else ())]
    for k in keepers:
        cells = (
            k.name,
            f"{k.liquidations:,}",
            f"{k.orders_filled:,}",
            format_usd(k.revenue_usd),
            format_usd(k.gas_spent_usd),
            format_usd(k.profit_usd),
            f"{k.lost_races:,}",
            f"{k.skipped_unprofitable:,}",
        )
        rows.append(cells + ((f"{k.losses_realised:,}",) if realising else ()))
    return rows


def summary_table(result: SimulationResult) -> str:
    """The run summary as aligned plain text, then one row per keeper."""
    summary = summarise(result)
    rows = _summary_rows(summary)
    label_width = max(len(label) for label, _ in rows)
    lines = ["Run summary"] + [f"  {label.ljust(label_width)}  {value}" for label, value in rows]
    lines.append("")
    if not summary.keepers:
        lines.append("Keepers: none recorded")
        return "\n".join(lines)
    cells = _keeper_rows(summary.keepers)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        name, *figures = row
        aligned = [name.ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(figures, widths[1:], strict=False)]
        lines.append("  " + "  ".join(aligned).rstrip())
    return "\n".join(lines)


# ======================================================================================
# Files
# ======================================================================================


def write_outputs(result: SimulationResult, out_dir: Path, scenario: Scenario | None = None) -> dict[str, Path]:
    """Write every output of a run into `out_dir` (created if needed). `scenario`, the one the run
    came from, adds what was simulated, the gas price and the censorship windows to report.html.

    Returns the paths by name: summary (summary.json), series, rounds, liquidations, bad_debt,
    keepers (the CSV files of the same names) and report (report.html).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out_dir / "summary.json",
        "series": out_dir / "series.csv",
        "rounds": out_dir / "rounds.csv",
        "liquidations": out_dir / "liquidations.csv",
        "bad_debt": out_dir / "bad_debt.csv",
        "keepers": out_dir / "keepers.csv",
        "report": out_dir / "report.html",
    }
    paths["summary"].write_text(json.dumps(summary_dict(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    _write_csv(paths["series"], series_header(result), _series_rows(result))
    _write_records(paths["rounds"], OracleRound, result.rounds)
    _write_records(paths["liquidations"], LiquidationRecord, result.liquidations)
    _write_records(paths["bad_debt"], BadDebtRecord, result.bad_debt)
    keepers = summarise(result).keepers
    _write_csv(
        paths["keepers"],
        [f.name for f in dataclasses.fields(KeeperSummary)],
        [dataclasses.astuple(k) for k in keepers],
    )
    paths["report"].write_text(report_html(result, scenario), encoding="utf-8")
    return paths


def markets_of(result: SimulationResult) -> list[str]:
    """Every market the run mentions, in the order first seen (series, then oracle rounds)."""
    seen: dict[str, None] = {}
    for point in result.series:
        seen.update(dict.fromkeys(point.market_price))
        seen.update(dict.fromkeys(point.oracle_price))
    seen.update(dict.fromkeys(r.market for r in result.rounds))
    return list(seen)


def series_header(result: SimulationResult) -> list[str]:
    """The columns of series.csv."""
    price_columns = [f"{kind}_{market}" for market in markets_of(result) for kind in ("market_price", "oracle_price")]
    return (
        ["time", "block"]
        + price_columns
        + ["insurance_usd", "pool_value_usd", "open_interest_usd", "bad_debt_usd", "liquidatable_accounts"]
        + [f"health_{q}" for q in HEALTH_QUANTILE_NAMES]
        + ["open_accounts"]
    )


def _series_rows(result: SimulationResult) -> Iterable[list[Any]]:
    markets = markets_of(result)
    for point in result.series:
        prices = [
            prices_by_market.get(market, "")
            for market in markets
            for prices_by_market in (point.market_price, point.oracle_price)
        ]
        yield (
            [point.time, point.block]
            + prices
            + [
                point.insurance_usd,
                point.pool_value_usd,
                point.open_interest_usd,
                point.bad_debt_usd,
                point.liquidatable_accounts,
            ]
            + list(point.health_quantiles)
            + [point.open_accounts]
        )


def _write_records(path: Path, record_type: type, records: Sequence[Any]) -> None:
    names = [f.name for f in dataclasses.fields(record_type)]
    _write_csv(path, names, ([getattr(r, n) for n in names] for r in records))


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# ======================================================================================
# HTML report
# ======================================================================================

REPORT_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0; background: #fafafa; }
main { max-width: 1000px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
table.summary th, table.setup th { font-weight: 500; color: #555; }
figure { margin: 18px 0; background: #fff; border: 1px solid #e4e4e4; border-radius: 4px; }
p.note { color: #666; font-size: 0.85em; }
"""

FIGURE_HEIGHT = 400  # pixels
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def report_html(result: SimulationResult, scenario: Scenario | None = None) -> str:
    """The whole report as one self-contained HTML document: plotly.js is inlined once, with the
    first chart. Given the scenario, the page also says what was simulated, draws the gas price
    and shades the keepers' censorship windows."""
    summary = summarise(result)
    axis = time_axis_of(result)
    title = f"marginsim report: {summary.scenario}"
    charts = "\n".join(
        "<figure>"
        + figure.to_html(
            full_html=False,
            include_plotlyjs=index == 0,
            div_id=chart_id,
            default_height=f"{FIGURE_HEIGHT}px",
            config=PLOTLY_CONFIG,
        )
        + "</figure>"
        for index, (chart_id, figure) in enumerate(report_figures(result, scenario).items())
    )
    setup = _scenario_html(scenario, axis) if scenario is not None else ""
    shaded = scenario is not None and any(k.censored for k in scenario.keepers)
    clock = "UTC clock time (a replay)" if result.clock_start is not None else "time since the scenario start"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{REPORT_CSS}</style>
</head>
<body>
<main>
<h1>{_esc(title)}</h1>
<p class="meta">seed {summary.seed} &middot; network {_esc(summary.network)} &middot; {summary.steps:,} steps</p>
{setup}
<h2>Summary</h2>
{_summary_table_html(summary)}
<h2>Keepers' results</h2>
{_keeper_table_html(summary.keepers)}
<h2>Charts</h2>
<p class="note">Interactive: drag to zoom, double-click to reset, click a legend entry to hide it.
Times are {_esc(clock)}. Account health is drawn capped at {HEALTH_PLOT_CAP:g} (accounts without debt
have infinite health).{" Shaded: windows in which a keeper's transactions did not land." if shaded else ""}</p>
{charts}
</main>
</body>
</html>
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _summary_table_html(summary: RunSummary) -> str:
    rows = "\n".join(f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>" for label, value in _summary_rows(summary))
    return f'<table class="summary">\n{rows}\n</table>'


def _table_html(
    css_class: str, header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] | None = None
) -> str:
    """A table with escaped cells; the `numeric` columns (default: all but the first) are right-aligned."""
    numeric = range(1, len(header)) if numeric is None else numeric

    def cells(row: Sequence[str], tag: str) -> str:
        return "".join(
            f'<{tag} class="number">{_esc(c)}</{tag}>' if i in numeric else f"<{tag}>{_esc(c)}</{tag}>" for i, c in enumerate(row)
        )

    body = "\n".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f'<table class="{_esc(css_class)}">\n<tr>{cells(header, "th")}</tr>\n{body}\n</table>'


def _keeper_table_html(keepers: Sequence[KeeperSummary]) -> str:
    if not keepers:
        return "<p>No keepers recorded.</p>"
    header, *rows = _keeper_rows(keepers)
    return _table_html("keepers", header, rows)


# --- what was simulated ------------------------------------------------------------------


def _scenario_html(scenario: Scenario, axis: TimeAxis) -> str:
    """The scenario behind the run: its setting, the keepers and the protocol parameters it changes."""
    rows = "\n".join(f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>" for label, value in scenario_rows(scenario))
    keepers = _table_html(
        "keeper-setup",
        ("keeper", "delay (blocks)", "min profit", "censored windows", "realises losses above"),
        (
            (
                k.name,
                f"{k.delay_blocks:,}",
                format_usd(k.min_profit_usd),
                "; ".join(_format_window(start, end, axis) for start, end in k.censored) or "none",
                "never" if k.realise_above_usd is None else format_usd(k.realise_above_usd),
            )
            for k in scenario.keepers
        ),
        numeric=(1, 2),
    )
    overrides = override_rows(scenario)
    if overrides:
        parameters = _table_html(
            "overrides",
            ("parameter", "this scenario", "default"),
            ((name, _format_parameter(value), _format_parameter(default)) for name, value, default in overrides),
        )
    else:
        parameters = "<p>None: the default protocol (marginsim.protocol.DEFAULT_CONFIG).</p>"
    description = f"<p>{_esc(scenario.description)}</p>" if scenario.description else ""
    return f"""<h2>What was simulated</h2>
{description}
<table class="setup">
{rows}
</table>
<h3>Keepers</h3>
{keepers}
<h3>Protocol parameters that differ from the defaults</h3>
{parameters}"""


def scenario_rows(scenario: Scenario) -> list[tuple[str, str]]:
    """(label, value) rows describing the scenario's setting: clock, feeds, traders, gas, liquidity."""
    traders = scenario.traders
    clock = f"steps of {scenario.step_seconds:,} s, blocks of {scenario.block_seconds:,} s"
    if scenario.duration_seconds is not None:
        clock += f", cut after {scenario.duration_seconds:,} s"
    rows = [("scenario", f"{scenario.name} ({scenario.source})" if scenario.source else scenario.name), ("clock", clock)]
    rows += [(f"price feed {feed.market}", _feed_text(feed)) for feed in scenario.feeds]
    rows += [
        (
            "traders",
            f"{traders.count:,} on {', '.join(traders.markets)}, collateral {', '.join(traders.collateral)}; "
            f"leverage {traders.leverage[0]:g}x to {traders.leverage[1]:g}x; "
            f"{format_usd(traders.collateral_usd[0])} to {format_usd(traders.collateral_usd[1])} of collateral each; "
            f"{traders.long_share:.0%} long",
        ),
        (
            "trader behaviour",
            f"{traders.topup_share:.0%} top up their margin below health {traders.topup_below_health:g}, "
            f"{traders.close_share:.0%} close below health {traders.close_below_health:g}, the rest hold",
        ),
        ("gas price", _gas_text(scenario.gas)),
        ("liquidity", f"pool {format_usd(scenario.pool_usd)}, insurance fund {format_usd(scenario.insurance_usd)}"),
    ]
    return rows


def _feed_text(feed: FeedSpec) -> str:
    if feed.kind == "replay":
        path = f"replay of {feed.params.get('file', '?')}"
    else:
        path = f"{feed.kind} ({', '.join(f'{k}={v}' for k, v in feed.params.items())})"
    return (
        f"{path}; oracle rounds on a {feed.deviation:.2%} deviation or a {feed.heartbeat:,} s heartbeat, "
        f"published {feed.lag_seconds:,} s late"
    )


def _gas_text(gas: GasSpec) -> str:
    if gas.constant_gwei is not None:
        return f"constant {gas.constant_gwei:g} gwei"
    return f"{gas.file}, its {gas.percentile} column"


def _format_window(start: float, end: float, axis: TimeAxis) -> str:
    return f"{start:,.0f}-{end:,.0f} s ({axis.describe(start)} to {axis.describe(end)})"


def override_rows(scenario: Scenario) -> list[tuple[str, Any, Any]]:
    """Every protocol parameter the scenario sets, as (name in the scenario file, its value, the
    default of marginsim.protocol.DEFAULT_CONFIG or None when there is none)."""
    rows: list[tuple[str, Any, Any]] = [
        (f"protocol.{k}", v, getattr(DEFAULT_CONFIG, k, None)) for k, v in scenario.protocol.items()
    ]
    default_markets = {m.name: m for m in DEFAULT_CONFIG.markets}
    for market, overrides in scenario.markets.items():
        rows += [(f"market.{market}.{k}", v, getattr(default_markets.get(market), k, None)) for k, v in overrides.items()]
    default_tokens = {t.symbol: t for t in DEFAULT_CONFIG.collaterals}
    for symbol, overrides in scenario.collaterals.items():
        token = default_tokens.get(symbol)
        for key, value in overrides.items():
            if key == "feed":
                feed = token.feed if token else None
                rows += [(f"collateral.{symbol}.feed.{k}", v, getattr(feed, k, None)) for k, v in value.items()]
            else:
                rows.append((f"collateral.{symbol}.{key}", value, getattr(token, key, None)))
    return rows


def _format_parameter(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:g}" if isinstance(value, float) else str(value)


# --- the time axis -------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeAxis:
    """The run's time span and how the charts show it: UTC clock time on a replay (`clock_start`
    set), otherwise minutes (runs up to three hours) or hours since the start."""

    start_seconds: float
    end_seconds: float
    unit_seconds: float  # 60 for minutes, 3,600 for hours; unused on a clock axis
    unit_label: str  # "min" or "h"
    clock_start: int | None = None  # unix seconds of time 0 on a replay

    def x(self, seconds: float) -> float | datetime:
        """The chart's x value of a time in seconds since the start: a naive UTC datetime on a replay."""
        if self.clock_start is not None:
            return datetime.fromtimestamp(self.clock_start + seconds, tz=UTC).replace(tzinfo=None)
        return seconds / self.unit_seconds

    def xs(self, seconds: Iterable[float]) -> list[float | datetime]:
        return [self.x(s) for s in seconds]

    def describe(self, seconds: float) -> str:
        """A time for text: `2020-03-12 10:00 UTC`, or `600 min`."""
        x = self.x(seconds)
        return x.strftime("%Y-%m-%d %H:%M UTC") if isinstance(x, datetime) else f"{x:,.4g} {self.unit_label}"

    @property
    def title(self) -> str:
        return "time (UTC)" if self.clock_start is not None else f"time since start ({self.unit_label})"


def time_axis_of(result: SimulationResult) -> TimeAxis:
    """The span of every recorded time; minutes for runs up to three hours, hours beyond."""
    times = (
        [p.time for p in result.series]
        + [r.time for r in result.rounds]
        + [liq.time for liq in result.liquidations]
        + [b.time for b in result.bad_debt]
    )
    start, end = (min(times), max(times)) if times else (0.0, 0.0)
    unit_seconds, unit_label = (60.0, "min") if end - start <= MINUTES_AXIS_LIMIT_SECONDS else (3_600.0, "h")
    return TimeAxis(start, end, unit_seconds, unit_label, result.clock_start)


# --- the charts ----------------------------------------------------------------------------


def report_figures(result: SimulationResult, scenario: Scenario | None = None) -> dict[str, go.Figure]:
    """Every chart of the report by its element id, in page order: one price chart per market,
    health, liquidatable accounts and liquidations, pool and insurance, bad debt, open interest,
    and (given the scenario) the gas price, with the keepers' censorship windows shaded."""
    axis = time_axis_of(result)
    markets = markets_of(result)
    figures = {f"chart-price-{_slug(m)}": price_figure(result, m, axis) for m in markets} or {
        "chart-price": _empty(_time_figure("Market price", "USD", axis), "no data")
    }
    figures["chart-health"] = health_figure(result, axis)
    figures["chart-liquidations"] = liquidations_figure(result, axis)
    figures["chart-pool"] = pool_figure(result, axis)
    figures["chart-bad-debt"] = bad_debt_figure(result, axis)
    figures["chart-open-interest"] = open_interest_figure(result, axis)
    if scenario is not None:
        figures["chart-gas"] = gas_figure(result, scenario, axis)
        for figure in figures.values():
            shade_censorship(figure, scenario, axis)
    return figures


def _time_figure(title: str, y_title: str, axis: TimeAxis, secondary_y_title: str | None = None) -> go.Figure:
    """An empty chart over time in the report's style; with `secondary_y_title`, a second y axis on the right."""
    figure = make_subplots(specs=[[{"secondary_y": True}]]) if secondary_y_title else go.Figure()
    figure.update_layout(
        title={"text": _esc(title), "x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top"},
        template="plotly_white",
        height=FIGURE_HEIGHT,
        margin={"l": 70, "r": 70 if secondary_y_title else 30, "t": 80, "b": 50},
        hovermode="x unified",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
    )
    figure.update_xaxes(title_text=_esc(axis.title))
    if secondary_y_title:
        figure.update_yaxes(title_text=_esc(y_title), secondary_y=False)
        figure.update_yaxes(title_text=_esc(secondary_y_title), secondary_y=True, showgrid=False, rangemode="tozero")
    else:
        figure.update_yaxes(title_text=_esc(y_title))
    return figure


def _empty(figure: go.Figure, message: str) -> go.Figure:
    """`message` in the middle of a chart without data."""
    figure.add_annotation(
        text=_esc(message), xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 14, "color": "#999"}
    )
    return figure


def price_figure(result: SimulationResult, market: str, axis: TimeAxis) -> go.Figure:
    """The market's true price path as a line and the rounds the oracle published as a step line
    (each price held until the next round, the last to the end), so the oracle's lag shows."""
    figure = _time_figure(f"{market}: market price and oracle rounds", "USD", axis)
    points = [p for p in result.series if market in p.market_price]
    rounds = sorted((r for r in result.rounds if r.market == market), key=lambda r: r.time)
    figure.add_scatter(
        x=axis.xs(p.time for p in points),
        y=[p.market_price[market] for p in points],
        name="market price",
        mode="lines",
        line={"color": PALETTE[0], "width": 1.5},
        hovertemplate="%{y:$,.2f}",
    )
    if rounds:
        held_to = max(axis.end_seconds, rounds[-1].time)
        figure.add_scatter(
            x=axis.xs([r.time for r in rounds] + [held_to]),
            y=[r.price for r in rounds] + [rounds[-1].price],
            name="oracle (published rounds)",
            mode="lines+markers",
            line={"color": PALETTE[1], "width": 1.5, "shape": "hv"},
            marker={"size": [4] * len(rounds) + [0]},  # no marker where the last round is only held
            text=[f"{r.reason} round, block {r.block}" for r in rounds] + ["last round, held"],
            hovertemplate="%{y:$,.2f} (%{text})",
        )
    return figure if points or rounds else _empty(figure, "no data")


def _plottable_health(value: float) -> float | None:
    """A health value as drawn: capped at HEALTH_PLOT_CAP (inf without debt); None for nan."""
    capped = min(value, HEALTH_PLOT_CAP)
    return capped if math.isfinite(capped) else None


def health_figure(result: SimulationResult, axis: TimeAxis) -> go.Figure:
    """Quantile bands (p5-p95, p25-p75) and the median of open accounts' health, and the number of
    open accounts on the right axis: the quantiles jump when accounts leave. Steps without open
    accounts are gaps."""
    figure = _time_figure(
        "Account health distribution", f"health (capped at {HEALTH_PLOT_CAP:g})", axis, secondary_y_title="open accounts"
    )
    xs = axis.xs(p.time for p in result.series)

    def quantile(index: int) -> list[float | None]:
        return [_plottable_health(p.health_quantiles[index]) if p.open_accounts else None for p in result.series]

    p5, p25, p50, p75, p95 = (quantile(i) for i in range(len(HEALTH_QUANTILE_NAMES)))
    for low, high, label, opacity in ((p5, p95, "p5-p95", 0.15), (p25, p75, "p25-p75", 0.35)):
        # a band: its lower edge without a line, then the upper edge filled down to it
        figure.add_scatter(x=xs, y=low, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip", legendgroup=label)
        figure.add_scatter(
            x=xs,
            y=high,
            name=label,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=_rgba(PALETTE[0], opacity),
            customdata=low,
            hovertemplate=f"{label}: %{{customdata:.2f}}-%{{y:.2f}}<extra></extra>",
            legendgroup=label,
        )
    figure.add_scatter(x=xs, y=p50, name="median", mode="lines", line={"color": PALETTE[0], "width": 2}, hovertemplate="%{y:.2f}")
    figure.add_scatter(
        x=xs,
        y=[p.open_accounts for p in result.series],
        name="open accounts",
        mode="lines",
        line={"color": "#777777", "width": 1.2, "dash": "dot", "shape": "hv"},
        secondary_y=True,
    )
    figure.add_hline(
        y=1.0,
        line={"color": LIQUIDATABLE_RED, "width": 1.2, "dash": "dash"},
        annotation_text="1.0: liquidatable below",
        annotation_position="bottom right",
        secondary_y=False,
    )
    figure.update_yaxes(rangemode="tozero", secondary_y=False)
    return figure if result.series else _empty(figure, "no data")


def _keeper_names(result: SimulationResult) -> list[str]:
    names = dict.fromkeys(result.keepers)
    names.update(dict.fromkeys(liq.keeper for liq in result.liquidations))
    return list(names)


def liquidations_figure(result: SimulationResult, axis: TimeAxis) -> go.Figure:
    """The number of liquidatable accounts at each step, and each liquidation as a point of the
    notional it closed (right axis), one colour per keeper."""
    figure = _time_figure(
        "Liquidatable accounts and liquidations by keeper", "liquidatable accounts", axis, "notional closed (USD)"
    )
    figure.add_scatter(
        x=axis.xs(p.time for p in result.series),
        y=[p.liquidatable_accounts for p in result.series],
        name="liquidatable accounts",
        mode="lines",
        line={"color": LIQUIDATABLE_RED, "width": 1.5, "shape": "hv"},
        fill="tozeroy",
        fillcolor=_rgba(LIQUIDATABLE_RED, 0.12),
    )
    for index, keeper in enumerate(_keeper_names(result)):
        mine = [liq for liq in result.liquidations if liq.keeper == keeper]
        if not mine:
            continue
        figure.add_scatter(
            x=axis.xs(liq.time for liq in mine),
            y=[liq.notional_usd for liq in mine],
            name=f"liquidated by {_esc(keeper)}",
            mode="markers",
            marker={"color": PALETTE[index % len(PALETTE)], "size": 8, "opacity": 0.85, "line": {"width": 0.5, "color": "#fff"}},
            text=[
                _esc(f"{liq.market}, account {liq.account}, block {liq.block}, delay {liq.delay_blocks} blocks") for liq in mine
            ],
            hovertemplate="%{y:$,.2f} (%{text})",
            secondary_y=True,
        )
    figure.update_yaxes(rangemode="tozero", secondary_y=False)
    return figure if result.liquidations else _empty(figure, "no liquidations")


def pool_figure(result: SimulationResult, axis: TimeAxis) -> go.Figure:
    """The pool's value (left axis) and the insurance fund (right axis): the fund is a small
    fraction of the pool, on one axis it would be a flat line."""
    figure = _time_figure("Pool value and insurance fund", "pool value (USD)", axis, "insurance fund (USD)")
    xs = axis.xs(p.time for p in result.series)
    figure.add_scatter(
        x=xs,
        y=[p.pool_value_usd for p in result.series],
        name="pool value",
        line={"color": PALETTE[0]},
        hovertemplate="%{y:$,.2f}",
    )
    figure.add_scatter(
        x=xs,
        y=[p.insurance_usd for p in result.series],
        name="insurance fund",
        line={"color": PALETTE[2]},
        hovertemplate="%{y:$,.2f}",
        secondary_y=True,
    )
    return figure if result.series else _empty(figure, "no data")


def _usd_figure(
    result: SimulationResult,
    axis: TimeAxis,
    value: Callable[[SeriesPoint], float],
    title: str,
    label: str,
    colour: str,
    *,
    step: bool = False,
) -> go.Figure:
    """One USD quantity of the series, filled down to zero."""
    figure = _time_figure(title, "USD", axis)
    figure.add_scatter(
        x=axis.xs(p.time for p in result.series),
        y=[value(p) for p in result.series],
        name=label,
        mode="lines",
        line={"color": colour, "shape": "hv" if step else "linear"},
        fill="tozeroy",
        fillcolor=_rgba(colour, 0.15),
        hovertemplate="%{y:$,.2f}",
    )
    figure.update_yaxes(rangemode="tozero")
    return figure if result.series else _empty(figure, "no data")


def bad_debt_figure(result: SimulationResult, axis: TimeAxis) -> go.Figure:
    return _usd_figure(result, axis, lambda p: p.bad_debt_usd, "Cumulative bad debt", "bad debt", PALETTE[3], step=True)


def open_interest_figure(result: SimulationResult, axis: TimeAxis) -> go.Figure:
    """Long plus short notional at oracle prices, with its peak (the bad-debt share's denominator)."""
    figure = _usd_figure(result, axis, lambda p: p.open_interest_usd, "Open interest", "open interest", PALETTE[4])
    peak = result.peak_open_interest_usd
    if peak > 0:
        figure.add_hline(
            y=peak, line={"color": "#666666", "width": 1.2, "dash": "dash"}, annotation_text=f"peak {compact_number(peak)}"
        )
    return figure


def gas_figure(result: SimulationResult, scenario: Scenario, axis: TimeAxis) -> go.Figure:
    """The gas price the keepers paid at each step, from the scenario's gas source (the result
    does not record it)."""
    price_at = gas_price_gwei(scenario.gas)
    figure = _time_figure(f"Gas price: {_gas_text(scenario.gas)}", "gwei", axis)
    figure.add_scatter(
        x=axis.xs(p.time for p in result.series),
        y=[price_at(p.time) for p in result.series],
        name="gas price",
        mode="lines",
        line={"color": PALETTE[5], "shape": "hv"},
        hovertemplate="%{y:,.1f} gwei",
    )
    figure.update_yaxes(rangemode="tozero")
    return figure if result.series else _empty(figure, "no data")


def shade_censorship(figure: go.Figure, scenario: Scenario, axis: TimeAxis) -> None:
    """Shade each keeper's censorship windows (clipped to the run) on a chart over time."""
    for keeper in scenario.keepers:
        for start, end in keeper.censored:
            start, end = max(start, axis.start_seconds), min(end, axis.end_seconds)
            if start >= end:
                continue
            figure.add_vrect(
                x0=axis.x(start),
                x1=axis.x(end),
                fillcolor=CENSORED_GREY,
                opacity=0.12,
                line_width=0,
                layer="below",
                annotation_text=_esc(f"{keeper.name} censored"),
                annotation_position="top left",
                annotation_font_size=10,
            )


def _rgba(colour: str, opacity: float) -> str:
    """`#RRGGBB` with an opacity, for plotly fills."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{opacity})"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "market"
