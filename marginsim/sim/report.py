"""What a simulation run looked like: a terminal summary, JSON and CSV files, and an HTML report.

Reads a `SimulationResult` (marginsim.sim.results) and never changes it.

- `summarise(result)` gathers the headline figures into a typed `RunSummary`;
  `summary_table` formats them for the terminal and `summary_dict` as JSON-ready data.
- `write_outputs(result, out_dir)` writes summary.json, one CSV per record type and report.html.
- report.html is one self-contained file that opens offline: inline CSS and inline SVG charts
  drawn here (no scripts, fonts, images or links). The chart helper at the bottom of the file
  draws lines, step lines, scatter points, filled areas, quantile bands and reference lines on a
  time axis in minutes (runs up to three hours) or hours.

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
from pathlib import Path
from typing import Any, Literal

from marginsim.sim.results import (
    BadDebtRecord,
    LiquidationRecord,
    OracleRound,
    SeriesPoint,
    SimulationResult,
)

HEALTH_PLOT_CAP = 10.0  # health above this is drawn at the cap (healthy enough; inf when no debt)
HEALTH_QUANTILE_NAMES = ("p5", "p25", "p50", "p75", "p95")  # order of SeriesPoint.health_quantiles
MINUTES_AXIS_LIMIT_SECONDS = 3 * 3_600  # runs up to three hours get a time axis in minutes

# Okabe-Ito palette: distinguishable with the common forms of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#999999")
LIQUIDATABLE_RED = "#C0392B"

TraceStyle = Literal["line", "step", "scatter"]  # how a chart trace joins its points


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


def _keeper_cells(keeper: KeeperSummary) -> tuple[str, ...]:
    return (
        keeper.name,
        f"{keeper.liquidations:,}",
        f"{keeper.orders_filled:,}",
        format_usd(keeper.revenue_usd),
        format_usd(keeper.gas_spent_usd),
        format_usd(keeper.profit_usd),
        f"{keeper.lost_races:,}",
        f"{keeper.skipped_unprofitable:,}",
    )


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
    cells = [KEEPER_COLUMNS] + [_keeper_cells(k) for k in summary.keepers]
    widths = [max(len(row[i]) for row in cells) for i in range(len(KEEPER_COLUMNS))]
    for row in cells:
        name, *figures = row
        aligned = [name.ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(figures, widths[1:], strict=False)]
        lines.append("  " + "  ".join(aligned).rstrip())
    return "\n".join(lines)


# ======================================================================================
# Files
# ======================================================================================


def write_outputs(result: SimulationResult, out_dir: Path) -> dict[str, Path]:
    """Write every output of a run into `out_dir` (created if needed).

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
    paths["report"].write_text(report_html(result), encoding="utf-8")
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
main { max-width: 820px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
table.summary th { font-weight: 500; color: #555; }
figure { margin: 18px 0; background: #fff; border: 1px solid #e4e4e4; border-radius: 4px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: #333; }
svg .chart-title { font-size: 14px; font-weight: 600; }
svg .tick-label, svg .legend-label { font-size: 11px; }
svg .axis-title { font-size: 11px; fill: #666; }
svg .no-data { font-size: 13px; fill: #999; }
p.note { color: #666; font-size: 0.85em; }
"""


def report_html(result: SimulationResult) -> str:
    """The whole report as one self-contained HTML document."""
    summary = summarise(result)
    title = f"marginsim report: {summary.scenario}"
    charts = "\n".join(f"<figure>{render_chart(spec)}</figure>" for spec in _report_charts(result))
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
<h2>Summary</h2>
{_summary_table_html(summary)}
<h2>Keepers</h2>
{_keeper_table_html(summary.keepers)}
<h2>Charts</h2>
{charts}
<p class="note">Account health is drawn capped at {HEALTH_PLOT_CAP:g} (accounts without debt have infinite health).
Times are measured from the scenario start.</p>
</main>
</body>
</html>
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _summary_table_html(summary: RunSummary) -> str:
    rows = "\n".join(f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>" for label, value in _summary_rows(summary))
    return f'<table class="summary">\n{rows}\n</table>'


def _keeper_table_html(keepers: Sequence[KeeperSummary]) -> str:
    if not keepers:
        return "<p>No keepers recorded.</p>"
    header = "".join(f'<th class="number">{_esc(c)}</th>' if i else f"<th>{_esc(c)}</th>" for i, c in enumerate(KEEPER_COLUMNS))
    body = "\n".join(
        "<tr>"
        + "".join(f'<td class="number">{_esc(c)}</td>' if i else f"<td>{_esc(c)}</td>" for i, c in enumerate(_keeper_cells(k)))
        + "</tr>"
        for k in keepers
    )
    return f'<table class="keepers">\n<tr>{header}</tr>\n{body}\n</table>'


# --- the six charts --------------------------------------------------------------------


@dataclass(frozen=True)
class TimeAxis:
    """The run's time span and the unit it is shown in."""

    start_seconds: float
    end_seconds: float
    unit_seconds: float  # 60 for minutes, 3,600 for hours
    unit_label: str  # "min" or "h"

    def to_unit(self, seconds: float) -> float:
        return seconds / self.unit_seconds

    @property
    def domain(self) -> tuple[float, float]:
        return self.to_unit(self.start_seconds), self.to_unit(self.end_seconds)

    @property
    def title(self) -> str:
        return f"time since start ({self.unit_label})"


def time_axis_of(result: SimulationResult) -> TimeAxis:
    """Minutes for runs up to three hours, hours beyond."""
    times = (
        [p.time for p in result.series]
        + [r.time for r in result.rounds]
        + [liq.time for liq in result.liquidations]
        + [b.time for b in result.bad_debt]
    )
    start, end = (min(times), max(times)) if times else (0.0, 0.0)
    if end - start <= MINUTES_AXIS_LIMIT_SECONDS:
        return TimeAxis(start, end, 60.0, "min")
    return TimeAxis(start, end, 3_600.0, "h")


def _report_charts(result: SimulationResult) -> list[ChartSpec]:
    axis = time_axis_of(result)
    return [
        *_price_charts(result, axis),
        _health_chart(result, axis),
        _liquidations_chart(result, axis),
        _insurance_chart(result, axis),
        _bad_debt_chart(result, axis),
        _open_interest_chart(result, axis),
    ]


def _price_charts(result: SimulationResult, axis: TimeAxis) -> list[ChartSpec]:
    """One chart per market: the true price path and the rounds the oracle published."""
    markets = markets_of(result)
    if not markets:
        return [
            ChartSpec(
                chart_id="chart-price",
                kind="price",
                title="Market price",
                y_title="USD",
                x_domain=axis.domain,
                x_title=axis.title,
            )
        ]
    charts = []
    for market in markets:
        points = [p for p in result.series if market in p.market_price]
        rounds = [r for r in result.rounds if r.market == market]
        market_price = Trace(
            label="market price",
            xs=[axis.to_unit(p.time) for p in points],
            ys=[p.market_price[market] for p in points],
            colour=PALETTE[0],
        )
        oracle_rounds = Trace(
            label="oracle rounds",
            xs=[axis.to_unit(r.time) for r in rounds],
            ys=[r.price for r in rounds],
            colour=PALETTE[1],
            style="step",
            markers=True,
            point_titles=[f"{r.reason} round: {format_usd(r.price)} at block {r.block}" for r in rounds],
        )
        charts.append(
            ChartSpec(
                chart_id=f"chart-price-{_slug(market)}",
                kind="price",
                title=f"{market}: market price and oracle rounds",
                y_title="USD",
                x_domain=axis.domain,
                x_title=axis.title,
                traces=(market_price, oracle_rounds),
            )
        )
    return charts


def _plottable_health(value: float) -> float | None:
    if math.isnan(value):
        return None
    return min(value, HEALTH_PLOT_CAP)


def _health_chart(result: SimulationResult, axis: TimeAxis) -> ChartSpec:
    """Quantile bands of open accounts' health; steps without open accounts are gaps."""
    xs = [axis.to_unit(p.time) for p in result.series]

    def quantile(index: int) -> list[float | None]:
        return [_plottable_health(p.health_quantiles[index]) if p.open_accounts else None for p in result.series]

    p5, p25, p50, p75, p95 = (quantile(i) for i in range(len(HEALTH_QUANTILE_NAMES)))
    return ChartSpec(
        chart_id="chart-health",
        kind="health",
        title="Account health distribution",
        y_title=f"health (capped at {HEALTH_PLOT_CAP:g})",
        x_domain=axis.domain,
        x_title=axis.title,
        bands=(
            Band("p5-p95", xs, p5, p95, PALETTE[0], 0.15),
            Band("p25-p75", xs, p25, p75, PALETTE[0], 0.35),
        ),
        traces=(Trace("median", xs, p50, PALETTE[0]),),
        reference_lines=(ReferenceLine(1.0, "health 1.0 (liquidatable below)", LIQUIDATABLE_RED),),
        y_includes_zero=True,
    )


def _keeper_names(result: SimulationResult) -> list[str]:
    names = dict.fromkeys(result.keepers)
    names.update(dict.fromkeys(liq.keeper for liq in result.liquidations))
    return list(names)


def _liquidations_chart(result: SimulationResult, axis: TimeAxis) -> ChartSpec:
    """Notional closed by each liquidation, one colour per keeper."""
    traces = []
    for index, keeper in enumerate(_keeper_names(result)):
        mine = [liq for liq in result.liquidations if liq.keeper == keeper]
        if not mine:
            continue
        traces.append(
            Trace(
                keeper,
                [axis.to_unit(liq.time) for liq in mine],
                [liq.notional_usd for liq in mine],
                PALETTE[index % len(PALETTE)],
                style="scatter",
                point_titles=[
                    f"{keeper}: {format_usd(liq.notional_usd)} of {liq.market}, account {liq.account}, block {liq.block}, "
                    f"delay {liq.delay_blocks} blocks"
                    for liq in mine
                ],
            )
        )
    return ChartSpec(
        chart_id="chart-liquidations",
        kind="liquidations",
        title="Liquidations: notional closed, by keeper",
        y_title="USD",
        x_domain=axis.domain,
        x_title=axis.title,
        traces=tuple(traces),
        y_includes_zero=True,
        empty_message="no liquidations",
    )


def _series_chart(
    result: SimulationResult,
    axis: TimeAxis,
    value: Callable[[SeriesPoint], float],
    *,
    kind: str,
    title: str,
    label: str,
    colour: str,
    style: TraceStyle = "line",
    reference_lines: tuple[ReferenceLine, ...] = (),
) -> ChartSpec:
    """A filled chart of one series quantity that starts from zero."""
    xs = [axis.to_unit(p.time) for p in result.series]
    trace = Trace(label, xs, [value(p) for p in result.series], colour, style=style, fill=True)
    return ChartSpec(
        chart_id=f"chart-{kind}",
        kind=kind,
        title=title,
        y_title="USD",
        x_domain=axis.domain,
        x_title=axis.title,
        traces=(trace,),
        reference_lines=reference_lines,
        y_includes_zero=True,
    )


def _insurance_chart(result: SimulationResult, axis: TimeAxis) -> ChartSpec:
    return _series_chart(
        result,
        axis,
        lambda p: p.insurance_usd,
        kind="insurance",
        title="Insurance fund",
        label="insurance fund",
        colour=PALETTE[2],
    )


def _bad_debt_chart(result: SimulationResult, axis: TimeAxis) -> ChartSpec:
    return _series_chart(
        result,
        axis,
        lambda p: p.bad_debt_usd,
        kind="bad-debt",
        title="Cumulative bad debt",
        label="bad debt",
        colour=PALETTE[3],
        style="step",
    )


def _open_interest_chart(result: SimulationResult, axis: TimeAxis) -> ChartSpec:
    peak = result.peak_open_interest_usd
    reference = (ReferenceLine(peak, f"peak {compact_number(peak)}", "#666666"),) if peak > 0 else ()
    return _series_chart(
        result,
        axis,
        lambda p: p.open_interest_usd,
        kind="open-interest",
        title="Open interest",
        label="open interest",
        colour=PALETTE[4],
        reference_lines=reference,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "market"


# ======================================================================================
# SVG charts
# ======================================================================================

CHART_WIDTH = 760
CHART_HEIGHT = 300
MARGIN_LEFT = 64
MARGIN_RIGHT = 20
MARGIN_BOTTOM = 46
TITLE_HEIGHT = 30
LEGEND_ROW_HEIGHT = 18
CHAR_WIDTH = 6.5  # rough width of an 11px label character, for legend layout


@dataclass(frozen=True)
class Trace:
    """A series of points. None in `ys` leaves a gap. A step line holds each value until the next
    point and the last one to the end of the x axis."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    colour: str
    style: TraceStyle = "line"
    fill: bool = False  # fill down to zero
    markers: bool = False  # a dot on every point (scatter always has them)
    point_titles: Sequence[str] = ()  # hover text per point, drawn with the markers


@dataclass(frozen=True)
class Band:
    """A filled range between two series, e.g. between two quantiles."""

    label: str
    xs: Sequence[float]
    lows: Sequence[float | None]
    highs: Sequence[float | None]
    colour: str
    opacity: float


@dataclass(frozen=True)
class ReferenceLine:
    """A dashed horizontal line at a fixed value."""

    value: float
    label: str
    colour: str


@dataclass(frozen=True)
class ChartSpec:
    """Everything one chart draws. x values are in the units of `x_domain`."""

    chart_id: str  # the svg's id, unique in the document
    kind: str  # the svg's data-chart attribute
    title: str
    y_title: str
    x_domain: tuple[float, float]
    x_title: str
    traces: tuple[Trace, ...] = ()
    bands: tuple[Band, ...] = ()
    reference_lines: tuple[ReferenceLine, ...] = ()
    y_includes_zero: bool = False
    empty_message: str = "no data"


@dataclass(frozen=True)
class PlotArea:
    """Maps data values to pixel coordinates inside the axes."""

    left: float
    top: float
    width: float
    height: float
    x_domain: tuple[float, float]
    y_domain: tuple[float, float]

    def x(self, value: float) -> float:
        lo, hi = self.x_domain
        return self.left + (value - lo) / (hi - lo) * self.width

    def y(self, value: float) -> float:
        lo, hi = self.y_domain
        return self.top + self.height - (value - lo) / (hi - lo) * self.height

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def right(self) -> float:
        return self.left + self.width


def nice_ticks(lo: float, hi: float, target_count: int = 5) -> tuple[list[float], float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) inside [lo, hi], and the step."""
    raw_step = (hi - lo) / max(target_count, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw_step <= m * magnitude * (1 + 1e-9))
    ticks = []
    index = math.ceil(lo / step - 1e-9)
    while index * step <= hi + step * 1e-9:
        tick = index * step
        ticks.append(0.0 if abs(tick) < step * 1e-9 else tick)
        index += 1
    return ticks, step


def tick_formatter(domain: tuple[float, float], step: float) -> Callable[[float], str]:
    """Labels with a k/M/B suffix chosen by the axis' largest value and just enough decimals to
    tell neighbouring ticks apart."""
    magnitude = max(abs(domain[0]), abs(domain[1]))
    scale, suffix = next(((s, x) for s, x in ((1e9, "B"), (1e6, "M"), (1e3, "k")) if magnitude >= s), (1.0, ""))
    scaled_step = step / scale
    decimals = next((d for d in range(7) if abs(round(scaled_step, d) - scaled_step) < scaled_step * 1e-6), 6)

    def label(value: float) -> str:
        text = f"{value / scale:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        return text + suffix if text != "0" else "0"

    return label


def _finite_values(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _is_flat(lo: float, hi: float) -> bool:
    return hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1.0)


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """A non-empty value interval around [lo, hi]: 10% either side of a single value."""
    if not _is_flat(lo, hi):
        return lo, hi
    pad = abs(hi) * 0.1 or 1.0
    return lo - pad, hi + pad


def _x_domain(lo: float, hi: float) -> tuple[float, float]:
    """A non-empty time interval: a run of one instant gets one unit after it."""
    return (lo, lo + 1.0) if _is_flat(lo, hi) else (lo, hi)


def _y_domain(spec: ChartSpec) -> tuple[list[float], float, tuple[float, float]]:
    values = _finite_values(
        [y for t in spec.traces for y in t.ys]
        + [y for b in spec.bands for y in (*b.lows, *b.highs)]
        + [r.value for r in spec.reference_lines]
    )
    if not values:
        values = [0.0, 1.0]
    lo, hi = min(values), max(values)
    if spec.y_includes_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if spec.y_includes_zero and lo == hi == 0.0:
        lo, hi = 0.0, 1.0  # an all-zero series sits on the floor of a unit axis
    lo, hi = _padded(lo, hi)
    _, step = nice_ticks(lo, hi)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    ticks, step = nice_ticks(lo, hi)
    return ticks, step, (lo, hi)


def _n(value: float) -> str:
    """A pixel coordinate."""
    return f"{value:.1f}"


def _segments(xs: Sequence[float], ys: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    """Runs of consecutive plottable points; None and non-finite values split them."""
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=False):
        if y is None or not math.isfinite(y) or not math.isfinite(x):
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((x, y))
    return [s for s in segments if s]


def _legend_entries(spec: ChartSpec) -> list[tuple[str, str]]:
    """(label, swatch svg at origin) for every drawn element."""
    entries = [
        (b.label, f'<rect x="0" y="-5" width="16" height="10" fill="{b.colour}" fill-opacity="{b.opacity}"/>') for b in spec.bands
    ]
    for t in spec.traces:
        if t.style == "scatter":
            swatch = f'<circle cx="8" cy="0" r="4" fill="{t.colour}"/>'
        else:
            swatch = f'<line x1="0" y1="0" x2="16" y2="0" stroke="{t.colour}" stroke-width="2"/>'
        entries.append((t.label, swatch))
    entries += [
        (r.label, f'<line x1="0" y1="0" x2="16" y2="0" stroke="{r.colour}" stroke-width="1.5" stroke-dasharray="4 3"/>')
        for r in spec.reference_lines
    ]
    return entries


def _legend_svg(entries: list[tuple[str, str]], left: float, top: float, width: float) -> tuple[str, int]:
    """The legend laid out in rows across the chart; returns the svg and the number of rows."""
    if len(entries) < 2:
        return "", 0
    parts, x, row = [], 0.0, 0
    for label, swatch in entries:
        entry_width = 22 + CHAR_WIDTH * len(label) + 16
        if x > 0 and x + entry_width > width:
            x, row = 0.0, row + 1
        y = top + row * LEGEND_ROW_HEIGHT + LEGEND_ROW_HEIGHT / 2
        parts.append(
            f'<g transform="translate({_n(left + x)},{_n(y)})">{swatch}'
            f'<text class="legend-label" x="22" y="4">{_esc(label)}</text></g>'
        )
        x += entry_width
    return '<g class="legend">' + "".join(parts) + "</g>", row + 1


def _axes_svg(spec: ChartSpec, area: PlotArea, y_ticks: list[float], y_step: float) -> str:
    parts = ['<g class="axes">']
    y_label = tick_formatter(area.y_domain, y_step)
    for tick in y_ticks:
        y = area.y(tick)
        parts.append(f'<line x1="{_n(area.left)}" y1="{_n(y)}" x2="{_n(area.right)}" y2="{_n(y)}" stroke="#eee"/>')
        parts.append(
            f'<text class="tick-label" x="{_n(area.left - 6)}" y="{_n(y + 4)}" text-anchor="end">{_esc(y_label(tick))}</text>'
        )
    x_ticks, x_step = nice_ticks(*area.x_domain, target_count=8)
    x_label = tick_formatter(area.x_domain, x_step)
    for tick in x_ticks:
        x = area.x(tick)
        parts.append(f'<line x1="{_n(x)}" y1="{_n(area.bottom)}" x2="{_n(x)}" y2="{_n(area.bottom + 5)}" stroke="#888"/>')
        parts.append(
            f'<text class="tick-label" x="{_n(x)}" y="{_n(area.bottom + 18)}" text-anchor="middle">{_esc(x_label(tick))}</text>'
        )
    parts.append(f'<path d="M{_n(area.left)},{_n(area.top)} V{_n(area.bottom)} H{_n(area.right)}" fill="none" stroke="#888"/>')
    parts.append(
        f'<text class="axis-title" x="{_n(area.left + area.width / 2)}" y="{_n(area.bottom + 36)}" '
        f'text-anchor="middle">{_esc(spec.x_title)}</text>'
    )
    parts.append(
        f'<text class="axis-title" transform="translate(14,{_n(area.top + area.height / 2)}) rotate(-90)" '
        f'text-anchor="middle">{_esc(spec.y_title)}</text>'
    )
    parts.append("</g>")
    return "".join(parts)


def _line_path(points: list[tuple[float, float]], area: PlotArea, style: TraceStyle, extend_to: float) -> str:
    """Path data through data points: straight segments, or steps that hold each value and the
    last one up to `extend_to`."""
    x0, y0 = points[0]
    commands = [f"M{_n(area.x(x0))},{_n(area.y(y0))}"]
    if style != "step":
        commands += [f"L{_n(area.x(x))},{_n(area.y(y))}" for x, y in points[1:]]
        return " ".join(commands)
    held = y0
    for x, y in points[1:]:
        if y != held:  # a repeated value only lengthens the current step
            commands.append(f"H{_n(area.x(x))} V{_n(area.y(y))}")
            held = y
    commands.append(f"H{_n(area.x(max(points[-1][0], extend_to)))}")
    return " ".join(commands)


def _baseline(area: PlotArea) -> float:
    return area.y(min(max(0.0, area.y_domain[0]), area.y_domain[1]))


def _trace_svg(trace: Trace, area: PlotArea) -> str:
    segments = _segments(trace.xs, trace.ys)
    parts = []
    if trace.style != "scatter":
        for index, segment in enumerate(segments):
            extend_to = area.x_domain[1] if index == len(segments) - 1 else segment[-1][0]
            path = _line_path(segment, area, trace.style, extend_to)
            if trace.fill:
                end_x = area.x(extend_to if trace.style == "step" else segment[-1][0])
                parts.append(
                    f'<path d="{path} L{_n(end_x)},{_n(_baseline(area))} L{_n(area.x(segment[0][0]))},'
                    f'{_n(_baseline(area))} Z" fill="{trace.colour}" fill-opacity="0.15" stroke="none"/>'
                )
            parts.append(f'<path d="{path}" fill="none" stroke="{trace.colour}" stroke-width="1.8" stroke-linejoin="round"/>')
            if len(segment) == 1 and trace.style == "line":
                x, y = segment[0]
                parts.append(f'<circle cx="{_n(area.x(x))}" cy="{_n(area.y(y))}" r="3" fill="{trace.colour}"/>')
    if trace.style == "scatter" or trace.markers:
        parts.append(_markers_svg(trace, area))
    return f'<g class="trace" data-series="{_esc(trace.label)}">' + "".join(parts) + "</g>"


def _markers_svg(trace: Trace, area: PlotArea) -> str:
    radius = 3.5 if trace.style == "scatter" else 2.5
    titles = list(trace.point_titles) or [""] * len(trace.xs)
    parts = []
    for x, y, title in zip(trace.xs, trace.ys, titles, strict=False):
        if y is None or not math.isfinite(y) or not math.isfinite(x):
            continue
        hover = f"<title>{_esc(title)}</title>" if title else ""
        parts.append(
            f'<circle cx="{_n(area.x(x))}" cy="{_n(area.y(y))}" r="{radius}" fill="{trace.colour}" '
            f'fill-opacity="0.85">{hover}</circle>'
        )
    return "".join(parts)


def _band_svg(band: Band, area: PlotArea) -> str:
    """The region between the lows and the highs, split where either is missing."""
    runs: list[list[tuple[float, float, float]]] = [[]]
    for x, lo, hi in zip(band.xs, band.lows, band.highs, strict=False):
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((x, lo, hi))
    parts = []
    for run in (r for r in runs if r):
        if len(run) == 1:
            x, lo, hi = run[0]
            parts.append(
                f'<line x1="{_n(area.x(x))}" y1="{_n(area.y(lo))}" x2="{_n(area.x(x))}" y2="{_n(area.y(hi))}" '
                f'stroke="{band.colour}" stroke-opacity="{band.opacity}" stroke-width="6"/>'
            )
            continue
        upper = [f"{_n(area.x(x))},{_n(area.y(hi))}" for x, _, hi in run]
        lower = [f"{_n(area.x(x))},{_n(area.y(lo))}" for x, lo, _ in reversed(run)]
        outline = " L".join(upper + lower)
        parts.append(f'<path d="M{outline} Z" fill="{band.colour}" fill-opacity="{band.opacity}" stroke="none"/>')
    return f'<g class="band" data-series="{_esc(band.label)}">' + "".join(parts) + "</g>"


def _reference_line_svg(line: ReferenceLine, area: PlotArea) -> str:
    y = area.y(line.value)
    return (
        f'<line class="reference" x1="{_n(area.left)}" y1="{_n(y)}" x2="{_n(area.right)}" y2="{_n(y)}" '
        f'stroke="{line.colour}" stroke-width="1.2" stroke-dasharray="5 4"/>'
    )


def _has_data(spec: ChartSpec) -> bool:
    return any(_segments(t.xs, t.ys) for t in spec.traces) or any(
        _finite_values(b.lows) and _finite_values(b.highs) for b in spec.bands
    )


def render_chart(spec: ChartSpec) -> str:
    """An SVG chart with title, legend (when there are several series), axes and tick labels."""
    legend, legend_rows = _legend_svg(_legend_entries(spec), MARGIN_LEFT, TITLE_HEIGHT, CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT)
    top = TITLE_HEIGHT + legend_rows * LEGEND_ROW_HEIGHT + 8
    height = CHART_HEIGHT + legend_rows * LEGEND_ROW_HEIGHT
    y_ticks, y_step, y_domain = _y_domain(spec)
    area = PlotArea(
        left=MARGIN_LEFT,
        top=top,
        width=CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
        height=height - top - MARGIN_BOTTOM,
        x_domain=_x_domain(*spec.x_domain),
        y_domain=y_domain,
    )
    clip_id = f"{spec.chart_id}-clip"
    if _has_data(spec):
        content = (
            "".join(_band_svg(b, area) for b in spec.bands)
            + "".join(_reference_line_svg(r, area) for r in spec.reference_lines)
            + "".join(_trace_svg(t, area) for t in spec.traces)
        )
    else:
        content = (
            f'<text class="no-data" x="{_n(area.left + area.width / 2)}" y="{_n(area.top + area.height / 2)}" '
            f'text-anchor="middle">{_esc(spec.empty_message)}</text>'
        )
    # Markers may sit on the edge of the plot; clip a few pixels outside it so they stay whole.
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{_esc(spec.chart_id)}" data-chart="{_esc(spec.kind)}" '
        f'viewBox="0 0 {CHART_WIDTH} {height}" width="{CHART_WIDTH}" height="{height}" role="img" '
        f'aria-labelledby="{_esc(spec.chart_id)}-title">'
        f'<title id="{_esc(spec.chart_id)}-title">{_esc(spec.title)}</title>'
        f'<defs><clipPath id="{_esc(clip_id)}"><rect x="{_n(area.left - 5)}" y="{_n(area.top - 5)}" '
        f'width="{_n(area.width + 10)}" height="{_n(area.height + 10)}"/></clipPath></defs>'
        f'<text class="chart-title" x="{MARGIN_LEFT}" y="20">{_esc(spec.title)}</text>'
        f"{legend}"
        f"{_axes_svg(spec, area, y_ticks, y_step)}"
        f'<g clip-path="url(#{_esc(clip_id)})">{content}</g>'
        "</svg>"
    )
