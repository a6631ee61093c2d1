"""Scale benchmark (`make bench-scale`): a scenario's whole day on revm with thousands of
traders, the pool, the insurance fund and each market's open-interest cap and skew scale scaled
with their number (so each trader finds the room one of the scenario's own would). Prints, per
population, the wall time, the time per account-step, the transactions sent and view calls made,
what the day did, and the off-chain scan of every account (the keepers' mirror, one pass a step
shared by the metrics and every keeper): its mean over the steps and its slowest. Not a test: figures, no thresholds.

    ape run bench_scale                                   # Black Thursday's crowd, 1,000, 3,000 and 10,000 traders
    ape run bench_scale --traders 500,2000 --scenario scenarios/may-2021.toml
    ape run bench_scale --engine ape --traders 30            # the connected network (ape's test
                                                              # network funds 40 accounts)
"""

import sys
import time
from dataclasses import replace
from pathlib import Path

import click
from ape import accounts, chain, project
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from marginsim.protocol import DEFAULT_CONFIG
from marginsim.sim.engine import run_on_revm, run_simulation
from marginsim.sim.scenario import ScenarioError, load_scenario

MAX_SKEW_SCALE = 3e8


def scaled(scenario, traders: int):
    """`scenario` with `traders` traders and its capacities times traders / its own count."""
    k = traders / max(scenario.traders.count, 1)
    markets = dict(scenario.markets)
    for spec in scenario.feeds:
        base = next(m for m in DEFAULT_CONFIG.markets if m.name == spec.market)
        own = markets.get(spec.market, {})
        cap, scale = own.get("oi_cap", base.oi_cap), own.get("skew_scale", base.skew_scale)
        # the Configurator's bounds: a skew scale below 2**88 wei (3.09e8 base units), and a cap
        # within the premium bound, which is proportional to the skew scale (the ratio kept, less 0.1%)
        new_scale = min(scale * k, MAX_SKEW_SCALE)
        markets[spec.market] = {**own, "skew_scale": new_scale, "oi_cap": min(cap * k, cap * new_scale / scale * 0.999)}
    return replace(
        scenario,
        traders=replace(scenario.traders, count=traders),
        pool_usd=scenario.pool_usd * k,
        insurance_usd=scenario.insurance_usd * k,
        markets=markets,
    )


@click.command(cls=ConnectedProviderCommand)
@click.option("--scenario", "scenario_path", default="scenarios/black-thursday-crowd.toml", show_default=True)
@click.option("--traders", "counts", default="1000,3000,10000", show_default=True, help="comma-separated populations")
@click.option(
    "--engine",
    type=click.Choice(["ape", "revm"]),
    default="revm",
    show_default=True,
    help="revm: in process, any number of traders; ape: the connected network, as many as it funds",
)
def cli(scenario_path, counts, engine):
    logger.set_level("WARNING")
    try:
        scenario = load_scenario(Path(scenario_path))
        populations = [int(n) for n in counts.split(",")]
    except (ScenarioError, ValueError) as error:
        sys.exit(str(error).splitlines()[0])
    click.echo(
        f"{'traders':>8} {'opened':>7} {'wall s':>7} {'us/acct-step':>13} {'tx sent':>8} {'views':>8} "
        f"{'liqs':>5} {'bad debt $':>12} {'left':>5} {'scan ms mean/max':>17}"
    )
    for n in populations:
        run = scaled(scenario, n)
        started = time.perf_counter()
        if engine == "revm":
            result, revm = run_on_revm(run)
            sent, views = f"{revm.transactions:,}", f"{revm.calls:,}"
        else:
            try:
                result = run_simulation(project, chain, list(accounts.test_accounts), run)
            except ValueError as error:
                sys.exit(str(error).splitlines()[0])
            sent, views = f"{result.transactions:,}", "-"  # the run's own; ape does not count views
        wall = time.perf_counter() - started
        opened = max((p.open_accounts for p in result.series), default=0)
        click.echo(
            f"{n:>8,} {opened:>7,} {wall:>7.1f} {wall / (n * result.steps) * 1e6:>13.2f} {sent:>8} "
            f"{views:>8} {len(result.liquidations):>5} {result.total_bad_debt_usd:>12,.2f} "
            f"{result.still_liquidatable_at_end:>5} "
            f"{result.scan_seconds_total / result.steps * 1e3:>8.1f}/{result.scan_seconds_max * 1e3:<8.1f}"
        )
