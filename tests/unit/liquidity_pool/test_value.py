"""The pool's value is what it would hold if every trader closed now, at their exit price."""

import ape
import pytest

from marginsim.orders import deposit_now, redeem_now, trade_now
from tests.conftest import USDC, WAD
from tests.e2e.attacks import reserve_out_of_the_way


@pytest.fixture(scope="module", autouse=True)
def _reserve_aside(protocol, deployer, seeded_pool):
    """The valuation itself, apart from the open-interest reserve (which would refuse a $15M
    side against the $10M pool first: tests/unit/orders/test_reserve.py)."""
    reserve_out_of_the_way(protocol, deployer)


def test_total_assets__large_open__does_not_lift_share_price(protocol, ch, fund, lp, attacker, eth_market, seeded_pool, usdc):
    pool = protocol.pool
    assets_before = pool.totalAssets()
    fund(attacker, usdc, 7_000_000 * USDC)
    ch.deposit(usdc, 7_000_000 * USDC, 0, sender=attacker)
    tx = trade_now(ch, eth_market, 7_500 * WAD, 0, 0, sender=attacker)  # the whole cap, paying the premium
    trade = next(e for e in tx.events if e.event_name == "Trade")
    # the premium paid (0.375% of $15M) is owed back on exit: only the fee is the pool's
    assert trade.fill_price > 2_000 * WAD * 1_003 // 1_000
    assert assets_before + trade.fee - 1 <= pool.totalAssets() <= assets_before + trade.fee


def test_total_assets__one_transaction_drain__loses_money(protocol, ch, fund, lp, attacker, eth_market, seeded_pool, usdc):
    """The attack the review found: LP in, open the cap, redeem, close. It must not pay."""
    pool = protocol.pool
    fund(attacker, usdc, 97_000_000 * USDC)
    usdc.approve(pool, 90_000_000 * USDC, sender=attacker)
    deposit_now(pool, 90_000_000 * USDC, attacker, sender=attacker)
    shares = pool.balanceOf(attacker)
    with ape.reverts("pool: cooldown"):  # the first line of defence: no same-block exit at all
        redeem_now(pool, shares, attacker, attacker, sender=attacker)
    ape.chain.pending_timestamp += 900  # and even after it, the position is valued at exit prices
    ch.deposit(usdc, 7_000_000 * USDC, 0, sender=attacker)
    trade_now(ch, eth_market, 7_500 * WAD, 0, 0, sender=attacker)
    redeem_now(pool, shares, attacker, attacker, sender=attacker)
    trade_now(ch, eth_market, -7_500 * WAD, 0, 0, sender=attacker)
    ch.withdraw(usdc, ch.settlement(int(str(attacker), 16) << 96), 0, sender=attacker)
    assert usdc.balanceOf(attacker) < 97_000_000 * USDC
    assert pool.totalAssets() >= 10_000_000 * USDC
