"""Designs side by side: parameter overlays of one scenario, run on the same seeds.

A design file is a TOML overlay holding only the scenario's parameter tables::

    name = "wide-buffer"                     # optional; the file's stem otherwise
    description = "closes restore health 1.2"
    [protocol]                               # marginsim.protocol.ProtocolConfig scalars
    liquidation_buffer = 0.2
    oracle_confirmation_delay = 1800         # seconds a move beyond the circuit breaker must hold
    [market.ETH-PERP]                        # MarketConfig: margin rates, penalty, fee, caps, ...
    penalty = 0.03
    [collateral.WETH]                        # TokenConfig: weight (haircut), liquidation_discount, cap
    weight = 0.8
    [collateral.WETH.feed]                   # FeedConfig: the oracle's guards, e.g. the circuit breaker
    max_deviation = 0.3
    [liquidity]                              # the pool and the insurance fund the run starts with
    insurance_usd = 200000
    [traders]                                # the population's behaviour and distributions
    topup_share = 0.5
    [[keepers]]                              # the keeper population: replaces the scenario's list
    name = "lone-fast"

Each table is merged into the scenario's, key by key (a key the design names replaces the
scenario's; `[[keepers]]`, a list, replaces the scenario's keepers whole), and the result is
checked as a scenario and by the contracts themselves (`engine.check_parameters`) before
anything runs. The scenario as written is the baseline, and every design runs on the same
seeds: on a replay the seed draws the trader population, so seed i of each design faces the
same traders (drawn from the design's own distributions when it changes them) and the same
prices, and each metric's difference
from the baseline carries a paired bootstrap 95% interval (the runs of one seed resampled
together). An interval that excludes zero says the designs differ by more than the choice of
seeds explains.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from marginsim.sim.scenario import Scenario, ScenarioError, parse_scenario
from marginsim.sim.sweep import Quantile, SeedRun, run_many_revm

DESIGN_TABLES = ("protocol", "market", "collateral", "liquidity", "traders", "keepers")


@dataclass(frozen=True)
class Design:
    name: str
    description: str
    scenario: Scenario
    overlay: dict[str, Any]  # the design's tables as written ({} for the baseline)


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise ScenarioError(f"{what}: no such file: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{what} {path.name}: not valid TOML: {error}") from None


def load_designs(scenario_path: Path, design_paths: list[Path]) -> list[Design]:
    """The scenario as written (named "baseline") and each design overlaid on it; a one-line
    ScenarioError names the first bad file and field. Names must be unique."""
    scenario_path = Path(scenario_path)
    if not design_paths:
        raise ScenarioError("compare: give at least one design file to compare with the scenario")
    base_raw = _read_toml(scenario_path, "scenario")
    designs = [Design("baseline", "the scenario as written", parse_scenario(base_raw, source=scenario_path.name), {})]
    for path in map(Path, design_paths):
        overlay = _read_toml(path, "design")
        unknown = sorted(set(overlay) - {"name", "description", *DESIGN_TABLES})
        if unknown:
            raise ScenarioError(
                f"design {path.name}: {unknown[0]}: unknown field (a design sets name, description and "
                f"the tables {', '.join(DESIGN_TABLES)})"
            )
        tables = {k: v for k, v in overlay.items() if k in DESIGN_TABLES}
        for key, table in tables.items():
            if key == "keepers":
                if not isinstance(table, list) or not all(isinstance(k, dict) for k in table):
                    raise ScenarioError(f"design {path.name}: keepers: must be [[keepers]] tables")
            elif not isinstance(table, dict):
                raise ScenarioError(f"design {path.name}: {key}: must be a table")
        name = overlay.get("name", path.stem)
        if not isinstance(name, str) or not name:
            raise ScenarioError(f"design {path.name}: name: must be a non-empty string, got {name!r}")
        scenario = parse_scenario(_merge(base_raw, tables), source=f"{scenario_path.name} + {path.name}")
        designs.append(Design(name, str(overlay.get("description", "")), scenario, tables))
    names = [d.name for d in designs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ScenarioError(f"compare: two designs are named {duplicate!r}; names must be unique")
    return designs


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str  # "usd", "share", "blocks" or "count"
    of: Callable[[SeedRun], float]
    q: float | None  # the statistic over the runs: a nearest-rank quantile, or None for the mean


METRICS = (
    Metric("var95_shortfall", "VaR95: bad debt + negative equity left open", "usd", lambda r: r.shortfall_usd, 0.95),
    Metric("mean_shortfall", "mean shortfall", "usd", lambda r: r.shortfall_usd, None),
    Metric("lar95_liquidated", "LaR95: notional liquidated", "usd", lambda r: r.liquidated_notional_usd, 0.95),
    Metric("pool_drawdown95", "pool value's worst drawdown, p95", "usd", lambda r: r.pool_drawdown_usd, 0.95),
    Metric("insurance_depletion95", "insurance fund depletion, p95", "usd", lambda r: r.insurance_depletion_usd, 0.95),
    Metric("mean_left_share", "accounts left liquidatable (mean share)", "share", lambda r: r.left_liquidatable_share, None),
    Metric("mean_delay_p90", "liquidation delay p90, blocks (mean)", "blocks", lambda r: r.liquidation_delay_p90_blocks, None),
    Metric("mean_over_liquidation", "over-liquidation (mean)", "usd", lambda r: r.over_liquidation_usd, None),
    Metric("mean_liquidations", "liquidations (mean)", "count", lambda r: float(r.liquidations), None),
)


@dataclass(frozen=True)
class ComparedMetric:
    key: str
    label: str
    unit: str
    values: list[Quantile]  # one per design, the baseline first
    differences: list[Quantile]  # one per design after the baseline: design - baseline


def compare_runs(designs: list[Design], runs: dict[str, list[SeedRun]]) -> list[ComparedMetric]:
    """Each metric of each design over its runs, and each design's paired difference from the
    baseline (runs[name][i] are all seed i)."""
    base = runs[designs[0].name]
    compared = []
    for metric in METRICS:
        series = [[metric.of(r) for r in runs[d.name]] for d in designs]
        compared.append(
            ComparedMetric(
                metric.key,
                metric.label,
                metric.unit,
                [Quantile.of(values, metric.q) for values in series],
                [Quantile.difference([metric.of(r) for r in base], values, metric.q) for values in series[1:]],
            )
        )
    return compared


def run_compare(
    designs: list[Design],
    seeds: list[int],
    workers: int | None = None,
    on_run: Callable[[SeedRun], None] | None = None,
    dask: str | None = None,
) -> dict[str, list[SeedRun]]:
    """Every design on every seed on revm, all in one process pool (or on the Dask cluster at `dask`);
    the runs by design, in seed order."""
    jobs = [(d.scenario, seed) for d in designs for seed in seeds]
    flat = run_many_revm(jobs, workers, on_run, dask)
    return {d.name: flat[i * len(seeds) : (i + 1) * len(seeds)] for i, d in enumerate(designs)}


def format_value(value: float, unit: str) -> str:
    if unit == "usd":
        return f"${value:,.2f}" if value >= 0 else f"-${-value:,.2f}"
    if unit == "share":
        return f"{value * 100:.2f}%"
    return f"{value:,.1f}"


def _interval(q: Quantile, unit: str) -> str:
    return "" if q.low == q.high else f"[{format_value(q.low, unit)}, {format_value(q.high, unit)}]"


def compare_rows(designs: list[Design], metrics: list[ComparedMetric]) -> tuple[list[str], list[list[str]]]:
    """The comparison's header and rows, one row per metric and design: its value over the
    runs with the 95% interval, and (after the baseline) its difference from the baseline with
    the paired interval."""
    header = ["metric", "design", "value", "95% interval", f"- {designs[0].name}", "95% interval"]
    rows = []
    for m in metrics:
        for i, design in enumerate(designs):
            value = m.values[i]
            row = [m.label if i == 0 else "", design.name, format_value(value.value, m.unit), _interval(value, m.unit)]
            if i == 0:
                row += ["", ""]
            else:
                d = m.differences[i - 1]
                row += [("+" if d.value > 0 else "") + format_value(d.value, m.unit), _interval(d, m.unit)]
            rows.append(row)
    return header, rows


def compare_table(designs: list[Design], seeds: list[int], metrics: list[ComparedMetric]) -> str:
    """The comparison as a terminal table (rich), each design's overlay underneath."""
    from rich.console import Console
    from rich.table import Table

    header, rows = compare_rows(designs, metrics)
    table = Table(title=f"{designs[0].scenario.name}: {len(designs)} designs x {len(seeds)} seeds, bootstrap 95% intervals")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right", no_wrap=i > 0)
    for row in rows:
        table.add_row(*row, end_section=row[1] == designs[-1].name)
    console = Console(width=150, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
        for d in designs[1:]:
            console.print(f"{d.name}: {d.description} {json.dumps(d.overlay, sort_keys=True)}", soft_wrap=True)
    return capture.get()


def write_compare(
    designs: list[Design], seeds: list[int], runs: dict[str, list[SeedRun]], metrics: list[ComparedMetric], out_dir: Path
) -> dict[str, Path]:
    """compare.json (every run and metric) and compare.html (one self-contained page: the table,
    the designs and interactive plotly charts, readable offline)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "scenario": designs[0].scenario.name,
        "seeds": seeds,
        "designs": [{"name": d.name, "description": d.description, "overlay": d.overlay} for d in designs],
        "metrics": [asdict(m) for m in metrics],
        "runs": {name: [asdict(r) for r in rs] for name, rs in runs.items()},
    }
    paths = {"json": out_dir / "compare.json", "html": out_dir / "compare.html"}
    paths["json"].write_text(json.dumps(data, indent=2))
    paths["html"].write_text(compare_html(designs, seeds, runs, metrics))
    return paths


def compare_html(designs: list[Design], seeds: list[int], runs: dict[str, list[SeedRun]], metrics: list[ComparedMetric]) -> str:
    import html

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [d.name for d in designs]
    figures = []

    shortfall = go.Figure()
    for name in names:
        values = [r.shortfall_usd for r in runs[name]]
        shortfall.add_trace(
            go.Box(
                y=values,
                name=name,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                text=[f"seed {r.seed}" for r in runs[name]],
                hovertemplate="%{text}: $%{y:,.2f}<extra></extra>",
            )
        )
    shortfall.update_layout(
        title="Shortfall per seed: bad debt booked + negative equity left open (USD)", yaxis_title="USD", showlegend=False
    )
    figures.append(shortfall)

    ecdf = go.Figure()
    for name in names:
        ordered = sorted(r.shortfall_usd for r in runs[name])
        ecdf.add_trace(
            go.Scatter(
                x=ordered, y=[(i + 1) / len(ordered) for i in range(len(ordered))], mode="lines", line_shape="hv", name=name
            )
        )
    ecdf.add_hline(y=0.95, line_dash="dot", annotation_text="95%")
    ecdf.update_layout(title="Distribution of the shortfall over seeds", xaxis_title="USD", yaxis_title="share of seeds <= x")
    figures.append(ecdf)

    if len(designs) > 1:
        forest = make_subplots(rows=len(metrics), cols=1, subplot_titles=[f"{m.label}: design - baseline" for m in metrics])
        for row, m in enumerate(metrics, start=1):
            forest.add_trace(
                go.Scatter(
                    x=[d.value for d in m.differences],
                    y=names[1:],
                    mode="markers",
                    marker={"size": 10},
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": [d.high - d.value for d in m.differences],
                        "arrayminus": [d.value - d.low for d in m.differences],
                    },
                    showlegend=False,
                ),
                row=row,
                col=1,
            )
            forest.add_vline(x=0, line_dash="dot", row=row, col=1)
        forest.update_layout(height=170 * len(metrics), title="Differences from the baseline with paired 95% intervals")
        figures.append(forest)

    header, rows = compare_rows(designs, metrics)
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    for row in rows:
        table += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
    table += "</table>"
    design_list = "".join(
        f"<li><b>{html.escape(d.name)}</b>: {html.escape(d.description)} "
        f"<code>{html.escape(json.dumps(d.overlay, sort_keys=True))}</code></li>"
        for d in designs
    )
    charts = "".join(
        f.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False}) for i, f in enumerate(figures)
    )
    scenario = designs[0].scenario
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>compare: {html.escape(scenario.name)}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        "</head><body>"
        f"<h1>{html.escape(scenario.name)}: {len(designs)} designs on {len(seeds)} seeds</h1>"
        f"<p>{html.escape(scenario.description)}</p>"
        f"<p>Seeds {html.escape(_seed_text(seeds))}. Each design ran on the same seeds (the same traders and "
        "prices); values are over the runs with bootstrap 95% intervals, differences are paired by seed.</p>"
        f"<ul>{design_list}</ul>{table}{charts}</body></html>"
    )


def _seed_text(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))
