"""Clearinghouse.trade: position lifecycle, premium and fee, every refusal, pause and reduce-only,
funding, and the promise that a round trip creates no value."""

import dataclasses

import ape
import pytest

from marginsim import risk
from marginsim.orders import trade_now
from tests.conftest import USDC, WAD

USDC_TO_WAD = 10**12
DAY = 86_400

# An attacker contract that deposits, opens and closes in one transaction: the same block, the
# same oracle price, no funding in between. Compiled from source here because this suite may
# not add files under contracts/testing/.
# ---------------------------------------------------------------- mirrors of risk.vy


def _trunc_div(a, b):
    """Vyper's signed `//`: rounds toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _ceil_div(a, b):
    return 0 if a == 0 else (a - 1) // b + 1


def expected_fill(price, skew, size_delta, skew_scale):
    return risk.fill_price(price, skew, size_delta, skew_scale)


def expected_fee(size_delta, fill, fee_rate):
    notional = _ceil_div(abs(size_delta) * fill, WAD)
    return _ceil_div(_ceil_div(notional * fee_rate, WAD), USDC_TO_WAD)


def expected_funding_step(rate, price, elapsed):
    numerator = rate * price * elapsed
    denominator = WAD * DAY
    step = _trunc_div(numerator, denominator)
    if numerator % denominator != 0:
        step += 1 if numerator > 0 else -1
    return step


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(
    protocol, ch, configurator, usdc, fund, seeded_pool, make_account, set_price, deployer, trader, other_trader, attacker
):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once instead of rebasing."""


@pytest.fixture(scope="module")
def eth_config(protocol):
    return next(m for m in protocol.config.markets if m.name == "ETH-PERP")


@pytest.fixture(scope="module")
def weth(protocol):
    return protocol.tokens["WETH"]


@pytest.fixture
def trade(ch, usdc):
    """Trade and check custody afterwards; returns the Trade event."""

    def trade(owner, market, size_delta, limit_price=0, subaccount=0):
        tx = trade_now(ch, market, size_delta, limit_price, subaccount, sender=owner)
        assert usdc.balanceOf(ch) == ch.settlement_held()
        [event] = [e for e in tx.events if e.event_name == "Trade"]
        return event

    return trade


@pytest.fixture
def set_eth_market(protocol, deployer, eth_config, eth_market, weth):
    """Re-set ETH-PERP, through the Configurator, with some fields of its configuration changed."""

    def set_eth_market(**changes):
        protocol.configurator.set_market(
            eth_market, dataclasses.replace(eth_config, **changes).params(weth.address), sender=deployer
        )

    return set_eth_market


def skew_of(ch, market):
    state = ch.market_state(market)
    return state.long_oi - state.short_oi


# ---------------------------------------------------------------- lifecycle


def test_trade__open_long__position_oi_fee_and_event(protocol, ch, make_account, trade, trader, eth_market, weth):
    account = make_account(trader, collateral_usd=10_000)
    price = protocol.oracle.price(weth)
    pool_before = ch.pool_balance()
    size = 2 * WAD

    event = trade(trader, eth_market, size)

    params = ch.markets(eth_market)
    fill = expected_fill(price, 0, size, params.skew_scale)
    fee = expected_fee(size, fill, params.fee)
    assert (event.account, event.market, event.size_delta, event.new_size) == (account, eth_market, size, size)
    assert (event.fill_price, event.fee, event.realised_pnl) == (fill, fee, 0)
    pos = ch.positions(account, eth_market)
    assert pos.size == size
    assert pos.cost == _ceil_div(size * fill, WAD)  # funding index is still zero
    state = ch.market_state(eth_market)
    assert (state.long_oi, state.short_oi, state.total_cost) == (size, 0, pos.cost)
    assert ch.market_mask(account) == 1 << eth_market
    assert ch.settlement(account) == 10_000 * USDC - fee
    assert ch.pool_balance() == pool_before + fee


def test_trade__open_short__fills_below_oracle(protocol, ch, make_account, trade, trader, eth_market, weth):
    account = make_account(trader, collateral_usd=10_000)
    event = trade(trader, eth_market, -2 * WAD)
    assert event.fill_price < protocol.oracle.price(weth)
    assert ch.positions(account, eth_market).size == -2 * WAD
    state = ch.market_state(eth_market)
    assert (state.long_oi, state.short_oi) == (0, 2 * WAD)
    assert ch.market_mask(account) == 1 << eth_market


def test_trade__increase__sizes_and_costs_add(ch, make_account, trade, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000)
    trade(trader, eth_market, 2 * WAD)
    cost_before = ch.positions(account, eth_market).cost

    event = trade(trader, eth_market, 3 * WAD)

    index = ch.market_state(eth_market).funding_index  # accrued by the trade itself
    pos = ch.positions(account, eth_market)
    assert pos.size == event.new_size == 5 * WAD
    assert pos.cost == cost_before + _ceil_div(3 * WAD * (event.fill_price - index), WAD)
    assert event.realised_pnl == 0
    assert ch.market_state(eth_market).long_oi == 5 * WAD


def test_trade__reduce_after_price_rise__realises_profit(ch, make_account, trade, set_price, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000)
    trade(trader, eth_market, 5 * WAD)
    set_price("WETH", 2_100)
    settlement_before, pool_before = ch.settlement(account), ch.pool_balance()
    cost_before = ch.positions(account, eth_market).cost

    event = trade(trader, eth_market, -2 * WAD)

    index = ch.market_state(eth_market).funding_index  # accrued by the trade itself

    cost_removed = _ceil_div(cost_before * 2, 5)
    realised_wad = (2 * WAD * (event.fill_price - index)) // WAD - cost_removed
    assert event.realised_pnl == realised_wad // USDC_TO_WAD > 190 * USDC  # ~ 2 * $100 less premium
    pos = ch.positions(account, eth_market)
    assert pos.size == event.new_size == 3 * WAD
    assert pos.cost == cost_before - cost_removed
    assert ch.settlement(account) == settlement_before + event.realised_pnl - event.fee
    assert ch.pool_balance() == pool_before - event.realised_pnl + event.fee


def test_trade__close__clears_position_mask_and_oi(ch, make_account, trade, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000)
    trade(trader, eth_market, 5 * WAD)

    event = trade(trader, eth_market, -5 * WAD)

    assert event.new_size == 0
    assert ch.positions(account, eth_market) == (0, 0)
    assert ch.market_mask(account) == 0
    state = ch.market_state(eth_market)
    assert (state.long_oi, state.short_oi, state.total_cost) == (0, 0, 0)
    assert ch.margin(account)[1:] == (0, 0)


def test_trade__flip_long_to_short__closes_then_opens(ch, make_account, trade, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000)
    trade(trader, eth_market, 5 * WAD)

    event = trade(trader, eth_market, -8 * WAD)

    index = ch.market_state(eth_market).funding_index  # accrued by the trade itself

    pos = ch.positions(account, eth_market)
    assert pos.size == event.new_size == -3 * WAD
    # the new short's cost is the opened part only, the old cost left with the closed part
    assert pos.cost == -((3 * WAD * (event.fill_price - index)) // WAD)
    state = ch.market_state(eth_market)
    assert (state.long_oi, state.short_oi, state.total_cost) == (0, 3 * WAD, pos.cost)
    assert event.realised_pnl != 0
    assert ch.market_mask(account) == 1 << eth_market


def test_trade__two_markets__mask_has_both(ch, make_account, trade, trader, eth_market, btc_market):
    account = make_account(trader, collateral_usd=50_000)
    trade(trader, eth_market, 1 * WAD)
    trade(trader, btc_market, -WAD // 10)
    assert ch.market_mask(account) == (1 << eth_market) | (1 << btc_market)
    trade(trader, eth_market, -1 * WAD)
    assert ch.market_mask(account) == 1 << btc_market


# ---------------------------------------------------------------- premium, fee, lens


def test_trade__fee__paid_to_pool(ch, make_account, trade, trader, eth_market):
    account = make_account(trader, collateral_usd=100_000)
    pool_before = ch.pool_balance()
    event = trade(trader, eth_market, 30 * WAD)
    assert event.fee == expected_fee(30 * WAD, event.fill_price, ch.markets(eth_market).fee)
    assert event.fee > 30 * USDC  # 5 bp of ~$60k
    assert ch.pool_balance() - pool_before == event.fee
    assert ch.settlement(account) == 100_000 * USDC - event.fee


def test_trade__buy_into_long_skew__pays_premium_above_oracle(
    protocol, ch, make_account, trade, trader, other_trader, eth_market, weth
):
    make_account(other_trader, collateral_usd=2_000_000)
    trade(other_trader, eth_market, 3_000 * WAD)  # a long skew of 0.3% of the skew scale
    make_account(trader, collateral_usd=10_000)
    price = protocol.oracle.price(weth)
    skew_scale = ch.markets(eth_market).skew_scale
    assert skew_scale == 1_000_000 * WAD

    event = trade(trader, eth_market, 1 * WAD)

    assert event.fill_price == expected_fill(price, 3_000 * WAD, 1 * WAD, skew_scale)
    assert event.fill_price > price * 1_003 // 1_000  # at least the 0.3% premium
    # the same buy with no skew fills lower
    assert event.fill_price > expected_fill(price, 0, 1 * WAD, skew_scale)


@pytest.mark.parametrize("skew_units", [-3_000, 0, 3_000], ids=["short-skew", "no-skew", "long-skew"])
@pytest.mark.parametrize("size_units", [7, -7], ids=["buy", "sell"])
def test_trade__fill__equals_lens_fill_price(
    protocol, make_account, trade, trader, other_trader, eth_market, skew_units, size_units
):
    make_account(other_trader, collateral_usd=2_000_000)
    if skew_units:
        trade(other_trader, eth_market, skew_units * WAD)
    make_account(trader, collateral_usd=10_000)
    size = size_units * WAD + 12_345  # not a round number of units
    quoted = protocol.lens.fill_price(eth_market, size)

    event = trade(trader, eth_market, size)

    assert event.fill_price == quoted
    price = protocol.oracle.price(protocol.tokens["WETH"])
    mid_skew = 2 * skew_units + size_units
    assert (event.fill_price > price) == (mid_skew > 0)


def test_trade__buy_above_limit__reverts(protocol, ch, make_account, trade, trader, eth_market):
    make_account(trader, collateral_usd=10_000)
    fill = protocol.lens.fill_price(eth_market, 2 * WAD)
    with ape.reverts("clearinghouse: price limit"):
        trade_now(ch, eth_market, 2 * WAD, fill - 1, 0, sender=trader)
    assert trade(trader, eth_market, 2 * WAD, limit_price=fill).fill_price == fill


def test_trade__sell_below_limit__reverts(protocol, ch, make_account, trade, trader, eth_market):
    make_account(trader, collateral_usd=10_000)
    fill = protocol.lens.fill_price(eth_market, -2 * WAD)
    with ape.reverts("clearinghouse: price limit"):
        trade_now(ch, eth_market, -2 * WAD, fill + 1, 0, sender=trader)
    assert trade(trader, eth_market, -2 * WAD, limit_price=fill).fill_price == fill


# ---------------------------------------------------------------- refusals


def test_trade__zero_size__reverts(ch, make_account, trader, eth_market):
    make_account(trader, collateral_usd=10_000)
    with ape.reverts("orders: zero size"):
        trade_now(ch, eth_market, 0, 0, 0, sender=trader)


@pytest.mark.parametrize("market", [0, 3, 15], ids=["zero", "next-id", "last-id"])
def test_trade__unknown_market__reverts(ch, make_account, trader, market):
    make_account(trader, collateral_usd=10_000)
    assert ch.market_count() < 3
    with ape.reverts("orders: unknown market"):
        trade_now(ch, market, WAD, 0, 0, sender=trader)


@pytest.mark.parametrize("direction", [1, -1], ids=["long", "short"])
def test_trade__open_beyond_initial_margin__reverts(ch, make_account, trader, eth_market, direction):
    account = make_account(trader, collateral_usd=10_000)
    # 20x: initial requirement 6% of $200k = $12k > $10k. Refused at the order's commit (the fill
    # checks it again at its own price: tests/unit/orders/test_margin.py)
    with ape.reverts("orders: insufficient margin"):
        trade_now(ch, eth_market, direction * 100 * WAD, 0, 0, sender=trader)
    assert ch.positions(account, eth_market).size == 0
    # 10x is fine
    trade_now(ch, eth_market, direction * 50 * WAD, 0, 0, sender=trader)


def test_trade__increase_beyond_initial_margin__reverts(ch, make_account, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    with ape.reverts("orders: insufficient margin"):  # at the commit, as above
        trade_now(ch, eth_market, 50 * WAD, 0, 0, sender=trader)  # to 20x
    assert ch.positions(account, eth_market).size == 50 * WAD


def test_trade__reduce_below_initial_margin__allowed(ch, make_account, trade, set_price, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    set_price("WETH", 1_900)
    equity, _, initial = ch.margin(account)
    assert equity < initial  # no longer at initial margin, but a reduction needs none
    trade(trader, eth_market, -10 * WAD)
    assert ch.positions(account, eth_market).size == 40 * WAD


def test_trade__flip_beyond_initial_margin__reverts(ch, make_account, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000, leverage=5)  # long 25
    with ape.reverts("orders: insufficient margin"):  # at the commit, as above
        trade_now(ch, eth_market, -(25 + 100) * WAD, 0, 0, sender=trader)  # short 100 = 20x
    assert ch.positions(account, eth_market).size == 25 * WAD


def test_trade__open_interest_cap__per_side(ch, make_account, trade, set_eth_market, trader, other_trader, attacker, eth_market):
    set_eth_market(oi_cap=10)
    make_account(trader, collateral_usd=10_000)
    make_account(other_trader, collateral_usd=10_000)
    make_account(attacker, collateral_usd=10_000)
    trade(trader, eth_market, 6 * WAD)
    with ape.reverts("orders: open interest cap"):
        trade_now(ch, eth_market, 4 * WAD + 1, 0, 0, sender=other_trader)
    trade(other_trader, eth_market, 4 * WAD)  # exactly at the cap
    assert ch.market_state(eth_market).long_oi == 10 * WAD
    # the short side has its own cap
    trade(attacker, eth_market, -10 * WAD)
    with ape.reverts("orders: open interest cap"):
        trade_now(ch, eth_market, -1, 0, 0, sender=attacker)


def test_trade__open_interest_cap_lowered_to_oi__reduce_allowed_increase_refused(
    ch, make_account, trade, set_eth_market, trader, eth_market
):
    """A cap below the open interest is refused by the Configurator (a lowered skew_scale could
    then fill a reduction at 0: review v2); a cap lowered to exactly the open interest allows
    reductions and refuses any increase."""
    account = make_account(trader, collateral_usd=10_000)
    trade(trader, eth_market, 8 * WAD)
    with ape.reverts("configurator: cap below open interest"):
        set_eth_market(oi_cap=5)
    set_eth_market(oi_cap=8)
    with ape.reverts("orders: open interest cap"):
        trade_now(ch, eth_market, 1, 0, 0, sender=trader)
    trade(trader, eth_market, -1 * WAD)  # a reduction
    assert ch.positions(account, eth_market).size == 7 * WAD


def test_trade__paused__opens_increases_and_flips_refused(
    configurator, ch, make_account, deployer, trader, other_trader, eth_market
):
    make_account(trader, collateral_usd=10_000, leverage=2)  # long
    make_account(other_trader, collateral_usd=10_000)
    configurator.pause(sender=deployer)
    with ape.reverts("orders: paused"):
        trade_now(ch, eth_market, WAD, 0, 0, sender=other_trader)  # open
    with ape.reverts("orders: paused"):
        trade_now(ch, eth_market, WAD, 0, 0, sender=trader)  # increase
    with ape.reverts("orders: paused"):
        trade_now(ch, eth_market, -20 * WAD, 0, 0, sender=trader)  # flip 10 long to 10 short


def test_trade__paused__reduce_and_close_allowed(configurator, ch, make_account, trade, deployer, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000, leverage=2)  # 10 long
    configurator.pause(sender=deployer)
    trade(trader, eth_market, -4 * WAD)
    trade(trader, eth_market, -6 * WAD)
    assert ch.positions(account, eth_market).size == 0
    assert ch.market_mask(account) == 0


def test_trade__unpaused__opens_again(configurator, ch, make_account, trade, deployer, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000)
    configurator.pause(sender=deployer)
    configurator.unpause(sender=deployer)
    trade(trader, eth_market, WAD)
    assert ch.positions(account, eth_market).size == WAD


def test_trade__reduce_only__increase_refused_reduce_allowed(
    configurator, ch, make_account, trade, deployer, trader, other_trader, eth_market, btc_market
):
    account = make_account(trader, collateral_usd=10_000, leverage=2)  # 10 long
    make_account(other_trader, collateral_usd=10_000)
    configurator.set_reduce_only(eth_market, True, sender=deployer)
    with ape.reverts("orders: reduce only"):
        trade_now(ch, eth_market, -WAD, 0, 0, sender=other_trader)  # open
    with ape.reverts("orders: reduce only"):
        trade_now(ch, eth_market, WAD, 0, 0, sender=trader)  # increase
    with ape.reverts("orders: reduce only"):
        trade_now(ch, eth_market, -11 * WAD, 0, 0, sender=trader)  # flip
    trade(trader, eth_market, -3 * WAD)
    assert ch.positions(account, eth_market).size == 7 * WAD
    # other markets are not affected
    trade(other_trader, btc_market, WAD // 100)


# ---------------------------------------------------------------- funding


@pytest.mark.parametrize("skew_side", [1, -1], ids=["long-skew", "short-skew"])
def test_trade__funding__majority_side_pays_over_a_day(
    protocol, ch, make_account, trade, set_price, trader, other_trader, keeper, eth_market, weth, chain, skew_side
):
    majority = make_account(trader, collateral_usd=500_000)
    minority = make_account(other_trader, collateral_usd=100_000)
    make_account(keeper, collateral_usd=1_000)
    trade(trader, eth_market, skew_side * 1_000 * WAD)
    trade(other_trader, eth_market, -skew_side * 200 * WAD)
    rate = protocol.lens.funding_rate(eth_market)
    params = ch.markets(eth_market)
    assert rate == skew_side * 800 * WAD * params.max_funding_rate // params.skew_scale
    state_before = ch.market_state(eth_market)
    equity_majority, equity_minority = ch.margin(majority)[0], ch.margin(minority)[0]

    chain.pending_timestamp += DAY
    set_price("WETH", 2_000)  # a fresh round: the old one is past its heartbeat
    tx = trade_now(ch, eth_market, WAD // 1_000, 0, 0, sender=keeper)  # any trade accrues the funding first

    state = ch.market_state(eth_market)
    price = protocol.oracle.price(weth)
    elapsed = state.last_funding_time - state_before.last_funding_time
    assert elapsed >= DAY
    step = state.funding_index - state_before.funding_index
    assert step == expected_funding_step(rate, price, elapsed)
    assert [e.funding_index for e in tx.events if e.event_name == "FundingAccrued"] == [state.funding_index]
    # longs pay as the index rises: the majority side loses, the minority side gains
    paid = ch.margin(majority)[0] - equity_majority
    received = ch.margin(minority)[0] - equity_minority
    assert paid < -10 * WAD  # 1,000 units * $2,000 * 0.01 * 800 / 1M = $16 a day
    assert received > 2 * WAD  # $3.2 a day
    assert abs(paid + 1_000 * abs(step)) <= 1
    assert abs(received - 200 * abs(step)) <= 1


def test_trade__funding__no_skew_no_funding(ch, make_account, trade, set_price, trader, other_trader, keeper, eth_market, chain):
    long_account = make_account(trader, collateral_usd=100_000)
    make_account(other_trader, collateral_usd=100_000)
    make_account(keeper, collateral_usd=1_000)
    trade(trader, eth_market, 100 * WAD)
    trade(other_trader, eth_market, -100 * WAD)
    index_before = ch.market_state(eth_market).funding_index  # a second of skew accrued already
    equity_before = ch.margin(long_account)[0]
    chain.pending_timestamp += DAY
    set_price("WETH", 2_000)
    trade(keeper, eth_market, WAD // 1_000)  # accrues the day at zero skew
    assert ch.market_state(eth_market).funding_index == index_before
    assert ch.margin(long_account)[0] == equity_before


def test_trade__funding__settles_into_realised_pnl_on_close(ch, make_account, trade, set_price, trader, eth_market, chain):
    account = make_account(trader, collateral_usd=500_000)
    trade(trader, eth_market, 1_000 * WAD)  # alone: the skew is long
    chain.pending_timestamp += DAY
    set_price("WETH", 2_000)
    settlement_before = ch.settlement(account)
    index_open = 0
    event = trade(trader, eth_market, -1_000 * WAD)
    index_close = ch.market_state(eth_market).funding_index
    assert index_close > index_open
    # closing at the same price level loses the fees, the premium round trip and a day of funding
    assert ch.settlement(account) - settlement_before == event.realised_pnl - event.fee
    assert event.realised_pnl * USDC_TO_WAD < -(1_000 * index_close) + 1


# ---------------------------------------------------------------- no value from a round trip


@pytest.mark.parametrize("skew_units", [-3_000, 0, 3_000], ids=["short-skew", "no-skew", "long-skew"])
@pytest.mark.parametrize("size", [1, WAD, 1_234 * WAD + 567], ids=["1-wei", "1-eth", "1234-eth"])
@pytest.mark.parametrize("direction", [1, -1], ids=["buy-first", "sell-first"])
def test_trade__round_trip__never_profits(
    ch, usdc, make_account, trade, attacker, other_trader, eth_market, skew_units, size, direction
):
    """An open and its close at the same round (two orders, each filled after its own delay: a
    contract can no longer do both in one transaction) lose at least the two fees."""
    make_account(other_trader, collateral_usd=2_000_000)
    if skew_units:
        trade(other_trader, eth_market, skew_units * WAD)
    deposit = 500_000 * USDC
    account = make_account(attacker, collateral_usd=500_000)
    pool_before = ch.pool_balance()

    trade(attacker, eth_market, direction * size)
    closed = trade(attacker, eth_market, -direction * size)

    assert closed.new_size == 0
    assert ch.settlement(account) < deposit  # at least the two fees are lost
    assert ch.pool_balance() - pool_before == deposit - ch.settlement(account)
    assert usdc.balanceOf(ch) == ch.settlement_held()
