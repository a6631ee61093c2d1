"""Benchmark of the simulator (`make bench-sim`): wall time and transactions per second of a
scenario, and where the time goes (cProfile, top functions by cumulative time)."""

import cProfile
import io
import pstats
from pathlib import Path

import click
from ape import accounts, chain, project
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from marginsim.sim.engine import run_simulation
from marginsim.sim.scenario import load_scenario


@click.command(cls=ConnectedProviderCommand)
@click.option("--scenario", "scenario_path", default="scenarios/black-thursday-2020.toml", show_default=True)
@click.option("--top", default=25, show_default=True, help="profile rows to print")
def cli(scenario_path, top):
    logger.set_level("WARNING")
    scenario = load_scenario(Path(scenario_path))
    profiler = cProfile.Profile()
    profiler.enable()
    result = run_simulation(project, chain, list(accounts.test_accounts), scenario)
    profiler.disable()
    click.echo(f"scenario {scenario.name}: {result.steps} steps, {result.transactions} transactions")
    click.echo(
        f"wall time {result.wall_seconds:.1f} s, {result.transactions / result.wall_seconds:.1f} tx/s, "
        f"{result.wall_seconds / result.steps * 1000:.0f} ms per step"
    )
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
    click.echo(stream.getvalue())
