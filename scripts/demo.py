"""The main job (`make demo`): replay Black Thursday (2020-03-12) against a fresh protocol.

Real 10-minute ETH prices and gas prices from that day drive Chainlink-style rounds; thirty
leveraged traders, an LP and two competing keepers (one slow and censored through the worst
hours) play it out on the embedded local chain. Prints the summary table and writes
out/black-thursday-2020/ (report.html, summary.json, CSV series). Same as
`ape run simulate` with its defaults; any other scenario goes through `make simulate`.
"""

import sys
from pathlib import Path

import click
from ape import accounts, chain, networks, project
from ape.logging import logger

from marginsim.sim.engine import run_simulation
from marginsim.sim.report import summary_table, write_outputs
from marginsim.sim.scenario import load_scenario

SCENARIO = Path("scenarios/black-thursday-2020.toml")


def main():
    logger.set_level("WARNING")
    scenario = load_scenario(SCENARIO)
    click.echo(f"marginsim demo: {scenario.description}")
    click.echo(
        f"{scenario.traders.count} traders at {scenario.traders.leverage[0]:g}x-{scenario.traders.leverage[1]:g}x, "
        f"a ${scenario.pool_usd:,.0f} pool, ${scenario.insurance_usd:,.0f} of insurance, "
        f"keepers: {', '.join(k.name for k in scenario.keepers)}.\n"
    )
    network = f"{networks.provider.network.ecosystem.name}:{networks.provider.network.name}:{networks.provider.name}"
    with click.progressbar(length=1, label="2020-03-12", show_pos=True) as bar:

        def on_step(step, steps):
            bar.length = steps + 1
            bar.update(1)

        try:
            result = run_simulation(project, chain, list(accounts.test_accounts), scenario, network=network, on_step=on_step)
        except ValueError as error:
            sys.exit(str(error).splitlines()[0])
    paths = write_outputs(result, Path("out") / scenario.name, scenario)
    click.echo(summary_table(result))
    click.echo(f"report: {paths['report']} (opens offline)")
