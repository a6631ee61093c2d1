"""What a simulation run measures: typed records the loop fills and the report reads.

Units: USD as float (already converted from WAD or token units), times in seconds since the
scenario start, blocks as chain block numbers relative to the first simulated block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class OracleRound:
    """A round the oracle published on chain."""

    time: float
    block: int
    market: str  # e.g. "ETH-PERP"
    price: float  # the published answer, USD
    reason: str  # "initial", "deviation" or "heartbeat"


@dataclass(frozen=True)
class LiquidationRecord:
    """One successful liquidate() call."""

    time: float
    block: int
    keeper: str
    account: int
    market: str
    size_closed: float  # base units, signed as the change to the position
    notional_usd: float
    penalty_usd: float
    keeper_reward_usd: float
    gas_used: int
    gas_cost_usd: float  # gas_used * gas price of the moment * ETH price
    least_notional_usd: float  # the least notional that would have restored health (off-chain mirror)
    delay_blocks: int  # blocks since the account was first seen liquidatable
    health_before: float
    health_after: float  # inf when no position is left
    full_close: bool


@dataclass(frozen=True)
class BadDebtRecord:
    time: float
    block: int
    account: int
    shortfall_usd: float
    covered_by_insurance_usd: float
    socialised_usd: float


@dataclass(frozen=True)
class SeriesPoint:
    """The protocol's state at one simulation step."""

    time: float
    block: int
    market_price: dict[str, float]  # market -> true (path) price, USD
    oracle_price: dict[str, float]  # market -> price the oracle reports, USD
    insurance_usd: float
    pool_value_usd: float
    open_interest_usd: float  # long + short notional over all markets at oracle prices
    bad_debt_usd: float  # cumulative
    liquidatable_accounts: int
    health_quantiles: tuple[float, float, float, float, float]  # p5, p25, p50, p75, p95 of open accounts (capped at 10)
    open_accounts: int


@dataclass
class KeeperStats:
    name: str
    liquidations: int = 0
    revenue_usd: float = 0.0  # liquidation rewards and order execution fees received
    gas_spent_usd: float = 0.0  # on every transaction sent, lost races included
    lost_races: int = 0  # liquidate() calls that reverted because someone got there first
    skipped_unprofitable: int = 0  # candidates left alone because gas would cost more than the reward
    orders_filled: int = 0  # traders' orders it filled, each paid the execution fee
    losses_realised: int = 0  # open losses it realised into debts (unpaid: on the LPs' behalf)

    @property
    def profit_usd(self) -> float:
        return self.revenue_usd - self.gas_spent_usd


@dataclass
class SimulationResult:
    scenario: str
    seed: int
    network: str
    started_block: int
    steps: int = 0
    transactions: int = 0  # sent by the run's loop (traders, keepers, the oracle), deployment and funding excluded
    wall_seconds: float = 0.0
    # the step's one off-chain scan of every mirrored account (`Keeper.scan_margins`): its
    # slowest and its total over the steps, and the most accounts with positions it priced
    scan_seconds_max: float = 0.0
    scan_seconds_total: float = 0.0
    scan_accounts_max: int = 0
    rounds: list[OracleRound] = field(default_factory=list)
    series: list[SeriesPoint] = field(default_factory=list)
    liquidations: list[LiquidationRecord] = field(default_factory=list)
    bad_debt: list[BadDebtRecord] = field(default_factory=list)
    keepers: dict[str, KeeperStats] = field(default_factory=dict)
    still_liquidatable_at_end: int = 0
    accounts: int = 0  # accounts that held a position or collateral during the run
    unpriced_at_end: int = 0  # accounts the contracts could not value at the end (a halted price)
    # accounts whose equity is below zero at the end: their shortfall is bad debt no liquidation
    # has booked yet (a position too small to be worth closing, a debt behind unsold collateral)
    underwater_at_end: int = 0
    underwater_at_end_usd: float = 0.0  # the sum of those accounts' negative equity, USD
    peak_open_interest_usd: float = 0.0
    trader_topups: int = 0  # margin top-ups by traders whose health fell below their threshold
    trader_closes: int = 0  # positions closed by their owners below the close threshold
    # accounts liquidatable at the last step that no liquidation closed: the blocks each had
    # waited by then (censored observations: its delay is at least this)
    censored_delays: list[int] = field(default_factory=list)
    # a replay's UTC start (unix seconds, the first price bar's time): time t is clock_start + t;
    # None on a synthetic path
    clock_start: int | None = None

    # --- derived metrics -----------------------------------------------------------------
    @property
    def total_bad_debt_usd(self) -> float:
        return sum(b.shortfall_usd for b in self.bad_debt)

    @property
    def bad_debt_share_of_peak_oi(self) -> float:
        return self.total_bad_debt_usd / self.peak_open_interest_usd if self.peak_open_interest_usd else 0.0

    @property
    def liquidated_notional_usd(self) -> float:
        return sum(liq.notional_usd for liq in self.liquidations)

    @property
    def over_liquidation_usd(self) -> float:
        """Notional closed beyond the least that would have restored health, partial closes only
        (a full close under the deep-underwater or dust rule is the rule, not an excess)."""
        return sum(max(liq.notional_usd - liq.least_notional_usd, 0.0) for liq in self.liquidations if not liq.full_close)

    def delay_quantiles(self) -> dict[str, float]:
        """Liquidation delay in blocks, p50, p90 and max, over every liquidation and every account
        left liquidatable at the end, each of those counted with its wait so far (a lower bound of
        its delay: leaving them out made a run that never liquidates look fast); "censored": how many."""
        delays = sorted([liq.delay_blocks for liq in self.liquidations] + self.censored_delays)
        if not delays:
            return {"p50": 0.0, "p90": 0.0, "max": 0.0, "censored": 0}

        def q(p: float) -> float:
            return float(delays[min(len(delays) - 1, int(p * (len(delays) - 1) + 0.5))])

        return {"p50": q(0.5), "p90": q(0.9), "max": float(delays[-1]), "censored": len(self.censored_delays)}

    # --- for notebooks ---------------------------------------------------------------------
    def to_frames(self) -> dict[str, Any]:
        """The run as pandas DataFrames, one per record type, for a notebook:

        - "series": one row per step; `price_<market>` and `oracle_<market>` columns, the health
          quantiles as `health_p5` .. `health_p95`;
        - "rounds", "liquidations", "bad_debt": one row per record, the record's fields as columns;
        - "keepers": one row per keeper, with its profit.

        Every frame has `time` (seconds from the start) but "keepers"; on a replay also
        `time_utc` (timezone-aware datetimes)."""
        import pandas as pd

        series = []
        for p in self.series:
            row = {k: v for k, v in asdict(p).items() if k not in ("market_price", "oracle_price", "health_quantiles")}
            row |= {f"price_{m}": v for m, v in p.market_price.items()}
            row |= {f"oracle_{m}": v for m, v in p.oracle_price.items()}
            row |= {f"health_{name}": v for name, v in zip(("p5", "p25", "p50", "p75", "p95"), p.health_quantiles, strict=True)}
            series.append(row)
        frames = {
            "series": pd.DataFrame(series, columns=None if series else ["time"]),
            "rounds": _frame(pd, OracleRound, self.rounds),
            "liquidations": _frame(pd, LiquidationRecord, self.liquidations),
            "bad_debt": _frame(pd, BadDebtRecord, self.bad_debt),
        }
        if self.clock_start is not None:
            for frame in frames.values():
                frame["time_utc"] = pd.to_datetime(self.clock_start + frame["time"], unit="s", utc=True)
        keepers = [asdict(k) | {"profit_usd": k.profit_usd} for k in self.keepers.values()]
        frames["keepers"] = pd.DataFrame(keepers, columns=None if keepers else ["name"])
        return frames


def _frame(pd: Any, record_type: type, records: list[Any]) -> Any:
    """Records of one dataclass type as a DataFrame, its fields as columns even when empty."""
    from dataclasses import fields

    return pd.DataFrame([asdict(r) for r in records], columns=[f.name for f in fields(record_type)])
