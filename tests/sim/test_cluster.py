"""Seeds on a Dask cluster (issue 10, `--dask ADDRESS`): a local cluster of two worker processes
stands in for a team's. The cluster must give every seed the figures the local run gives it, keep
the runs in the jobs' order, and fail in one line when it cannot be used."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
from dataclasses import asdict, replace
from pathlib import Path

import distributed
import pytest
from click.testing import CliRunner

from marginsim.sim import sweep
from marginsim.sim.compare import load_designs, run_compare
from marginsim.sim.scenario import load_scenario
from marginsim.sim.sweep import ClusterError, run_many_revm, run_sweep_revm

SCENARIOS = Path(__file__).parent / "scenarios"
SHORT = SCENARIOS / "short-crash.toml"
SCRIPTS = Path(__file__).parents[2] / "scripts"
BOTH = "sweep: --workers sizes the local process pool; with --dask the cluster's workers run the seeds"


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each: the shape of a (small) real cluster, tasks pickled across."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        yield local


@pytest.fixture(scope="module")
def short():
    return load_scenario(SHORT)


def _same(runs):
    """The runs less their wall time, the one figure that depends on the machine."""
    return [replace(r, wall_seconds=0.0) for r in runs]


def _unused_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _script(name: str):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"marginsim_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the same figures as here


@pytest.mark.slow
def test_cluster__every_seed_gives_the_figures_it_gives_here_in_seed_order(cluster, short):
    finished = []
    remote = run_sweep_revm(short, [3, 1, 2], on_run=finished.append, dask=cluster.scheduler_address)
    here = run_sweep_revm(short, [3, 1, 2], workers=1)
    assert _same(remote) == _same(here)
    assert [r.seed for r in remote] == [3, 1, 2]
    assert sorted(r.seed for r in finished) == [1, 2, 3]  # on_run once per run, as each finishes
    assert len({r.liquidated_notional_usd for r in remote}) == 3  # the seeds draw different traders


@pytest.mark.slow
def test_cluster__compare_keeps_the_runs_by_design_and_seed(cluster, tmp_path):
    design = tmp_path / "wide.toml"
    design.write_text('name = "wide"\n[protocol]\nliquidation_buffer = 0.3\n')
    designs = load_designs(SHORT, [design])
    remote = run_compare(designs, [4, 5], dask=cluster.scheduler_address)
    here = run_compare(designs, [4, 5], workers=1)
    assert list(remote) == ["baseline", "wide"]
    assert {name: _same(runs) for name, runs in remote.items()} == {name: _same(runs) for name, runs in here.items()}


# ---------------------------------------------------------------- one-line refusals


def test_cluster__an_unreachable_scheduler_is_one_line_after_the_connect_timeout(short):
    address = _unused_address()
    with pytest.raises(ClusterError) as error:
        run_many_revm([(short, 1)], dask=address)
    assert str(error.value) == f"sweep: cannot reach a Dask scheduler at {address} (--dask) within 5 s"


def test_cluster__a_scheduler_without_workers_and_a_bad_address_are_one_line(short, monkeypatch):
    monkeypatch.setattr(sweep, "CLUSTER_CONNECT_TIMEOUT_S", 1)
    with (
        distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty,
        pytest.raises(ClusterError) as error,
    ):
        run_many_revm([(short, 1)], dask=empty.scheduler_address)
    assert str(error.value) == f"sweep: the Dask scheduler at {empty.scheduler_address} has no workers (--dask)"
    with pytest.raises(ClusterError) as error:
        run_many_revm([(short, 1)], dask="udp://scheduler:8786")
    assert str(error.value).startswith("sweep: --dask udp://scheduler:8786: unknown address scheme 'udp'")


def test_cluster__without_the_library_the_error_names_the_option_and_the_extra(short, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` meets when it is not installed
    with pytest.raises(ClusterError) as error:
        run_many_revm([(short, 1)], dask="tcp://127.0.0.1:8786")
    assert str(error.value) == "sweep: --dask needs dask's distributed library: pip install -e '.[cluster]'"


def test_cluster__workers_and_dask_together_are_refused(short):
    with pytest.raises(ClusterError) as error:
        run_many_revm([(short, 1)], workers=2, dask="tcp://127.0.0.1:8786")
    assert str(error.value) == BOTH


# ---------------------------------------------------------------- the commands


@pytest.mark.slow
def test_sweep_command__runs_on_the_cluster_and_writes_the_figures_of_a_local_run(cluster, short, tmp_path):
    out = tmp_path / "out"
    args = ["--scenario", str(SHORT), "--seeds", "6-7", "--out", str(out), "--dask", cluster.scheduler_address]
    result = CliRunner().invoke(_script("sweep").cli, args)
    assert result.exit_code == 0, result.output
    assert "short-crash, 2 seeds" in result.output
    written = json.loads((out / "sweep.json").read_text())["runs"]
    here = run_sweep_revm(short, [6, 7], workers=1)
    assert [{**r, "wall_seconds": 0.0} for r in written] == [asdict(r) for r in _same(here)]


def test_sweep_command__refusals_are_one_line_and_run_nothing(tmp_path):
    sweep_cli, out = _script("sweep").cli.callback, tmp_path / "out"
    address = _unused_address()
    for args, message in (
        (("revm", 2, address), BOTH),
        (("ape", None, address), "sweep: --dask runs the seeds on revm; it does not go with --engine ape"),
        (("revm", None, address), f"sweep: cannot reach a Dask scheduler at {address} (--dask) within 5 s"),
    ):
        engine, workers, dask = args
        with pytest.raises(SystemExit) as stop:
            sweep_cli(str(SHORT), "1-2", str(out), engine, workers, dask=dask)
        assert stop.value.code == message
    assert not out.exists()


@pytest.mark.slow
def test_compare_command__takes_the_cluster_and_refuses_it_with_workers(cluster, tmp_path, capsys):
    compare_cli = _script("compare").cli.callback
    design = tmp_path / "wide.toml"
    design.write_text("[protocol]\nliquidation_buffer = 0.3\n")
    compare_cli((str(design),), str(SHORT), "8", str(tmp_path / "out"), None, dask=cluster.scheduler_address)
    assert "short-crash: 2 designs x 1 seeds" in capsys.readouterr().out
    assert (tmp_path / "out" / "compare.json").exists()
    with pytest.raises(SystemExit) as stop:
        compare_cli((str(design),), str(SHORT), "8", str(tmp_path / "again"), 2, dask=cluster.scheduler_address)
    assert stop.value.code == BOTH
    assert not (tmp_path / "again").exists()
