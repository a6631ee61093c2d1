# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
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

from .interfaces import IOracleRouter
from .interfaces import IClearinghouse

import constants as c
import risk
import vault
import perps
import margining

implements: IClearinghouse


interface IOrders:
    def open_orders(account: uint256) -> uint256: view


initializes: vault
initializes: perps[vault := vault]
initializes: margining[vault := vault, perps := perps]

exports: (
    vault.ORACLE,
    vault.SETTLEMENT,
    vault.SETTLEMENT_TO_WAD,
    vault.collaterals,
    vault.collateral_slot,
    vault.collateral_count,
    vault.balances,
    vault.settlement_held,
    vault.total_bad_debt,
    vault.total_debt,
    vault.total_pending,
    vault.total_scaled_debt,
    perps.markets,
    perps.market_count,
)

pool: public(address)  # the LiquidityPool, set once by connect()
configurator: public(address)  # validates and applies every risk parameter, set once by connect()
liquidation_engine: public(address)  # sizes and prices liquidations, the only caller of liquidation_close, set once by connect()
orders: public(address)  # delayed orders, the only caller of fill_order, set once by connect()
paused: public(bool)  # no new risk while set (the Configurator's guardian or owner): closes, withdrawals and liquidations go on
DEPLOYER: immutable(address)  # who may connect() the protocol, once


@deploy
def __init__(oracle: IOracleRouter, settlement_token: IERC20, settlement_decimals: uint8):
    DEPLOYER = msg.sender
    vault.__init__(oracle, settlement_token, settlement_decimals)


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
    vault._require(amount > 0, "clearinghouse: zero amount")
    account: uint256 = vault._account_id(msg.sender, subaccount)
    if token == vault.SETTLEMENT:
        vault._pull_settlement(msg.sender, amount)
        vault._add_settlement(account, convert(amount, int256))
    else:
        slot: uint256 = vault._slot(token)
        vault._require(not self.paused, "clearinghouse: paused")
        col: IClearinghouse.Collateral = vault.collaterals[slot]
        vault._require(col.enabled, "clearinghouse: collateral disabled")
        vault._require(col.total + amount <= col.cap, "clearinghouse: deposit cap")
        vault.collaterals[slot].total = col.total + amount
        vault.balances[account][slot] += amount
        vault._set_collateral_mask(account, vault._collateral_mask_of(account) | (1 << slot))
        vault._pull(IERC20(col.token), msg.sender, amount)
    log IClearinghouse.Deposit(account=account, token=token, amount=amount)


@external
def withdraw(token: address, amount: uint256, subaccount: uint96):
    """
    @notice Withdraw from one of the caller's accounts, only while it stays at or above initial
            margin afterwards and has no order open (see Orders). Allowed while paused.
    @param token The settlement token or a listed collateral token.
    @param amount Token units, > 0 and at most the balance.
    @param subaccount Which of the caller's accounts.
    """
    vault._require(amount > 0, "clearinghouse: zero amount")
    account: uint256 = vault._account_id(msg.sender, subaccount)
    # an order in flight keeps the margin its fill needs (Orders: no backing out by withdrawing)
    vault._require(staticcall IOrders(self.orders).open_orders(account) == 0, "clearinghouse: order pending")
    if token == vault.SETTLEMENT:
        vault._claim(account)  # a pending claim is paid first, as far as the pool holds tokens
        vault._require(vault._settlement_of(account) >= convert(amount, int256), "clearinghouse: insufficient balance")
        vault._add_settlement(account, -(convert(amount, int256)))
    else:
        slot: uint256 = vault._slot(token)
        bal: uint256 = vault.balances[account][slot]
        vault._require(bal >= amount, "clearinghouse: insufficient balance")
        vault.balances[account][slot] = bal - amount
        vault.collaterals[slot].total -= amount
        if bal == amount:
            vault._set_collateral_mask(account, vault._collateral_mask_of(account) & (~(1 << slot)))
    if vault._market_mask_of(account) != 0 or vault._settlement_of(account) < 0:
        # with no positions and no debt nothing is required (E >= 0 == I): no price is read,
        # so a halted or stale collateral feed never locks a balance that owes nothing
        equity: int256 = 0
        maintenance: uint256 = 0
        initial: uint256 = 0
        equity, maintenance, initial = margining._margin(account, 0, 0)
        vault._require(equity >= convert(initial, int256), "clearinghouse: insufficient margin")

    if token == vault.SETTLEMENT:
        vault._push_settlement(msg.sender, amount)
    else:
        vault._push(token, msg.sender, amount)
    log IClearinghouse.Withdraw(account=account, token=token, amount=amount, receiver=msg.sender)


# ---------------------------------------------------------------- perpetual markets


@external
def fill_order(account: uint256, market: uint256, size_delta: int256, limit_price: uint256, price: uint256) -> uint256:
    """
    @notice Orders only: open, increase, reduce, close or flip `account`'s position at `price`
            plus a premium that grows with the market's skew, against the LiquidityPool.
    @dev Orders are placed with `Orders.commit_order` and filled by a keeper at the first oracle
         round dated at least the settlement delay after the order (`OracleRouter.round_price`),
         a price nobody knew when the order was placed; Orders passes that price here.
    @param account The account id (owner << 96 | subaccount) whose owner placed the order.
    @param market Market id.
    @param size_delta Base units to buy (> 0) or sell (< 0).
    @param limit_price Worst acceptable fill, WAD (a buy fills at or below it, a sell at or
           above it); 0 for none.
    @param price The oracle price of the market's asset, WAD, as `round_price` returned it.
    @return The fill price, WAD.
    @custom:security Anything that adds risk (a larger |size| or a flip) needs initial margin
           afterwards and is refused while paused or reduce-only; pure reductions are always
           allowed, so a trader can always cut risk.
    """
    vault._require(msg.sender == self.orders, "clearinghouse: not orders")
    assert size_delta != 0, "clearinghouse: zero size"
    params: perps.Hot = perps._market(market)
    st: IClearinghouse.MarketState = perps._accrue(market, params, price)

    pos: IClearinghouse.Position = perps._load_position(account, market)
    new_size: int256 = pos.size + size_delta
    adds_risk: bool = abs(new_size) > abs(pos.size) or (new_size != 0 and (new_size > 0) != (pos.size > 0) and pos.size != 0)
    if adds_risk:
        # both flags ride in the market's packed core word, already loaded: no extra read
        vault._require(params.flags & perps.PAUSED == 0, "clearinghouse: paused")
        assert params.flags & perps.REDUCE_ONLY == 0, "clearinghouse: reduce only"

    skew: int256 = convert(st.long_oi, int256) - convert(st.short_oi, int256)
    fill: uint256 = risk._fill_price(price, skew, size_delta, params.skew_scale)
    if limit_price != 0:
        vault._require(fill <= limit_price if size_delta > 0 else fill >= limit_price, "clearinghouse: price limit")
    fee_wad: uint256 = risk._mul_up(risk._mul_up(convert(abs(size_delta), uint256), fill), params.fee)
    fee: uint256 = risk._ceil_div(fee_wad, vault.SETTLEMENT_TO_WAD)  # on the filled notional, rounded up, to the pool
    credit: int256 = 0
    pos, st, credit = perps._settle_fill(account, market, pos, st, size_delta, fill, fee, fee)
    if pos.size == 0 and vault._market_mask_of(account) == 0:
        vault._settle_bad_debt(account)  # an underwater account closed by its owner
    if adds_risk:
        vault._require((st.long_oi if new_size > 0 else st.short_oi) <= params.oi_cap, "clearinghouse: open interest cap")
    if adds_risk:
        equity: int256 = 0
        maintenance: uint256 = 0
        initial: uint256 = 0
        equity, maintenance, initial = margining._margin(account, market, price)
        vault._require(equity >= convert(initial, int256), "clearinghouse: insufficient margin")

    log IClearinghouse.Trade(
        account=account, market=market, size_delta=size_delta, fill_price=fill, fee=fee, realised_pnl=credit, new_size=pos.size
    )
    return fill


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
    params: perps.Hot = perps._market(market)
    price: uint256 = vault._price(params.asset)
    equity: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    equity, maintenance, initial = margining._margin(account, market, price)
    sigma: uint256 = 0
    sigma_mm: uint256 = 0
    sigma, sigma_mm = vault._volatilities(params.asset)
    st: IClearinghouse.MarketState = perps._load_state(market)
    return IClearinghouse.LiquidationSnapshot(
        equity=equity,
        maintenance=maintenance,
        price=price,
        size=perps._load_position(account, market).size,
        base_mmr=params.base_mmr,
        tier_size=params.tier_size,
        tier_mmr=params.tier_mmr,
        vol_unit=params.vol_unit,
        imr_multiplier=params.imr_multiplier,
        sigma=sigma,
        sigma_mm=sigma_mm,
        penalty=params.penalty,
        keeper_share=params.keeper_share,
        insurance=vault._funds >> 128,
        skew=convert(st.long_oi, int256) - convert(st.short_oi, int256),
        skew_scale=params.skew_scale,
    )


@external
def liquidation_close(
    account: uint256,
    market: uint256,
    size_delta: int256,
    price: uint256,
    fill: uint256,
    penalty: uint256,
    keeper_reward: uint256,
    keeper: address,
) -> IClearinghouse.LiquidationResult:
    """
    @notice LiquidationEngine only: close `size_delta` of `account`'s position in `market` at
            `fill`, charge `penalty`, pay `keeper_reward` to `keeper` and book the rest of the
            penalty (or, when the reward is larger, the top-up) to the insurance fund. With no
            positions left and no collateral, a negative balance becomes bad debt.
    @dev The engine sized the close and priced the penalty from `liquidation_snapshot` in the
         same transaction. The keeper is paid in tokens: the pool pays the owed fraction of the
         penalty's reward out of its free liquidity, the insurance fund the rest (tip
         included), never more than they and this contract hold.
    @param account The account id.
    @param market The market id.
    @param size_delta Base units, of the sign that reduces the position; 0 realises the
           position's PnL at `fill` without changing its size (`realise_loss`).
    @param price The oracle price the engine read, WAD: funding accrues and the unrealised PnL
           is marked at it.
    @param fill The price the close fills at, WAD: `price` for a partial close, the skew-premium
           fill price (as a trade's) for the close of a whole position.
    @param penalty Settlement token units charged to the account.
    @param keeper_reward Settlement token units paid to `keeper`.
    @param keeper Who called the engine.
    @return The realised PnL credited, the position's change of unrealised PnL and the
            account's open markets afterwards.
    @custom:security Only the engine may call this: it moves the insurance fund. The fund never
           goes negative and never pays the keeper's share of a penalty the pool lent; the pool
           pays out of its free liquidity only, so it never takes the tokens that back other
           users' balances.
    """
    self._only_engine()
    params: perps.Hot = perps._market(market)
    st: IClearinghouse.MarketState = perps._accrue(market, params, price)
    before: IClearinghouse.Position = perps._load_position(account, market)
    pos: IClearinghouse.Position = empty(IClearinghouse.Position)
    credit: int256 = 0
    pos, st, credit = perps._settle_fill(account, market, before, st, size_delta, fill, 0, 0)
    # the penalty: what the account pays out of a positive balance goes to the insurance fund;
    # what it can only owe, the pool lends it and holds as a claim (so the fund never counts a
    # debt as tokens). Booking `owed` raises the pool's balance and the debts alike, so the
    # pool's free liquidity is read before it (and only when the pool pays).
    s: int256 = vault._settlement_of(account)
    owed: uint256 = convert(min(max(convert(penalty, int256) - s, 0), convert(penalty, int256)), uint256)
    # the keeper: the pool pays the keeper's share of the owed part of the penalty out of its
    # free liquidity, the insurance fund the rest (the tip included, and what the pool cannot
    # pay: a liquidation is paid even while claims leave the pool no free token), and never
    # more tokens than are held
    reward_owed: uint256 = min(keeper_reward, owed * params.keeper_share // c.WAD)
    from_pool: uint256 = 0
    if reward_owed > 0:
        from_pool = min(reward_owed, vault._pool_liquidity())
    vault._set_settlement(account, s - convert(penalty, int256))
    insurance: uint256 = (vault._funds >> 128) + penalty - owed
    from_insurance: uint256 = min(keeper_reward - from_pool, insurance)
    paid: uint256 = min(from_pool + from_insurance, vault.settlement_held)
    from_insurance = min(from_insurance, paid)
    from_pool = paid - from_insurance
    vault._funds = vault._to_int128(vault._pool_balance() + convert(owed, int256) - convert(from_pool, int256)) | (
        (insurance - from_insurance) << 128
    )
    if paid > 0:
        vault._push_settlement(keeper, paid)
    if vault._market_mask_of(account) == 0:
        vault._settle_bad_debt(account)  # left empty: what it cannot cover is bad debt
    p_minus_i: int256 = convert(price, int256) - st.funding_index
    pnl_change: int256 = (risk._signed_mul_floor(pos.size, p_minus_i) - pos.cost) - (
        risk._signed_mul_floor(before.size, p_minus_i) - before.cost
    )
    return IClearinghouse.LiquidationResult(
        realised_pnl=credit, pnl_change=pnl_change, market_mask=vault._market_mask_of(account), keeper_paid=paid
    )


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
    self._only_engine()
    balance: uint256 = vault.balances[account][slot]
    vault.balances[account][slot] = balance - amount
    vault.collaterals[slot].total -= amount
    if balance == amount:
        vault._set_collateral_mask(account, vault._collateral_mask_of(account) & (~(1 << slot)))
    vault._add_settlement(account, convert(paid, int256))
    vault._pull_settlement(buyer, paid)
    if vault._collateral_mask_of(account) | vault._market_mask_of(account) == 0:
        vault._settle_bad_debt(account)
    vault._push(vault.collaterals[slot].token, buyer, amount)


# ---------------------------------------------------------------- insurance and liquidity pool custody


@external
def fund_insurance(amount: uint256):
    """
    @notice Add settlement token to the insurance fund (anyone).
    @param amount Settlement token units pulled from the caller (approved to this contract), > 0.
    """
    vault._require(amount > 0, "clearinghouse: zero amount")
    vault._pull_settlement(msg.sender, amount)
    vault._add_insurance(convert(amount, int256))
    log IClearinghouse.InsuranceDeposit(source=msg.sender, amount=amount)


@external
def pool_deposit(amount: uint256):
    """
    @notice The pool moves LP assets here; they back traders' profits.
    @param amount Settlement token units pulled from the pool.
    """
    self._only_pool()
    vault._accrue_index()  # the pool's balance sets the debt rate: the interest so far at the old one
    vault._pull_settlement(msg.sender, amount)
    vault._add_pool(convert(amount, int256))


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
    self._only_pool()
    vault._require(amount <= vault._pool_liquidity(), "clearinghouse: pool liquidity")
    vault._accrue_index()
    vault._add_pool(-convert(amount, int256))
    vault._push_settlement(receiver, amount)


# ---------------------------------------------------------------- views


@view
@external
def positions(account: uint256, market: uint256) -> IClearinghouse.Position:
    """
    @notice The account's position in `market`: size (base units, + long) and cost basis.
    @param account The account id.
    @param market The market id.
    @return (size in base units, cost basis in WAD USD).
    """
    return perps._load_position(account, market)


@view
@external
def pool_balance() -> int256:
    """
    @notice The pool's realised balance held here, token units (negative: it owes traders).
    @return Settlement token units; negative when the pool owes traders more than it holds.
    """
    return vault._pool_balance()


@view
@external
def insurance_balance() -> uint256:
    """
    @notice The insurance fund, settlement token units.
    @return Settlement token units.
    """
    return vault._funds >> 128


@view
@external
def settlement(account: uint256) -> int256:
    """
    @notice The account's settlement token balance, token units; negative only through losses.
    @param account The account id.
    @return Settlement token units (signed).
    """
    return vault._settlement_of(account)


@view
@external
def pending(account: uint256) -> uint256:
    """
    @notice Realised profit the pool owes the account but could not pay in tokens when it was
            realised: it counts in equity as the balance does and is paid into the balance on
            the account's next settlement withdrawal, as far as the pool then holds tokens.
    @param account The account id.
    @return Settlement token units.
    """
    return vault._pending_of(account)


@view
@external
def debt_index() -> uint256:
    """
    @notice The debt index to now, WAD: a debt written at index i0 reads ceil(debt * index / i0).
    @return WAD, 1e18 at deployment; it only rises.
    """
    return vault._index_now()


@view
@external
def debt_state() -> (uint256, uint256):
    """
    @notice The debt index as last accrued and when: `debt_index()` computes from these, the
            total debt, the pool's balance and `debt_terms` (as funding from `market_state`).
    @return (index, WAD; timestamp, seconds).
    """
    w: uint256 = vault._debt_index
    return w & vault.MASK_128, w >> 128


@view
@external
def debt_of(account: uint256) -> (uint256, uint256):
    """
    @notice The account's debt as last written and the debt index it was written at (both 0
            without a debt): `settlement(account)` is -ceil(debt * debt_index() / index).
    @param account The account id.
    @return (token units, WAD).
    """
    word: uint256 = vault._accounts[account]
    written: int256 = vault._from_int128(word & vault.MASK_128)
    if written >= 0:
        return 0, 0
    return convert(-written, uint256), word >> 152


@view
@external
def debt_terms() -> (uint256, uint256, uint256, uint256):
    """
    @notice The loan a negative settlement balance is: (rate_base, rate_slope, debt_imr,
            ceiling), WAD.
    @return The yearly rate with nothing lent; the yearly rate added at full utilisation
            (total debt / what the pool could lend: its balance less the pending claims); the
            initial margin a debt needs (added to the initial requirement); the total debt, as
            a fraction of what the pool could lend, above which Orders fills no order that adds
            risk to an account in debt.
    """
    terms: uint256 = vault._debt_terms
    return terms & vault.MASK_64, (terms >> 64) & vault.MASK_64, (terms >> 128) & vault.MASK_64, terms >> 192


@view
@external
def market_mask(account: uint256) -> uint256:
    """
    @notice Bit m set: the account has a position in market m.
    @param account The account id.
    @return The mask (bits 1..15).
    """
    return vault._market_mask_of(account)


@view
@external
def collateral_mask(account: uint256) -> uint256:
    """
    @notice Bit s set: the account holds collateral slot s.
    @param account The account id.
    @return The mask (bits 1..7).
    """
    return vault._collateral_mask_of(account)


@view
@external
def market_state(market: uint256) -> IClearinghouse.MarketState:
    """
    @notice A market's open interest per side, summed cost basis and funding index.
    @param market The market id.
    @return The state as stored (funding accrued to its last_funding_time, not to now).
    """
    return perps._load_state(market)


@view
@external
def margin(account: uint256) -> (int256, uint256, uint256):
    """
    @notice (equity, maintenance requirement, initial requirement) in WAD USD, funding accrued
            to now, exactly as the margin checks see them.
    @param account The account id.
    @return (equity, maintenance requirement, initial requirement), WAD USD.
    """
    return margining._margin(account, 0, 0)


@view
@external
def collateral_value(account: uint256) -> uint256:
    """
    @notice Haircut collateral value of the account (settlement balance excluded), WAD USD.
    @param account The account id.
    @return Sum over tokens of amount * price // unit * weight // 1e18, WAD USD.
    """
    return margining._collateral_value(account)


# ---------------------------------------------------------------- governance (emergency controls: emergency.vy)


@external
def connect(pool: address, configurator: address, liquidation_engine: address, orders: address):
    """
    @notice Wire the protocol, once: the LiquidityPool (the only caller of `pool_deposit` and
            `pool_withdraw`), the Configurator (the only caller of the `apply_*` functions,
            which validates every parameter against its bounds before it gets here), the
            LiquidationEngine (the only caller of `liquidation_close` and `seize_collateral`)
            and Orders (the only caller of `fill_order`).
    @dev Each of them is deployed against this contract's address, so none can be a
         constructor argument; once set they cannot change, so no owner can swap in a
         contract that moves balances.
    @param pool The LiquidityPool.
    @param configurator The Configurator.
    @param liquidation_engine The LiquidationEngine.
    @param orders The Orders contract.
    """
    vault._require(msg.sender == DEPLOYER, "clearinghouse: not deployer")
    vault._require(self.pool == empty(address), "clearinghouse: already connected")
    vault._require(
        pool != empty(address)
        and configurator != empty(address)
        and liquidation_engine != empty(address)
        and orders != empty(address),
        "clearinghouse: zero address",
    )
    self.pool = pool
    self.configurator = configurator
    self.liquidation_engine = liquidation_engine
    self.orders = orders


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
    self._only_configurator()
    slot: uint256 = vault.collateral_slot[token]
    if slot == 0:
        slot = vault.collateral_count + 1
        vault.collateral_count = slot
        vault.collateral_slot[token] = slot
        vault.collaterals[slot].token = token
        vault.collaterals[slot].unit = unit
    vault.collaterals[slot].weight = weight
    vault.collaterals[slot].cap = cap
    vault.collaterals[slot].liquidation_discount = liquidation_discount
    vault.collaterals[slot].enabled = enabled


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
    self._only_configurator()
    flags: uint256 = perps._packed[market].core >> 224  # reduce-only and pause survive a change
    if market == perps.market_count + 1:
        perps.market_count = market
        perps._state[market].open_interest = block.timestamp << 192
        if self.paused:
            flags = perps.PAUSED
    else:
        current: perps.Hot = perps._market(market)
        price: uint256 = vault._price(current.asset)
        perps._store_state(market, perps._accrue(market, current, price))
    perps.markets[market] = params
    perps._packed[market] = perps.PackedMarket(
        core=convert(params.asset, uint256) | (params.imr_multiplier << 160) | (flags << 224),
        rates=params.base_mmr | (params.tier_mmr << 64) | (vol_unit << 128) | (params.max_funding_rate << 192),
        sizes=params.tier_size | (params.skew_scale << 80) | (params.oi_cap << 168),
        fees=params.fee | (params.penalty << 64) | (params.keeper_share << 128),
    )


@external
def apply_debt_terms(rate_base: uint256, rate_slope: uint256, debt_imr: uint256, ceiling: uint256):
    """
    @notice Configurator only (which checks the bounds): the loan's terms, see `debt_terms`.
            The interest so far accrues at the old rate first.
    @param rate_base Yearly rate with nothing lent, WAD.
    @param rate_slope Yearly rate added at full utilisation, WAD.
    @param debt_imr Initial margin on a debt, WAD.
    @param ceiling Total debt, as a fraction of what the pool could lend, above which Orders
           fills no order adding risk to an account in debt, WAD.
    """
    self._only_configurator()
    vault._accrue_index()
    vault._debt_terms = rate_base | (rate_slope << 64) | (debt_imr << 128) | (ceiling << 192)


@external
def apply_emergency(market: uint256, flags: uint256):
    """
    @notice Configurator only (its guardian's and owner's controls): market 0 sets the pause
            of non-settlement deposits (flags != 0); a listed market gets its flags (bit 0
            reduce-only, bit 1 paused: no new risk).
    @param market 0, or a listed market.
    @param flags The market's flags, or for market 0 whether deposits are paused.
    """
    self._only_configurator()
    if market == 0:
        self.paused = flags != 0
        return
    core: uint256 = perps._packed[market].core
    vault._require(core != 0, "clearinghouse: unknown market")
    perps._packed[market].core = (core & (2**224 - 1)) | (flags << 224)


@view
def _only_configurator():
    # one copy of the check for every apply_* call
    vault._require(msg.sender == self.configurator, "clearinghouse: not configurator")


@view
def _only_engine():
    # the liquidation API's check, once
    vault._require(msg.sender == self.liquidation_engine, "clearinghouse: not liquidation engine")


@view
def _only_pool():
    # the pool custody check, once
    vault._require(msg.sender == self.pool, "clearinghouse: not pool")
