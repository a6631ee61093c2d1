# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Clearinghouse
@notice The deployable core of marginsim: collateral vault, perpetual markets, margin check,
        insurance fund and emergency controls in one contract, so a trade prices, checks margin
        and settles without a cross-contract call per concern (gas), and the settlement token
        never moves on a trade (PnL, fees and funding settle internally). Liquidation is sized
        and priced by the separate LiquidationEngine, which alone may call `liquidation_close`
        and `seize_collateral`; risk parameters come only from the Configurator. The LP side is
        the ERC-4626 LiquidityPool, whose assets are held here as `pool_balance`; prices come
        from the OracleRouter.
@dev Glossary (one account; every USD value is WAD, every token amount in its own decimals)
     - settlement balance s: signed balance in the 6-decimal settlement token. Goes negative only
       through losses, fees, penalties and funding, never by a withdrawal.
     - collateral value C = sum over tokens of amount * price * weight (haircut), rounded down.
     - unrealised PnL U = sum over markets of size * (price - F) - cost, F = funding index now.
       `cost` folds the entry price and the funding index at entry into one number, so funding
       needs no extra storage per position.
     - equity E = s + C + U.
     - maintenance requirement M = sum over markets of |size| * price * mmr,
       mmr = min(max(tier rate, vol_unit * sigma_mm), imr), tier rate = base_mmr + tier_mmr *
       (|size| // tier_size), vol_unit = vol_k * sqrt(liquidation_horizon / year).
     - initial requirement I = sum of |size| * price * imr,
       imr = min(imr_multiplier * max(tier rate, vol_unit * sigma), 100%).
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

pool: public(address)  # the LiquidityPool, set once by connect()
configurator: public(address)  # validates and applies every risk parameter, set once by connect()
liquidation_engine: public(address)  # sizes and prices liquidations, the only caller of liquidation_close, set once by connect()
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


@deploy
def __init__(oracle: IOracleRouter, settlement_token: IERC20, settlement_decimals: uint8):
    ownable.__init__()
    ownable_2step.__init__()
    assert settlement_decimals <= 18, "clearinghouse: bad decimals"
    ORACLE = oracle
    SETTLEMENT = settlement_token
    SETTLEMENT_TO_WAD = 10**convert(18 - settlement_decimals, uint256)
    self.guardian = msg.sender


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
    fee_wad: uint256 = risk._mul_up(risk._mul_up(convert(abs(size_delta), uint256), fill), params.fee)
    fee: uint256 = risk._ceil_div(fee_wad, SETTLEMENT_TO_WAD)  # on the filled notional, rounded up, to the pool
    credit: int256 = 0
    pos, st, credit = self._settle_fill(account, market, pos, st, size_delta, fill, fee, fee)
    if adds_risk:
        if new_size > 0:
            assert st.long_oi <= params.oi_cap, "clearinghouse: open interest cap"
        else:
            assert st.short_oi <= params.oi_cap, "clearinghouse: open interest cap"
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
    @param market The market id; reverts `clearinghouse: unknown market` when not listed.
    """
    params: Hot = self._market(market)
    price: uint256 = staticcall ORACLE.price(params.asset)
    self._store_state(market, self._accrue(market, params, price))


# ---------------------------------------------------------------- the liquidation engine's API


@view
@external
def liquidation_snapshot(account: uint256, market: uint256) -> IClearinghouse.LiquidationSnapshot:
    """
    @notice Everything the LiquidationEngine needs to size and price a liquidation of
            `account` in `market`, in one call: margin, price, position, rate parameters,
            volatilities, penalty terms, liquidation parameters and the insurance fund.
    @param account The account id (owner << 96 | subaccount).
    @param market The market id; reverts `clearinghouse: unknown market` when not listed.
    @return The snapshot, funding accrued to now, exactly as the margin checks see it.
    """
    params: Hot = self._market(market)
    price: uint256 = staticcall ORACLE.price(params.asset)
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = self._margin(account, market, price)
    sigma: uint256 = 0
    sigma_mm: uint256 = 0
    sigma, sigma_mm = staticcall ORACLE.volatilities(params.asset)
    return IClearinghouse.LiquidationSnapshot(
        equity=equity,
        maintenance=maintenance,
        price=price,
        size=self._load_position(account, market).size,
        base_mmr=params.base_mmr,
        tier_size=params.tier_size,
        tier_mmr=params.tier_mmr,
        vol_unit=params.vol_unit,
        imr_multiplier=params.imr_multiplier,
        sigma=sigma,
        sigma_mm=sigma_mm,
        penalty=params.penalty,
        keeper_share=params.keeper_share,
        insurance=self._funds >> 128,
    )


@external
def liquidation_close(
    account: uint256,
    market: uint256,
    size_delta: int256,
    price: uint256,
    penalty: uint256,
    keeper_reward: uint256,
    keeper: address,
) -> IClearinghouse.LiquidationResult:
    """
    @notice LiquidationEngine only: close `size_delta` of `account`'s position in `market` at
            `price`, charge `penalty`, pay `keeper_reward` to `keeper` and book the rest of the
            penalty (or, when the reward is larger, the top-up) to the insurance fund. With no
            positions left and no collateral, a negative balance becomes bad debt.
    @dev The engine sized the close and priced the penalty from `liquidation_snapshot` in the
         same transaction. The keeper reward is paid in tokens, or credited to the keeper's
         account 0 when this contract holds fewer than the reward.
    @param account The account id.
    @param market The market id.
    @param size_delta Base units, of the sign that reduces the position.
    @param price The oracle price the engine read, WAD.
    @param penalty Settlement token units charged to the account.
    @param keeper_reward Settlement token units paid to `keeper`.
    @param keeper Who called the engine.
    @return The realised PnL credited, the position's change of unrealised PnL and the
            account's open markets afterwards.
    @custom:security Only the engine may call this: it moves the insurance fund. The insurance
           fund can never go negative: the engine caps the tip's top-up at the fund, and a
           negative result would revert in `_add_insurance`'s conversion to uint256.
    """
    assert msg.sender == self.liquidation_engine, "clearinghouse: not liquidation engine"
    params: Hot = self._market(market)
    st: IClearinghouse.MarketState = self._accrue(market, params, price)
    # the insurance fund's side first: bad debt, settled when the account is left empty, may
    # then draw on the penalty share it just received
    self._add_insurance(convert(penalty, int256) - convert(keeper_reward, int256))
    before: IClearinghouse.Position = self._load_position(account, market)
    pos: IClearinghouse.Position = empty(IClearinghouse.Position)
    credit: int256 = 0
    pos, st, credit = self._settle_fill(account, market, before, st, size_delta, price, penalty, 0)
    if keeper_reward > 0:
        if self.settlement_held >= keeper_reward:
            self._push_settlement(keeper, keeper_reward)
        else:
            # too few tokens on hand (the reward is backed by the account's collateral): credit
            # the keeper's account 0 rather than block the liquidation
            self._add_settlement(self._account_id(keeper, 0), convert(keeper_reward, int256))
    p_minus_i: int256 = convert(price, int256) - st.funding_index
    pnl_change: int256 = (risk._signed_mul_floor(pos.size, p_minus_i) - pos.cost) - (
        risk._signed_mul_floor(before.size, p_minus_i) - before.cost
    )
    return IClearinghouse.LiquidationResult(realised_pnl=credit, pnl_change=pnl_change, market_mask=self._market_mask_of(account))


@external
def seize_collateral(account: uint256, slot: uint256, amount: uint256, paid: uint256, buyer: address):
    """
    @notice LiquidationEngine only: move `amount` of `account`'s collateral in `slot` to
            `buyer`, who pays `paid` settlement token units into the account's balance. With no
            collateral left, the rest of a debt is bad debt.
    @param account The account id.
    @param slot The collateral slot.
    @param amount Token units sold.
    @param paid Settlement token units the buyer pays (pulled from `buyer`, who approved this
           contract).
    @param buyer Who called the engine.
    """
    assert msg.sender == self.liquidation_engine, "clearinghouse: not liquidation engine"
    balance: uint256 = self.balances[account][slot]
    self.balances[account][slot] = balance - amount
    self.collaterals[slot].total -= amount
    if balance == amount:
        self._set_collateral_mask(account, self._collateral_mask_of(account) & (~(1 << slot)))
    self._add_settlement(account, convert(paid, int256))
    self._pull_settlement(buyer, paid)
    if self._collateral_mask_of(account) == 0:
        self._settle_bad_debt(account)
    self._require(
        extcall IERC20(self.collaterals[slot].token).transfer(buyer, amount, default_return_value=True),
        "clearinghouse: transfer failed",
    )


@external
def fund_insurance(amount: uint256):
    """
    @notice Add settlement token to the insurance fund (anyone).
    @param amount Settlement token units pulled from the caller (approved to this contract), > 0.
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
    @param amount Settlement token units pulled from the pool.
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
    @param amount Settlement token units, at most the pool's realised balance less every debt.
    @param receiver Who receives the tokens (the redeeming LP).
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
    @param account The account id (owner << 96 | subaccount).
    @return equity * 1e18 // maintenance, rounded down; 0 when equity <= 0.
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
    @param account The account id.
    @param market The market id.
    @return (size in base units, cost basis in WAD USD).
    """
    return self._load_position(account, market)


@view
@external
def pool_balance() -> int256:
    """
    @notice The pool's realised balance held here, token units (negative: it owes traders).
    @return Settlement token units; negative when the pool owes traders more than it holds.
    """
    return self._pool_balance()


@view
@external
def insurance_balance() -> uint256:
    """
    @notice The insurance fund, settlement token units.
    @return Settlement token units.
    """
    return self._funds >> 128


@view
@external
def reduce_only(market: uint256) -> bool:
    """
    @notice Whether only reductions are allowed in `market` (set by the guardian or owner).
    @param market The market id.
    @return True while only reductions are allowed.
    """
    return (self._packed[market].core >> 224) & REDUCE_ONLY != 0


@view
@external
def settlement(account: uint256) -> int256:
    """
    @notice The account's settlement token balance, token units; negative only through losses.
    @param account The account id.
    @return Settlement token units (signed).
    """
    return self._settlement_of(account)


@view
@external
def market_mask(account: uint256) -> uint256:
    """
    @notice Bit m set: the account has a position in market m.
    @param account The account id.
    @return The mask (bits 1..15).
    """
    return self._market_mask_of(account)


@view
@external
def collateral_mask(account: uint256) -> uint256:
    """
    @notice Bit s set: the account holds collateral slot s.
    @param account The account id.
    @return The mask (bits 1..7).
    """
    return self._collateral_mask_of(account)


@view
@external
def market_state(market: uint256) -> IClearinghouse.MarketState:
    """
    @notice A market's open interest per side, summed cost basis and funding index.
    @param market The market id.
    @return The state as stored (funding accrued to its last_funding_time, not to now).
    """
    return self._load_state(market)


@view
@external
def margin(account: uint256) -> (int256, uint256, uint256):
    """
    @notice (equity, maintenance requirement, initial requirement) in WAD USD, funding accrued
            to now, exactly as the margin checks see them.
    @param account The account id.
    @return (equity, maintenance requirement, initial requirement), WAD USD.
    """
    return self._margin(account, 0, 0)


@view
@external
def collateral_value(account: uint256) -> uint256:
    """
    @notice Haircut collateral value of the account (settlement balance excluded), WAD USD.
    @param account The account id.
    @return Sum over tokens of amount * price // unit * weight // 1e18, WAD USD.
    """
    return self._collateral_value(account)


# ---------------------------------------------------------------- governance


@external
def connect(pool: address, configurator: address, liquidation_engine: address):
    """
    @notice Wire the protocol, once: the LiquidityPool (the only caller of `pool_deposit` and
            `pool_withdraw`), the Configurator (the only caller of the `apply_*` functions,
            which validates every parameter against its bounds before it gets here) and the
            LiquidationEngine (the only caller of `liquidation_close` and `seize_collateral`).
    @dev Each of them is deployed against this contract's address, so none can be a
         constructor argument; once set they cannot change, so no owner can swap in a
         contract that moves balances.
    @param pool The LiquidityPool.
    @param configurator The Configurator.
    @param liquidation_engine The LiquidationEngine.
    """
    ownable._check_owner()
    self._require(self.pool == empty(address), "clearinghouse: already connected")
    self._require(
        pool != empty(address) and configurator != empty(address) and liquidation_engine != empty(address),
        "clearinghouse: zero address",
    )
    self.pool = pool
    self.configurator = configurator
    self.liquidation_engine = liquidation_engine


@external
def set_guardian(guardian: address):
    """
    @notice Set the pause guardian.
    @param guardian Who may pause and set reduce-only besides the owner.
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
def apply_collateral(token: address, unit: uint256, weight: uint256, cap: uint256, liquidation_discount: uint256, enabled: bool):
    """
    @notice Configurator only: list a collateral (next slot) or change a listed one.
    @param token The ERC-20.
    @param unit 10 ** its decimals (kept from the first listing).
    @param weight Haircut weight, WAD.
    @param cap Cap on total deposits, token units.
    @param liquidation_discount Discount a buyer of seized collateral gets, WAD.
    @param enabled Whether new deposits are allowed.
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
def apply_market(market: uint256, params: IClearinghouse.MarketParams, vol_unit: uint256):
    """
    @notice Configurator only: list market `market_count + 1`, or change a listed market after
            accruing its funding at the old parameters.
    @param market The market id.
    @param params The parameters, validated by the Configurator.
    @param vol_unit vol_k * sqrt(liquidation_horizon / year), WAD (`risk._vol_unit`), computed
           by the Configurator: the square root is governance's cost, not the core's bytes.
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
    self._packed[market] = PackedMarket(
        core=convert(params.asset, uint256) | (params.imr_multiplier << 160) | (flags << 224),
        rates=params.base_mmr | (params.tier_mmr << 64) | (vol_unit << 128) | (params.max_funding_rate << 192),
        sizes=params.tier_size | (params.skew_scale << 80) | (params.oi_cap << 168),
        fees=params.fee | (params.penalty << 64) | (params.keeper_share << 128),
    )


@external
def set_reduce_only(market: uint256, reduce_only: bool):
    """
    @notice Allow only reductions in a market (owner or guardian may set it; only the owner
            lifts it).
    @param market The market id.
    @param reduce_only True to allow only reductions (owner or guardian), False to lift it (owner).
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
        index: int256 = risk._funding_index_now(self._load_state(m), params.max_funding_rate, params.skew_scale, price)
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


def _accrue(market: uint256, params: Hot, price: uint256) -> IClearinghouse.MarketState:
    st: IClearinghouse.MarketState = self._load_state(market)
    if st.last_funding_time == block.timestamp:
        return st
    st.funding_index = risk._funding_index_now(st, params.max_funding_rate, params.skew_scale, price)
    st.last_funding_time = block.timestamp
    log IClearinghouse.FundingAccrued(
        market=market,
        funding_index=st.funding_index,
        rate_per_day=risk._funding_rate(st.long_oi, st.short_oi, params.max_funding_rate, params.skew_scale),
    )
    return st


def _settle_fill(
    account: uint256,
    market: uint256,
    pos: IClearinghouse.Position,
    st: IClearinghouse.MarketState,
    size_delta: int256,
    fill: uint256,
    charge: uint256,
    to_pool: uint256,
) -> (IClearinghouse.Position, IClearinghouse.MarketState, int256):
    """
    @dev Fill `size_delta` at `fill` (a trade or a liquidation): realise PnL into the account's
         balance (rounded down; the pool takes the exact complement), charge `charge` token
         units, of which `to_pool` goes to the pool (a fee; a penalty's destination is the
         caller's), store the position and market state, keep the market mask, and when the
         account is left with no positions settle a debt it cannot cover as bad debt.
    @return The position and market state afterwards, and the realised PnL in token units.
    """
    p: IClearinghouse.Position = empty(IClearinghouse.Position)
    s: IClearinghouse.MarketState = empty(IClearinghouse.MarketState)
    realised: int256 = 0
    p, s, realised = self._apply_fill(pos, st, size_delta, fill)
    credit: int256 = self._to_tokens_floor(realised)
    self._add_settlement(account, credit - convert(charge, int256))
    self._add_pool(convert(to_pool, int256) - credit)
    self._store_position(account, market, p)
    self._store_state(market, s)
    mask: uint256 = self._market_mask_of(account)
    if p.size == 0:
        self._set_market_mask(account, mask & (~(1 << market)))
        if mask & (~(1 << market)) == 0:
            self._settle_bad_debt(account)  # an underwater account closed by its owner or a keeper
    else:
        self._set_market_mask(account, mask | (1 << market))
    return p, s, credit


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
