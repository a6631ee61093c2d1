"""The protocol's margin arithmetic in Python, integer for integer, so a keeper can mirror an
account's health off-chain exactly as `Clearinghouse.margin` computes it (tested to the wei).

Pure functions over typed snapshots; `snapshot_account` is the only function that reads a chain.
Every rounding direction matches contracts/risk.vy and contracts/Clearinghouse.vy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from math import isqrt
from typing import Any

WAD = 10**18
SECONDS_PER_YEAR = 31_536_000
COMMIT_INTEREST_SECONDS = 300  # MarginLens.FUNDING_BUFFER_SECONDS: a commit's debt interest until its fill
MAX_DEBT_INDEX = 2**104 - 1  # an account stores the index its debt was written at in 104 bits
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
    pending: int = 0  # realised profit the pool owes, not yet paid in tokens: counts as the balance does
    debt_imr: int = 0  # initial margin on a debt (Clearinghouse.debt_terms), WAD


@lru_cache(maxsize=256)  # a market's two parameters: the same few pairs, for every account every step
def vol_unit(vol_k: int, liquidation_horizon: int) -> int:
    """vol_k * sqrt(horizon / year), WAD, rounded up, as risk._vol_unit."""
    return mul_up(vol_k, isqrt(liquidation_horizon * WAD * WAD // SECONDS_PER_YEAR))


def rates(
    base_mmr: int, tier_size: int, tier_mmr: int, unit: int, imr_multiplier: int, abs_size: int, sigma: int, sigma_mm: int
) -> tuple[int, int]:
    """(mmr, imr), as risk._rates: tier = base + tier_mmr * (|size| // tier_size);
    mmr = min(max(tier, unit * sigma_mm), imr); imr = min(multiplier * max(tier, unit * sigma), 100%)."""
    tier_rate = base_mmr + tier_mmr * (abs_size // tier_size)
    mmr = max(tier_rate, mul_up(unit, sigma_mm))
    imr = min(mul_up(max(tier_rate, mul_up(unit, sigma)), imr_multiplier), WAD)
    return min(mmr, imr), imr


def market_rates(params: MarketParams, abs_size: int, sigma: int, sigma_mm: int) -> tuple[int, int]:
    """(mmr, imr), as risk._market_rates."""
    unit = vol_unit(params.vol_k, params.liquidation_horizon)
    return rates(params.base_mmr, params.tier_size, params.tier_mmr, unit, params.imr_multiplier, abs_size, sigma, sigma_mm)


def fill_price(price: int, skew: int, size_delta: int, skew_scale: int) -> int:
    """As risk._fill_price: price * (2 S + 2 skew + delta) / (2 S), buys rounded up, sells down."""
    numerator = 2 * skew_scale + 2 * skew + size_delta
    if numerator <= 0:
        return 0
    if size_delta > 0:
        return ceil_div(price * numerator, 2 * skew_scale)
    return price * numerator // (2 * skew_scale)


def reserve_value(side_oi: int, price: int) -> int:
    """A side of a market in USD for the open-interest reserve, WAD: side_oi * price / WAD rounded up."""
    return mul_up(side_oi, price)


def reserve_need(sides: list[tuple[int, int, int]]) -> int:
    """LiquidityPool's reserve need, WAD: over (larger side, price, reserve_factor) per market,
    the sum of ceil(reserve_value * WAD / factor); a side of 0, or a factor of 0 (the reserve
    off), needs nothing."""
    return sum(ceil_div(reserve_value(side, price) * WAD, factor) for side, price, factor in sides if side and factor)


def order_growth(position: int, size_delta: int) -> tuple[int, int]:
    """Orders._growth: base units an order adds to its market's (long, short) side when it fills
    on `position`; what it holds in the pool from its commit. A reduction adds nothing, a flip
    its new side."""
    new = position + size_delta
    return max(max(new, 0) - max(position, 0), 0), max(max(-new, 0) - max(-position, 0), 0)


def order_bond(growth: int, price: int, rate: int, settlement_to_wad: int, reserve_factor: int = 0) -> int:
    """Orders._bond: what an order that adds `growth` base units (`order_growth`, summed) escrows
    besides its fee, settlement token units: `rate` (WAD) of its notional at `price` (WAD),
    b = ceil(ceil(growth * price / WAD) * rate / WAD); where the order grows its market's larger
    side and the market's `reserve_factor` is in (0, WAD), b = ceil(b * WAD / reserve_factor) (the
    pool capacity it holds); then ceil(b / settlement_to_wad)."""
    bond = mul_up(mul_up(growth, price), rate)
    if 0 < reserve_factor < WAD:
        bond = ceil_div(bond * WAD, reserve_factor)
    return ceil_div(bond, settlement_to_wad)


def larger_side_after(long_oi: int, short_oi: int, held: tuple[int, int], position: int, size_delta: int) -> tuple[int, int]:
    """Orders._hold: the market's larger side, each side with what placed orders hold on it
    (`LiquidityPool.held`), before and after this order's hold. The reserve is checked only when
    the second is larger."""
    longs, shorts = order_growth(position, size_delta)
    before_longs, before_shorts = long_oi + held[0], short_oi + held[1]
    return max(before_longs, before_shorts), max(before_longs + longs, before_shorts + shorts)


def largest_reserved_side(value: int, need_others: int, factor: int, price: int) -> int:
    """The largest side one market may have, base units, with the other markets needing
    `need_others` (LiquidityPool.reserve(market, 0)) of the pool's `value`: the largest L with
    need_others + ceil(reserve_value(L, price) * WAD / factor) <= value; -1 when none."""
    if factor == 0:
        return 2**96 - 1  # the reserve off: only the core's bound on a side
    room = value - need_others
    if room < 0:
        return -1
    return room * factor // WAD * WAD // price


def over_reserve(need: int, value: int) -> bool:
    """Orders' test at commit for an order that grows its market's larger side (refused "orders:
    open interest reserve"): the need with that side, against the pool's signed value, both WAD."""
    return need > value


def reserve_headroom(value: int, need: int, settlement_to_wad: int) -> int:
    """LiquidityPool._reserve_headroom, settlement units: floor((value - need) / settlement_to_wad),
    0 when the need is not below the value."""
    return (value - need) // settlement_to_wad if value > need else 0


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


def accrued(view: MarketView, timestamp: int) -> MarketView:
    """`view` with its funding accrued to `timestamp`, as the core's accrual writes it: every
    margin at that time then reads the same index without recomputing it (a scan of many
    accounts accrues each market once)."""
    if view.state.last_funding_time == timestamp:
        return view
    state = replace(view.state, funding_index=funding_index_now(view, timestamp), last_funding_time=timestamp)
    return replace(view, state=state)


def position_pnl(size: int, cost: int, price: int, index: int) -> int:
    """A position's unrealised PnL at `price` and funding index `index`, WAD, as the contracts
    mark it: signed_mul_floor(size, price - index) - cost."""
    return signed_mul_floor(size, price - index) - cost


def margin(snapshot: AccountSnapshot) -> tuple[int, int, int]:
    """(equity, maintenance, initial) in WAD USD, exactly as Clearinghouse.margin."""
    pnl = maintenance = initial = 0
    for market in sorted(snapshot.positions):
        size, cost = snapshot.positions[market]
        view = snapshot.markets[market]
        index = funding_index_now(view, snapshot.timestamp)
        pnl += position_pnl(size, cost, view.price, index)
        m, i = requirements(view, abs(size))
        maintenance += m
        initial += i
    if snapshot.settlement < 0:
        # a debt is a loan from the pool: it needs initial margin of its own
        initial += mul_up(-snapshot.settlement * snapshot.settlement_to_wad, snapshot.debt_imr)
    equity = (snapshot.settlement + snapshot.pending) * snapshot.settlement_to_wad + collateral_value(snapshot) + pnl
    return equity, maintenance, initial


def requirements(view: MarketView, abs_size: int) -> tuple[int, int]:
    """(maintenance, initial) of a position of `abs_size` base units, WAD USD, as MarginLens._requirements
    and each position of `margin`: notional = ceil(|size| * price / WAD), each rate applied rounding up."""
    mmr, imr = market_rates(view.params, abs_size, view.sigma, view.sigma_mm)
    notional = mul_up(abs_size, view.price)
    return mul_up(notional, mmr), mul_up(notional, imr)


def after_trade(
    margin: tuple[int, int, int],
    view: MarketView,
    position: tuple[int, int],
    size_delta: int,
    settlement_to_wad: int,
    timestamp: int,
) -> tuple[int, int, int]:
    """MarginLens.health_after_trades, one market: `margin` (equity, maintenance, initial) after
    filling `size_delta` on `position` (size, cost) at the current price plus the skew premium
    and paying the fee. The PnL of the position is swapped for the new one's at the funding index
    to now, the fee (settlement units, rounded up) taken from equity, and the market's requirements
    swapped for the new size's. Several trades apply one after another, each market once."""
    return _trade(margin, view, position, size_delta, settlement_to_wad, timestamp)[0]


def _trade(
    margin: tuple[int, int, int],
    view: MarketView,
    position: tuple[int, int],
    size_delta: int,
    settlement_to_wad: int,
    timestamp: int,
) -> tuple[tuple[int, int, int], int, int, int]:
    """`after_trade`'s margin, the fee (settlement units) and the position's PnL before and
    after the trade (WAD)."""
    equity, maintenance, initial = margin
    params, st, price = view.params, view.state, view.price
    index = funding_index_now(view, timestamp)
    size, cost = position
    fill = fill_price(price, st.long_oi - st.short_oi, size_delta, params.skew_scale)
    fee = ceil_div(mul_up(mul_up(abs(size_delta), fill), params.fee), settlement_to_wad)
    pnl_before = position_pnl(size, cost, price, index)
    new_size = size + size_delta
    new_cost = cost + signed_mul_ceil(size_delta, fill - index)
    pnl_after = position_pnl(new_size, new_cost, price, index)
    equity = equity - pnl_before + pnl_after - fee * settlement_to_wad
    m_before, i_before = requirements(view, abs(size))
    m_after, i_after = requirements(view, abs(new_size))
    return (equity, maintenance - m_before + m_after, initial - i_before + i_after), fee, pnl_before, pnl_after


def commit_margin(
    snapshot: AccountSnapshot,
    trades: list[tuple[int, int]],
    views: dict[int, MarketView] | None = None,
    debt_rate: int = 0,
) -> tuple[int, int]:
    """MarginLens.commit_margin, Orders' check of a risk-adding order at its commit: (equity,
    initial) after `trades` (market, size_delta; each market once, in the given order, on
    `margin(snapshot)` as `after_trade`), with every open loss taken as realised. In settlement
    units, owed = the fees + ceil(-pnl_before / S2W) for each traded market losing before its
    trade + ceil(-c / S2W) for each flip whose closed side's premium c = signed_mul_floor(size,
    fill - price) is negative + ceil(-pnl / S2W) for each other market that loses; with b the settlement balance and c the pending
    claim, d = max(owed - b - c, 0) and g = ceil(d * S2W * debt_rate * 300 / (SECONDS_PER_YEAR *
    WAD)) (the debt's interest over MarginLens.FUNDING_BUFFER_SECONDS at the highest rate,
    `debt_rate` = rate_base + rate_slope of Clearinghouse.debt_terms), initial += mul_up(d * S2W,
    debt_imr) - mul_up(max(-b, 0) * S2W, debt_imr) + g + mul_up(g, debt_imr) + S2W per loss
    counted. `views` adds markets the account has no position in."""
    views = {**snapshot.markets, **(views or {})}
    s2w = snapshot.settlement_to_wad
    after = margin(snapshot)
    owed = losing = 0
    for market, delta in trades:
        position = snapshot.positions.get(market, (0, 0))
        view = views[market]
        after, fee, pnl_before, _ = _trade(after, view, position, delta, s2w, snapshot.timestamp)
        owed += fee
        if pnl_before < 0:
            owed, losing = owed + ceil_div(-pnl_before, s2w), losing + 1
        size = position[0]
        if size != 0 and (size + delta > 0) != (size > 0):  # a flip: its fill realises the closed side
            fill = fill_price(view.price, view.state.long_oi - view.state.short_oi, delta, view.params.skew_scale)
            closing = signed_mul_floor(size, fill - view.price)
            if closing < 0:
                owed, losing = owed + ceil_div(-closing, s2w), losing + 1
    traded = {market for market, _ in trades}
    for market in sorted(set(snapshot.positions) - traded):
        size, cost = snapshot.positions[market]
        view = views[market]
        pnl = position_pnl(size, cost, view.price, funding_index_now(view, snapshot.timestamp))
        if pnl < 0:
            owed, losing = owed + ceil_div(-pnl, s2w), losing + 1
    balance = snapshot.settlement
    debt_now, debt_after = max(-balance, 0), max(owed - balance - snapshot.pending, 0)
    growth = ceil_div(debt_after * s2w * debt_rate * COMMIT_INTEREST_SECONDS, SECONDS_PER_YEAR * WAD)
    extra = mul_up(debt_after * s2w, snapshot.debt_imr) - mul_up(debt_now * s2w, snapshot.debt_imr)
    return after[0], after[2] + extra + growth + mul_up(growth, snapshot.debt_imr) + losing * s2w


def realisable_loss(snapshot: AccountSnapshot, market: int) -> int:
    """LiquidationEngine.realise_loss: the settlement token units a realisation of the
    account's position in `market` moves into its balance, 0 when the call reverts "no loss to
    realise" (a gain, nothing, or one unit: the reset basis's rounding). The PnL is
    floor(size * (price - funding index now)) - cost in WAD, credited rounded down to token
    units (toward the pool); the loss is minus that credit. (The call also reverts when the
    debt would be over the loan limit afterwards; that is not checked here.)"""
    if market not in snapshot.positions:
        return 0
    size, cost = snapshot.positions[market]
    view = snapshot.markets[market]
    pnl = position_pnl(size, cost, view.price, funding_index_now(view, snapshot.timestamp))
    loss = -(pnl // snapshot.settlement_to_wad)
    return loss if loss > 1 else 0


def collateral_value(snapshot: AccountSnapshot) -> int:
    """Clearinghouse.collateral_value: sum of amount * price // unit * weight // 1e18, WAD."""
    return sum(c.amount * c.price // c.unit * c.weight // WAD for c in snapshot.collaterals)


def health_of(clearinghouse: Any, account: int) -> int:
    """The account's health as the chain computes it, WAD (`NO_POSITIONS_HEALTH` with nothing
    to maintain): `health` of `Clearinghouse.margin(account)`."""
    equity, maintenance, _ = clearinghouse.margin(account)
    return health(int(equity), int(maintenance))


# ---------------------------------------------------------------- debt (vault)


def debt_index_now(
    index: int, elapsed: int, total_debt: int, pool_balance: int, rate_base: int, rate_slope: int, total_pending: int = 0
) -> int:
    """vault._index_now: min(index + ceil(index * rate * elapsed / (year * 1e18)), 2**104 - 1),
    where rate = rate_base + rate_slope * utilisation // 1e18 and utilisation =
    min(total_debt * 1e18 // lendable, 1e18), lendable = pool_balance - total_pending
    (1e18 when lendable <= 0); the index as it is when nothing is owed or no time passed."""
    if elapsed == 0 or total_debt == 0:
        return index
    lendable = pool_balance - total_pending
    utilisation = min(total_debt * WAD // lendable, WAD) if lendable > 0 else WAD
    rate = rate_base + rate_slope * utilisation // WAD
    return min(index + ceil_div(index * rate * elapsed, SECONDS_PER_YEAR * WAD), MAX_DEBT_INDEX)


def debt_now(written: int, index: int, index_at_write: int) -> int:
    """A debt of `written` token units written at `index_at_write`, at `index`, rounded up."""
    return ceil_div(written * index, index_at_write)


@dataclass(frozen=True)
class DebtView:
    """The debt index's inputs as the chain holds them (`debt_state`, `total_debt`,
    `pool_balance`, `debt_terms`): the index at any later timestamp, as funding from a
    MarketView."""

    index: int
    last_time: int
    total_debt: int
    pool_balance: int
    rate_base: int
    rate_slope: int
    debt_imr: int
    total_pending: int = 0

    def index_at(self, timestamp: int) -> int:
        return debt_index_now(
            self.index,
            timestamp - self.last_time,
            self.total_debt,
            self.pool_balance,
            self.rate_base,
            self.rate_slope,
            self.total_pending,
        )

    def balance(self, written: int, index_at_write: int, timestamp: int) -> int:
        """A settlement balance as `Clearinghouse.settlement` reads it at `timestamp`: a debt
        (written < 0 at `index_at_write`) with its interest."""
        if written >= 0:
            return written
        return -debt_now(-written, self.index_at(timestamp), index_at_write)


def read_debt_view(clearinghouse: Any) -> DebtView:
    index, last_time = clearinghouse.debt_state()
    rate_base, rate_slope, debt_imr, _ = clearinghouse.debt_terms()
    return DebtView(
        int(index),
        int(last_time),
        int(clearinghouse.total_debt()),
        int(clearinghouse.pool_balance()),
        int(rate_base),
        int(rate_slope),
        int(debt_imr),
        int(clearinghouse.total_pending()),
    )


def collateral_for_sale(
    debt: int, equity: int, liquidation_ltv: int, has_positions: bool, settlement_to_wad: int, written_off: bool = False
) -> bool:
    """LiquidationEngine.liquidate_collateral's rule: a debt above `liquidation_ltv` of what the
    account holds (its equity plus its debt, WAD) puts its collateral up for sale, whatever the
    equity and the positions; within it, and always for a written-off token, only an account
    with no positions and negative equity."""
    debt_wad = debt * settlement_to_wad
    if debt > 0 and not written_off and debt_wad > signed_mul_floor(equity + debt_wad, liquidation_ltv):
        return True
    return not has_positions and equity < 0


def is_liquidatable(snapshot: AccountSnapshot) -> bool:
    equity, maintenance, _ = margin(snapshot)
    return equity < maintenance


def read_market_view(clearinghouse: Any, oracle: Any, market: int) -> MarketView:
    """One market's parameters, state, price and volatilities, read from the chain."""
    params = MarketParams(*[_plain(v) for v in clearinghouse.markets(market)])
    state = MarketState(*[int(v) for v in clearinghouse.market_state(market)])
    sigma, sigma_mm = oracle.volatilities(params.asset)
    return MarketView(params, state, int(oracle.price(params.asset)), int(sigma), int(sigma_mm))


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
        markets[market] = read_market_view(clearinghouse, oracle, market)
    collateral_mask = clearinghouse.collateral_mask(account)
    collaterals: list[CollateralView] = []
    for slot in range(1, MAX_COLLATERALS):
        if not collateral_mask >> slot & 1:
            continue
        col = clearinghouse.collaterals(slot)
        # a written-off token (weight 0) is worth nothing and its feed is not read, as on chain
        price = int(oracle.price(col.token)) if int(col.weight) else 0
        collaterals.append(CollateralView(int(col.unit), int(col.weight), price, int(clearinghouse.balances(account, slot))))
    return AccountSnapshot(
        settlement=int(clearinghouse.settlement(account)),
        settlement_to_wad=int(clearinghouse.SETTLEMENT_TO_WAD()),
        positions=positions,
        markets=markets,
        collaterals=collaterals,
        timestamp=timestamp,
        pending=int(clearinghouse.pending(account)),
        debt_imr=int(clearinghouse.debt_terms()[2]),
    )


def _plain(value: Any) -> Any:
    return value if isinstance(value, int) else str(value)


# ---------------------------------------------------------------- liquidation (LiquidationEngine)

MAX_TIP = 1_000 * WAD  # LiquidationEngine.MAX_TIP: the most one whole close is tipped, WAD USD
NO_POSITIONS_HEALTH = 2**256 - 1


@dataclass(frozen=True)
class LiquidationSnapshot:
    """As IClearinghouse.LiquidationSnapshot: what the engine reads for one account and market."""

    equity: int
    maintenance: int
    price: int
    size: int
    base_mmr: int
    tier_size: int
    tier_mmr: int
    vol_unit: int
    imr_multiplier: int
    sigma: int
    sigma_mm: int
    penalty: int
    keeper_share: int
    insurance: int
    skew: int = 0  # the market's long - short open interest, base units
    skew_scale: int = 1  # the market's skew scale (the premium's denominator)


@dataclass(frozen=True)
class LiquidationParams:
    """The engine's parameters: buffer b, full-liquidation health, dust notional (WAD) and the
    underwater tip rate (WAD of closed notional)."""

    buffer: int
    full_liquidation_health: int
    dust_notional: int
    underwater_tip_rate: int


@dataclass(frozen=True)
class LiquidationOutcome:
    """What `LiquidationEngine.liquidate` does: base units closed, whether that is the whole
    position, the penalty and the keeper's reward (settlement token units), and the fill price
    (the oracle price, or the skew-premium fill for a whole close). The Clearinghouse pays the
    reward out of the insurance fund, then the pool's free liquidity: it pays less only when
    both together hold less."""

    close: int
    whole: bool
    penalty: int
    keeper_reward: int
    health_before: int
    fill: int


def snapshot_for(view: MarketView, size: int, equity: int, maintenance: int, insurance: int = 0) -> LiquidationSnapshot:
    """The engine's snapshot of a position of `size` in `view`'s market, for an account of
    `equity` and `maintenance` (from `margin`)."""
    p = view.params
    return LiquidationSnapshot(
        equity,
        maintenance,
        view.price,
        size,
        p.base_mmr,
        p.tier_size,
        p.tier_mmr,
        vol_unit(p.vol_k, p.liquidation_horizon),
        p.imr_multiplier,
        view.sigma,
        view.sigma_mm,
        p.penalty,
        p.keeper_share,
        insurance,
        view.state.long_oi - view.state.short_oi,
        p.skew_scale,
    )


def snapshot_rate(s: LiquidationSnapshot, abs_size: int) -> int:
    """The maintenance rate of a position of `abs_size` in the snapshot's market."""
    return rates(s.base_mmr, s.tier_size, s.tier_mmr, s.vol_unit, s.imr_multiplier, abs_size, s.sigma, s.sigma_mm)[0]


def close_for_rate(s: LiquidationSnapshot, abs_size: int, m_other: int, rate: int, buffer: int, settlement_to_wad: int) -> int:
    """Least x (base units, rounded up) with E' >= (1 + b) M' when the remainder's rate is `rate`:
    x * price >= ((1 + b)(M_other + N r) - (E - 2 token units)) / ((1 + b) r - f), as risk._close_for_rate."""
    b1 = WAD + buffer
    notional = mul_up(abs_size, s.price)
    target = mul_up(m_other + mul_up(notional, rate), b1) - (s.equity - 2 * settlement_to_wad)
    if target <= 0:
        return 0
    x_notional = ceil_div(target * WAD, mul_down(b1, rate) - s.penalty)
    return ceil_div(x_notional * WAD, s.price)


def least_close_for(s: LiquidationSnapshot, buffer: int, settlement_to_wad: int) -> int:
    """The least size whose close restores health 1 + buffer across size tiers (|size| when none
    can), as risk._least_close: a binary search for the highest tier t with X(R_t) <= hi_t."""
    abs_size = abs(s.size)
    mmr = snapshot_rate(s, abs_size)
    m_other = s.maintenance - mul_up(mul_up(abs_size, s.price), mmr)
    top = abs_size // s.tier_size
    x = close_for_rate(s, abs_size, m_other, mmr, buffer, settlement_to_wad)
    if x <= abs_size - top * s.tier_size:
        return x
    if close_for_rate(s, abs_size, m_other, snapshot_rate(s, 0), buffer, settlement_to_wad) > abs_size:
        return abs_size
    lo, hi = 0, top
    for _ in range(128):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        rate = snapshot_rate(s, mid * s.tier_size)
        if close_for_rate(s, abs_size, m_other, rate, buffer, settlement_to_wad) <= abs_size - mid * s.tier_size:
            lo = mid
        else:
            hi = mid
    x = close_for_rate(s, abs_size, m_other, snapshot_rate(s, lo * s.tier_size), buffer, settlement_to_wad)
    upper_remainder = (lo + 1) * s.tier_size - 1
    if upper_remainder < abs_size:
        x = max(x, abs_size - upper_remainder)
    return x


def least_close(view: MarketView, abs_size: int, equity: int, maintenance: int, buffer: int, settlement_to_wad: int) -> int:
    """`least_close_for` of a position of `abs_size` in `view`'s market."""
    return least_close_for(snapshot_for(view, abs_size, equity, maintenance), buffer, settlement_to_wad)


def liquidation_penalty(
    equity: int, maintenance: int, closed_notional: int, mmr: int, penalty_rate: int, settlement_to_wad: int
) -> int:
    """Token units, as risk._liquidation_penalty: penalty_rate of the closed notional (up), at most
    the share of positive equity that backed the maintenance freed (down); 0 when equity <= 0."""
    if equity <= 0:
        return 0
    penalty = ceil_div(mul_up(closed_notional, penalty_rate), settlement_to_wad)
    freed = min(mul_up(closed_notional, mmr), maintenance)
    return min(penalty, equity * freed // maintenance // settlement_to_wad)


def liquidation_outcome(
    s: LiquidationSnapshot, params: LiquidationParams, max_size: int, settlement_to_wad: int
) -> LiquidationOutcome:
    """What `LiquidationEngine.liquidate(account, market, max_size)` closes and pays, in the
    contract's order: least close (all below full_liquidation_health, when health * mmr < penalty,
    or when the remainder is dust), capped at max_size; the penalty; the keeper's share; on a whole close at least the tip
    (underwater_tip_rate of the notional, at most MAX_TIP and the fund after the penalty's share)."""
    health_before = health(s.equity, s.maintenance)
    abs_size = abs(s.size)
    mmr = snapshot_rate(s, abs_size)
    close = abs_size
    if health_before >= params.full_liquidation_health and mul_down(health_before, mmr) >= s.penalty:
        close = min(least_close_for(s, params.buffer, settlement_to_wad), abs_size)
        if mul_down(abs_size - close, s.price) < params.dust_notional:
            close = abs_size
    close = min(close, max_size)
    fill, premium = s.price, 0
    if close == abs_size:
        # a whole close fills at the skew premium it moves, as a trade would; the premium it pays
        # comes first (rounded up), the penalty only out of the equity left
        delta = -close if s.size > 0 else close
        fill = fill_price(s.price, s.skew, delta, s.skew_scale)
        premium = max(signed_mul_ceil(delta, fill - s.price), 0)
    notional = mul_up(close, s.price)
    penalty = liquidation_penalty(s.equity - premium, s.maintenance, notional, mmr, s.penalty, settlement_to_wad)
    reward = penalty * s.keeper_share // WAD
    if close == abs_size:
        tip = min(
            min(mul_down(notional, params.underwater_tip_rate), MAX_TIP) // settlement_to_wad, s.insurance + penalty - reward
        )
        reward = max(reward, tip)
    return LiquidationOutcome(close, close == abs_size, penalty, reward, health_before, fill)


def read_liquidation_params(liquidation_engine: Any) -> LiquidationParams:
    """The engine's governed parameters, read from the chain."""
    return LiquidationParams(
        int(liquidation_engine.liquidation_buffer()),
        int(liquidation_engine.full_liquidation_health()),
        int(liquidation_engine.dust_notional()),
        int(liquidation_engine.underwater_tip_rate()),
    )
