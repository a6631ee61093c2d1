# pragma version ~=0.4.3
"""
@title Configurator
@notice Governance of the Clearinghouse's risk parameters: lists collaterals and markets and
        changes their parameters, each checked against its on-chain bounds here, then applied
        through the Clearinghouse's `apply_*` functions, which only this contract may call.
@dev Its own contract for the reason Aave has a PoolConfigurator: the bounds checks are cold
     code that would otherwise push the Clearinghouse over the 24 KB limit. Owned with
     snekmate's ownable_2step. The emergency controls live here too (a guardian may pause new
     risk everywhere or make one market reduce-only; only the owner lifts either), so the
     Clearinghouse spends no bytes on ownership.
     Bounds that protect the protocol, not just sanity:
     - maintenance < initial <= 100%: imr_multiplier > 1 and base_mmr * imr_multiplier <= 1;
     - no liquidation spiral: penalty < (1 + buffer) * base_mmr, rounded as the liquidation
       formula rounds (DESIGN.md), re-checked for every market when the buffer changes;
     - self-liquidation loses: keeper_share <= 90%;
     - the skew premium a liquidation moves unpaid (up to P x n / S) stays below what the
       liquidated side pays: oi_cap <= skew_scale * (1 - keeper_share) * min(penalty,
       full_liquidation_health * base_mmr), re-checked when the liquidation parameters change;
     - a collateral sale always raises more than the haircut value: discount < 1 - weight.
"""

from ethereum.ercs import IERC20Detailed

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from .interfaces import IClearinghouse
from .interfaces import ILiquidationEngine
from .interfaces import IOracleRouter


interface IReservePool:
    def apply_reserve_factor(market: uint256, reserve_factor: uint256): nonpayable
    def held(market: uint256) -> (uint256, uint256): view


interface IOrders:
    def apply_order_parameters(settlement_delay: uint256, expiry: uint256, execution_fee: uint256): nonpayable
    def apply_order_bond(rate: uint256): nonpayable


import constants as c
import risk

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


event MarketSet:
    market: indexed(uint256)
    params: IClearinghouse.MarketParams


event CollateralSet:
    token: indexed(address)
    weight: uint256
    cap: uint256
    liquidation_discount: uint256
    enabled: bool


event UnderwaterTipSet:
    rate: uint256


event OrderParametersSet:
    settlement_delay: uint256
    expiry: uint256
    execution_fee: uint256


event OrderBondSet:
    rate: uint256


event ReserveFactorSet:
    market: indexed(uint256)
    reserve_factor: uint256


event DebtParametersSet:
    rate_base: uint256
    rate_slope: uint256
    debt_imr: uint256
    ceiling: uint256
    liquidation_ltv: uint256


event LiquidationParametersSet:
    buffer: uint256
    full_liquidation_health: uint256
    dust_notional: uint256


MAX_PENALTY: constant(uint256) = 10**17  # 10% of closed notional
MAX_FEE: constant(uint256) = 10**16  # 1% of notional
MAX_KEEPER_SHARE: constant(uint256) = 9 * 10**17  # 90%: below 100% so self-liquidation loses
MIN_BASE_MMR: constant(uint256) = 10**15  # 0.1%
MAX_BASE_MMR: constant(uint256) = 5 * 10**17  # 50%
MAX_TIER_MMR: constant(uint256) = 10**17  # +10% per tier step
MAX_VOL_K: constant(uint256) = 10 * 10**18  # 10 sigmas
MIN_HORIZON: constant(uint256) = 60  # a minute
MAX_HORIZON: constant(uint256) = 7 * 86_400  # a week
MAX_IMR_MULTIPLIER: constant(uint256) = 10 * 10**18  # initial at most 10x maintenance
MAX_FUNDING_RATE: constant(uint256) = 10**17  # 10% a day
MAX_BUFFER: constant(uint256) = 5 * 10**17  # liquidate to at most health 1.5
MAX_DUST: constant(uint256) = 10**4 * 10**18  # $10,000
MAX_WEIGHT: constant(uint256) = 99 * 10**16  # 0.99: some haircut always remains
MIN_DISCOUNT: constant(uint256) = 10**15  # 0.1%: a liquidator must earn something
MAX_TIP_RATE: constant(uint256) = 10**16  # 1% of closed notional for an underwater liquidation
MAX_SETTLEMENT_DELAY: constant(uint256) = 3_600  # an hour between an order and its round
MIN_ORDER_EXPIRY: constant(uint256) = 60  # a minute
MAX_ORDER_EXPIRY: constant(uint256) = 7 * 86_400  # a week
MAX_EXECUTION_FEE: constant(uint256) = 1_000  # whole settlement tokens per order
MAX_ORDER_BOND: constant(uint256) = 10**16  # 1% of the notional an order adds
MAX_RESERVE_FACTOR: constant(uint256) = 100 * 10**18  # a side at most a hundred times what the pool is worth
MAX_DEBT_RATE_BASE: constant(uint256) = 10**18  # 100% a year with nothing lent
MAX_DEBT_RATE_SLOPE: constant(uint256) = 10 * 10**18  # +1,000% a year with the pool's balance all lent

guardian: public(address)  # may pause and set reduce-only besides the owner; only the owner lifts either
reduce_only: public(HashMap[uint256, bool])  # market => only reductions allowed (the core's flag, set only from here)
CLEARINGHOUSE: public(immutable(IClearinghouse))  # what this contract configures
ORACLE: public(immutable(IOracleRouter))  # every listed asset must be priced by it


@deploy
def __init__(clearinghouse: IClearinghouse):
    ownable.__init__()
    ownable_2step.__init__()
    CLEARINGHOUSE = clearinghouse
    ORACLE = IOracleRouter(staticcall clearinghouse.ORACLE())
    self.guardian = msg.sender


@external
def list_collateral(token: address, weight: uint256, cap: uint256, liquidation_discount: uint256):
    """
    @notice List a collateral token in the next free slot; it needs an OracleRouter feed under
            its own address. Owner only.
    @dev The token's unit (10 ** decimals) is read here, once: `set_collateral` keeps it.
    @param token An ERC-20 with at most 18 decimals; not the zero address, not the settlement
           token and not already listed; at most 7 collaterals besides the settlement token.
    @param weight Haircut weight, WAD in (0, 0.99].
    @param cap Cap on total deposits, token units (not bounded).
    @param liquidation_discount Discount to a liquidator buying it, WAD in [0.001, 1 - weight).
    @custom:security The OracleRouter must price the token now: `price` reverts (rather than
           returning 0) for an unknown, stale, out-of-bounds or halted feed, and so does this.
    """
    ownable._check_owner()
    assert token != empty(address) and token != staticcall CLEARINGHOUSE.SETTLEMENT(), "configurator: bad token"
    assert staticcall CLEARINGHOUSE.collateral_slot(token) == 0, "configurator: already listed"
    assert staticcall CLEARINGHOUSE.collateral_count() + 1 < c.MAX_COLLATERALS, "configurator: too many collaterals"
    assert staticcall ORACLE.price(token) > 0, "configurator: no price"
    decimals: uint8 = staticcall IERC20Detailed(token).decimals()
    assert decimals <= 18, "configurator: bad decimals"
    self._check_collateral(weight, liquidation_discount)
    extcall CLEARINGHOUSE.apply_collateral(token, 10**convert(decimals, uint256), weight, cap, liquidation_discount, True)
    log CollateralSet(token=token, weight=weight, cap=cap, liquidation_discount=liquidation_discount, enabled=True)


@external
def set_collateral(token: address, weight: uint256, cap: uint256, liquidation_discount: uint256, enabled: bool):
    """
    @notice Change a listed collateral's haircut, cap and discount, or stop new deposits of it
            (`enabled = False`; existing balances keep counting). Owner only.
    @param token A listed collateral token (not the settlement token).
    @param weight Haircut weight, WAD in (0, 0.99].
    @param cap Cap on total deposits, token units; below the current total it only stops new
           deposits.
    @param liquidation_discount Discount to a liquidator buying it, WAD in [0.001, 1 - weight).
    @param enabled Whether new deposits are allowed.
    @custom:security The new weight applies at once to every account holding the token: a lower
           one lowers their equity in the same block and can make accounts liquidatable. A
           written-off token (weight 0) is restored only while its feed prices it.
    """
    ownable._check_owner()
    slot: uint256 = staticcall CLEARINGHOUSE.collateral_slot(token)
    assert slot != 0, "configurator: unknown token"
    self._check_collateral(weight, liquidation_discount)
    col: IClearinghouse.Collateral = staticcall CLEARINGHOUSE.collaterals(slot)
    if col.weight == 0:
        # restoring a written-off token: its feed must price it again
        assert staticcall ORACLE.price(token) > 0, "configurator: no price"
    extcall CLEARINGHOUSE.apply_collateral(token, col.unit, weight, cap, liquidation_discount, enabled)
    log CollateralSet(token=token, weight=weight, cap=cap, liquidation_discount=liquidation_discount, enabled=enabled)


@external
def write_off_collateral(token: address):
    """
    @notice Write a listed collateral off: weight 0 and deposits disabled, so every account
            holding it is valued without reading its feed (a halted or stale feed then blocks
            neither margin checks nor liquidations). Owner only.
    @dev The cap and discount are kept. A keeper can then take an underwater account's
         written-off balance without paying (`LiquidationEngine.liquidate_collateral`), which
         lets the rest of its debt settle as bad debt. `set_collateral` with a weight > 0
         restores it once its feed prices it again.
    @param token A listed collateral token.
    @custom:security Lowers the equity of every account holding the token at once: some may
           become liquidatable in the same block, as with any lower weight.
    """
    ownable._check_owner()
    slot: uint256 = staticcall CLEARINGHOUSE.collateral_slot(token)
    assert slot != 0, "configurator: unknown token"
    col: IClearinghouse.Collateral = staticcall CLEARINGHOUSE.collaterals(slot)
    extcall CLEARINGHOUSE.apply_collateral(token, col.unit, 0, col.cap, col.liquidation_discount, False)
    log CollateralSet(token=token, weight=0, cap=col.cap, liquidation_discount=col.liquidation_discount, enabled=False)


@external
def list_market(params: IClearinghouse.MarketParams) -> uint256:
    """
    @notice List a perpetual market as id `market_count + 1`; its asset needs an OracleRouter
            feed. Owner only.
    @dev vol_unit = vol_k * sqrt(liquidation_horizon / year) is computed here (`risk._vol_unit`)
         and stored with the market. Nothing stops two markets on the same asset.
    @param params Checked against their bounds (`_check_market`): base_mmr WAD in [0.001, 0.5];
           tier_size base units in (0, 2^80); tier_mmr WAD <= 0.1; vol_k WAD <= 10;
           liquidation_horizon seconds in [60, 604800]; imr_multiplier WAD in (1, 10] with
           base_mmr * imr_multiplier <= 1 (rounded up); fee WAD <= 0.01; penalty WAD <= 0.1 and
           < (1 + buffer) * base_mmr; keeper_share WAD <= 0.9; skew_scale base units in
           (0, 2^88); oi_cap base units <= skew_scale and <= skew_scale * (1 - keeper_share) *
           min(penalty, full_liquidation_health * base_mmr); fee + oi_cap / skew_scale (rounded
           up) < base_mmr; max_funding_rate WAD per day <= 0.1; and the LiquidationEngine's
           underwater tip rate < base_mmr.
    @return The new market id (1-based, at most 15).
    @custom:security The asset must be priced now: `ORACLE.price` reverts for an unknown, stale,
           out-of-bounds or halted feed, and so does this.
    """
    ownable._check_owner()
    market: uint256 = staticcall CLEARINGHOUSE.market_count() + 1
    assert market < c.MAX_MARKETS, "configurator: too many markets"
    assert staticcall ORACLE.price(params.asset) > 0, "configurator: no price"
    self._check_market(
        params, staticcall self._engine().liquidation_buffer(), staticcall self._engine().full_liquidation_health()
    )
    assert staticcall self._engine().underwater_tip_rate() < params.base_mmr, "configurator: tip above maintenance"
    extcall CLEARINGHOUSE.apply_market(market, params, risk._vol_unit(params.vol_k, params.liquidation_horizon))
    log MarketSet(market=market, params=params)
    return market


@external
def set_market(market: uint256, params: IClearinghouse.MarketParams):
    """
    @notice Change a market's parameters; its asset cannot change. Funding accrues first at
            the old parameters. Owner only.
    @param market A listed market id, in [1, market_count].
    @param params The new parameters: `params.asset` must equal the market's asset; every other
           field is bounded as in `list_market` (buffer, full-liquidation health and underwater
           tip as the LiquidationEngine holds them now).
    @custom:security The new rates apply at once to every open position: raising a maintenance
           rate (base_mmr, tiers, vol_k, horizon) can make accounts liquidatable in the same
           block. The new oi_cap must hold the open interest already on each side, with what
           placed orders hold on it (else "configurator: cap below open interest"): with |skew| <= oi_cap <= skew_scale every
           fill stays positive; a skew_scale lowered under the open interest would let a
           reduction fill at 0 out of the pool (review v2). Reduce-only winds a market down.
           Reverts while the
           asset's price does (stale, out of bounds, halted): the Clearinghouse accrues funding
           at the oracle price before it applies the change.
    """
    ownable._check_owner()
    assert market != 0 and market <= staticcall CLEARINGHOUSE.market_count(), "configurator: unknown market"
    assert params.asset == (staticcall CLEARINGHOUSE.markets(market)).asset, "configurator: asset fixed"
    st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(market)
    # with what placed orders hold on each side: no order Orders placed within the cap can then
    # be refused at its fill for it
    held_longs: uint256 = 0
    held_shorts: uint256 = 0
    held_longs, held_shorts = staticcall IReservePool(staticcall CLEARINGHOUSE.pool()).held(market)
    assert st.long_oi + held_longs <= params.oi_cap and st.short_oi + held_shorts <= params.oi_cap, (
        "configurator: cap below open interest"
    )
    self._check_market(
        params, staticcall self._engine().liquidation_buffer(), staticcall self._engine().full_liquidation_health()
    )
    assert staticcall self._engine().underwater_tip_rate() < params.base_mmr, "configurator: tip above maintenance"
    extcall CLEARINGHOUSE.apply_market(market, params, risk._vol_unit(params.vol_k, params.liquidation_horizon))
    log MarketSet(market=market, params=params)


@external
def set_liquidation_parameters(buffer: uint256, full_liquidation_health: uint256, dust_notional: uint256):
    """
    @notice Set the liquidation buffer b, the deep-underwater health and the dust notional.
            Owner only.
    @dev Re-checks every listed market against the new values: the spiral bound with the new
         buffer and the premium bound on oi_cap with the new full-liquidation health.
    @param buffer WAD in [0, 0.5]; every market must keep penalty < (1 + b) * base_mmr
           ((1 + b) * base_mmr rounded down, as the liquidation formula rounds it).
    @param full_liquidation_health WAD in (0, 1]: below it a liquidation closes the whole
           position in the market liquidated; every market must keep oi_cap <= skew_scale *
           (1 - keeper_share) * min(penalty, full_liquidation_health * base_mmr).
    @param dust_notional WAD USD in [0, 10,000]: a smaller remainder is closed too.
    """
    ownable._check_owner()
    assert buffer <= MAX_BUFFER, "configurator: bad buffer"
    assert full_liquidation_health > 0 and full_liquidation_health <= c.WAD, "configurator: bad full liquidation health"
    assert dust_notional <= MAX_DUST, "configurator: bad dust"
    for m: uint256 in range(1, c.MAX_MARKETS):
        if m > staticcall CLEARINGHOUSE.market_count():
            break
        params: IClearinghouse.MarketParams = staticcall CLEARINGHOUSE.markets(m)
        assert risk._no_spiral(params.penalty, params.base_mmr, buffer), "configurator: liquidation spiral"
        assert self._premium_bounded(params, full_liquidation_health), "configurator: cap above premium bound"
    extcall self._engine().apply_liquidation_parameters(buffer, full_liquidation_health, dust_notional)
    log LiquidationParametersSet(buffer=buffer, full_liquidation_health=full_liquidation_health, dust_notional=dust_notional)


@external
def set_underwater_tip(rate: uint256):
    """
    @notice Set the underwater tip rate: a liquidation that closes a whole position pays its
            caller at least this fraction of the closed notional, at most $1,000. Owner only.
    @dev The LiquidationEngine tops the keeper's share of the penalty up to the tip out of the
         insurance fund (never more than the fund holds), so positions with no equity left to
         pay a penalty still get closed.
    @param rate WAD in [0, 1%], and below every listed market's base maintenance rate (markets
           listed or changed later are checked against it too): to be underwater an account
           loses more than its maintenance margin, so the tip can never pay someone to wreck
           their own account.
    """
    ownable._check_owner()
    assert rate <= MAX_TIP_RATE, "configurator: bad tip"
    for m: uint256 in range(1, c.MAX_MARKETS):
        if m > staticcall CLEARINGHOUSE.market_count():
            break
        assert rate < (staticcall CLEARINGHOUSE.markets(m)).base_mmr, "configurator: tip above maintenance"
    extcall self._engine().apply_underwater_tip(rate)
    log UnderwaterTipSet(rate=rate)


@external
def set_order_parameters(settlement_delay: uint256, expiry: uint256, execution_fee: uint256):
    """
    @notice Set how orders fill (see Orders). Owner only. Orders already placed keep their
            executable time and escrowed fee.
    @param settlement_delay Seconds in [1, 3,600] between an order and the earliest oracle
           round it fills at. At least 1: a round in the order's own block may already be known.
           It should exceed how long a round can be seen pending before it lands.
    @param expiry Seconds in [60, 7 days] an order waits past its executable time, with no
           round to fill at, before anyone may cancel it for its fee. It should exceed the
           feeds' heartbeat, or orders in a quiet market lapse.
    @param execution_fee Settlement token units, at most 1,000 whole tokens: what a trader
           escrows per order and its keeper is paid.
    """
    ownable._check_owner()
    assert settlement_delay >= 1 and settlement_delay <= MAX_SETTLEMENT_DELAY, "configurator: bad settlement delay"
    assert expiry >= MIN_ORDER_EXPIRY and expiry <= MAX_ORDER_EXPIRY, "configurator: bad order expiry"
    unit: uint256 = c.WAD // staticcall CLEARINGHOUSE.SETTLEMENT_TO_WAD()
    assert execution_fee <= MAX_EXECUTION_FEE * unit, "configurator: bad execution fee"
    orders: address = staticcall CLEARINGHOUSE.orders()
    assert orders != empty(address), "configurator: no orders"
    extcall IOrders(orders).apply_order_parameters(settlement_delay, expiry, execution_fee)
    log OrderParametersSet(settlement_delay=settlement_delay, expiry=expiry, execution_fee=execution_fee)


@external
def set_order_bond(rate: uint256):
    """
    @notice Set the bond an order that adds risk escrows besides its fee (see Orders). Owner
            only. Orders already placed keep theirs.
    @param rate WAD share of the notional the order adds at the commit's price, at most 1%:
           refunded to the owner at the fill, forfeited to the insurance fund with the fee when
           the order cannot fill. 0 turns it off.
    """
    ownable._check_owner()
    assert rate <= MAX_ORDER_BOND, "configurator: bad order bond"
    orders: address = staticcall CLEARINGHOUSE.orders()
    assert orders != empty(address), "configurator: no orders"
    extcall IOrders(orders).apply_order_bond(rate)
    log OrderBondSet(rate=rate)


@external
def set_reserve_factor(market: uint256, reserve_factor: uint256):
    """
    @notice Set a market's open-interest reserve factor (GMX v2's reserve factor). Owner only.
            The market's larger side needs capital of its USD value over the factor; summed
            over every market, the need must stay within the pool's value: Orders refuses an
            order that adds risk past it at its commit and LPs cannot withdraw past it
            (LiquidityPool). A side that rises k-fold after opening at the limit of a market alone
            wins at most about (k - 1) * reserve_factor of the pool, a short side at most
            reserve_factor of it: set it from how far the market's price can run (a thin token:
            well below 1). Positions already open stay, and so do orders already placed (checked
            at their commit): to cut ahead of a known risk, set the market reduce-only first
            (placed risk-adding orders are then cancelled at their fill), cut, then lift it.
    @param market A listed market id (`configurator: unknown market` otherwise).
    @param reserve_factor WAD, in [0, 100]: "configurator: bad reserve factor" otherwise. Above
           1 a side may outgrow the pool: for a market whose two sides hedge each other, where
           the pool's exposure is the skew (still bounded by `oi_cap`). 0 turns the reserve off
           for the market: its sides need no capital (the base-unit cap still holds).
    """
    ownable._check_owner()
    assert market != 0 and market <= staticcall CLEARINGHOUSE.market_count(), "configurator: unknown market"
    assert reserve_factor <= MAX_RESERVE_FACTOR, "configurator: bad reserve factor"
    # a listed market means a connected Clearinghouse (apply_market needs its configurator), so the pool is set
    extcall IReservePool(staticcall CLEARINGHOUSE.pool()).apply_reserve_factor(market, reserve_factor)
    log ReserveFactorSet(market=market, reserve_factor=reserve_factor)


@external
def set_debt_parameters(rate_base: uint256, rate_slope: uint256, debt_imr: uint256, ceiling: uint256, liquidation_ltv: uint256):
    """
    @notice Set the terms of the loan a negative settlement balance is. Owner only.
    @dev The Clearinghouse folds the interest so far into its debt index at the old rate first.
    @param rate_base Yearly interest with nothing lent, WAD in [0, 1].
    @param rate_slope Yearly interest added at full utilisation (total debt / what the pool
           could lend: its balance less the pending claims), WAD in [0, 10].
    @param debt_imr Initial margin on a debt, WAD in (0, 1]: after a withdrawal or a fill that
           adds risk, an account may owe at most 1 / (1 + debt_imr) of what it holds (haircut
           collateral, unrealised PnL, pending claim) beyond its positions' initial margin.
    @param ceiling WAD in (0, 1]: while the total debt is above this fraction of what the pool
           could lend, Orders fills no order that adds risk to an account in debt.
    @param liquidation_ltv WAD in (0, 1]: a debt above this fraction of what the account holds
           (its equity plus its debt) puts its collateral up for sale
           (LiquidationEngine.liquidate_collateral). Above the initial limit:
           liquidation_ltv * (1 + debt_imr) > 1, rounded down.
    """
    ownable._check_owner()
    assert rate_base <= MAX_DEBT_RATE_BASE and rate_slope <= MAX_DEBT_RATE_SLOPE, "configurator: bad debt rate"
    assert debt_imr > 0 and debt_imr <= c.WAD, "configurator: bad debt margin"
    assert ceiling > 0 and ceiling <= c.WAD, "configurator: bad debt ceiling"
    assert (
        liquidation_ltv <= c.WAD and risk._mul_down(liquidation_ltv, c.WAD + debt_imr) > c.WAD
    ), "configurator: bad loan to value"
    extcall CLEARINGHOUSE.apply_debt_terms(rate_base, rate_slope, debt_imr, ceiling)
    extcall self._engine().apply_debt_liquidation_ltv(liquidation_ltv)
    log DebtParametersSet(
        rate_base=rate_base, rate_slope=rate_slope, debt_imr=debt_imr, ceiling=ceiling, liquidation_ltv=liquidation_ltv
    )


@external
def set_guardian(guardian: address):
    """
    @notice Set the pause guardian. Owner only.
    @param guardian Who may pause and set reduce-only besides the owner.
    """
    ownable._check_owner()
    self.guardian = guardian
    log IClearinghouse.GuardianSet(guardian=guardian)


@external
def pause():
    """
    @notice Stop new risk in the Clearinghouse: opens, increases and non-settlement deposits.
            Closes, settlement deposits, withdrawals that keep initial margin and liquidations
            continue. Guardian or owner.
    """
    self._check_guardian()
    self._set_paused(True)
    log IClearinghouse.Paused(by=msg.sender)


@external
def unpause():
    """
    @notice Lift a pause. Owner only.
    """
    ownable._check_owner()
    self._set_paused(False)
    log IClearinghouse.Unpaused(by=msg.sender)


@external
def set_reduce_only(market: uint256, reduce_only: bool):
    """
    @notice Allow only reductions in a market: the guardian or owner sets it, only the owner
            lifts it.
    @param market A listed market id (`configurator: unknown market` otherwise).
    @param reduce_only True to allow only reductions, False to lift it.
    """
    if reduce_only:
        self._check_guardian()
    else:
        ownable._check_owner()
    assert market != 0 and market <= staticcall CLEARINGHOUSE.market_count(), "configurator: unknown market"
    self.reduce_only[market] = reduce_only
    extcall CLEARINGHOUSE.apply_emergency(market, self._flags(reduce_only, staticcall CLEARINGHOUSE.paused()))
    log IClearinghouse.ReduceOnlySet(market=market, reduce_only=reduce_only)


def _set_paused(paused: bool):
    # deposits (market 0), then every listed market, each keeping its reduce-only flag
    extcall CLEARINGHOUSE.apply_emergency(0, convert(paused, uint256))
    for m: uint256 in range(1, c.MAX_MARKETS):
        if m > staticcall CLEARINGHOUSE.market_count():
            break
        extcall CLEARINGHOUSE.apply_emergency(m, self._flags(self.reduce_only[m], paused))


@pure
def _flags(reduce_only: bool, paused: bool) -> uint256:
    # the core's market flags: bit 0 reduce-only, bit 1 paused
    return convert(reduce_only, uint256) | (convert(paused, uint256) << 1)


@view
def _check_guardian():
    assert msg.sender == self.guardian or msg.sender == ownable.owner, "configurator: not guardian"


@view
def _engine() -> ILiquidationEngine:
    # the liquidation parameters live in the engine the Clearinghouse trusts
    engine: address = staticcall CLEARINGHOUSE.liquidation_engine()
    assert engine != empty(address), "configurator: no liquidation engine"
    return ILiquidationEngine(engine)


@pure
def _premium_bounded(params: IClearinghouse.MarketParams, full_liquidation_health: uint256) -> bool:
    """
    @dev A partial liquidation fills at the oracle price, so closing x against a skew n moves
         the premium by up to P x n / S without paying it. A partial close happens only above
         full_liquidation_health, where the liquidated side pays at least
         (1 - k) * min(f, full_liquidation_health * base_mmr) of the notional to the insurance
         fund. With n <= oi_cap <= S (1 - k) min(f, h_full * base_mmr) the premium a hedged
         pair could farm never exceeds what it pays. A whole close (below
         full_liquidation_health among others) fills at the premium price, as a trade does.
    """
    effective_penalty: uint256 = min(params.penalty, risk._mul_down(full_liquidation_health, params.base_mmr))
    return params.oi_cap * c.WAD * c.WAD <= params.skew_scale * (c.WAD - params.keeper_share) * effective_penalty


@pure
def _check_collateral(weight: uint256, liquidation_discount: uint256):
    assert weight > 0 and weight <= MAX_WEIGHT, "configurator: bad weight"
    # strictly below the haircut, so a collateral sale always raises more than the haircut value
    assert liquidation_discount >= MIN_DISCOUNT and liquidation_discount < c.WAD - weight, "configurator: bad discount"


@pure
def _check_market(params: IClearinghouse.MarketParams, buffer: uint256, full_liquidation_health: uint256):
    assert params.base_mmr >= MIN_BASE_MMR and params.base_mmr <= MAX_BASE_MMR, "configurator: bad maintenance rate"
    # tier size and skew scale are packed into 80 and 88 bits in the Clearinghouse
    assert params.tier_size > 0 and params.tier_size < 2**80, "configurator: bad tier size"
    assert params.tier_mmr <= MAX_TIER_MMR, "configurator: bad tier rate"
    assert params.vol_k <= MAX_VOL_K, "configurator: bad vol k"
    assert params.liquidation_horizon >= MIN_HORIZON and params.liquidation_horizon <= MAX_HORIZON, "configurator: bad horizon"
    assert params.imr_multiplier > c.WAD and params.imr_multiplier <= MAX_IMR_MULTIPLIER, "configurator: bad initial multiplier"
    assert risk._mul_up(params.base_mmr, params.imr_multiplier) <= c.WAD, "configurator: initial above 100%"
    assert params.fee <= MAX_FEE, "configurator: bad fee"
    assert params.penalty <= MAX_PENALTY, "configurator: bad penalty"
    assert risk._no_spiral(params.penalty, params.base_mmr, buffer), "configurator: liquidation spiral"
    assert params.keeper_share <= MAX_KEEPER_SHARE, "configurator: bad keeper share"
    assert params.skew_scale > 0 and params.skew_scale < 2**88, "configurator: bad skew scale"
    assert params.oi_cap <= params.skew_scale, "configurator: cap above skew scale"
    assert self._premium_bounded(params, full_liquidation_health), "configurator: cap above premium bound"
    # a reduction is never refused, so what it costs (the fee, and at worst the premium at the
    # open-interest cap) must stay below the maintenance it frees: otherwise an owner's own
    # reduction could take an account from initial margin to liquidatable (found by the fuzzer)
    assert (
        params.fee + risk._ceil_div(params.oi_cap * c.WAD, params.skew_scale) < params.base_mmr
    ), "configurator: fee above maintenance"
    assert params.max_funding_rate <= MAX_FUNDING_RATE, "configurator: bad funding rate"
