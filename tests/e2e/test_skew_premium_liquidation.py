"""Issue 9, item 4: the skew-premium bound failed below full_liquidation_health.

The attack, as the review replayed it: one owner holds a 7,500 ETH long and eight small shorts
of 937.5 ETH each (the book's skew is zero). One +5.8% round, inside the circuit breaker, drives
the shorts deep below full_liquidation_health (the review's had health 0.063; here, the shorts
opening after the long, 0.08 to 0.29). The owner liquidates them itself (a second address is the keeper):
each whole close bought back at the bare oracle price, growing the skew by 937.5 ETH without
paying the premium that growth costs, and with a penalty shrunk to the shorts' little equity.
The long then sold into the 7,500 ETH skew and collected the full exit premium from the pool.
The review measured +$21,491 net for the owner, the pool's value falling $5.00M to $4.96M, no
bad debt.

What changed: a liquidation that closes a whole position fills at the skew-premium price a
trade of that size gets (`LiquidationEngine._liquidate`), so the shorts' closes pay the premium
their growth of the skew costs, and the long's exit premium is paid for. The premium is paid
first and the penalty only out of the equity left. What a short cannot pay of its premium is
bad debt, booked and covered by the insurance fund and then the pool.

Replayed here (seed-free, exact): the owner ends $24,961.51 down, the shorts leave $16,921.71
of bad debt, and the pool's value rises $23,021.22. The attack no longer pays.
"""

from __future__ import annotations

import pytest

from marginsim.orders import trade_now
from marginsim.protocol import DEFAULT_CONFIG, deploy_protocol
from marginsim.risk import health_of
from tests.e2e.attacks import reserve_out_of_the_way
from tests.e2e.incidents import MAX_UINT, USDC, WAD, deposit, fund_liquidity, publish_usd

SHORTS = 8
SHORT_SIZE = 7_500 * WAD // SHORTS  # 937.5 ETH each: below the 1,000 ETH tier
SHORT_DEPOSIT = 113_500 * USDC  # initial margin of 937.5 ETH at $2,000 (6%) plus the fee


def wallet_usd(usdc, who) -> int:
    return int(usdc.balanceOf(who))


@pytest.fixture(scope="module")
def attack(project, deployer, lp, attacker, keeper):
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    reserve_out_of_the_way(protocol, deployer)  # the review's 7,500 ETH long is three times the pool
    ch, usdc, eth, engine = protocol.clearinghouse, protocol.settlement, protocol.markets["ETH-PERP"], protocol.liquidation_engine
    fund_liquidity(protocol, lp, deployer, 5_000_000, 20_000)
    second = keeper  # the owner's second address, its keeper
    value_before = int(protocol.pool.totalAssets())
    owner_in = 4_000_000 * USDC + SHORTS * SHORT_DEPOSIT
    long = deposit(protocol, attacker, "USDC", 4_000_000 * USDC, subaccount=0)
    trade_now(ch, eth, SHORTS * SHORT_SIZE, 0, 0, sender=attacker)
    shorts = []
    for i in range(1, SHORTS + 1):
        shorts.append(deposit(protocol, attacker, "USDC", SHORT_DEPOSIT, subaccount=i))
        trade_now(ch, eth, -SHORT_SIZE, 0, i, sender=attacker)
    publish_usd(protocol, "WETH", 2_116, deployer)  # +5.8% in one round, inside the breaker
    healths = [int(health_of(ch, s)) for s in shorts]
    keeper_before = wallet_usd(usdc, second)
    bad_debt_before = int(ch.total_bad_debt())
    for s in shorts:
        engine.liquidate(s, eth, MAX_UINT, sender=second)
    trade_now(ch, eth, -SHORTS * SHORT_SIZE, 0, 0, sender=attacker)  # the long sells into the skew
    owner_out = sum(max(int(ch.settlement(a)), 0) for a in [long, *shorts])
    keeper_paid = wallet_usd(usdc, second) - keeper_before
    return {
        "healths": healths,
        "net": owner_out + keeper_paid - owner_in,
        "bad_debt": int(ch.total_bad_debt()) - bad_debt_before,
        "pool_value_change": int(protocol.pool.totalAssets()) - value_before,
        "accounts": [long, *shorts],
        "protocol": protocol,
    }


def test_replay__the_shorts_reach_the_deep_underwater_band(attack):
    """The +5.8% round leaves every short with positive equity but below full_liquidation_health
    (0.5): each is closed whole. The first short sold into the long's skew and collected the
    largest opening premium, so it is the healthiest (about 0.29), the last the least (0.08)."""
    healths = attack["healths"]
    assert all(0 < h < 5 * 10**17 for h in healths)
    assert healths == sorted(healths, reverse=True)


def test_replay__the_attack_loses(attack):
    """The owner's net (every account's balance plus its keeper's pay, less what it put in) is
    negative: the long's exit premium was paid by the shorts' closes, and the penalties and fees
    are lost. Before the fix the review measured +$21,491 with no bad debt at all."""
    assert attack["net"] < 0
    assert attack["pool_value_change"] > 0
    ch = attack["protocol"].clearinghouse
    assert all(int(ch.market_mask(a)) == 0 for a in attack["accounts"])
    print(
        f"\nowner net ${attack['net'] / USDC:,.2f}, bad debt ${attack['bad_debt'] / USDC:,.2f}, "
        f"pool value change ${attack['pool_value_change'] / USDC:,.2f}"
    )
