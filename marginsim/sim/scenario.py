"""Scenario files: TOML data, validated on load into typed configuration.

A bad file fails with one line naming the field, e.g.
``scenario black.toml: traders.leverage: must be two numbers [low, high] with 1 <= low <= high, got [0, 5]``.

Layout of a scenario file (every table but [feed.*] and [[keepers]] is optional)::

    name = "black-thursday-2020"
    description = "..."
    seed = 1
    step_seconds = 60            # one simulation step: prices move, oracle may publish, agents act
    block_seconds = 12           # the simulated block time, for delays measured in blocks
    duration_seconds = 86400     # optional: cut the run short (default: the whole price path)

    [feed.ETH-PERP]              # one per market traded; kind = replay | gbm | jump | garch | shock
    kind = "replay"
    file = "eth_usd_10min_2020-03-12.csv"     # in ../shared/data (or MARGINSIM_DATA_DIR)
    deviation = 0.005            # Chainlink deviation threshold
    heartbeat = 3600             # Chainlink heartbeat, seconds
    lag_seconds = 0              # publication lag

    [gas]                        # gas price keepers pay: a replay file or a constant
    file = "gas_price_10min_2020-03-12.csv"
    percentile = "p60"           # mean | p30 | p60 | p90 | max
    # constant_gwei = 30

    [traders]
    count = 30
    markets = ["ETH-PERP"]
    collateral = ["USDC", "WETH"]
    leverage = [2, 12]           # uniform between the two
    leverage_distribution = "uniform"   # or "log-uniform": as many 2-4x as 6-12x traders
    collateral_usd = [2000, 50000]
    size_distribution = "uniform"       # or "pareto": heavy-tailed between the bounds,
    size_tail = 1.16                    # with this tail index (1.16: 20% of traders hold 80%)
    collateral_mix = [0.7, 0.3]         # weights of `collateral` (default: equal)
    long_share = 0.8
    topup_share = 0.3            # share of traders who add margin when health < topup_below_health
    topup_below_health = 1.3
    close_share = 0.2            # share who close when health < close_below_health
    close_below_health = 1.15

    [liquidity]
    pool_usd = 5000000
    insurance_usd = 100000

    [[keepers]]
    name = "fast"
    delay_blocks = 0             # reacts this many blocks after an account becomes liquidatable
    min_profit_usd = 0           # liquidates only when the reward beats gas by this much
    realise_above_usd = 50000    # optional: realises any open loss this large into a debt (LiquidationEngine.realise_loss)
    censored = [[3600, 7200]]    # windows (seconds from start) when its transactions do not land

    [protocol]                   # overrides of marginsim.protocol.ProtocolConfig scalars
    liquidation_buffer = 0.1

    [market.ETH-PERP]            # overrides of marginsim.protocol.MarketConfig (checked on chain
    oi_cap = 100000              # by the Configurator when the market is listed)
    skew_scale = 20000000

    [collateral.WETH]            # overrides of marginsim.protocol.TokenConfig: haircut, sale discount, cap
    weight = 0.8
    liquidation_discount = 0.06

    [collateral.WETH.feed]       # the oracle router's guards on that feed (marginsim.protocol.FeedConfig)
    max_deviation = 0.25         # the circuit breaker: a larger move between rounds halts the asset
    heartbeat = 3600             # seconds after which a round is stale

The [protocol], [market.*] and [collateral.*] values are checked by the contracts themselves:
`engine.check_parameters` deploys the design on a scratch revm chain and turns the first refusal
into a one-line ScenarioError (e.g. ``configurator: bad buffer``) before a run starts.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from marginsim import feeds
from marginsim.protocol import ProtocolConfig

FEED_KINDS = ("replay", "gbm", "jump", "garch", "shock")
MAX_TRADERS = 100_000  # revm takes any number of senders; ape's test network funds 40 accounts
GAS_PERCENTILES = ("mean", "p30", "p60", "p90", "max")
MARKET_OVERRIDES = (
    "base_mmr",
    "tier_size",
    "tier_mmr",
    "vol_k",
    "imr_multiplier",
    "fee",
    "penalty",
    "keeper_share",
    "skew_scale",
    "max_funding_rate",
    "oi_cap",
    "reserve_factor",
)
PROTOCOL_OVERRIDES = (
    "liquidation_buffer",
    "full_liquidation_health",
    "dust_notional_usd",
    "ewma_lambda",
    "max_vol_rise_per_hour",
    "underwater_tip_rate",
    "settlement_delay",
    "order_expiry",
    "execution_fee_usd",
    "order_bond",
    "debt_rate_base",
    "debt_rate_slope",
    "debt_imr",
    "debt_ceiling",
    "debt_liquidation_ltv",
    "oracle_confirmation_delay",
)
_INTEGER_FIELDS = {f.name: f.type == "int" for f in fields(ProtocolConfig)}
COLLATERALS = ("WETH", "WBTC", "USDT")
COLLATERAL_OVERRIDES = ("weight", "liquidation_discount", "cap")
FEED_OVERRIDES = ("heartbeat", "min_price_usd", "max_price_usd", "max_deviation", "initial_sigma")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message is one line naming the field."""


@dataclass(frozen=True)
class FeedSpec:
    market: str
    kind: str
    params: dict[str, Any]  # the path model's own parameters (see marginsim.feeds)
    deviation: float = 0.005
    heartbeat: int = 3_600
    lag_seconds: int = 0


@dataclass(frozen=True)
class GasSpec:
    file: str | None = None
    percentile: str = "p60"
    constant_gwei: float | None = None


SIZE_DISTRIBUTIONS = ("uniform", "pareto")
LEVERAGE_DISTRIBUTIONS = ("uniform", "log-uniform")


@dataclass(frozen=True)
class TraderSpec:
    count: int = 20
    markets: tuple[str, ...] = ("ETH-PERP",)
    collateral: tuple[str, ...] = ("USDC",)
    leverage: tuple[float, float] = (2.0, 10.0)
    collateral_usd: tuple[float, float] = (2_000.0, 50_000.0)
    long_share: float = 0.7
    topup_share: float = 0.3
    topup_below_health: float = 1.3
    close_share: float = 0.2
    close_below_health: float = 1.15
    size_distribution: str = "uniform"
    size_tail: float = 1.16
    leverage_distribution: str = "uniform"
    collateral_mix: tuple[float, ...] | None = None  # weights of `collateral`; None: equal

    def draw_collateral(self, rng: Any) -> str:
        """A trader's collateral token: one of `collateral`, by `collateral_mix`'s weights."""
        if self.collateral_mix is None:
            return self.collateral[int(rng.integers(len(self.collateral)))]
        total = sum(self.collateral_mix)
        return self.collateral[int(rng.choice(len(self.collateral), p=[w / total for w in self.collateral_mix]))]

    def draw_collateral_usd(self, rng: Any) -> float:
        """A trader's deposit in USD, between the bounds: uniform, or a Pareto law truncated to
        them (inverse CDF: low * (1 - u * (1 - (low/high)**a)) ** (-1/a)), where most traders are
        small and a few hold most of the money, as on a real venue."""
        low, high = self.collateral_usd
        if self.size_distribution == "uniform" or low == high:
            return float(rng.uniform(low, high))
        a = self.size_tail
        return low * (1.0 - float(rng.random()) * (1.0 - (low / high) ** a)) ** (-1.0 / a)

    def draw_leverage(self, rng: Any) -> float:
        """A trader's leverage between the bounds: uniform, or log-uniform (as likely in 2-4x as
        in 4-8x: low leverage is the common case, high leverage the tail)."""
        low, high = self.leverage
        if self.leverage_distribution == "uniform" or low == high:
            return float(rng.uniform(low, high))
        return math.exp(float(rng.uniform(math.log(low), math.log(high))))


@dataclass(frozen=True)
class KeeperSpec:
    name: str
    delay_blocks: int = 0
    min_profit_usd: float = 0.0
    censored: tuple[tuple[float, float], ...] = ()
    realise_above_usd: float | None = None  # realises open losses of at least this (None: never)

    def censored_at(self, time: float) -> bool:
        return any(start <= time < end for start, end in self.censored)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    step_seconds: int
    block_seconds: int
    duration_seconds: int | None
    feeds: tuple[FeedSpec, ...]
    gas: GasSpec
    traders: TraderSpec
    keepers: tuple[KeeperSpec, ...]
    pool_usd: float = 5_000_000.0
    insurance_usd: float = 100_000.0
    protocol: dict[str, float | int] = field(default_factory=dict)
    markets: dict[str, dict[str, float]] = field(default_factory=dict)  # market -> MarketConfig overrides
    # collateral symbol -> TokenConfig overrides; its "feed" entry, a dict of FeedConfig overrides
    collaterals: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError with a one-line message."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(f"scenario: no such file: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"scenario {path.name}: not valid TOML: {error}") from None
    return parse_scenario(raw, source=path.name)


def parse_scenario(raw: dict[str, Any], source: str = "<scenario>") -> Scenario:
    check = _Checker(source)
    known = {
        "name",
        "description",
        "seed",
        "step_seconds",
        "block_seconds",
        "duration_seconds",
        "feed",
        "gas",
        "traders",
        "liquidity",
        "keepers",
        "protocol",
        "market",
        "collateral",
    }
    check.no_unknown("", raw, known)
    name = check.string(raw, "name")
    feeds_raw = raw.get("feed")
    if not isinstance(feeds_raw, dict) or not feeds_raw:
        check.fail("feed", "at least one [feed.MARKET] table is required")
    feed_specs = tuple(_parse_feed(check, market, spec) for market, spec in feeds_raw.items())
    traders = _parse_traders(check, raw.get("traders", {}), {f.market for f in feed_specs})
    keepers_raw = raw.get("keepers")
    if not isinstance(keepers_raw, list) or not keepers_raw:
        check.fail("keepers", "at least one [[keepers]] entry is required")
    keepers = tuple(_parse_keeper(check, i, k) for i, k in enumerate(keepers_raw))
    if len({k.name for k in keepers}) != len(keepers):
        check.fail("keepers", "keeper names must be unique")
    liquidity = raw.get("liquidity", {})
    check.no_unknown("liquidity", liquidity, {"pool_usd", "insurance_usd"})
    markets_raw = raw.get("market", {})
    check.no_unknown("market", markets_raw, {"ETH-PERP", "BTC-PERP"})
    market_overrides: dict[str, dict[str, float]] = {}
    for market, table in markets_raw.items():
        check.no_unknown(f"market.{market}", table, set(MARKET_OVERRIDES))
        market_overrides[market] = {k: check.number(table, k, low=0, where=f"market.{market}.{k}") for k in table}
    collaterals_raw = raw.get("collateral", {})
    check.no_unknown("collateral", collaterals_raw, set(COLLATERALS))
    collateral_overrides: dict[str, dict[str, Any]] = {}
    for symbol, table in collaterals_raw.items():
        where = f"collateral.{symbol}"
        check.no_unknown(where, table, {*COLLATERAL_OVERRIDES, "feed"})
        overrides: dict[str, Any] = {k: check.number(table, k, low=0, where=f"{where}.{k}") for k in table if k != "feed"}
        if "cap" in overrides:
            overrides["cap"] = check.integer(table, "cap", low=1, where=f"{where}.cap")
        if "feed" in table:
            feed = table["feed"]
            check.no_unknown(f"{where}.feed", feed, set(FEED_OVERRIDES))
            overrides["feed"] = {k: check.number(feed, k, low=0, where=f"{where}.feed.{k}") for k in feed}
            if "heartbeat" in feed:
                overrides["feed"]["heartbeat"] = check.integer(feed, "heartbeat", low=0, where=f"{where}.feed.heartbeat")
        collateral_overrides[symbol] = overrides
    protocol = raw.get("protocol", {})
    check.no_unknown("protocol", protocol, set(PROTOCOL_OVERRIDES))
    protocol_overrides = {
        # whole seconds stay integers, as ProtocolConfig's fields take them
        key: (check.integer if _INTEGER_FIELDS.get(key) else check.number)(protocol, key, low=0, where=f"protocol.{key}")
        for key in protocol
    }
    return Scenario(
        name=name,
        description=str(raw.get("description", "")),
        seed=check.integer(raw, "seed", default=0, low=0),
        step_seconds=check.integer(raw, "step_seconds", default=60, low=1, high=3_600),
        block_seconds=check.integer(raw, "block_seconds", default=12, low=1, high=600),
        duration_seconds=check.integer(raw, "duration_seconds", default=None, low=1),
        feeds=feed_specs,
        gas=_parse_gas(check, raw.get("gas", {"constant_gwei": 30})),
        traders=traders,
        keepers=keepers,
        pool_usd=check.number(liquidity, "pool_usd", default=5_000_000.0, low=1, where="liquidity.pool_usd"),
        insurance_usd=check.number(liquidity, "insurance_usd", default=100_000.0, low=0, where="liquidity.insurance_usd"),
        protocol=protocol_overrides,
        markets=market_overrides,
        collaterals=collateral_overrides,
        source=source,
    )


def price_path(spec: FeedSpec, seed: int) -> feeds.PricePath:
    """The feed's true price path, deterministic for the seed."""
    p = dict(spec.params)
    if spec.kind == "replay":
        return feeds.replay_path(feeds.ReplayConfig(path=feeds.data_file(p["file"]), step_seconds=p.get("step_seconds", 60)))
    if spec.kind == "gbm":
        return feeds.gbm_path(feeds.GbmConfig(seed=seed, **p))
    if spec.kind == "jump":
        return feeds.jump_diffusion_path(feeds.JumpDiffusionConfig(seed=seed, **p))
    if spec.kind == "garch":
        return feeds.garch_path(feeds.GarchConfig(seed=seed, **p))
    return feeds.shock_path(feeds.ShockConfig(**p))


def gas_price_gwei(spec: GasSpec) -> Any:
    """A function time (seconds from the start) -> gas price in gwei."""
    if spec.constant_gwei is not None:
        constant = spec.constant_gwei
        return lambda _time: constant
    series = feeds.read_gas_prices(feeds.data_file(spec.file))
    attribute = {"mean": "mean_gwei", "p30": "p30_gwei", "p60": "p60_gwei", "p90": "p90_gwei", "max": "max_gwei"}[spec.percentile]
    start = series.start

    def at(time: float) -> float:
        moment = min(start + int(time), series.end - 1)
        return float(getattr(series.at(moment), attribute))

    return at


# ---------------------------------------------------------------- parsing helpers


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> None:
        raise ScenarioError(f"scenario {self.source}: {where}: {problem}")

    def no_unknown(self, where: str, table: Any, known: set[str]) -> None:
        if not isinstance(table, dict):
            self.fail(where or "file", "must be a table")
        for key in table:
            if key not in known:
                self.fail(f"{where}.{key}" if where else key, f"unknown field (known: {', '.join(sorted(known))})")

    def string(self, table: dict, key: str, where: str | None = None) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value:
            self.fail(where or key, f"must be a non-empty string, got {value!r}")
        return value

    def integer(
        self, table: dict, key: str, default: Any = ..., low: int | None = None, high: int | None = None, where: str | None = None
    ) -> Any:
        return self._scalar(table, key, default, low, high, where or key, (int,), "an integer")

    def number(
        self,
        table: dict,
        key: str,
        default: Any = ...,
        low: float | None = None,
        high: float | None = None,
        where: str | None = None,
    ) -> Any:
        value = self._scalar(table, key, default, low, high, where or key, (int, float), "a number")
        return value if value is None or value is default else float(value)

    def _scalar(self, table: dict, key: str, default: Any, low: Any, high: Any, where: str, kinds: tuple, kind_name: str) -> Any:
        if key not in table:
            if default is ...:
                self.fail(where, "is required")
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            self.fail(where, f"must be {kind_name}, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(where, f"must be in [{low}, {high if high is not None else 'inf'}], got {value}")
        return value

    def pair(self, table: dict, key: str, default: tuple, low: float, where: str) -> tuple[float, float]:
        if key not in table:
            return default
        value = table[key]
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and low <= value[0] <= value[1]
        )
        if not ok:
            self.fail(where, f"must be two numbers [low, high] with {low} <= low <= high, got {value!r}")
        return (float(value[0]), float(value[1]))

    def one_of(self, table: dict, key: str, default: str, allowed: tuple[str, ...], where: str) -> str:
        value = table.get(key, default)
        if value not in allowed:
            self.fail(f"{where}.{key}", f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def choices(self, table: dict, key: str, default: tuple, allowed: set[str], where: str) -> tuple[str, ...]:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v in allowed for v in value):
            self.fail(where, f"must be a non-empty list from {sorted(allowed)}, got {value!r}")
        return tuple(value)


def _parse_feed(check: _Checker, market: str, spec: Any) -> FeedSpec:
    where = f"feed.{market}"
    if market not in ("ETH-PERP", "BTC-PERP"):
        check.fail(where, "market must be ETH-PERP or BTC-PERP")
    check.no_unknown(
        where,
        spec,
        {
            "kind",
            "deviation",
            "heartbeat",
            "lag_seconds",
            "file",
            "mu",
            "sigma",
            "s0",
            "step_seconds",
            "duration_seconds",
            "jump_intensity",
            "jump_mean",
            "jump_std",
            "long_run_volatility",
            "alpha",
            "beta",
            "shock_return",
            "shock_duration_seconds",
            "flat_before_seconds",
            "flat_after_seconds",
        },
    )
    kind = spec.get("kind")
    if kind not in FEED_KINDS:
        check.fail(f"{where}.kind", f"must be one of {', '.join(FEED_KINDS)}, got {kind!r}")
    params = {k: v for k, v in spec.items() if k not in ("kind", "deviation", "heartbeat", "lag_seconds")}
    if kind == "replay":
        check.string(spec, "file", where=f"{where}.file")
        if not feeds.data_file(spec["file"]).exists():
            check.fail(f"{where}.file", f"no such data file: {feeds.data_file(spec['file'])}")
    feed_spec = FeedSpec(
        market=market,
        kind=kind,
        params=params,
        deviation=check.number(spec, "deviation", default=0.005, low=0.0001, high=0.5, where=f"{where}.deviation"),
        heartbeat=check.integer(spec, "heartbeat", default=3_600, low=60, high=86_400, where=f"{where}.heartbeat"),
        lag_seconds=check.integer(spec, "lag_seconds", default=0, low=0, high=3_600, where=f"{where}.lag_seconds"),
    )
    try:
        price_path(feed_spec, seed=0)  # the path model validates its own parameters
    except (ValueError, TypeError) as error:
        check.fail(where, str(error).splitlines()[0])
    return feed_spec


def _parse_gas(check: _Checker, raw: Any) -> GasSpec:
    check.no_unknown("gas", raw, {"file", "percentile", "constant_gwei"})
    if ("file" in raw) == ("constant_gwei" in raw):
        check.fail("gas", "give exactly one of file or constant_gwei")
    if "constant_gwei" in raw:
        return GasSpec(constant_gwei=check.number(raw, "constant_gwei", low=0, high=100_000, where="gas.constant_gwei"))
    file = check.string(raw, "file", where="gas.file")
    if not feeds.data_file(file).exists():
        check.fail("gas.file", f"no such data file: {feeds.data_file(file)}")
    percentile = raw.get("percentile", "p60")
    if percentile not in GAS_PERCENTILES:
        check.fail("gas.percentile", f"must be one of {', '.join(GAS_PERCENTILES)}, got {percentile!r}")
    return GasSpec(file=file, percentile=percentile)


def _parse_traders(check: _Checker, raw: Any, markets: set[str]) -> TraderSpec:
    check.no_unknown(
        "traders",
        raw,
        {
            "count",
            "markets",
            "collateral",
            "leverage",
            "collateral_usd",
            "long_share",
            "topup_share",
            "topup_below_health",
            "close_share",
            "close_below_health",
            "size_distribution",
            "size_tail",
            "leverage_distribution",
            "collateral_mix",
        },
    )
    d = TraderSpec()
    collateral = check.choices(raw, "collateral", d.collateral, {"USDC", "WETH", "WBTC", "USDT"}, "traders.collateral")
    mix = raw.get("collateral_mix")
    if mix is not None and not (
        isinstance(mix, list)
        and len(mix) == len(collateral)
        and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in mix)
        and sum(mix) > 0
    ):
        check.fail(
            "traders.collateral_mix",
            f"must be {len(collateral)} weights >= 0 (one per traders.collateral), not all 0, got {mix!r}",
        )
    return TraderSpec(
        count=check.integer(raw, "count", default=d.count, low=0, high=MAX_TRADERS, where="traders.count"),
        markets=check.choices(raw, "markets", d.markets, markets, "traders.markets"),
        collateral=collateral,
        leverage=check.pair(raw, "leverage", d.leverage, 1.0, "traders.leverage"),
        collateral_usd=check.pair(raw, "collateral_usd", d.collateral_usd, 10.0, "traders.collateral_usd"),
        long_share=check.number(raw, "long_share", default=d.long_share, low=0, high=1, where="traders.long_share"),
        topup_share=check.number(raw, "topup_share", default=d.topup_share, low=0, high=1, where="traders.topup_share"),
        topup_below_health=check.number(
            raw, "topup_below_health", default=d.topup_below_health, low=1, where="traders.topup_below_health"
        ),
        close_share=check.number(raw, "close_share", default=d.close_share, low=0, high=1, where="traders.close_share"),
        close_below_health=check.number(
            raw, "close_below_health", default=d.close_below_health, low=1, where="traders.close_below_health"
        ),
        size_distribution=check.one_of(raw, "size_distribution", d.size_distribution, SIZE_DISTRIBUTIONS, "traders"),
        size_tail=check.number(raw, "size_tail", default=d.size_tail, low=0.1, high=10, where="traders.size_tail"),
        leverage_distribution=check.one_of(
            raw, "leverage_distribution", d.leverage_distribution, LEVERAGE_DISTRIBUTIONS, "traders"
        ),
        collateral_mix=None if mix is None else tuple(float(w) for w in mix),
    )


def _parse_keeper(check: _Checker, index: int, raw: Any) -> KeeperSpec:
    where = f"keepers[{index}]"
    check.no_unknown(where, raw, {"name", "delay_blocks", "min_profit_usd", "censored", "realise_above_usd"})
    censored = raw.get("censored", [])
    ok = isinstance(censored, list) and all(
        isinstance(w, list) and len(w) == 2 and all(isinstance(x, (int, float)) for x in w) and 0 <= w[0] < w[1] for w in censored
    )
    if not ok:
        check.fail(f"{where}.censored", f"must be a list of [start, end] second pairs with start < end, got {censored!r}")
    return KeeperSpec(
        name=check.string(raw, "name", where=f"{where}.name"),
        delay_blocks=check.integer(raw, "delay_blocks", default=0, low=0, high=100_000, where=f"{where}.delay_blocks"),
        min_profit_usd=check.number(raw, "min_profit_usd", default=0.0, low=0, where=f"{where}.min_profit_usd"),
        censored=tuple((float(a), float(b)) for a, b in censored),
        realise_above_usd=check.number(raw, "realise_above_usd", default=None, low=1, where=f"{where}.realise_above_usd"),
    )
