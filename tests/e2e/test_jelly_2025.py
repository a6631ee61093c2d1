"""Hyperliquid JELLY, 2025-03-26: a trader opened a JELLY position far larger than the market
could absorb, had it liquidated into the HLP vault and pumped JELLY ~400%, leaving HLP with a
loss that only delisting the market stopped.

What marginsim does about it: the pool is the counterparty to every trade from the start, and
each market's open interest is capped per side twice: in USD against the pool's capital (the
open-interest reserve, issue 9 item 5: at the default factor of 1, no side larger than the
pool) and in base units (`oi_cap`), so no position, or set of positions on one side, can grow
past either; liquidations close at the oracle price
against the same pool, so a liquidation hands the pool nothing beyond what the cap allowed.
The pool's loss on one side is therefore at most
    cap * (P1 - P0) * (1 + cap / (2 skew_scale))
for a move from P0 to P1: the capped size times the move, scaled by the skew premium, which
a capped skew pays on the way in and earns back on the way out. Fees and funding only lower it.
The bound is linear in the move: the cap bounds the loss per dollar of move, not in total
(test_mango_2022.py shows what a move past pool / cap does).

What the test proves, on a $0.50 token whose cap (2M units, $1M) is twice the pool's $500k:
at the default reserve the attacker cannot open a position larger than the pool ("orders: open
interest reserve"). With the reserve raised to 2.5 (a governance choice for a market whose
sides hedge each other), so that the base-unit cap is what binds: the attacker opens at the
cap, a third account and the attacker's second account cannot add a single unit
("orders: open interest cap", at the commit), the price is pumped +40% in three rounds, and when the
attacker closes, the pool's loss equals the realised profit less both fees,
is within the bound, and is within 1% of it (the bound is what binds); the pool stays solvent.
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import trade_now
from marginsim.protocol import FeedConfig, MarketConfig, TokenConfig, deploy_protocol
from tests.e2e.incidents import (
    SETTLEMENT_TO_WAD,
    USDC,
    WAD,
    accounting,
    deposit,
    fund_liquidity,
    move_clock_to,
    trimmed_config,
)

ENTRY_ANSWER = 50_000_000  # $0.50, 8 decimals
PUMP = (56_000_000, 62_720_000, 70_246_400)  # +12% three times: +40.5%
CAP_UNITS = 2_000_000  # $1M at entry
SKEW_SCALE_UNITS = 300_000_000  # the Configurator's premium bound: cap <= 0.0075 S
POOL_USD = 500_000

JELLY = TokenConfig(
    "JELLY",
    18,
    0.5,
    1_000_000_000,
    0.1,
    FeedConfig(0.5, min_price_usd=0.0001, max_price_usd=1_000, max_deviation=0.2, initial_sigma=0.8),
)
JELLY_PERP = MarketConfig(
    "JELLY-PERP", "JELLY", tier_size=1_000_000, skew_scale=SKEW_SCALE_UNITS, oi_cap=CAP_UNITS, reserve_factor=2.5
)


@pytest.fixture(scope="module")
def market(project, deployer, lp):
    protocol = deploy_protocol(project, deployer, trimmed_config((JELLY,), (JELLY_PERP,)))
    fund_liquidity(protocol, lp, deployer, POOL_USD, 10_000)
    return protocol


def test_jelly__at_the_default_reserve_a_position_larger_than_the_pool_is_refused(market, deployer, attacker):
    protocol = market
    ch, jelly = protocol.clearinghouse, protocol.markets["JELLY-PERP"]
    protocol.configurator.set_reserve_factor(jelly, WAD, sender=deployer)
    deposit(protocol, attacker, "USDC", 200_000 * USDC)
    pool_units = POOL_USD * 10**8 // ENTRY_ANSWER  # the pool's capital in JELLY at entry
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, jelly, pool_units * WAD + WAD, 0, 0, sender=attacker)
    trade_now(ch, jelly, pool_units * WAD, 0, 0, sender=attacker)  # as large as the pool: allowed
    assert int(ch.market_state(jelly).long_oi) == pool_units * WAD


def test_jelly__a_position_larger_than_the_pool_is_capped(market, attacker, trader):
    protocol = market
    ch, jelly = protocol.clearinghouse, protocol.markets["JELLY-PERP"]
    deposit(protocol, attacker, "USDC", 200_000 * USDC, subaccount=0)
    deposit(protocol, attacker, "USDC", 200_000 * USDC, subaccount=1)
    deposit(protocol, trader, "USDC", 200_000 * USDC)
    with ape.reverts("orders: open interest cap"):
        trade_now(ch, jelly, CAP_UNITS * WAD + 1, 0, 0, sender=attacker)
    trade_now(ch, jelly, CAP_UNITS * WAD, 0, 0, sender=attacker)
    notional = CAP_UNITS * ENTRY_ANSWER // 10**8
    assert notional == 2 * POOL_USD  # the position is twice the pool's depth
    for sender, subaccount in ((attacker, 0), (attacker, 1), (trader, 0)):
        with ape.reverts("orders: open interest cap"):
            trade_now(ch, jelly, 1, 0, subaccount, sender=sender)
    assert int(ch.market_state(jelly).long_oi) == CAP_UNITS * WAD


def test_jelly__the_pools_loss_is_within_the_caps_bound(market, chain, deployer, attacker):
    protocol = market
    ch, jelly = protocol.clearinghouse, protocol.markets["JELLY-PERP"]
    deposit(protocol, attacker, "USDC", 200_000 * USDC)
    pool_before = int(ch.pool_balance())
    assets_before = int(protocol.pool.totalAssets())
    opened = trade_now(ch, jelly, CAP_UNITS * WAD, 0, 0, sender=attacker).events.filter(ch.Trade)[0]
    for answer in PUMP:
        move_clock_to(chain, chain.pending_timestamp + 60)
        protocol.publish("JELLY", answer, deployer)
    closed = trade_now(ch, jelly, -CAP_UNITS * WAD, 0, 0, sender=attacker).events.filter(ch.Trade)[0]

    loss = pool_before - int(ch.pool_balance())
    assert loss == int(closed.realised_pnl) - int(opened.fee) - int(closed.fee)
    p0, p1 = ENTRY_ANSWER * 10**10, PUMP[-1] * 10**10
    bound_wad = CAP_UNITS * (p1 - p0) * (2 * SKEW_SCALE_UNITS + CAP_UNITS) // (2 * SKEW_SCALE_UNITS)
    bound = -(-bound_wad // SETTLEMENT_TO_WAD)
    assert 0 < loss <= bound
    assert loss * 100 >= bound * 99  # the cap is what limits the loss, not something else
    # within the pool's depth for this move: the LPs keep the rest, every token is accounted for
    assert bound < POOL_USD * USDC
    assert int(ch.pool_balance()) > 0
    assert int(protocol.pool.totalAssets()) == pytest.approx(assets_before - loss, abs=1)
    books = accounting(protocol, [int(opened.account)])
    assert books.held == books.settlement_held == books.internal
