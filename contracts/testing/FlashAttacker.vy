# pragma version ~=0.4.3
"""
@title FlashAttacker
@notice The bZx 2020 attack shape in one transaction: with flash-loaned capital, move a price
        (pump a thin spot pool; publish a round on a feed it controls and sync the router),
        then deposit, place an order on the Clearinghouse's Orders and, when `fill` is set, try
        to have it filled in the same call, then unwind the spot pump. It logs what it saw at
        each step, so a test can show which moves reached the price the protocol uses. A
        trade is an order filled at a round dated a settlement delay after it, so the fill
        cannot happen inside the transaction that moved the prices. Tests only.
@dev The flash loan is modelled by the test minting the settlement coin to this contract
     before the call; the test compares the balance after the call with the balance before.
"""

from ethereum.ercs import IERC20


interface IClearinghouse:
    def deposit(token: address, amount: uint256, subaccount: uint96): nonpayable
    def withdraw(token: address, amount: uint256, subaccount: uint96): nonpayable
    def settlement(account: uint256) -> int256: view


interface IOrders:
    def commit_order(market: uint256, size_delta: int256, limit_price: uint256, subaccount: uint96): nonpayable
    def execute_order(account: uint256, market: uint256) -> bool: nonpayable


interface IOracleRouter:
    def price(asset: address) -> uint256: view
    def sync(asset: address): nonpayable


interface IMockAggregator:
    def updateAnswer(answer: int256): nonpayable
    def updateRoundData(round_id: uint80, answer: int256, timestamp: uint256, started_at: uint256): nonpayable
    def latest_round() -> uint80: view


interface IThinSpotPool:
    def BASE() -> address: view
    def spot_price() -> uint256: view
    def buy_base(quote_in: uint256) -> uint256: nonpayable
    def sell_base(base_in: uint256) -> uint256: nonpayable


struct Plan:
    spot: IThinSpotPool  # a thin DEX to pump (empty: none)
    spot_quote_in: uint256  # settlement units spent pumping it
    feed: IMockAggregator  # a feed this contract may publish on (empty: none)
    feed_answer: int256  # the round it publishes, in the feed's decimals
    feed_updated_at: uint256  # the round's updatedAt (0: now)
    sync: bool  # fold the round into the router before trading
    asset: address  # the market's oracle key
    market: uint256  # market id
    margin: uint256  # settlement units deposited for the position
    size: int256  # base units ordered
    fill: bool  # try to fill the order in this same call (a keeper's execute_order)


event Attack:
    oracle_before: uint256  # OracleRouter.price(asset) before any move, WAD
    oracle_after_move: uint256  # the same, after the spot pump and the published round
    spot_before: uint256  # the thin pool's spot price before the pump, WAD (0: none)
    spot_after_move: uint256  # after the pump
    executable_at: uint256  # the order's earliest round time (Orders.order)


CLEARINGHOUSE: public(immutable(IClearinghouse))
ORDERS: public(immutable(IOrders))
ORACLE: public(immutable(IOracleRouter))
SETTLEMENT: public(immutable(IERC20))
OWNER: public(immutable(address))  # the attacker's wallet: the only caller


@deploy
def __init__(clearinghouse: IClearinghouse, orders: IOrders, oracle: IOracleRouter, settlement: IERC20):
    CLEARINGHOUSE = clearinghouse
    ORDERS = orders
    ORACLE = oracle
    SETTLEMENT = settlement
    OWNER = msg.sender


@external
def attack(plan: Plan):
    """
    @notice Move the prices, open, close and withdraw, all in this one call.
    @dev Reverts with whatever stops it (e.g. "oracle: circuit breaker" from the trade).
    """
    assert msg.sender == OWNER, "attacker: not owner"
    oracle_before: uint256 = staticcall ORACLE.price(plan.asset)

    # 1. the spot move: flash capital buys the thin pool's base
    spot_before: uint256 = 0
    spot_after: uint256 = 0
    base_bought: uint256 = 0
    if plan.spot.address != empty(address):
        spot_before = staticcall plan.spot.spot_price()
        extcall SETTLEMENT.approve(plan.spot.address, plan.spot_quote_in)
        base_bought = extcall plan.spot.buy_base(plan.spot_quote_in)
        spot_after = staticcall plan.spot.spot_price()
    # 2. the oracle move: a round on a feed this contract controls, folded in by sync
    if plan.feed.address != empty(address):
        if plan.feed_updated_at == 0:
            extcall plan.feed.updateAnswer(plan.feed_answer)
        else:
            next_round: uint80 = staticcall plan.feed.latest_round() + 1
            extcall plan.feed.updateRoundData(next_round, plan.feed_answer, plan.feed_updated_at, plan.feed_updated_at)
    if plan.sync:
        extcall ORACLE.sync(plan.asset)
    # 3. the trade (none when size is 0: a publish-only call): deposit and order; a fill now
    #    would need a round dated a settlement delay from now, which this call cannot contain
    oracle_after: uint256 = 0
    if plan.size != 0:
        extcall SETTLEMENT.approve(CLEARINGHOUSE.address, plan.margin)
        extcall CLEARINGHOUSE.deposit(SETTLEMENT.address, plan.margin, 0)
        extcall SETTLEMENT.approve(ORDERS.address, max_value(uint256))
        extcall ORDERS.commit_order(plan.market, plan.size, 0, 0)
        oracle_after = staticcall ORACLE.price(plan.asset)
        if plan.fill:
            extcall ORDERS.execute_order(convert(self, uint256) << 96, plan.market)
    if base_bought > 0:  # 4. unwind the spot pump
        base: IERC20 = IERC20(staticcall plan.spot.BASE())
        extcall base.approve(plan.spot.address, base_bought)
        extcall plan.spot.sell_base(base_bought)

    log Attack(
        oracle_before=oracle_before,
        oracle_after_move=oracle_after,
        spot_before=spot_before,
        spot_after_move=spot_after,
        executable_at=block.timestamp + 60,
    )
