"""Initial margin at the commit (issue 9, item 5's hold): an order that adds risk is refused
"orders: insufficient margin" unless the account meets initial margin with every order it has
open that makes a position larger (|position + size_delta| > |position|, this one included),
all filled at the current prices and premiums, their fees paid, and every close or smaller flip
left unfilled (`MarginLens.health_after_trades`, mirrored by `marginsim.risk.after_trade`); a
smaller flip with nothing else growing needs the account's initial margin as it stands. So a
hold on the pool's capacity is backed by the margin its fill needs, and one margin cannot back
orders in several markets. A reduction needs no margin. The fill still checks margin at its
own price (the Clearinghouse), which these tests also show."""

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, market_feed, place, redate, trade_now
from marginsim.protocol import account_id
from tests.conftest import USDC, WAD

S2W = 10**12


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, ch, usdc, seeded_pool, make_account, trader, other_trader, attacker, keeper):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once."""


def after(protocol, account: int, orders: list[tuple[int, int]]) -> tuple[int, int]:
    """(equity, initial) after `orders` as the lens computes them."""
    equity, initial = protocol.lens.commit_margin(account, [m for m, _ in orders], [d for _, d in orders])
    return int(equity), int(initial)


def largest_order(protocol, account: int, market: int, others: list[tuple[int, int]] = ()) -> int:
    """The largest long (base units) the account can commit in `market` with `others` open,
    by bisection on the lens: equity >= initial with it, not with one base unit more."""

    def fits(size):
        equity, initial = after(protocol, account, [(market, size), *others])
        return equity >= initial

    low, high = 0, 10**30
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def test_commit__no_margin__reverts_and_escrows_nothing(protocol, ch, usdc, attacker, eth_market):
    orders, pool = protocol.orders, protocol.pool
    account = account_id(attacker)
    usdc.mint(attacker, 10 * USDC, sender=attacker)
    usdc.approve(orders, 10 * USDC, sender=attacker)
    with ape.reverts("orders: insufficient margin"):
        orders.commit_order(eth_market, 1_000 * WAD, 0, 0, sender=attacker)
    with ape.reverts("orders: insufficient margin"):
        orders.commit_order(eth_market, 1, 0, 0, sender=attacker)  # one base unit: its fee alone
    assert int(orders.open_orders(account)) == 0
    assert tuple(int(v) for v in pool.held(eth_market)) == (0, 0)
    assert int(usdc.balanceOf(attacker)) == 10 * USDC


def test_commit__at_the_initial_margin_limit__one_base_unit_more_reverts(protocol, ch, make_account, trader, eth_market):
    account = make_account(trader, 10_000)
    size = largest_order(protocol, account, eth_market)
    assert 40 * WAD < size < 500 * WAD  # $10k at the initial rate: a long of tens of ETH
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth_market, size + 1, sender=trader)
    place(ch, eth_market, size, sender=trader)
    assert int(protocol.orders.open_orders(account)) == 1
    assert tuple(int(v) for v in protocol.pool.held(eth_market)) == (size, 0)


def test_commit__one_margin_does_not_back_two_markets(protocol, ch, make_account, trader, eth_market, btc_market):
    account = make_account(trader, 10_000)
    eth_size = largest_order(protocol, account, eth_market) * 3 // 4
    place(ch, eth_market, eth_size, sender=trader)
    # alone, a BTC long as large as the whole margin allows; with the ETH order open, far less
    alone = largest_order(protocol, account, btc_market)
    left = largest_order(protocol, account, btc_market, [(eth_market, eth_size)])
    assert left < alone // 3
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc_market, left + 1, sender=trader)
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc_market, alone, sender=trader)
    place(ch, btc_market, left, sender=trader)
    assert int(protocol.orders.open_orders(account)) == 2


def test_commit__replacing_its_own_order_counts_only_the_new_one(protocol, ch, make_account, trader, eth_market, set_price):
    """A replaced order (its round passed) is not counted with its replacement."""
    account = make_account(trader, 10_000)
    size = largest_order(protocol, account, eth_market)
    place(ch, eth_market, size, sender=trader)
    ape.chain.pending_timestamp += int(protocol.orders.settlement_delay())
    redate(market_feed(ch, eth_market))  # the order's round ...
    set_price("WETH", 2_000)  # ... passed by a newer one, unfilled
    place(ch, eth_market, size, sender=trader)  # the passed one is forfeited and replaced
    assert int(protocol.orders.open_orders(account)) == 1


def test_commit__a_reduction_needs_no_margin(protocol, ch, make_account, trader, eth_market, btc_market, set_price):
    account = make_account(trader, 10_000, leverage=9)  # long 45 ETH
    set_price("WETH", 1_850)  # below initial margin now, above maintenance
    equity, _, initial = (int(v) for v in ch.margin(account))
    assert equity < initial
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc_market, WAD // 100, sender=trader)  # any risk added elsewhere
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth_market, WAD, sender=trader)  # or here
    place(ch, eth_market, -10 * WAD, sender=trader)  # a reduction is always placed
    assert int(protocol.orders.open_orders(account)) == 1


def test_commit__a_pending_reduction_elsewhere_is_not_counted(protocol, ch, make_account, trader, eth_market, btc_market):
    """Only orders that add risk are added to the what-if: a pending close lowers nothing it is
    credited for (conservative)."""
    account = make_account(trader, 10_000, leverage=5)  # long 25 ETH
    place(ch, eth_market, -25 * WAD, sender=trader)  # a pending close
    size = largest_order(protocol, account, btc_market)  # against the margin with the ETH long
    # (the long pays funding from block to block: 1% either side of the view's limit)
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc_market, size * 101 // 100, sender=trader)
    place(ch, btc_market, size * 99 // 100, sender=trader)


def test_commit__a_pending_flip_to_a_smaller_size_is_not_credited(protocol, ch, make_account, trader, eth_market, btc_market):
    """A flip that may never fill (here one base unit past a close) is left out of the what-if,
    either order first: its close does not free the position's margin for a hold elsewhere."""
    account = make_account(trader, 10_000, leverage=5)  # long 25 ETH
    size = largest_order(protocol, account, btc_market)  # with the long as it is
    credited = largest_order(protocol, account, btc_market, [(eth_market, -25 * WAD - 1)])
    assert credited > size * 5 // 4  # what the flip's close would free
    place(ch, eth_market, -25 * WAD - 1, sender=trader)  # the account meets initial margin as it stands
    assert tuple(int(v) for v in protocol.pool.held(eth_market)) == (0, 1)
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc_market, size * 101 // 100, sender=trader)
    place(ch, btc_market, size * 99 // 100, sender=trader)


def test_commit__a_flip_placed_after_another_order_leaves_that_order_backed(
    protocol, ch, make_account, trader, eth_market, btc_market, set_price
):
    """The other way round: the flip commits (the BTC order filled in the what-if, the flip
    left out) and leaves the BTC hold backed by the margin the long still needs; a flip to a
    larger size is filled in full."""
    account = make_account(trader, 10_000, leverage=5)
    size = largest_order(protocol, account, btc_market)
    place(ch, btc_market, size * 99 // 100, sender=trader)
    place(ch, eth_market, -25 * WAD - 1, sender=trader)
    ape.chain.pending_timestamp += int(protocol.orders.settlement_delay())
    redate(market_feed(ch, eth_market))
    set_price("WETH", 2_000)  # the flip's round passed: replaceable
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth_market, -60 * WAD, sender=trader)  # to a 35 ETH short: larger, filled in the check
    assert int(protocol.orders.open_orders(account)) == 2


def test_fill__still_checks_margin_at_its_own_price(protocol, ch, make_account, trader, eth_market, keeper, set_price):
    """Margin at the commit is at the commit's price: a fall before the round still refuses the
    fill (the Clearinghouse's check), and the order is cancelled."""
    account = make_account(trader, 10_000)
    size = largest_order(protocol, account, eth_market)
    place(ch, eth_market, size, sender=trader)
    set_price("WETH", 1_990)
    receipt = fill_now(ch, account, eth_market, keeper=keeper)
    (event,) = receipt.events.filter(protocol.orders.OrderCancelled)
    assert event.reason == "clearinghouse: insufficient margin"
    assert int(ch.positions(account, eth_market).size) == 0


def test_health_after_trades__equals_the_python_mirror_to_the_wei(
    protocol, ch, make_account, trader, other_trader, eth_market, btc_market, set_price
):
    """`risk.after_trade`, applied order after order on `risk.margin`, gives the lens's equity,
    maintenance and initial exactly: an increase, a flip, a reduction, a new market."""
    make_account(other_trader, 400_000, leverage=1)  # a skew: the premium is not zero
    account = make_account(trader, 50_000, leverage=4)  # long 100 ETH
    trade_now(ch, btc_market, -WAD, 0, 0, sender=trader)  # short 1 BTC
    ape.chain.pending_timestamp += 1_800  # funding accrues; the feeds stay fresh (1 h heartbeat)
    set_price("WETH", 2_037.5)
    ape.chain.mine()
    timestamp = ape.chain.blocks.head.timestamp
    oracle = protocol.oracle
    snapshot = risk.snapshot_account(ch, oracle, account, timestamp)
    for orders in (
        [(eth_market, 7 * WAD)],
        [(eth_market, -130 * WAD)],
        [(btc_market, WAD // 2), (eth_market, -13 * WAD)],
        [(btc_market, -3 * WAD)],
    ):
        expected = risk.margin(snapshot)
        for market, delta in orders:
            view = risk.read_market_view(ch, oracle, market)
            expected = risk.after_trade(expected, view, snapshot.positions.get(market, (0, 0)), delta, S2W, timestamp)
        health, equity, initial = protocol.lens.health_after_trades(account, [m for m, _ in orders], [d for _, d in orders])
        assert (int(equity), int(initial)) == (expected[0], expected[2])
        assert int(health) == risk.health(expected[0], expected[1])


def test_health_after_trades__bad_lists__revert(protocol, make_account, trader, eth_market):
    account = make_account(trader, 1_000)
    with ape.reverts("lens: length mismatch"):
        protocol.lens.health_after_trades(account, [eth_market], [WAD, WAD])
    with ape.reverts("lens: market repeated"):
        protocol.lens.health_after_trades(account, [eth_market, eth_market], [WAD, WAD])
    with ape.reverts("lens: unknown market"):
        protocol.lens.health_after_trades(account, [eth_market, 9], [WAD, WAD])


def test_commit_margin__equals_the_python_mirror_to_the_wei(
    protocol, ch, fund, make_account, trader, other_trader, eth_market, btc_market, set_price
):
    """`risk.commit_margin` gives the lens's equity and initial exactly, and its initial is
    `health_after_trades`' plus the debt margin of every open loss taken as realised: a USDC
    account whose losses stay within its balance (one unit per losing market, the realisation's
    rounding), and a WETH-backed one in debt with a loss on ETH and a gain on BTC, traded or not."""
    make_account(other_trader, 400_000, leverage=1)  # a skew: the premium is not zero
    weth = protocol.tokens["WETH"]
    rich = make_account(trader, 50_000, leverage=4)  # USDC, long 100 ETH
    trade_now(ch, btc_market, -WAD, 0, 0, sender=trader)
    fund(trader, weth, 100 * WAD)
    ch.deposit(weth, 100 * WAD, 1, sender=trader)
    debtor = account_id(trader, 1)
    trade_now(ch, eth_market, 60 * WAD, 0, 1, sender=trader)
    trade_now(ch, btc_market, -2 * WAD, 0, 1, sender=trader)
    set_price("WETH", 1_900)
    set_price("WBTC", 29_000)
    trade_now(ch, eth_market, -20 * WAD, 0, 1, sender=trader)  # realises part of the loss: a debt
    assert int(ch.settlement(debtor)) < 0
    ape.chain.pending_timestamp += 1_800  # funding and interest accrue; the feeds stay fresh
    set_price("WETH", 1_890)
    ape.chain.mine()
    timestamp = ape.chain.blocks.head.timestamp
    debt_rate = sum(int(v) for v in ch.debt_terms()[:2])  # rate_base + rate_slope
    for account in (rich, debtor):
        snapshot = risk.snapshot_account(ch, protocol.oracle, account, timestamp)
        for orders in ([(eth_market, 5 * WAD)], [(btc_market, WAD // 2), (eth_market, -13 * WAD)], [(btc_market, -3 * WAD)], []):
            views = {m: risk.read_market_view(ch, protocol.oracle, m) for m, _ in orders}
            expected = risk.commit_margin(snapshot, orders, views, debt_rate)
            markets, deltas = [m for m, _ in orders], [d for _, d in orders]
            equity, initial = (int(v) for v in protocol.lens.commit_margin(account, markets, deltas))
            assert (equity, initial) == expected
            _, plain_equity, plain_initial = protocol.lens.health_after_trades(account, markets, deltas)
            assert equity == int(plain_equity)
            extra = initial - int(plain_initial)
            if account == rich:  # the balance covers the losses: only a rounding unit for each
                # (the open ETH loss, and a trade's own loss when it pays a premium)
                assert extra in (S2W, 2 * S2W, 3 * S2W)
            else:  # in debt: a quarter of the loss and the fees on top
                assert extra > 1_000 * WAD
