"""bZx, February 2020.

The incident: a flash loan pumped the thin Uniswap/Kyber market bZx read as its price, and in
the same transaction a leveraged position on that price was opened and unwound (about $1M).

What marginsim does: prices come only from Chainlink-style aggregators, read through
`OracleRouter.price`, which the owner alone points at a feed. No DEX is read, so a move of a
spot price inside one transaction cannot reach the price the protocol uses. On top, `price`
refuses a round that is non-positive, stale or from the future, outside its bounds, or more than
`max_deviation` (20%) from the accepted price (circuit breaker), whether or not `sync` has seen
it. Trades fill at that price plus a skew premium that is path-independent. A position opened
and closed in one transaction therefore pays two fees and gets no premium back.

What this proves: `FlashAttacker` pumps a thin spot pool tenfold, publishes a round on a feed
it controls, syncs the router, opens, closes and withdraws, all in one call. The router's price
is the same before and after the pump, and the attacker ends with less than it started with:
exactly the two fees, the premium and the settlement token's rounding (all now the pool's),
plus its own loss on the spot round trip. Even when handed the real feed's publishing rights
(a compromised publisher, outside the threat model), the attacker cannot trade on a round
beyond the circuit breaker, or on one that is stale or from the future: the trade reverts with
the router's exact message, and nothing changes.
"""

import math

import ape
import pytest

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
    pool.deposit(2_000_000 * USDC, lp, sender=lp)
    # an honest short already open, so the market has skew and funding
    usdc.mint(other_trader, 50_000 * USDC, sender=other_trader)
    usdc.approve(ch, 50_000 * USDC, sender=other_trader)
    ch.deposit(usdc, 50_000 * USDC, 0, sender=other_trader)
    ch.trade(protocol.markets["ETH-PERP"], -100 * WAD, 0, 0, sender=other_trader)
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
    flash = attacker.deploy(project.FlashAttacker, protocol.clearinghouse, protocol.oracle, protocol.settlement)
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


def plan(protocol, size, spot=None, pump=0, feed=None, answer=0, updated_at=0, sync=True):
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
    )


def round_trip_cost(protocol, receipt):
    """What the two trades left with the pool, exactly: both fees (rounded up) less the realised
    PnL of the close (rounded down), from the Trade events."""
    opened, closed = events(receipt, "Trade")
    return opened.fee + closed.fee - closed.realised_pnl, opened, closed


@pytest.mark.parametrize("size", [150 * WAD, -150 * WAD], ids=["long", "short"])
def test_spot_pump__tenfold_in_one_transaction__oracle_unmoved_and_attacker_loses(project, protocol, spot, flash, attacker, size):
    ch, oracle, usdc, weth = protocol.clearinghouse, protocol.oracle, protocol.settlement, protocol.tokens["WETH"]
    pool_balance_before = ch.pool_balance()
    price_before = oracle.price(weth)

    receipt = flash.attack(plan(protocol, size, spot=spot, pump=PUMP_USDC), sender=attacker)

    attack = event(receipt, "Attack")
    assert attack.spot_after_move >= 10 * attack.spot_before  # the spot price did move tenfold ...
    assert attack.oracle_before == attack.oracle_after_move == price_before == oracle.price(weth)  # ... ours did not
    assert oracle.feeds(weth).aggregator == protocol.feeds["WETH"].address  # the router reads the feed, only

    cost, opened, closed = round_trip_cost(protocol, receipt)
    bought, sold = events(receipt, "Swap")
    spot_loss = bought.quote_in - sold.quote_out
    # the premium is path-independent: the close fills no better than the open (the same price
    # when the average-premium product divides exactly; each fill rounds against the trader)
    assert (closed.fill_price <= opened.fill_price) if size > 0 else (closed.fill_price >= opened.fill_price)
    assert closed.realised_pnl <= 0 and cost > 0
    assert usdc.balanceOf(flash) == FLASH_USDC * USDC - cost - spot_loss
    assert ch.pool_balance() - pool_balance_before == cost  # the attacker's loss is the pool's gain
    assert weth.balanceOf(flash) == 0
    assert ch.settlement(account_id(flash)) == 0 and ch.market_mask(account_id(flash)) == 0
    books(protocol, project, [account_id(flash)]).assert_consistent()


def test_own_feed__published_and_synced__has_no_path_into_the_router(project, protocol, flash, own_feed, attacker):
    oracle, usdc, weth = protocol.oracle, protocol.settlement, protocol.tokens["WETH"]
    with ape.reverts("ownable: caller is not the owner"):  # only the owner points the router at a feed
        oracle.set_feed(weth, own_feed, 3_600, wad(0.01), wad(10_000_000), wad(1), wad(0.8), sender=attacker)
    price_before = oracle.price(weth)

    receipt = flash.attack(plan(protocol, 150 * WAD, feed=own_feed, answer=20_000 * 10**8), sender=attacker)

    assert own_feed.latestAnswer() == 20_000 * 10**8  # the attacker's feed says $20,000 ...
    attack = event(receipt, "Attack")
    assert attack.oracle_before == attack.oracle_after_move == price_before  # ... the router still $2,000
    assert not [e for e in receipt.events if e.event_name in ("RoundAccepted", "CircuitBreakerTripped")]
    cost, _, _ = round_trip_cost(protocol, receipt)
    assert cost > 0
    assert usdc.balanceOf(flash) == FLASH_USDC * USDC - cost
    books(protocol, project, [account_id(flash)]).assert_consistent()


@pytest.fixture
def compromised(protocol, deployer, flash):
    """The worst case, outside the threat model: the real feed's publisher is the attacker."""
    feed = protocol.feeds["WETH"]
    feed.set_updater(flash, sender=deployer)
    return feed


@pytest.mark.parametrize("sync", [True, False], ids=["synced", "not-synced"])
def test_compromised_publisher__round_beyond_the_breaker__trade_reverts(project, protocol, flash, attacker, compromised, sync):
    oracle, usdc, weth = protocol.oracle, protocol.settlement, protocol.tokens["WETH"]
    before = books(protocol, project, [account_id(flash)])
    price_before = oracle.price(weth)
    pumped = int(2_000 * 1.25 * 10**8)  # +25%, past the 20% breaker

    with ape.reverts("oracle: circuit breaker"):
        flash.attack(plan(protocol, 150 * WAD, feed=compromised, answer=pumped, sync=sync), sender=attacker)

    assert oracle.price(weth) == price_before and not oracle.vol(weth).halted
    assert compromised.latestAnswer() == 2_000 * 10**8  # the round went down with the call
    assert usdc.balanceOf(flash) == FLASH_USDC * USDC
    assert books(protocol, project, [account_id(flash)]) == before


@pytest.mark.parametrize("age", [-60, 3_601], ids=["from-the-future", "older-than-heartbeat"])
def test_compromised_publisher__future_or_stale_round__trade_reverts(project, chain, protocol, flash, attacker, compromised, age):
    usdc, weth = protocol.settlement, protocol.tokens["WETH"]
    before = books(protocol, project, [account_id(flash)])
    updated_at = chain.pending_timestamp - age
    answer = int(2_000 * 1.1 * 10**8)  # +10%: inside the breaker, so the timestamp is what refuses it

    with ape.reverts("oracle: stale answer"):
        flash.attack(plan(protocol, 150 * WAD, feed=compromised, answer=answer, updated_at=updated_at), sender=attacker)

    assert protocol.oracle.price(weth) == 2_000 * WAD
    assert usdc.balanceOf(flash) == FLASH_USDC * USDC
    assert books(protocol, project, [account_id(flash)]) == before
