"""Venus / LUNA, 2022-05-12: LUNA collapsed below its Chainlink feed's minAnswer ($0.10), the feed
kept reporting $0.10 while LUNA traded near $0.01, and attackers deposited cheap LUNA at ten
times its value and borrowed against it, leaving Venus with ~$14M of bad debt.

What marginsim does about it (OracleRouter): a price must be strictly inside the feed's
[min_price, max_price] bounds, and its `updatedAt` within the feed's heartbeat; otherwise
`price` reverts "oracle: answer out of bounds" or "oracle: stale answer". Setting min_price at
Chainlink's minAnswer makes a feed frozen at its clamp unusable rather than wrong. Anything
priced off the asset then reverts: opening or increasing a perp on it, and every margin check
of an account holding it as collateral (opens, increases and withdrawals in any market).
Depositing it still works (a deposit needs no price) but buys nothing: an account with no
position and no debt can only take it back (nothing is required of it, so no price is read).
Liquidations are priced the same way, so an account holding the asset waits on its feed, until
governance writes the token off (`Configurator.write_off_collateral`: weight 0, deposits off).
From then on the Clearinghouse values it at zero without reading its feed, so the account is
liquidated as usual, and a keeper takes the worthless balance for nothing so the rest of the
debt settles as bad debt (issue 9, item 6).

What the test proves, for a feed frozen at the bound, one frozen below it and one whose last
round is older than the heartbeat: each of those actions reverts with the exact message; a
liquidation of an underwater account holding LUNA reverts with the same message until the
write-off, and goes through after it; one without LUNA goes through either way.
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import trade_now
from marginsim.protocol import FeedConfig, MarketConfig, TokenConfig, account_id, deploy_protocol
from marginsim.risk import health_of
from tests.e2e.incidents import (
    MAX_UINT,
    USDC,
    WAD,
    WETH_DEFAULT,
    deposit,
    deposit_usd,
    fund_liquidity,
    publish_usd,
    size_for_notional,
    trimmed_config,
)

MIN_ANSWER = 10_000_000  # Chainlink's LUNA/USD minAnswer: $0.10 with 8 decimals
HEARTBEAT = 3_600
LUNA = TokenConfig(
    "LUNA",
    8,
    0.5,
    1_000_000_000,
    0.1,
    FeedConfig(1, heartbeat=HEARTBEAT, min_price_usd=0.1, max_price_usd=1_000, max_deviation=1.0, initial_sigma=0.8),
)
LUNA_PERP = MarketConfig("LUNA-PERP", "LUNA", tier_size=1_000_000, skew_scale=10_000_000, oi_cap=50_000)
OUT_OF_BOUNDS = "oracle: answer out of bounds"
STALE = "oracle: stale answer"


@pytest.fixture(scope="module")
def luna(project, deployer, lp, trader, other_trader, attacker, guardian):
    """LUNA at $1 (already down 99%): a LUNA-PERP long, an ETH-PERP long backed partly by LUNA,
    a LUNA holder without a position, and an ETH-PERP long with no LUNA."""
    protocol = deploy_protocol(
        project, deployer, trimmed_config((WETH_DEFAULT, LUNA), (MarketConfig("ETH-PERP", "WETH"), LUNA_PERP))
    )
    fund_liquidity(protocol, lp, deployer, 1_000_000, 20_000)
    ch = protocol.clearinghouse
    eth, luna_perp = protocol.markets["ETH-PERP"], protocol.markets["LUNA-PERP"]

    perp_trader = deposit_usd(protocol, trader, "USDC", 10_000)
    trade_now(ch, luna_perp, size_for_notional(protocol, "LUNA-PERP", 20_000), 0, 0, sender=trader)

    holder = deposit_usd(protocol, other_trader, "USDC", 10_000)
    deposit_usd(protocol, other_trader, "LUNA", 2_000)
    trade_now(ch, eth, size_for_notional(protocol, "ETH-PERP", 100_000), 0, 0, sender=other_trader)  # ~8.3x

    idle_holder = deposit_usd(protocol, attacker, "LUNA", 50_000)

    plain = deposit_usd(protocol, guardian, "USDC", 10_000)
    trade_now(ch, eth, size_for_notional(protocol, "ETH-PERP", 100_000), 0, 0, sender=guardian)  # 10x
    return protocol, {"perp_trader": perp_trader, "holder": holder, "idle_holder": idle_holder, "plain": plain}


def freeze(protocol, chain, deployer, state: str) -> str:
    """Put the LUNA feed in `state`; returns the message every LUNA price read now reverts with."""
    feed = protocol.feeds["LUNA"]
    if state == "at the bound":
        protocol.publish("LUNA", MIN_ANSWER, deployer)  # exactly minAnswer == the router's min_price
        return OUT_OF_BOUNDS
    if state == "below the bound":
        protocol.publish("LUNA", MIN_ANSWER - 1_000_000, deployer)  # $0.09
        return OUT_OF_BOUNDS
    # the feed stopped: its last round is a second older than the heartbeat allows
    stale = chain.pending_timestamp - HEARTBEAT - 1
    feed.updateRoundData(feed.latest_round() + 1, int(feed.latestRoundData()[1]), stale, stale, sender=deployer)
    protocol.oracle.sync(protocol.tokens["LUNA"], sender=deployer)
    return STALE


STATES = ("at the bound", "below the bound", "stale")


@pytest.mark.parametrize("state", STATES)
def test_venus_luna__price_reads_revert(luna, chain, deployer, state):
    protocol, _ = luna
    message = freeze(protocol, chain, deployer, state)
    with ape.reverts(message):
        protocol.oracle.price(protocol.tokens["LUNA"])
    # the other feed is unaffected
    assert int(protocol.oracle.price(protocol.tokens["WETH"])) == 2_000 * WAD


@pytest.mark.parametrize("state", STATES)
def test_venus_luna__opening_and_increasing_a_luna_perp_revert(luna, chain, deployer, state, trader, keeper):
    protocol, _ = luna
    ch, luna_perp = protocol.clearinghouse, protocol.markets["LUNA-PERP"]
    deposit(protocol, keeper, "USDC", 10_000 * USDC)
    message = freeze(protocol, chain, deployer, state)
    with ape.reverts(message):
        trade_now(ch, luna_perp, 1_000 * WAD, 0, 0, sender=keeper)  # open
    with ape.reverts(message):
        trade_now(ch, luna_perp, 1_000 * WAD, 0, 0, sender=trader)  # increase
    with ape.reverts(message):
        ch.withdraw(protocol.settlement, 1 * USDC, 0, sender=trader)  # withdraw against it


@pytest.mark.parametrize("state", STATES)
def test_venus_luna__opening_increasing_and_withdrawing_against_luna_collateral_revert(
    luna, chain, deployer, state, other_trader, attacker
):
    protocol, _ = luna
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    message = freeze(protocol, chain, deployer, state)
    # the Venus move: more LUNA goes in (a deposit needs no price) ...
    token = protocol.tokens["LUNA"]
    account = deposit(protocol, attacker, "LUNA", 1_000_000 * 10**8)
    # ... and none of it can be used: no open against it. The commit reverts with LUNA's message
    # (the pool's open-interest reserve reads every market with open interest, LUNA-PERP's too;
    # the fill's margin check would read LUNA), so no order is placed and nothing escrowed
    with ape.reverts(message):
        trade_now(ch, eth, 10**18, 0, 0, sender=attacker)  # open
    assert int(protocol.orders.open_orders(account)) == 0
    # it can only be taken back: an account with no position and no debt owes nothing, so its
    # withdrawal reads no price (a halted feed never locks a balance that backs nothing)
    assert ch.market_mask(account) == 0 and ch.settlement(account) == 0
    wallet = token.balanceOf(attacker)
    ch.withdraw(token, 1, 0, sender=attacker)
    assert token.balanceOf(attacker) == wallet + 1
    # an account already trading with LUNA in its collateral cannot add risk or take money out
    with ape.reverts(message):
        trade_now(ch, eth, 10**18, 0, 0, sender=other_trader)  # increase
    assert int(protocol.orders.open_orders(account_id(other_trader))) == 0
    with ape.reverts(message):
        ch.withdraw(protocol.settlement, 1 * USDC, 0, sender=other_trader)
    with ape.reverts(message):
        ch.withdraw(protocol.tokens["LUNA"], 1, 0, sender=other_trader)


@pytest.mark.parametrize("state", STATES)
def test_venus_luna__liquidation_waits_on_the_feed_until_the_write_off(luna, chain, deployer, state, keeper, attacker):
    protocol, accounts = luna
    ch, engine, eth = protocol.clearinghouse, protocol.liquidation_engine, protocol.markets["ETH-PERP"]
    publish_usd(protocol, "WETH", 1_800, deployer)  # -10%: both 8-10x ETH longs are underwater
    assert int(health_of(ch, accounts["holder"])) < WAD and int(health_of(ch, accounts["plain"])) < WAD
    message = freeze(protocol, chain, deployer, state)
    # a halted or stale collateral feed blocks the liquidation of every account holding it ...
    with ape.reverts(message):
        engine.liquidate(accounts["holder"], eth, MAX_UINT, sender=keeper)
    with ape.reverts(message):
        health_of(ch, accounts["holder"])
    # ... an account without LUNA is liquidated as usual
    tx = engine.liquidate(accounts["plain"], eth, MAX_UINT, sender=keeper)
    assert int(ch.positions(accounts["plain"], eth).size) == 0
    assert len(tx.events.filter(engine.Liquidation)) == 1

    # governance writes LUNA off: valued at 0 without a feed read, deposits off
    luna_token = protocol.tokens["LUNA"]
    protocol.configurator.write_off_collateral(luna_token, sender=deployer)
    col = ch.collaterals(ch.collateral_slot(luna_token))
    assert (int(col.weight), col.enabled) == (0, False)
    assert int(ch.collateral_value(accounts["holder"])) == 0
    with ape.reverts("clearinghouse: collateral disabled"):
        deposit(protocol, keeper, "LUNA", 10**8)
    # the holder is liquidated without the LUNA feed
    engine.liquidate(accounts["holder"], eth, MAX_UINT, sender=keeper)
    assert int(ch.positions(accounts["holder"], eth).size) == 0
    assert int(ch.settlement(accounts["holder"])) < 0  # the 10% drop took more than its USDC
    # in debt with only written-off LUNA left: a keeper has it taken for nothing, to governance
    # (the Configurator's owner), not to itself, and the debt it no longer backs settles as bad debt
    held = int(ch.balances(accounts["holder"], ch.collateral_slot(luna_token)))
    bad_debt = int(ch.total_bad_debt())
    keeper_luna, governance_luna = int(luna_token.balanceOf(keeper)), int(luna_token.balanceOf(deployer))
    tx = engine.liquidate_collateral(accounts["holder"], luna_token, MAX_UINT, sender=keeper)
    sale = tx.events.filter(engine.CollateralLiquidation)[0]
    assert (int(sale.amount), int(sale.paid)) == (held, 0)
    assert int(luna_token.balanceOf(keeper)) == keeper_luna
    assert int(luna_token.balanceOf(deployer)) == governance_luna + held
    assert int(ch.collateral_mask(accounts["holder"])) == 0 and int(ch.settlement(accounts["holder"])) == 0
    assert int(ch.total_bad_debt()) > bad_debt
    # the idle holder can take its worthless LUNA home: it no longer counts in any margin check
    slot = ch.collateral_slot(luna_token)
    ch.withdraw(luna_token, int(ch.balances(accounts["idle_holder"], slot)), 0, sender=attacker)
    assert int(ch.collateral_mask(accounts["idle_holder"])) == 0
