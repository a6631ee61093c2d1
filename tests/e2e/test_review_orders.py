"""Attacker's review of two-step delayed orders (contracts/Orders.vy, Clearinghouse.fill_order,
OracleRouter.round_price, Configurator.set_order_parameters).

Tests named `test_finding_*` demonstrate a finding that is still open, a known limit listed in
the README ("What is not built yet"): they assert the harmful outcome that happens today, so each
must be flipped when it is fixed. Tests named `test_refused_*` are attacks that were tried and
failed, among them the findings since fixed (F2, F3, F4, F5, F7: the keeper paid for fills only,
no withdrawal while an order is open, no cancel of a fillable order, "orders: position changed",
a phase change counted as passed); each shows the exact revert message or cancellation reason,
and where the fee went. The order bond is off in this module but for F1 (these follow the
execution fee's path; the bond follows it and has its own tests, tests/unit/orders/test_bond.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ape
import pytest

from marginsim import risk
from marginsim.orders import trade_now
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol
from tests.e2e.attacks import reserve_out_of_the_way
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, move_clock_to

MAX_UINT = 2**256 - 1
FEE = 2 * USDC  # DEFAULT_CONFIG.execution_fee_usd
DELAY = 60  # DEFAULT_CONFIG.settlement_delay
EXPIRY = 86_400  # DEFAULT_CONFIG.order_expiry
ETH = 2_000 * 10**8  # the WETH feed's starting answer, 8 decimals
FEED_TO_WAD = 10**10


# ---------------------------------------------------------------- setup


@dataclass
class Env:
    protocol: Any
    orders: Any
    ch: Any
    usdc: Any
    eth: int
    btc: int


@pytest.fixture(scope="module")
def env(project, deployer, lp):
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    fund_liquidity(protocol, lp, deployer, 5_000_000, 20_000)
    reserve_out_of_the_way(protocol, deployer)  # the review's 5,000-7,500 ETH orders are larger than the pool
    protocol.configurator.set_order_bond(0, sender=deployer)  # F1 turns it back on
    return Env(
        protocol,
        protocol.orders,
        protocol.clearinghouse,
        protocol.settlement,
        protocol.markets["ETH-PERP"],
        protocol.markets["BTC-PERP"],
    )


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(env, deployer, attacker, trader, other_trader, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def wallet_ready(env: Env, who: Any, amount: int = 10_000 * USDC) -> None:
    """Execution fees in the wallet, approved to Orders."""
    env.usdc.mint(who, amount, sender=who)
    env.usdc.approve(env.orders, MAX_UINT, sender=who)


def long_50_eth(env: Env, trader: Any, keeper: Any) -> int:
    """$7,000 of USDC and a 50 ETH long (5x, health 2.33) in the trader's subaccount 0; returns
    the account id."""
    account = deposit(env.protocol, trader, "USDC", 7_000 * USDC, 0)
    wallet_ready(env, trader)
    trade_now(env.ch, env.eth, 50 * WAD, 0, 0, sender=trader, keeper=keeper)
    return account


def publish(env: Env, deployer: Any, chain: Any, answer: int, at: int, symbol: str = "WETH") -> int:
    """A round at `answer` (feed decimals) dated exactly `at`, synced as the oracle bot does.
    Returns its price, WAD."""
    move_clock_to(chain, at)
    receipt = env.protocol.feeds[symbol].updateAnswer(answer, sender=deployer)
    assert receipt.timestamp == at
    env.protocol.oracle.sync(env.protocol.tokens[symbol], sender=deployer)
    return answer * 10 ** (18 - int(env.protocol.feeds[symbol].decimals()))


def commit(env: Env, who: Any, market: int, size: int, limit: int = 0, subaccount: int = 0) -> int:
    """Place an order; returns its executable_at."""
    receipt = env.orders.commit_order(market, size, limit, subaccount, sender=who)
    return receipt.events.filter(env.orders.OrderCommitted)[0].executable_at


def outcome(env: Env, receipt: Any) -> str:
    """'filled', or the cancellation reason."""
    if receipt.events.filter(env.orders.OrderFilled):
        return "filled"
    return receipt.events.filter(env.orders.OrderCancelled)[0].reason


def equity_tokens(env: Env, account: int) -> int:
    return int(env.ch.margin(account)[0]) // 10**12


def snapshot(chain: Any) -> Any:
    chain.mine()  # a snapshot id is a block hash: keep it apart from the isolation snapshot
    return chain.snapshot()


# ---------------------------------------------------------------- F1: the owner times its own fill

SIZE = 7_500 * WAD  # the whole open-interest cap, as in test_known_round
KNOWN_MOVES = (+1, -1, +1, +1, -1, -1, +1, -1, +1, -1)  # the review's ten rounds: 0.5% each way
STEP = 600  # seconds between rounds
PENDING = 12  # a round is seen pending a block before it lands


def test_finding_owner_timed_fill__the_known_round_attack_comes_back(env, chain, deployer, attacker, keeper):
    """FINDING (high), a KNOWN LIMIT listed in the README ("What is not built yet": delayed
    orders lean on a live keeper): an order fills at its first round R only while R is the
    newest round, and its owner is a keeper of its own order (paid its own fee back). When no
    third-party keeper fills within the round (the project's keeper bot does not fill orders
    yet), the owner waits until it sees the NEXT round R2 pending and then either fills at R just
    before R2 lands, or lets R2 land and the order lapses ("orders: round passed"). Since the
    fixes, the lapse costs the order's fee, which goes to the insurance fund (F2's fix), and the
    owner cannot make the fill fail by withdrawing (F3's fix), and the lapsed leg forfeits its
    bond too (0.05% of the notional, about $7,500 here): the option now costs $7,502 a round.

    Replayed on test_known_round's ten +-0.5% rounds with 7,500 ETH: a long order (subaccount 1)
    and a short order (subaccount 2) wait for R; when R2 shows pending, the owner fills the leg
    in R2's direction at R and lets the other lapse for its $2 fee. The exit fills at a later
    round the attacker does not know (both outcomes, from one snapshot). Expected gain per round:
    +$52,559 to +$52,939 (0.5% of $15M less two 0.05% fees, the lapsed fee and bond),
    +$526,708 over the ten rounds (+$601,967 before the bond; the original attack made
    +$601,462; test_known_round's replay shows about -$15,000 a round when the order fills at
    the round after the one seen pending); the pool loses what the attacker gains plus what the
    insurance fund takes.

    Fix (not built): price the fill at the first round at or after executable_at whenever it
    is executed (a keeper passes the round id; the router checks getRoundData(id).updatedAt >=
    executable_at > getRoundData(id - 1).updatedAt within one phase) and drop the "round
    passed" cancellation, so nobody's choice of WHEN to execute changes whether or at what price
    the order fills; or a keeper that fills every order within its round."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    p.configurator.set_order_bond(5 * 10**14, sender=deployer)  # the default bond, on
    legs = {+1: deposit(p, attacker, "USDC", 4_000_000 * USDC, 1), -1: deposit(p, attacker, "USDC", 4_000_000 * USDC, 2)}
    wallet_ready(env, attacker, 200_000 * USDC)  # fees and bonds

    def value() -> int:
        escrowed = sum(int(orders.bonds(a, eth)) for a in legs.values())
        return int(usdc.balanceOf(attacker)) + sum(equity_tokens(env, a) for a in legs.values()) + escrowed

    price = int(p.feeds["WETH"].latestRoundData()[1])
    t = int(chain.pending_timestamp) + STEP
    results = []
    for move in KNOWN_MOVES:
        move_clock_to(chain, t)
        before, pool_before = value(), int(p.pool.totalAssets())
        commit(env, attacker, eth, SIZE, 0, 1)
        commit(env, attacker, eth, -SIZE, 0, 2)
        publish(env, deployer, chain, price, t + 2 * DELAY)  # R: the first round after both orders
        # no keeper fills; R2 is seen pending: fill the leg in its direction, at R
        nxt = price * (1000 + 5 * move) // 1000
        move_clock_to(chain, t + STEP - PENDING)
        with ape.reverts("clearinghouse: order pending"):  # the other leg's margin stays
            env.ch.withdraw(usdc, 1, 2 if move > 0 else 1, sender=attacker)
        assert outcome(env, orders.execute_order(legs[move], eth, sender=attacker)) == "filled"
        publish(env, deployer, chain, nxt, t + STEP)  # R2 lands
        wallet, insurance = int(usdc.balanceOf(attacker)), int(env.ch.insurance_balance())
        bond = int(orders.bonds(legs[-move], eth))
        assert bond > 7_400 * USDC
        assert outcome(env, orders.execute_order(legs[-move], eth, sender=attacker)) == "orders: round passed"
        assert int(usdc.balanceOf(attacker)) == wallet  # the unused leg's fee and bond are not paid back
        assert int(env.ch.insurance_balance()) == insurance + FEE + bond  # they go to the insurance fund
        orders.commit_order(eth, -move * SIZE, 0, 1 if move > 0 else 2, sender=attacker)  # out again
        gains = []
        for exit_move in (+1, -1):  # the exit's round: unknown to the attacker, both outcomes
            snap = snapshot(chain)
            publish(env, deployer, chain, nxt * (1000 + 5 * exit_move) // 1000, t + 2 * STEP)
            assert outcome(env, orders.execute_order(legs[move], eth, sender=attacker)) == "filled"
            assert int(env.ch.positions(legs[move], eth).size) == 0
            gains.append((value() - before, int(p.pool.totalAssets()) - pool_before))
            chain.restore(snap)
        results.append(gains)
        publish(env, deployer, chain, nxt, t + 2 * STEP)
        orders.execute_order(legs[move], eth, sender=attacker)
        price = nxt
        t += 3 * STEP

    expected = [sum(g for g, _ in gains) / 2 for gains in results]
    pool = [sum(q for _, q in gains) / 2 for gains in results]
    print("F1 expected gain per round (USDC):", [round(e / USDC, 2) for e in expected], "total", round(sum(expected) / USDC, 2))
    print("F1 expected pool change per round (USDC):", [round(q / USDC, 2) for q in pool])
    for e, q in zip(expected, pool, strict=True):
        assert 52_500 * USDC < e < 53_100 * USDC  # test_known_round: -$15,000 on the same rounds
        assert q < -55_000 * USDC  # out of the LPs
    assert 526_000 * USDC < sum(expected) < 528_000 * USDC


# ---------------------------------------------------------------- F2 (fixed): waiting to cancel pays a keeper nothing

ETH_USD = 2_000  # to price gas, for the print


def test_refused_keeper_pay__waiting_to_cancel_pays_the_keeper_nothing(env, chain, deployer, trader, other_trader, keeper):
    """F2, fixed. The finding: the escrowed fee was paid in full whether the keeper filled the
    order or waited for the next round and cancelled it ("orders: round passed": one router
    read, no fill, under 40% of a fill's gas), so between about 6 and 17 gwei a rational keeper
    never filled. Now the keeper is paid for a fill only: of two identical $2 orders at one
    round, the one filled pays the keeper $2, the one the keeper waited out pays it $0 and its
    fee goes to the insurance fund (the trader still loses it, and gets no trade)."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    deposit(p, other_trader, "USDC", 400_000 * USDC)
    wallet_ready(env, other_trader)
    trade_now(env.ch, eth, 200 * WAD, 0, 0, sender=other_trader, keeper=keeper)  # a live market
    filler = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    waited = deposit(p, trader, "USDC", 100_000 * USDC, 1)
    wallet_ready(env, trader)
    at = commit(env, trader, eth, 10 * WAD, 0, 0)
    commit(env, trader, eth, 10 * WAD, 0, 1)
    publish(env, deployer, chain, ETH, at + 5)  # R: both orders' first round

    keeper_before, insurance_before = int(usdc.balanceOf(keeper)), int(env.ch.insurance_balance())
    fill = orders.execute_order(filler, eth, sender=keeper)
    assert outcome(env, fill) == "filled"
    assert int(usdc.balanceOf(keeper)) == keeper_before + FEE  # paid for the fill
    publish(env, deployer, chain, ETH, at + 65)  # R2: the keeper waited for it
    cancel = orders.execute_order(waited, eth, sender=keeper)
    assert outcome(env, cancel) == "orders: round passed"
    assert cancel.events.filter(orders.OrderCancelled)[0].fee_to == env.ch.address
    assert int(usdc.balanceOf(keeper)) == keeper_before + FEE  # nothing for the wait
    assert int(env.ch.insurance_balance()) == insurance_before + FEE
    assert int(env.ch.positions(waited, eth).size) == 0

    fill_gas, cancel_gas = int(fill.gas_used), int(cancel.gas_used)
    fill_break_even = FEE / USDC / (fill_gas * ETH_USD * 1e-9)  # gwei
    print(f"F2 gas: fill {fill_gas} paid $2 (pays up to {fill_break_even:.2f} gwei), round-passed cancel {cancel_gas} paid $0")


# ---------------------------------------------------------------- F3 (fixed): withdrawing to make the fill fail


def test_refused_withdraw_to_cancel__order_pending(env, chain, deployer, trader, keeper):
    """F3, fixed. The finding: once its round R was out and the next one seen coming against
    it, the owner withdrew the margin the fill needed and executed its own order: cancelled
    "clearinghouse: insufficient margin", its own fee back. Now an account with an order open
    cannot withdraw at all ("clearinghouse: order pending", not even one unit): the owner of a
    $200,000 long on $50,000 either lets a keeper fill it at R (the fee to the keeper) or, if it
    lapses, loses the fee to the insurance fund. Both branches from one snapshot."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    acct = deposit(p, trader, "USDC", 50_000 * USDC, 3)
    wallet_ready(env, trader)
    wallet_before = int(usdc.balanceOf(trader))
    at = commit(env, trader, eth, 100 * WAD, 0, 3)  # $200,000 long: needs margin at its fill
    publish(env, deployer, chain, ETH, at + 5)  # R
    # R2 is seen coming, -0.5%: try to walk away
    for amount in (45_000 * USDC, 1):
        with ape.reverts("clearinghouse: order pending"):
            env.ch.withdraw(usdc, amount, 3, sender=trader)
    assert int(env.ch.settlement(acct)) == 50_000 * USDC
    snap = snapshot(chain)
    keeper_before = int(usdc.balanceOf(keeper))
    assert outcome(env, orders.execute_order(acct, eth, sender=keeper)) == "filled"
    assert int(env.ch.positions(acct, eth).size) == 100 * WAD
    assert int(usdc.balanceOf(keeper)) == keeper_before + FEE
    assert int(usdc.balanceOf(trader)) == wallet_before - FEE
    chain.restore(snap)
    insurance = int(env.ch.insurance_balance())
    publish(env, deployer, chain, ETH * 995 // 1000, at + 65)  # R2 lands: the order lapses
    assert outcome(env, orders.execute_order(acct, eth, sender=trader)) == "orders: round passed"
    assert int(usdc.balanceOf(trader)) == wallet_before - FEE  # the fee is gone either way
    assert int(env.ch.insurance_balance()) == insurance + FEE
    env.ch.withdraw(usdc, 45_000 * USDC, 3, sender=trader)  # no order open: free again
    assert int(usdc.balanceOf(trader)) == wallet_before - FEE + 45_000 * USDC


# ---------------------------------------------------------------- F4 (fixed): cancel after expiry checks the round


def test_refused_cancel_after_expiry__a_fillable_order_cannot_be_dropped(env, chain, deployer, trader, keeper):
    """F4, fixed. The finding: cancel_order (and a replacing commit_order) checked the time
    only, so with the expiry at its minimum (60 s, below the feeds' 3,600 s heartbeat) an order
    whose first round had come and was still fillable was dropped by its owner at no cost once
    the round was known, or by a keeper for the full fee. Now, 30 s past its expiry with its
    round ($2,001) fillable, nobody can cancel it ("orders: not expired": the owner, a keeper)
    nor replace it ("orders: order pending"); a keeper fills both orders at $2,001 plus premium
    and is paid $2 each."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    p.configurator.set_order_parameters(DELAY, 60, FEE, sender=deployer)
    a0 = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    a1 = deposit(p, trader, "USDC", 100_000 * USDC, 1)
    wallet_ready(env, trader)
    at = commit(env, trader, eth, 10 * WAD, 0, 0)
    commit(env, trader, eth, 10 * WAD, 0, 1)
    publish(env, deployer, chain, ETH + 10**8, at + 5)  # the first round: $2,001, known to all
    move_clock_to(chain, at + 90)
    chain.mine()
    assert int(p.oracle.round_price(p.tokens["WETH"], at)) == (ETH + 10**8) * FEED_TO_WAD  # fillable now

    wallet, keeper_before = int(usdc.balanceOf(trader)), int(usdc.balanceOf(keeper))
    with ape.reverts("orders: not expired"):
        orders.cancel_order(a0, eth, sender=trader)  # the owner
    with ape.reverts("orders: not expired"):
        orders.cancel_order(a1, eth, sender=keeper)  # a keeper
    with ape.reverts("orders: order pending"):
        orders.commit_order(eth, -10 * WAD, 0, 0, sender=trader)
    for acct in (a0, a1):
        receipt = orders.execute_order(acct, eth, sender=keeper)
        assert outcome(env, receipt) == "filled"
        assert 2_001 * WAD < receipt.events.filter(orders.OrderFilled)[0].fill_price < 2_002 * WAD
        assert int(env.ch.positions(acct, eth).size) == 10 * WAD
    assert int(usdc.balanceOf(trader)) == wallet
    assert int(usdc.balanceOf(keeper)) == keeper_before + 2 * FEE


# ---------------------------------------------------------------- F5 (fixed): a close placed before a liquidation


def _liquidated_with_a_pending_close(env, chain, deployer, trader, keeper, slow_walk: bool):
    """The trader: $7,000 and 50 ETH long (5x health 2.33); it orders the whole 50 ETH sold; a
    round before the order's own drops it to health 0.995 and a keeper liquidates at once (the
    least close back to health 1.1). Returns (account, the remaining long, the insurance fund
    before the execution, the execution's receipt)."""
    from tests.e2e.attacks import price_for_health

    p = env.protocol
    eth = env.eth
    acct = long_50_eth(env, trader, keeper)
    t = int(chain.pending_timestamp) + 600
    if slow_walk:  # -0.5% every 10 minutes to health 1.03: volatility stays near 90%
        price = 2_000.0
        stop = price_for_health(p, acct, "ETH-PERP", 1.03)
        while price * 0.995 > stop:
            price *= 0.995
            publish(env, deployer, chain, int(price * 10**8), t)
            t += 600
        publish(env, deployer, chain, int(stop * 10**8), t)
        t += 600
    move_clock_to(chain, t)
    at = commit(env, trader, eth, -50 * WAD, 0, 0)  # close everything
    target = int(price_for_health(p, acct, "ETH-PERP", 0.995) * 10**8)
    publish(env, deployer, chain, target, at - 30)  # before the order's round
    env.protocol.liquidation_engine.liquidate(acct, eth, 10**30, sender=keeper)
    remaining = int(env.ch.positions(acct, eth).size)
    assert 0 < remaining < 50 * WAD
    publish(env, deployer, chain, target, at + 5)  # the order's round, the same price
    assert int(p.oracle.round_price(p.tokens["WETH"], at)) == target * FEED_TO_WAD  # fillable
    insurance = int(env.ch.insurance_balance())
    return acct, remaining, insurance, env.orders.execute_order(acct, eth, sender=keeper)


@pytest.mark.parametrize(
    "slow_walk",
    [True, False],
    ids=["slow walk: the close would open a short", "gap: the close would be refused for margin"],
)
def test_refused_close_then_liquidation__cancelled_position_changed(env, chain, deployer, trader, keeper, slow_walk):
    """F5, fixed. The finding: an order kept its size whatever happened to the position before
    its round. A trader ordered its whole 50 ETH long closed; a liquidation in between closed
    part of it; at the round the -50 ETH order either filled (after a slow walk down: the account,
    which asked to be flat, ended SHORT 12.1 ETH, $23,000 notional that nobody ordered) or, after
    one -4.1% round, was refused "clearinghouse: insufficient margin". Now the order records the
    position at commit (50 ETH) and is cancelled "orders: position changed" when it differs at
    the fill: the account keeps the 37.88 ETH long the liquidation left, never short, and the
    $2 fee goes to the insurance fund. A new close of what is left fills flat."""
    acct, remaining, insurance, receipt = _liquidated_with_a_pending_close(
        env, chain, deployer, trader, keeper, slow_walk=slow_walk
    )
    assert outcome(env, receipt) == "orders: position changed"
    [cancelled] = receipt.events.filter(env.orders.OrderCancelled)
    assert (cancelled.size_delta, cancelled.fee, cancelled.fee_to) == (-50 * WAD, FEE, env.ch.address)
    assert not receipt.events.filter(env.ch.Trade)
    size = int(env.ch.positions(acct, env.eth).size)
    print(f"F5 after liquidation long {remaining / WAD:.4f} ETH; after the close order: {size / WAD:.4f} ETH")
    assert size == remaining
    assert 37_88 * WAD // 100 < size < 37_89 * WAD // 100  # still long: no unwanted short
    assert int(env.ch.insurance_balance()) == insurance + FEE
    at = commit(env, trader, env.eth, -size)
    price = int(env.protocol.feeds["WETH"].latestRoundData()[1])
    publish(env, deployer, chain, price, at + 5)
    assert outcome(env, env.orders.execute_order(acct, env.eth, sender=keeper)) == "filled"
    assert int(env.ch.positions(acct, env.eth).size) == 0


# ---------------------------------------------------------------- F6: the keeper orders the fills of one round


def test_finding_fill_order_sandwich__a_keeper_brackets_a_large_order_at_one_round(env, chain, deployer, attacker, other_trader):
    """FINDING (low; pre-existing in the one-step trade, where only a block builder could do it),
    a KNOWN LIMIT listed in the README ("What is not built yet"): every order of one round fills
    at the same oracle price, the premium set by the skew at the moment of each fill, and the
    keeper picks the order of the fills. Seeing a 5,000 ETH buy committed, the attacker commits
    a 2,500 ETH buy (subaccount 5) and a 2,500 ETH sell (subaccount 6), fills buy, victim, sell
    at the victim's round, and unwinds the hedged pair at a later round (net premium zero).
    Attacker: +$14,964.50 (2,500 x 5,000 / 1M x $2,000 less four 0.05% fees); the victim pays
    $25,000 more premium than alone. The fixes of F2-F5 and F7 leave it as it was: every order
    here fills, and the attacker, its own keeper, is paid its own fees back. Fix (not built):
    fill the orders of a market in commit order (execute_order refuses an order while an
    earlier-committed one in the same market is still pending), or a fee floor of
    oi_cap / (4 * skew_scale) (0.1875% here)."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    victim = deposit(p, other_trader, "USDC", 3_000_000 * USDC, 0)
    wallet_ready(env, other_trader)
    buy = deposit(p, attacker, "USDC", 1_000_000 * USDC, 5)
    sell = deposit(p, attacker, "USDC", 1_000_000 * USDC, 6)
    wallet_ready(env, attacker)

    def value() -> int:
        return int(usdc.balanceOf(attacker)) + equity_tokens(env, buy) + equity_tokens(env, sell)

    before = value()
    t = int(chain.pending_timestamp) + 60
    move_clock_to(chain, t)
    at = commit(env, other_trader, eth, 5_000 * WAD)  # the victim's order, public
    commit(env, attacker, eth, 2_500 * WAD, 0, 5)
    commit(env, attacker, eth, -2_500 * WAD, 0, 6)
    price = publish(env, deployer, chain, ETH, at + 20)  # one round for all three
    st = env.ch.market_state(eth)
    alone = risk.fill_price(price, st.long_oi - st.short_oi, 5_000 * WAD, env.ch.markets(eth).skew_scale)
    assert outcome(env, orders.execute_order(buy, eth, sender=attacker)) == "filled"
    victim_fill = orders.execute_order(victim, eth, sender=attacker).events.filter(orders.OrderFilled)[0].fill_price
    assert outcome(env, orders.execute_order(sell, eth, sender=attacker)) == "filled"
    # unwind the hedged pair at a later round: the two premiums cancel
    commit(env, attacker, eth, -2_500 * WAD, 0, 5)
    at2 = commit(env, attacker, eth, 2_500 * WAD, 0, 6)
    publish(env, deployer, chain, ETH, at2 + 5)
    assert outcome(env, orders.execute_order(buy, eth, sender=attacker)) == "filled"
    assert outcome(env, orders.execute_order(sell, eth, sender=attacker)) == "filled"
    gain = value() - before
    victim_extra = (victim_fill - alone) * 5_000 * WAD // WAD // WAD * USDC
    print(f"F6 attacker gain {gain / USDC:.2f} USDC; victim's extra premium {victim_extra / USDC:.2f} USDC")
    assert 14_000 * USDC < gain < 16_000 * USDC
    assert victim_extra >= 24_900 * USDC


# ---------------------------------------------------------------- F7 (fixed): a phase change counts as passed


def test_refused_phase_change__the_order_counts_as_passed(env, chain, deployer, trader, keeper):
    """F7, fixed. The finding: round_price counted the newest round as the first whenever
    getRoundData(id - 1) failed, so after a Chainlink phase change (the newest round (2 << 64)
    | 1, whose predecessor (2 << 64) | 0 does not exist) an order whose first round R1 ($2,001)
    came in the old phase and was not filled then filled at the phase-2 round, $2,040 plus
    premium. Now a failed read on a round id with phase bits counts as passed (round_price 0):
    the order is cancelled "orders: round passed", its fee to the insurance fund, no position.

    The cost of failing closed: an order placed after R1, whose first round really is the
    phase-2 round, lapses the same way (it could not be told apart); its owner loses the fee
    and places it again."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    later = deposit(p, trader, "USDC", 100_000 * USDC, 1)
    wallet_ready(env, trader)
    at = commit(env, trader, eth, 10 * WAD)
    publish(env, deployer, chain, ETH + 10**8, at + 5)  # R1, phase 1: the order's round
    later_at = commit(env, trader, eth, 10 * WAD, 0, 1)  # placed after R1
    feed = p.feeds["WETH"]
    t = later_at + 10
    move_clock_to(chain, t)
    chain.mine()
    phase2 = (2 << 64) | 1
    feed.updateRoundData(phase2, 2_040 * 10**8, t, t, sender=deployer)
    weth = p.tokens["WETH"]
    assert int(p.oracle.price(weth)) == 2_040 * WAD  # the new phase's round is a good price
    assert int(p.oracle.round_price(weth, at)) == 0  # R1 is not forgotten: passed
    assert int(p.oracle.round_price(weth, later_at)) == 0  # failing closed: passed too
    insurance, keeper_before = int(env.ch.insurance_balance()), int(usdc.balanceOf(keeper))
    for a in (acct, later):
        receipt = orders.execute_order(a, eth, sender=keeper)
        assert outcome(env, receipt) == "orders: round passed"
        assert receipt.events.filter(orders.OrderCancelled)[0].fee_to == env.ch.address
        assert int(env.ch.positions(a, eth).size) == 0
    assert int(env.ch.insurance_balance()) == insurance + 2 * FEE
    assert int(usdc.balanceOf(keeper)) == keeper_before
    # the next round of the new phase has a readable predecessor: the usual rule again
    again = commit(env, trader, eth, 10 * WAD, 0, 1)
    publish(env, deployer, chain, 2_040 * 10**8, again + 5)  # (2 << 64) | 2
    assert outcome(env, orders.execute_order(later, eth, sender=keeper)) == "filled"


def test_refused_same_phase__a_replaced_first_round_cancels(env, chain, deployer, trader, keeper):
    """The same story without the phase change: the next round replaces R1 and the order is
    cancelled "orders: round passed", its fee to the insurance fund, the keeper paid nothing."""
    p = env.protocol
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, env.eth, 10 * WAD)
    publish(env, deployer, chain, ETH + 10**8, at + 5)
    publish(env, deployer, chain, 2_040 * 10**8, at + 20)
    assert int(p.oracle.round_price(p.tokens["WETH"], at)) == 0
    insurance, keeper_before = int(env.ch.insurance_balance()), int(env.usdc.balanceOf(keeper))
    assert outcome(env, env.orders.execute_order(acct, env.eth, sender=keeper)) == "orders: round passed"
    assert int(env.ch.insurance_balance()) == insurance + FEE
    assert int(env.usdc.balanceOf(keeper)) == keeper_before


# ---------------------------------------------------------------- refused: the owner escaping its order


def test_refused_owner_escape__no_cancel_and_no_replacement_before_expiry(env, chain, deployer, trader, keeper):
    """With the default parameters the owner, seeing its round come against it, can neither
    cancel ("orders: not expired") nor replace its order ("orders: order pending"); a keeper fills
    it at that round."""
    p = env.protocol
    orders, eth = env.orders, env.eth
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, eth, 10 * WAD)
    publish(env, deployer, chain, ETH - 10 * 10**8, at + 5)  # -0.5%: against the buy
    with ape.reverts("orders: not expired"):
        orders.cancel_order(acct, eth, sender=trader)
    with ape.reverts("orders: order pending"):
        orders.commit_order(eth, -10 * WAD, 0, 0, sender=trader)
    assert outcome(env, orders.execute_order(acct, eth, sender=keeper)) == "filled"


# ---------------------------------------------------------------- refused: gas games (the 63/64 rule)


def _sweep(env, chain, account, market, keeper, gases):
    """Execute at each gas limit from one state: the outcomes of the calls that went through, and
    how many reverted."""
    seen, reverted = set(), 0
    for gas in gases:
        snap = snapshot(chain)
        try:
            receipt = env.orders.execute_order(account, market, sender=keeper, gas=gas)
        except Exception:  # out of gas, in Orders or (bare) in fill_order / round_price
            reverted += 1
            continue
        seen.add(outcome(env, receipt))
        chain.restore(snap)
    return seen, reverted


@pytest.mark.slow  # each tries every gas limit: 20-35 s
def test_refused_gas_games__no_gas_limit_cancels_a_fillable_order(env, chain, deployer, trader, keeper):
    """A keeper who wants an order cancelled rather than filled starves the fill of gas: at every
    limit from 60,000 to 300,000 (step 2,000; step 200 around the edge near 205,000) the call
    either reverts as a whole (fill_order ran out: a bare revert, re-raised) or fills. Never
    "cancelled"."""
    p = env.protocol
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, env.eth, 10 * WAD)
    publish(env, deployer, chain, ETH, at + 5)
    gases = [*range(60_000, 300_001, 2_000), *range(196_000, 214_001, 200)]  # finer at the edge
    seen, reverted = _sweep(env, chain, acct, env.eth, keeper, gases)
    assert seen == {"filled"}
    assert reverted > 90  # the starved band was swept (the edge is near 205,000 with the reserve off)


@pytest.mark.slow  # each tries every gas limit: 20-35 s
def test_refused_gas_games__no_gas_limit_fills_a_passed_round(env, chain, deployer, trader, keeper):
    """The other way: starving the router's getRoundData(id - 1) read (raw_call, failure counted
    as "no previous round") to fill an order whose round has passed. With the MockAggregator's
    ~2,600-gas read, the 1/64 left after it is too little for the rest of round_price: every
    limit from 30,000 to 200,000 (step 1,000; step 100 around the edge near 93,000) reverts or
    cancels "orders: round passed". (A feed whose getRoundData costs >~400k gas would make this
    work on a plain round id; a proxy's round id has phase bits, and a failed read on it now
    counts as passed: F7's fix.)"""
    p = env.protocol
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, env.eth, 10 * WAD)
    publish(env, deployer, chain, ETH, at + 5)
    publish(env, deployer, chain, ETH + 10**8, at + 10)
    gases = [*range(30_000, 200_001, 1_000), *range(88_000, 98_001, 100)]  # finer at the edge
    seen, reverted = _sweep(env, chain, acct, env.eth, keeper, gases)
    assert seen == {"orders: round passed"}
    assert reverted > 100  # the edge is near 93,000


@pytest.mark.slow  # each tries every gas limit: 20-35 s
def test_refused_gas_games__no_gas_limit_refunds_a_passed_round_at_expiry(env, chain, deployer, trader, attacker):
    """cancel_order reads the round through a raw_call and takes any failure for "no round
    yet", which after expiry refunds the fee to the owner instead of forfeiting it. The owner
    (from another address: the refund goes to the owner whoever cancels) starves that read to
    turn a passed round's forfeit into a refund: at every limit from 30,000 to 200,000 (step
    1,000; step 100 around the edge) the call reverts or forfeits ("orders: round passed"),
    the 1/64 left after a starved read being too little for the rest. Never "orders: expired"."""
    p = env.protocol
    orders, eth = env.orders, env.eth
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, eth, 10 * WAD)
    publish(env, deployer, chain, ETH, at + 5)
    publish(env, deployer, chain, ETH + 10**8, at + 10)  # passed
    move_clock_to(chain, at + EXPIRY + 10)
    chain.mine()
    seen, reverted = set(), 0
    for gas in [*range(30_000, 200_001, 1_000), *range(60_000, 110_001, 100)]:
        snap = snapshot(chain)
        try:
            receipt = orders.cancel_order(acct, eth, sender=attacker, gas=gas)
        except Exception:
            reverted += 1
            continue
        seen.add(outcome(env, receipt))
        chain.restore(snap)
    assert seen == {"orders: round passed"}
    assert reverted > 30


# ---------------------------------------------------------------- refused: sizes at the packing's edges


@pytest.mark.parametrize("size", [2**127 - 1, -(2**127 - 1)])
def test_refused_huge_sizes__at_the_commit(env, deployer, trader, size):
    """The largest sizes the int128 packing takes would put a side past the core's bound
    (2**96 - 1 base units), and no margin backs them: refused at the commit (for the margin, the
    first check), nothing stored or escrowed."""
    p = env.protocol
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    with ape.reverts("orders: insufficient margin"):
        env.orders.commit_order(env.eth, size, 0, 0, sender=trader)
    assert tuple(env.orders.order(acct, env.eth)) == (0, 0, 0, 0, 0)


def test_refused_huge_sizes__past_the_cap_refused_at_the_commit(env, chain, deployer, trader, keeper):
    """A size within the reserve but past the base-unit cap is refused at the commit with the
    cap's reason (nothing stored or escrowed), so it can neither sit pending nor be cancelled at
    its round into a forfeit."""
    p = env.protocol
    size = 7_500 * WAD + 1
    acct = deposit(p, trader, "USDC", 5_000_000 * USDC, 0)  # the margin of $15M of ETH
    wallet_ready(env, trader)
    wallet = int(p.settlement.balanceOf(trader))
    with ape.reverts("orders: open interest cap"):
        env.orders.commit_order(env.eth, size, 0, 0, sender=trader)
    assert tuple(env.orders.order(acct, env.eth)) == (0, 0, 0, 0, 0)
    assert int(p.settlement.balanceOf(trader)) == wallet


# ---------------------------------------------------------------- refused: reentrancy through the settlement token


def test_refused_reentrancy__a_hooked_settlement_token_cannot_reenter_orders(
    project, chain, deployer, lp, trader, other_trader, keeper
):
    """The settlement token (here ReentrantERC20, calling back on every transfer) re-enters
    Orders from the fee's transfer to the keeper and the bond's to the owner at the end of
    execute_order: execute_order, commit_order and cancel_order all revert bare (Orders' lock). From inside a Clearinghouse
    transfer (a withdrawal), execute_order of another trader's fillable order reaches fill_order,
    which reverts bare on the Clearinghouse's lock: Orders re-raises it instead of cancelling
    the order with a reason, so the order is still pending and fills once the hooks are off."""
    from dataclasses import replace

    evil = deployer.deploy(project.ReentrantERC20, "Evil USD", "EUSD", 6)
    protocol = deploy_protocol(project, deployer, replace(DEFAULT_CONFIG, settlement_address=evil.address))
    fund_liquidity(protocol, lp, deployer, 5_000_000, 20_000)
    e = Env(protocol, protocol.orders, protocol.clearinghouse, protocol.settlement, protocol.markets["ETH-PERP"], 0)
    orders, eth = e.orders, e.eth
    mine = deposit(protocol, trader, "USDC", 100_000 * USDC, 0)
    victim = deposit(protocol, other_trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(e, trader)
    wallet_ready(e, other_trader)
    at = commit(e, trader, eth, 10 * WAD)
    commit(e, other_trader, eth, 10 * WAD)
    publish(e, deployer, chain, ETH, at + 20)  # both fillable
    calls = [
        (orders.address, orders.execute_order.encode_input(victim, eth), False),
        (orders.address, orders.commit_order.encode_input(eth, WAD, 0, 0), False),
        (orders.address, orders.cancel_order.encode_input(victim, eth), False),
    ]
    evil.set_calls(calls, True, False, sender=deployer)

    receipt = orders.execute_order(mine, eth, sender=keeper)  # the fee's and the bond's transfers call back
    assert outcome(e, receipt) == "filled"
    tries = receipt.events.filter(evil.Reentry)
    assert [(t.hook, t.success, bytes(t.returndata)) for t in tries] == [("transfer", False, b"")] * 6

    receipt = e.ch.withdraw(evil, 1_000 * USDC, 0, sender=trader)  # the Clearinghouse's transfer calls back
    tries = receipt.events.filter(evil.Reentry)
    assert (tries[0].success, bytes(tries[0].returndata)) == (False, b"")  # fill_order: the core's lock
    assert tuple(orders.order(victim, eth))[0] == 10 * WAD  # not cancelled: still pending

    evil.set_calls([], False, False, sender=deployer)
    assert outcome(e, orders.execute_order(victim, eth, sender=keeper)) == "filled"


# ---------------------------------------------------------------- refused: a wrong price for the fill


def test_refused_wrong_price__the_cached_asset_cannot_change_and_only_orders_fills(
    env, chain, deployer, trader, keeper, attacker
):
    """Orders caches a market's asset at its first order. A market not yet listed is refused
    ("orders: unknown market", nothing cached); once listed it fills at its own asset's round;
    its asset cannot be changed ("configurator: asset fixed"); and nobody else can pass a price
    to the core ("clearinghouse: not orders")."""
    from marginsim.protocol import MarketConfig

    p = env.protocol
    orders, ch = env.orders, env.ch
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    with ape.reverts("orders: unknown market"):
        orders.commit_order(3, WAD, 0, 0, sender=trader)
    wbtc, weth = p.tokens["WBTC"], p.tokens["WETH"]
    btc2 = MarketConfig("BTC2-PERP", "WBTC", tier_size=100, skew_scale=150_000, oi_cap=1_000)
    p.configurator.list_market(btc2.params(wbtc.address), sender=deployer)
    at = commit(env, trader, 3, WAD)
    publish(env, deployer, chain, 30_100 * 10**8, at + 5, symbol="WBTC")
    receipt = orders.execute_order(acct, 3, sender=keeper)
    assert outcome(env, receipt) == "filled"
    assert 30_100 * WAD < receipt.events.filter(orders.OrderFilled)[0].fill_price < 30_101 * WAD
    with ape.reverts("configurator: asset fixed"):
        p.configurator.set_market(3, btc2.params(weth.address), sender=deployer)
    for who in (attacker, deployer, keeper):
        with ape.reverts("clearinghouse: not orders"):
            ch.fill_order(account_id(who), env.eth, WAD, 0, 1, sender=who)


# ---------------------------------------------------------------- refused: governance mid-flight and the escrow


def test_refused_governance_mid_flight__placed_orders_keep_their_round_and_fee_escrow_balances(
    env, chain, deployer, trader, other_trader, keeper, attacker
):
    """Parameters changed between commit and fill: the placed order keeps its executable_at
    (a delay cut to 1 s does not make an earlier round eligible: "oracle: no round yet") and its
    $2 fee (a fee raised to $1,000 is not taken from it, not paid to its keeper); the escrow
    always equals the pending orders' fees; a stranger cannot cancel before expiry ("orders: not
    expired"); an order whose round passed, replaced at a fee now 0, forfeits exactly its own
    $1,000 escrow to the insurance fund, nothing refunded."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    a = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    deposit(p, other_trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    wallet_ready(env, other_trader, 2_000 * USDC)
    escrow0 = int(usdc.balanceOf(orders))
    t = int(chain.pending_timestamp) + 100
    move_clock_to(chain, t)
    at = commit(env, trader, eth, 10 * WAD)
    p.configurator.set_order_parameters(1, 7 * 86_400, 1_000 * USDC, sender=deployer)
    publish(env, deployer, chain, ETH, t + 30)  # within the old delay: not eligible
    with ape.reverts("oracle: no round yet"):
        orders.execute_order(a, eth, sender=keeper)
    with ape.reverts("orders: not expired"):
        orders.cancel_order(a, eth, sender=attacker)
    b_at = commit(env, other_trader, eth, 5 * WAD)  # pays the new $1,000
    assert b_at == int(chain.blocks.head.timestamp) + 1
    assert int(usdc.balanceOf(orders)) == escrow0 + FEE + 1_000 * USDC
    publish(env, deployer, chain, ETH, at + 5)
    keeper_before = int(usdc.balanceOf(keeper))
    assert outcome(env, orders.execute_order(a, eth, sender=keeper)) == "filled"
    assert int(usdc.balanceOf(keeper)) == keeper_before + FEE
    assert int(usdc.balanceOf(orders)) == escrow0 + 1_000 * USDC
    # the other order's round passed; with the fee at 0, its owner replaces it at once
    publish(env, deployer, chain, ETH, at + 10)
    assert b_at <= at + 5  # the round at at + 5 was its first too
    p.configurator.set_order_parameters(DELAY, 7 * 86_400, 0, sender=deployer)
    wallet, insurance = int(usdc.balanceOf(other_trader)), int(env.ch.insurance_balance())
    receipt = orders.commit_order(eth, 5 * WAD, 0, 0, sender=other_trader)
    assert outcome(env, receipt) == "orders: round passed"
    assert int(usdc.balanceOf(other_trader)) == wallet
    assert int(env.ch.insurance_balance()) == insurance + 1_000 * USDC
    assert int(usdc.balanceOf(orders)) == escrow0


# ---------------------------------------------------------------- refused: risk added right after a liquidation


def test_refused_increase_after_liquidation__cancelled_position_changed(env, chain, deployer, trader, keeper):
    """An order that adds risk, placed before a liquidation and executed after it (health 1.1),
    is cancelled "orders: position changed" (F5's fix; before it, the margin check refused it,
    "clearinghouse: insufficient margin"): a liquidated account cannot be re-levered by an order
    it placed before. The fee goes to the insurance fund."""
    from tests.e2e.attacks import price_for_health

    p = env.protocol
    eth = env.eth
    acct = long_50_eth(env, trader, keeper)
    t = int(chain.pending_timestamp) + 600
    move_clock_to(chain, t)
    at = commit(env, trader, eth, 5 * WAD)
    target = int(price_for_health(p, acct, "ETH-PERP", 0.995) * 10**8)
    publish(env, deployer, chain, target, at - 30)
    p.liquidation_engine.liquidate(acct, eth, 10**30, sender=keeper)
    remaining = int(env.ch.positions(acct, eth).size)
    publish(env, deployer, chain, target, at + 5)
    insurance = int(env.ch.insurance_balance())
    assert outcome(env, env.orders.execute_order(acct, eth, sender=keeper)) == "orders: position changed"
    assert int(env.ch.positions(acct, eth).size) == remaining
    assert int(env.ch.insurance_balance()) == insurance + FEE


# ---------------------------------------------------------------- refused: locking an escrowed fee


def test_refused_locked_fee__an_unfillable_order_is_released_at_expiry(env, chain, deployer, trader, keeper):
    """An order whose round can never be priced (its round trips the breaker: "oracle: circuit
    breaker"; then, with no newer round, goes stale: "oracle: stale answer") stays pending, and
    execute_order reverts without paying anyone; at expiry anyone can release it
    ("orders: expired"): the fee leaves escrow for its owner, not the caller."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, eth, 10 * WAD)
    escrow = int(usdc.balanceOf(orders))
    publish(env, deployer, chain, 1_500 * 10**8, at + 5)  # -25%: beyond the 20% breaker
    with ape.reverts("oracle: circuit breaker"):
        orders.execute_order(acct, eth, sender=keeper)
    move_clock_to(chain, at + 5 + 3_601)
    chain.mine()
    with ape.reverts("oracle: stale answer"):
        orders.execute_order(acct, eth, sender=keeper)
    with ape.reverts("orders: not expired"):
        orders.cancel_order(acct, eth, sender=trader)
    move_clock_to(chain, at + EXPIRY)
    wallet, keeper_before = int(usdc.balanceOf(trader)), int(usdc.balanceOf(keeper))
    receipt = orders.cancel_order(acct, eth, sender=keeper)
    [cancelled] = receipt.events.filter(orders.OrderCancelled)
    assert (cancelled.reason, cancelled.fee_to) == ("orders: expired", trader.address)
    assert int(usdc.balanceOf(trader)) == wallet + FEE
    assert int(usdc.balanceOf(keeper)) == keeper_before
    assert int(usdc.balanceOf(orders)) == escrow - FEE
