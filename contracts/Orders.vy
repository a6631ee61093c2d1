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
     at commit, and whoever fills the order, or finds it unfillable, is paid them.
     - The fill: `OracleRouter.round_price(asset, executable_at)` gives the price of the first
       round dated at or after `executable_at` while it is the newest round; the order is then
       filled by `Clearinghouse.fill_order` at that price plus the skew premium, exactly as a
       trade was (fee, margin, caps, pause and reduce-only all checked there).
     - A fill the Clearinghouse refuses with a reason (price limit, margin, open-interest cap,
       pause) cancels the order and pays the keeper; so does a keeper who comes after a newer
       round has replaced the first one ("orders: round passed"): the order can never fill at
       a price chosen after the fact. A refusal without a reason (out of gas) reverts the whole
       call, so a keeper cannot starve the fill of gas to cancel an order it should fill.
     - Nobody, the trader included, can cancel an order before it has had its chance: only
       once `expiry` seconds have passed after `executable_at` (when no round came at all), and
       the escrowed fee then goes to whoever cancels. A trader who could withdraw an order on
       seeing the next round coming would own a free option on it.
     One order per account and market. Parameters come from the Configurator.
"""

from ethereum.ercs import IERC20

from .interfaces import IClearinghouse
from .interfaces import IOracleRouter


struct Order:
    size_delta: int256  # base units to buy (> 0) or sell (< 0)
    limit_price: uint256  # worst acceptable fill, WAD; 0 for none
    executable_at: uint256  # the fill uses the first round dated at or after this time
    fee: uint256  # escrowed execution fee, settlement token units


event OrderCommitted:
    account: indexed(uint256)
    market: indexed(uint256)
    size_delta: int256
    limit_price: uint256
    executable_at: uint256
    fee: uint256


event OrderFilled:
    account: indexed(uint256)
    market: indexed(uint256)
    size_delta: int256
    fill_price: uint256
    keeper: indexed(address)
    fee: uint256


event OrderCancelled:
    account: indexed(uint256)
    market: indexed(uint256)
    size_delta: int256
    by: indexed(address)
    fee: uint256
    reason: String[64]


MASK_64: constant(uint256) = 2**64 - 1
MASK_128: constant(uint256) = 2**128 - 1
ERROR_SELECTOR: constant(bytes4) = 0x08c379a0  # Error(string): every reason the Clearinghouse gives

CLEARINGHOUSE: public(immutable(IClearinghouse))  # fills every order; trusts only this contract to
ORACLE: public(immutable(IOracleRouter))  # the Clearinghouse's price source
SETTLEMENT: public(immutable(IERC20))  # the fee's token
SETTLEMENT_UNIT: public(immutable(uint256))  # 10 ** settlement decimals

# account => market => [size_delta (int128, two's complement) | limit_price << 128,
#                       executable_at | fee << 64]; the second word is 0 for no order
_orders: HashMap[uint256, HashMap[uint256, uint256[2]]]
_assets: HashMap[uint256, address]  # market => its oracle asset, read once from the Clearinghouse
settlement_delay: public(uint256)  # seconds between a commit and the earliest round it fills at
expiry: public(uint256)  # seconds after executable_at before anyone may cancel an unfilled order
execution_fee: public(uint256)  # settlement token units a trader escrows per order, paid to its keeper


@deploy
def __init__(clearinghouse: IClearinghouse):
    CLEARINGHOUSE = clearinghouse
    ORACLE = IOracleRouter(staticcall clearinghouse.ORACLE())
    SETTLEMENT = IERC20(staticcall clearinghouse.SETTLEMENT())
    SETTLEMENT_UNIT = 10**18 // staticcall clearinghouse.SETTLEMENT_TO_WAD()
    # the Configurator's defaults, within its bounds: a minute, a day, 2 tokens ($2)
    self.settlement_delay = 60
    self.expiry = 86_400
    self.execution_fee = 2 * SETTLEMENT_UNIT


@external
def commit_order(market: uint256, size_delta: int256, limit_price: uint256, subaccount: uint96):
    """
    @notice Place an order for one of the caller's accounts: it fills at the first oracle round
            dated `settlement_delay` or more seconds from now, plus the skew premium, if the
            account then meets the trade's checks. Escrows `execution_fee` settlement tokens
            (approved to this contract) for the keeper who fills it.
    @dev An account has at most one order per market; an expired one is replaced (its fee is
         refunded to the caller, its owner).
    @param market Market id.
    @param size_delta Base units to buy (> 0) or sell (< 0).
    @param limit_price Worst acceptable fill, WAD (a buy fills at or below it, a sell at or
           above it); 0 for none.
    @param subaccount Which of the caller's accounts.
    """
    assert size_delta != 0, "orders: zero size"
    assert abs(size_delta) <= convert(MASK_128 >> 1, int256), "orders: size too large"
    assert limit_price <= MASK_128, "orders: limit too large"
    self._asset(market)
    account: uint256 = (convert(msg.sender, uint256) << 96) | convert(subaccount, uint256)
    refund: uint256 = 0
    old: uint256 = self._orders[account][market][1]
    if old != 0:
        assert block.timestamp >= (old & MASK_64) + self.expiry, "orders: order pending"
        refund = old >> 64
        log OrderCancelled(
            account=account,
            market=market,
            size_delta=self._size_of(self._orders[account][market][0]),
            by=msg.sender,
            fee=refund,
            reason="orders: expired",
        )
    fee: uint256 = self.execution_fee
    executable_at: uint256 = block.timestamp + self.settlement_delay
    size_bits: int256 = size_delta
    if size_delta < 0:
        size_bits += 2**128  # two's complement in 128 bits
    self._orders[account][market] = [convert(size_bits, uint256) | (limit_price << 128), executable_at | (fee << 64)]
    if fee > refund:
        self._pull(fee - refund)
    elif refund > fee:
        self._push(msg.sender, refund - fee)
    log OrderCommitted(
        account=account, market=market, size_delta=size_delta, limit_price=limit_price, executable_at=executable_at, fee=fee
    )


@external
def execute_order(account: uint256, market: uint256) -> bool:
    """
    @notice Permissionless: fill `account`'s order in `market` at the first oracle round dated
            at or after its `executable_at`, or cancel it when it cannot fill; either way the
            caller is paid the order's escrowed fee.
    @dev Reverts "orders: no order", or "oracle: no round yet" (and the router's other price
         errors) while there is no round to fill at; the order then stays. A fill the
         Clearinghouse refuses with a reason cancels the order with that reason; one refused
         without a reason (out of gas) reverts.
    @param account The account id (owner << 96 | subaccount).
    @param market Market id.
    @return True when filled, False when cancelled.
    """
    order: Order = self._load(account, market)
    assert order.executable_at != 0, "orders: no order"
    self._orders[account][market] = [0, 0]
    price: uint256 = staticcall ORACLE.round_price(self._assets[market], order.executable_at)
    filled: bool = False
    reason: String[64] = "orders: round passed"
    if price != 0:
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
            filled = True
            log OrderFilled(
                account=account,
                market=market,
                size_delta=order.size_delta,
                fill_price=abi_decode(data, uint256),
                keeper=msg.sender,
                fee=order.fee,
            )
        else:
            # only a refusal with a reason cancels: no reason means out of gas (or worse)
            if len(data) < 68 or convert(slice(data, 0, 4), bytes4) != ERROR_SELECTOR:
                raw_revert(data)
            reason = abi_decode(slice(data, 4, len(data) - 4), String[64])
    if not filled:
        log OrderCancelled(
            account=account, market=market, size_delta=order.size_delta, by=msg.sender, fee=order.fee, reason=reason
        )
    self._push(msg.sender, order.fee)
    return filled


@external
def cancel_order(account: uint256, market: uint256):
    """
    @notice Anyone, once an order has waited `expiry` seconds past its `executable_at` without
            a round to fill at: remove it and take its escrowed fee (the owner gets its own fee
            back by cancelling first, or by committing a new order).
    @param account The account id.
    @param market Market id.
    """
    order: Order = self._load(account, market)
    assert order.executable_at != 0, "orders: no order"
    assert block.timestamp >= order.executable_at + self.expiry, "orders: not expired"
    self._orders[account][market] = [0, 0]
    log OrderCancelled(
        account=account, market=market, size_delta=order.size_delta, by=msg.sender, fee=order.fee, reason="orders: expired"
    )
    self._push(msg.sender, order.fee)


@external
def apply_order_parameters(settlement_delay: uint256, expiry: uint256, execution_fee: uint256):
    """
    @notice Configurator only (which checks the bounds): set the delay, the expiry and the fee.
            Orders already placed keep their `executable_at` and their escrowed fee.
    @param settlement_delay Seconds, in [1, 3,600].
    @param expiry Seconds, in [60, 7 days].
    @param execution_fee Settlement token units, at most 1,000 whole tokens.
    """
    assert msg.sender == staticcall CLEARINGHOUSE.configurator(), "orders: not configurator"
    self.settlement_delay = settlement_delay
    self.expiry = expiry
    self.execution_fee = execution_fee


@view
@external
def order(account: uint256, market: uint256) -> Order:
    """
    @notice The account's open order in `market`; all zero when there is none.
    @param account The account id.
    @param market Market id.
    @return (size_delta, limit_price, executable_at, fee).
    """
    return self._load(account, market)


@view
def _load(account: uint256, market: uint256) -> Order:
    words: uint256[2] = self._orders[account][market]
    return Order(
        size_delta=self._size_of(words[0]),
        limit_price=words[0] >> 128,
        executable_at=words[1] & MASK_64,
        fee=words[1] >> 64,
    )


@pure
def _size_of(word: uint256) -> int256:
    size: int256 = convert(word & MASK_128, int256)
    if size >= 2**127:
        size -= 2**128
    return size


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
