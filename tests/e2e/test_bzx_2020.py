"""bZx, February 2020.

The incident: a flash loan pumped the thin Uniswap/Kyber market bZx read as its price, and in
the same transaction a leveraged position on that price was opened and unwound (about $1M).

What marginsim does: prices come only from Chainlink-style aggregators, read through
`OracleRouter.price`, which the owner alone points at a feed. No DEX is read, so a move of a
spot price inside one transaction cannot reach the price the protocol uses. On top, `price`
refuses a round that is non-positive, stale or from the future, outside its bounds, or more than
`max_deviation` (20%) from the accepted price (circuit breaker), whether or not `sync` has seen
it. And a trade is an order that fills at a round dated at least `settlement_delay` after it:
no transaction can both move a price and trade on it.

What this proves: `FlashAttacker` pumps a thin spot pool tenfold, publishes a round on a feed
it controls, syncs the router, deposits and places an order, all in one call. The router's
price is the same before and after the pump. Asked to fill its order in the same call, it
cannot ("oracle: no round yet") and the whole call reverts. Left to a keeper, the order fills
at the next real round, at the unmoved price plus the skew premium. Even when handed the real
feed's publishing rights (a compromised publisher, outside the threat model), the attacker
cannot fill on a round beyond the circuit breaker, or on one that is stale or from the future:
the keeper's fill reverts with the router's exact message and the order waits.
"""

import math

import ape
import pytest

from marginsim import risk
from marginsim.orders import deposit_now, fill_now, trade_now
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol, wad
from tests.e2e.attacks import USDC, WAD, books, event, events

SPOT_WETH = 10  # whole WETH in the thin pool
SPOT_USDC = 20_000  # USDC in the thin pool: $2,000 spot, like the feed
FLASH_USDC = 500_000  # the flash loan
MARGIN_USDC = 100_000
PUMP_USDC = int(SPOT_USDC * (math.sqrt(10) - 1)) + 100  # enough to lift x*y=k spot tenfold


@pytest.fixture(scope="module")
def protocol(project, deployer, lp, other_trader):
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    ch, usdc, pool = protocol.clearinghouse, protocol.settlement, protocol.pool
    usdc.mint(lp, 2_000_000 * USDC, sender=lp)
    usdc.approve(pool, 2_000_000 * USDC, sender=lp)
    deposit_now(pool, 2_000_000 * USDC, lp, sender=lp)
    # an honest short already open, so the market has skew and funding
    usdc.mint(other_trader, 50_000 * USDC, sender=other_trader)
    usdc.approve(ch, 50_000 * USDC, sender=other_trader)
    ch.deposit(usdc, 50_000 * USDC, 0, sender=other_trader)
    trade_now(ch, protocol.markets["ETH-PERP"], -100 * WAD, 0, 0, sender=other_trader)
    return protocol


@pytest.fixture(scope="module")
def spot(project, protocol, deployer):
    weth, usdc = protocol.tokens["WETH"], protocol.settlement
    spot = deployer.deploy(project.ThinSpotPool, weth, usdc, 18, 6)
    weth.mint(deployer, SPOT_WETH * WAD, sender=deployer)
    usdc.mint(deployer, SPOT_USDC * USDC, sender=deployer)
    weth.approve(spot, SPOT_WETH * WAD, sender=deployer)
    usdc.approve(spot, SPOT_USDC * USDC, sender=deployer)
    spot.seed(SPOT_WETH * WAD, SPOT_USDC * USDC, sender=deployer)
    assert spot.spot_price() == 2_000 * WAD
    return spot


@pytest.fixture(scope="module")
def flash(project, protocol, attacker):
    flash = attacker.deploy(project.FlashAttacker, protocol.clearinghouse, protocol.orders, protocol.oracle, protocol.settlement)
    protocol.settlement.mint(flash, FLASH_USDC * USDC, sender=attacker)  # the flash loan
    return flash


@pytest.fixture(scope="module")
def own_feed(project, attacker, flash):
    """An aggregator the attacker deployed and controls (its contract publishes on it)."""
    feed = attacker.deploy(project.MockAggregator, 8, "ETH / USD", 2_000 * 10**8)
    feed.set_updater(flash, sender=attacker)
    return feed


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, spot, flash, own_feed, deployer, attacker, lp, other_trader):
    """Request the module-scoped fixtures before any test, so ape's isolation snapshots them once."""


def plan(protocol, size, spot=None, pump=0, feed=None, answer=0, updated_at=0, sync=True, fill=False):
    """The FlashAttacker's `Plan` tuple, in field order."""
    zero = "0x" + "00" * 20
    return (
        spot.address if spot else zero,
        pump * USDC,
        feed.address if feed else zero,
        answer,
        updated_at,
        sync,
        protocol.tokens["WETH"].address,
        protocol.markets["ETH-PERP"],
        MARGIN_USDC * USDC,
        size,
        fill,
    )


def keeper_fill(protocol, flash, keeper):
    """A keeper fills the attacker's order at the next round of the real feed (same answer)."""
    receipt = fill_now(protocol.clearinghouse, account_id(flash), protocol.markets["ETH-PERP"], keeper=keeper)
    [filled] = events(receipt, "OrderFilled")
    return filled


@pytest.mark.parametrize("size", [150 * WAD, -150 * WAD], ids=["long", "short"])
def test_spot_pump__tenfold_in_one_transaction__cannot_fill_and_oracle_unmoved(
    project, protocol, spot, flash, attacker, keeper, size
):
    ch, oracle, usdc, weth = protocol.clearinghouse, protocol.oracle, protocol.settlement, protocol.tokens["WETH"]
    before = books(protocol, project, [account_id(flash)])
    price_before = oracle.price(weth)

    with ape.reverts("oracle: no round yet"):  # the fill, in the same call as the pump
        flash.attack(plan(protocol, size, spot=spot, pump=PUMP_USDC, fill=True), sender=attacker)
    assert books(protocol, project, [account_id(flash)]) == before
    assert usdc.balanceOf(flash) == FLASH_USDC * USDC

    receipt = flash.attack(plan(protocol, size, spot=spot, pump=PUMP_USDC), sender=attacker)  # order only
    attack = event(receipt, "Attack")
    assert attack.spot_after_move >= 10 * attack.spot_before  # the spot price did move tenfold ...
    assert attack.oracle_before == attack.oracle_after_move == price_before == oracle.price(weth)  # ... ours did not
    assert oracle.feeds(weth).aggregator == protocol.feeds["WETH"].address  # the router reads the feed, only
    eth = protocol.markets["ETH-PERP"]
    state = ch.market_state(eth)
    expected = risk.fill_price(price_before, state.long_oi - state.short_oi, size, ch.markets(eth).skew_scale)
    filled = keeper_fill(protocol, flash, keeper)
    assert filled.fill_price == expected  # the feed's price plus the skew premium, nothing of the spot pump
    assert int(ch.positions(account_id(flash), protocol.markets["ETH-PERP"]).size) == size
    books(protocol, project, [account_id(flash)]).assert_consistent()


def test_own_feed__published_and_synced__has_no_path_into_the_router(project, protocol, flash, own_feed, attacker, keeper):
    oracle, weth = protocol.oracle, protocol.tokens["WETH"]
    with ape.reverts("ownable: caller is not the owner"):  # only the owner points the router at a feed
        oracle.set_feed(weth, own_feed, 3_600, wad(0.01), wad(10_000_000), wad(1), wad(0.8), sender=attacker)
    price_before = oracle.price(weth)

    receipt = flash.attack(plan(protocol, 150 * WAD, feed=own_feed, answer=20_000 * 10**8), sender=attacker)

    assert own_feed.latestAnswer() == 20_000 * 10**8  # the attacker's feed says $20,000 ...
    attack = event(receipt, "Attack")
    assert attack.oracle_before == attack.oracle_after_move == price_before  # ... the router still $2,000
    assert not [e for e in receipt.events if e.event_name in ("RoundAccepted", "CircuitBreakerTripped")]
    filled = keeper_fill(protocol, flash, keeper)
    assert abs(filled.fill_price - price_before) < price_before // 1_000  # $2,000 and the premium, not $20,000
    books(protocol, project, [account_id(flash)]).assert_consistent()


@pytest.fixture
def compromised(protocol, deployer, flash):
    """The worst case, outside the threat model: the real feed's publisher is the attacker."""
    feed = protocol.feeds["WETH"]
    feed.set_updater(flash, sender=deployer)
    return feed


@pytest.mark.parametrize("sync", [True, False], ids=["synced", "not-synced"])
def test_compromised_publisher__round_beyond_the_breaker__fill_reverts(
    project, chain, protocol, flash, attacker, keeper, compromised, sync
):
    oracle, weth = protocol.oracle, protocol.tokens["WETH"]
    price_before = oracle.price(weth)
    pumped = int(2_000 * 1.25 * 10**8)  # +25%, past the 20% breaker

    with ape.reverts("oracle: circuit breaker"):  # the same call cannot even read the price after it
        flash.attack(plan(protocol, 150 * WAD, feed=compromised, answer=pumped, sync=sync), sender=attacker)
    # the order placed first, the pumped round published after its delay: a keeper waits
    flash.attack(plan(protocol, 150 * WAD), sender=attacker)
    chain.pending_timestamp = chain.pending_timestamp + int(protocol.orders.settlement_delay())
    flash.attack(plan(protocol, 0, feed=compromised, answer=pumped, sync=sync), sender=attacker)  # publish only
    before = books(protocol, project, [account_id(flash)])
    with ape.reverts("oracle: circuit breaker"):
        protocol.orders.execute_order(account_id(flash), protocol.markets["ETH-PERP"], sender=keeper)
    assert books(protocol, project, [account_id(flash)]) == before
    assert int(protocol.orders.order(account_id(flash), protocol.markets["ETH-PERP"]).size_delta) == 150 * WAD
    assert oracle.vol(weth).last_price == price_before


@pytest.mark.parametrize("age", [-61, 3_601], ids=["from-the-future", "older-than-heartbeat"])
def test_compromised_publisher__future_or_stale_round__fill_reverts(
    project, chain, protocol, flash, attacker, keeper, compromised, age
):
    usdc, weth = protocol.settlement, protocol.tokens["WETH"]
    updated_at = chain.pending_timestamp - age
    answer = int(2_000 * 1.1 * 10**8)  # +10%: inside the breaker, so the timestamp is what refuses it
    # a round from the future counts as one after the order, an old one does not; the router's
    # stale check refuses both before anything else is read (the price read after the order)
    with ape.reverts("oracle: stale answer"):
        flash.attack(
            plan(protocol, 150 * WAD, feed=compromised, answer=answer, updated_at=updated_at, fill=True), sender=attacker
        )

    assert protocol.oracle.price(weth) == 2_000 * WAD
    assert usdc.balanceOf(flash) == FLASH_USDC * USDC
