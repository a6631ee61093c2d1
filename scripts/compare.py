"""Designs side by side (`make compare`): parameter overlays of one scenario on the same seeds.

    ape run compare designs/wide-buffer.toml                               # against black-thursday-2020, seeds 1-20
    ape run compare designs/wide-buffer.toml designs/weth-haircut.toml --seeds 1-100 --workers 2
    ape run compare --scenario scenarios/flash-crash.toml designs/tight-breaker.toml --out out/flash
    ape run compare designs/wide-buffer.toml --seeds 1-500 --dask tcp://10.0.0.5:8786    # on a team's Dask cluster
    ape run compare designs/wide-buffer.toml --seeds 1-3 --engine ape                    # on the connected network

The scenario as written is the baseline; each design file overlays its [protocol], [market.*],
[collateral.*] and [liquidity] tables (see marginsim/sim/compare.py). Every design runs on revm
on every seed, in a process pool (or, with `--dask ADDRESS`, on that Dask cluster; with
`--engine ape`, on the connected network one run after another, each rolled back); the table
prints each metric with its bootstrap 95% interval and each design's difference from the
baseline, paired by seed. Writes <out>/compare.json and <out>/compare.html (one self-contained
page with interactive charts).
"""

import sys
from pathlib import Path

import click
from ape import accounts, chain, networks, project
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from marginsim.sim.compare import compare_runs, compare_table, load_designs, run_compare, write_compare
from marginsim.sim.engine import check_parameters
from marginsim.sim.scenario import ScenarioError
from marginsim.sim.sweep import check_cluster_options, parse_seeds, run_sweep


@click.command(cls=ConnectedProviderCommand)
@click.argument("design_paths", nargs=-1)
@click.option("--scenario", "scenario_path", default="scenarios/black-thursday-2020.toml", show_default=True)
@click.option("--seeds", "seeds_text", default="1-20", show_default=True, help="e.g. 1-20 or 1,5,9")
@click.option("--out", "out_dir", default=None, help="output folder (default out/compare-<scenario name>)")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="processes (default: one per core)")
@click.option(
    "--dask",
    "dask",
    metavar="ADDRESS",
    default=None,
    help="run on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://10.0.0.5:8786) instead of local processes",
)
@click.option(
    "--engine",
    type=click.Choice(["ape", "revm"]),
    default="revm",
    show_default=True,
    help="revm: in process, runs in parallel; ape: the connected network, one run after another",
)
def cli(design_paths, scenario_path, seeds_text, out_dir, workers, dask=None, engine="revm"):
    logger.set_level("WARNING")
    try:
        designs = load_designs(Path(scenario_path), [Path(p) for p in design_paths])
        seeds = parse_seeds(seeds_text)
        for design in designs:
            check_parameters(design.scenario)
        check_cluster_options(workers, dask)
        if engine == "ape" and (dask is not None or workers is not None):
            raise ValueError(
                "compare: --engine ape runs one at a time on the connected network; --workers and --dask are for revm"
            )
    except (ScenarioError, ValueError) as error:
        sys.exit(str(error).splitlines()[0])
    label = f"{designs[0].scenario.name}: {len(designs)} designs x {len(seeds)} seeds"
    with click.progressbar(length=len(designs) * len(seeds), label=label, show_pos=True) as bar:
        try:
            if engine == "revm":
                runs = run_compare(designs, seeds, workers, on_run=lambda _: bar.update(1), dask=dask)
            else:
                provider = networks.provider
                network = f"{provider.network.ecosystem.name}:{provider.network.name}:{provider.name}"
                signers = list(accounts.test_accounts)
                runs = {
                    d.name: run_sweep(project, chain, signers, d.scenario, seeds, network, on_run=lambda _: bar.update(1))
                    for d in designs
                }
        except ValueError as error:
            sys.exit(str(error).splitlines()[0])
    metrics = compare_runs(designs, runs)
    click.echo(compare_table(designs, seeds, metrics))
    paths = write_compare(designs, seeds, runs, metrics, Path(out_dir or f"out/compare-{designs[0].scenario.name}"))
    click.echo(f"written to {paths['json']} and {paths['html']}")
