"""Attacker's review of two-step delayed orders (contracts/Orders.vy, Clearinghouse.fill_order,
OracleRouter.round_price, Configurator.set_order_parameters).

Tests named `test_finding_*` demonstrate a FINDING: they assert the harmful outcome that happens
today, so each must be flipped when the finding is fixed. Tests named `test_refused_*` are
attacks that were tried and failed; each shows the exact revert message or cancellation reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ape
import pytest

from marginsim import risk
from marginsim.orders import trade_now
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol
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
    """FINDING (high): an order fills at its first round R only while R is the newest round, and
    its owner is a keeper of its own order (paid its own fee back). When no third-party keeper
    fills within the round (the fee is flat and a fill costs 2.6x a "round passed" cancel, see
    the keeper-pay finding; the project's keeper bot does not fill orders yet), the owner waits
    until it sees the NEXT round R2 pending and then either fills at R just before R2 lands, or
    lets R2 land and cancels its own order ("orders: round passed") for its own fee back.

    Replayed on test_known_round's ten +-0.5% rounds with 7,500 ETH: a long order (subaccount 1)
    and a short order (subaccount 2) wait for R; when R2 shows pending, the owner fills the leg
    in R2's direction at R and cancels the other for free. The exit fills at a later round the
    attacker does not know (both outcomes, from one snapshot). Expected gain per round:
    +$60,097 to +$60,479 (0.5% of $15M less two 0.05% fees), +$601,987 over the ten rounds (the
    original attack made +$601,462; test_known_round's replay of the fix shows about -$15,000 a
    round); the pool loses exactly that, every execution fee coming back to the attacker.

    Fix: price the fill at the first round at or after executable_at whenever it is executed
    (a keeper passes the round id; the router checks getRoundData(id).updatedAt >= executable_at
    > getRoundData(id - 1).updatedAt within one phase) and drop the "round passed" cancellation,
    so nobody's choice of WHEN to execute changes whether or at what price the order fills. It
    needs the withdraw-to-cancel fix too (reserve the order's margin), or the owner, seeing R2,
    still makes a losing fill at R fail."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    legs = {+1: deposit(p, attacker, "USDC", 4_000_000 * USDC, 1), -1: deposit(p, attacker, "USDC", 4_000_000 * USDC, 2)}
    wallet_ready(env, attacker, 1_000 * USDC)

    def value() -> int:
        return int(usdc.balanceOf(attacker)) + sum(equity_tokens(env, a) for a in legs.values())

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
        assert outcome(env, orders.execute_order(legs[move], eth, sender=attacker)) == "filled"
        publish(env, deployer, chain, nxt, t + STEP)  # R2 lands
        wallet = int(usdc.balanceOf(attacker))
        assert outcome(env, orders.execute_order(legs[-move], eth, sender=attacker)) == "orders: round passed"
        assert int(usdc.balanceOf(attacker)) == wallet + FEE  # the unused leg cost nothing
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
        assert 55_000 * USDC < e < 62_000 * USDC  # test_known_round: -$15,000 on the same rounds
        assert q < -55_000 * USDC  # out of the LPs


# ---------------------------------------------------------------- F2: a keeper is paid more to wait than to fill

ETH_USD = 2_000  # to price gas


def test_finding_keeper_pay__waiting_to_cancel_pays_the_same_fee_as_filling(env, chain, deployer, trader, other_trader, keeper):
    """FINDING (medium): the escrowed fee is paid in full whether the keeper fills the order
    (Orders + the whole fill_order) or waits for the next round and cancels it ("orders: round
    passed": one router read, no fill). Measured here: a fill in a live market (157,188 gas) and
    a round-passed cancel (60,391 gas), each for the $2 fee. With ETH at $2,000 the fill stops
    paying above 6.4 gwei, the cancel only above 16.6 gwei: in between, a rational keeper never fills
    and cancels every order one round later, the trader losing the fee and the trade (and the
    owner, its own last keeper, gets the timing option of the owner-timed-fill finding). Even
    below, waiting costs a keeper 38% of the gas of filling. Fix: no fee (or only a gas-sized part
    of it) for a round-passed cancel, the rest refunded to the owner; better, remove the
    round-passed outcome altogether (see the owner-timed-fill finding)."""
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

    keeper_before = int(usdc.balanceOf(keeper))
    fill = orders.execute_order(filler, eth, sender=keeper)
    assert outcome(env, fill) == "filled"
    publish(env, deployer, chain, ETH, at + 65)  # R2: the keeper waited for it
    cancel = orders.execute_order(waited, eth, sender=keeper)
    assert outcome(env, cancel) == "orders: round passed"
    assert int(usdc.balanceOf(keeper)) == keeper_before + 2 * FEE  # the same pay for each
    assert int(env.ch.positions(waited, eth).size) == 0  # the trader got no trade for its fee

    fill_gas, cancel_gas = int(fill.gas_used), int(cancel.gas_used)
    fee_usd = FEE / USDC
    fill_break_even = fee_usd / (fill_gas * ETH_USD * 1e-9)  # gwei
    cancel_break_even = fee_usd / (cancel_gas * ETH_USD * 1e-9)
    print(
        f"F2 gas: fill {fill_gas}, round-passed cancel {cancel_gas}; "
        f"the $2 fee pays a fill up to {fill_break_even:.2f} gwei, a cancel up to {cancel_break_even:.2f} gwei"
    )
    assert cancel_gas * 5 < fill_gas * 2  # the cancel costs less than 40% of the fill
    assert fill_break_even < 7 < 15 < cancel_break_even


# ---------------------------------------------------------------- F3: the admitted option costs nothing


def test_finding_withdraw_to_cancel__the_owner_gets_its_own_fee_back(env, chain, deployer, trader):
    """FINDING (low; the README admits the option "for the fee"): once the order's round R is
    out and the next one is seen coming against it, the owner withdraws the margin the fill
    needs and executes its own order: cancelled with "clearinghouse: insufficient margin", and
    the fee goes to the caller, its owner. The option costs gas only, not the fee. Fix: reserve
    the pending order's initial margin at commit (withdraw checks E >= I including every pending
    order of the account), so a trader cannot make its own fill fail after the fact; the fee's
    destination cannot fix it (the owner can call from any address)."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    acct = deposit(p, trader, "USDC", 50_000 * USDC, 3)
    wallet_ready(env, trader)
    wallet_before = int(usdc.balanceOf(trader))
    at = commit(env, trader, eth, 100 * WAD, 0, 3)  # $200,000 long: needs margin at its fill
    publish(env, deployer, chain, ETH, at + 5)  # R
    # R2 is seen coming, -0.5%: walk away for free
    env.ch.withdraw(usdc, 45_000 * USDC, 3, sender=trader)
    receipt = orders.execute_order(acct, eth, sender=trader)
    assert outcome(env, receipt) == "clearinghouse: insufficient margin"
    assert int(usdc.balanceOf(trader)) == wallet_before + 45_000 * USDC  # the fee came back
    assert int(env.ch.positions(acct, eth).size) == 0


# ---------------------------------------------------------------- F4: cancel after expiry ignores the round


def test_finding_cancel_after_expiry__drops_an_order_whose_round_came_and_is_fillable(env, chain, deployer, trader, keeper):
    """FINDING (low): Orders' docstring says an order can be cancelled only after `expiry`
    "(when no round came at all)", but `cancel_order` (and a replacing `commit_order`) checks the
    time only. With the expiry at its Configurator minimum (60 s, below the feeds' 3,600 s
    heartbeat, which the Configurator allows), an order whose first round came and is still
    fillable (round_price > 0) is dropped by its owner at no cost once the round is known, or
    by a keeper for the full fee instead of filling it (cancel_order costs far less gas than a
    fill). Fix: cancel_order (and the replacement in commit_order) only when round_price would
    revert "oracle: no round yet" or return 0; or bound expiry above the largest heartbeat."""
    p = env.protocol
    orders, usdc, eth = env.orders, env.usdc, env.eth
    p.configurator.set_order_parameters(DELAY, 60, FEE, sender=deployer)
    deposit(p, trader, "USDC", 100_000 * USDC, 0)
    deposit(p, trader, "USDC", 100_000 * USDC, 1)
    wallet_ready(env, trader)
    at = commit(env, trader, eth, 10 * WAD, 0, 0)
    commit(env, trader, eth, 10 * WAD, 0, 1)
    publish(env, deployer, chain, ETH + 10**8, at + 5)  # the first round: $2,001, known to all
    move_clock_to(chain, at + 60)
    chain.mine()
    assert int(p.oracle.round_price(p.tokens["WETH"], at)) == (ETH + 10**8) * FEED_TO_WAD  # fillable now

    wallet = int(usdc.balanceOf(trader))
    own = orders.cancel_order(account_id(trader, 0), eth, sender=trader)  # the owner: free
    assert own.events.filter(orders.OrderCancelled)[0].reason == "orders: expired"
    assert int(usdc.balanceOf(trader)) == wallet + FEE
    keeper_before = int(usdc.balanceOf(keeper))
    other = orders.cancel_order(account_id(trader, 1), eth, sender=keeper)  # a keeper: the full fee
    assert int(usdc.balanceOf(keeper)) == keeper_before + FEE
    print(f"F4 cancel_order gas {int(other.gas_used)}")
    assert int(other.gas_used) < 60_000
    assert int(env.ch.positions(account_id(trader, 0), eth).size) == 0
    assert int(env.ch.positions(account_id(trader, 1), eth).size) == 0


# ---------------------------------------------------------------- F5: a close placed before a liquidation


def _liquidated_with_a_pending_close(env, chain, deployer, trader, keeper, slow_walk: bool):
    """The trader: $7,000 and 50 ETH long (5x health 2.33); it orders the whole 50 ETH sold; a
    round before the order's own drops it to health 0.995 and a keeper liquidates at once (the
    least close back to health 1.1). Returns (account, the remaining long, the order's receipt)."""
    from tests.e2e.attacks import price_for_health

    p = env.protocol
    eth = env.eth
    acct = deposit(p, trader, "USDC", 7_000 * USDC, 0)
    wallet_ready(env, trader)
    trade_now(env.ch, eth, 50 * WAD, 0, 0, sender=trader, keeper=keeper)
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
    return acct, remaining, env.orders.execute_order(acct, eth, sender=keeper)


def test_finding_close_then_liquidation__the_close_opens_an_unwanted_short(env, chain, deployer, trader, keeper):
    """FINDING (medium, traders' funds): an order keeps its size whatever happens to the position
    before its round. A trader orders its whole 50 ETH long closed; a liquidation in between
    closes 12.1 ETH; at the round the keeper fills the -50 ETH order anyway: the account, which
    asked to be flat, is now SHORT 12.1 ETH ($23,000 notional, health 3.4) that nobody ordered.
    Fix: record the position size (or a per-account liquidation counter) at commit and cancel
    with a reason when a liquidation changed it ("orders: position liquidated"), or give orders
    a reduce-only flag that clamps the fill to the position and never flips it."""
    acct, remaining, receipt = _liquidated_with_a_pending_close(env, chain, deployer, trader, keeper, slow_walk=True)
    assert outcome(env, receipt) == "filled"
    size = int(env.ch.positions(acct, env.eth).size)
    print(f"F5 after liquidation long {remaining / WAD:.4f} ETH; after the close order: {size / WAD:.4f} ETH")
    assert size == remaining - 50 * WAD
    assert -13 * WAD < size < -12 * WAD  # an unwanted short


def test_finding_close_then_liquidation__a_gap_leaves_the_remainder_open(env, chain, deployer, trader, keeper):
    """FINDING (same as above, the other branch): the same story with one -4.1% round (volatility
    jumps, so the unwanted short would need more initial margin than the account has): the whole
    -50 ETH order is refused ("clearinghouse: insufficient margin") and the 37.3 ETH left after
    the liquidation stays open, though the trader ordered everything closed before the drop and
    paid the fee for it."""
    acct, remaining, receipt = _liquidated_with_a_pending_close(env, chain, deployer, trader, keeper, slow_walk=False)
    assert outcome(env, receipt) == "clearinghouse: insufficient margin"
    assert int(env.ch.positions(acct, env.eth).size) == remaining
    assert 37 * WAD < remaining < 38 * WAD


# ---------------------------------------------------------------- F6: the keeper orders the fills of one round


def test_finding_fill_order_sandwich__a_keeper_brackets_a_large_order_at_one_round(env, chain, deployer, attacker, other_trader):
    """FINDING (low; pre-existing in the one-step trade, where only a block builder could do it):
    every order of one round fills at the same oracle price, the premium set by the skew at the
    moment of each fill, and the keeper picks the order of the fills. Seeing a 5,000 ETH buy
    committed, the attacker commits a 2,500 ETH buy (subaccount 5) and a 2,500 ETH sell
    (subaccount 6), fills buy, victim, sell at the victim's round, and unwinds the hedged pair at
    a later round (net premium zero). Attacker: about +$15,000 (2,500 x 5,000 / 1M x $2,000 less
    four 0.05% fees); the victim pays $25,000 more premium than alone. Fix: fill the orders of a
    market in commit order (execute_order refuses an order while an earlier-committed one in the
    same market is still pending), or a fee floor of oi_cap / (4 * skew_scale) (0.1875% here)."""
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


# ---------------------------------------------------------------- F7: a phase change forgets the first round


def test_finding_phase_change__the_order_fills_at_its_second_round(env, chain, deployer, trader, keeper):
    """FINDING (low): round_price decides "first round at or after executable_at" by reading only
    the round before the newest, and counts the newest as the first whenever that read fails
    (getRoundData reverts or returns short data). After a Chainlink phase change (the proxy moved
    to a new aggregator) the newest round is (phase 2, 1) and (phase 2, 0) does not exist: an
    order whose first round R1 came in phase 1 and was not filled then fills at the phase-2
    round, a later price, instead of being cancelled "orders: round passed". Here R1 $2,001,
    then the phase-2 round $2,040: it fills at $2,040 plus premium. Fix: when the previous round
    cannot be read, compare against the round the router last synced (its updatedAt, kept
    per asset) or walk back into the previous phase (phaseAggregators); never fail open."""
    p = env.protocol
    orders, eth = env.orders, env.eth
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, eth, 10 * WAD)
    publish(env, deployer, chain, ETH + 10**8, at + 5)  # R1, phase 1: the order's round
    feed = p.feeds["WETH"]
    move_clock_to(chain, at + 20)
    chain.mine()
    phase2 = (2 << 64) | 1
    feed.updateRoundData(phase2, 2_040 * 10**8, at + 20, at + 20, sender=deployer)
    assert int(p.oracle.round_price(p.tokens["WETH"], at)) == 2_040 * WAD  # R1 forgotten
    receipt = orders.execute_order(acct, eth, sender=keeper)
    assert outcome(env, receipt) == "filled"
    assert receipt.events.filter(orders.OrderFilled)[0].fill_price > 2_040 * WAD


def test_refused_same_phase__a_replaced_first_round_cancels(env, chain, deployer, trader, keeper):
    """The same story without the phase change: the next round replaces R1 and the order is
    cancelled "orders: round passed", the keeper paid (the behaviour the phase change loses)."""
    p = env.protocol
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, env.eth, 10 * WAD)
    publish(env, deployer, chain, ETH + 10**8, at + 5)
    publish(env, deployer, chain, 2_040 * 10**8, at + 20)
    assert int(p.oracle.round_price(p.tokens["WETH"], at)) == 0
    assert outcome(env, env.orders.execute_order(acct, env.eth, sender=keeper)) == "orders: round passed"


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


def test_refused_gas_games__no_gas_limit_cancels_a_fillable_order(env, chain, deployer, trader, keeper):
    """A keeper who wants an order cancelled rather than filled starves the fill of gas: at every
    limit from 60,000 to 260,000 (step 2,000; step 200 around the edge near 202,000) the call
    either reverts as a whole (fill_order ran out: a bare revert, re-raised) or fills. Never
    "cancelled"."""
    p = env.protocol
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, env.eth, 10 * WAD)
    publish(env, deployer, chain, ETH, at + 5)
    gases = [*range(60_000, 260_001, 2_000), *range(196_000, 208_001, 200)]  # finer at the edge
    seen, reverted = _sweep(env, chain, acct, env.eth, keeper, gases)
    assert seen == {"filled"}
    assert reverted > 90  # the starved band was swept (the edge is near 202,000)


def test_refused_gas_games__no_gas_limit_fills_a_passed_round(env, chain, deployer, trader, keeper):
    """The other way: starving the router's getRoundData(id - 1) read (raw_call, failure counted
    as "no previous round") to fill an order whose round has passed. With the MockAggregator's
    ~2,600-gas read, the 1/64 left after it is too little for the rest of round_price: every
    limit from 30,000 to 200,000 (step 1,000; step 100 around the edge near 93,000) reverts or cancels "orders: round passed". (A
    feed whose getRoundData costs >~400k gas would make this work: see the phase-change finding's
    fix, never fail open.)"""
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


# ---------------------------------------------------------------- refused: sizes at the packing's edges


@pytest.mark.parametrize(
    "size, reason",
    [
        (2**127 - 1, "clearinghouse: amount too large"),
        (-(2**127 - 1), "clearinghouse: open interest too large"),
        (7_500 * WAD + 1, "clearinghouse: open interest cap"),
    ],
)
def test_refused_huge_sizes__cancel_with_a_reason_not_stuck(env, chain, deployer, trader, keeper, size, reason):
    """The largest sizes the int128 packing takes are stored exactly and refused at the fill with
    the core's reason (the order cancelled, the keeper paid), never a bare revert that would
    keep the order pending."""
    p = env.protocol
    acct = deposit(p, trader, "USDC", 100_000 * USDC, 0)
    wallet_ready(env, trader)
    at = commit(env, trader, env.eth, size)
    assert tuple(env.orders.order(acct, env.eth))[:2] == (size, 0)
    publish(env, deployer, chain, ETH, at + 5)
    assert outcome(env, env.orders.execute_order(acct, env.eth, sender=keeper)) == reason


# ---------------------------------------------------------------- refused: reentrancy through the settlement token


def test_refused_reentrancy__a_hooked_settlement_token_cannot_reenter_orders(
    project, chain, deployer, lp, trader, other_trader, keeper
):
    """The settlement token (here ReentrantERC20, calling back on every transfer) re-enters
    Orders from the fee's transfer to the keeper at the end of execute_order: execute_order,
    commit_order and cancel_order all revert bare (Orders' lock). From inside a Clearinghouse
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

    receipt = orders.execute_order(mine, eth, sender=keeper)  # the fee's transfer calls back
    assert outcome(e, receipt) == "filled"
    tries = receipt.events.filter(evil.Reentry)
    assert [(t.hook, t.success, bytes(t.returndata)) for t in tries] == [("transfer", False, b"")] * 3

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
    expired"); a replaced order refunds exactly its own escrow."""
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
    # the other order's round passed; with the fee at 0 and expiry at 60 s, its owner replaces it
    publish(env, deployer, chain, ETH, at + 10)
    p.configurator.set_order_parameters(DELAY, 60, 0, sender=deployer)
    move_clock_to(chain, b_at + 60)
    wallet = int(usdc.balanceOf(other_trader))
    orders.commit_order(eth, 5 * WAD, 0, 0, sender=other_trader)
    assert int(usdc.balanceOf(other_trader)) == wallet + 1_000 * USDC
    assert int(usdc.balanceOf(orders)) == escrow0


# ---------------------------------------------------------------- refused: risk added right after a liquidation


def test_refused_increase_after_liquidation__needs_initial_margin(env, chain, deployer, trader, keeper):
    """An order that adds risk, placed before a liquidation and filled after it (health 1.1),
    is refused "clearinghouse: insufficient margin": a liquidated account cannot be re-levered
    by an order it placed before."""
    from tests.e2e.attacks import price_for_health

    p = env.protocol
    eth = env.eth
    acct = deposit(p, trader, "USDC", 7_000 * USDC, 0)
    wallet_ready(env, trader)
    trade_now(env.ch, eth, 50 * WAD, 0, 0, sender=trader, keeper=keeper)
    t = int(chain.pending_timestamp) + 600
    move_clock_to(chain, t)
    at = commit(env, trader, eth, 5 * WAD)
    target = int(price_for_health(p, acct, "ETH-PERP", 0.995) * 10**8)
    publish(env, deployer, chain, target, at - 30)
    p.liquidation_engine.liquidate(acct, eth, 10**30, sender=keeper)
    remaining = int(env.ch.positions(acct, eth).size)
    publish(env, deployer, chain, target, at + 5)
    assert outcome(env, env.orders.execute_order(acct, eth, sender=keeper)) == "clearinghouse: insufficient margin"
    assert int(env.ch.positions(acct, eth).size) == remaining


# ---------------------------------------------------------------- refused: locking an escrowed fee


def test_refused_locked_fee__an_unfillable_order_is_released_at_expiry(env, chain, deployer, trader, keeper):
    """An order whose round can never be priced (its round trips the breaker: "oracle: circuit
    breaker"; then, with no newer round, goes stale: "oracle: stale answer") stays pending, and
    execute_order reverts without paying anyone; at expiry anyone can release it
    ("orders: expired") and the fee leaves escrow. The owner gets it by cancelling first."""
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
    wallet = int(usdc.balanceOf(trader))
    assert orders.cancel_order(acct, eth, sender=trader).events.filter(orders.OrderCancelled)[0].reason == "orders: expired"
    assert int(usdc.balanceOf(trader)) == wallet + FEE
    assert int(usdc.balanceOf(orders)) == escrow - FEE
