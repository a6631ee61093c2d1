"""Delayed orders from Python: the one place that places an order and fills it.

On chain a trade takes two steps (contracts/Orders.vy): the trader commits an order and a keeper
fills it at the first oracle round dated at least the settlement delay later. `trade_now` does
both at once for tests and scripted stories on mock feeds: it re-dates the market's latest round
to the fill's block (same round id and answer, so the router's volatility estimate does not
move), which only a MockAggregator allows. The simulator and the bots place orders with
`Orders.commit_order` and fill them at real rounds.
"""

from __future__ import annotations

from typing import Any

from ape.exceptions import ContractLogicError

_HANDLES: dict[str, tuple[Any, Any, Any]] = {}  # clearinghouse address -> (orders, settlement, oracle)
_FEEDS: dict[tuple[str, int], Any] = {}  # (clearinghouse, market) -> the market's mock feed


class OrderRefused(ContractLogicError):
    """An order the Clearinghouse refused at its fill: Orders cancelled it with `reason`, which is
    the revert message the old immediate trade gave (so `ape.reverts(...)` still matches it)."""


def handles(ch: Any) -> tuple[Any, Any, Any]:
    """(Orders, settlement token, OracleRouter) of the protocol around clearinghouse `ch`."""
    from ape import project

    key = str(ch.address)
    if key not in _HANDLES:
        _HANDLES[key] = (
            project.Orders.at(ch.orders()),
            project.MockERC20.at(ch.SETTLEMENT()),
            project.OracleRouter.at(ch.ORACLE()),
        )
    return _HANDLES[key]


def market_feed(ch: Any, market: int) -> Any:
    """The MockAggregator that prices `market`'s asset."""
    from ape import project

    key = (str(ch.address), int(market))
    if key not in _FEEDS:
        _, _, oracle = handles(ch)
        _FEEDS[key] = project.MockAggregator.at(oracle.feeds(ch.markets(market).asset).aggregator)
    return _FEEDS[key]


_NOT_MINTABLE: set[str] = set()  # settlement tokens without an open mint (a real ERC-20)


def _fund_fee(settlement: Any, owner: Any, fee: int) -> None:
    """Mint the fee to `owner` on a mock token, so its wallet ends where it started; a token
    without an open mint pays it out of the wallet."""
    key = str(settlement.address)
    if key in _NOT_MINTABLE:
        return
    try:
        settlement.mint(owner, fee, sender=owner)
    except ContractLogicError:
        _NOT_MINTABLE.add(key)


def redate(feed: Any) -> None:
    """Publish a MockAggregator's latest round again, same id and answer, at the next block's time."""
    from ape import accounts, chain

    round_id = int(feed.latest_round())
    answer = feed.latestRoundData()[1]
    now = chain.pending_timestamp
    feed.updateRoundData(round_id, answer, now, now, sender=accounts[feed.updater()])


def fill_now(ch: Any, account: int, market: int, *, keeper: Any) -> Any:
    """Fill `account`'s placed order in `market` as a keeper would at the next round: move the
    clock past the settlement delay, re-date the market's mock round to now and execute.
    Returns the execution's receipt (filled or cancelled)."""
    from ape import chain

    orders, _, _ = handles(ch)
    # the order's own time, not "now + delay": after a chain.restore the pending block's time can
    # lag the last mined block's, and a round dated before executable_at is not yet its round
    executable_at = int(orders.order(account, market).executable_at)
    chain.pending_timestamp = max(chain.pending_timestamp + int(orders.settlement_delay()), executable_at)
    redate(market_feed(ch, market))
    return orders.execute_order(account, market, sender=keeper)


def bond_of(ch: Any, market: int, size_delta: int, subaccount: int = 0, *, sender: Any) -> int:
    """The bond `Orders.commit_order` would escrow for this order now, settlement token units
    (`risk.order_bond` on the open interest it adds, at the market's current price, over the
    market's reserve factor when the order grows its larger side): 0 for a reduction or with the
    bond off."""
    from marginsim import risk

    orders, _, oracle = handles(ch)
    rate = int(orders.order_bond())
    account = (int(str(sender), 16) << 96) | subaccount
    position = int(ch.positions(account, market).size)
    growth = sum(risk.order_growth(position, size_delta))
    if rate == 0 or growth == 0 or not 0 < market <= int(ch.market_count()):
        return 0
    price = int(oracle.price(ch.markets(market).asset))
    pool, state = pool_of(ch), ch.market_state(market)
    held_longs, held_shorts = (int(v) for v in pool.held(market))
    waiting = orders.order(account, market)
    if int(waiting.executable_at):  # the order this one replaces releases its hold first
        old_longs, old_shorts = risk.order_growth(int(waiting.position), int(waiting.size_delta))
        held_longs, held_shorts = held_longs - old_longs, held_shorts - old_shorts
    held = (held_longs, held_shorts)
    before, after = risk.larger_side_after(int(state.long_oi), int(state.short_oi), held, position, size_delta)
    factor = int(pool.reserve_factor(market)) if after > before else 0
    return risk.order_bond(growth, price, rate, int(ch.SETTLEMENT_TO_WAD()), factor)


def pool_of(ch: Any) -> Any:
    """The LiquidityPool of the protocol around clearinghouse `ch`."""
    from ape import project

    return project.LiquidityPool.at(ch.pool())


def place(ch: Any, market: int, size_delta: int, limit_price: int = 0, subaccount: int = 0, *, sender: Any) -> Any:
    """Commit an order for `sender`'s subaccount, its execution fee minted to `sender` first (on a
    mock settlement token, so its wallet ends where it started; a real token's comes out of the
    wallet) and approved with its bond (`bond_of`: what the wallet lacks of it is minted too; the
    fill refunds the bond to the wallet); returns the commit's receipt. An order that adds risk
    past the pool's open-interest reserve reverts here ("orders: open interest reserve")."""
    orders, settlement, _ = handles(ch)
    fee = int(orders.execution_fee())
    bond = bond_of(ch, market, size_delta, subaccount, sender=sender)
    if bond:
        fee += max(0, bond - int(settlement.balanceOf(sender)))
    if fee:
        _fund_fee(settlement, sender, fee)
    # a chain snapshot may have undone an approval
    if (fee or bond) and int(settlement.allowance(sender, orders)) < fee + bond:
        settlement.approve(orders, 2**256 - 1, sender=sender)
    return orders.commit_order(market, size_delta, limit_price, subaccount, sender=sender)


def trade_now(
    ch: Any, market: int, size_delta: int, limit_price: int = 0, subaccount: int = 0, *, sender: Any, keeper: Any = None
) -> Any:
    """Place an order for `sender`'s subaccount (`place`) and fill it at the current price;
    returns the fill's receipt. The keeper (default: the last test account) is paid the fee.
    Raises OrderRefused with the Clearinghouse's reason when the fill is refused (the order is
    then cancelled on chain), as the one-step trade reverted with it; and the router's reason,
    before anything is sent, when the market has no valid price now."""
    from ape import accounts

    orders, _, oracle = handles(ch)
    # no trade at the current price when the router has none: it reverts with its reason, as the
    # one-step trade did (re-dating the round below would otherwise hide a stale answer)
    if 0 < market <= int(ch.market_count()):
        oracle.price(ch.markets(market).asset)
    place(ch, market, size_delta, limit_price, subaccount, sender=sender)
    owner = int(str(sender), 16)
    receipt = fill_now(ch, (owner << 96) | subaccount, market, keeper=keeper or accounts.test_accounts[-1])
    cancelled = receipt.events.filter(orders.OrderCancelled)
    if cancelled:
        raise OrderRefused(cancelled[0].reason, txn=receipt.transaction)
    return receipt


def _request_and_execute(pool: Any, request: Any, controller: Any, sender: Any, extra: int, keeper: Any) -> Any:
    """Fund and approve the request's fee (and `extra` tokens) from `sender`, place it
    (`request()`), move the clock to its executable time and execute it from `keeper` (default:
    the last test account). A revert anywhere rewinds the chain to before the request, as the
    one-step call reverted, and raises it."""
    from ape import accounts, chain, project

    ch = project.Clearinghouse.at(pool.CLEARINGHOUSE())
    orders, settlement, _ = handles(ch)
    fee = int(orders.execution_fee())
    snapshot = chain.snapshot()
    try:
        if fee:
            _fund_fee(settlement, sender, fee)
        # a chain snapshot may have undone an approval
        if int(settlement.allowance(sender, pool)) < fee + extra:
            settlement.approve(pool, 2**256 - 1, sender=sender)
        request()
        executable_at = int(pool.requests(controller).executable_at)
        if chain.pending_timestamp < executable_at:
            chain.pending_timestamp = executable_at
        return pool.execute_request(controller, sender=keeper or accounts.test_accounts[-1])
    except ContractLogicError:
        chain.restore(snapshot)
        raise


def deposit_now(pool: Any, assets: int, receiver: Any, *, sender: Any, keeper: Any = None) -> Any:
    """Deposit `assets` from `sender` for shares to `receiver`: at once while the pool is
    `instant` (its book idle), else by `request_deposit` executed at its executable time
    (`_request_and_execute`), which mints the smaller of the shares at the request and at the
    execution. Returns the receipt that minted the shares."""
    if pool.instant():
        return pool.deposit(assets, receiver, sender=sender)
    return _request_and_execute(
        pool, lambda: pool.request_deposit(assets, receiver, sender=sender), sender, sender, assets, keeper
    )


def redeem_now(pool: Any, shares: int, receiver: Any, owner: Any, *, sender: Any, keeper: Any = None) -> Any:
    """Redeem `owner`'s `shares` to `receiver`: at once while the pool is `instant` (a `sender`
    other than `owner` spends its allowance), else by `request_redeem` (only the owner may ask:
    "pool: not owner" for any other `sender`; its fee from the owner) executed at its executable
    time, which pays the smaller of what the shares are worth at the request and at the
    execution. Returns the receipt that paid the tokens."""
    if pool.instant():
        return pool.redeem(shares, receiver, owner, sender=sender)
    return _request_and_execute(
        pool, lambda: pool.request_redeem(shares, receiver, owner, sender=sender), owner, sender, 0, keeper
    )


def withdraw_now(pool: Any, assets: int, receiver: Any, owner: Any, *, sender: Any, keeper: Any = None) -> Any:
    """`withdraw(assets)` while the pool is `instant`: exactly `assets`. Else `redeem_now` of the
    shares `previewWithdraw(assets)` would burn now (rounded up): the request pays what they are
    worth (the worse of its block and the execution's), about `assets` but not exactly (more while
    the value drifts up, less while it drifts down): read the paid amount from the receipt's
    `Withdraw` event."""
    if pool.instant():
        return pool.withdraw(assets, receiver, owner, sender=sender)
    return redeem_now(pool, int(pool.previewWithdraw(assets)), receiver, owner, sender=sender, keeper=keeper)
