"""Bad debt over seeds: run one scenario under many seeds and summarise the distribution.

A single replay answers "what did this day cost"; a risk analyst also asks "how bad could it
have been": the 95th percentile of bad debt over seeds (a value-at-risk of the design). On a
replay the price path is the day's and the seed draws the trader population (sizes, leverage,
sides, behaviour); on a synthetic path the seed draws the path too.

Quantiles use the nearest-rank method on the sorted values (p95 of 20 runs is the 19th
largest), so every figure is one of the runs, never an interpolation between two.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from marginsim.sim.results import SimulationResult


@dataclass(frozen=True)
class SeedRun:
    seed: int
    bad_debt_usd: float
    bad_debt_share_of_peak_oi: float
    liquidations: int
    liquidated_notional_usd: float
    still_liquidatable_at_end: int
    insurance_end_usd: float
    wall_seconds: float
    underwater_at_end_usd: float = 0.0  # negative equity of accounts still open at the end
    pool_drawdown_usd: float = 0.0  # the pool value's largest fall from a running peak, over the steps
    insurance_depletion_usd: float = 0.0  # the insurance fund's start less its lowest point, >= 0
    accounts: int = 0
    liquidation_delay_p90_blocks: float = 0.0  # accounts never liquidated counted with their wait to the end
    over_liquidation_usd: float = 0.0

    @property
    def left_liquidatable_share(self) -> float:
        """Share of the run's accounts still liquidatable at its end."""
        return self.still_liquidatable_at_end / self.accounts if self.accounts else 0.0

    @property
    def shortfall_usd(self) -> float:
        """Bad debt booked plus the negative equity still open at the end: what the day lost."""
        return self.bad_debt_usd + self.underwater_at_end_usd

    @classmethod
    def of(cls, result: SimulationResult) -> SeedRun:
        pools = [p.pool_value_usd for p in result.series]
        insurance = [p.insurance_usd for p in result.series]
        drawdown, peak = 0.0, -math.inf
        for value in pools:
            peak = max(peak, value)
            drawdown = max(drawdown, peak - value)
        return cls(
            seed=result.seed,
            bad_debt_usd=result.total_bad_debt_usd,
            bad_debt_share_of_peak_oi=result.bad_debt_share_of_peak_oi,
            liquidations=len(result.liquidations),
            liquidated_notional_usd=result.liquidated_notional_usd,
            still_liquidatable_at_end=result.still_liquidatable_at_end,
            insurance_end_usd=insurance[-1] if insurance else 0.0,
            wall_seconds=result.wall_seconds,
            underwater_at_end_usd=result.underwater_at_end_usd,
            pool_drawdown_usd=drawdown,
            insurance_depletion_usd=max(insurance[0] - min(insurance), 0.0) if insurance else 0.0,
            accounts=result.accounts,
            liquidation_delay_p90_blocks=result.delay_quantiles()["p90"],
            over_liquidation_usd=result.over_liquidation_usd,
        )


def nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q <= 1) of `values`: the ceil(q*n)-th smallest."""
    if not values:
        raise ValueError("sweep: no runs to summarise")
    if not 0 < q <= 1:
        raise ValueError(f"sweep: quantile must be in (0, 1], got {q}")
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


BOOTSTRAP_RESAMPLES = 2_000
BOOTSTRAP_SEED = 0  # the intervals are reproducible: the same runs give the same interval


def _statistic_along(q: float | None):
    """The nearest-rank q-quantile (q None: the mean) as a vectorised statistic over an axis,
    for scipy's bootstrap."""

    def statistic(sample: Any, axis: int = -1) -> Any:
        import numpy as np

        if q is None:
            return np.mean(sample, axis=axis)
        ordered = np.sort(sample, axis=axis)
        return np.take(ordered, max(math.ceil(q * ordered.shape[axis]), 1) - 1, axis=axis)

    return statistic


def _percentile_interval(samples: tuple[list[float], ...], statistic: Any) -> tuple[float, float]:
    """scipy's bootstrap 95% percentile interval of `statistic` over `samples` (paired: the
    runs of one seed are resampled together)."""
    import numpy as np
    from scipy.stats import bootstrap

    interval = bootstrap(
        tuple(np.asarray(s, dtype=float) for s in samples),
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        vectorized=True,
        paired=len(samples) > 1,
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    ).confidence_interval
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class Quantile:
    """A statistic over the runs (a nearest-rank quantile, or a mean) and its bootstrap 95%
    interval (percentile method, resampling the runs with replacement)."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float], q: float | None = 0.95) -> Quantile:
        """The nearest-rank q-quantile of `values` (q None: their mean) and its interval."""
        value = nearest_rank(values, q) if q is not None else sum(values) / len(values)
        if len(values) < 2 or min(values) == max(values):
            return cls(value, value, value)
        return cls(value, *_percentile_interval((values,), _statistic_along(q)))

    @classmethod
    def difference(cls, base: list[float], other: list[float], q: float | None = 0.95) -> Quantile:
        """statistic(other) - statistic(base) over runs paired by seed (base[i] and other[i] are
        the same seed), and its paired bootstrap interval: an interval that excludes 0 says the
        designs differ beyond what the choice of seeds explains."""
        if len(base) != len(other) or not base:
            raise ValueError(f"sweep: a difference needs runs paired by seed, got {len(base)} and {len(other)}")
        one = _statistic_along(q)
        value = float(one(other) - one(base))
        if len(base) < 2 or all(b == o for b, o in zip(base, other, strict=True)):
            return cls(value, value, value)
        return cls(value, *_percentile_interval((base, other), lambda b, o, axis=-1: one(o, axis) - one(b, axis)))


@dataclass(frozen=True)
class SweepSummary:
    scenario: str
    seeds: list[int]
    bad_debt_mean_usd: float
    bad_debt_p50_usd: float
    bad_debt_p95_usd: float
    bad_debt_max_usd: float
    share_of_peak_oi_p95: float
    runs_with_bad_debt: int
    runs_with_accounts_left: int
    # p95 over the runs with a bootstrap 95% interval each
    var95_shortfall: Quantile | None = None  # bad debt plus the negative equity left open at the end
    lar95_liquidated: Quantile | None = None  # notional liquidated
    pool_drawdown95: Quantile | None = None
    insurance_depletion95: Quantile | None = None
    shortfall_mean_usd: float = 0.0


def summarise_sweep(scenario: str, runs: list[SeedRun]) -> SweepSummary:
    debts = [r.bad_debt_usd for r in runs]
    shortfalls = [r.shortfall_usd for r in runs]
    return SweepSummary(
        scenario=scenario,
        seeds=[r.seed for r in runs],
        bad_debt_mean_usd=sum(debts) / len(debts) if debts else 0.0,
        bad_debt_p50_usd=nearest_rank(debts, 0.5),
        bad_debt_p95_usd=nearest_rank(debts, 0.95),
        bad_debt_max_usd=max(debts),
        share_of_peak_oi_p95=nearest_rank([r.bad_debt_share_of_peak_oi for r in runs], 0.95),
        runs_with_bad_debt=sum(1 for d in debts if d > 0),
        runs_with_accounts_left=sum(1 for r in runs if r.still_liquidatable_at_end > 0),
        var95_shortfall=Quantile.of(shortfalls),
        lar95_liquidated=Quantile.of([r.liquidated_notional_usd for r in runs]),
        pool_drawdown95=Quantile.of([r.pool_drawdown_usd for r in runs]),
        insurance_depletion95=Quantile.of([r.insurance_depletion_usd for r in runs]),
        shortfall_mean_usd=sum(shortfalls) / len(shortfalls) if shortfalls else 0.0,
    )


def run_sweep(
    project: Any,
    chain: Any,
    signers: list[Any],
    scenario: Any,
    seeds: list[int],
    network: str = "local",
    on_run: Callable[[SeedRun], None] | None = None,
) -> list[SeedRun]:
    """One fresh protocol per seed; each run is rolled back to a chain snapshot afterwards, so
    the chain does not grow with the number of seeds and every run starts from the same state."""
    from marginsim.sim.engine import run_simulation

    runs = []
    for seed in seeds:
        snapshot = chain.snapshot()
        try:
            run = SeedRun.of(run_simulation(project, chain, signers, scenario, seed=seed, network=network))
        finally:
            chain.restore(snapshot)
        runs.append(run)
        if on_run:
            on_run(run)
    return runs


def run_seed_on_revm(scenario: Any, seed: int) -> SeedRun:
    """One seed on a fresh revm chain in this process (a process pool's unit of work)."""
    from marginsim.sim.engine import run_on_revm

    return SeedRun.of(run_on_revm(scenario, seed)[0])


CLUSTER_EXTRA = "pip install -e '.[cluster]'"
CLUSTER_CONNECT_TIMEOUT_S = 5  # a scheduler that answers at all answers well within this; a wrong address fails fast


class ClusterError(ValueError):
    """Why the Dask cluster cannot take the jobs, in one line (the CLIs print it and stop)."""


def check_cluster_options(workers: int | None, dask: str | None) -> None:
    """`workers` sizes the local process pool; on a cluster its workers decide, so asking for both is a mistake."""
    if dask is not None and workers is not None:
        raise ClusterError("sweep: --workers sizes the local process pool; with --dask the cluster's workers run the seeds")


def _dask_client(address: str) -> Any:
    """A client of the Dask scheduler at `address` that has at least one worker; dask is imported here so the
    package runs without it."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"sweep: --dask needs dask's distributed library: {CLUSTER_EXTRA}") from None
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend

    try:  # before any Client: one built on a bad address blocks for 10 s at exit and prints a traceback
        get_backend(parse_address(address)[0])
    except ValueError as error:  # e.g. an unknown scheme
        raise ClusterError(f"sweep: --dask {address}: {error}") from None
    try:
        client = distributed.Client(address, timeout=CLUSTER_CONNECT_TIMEOUT_S, set_as_default=False)
    except OSError:  # refused, unknown host or no handshake in time (TimeoutError is an OSError)
        raise ClusterError(
            f"sweep: cannot reach a Dask scheduler at {address} (--dask) within {CLUSTER_CONNECT_TIMEOUT_S} s"
        ) from None
    try:
        client.wait_for_workers(1, timeout=CLUSTER_CONNECT_TIMEOUT_S)
    except TimeoutError:
        client.close()
        raise ClusterError(f"sweep: the Dask scheduler at {address} has no workers (--dask)") from None
    return client


def _run_on_dask(jobs: list[tuple[Any, int]], address: str, on_run: Callable[[SeedRun], None] | None) -> list[SeedRun]:
    """The jobs as tasks of the Dask scheduler at `address`, one `run_seed_on_revm` each (every worker needs this
    checkout installed and compiled); `on_run` as each finishes, the runs in the jobs' order."""
    client = _dask_client(address)
    from distributed import as_completed  # imports: _dask_client has said so in one line if it does not

    try:
        # pure=False: a task per job even if two jobs were equal, and no hashing of the scenario for a key
        futures = [client.submit(run_seed_on_revm, scenario, seed, pure=False) for scenario, seed in jobs]
        position = {future.key: i for i, future in enumerate(futures)}
        runs: dict[int, SeedRun] = {}
        for future in as_completed(futures, loop=client.loop):
            runs[position[future.key]] = run = future.result()
            if on_run:
                on_run(run)
        return [runs[i] for i in range(len(jobs))]
    finally:
        client.close()  # releases the futures: the scheduler drops whatever is left after an error


def run_many_revm(
    jobs: list[tuple[Any, int]],
    workers: int | None = None,
    on_run: Callable[[SeedRun], None] | None = None,
    dask: str | None = None,
) -> list[SeedRun]:
    """(scenario, seed) jobs on revm, `workers` processes at once (default: one per core; 1 runs
    them here, one after another), each on a chain of its own; the runs in the jobs' order.
    With `dask` (a scheduler's address, e.g. tcp://10.0.0.5:8786) they run on that Dask cluster
    instead, for sweeps that outgrow one machine; the figures are the same, seed for seed."""
    check_cluster_options(workers, dask)
    if dask is not None:
        return _run_on_dask(jobs, dask, on_run)
    workers = workers or os.cpu_count() or 1
    runs: list[SeedRun] = []
    if workers == 1:
        for scenario, seed in jobs:
            runs.append(run_seed_on_revm(scenario, seed))
            if on_run:
                on_run(runs[-1])
        return runs
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_seed_on_revm, scenario, seed) for scenario, seed in jobs]
        for future in futures:
            runs.append(future.result())
            if on_run:
                on_run(runs[-1])
    return runs


def run_sweep_revm(
    scenario: Any,
    seeds: list[int],
    workers: int | None = None,
    on_run: Callable[[SeedRun], None] | None = None,
    dask: str | None = None,
) -> list[SeedRun]:
    """The seeds of one scenario on revm (see `run_many_revm`), on a Dask cluster with `dask`; the runs in seed order."""
    return run_many_revm([(scenario, seed) for seed in seeds], workers, on_run, dask)


def sweep_table(summary: SweepSummary, runs: list[SeedRun]) -> str:
    lines = [f"{'seed':>6} {'bad debt $':>14} {'% peak OI':>10} {'liqs':>6} {'liquidated $':>16} {'left':>5} {'wall s':>7}"]
    for r in runs:
        lines.append(
            f"{r.seed:>6} {r.bad_debt_usd:>14,.2f} {r.bad_debt_share_of_peak_oi * 100:>9.3f}% {r.liquidations:>6} "
            f"{r.liquidated_notional_usd:>16,.0f} {r.still_liquidatable_at_end:>5} {r.wall_seconds:>7.1f}"
        )
    lines.append("")
    lines.append(
        f"{summary.scenario}, {len(runs)} seeds: bad debt mean ${summary.bad_debt_mean_usd:,.2f}, "
        f"p50 ${summary.bad_debt_p50_usd:,.2f}, p95 ${summary.bad_debt_p95_usd:,.2f} "
        f"({summary.share_of_peak_oi_p95 * 100:.3f}% of peak OI), max ${summary.bad_debt_max_usd:,.2f}; "
        f"{summary.runs_with_bad_debt} runs with bad debt, {summary.runs_with_accounts_left} with accounts left liquidatable"
    )
    lines.append("")
    lines.append(f"{'p95 over the runs (bootstrap 95% interval)':<44} {'value $':>14} {'interval $':>29}")
    for label, q in (
        ("VaR95: bad debt + negative equity left open", summary.var95_shortfall),
        ("LaR95: notional liquidated", summary.lar95_liquidated),
        ("pool value's worst drawdown", summary.pool_drawdown95),
        ("insurance fund depletion", summary.insurance_depletion95),
    ):
        if q is not None:
            lines.append(f"{label:<44} {q.value:>14,.2f} {f'[{q.low:,.2f}, {q.high:,.2f}]':>29}")
    return "\n".join(lines)


def write_sweep(summary: SweepSummary, runs: list[SeedRun], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "sweep.json"
    path.write_text(json.dumps({"summary": asdict(summary), "runs": [asdict(r) for r in runs]}, indent=2))
    return path


def parse_seeds(text: str) -> list[int]:
    """'1-20' or '1,5,9' or '7' -> seeds; a one-line error naming the value otherwise."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"sweep: --seeds must look like 1-20 or 1,5,9, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"sweep: --seeds must list non-negative seeds, got {text!r}")
    return seeds
