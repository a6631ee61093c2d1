"""Orders: commit (storage, escrow, the packing of size, limit, time, fee and the position at
commit, one order per account and market, replacing an order that can no longer fill), execute
(first round at or after executable_at, premium, the keeper paid for a fill only, a passed round,
a position changed by a liquidation, every Clearinghouse refusal, out of gas; every cancellation's
fee to the insurance fund), cancel (a passed round: forfeited, by anyone, at any time; no round by
its expiry: refunded to the owner whoever cancels; a fillable order: refused), open_orders and
the withdrawals it blocks, the router's phase rule, and the Configurator's order parameters.
Rounds are published at chosen times, as in tests/e2e/test_known_round.py."""

import ape
import pytest
from ape.exceptions import ContractLogicError

from marginsim import risk
from marginsim.orders import trade_now
from marginsim.protocol import account_id
from tests.conftest import USDC, WAD
from tests.e2e.attacks import price_for_health, reserve_out_of_the_way
from tests.e2e.incidents import move_clock_to

DELAY = 60  # DEFAULT_CONFIG.settlement_delay
EXPIRY = 86_400  # DEFAULT_CONFIG.order_expiry
FEE = 2 * USDC  # DEFAULT_CONFIG.execution_fee_usd
WEEK = 7 * 86_400
MAX_UINT = 2**256 - 1
ETH = 2_000 * 10**8  # the ETH feed's answer, 8 decimals
FEED_TO_WAD = 10**10
SKEW = 200 * WAD  # other_trader's long: a skew, so the premium is not zero
PHASE = 1 << 64  # a Chainlink proxy's round id: phase << 64 | the aggregator's round
# Enough gas for Orders' own work around a fill_order call that refuses early (the order's hold
# released in the pool included) and the fee's forfeit to the insurance fund (a gas limit of
# 144,335 is the least that does it, measured), not for a complete fill (203,808 the least; from
# about 180k to 203k the fill runs out inside fill_order, below that Orders itself): see the
# out-of-gas test.
STARVED_GAS = 190_000


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(
    protocol, ch, configurator, usdc, seeded_pool, make_account, engine, deployer, trader, keeper, attacker, guardian
):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once."""


@pytest.fixture(scope="module")
def orders(protocol, deployer):
    """Orders with its bond off: these tests follow the execution fee alone (the bond, which
    moves with it, has its own tests in test_bond.py)."""
    protocol.configurator.set_order_bond(0, sender=deployer)
    return protocol.orders


@pytest.fixture(scope="module")
def account(make_account, other_trader, trader, usdc, orders):
    """The trader's subaccount 0 with $100k, execution fees approved to Orders; other_trader is
    long 200 ETH, so every fill pays a premium."""
    make_account(other_trader, 400_000, leverage=1)
    acct = make_account(trader, 100_000)
    usdc.mint(trader, 10_000 * USDC, sender=trader)
    usdc.approve(orders, MAX_UINT, sender=trader)
    return acct


@pytest.fixture(scope="module", autouse=True)
def _skew(account, ch, eth_market):
    st = ch.market_state(eth_market)
    assert st.long_oi - st.short_oi == SKEW


# ---------------------------------------------------------------- helpers


def publish(protocol, deployer, chain, answer, at, symbol="WETH"):
    """A round at `answer` dated exactly `at`, synced into the router. Returns its price, WAD."""
    move_clock_to(chain, at)
    receipt = protocol.feeds[symbol].updateAnswer(answer, sender=deployer)
    assert receipt.timestamp == at
    protocol.oracle.sync(protocol.tokens[symbol], sender=deployer)
    return answer * 10 ** (18 - int(protocol.feeds[symbol].decimals()))


def publish_round(protocol, deployer, chain, round_id, answer, at, symbol="WETH"):
    """Round `round_id` (any id: a proxy's phase bits, a gap) at `answer`, dated exactly `at`,
    made the newest and synced."""
    move_clock_to(chain, at)
    receipt = protocol.feeds[symbol].updateRoundData(round_id, answer, at, at, sender=deployer)
    assert receipt.timestamp == at
    protocol.oracle.sync(protocol.tokens[symbol], sender=deployer)


def commit(orders, who, market, size, limit=0, subaccount=0):
    """Place an order; returns (receipt, its executable_at)."""
    receipt = orders.commit_order(market, size, limit, subaccount, sender=who)
    return receipt, receipt.timestamp + int(orders.settlement_delay())


def expected_fill(ch, market, price, size):
    st = ch.market_state(market)
    return risk.fill_price(price, st.long_oi - st.short_oi, size, ch.markets(market).skew_scale)


def expected_trade_fee(ch, market, size, fill):
    fee_wad = risk.mul_up(risk.mul_up(abs(size), fill), ch.markets(market).fee)
    return risk.ceil_div(fee_wad, 10**12)


def book(ch, usdc, orders, acct, market, trader, keeper):
    """Everything an execution may touch, besides the order itself."""
    pos = ch.positions(acct, market)
    st = ch.market_state(market)
    return {
        "size": pos.size,
        "cost": pos.cost,
        "settlement": ch.settlement(acct),
        "long_oi": st.long_oi,
        "short_oi": st.short_oi,
        "pool": ch.pool_balance(),
        "insurance": ch.insurance_balance(),
        "wallet": usdc.balanceOf(trader),
        "keeper": usdc.balanceOf(keeper),
        "escrow": usdc.balanceOf(orders),
        "open_orders": orders.open_orders(acct),
    }


def forfeited(before, fee=FEE):
    """The book after a cancellation whose fee went to the insurance fund: nothing else moved."""
    return {
        **before,
        "insurance": before["insurance"] + fee,
        "escrow": before["escrow"] - fee,
        "open_orders": before["open_orders"] - 1,
    }


def cancelled(orders, receipt):
    """The one OrderCancelled of a receipt: (account, market, size_delta, by, fee, fee_to, reason)."""
    [event] = receipt.events.filter(orders.OrderCancelled)
    return (event.account, event.market, event.size_delta, event.by, event.fee, event.fee_to, event.reason)


def no_order(orders, acct, market):
    return tuple(orders.order(acct, market)) == (0, 0, 0, 0, 0)


# ---------------------------------------------------------------- commit


def test_commit__stores_the_order_escrows_the_fee_and_logs(orders, usdc, account, trader, eth_market):
    wallet, escrow = usdc.balanceOf(trader), usdc.balanceOf(orders)
    assert orders.open_orders(account) == 0
    receipt, executable_at = commit(orders, trader, eth_market, 10 * WAD, 2_100 * WAD)
    assert account == account_id(trader)
    assert tuple(orders.order(account, eth_market)) == (10 * WAD, 2_100 * WAD, receipt.timestamp + DELAY, FEE, 0)
    assert orders.open_orders(account) == 1
    assert usdc.balanceOf(trader) == wallet - FEE
    assert usdc.balanceOf(orders) == escrow + FEE
    [event] = receipt.events.filter(orders.OrderCommitted)
    assert (event.account, event.market, event.size_delta, event.limit_price, event.executable_at, event.fee) == (
        account,
        eth_market,
        10 * WAD,
        2_100 * WAD,
        executable_at,
        FEE,
    )
    assert not receipt.events.filter(orders.OrderCancelled)


@pytest.mark.parametrize(
    "size, limit",
    [
        (-1, 0),
        (-1, 2**128 - 1),
        (2**64, 2**128 - 1),
        (1, 1),
        (-(2**64), 5),
        (-(2**64), 0),
    ],
)
def test_commit__size_and_limit_round_trip_the_packing(protocol, orders, account, trader, deployer, eth_market, size, limit):
    """Sizes the account's margin backs (an order near the core's bound on a side, 2**96 - 1
    base units, is refused for its margin first: tests/e2e/test_review_orders.py), the limit with
    every bit set; the reserve off so the pool's value does not refuse it first."""
    protocol.configurator.set_reserve_factor(eth_market, 0, sender=deployer)
    receipt, executable_at = commit(orders, trader, eth_market, size, limit)
    assert tuple(orders.order(account, eth_market)) == (size, limit, executable_at, FEE, 0)
    assert receipt.events.filter(orders.OrderCommitted)[0].size_delta == size


@pytest.mark.parametrize("position", [1, -1, 25 * WAD, -25 * WAD])
def test_commit__records_the_position_next_to_time_and_fee(
    protocol, orders, ch, account, trader, keeper, deployer, eth_market, position
):
    """The position at commit shares the second word with executable_at (40 bits) and the fee
    (88 bits): a negative one (two's complement) leaves both intact, and so does the largest fee
    next to it; a flip and the limit with every bit set round trip in the first word."""
    trade_now(ch, eth_market, position, 0, 0, sender=trader, keeper=keeper)
    assert ch.positions(account, eth_market).size == position
    protocol.configurator.set_order_parameters(DELAY, EXPIRY, 1_000 * USDC, sender=deployer)  # the largest fee
    protocol.configurator.set_reserve_factor(eth_market, 0, sender=deployer)
    size = -2 * position  # a same-size flip: the margin the account has backs it
    _, executable_at = commit(orders, trader, eth_market, size, 2**128 - 1)
    assert tuple(orders.order(account, eth_market)) == (size, 2**128 - 1, executable_at, 1_000 * USDC, position)


@pytest.mark.parametrize(
    "market, size, limit, reason",
    [
        (1, 0, 0, "orders: zero size"),
        (1, 2**127, 0, "orders: size too large"),
        (1, -(2**127), 0, "orders: size too large"),
        (1, 1, 2**128, "orders: limit too large"),
        (0, 1, 0, "orders: unknown market"),
        (3, 1, 0, "orders: unknown market"),
    ],
)
def test_commit__bad_input__reverts(orders, usdc, account, trader, market, size, limit, reason):
    wallet = usdc.balanceOf(trader)
    with ape.reverts(reason):
        orders.commit_order(market, size, limit, 0, sender=trader)
    assert usdc.balanceOf(trader) == wallet
    assert orders.open_orders(account) == 0


def test_commit__second_while_pending_with_no_round__reverts_until_expiry(orders, usdc, account, trader, eth_market, chain):
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    stored = tuple(orders.order(account, eth_market))
    wallet = usdc.balanceOf(trader)
    with ape.reverts("orders: order pending"):
        orders.commit_order(eth_market, -5 * WAD, 0, 0, sender=trader)
    move_clock_to(chain, executable_at + EXPIRY - 1)  # one second short of expiry
    with ape.reverts("orders: order pending"):
        orders.commit_order(eth_market, -5 * WAD, 0, 0, sender=trader)
    assert tuple(orders.order(account, eth_market)) == stored
    assert usdc.balanceOf(trader) == wallet
    assert orders.open_orders(account) == 1


@pytest.mark.parametrize("new_fee", [5 * USDC, USDC // 2, FEE, 0])
def test_commit__no_round_by_expiry__replaces_and_refunds_the_old_fee_against_the_new(
    protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain, new_fee
):
    # long 5 ETH: the new order is a reduction, which needs no price (a day without a round left
    # the feed stale, and an order that adds risk would be refused with its reason)
    trade_now(ch, eth_market, 5 * WAD, 0, 0, sender=trader, keeper=keeper)
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD, 2_100 * WAD)
    protocol.configurator.set_order_parameters(DELAY, EXPIRY, new_fee, sender=deployer)
    move_clock_to(chain, executable_at + EXPIRY)  # exactly at expiry
    wallet, escrow, insurance = usdc.balanceOf(trader), usdc.balanceOf(orders), ch.insurance_balance()
    receipt, new_executable_at = commit(orders, trader, eth_market, -3 * WAD, 7)
    assert receipt.timestamp == executable_at + EXPIRY
    assert usdc.balanceOf(trader) == wallet - (new_fee - FEE)
    assert usdc.balanceOf(orders) == escrow + (new_fee - FEE)
    assert ch.insurance_balance() == insurance
    assert tuple(orders.order(account, eth_market)) == (-3 * WAD, 7, new_executable_at, new_fee, 5 * WAD)
    assert cancelled(orders, receipt) == (
        account,
        eth_market,
        10 * WAD,
        trader.address,
        FEE,
        trader.address,
        "orders: expired",
    )
    [committed] = receipt.events.filter(orders.OrderCommitted)
    assert (committed.size_delta, committed.fee, committed.executable_at) == (-3 * WAD, new_fee, new_executable_at)


def test_commit__round_passed__replaces_at_once_and_the_old_fee_goes_to_insurance(
    protocol, orders, usdc, ch, account, trader, deployer, eth_market, chain
):
    """An order whose round has passed can be replaced before its expiry; its fee is forfeited,
    and the new order's fee is pulled whole."""
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    publish(protocol, deployer, chain, ETH, executable_at)
    publish(protocol, deployer, chain, ETH, executable_at + 5)  # replaces the order's round
    wallet, escrow, insurance = usdc.balanceOf(trader), usdc.balanceOf(orders), ch.insurance_balance()
    receipt, new_executable_at = commit(orders, trader, eth_market, -4 * WAD)
    assert receipt.timestamp < executable_at + EXPIRY
    assert usdc.balanceOf(trader) == wallet - FEE
    assert usdc.balanceOf(orders) == escrow
    assert ch.insurance_balance() == insurance + FEE
    assert tuple(orders.order(account, eth_market)) == (-4 * WAD, 0, new_executable_at, FEE, 0)
    assert cancelled(orders, receipt) == (
        account,
        eth_market,
        10 * WAD,
        trader.address,
        FEE,
        ch.address,
        "orders: round passed",
    )


@pytest.mark.parametrize("old", ["round passed", "expired"])
def test_commit__replacement_keeps_open_orders_and_the_new_order_settles(
    protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain, old
):
    """A replacement removes one live order and adds one: open_orders stays 1, so the owner
    still cannot withdraw, and the new order fills and brings it to 0 (a count that dropped to 0
    at the replacement would let the owner withdraw and make the new order's removal underflow,
    leaving it impossible to execute or cancel)."""
    # long 10 ETH, and both orders reduce it: after a day without a round the feed is stale, and a
    # commit that adds risk would revert with the feed's reason (the margin and the reserve read it)
    trade_now(ch, eth_market, 10 * WAD, 0, 0, sender=trader, keeper=keeper)
    _, executable_at = commit(orders, trader, eth_market, -10 * WAD)
    if old == "round passed":
        publish(protocol, deployer, chain, ETH, executable_at)
        publish(protocol, deployer, chain, ETH, executable_at + 5)
    else:
        move_clock_to(chain, executable_at + EXPIRY)
    _, new_executable_at = commit(orders, trader, eth_market, -4 * WAD)
    assert orders.open_orders(account) == 1
    with ape.reverts("clearinghouse: order pending"):
        ch.withdraw(usdc, 1, 0, sender=trader)
    publish(protocol, deployer, chain, ETH, new_executable_at)
    assert orders.execute_order(account, eth_market, sender=keeper).events.filter(orders.OrderFilled)
    assert ch.positions(account, eth_market).size == 6 * WAD
    assert orders.open_orders(account) == 0


def test_commit__markets_and_subaccounts_hold_separate_orders(
    protocol, orders, usdc, ch, make_account, account, trader, keeper, deployer, eth_market, btc_market, chain
):
    make_account(trader, 10_000, subaccount=1)  # the margin subaccount 1's order needs
    escrow = usdc.balanceOf(orders)
    _, eth_at = commit(orders, trader, eth_market, 1 * WAD, 0, subaccount=0)
    _, sub_at = commit(orders, trader, eth_market, -2 * WAD, 3, subaccount=1)
    _, btc_at = commit(orders, trader, btc_market, 3 * WAD, 4, subaccount=0)
    sub1 = account_id(trader, 1)
    assert tuple(orders.order(account, eth_market)) == (1 * WAD, 0, eth_at, FEE, 0)
    assert tuple(orders.order(sub1, eth_market)) == (-2 * WAD, 3, sub_at, FEE, 0)
    assert tuple(orders.order(account, btc_market)) == (3 * WAD, 4, btc_at, FEE, 0)
    assert no_order(orders, sub1, btc_market)
    assert usdc.balanceOf(orders) == escrow + 3 * FEE
    assert (orders.open_orders(account), orders.open_orders(sub1)) == (2, 1)
    # filling one leaves the others as they were
    publish(protocol, deployer, chain, ETH, eth_at + 5)
    assert orders.execute_order(account, eth_market, sender=keeper).events.filter(orders.OrderFilled)
    assert ch.positions(account, eth_market).size == 1 * WAD
    assert no_order(orders, account, eth_market)
    assert tuple(orders.order(sub1, eth_market)) == (-2 * WAD, 3, sub_at, FEE, 0)
    assert tuple(orders.order(account, btc_market)) == (3 * WAD, 4, btc_at, FEE, 0)
    assert (orders.open_orders(account), orders.open_orders(sub1)) == (1, 1)


# ---------------------------------------------------------------- execute


def test_execute__round_before_executable_at__no_round_yet(
    protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain
):
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    stored = tuple(orders.order(account, eth_market))
    with ape.reverts("oracle: no round yet"):  # the newest round predates the commit
        orders.execute_order(account, eth_market, sender=keeper)
    publish(protocol, deployer, chain, ETH + 10**8, executable_at - 1)
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)
    with ape.reverts("oracle: no round yet"):
        orders.execute_order(account, eth_market, sender=keeper)
    assert tuple(orders.order(account, eth_market)) == stored
    assert book(ch, usdc, orders, account, eth_market, trader, keeper) == before
    assert before["size"] == 0 and before["open_orders"] == 1
    # the next round is the first at or after executable_at: it fills there
    price = publish(protocol, deployer, chain, ETH + 2 * 10**8, executable_at + 5)
    fill = expected_fill(ch, eth_market, price, 10 * WAD)
    receipt = orders.execute_order(account, eth_market, sender=keeper)
    assert receipt.events.filter(orders.OrderFilled)[0].fill_price == fill


@pytest.mark.parametrize("size", [10 * WAD, -10 * WAD, 1, -1])
@pytest.mark.parametrize("late", [0, 900])
def test_execute__fills_at_the_first_round_plus_premium_and_pays_the_keeper(
    protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain, size, late
):
    _, executable_at = commit(orders, trader, eth_market, size)
    publish(protocol, deployer, chain, ETH - 3 * 10**8, executable_at - 30)  # before: not this one
    price = publish(protocol, deployer, chain, ETH + 12_345_678, executable_at + late)
    fill = expected_fill(ch, eth_market, price, size)
    assert fill != price  # the premium is there
    trade_fee = expected_trade_fee(ch, eth_market, size, fill)
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)

    receipt = orders.execute_order(account, eth_market, sender=keeper)

    [filled] = receipt.events.filter(orders.OrderFilled)
    assert (filled.account, filled.market, filled.size_delta, filled.fill_price, filled.keeper, filled.fee) == (
        account,
        eth_market,
        size,
        fill,
        keeper.address,
        FEE,
    )
    assert not receipt.events.filter(orders.OrderCancelled)
    [trade] = receipt.events.filter(ch.Trade)
    assert (trade.fill_price, trade.new_size, trade.fee) == (fill, size, trade_fee)
    after = book(ch, usdc, orders, account, eth_market, trader, keeper)
    assert after["size"] == size
    assert after["settlement"] == before["settlement"] - trade_fee
    assert (after["long_oi"] - before["long_oi"], after["short_oi"] - before["short_oi"]) == (max(size, 0), max(-size, 0))
    assert after["keeper"] == before["keeper"] + FEE
    assert after["escrow"] == before["escrow"] - FEE
    assert after["insurance"] == before["insurance"]
    assert after["wallet"] == before["wallet"]
    assert (before["open_orders"], after["open_orders"]) == (1, 0)
    assert no_order(orders, account, eth_market)


def test_execute__fills_as_a_direct_trade_of_the_same_size_would(
    protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain
):
    """A keeper filling the order at a published round of the current price gives the same fill,
    trading fee and position as trade_now (which re-dates the current round) does."""
    size = 25 * WAD
    fill = expected_fill(ch, eth_market, ETH * FEED_TO_WAD, size)
    chain.mine()  # a snapshot id is a block hash: one apart from the test's own isolation snapshot
    snapshot = chain.snapshot()
    direct = trade_now(ch, eth_market, size, 0, 0, sender=trader, keeper=keeper).events.filter(ch.Trade)[0]
    chain.restore(snapshot)
    _, executable_at = commit(orders, trader, eth_market, size)
    publish(protocol, deployer, chain, ETH, executable_at)
    delayed = orders.execute_order(account, eth_market, sender=keeper).events.filter(ch.Trade)[0]
    assert (delayed.fill_price, delayed.fee, delayed.new_size) == (direct.fill_price, direct.fee, direct.new_size)
    assert direct.fill_price == fill


def test_execute__newer_round_replaced_the_first__cancelled_round_passed_fee_to_insurance(
    protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain
):
    """The keeper who comes after a newer round is paid nothing: the fee goes to the insurance
    fund, so waiting to cancel never pays more than filling."""
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    publish(protocol, deployer, chain, ETH + 10**8, executable_at)
    publish(protocol, deployer, chain, ETH + 2 * 10**8, executable_at + 5)
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)
    receipt = orders.execute_order(account, eth_market, sender=keeper)
    assert not receipt.events.filter(orders.OrderFilled)
    assert not receipt.events.filter(ch.Trade)
    assert cancelled(orders, receipt) == (
        account,
        eth_market,
        10 * WAD,
        keeper.address,
        FEE,
        ch.address,
        "orders: round passed",
    )
    [funded] = receipt.events.filter(ch.InsuranceDeposit)
    assert (funded.source, funded.amount) == (orders.address, FEE)
    assert book(ch, usdc, orders, account, eth_market, trader, keeper) == forfeited(before)
    assert no_order(orders, account, eth_market)


def test_execute__round_passed_with_a_zero_fee__cancels_without_funding(
    protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain
):
    """With the fee at 0 the cancellation moves nothing (fund_insurance refuses a zero amount,
    so it is not called)."""
    protocol.configurator.set_order_parameters(DELAY, EXPIRY, 0, sender=deployer)
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    publish(protocol, deployer, chain, ETH, executable_at)
    publish(protocol, deployer, chain, ETH, executable_at + 5)
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)
    receipt = orders.execute_order(account, eth_market, sender=keeper)
    assert cancelled(orders, receipt)[4:] == (0, ch.address, "orders: round passed")
    assert not receipt.events.filter(ch.InsuranceDeposit)
    assert book(ch, usdc, orders, account, eth_market, trader, keeper) == forfeited(before, fee=0)


# each case: (order size, limit: None / "below" / "above" the fill, subaccount collateral, setup after commit)
REFUSALS = {
    "buy above its limit": (10 * WAD, "below", None, None, "clearinghouse: price limit"),
    "sell below its limit": (-10 * WAD, "above", None, None, "clearinghouse: price limit"),
    # checked at the commit too: the round comes 3% up, and the volatility it adds lifts the
    # initial rate past what backed the order at its commit
    "insufficient margin": (10 * WAD, None, 1_400, "jump", "clearinghouse: insufficient margin"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_execute__refused_fill__cancels_with_the_reason_and_forfeits_only_the_fee(
    configurator, protocol, orders, usdc, ch, make_account, account, trader, keeper, guardian, deployer, eth_market, chain, case
):
    size, limit_side, collateral, setup, reason = REFUSALS[case]
    acct, sub = account, 0
    if collateral is not None:
        sub = 2
        acct = make_account(trader, collateral, subaccount=sub)
    price = ETH * FEED_TO_WAD  # the round comes at an unchanged price
    limit = 0
    if limit_side is not None:
        fill = expected_fill(ch, eth_market, price, size)
        limit = fill - 1 if limit_side == "below" else fill + 1
    _, executable_at = commit(orders, trader, eth_market, size, limit, sub)
    publish(protocol, deployer, chain, ETH * 103 // 100 if setup == "jump" else ETH, executable_at)
    before = book(ch, usdc, orders, acct, eth_market, trader, keeper)

    receipt = orders.execute_order(acct, eth_market, sender=keeper)

    assert not receipt.events.filter(orders.OrderFilled)
    assert not receipt.events.filter(ch.Trade)
    assert cancelled(orders, receipt) == (acct, eth_market, size, keeper.address, FEE, ch.address, reason)
    assert book(ch, usdc, orders, acct, eth_market, trader, keeper) == forfeited(before)
    assert no_order(orders, acct, eth_market)


# each case: (order size, what governance does between the commit and the round, the reason)
GOVERNANCE_REFUSALS = {
    "paused": (10 * WAD, "pause", "clearinghouse: paused"),
    "reduce only": (-10 * WAD, "reduce_only", "clearinghouse: reduce only"),
}


@pytest.mark.parametrize("case", list(GOVERNANCE_REFUSALS))
def test_execute__refused_by_governance__cancels_with_the_reason_and_refunds_the_fee(
    configurator, protocol, orders, usdc, ch, account, trader, keeper, guardian, deployer, eth_market, chain, case
):
    """A refusal the owner did not cause (a switch governance threw after the commit) refunds the
    order's fee to its owner, as an expiry does: nothing goes to the insurance fund or the keeper.
    ("clearinghouse: open interest cap" cannot come: the commit and the Configurator count the
    placed orders.)"""
    size, setup, reason = GOVERNANCE_REFUSALS[case]
    _, executable_at = commit(orders, trader, eth_market, size)
    configurator.set_guardian(guardian, sender=deployer)
    if setup == "pause":
        configurator.pause(sender=guardian)
    else:
        configurator.set_reduce_only(eth_market, True, sender=guardian)
    publish(protocol, deployer, chain, ETH, executable_at)
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)

    receipt = orders.execute_order(account, eth_market, sender=keeper)

    assert not receipt.events.filter(orders.OrderFilled)
    assert not receipt.events.filter(ch.Trade)
    assert not receipt.events.filter(ch.InsuranceDeposit)
    assert cancelled(orders, receipt) == (account, eth_market, size, keeper.address, FEE, trader.address, reason)
    assert book(ch, usdc, orders, account, eth_market, trader, keeper) == {
        **before,
        "wallet": before["wallet"] + FEE,
        "escrow": before["escrow"] - FEE,
        "open_orders": before["open_orders"] - 1,
    }
    assert no_order(orders, account, eth_market)


@pytest.mark.parametrize("halt", ["pause", "reduce_only"])
def test_commit__adding_risk_under_a_pause_or_reduce_only__reverts_a_reduction_commits(
    configurator, orders, usdc, ch, account, trader, keeper, guardian, deployer, eth_market, halt
):
    """Governance's switches refuse an order that adds risk at its commit (a fill they refuse is
    refunded, so an order placed under them would hold the pool for free); nothing is escrowed.
    A reduction still commits."""
    trade_now(ch, eth_market, 10 * WAD, 0, 0, sender=trader, keeper=keeper)
    configurator.set_guardian(guardian, sender=deployer)
    if halt == "pause":
        configurator.pause(sender=guardian)
    else:
        configurator.set_reduce_only(eth_market, True, sender=guardian)
    message = "orders: paused" if halt == "pause" else "orders: reduce only"
    before = (usdc.balanceOf(trader), usdc.balanceOf(orders), orders.open_orders(account))
    for size in (WAD, -25 * WAD):  # an increase, a flip
        with ape.reverts(message):
            orders.commit_order(eth_market, size, 0, 0, sender=trader)
    assert (usdc.balanceOf(trader), usdc.balanceOf(orders), orders.open_orders(account)) == before
    orders.commit_order(eth_market, -4 * WAD, 0, 0, sender=trader)
    assert orders.order(account, eth_market).size_delta == -4 * WAD


def test_set_market__a_cap_below_open_interest_plus_the_holds__reverts(
    configurator, orders, ch, protocol, account, trader, keeper, deployer, eth_market
):
    """The Configurator keeps the cap above each side's open interest with what placed orders hold
    on it, so no order placed within the cap is refused at its fill for it."""
    trade_now(ch, eth_market, 10 * WAD, 0, 0, sender=trader, keeper=keeper)
    commit(orders, trader, eth_market, 5 * WAD)
    assert tuple(protocol.pool.held(eth_market)) == (5 * WAD, 0)
    st = ch.market_state(eth_market)
    params = tuple(ch.markets(eth_market))[:-1]
    with ape.reverts("configurator: cap below open interest"):
        configurator.set_market(eth_market, params + (st.long_oi + 5 * WAD - 1,), sender=deployer)
    configurator.set_market(eth_market, params + (st.long_oi + 5 * WAD,), sender=deployer)
    assert ch.markets(eth_market).oi_cap == st.long_oi + 5 * WAD


@pytest.mark.parametrize("placed", ["none", "another's order"])
def test_commit__past_the_open_interest_cap_with_placed_orders__reverts(
    protocol, orders, usdc, ch, make_account, account, trader, attacker, keeper, deployer, eth_market, placed
):
    """The cap is checked at the commit on the side the order grows, counting what placed orders
    hold there, so another's fill cannot make this order's fail on the cap: one wei past it
    reverts "orders: open interest cap" and escrows nothing; at the cap the order is placed."""
    # the base-unit cap ($15M) is past the $10M pool's reserve: set the reserve aside to reach it
    reserve_out_of_the_way(protocol, deployer)
    big = make_account(trader, 10_000_000, subaccount=2)
    taken = 0
    if placed != "none":
        other = make_account(attacker, 10_000_000)
        usdc.mint(attacker, 1_000 * USDC, sender=attacker)
        usdc.approve(orders, 2**256 - 1, sender=attacker)
        taken = 1_000 * WAD
        orders.commit_order(eth_market, taken, 0, 0, sender=attacker)
        assert protocol.pool.held(eth_market)[0] == taken and other
    room = ch.markets(eth_market).oi_cap - ch.market_state(eth_market).long_oi - taken
    before = (usdc.balanceOf(trader), usdc.balanceOf(orders), orders.open_orders(big))
    with ape.reverts("orders: open interest cap"):
        orders.commit_order(eth_market, room + 1, 0, 2, sender=trader)
    assert (usdc.balanceOf(trader), usdc.balanceOf(orders), orders.open_orders(big)) == before
    orders.commit_order(eth_market, room, 0, 2, sender=trader)
    assert orders.order(big, eth_market).size_delta == room


@pytest.mark.parametrize("size", [10 * WAD, -10 * WAD])
def test_execute__limit_equal_to_the_fill__fills(
    protocol, orders, ch, account, trader, keeper, deployer, eth_market, chain, size
):
    fill = expected_fill(ch, eth_market, ETH * FEED_TO_WAD, size)
    _, executable_at = commit(orders, trader, eth_market, size, fill)
    publish(protocol, deployer, chain, ETH, executable_at)
    receipt = orders.execute_order(account, eth_market, sender=keeper)
    assert receipt.events.filter(orders.OrderFilled)[0].fill_price == fill
    assert ch.positions(account, eth_market).size == size


@pytest.mark.parametrize("halt", ["pause", "reduce_only"])
@pytest.mark.parametrize(
    "delta, fills",
    [(-4 * WAD, True), (-10 * WAD, True), (-15 * WAD, False), (1 * WAD, False)],
    ids=["reduce", "close", "flip", "increase"],  # a flip or an increase adds risk
)
def test_execute__reductions_fill_while_halted(
    configurator, protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain, halt, delta, fills
):
    trade_now(ch, eth_market, 10 * WAD, 0, 0, sender=trader, keeper=keeper)
    assert ch.positions(account, eth_market).size == 10 * WAD
    _, executable_at = commit(orders, trader, eth_market, delta)
    assert tuple(orders.order(account, eth_market))[4] == 10 * WAD
    if halt == "pause":
        configurator.pause(sender=deployer)
    else:
        configurator.set_reduce_only(eth_market, True, sender=deployer)
    publish(protocol, deployer, chain, ETH, executable_at)
    keeper_before, insurance_before = usdc.balanceOf(keeper), ch.insurance_balance()
    receipt = orders.execute_order(account, eth_market, sender=keeper)
    assert no_order(orders, account, eth_market)
    if fills:
        assert receipt.events.filter(orders.OrderFilled)
        assert ch.positions(account, eth_market).size == 10 * WAD + delta
        assert (usdc.balanceOf(keeper), ch.insurance_balance()) == (keeper_before + FEE, insurance_before)
    else:
        expected = "clearinghouse: paused" if halt == "pause" else "clearinghouse: reduce only"
        assert cancelled(orders, receipt)[5:] == (trader.address, expected)  # refunded: governance's doing
        assert ch.positions(account, eth_market).size == 10 * WAD
        assert (usdc.balanceOf(keeper), ch.insurance_balance()) == (keeper_before, insurance_before)


def test_execute__no_order__reverts(orders, account, trader, keeper, eth_market, btc_market):
    commit(orders, trader, eth_market, 10 * WAD)
    for acct, market in ((account, btc_market), (account_id(trader, 1), eth_market), (account_id(keeper), eth_market)):
        with ape.reverts("orders: no order"):
            orders.execute_order(acct, market, sender=keeper)


@pytest.mark.parametrize("first", ["fill", "round passed"])
def test_execute__twice__second_has_no_order(
    protocol, orders, usdc, ch, account, trader, keeper, deployer, eth_market, chain, first
):
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    publish(protocol, deployer, chain, ETH, executable_at)
    if first == "round passed":
        publish(protocol, deployer, chain, ETH, executable_at + 5)
    orders.execute_order(account, eth_market, sender=keeper)
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)
    with ape.reverts("orders: no order"):
        orders.execute_order(account, eth_market, sender=keeper)
    with ape.reverts("orders: no order"):
        orders.cancel_order(account, eth_market, sender=keeper)
    assert book(ch, usdc, orders, account, eth_market, trader, keeper) == before
    assert before["size"] == (10 * WAD if first == "fill" else 0)
    assert before["open_orders"] == 0


# ---------------------------------------------------------------- execute: the position changed


@pytest.mark.parametrize(
    "health, left",
    [(0.995, "part"), (0.45, "none")],
    ids=["partial liquidation", "whole liquidation"],  # full_liquidation_health is 0.5
)
def test_execute__liquidated_between_commit_and_fill__close_cancelled_position_changed(
    protocol, orders, usdc, ch, engine, make_account, account, trader, keeper, deployer, eth_market, chain, health, left
):
    """A 50 ETH long ($7,000, 14x) orders itself closed; a round before the order's own drops it
    below maintenance and a keeper liquidates it (the least close back to health 1.1, or all of
    it). At the order's round the -50 ETH close would open a short (the whole remainder plus
    what the liquidation closed): it is cancelled "orders: position changed", the position the
    liquidation left stays as it was, and the fee goes to the insurance fund. A new close of the
    remainder then fills to flat."""
    acct = make_account(trader, 7_000, subaccount=3)
    trade_now(ch, eth_market, 50 * WAD, 0, 3, sender=trader, keeper=keeper)
    move_clock_to(chain, int(chain.pending_timestamp) + 600)
    _, executable_at = commit(orders, trader, eth_market, -50 * WAD, 0, subaccount=3)
    assert tuple(orders.order(acct, eth_market))[4] == 50 * WAD
    target = int(price_for_health(protocol, acct, "ETH-PERP", health) * 10**8)
    publish(protocol, deployer, chain, target, executable_at - 30)  # before the order's round
    engine.liquidate(acct, eth_market, 10**30, sender=keeper)
    remaining = ch.positions(acct, eth_market).size
    if left == "part":
        assert 0 < remaining < 50 * WAD
    else:
        assert remaining == 0
    publish(protocol, deployer, chain, target, executable_at + 5)  # the order's round, fillable
    assert protocol.oracle.round_price(protocol.tokens["WETH"], executable_at) == target * FEED_TO_WAD
    before = book(ch, usdc, orders, acct, eth_market, trader, keeper)

    receipt = orders.execute_order(acct, eth_market, sender=keeper)

    assert not receipt.events.filter(orders.OrderFilled)
    assert not receipt.events.filter(ch.Trade)
    assert cancelled(orders, receipt) == (
        acct,
        eth_market,
        -50 * WAD,
        keeper.address,
        FEE,
        ch.address,
        "orders: position changed",
    )
    assert book(ch, usdc, orders, acct, eth_market, trader, keeper) == forfeited(before)
    assert ch.positions(acct, eth_market).size == remaining  # never flipped short
    if remaining:
        _, again = commit(orders, trader, eth_market, -remaining, 0, subaccount=3)
        publish(protocol, deployer, chain, target, again + 5)
        assert orders.execute_order(acct, eth_market, sender=keeper).events.filter(orders.OrderFilled)
        assert ch.positions(acct, eth_market).size == 0


# ---------------------------------------------------------------- out of gas


def test_execute__starved_of_gas__reverts_and_the_order_stays(
    protocol, orders, usdc, ch, make_account, account, trader, keeper, deployer, eth_market, chain
):
    """With STARVED_GAS, Orders' own work around a fill_order call fits: an order the
    Clearinghouse refuses at once (price limit) is cancelled with its reason, its fee to the
    insurance fund. The same order without a limit needs the whole fill, which runs out inside
    fill_order: the call reverts as a whole (not with Orders' own out-of-gas), the order stays
    pending and nobody is paid."""
    sub1 = make_account(trader, 100_000, subaccount=1)
    _, at0 = commit(orders, trader, eth_market, 10 * WAD, 1, subaccount=0)  # refused: limit 1 wei
    _, at1 = commit(orders, trader, eth_market, 10 * WAD, 0, subaccount=1)
    assert at0 < at1  # blocks apart: the round at at1 is the first at or after either
    publish(protocol, deployer, chain, ETH, at1)

    insurance = ch.insurance_balance()
    refused = orders.execute_order(account, eth_market, sender=keeper, gas=STARVED_GAS)
    assert cancelled(orders, refused)[5:] == (ch.address, "clearinghouse: price limit")
    assert ch.insurance_balance() == insurance + FEE

    stored = tuple(orders.order(sub1, eth_market))
    before = book(ch, usdc, orders, sub1, eth_market, trader, keeper)
    with pytest.raises(ContractLogicError) as failure:
        orders.execute_order(sub1, eth_market, sender=keeper, gas=STARVED_GAS)
    assert "out of gas" not in str(failure.value).lower()  # fill_order ran out; Orders itself did not
    assert tuple(orders.order(sub1, eth_market)) == stored
    assert book(ch, usdc, orders, sub1, eth_market, trader, keeper) == before

    # with gas enough it fills at the same round, and the keeper is paid
    filled = orders.execute_order(sub1, eth_market, sender=keeper)
    assert filled.events.filter(orders.OrderFilled)
    assert ch.positions(sub1, eth_market).size == 10 * WAD
    assert usdc.balanceOf(keeper) == before["keeper"] + FEE


# ---------------------------------------------------------------- cancel


def test_cancel__no_round_before_expiry__reverts(protocol, orders, usdc, account, trader, attacker, eth_market, chain):
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    stored = tuple(orders.order(account, eth_market))
    with ape.reverts("orders: not expired"):  # not even its owner, right away
        orders.cancel_order(account, eth_market, sender=trader)
    move_clock_to(chain, executable_at + EXPIRY - 1)  # one second short of expiry
    with ape.reverts("orders: not expired"):
        orders.cancel_order(account, eth_market, sender=attacker)
    assert tuple(orders.order(account, eth_market)) == stored
    assert orders.open_orders(account) == 1


def test_cancel__no_round_at_expiry_by_a_third_party__refunds_the_owner(
    orders, usdc, ch, account, trader, attacker, keeper, eth_market, chain
):
    _, executable_at = commit(orders, trader, eth_market, -7 * WAD, 3)
    move_clock_to(chain, executable_at + EXPIRY)
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)
    attacker_before = usdc.balanceOf(attacker)
    receipt = orders.cancel_order(account, eth_market, sender=attacker)
    assert receipt.timestamp == executable_at + EXPIRY
    assert usdc.balanceOf(attacker) == attacker_before  # the caller gets nothing
    assert book(ch, usdc, orders, account, eth_market, trader, keeper) == {
        **before,
        "wallet": before["wallet"] + FEE,  # the owner does
        "escrow": before["escrow"] - FEE,
        "open_orders": 0,
    }
    assert no_order(orders, account, eth_market)
    assert cancelled(orders, receipt) == (
        account,
        eth_market,
        -7 * WAD,
        attacker.address,
        FEE,
        trader.address,
        "orders: expired",
    )
    with ape.reverts("orders: no order"):
        orders.cancel_order(account, eth_market, sender=attacker)
    with ape.reverts("orders: no order"):
        orders.execute_order(account, eth_market, sender=attacker)


def test_cancel__no_round_at_expiry_by_its_owner__refunds_the_owner(orders, usdc, ch, account, trader, eth_market, chain):
    """The owner's own cancel at expiry is refunded too (the refund is paid by cancel_order for
    every caller, not only for a third party)."""
    _, executable_at = commit(orders, trader, eth_market, -7 * WAD, 3)
    move_clock_to(chain, executable_at + EXPIRY)
    wallet, escrow = usdc.balanceOf(trader), usdc.balanceOf(orders)
    receipt = orders.cancel_order(account, eth_market, sender=trader)
    assert cancelled(orders, receipt)[3:] == (trader.address, FEE, trader.address, "orders: expired")
    assert no_order(orders, account, eth_market)
    assert usdc.balanceOf(orders) == escrow - FEE
    assert usdc.balanceOf(trader) == wallet + FEE


@pytest.mark.parametrize("when", ["at once", "after expiry"])
def test_cancel__round_passed_by_a_third_party__fee_to_insurance(
    protocol, orders, usdc, ch, account, trader, attacker, keeper, deployer, eth_market, chain, when
):
    """Once a newer round replaced the order's round, anyone may cancel it at any time: the fee
    goes to the insurance fund, not to the caller nor back to the owner."""
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    publish(protocol, deployer, chain, ETH, executable_at)
    with ape.reverts("orders: not expired"):  # fillable: not yet
        orders.cancel_order(account, eth_market, sender=attacker)
    publish(protocol, deployer, chain, ETH - 10**8, executable_at + 5)
    if when == "after expiry":
        move_clock_to(chain, executable_at + EXPIRY + 1)
        publish(protocol, deployer, chain, ETH, executable_at + EXPIRY + 1)  # still passed, and fresh
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)
    attacker_before = usdc.balanceOf(attacker)
    receipt = orders.cancel_order(account, eth_market, sender=attacker)
    assert cancelled(orders, receipt) == (
        account,
        eth_market,
        10 * WAD,
        attacker.address,
        FEE,
        ch.address,
        "orders: round passed",
    )
    assert usdc.balanceOf(attacker) == attacker_before
    assert book(ch, usdc, orders, account, eth_market, trader, keeper) == forfeited(before)
    assert no_order(orders, account, eth_market)


def test_cancel__fillable_after_expiry__refused_and_a_keeper_fills_it(
    protocol, orders, usdc, ch, account, trader, attacker, keeper, deployer, eth_market, chain
):
    """With the expiry at its minimum (60 s, below the feed's 3,600 s heartbeat), an order whose
    first round came and is still the newest cannot be cancelled after its expiry by anyone, its
    owner included ("orders: not expired"), nor replaced ("orders: order pending"): it can still
    fill, and a keeper fills it at that round."""
    protocol.configurator.set_order_parameters(DELAY, 60, FEE, sender=deployer)
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    price = publish(protocol, deployer, chain, ETH + 10**8, executable_at + 5)
    move_clock_to(chain, executable_at + 60 + 30)
    chain.mine()
    assert protocol.oracle.round_price(protocol.tokens["WETH"], executable_at) == price  # fillable
    stored = tuple(orders.order(account, eth_market))
    for who in (trader, attacker, keeper):
        with ape.reverts("orders: not expired"):
            orders.cancel_order(account, eth_market, sender=who)
    with ape.reverts("orders: order pending"):
        orders.commit_order(eth_market, -10 * WAD, 0, 0, sender=trader)
    assert tuple(orders.order(account, eth_market)) == stored
    fill = expected_fill(ch, eth_market, price, 10 * WAD)
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)
    receipt = orders.execute_order(account, eth_market, sender=keeper)
    assert receipt.events.filter(orders.OrderFilled)[0].fill_price == fill
    after = book(ch, usdc, orders, account, eth_market, trader, keeper)
    assert (after["size"], after["keeper"], after["insurance"]) == (10 * WAD, before["keeper"] + FEE, before["insurance"])


def test_cancel__no_order__reverts(orders, account, attacker, eth_market):
    with ape.reverts("orders: no order"):
        orders.cancel_order(account, eth_market, sender=attacker)


# ---------------------------------------------------------------- open_orders and withdrawals


def test_open_orders__counts_each_accounts_live_orders(
    protocol, orders, usdc, ch, make_account, account, trader, keeper, attacker, deployer, eth_market, btc_market, chain
):
    """One per (account, market) committed; down by one for each order filled, cancelled at
    execute, cancelled by anyone; unchanged by an execute that finds no round yet or a refused
    cancel."""
    sub1 = make_account(trader, 10_000, subaccount=1)
    _, eth_at = commit(orders, trader, eth_market, 1 * WAD)
    assert (orders.open_orders(account), orders.open_orders(sub1)) == (1, 0)
    _, btc_at = commit(orders, trader, btc_market, 1 * WAD)
    _, sub_at = commit(orders, trader, eth_market, 1 * WAD, 0, subaccount=1)
    assert (orders.open_orders(account), orders.open_orders(sub1)) == (2, 1)
    with ape.reverts("oracle: no round yet"):
        orders.execute_order(account, eth_market, sender=keeper)
    with ape.reverts("orders: not expired"):
        orders.cancel_order(account, btc_market, sender=attacker)
    with ape.reverts("orders: order pending"):
        orders.commit_order(eth_market, 2 * WAD, 0, 0, sender=trader)
    assert (orders.open_orders(account), orders.open_orders(sub1)) == (2, 1)
    publish(protocol, deployer, chain, ETH, sub_at)  # the first ETH round for both ETH orders
    assert orders.execute_order(account, eth_market, sender=keeper).events.filter(orders.OrderFilled)
    assert (orders.open_orders(account), orders.open_orders(sub1)) == (1, 1)
    publish(protocol, deployer, chain, ETH, sub_at + 5)
    assert cancelled(orders, orders.execute_order(sub1, eth_market, sender=keeper))[6] == "orders: round passed"
    assert (orders.open_orders(account), orders.open_orders(sub1)) == (1, 0)
    move_clock_to(chain, btc_at + EXPIRY)  # no BTC round at all
    assert cancelled(orders, orders.cancel_order(account, btc_market, sender=attacker))[6] == "orders: expired"
    assert (orders.open_orders(account), orders.open_orders(sub1)) == (0, 0)
    assert eth_at < sub_at


@pytest.mark.parametrize("end", ["filled", "round passed", "cancelled", "expired"])
def test_withdraw__refused_while_an_order_is_open(
    protocol, orders, usdc, ch, make_account, account, trader, keeper, attacker, deployer, eth_market, chain, end
):
    """While the account has an order open it cannot withdraw, not even one unit; it can still
    deposit, and the owner's other subaccount withdraws freely. Once the order is filled or
    cancelled (at execute, by anyone, or refunded at expiry) the withdrawal goes through."""
    other = make_account(trader, 1_000, subaccount=1)
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    settlement = ch.settlement(account)
    with ape.reverts("clearinghouse: order pending"):
        ch.withdraw(usdc, 1, 0, sender=trader)
    usdc.approve(ch, 5 * USDC, sender=trader)
    ch.deposit(usdc, 5 * USDC, 0, sender=trader)
    assert ch.settlement(account) == settlement + 5 * USDC
    ch.withdraw(usdc, 1_000 * USDC, 1, sender=trader)
    assert ch.settlement(other) == 0

    if end == "expired":
        move_clock_to(chain, executable_at + EXPIRY)
        orders.cancel_order(account, eth_market, sender=attacker)
    else:
        publish(protocol, deployer, chain, ETH, executable_at)
        if end == "filled":
            assert orders.execute_order(account, eth_market, sender=keeper).events.filter(orders.OrderFilled)
        else:
            with ape.reverts("clearinghouse: order pending"):
                ch.withdraw(usdc, 1, 0, sender=trader)
            publish(protocol, deployer, chain, ETH, executable_at + 5)
            if end == "round passed":
                orders.execute_order(account, eth_market, sender=keeper)
            else:
                orders.cancel_order(account, eth_market, sender=attacker)
    assert orders.open_orders(account) == 0
    wallet = usdc.balanceOf(trader)
    ch.withdraw(usdc, 5 * USDC, 0, sender=trader)
    assert usdc.balanceOf(trader) == wallet + 5 * USDC


# ---------------------------------------------------------------- the router's phase rule


@pytest.mark.parametrize("how", ["execute", "cancel"])
def test_round_price__phase_bits_and_no_readable_predecessor__counts_as_passed(
    protocol, orders, usdc, ch, account, trader, keeper, attacker, deployer, eth_market, chain, how
):
    """A proxy's first round of a new phase, (1 << 64) | 1: getRoundData of the id before it
    fails, so the router cannot tell whether an earlier round (in the old phase) was the order's
    first. It counts as passed (round_price 0): executing cancels "orders: round passed" and
    anyone may cancel the order at once, the fee going to the insurance fund."""
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    publish_round(protocol, deployer, chain, PHASE | 1, ETH + 10**8, executable_at + 5)
    weth = protocol.tokens["WETH"]
    assert protocol.feeds["WETH"].latestRoundData()[0] == PHASE | 1
    assert protocol.oracle.price(weth) == (ETH + 10**8) * FEED_TO_WAD  # the round itself is priced
    assert protocol.oracle.round_price(weth, executable_at) == 0
    before = book(ch, usdc, orders, account, eth_market, trader, keeper)
    caller = keeper if how == "execute" else attacker
    if how == "execute":
        receipt = orders.execute_order(account, eth_market, sender=keeper)
    else:
        receipt = orders.cancel_order(account, eth_market, sender=attacker)
    assert cancelled(orders, receipt) == (
        account,
        eth_market,
        10 * WAD,
        caller.address,
        FEE,
        ch.address,
        "orders: round passed",
    )
    assert book(ch, usdc, orders, account, eth_market, trader, keeper) == forfeited(before)


def test_round_price__phase_bits_with_a_readable_predecessor__the_usual_rule(
    protocol, orders, ch, account, trader, keeper, deployer, eth_market, chain
):
    """In the new phase the rule is the usual one once the round before the newest can be read:
    (1 << 64) | 1 dated before executable_at, (1 << 64) | 2 after it is the order's first round
    and fills; a third round makes it passed."""
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    publish_round(protocol, deployer, chain, PHASE | 1, ETH, executable_at - 30)
    price = publish(protocol, deployer, chain, ETH + 10**8, executable_at + 5)  # (1 << 64) | 2
    weth = protocol.tokens["WETH"]
    assert protocol.feeds["WETH"].latestRoundData()[0] == PHASE | 2
    assert protocol.oracle.round_price(weth, executable_at) == price
    fill = expected_fill(ch, eth_market, price, 10 * WAD)
    assert orders.execute_order(account, eth_market, sender=keeper).events.filter(orders.OrderFilled)[0].fill_price == fill
    publish(protocol, deployer, chain, ETH, executable_at + 10)  # (1 << 64) | 3
    assert protocol.oracle.round_price(weth, executable_at) == 0


def test_round_price__plain_id_and_no_readable_predecessor__counts_as_the_first(
    protocol, orders, ch, account, trader, keeper, deployer, eth_market, chain
):
    """A round id without phase bits whose predecessor cannot be read (here 100 ids past the
    newest, the ids between never published) had no round before it: it is the first, and the
    order fills at it."""
    feed = protocol.feeds["WETH"]
    _, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    gap = int(feed.latest_round()) + 100
    assert gap >> 64 == 0
    publish_round(protocol, deployer, chain, gap, ETH + 10**8, executable_at + 5)
    with ape.reverts("No data present"):
        feed.getRoundData(gap - 1)
    price = (ETH + 10**8) * FEED_TO_WAD
    assert protocol.oracle.round_price(protocol.tokens["WETH"], executable_at) == price
    fill = expected_fill(ch, eth_market, price, 10 * WAD)
    receipt = orders.execute_order(account, eth_market, sender=keeper)
    assert receipt.events.filter(orders.OrderFilled)[0].fill_price == fill
    assert ch.positions(account, eth_market).size == 10 * WAD


# ---------------------------------------------------------------- Configurator.set_order_parameters


@pytest.mark.parametrize("params", [(1, 60, 0), (3_600, WEEK, 1_000 * USDC), (1, WEEK, 1_000 * USDC), (3_600, 60, 0)])
def test_set_order_parameters__bounds_accepted(protocol, orders, deployer, params):
    receipt = protocol.configurator.set_order_parameters(*params, sender=deployer)
    assert (orders.settlement_delay(), orders.expiry(), orders.execution_fee()) == params
    [event] = receipt.events.filter(protocol.configurator.OrderParametersSet)
    assert (event.settlement_delay, event.expiry, event.execution_fee) == params


@pytest.mark.parametrize(
    "params, reason",
    [
        ((0, EXPIRY, FEE), "configurator: bad settlement delay"),
        ((3_601, EXPIRY, FEE), "configurator: bad settlement delay"),
        ((DELAY, 59, FEE), "configurator: bad order expiry"),
        ((DELAY, WEEK + 1, FEE), "configurator: bad order expiry"),
        ((DELAY, EXPIRY, 1_000 * USDC + 1), "configurator: bad execution fee"),
    ],
)
def test_set_order_parameters__one_past_a_bound__reverts(protocol, orders, deployer, params, reason):
    with ape.reverts(reason):
        protocol.configurator.set_order_parameters(*params, sender=deployer)
    assert (orders.settlement_delay(), orders.expiry(), orders.execution_fee()) == (DELAY, EXPIRY, FEE)


def test_set_order_parameters__owner_only(configurator, protocol, orders, attacker, guardian, deployer, ch):
    configurator.set_guardian(guardian, sender=deployer)
    for who in (attacker, guardian):
        with ape.reverts("ownable: caller is not the owner"):
            protocol.configurator.set_order_parameters(DELAY, EXPIRY, FEE, sender=who)
    for who in (attacker, deployer):  # only through the Configurator, which checks the bounds
        with ape.reverts("orders: not configurator"):
            orders.apply_order_parameters(0, 0, 10**30, sender=who)
    assert (orders.settlement_delay(), orders.expiry(), orders.execution_fee()) == (DELAY, EXPIRY, FEE)


def test_set_order_parameters__a_placed_order_keeps_its_executable_at_and_fee(
    protocol, orders, usdc, ch, make_account, account, trader, keeper, deployer, eth_market, chain
):
    make_account(trader, 10_000, subaccount=1)
    receipt, executable_at = commit(orders, trader, eth_market, 10 * WAD)
    assert executable_at == receipt.timestamp + DELAY
    protocol.configurator.set_order_parameters(3_600, EXPIRY, 7 * USDC, sender=deployer)
    assert tuple(orders.order(account, eth_market)) == (10 * WAD, 0, executable_at, FEE, 0)
    # a new order takes the new delay and fee
    later, later_at = commit(orders, trader, eth_market, 1 * WAD, 0, subaccount=1)
    assert tuple(orders.order(account_id(trader, 1), eth_market)) == (1 * WAD, 0, later.timestamp + 3_600, 7 * USDC, 0)
    # the first fills at the first round at its old executable_at, paying its old fee
    publish(protocol, deployer, chain, ETH, executable_at)
    keeper_before = usdc.balanceOf(keeper)
    assert orders.execute_order(account, eth_market, sender=keeper).events.filter(orders.OrderFilled)
    assert usdc.balanceOf(keeper) == keeper_before + FEE
    assert ch.positions(account, eth_market).size == 10 * WAD
