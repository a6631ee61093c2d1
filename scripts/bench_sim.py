"""Benchmark of the simulator (`make bench-sim`): wall time and transactions per second of a
scenario on an engine (revm in process by default, or the connected ape network), and where the
time goes (cProfile, top functions by cumulative time). On revm the transactions counted are
the ones sent, deployment included, and the view calls are counted apart; on ape the ones the
run's loop sent (never the empty blocks a clock move mines).

On revm it also replays the run's exact calls into revm (`RevmChain.record` / `replay`: the same
blocks, senders, calldata, in order, on a fresh EVM with nothing around them) and prints the
engine's own time beside the whole loop's: the share of the engine's raw speed the simulator
keeps (issue 10 asks for at least half). That run is timed without the profiler, which then
profiles a second run."""

import cProfile
import io
import pstats
from pathlib import Path

import click
from ape import accounts, chain, project
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from marginsim.chain.revm import RevmChain, replay
from marginsim.sim.engine import run_on_revm, run_simulation, signers_needed
from marginsim.sim.scenario import load_scenario


@click.command(cls=ConnectedProviderCommand)
@click.option("--scenario", "scenario_path", default="scenarios/black-thursday-2020.toml", show_default=True)
@click.option("--top", default=25, show_default=True, help="profile rows to print")
@click.option("--engine", type=click.Choice(["ape", "revm"]), default="revm", show_default=True)
def cli(scenario_path, top, engine):
    logger.set_level("WARNING")
    scenario = load_scenario(Path(scenario_path))
    profiler = cProfile.Profile()
    if engine == "revm":
        timed = RevmChain()
        recorder = timed.record()
        loop = run_simulation(timed.project, timed, timed.signers(signers_needed(scenario)), scenario, network="revm")
        raw, sent, calls, reverts = replay(recorder.tape)
        assert reverts == recorder.reverts, f"the replay reverted {reverts} times, the run {recorder.reverts}"
        click.echo(
            f"engine alone: {raw:.2f} s for the run's {sent:,} transactions and {calls:,} view calls "
            f"({reverts} reverted, as in the run), replayed raw; the whole loop {loop.wall_seconds:.2f} s: "
            f"the simulator runs at {raw / loop.wall_seconds:.0%} of its engine's speed"
        )
        profiler.enable()
        result, revm = run_on_revm(scenario)
        profiler.disable()
        sent, calls = revm.transactions, revm.calls
    else:
        profiler.enable()
        result = run_simulation(project, chain, list(accounts.test_accounts), scenario)
        profiler.disable()
        sent, calls = result.transactions, None
    click.echo(f"scenario {scenario.name} on {engine}: {result.steps} steps")
    if calls is None:
        click.echo(f"{sent} transactions sent by the run (deployment and the clock's empty blocks excluded)")
    else:
        click.echo(f"{sent} transactions sent (deployment included), {calls} view calls")
    click.echo(
        f"wall time {result.wall_seconds:.2f} s, {sent / result.wall_seconds:,.1f} per second, "
        f"{result.wall_seconds / result.steps * 1000:.1f} ms per step"
    )
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
    click.echo(stream.getvalue())
