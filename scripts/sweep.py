"""Bad debt over seeds (`make sweep`): one scenario, many seeds, a fresh protocol for each.

    ape run sweep                                            # black-thursday-2020, seeds 1-20, on revm
    ape run sweep --scenario scenarios/flash-crash.toml --seeds 1-50 --out out/sweep-flash
    ape run sweep --engine ape                               # on the connected network instead
    ape run sweep --seeds 1-500 --dask tcp://10.0.0.5:8786   # on a team's Dask cluster

Prints one row per seed and the mean, p50, p95 (nearest rank) and maximum bad debt, and writes
<out>/sweep.json. On revm (the default) each seed runs on a chain of its own, `--workers`
processes at once (one per core by default); on ape each run is rolled back afterwards (a chain
snapshot), so the chain does not grow with the number of seeds. `--dask ADDRESS` runs the revm
seeds on the Dask cluster whose scheduler is at ADDRESS instead of the local pool (the `cluster`
extra; every worker needs this checkout installed and compiled).
"""

import sys
from pathlib import Path

import click
from ape import accounts, chain, networks, project
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from marginsim.sim.engine import check_parameters
from marginsim.sim.scenario import ScenarioError, load_scenario
from marginsim.sim.sweep import (
    check_cluster_options,
    parse_seeds,
    run_sweep,
    run_sweep_revm,
    summarise_sweep,
    sweep_table,
    write_sweep,
)


@click.command(cls=ConnectedProviderCommand)
@click.option("--scenario", "scenario_path", default="scenarios/black-thursday-2020.toml", show_default=True)
@click.option("--seeds", "seeds_text", default="1-20", show_default=True, help="e.g. 1-20 or 1,5,9")
@click.option("--out", "out_dir", default=None, help="output folder (default out/sweep-<scenario name>)")
@click.option(
    "--engine",
    type=click.Choice(["ape", "revm"]),
    default="revm",
    show_default=True,
    help="revm: the contracts in process, seeds in parallel; ape: the connected network, one seed after another",
)
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="processes for revm (default: one per core)")
@click.option(
    "--dask",
    "dask",
    metavar="ADDRESS",
    default=None,
    help="run the revm seeds on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://10.0.0.5:8786)",
)
def cli(scenario_path, seeds_text, out_dir, engine, workers, dask=None):
    logger.set_level("WARNING")
    try:
        scenario = load_scenario(Path(scenario_path))
        seeds = parse_seeds(seeds_text)
        check_parameters(scenario)
        check_cluster_options(workers, dask)
        if dask is not None and engine != "revm":
            raise ValueError("sweep: --dask runs the seeds on revm; it does not go with --engine ape")
    except (ScenarioError, ValueError) as error:
        sys.exit(str(error))
    network = f"{networks.provider.network.ecosystem.name}:{networks.provider.network.name}:{networks.provider.name}"
    with click.progressbar(length=len(seeds), label=f"{scenario.name} x {len(seeds)} seeds", show_pos=True) as bar:
        try:
            if engine == "revm":
                runs = run_sweep_revm(scenario, seeds, workers, on_run=lambda _: bar.update(1), dask=dask)
            else:
                runs = run_sweep(
                    project, chain, list(accounts.test_accounts), scenario, seeds, network, on_run=lambda _: bar.update(1)
                )
        except ValueError as error:
            sys.exit(str(error).splitlines()[0])
    summary = summarise_sweep(scenario.name, runs)
    click.echo(sweep_table(summary, runs))
    path = write_sweep(summary, runs, Path(out_dir or f"out/sweep-{scenario.name}"))
    click.echo(f"written to {path}")
