"""Issue 9, item 2: trading ahead of a known oracle round drained the pool.

The attack, as the review replayed it: trades filled at the current round plus the skew premium
for a 0.05% fee, and rounds come on 0.5% moves. Anyone who sees a round pending (in the mempool,
or at the feed's own source) buys 7,500 ETH before it and sells after it: ten ordinary +-0.5%
rounds gave +$601,462 with no price risk, the pool falling from $5.00M to $4.40M.

What changed: a trade is an order (contracts/Orders.vy) that fills at the first round dated at
least `settlement_delay` (60 s) after it was placed. The round the attacker saw pending lands
within seconds, before the order can fill: the order fills at the round after it, which nobody
knew when the order was placed, and so does the order that closes the position.

Replayed here on the review's ten rounds, the attacker placing each order the moment it sees the
round coming: the known round always lands too early to fill at ("oracle: no round yet"), and
the position is opened and closed at two later rounds the attacker did not know. Each
iteration is run on both outcomes of the move between those two rounds (+0.5% and -0.5%, from one
chain snapshot): the attacker's expected gain is their average, and it is negative every time:
-$14,951.69 to -$15,216.70 per iteration (two 0.05% fees on $15M, and the premium's spread),
where the old fill made about +$60,000 on every round. The pool's value rises by what the
attacker loses, less the keepers' execution fees.
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import handles
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol
from tests.e2e.attacks import reserve_out_of_the_way
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, move_clock_to

SIZE = 7_500 * WAD  # the whole open-interest cap, as in the review
KNOWN_MOVES = (+1, -1, +1, +1, -1, -1, +1, -1, +1, -1)  # the review's ten rounds: 0.5% each way
STEP = 600  # seconds between rounds (the rounds come on 0.5% moves, minutes apart)
PENDING = 12  # seconds a round is seen pending before it lands (a block)


def publish(protocol, deployer, chain, price_8dp: int, at: int) -> None:
    move_clock_to(chain, at)
    protocol.feeds["WETH"].updateAnswer(price_8dp, sender=deployer)
    protocol.oracle.sync(protocol.tokens["WETH"], sender=deployer)


def filled(orders, receipt) -> bool:
    return bool(receipt.events.filter(orders.OrderFilled))


def attacker_value(protocol, account: int, who) -> int:
    """What the attacker holds, settlement token units: its wallet, its account's equity and the
    bond its pending ETH order escrowed (refunded at the fill)."""
    equity = int(protocol.clearinghouse.margin(account)[0]) // 10**12
    bond = int(protocol.orders.bonds(account, protocol.markets["ETH-PERP"]))
    return int(protocol.settlement.balanceOf(who)) + equity + bond


@pytest.fixture(scope="module")
def replay(project, chain, deployer, lp, attacker, keeper):
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    fund_liquidity(protocol, lp, deployer, 5_000_000, 20_000)
    reserve_out_of_the_way(protocol, deployer)  # the review's 7,500 ETH is three times the pool
    orders, usdc, _ = handles(protocol.clearinghouse)
    eth = protocol.markets["ETH-PERP"]
    account = deposit(protocol, attacker, "USDC", 4_000_000 * USDC)
    usdc.mint(attacker, 20_000 * USDC, sender=attacker)  # execution fees and a bond ($7,725 at most, back at each fill)
    usdc.approve(orders, 2**256 - 1, sender=attacker)
    price = int(protocol.feeds["WETH"].latestRoundData()[1])
    t = int(chain.pending_timestamp) + STEP
    results = []
    for move in KNOWN_MOVES:
        side = SIZE if move > 0 else -SIZE
        # the round is seen pending: the attacker places its order in the direction it knows
        move_clock_to(chain, t - PENDING)
        orders.commit_order(eth, side, 0, 0, sender=attacker)
        before = attacker_value(protocol, account, attacker)
        pool_before = int(protocol.pool.totalAssets())
        price = price * (1000 + 5 * move) // 1000
        publish(protocol, deployer, chain, price, t)  # the known round lands
        with ape.reverts("oracle: no round yet"):
            orders.execute_order(account, eth, sender=keeper)
        publish(protocol, deployer, chain, price, t + STEP)  # the next round: the entry fills here
        assert filled(orders, orders.execute_order(account, eth, sender=keeper))
        entry = int(protocol.clearinghouse.positions(account, eth).size)
        assert entry == side
        orders.commit_order(eth, -side, 0, 0, sender=attacker)  # out again at once
        gains = []
        for exit_move in (+1, -1):  # the round after: nobody knows it; both outcomes
            snapshot = chain.snapshot()
            publish(protocol, deployer, chain, price * (1000 + 5 * exit_move) // 1000, t + 2 * STEP)
            assert filled(orders, orders.execute_order(account, eth, sender=keeper))
            assert int(protocol.clearinghouse.positions(account, eth).size) == 0
            gains.append((attacker_value(protocol, account, attacker) - before, int(protocol.pool.totalAssets()) - pool_before))
            chain.restore(snapshot)
        results.append(gains)
        # carry on from the flat outcome: the exit fills at an unchanged round
        publish(protocol, deployer, chain, price, t + 2 * STEP)
        orders.execute_order(account, eth, sender=keeper)
        t += 3 * STEP
    return results


def test_known_round__expected_gain_is_negative_every_time(replay):
    for gains in replay:
        expected = sum(g for g, _ in gains) / len(gains)
        assert expected < 0
        # the fees and the premium's spread, nothing from the round the attacker knew
        assert -15_300 * USDC < expected < -14_900 * USDC


def test_known_round__the_pool_gains_what_the_attacker_loses(replay):
    for gains in replay:
        attacker = sum(g for g, _ in gains)
        pool = sum(p for _, p in gains)
        assert pool > 0
        assert pool >= -attacker * 9 // 10  # the keeper's execution fees are the rest, not the pool's


def test_known_round__the_order_cannot_fill_at_the_round_it_saw(project, chain, deployer, lp, attacker, keeper):
    """A round dated before executable_at never fills an order, even as the only new round; the
    first round at or after it does, and once a newer round has replaced that one the order is
    cancelled ("orders: round passed", its fee to the insurance fund), never filled at a later
    price."""
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    fund_liquidity(protocol, lp, deployer, 5_000_000, 20_000)
    orders, usdc, _ = handles(protocol.clearinghouse)
    eth = protocol.markets["ETH-PERP"]
    account = deposit(protocol, attacker, "USDC", 100_000 * USDC)
    usdc.mint(attacker, 20 * USDC, sender=attacker)  # the fee and the bond ($10)
    usdc.approve(orders, 2**256 - 1, sender=attacker)
    price = int(protocol.feeds["WETH"].latestRoundData()[1])
    t = int(chain.pending_timestamp) + 100
    move_clock_to(chain, t)
    executable_at = (
        orders.commit_order(eth, 10 * WAD, 0, 0, sender=attacker).events.filter(orders.OrderCommitted)[0].executable_at
    )
    assert executable_at == t + 60
    publish(protocol, deployer, chain, price + 1, t + 59)  # one second too early
    with ape.reverts("oracle: no round yet"):
        orders.execute_order(account, eth, sender=keeper)
    publish(protocol, deployer, chain, price + 2, t + 60)  # the first eligible round
    publish(protocol, deployer, chain, price + 3, t + 61)  # replaced before anyone filled
    keeper_before = int(usdc.balanceOf(keeper))
    insurance_before = int(protocol.clearinghouse.insurance_balance())
    receipt = orders.execute_order(account, eth, sender=keeper)
    assert not filled(orders, receipt)
    cancelled = receipt.events.filter(orders.OrderCancelled)
    assert cancelled[0].reason == "orders: round passed"
    assert int(protocol.clearinghouse.positions(account, eth).size) == 0
    # a keeper is paid for fills only: the lapsed order's fee and bond go to the insurance fund
    assert int(usdc.balanceOf(keeper)) == keeper_before
    assert cancelled[0].bond == 10 * USDC  # 0.05% of 10 ETH at $2,000
    assert int(protocol.clearinghouse.insurance_balance()) - insurance_before == 2 * USDC + 10 * USDC
    assert account == account_id(attacker)
