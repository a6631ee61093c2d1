"""Price paths, the Chainlink publisher and the market data readers of marginsim.feeds.

Statistical tests use long paths and tolerances of several standard errors of the estimator, so
they are fast, deterministic (fixed seeds) and would fail if the model were wrong. The only
hard-coded market facts are the ones in /work/shared/data/README.md.
"""

import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from marginsim import feeds
from marginsim.feeds import (
    SECONDS_PER_YEAR,
    FeedDataError,
    GarchConfig,
    GbmConfig,
    JumpDiffusionConfig,
    PricePath,
    PublisherConfig,
    ReplayConfig,
    ShockConfig,
    data_dir,
    data_file,
    garch_path,
    gbm_path,
    generate_path,
    jump_diffusion_path,
    publish_rounds,
    read_gas_prices,
    read_price_bars,
    replay_path,
    shock_path,
    to_answer,
)

# Facts from the data README: Black Thursday, 144 ten-minute bars, 195.21 open, 101.01 low, 107.52 close.
BLACK_THURSDAY_PRICES = "eth_usd_10min_2020-03-12.csv"
BLACK_THURSDAY_GAS = "gas_price_10min_2020-03-12.csv"
BLACK_THURSDAY_START = int(datetime(2020, 3, 12, tzinfo=UTC).timestamp())
BARS_PER_DAY = 144
BAR_SECONDS = 600
DAY_OPEN, DAY_LOW, DAY_CLOSE = 195.21, 101.01, 107.52

Z_TOLERANCE = 5  # standard errors allowed between an estimate and the model's true value

PRICE_HEADER = "time_utc,open,high,low,close,volume_eth,trades\n"
GAS_HEADER = "time_utc,tx_count,mean_gwei,p30_gwei,p60_gwei,p90_gwei,max_gwei\n"


def log_returns(path: PricePath) -> np.ndarray:
    return np.diff(np.log(path.prices))


def lag_one_autocorrelation(values: np.ndarray) -> float:
    centred = values - values.mean()
    return float((centred[1:] * centred[:-1]).mean() / centred.var())


def flat_path(price: float, step_seconds: int, duration_seconds: int) -> list[tuple[int, float]]:
    return [(timestamp, price) for timestamp in range(0, duration_seconds + 1, step_seconds)]


@pytest.fixture
def make_price_file(tmp_path):
    """Write OHLC bars (open, high, low, close), 10 minutes apart from Black Thursday's start."""

    def make(bars, name="bars.csv"):
        rows = [
            f"{datetime.fromtimestamp(BLACK_THURSDAY_START + index * BAR_SECONDS, UTC):%Y-%m-%dT%H:%M:%SZ},"
            f"{open_price},{high},{low},{close},1.5,3\n"
            for index, (open_price, high, low, close) in enumerate(bars)
        ]
        path = tmp_path / name
        path.write_text(PRICE_HEADER + "".join(rows))
        return path

    return make


@pytest.fixture(scope="module")
def black_thursday_path():
    return replay_path(ReplayConfig(data_file(BLACK_THURSDAY_PRICES)))


@pytest.fixture(scope="module")
def black_thursday_rounds(black_thursday_path):
    return publish_rounds(black_thursday_path)


# ---------------------------------------------------------------------------------------------
# Geometric Brownian motion
# ---------------------------------------------------------------------------------------------


def test_gbm__long_path__recovers_drift_and_volatility():
    mu, sigma = 0.3, 0.8
    years = 1_000  # drift is only identified by total time: its standard error is sigma / sqrt(years)
    config = GbmConfig(mu, sigma, 2_000.0, step_seconds=86_400, duration_seconds=years * SECONDS_PER_YEAR, seed=7)
    returns = log_returns(gbm_path(config))
    dt = config.step_seconds / SECONDS_PER_YEAR

    sigma_estimate = returns.std(ddof=1) / math.sqrt(dt)
    sigma_standard_error = sigma / math.sqrt(2 * len(returns))
    assert abs(sigma_estimate - sigma) < Z_TOLERANCE * sigma_standard_error

    mu_estimate = returns.mean() / dt + sigma_estimate**2 / 2
    mu_standard_error = sigma / math.sqrt(years)
    assert abs(mu_estimate - mu) < Z_TOLERANCE * mu_standard_error


def test_gbm__grid__starts_at_s0_and_spans_duration():
    config = GbmConfig(0.0, 0.5, 2_000.0, step_seconds=60, duration_seconds=3_600, start_timestamp=1_700_000_000)
    path = gbm_path(config)
    assert len(path) == 61
    assert path[0] == (1_700_000_000, 2_000.0)
    assert path[-1].timestamp == 1_700_003_600
    assert np.all(np.diff(path.timestamps) == 60)


def test_gbm__zero_volatility__grows_at_exactly_mu():
    config = GbmConfig(0.5, 0.0, 100.0, step_seconds=3_600, duration_seconds=SECONDS_PER_YEAR)
    assert gbm_path(config)[-1].price == pytest.approx(100.0 * math.exp(0.5), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Jump diffusion
# ---------------------------------------------------------------------------------------------


def test_jump_diffusion__long_path__recovers_jump_frequency_size_and_diffusion():
    sigma, jump_intensity, jump_mean, jump_std = 0.5, 100.0, -0.10, 0.02
    years = 20
    config = JumpDiffusionConfig(
        0.0, sigma, jump_intensity, jump_mean, jump_std, 2_000.0,
        step_seconds=600, duration_seconds=years * SECONDS_PER_YEAR, seed=11,
    )  # fmt: skip
    returns = log_returns(jump_diffusion_path(config))
    dt = config.step_seconds / SECONDS_PER_YEAR
    diffusion_step_sd = sigma * math.sqrt(dt)
    # 0.03 is ~14 diffusion standard deviations per step, and 3.5 jump standard deviations from the
    # mean jump: a diffusion step essentially never crosses it and a jump essentially always does.
    jump_threshold = 0.03
    assert jump_threshold > 10 * diffusion_step_sd
    is_jump = np.abs(returns) > jump_threshold

    expected_jumps = jump_intensity * years
    assert abs(is_jump.sum() - expected_jumps) < Z_TOLERANCE * math.sqrt(expected_jumps)  # Poisson count

    jump_returns = returns[is_jump]
    jump_size_standard_error = math.hypot(jump_std, diffusion_step_sd) / math.sqrt(len(jump_returns))
    assert abs(jump_returns.mean() - jump_mean) < Z_TOLERANCE * jump_size_standard_error

    diffusion_returns = returns[~is_jump]
    sigma_estimate = diffusion_returns.std(ddof=1) / math.sqrt(dt)
    assert abs(sigma_estimate - sigma) < Z_TOLERANCE * sigma / math.sqrt(2 * len(diffusion_returns))


def test_jump_diffusion__no_jumps__equals_gbm_with_the_same_seed():
    jumpless = JumpDiffusionConfig(0.1, 0.6, 0.0, -0.1, 0.02, 2_000.0, seed=5)
    gbm = GbmConfig(0.1, 0.6, 2_000.0, seed=5)
    np.testing.assert_allclose(jump_diffusion_path(jumpless).prices, gbm_path(gbm).prices, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# GARCH(1,1)
# ---------------------------------------------------------------------------------------------

GARCH_ALPHA, GARCH_BETA, GARCH_VOLATILITY = 0.1, 0.8, 0.8
GARCH_STEPS = 200_000


@pytest.fixture(scope="module")
def garch_returns():
    config = GarchConfig(
        GARCH_VOLATILITY, GARCH_ALPHA, GARCH_BETA, 2_000.0,
        step_seconds=60, duration_seconds=GARCH_STEPS * 60, seed=3,
    )  # fmt: skip
    return log_returns(garch_path(config))


def _garch_theory(alpha: float, beta: float) -> tuple[float, float]:
    """Kurtosis of returns and lag-1 autocorrelation of squared returns for GARCH(1,1) (Bollerslev 1986)."""
    persistence = alpha + beta
    kurtosis = 3 * (1 - persistence**2) / (1 - persistence**2 - 2 * alpha**2)
    squared_return_autocorrelation = alpha * (1 - alpha * beta - beta**2) / (1 - 2 * alpha * beta - beta**2)
    return kurtosis, squared_return_autocorrelation


def test_garch__squared_returns__are_positively_and_significantly_autocorrelated(garch_returns):
    _, theory = _garch_theory(GARCH_ALPHA, GARCH_BETA)
    autocorrelation = lag_one_autocorrelation(garch_returns**2)
    null_standard_error = 1 / math.sqrt(len(garch_returns))  # of a sample autocorrelation with no clustering
    assert autocorrelation > Z_TOLERANCE * null_standard_error
    # near Bollerslev's 0.14; the spread over 40 seeds was 0.006, so 0.035 is about 6 of those
    assert autocorrelation == pytest.approx(theory, abs=0.035)


def test_garch__gbm_with_the_same_volatility__shows_no_clustering():
    """The clustering test above can fail: on a GBM path the same statistic is noise around 0."""
    config = GbmConfig(0.0, GARCH_VOLATILITY, 2_000.0, step_seconds=60, duration_seconds=GARCH_STEPS * 60, seed=3)
    autocorrelation = lag_one_autocorrelation(log_returns(gbm_path(config)) ** 2)
    assert abs(autocorrelation) < Z_TOLERANCE / math.sqrt(GARCH_STEPS)


def test_garch__unconditional_variance__matches_long_run_volatility(garch_returns):
    kurtosis, lag_one = _garch_theory(GARCH_ALPHA, GARCH_BETA)
    dt = 60 / SECONDS_PER_YEAR
    # variance of the mean of r^2: Var(r^2) / n, inflated by the autocorrelations of r^2,
    # which decay geometrically at alpha + beta
    autocorrelation_sum = lag_one / (1 - GARCH_ALPHA - GARCH_BETA)
    relative_standard_error = math.sqrt((kurtosis - 1) * (1 + 2 * autocorrelation_sum) / len(garch_returns))
    sample_variance = garch_returns.var()
    assert sample_variance / (GARCH_VOLATILITY**2 * dt) == pytest.approx(1, abs=Z_TOLERANCE * relative_standard_error)


def test_garch__returns__are_fat_tailed(garch_returns):
    kurtosis, _ = _garch_theory(GARCH_ALPHA, GARCH_BETA)
    centred = garch_returns - garch_returns.mean()
    sample_kurtosis = (centred**4).mean() / centred.var() ** 2
    assert sample_kurtosis > 3.15  # a normal's is 3 with standard error sqrt(24 / n) = 0.011
    assert sample_kurtosis == pytest.approx(kurtosis, rel=0.1)


# ---------------------------------------------------------------------------------------------
# Scripted shock
# ---------------------------------------------------------------------------------------------


def test_shock__minus_half_over_30_minutes__flat_then_constant_returns_then_flat():
    config = ShockConfig(
        2_000.0, shock_return=-0.5, shock_duration_seconds=1_800, flat_before_seconds=600, flat_after_seconds=1_200
    )
    path = shock_path(config)
    prices = path.prices
    assert len(path) == (600 + 1_800 + 1_200) // 60 + 1
    assert np.all(prices[: 600 // 60 + 1] == 2_000.0)
    bottom_index = (600 + 1_800) // 60
    assert np.all(prices[bottom_index:] == 1_000.0)
    shock_returns = np.diff(np.log(prices[600 // 60 : bottom_index + 1]))
    np.testing.assert_allclose(shock_returns, math.log(0.5) / 30, rtol=1e-9)


def test_shock__no_flat_after__ends_at_the_bottom():
    config = ShockConfig(100.0, shock_return=-0.3, shock_duration_seconds=300, step_seconds=60, start_timestamp=50)
    path = shock_path(config)
    assert path[0] == (50, 100.0)
    assert path[-1] == (350, 70.0)


def test_shock__every_step_beyond_threshold__publishes_every_sample():
    path = shock_path(ShockConfig(2_000.0, shock_return=-0.5, shock_duration_seconds=1_800))
    rounds = publish_rounds(path)
    assert [round_.reason for round_ in rounds] == ["initial"] + ["deviation"] * 30
    assert rounds[-1].answer == 1_000 * 10**8


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------

RANDOM_CONFIGS = [
    GbmConfig(0.1, 0.8, 2_000.0),
    JumpDiffusionConfig(0.0, 0.8, 500.0, -0.05, 0.03, 2_000.0),
    GarchConfig(0.8, 0.1, 0.85, 2_000.0),
]


@pytest.mark.parametrize("config", RANDOM_CONFIGS, ids=lambda config: type(config).__name__)
def test_path__same_seed__identical_path(config):
    first, second = generate_path(config), generate_path(config)
    assert np.array_equal(first.prices, second.prices)
    assert np.array_equal(first.timestamps, second.timestamps)


@pytest.mark.parametrize("config", RANDOM_CONFIGS, ids=lambda config: type(config).__name__)
def test_path__different_seed__different_path(config):
    reseeded = type(config)(**{**config.__dict__, "seed": config.seed + 1})
    assert not np.array_equal(generate_path(config).prices, generate_path(reseeded).prices)


def test_generate_path__dispatches_on_the_config_type():
    shock = ShockConfig(100.0)
    assert np.array_equal(generate_path(shock).prices, shock_path(shock).prices)
    with pytest.raises(TypeError, match="feeds: not a path configuration: dict"):
        generate_path({"mu": 0.1})


def test_price_path__is_a_sequence_of_timestamp_price_pairs():
    path = gbm_path(GbmConfig(0.0, 0.5, 100.0, duration_seconds=600))
    timestamp, price = path[3]
    assert (timestamp, price) == (180, path.prices[3])
    assert isinstance(timestamp, int) and isinstance(price, float)
    assert list(path)[3] == path[3]
    assert path[1:3] == [path[1], path[2]]
    shifted = path.starting_at(1_000)
    assert shifted[0].timestamp == 1_000 and shifted[-1].timestamp == 1_600
    assert np.array_equal(shifted.prices, path.prices)
    with pytest.raises(ValueError):
        path.prices[0] = 1.0  # read-only


# ---------------------------------------------------------------------------------------------
# Chainlink publisher
# ---------------------------------------------------------------------------------------------


def test_publish__flat_path__publishes_exactly_every_heartbeat():
    rounds = publish_rounds(flat_path(100.0, 60, 4 * 3_600))
    assert [(round_.observed_time, round_.reason) for round_ in rounds] == [
        (0, "initial"),
        (3_600, "heartbeat"),
        (7_200, "heartbeat"),
        (10_800, "heartbeat"),
        (14_400, "heartbeat"),
    ]
    assert [round_.round_id for round_ in rounds] == [1, 2, 3, 4, 5]
    assert {round_.answer for round_ in rounds} == {100 * 10**8}


def test_publish__heartbeat_off_the_grid__first_sample_after_expiry():
    rounds = publish_rounds(flat_path(100.0, 700, 13_000))
    assert [round_.observed_time for round_ in rounds] == [0, 4_200, 8_400, 12_600]


@pytest.mark.parametrize("decimals", [6, 8, 18])
@pytest.mark.parametrize("direction", [1, -1])
def test_publish__move_of_049_percent__no_round_050_percent__round(decimals, direction):
    path = [(0, 100.0), (60, 100.0 + direction * 0.49), (120, 100.0 + direction * 0.5)]
    rounds = publish_rounds(path, PublisherConfig(decimals=decimals))
    assert [(round_.observed_time, round_.reason) for round_ in rounds] == [(0, "initial"), (120, "deviation")]
    assert rounds[1].answer == to_answer(100.0 + direction * 0.5, decimals)


def test_publish__custom_threshold__exact_boundary_triggers():
    path = [(0, 200.0), (60, 201.99), (120, 202.0)]
    rounds = publish_rounds(path, PublisherConfig(deviation_threshold=0.01))
    assert [round_.observed_time for round_ in rounds] == [0, 120]


def test_publish__deviation__measured_from_last_published_answer_not_last_sample():
    # every step is +0.3%: never enough from the previous sample, always enough over two steps
    path = [(60 * index, 100.0 * 1.003**index) for index in range(11)]
    rounds = publish_rounds(path)
    assert [round_.observed_time for round_ in rounds] == [0, 120, 240, 360, 480, 600]
    assert all(round_.reason == "deviation" for round_ in rounds[1:])


def test_publish__deviation_round__restarts_the_heartbeat():
    path = [(0, 100.0), (1_800, 101.0)] + [(timestamp, 101.0) for timestamp in range(1_860, 9_000, 60)]
    rounds = publish_rounds(path)
    assert [(round_.observed_time, round_.reason) for round_ in rounds] == [
        (0, "initial"),
        (1_800, "deviation"),
        (5_400, "heartbeat"),
    ]


def test_publish__lag__shifts_round_times_only():
    path = gbm_path(GbmConfig(0.0, 1.0, 2_000.0, seed=1))
    prompt = publish_rounds(path)
    lagged = publish_rounds(path, PublisherConfig(publication_lag_seconds=45))
    assert len(prompt) > 10
    assert [round_.round_time for round_ in lagged] == [round_.round_time + 45 for round_ in prompt]

    def observed(rounds):
        return [(round_.observed_time, round_.answer, round_.reason) for round_ in rounds]

    assert observed(lagged) == observed(prompt)
    assert all(round_.round_time == round_.observed_time for round_ in prompt)


def test_publish__timestamps_not_increasing__one_line_error():
    with pytest.raises(ValueError, match=r"^feeds: sample timestamps must be strictly increasing, got 60 after 60$"):
        publish_rounds([(0, 100.0), (60, 100.0), (60, 101.0)])


def test_publish__non_positive_price__one_line_error():
    with pytest.raises(ValueError, match=r"^feeds: price must be positive and finite, got 0.0$"):
        publish_rounds([(0, 100.0), (60, 0.0)])


@pytest.mark.parametrize(
    "price, decimals, answer",
    [
        (195.21, 8, 19_521_000_000),  # the binary double is 195.2099999...; the answer is not
        (1.000000005, 8, 100_000_001),  # half rounds up
        (1.0000000049, 8, 100_000_000),
        (2.5, 0, 3),
        (1e-12, 8, 1),  # a positive price is never answered as 0
        (1_234.5678, 18, 1_234_567_800_000_000_000_000),
    ],
)
def test_to_answer__rounds_half_up_and_never_zero(price, decimals, answer):
    assert to_answer(price, decimals) == answer


DEFAULT_PUBLISHER = PublisherConfig()


def _assert_publication_rule(path, rounds, config=DEFAULT_PUBLISHER):
    """Every round was due, and no sample between rounds was due: the rule, checked from outside."""
    published = {round_.observed_time: round_ for round_ in rounds}
    last = rounds[0]
    assert last.observed_time == path[0].timestamp and last.reason == "initial"
    for timestamp, price in list(path)[1:]:
        answer = to_answer(price, config.decimals)
        deviation = abs(answer - last.answer) / last.answer
        due_by_deviation = deviation >= config.deviation_threshold * (1 + 1e-12)
        due_by_heartbeat = timestamp - last.observed_time >= config.heartbeat_seconds
        if timestamp in published:
            round_ = published[timestamp]
            assert round_.answer == answer
            reached_threshold = deviation >= config.deviation_threshold * (1 - 1e-12)
            assert round_.reason == ("deviation" if reached_threshold else "heartbeat")
            assert round_.reason == "deviation" or due_by_heartbeat
            last = round_
        else:
            assert not due_by_deviation and not due_by_heartbeat, f"missed a round at {timestamp}"


@pytest.mark.parametrize("seed", [1, 2])
def test_publish__random_path__every_round_due_and_none_missed(seed):
    path = jump_diffusion_path(JumpDiffusionConfig(0.0, 0.6, 2_000.0, -0.02, 0.02, 2_000.0, seed=seed))
    config = PublisherConfig(deviation_threshold=0.002, heartbeat_seconds=1_800)
    rounds = publish_rounds(path, config)
    assert {round_.reason for round_ in rounds} == {"initial", "deviation", "heartbeat"}
    _assert_publication_rule(path, rounds, config)


# ---------------------------------------------------------------------------------------------
# Replay of Black Thursday
# ---------------------------------------------------------------------------------------------


def test_replay__black_thursday__path_spans_the_day_through_open_low_and_close(black_thursday_path):
    path = black_thursday_path
    assert len(path) == BARS_PER_DAY * BAR_SECONDS // 60
    assert path[0] == (BLACK_THURSDAY_START, DAY_OPEN)
    assert path[-1] == (BLACK_THURSDAY_START + BARS_PER_DAY * BAR_SECONDS - 60, DAY_CLOSE)
    assert path.prices.min() == DAY_LOW


def test_replay__black_thursday__first_round_is_the_open(black_thursday_rounds):
    first = black_thursday_rounds[0]
    assert (first.round_time, first.answer, first.reason) == (BLACK_THURSDAY_START, 19_521_000_000, "initial")


def test_replay__black_thursday__lowest_round_within_half_percent_of_the_low(black_thursday_rounds):
    lowest = min(round_.answer for round_ in black_thursday_rounds)
    assert to_answer(DAY_LOW) <= lowest <= to_answer(DAY_LOW) * 1.005


def test_replay__black_thursday__last_round_within_half_percent_of_the_close(black_thursday_rounds):
    assert black_thursday_rounds[-1].answer == pytest.approx(to_answer(DAY_CLOSE), rel=0.005)


def test_replay__black_thursday__round_count_in_sanity_range(black_thursday_rounds):
    heartbeats_in_a_quiet_day = BARS_PER_DAY * BAR_SECONDS // 3_600
    samples = BARS_PER_DAY * BAR_SECONDS // 60
    assert heartbeats_in_a_quiet_day < len(black_thursday_rounds) < samples
    reasons = [round_.reason for round_ in black_thursday_rounds]
    assert reasons.count("deviation") > 10 * reasons.count("heartbeat")  # a crash moves on deviation


def test_replay__black_thursday__rounds_follow_the_publication_rule(black_thursday_path, black_thursday_rounds):
    _assert_publication_rule(black_thursday_path, black_thursday_rounds)


def test_replay__black_thursday__every_bar_visits_open_nearer_extreme_other_extreme_close(black_thursday_path):
    bars = read_price_bars(data_file(BLACK_THURSDAY_PRICES))
    assert len(bars) == BARS_PER_DAY
    samples = black_thursday_path.prices.reshape(BARS_PER_DAY, BAR_SECONDS // 60)
    for bar, bar_samples in zip(bars, samples, strict=False):
        nearer, farther = sorted([bar.high, bar.low], key=lambda extreme: abs(extreme - bar.open))
        if abs(bar.high - bar.open) == abs(bar.low - bar.open):
            nearer, farther = (bar.high, bar.low) if bar.close < bar.open else (bar.low, bar.high)
        assert tuple(bar_samples[[0, 3, 6, 9]]) == (bar.open, nearer, farther, bar.close)
        assert bar.low <= bar_samples.min() and bar_samples.max() <= bar.high


def test_replay__hand_built_bars__documented_intra_bar_order(make_price_file):
    bars = [
        (100.0, 101.0, 90.0, 95.0),  # high nearer: O-H-L-C
        (100.0, 110.0, 99.0, 105.0),  # low nearer: O-L-H-C
        (100.0, 105.0, 95.0, 98.0),  # equidistant, falling: O-H-L-C
        (100.0, 105.0, 95.0, 102.0),  # equidistant, rising: O-L-H-C
    ]
    path = replay_path(ReplayConfig(make_price_file(bars), step_seconds=150))  # 4 samples a bar: the waypoints
    assert path.prices.tolist() == [
        100.0, 101.0, 90.0, 95.0,
        100.0, 99.0, 110.0, 105.0,
        100.0, 105.0, 95.0, 98.0,
        100.0, 95.0, 105.0, 102.0,
    ]  # fmt: skip
    assert path.timestamps.tolist() == [BLACK_THURSDAY_START + 150 * index for index in range(16)]


def test_replay__minute_steps__linear_between_waypoints(make_price_file):
    bars = [(100.0, 101.0, 90.0, 95.0), (96.0, 97.0, 96.0, 97.0)]
    path = replay_path(ReplayConfig(make_price_file(bars), step_seconds=60))
    first_bar = path.prices[:10]
    np.testing.assert_allclose(
        first_bar,
        [100.0, 100 + 1 / 3, 100 + 2 / 3, 101.0, 101 - 11 / 3, 101 - 22 / 3, 90.0, 90 + 5 / 3, 90 + 10 / 3, 95.0],
    )
    assert path.prices[10] == 96.0


@pytest.mark.parametrize("step_seconds", [200, 70, 600])
def test_replay__step_not_giving_four_samples_a_bar__one_line_error(make_price_file, step_seconds):
    config = ReplayConfig(make_price_file([(100.0, 101.0, 99.0, 100.0)] * 3), step_seconds=step_seconds)
    message = (
        f"feeds: step_seconds must be a divisor of the bar length (600 s) giving at least 4 samples a bar, got {step_seconds}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        replay_path(config)


def test_replay__single_bar__one_line_error(make_price_file):
    path = make_price_file([(100.0, 101.0, 99.0, 100.0)])
    with pytest.raises(FeedDataError, match=r"needs at least 2 bars to know the bar length$"):
        replay_path(ReplayConfig(path))


# ---------------------------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------------------------


def test_data_dir__default__is_shared_data_next_to_the_repo(monkeypatch):
    monkeypatch.delenv(feeds.DATA_DIR_ENV, raising=False)
    assert data_dir() == Path(feeds.__file__).resolve().parents[2] / "shared" / "data"
    assert data_file(BLACK_THURSDAY_PRICES).is_file()


def test_data_dir__environment_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MARGINSIM_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    assert data_file("x.csv") == tmp_path / "x.csv"
    monkeypatch.setenv("MARGINSIM_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(FeedDataError, match=f"^feeds: MARGINSIM_DATA_DIR is not a directory: {tmp_path / 'absent'}$"):
        data_dir()


def test_missing_price_file__one_line_error_naming_the_path(tmp_path):
    missing = tmp_path / "eth_usd_missing.csv"
    with pytest.raises(FeedDataError) as raised:
        ReplayConfig(missing)
    assert str(raised.value) == f"feeds: price file not found: {missing}"
    with pytest.raises(FeedDataError) as raised:
        read_price_bars(missing)
    assert str(raised.value) == f"feeds: data file not found: {missing}"


def test_missing_gas_file__one_line_error_naming_the_path(tmp_path):
    missing = tmp_path / "gas_missing.csv"
    with pytest.raises(FeedDataError) as raised:
        read_gas_prices(missing)
    assert str(raised.value) == f"feeds: data file not found: {missing}"


@pytest.mark.parametrize(
    "content, message",
    [
        ("time,open\n1,2\n", "expected columns time_utc,open,high,low,close,volume_eth,trades, got time,open"),
        (PRICE_HEADER, "no data rows"),
        (PRICE_HEADER + "2020-03-12T00:00:00Z,100,101,99,abc,1,1\n", ":2: close is not a number: abc"),
        (PRICE_HEADER + "2020-03-12T00:00:00Z,100,101,99,100,1,1.5\n", ":2: trades is not an integer: 1.5"),
        (PRICE_HEADER + "12 March,100,101,99,100,1,1\n", ":2: time_utc is not an ISO 8601 time: 12 March"),
        (
            PRICE_HEADER + "2020-03-12T00:00:00,100,101,99,100,1,1\n",
            ":2: time_utc has no time zone: 2020-03-12T00:00:00",
        ),
        (
            PRICE_HEADER + "2020-03-12T00:00:00Z,100,101,99,100,1,1\n2020-03-12T00:10:00Z,100,99,98,100,1,1\n",
            ":3: needs 0 < low <= open, close <= high, got open 100.0 high 99.0 low 98.0 close 100.0",
        ),
    ],
    ids=["header", "empty", "number", "count", "time", "time zone", "ohlc"],
)
def test_malformed_price_file__one_line_error_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(FeedDataError) as raised:
        read_price_bars(path)
    assert str(raised.value).startswith(f"feeds: {path}")
    assert str(raised.value).endswith(message)
    assert "\n" not in str(raised.value)


def test_gas_prices__black_thursday__144_contiguous_typed_bars():
    series = read_gas_prices(data_file(BLACK_THURSDAY_GAS))
    assert len(series.bars) == BARS_PER_DAY
    assert series.bar_seconds == BAR_SECONDS
    assert (series.start, series.end) == (BLACK_THURSDAY_START, BLACK_THURSDAY_START + BARS_PER_DAY * BAR_SECONDS)
    for bar in series.bars:
        assert isinstance(bar.tx_count, int) and bar.tx_count > 0
        assert 0 < bar.p30_gwei <= bar.p60_gwei <= bar.p90_gwei <= bar.max_gwei  # columns in their places
        assert bar.mean_gwei <= bar.max_gwei


def test_gas_prices__lookup__bar_containing_the_timestamp():
    series = read_gas_prices(data_file(BLACK_THURSDAY_GAS))
    for index in (0, 1, 77, BARS_PER_DAY - 1):
        bar = series.bars[index]
        assert series.at(bar.bar_start) is bar
        assert series.at(bar.bar_start + BAR_SECONDS - 1) is bar
    assert series.at(BLACK_THURSDAY_START + BAR_SECONDS) is series.bars[1]
    for outside in (series.start - 1, series.end):
        message = f"feeds: timestamp {outside} is outside the gas series [{series.start}, {series.end})"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            series.at(outside)


def test_gas_prices__hand_built_file__parsed_exactly(tmp_path):
    path = tmp_path / "gas.csv"
    path.write_text(GAS_HEADER + "2020-03-12T00:00:00Z,10,1.5,1,2,3,40\n2020-03-12T00:10:00Z,20,2.5,2,3,4,50\n")
    series = read_gas_prices(path)
    assert series.bars[1] == feeds.GasPriceBar(BLACK_THURSDAY_START + 600, 20, 2.5, 2.0, 3.0, 4.0, 50.0)
    assert series.at(BLACK_THURSDAY_START + 599).tx_count == 10


# ---------------------------------------------------------------------------------------------
# Configuration validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_config, message",
    [
        (lambda: GbmConfig(0.1, -0.1, 2_000.0), "feeds: sigma must be >= 0, got -0.1"),
        (lambda: GbmConfig(float("nan"), 0.5, 2_000.0), "feeds: mu must be a finite number, got nan"),
        (lambda: GbmConfig(0.1, 0.5, 0.0), "feeds: s0 must be > 0, got 0.0"),
        (lambda: GbmConfig(0.1, 0.5, 2_000.0, step_seconds=0), "feeds: step_seconds must be >= 1, got 0"),
        (lambda: GbmConfig(0.1, 0.5, 2_000.0, step_seconds=1.5), "feeds: step_seconds must be an integer, got 1.5"),
        (
            lambda: GbmConfig(0.1, 0.5, 2_000.0, duration_seconds=1_000),
            "feeds: duration_seconds must be a multiple of step_seconds (60), got 1000",
        ),
        (lambda: GbmConfig(0.1, 0.5, 2_000.0, seed=-1), "feeds: seed must be >= 0, got -1"),
        (lambda: GbmConfig(0.1, 0.5, 2_000.0, seed=True), "feeds: seed must be an integer, got True"),
        (
            lambda: JumpDiffusionConfig(0.0, 0.5, -1.0, -0.1, 0.02, 2_000.0),
            "feeds: jump_intensity must be >= 0, got -1.0",
        ),
        (lambda: JumpDiffusionConfig(0.0, 0.5, 10.0, -0.1, -0.02, 2_000.0), "feeds: jump_std must be >= 0, got -0.02"),
        (
            lambda: JumpDiffusionConfig(0.0, 0.5, 10.0, "big", 0.02, 2_000.0),
            "feeds: jump_mean must be a finite number, got big",
        ),
        (lambda: GarchConfig(0.0, 0.1, 0.8, 2_000.0), "feeds: long_run_volatility must be > 0, got 0.0"),
        (lambda: GarchConfig(0.8, -0.1, 0.8, 2_000.0), "feeds: alpha must be >= 0, got -0.1"),
        (lambda: GarchConfig(0.8, 0.25, 0.75, 2_000.0), "feeds: alpha + beta must be < 1, got 1.0"),
        (lambda: ShockConfig(2_000.0, shock_return=-1.0), "feeds: shock_return must be > -1, got -1.0"),
        (lambda: ShockConfig(2_000.0, shock_duration_seconds=0), "feeds: shock_duration_seconds must be >= 1, got 0"),
        (
            lambda: ShockConfig(2_000.0, flat_after_seconds=90),
            "feeds: flat_after_seconds must be a multiple of step_seconds (60), got 90",
        ),
        (
            lambda: ReplayConfig(data_file(BLACK_THURSDAY_PRICES), step_seconds=0),
            "feeds: step_seconds must be >= 1, got 0",
        ),
        (lambda: ReplayConfig(42), "feeds: path must be a file path, got 42"),
        (lambda: PublisherConfig(deviation_threshold=0), "feeds: deviation_threshold must be > 0, got 0"),
        (lambda: PublisherConfig(heartbeat_seconds=0), "feeds: heartbeat_seconds must be >= 1, got 0"),
        (lambda: PublisherConfig(decimals=-1), "feeds: decimals must be >= 0, got -1"),
        (lambda: PublisherConfig(publication_lag_seconds=-5), "feeds: publication_lag_seconds must be >= 0, got -5"),
    ],
)
def test_config__bad_field__one_line_value_error_naming_it(make_config, message):
    with pytest.raises(ValueError) as raised:
        make_config()
    assert str(raised.value) == message
