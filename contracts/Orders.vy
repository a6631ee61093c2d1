# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Orders
@notice Two-step trading: a trader commits an order, a keeper fills it at the first oracle
        round dated at least `settlement_delay` seconds after the commit. That price did not
        exist when the order was placed, so a round seen pending in the mempool (or at its
        source) cannot be traded ahead of: the order placed before it fills after it.
        Liquidations do not come through here; they stay immediate (LiquidationEngine).
@dev Filling is permissionless and paid: the trader escrows `execution_fee` settlement tokens
     at commit and the keeper who fills the order is paid them. An order that does not fill at
     its round forfeits them to the insurance fund (so waiting to cancel never pays a keeper
     more than filling, and a trader who makes its own fill fail pays for it); an order whose
     round never came is refunded to its owner at expiry.
     - The bond: an order that adds risk also escrows `order_bond` (0.05% by default) of the
       notional it adds, at the current price (of the pool capacity it holds, notional over the
       reserve factor, where that factor is below 1 and the order grows the larger side). Its fill refunds it to the owner; it is forfeited
       with the fee whenever the fee is. The open interest such an order holds in the pool
       (below) is then priced by the notional: an order made never to fill (a limit it cannot
       meet) pays the bond at each round it holds the pool's capacity, not only the fee.
     - The fill: `OracleRouter.round_price(asset, executable_at)` gives the price of the first
       round dated at or after `executable_at` while it is the newest round; the order is then
       filled by `Clearinghouse.fill_order` at that price plus the skew premium, exactly as a
       trade was (fee, margin, caps, pause and reduce-only all checked there).
     - A fill the Clearinghouse refuses with a reason (price limit, margin, open-interest cap,
       pause, or any price the margin check cannot read) cancels the order: a refusal by
       governance's switches thrown after the commit (paused, reduce only; no order that adds
       risk is placed under them) refunds its fee and bond to the owner, any other forfeits
       them. So does a keeper
       who comes after a newer round has replaced the first one ("orders: round passed"), and
       a position that changed since the order (a liquidation in between: "orders: position
       changed", so a close never opens the other side). The order can never fill at a price
       chosen after the fact. A refusal without a reason (out of gas) reverts the whole call,
       so a keeper cannot starve the fill of gas to cancel an order it should fill.
     - Nobody, the trader included, can cancel an order while it can still fill: only once
       `expiry` seconds have passed after `executable_at` with no round at all (refunded), or
       once its round has passed (forfeited). A trader who could withdraw an order on seeing
       the next round coming would own a free option on it. While an account has an order open
       the Clearinghouse refuses its withdrawals, so it cannot pull the margin a fill needs.
     - What is left: an owner who fills its own order chooses whether to fill while the
       order's round is the newest, for the fee, when no other keeper fills first. Every
       keeper is paid to fill at once.
     - The open-interest reserve (GMX v2's reserve factor, pool-wide): an order that adds risk
       is refused at commit ("orders: open interest reserve") when, with it, the capital the
       markets' larger sides need (`LiquidityPool.reserve`: each side's USD value over its
       market's reserve factor, summed over every market) would exceed the pool's value. From
       its commit until it fills or is cancelled the order holds the open interest it adds in
       the pool (`LiquidityPool.held`), which counts it in the need: LP withdrawals stop short
       of it and the fill does not look at the reserve again, so no LP flow made once the
       order's round is public decides whether it fills. What open positions can win against
       the pool is tied to the pool's size in USD, not only to the base-unit caps.
     One order per account and market. Parameters come from the Configurator.
"""

from ethereum.ercs import IERC20

from .interfaces import IClearinghouse
from .interfaces import IOracleRouter

import constants as c
import risk
import vault


interface IMarginLens:
    def CLEARINGHOUSE() -> address: view
    def commit_margin(
        account: uint256, markets: DynArray[uint256, c.MAX_MARKETS], size_deltas: DynArray[int256, c.MAX_MARKETS]
    ) -> (int256, uint256): view


interface IEmergencyFlags:
    def reduce_only(market: uint256) -> bool: view


interface IReservePool:
    def reserve(market: uint256, larger_side: uint256) -> (int256, uint256): view
    def reserve_factor(market: uint256) -> uint256: view
    def held(market: uint256) -> (uint256, uint256): view
    def apply_hold(market: uint256, longs: uint256, shorts: uint256, add: bool): nonpayable


struct Order:
    size_delta: int256  # base units to buy (> 0) or sell (< 0)
    limit_price: uint256  # worst acceptable fill, WAD; 0 for none
    executable_at: uint256  # the fill uses the first round dated at or after this time
    fee: uint256  # escrowed execution fee, settlement token units
    position: int256  # the account's position in the market when the order was placed


event OrderCommitted:
    account: indexed(uint256)
    market: indexed(uint256)
    size_delta: int256
    limit_price: uint256
    executable_at: uint256
    fee: uint256
    bond: uint256


event OrderFilled:
    account: indexed(uint256)
    market: indexed(uint256)
    size_delta: int256
    fill_price: uint256
    keeper: indexed(address)
    fee: uint256
    bond: uint256  # refunded to the owner


event OrderCancelled:
    account: indexed(uint256)
    market: indexed(uint256)
    size_delta: int256
    by: indexed(address)
    fee: uint256
    bond: uint256
    fee_to: address  # the owner (refund), or the Clearinghouse (the insurance fund): the fee and the bond
    reason: String[64]


MASK_40: constant(uint256) = 2**40 - 1
MASK_128: constant(uint256) = 2**128 - 1
NO_ROUND: constant(uint256) = 0  # _round_state: no round at or after executable_at yet (or no price)
FILLABLE: constant(uint256) = 1  # the first such round is the newest: the order can fill
PASSED: constant(uint256) = 2  # a newer round replaced it: the order can never fill
ERROR_SELECTOR: constant(bytes4) = 0x08c379a0  # Error(string): every reason the Clearinghouse gives

CLEARINGHOUSE: public(immutable(IClearinghouse))  # fills every order; trusts only this contract to
ORACLE: public(immutable(IOracleRouter))  # the Clearinghouse's price source
LENS: public(immutable(IMarginLens))  # the margin what-if an order is checked with at its commit
SETTLEMENT: public(immutable(IERC20))  # the fee's token
SETTLEMENT_UNIT: public(immutable(uint256))  # 10 ** settlement decimals
SETTLEMENT_TO_WAD: immutable(uint256)  # 10 ** (18 - settlement decimals)

# account => market => [size_delta (int128, two's complement) | limit_price << 128,
#                       executable_at (40 bits) | fee << 40 (88 bits) | position at commit
#                       << 128 (int128)]; the second word is 0 for no order
_orders: HashMap[uint256, HashMap[uint256, uint256[2]]]
open_orders: public(HashMap[uint256, uint256])  # account => its orders not yet filled or cancelled
_assets: HashMap[uint256, address]  # market => its oracle asset, read once from the Clearinghouse
settlement_delay: public(uint256)  # seconds between a commit and the earliest round it fills at
expiry: public(uint256)  # seconds after executable_at before anyone may cancel an unfilled order
execution_fee: public(uint256)  # settlement token units a trader escrows per order, paid to its keeper
order_bond: public(uint256)  # WAD share of the notional an order that adds risk escrows besides the fee
bonds: public(HashMap[uint256, HashMap[uint256, uint256]])  # account => market => its order's bond, settlement units


@deploy
def __init__(clearinghouse: IClearinghouse, lens: IMarginLens):
    assert staticcall lens.CLEARINGHOUSE() == clearinghouse.address, "orders: lens of another clearinghouse"
    CLEARINGHOUSE = clearinghouse
    LENS = lens
    ORACLE = IOracleRouter(staticcall clearinghouse.ORACLE())
    SETTLEMENT = IERC20(staticcall clearinghouse.SETTLEMENT())
    SETTLEMENT_TO_WAD = staticcall clearinghouse.SETTLEMENT_TO_WAD()
    SETTLEMENT_UNIT = 10**18 // SETTLEMENT_TO_WAD
    # forfeited fees go to the insurance fund through the Clearinghouse's fund_insurance
    assert extcall SETTLEMENT.approve(clearinghouse.address, max_value(uint256), default_return_value=True)
    # the Configurator's defaults, within its bounds: a minute, a day, 2 tokens ($2), 0.05%
    self.settlement_delay = 60
    self.expiry = 86_400
    self.execution_fee = 2 * SETTLEMENT_UNIT
    self.order_bond = 5 * 10**14


@external
def commit_order(market: uint256, size_delta: int256, limit_price: uint256, subaccount: uint96):
    """
    @notice Place an order for one of the caller's accounts: it fills at the first oracle round
            dated `settlement_delay` or more seconds from now, plus the skew premium, if the
            account then meets the trade's checks. Escrows `execution_fee` settlement tokens
            (approved to this contract) for the keeper who fills it and, for an order that adds
            risk, a bond of `order_bond` of the notional it adds at the current price: refunded
            at the fill, forfeited with the fee when the order cannot fill.
    @dev An order that adds risk reverts, escrowing nothing: "orders: paused" / "orders:
         reduce only" under those switches (its fill would be refused and refunded: a free hold
         of the pool); "orders: debt ceiling" when the account is in debt while the debts are
         above the ceiling; "orders: insufficient margin" below initial margin with its open
         orders filled; "orders: open interest cap" when the side it grows, with every placed
         order on it filled, would pass the market's `oi_cap` (so another's fill can never make
         this one's fail on the cap); "orders: open interest reserve" when it would take the
         markets' need past the pool's value (the price errors of any market's feed the pool
         must read for it revert too). The checks that read the pool read it as it is at the
         commit, so no LP flow after the order's round decides its fill.
         An account has at most one order per market. One that can no longer fill is replaced:
         if its round passed its fee and bond go to the insurance fund, if no round came by
         its expiry they are refunded to the caller, its owner.
    @param market Market id.
    @param size_delta Base units to buy (> 0) or sell (< 0).
    @param limit_price Worst acceptable fill, WAD (a buy fills at or below it, a sell at or
           above it); 0 for none.
    @param subaccount Which of the caller's accounts.
    """
    assert size_delta != 0, "orders: zero size"
    assert abs(size_delta) <= convert(MASK_128 >> 1, int256), "orders: size too large"
    assert limit_price <= MASK_128, "orders: limit too large"
    asset: address = self._asset(market)
    account: uint256 = (convert(msg.sender, uint256) << 96) | convert(subaccount, uint256)
    refund: uint256 = 0
    old: Order = self._load(account, market)
    if old.executable_at != 0:
        refund = self._release(account, market, old, asset, "orders: order pending")
    self.open_orders[account] += 1
    fee: uint256 = self.execution_fee
    executable_at: uint256 = block.timestamp + self.settlement_delay
    position: int256 = (staticcall CLEARINGHOUSE.positions(account, market)).size
    self._orders[account][market] = [
        vault._to_int128(size_delta) | (limit_price << 128),
        executable_at | (fee << 40) | (vault._to_int128(position) << 128),
    ]
    longs: uint256 = 0
    shorts: uint256 = 0
    longs, shorts = self._growth(position, size_delta)
    bond: uint256 = 0
    if longs != 0 or shorts != 0:  # it adds risk (a pure reduction is never refused and holds nothing)
        # governance's switches: a fill they refuse is refunded, so no order may be placed under them
        assert not staticcall CLEARINGHOUSE.paused(), "orders: paused"
        assert not staticcall IEmergencyFlags(staticcall CLEARINGHOUSE.configurator()).reduce_only(market), "orders: reduce only"
        assert not self._over_debt_ceiling(account), "orders: debt ceiling"
        assert self._margin_for_orders(account, market, position, size_delta), "orders: insufficient margin"
        bond = self._bond(asset, longs + shorts, self._hold(market, longs, shorts))
        if bond != 0:
            self.bonds[account][market] = bond
    escrow: uint256 = fee + bond
    if escrow > refund:
        self._pull(escrow - refund)
    elif refund > escrow:
        self._push(msg.sender, refund - escrow)
    log OrderCommitted(
        account=account,
        market=market,
        size_delta=size_delta,
        limit_price=limit_price,
        executable_at=executable_at,
        fee=fee,
        bond=bond,
    )


@external
def execute_order(account: uint256, market: uint256) -> bool:
    """
    @notice Permissionless: fill `account`'s order in `market` at the first oracle round dated
            at or after its `executable_at` and take its escrowed fee (its bond goes back to its
            owner), or cancel it when it cannot fill (its fee and bond then go to the insurance
            fund).
    @dev Reverts "orders: no order", or "oracle: no round yet" (and the router's other price
         errors) while there is no round to fill at; the order then stays. Cancels with
         "orders: round passed" once a newer round replaced the first, "orders: position
         changed" when the account's position moved since the order (a liquidation), or the
         Clearinghouse's reason when it refuses the fill; a refusal without a reason (out of
         gas) reverts. The fee and bond are refunded to the owner when the reason is one of
         governance's switches thrown after the commit ("clearinghouse: paused",
         "clearinghouse: reduce only"), and forfeited otherwise. ("clearinghouse: open interest
         cap" cannot come: the commit and the Configurator both count the placed orders.)
    @param account The account id (owner << 96 | subaccount).
    @param market Market id.
    @return True when filled, False when cancelled.
    """
    order: Order = self._load(account, market)
    assert order.executable_at != 0, "orders: no order"
    bond: uint256 = self._delete(account, market, order)
    price: uint256 = staticcall ORACLE.round_price(self._assets[market], order.executable_at)
    reason: String[64] = "orders: round passed"
    if price != 0:
        reason = "orders: position changed"
        if (staticcall CLEARINGHOUSE.positions(account, market)).size == order.position:
            ok: bool = False
            data: Bytes[256] = b""
            ok, data = raw_call(
                CLEARINGHOUSE.address,
                abi_encode(
                    account,
                    market,
                    order.size_delta,
                    order.limit_price,
                    price,
                    method_id=method_id("fill_order(uint256,uint256,int256,uint256,uint256)"),
                ),
                max_outsize=256,
                revert_on_failure=False,
            )
            if ok:
                log OrderFilled(
                    account=account,
                    market=market,
                    size_delta=order.size_delta,
                    fill_price=abi_decode(data, uint256),
                    keeper=msg.sender,
                    fee=order.fee,
                    bond=bond,
                )
                self._push(msg.sender, order.fee)
                self._push(convert(account >> 96, address), bond)
                return True
            # only a refusal with a reason cancels: no reason means out of gas (or worse)
            if len(data) < 68 or convert(slice(data, 0, 4), bytes4) != ERROR_SELECTOR:
                raw_revert(data)
            reason = abi_decode(slice(data, 4, len(data) - 4), String[64])
            # refused by governance's switches, not by anything the owner did: refunded
            h: bytes32 = keccak256(reason)
            if h == keccak256("clearinghouse: paused") or h == keccak256("clearinghouse: reduce only"):
                self._push(convert(account >> 96, address), self._refund(account, market, order, bond, reason))
                return False
    self._forfeit(account, market, order, bond, reason)
    return False


@external
def cancel_order(account: uint256, market: uint256):
    """
    @notice Anyone, for an order that can no longer fill: once its round has passed (its fee
            and bond go to the insurance fund), or once `expiry` seconds have passed after its
            `executable_at` with no round to fill at (they are refunded to its owner).
    @param account The account id.
    @param market Market id.
    """
    order: Order = self._load(account, market)
    assert order.executable_at != 0, "orders: no order"
    self._push(
        convert(account >> 96, address), self._release(account, market, order, self._assets[market], "orders: not expired")
    )


@external
def apply_order_parameters(settlement_delay: uint256, expiry: uint256, execution_fee: uint256):
    """
    @notice Configurator only (which checks the bounds): set the delay, the expiry and the fee.
            Orders already placed keep their `executable_at` and their escrowed fee; the expiry
            applies to them as set.
    @param settlement_delay Seconds, in [1, 3,600].
    @param expiry Seconds, in [60, 7 days].
    @param execution_fee Settlement token units, at most 1,000 whole tokens.
    """
    assert msg.sender == staticcall CLEARINGHOUSE.configurator(), "orders: not configurator"
    self.settlement_delay = settlement_delay
    self.expiry = expiry
    self.execution_fee = execution_fee


@external
def apply_order_bond(rate: uint256):
    """
    @notice Configurator only (which checks the bound): set the bond an order that adds risk
            escrows, a share of the notional it adds. Orders already placed keep theirs.
    @param rate WAD, at most 1%.
    """
    assert msg.sender == staticcall CLEARINGHOUSE.configurator(), "orders: not configurator"
    self.order_bond = rate


@view
@external
def order(account: uint256, market: uint256) -> Order:
    """
    @notice The account's open order in `market`; all zero when there is none.
    @param account The account id.
    @param market Market id.
    @return (size_delta, limit_price, executable_at, fee, position at commit).
    """
    return self._load(account, market)


def _release(account: uint256, market: uint256, order: Order, asset: address, still_live: String[64]) -> uint256:
    """
    @dev Remove an order that can no longer fill, or revert `still_live`: a passed round
         forfeits its fee and bond (returns 0); no round by its expiry refunds them (returns
         their sum, which the caller pays to the owner).
    """
    state: uint256 = self._round_state(asset, order.executable_at)
    bond: uint256 = self._delete(account, market, order)  # reverted with the call while it can still fill
    if state == PASSED:
        self._forfeit(account, market, order, bond, "orders: round passed")
        return 0
    assert state == NO_ROUND and block.timestamp >= order.executable_at + self.expiry, still_live
    return self._refund(account, market, order, bond, "orders: expired")


def _refund(account: uint256, market: uint256, order: Order, bond: uint256, reason: String[64]) -> uint256:
    """
    @dev Log the cancellation of an order (deleted) whose fee and bond go back to its owner;
         returns their sum, which the caller pays.
    """
    log OrderCancelled(
        account=account,
        market=market,
        size_delta=order.size_delta,
        by=msg.sender,
        fee=order.fee,
        bond=bond,
        fee_to=convert(account >> 96, address),
        reason=reason,
    )
    return order.fee + bond


def _forfeit(account: uint256, market: uint256, order: Order, bond: uint256, reason: String[64]):
    log OrderCancelled(
        account=account,
        market=market,
        size_delta=order.size_delta,
        by=msg.sender,
        fee=order.fee,
        bond=bond,
        fee_to=CLEARINGHOUSE.address,
        reason=reason,
    )
    if order.fee + bond > 0:
        extcall CLEARINGHOUSE.fund_insurance(order.fee + bond)


def _delete(account: uint256, market: uint256, order: Order) -> uint256:
    """
    @dev Remove an order (filled or cancelled) and release the open interest it held; returns
         its bond (cleared).
    """
    self._orders[account][market] = [0, 0]
    bond: uint256 = self.bonds[account][market]
    if bond != 0:
        self.bonds[account][market] = 0
    self.open_orders[account] -= 1
    longs: uint256 = 0
    shorts: uint256 = 0
    longs, shorts = self._growth(order.position, order.size_delta)
    if longs != 0 or shorts != 0:
        extcall IReservePool(staticcall CLEARINGHOUSE.pool()).apply_hold(market, longs, shorts, False)
    return bond


@view
def _bond(asset: address, growth: uint256, reserve_factor: uint256) -> uint256:
    """
    @dev The bond of an order that adds `growth` base units of open interest: `order_bond` of
         its notional at the current price, divided by the market's reserve factor when the order
         grows the larger side and that factor is below 1 (`reserve_factor`, 0 otherwise): the
         pool's capacity it holds, never less than its notional. Rounded up at each step (as a
         trade's fee is), in settlement token units; 0, and no price read, when the bond is off.
    """
    rate: uint256 = self.order_bond
    if rate == 0:
        return 0
    bond: uint256 = risk._mul_up(risk._mul_up(growth, staticcall ORACLE.price(asset)), rate)
    if reserve_factor != 0 and reserve_factor < c.WAD:
        bond = risk._ceil_div(bond * c.WAD, reserve_factor)
    return risk._ceil_div(bond, SETTLEMENT_TO_WAD)


def _hold(market: uint256, longs: uint256, shorts: uint256) -> uint256:
    """
    @dev Hold in the pool the open interest an order adds to each side of its market
         (`_growth`, not both zero), first refusing it when the side it grows (with what placed
         orders hold on it) would pass the market's `oi_cap`, then when the market's larger side
         grows past what the pool's value covers (`LiquidityPool.reserve`).
         Returns the market's reserve factor when the order grows the larger side, else 0.
    """
    pool: IReservePool = IReservePool(staticcall CLEARINGHOUSE.pool())
    st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(market)
    held_longs: uint256 = 0
    held_shorts: uint256 = 0
    held_longs, held_shorts = staticcall pool.held(market)
    longs_after: uint256 = st.long_oi + held_longs + longs
    shorts_after: uint256 = st.short_oi + held_shorts + shorts
    # the side it grows (an order grows one side) stays within the cap with every placed order
    # filled, so no later fill of another's order can push it past (the Configurator keeps a
    # new cap above the open interest with the holds)
    assert (longs_after if longs != 0 else shorts_after) <= (staticcall CLEARINGHOUSE.markets(market)).oi_cap, (
        "orders: open interest cap"
    )
    larger: uint256 = max(longs_after, shorts_after)
    factor: uint256 = 0
    # an order that does not grow the larger side cannot raise the need
    if larger > max(longs_after - longs, shorts_after - shorts):
        factor = staticcall pool.reserve_factor(market)
        if factor != 0:
            value: int256 = 0
            need: uint256 = 0
            value, need = staticcall pool.reserve(market, larger)
            assert convert(need, int256) <= value, "orders: open interest reserve"
    extcall pool.apply_hold(market, longs, shorts, True)
    return factor


@pure
def _growth(position: int256, size_delta: int256) -> (uint256, uint256):
    """
    @dev Base units an order adds to the long side and to the short side of its market when it
         fills on `position` (a reduction adds nothing; a flip adds its new side).
    """
    new: int256 = position + size_delta
    return convert(max(max(new, 0) - max(position, 0), 0), uint256), convert(max(max(-new, 0) - max(-position, 0), 0), uint256)


@view
def _margin_for_orders(account: uint256, market: uint256, position: int256, size_delta: int256) -> bool:
    """
    @dev For an order that adds risk: the account meets initial margin with every order it has
         open that makes a position larger (this one included) filled at the current prices and
         premiums, their fees paid, and every order that makes one smaller left unfilled
         (`MarginLens.commit_margin`: `health_after_trades`, with the debt margin of every open
         loss as if realised, since anyone may realise one before the fill). A hold is backed by the margin its fill would need,
         so capacity in the pool is not held for free, nor twice with one margin; a close or a
         flip that may never fill is not credited. A flip to a size no larger than its position's
         is in no list of its own, so it needs the account to meet initial margin as it stands
         (with its other growing orders): its hold is backed by the margin of the position it
         shrinks. An order is sized against the position it was placed on, as its hold is.
    """
    markets: DynArray[uint256, c.MAX_MARKETS] = []
    deltas: DynArray[int256, c.MAX_MARKETS] = []
    if abs(position + size_delta) > abs(position):
        markets.append(market)
        deltas.append(size_delta)
    if self.open_orders[account] > 1:  # this one is counted: look for the others
        count: uint256 = staticcall CLEARINGHOUSE.market_count()
        for m: uint256 in range(1, c.MAX_MARKETS):
            if m > count:
                break
            if m == market or self._orders[account][m][1] == 0:
                continue
            other: Order = self._load(account, m)
            if abs(other.position + other.size_delta) > abs(other.position):
                markets.append(m)
                deltas.append(other.size_delta)
    equity: int256 = 0
    initial: uint256 = 0
    equity, initial = staticcall LENS.commit_margin(account, markets, deltas)
    return equity >= convert(initial, int256)


@view
def _over_debt_ceiling(account: uint256) -> bool:
    """
    @dev For an order that adds risk: the account is in debt while the debts together are above
         the ceiling (`debt_terms`: a fraction of what the pool could lend, its balance less the
         claims it owes): the pool lends no more to it.
    """
    if staticcall CLEARINGHOUSE.settlement(account) >= 0:
        return False
    lendable: int256 = staticcall CLEARINGHOUSE.pool_balance() - convert(staticcall CLEARINGHOUSE.total_pending(), int256)
    ceiling: uint256 = (staticcall CLEARINGHOUSE.debt_terms())[3]
    return convert(staticcall CLEARINGHOUSE.total_debt() * 10**18, int256) > lendable * convert(ceiling, int256)


@view
def _round_state(asset: address, after: uint256) -> uint256:
    """
    @dev Whether the first round at or after `after` has come: NO_ROUND when the router says
         there is none yet or cannot price it now, PASSED when it was replaced, else FILLABLE.
    """
    ok: bool = False
    data: Bytes[32] = b""
    ok, data = raw_call(
        ORACLE.address,
        abi_encode(asset, after, method_id=method_id("round_price(address,uint256)")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not ok:
        return NO_ROUND
    if abi_decode(data, uint256) == 0:
        return PASSED
    return FILLABLE


@view
def _load(account: uint256, market: uint256) -> Order:
    words: uint256[2] = self._orders[account][market]
    return Order(
        size_delta=vault._from_int128(words[0] & MASK_128),
        limit_price=words[0] >> 128,
        executable_at=words[1] & MASK_40,
        fee=(words[1] >> 40) & (MASK_128 >> 40),
        position=vault._from_int128(words[1] >> 128),
    )


def _asset(market: uint256) -> address:
    asset: address = self._assets[market]
    if asset == empty(address):
        asset = (staticcall CLEARINGHOUSE.markets(market)).asset  # a listed market's asset never changes
        assert asset != empty(address), "orders: unknown market"
        self._assets[market] = asset
    return asset


def _pull(amount: uint256):
    before: uint256 = staticcall SETTLEMENT.balanceOf(self)
    assert extcall SETTLEMENT.transferFrom(msg.sender, self, amount, default_return_value=True), "orders: transfer failed"
    assert staticcall SETTLEMENT.balanceOf(self) == before + amount, "orders: fee on transfer"


def _push(receiver: address, amount: uint256):
    if amount > 0:
        assert extcall SETTLEMENT.transfer(receiver, amount, default_return_value=True), "orders: transfer failed"
