"""Issue 9, item 2, the LP half: leaving (or joining) the pool ahead of a known oracle round.

The attack: the pool is the counterparty to every trade, so its value moves with every round
while traders hold positions. With a 7,500 ETH long open against it, a +0.5% round costs the pool
about $75,000 and a -0.5% round pays it as much. An LP who sees a round pending (in the mempool,
or at the feed's own source) redeemed just before a round that costs the pool, at the value
before it, and deposited again just before one that pays it, at the value before that: the
round's move on its share, with no price risk, taken from the other LPs.

What this version does: while traders hold positions the instant paths (deposit, mint, withdraw,
redeem) revert "pool: book open, request instead", and LPs come and go by request
(contracts/LiquidityPool.vy). The value
is recorded at the request, a keeper executes it `settlement_delay` (60 s) later or after, and
the LP gets the worse of the two values: a redemption pays min(assets at the request, assets at
the execution), a deposit mints min(shares at the request, shares at the execution). The round
the LP saw pending lands within seconds, before the request can execute, so it is always counted
against them. This test shows what the instant path would have made next to what the request
made, and that the instant path is refused.

Replayed here on the same ten rounds as the traders' half (tests/e2e/test_known_round.py), the
attacker holding a third of the pool and acting on every round it can (its shares are free to
leave; a deposit's shares wait out their 900 s cooldown): before each round that costs the
pool it asks to redeem, before each round that pays it, to deposit. For each request the test
records what the old instant path would have made (the round's move on the request's value) and
what the request made: the first is positive every time, the second never is, and the other
LPs' shares keep what the attacker would have taken through the instant path.
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import trade_now
from marginsim.protocol import DEFAULT_CONFIG, deploy_protocol
from tests.e2e.attacks import reserve_out_of_the_way
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, move_clock_to

SIZE = 7_500 * WAD  # the long the pool is short of
KNOWN_MOVES = (+1, -1, +1, +1, -1, -1, +1, -1, +1, -1)  # the ten rounds of the traders' half
STEP = 1_000  # seconds between rounds: longer than the 900 s cooldown, so every round can be acted on
PENDING = 12  # seconds a round is seen pending before it lands (a block)
STAKE = 2_500_000  # USD the attacker holds in the pool; the honest LP holds 5,000,000


def publish(protocol, deployer, chain, price_8dp: int, at: int) -> None:
    move_clock_to(chain, at)
    protocol.feeds["WETH"].updateAnswer(price_8dp, sender=deployer)
    protocol.oracle.sync(protocol.tokens["WETH"], sender=deployer)


@pytest.fixture(scope="module")
def replay(project, chain, deployer, lp, attacker, trader, keeper):
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    pool, usdc = protocol.pool, protocol.settlement
    fund_liquidity(protocol, lp, deployer, 5_000_000, 20_000)
    usdc.mint(attacker, STAKE * USDC + 1_000 * USDC, sender=attacker)  # its stake and execution fees
    usdc.approve(pool, 2**256 - 1, sender=attacker)
    pool.deposit(STAKE * USDC, attacker, sender=attacker)
    reserve_out_of_the_way(protocol, deployer)  # the 7,500 ETH long is twice the pool
    deposit(protocol, trader, "USDC", 4_000_000 * USDC)
    trade_now(protocol.clearinghouse, protocol.markets["ETH-PERP"], SIZE, sender=trader)
    lp_shares = int(pool.balanceOf(lp))
    price = int(protocol.feeds["WETH"].latestRoundData()[1])
    t = int(chain.pending_timestamp) + STEP
    results = []  # (kind, what the instant path would have made, what the request made), settlement units
    for move in KNOWN_MOVES:
        move_clock_to(chain, t - PENDING)  # the round is seen pending
        shares = int(pool.balanceOf(attacker))
        hurts_pool = move > 0  # the pool is short the trader's long
        kind = None
        if hurts_pool and shares > 0 and int(pool.locked_shares(attacker)) == 0:
            kind = "redeem"
            pool.request_redeem(shares, attacker, attacker, sender=attacker)
            recorded = int(pool.requests(attacker).assets)  # what an instant redemption in that block paid
        elif not hurts_pool and shares == 0:
            kind = "deposit"
            assets = int(usdc.balanceOf(attacker)) - 1_000 * USDC  # all but the fee money
            pool.request_deposit(assets, attacker, sender=attacker)
            recorded = int(pool.requests(attacker).shares)
        price = price * (1000 + 5 * move) // 1000
        publish(protocol, deployer, chain, price, t)  # the known round lands
        if kind is not None:
            executable_at = int(pool.requests(attacker).executable_at)
            assert executable_at == t - PENDING + 60  # the round landed before the request can execute
            with ape.reverts("pool: request not due"):
                pool.execute_request(attacker, sender=keeper)
            move_clock_to(chain, executable_at)
            if kind == "redeem":
                worth_after = int(pool.convertToAssets(shares))  # what the shares are worth once the round is in
                wallet = int(usdc.balanceOf(attacker))
                pool.execute_request(attacker, sender=keeper)
                paid = int(usdc.balanceOf(attacker)) - wallet
                results.append((kind, recorded - worth_after, paid - worth_after))
            else:
                receipt = pool.execute_request(attacker, sender=keeper)
                minted = int(receipt.events.filter(pool.RequestExecuted)[0].shares)
                assert minted == int(pool.balanceOf(attacker))
                results.append((kind, int(pool.convertToAssets(recorded)) - assets, int(pool.convertToAssets(minted)) - assets))
        t += STEP
    return results, protocol, lp_shares


def test_known_round_lp__the_instant_path_would_have_paid_every_time(replay):
    results, _, _ = replay
    assert len(results) >= 6  # the attacker acted on most rounds
    assert {kind for kind, _, _ in results} == {"redeem", "deposit"}
    for _, instant_gain, _ in results:
        # the round's 0.5% on about $15M of notional, on the attacker's third of the pool
        assert instant_gain > 10_000 * USDC


def test_known_round_lp__a_request_never_gains_from_the_round_it_saw(replay):
    results, _, _ = replay
    for _, _, gain in results:
        # nothing from the round: at most the funding the long paid the pool in the seconds between
        # reading the value after the round and the execution's block (a fraction of a cent)
        assert gain <= USDC // 100


def test_known_round_lp__over_the_ten_rounds_the_attack_loses_its_fees(replay):
    results, protocol, _ = replay
    instant = sum(g for _, g, _ in results)
    requested = sum(g for _, _, g in results)
    fee = int(protocol.orders.execution_fee())
    assert instant > 100_000 * USDC  # what the rounds were worth to the old instant path
    assert requested - fee * len(results) < 0  # the attacker pays a keeper for each request and gains nothing
    assert int(protocol.pool.balanceOf(protocol.pool)) == 0  # no escrowed share left behind


def test_known_round_lp__the_instant_path_is_refused_while_the_long_is_open(replay, lp, attacker):
    _, protocol, _ = replay
    pool = protocol.pool
    assert not pool.instant() and int(pool.maxRedeem(lp)) == 0 and int(pool.maxDeposit(attacker)) == 0
    assert int(pool.redeemable(lp)) > 0  # what a request could be paid now
    with ape.reverts("pool: book open, request instead"):
        pool.redeem(int(pool.redeemable(lp)), lp, lp, sender=lp)
    with ape.reverts("pool: book open, request instead"):
        pool.deposit(1_000 * USDC, attacker, sender=attacker)
