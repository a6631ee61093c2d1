"""Attacker's review of the trading path as it stands (v2): Orders.commit_order / execute_order /
cancel_order / _hold (the oi_cap check at the commit) / the bond and the refund of fee + bond when
a fill is refused "clearinghouse: paused", "reduce only" or (at the review) "open interest cap";
MarginLens.health_after_trades; Clearinghouse.fill_order; LiquidityPool.reserve / held /
apply_hold and LP withdrawals; OracleRouter.round_price. Pools are $2M unless said
(`fund_liquidity`), ETH at $2,000, BTC at $30,000, default markets (factor 1, oi_cap 7,500, 1 h
heartbeat, settlement delay 60 s, expiry a day, fee $2, bond 0.05%). Not re-reported: the owner's
timed fill (orders F1), the keeper's sandwich, the hedged pair, a never-filling order parking
its margin for $fee + bond a round (margin_commit #1), the factor cut reaching no placed order
(reserve_3 #4), the rate raise before a commit and the blocked refund push (bond #4, #5). Run
with `-s` to see the figures.

FINDINGS

#1 (medium), fixed: free holds of the whole pool while a market is reduce-only or paused. `commit_order`
does not read the market's flags: a risk-adding order commits in a paused or reduce-only market,
holds its open interest in the pool (reserve and cap) and, at its round, its fill is refused
"clearinghouse: reduce only" / "clearinghouse: paused", which now refunds fee and bond. The bond
(the price of a hold per round, bond #1 / margin_commit #1) is therefore never paid there, and the
margin is never at risk (the flag refuses the fill before the limit or the margin is looked at;
no limit trick needed). The owner clears its order at its round (refunded) and commits again.
  - A market being wound down (guardian: `set_reduce_only(BTC)`, BTC factor 0.1): a 6.6667 BTC
    buy backed by $12,104.45 holds the whole $2,000,000 pool: every LP's maxWithdraw $0.00, every
    open that grows a larger side in every other (live) market refused "orders: open interest
    reserve"; three rounds held, $0 spent (fee + bond $1,002 refunded each round, insurance
    unchanged), where the same hold in a live market forfeits $1,002 a round. It lasts as long as
    the market stays reduce-only (a delisting: for good).
  - A pause (the emergency stop, when LPs want out): an attacker who is also an LP ($500k, the
    victim LP $2M) holds 1,250 ETH (margin $203k, parked); the victim's maxWithdraw is $0 and its
    withdrawal reverts "pool: open interest reserve"; at the order's round the attacker clears it
    ($1,252 refunded), withdraws its own $500,000 and holds again (1,000 ETH): it exits first
    while every other LP is held in, for gas (a contract does the three steps in one
    transaction; the victim could clear the order itself at the round, unpaid, but must win
    that race every round). If the emergency costs the pool, the remaining LPs bear it.
  Fix: refuse a risk-adding commit while its market is paused or reduce-only ("orders: paused",
  "orders: reduce only": `Clearinghouse.paused()` and the Configurator's `reduce_only(market)`,
  or a flags view on the core), so the refund only ever reaches orders committed before the
  switch; or refund only orders committed before the flag was set (a per-market timestamp) and
  forfeit the rest. (Governance's stop-gap: the reduce-only market's reserve factor to 0, which
  also unreserves its open positions.) Fixed: an order that adds risk reverts "orders: paused" /
  "orders: reduce only" at its commit (Clearinghouse.paused(), the Configurator's
  reduce_only(market)), escrowing nothing; only an order placed before the switch meets it at
  its fill, and is refunded.

#2 (low-medium), fixed: the README's factor-cut procedure ("set the market reduce-only first, cut, then
lift it": placed risk-adding orders cancelled at their fill) does not stop orders committed
during the reduce-only window, since the commit ignores the flag (as #1). An attacker who sees the
cut coming commits at the old factor after step 1; if step 3 (the lift) lands before the order's
round (the steps batched, or lifted within a round), it fills: a 1,000 ETH long at factor 1
becomes a need of $40,000,000 against a value of $2,001,000 (20.0x) after the cut to 0.05, every
LP held in. A try whose round lands before the lift is refused "reduce only" and refunded
($1,002), so trying every round until the cut costs nothing (it cost fee + bond before the
refund). Fix: as #1 (no risk-adding commit while reduce-only); until then the procedure must
wait, before lifting, for every order committed before the cut to pass its round. Fixed with
#1: nothing that adds risk commits in the window; after the lift the factor in force applies.

#3 (low), fixed: a cap cut under the holds gives the first keeper the choice of who fills, and the owner
a free lapse. `set_market` refuses a cap below the open interest, not below open interest + held.
$20M pool, a victim's 5,000 ETH and the attacker's 2,500 ETH committed (7,500 held), the cap cut
to 5,000: at the round the first keeper decides. The round against it: it fills the victim's
first and its own is refused "clearinghouse: open interest cap", refunded ($0 lost, where a lapse
costs $2,502); the round its way: its own fills and the victim's 5,000 ETH is refused (refunded,
not filled). That is orders F1's option made free, and a keeper choosing which trader is left
out. Fix: `Configurator.set_market` refuses a cap below each side's open interest plus
`LiquidityPool.held` (governance lowers it after reduce-only has drained the holds), or the fill
of a cut market's orders in commit order. Fixed: `set_market` refuses a cap below each side's
open interest plus what placed orders hold on it ("configurator: cap below open interest"), so
no fill meets the cap, and Orders refunds only the pause and reduce-only refusals.

REFUSED (tried, failed)

- A fill meeting "clearinghouse: open interest cap" without governance (a free lapse): cap 100 ETH,
  a flip (holds its 10 ETH short side), a liquidation between the flip's commit and its fill (room
  appears only once the long really shrinks; the flip is cancelled "orders: position changed",
  forfeited), two subaccounts racing for the last room (one base unit over is refused at the
  commit), a pending reduction (frees nothing until it fills), a passed order replaced (its hold
  released first): long_oi + held <= cap after every step, every fill in any order filled, no cap
  refusal. The only ways in are governance's (#1, #3).
- Escrow, holds and counts through the refund paths: pause (an order with a missed limit is
  refunded too: the flag is checked first), reduce-only and a cap cut, mixed with fills: Orders'
  balance equals the live orders' fee + bond, each market's hold their growth, each account's
  open_orders its live orders, the insurance fund untouched; all end at 0.
- Reentrancy from the new refund push (ReentrantERC20 hooking the transfer to the owner):
  execute_order, commit_order, cancel_order, the open_orders view and Clearinghouse.withdraw (which
  reads that view) all revert bare; the refund arrives, the other order is untouched.
- Holding a market's whole oi_cap in a live market: 7,500 ETH with a never-filling buy ($20M pool,
  so the cap binds first) takes $3,063,778.12 of margin and forfeits $7,502 a round: the bond's
  rate, as the reserve hold (margin_commit #1); the other side is unaffected.
- The refund reasons are governance's: pause, reduce-only and set_market revert for anyone else;
  a refusal the owner makes (a limit it misses) forfeits fee + bond to the fund.
"""

from __future__ import annotations

from dataclasses import replace

import ape
import pytest

from marginsim.orders import bond_of, fill_now, market_feed, place, redate, trade_now, withdraw_now
from marginsim.protocol import account_id
from tests.e2e.attacks import hooked_settlement_protocol, price_for_health
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd
from tests.e2e.test_review_margin_commit import NEVER_BUY, fresh_pool, shortfall
from tests.e2e.test_review_reserve import FEE, POOL_USD, price_of, usd
from tests.e2e.test_review_reserve_3 import cancelled, filled, held, largest_side

MAX_UINT = 2**256 - 1


@pytest.fixture(scope="module")
def evil(project, deployer, lp):
    """A protocol whose settlement token is ReentrantERC20 (hooks on every transfer)."""
    return hooked_settlement_protocol(project, deployer, lp, POOL_USD)


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, evil, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


# ---------------------------------------------------------------- helpers


def insurance(p) -> int:
    return int(p.clearinghouse.insurance_balance())


def wallet(p, who) -> int:
    return int(p.settlement.balanceOf(who))


def commit(p, who, market, size, limit=0, sub=0) -> int:
    """Mint exactly the order's fee + bond to `who` (so the wallet is unchanged by the mint once
    the commit pulls them), approve, commit. Returns the fee + bond escrowed."""
    orders, usdc = p.orders, p.settlement
    need = int(orders.execution_fee()) + bond_of(p.clearinghouse, market, size, sub, sender=who)
    usdc.mint(who, need, sender=who)
    if int(usdc.allowance(who, orders)) < need:
        usdc.approve(orders, MAX_UINT, sender=who)
    orders.commit_order(market, size, limit, sub, sender=who)
    return need


def at_round(p, market) -> None:
    """Move past the settlement delay and re-date the market's newest round to now: the first
    round of every order committed before (the keeper's moment)."""
    ape.chain.pending_timestamp += int(p.orders.settlement_delay())
    redate(market_feed(p.clearinghouse, market))


def set_market(p, deployer, name, **changes) -> None:
    """Governance: change a market's parameters through the Configurator (bounds checked)."""
    cfg = replace(next(m for m in p.config.markets if m.name == name), **changes)
    p.configurator.set_market(p.markets[name], cfg.params(p.market_asset(name)), sender=deployer)


def oi(p, market) -> tuple[int, int]:
    st = p.clearinghouse.market_state(market)
    return int(st.long_oi), int(st.short_oi)


def assert_cap_held(p, market) -> tuple[int, int]:
    """The invariant the commit's cap check claims: each side's open interest plus what placed
    orders hold on it stays within `oi_cap`. Returns (long side, short side) with holds."""
    cap = int(p.clearinghouse.markets(market).oi_cap)
    (lo, so), (hl, hs) = oi(p, market), held(p, market)
    assert lo + hl <= cap and so + hs <= cap, (lo, hl, so, hs, cap)
    return lo + hl, so + hs


def escrowed(p, pairs) -> int:
    total = 0
    for account, market in pairs:
        order = p.orders.order(account, market)
        if int(order.executable_at) != 0:
            total += int(order.fee)
        total += int(p.orders.bonds(account, market))
    return total


def assert_books(p, pairs) -> None:
    """Orders holds exactly the live orders' fees and bonds, each account's open-order count is
    its live orders, and each market's hold is the sum of its live orders' growth."""
    from marginsim import risk

    assert int(p.settlement.balanceOf(p.orders)) == escrowed(p, pairs)
    counts, holds = {}, {}
    for account, market in pairs:
        order = p.orders.order(account, market)
        live = int(order.executable_at) != 0
        counts[account] = counts.get(account, 0) + live
        g = risk.order_growth(int(order.position), int(order.size_delta)) if live else (0, 0)
        h = holds.get(market, (0, 0))
        holds[market] = (h[0] + g[0], h[1] + g[1])
    for account, n in counts.items():
        assert int(p.orders.open_orders(account)) == n
    for market, h in holds.items():
        assert held(p, market) == h


# ---------------------------------------------------------------- #1 free holds while reduce-only / paused


def test_fixed__no_risk_adding_order_commits_in_a_reduce_only_market(protocol, deployer, lp, attacker, other_trader):
    orders, pool, cfg = protocol.orders, protocol.pool, protocol.configurator
    btc = protocol.markets["BTC-PERP"]
    lp_free = fresh_pool(protocol, deployer, lp)
    cfg.set_reserve_factor(btc, 10**17, sender=deployer)  # a thin market (the Configurator's advice)...
    cfg.set_reduce_only(btc, True, sender=deployer)  # ... that the guardian winds down
    account = account_id(attacker)
    size = largest_side(protocol, btc, price_of(protocol, "BTC-PERP"))
    margin = shortfall(protocol, account, [(btc, size)])
    deposit(protocol, attacker, "USDC", margin)
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    w = wallet(protocol, attacker)
    with ape.reverts("orders: reduce only"):
        orders.commit_order(btc, size, NEVER_BUY, 0, sender=attacker)
    assert wallet(protocol, attacker) == w and held(protocol, btc) == (0, 0)
    assert int(orders.open_orders(account)) == 0
    assert int(pool.withdrawable(lp)) == lp_free  # nobody held in
    # the same hold in the live market forfeits fee + bond every round
    cfg.set_reduce_only(btc, False, sender=deployer)
    ins0 = insurance(protocol)
    escrow = commit(protocol, attacker, btc, size, NEVER_BUY)
    at_round(protocol, btc)
    assert cancelled(orders.execute_order(account, btc, sender=attacker), orders).reason == "clearinghouse: price limit"
    assert insurance(protocol) == ins0 + escrow
    print(
        f"\n#1 fixed: a {size / WAD:,.4f} BTC hold of the ${usd(lp_free)} pool is refused in a reduce-only market; "
        f"live, it forfeits ${usd(escrow)} a round"
    )


def test_fixed__no_risk_adding_order_commits_while_paused_so_no_lp_is_held_in(protocol, deployer, lp, attacker):
    orders, pool, cfg, ch = protocol.orders, protocol.pool, protocol.configurator, protocol.clearinghouse
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, attacker, deployer, 500_000, 0)  # the attacker is an LP too
    fresh_pool(protocol, deployer, lp)  # the victim's $2M; both past the cooldown
    victim_lp = int(pool.withdrawable(lp))
    account = account_id(attacker)
    deposit(protocol, attacker, "USDC", 10_000 * USDC)
    trade_now(ch, eth, 5 * WAD, 0, 0, sender=attacker)  # a position it may still reduce while paused

    cfg.pause(sender=deployer)  # the guardian's emergency stop: LPs want out
    size = largest_side(protocol, eth, price_of(protocol, "ETH-PERP"))
    deposit(protocol, attacker, "USDC", shortfall(protocol, account, [(eth, size)]))
    with ape.reverts("orders: paused"):
        orders.commit_order(eth, size, 0, 0, sender=attacker)
    commit(protocol, attacker, eth, -2 * WAD)  # a reduction still commits while paused
    assert held(protocol, eth) == (0, 0)
    withdraw_now(pool, victim_lp, lp, lp, sender=lp)  # the victim is out first
    print(f"\n#1b fixed: paused, a {size / WAD:,.2f} ETH hold is refused; the victim LP withdrew ${usd(victim_lp)}")


# ---------------------------------------------------------------- #2 the factor-cut procedure


def test_fixed__the_reduce_only_first_procedure_stops_orders_in_its_window(protocol, deployer, lp, attacker, keeper):
    orders, cfg = protocol.orders, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = account_id(attacker)
    cfg.set_reduce_only(eth, True, sender=deployer)  # step 1 of the README's procedure
    size = largest_side(protocol, eth, price_of(protocol, "ETH-PERP"))  # at the old factor, 1
    deposit(protocol, attacker, "USDC", shortfall(protocol, account, [(eth, size)]))
    with ape.reverts("orders: reduce only"):  # nothing commits at the old factor in the window
        orders.commit_order(eth, size, 0, 0, sender=attacker)
    cfg.set_reserve_factor(eth, 5 * 10**16, sender=deployer)  # step 2: the cut, to 0.05
    cfg.set_reduce_only(eth, False, sender=deployer)  # step 3: lift
    with ape.reverts("orders: open interest reserve"):  # the same order, now at the new factor
        orders.commit_order(eth, size, 0, 0, sender=attacker)
    print(f"\n#2 fixed: a {size / WAD:,.2f} ETH long is refused in the reduce-only window and at the cut factor after")


# ---------------------------------------------------------------- #3 a cap cut under the holds


def test_fixed__a_cap_cut_under_the_holds_is_refused(protocol, deployer, lp, trader, attacker):
    orders = protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 20_000_000, 0)  # reserve room 10,000 ETH: the 7,500 cap binds
    publish_usd(protocol, "WETH", 2_000, deployer)
    victim = deposit(protocol, trader, "USDC", 5_000_000 * USDC)
    mine = deposit(protocol, attacker, "USDC", 3_000_000 * USDC)
    commit(protocol, trader, eth, 5_000 * WAD)
    commit(protocol, attacker, eth, 2_500 * WAD)
    assert assert_cap_held(protocol, eth) == (7_500 * WAD, 0)
    with ape.reverts("configurator: cap below open interest"):  # open interest 0, but 7,500 held
        set_market(protocol, deployer, "ETH-PERP", oi_cap=5_000)
    set_market(protocol, deployer, "ETH-PERP", oi_cap=7_500)  # at the holds: accepted
    at_round(protocol, eth)
    assert filled(orders.execute_order(mine, eth, sender=attacker), orders)  # in either order, both fill
    assert filled(orders.execute_order(victim, eth, sender=attacker), orders)
    print("\n#3 fixed: a cap cut to 5,000 under 7,500 ETH of holds is refused; both orders fill")


# ---------------------------------------------------------------- refused


def test_refused__no_owner_or_keeper_path_makes_a_fill_meet_the_cap_without_governance(
    protocol, deployer, lp, trader, other_trader, attacker, keeper
):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    set_market(protocol, deployer, "ETH-PERP", oi_cap=100)  # a small cap, set before anything is open
    cap = 100 * WAD
    v = deposit(protocol, trader, "USDC", 7_000 * USDC)
    o = deposit(protocol, other_trader, "USDC", 200_000 * USDC)
    a0 = deposit(protocol, attacker, "USDC", 100_000 * USDC, 0)
    a1 = deposit(protocol, attacker, "USDC", 100_000 * USDC, 1)
    pairs = [(v, eth), (o, eth), (a0, eth), (a1, eth)]
    reasons = []

    def run(account):
        r = orders.execute_order(account, eth, sender=keeper)
        reasons.append("filled" if filled(r, orders) else cancelled(r, orders).reason)
        assert_cap_held(protocol, eth)
        assert_books(protocol, pairs)

    trade_now(ch, eth, 50 * WAD, 0, 0, sender=trader, keeper=keeper)  # victim long 50
    deposit(protocol, trader, "USDC", 3_000 * USDC)
    commit(protocol, trader, eth, -60 * WAD)  # a flip to a 10 ETH short: holds 10 short
    commit(protocol, other_trader, eth, 50 * WAD)  # long 50 + 50 held = the cap
    assert assert_cap_held(protocol, eth) == (cap, 10 * WAD)
    for sub in (0, 1):  # neither subaccount gets a unit past it
        with ape.reverts("orders: open interest cap"):
            commit(protocol, attacker, eth, 1, 0, sub)
    # a liquidation between the flip's commit and its fill: the long shrinks, room appears
    publish_usd(protocol, "WETH", round(price_for_health(protocol, v, "ETH-PERP", 0.9), 2), deployer)
    protocol.liquidation_engine.liquidate(v, eth, 10**30, sender=keeper)
    room = cap - sum(assert_cap_held(protocol, eth)[:1])
    assert room > 0
    commit(protocol, attacker, eth, room // 2, 0, 0)  # two subaccounts take the room exactly
    with ape.reverts("orders: open interest cap"):
        commit(protocol, attacker, eth, room - room // 2 + 1, 0, 1)
    commit(protocol, attacker, eth, room - room // 2, 0, 1)
    assert assert_cap_held(protocol, eth)[0] == cap
    at_round(protocol, eth)
    run(a1)  # the keeper's order of fills: none can make another meet the cap
    run(v)  # the flip: its position changed, forfeited
    run(o)
    run(a0)
    assert reasons == ["filled", "orders: position changed", "filled", "filled"]
    assert int(ch.positions(v, eth).size) > 0  # the flip's owner paid for its liquidation: no refund
    assert oi(protocol, eth)[0] == cap

    # a reduction pending frees nothing until it fills; a replacement releases its old hold first
    commit(protocol, other_trader, eth, -30 * WAD)
    with ape.reverts("orders: open interest cap"):
        commit(protocol, attacker, eth, 30 * WAD, 0, 0)
    at_round(protocol, eth)
    run(o)
    commit(protocol, attacker, eth, 30 * WAD, NEVER_BUY, 0)
    ape.chain.pending_timestamp += 61
    publish_usd(protocol, "WETH", int(price_of(protocol, "ETH-PERP")) / WAD, deployer)
    publish_usd(protocol, "WETH", int(price_of(protocol, "ETH-PERP")) / WAD, deployer)  # its round passed
    commit(protocol, attacker, eth, 30 * WAD, 0, 0)  # replaces it: 30 released, 30 held
    assert assert_cap_held(protocol, eth)[0] == cap
    at_round(protocol, eth)
    run(a0)
    assert reasons[-2:] == ["filled", "filled"] and oi(protocol, eth)[0] == cap
    assert "clearinghouse: open interest cap" not in reasons
    print(f"\nrefused: cap 100 ETH through a flip, a liquidation, two subaccounts, a reduction and a replacement: {reasons}")


def test_refused__escrow_holds_and_counts_stay_exact_through_every_refund_path(
    protocol, deployer, lp, trader, other_trader, attacker, keeper
):
    orders, cfg = protocol.orders, protocol.configurator
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    t = deposit(protocol, trader, "USDC", 200_000 * USDC)
    o = deposit(protocol, other_trader, "USDC", 200_000 * USDC)
    a = deposit(protocol, attacker, "USDC", 200_000 * USDC)
    pairs = [(x, m) for x in (t, o, a) for m in (eth, btc)]

    def refunded(account, market, who, reason):
        w, ins = wallet(protocol, who), insurance(protocol)
        escrow = int(orders.order(account, market).fee) + int(orders.bonds(account, market))
        event = cancelled(orders.execute_order(account, market, sender=keeper), orders)
        assert (event.reason, event.fee_to) == (reason, who.address)
        assert wallet(protocol, who) == w + escrow and insurance(protocol) == ins
        assert_books(protocol, pairs)

    commit(protocol, trader, eth, 10 * WAD)
    commit(protocol, other_trader, btc, WAD)
    commit(protocol, attacker, eth, 5 * WAD, NEVER_BUY)  # its own doing would forfeit: the pause comes first
    commit(protocol, trader, btc, -WAD)
    assert_books(protocol, pairs)
    cfg.pause(sender=deployer)
    at_round(protocol, eth)
    refunded(t, eth, trader, "clearinghouse: paused")
    refunded(a, eth, attacker, "clearinghouse: paused")
    at_round(protocol, btc)
    refunded(o, btc, other_trader, "clearinghouse: paused")
    refunded(t, btc, trader, "clearinghouse: paused")  # a flip from nothing: adds risk
    cfg.unpause(sender=deployer)

    commit(protocol, trader, eth, 10 * WAD)
    cfg.set_reduce_only(eth, True, sender=deployer)
    at_round(protocol, eth)
    refunded(t, eth, trader, "clearinghouse: reduce only")
    cfg.set_reduce_only(eth, False, sender=deployer)

    assert int(protocol.settlement.balanceOf(orders)) == 0
    assert held(protocol, eth) == (0, 0) and held(protocol, btc) == (0, 0)
    print("\nrefused: pause and reduce-only refunds: escrow, holds and open-order counts exact, the fund untouched")


def test_refused__reentrancy_from_the_refund_push(evil, deployer, trader, other_trader, keeper):
    token, p = evil
    ch, orders = p.clearinghouse, p.orders
    eth = p.markets["ETH-PERP"]
    publish_usd(p, "WETH", 2_000, deployer)
    publish_usd(p, "WBTC", 30_000, deployer)
    mine = deposit(p, trader, "USDC", 100_000 * USDC)
    victim = deposit(p, other_trader, "USDC", 100_000 * USDC)
    pairs = [(mine, eth), (victim, eth)]
    place(ch, eth, 10 * WAD, sender=trader)
    place(ch, eth, 10 * WAD, sender=other_trader)
    p.configurator.pause(sender=deployer)
    calls = [
        (orders.address, orders.execute_order.encode_input(victim, eth), False),
        (orders.address, orders.commit_order.encode_input(eth, WAD, 0, 0), False),
        (orders.address, orders.cancel_order.encode_input(victim, eth), False),
        (orders.address, orders.open_orders.encode_input(victim), True),
        (ch.address, ch.withdraw.encode_input(token.address, 1, 0), False),
    ]
    token.set_calls(calls, True, False, sender=deployer)
    w = wallet(p, trader)
    escrow = int(orders.order(mine, eth).fee) + int(orders.bonds(mine, eth))
    receipt = fill_now(ch, mine, eth, keeper=keeper)  # refused "paused": the refund's transfer calls back
    assert cancelled(receipt, orders).reason == "clearinghouse: paused"
    tries = receipt.events.filter(token.Reentry)
    outcomes = [(t.hook, t.success, bytes(t.returndata)) for t in tries]
    print(f"\nrefused: re-entry from the refund push: {outcomes}")
    assert [o[0] for o in outcomes] == ["transfer"] * len(calls)
    assert not any(o[1] for o in outcomes)
    assert wallet(p, trader) == w + escrow
    assert_books(p, pairs)
    token.set_calls([], False, False, sender=deployer)
    event = cancelled(orders.execute_order(victim, eth, sender=keeper), orders)  # untouched, refunded in turn
    assert event.reason == "clearinghouse: paused"
    assert_books(p, pairs)
    assert int(token.balanceOf(orders)) == 0


def test_refused__holding_a_markets_cap_costs_the_bond_every_round(protocol, deployer, lp, attacker, other_trader, keeper):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 20_000_000, 0)  # the 7,500 ETH cap binds before the reserve
    publish_usd(protocol, "WETH", 2_000, deployer)
    account = account_id(attacker)
    size = int(ch.markets(eth).oi_cap)
    margin = shortfall(protocol, account, [(eth, size)])
    deposit(protocol, attacker, "USDC", margin)
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    escrow = commit(protocol, attacker, eth, size, NEVER_BUY)
    with ape.reverts("orders: open interest cap"):
        place(ch, eth, WAD, sender=other_trader)
    place(ch, eth, -WAD, sender=other_trader)  # the other side is untouched
    ins = insurance(protocol)
    at_round(protocol, eth)
    assert cancelled(orders.execute_order(account, eth, sender=keeper), orders).reason == "clearinghouse: price limit"
    assert insurance(protocol) == ins + escrow
    assert escrow == FEE + size * 2_000 // WAD * 5 * USDC // 10_000
    print(
        f"\nrefused: holding ETH's {size / WAD:,.0f} ETH cap with a never-filling buy takes ${usd(margin)} of margin and "
        f"forfeits ${usd(escrow)} a round (0.05% of the notional, as the reserve hold of margin_commit #1)"
    )


def test_refused__the_refund_reasons_are_governance_only_and_owner_made_refusals_forfeit(
    protocol, deployer, lp, attacker, keeper
):
    ch, orders, cfg = protocol.clearinghouse, protocol.orders, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, attacker, "USDC", 100_000 * USDC)
    with ape.reverts("configurator: not guardian"):
        cfg.pause(sender=attacker)
    with ape.reverts("configurator: not guardian"):
        cfg.set_reduce_only(eth, True, sender=attacker)
    cap = replace(next(m for m in protocol.config.markets if m.name == "ETH-PERP"), oi_cap=1)
    with ape.reverts():
        cfg.set_market(eth, cap.params(protocol.market_asset("ETH-PERP")), sender=attacker)
    # what the owner can do to its own fill (a limit it misses) forfeits to the fund
    escrow = commit(protocol, attacker, eth, 10 * WAD, NEVER_BUY)
    ins = insurance(protocol)
    at_round(protocol, eth)
    event = cancelled(orders.execute_order(account, eth, sender=keeper), orders)
    assert (event.reason, event.fee_to) == ("clearinghouse: price limit", ch.address)
    assert insurance(protocol) == ins + escrow
    print(f"\nrefused: pause / reduce-only / set_market are governance's; an owner-made refusal forfeits ${usd(escrow)}")
