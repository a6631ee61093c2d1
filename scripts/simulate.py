"""Run a crash scenario against a freshly deployed protocol and write the report.

ape run simulate                                    # black-thursday-2020 on the embedded chain
ape run simulate --scenario scenarios/flash-crash.toml --seed 2 --out out/flash
ape run simulate --network ethereum:local:node      # against anvil (make anvil)
ape run simulate --engine revm                      # the same contracts on revm, in process
"""

import sys
from pathlib import Path

import click
from ape import accounts, chain, networks, project
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from marginsim.sim.engine import check_parameters, run_on_revm, run_simulation
from marginsim.sim.report import summary_table, write_outputs
from marginsim.sim.scenario import ScenarioError, load_scenario


@click.command(cls=ConnectedProviderCommand)
@click.option(
    "--scenario", "scenario_path", default="scenarios/black-thursday-2020.toml", show_default=True, help="scenario TOML file"
)
@click.option("--seed", type=int, default=None, help="overrides the scenario's seed")
@click.option("--out", "out_dir", default=None, help="output folder (default out/<scenario name>)")
@click.option(
    "--engine",
    type=click.Choice(["ape", "revm"]),
    default="ape",
    show_default=True,
    help="ape: the connected network (--network); revm: the same contracts in process",
)
def cli(scenario_path, seed, out_dir, engine):
    logger.set_level("WARNING")
    try:
        scenario = load_scenario(Path(scenario_path))
        check_parameters(scenario)
    except ScenarioError as error:
        sys.exit(str(error))
    network = f"{networks.provider.network.ecosystem.name}:{networks.provider.network.name}:{networks.provider.name}"
    with click.progressbar(length=1, label=f"{scenario.name}", show_pos=True) as bar:

        def on_step(step, steps):
            bar.length = steps + 1
            bar.update(1)

        try:
            if engine == "revm":
                result, _ = run_on_revm(scenario, seed, on_step)
            else:
                signers = list(accounts.test_accounts)
                result = run_simulation(project, chain, signers, scenario, seed=seed, network=network, on_step=on_step)
        except ValueError as error:
            sys.exit(str(error).splitlines()[0])
    out = Path(out_dir or f"out/{scenario.name}")
    paths = write_outputs(result, out, scenario)
    click.echo(summary_table(result))
    click.echo(f"report: {paths['report']}")
