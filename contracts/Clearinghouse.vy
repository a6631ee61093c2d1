# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
"""
@title Clearinghouse
@notice The deployable core of marginsim: collateral vault, perpetual markets, margin engine,
        liquidation engine, insurance fund and governance in one contract, so a trade or a
        liquidation prices and settles without a cross-contract call per concern (gas), and the
        settlement token never moves on a trade (PnL, fees and funding settle internally).
        The LP side is the separate ERC-4626 LiquidityPool, whose assets are held here as
        `pool_balance`; prices come from the OracleRouter.
@dev Glossary (one account; every USD value is WAD, every token amount in its own decimals)
     - settlement balance s: signed balance in the 6-decimal settlement token. Goes negative only
       through losses, fees, penalties and funding, never by a withdrawal.
     - collateral value C = sum over tokens of amount * price * weight (haircut), rounded down.
     - unrealised PnL U = sum over markets of size * (price - F) - cost, F = funding index now.
       `cost` folds the entry price and the funding index at entry into one number, so funding
       needs no extra storage per position.
     - equity E = s + C + U.
     - maintenance requirement M = sum over markets of |size| * price * mmr,
       mmr = max(base_mmr + tier_mmr * (|size| // tier_size), vol_k * sigma_mm * sqrt(horizon)).
     - initial requirement I = sum of |size| * price * imr,
       imr = min(imr_multiplier * max(tier rate, vol_k * sigma * sqrt(horizon)), 100%).
       sigma rises at once, sigma_mm only at a bounded speed (see OracleRouter).
     - health h = E / M. Liquidatable iff E < M.
     Rounding: everything the account owes or is required to hold rounds up, everything it is
     credited rounds down (requirements, fees, penalties, cost basis up; PnL, collateral down).
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from .interfaces import IOracleRouter
from .interfaces import IClearinghouse

import constants as c
import risk

implements: IClearinghouse

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


struct Hot:
    asset: address  # the market's parameters as the hot paths read them (from four packed words)
    flags: uint256  # bit 0: reduce-only, bit 1: paused (no new risk either way)
    base_mmr: uint256
    tier_size: uint256
    tier_mmr: uint256
    vol_unit: uint256  # vol_k * sqrt(liquidation_horizon / year), fixed when the market is set
    imr_multiplier: uint256
    fee: uint256
    penalty: uint256
    keeper_share: uint256
    skew_scale: uint256
    max_funding_rate: uint256
    oi_cap: uint256


struct PackedMarket:
    core: uint256  # asset | imr_multiplier << 160 | flags << 224
    rates: uint256  # base_mmr | tier_mmr << 64 | vol_unit << 128 | max_funding_rate << 192
    sizes: uint256  # tier_size (80 bits) | skew_scale << 80 (88) | oi_cap << 168 (88)
    fees: uint256  # fee | penalty << 64 | keeper_share << 128


struct PackedState:
    open_interest: uint256  # long_oi (96 bits) | short_oi << 96 (96) | last_funding_time << 192 (64)
    funding: uint256  # funding_index (int128, two's complement) | total_cost << 128 (int128)


NO_POSITIONS_HEALTH: constant(uint256) = max_value(uint256)  # health of an account without positions
MAX_TIP: constant(uint256) = 1_000 * 10**18  # $1,000: the most one underwater liquidation is tipped
MASK_128: constant(uint256) = 2**128 - 1  # low half of a packed position
MASK_16: constant(uint256) = 2**16 - 1  # an account's market mask (markets 1..15)
MASK_64: constant(uint256) = 2**64 - 1  # a packed WAD parameter (all are bounded below 18.4)
MASK_80: constant(uint256) = 2**80 - 1  # packed tier size
MASK_88: constant(uint256) = 2**88 - 1  # packed skew scale and open interest cap
MASK_96: constant(uint256) = 2**96 - 1  # packed open interest per side
REDUCE_ONLY: constant(uint256) = 1  # market flag
PAUSED: constant(uint256) = 2  # market flag, set on every market by pause()
INT128_MAX: constant(int256) = 2**127 - 1  # packed position fields are int128

ORACLE: public(immutable(IOracleRouter))  # the price and volatility source
SETTLEMENT: public(immutable(IERC20))  # the 6-decimal USD coin that PnL settles in
SETTLEMENT_TO_WAD: public(immutable(uint256))  # 10 ** (18 - settlement decimals)

pool: public(address)  # the LiquidityPool, set once
configurator: public(address)  # validates and applies every risk parameter, set once
guardian: public(address)  # may pause; only the owner unpauses
paused: public(bool)  # no new risk while set; closes, withdrawals and liquidations go on

collaterals: public(HashMap[uint256, IClearinghouse.Collateral])  # slot 1..7 => collateral (slot 0 is settlement)
collateral_slot: public(HashMap[address, uint256])  # token => slot, 0 when unknown
collateral_count: public(uint256)  # slots in use, excluding settlement

markets: public(HashMap[uint256, IClearinghouse.MarketParams])  # market id 1..15 => parameters, for readers
_packed: HashMap[uint256, PackedMarket]  # market id => the same parameters in 4 slots, for the hot paths
_state: HashMap[uint256, PackedState]  # market id => open interest and funding in 3 slots
market_count: public(uint256)  # markets listed

# account => settlement balance (int128, two's complement) | market mask << 128 | collateral
# mask << 144: one slot per account, so the masks ride on the balance write a trade makes anyway
_accounts: HashMap[uint256, uint256]
balances: public(HashMap[uint256, HashMap[uint256, uint256]])  # account => slot => amount
_positions: HashMap[
    uint256, HashMap[uint256, uint256]
]  # account => market => size (high 128 bits) | cost (low), two's complement: one slot per position

# pool's realised balance held here (int128, token units) | insurance fund << 128 (token units):
# one slot, as a liquidation moves both
_funds: uint256
settlement_held: public(uint256)  # settlement tokens this contract should hold (internal)
total_bad_debt: public(uint256)  # cumulative shortfall booked, token units
total_debt: public(uint256)  # sum of negative settlement balances, token units
underwater_tip_rate: public(uint256)  # tip for liquidating an underwater account, WAD of closed notional

# buffer b (a partial liquidation targets health >= 1 + b) | full-liquidation health << 64 |
# dust notional << 128 (WAD; bounded by the Configurator to 0.5, 1 and $10,000): one slot
_liquidation_params: uint256


@deploy
def __init__(oracle: IOracleRouter, settlement_token: IERC20, settlement_decimals: uint8):
    ownable.__init__()
    ownable_2step.__init__()
    assert settlement_decimals <= 18, "clearinghouse: bad decimals"
    ORACLE = oracle
    SETTLEMENT = settlement_token
    SETTLEMENT_TO_WAD = 10**convert(18 - settlement_decimals, uint256)
    self.guardian = msg.sender
    # the Configurator's defaults, within its bounds: buffer 10%, full liquidation below 0.5, $100 dust
    self._liquidation_params = 10**17 | (5 * 10**17 << 64) | (100 * c.WAD << 128)


# ---------------------------------------------------------------- collateral vault


@external
def deposit(token: address, amount: uint256, subaccount: uint96):
    """
    @notice Deposit settlement token or a listed collateral into one of the caller's accounts.
    @dev Settlement deposits stay open while paused (they only add safety); other collateral
         does not.
    @param token The settlement token or a listed collateral token.
    @param amount Token units, > 0.
    @param subaccount Which of the caller's accounts.
    """
    self._require(amount > 0, "clearinghouse: zero amount")
    account: uint256 = self._account_id(msg.sender, subaccount)
    if token == SETTLEMENT.address:
        self._pull_settlement(msg.sender, amount)
        self._add_settlement(account, convert(amount, int256))
    else:
        slot: uint256 = self._slot(token)
        self._require(not self.paused, "clearinghouse: paused")
        col: IClearinghouse.Collateral = self.collaterals[slot]
        self._require(col.enabled, "clearinghouse: collateral disabled")
        self._require(col.total + amount <= col.cap, "clearinghouse: deposit cap")
        self.collaterals[slot].total = col.total + amount
        self.balances[account][slot] += amount
        self._set_collateral_mask(account, self._collateral_mask_of(account) | (1 << slot))
        self._pull(IERC20(col.token), msg.sender, amount)
    log IClearinghouse.Deposit(account=account, token=token, amount=amount)


@external
def withdraw(token: address, amount: uint256, subaccount: uint96):
    """
    @notice Withdraw from one of the caller's accounts, only while it stays at or above initial
            margin afterwards. Allowed while paused.
    @param token The settlement token or a listed collateral token.
    @param amount Token units, > 0 and at most the balance.
    @param subaccount Which of the caller's accounts.
    """
    self._require(amount > 0, "clearinghouse: zero amount")
    account: uint256 = self._account_id(msg.sender, subaccount)
    if token == SETTLEMENT.address:
        self._require(self._settlement_of(account) >= convert(amount, int256), "clearinghouse: insufficient balance")
        self._add_settlement(account, -(convert(amount, int256)))
    else:
        slot: uint256 = self._slot(token)
        bal: uint256 = self.balances[account][slot]
        self._require(bal >= amount, "clearinghouse: insufficient balance")
        self.balances[account][slot] = bal - amount
        self.collaterals[slot].total -= amount
        if bal == amount:
            self._set_collateral_mask(account, self._collateral_mask_of(account) & (~(1 << slot)))
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = self._margin(account, 0, 0)
    self._require(equity >= convert(initial, int256), "clearinghouse: insufficient margin")

    if token == SETTLEMENT.address:
        self._push_settlement(msg.sender, amount)
    else:
        self._require(
            extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True), "clearinghouse: transfer failed"
        )
    log IClearinghouse.Withdraw(account=account, token=token, amount=amount, receiver=msg.sender)


# ---------------------------------------------------------------- perpetual markets


@external
def trade(market: uint256, size_delta: int256, limit_price: uint256, subaccount: uint96) -> uint256:
    """
    @notice Open, increase, reduce, close or flip a position at the oracle price plus a premium
            that grows with the market's skew, against the LiquidityPool.
    @param market Market id.
    @param size_delta Base units to buy (> 0) or sell (< 0).
    @param limit_price Worst acceptable fill, WAD (a buy fills at or below it, a sell at or
           above it); 0 for none.
    @param subaccount Which of the caller's accounts.
    @return The fill price, WAD.
    @custom:security Anything that adds risk (a larger |size| or a flip) needs initial margin
           afterwards and is refused while paused or reduce-only; pure reductions are always
           allowed, so a trader can always cut risk.
    """
    assert size_delta != 0, "clearinghouse: zero size"
    account: uint256 = self._account_id(msg.sender, subaccount)
    params: Hot = self._market(market)
    price: uint256 = staticcall ORACLE.price(params.asset)
    st: IClearinghouse.MarketState = self._accrue(market, params, price)

    pos: IClearinghouse.Position = self._load_position(account, market)
    new_size: int256 = pos.size + size_delta
    adds_risk: bool = abs(new_size) > abs(pos.size) or (new_size != 0 and (new_size > 0) != (pos.size > 0) and pos.size != 0)
    if adds_risk:
        # both flags ride in the market's packed core word, already loaded: no extra read
        assert params.flags & PAUSED == 0, "clearinghouse: paused"
        assert params.flags & REDUCE_ONLY == 0, "clearinghouse: reduce only"

    skew: int256 = convert(st.long_oi, int256) - convert(st.short_oi, int256)
    fill: uint256 = risk._fill_price(price, skew, size_delta, params.skew_scale)
    if limit_price != 0:
        if size_delta > 0:
            assert fill <= limit_price, "clearinghouse: price limit"
        else:
            assert fill >= limit_price, "clearinghouse: price limit"
    realised: int256 = 0
    pos, st, realised = self._apply_fill(pos, st, size_delta, fill)
    if adds_risk:
        if new_size > 0:
            assert st.long_oi <= params.oi_cap, "clearinghouse: open interest cap"
        else:
            assert st.short_oi <= params.oi_cap, "clearinghouse: open interest cap"

    # fee on the filled notional, rounded up, to the pool
    fee_wad: uint256 = risk._mul_up(risk._mul_up(convert(abs(size_delta), uint256), fill), params.fee)
    fee: uint256 = risk._ceil_div(fee_wad, SETTLEMENT_TO_WAD)
    credit: int256 = self._to_tokens_floor(realised)
    self._add_settlement(account, credit - convert(fee, int256))
    self._add_pool(convert(fee, int256) - credit)

    self._store_position(account, market, pos)
    self._store_state(market, st)
    if pos.size == 0:
        self._set_market_mask(account, self._market_mask_of(account) & (~(1 << market)))
        if self._market_mask_of(account) == 0:
            self._settle_bad_debt(account)  # an underwater account closed by its owner
    else:
        self._set_market_mask(account, self._market_mask_of(account) | (1 << market))

    if adds_risk:
        equity: int256 = 0
        maintenance: uint256 = 0
        initial: uint256 = 0
        equity, maintenance, initial = self._margin(account, market, price)
        assert equity >= convert(initial, int256), "clearinghouse: insufficient margin"

    log IClearinghouse.Trade(
        account=account, market=market, size_delta=size_delta, fill_price=fill, fee=fee, realised_pnl=credit, new_size=pos.size
    )
    return fill


@external
def accrue_funding(market: uint256):
    """
    @notice Bring a market's funding index up to now (anyone; trades do it themselves).
    """
    params: Hot = self._market(market)
    price: uint256 = staticcall ORACLE.price(params.asset)
    self._store_state(market, self._accrue(market, params, price))


# ---------------------------------------------------------------- liquidation engine


@external
def liquidate(account: uint256, market: uint256, max_size: uint256) -> uint256:
    """
    @notice Permissionless: close part of an account's position in `market` when its equity is
            below its maintenance requirement, at the oracle price, charging a penalty on the
            closed notional that is split between the caller and the insurance fund.
    @dev Closes the least size that brings health back to 1 + buffer (solved per DESIGN.md on
         the size tier the remainder lands in), everything when health is below
         `full_liquidation_health` or the remainder would be dust, never more than `max_size`.
         When the account is left with no positions, no collateral and a negative balance, the
         shortfall is bad debt: the insurance fund pays what it can, the pool the rest.
    @param account The account id (owner << 96 | subaccount).
    @param market The market to close in.
    @param max_size Most base units the caller is willing to close, > 0.
    @return Base units closed.
    @custom:security The penalty is charged only out of the account's positive equity, so a
           liquidator (the owner included) is never paid out of the insurance fund or the pool:
           self-liquidation loses (1 - keeper_share) * penalty.
    """
    assert max_size > 0, "liquidation: zero size"
    params: Hot = self._market(market)
    price: uint256 = staticcall ORACLE.price(params.asset)
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = self._margin(account, market, price)
    assert equity < convert(maintenance, int256), "liquidation: account healthy"
    pos: IClearinghouse.Position = self._load_position(account, market)
    assert pos.size != 0, "liquidation: no position"
    health_before: uint256 = risk._health(equity, maintenance)

    st: IClearinghouse.MarketState = self._accrue(market, params, price)

    abs_size: uint256 = convert(abs(pos.size), uint256)
    mmr: uint256 = 0
    imr: uint256 = 0
    mmr, imr = self._rates(params, abs_size)
    close: uint256 = abs_size
    liquidation_params: uint256 = self._liquidation_params
    if health_before >= (liquidation_params >> 64) & MASK_64:
        close = min(self._least_close(params, abs_size, price, equity, maintenance, mmr), abs_size)
        if risk._mul_down(abs_size - close, price) < liquidation_params >> 128:
            close = abs_size
    close = min(close, max_size)

    closed: int256 = convert(close, int256)
    if pos.size > 0:
        closed = -closed
    realised: int256 = 0
    before: IClearinghouse.Position = pos
    pos, st, realised = self._apply_fill(pos, st, closed, price)
    self._store_position(account, market, pos)
    self._store_state(market, st)
    if pos.size == 0:
        self._set_market_mask(account, self._market_mask_of(account) & (~(1 << market)))
    # realised PnL to the account, exact complement to the pool (rounding kept by the pool)
    credit: int256 = self._to_tokens_floor(realised)
    self._add_settlement(account, credit)
    self._add_pool(-credit)

    # penalty: rounded up, but never more than the share of the account's positive equity that
    # backed the maintenance this close frees, so positions left open keep their equity
    closed_notional: uint256 = risk._mul_up(close, price)
    penalty: uint256 = risk._ceil_div(risk._mul_up(closed_notional, params.penalty), SETTLEMENT_TO_WAD)
    if equity <= 0:
        penalty = 0
    else:
        freed: uint256 = min(risk._mul_up(closed_notional, mmr), maintenance)
        penalty = min(penalty, convert(equity, uint256) * freed // maintenance // SETTLEMENT_TO_WAD)
    keeper_reward: uint256 = penalty * params.keeper_share // c.WAD
    self._add_settlement(account, -(convert(penalty, int256)))
    # the insurance fund's share, penalty - keeper_reward, is in the Liquidation event below
    self._add_insurance(convert(penalty - keeper_reward, int256))
    if pos.size == 0:
        # closing a whole position pays at least the tip: underwater_tip_rate of the notional,
        # at most MAX_TIP and what the fund holds, topped up from the insurance fund. An account
        # near or below zero equity pays (almost) no penalty, and without this its position
        # would be left to rot (Maker, Black Thursday) or keepers would wait for it to sink.
        # Only a whole close is tipped, so splitting a close cannot multiply the cap, and the
        # Configurator keeps the rate below every market's maintenance rate: an account loses
        # more than the tip to get here, so self-liquidation cannot farm it.
        tip: uint256 = min(
            min(risk._mul_down(closed_notional, self.underwater_tip_rate), MAX_TIP) // SETTLEMENT_TO_WAD, self._funds >> 128
        )
        if tip > keeper_reward:
            self._add_insurance(-convert(tip - keeper_reward, int256))
            keeper_reward = tip
    health_after: uint256 = NO_POSITIONS_HEALTH
    if self._market_mask_of(account) == 0:
        self._settle_bad_debt(account)
    else:
        # health after the close, re-derived on chain from the values before and this market's
        # change alone: the same integer formulas `_margin` uses, without re-pricing every other
        # market (which did not move); `health()` afterwards returns exactly this number
        p_minus_i: int256 = convert(price, int256) - st.funding_index
        pnl_change: int256 = (risk._signed_mul_floor(pos.size, p_minus_i) - pos.cost) - (
            risk._signed_mul_floor(before.size, p_minus_i) - before.cost
        )
        scale: int256 = convert(SETTLEMENT_TO_WAD, int256)
        e2: int256 = equity + pnl_change + (credit - convert(penalty, int256)) * scale
        left: uint256 = convert(abs(pos.size), uint256)
        mmr2: uint256 = 0
        imr2: uint256 = 0
        mmr2, imr2 = self._rates(params, left)
        m2: uint256 = (
            maintenance - risk._mul_up(risk._mul_up(abs_size, price), mmr) + risk._mul_up(risk._mul_up(left, price), mmr2)
        )
        health_after = risk._health(e2, m2)
        if pos.size != 0:
            # a partial close in this market must leave the account healthier; a whole market
            # closed (deep or dust rule) may not, and the next call closes the next market
            assert health_after >= health_before, "liquidation: health worsened"
    if keeper_reward > 0:
        if self.settlement_held >= keeper_reward:
            self._push_settlement(msg.sender, keeper_reward)
        else:
            # too few tokens on hand (the reward is backed by the account's collateral): credit
            # the caller's account 0 rather than block the liquidation
            self._add_settlement(self._account_id(msg.sender, 0), convert(keeper_reward, int256))
    log IClearinghouse.Liquidation(
        account=account,
        market=market,
        liquidator=msg.sender,
        size_closed=closed,
        price=price,
        realised_pnl=credit,
        penalty=penalty,
        keeper_reward=keeper_reward,
        health_before=health_before,
        health_after=health_after,
    )
    return close


@external
def liquidate_collateral(account: uint256, token: address, max_amount: uint256) -> uint256:
    """
    @notice Buy collateral of an account that has no positions left and negative equity, at
            the oracle price less the token's liquidation discount, paying settlement token
            that repays the account's debt. Never a zero bid: the price is the oracle's.
    @dev Sells at most what repays the debt. When the account is left with no collateral, the
         rest of the debt is bad debt.
    @param account The account id.
    @param token A collateral token the account holds.
    @param max_amount Most token units the caller will buy, > 0.
    @return Token units bought.
    """
    self._require(max_amount > 0, "liquidation: zero amount")
    slot: uint256 = self._slot(token)
    self._require(self._market_mask_of(account) == 0, "liquidation: close positions first")
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = self._margin(account, 0, 0)
    self._require(equity < 0, "liquidation: account healthy")
    balance: uint256 = self.balances[account][slot]
    self._require(balance > 0, "liquidation: no collateral")

    col: IClearinghouse.Collateral = self.collaterals[slot]
    price: uint256 = staticcall ORACLE.price(token)
    discounted: uint256 = price * (c.WAD - col.liquidation_discount) // c.WAD  # WAD per unit
    debt: uint256 = convert(-self._settlement_of(account), uint256)  # > 0 since equity < 0
    # units that repay the debt at the discounted price (rounded up, capped by the balance)
    needed: uint256 = risk._ceil_div(debt * SETTLEMENT_TO_WAD * col.unit, discounted)
    amount: uint256 = min(min(needed, balance), max_amount)
    paid: uint256 = risk._ceil_div(amount * discounted, col.unit * SETTLEMENT_TO_WAD)  # the buyer rounds up
    self._require(paid > 0, "liquidation: amount too small")

    self.balances[account][slot] = balance - amount
    self.collaterals[slot].total -= amount
    if balance == amount:
        self._set_collateral_mask(account, self._collateral_mask_of(account) & (~(1 << slot)))
    self._add_settlement(account, convert(paid, int256))
    self._pull_settlement(msg.sender, paid)
    if self._collateral_mask_of(account) == 0:
        self._settle_bad_debt(account)
    self._require(
        extcall IERC20(col.token).transfer(msg.sender, amount, default_return_value=True), "clearinghouse: transfer failed"
    )
    log IClearinghouse.CollateralLiquidation(account=account, token=token, liquidator=msg.sender, amount=amount, paid=paid)
    return amount


@external
def fund_insurance(amount: uint256):
    """
    @notice Add settlement token to the insurance fund (anyone).
    """
    self._require(amount > 0, "clearinghouse: zero amount")
    self._pull_settlement(msg.sender, amount)
    self._add_insurance(convert(amount, int256))
    log IClearinghouse.InsuranceDeposit(source=msg.sender, amount=amount)


# ---------------------------------------------------------------- liquidity pool custody


@external
def pool_deposit(amount: uint256):
    """
    @notice The pool moves LP assets here; they back traders' profits.
    """
    self._require(msg.sender == self.pool, "clearinghouse: not pool")
    self._pull_settlement(msg.sender, amount)
    self._add_pool(convert(amount, int256))
    log IClearinghouse.PoolDeposit(amount=amount)


@external
def pool_withdraw(amount: uint256, receiver: address):
    """
    @notice The pool pays an LP out of its value here.
    @dev The pool checks `amount` against the LP's share of its value; this pays only out of
         the pool's realised balance less every account's debt (a loss realised into a negative
         balance is backed by collateral, not tokens), never out of traders' unrealised losses.
         So the tokens left always cover every positive balance and the insurance fund.
    """
    self._require(msg.sender == self.pool, "clearinghouse: not pool")
    self._require(amount <= self._pool_liquidity(), "clearinghouse: pool liquidity")
    self._add_pool(-convert(amount, int256))
    self._push_settlement(receiver, amount)
    log IClearinghouse.PoolWithdraw(amount=amount, receiver=receiver)


# ---------------------------------------------------------------- views


@view
@external
def health(account: uint256) -> uint256:
    """
    @notice equity / maintenance requirement, WAD; max_value(uint256) without positions.
    """
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = self._margin(account, 0, 0)
    return risk._health(equity, maintenance)


@view
@external
def positions(account: uint256, market: uint256) -> IClearinghouse.Position:
    """
    @notice The account's position in `market`: size (base units, + long) and cost basis.
    """
    return self._load_position(account, market)


@view
@external
def pool_balance() -> int256:
    """
    @notice The pool's realised balance held here, token units (negative: it owes traders).
    """
    return self._pool_balance()


@view
@external
def insurance_balance() -> uint256:
    """
    @notice The insurance fund, settlement token units.
    """
    return self._funds >> 128


@view
@external
def liquidation_buffer() -> uint256:
    """
    @notice b: a partial liquidation closes the least size that restores health 1 + b, WAD.
    """
    return self._liquidation_params & MASK_64


@view
@external
def full_liquidation_health() -> uint256:
    """
    @notice Below this health a liquidation closes the whole position, WAD.
    """
    return (self._liquidation_params >> 64) & MASK_64


@view
@external
def dust_notional() -> uint256:
    """
    @notice A remainder below this notional is closed too, WAD USD.
    """
    return self._liquidation_params >> 128


@view
@external
def reduce_only(market: uint256) -> bool:
    """
    @notice Whether only reductions are allowed in `market` (set by the guardian or owner).
    """
    return (self._packed[market].core >> 224) & REDUCE_ONLY != 0


@view
@external
def settlement(account: uint256) -> int256:
    """
    @notice The account's settlement token balance, token units; negative only through losses.
    """
    return self._settlement_of(account)


@view
@external
def market_mask(account: uint256) -> uint256:
    """
    @notice Bit m set: the account has a position in market m.
    """
    return self._market_mask_of(account)


@view
@external
def collateral_mask(account: uint256) -> uint256:
    """
    @notice Bit s set: the account holds collateral slot s.
    """
    return self._collateral_mask_of(account)


@view
@external
def market_state(market: uint256) -> IClearinghouse.MarketState:
    """
    @notice A market's open interest per side, summed cost basis and funding index.
    """
    return self._load_state(market)


@view
@external
def margin(account: uint256) -> (int256, uint256, uint256):
    """
    @notice (equity, maintenance requirement, initial requirement) in WAD USD, funding accrued
            to now, exactly as the margin checks see them.
    """
    return self._margin(account, 0, 0)


@view
@external
def collateral_value(account: uint256) -> uint256:
    """
    @notice Haircut collateral value of the account (settlement balance excluded), WAD USD.
    """
    return self._collateral_value(account)


# ---------------------------------------------------------------- governance


@external
def set_pool(pool: address):
    """
    @notice Connect the LiquidityPool, once.
    """
    ownable._check_owner()
    self._require(self.pool == empty(address), "clearinghouse: pool already set")
    self._require(pool != empty(address), "clearinghouse: zero address")
    self.pool = pool


@external
def set_guardian(guardian: address):
    """
    @notice Set the pause guardian.
    """
    ownable._check_owner()
    self.guardian = guardian
    log IClearinghouse.GuardianSet(guardian=guardian)


@external
def pause():
    """
    @notice Stop new risk: opens, increases and non-settlement deposits. Closes, withdrawals
            that keep initial margin and liquidations continue. Guardian or owner.
    """
    self._require(msg.sender == self.guardian or msg.sender == ownable.owner, "clearinghouse: not guardian")
    self.paused = True
    self._set_market_flag(PAUSED, True)
    log IClearinghouse.Paused(by=msg.sender)


@external
def unpause():
    """
    @notice Lift a pause. Owner only.
    """
    ownable._check_owner()
    self.paused = False
    self._set_market_flag(PAUSED, False)
    log IClearinghouse.Unpaused(by=msg.sender)


@external
def set_configurator(configurator: address):
    """
    @notice Connect the Configurator, once: the only caller of the apply_* functions, which
            validates every parameter against its bounds before it gets here.
    """
    ownable._check_owner()
    self._require(self.configurator == empty(address), "clearinghouse: configurator already set")
    self._require(configurator != empty(address), "clearinghouse: zero address")
    self.configurator = configurator


@external
def apply_collateral(token: address, unit: uint256, weight: uint256, cap: uint256, liquidation_discount: uint256, enabled: bool):
    """
    @notice Configurator only: list a collateral (next slot) or change a listed one.
    """
    self._require(msg.sender == self.configurator, "clearinghouse: not configurator")
    slot: uint256 = self.collateral_slot[token]
    if slot == 0:
        slot = self.collateral_count + 1
        self.collateral_count = slot
        self.collateral_slot[token] = slot
        self.collaterals[slot].token = token
        self.collaterals[slot].unit = unit
    self.collaterals[slot].weight = weight
    self.collaterals[slot].cap = cap
    self.collaterals[slot].liquidation_discount = liquidation_discount
    self.collaterals[slot].enabled = enabled


@external
def apply_market(market: uint256, params: IClearinghouse.MarketParams):
    """
    @notice Configurator only: list market `market_count + 1`, or change a listed market after
            accruing its funding at the old parameters.
    """
    self._require(msg.sender == self.configurator, "clearinghouse: not configurator")
    flags: uint256 = self._packed[market].core >> 224  # reduce-only and pause survive a change
    if market == self.market_count + 1:
        self.market_count = market
        self._state[market].open_interest = block.timestamp << 192
        if self.paused:
            flags = PAUSED
    else:
        current: Hot = self._market(market)
        price: uint256 = staticcall ORACLE.price(current.asset)
        self._store_state(market, self._accrue(market, current, price))
    self.markets[market] = params
    vol_unit: uint256 = risk._vol_unit(params.vol_k, params.liquidation_horizon)
    self._packed[market] = PackedMarket(
        core=convert(params.asset, uint256) | (params.imr_multiplier << 160) | (flags << 224),
        rates=params.base_mmr | (params.tier_mmr << 64) | (vol_unit << 128) | (params.max_funding_rate << 192),
        sizes=params.tier_size | (params.skew_scale << 80) | (params.oi_cap << 168),
        fees=params.fee | (params.penalty << 64) | (params.keeper_share << 128),
    )


@external
def apply_underwater_tip(rate: uint256):
    """
    @notice Configurator only: the tip rate for liquidating an underwater account.
    """
    self._require(msg.sender == self.configurator, "clearinghouse: not configurator")
    self.underwater_tip_rate = rate


@external
def apply_liquidation_parameters(buffer: uint256, full_liquidation_health: uint256, dust_notional: uint256):
    """
    @notice Configurator only: the liquidation buffer, deep-underwater health and dust notional.
    """
    self._require(msg.sender == self.configurator, "clearinghouse: not configurator")
    self._liquidation_params = buffer | (full_liquidation_health << 64) | (dust_notional << 128)


@external
def set_reduce_only(market: uint256, reduce_only: bool):
    """
    @notice Allow only reductions in a market (owner or guardian may set it; only the owner
            lifts it).
    """
    self._market(market)
    if reduce_only:
        self._require(msg.sender == self.guardian or msg.sender == ownable.owner, "clearinghouse: not guardian")
    else:
        ownable._check_owner()
    flags: uint256 = self._packed[market].core >> 224
    if reduce_only:
        flags |= REDUCE_ONLY
    else:
        flags &= ~REDUCE_ONLY
    self._packed[market].core = (self._packed[market].core & (2**224 - 1)) | (flags << 224)
    log IClearinghouse.ReduceOnlySet(market=market, reduce_only=reduce_only)


# ---------------------------------------------------------------- internals


@pure
def _account_id(owner: address, subaccount: uint96) -> uint256:
    return (convert(owner, uint256) << 96) | convert(subaccount, uint256)


@view
def _slot(token: address) -> uint256:
    slot: uint256 = self.collateral_slot[token]
    self._require(slot != 0, "clearinghouse: unknown token")
    return slot


@view
def _market(market: uint256) -> Hot:
    # a listed market has a non-zero packed core (its asset); no separate count read needed
    w: PackedMarket = self._packed[market]
    self._require(w.core != 0, "clearinghouse: unknown market")
    return self._unpack(w)


@view
def _unpack(w: PackedMarket) -> Hot:
    return Hot(
        asset=convert(w.core & convert(max_value(uint160), uint256), address),
        flags=w.core >> 224,
        base_mmr=w.rates & MASK_64,
        tier_size=w.sizes & MASK_80,
        tier_mmr=(w.rates >> 64) & MASK_64,
        vol_unit=(w.rates >> 128) & MASK_64,
        imr_multiplier=(w.core >> 160) & MASK_64,
        fee=w.fees & MASK_64,
        penalty=(w.fees >> 64) & MASK_64,
        keeper_share=w.fees >> 128,
        skew_scale=(w.sizes >> 80) & MASK_88,
        max_funding_rate=w.rates >> 192,
        oi_cap=w.sizes >> 168,
    )


@view
def _load_state(market: uint256) -> IClearinghouse.MarketState:
    w: PackedState = self._state[market]
    return IClearinghouse.MarketState(
        long_oi=w.open_interest & MASK_96,
        short_oi=(w.open_interest >> 96) & MASK_96,
        total_cost=self._from_int128(w.funding >> 128),
        funding_index=self._from_int128(w.funding & MASK_128),
        last_funding_time=w.open_interest >> 192,
    )


def _store_state(market: uint256, st: IClearinghouse.MarketState):
    assert st.long_oi <= MASK_96 and st.short_oi <= MASK_96, "clearinghouse: open interest too large"
    self._state[market] = PackedState(
        open_interest=st.long_oi | (st.short_oi << 96) | (st.last_funding_time << 192),
        funding=self._to_int128(st.funding_index) | (self._to_int128(st.total_cost) << 128),
    )


@view
def _settlement_of(account: uint256) -> int256:
    return self._from_int128(self._accounts[account] & MASK_128)


@view
def _market_mask_of(account: uint256) -> uint256:
    return (self._accounts[account] >> 128) & MASK_16


@view
def _collateral_mask_of(account: uint256) -> uint256:
    return self._accounts[account] >> 144


@view
def _pool_liquidity() -> uint256:
    liquid: int256 = self._pool_balance() - convert(self.total_debt, int256)
    return convert(max(liquid, 0), uint256)


@view
def _pool_balance() -> int256:
    return self._from_int128(self._funds & MASK_128)


def _add_pool(delta: int256):
    self._funds = (self._funds & ~MASK_128) | self._to_int128(self._pool_balance() + delta)


def _add_insurance(delta: int256):
    # never negative: bad debt takes at most the balance
    insurance: uint256 = convert(convert(self._funds >> 128, int256) + delta, uint256)
    assert insurance <= MASK_128, "clearinghouse: amount too large"
    self._funds = (self._funds & MASK_128) | (insurance << 128)


def _set_market_flag(flag: uint256, on: bool):
    for m: uint256 in range(1, c.MAX_MARKETS):
        if m > self.market_count:
            break
        core: uint256 = self._packed[m].core
        if on:
            core |= flag << 224
        else:
            core &= ~(flag << 224)
        self._packed[m].core = core


def _set_settlement(account: uint256, balance: int256):
    before: int256 = self._settlement_of(account)
    if before < 0 or balance < 0:
        # debts backed by collateral, not tokens: the pool may not pay these out to LPs
        self.total_debt = self.total_debt + convert(max(-balance, 0), uint256) - convert(max(-before, 0), uint256)
    self._accounts[account] = (self._accounts[account] & ~MASK_128) | self._to_int128(balance)


def _add_settlement(account: uint256, delta: int256):
    self._set_settlement(account, self._settlement_of(account) + delta)


def _set_market_mask(account: uint256, mask: uint256):
    self._accounts[account] = (self._accounts[account] & ~(MASK_16 << 128)) | (mask << 128)


def _set_collateral_mask(account: uint256, mask: uint256):
    self._accounts[account] = (self._accounts[account] & (2**144 - 1)) | (mask << 144)


@view
def _load_position(account: uint256, market: uint256) -> IClearinghouse.Position:
    word: uint256 = self._positions[account][market]
    return IClearinghouse.Position(size=self._from_int128(word >> 128), cost=self._from_int128(word & MASK_128))


def _store_position(account: uint256, market: uint256, pos: IClearinghouse.Position):
    # one slot instead of two: a new position costs one fresh SSTORE (22,100 gas), not two
    self._positions[account][market] = (self._to_int128(pos.size) << 128) | self._to_int128(pos.cost)


@pure
def _to_int128(x: int256) -> uint256:
    assert x >= -INT128_MAX - 1 and x <= INT128_MAX, "clearinghouse: amount too large"
    if x < 0:
        return convert(x + 2**128, uint256)  # two's complement in 128 bits
    return convert(x, uint256)


@pure
def _from_int128(bits: uint256) -> int256:
    x: int256 = convert(bits, int256)
    if x > INT128_MAX:
        x -= 2**128
    return x


def _pull_settlement(source: address, amount: uint256):
    self.settlement_held += amount
    self._pull(SETTLEMENT, source, amount)


def _pull(token: IERC20, source: address, amount: uint256):
    """
    @dev Credits are booked before the call (nonreentrancy holds the lock); a token that delivers
         less than `amount` (a fee on transfer) is refused, so internal balances never exceed
         what the contract holds.
    """
    before: uint256 = staticcall token.balanceOf(self)
    self._require(extcall token.transferFrom(source, self, amount, default_return_value=True), "clearinghouse: transfer failed")
    self._require(staticcall token.balanceOf(self) == before + amount, "clearinghouse: fee on transfer")


def _push_settlement(receiver: address, amount: uint256):
    self._require(self.settlement_held >= amount, "clearinghouse: insufficient liquidity")
    self.settlement_held -= amount
    self._require(extcall SETTLEMENT.transfer(receiver, amount, default_return_value=True), "clearinghouse: transfer failed")


def _settle_bad_debt(account: uint256):
    """
    @dev Called when the account has no positions. With collateral left, the debt waits for
         `liquidate_collateral`; with none, a negative balance is bad debt.
    """
    s: int256 = self._settlement_of(account)
    if s >= 0 or self._collateral_mask_of(account) != 0:
        return
    shortfall: uint256 = convert(-s, uint256)
    from_insurance: uint256 = min(shortfall, self._funds >> 128)
    socialised: uint256 = shortfall - from_insurance
    self._add_insurance(-convert(from_insurance, int256))
    self._add_pool(-convert(socialised, int256))
    self._set_settlement(account, 0)
    self.total_bad_debt += shortfall
    if from_insurance > 0:
        log IClearinghouse.InsurancePayout(account=account, amount=from_insurance)
    log IClearinghouse.BadDebt(account=account, shortfall=shortfall, covered_by_insurance=from_insurance, socialised=socialised)


@view
def _margin(account: uint256, known_market: uint256, known_price: uint256) -> (int256, uint256, uint256):
    pnl: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    pnl, maintenance, initial = self._positions_risk(account, known_market, known_price)
    equity: int256 = self._settlement_of(account) * convert(SETTLEMENT_TO_WAD, int256)
    equity += convert(self._collateral_value(account), int256) + pnl
    return equity, maintenance, initial


@view
def _collateral_value(account: uint256) -> uint256:
    mask: uint256 = self._collateral_mask_of(account)
    total: uint256 = 0
    for slot: uint256 in range(1, c.MAX_COLLATERALS):
        if mask >> slot == 0:
            break
        if mask & (1 << slot) == 0:
            continue
        col: IClearinghouse.Collateral = self.collaterals[slot]
        price: uint256 = staticcall ORACLE.price(col.token)
        # amount * price / unit, then the haircut; both rounded down (a credit)
        total += self.balances[account][slot] * price // col.unit * col.weight // c.WAD
    return total


@view
def _positions_risk(account: uint256, known_market: uint256, known_price: uint256) -> (int256, uint256, uint256):
    """
    @dev Unrealised PnL (rounded down), maintenance and initial requirements (rounded up) over
         the account's markets, with funding accrued to now. `known_price` is the oracle price
         of `known_market` that the caller already read in this transaction (0: none).
    """
    mask: uint256 = self._market_mask_of(account)
    pnl: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    for m: uint256 in range(1, c.MAX_MARKETS):
        if mask >> m == 0:
            break
        if mask & (1 << m) == 0:
            continue
        # margin needs no fees: three parameter slots, not four
        params: Hot = self._unpack(
            PackedMarket(core=self._packed[m].core, rates=self._packed[m].rates, sizes=self._packed[m].sizes, fees=0)
        )
        pos: IClearinghouse.Position = self._load_position(account, m)
        price: uint256 = known_price
        if m != known_market:
            price = staticcall ORACLE.price(params.asset)
        index: int256 = self._funding_index_now(params, self._load_state(m), price)
        pnl += risk._signed_mul_floor(pos.size, convert(price, int256) - index) - pos.cost
        abs_size: uint256 = convert(abs(pos.size), uint256)
        mmr: uint256 = 0
        imr: uint256 = 0
        mmr, imr = self._rates(params, abs_size)
        notional: uint256 = risk._mul_up(abs_size, price)
        maintenance += risk._mul_up(notional, mmr)
        initial += risk._mul_up(notional, imr)
    return pnl, maintenance, initial


@view
def _rates(params: Hot, abs_size: uint256) -> (uint256, uint256):
    sigma: uint256 = 0
    sigma_mm: uint256 = 0
    sigma, sigma_mm = staticcall ORACLE.volatilities(params.asset)
    return risk._rates(
        params.base_mmr, params.tier_size, params.tier_mmr, params.vol_unit, params.imr_multiplier, abs_size, sigma, sigma_mm
    )


@view
def _least_close(params: Hot, abs_size: uint256, price: uint256, equity: int256, maintenance: uint256, mmr: uint256) -> uint256:
    """
    @dev Least size x (base units) that restores E' >= (1 + b) M' when closing at the oracle
         price with penalty f: with N the notional and r the rate of the remainder,
         x * price >= ((1 + b) (M_other + N r) - E) / ((1 + b) r - f).
         Solved first with today's tier rate (an upper bound: tiers only fall as size falls),
         then once more with the rate of the tier that remainder lands in; the second answer
         is kept only if its remainder really is in that tier. Rounded up.
    """
    b1: uint256 = c.WAD + (self._liquidation_params & MASK_64)
    imr: uint256 = 0
    m_this: uint256 = risk._mul_up(risk._mul_up(abs_size, price), mmr)
    m_other: uint256 = maintenance - m_this
    x: uint256 = self._close_for_rate(params, abs_size, price, equity, m_other, mmr, b1)
    if x >= abs_size:
        return abs_size
    r2: uint256 = 0
    r2, imr = self._rates(params, abs_size - x)
    if r2 < mmr:
        x2: uint256 = self._close_for_rate(params, abs_size, price, equity, m_other, r2, b1)
        mm_check: uint256 = 0
        mm_check, imr = self._rates(params, abs_size - min(x2, abs_size))
        if x2 < x and mm_check == r2:
            x = x2
    return x


@view
def _close_for_rate(
    params: Hot, abs_size: uint256, price: uint256, equity: int256, m_other: uint256, r: uint256, b1: uint256
) -> uint256:
    notional: uint256 = risk._mul_up(abs_size, price)
    # equity less the settlement token's rounding of the realised PnL and of the penalty
    # (one token unit each), so the health reached is at least the target, not just near it
    slack: int256 = convert(2 * SETTLEMENT_TO_WAD, int256)
    target: int256 = convert(risk._mul_up(m_other + risk._mul_up(notional, r), b1), int256) - (equity - slack)
    if target <= 0:
        return 0
    denominator: uint256 = risk._mul_down(b1, r) - params.penalty  # > 0 by the spiral bound
    x_notional: uint256 = risk._ceil_div(convert(target, uint256) * c.WAD, denominator)
    return risk._ceil_div(x_notional * c.WAD, price)


@view
def _funding_index_now(params: Hot, st: IClearinghouse.MarketState, price: uint256) -> int256:
    elapsed: uint256 = block.timestamp - st.last_funding_time
    if elapsed == 0:
        return st.funding_index
    rate: int256 = risk._funding_rate(st.long_oi, st.short_oi, params.max_funding_rate, params.skew_scale)
    return st.funding_index + risk._funding_step(rate, price, elapsed)


def _accrue(market: uint256, params: Hot, price: uint256) -> IClearinghouse.MarketState:
    st: IClearinghouse.MarketState = self._load_state(market)
    if st.last_funding_time == block.timestamp:
        return st
    st.funding_index = self._funding_index_now(params, st, price)
    st.last_funding_time = block.timestamp
    log IClearinghouse.FundingAccrued(
        market=market,
        funding_index=st.funding_index,
        rate_per_day=risk._funding_rate(st.long_oi, st.short_oi, params.max_funding_rate, params.skew_scale),
    )
    return st


@view
def _apply_fill(
    pos: IClearinghouse.Position, st: IClearinghouse.MarketState, delta: int256, fill: uint256
) -> (IClearinghouse.Position, IClearinghouse.MarketState, int256):
    """
    @dev Close first (average cost, realising PnL), then open what is left in the new direction.
         Cost removed on a close rounds up (less PnL now) and is exact across the position's life:
         removed + remaining == original.
    """
    p: IClearinghouse.Position = pos
    s: IClearinghouse.MarketState = st
    old_size: int256 = p.size
    index: int256 = s.funding_index
    fill_minus_index: int256 = convert(fill, int256) - index
    realised: int256 = 0

    closing: int256 = 0  # part of delta that closes, in the sign of the position being closed
    if old_size != 0 and (delta > 0) != (old_size > 0):
        closing = min(abs(delta), abs(old_size))
        if old_size < 0:
            closing = -closing
    if closing != 0:
        cost_removed: int256 = risk._signed_mul_div_ceil(p.cost, closing, p.size)
        realised = risk._signed_mul_floor(closing, fill_minus_index) - cost_removed
        p.cost -= cost_removed
        s.total_cost -= cost_removed
        p.size -= closing
    opening: int256 = delta + closing
    if opening != 0:
        added: int256 = risk._signed_mul_ceil(opening, fill_minus_index)
        p.cost += added
        s.total_cost += added
        p.size += opening
    # open interest per side
    s.long_oi = s.long_oi + convert(max(p.size, 0), uint256) - convert(max(old_size, 0), uint256)
    s.short_oi = s.short_oi + convert(max(-p.size, 0), uint256) - convert(max(-old_size, 0), uint256)
    return p, s, realised


@view
def _to_tokens_floor(amount_wad: int256) -> int256:
    return risk._div_floor(amount_wad, convert(SETTLEMENT_TO_WAD, int256))


@pure
def _require(ok: bool, reason: String[64]):
    """
    @dev An assert with its message passed in: one copy of the revert code serves every
         governance check, which keeps the contract under the 24 KB limit. Hot paths (trade,
         liquidate, deposit, withdraw) keep inline asserts, which cost no gas when they pass.
    """
    assert ok, reason
