"""Compound, 2020-11-26: Coinbase printed DAI at $1.30 for about an hour; Compound's oracle took
it, and $89M of borrowers who were healthy at the true price ($1.00) were liquidated.

What marginsim does about it (OracleRouter): every answer must be positive, fresh (its
`updatedAt` within the feed's heartbeat) and strictly inside the feed's [min_price, max_price]
bounds, else `price` reverts ("oracle: answer out of bounds", "oracle: stale answer"). The
bounds are sanity rails ($0.01 to $10M for ETH): a 30% spike is inside them and they do not
act on it. The circuit breaker does: a round more than `max_deviation` (20% for ETH) away from
the last accepted price halts the asset, so `price` reverts "oracle: circuit breaker" and
everything priced off it waits -- liquidations, opens, increases and margin-checked
withdrawals alike (nobody trades or cashes out at the spiked price either). The halt clears
when a later round lands within `max_deviation` of the accepted price (the spike is gone) or
of the halted round (the move is confirmed), or when the owner clears it.

What the test proves: ETH's feed prints +30% for an hour, published with Chainlink semantics by
`marginsim.feeds` (0.5% deviation, one-hour heartbeat). While it is up, a liquidation of a
short that is healthy at the true price reverts "oracle: circuit breaker" at every minute we
try; afterwards the short is untouched and healthy, and the LiquidationEngine's `liquidate`
reverts "liquidation: account healthy". When the spiked level is printed more than once within the hour (a second
round 0.6% away, as any live market wobbles), the second round is taken as confirmation: the
last test asserts the protective behaviour for that case too.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import feeds
from marginsim.orders import trade_now
from marginsim.protocol import FeedConfig, MarketConfig, TokenConfig, deploy_protocol
from marginsim.risk import health_of
from tests.e2e.incidents import (
    MAX_UINT,
    USDC,
    WAD,
    deposit_usd,
    fund_liquidity,
    move_clock_to,
    size_for_notional,
    trimmed_config,
)

TRUE_PRICE = 2_000
SPIKE = 1.30
SPIKE_START = 600  # seconds after the start
SPIKE_SECONDS = 3_600
STEP = 60


def spike_path(wobble: float) -> list[tuple[int, float]]:
    """ETH at $2,000, then 30% up for an hour, then back. `wobble`: the spiked level alternates
    between SPIKE and SPIKE * (1 + wobble) every 10 minutes (0: a flat print)."""
    samples = []
    for t in range(0, SPIKE_START + SPIKE_SECONDS + 600 + STEP, STEP):
        price = float(TRUE_PRICE)
        if SPIKE_START <= t < SPIKE_START + SPIKE_SECONDS:
            tick = (t - SPIKE_START) // 600
            price = TRUE_PRICE * SPIKE * (1 + wobble * (tick % 2))
        samples.append((t, price))
    return samples


@pytest.fixture(scope="module")
def setup(project, deployer, lp, trader, other_trader, chain):
    weth = TokenConfig("WETH", 18, 0.85, 1_000_000, 0.05, FeedConfig(TRUE_PRICE))
    protocol = deploy_protocol(project, deployer, trimmed_config((weth,), (MarketConfig("ETH-PERP", "WETH"),)))
    fund_liquidity(protocol, lp, deployer, 1_000_000, 10_000)
    ch, market = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    # a 5x short: health ~6.6 at $2,000, equity -10% of notional at $2,600
    short = deposit_usd(protocol, trader, "USDC", 20_000)
    trade_now(ch, market, -size_for_notional(protocol, "ETH-PERP", 100_000), 0, 0, sender=trader)
    # a 10x long: a 30% paper profit it would love to cash out at the spiked price
    long = deposit_usd(protocol, other_trader, "USDC", 10_000)
    trade_now(ch, market, size_for_notional(protocol, "ETH-PERP", 100_000), 0, 0, sender=other_trader)
    return protocol, short, long


def test_compound_dai__bounds_do_not_act_on_the_spike__the_breaker_does(setup):
    protocol, _, _ = setup
    feed = protocol.oracle.feeds(protocol.tokens["WETH"])
    spiked = int(TRUE_PRICE * SPIKE * WAD)
    assert int(feed.min_price) < spiked < int(feed.max_price)  # inside the sanity bounds
    assert int(feed.max_deviation) == 20 * 10**16
    assert (spiked - TRUE_PRICE * WAD) * WAD > int(feed.max_deviation) * TRUE_PRICE * WAD  # beyond the breaker


def test_compound_dai__an_hour_long_spike__no_healthy_account_is_liquidated(setup, chain, deployer, keeper, trader, other_trader):
    protocol, short, _ = setup
    ch, oracle, weth = protocol.clearinghouse, protocol.oracle, protocol.tokens["WETH"]
    engine = protocol.liquidation_engine  # this replay's own deployment, not the shared fixture's
    market = protocol.markets["ETH-PERP"]
    rounds = feeds.publish_rounds(spike_path(0.0), feeds.PublisherConfig())
    # Chainlink semantics on a flat print: the spike is one round, the return the next
    assert [(r.observed_time, r.answer) for r in rounds] == [
        (0, 2_000 * 10**8),
        (SPIKE_START, 2_600 * 10**8),
        (SPIKE_START + SPIKE_SECONDS, 2_000 * 10**8),
    ]
    size_before = int(ch.positions(short, market).size)
    start = chain.pending_timestamp
    protocol.publish("WETH", rounds[0].answer, deployer)

    move_clock_to(chain, start + SPIKE_START)
    protocol.publish("WETH", rounds[1].answer, deployer)
    vol = oracle.vol(weth)
    assert vol.halted and int(vol.pending_price) == 2_600 * WAD and int(vol.last_price) == TRUE_PRICE * WAD
    # every few minutes of the hour: the short cannot be liquidated at $2,600, nobody can trade
    # or cash out at it, and no view prices it
    for minute in range(0, 60, 10):
        move_clock_to(chain, start + SPIKE_START + minute * 60)
        with ape.reverts("oracle: circuit breaker"):
            engine.liquidate(short, market, MAX_UINT, sender=keeper)
        with ape.reverts("oracle: circuit breaker"):
            ch.withdraw(protocol.settlement, 1 * USDC, 0, sender=other_trader)
        with ape.reverts("oracle: circuit breaker"):
            trade_now(ch, market, 10**18, 0, 0, sender=other_trader)
        with ape.reverts("oracle: circuit breaker"):
            health_of(ch, short)

    move_clock_to(chain, start + SPIKE_START + SPIKE_SECONDS)
    protocol.publish("WETH", rounds[2].answer, deployer)
    vol = oracle.vol(weth)
    assert not vol.halted and int(vol.last_price) == TRUE_PRICE * WAD  # the spike is gone
    # the short was never touched, is healthy at the true price, and cannot be liquidated
    assert int(ch.positions(short, market).size) == size_before
    assert int(health_of(ch, short)) > 6 * WAD
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate(short, market, MAX_UINT, sender=keeper)
    assert int(ch.total_bad_debt()) == 0


def test_compound_dai__a_spike_printed_twice_in_the_hour__no_healthy_account_is_liquidated(setup, chain, deployer, keeper):
    """The same hour, but the spiked market wobbles 0.6% and the feed publishes it again after
    10 minutes. Nothing about the true price changed: the short must still not be liquidated."""
    protocol, short, _ = setup
    ch, engine, market = protocol.clearinghouse, protocol.liquidation_engine, protocol.markets["ETH-PERP"]
    rounds = feeds.publish_rounds(spike_path(0.006), feeds.PublisherConfig())
    spiked = [r for r in rounds if SPIKE_START <= r.observed_time < SPIKE_START + SPIKE_SECONDS]
    assert len(spiked) == 6  # one round per 10-minute wobble
    size_before = int(ch.positions(short, market).size)
    start = chain.pending_timestamp
    protocol.publish("WETH", rounds[0].answer, deployer)
    for rnd in rounds[1:]:
        move_clock_to(chain, start + rnd.observed_time)
        protocol.publish("WETH", rnd.answer, deployer)
        if rnd in spiked:
            vol = protocol.oracle.vol(protocol.tokens["WETH"])
            assert vol.halted, (
                f"the round {rnd.observed_time - SPIKE_START} s into the spike (${rnd.answer / 10**8:,.2f}) was taken "
                f"as confirmation: ETH accepted at ${int(vol.last_price) / WAD:,.2f}, true price ${TRUE_PRICE:,}"
            )
            with ape.reverts("oracle: circuit breaker"):
                engine.liquidate(short, market, MAX_UINT, sender=keeper)
    assert int(ch.positions(short, market).size) == size_before
    assert int(health_of(ch, short)) > 6 * WAD
