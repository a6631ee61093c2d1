"""Price paths for the crash simulator, and the rounds a Chainlink node would publish from them.

Everything here is pure Python (numpy and the csv module); nothing touches a chain.

Price paths
===========
A path is a `PricePath`: samples `(timestamp, price)` on a uniform grid `step_seconds` apart,
timestamps in integer Unix seconds, prices in USD as float. Every random path draws from
`numpy.random.Generator(PCG64(seed))` in a fixed order, so one seed always gives the same path
and different seeds give different paths. A generated path runs from `start_timestamp` to
`start_timestamp + duration_seconds` inclusive (`duration_seconds / step_seconds + 1` samples);
`duration_seconds` must be a multiple of `step_seconds`.

Rates are per year of 365 days (`SECONDS_PER_YEAR`); a step of `step_seconds` is
`dt = step_seconds / SECONDS_PER_YEAR` years.

- Geometric Brownian motion (`GbmConfig`, `gbm_path`): dS/S = mu dt + sigma dW.
  `mu` is the annualised drift, `sigma` the annualised volatility, `s0` the first price. Sampled
  exactly: log S advances by (mu - sigma^2 / 2) dt + sigma sqrt(dt) Z, Z standard normal.
- Jump diffusion, Merton 1976 (`JumpDiffusionConfig`, `jump_diffusion_path`): GBM plus jumps
  arriving as a Poisson process with `jump_intensity` jumps per year; each jump multiplies the
  price by exp(Y), Y ~ Normal(`jump_mean`, `jump_std`) (so `jump_mean` is the mean log jump,
  -0.1 is a drop of about 9.5%). The drift is compensated, mu - jump_intensity * k with
  k = exp(jump_mean + jump_std^2 / 2) - 1, so E[S_t] = s0 exp(mu t) as in GBM. Per step:
  N ~ Poisson(jump_intensity dt) jumps, whose log sizes sum to N jump_mean + sqrt(N) jump_std Z'.
- Volatility clustering, GARCH(1,1) (`GarchConfig`, `garch_path`): the per-step log return is
  r_t = mu dt - h_t / 2 + sqrt(h_t) Z_t with conditional variance
  h_t = omega + alpha (r_{t-1} - mu dt + h_{t-1} / 2)^2 + beta h_{t-1}, i.e. alpha times the last
  squared shock plus beta times the last variance. `long_run_volatility` is the annualised
  unconditional volatility; omega = (1 - alpha - beta) long_run_volatility^2 dt, so the
  unconditional per-step variance is long_run_volatility^2 dt. Requires alpha, beta >= 0 and
  alpha + beta < 1; the first step starts at the unconditional variance.
- Scripted shock (`ShockConfig`, `shock_path`): flat at `s0` for `flat_before_seconds`, then a
  move of `shock_return` (-0.5 = -50%) spread over `shock_duration_seconds` at a constant
  per-step return (linear in log price), then flat at the bottom for `flat_after_seconds`
  (0 ends the path at the bottom). No randomness.
- Replay of 10-minute OHLC bars (`ReplayConfig`, `replay_path`), e.g.
  `data_file("eth_usd_10min_2020-03-12.csv")` (columns time_utc, open, high, low, close,
  volume_eth, trades). Timestamps are the bars' real UTC times. A bar of `m = bar / step_seconds`
  samples (m >= 4 required) visits four waypoints at sample indices 0, round((m-1)/3),
  round(2(m-1)/3) and m-1, linearly in price between them:

      open -> the extreme nearer the open -> the other extreme -> close

  If high and low are equally far from the open, the bar's direction decides, as most
  backtesters do: a falling bar (close < open) goes open-high-low-close, any other open-low-
  high-close. With 60 s steps in a 600 s bar the waypoints fall at +0, +180, +360 and +540 s;
  the next bar's open follows at +600 s. Every bar's high and low are therefore sampled exactly.

Chainlink publication
=====================
`publish_rounds(path, PublisherConfig(...))` emits the rounds an off-chain Chainlink node would
publish, one `PublishedRound` per round:

- the first sample is always published (reason "initial");
- a sample is published when its answer differs from the last *published* answer by at least
  `deviation_threshold` (default 0.005 = 0.5%) of that answer (reason "deviation"); the test is
  exact integer arithmetic on the answers, with the threshold read as the decimal it was
  written as (0.005 is exactly 1/200);
- otherwise a sample is published when at least `heartbeat_seconds` (default 3,600) have passed
  since the last published sample (reason "heartbeat"); on a grid the round comes at the first
  sample at or after the heartbeat expires;
- each round lands on chain `publication_lag_seconds` after the sample it reports
  (`round_time = observed_time + lag`; the node's timers run on observed times).

Answers are integers with `decimals` decimals (default 8, as Chainlink's USD feeds): the price
rounded half up, via its shortest decimal representation (195.21 -> 19_521_000_000), and never
below 1 for a positive price.

Gas prices
==========
`read_gas_prices(data_file("gas_price_10min_2020-03-12.csv"))` returns a `GasPriceSeries` of
`GasPriceBar`s (transaction count and mean, 30th/60th/90th-percentile and max gas price in gwei
per 10-minute bar); `series.at(timestamp)` is the bar that contains the timestamp.

Data files and errors
=====================
`data_dir()` is `$MARGINSIM_DATA_DIR` if set, else ../shared/data next to the repository.
Every bad configuration field, missing file and malformed row raises a one-line `ValueError`
(a `FeedDataError` for files) prefixed "feeds: " that names the field, or the file and line.
"""

from __future__ import annotations

import bisect
import csv
import math
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, NamedTuple, NoReturn, overload

import numpy as np
from numpy.random import PCG64, Generator

SECONDS_PER_YEAR = 31_536_000  # 365 days; the unit of every annualised rate (mu, sigma, jump_intensity)
DATA_DIR_ENV = "MARGINSIM_DATA_DIR"  # overrides the location of the shared market data
MIN_SAMPLES_PER_BAR = 4  # open, two extremes and close each need a sample of their own

PublicationReason = Literal["initial", "deviation", "heartbeat"]

PRICE_COLUMNS = ("time_utc", "open", "high", "low", "close", "volume_eth", "trades")
GAS_COLUMNS = ("time_utc", "tx_count", "mean_gwei", "p30_gwei", "p60_gwei", "p90_gwei", "max_gwei")


class FeedDataError(ValueError):
    """A market data file is missing or malformed; the message is one line naming the file."""


# ---------------------------------------------------------------------------------------------
# Data location
# ---------------------------------------------------------------------------------------------


def data_dir() -> Path:
    """The shared market data directory: $MARGINSIM_DATA_DIR if set, else <repo>/../shared/data."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        directory = Path(override).expanduser()
        if not directory.is_dir():
            raise FeedDataError(f"feeds: {DATA_DIR_ENV} is not a directory: {directory}")
        return directory
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def data_file(name: str) -> Path:
    """The path of a file in the shared market data directory, e.g. "eth_usd_10min_2020-03-12.csv"."""
    return data_dir() / name


# ---------------------------------------------------------------------------------------------
# Validation helpers: one line, "feeds: <field> must be <rule>, got <value>"
# ---------------------------------------------------------------------------------------------


def _fail(field_name: str, rule: str, value: Any) -> NoReturn:
    raise ValueError(f"feeds: {field_name} must be {rule}, got {value}")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_integer(field_name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        _fail(field_name, "an integer", value)
    if value < minimum:
        _fail(field_name, f">= {minimum}", value)


def _check_number(field_name: str, value: Any) -> None:
    if not _is_number(value):
        _fail(field_name, "a finite number", value)


def _check_non_negative(field_name: str, value: Any) -> None:
    _check_number(field_name, value)
    if value < 0:
        _fail(field_name, ">= 0", value)


def _check_positive(field_name: str, value: Any) -> None:
    _check_number(field_name, value)
    if value <= 0:
        _fail(field_name, "> 0", value)


def _check_grid(s0: Any, step_seconds: Any, duration_seconds: Any, seed: Any, start_timestamp: Any) -> None:
    """The fields every generated path shares."""
    _check_positive("s0", s0)
    _check_integer("step_seconds", step_seconds, 1)
    _check_integer("duration_seconds", duration_seconds, 1)
    if duration_seconds % step_seconds != 0:
        _fail("duration_seconds", f"a multiple of step_seconds ({step_seconds})", duration_seconds)
    _check_integer("seed", seed, 0)
    _check_integer("start_timestamp", start_timestamp, 0)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GbmConfig:
    """Geometric Brownian motion; `mu` and `sigma` annualised, `s0` in USD."""

    mu: float  # annualised drift: E[S_t] = s0 exp(mu t), t in years
    sigma: float  # annualised volatility of log returns
    s0: float  # first price, USD
    step_seconds: int = 60  # time between samples
    duration_seconds: int = 86_400  # length of the path; a multiple of step_seconds
    seed: int = 0  # PCG64 seed
    start_timestamp: int = 0  # Unix seconds of the first sample

    def __post_init__(self) -> None:
        _check_number("mu", self.mu)
        _check_non_negative("sigma", self.sigma)
        _check_grid(self.s0, self.step_seconds, self.duration_seconds, self.seed, self.start_timestamp)


@dataclass(frozen=True)
class JumpDiffusionConfig:
    """Merton jump diffusion: GBM plus Poisson jumps with normally distributed log sizes."""

    mu: float  # annualised drift, compensated for the jumps: E[S_t] = s0 exp(mu t)
    sigma: float  # annualised volatility of the diffusion part
    jump_intensity: float  # expected jumps per year
    jump_mean: float  # mean log jump size (-0.1: a drop of about 9.5%)
    jump_std: float  # standard deviation of the log jump size
    s0: float  # first price, USD
    step_seconds: int = 60
    duration_seconds: int = 86_400
    seed: int = 0
    start_timestamp: int = 0

    def __post_init__(self) -> None:
        _check_number("mu", self.mu)
        _check_non_negative("sigma", self.sigma)
        _check_non_negative("jump_intensity", self.jump_intensity)
        _check_number("jump_mean", self.jump_mean)
        _check_non_negative("jump_std", self.jump_std)
        _check_grid(self.s0, self.step_seconds, self.duration_seconds, self.seed, self.start_timestamp)


@dataclass(frozen=True)
class GarchConfig:
    """GARCH(1,1) volatility clustering around an annualised long-run volatility."""

    long_run_volatility: float  # annualised unconditional volatility of log returns
    alpha: float  # weight of the last squared shock in the next variance
    beta: float  # weight of the last variance in the next variance; alpha + beta < 1
    s0: float  # first price, USD
    mu: float = 0.0  # annualised drift: E[S_t] = s0 exp(mu t)
    step_seconds: int = 60
    duration_seconds: int = 86_400
    seed: int = 0
    start_timestamp: int = 0

    def __post_init__(self) -> None:
        _check_positive("long_run_volatility", self.long_run_volatility)
        _check_non_negative("alpha", self.alpha)
        _check_non_negative("beta", self.beta)
        if self.alpha + self.beta >= 1:
            _fail("alpha + beta", "< 1", self.alpha + self.beta)
        _check_number("mu", self.mu)
        _check_grid(self.s0, self.step_seconds, self.duration_seconds, self.seed, self.start_timestamp)


@dataclass(frozen=True)
class ShockConfig:
    """A scripted move: flat, then `shock_return` over `shock_duration_seconds`, then flat."""

    s0: float  # price before the shock, USD
    shock_return: float = -0.5  # total move over the shock, -0.5 = -50%; > -1
    shock_duration_seconds: int = 1_800  # a multiple of step_seconds
    flat_before_seconds: int = 0  # flat at s0 before the shock; a multiple of step_seconds
    flat_after_seconds: int = 0  # flat at the bottom after the shock (0: the path ends there)
    step_seconds: int = 60
    start_timestamp: int = 0

    def __post_init__(self) -> None:
        _check_positive("s0", self.s0)
        _check_number("shock_return", self.shock_return)
        if self.shock_return <= -1:
            _fail("shock_return", "> -1", self.shock_return)
        _check_integer("step_seconds", self.step_seconds, 1)
        for name in ("shock_duration_seconds", "flat_before_seconds", "flat_after_seconds"):
            value = getattr(self, name)
            _check_integer(name, value, 1 if name == "shock_duration_seconds" else 0)
            if value % self.step_seconds != 0:
                _fail(name, f"a multiple of step_seconds ({self.step_seconds})", value)
        _check_integer("start_timestamp", self.start_timestamp, 0)

    @property
    def duration_seconds(self) -> int:
        return self.flat_before_seconds + self.shock_duration_seconds + self.flat_after_seconds


@dataclass(frozen=True)
class ReplayConfig:
    """Replay of an OHLC bar file, `step_seconds` between samples (at least 4 samples a bar)."""

    path: Path  # a CSV with columns time_utc, open, high, low, close, volume_eth, trades
    step_seconds: int = 60  # must divide the bar length into at least 4 samples

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)):
            _fail("path", "a file path", self.path)
        object.__setattr__(self, "path", Path(self.path))
        if not self.path.is_file():
            raise FeedDataError(f"feeds: price file not found: {self.path}")
        _check_integer("step_seconds", self.step_seconds, 1)


@dataclass(frozen=True)
class PublisherConfig:
    """When a Chainlink node publishes a round, and how its answer is encoded."""

    deviation_threshold: float = 0.005  # fraction of the last published answer (0.005 = 0.5%)
    heartbeat_seconds: int = 3_600  # longest time between rounds
    decimals: int = 8  # answer = price * 10**decimals, rounded half up
    publication_lag_seconds: int = 0  # from observing a price to its round being on chain

    def __post_init__(self) -> None:
        _check_positive("deviation_threshold", self.deviation_threshold)
        _check_integer("heartbeat_seconds", self.heartbeat_seconds, 1)
        _check_integer("decimals", self.decimals, 0)
        _check_integer("publication_lag_seconds", self.publication_lag_seconds, 0)


PathConfig = GbmConfig | JumpDiffusionConfig | GarchConfig | ShockConfig | ReplayConfig


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


class PriceSample(NamedTuple):
    timestamp: int  # Unix seconds
    price: float  # USD


@dataclass(frozen=True, eq=False)
class PricePath(Sequence[PriceSample]):
    """Samples on a uniform grid: a read-only sequence of `PriceSample(timestamp, price)`."""

    timestamps: np.ndarray  # int64 Unix seconds, strictly increasing by step_seconds
    prices: np.ndarray  # float64 USD, positive
    step_seconds: int

    def __post_init__(self) -> None:
        _check_integer("step_seconds", self.step_seconds, 1)
        timestamps = np.array(self.timestamps, dtype=np.int64)
        prices = np.array(self.prices, dtype=np.float64)
        if timestamps.ndim != 1 or timestamps.shape != prices.shape or len(timestamps) == 0:
            _fail("prices", f"a non-empty 1-d array as long as timestamps ({timestamps.shape})", prices.shape)
        if len(timestamps) > 1 and np.any(np.diff(timestamps) != self.step_seconds):
            _fail("timestamps", f"spaced by step_seconds ({self.step_seconds})", "an irregular grid")
        if not np.all(np.isfinite(prices) & (prices > 0)):
            bad = prices[~(np.isfinite(prices) & (prices > 0))][0]
            _fail("prices", "positive and finite", bad)
        timestamps.flags.writeable = False
        prices.flags.writeable = False
        object.__setattr__(self, "timestamps", timestamps)
        object.__setattr__(self, "prices", prices)

    def __len__(self) -> int:
        return len(self.timestamps)

    @overload
    def __getitem__(self, index: int) -> PriceSample: ...

    @overload
    def __getitem__(self, index: slice) -> list[PriceSample]: ...

    def __getitem__(self, index: int | slice) -> PriceSample | list[PriceSample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return PriceSample(int(self.timestamps[index]), float(self.prices[index]))

    def __iter__(self) -> Iterator[PriceSample]:
        for timestamp, price in zip(self.timestamps.tolist(), self.prices.tolist(), strict=False):
            yield PriceSample(timestamp, price)

    def starting_at(self, start_timestamp: int) -> PricePath:
        """The same prices with the first sample moved to `start_timestamp` (e.g. a chain's clock)."""
        _check_integer("start_timestamp", start_timestamp, 0)
        offset = start_timestamp - int(self.timestamps[0])
        return PricePath(self.timestamps + offset, self.prices, self.step_seconds)


def _grid(start_timestamp: int, step_seconds: int, duration_seconds: int) -> np.ndarray:
    steps = duration_seconds // step_seconds
    return start_timestamp + step_seconds * np.arange(steps + 1, dtype=np.int64)


def _path_from_log_returns(config: GbmConfig | JumpDiffusionConfig | GarchConfig, log_returns: np.ndarray) -> PricePath:
    log_prices = math.log(config.s0) + np.concatenate(([0.0], np.cumsum(log_returns)))
    prices = np.exp(log_prices)
    prices[0] = config.s0
    timestamps = _grid(config.start_timestamp, config.step_seconds, config.duration_seconds)
    return PricePath(timestamps, prices, config.step_seconds)


def gbm_path(config: GbmConfig) -> PricePath:
    """Geometric Brownian motion sampled exactly on the grid."""
    steps = config.duration_seconds // config.step_seconds
    dt = config.step_seconds / SECONDS_PER_YEAR
    normals = Generator(PCG64(config.seed)).standard_normal(steps)
    log_returns = (config.mu - config.sigma**2 / 2) * dt + config.sigma * math.sqrt(dt) * normals
    return _path_from_log_returns(config, log_returns)


def jump_diffusion_path(config: JumpDiffusionConfig) -> PricePath:
    """Merton jump diffusion: per step, diffusion plus a Poisson number of log-normal jumps."""
    steps = config.duration_seconds // config.step_seconds
    dt = config.step_seconds / SECONDS_PER_YEAR
    rng = Generator(PCG64(config.seed))
    diffusion_normals = rng.standard_normal(steps)
    jump_counts = rng.poisson(config.jump_intensity * dt, steps)
    jump_normals = rng.standard_normal(steps)
    mean_relative_jump = math.exp(config.jump_mean + config.jump_std**2 / 2) - 1  # k in Merton's notation
    drift = (config.mu - config.sigma**2 / 2 - config.jump_intensity * mean_relative_jump) * dt
    jump_log_sizes = jump_counts * config.jump_mean + np.sqrt(jump_counts) * config.jump_std * jump_normals
    log_returns = drift + config.sigma * math.sqrt(dt) * diffusion_normals + jump_log_sizes
    return _path_from_log_returns(config, log_returns)


def garch_path(config: GarchConfig) -> PricePath:
    """GARCH(1,1) log returns: variance reacts to the last shock (alpha) and persists (beta)."""
    steps = config.duration_seconds // config.step_seconds
    dt = config.step_seconds / SECONDS_PER_YEAR
    normals = Generator(PCG64(config.seed)).standard_normal(steps).tolist()
    long_run_variance = config.long_run_volatility**2 * dt  # per step
    omega = (1 - config.alpha - config.beta) * long_run_variance
    variances = [0.0] * steps
    shocks = [0.0] * steps
    variance = long_run_variance
    for index, normal in enumerate(normals):
        shock = math.sqrt(variance) * normal
        variances[index] = variance
        shocks[index] = shock
        variance = omega + config.alpha * shock * shock + config.beta * variance
    log_returns = config.mu * dt - np.asarray(variances) / 2 + np.asarray(shocks)
    return _path_from_log_returns(config, log_returns)


def shock_path(config: ShockConfig) -> PricePath:
    """Flat, a constant per-step return summing to `shock_return`, then flat at the bottom."""
    step = config.step_seconds
    before = config.flat_before_seconds // step
    shock = config.shock_duration_seconds // step
    after = config.flat_after_seconds // step
    bottom = config.s0 * (1 + config.shock_return)
    shock_log_prices = np.linspace(math.log(config.s0), math.log(bottom), shock + 1)
    prices = np.concatenate((np.full(before, config.s0), np.exp(shock_log_prices), np.full(after, bottom)))
    prices[before] = config.s0
    prices[before + shock :] = bottom
    return PricePath(_grid(config.start_timestamp, step, config.duration_seconds), prices, step)


def _waypoint_indices(samples_per_bar: int) -> tuple[int, int, int, int]:
    last = samples_per_bar - 1
    return 0, round(last / 3), round(2 * last / 3), last


def intra_bar_waypoints(open_price: float, high: float, low: float, close: float) -> tuple[float, float, float, float]:
    """The order a bar's prices are visited: open, the extreme nearer the open, the other, close.

    Equidistant extremes: a falling bar (close < open) visits high first, any other bar low first.
    """
    distance_to_high = high - open_price
    distance_to_low = open_price - low
    high_first = distance_to_high < distance_to_low or (distance_to_high == distance_to_low and close < open_price)
    if high_first:
        return open_price, high, low, close
    return open_price, low, high, close


def replay_path(config: ReplayConfig) -> PricePath:
    """Sample a bar file every `step_seconds`, each bar through its waypoints (module docstring)."""
    bars = read_price_bars(config.path)
    bar_seconds = _bar_seconds(config.path, [bar.bar_start for bar in bars])
    samples_per_bar, remainder = divmod(bar_seconds, config.step_seconds)
    if remainder != 0 or samples_per_bar < MIN_SAMPLES_PER_BAR:
        _fail(
            "step_seconds",
            f"a divisor of the bar length ({bar_seconds} s) giving at least {MIN_SAMPLES_PER_BAR} samples a bar",
            config.step_seconds,
        )
    waypoint_indices = _waypoint_indices(samples_per_bar)
    sample_indices = np.arange(samples_per_bar)
    prices = np.concatenate(
        [np.interp(sample_indices, waypoint_indices, intra_bar_waypoints(bar.open, bar.high, bar.low, bar.close)) for bar in bars]
    )
    start = bars[0].bar_start
    duration = len(bars) * bar_seconds - config.step_seconds
    return PricePath(_grid(start, config.step_seconds, duration), prices, config.step_seconds)


def generate_path(config: PathConfig) -> PricePath:
    """The path a configuration describes, whichever model it is."""
    if isinstance(config, GbmConfig):
        return gbm_path(config)
    if isinstance(config, JumpDiffusionConfig):
        return jump_diffusion_path(config)
    if isinstance(config, GarchConfig):
        return garch_path(config)
    if isinstance(config, ShockConfig):
        return shock_path(config)
    if isinstance(config, ReplayConfig):
        return replay_path(config)
    raise TypeError(f"feeds: not a path configuration: {type(config).__name__}")


# ---------------------------------------------------------------------------------------------
# Chainlink publisher
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedRound:
    """One round as a Chainlink aggregator would store it."""

    round_id: int  # 1, 2, ... in publication order
    round_time: int  # on-chain updatedAt: observed_time + publication lag
    observed_time: int  # timestamp of the path sample the round reports
    answer: int  # price * 10**decimals, rounded half up
    reason: PublicationReason


def to_answer(price: float, decimals: int = 8) -> int:
    """A positive USD price as a Chainlink answer: rounded half up, never below 1."""
    if not _is_number(price) or price <= 0:
        _fail("price", "positive and finite", price)
    scaled = Decimal(repr(float(price))).scaleb(decimals)
    return max(1, int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def _threshold_fraction(deviation_threshold: float) -> Fraction:
    # The decimal the threshold was written as: Fraction(0.005) would be the binary double, a hair
    # above 1/200, and a move of exactly 0.5% would then fail to trigger.
    return Fraction(repr(float(deviation_threshold)))


def publish_rounds(path: Iterable[tuple[int, float]], config: PublisherConfig = PublisherConfig()) -> list[PublishedRound]:
    """The rounds a Chainlink node publishes while watching `path` (rule in the module docstring)."""
    threshold = _threshold_fraction(config.deviation_threshold)
    rounds: list[PublishedRound] = []
    previous_time: int | None = None
    last_answer = 0
    last_observed_time = 0
    for timestamp, price in path:
        timestamp = int(timestamp)
        if previous_time is not None and timestamp <= previous_time:
            _fail("sample timestamps", "strictly increasing", f"{timestamp} after {previous_time}")
        previous_time = timestamp
        answer = to_answer(price, config.decimals)
        reason: PublicationReason | None
        if not rounds:
            reason = "initial"
        elif abs(answer - last_answer) * threshold.denominator >= threshold.numerator * last_answer:
            reason = "deviation"
        elif timestamp - last_observed_time >= config.heartbeat_seconds:
            reason = "heartbeat"
        else:
            reason = None
        if reason is not None:
            rounds.append(PublishedRound(len(rounds) + 1, timestamp + config.publication_lag_seconds, timestamp, answer, reason))
            last_answer = answer
            last_observed_time = timestamp
    return rounds


# ---------------------------------------------------------------------------------------------
# Bar files
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceBar:
    """One OHLC bar of a price file; prices in USD."""

    bar_start: int  # Unix seconds
    open: float
    high: float
    low: float
    close: float
    volume_eth: float  # ETH traded in the bar
    trades: int  # trades in the bar


@dataclass(frozen=True)
class GasPriceBar:
    """Ethereum gas price statistics over one bar, in gwei."""

    bar_start: int  # Unix seconds
    tx_count: int  # transactions mined in the bar
    mean_gwei: float
    p30_gwei: float  # 30th percentile
    p60_gwei: float  # 60th percentile
    p90_gwei: float  # 90th percentile
    max_gwei: float


@dataclass(frozen=True)
class GasPriceSeries:
    """Contiguous gas price bars; `at(timestamp)` finds the bar a timestamp falls in."""

    bars: tuple[GasPriceBar, ...]
    bar_seconds: int
    _bar_starts: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_bar_starts", [bar.bar_start for bar in self.bars])

    @property
    def start(self) -> int:
        return self.bars[0].bar_start

    @property
    def end(self) -> int:
        """The first second after the last bar."""
        return self.bars[-1].bar_start + self.bar_seconds

    def at(self, timestamp: int) -> GasPriceBar:
        """The bar containing `timestamp`: bar_start <= timestamp < bar_start + bar_seconds."""
        if not self.start <= timestamp < self.end:
            raise ValueError(f"feeds: timestamp {timestamp} is outside the gas series [{self.start}, {self.end})")
        return self.bars[bisect.bisect_right(self._bar_starts, timestamp) - 1]


def _read_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every data row of a CSV with exactly `columns` as its header."""
    path = Path(path)
    try:
        handle = path.open(newline="")
    except FileNotFoundError:
        raise FeedDataError(f"feeds: data file not found: {path}") from None
    except OSError as error:
        raise FeedDataError(f"feeds: cannot read {path}: {error.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != columns:
            header = ",".join(reader.fieldnames or ())
            raise FeedDataError(f"feeds: {path}: expected columns {','.join(columns)}, got {header}")
        rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise FeedDataError(f"feeds: {path}: no data rows")
    return rows


def _parse_time(path: Path, line: int, text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise FeedDataError(f"feeds: {path}:{line}: time_utc is not an ISO 8601 time: {text}") from None
    if moment.tzinfo is None:
        raise FeedDataError(f"feeds: {path}:{line}: time_utc has no time zone: {text}")
    return int(moment.timestamp())


def _parse_number(path: Path, line: int, column: str, text: str | None) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FeedDataError(f"feeds: {path}:{line}: {column} is not a number: {text}") from None
    if not math.isfinite(value) or value < 0:
        raise FeedDataError(f"feeds: {path}:{line}: {column} must be finite and >= 0, got {text}")
    return value


def _parse_count(path: Path, line: int, column: str, text: str | None) -> int:
    try:
        value = int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FeedDataError(f"feeds: {path}:{line}: {column} is not an integer: {text}") from None
    if value < 0:
        raise FeedDataError(f"feeds: {path}:{line}: {column} must be >= 0, got {text}")
    return value


def _bar_seconds(path: Path, bar_starts: list[int]) -> int:
    """The common bar length; bars must be contiguous and equally long."""
    if len(bar_starts) < 2:
        raise FeedDataError(f"feeds: {path}: needs at least 2 bars to know the bar length")
    lengths = {later - earlier for earlier, later in zip(bar_starts, bar_starts[1:], strict=False)}
    if len(lengths) != 1 or min(lengths) <= 0:
        raise FeedDataError(f"feeds: {path}: bars must be equally spaced and increasing, got spacings {sorted(lengths)} s")
    return lengths.pop()


def read_price_bars(path: Path) -> tuple[PriceBar, ...]:
    """The OHLC bars of a price file; checks low <= open, close <= high and low > 0."""
    bars = []
    for line, row in _read_rows(path, PRICE_COLUMNS):
        bar = PriceBar(
            bar_start=_parse_time(path, line, row["time_utc"]),
            open=_parse_number(path, line, "open", row["open"]),
            high=_parse_number(path, line, "high", row["high"]),
            low=_parse_number(path, line, "low", row["low"]),
            close=_parse_number(path, line, "close", row["close"]),
            volume_eth=_parse_number(path, line, "volume_eth", row["volume_eth"]),
            trades=_parse_count(path, line, "trades", row["trades"]),
        )
        if not 0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high:
            raise FeedDataError(
                f"feeds: {path}:{line}: needs 0 < low <= open, close <= high, got "
                f"open {bar.open} high {bar.high} low {bar.low} close {bar.close}"
            )
        bars.append(bar)
    return tuple(bars)


def read_gas_prices(path: Path) -> GasPriceSeries:
    """The gas price bars of a gas file (columns time_utc, tx_count, mean/p30/p60/p90/max_gwei)."""
    bars = []
    for line, row in _read_rows(path, GAS_COLUMNS):
        bars.append(
            GasPriceBar(
                bar_start=_parse_time(path, line, row["time_utc"]),
                tx_count=_parse_count(path, line, "tx_count", row["tx_count"]),
                mean_gwei=_parse_number(path, line, "mean_gwei", row["mean_gwei"]),
                p30_gwei=_parse_number(path, line, "p30_gwei", row["p30_gwei"]),
                p60_gwei=_parse_number(path, line, "p60_gwei", row["p60_gwei"]),
                p90_gwei=_parse_number(path, line, "p90_gwei", row["p90_gwei"]),
                max_gwei=_parse_number(path, line, "max_gwei", row["max_gwei"]),
            )
        )
    return GasPriceSeries(tuple(bars), _bar_seconds(Path(path), [bar.bar_start for bar in bars]))
