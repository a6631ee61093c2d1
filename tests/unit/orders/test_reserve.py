"""The open-interest reserve (issue 9, item 5; GMX v2's reserve factor, pool-wide): each market's
larger side needs capital of its USD value over the market's reserve factor, and the needs of
every market together must stay within the LiquidityPool's value. An order that adds risk past
it is refused at commit; from its commit to its end it holds the open interest it adds, so an
LP cannot withdraw the capital it was checked against. Checked at the limit to the wei against
marginsim.risk's mirror, for opens, adds, flips, reductions, two markets and placed orders, with
the Configurator's bounds and the pool's `reserve` and `held` views."""

from dataclasses import replace

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, place, trade_now, withdraw_now
from marginsim.protocol import MarketConfig, account_id, list_market
from tests.conftest import WAD

FACTOR = WAD // 100  # 1% of a $10M pool: a $100k side, 50 ETH at $2,000
S2W = 10**12


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, ch, configurator, usdc, seeded_pool, make_account, deployer, trader, other_trader, lp):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once."""


@pytest.fixture(scope="module", autouse=True)
def _reserve(protocol, configurator, deployer, _module_fixtures_first):
    """Both markets at 1%, and without funding: an order fills a settlement delay after it is
    placed, and funding accrued meanwhile would move the pool's value the check reads."""
    for config in protocol.config.markets:
        market = protocol.markets[config.name]
        params = replace(config, max_funding_rate=0).params(protocol.market_asset(config.name).address)
        configurator.set_market(market, params, sender=deployer)
        configurator.set_reserve_factor(market, FACTOR, sender=deployer)


@pytest.fixture(scope="module")
def pool(protocol):
    return protocol.pool


def price_of(protocol, market="ETH-PERP") -> int:
    return int(protocol.oracle.price(protocol.market_asset(market)))


def largest_side(protocol, market_id, market="ETH-PERP") -> int:
    """The largest side `market_id` may have now (the others as they are), and a check that one
    base unit more needs more than the pool's value, rounded as the contracts round."""
    pool, price = protocol.pool, price_of(protocol, market)
    value, need_others = (int(v) for v in pool.reserve(market_id, 0))
    side = risk.largest_reserved_side(value, need_others, FACTOR, price)
    assert need_others + risk.reserve_need([(side, price, FACTOR)]) <= value
    assert need_others + risk.reserve_need([(side + 1, price, FACTOR)]) > value
    return side


# ---------------------------------------------------------------- the Configurator


def test_set_reserve_factor__sets_the_pool_and_logs(configurator, pool, eth_market, deployer):
    tx = configurator.set_reserve_factor(eth_market, WAD // 4, sender=deployer)
    assert int(pool.reserve_factor(eth_market)) == WAD // 4
    events = tx.events.filter(configurator.ReserveFactorSet)
    assert len(events) == 1 and int(events[0].market) == eth_market and int(events[0].reserve_factor) == WAD // 4
    configurator.set_reserve_factor(eth_market, 100 * WAD, sender=deployer)  # the bound is inclusive
    assert int(pool.reserve_factor(eth_market)) == 100 * WAD


def test_set_reserve_factor__out_of_bounds__reverts(configurator, pool, eth_market, deployer):
    with ape.reverts("configurator: bad reserve factor"):
        configurator.set_reserve_factor(eth_market, 100 * WAD + 1, sender=deployer)
    assert int(pool.reserve_factor(eth_market)) == FACTOR


def test_set_reserve_factor__zero__turns_it_off(ch, configurator, pool, protocol, make_account, eth_market, deployer, trader):
    """Factor 0: the market's sides need no capital (only the base-unit cap holds)."""
    configurator.set_reserve_factor(eth_market, 0, sender=deployer)
    assert int(pool.reserve_factor(eth_market)) == 0
    make_account(trader, 1_000_000)
    trade_now(ch, eth_market, 2_000 * WAD, sender=trader)  # $4M: at 1% it would need $400M
    value, need = (int(v) for v in pool.reserve(0, 0))
    assert need == 0 < value
    assert risk.largest_reserved_side(value, 0, 0, price_of(protocol)) == 2**96 - 1


def test_set_reserve_factor__unknown_market__reverts(ch, configurator, deployer):
    for market in (0, int(ch.market_count()) + 1):
        with ape.reverts("configurator: unknown market"):
            configurator.set_reserve_factor(market, WAD, sender=deployer)


def test_set_reserve_factor__not_owner__reverts(configurator, eth_market, trader):
    with ape.reverts("ownable: caller is not the owner"):
        configurator.set_reserve_factor(eth_market, WAD, sender=trader)


def test_apply_reserve_factor__not_configurator__reverts(pool, eth_market, deployer):
    with ape.reverts("pool: not configurator"):
        pool.apply_reserve_factor(eth_market, WAD, sender=deployer)


def test_reserve_factor__unset__is_one(ch, configurator, pool, protocol, deployer):
    """A market listed without a factor (straight through the Configurator) reads 1.0;
    marginsim.protocol.list_market sets the config's."""
    eth = protocol.market_asset("ETH-PERP")
    configurator.list_market(MarketConfig("ETH2-PERP", "WETH").params(eth.address), sender=deployer)
    assert int(pool.reserve_factor(int(ch.market_count()))) == WAD
    market = list_market(ch, configurator, MarketConfig("ETH3-PERP", "WETH", reserve_factor=0.3), eth.address, sender=deployer)
    assert market == int(ch.market_count()) and int(pool.reserve_factor(market)) == 3 * WAD // 10


# ---------------------------------------------------------------- Orders


def test_open__up_to_the_limit_fills__one_unit_more_is_refused(ch, protocol, make_account, eth_market, trader, other_trader):
    make_account(trader, 100_000)
    make_account(other_trader, 100_000)
    side = largest_side(protocol, eth_market)
    assert side == 50 * WAD  # $100k at $2,000, exactly: 1% of the $10M pool
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, eth_market, side + 1, sender=trader)
    assert int(ch.positions(account_id(trader), eth_market).size) == 0
    trade_now(ch, eth_market, side - 10 * WAD, sender=trader)
    # adding: the side after is its open interest plus the order, against the pool's value now
    # (the fee and the premium the long paid raised it)
    left = largest_side(protocol, eth_market) - int(ch.market_state(eth_market).long_oi)
    assert left > 10 * WAD
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, eth_market, left + 1, sender=other_trader)
    trade_now(ch, eth_market, left, sender=other_trader)
    value, need = (int(v) for v in protocol.pool.reserve(0, 0))
    long_oi = int(ch.market_state(eth_market).long_oi)
    assert need == risk.reserve_need([(long_oi, price_of(protocol), FACTOR)]) <= value


def test_reserve_view__equals_the_mirror_at_an_awkward_price(
    ch, protocol, configurator, make_account, eth_market, set_price, deployer, trader
):
    """At a price and size whose product is not a whole number of wei of USD, the side's value
    rounds up, and so does the capital it needs, in the pool's view and in marginsim.risk."""
    set_price("WETH", 1_999.98765431)
    make_account(trader, 100_000)
    trade_now(ch, eth_market, -(12 * WAD + 345_678_901), sender=trader)
    price = price_of(protocol)
    short_oi = int(ch.market_state(eth_market).short_oi)
    assert short_oi * price % WAD != 0
    _, need = (int(v) for v in protocol.pool.reserve(0, 0))
    assert need == risk.reserve_need([(short_oi, price, FACTOR)]) == (short_oi * price // WAD + 1) * 100
    # as if the side were one ETH larger
    _, need = (int(v) for v in protocol.pool.reserve(eth_market, short_oi + WAD))
    assert need == risk.reserve_need([(short_oi + WAD, price, FACTOR)])
    # at a factor that does not divide the value (3%), the need rounds up too
    configurator.set_reserve_factor(eth_market, 3 * WAD // 100, sender=deployer)
    _, need = (int(v) for v in protocol.pool.reserve(0, 0))
    assert (
        need
        == risk.reserve_need([(short_oi, price, 3 * WAD // 100)])
        == risk.ceil_div((short_oi * price // WAD + 1) * WAD, 3 * WAD // 100)
    )
    assert (short_oi * price // WAD + 1) * WAD % (3 * WAD // 100) != 0


def test_two_markets_share_the_pool(ch, protocol, make_account, eth_market, btc_market, trader, other_trader):
    """A BTC side takes part of the capital, so ETH may use only the rest: the markets share one
    pool (the review's finding 1: per market, two markets backed twice the pool)."""
    make_account(trader, 200_000)
    make_account(other_trader, 200_000)
    alone = largest_side(protocol, eth_market)
    btc = largest_side(protocol, btc_market, "BTC-PERP") // 2
    trade_now(ch, btc_market, btc, sender=other_trader)
    side = largest_side(protocol, eth_market)
    assert side < alone * 6 // 10  # half the room went to BTC
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, eth_market, side + 1, sender=trader)
    trade_now(ch, eth_market, side, sender=trader)


def test_short_side_is_its_own(ch, protocol, make_account, eth_market, trader, other_trader):
    """Only the larger side of a market counts: a short up to the long's size needs nothing more."""
    make_account(trader, 100_000)
    make_account(other_trader, 100_000)
    trade_now(ch, eth_market, largest_side(protocol, eth_market), sender=trader)
    trade_now(ch, eth_market, -10 * WAD, sender=other_trader)
    assert int(ch.positions(account_id(other_trader), eth_market).size) == -10 * WAD


def test_flip__counts_the_side_it_leaves(ch, protocol, make_account, eth_market, trader, other_trader):
    """A long flipping short joins the short side (it holds only the side it joins: the long it
    leaves still counts until the fill); over the reserve on the larger side: refused at commit,
    the long kept."""
    make_account(trader, 200_000)
    make_account(other_trader, 100_000)
    trade_now(ch, eth_market, 20 * WAD, sender=trader)
    trade_now(ch, eth_market, -(largest_side(protocol, eth_market) - 5 * WAD), sender=other_trader)
    st = ch.market_state(eth_market)
    room = largest_side(protocol, eth_market) - int(st.short_oi)
    assert risk.order_growth(20 * WAD, -(20 * WAD + room + 1)) == (0, room + 1)
    assert risk.larger_side_after(int(st.long_oi), int(st.short_oi), (0, 0), 20 * WAD, -(20 * WAD + room + 1)) == (
        int(st.short_oi),
        int(st.short_oi) + room + 1,
    )
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, eth_market, -(20 * WAD + room + 1), sender=trader)
    assert int(ch.positions(account_id(trader), eth_market).size) == 20 * WAD
    trade_now(ch, eth_market, -(20 * WAD + room), sender=trader)
    assert int(ch.positions(account_id(trader), eth_market).size) == -room


def test_reduction__fills_over_the_reserve(ch, configurator, make_account, eth_market, deployer, trader):
    """A reserve lowered below today's open interest stops new risk, never a reduction."""
    make_account(trader, 100_000)
    trade_now(ch, eth_market, 40 * WAD, sender=trader)
    configurator.set_reserve_factor(eth_market, FACTOR // 10, sender=deployer)
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, eth_market, 1, sender=trader)
    trade_now(ch, eth_market, -30 * WAD, sender=trader)
    trade_now(ch, eth_market, -10 * WAD, sender=trader)
    assert int(ch.positions(account_id(trader), eth_market).size) == 0


# ---------------------------------------------------------------- the LiquidityPool


def test_pool_withdrawal__stops_at_the_reserve(ch, protocol, make_account, eth_market, trader, lp, chain):
    pool = protocol.pool
    chain.pending_timestamp += 901  # past the LP's cooldown
    make_account(trader, 100_000)
    trade_now(ch, eth_market, 40 * WAD + 1, sender=trader)  # one wei: the need is not a whole token unit
    value, need = (int(v) for v in pool.reserve(0, 0))
    assert need == risk.reserve_need([(int(ch.market_state(eth_market).long_oi), price_of(protocol), FACTOR)])
    headroom = risk.reserve_headroom(value, need, S2W)
    assert headroom == (value - need) // S2W and (value - need) % S2W != 0
    assert int(pool.withdrawable(lp)) == headroom
    assert int(pool.redeemable(lp)) == int(pool.convertToShares(headroom))
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, headroom + 1, lp, lp, sender=lp)
    withdraw_now(pool, headroom, lp, lp, sender=lp)
    value, need = (int(v) for v in pool.reserve(0, 0))
    assert 0 <= value - need < S2W  # at the bound: one more token unit would cross it
    assert int(pool.withdrawable(lp)) == 0
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, 1, lp, lp, sender=lp)


# ---------------------------------------------------------------- holds: a placed order counts from its commit


def held(protocol, market_id) -> tuple[int, int]:
    return tuple(int(v) for v in protocol.pool.held(market_id))


def test_hold__a_placed_order_counts_until_it_fills(ch, protocol, make_account, eth_market, trader, other_trader, keeper):
    """The order at the limit holds its side: one more unit on that side is refused at its
    commit, the other side may grow up to it (the larger side does not grow), and the fill turns
    the hold into open interest, the need unchanged."""
    make_account(trader, 100_000)
    make_account(trader, 1_000, subaccount=1)
    make_account(other_trader, 100_000)
    side, price = largest_side(protocol, eth_market), price_of(protocol)
    place(ch, eth_market, side, sender=trader)
    assert held(protocol, eth_market) == (side, 0)
    value, need = (int(v) for v in protocol.pool.reserve(0, 0))
    assert need == risk.reserve_need([(side, price, FACTOR)]) <= value
    assert largest_side(protocol, eth_market) == side  # the hold is the larger side now
    with ape.reverts("orders: open interest reserve"):
        place(ch, eth_market, 1, subaccount=1, sender=trader)
    place(ch, eth_market, -side, sender=other_trader)
    assert held(protocol, eth_market) == (side, side)
    fill_now(ch, account_id(trader), eth_market, keeper=keeper)
    protocol.orders.execute_order(account_id(other_trader), eth_market, sender=keeper)  # the same round
    assert held(protocol, eth_market) == (0, 0)
    st = ch.market_state(eth_market)
    assert (int(st.long_oi), int(st.short_oi)) == (side, side)
    assert int(protocol.pool.reserve(0, 0)[1]) == need


def test_hold__an_lp_cannot_withdraw_what_a_placed_order_was_checked_against(
    ch, protocol, make_account, eth_market, trader, lp, keeper, chain
):
    """The review's lever (#2): an order that fits at its commit, then its round public; an LP
    who withdrew now would have had the keeper cancel it. The hold is counted: the withdrawal
    stops short of it, and the order fills."""
    pool = protocol.pool
    chain.pending_timestamp += 901  # past the LP's cooldown
    make_account(trader, 100_000)
    side = largest_side(protocol, eth_market)
    value, need = (int(v) for v in pool.reserve(0, 0))
    assert int(pool.withdrawable(lp)) == risk.reserve_headroom(value, need, S2W) > 0
    place(ch, eth_market, side - 5 * WAD, sender=trader)
    value, need = (int(v) for v in pool.reserve(0, 0))
    headroom = risk.reserve_headroom(value, need, S2W)
    assert int(pool.withdrawable(lp)) == headroom
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, headroom + 1, lp, lp, sender=lp)
    receipt = fill_now(ch, account_id(trader), eth_market, keeper=keeper)
    assert receipt.events.filter(protocol.orders.OrderFilled)
    assert int(ch.positions(account_id(trader), eth_market).size) == side - 5 * WAD


@pytest.mark.parametrize("end", ["round passed", "refused at the fill", "replaced"])
def test_hold__released_when_the_order_ends(ch, protocol, make_account, eth_market, trader, keeper, set_price, chain, end):
    """Cancelled once its round has passed, refused by the Clearinghouse at its fill, or replaced
    by a new order once it can no longer fill: the hold goes with it (the new order holds its
    own)."""
    make_account(trader, 100_000)
    account = account_id(trader)
    place(ch, eth_market, 30 * WAD, 1 if end == "refused at the fill" else 0, sender=trader)
    assert held(protocol, eth_market) == (30 * WAD, 0)
    if end == "refused at the fill":
        receipt = fill_now(ch, account, eth_market, keeper=keeper)
        assert receipt.events.filter(protocol.orders.OrderCancelled)[0].reason == "clearinghouse: price limit"
        assert held(protocol, eth_market) == (0, 0)
        return
    chain.pending_timestamp += int(protocol.orders.settlement_delay())
    set_price("WETH", 2_000)  # the order's round ...
    set_price("WETH", 2_000)  # ... replaced by a newer one before anyone executed it
    if end == "round passed":
        protocol.orders.cancel_order(account, eth_market, sender=keeper)
        assert held(protocol, eth_market) == (0, 0)
    else:
        place(ch, eth_market, -10 * WAD, sender=trader)
        assert held(protocol, eth_market) == (0, 10 * WAD)


def test_hold__a_flip_holds_the_side_it_joins(ch, protocol, make_account, eth_market, trader):
    make_account(trader, 100_000)
    trade_now(ch, eth_market, 20 * WAD, sender=trader)
    place(ch, eth_market, -30 * WAD, sender=trader)
    assert held(protocol, eth_market) == risk.order_growth(20 * WAD, -30 * WAD) == (0, 10 * WAD)
    st = ch.market_state(eth_market)
    assert (int(st.long_oi), int(st.short_oi)) == (20 * WAD, 0)  # the long it leaves counts until the fill


def test_hold__a_reduction_holds_nothing(ch, protocol, make_account, eth_market, trader):
    make_account(trader, 100_000)
    trade_now(ch, eth_market, 20 * WAD, sender=trader)
    place(ch, eth_market, -20 * WAD, sender=trader)
    assert held(protocol, eth_market) == (0, 0)


def test_apply_hold__not_orders__reverts(protocol, eth_market, deployer):
    with ape.reverts("pool: not orders"):
        protocol.pool.apply_hold(eth_market, 1, 0, True, sender=deployer)
