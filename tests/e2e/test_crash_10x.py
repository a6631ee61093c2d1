"""Traders at 10x leverage see ETH fall 30% (with a gap); a keeper that finds them from events
liquidates them; afterwards every token the contracts hold equals the internal balances."""

import pytest

from marginsim.risk import health_of
from marginsim.story import TraderPlan, run_story, token_accounting

pytestmark = pytest.mark.slow  # about 40 s: make test-slow (README "Tests")

WAD = 10**18

TRADERS = (
    TraderPlan("usdc long 10x", "ETH-PERP", 10, "USDC", 10_000),
    TraderPlan("usdc long 10x big", "ETH-PERP", 10, "USDC", 50_000),
    TraderPlan("weth long 10x", "ETH-PERP", 10, "WETH", 10_000),
    TraderPlan("wbtc long 10x", "BTC-PERP", 10, "WBTC", 10_000),
    TraderPlan("usdc short 10x", "ETH-PERP", -10, "USDC", 10_000),
)


def test_crash__10x_traders_liquidated__tokens_equal_internal_balances(project, chain, accounts):
    result = run_story(project, chain, list(accounts)[:8], traders=TRADERS)
    protocol = result.protocol
    ch = protocol.clearinghouse
    longs = [result.accounts[t.name] for t in TRADERS if t.leverage > 0]

    # every 10x long was liquidated: none still holds a position below maintenance
    for account in longs:
        assert ch.market_mask(account) == 0 or health_of(ch, account) >= WAD
    liquidated = {d["account"] for d in result.liquidations}
    assert set(longs) <= liquidated
    # a partial liquidation always left the account healthier; a full one closed everything
    for d in result.liquidations:
        assert d["health_after"] > d["health_before"]
    # the short profited and was never liquidated
    short = result.accounts["usdc short 10x"]
    assert short not in liquidated
    assert health_of(ch, short) > WAD

    # settlement token: held == internal accounting == sum of every internal balance, to the wei
    accounting = token_accounting(protocol, list(result.accounts.values()))
    assert accounting["held"] == accounting["settlement_held"] == accounting["internal_sum"]
    assert protocol.settlement.balanceOf(protocol.pool) == 0  # the pool's assets sit in the clearinghouse
    # collateral tokens: held == internal totals == sum of account balances
    for slot in range(1, ch.collateral_count() + 1):
        collateral = ch.collaterals(slot)
        token = next(t for t in protocol.tokens.values() if t.address == collateral.token)
        balances = sum(ch.balances(a, slot) for a in result.accounts.values())
        assert token.balanceOf(ch) == collateral.total == balances
    # bad debt was booked, not hidden: the gap left shortfalls, and they add up
    booked = sum(r.bad_debt_usd for r in result.rounds)
    assert abs(booked * 10**6 - ch.total_bad_debt()) < 10
