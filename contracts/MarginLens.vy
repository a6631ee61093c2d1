# pragma version ~=0.4.3
"""
@title MarginLens
@notice The what-if views a front end or a keeper needs without re-deriving the maths: account
        summary, health after a hypothetical trade, liquidation price per market, maximum
        withdrawal per token, rates, fill price and funding rate. Read-only.
@dev A separate contract because the Clearinghouse is at the 24 KB code-size limit. It uses the
     same `risk` module as the Clearinghouse and its `margin` view, so the two cannot drift.
"""

from .interfaces import IClearinghouse
from .interfaces import IOracleRouter

import constants as c
import risk

MAX_BATCH: constant(uint256) = 512  # accounts per healths() call
FUNDING_BUFFER_SECONDS: constant(uint256) = 300  # max_withdraw leaves room for 5 minutes of funding at today's rates

CLEARINGHOUSE: public(immutable(IClearinghouse))  # the protocol this lens reads
ORACLE: public(immutable(IOracleRouter))  # its oracle
SETTLEMENT_TO_WAD: immutable(uint256)  # its settlement token unit to WAD, read once


@deploy
def __init__(clearinghouse: IClearinghouse):
    CLEARINGHOUSE = clearinghouse
    ORACLE = IOracleRouter(staticcall clearinghouse.ORACLE())
    SETTLEMENT_TO_WAD = staticcall clearinghouse.SETTLEMENT_TO_WAD()


@view
@external
def account_summary(account: uint256) -> IClearinghouse.AccountSummary:
    """
    @notice Equity, requirements, health and their parts, exactly as the margin checks see them.
    @param account The account id (owner << 96 | subaccount).
    @return equity, maintenance, initial, collateral_value and unrealised_pnl in WAD USD (funding
            accrued to now), health in WAD (max_value(uint256) without positions), settlement in
            settlement token units; unrealised_pnl is equity less the settlement balance and
            the pending claim (in WAD) and collateral_value.
    """
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = staticcall CLEARINGHOUSE.margin(account)
    s: int256 = staticcall CLEARINGHOUSE.settlement(account)
    collateral: uint256 = staticcall CLEARINGHOUSE.collateral_value(account)
    scale: int256 = convert(SETTLEMENT_TO_WAD, int256)
    return IClearinghouse.AccountSummary(
        equity=equity,
        maintenance=maintenance,
        initial=initial,
        health=risk._health(equity, maintenance),
        settlement=s,
        collateral_value=collateral,
        unrealised_pnl=equity
        - (s + convert(staticcall CLEARINGHOUSE.pending(account), int256)) * scale
        - convert(collateral, int256),
    )


@view
@external
def healths(accounts: DynArray[uint256, MAX_BATCH]) -> DynArray[uint256, MAX_BATCH]:
    """
    @notice Health of many accounts in one call, for keepers confirming their candidates;
            max_value(uint256) for an account without positions.
    @param accounts Account ids (owner << 96 | subaccount), at most 512.
    @return Each account's equity / maintenance, WAD, rounded down, in the order given; 0 for an
            account with positions and equity <= 0.
    """
    result: DynArray[uint256, MAX_BATCH] = []
    for account: uint256 in accounts:
        equity: int256 = 0
        maintenance: uint256 = 0
        initial: uint256 = 0
        equity, maintenance, initial = staticcall CLEARINGHOUSE.margin(account)
        result.append(risk._health(equity, maintenance))
    return result


@view
@external
def health_after_trade(account: uint256, market: uint256, size_delta: int256) -> (uint256, int256, uint256):
    """
    @notice What a trade would leave: (health, equity, initial requirement) after filling
            `size_delta` at the current premium and paying the fee. Equal to what the
            Clearinghouse computes after the trade, up to the settlement token's rounding of
            realised PnL (at most 1 token unit).
    @dev Does not check what the Clearinghouse would refuse (zero size, pause, reduce-only, the
         open-interest cap, the price limit, initial margin) nor the bad debt it settles when a
         close leaves an underwater account with no positions.
    @param account The account id (owner << 96 | subaccount).
    @param market A listed market id.
    @param size_delta Base units to buy (> 0) or sell (< 0).
    @return (health in WAD, equity in WAD USD, initial requirement in WAD USD), all afterwards.
    @custom:security The Clearinghouse floors realised PnL to token units, so its equity can be
           up to 1 token unit below this one: a trade quoted at exactly initial margin may still
           revert "clearinghouse: insufficient margin".
    """
    health: uint256 = 0
    equity: int256 = 0
    initial: uint256 = 0
    owed: uint256 = 0
    losing: uint256 = 0
    seen: uint256 = 0
    health, equity, initial, owed, losing, seen = self._after_trades(account, [market], [size_delta])
    return health, equity, initial


@view
@external
def health_after_trades(
    account: uint256, markets: DynArray[uint256, c.MAX_MARKETS], size_deltas: DynArray[int256, c.MAX_MARKETS]
) -> (uint256, int256, uint256):
    """
    @notice What several trades would leave together, each as `health_after_trade` computes it
            (at the current price and premium, its fee paid). Orders checks a risk-adding order
            at its commit with every other risk-adding order the account has open, through
            `commit_margin`, which adds the margin of open losses taken as realised.
    @param account The account id (owner << 96 | subaccount).
    @param markets Listed market ids, each at most once.
    @param size_deltas Base units to buy (> 0) or sell (< 0), one per market.
    @return (health in WAD, equity in WAD USD, initial requirement in WAD USD), all afterwards.
    """
    health: uint256 = 0
    equity: int256 = 0
    initial: uint256 = 0
    owed: uint256 = 0
    losing: uint256 = 0
    seen: uint256 = 0
    health, equity, initial, owed, losing, seen = self._after_trades(account, markets, size_deltas)
    return health, equity, initial


@view
@external
def commit_margin(
    account: uint256, markets: DynArray[uint256, c.MAX_MARKETS], size_deltas: DynArray[int256, c.MAX_MARKETS]
) -> (int256, uint256):
    """
    @notice Equity and initial requirement as Orders checks a risk-adding order at its commit:
            `health_after_trades`' equity, and its initial requirement with every open loss
            after the trades taken as realised. Anyone may realise a loss between the commit and
            the fill (`LiquidationEngine.realise_loss`), which moves it into the settlement
            balance as a debt that needs `debt_imr`; an order accepted here does not fail the
            fill's margin check for that at the same prices.
    @dev In settlement units, owed = the trades' fees, + ceil(-pnl_before / S2W) for each traded
         market losing before its trade, + ceil(-c / S2W) for each flip whose closed side's
         premium c = signed_mul_floor(size, fill - price) is negative, + ceil(-pnl / S2W) for
         each other market of the account that loses. With b the settlement balance and c the pending claim
         (which pays a realised loss before any debt does), initial +=
         mul_up(max(owed - b - c, 0) * S2W, debt_imr) - mul_up(max(-b, 0) * S2W, debt_imr)
         + g + mul_up(g, debt_imr), with g = ceil(max(owed - b - c, 0) * S2W * (rate_base +
         rate_slope) * 300 / (SECONDS_PER_YEAR * WAD)) (the debt's interest over 300 s at the
         highest rate), + S2W per loss counted (a realisation's rounding takes less than one unit).
    @param account The account id (owner << 96 | subaccount).
    @param markets Listed market ids, each at most once.
    @param size_deltas Base units to buy (> 0) or sell (< 0), one per market.
    @return (equity in WAD USD, initial requirement in WAD USD), both afterwards.
    """
    health: uint256 = 0
    equity: int256 = 0
    initial: uint256 = 0
    owed: uint256 = 0
    losing: uint256 = 0
    seen: uint256 = 0
    health, equity, initial, owed, losing, seen = self._after_trades(account, markets, size_deltas)
    rest: uint256 = (staticcall CLEARINGHOUSE.market_mask(account)) & ~seen
    for m: uint256 in range(1, c.MAX_MARKETS):
        if rest >> m == 0:
            break
        if rest & (1 << m) == 0:
            continue
        params: IClearinghouse.MarketParams = staticcall CLEARINGHOUSE.markets(m)
        pos: IClearinghouse.Position = staticcall CLEARINGHOUSE.positions(account, m)
        price: uint256 = staticcall ORACLE.price(params.asset)
        st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(m)
        index: int256 = risk._funding_index_now(st, params.max_funding_rate, params.skew_scale, price)
        pnl: int256 = risk._signed_mul_floor(pos.size, convert(price, int256) - index) - pos.cost
        if pnl < 0:
            owed += risk._ceil_div(convert(-pnl, uint256), SETTLEMENT_TO_WAD)
            losing += 1
    balance: int256 = staticcall CLEARINGHOUSE.settlement(account)
    claim: int256 = convert(staticcall CLEARINGHOUSE.pending(account), int256)
    rate_base: uint256 = 0
    rate_slope: uint256 = 0
    debt_imr: uint256 = 0
    ceiling: uint256 = 0
    rate_base, rate_slope, debt_imr, ceiling = staticcall CLEARINGHOUSE.debt_terms()
    debt_now: uint256 = convert(max(-balance, 0), uint256)
    # a pending claim pays a realised loss before it becomes a debt (review v4, C4)
    debt_after: uint256 = convert(max(convert(owed, int256) - balance - claim, 0), uint256)
    initial += risk._mul_up(debt_after * SETTLEMENT_TO_WAD, debt_imr) - risk._mul_up(debt_now * SETTLEMENT_TO_WAD, debt_imr)
    # and that debt's interest until the fill, with its own margin: a realisation right after the
    # commit does not tip an order at the limit
    return equity, initial + self._interest_buffer(debt_after, rate_base + rate_slope, debt_imr) + losing * SETTLEMENT_TO_WAD


@view
def _after_trades(
    account: uint256, markets: DynArray[uint256, c.MAX_MARKETS], size_deltas: DynArray[int256, c.MAX_MARKETS]
) -> (uint256, int256, uint256, uint256, uint256, uint256):
    """
    @dev (health, equity, initial) after the trades, and for `commit_margin`: the settlement
         units the trades' fees, their markets' open losses and the flips' closing premiums
         would take from the balance, how many losses that counts, and the traded markets' bitmask.
    """
    assert len(markets) == len(size_deltas), "lens: length mismatch"
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = staticcall CLEARINGHOUSE.margin(account)
    owed: uint256 = 0
    losing: uint256 = 0
    seen: uint256 = 0
    for i: uint256 in range(len(markets), bound=c.MAX_MARKETS):
        market: uint256 = markets[i]
        params: IClearinghouse.MarketParams = self._market(market)
        assert seen & (1 << market) == 0, "lens: market repeated"
        seen |= 1 << market
        size_delta: int256 = size_deltas[i]
        price: uint256 = staticcall ORACLE.price(params.asset)
        st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(market)
        index: int256 = risk._funding_index_now(st, params.max_funding_rate, params.skew_scale, price)
        pos: IClearinghouse.Position = staticcall CLEARINGHOUSE.positions(account, market)
        skew: int256 = convert(st.long_oi, int256) - convert(st.short_oi, int256)
        fill: uint256 = risk._fill_price(price, skew, size_delta, params.skew_scale)
        fee: uint256 = risk._ceil_div(
            risk._mul_up(risk._mul_up(convert(abs(size_delta), uint256), fill), params.fee),
            SETTLEMENT_TO_WAD,
        )
        p_minus_i: int256 = convert(price, int256) - index
        pnl_before: int256 = risk._signed_mul_floor(pos.size, p_minus_i) - pos.cost
        new_size: int256 = pos.size + size_delta
        new_cost: int256 = pos.cost + risk._signed_mul_ceil(size_delta, convert(fill, int256) - index)
        pnl_after: int256 = risk._signed_mul_floor(new_size, p_minus_i) - new_cost
        equity = equity - pnl_before + pnl_after - convert(fee * SETTLEMENT_TO_WAD, int256)
        # what may be realised before the fill's margin check, never netted with a gain: the open
        # loss (a griefer may realise it first, review v4 C1), and for a flip the premium its fill
        # pays on the side it closes (the fill realises that side; the new side's premium stays
        # unrealised, C2). A plain add realises nothing (review v5, V1).
        owed += fee
        if pnl_before < 0:
            owed += risk._ceil_div(convert(-pnl_before, uint256), SETTLEMENT_TO_WAD)
            losing += 1
        if pos.size != 0 and (new_size > 0) != (pos.size > 0):
            closing: int256 = risk._signed_mul_floor(pos.size, convert(fill, int256) - convert(price, int256))
            if closing < 0:
                owed += risk._ceil_div(convert(-closing, uint256), SETTLEMENT_TO_WAD)
                losing += 1
        m_before: uint256 = 0
        i_before: uint256 = 0
        m_before, i_before = self._requirements(params, convert(abs(pos.size), uint256), price)
        m_after: uint256 = 0
        i_after: uint256 = 0
        m_after, i_after = self._requirements(params, convert(abs(new_size), uint256), price)
        maintenance = maintenance - m_before + m_after
        initial = initial - i_before + i_after
    return risk._health(equity, maintenance), equity, initial, owed, losing, seen


@view
@external
def liquidation_price(account: uint256, market: uint256) -> uint256:
    """
    @notice The price of `market`'s asset at which the account's equity would meet its
            maintenance requirement, all other prices fixed; 0 when no price does.
    @dev Linear in the price: E(P) = E0 + a * (P - P0), with a = size plus the haircut units of
         the same asset held as collateral; M(P) = M_other + |size| * mmr * P, at today's rate.
         Funding, volatility and other markets (even on the same asset) are held as they are now;
         every division truncates, so the answer is approximate by a few wei.
    @param account The account id (owner << 96 | subaccount).
    @param market A listed market id.
    @return USD per whole unit of the asset, WAD; 0 without a position in `market` or when no
            positive price makes equity meet maintenance.
    """
    params: IClearinghouse.MarketParams = self._market(market)
    pos: IClearinghouse.Position = staticcall CLEARINGHOUSE.positions(account, market)
    if pos.size == 0:
        return 0
    price: uint256 = staticcall ORACLE.price(params.asset)
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = staticcall CLEARINGHOUSE.margin(account)
    abs_size: uint256 = convert(abs(pos.size), uint256)
    m_this: uint256 = 0
    i_this: uint256 = 0
    m_this, i_this = self._requirements(params, abs_size, price)
    mmr: uint256 = 0
    imr: uint256 = 0
    mmr, imr = self._rates(params, abs_size)
    m_other: int256 = convert(maintenance - m_this, int256)

    a: int256 = pos.size  # equity change per unit of price, WAD units of the asset
    slot: uint256 = staticcall CLEARINGHOUSE.collateral_slot(params.asset)
    if slot != 0:
        col: IClearinghouse.Collateral = staticcall CLEARINGHOUSE.collaterals(slot)
        held: uint256 = staticcall CLEARINGHOUSE.balances(account, slot)
        a += convert(held * c.WAD // col.unit * col.weight // c.WAD, int256)
    k: int256 = convert(abs_size * mmr // c.WAD, int256)  # d M / d P
    if k == a:
        return 0
    # E0 + a (P - P0) = M_other + k P  =>  P = (E0 - a P0 - M_other) / (k - a)
    numerator: int256 = equity - a * convert(price, int256) // c.WAD_INT - m_other
    p: int256 = numerator * c.WAD_INT // (k - a)
    if p <= 0:
        return 0
    return convert(p, uint256)


@view
@external
def max_withdraw(account: uint256, token: address) -> uint256:
    """
    @notice Largest amount of `token` the account can withdraw and stay at initial margin,
            with room for 5 minutes of funding at today's rates and of a debt's interest at
            its highest rate, so the quote still holds when the withdrawal lands a few blocks
            later.
    @dev The funding room counts every position's funding as a cost, paid or earned. Price
         moves before the withdrawal lands are not covered.
    @param account The account id (owner << 96 | subaccount).
    @param token The settlement token or a listed collateral token; reverts "lens: unknown
           token" for anything else.
    @return Token units, rounded down, at most the account's balance of `token`; 0 when its
            equity does not exceed the initial requirement plus the funding room.
    """
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = staticcall CLEARINGHOUSE.margin(account)
    # WAD USD above the initial requirement, less what funding could take before the withdrawal
    # lands (a quote exact at this block would revert a block later for an account paying it)
    free: int256 = equity - convert(initial, int256) - convert(self._funding_buffer(account), int256)
    if free <= 0:
        return 0
    if token == staticcall CLEARINGHOUSE.SETTLEMENT():
        s: int256 = staticcall CLEARINGHOUSE.settlement(account)
        if s <= 0:
            return 0
        return min(convert(s, uint256), convert(free, uint256) // SETTLEMENT_TO_WAD)
    slot: uint256 = staticcall CLEARINGHOUSE.collateral_slot(token)
    assert slot != 0, "lens: unknown token"
    col: IClearinghouse.Collateral = staticcall CLEARINGHOUSE.collaterals(slot)
    if col.weight == 0:
        return staticcall CLEARINGHOUSE.balances(account, slot)  # written off: worth nothing to the margin
    price: uint256 = staticcall ORACLE.price(token)
    # each unit withdrawn lowers equity by price * weight (rounded up); the amount rounds down.
    # The collateral value floors twice (amount * price // unit, then * weight // WAD), so
    # withdrawing x units can lower it by up to 1 wei more than x * per_unit / unit: keep 2 wei
    if free <= 2:
        return 0
    per_unit: uint256 = risk._mul_up(price, col.weight)
    units: uint256 = convert(free - 2, uint256) * col.unit // per_unit
    return min(units, staticcall CLEARINGHOUSE.balances(account, slot))


@view
@external
def market_rates(market: uint256, size: uint256) -> (uint256, uint256):
    """
    @notice (maintenance rate, initial rate) for a position of `size` base units, WAD.
    @param market A listed market id.
    @param size The position's absolute size, base units.
    @return (maintenance rate, initial rate), WAD, both rounded up, with today's volatilities;
            the maintenance rate never exceeds the initial one, which is at most 100%.
    """
    return self._rates(self._market(market), size)


@view
@external
def fill_price(market: uint256, size_delta: int256) -> uint256:
    """
    @notice The price a trade of `size_delta` would fill at now, WAD.
    @param market A listed market id.
    @param size_delta Base units to buy (> 0) or sell (< 0).
    @return USD per whole unit of the asset, WAD: the oracle price times (1 + the average skew
            premium over the trade); buys round up (plus 1 wei), sells down.
    """
    params: IClearinghouse.MarketParams = self._market(market)
    price: uint256 = staticcall ORACLE.price(params.asset)
    st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(market)
    return risk._fill_price(price, convert(st.long_oi, int256) - convert(st.short_oi, int256), size_delta, params.skew_scale)


@view
@external
def funding_rate(market: uint256) -> int256:
    """
    @notice Current funding rate per day, WAD; positive means longs pay shorts.
    @dev The rate the next accrual applies: max_funding_rate * skew / skew_scale at today's open
         interest, clamped to +-max_funding_rate. The pool takes the net side.
    @param market A listed market id.
    @return Signed WAD per day of the position's notional.
    """
    params: IClearinghouse.MarketParams = self._market(market)
    st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(market)
    return risk._funding_rate(st.long_oi, st.short_oi, params.max_funding_rate, params.skew_scale)


@view
def _funding_buffer(account: uint256) -> uint256:
    """
    @dev Funding the account's positions would pay or earn in FUNDING_BUFFER_SECONDS at
         today's rates: sum of |size| * price * |rate| * seconds / day, rounded up; plus, for a
         debt, its interest over that time at rate_base + rate_slope and that interest's
         initial margin.
    """
    mask: uint256 = staticcall CLEARINGHOUSE.market_mask(account)
    total: uint256 = 0
    for m: uint256 in range(1, c.MAX_MARKETS):
        if mask >> m == 0:
            break
        if mask & (1 << m) == 0:
            continue
        params: IClearinghouse.MarketParams = staticcall CLEARINGHOUSE.markets(m)
        st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(m)
        rate: int256 = risk._funding_rate(st.long_oi, st.short_oi, params.max_funding_rate, params.skew_scale)
        size: int256 = (staticcall CLEARINGHOUSE.positions(account, m)).size
        notional: uint256 = risk._mul_up(convert(abs(size), uint256), staticcall ORACLE.price(params.asset))
        total += risk._ceil_div(risk._mul_up(notional, convert(abs(rate), uint256)) * FUNDING_BUFFER_SECONDS, c.SECONDS_PER_DAY)
    balance: int256 = staticcall CLEARINGHOUSE.settlement(account)
    if balance < 0:
        # a debt's interest over the same time at the highest rate (full utilisation), which
        # lowers equity and raises the debt's initial margin alike
        rate_base: uint256 = 0
        rate_slope: uint256 = 0
        debt_imr: uint256 = 0
        ceiling: uint256 = 0
        rate_base, rate_slope, debt_imr, ceiling = staticcall CLEARINGHOUSE.debt_terms()
        total += self._interest_buffer(convert(-balance, uint256), rate_base + rate_slope, debt_imr)
    return total


@view
def _interest_buffer(debt: uint256, rate: uint256, debt_imr: uint256) -> uint256:
    """
    @dev A debt's interest over FUNDING_BUFFER_SECONDS at `rate` (per year, WAD), rounded up, and
         that interest's initial margin, WAD USD: what it lowers equity and raises the debt's
         initial requirement by together. `debt` in settlement token units.
    """
    growth: uint256 = risk._ceil_div(debt * SETTLEMENT_TO_WAD * rate * FUNDING_BUFFER_SECONDS, c.SECONDS_PER_YEAR * c.WAD)
    return growth + risk._mul_up(growth, debt_imr)


@view
def _market(market: uint256) -> IClearinghouse.MarketParams:
    assert market != 0 and market <= staticcall CLEARINGHOUSE.market_count(), "lens: unknown market"
    return staticcall CLEARINGHOUSE.markets(market)


@view
def _rates(params: IClearinghouse.MarketParams, abs_size: uint256) -> (uint256, uint256):
    sigma: uint256 = 0
    sigma_mm: uint256 = 0
    sigma, sigma_mm = staticcall ORACLE.volatilities(params.asset)
    return risk._market_rates(params, abs_size, sigma, sigma_mm)


@view
def _requirements(params: IClearinghouse.MarketParams, abs_size: uint256, price: uint256) -> (uint256, uint256):
    mmr: uint256 = 0
    imr: uint256 = 0
    mmr, imr = self._rates(params, abs_size)
    notional: uint256 = risk._mul_up(abs_size, price)
    return risk._mul_up(notional, mmr), risk._mul_up(notional, imr)
