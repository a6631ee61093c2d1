"""The protocol's margin arithmetic in Python, integer for integer, so a keeper can mirror an
account's health off-chain exactly as `Clearinghouse.margin` computes it (tested to the wei).

Pure functions over typed snapshots; `snapshot_account` is the only function that reads a chain.
Every rounding direction matches contracts/risk.vy and contracts/Clearinghouse.vy.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt
from typing import Any

WAD = 10**18
SECONDS_PER_YEAR = 31_536_000
SECONDS_PER_DAY = 86_400
MAX_MARKETS = 16
MAX_COLLATERALS = 8


def _tdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero, as the EVM's SDIV (and Vyper's //) does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _tmod(a: int, b: int) -> int:
    """Remainder with the sign of the dividend, as the EVM's SMOD."""
    return a - _tdiv(a, b) * b


def ceil_div(a: int, b: int) -> int:
    return 0 if a == 0 else (a - 1) // b + 1


def mul_up(a: int, b: int) -> int:
    return ceil_div(a * b, WAD)


def mul_down(a: int, b: int) -> int:
    return a * b // WAD


def signed_mul_floor(a: int, b: int) -> int:
    return (a * b) // WAD  # Python's // is floor division already


def signed_mul_ceil(a: int, b: int) -> int:
    return -((-a * b) // WAD)


def health(equity: int, maintenance: int) -> int:
    if maintenance == 0:
        return 2**256 - 1
    if equity <= 0:
        return 0
    return equity * WAD // maintenance


@dataclass(frozen=True)
class MarketParams:
    asset: str
    base_mmr: int
    tier_size: int
    tier_mmr: int
    vol_k: int
    liquidation_horizon: int
    imr_multiplier: int
    fee: int
    penalty: int
    keeper_share: int
    skew_scale: int
    max_funding_rate: int
    oi_cap: int


@dataclass(frozen=True)
class MarketState:
    long_oi: int
    short_oi: int
    total_cost: int
    funding_index: int
    last_funding_time: int


@dataclass(frozen=True)
class MarketView:
    """What the margin of one position needs: parameters, state, price and volatilities."""

    params: MarketParams
    state: MarketState
    price: int
    sigma: int
    sigma_mm: int


@dataclass(frozen=True)
class CollateralView:
    unit: int
    weight: int
    price: int
    amount: int


@dataclass(frozen=True)
class AccountSnapshot:
    settlement: int
    settlement_to_wad: int
    positions: dict[int, tuple[int, int]]  # market -> (size, cost)
    markets: dict[int, MarketView]
    collaterals: list[CollateralView]
    timestamp: int


def market_rates(params: MarketParams, abs_size: int, sigma: int, sigma_mm: int) -> tuple[int, int]:
    """(mmr, imr), as risk._market_rates."""
    tier_rate = params.base_mmr + params.tier_mmr * (abs_size // params.tier_size)
    horizon = isqrt(params.liquidation_horizon * WAD * WAD // SECONDS_PER_YEAR)
    vol_unit = mul_up(params.vol_k, horizon)
    mmr = max(tier_rate, mul_up(vol_unit, sigma_mm))
    imr = min(mul_up(max(tier_rate, mul_up(vol_unit, sigma)), params.imr_multiplier), WAD)
    return min(mmr, imr), imr


def fill_price(price: int, skew: int, size_delta: int, skew_scale: int) -> int:
    """As risk._fill_price: the average skew premium over the trade."""
    premium = _tdiv((2 * skew + size_delta) * WAD, 2 * skew_scale)
    factor = max(WAD + premium, 0)
    if size_delta > 0:
        return mul_up(price, factor) + 1
    return mul_down(price, factor)


def funding_rate(long_oi: int, short_oi: int, max_funding_rate: int, skew_scale: int) -> int:
    rate = _tdiv((long_oi - short_oi) * max_funding_rate, skew_scale)
    return max(min(rate, max_funding_rate), -max_funding_rate)


def funding_step(rate: int, price: int, elapsed: int) -> int:
    numerator = rate * price * elapsed
    denominator = WAD * SECONDS_PER_DAY
    step = _tdiv(numerator, denominator)
    if _tmod(numerator, denominator) != 0:
        step += 1 if numerator > 0 else -1
    return step


def funding_index_now(view: MarketView, timestamp: int) -> int:
    st, p = view.state, view.params
    elapsed = timestamp - st.last_funding_time
    if elapsed == 0:
        return st.funding_index
    rate = funding_rate(st.long_oi, st.short_oi, p.max_funding_rate, p.skew_scale)
    return st.funding_index + funding_step(rate, view.price, elapsed)


def margin(snapshot: AccountSnapshot) -> tuple[int, int, int]:
    """(equity, maintenance, initial) in WAD USD, exactly as Clearinghouse.margin."""
    pnl = maintenance = initial = 0
    for market in sorted(snapshot.positions):
        size, cost = snapshot.positions[market]
        view = snapshot.markets[market]
        index = funding_index_now(view, snapshot.timestamp)
        pnl += signed_mul_floor(size, view.price - index) - cost
        mmr, imr = market_rates(view.params, abs(size), view.sigma, view.sigma_mm)
        notional = mul_up(abs(size), view.price)
        maintenance += mul_up(notional, mmr)
        initial += mul_up(notional, imr)
    collateral = sum(c.amount * c.price // c.unit * c.weight // WAD for c in snapshot.collaterals)
    equity = snapshot.settlement * snapshot.settlement_to_wad + collateral + pnl
    return equity, maintenance, initial


def is_liquidatable(snapshot: AccountSnapshot) -> bool:
    equity, maintenance, _ = margin(snapshot)
    return equity < maintenance


def snapshot_account(clearinghouse: Any, oracle: Any, account: int, timestamp: int) -> AccountSnapshot:
    """Read everything `margin` needs for `account` from the chain (the only I/O here)."""
    market_mask = clearinghouse.market_mask(account)
    positions: dict[int, tuple[int, int]] = {}
    markets: dict[int, MarketView] = {}
    for market in range(1, MAX_MARKETS):
        if not market_mask >> market & 1:
            continue
        pos = clearinghouse.positions(account, market)
        positions[market] = (int(pos.size), int(pos.cost))
        params = MarketParams(*[_plain(v) for v in clearinghouse.markets(market)])
        state = MarketState(*[int(v) for v in clearinghouse.market_state(market)])
        sigma, sigma_mm = oracle.volatilities(params.asset)
        markets[market] = MarketView(params, state, int(oracle.price(params.asset)), int(sigma), int(sigma_mm))
    collateral_mask = clearinghouse.collateral_mask(account)
    collaterals: list[CollateralView] = []
    for slot in range(1, MAX_COLLATERALS):
        if not collateral_mask >> slot & 1:
            continue
        col = clearinghouse.collaterals(slot)
        collaterals.append(
            CollateralView(
                int(col.unit), int(col.weight), int(oracle.price(col.token)), int(clearinghouse.balances(account, slot))
            )
        )
    return AccountSnapshot(
        settlement=int(clearinghouse.settlement(account)),
        settlement_to_wad=int(clearinghouse.SETTLEMENT_TO_WAD()),
        positions=positions,
        markets=markets,
        collaterals=collaterals,
        timestamp=timestamp,
    )


def _plain(value: Any) -> Any:
    return value if isinstance(value, int) else str(value)


def _close_for_rate(
    params: MarketParams, abs_size: int, price: int, equity: int, m_other: int, rate: int, b1: int, settlement_to_wad: int
) -> int:
    notional = mul_up(abs_size, price)
    slack = 2 * settlement_to_wad
    target = mul_up(m_other + mul_up(notional, rate), b1) - (equity - slack)
    if target <= 0:
        return 0
    denominator = mul_down(b1, rate) - params.penalty
    x_notional = ceil_div(target * WAD, denominator)
    return ceil_div(x_notional * WAD, price)


def least_close(view: MarketView, abs_size: int, equity: int, maintenance: int, buffer: int, settlement_to_wad: int) -> int:
    """The least size (base units) `Clearinghouse.liquidate` closes to restore health 1 + buffer,
    before the deep-underwater, dust and max_size rules; as `_least_close`."""
    params, price = view.params, view.price
    b1 = WAD + buffer
    mmr, _ = market_rates(params, abs_size, view.sigma, view.sigma_mm)
    m_other = maintenance - mul_up(mul_up(abs_size, price), mmr)
    x = _close_for_rate(params, abs_size, price, equity, m_other, mmr, b1, settlement_to_wad)
    if x >= abs_size:
        return abs_size
    r2, _ = market_rates(params, abs_size - x, view.sigma, view.sigma_mm)
    if r2 < mmr:
        x2 = _close_for_rate(params, abs_size, price, equity, m_other, r2, b1, settlement_to_wad)
        check, _ = market_rates(params, abs_size - min(x2, abs_size), view.sigma, view.sigma_mm)
        if x2 < x and check == r2:
            x = x2
    return min(x, abs_size)
