"""Third attacker's review of the open-interest reserve, held from the commit: Orders._hold /
_delete / _growth / execute_order / _over_debt_ceiling, LiquidityPool.apply_hold / held / _book /
_withdraw. Pools are $2M (`fund_liquidity`), ETH at $2,000, BTC at $30,000, default markets
(factor 1, feeds with a 1 h heartbeat, settlement delay 60 s, expiry a day, fee $2). Run with
`-s` to see the figures.

#1 (medium), fixed in part: a hold cost $2 and no margin, and nothing bounded it by what can
fill. An address with no deposit committed a 1,000 ETH long: it held the whole $2M pool, so
every LP's maxWithdraw was $0 and every open that grows a larger side, in every market, was
refused "orders: open interest reserve" until its market's next round, and after it until
someone who is not paid cleared it (the LP, for 91,906 gas); placed again for $2 per round. Now
an order that adds risk needs initial margin at its commit with every other risk-adding order
of the account (`MarginLens.health_after_trades`, "orders: insufficient margin"), locked while
the order is open (no withdrawal): holding the whole pool takes the margin of a $2M position,
and that margin backs no hold in another market. Still open: whoever clears a refused or passed
order is not paid.

#1b (low-medium), fixed: where the reserve is off, one no-margin order of 2**96 - 1 base units
(7.9e10 ETH) refused every other long in the market until its next round (a second one, every
short). Such an order now needs its margin: refused with $1M deposited.

#2 (medium), fixed: `LiquidityPool._book` skipped an idle market only when nothing was held on
it, and then read its price even with its factor 0 (it needs no capital). A 1-wei order in an
idle market whose reserve is off and whose feed stopped (its commit reads no price) brought the
stale feed into every pool pass: deposits, withdrawals, maxWithdraw, totalAssets and every
risk-adding commit elsewhere reverted "oracle: stale answer", for gas only (refunded at expiry,
placed again). Now an idle market whose factor is 0 is skipped, held or not.

#3 (medium), fixed: LP flows after the round decided a fill through the debt ceiling, read at
the fill from the pool's balance: a withdrawal after the round cancelled a debtor's order
"orders: debt ceiling" for $2 (an option on a known round, as review 2's #2 was for the
reserve). The ceiling is now checked at the commit (it reverts there) and not at the fill: the
same withdrawal leaves the placed order to fill, and the next order past the ceiling is refused
at its commit.

#4 (low-medium), open, documented: a factor cut does not reach orders placed before it. The fill
does not look at the reserve, so an order committed under the old factor fills after a cut: an
attacker who sees `set_reserve_factor(eth, 0.05)` coming (mempool, timelock) commits a long at
the old limit (1,000 ETH, $2M) and it fills after the cut: the need becomes $40,000,000 against
a value of $2,001,000 (20.0x), every LP held in. (Had it filled a block before the cut, the same;
a cut never closes positions.) Governance's procedure, in the README: set the market reduce-only
first (the fill checks that flag: placed risk-adding orders are cancelled), then cut, then lift
it.

Refused: no path to a uint128 overflow in apply_hold (each side is bounded by 2**96 - 1, sizes
by 2**127 - 1, and an order near either needs margin past $1e9); apply_hold is Orders-only; a
liquidation between commit and fill cancels "orders: position changed" and releases exactly the
hold; a replaced order and an expired one release theirs; a flip holds only the side it joins
and its fill releases it; two orders committed against the same state cannot together pass the
reserve.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, market_feed, place, redate, trade_now, withdraw_now
from marginsim.protocol import account_id
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd, refresh_feeds
from tests.e2e.test_review_reserve import COOLDOWN, POOL_USD, S2W, price_of, reserve, usd

MAX_OI = 2**96 - 1  # Orders.MAX_OPEN_INTEREST


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def largest_side(protocol, market: int, price: int) -> int:
    value, need_others = reserve(protocol, market, 0)
    return risk.largest_reserved_side(value, need_others, int(protocol.pool.reserve_factor(market)), price)


def held(protocol, market: int) -> tuple[int, int]:
    return tuple(int(v) for v in protocol.pool.held(market))


def cancelled(receipt, orders):
    events = receipt.events.filter(orders.OrderCancelled)
    return events[0] if events else None


def filled(receipt, orders) -> bool:
    return len(receipt.events.filter(orders.OrderFilled)) == 1


# ---------------------------------------------------------------- #1: a $2 hold with no margin


def test_fixed__a_hold_on_the_whole_pool_takes_the_margin_of_a_position_as_large(protocol, deployer, lp, attacker, other_trader):
    ch, lens, pool = protocol.clearinghouse, protocol.lens, protocol.pool
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    ape.chain.pending_timestamp += COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_000, deployer)
    free_before = int(pool.withdrawable(lp))
    assert free_before >= POOL_USD * USDC - 1

    account = account_id(attacker)
    assert tuple(int(v) for v in ch.margin(account)) == (0, 0, 0)  # no deposit
    size = largest_side(protocol, eth, price_of(protocol, "ETH-PERP"))
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, size, sender=attacker)  # the old attack: $2, no margin
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, 1, sender=attacker)  # not even one base unit
    assert held(protocol, eth) == (0, 0) and int(pool.withdrawable(lp)) == free_before

    # what the hold costs now: the initial margin of the position it would open, and its fee
    _, equity, initial = (int(v) for v in lens.health_after_trade(account, eth, size))
    margin_units = (initial - equity) // S2W + 1  # the deposit that makes E' >= I'
    deposit(protocol, attacker, "USDC", margin_units)
    place(ch, eth, size, sender=attacker)
    assert held(protocol, eth) == (size, 0) and int(pool.withdrawable(lp)) <= USDC
    with ape.reverts("clearinghouse: order pending"):  # locked while the order is open
        ch.withdraw(protocol.settlement, USDC, 0, sender=attacker)
    with ape.reverts("orders: insufficient margin"):  # the same margin does not hold a second market
        place(ch, btc, WAD // 100, sender=attacker)
    print(
        f"\n#1 fixed in part: a {size / WAD:,.2f} ETH hold (${size * 2_000 / WAD:,.0f}, the whole pool) by a "
        f"no-deposit account is refused; it now takes ${usd(margin_units)} of margin, locked until the order ends "
        f"(no withdrawal), and that margin backs no hold in another market"
    )


def test_fixed__reserve_off_a_2_96_order_needs_its_margin(protocol, deployer, attacker, other_trader):
    ch, cfg = protocol.clearinghouse, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    cfg.set_reserve_factor(eth, 0, sender=deployer)  # the reserve off: only the base-unit cap is meant to hold
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, MAX_OI, 0, 0, sender=attacker)
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, -MAX_OI, 0, 0, sender=attacker)
    assert held(protocol, eth) == (0, 0)
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    place(ch, eth, WAD, sender=other_trader)
    print(f"\n#1b fixed: an order of 2**96 - 1 ({MAX_OI / WAD:.3e} ETH) is refused for margin even with $1M deposited")


# ---------------------------------------------------------------- #2: a hold drags a dead feed into the pool


def test_fixed__a_hold_on_an_idle_reserve_off_market_with_a_stale_feed_is_not_priced(
    protocol, deployer, lp, attacker, other_trader
):
    ch, pool, cfg = protocol.clearinghouse, protocol.pool, protocol.configurator
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    cfg.set_reserve_factor(btc, 0, sender=deployer)  # BTC: the reserve off, no open interest
    deposit(protocol, attacker, "USDC", 1_000 * USDC)
    place(ch, btc, 1, sender=attacker)  # one base unit; factor 0: no pass. Its commit read BTC's price
    assert held(protocol, btc) == (1, 0)
    # BTC's feed stops (past its 1 h heartbeat) with the order still placed; ETH keeps printing
    ape.chain.pending_timestamp += 3_600 + COOLDOWN
    publish_usd(protocol, "WETH", 2_000, deployer)
    with ape.reverts("oracle: stale answer"):
        protocol.oracle.price(protocol.market_asset("BTC-PERP"))
    free_before = int(pool.withdrawable(lp))
    assert free_before >= POOL_USD * USDC - 1

    # the pool does not price an idle market that needs nothing, held or not
    assert int(pool.withdrawable(lp)) == free_before
    assert int(pool.totalAssets()) > 0
    withdraw_now(pool, USDC, lp, lp, sender=lp)
    fund_liquidity(protocol, other_trader, deployer, 1_000, 0)
    place(ch, eth, WAD, sender=other_trader)  # an ETH open's reserve pass
    print(
        f"\n#2 fixed: a 1-wei BTC hold (reserve off, feed stale) leaves LP withdrawals (${usd(free_before)} free), "
        f"deposits and ETH opens working"
    )


# ---------------------------------------------------------------- #3: the debt ceiling, read at the fill


def test_fixed__an_lp_withdrawal_after_the_round_no_longer_cancels_a_debtor_order_via_the_debt_ceiling(
    protocol, deployer, lp, attacker, other_trader, keeper
):
    ch, orders, pool, cfg = protocol.clearinghouse, protocol.orders, protocol.pool, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    fund_liquidity(protocol, attacker, deployer, 600_000, 0)
    # an honest debtor: 1M USDT of collateral, 900 ETH long; ETH -10% over a day; closed, it owes its loss
    deposit(protocol, other_trader, "USDT", 1_000_000 * USDC)
    trade_now(ch, eth, 900 * WAD, 0, 0, sender=other_trader)
    ape.chain.pending_timestamp += 86_400
    publish_usd(protocol, "WETH", 1_800, deployer)
    refresh_feeds(protocol, deployer)  # the oracle bot's heartbeat: LP flows wait on a stale collateral feed
    trade_now(ch, eth, -900 * WAD, 0, 0, sender=other_trader)
    # the attacker's trading account: WETH only; its first fill's fee makes it a debtor
    acct = deposit(protocol, attacker, "WETH", 300 * WAD, subaccount=1)
    trade_now(ch, eth, WAD, 0, 1, sender=attacker)
    assert int(ch.settlement(acct)) < 0
    rate_base, rate_slope, debt_imr, _ = (int(v) for v in ch.debt_terms())
    ceiling = 8 * 10**16
    cfg.set_debt_parameters(rate_base, rate_slope, debt_imr, ceiling, 9 * 10**17, sender=deployer)

    place(ch, eth, 500 * WAD, 0, 1, sender=attacker)  # $900k long: within the reserve, under the ceiling
    ape.chain.pending_timestamp += int(orders.settlement_delay())
    redate(market_feed(ch, eth))  # the order's round: public from here on
    debt = int(ch.total_debt())
    lendable = int(ch.pool_balance()) - int(ch.total_pending())
    assert debt * WAD <= lendable * ceiling

    out = lendable - debt * WAD // ceiling + 1_000 * USDC  # past the ceiling
    assert out <= int(pool.withdrawable(attacker))
    withdraw_now(pool, out, attacker, attacker, sender=attacker)
    lendable_after = int(ch.pool_balance()) - int(ch.total_pending())
    assert debt * WAD > lendable_after * ceiling  # the debts are above the ceiling now ...
    receipt = orders.execute_order(acct, eth, sender=attacker)
    assert filled(receipt, orders) and int(ch.positions(acct, eth).size) == 501 * WAD  # ... the placed order fills
    with ape.reverts("orders: debt ceiling"):  # and the next one is refused at its commit
        place(ch, eth, WAD, 0, 1, sender=attacker)
    print(
        f"\n#3 fixed: total debt ${usd(debt)} / lendable ${usd(lendable)} = {debt / lendable:.4f} <= ceiling {ceiling / WAD}; "
        f"after a ${usd(out)} LP withdrawal past the round (lendable ${usd(lendable_after)}, "
        f"{debt / lendable_after:.4f}) the placed 500 ETH order still fills; the next commit is refused"
    )


# ---------------------------------------------------------------- #4: a factor cut and the orders before it


def test_finding__an_order_committed_before_a_factor_cut_fills_past_the_new_reserve(protocol, deployer, lp, attacker, keeper):
    ch, orders, pool, cfg = protocol.clearinghouse, protocol.orders, protocol.pool, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    ape.chain.pending_timestamp += COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_000, deployer)
    account = deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    size = largest_side(protocol, eth, price_of(protocol, "ETH-PERP"))
    place(ch, eth, size, sender=attacker)  # front-runs the cut it saw coming
    cfg.set_reserve_factor(eth, WAD // 20, sender=deployer)
    receipt = fill_now(ch, account, eth, keeper=keeper)
    assert filled(receipt, orders) and cancelled(receipt, orders) is None
    assert int(ch.positions(account, eth).size) == size
    value, need = reserve(protocol)
    assert need > 19 * value
    assert int(pool.withdrawable(lp)) == 0  # every LP held in until the side shrinks
    print(
        f"\n#4 a {size / WAD:,.2f} ETH long committed under factor 1, the factor cut to 0.05, then filled: need "
        f"${need / WAD:,.0f} against a value of ${value / WAD:,.0f} ({need / value:.1f}x); the old fill-time check "
        f"cancelled it"
    )


# ---------------------------------------------------------------- refused


def test_refused__holds_cannot_reach_the_core_bound_on_a_side(protocol, deployer, attacker):
    """A hold of 2**96 - 1 base units (the core's bound on a side, which `_hold` still checks,
    so the pool's 128-bit halves cannot overflow) needs margin far past a billion dollars (the
    notional, and for a buy its fill's skew premium); so does 2**127 - 1 with the reserve on."""
    ch, cfg = protocol.clearinghouse, protocol.configurator
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    cfg.set_reserve_factor(btc, 0, sender=deployer)
    deposit(protocol, attacker, "USDC", 10**9 * USDC)  # $1e9
    for market, size in ((btc, MAX_OI), (btc, -MAX_OI), (eth, 2**127 - 1)):
        with ape.reverts("orders: insufficient margin"):
            place(ch, market, size, sender=attacker)
    with ape.reverts("orders: size too large"):
        place(ch, btc, 2**127, sender=attacker)
    assert held(protocol, btc) == (0, 0) and held(protocol, eth) == (0, 0)
    print("\nrefused: orders of 2**96 - 1 BTC and 2**127 - 1 ETH need margin past $1e9; no hold nears the bound")


def test_refused__apply_hold_is_orders_only(protocol, attacker):
    eth = protocol.markets["ETH-PERP"]
    for add in (True, False):
        with ape.reverts("pool: not orders"):
            protocol.pool.apply_hold(eth, 0, 10**30, add, sender=attacker)


def test_refused__a_liquidation_between_commit_and_fill_releases_exactly_the_hold(protocol, deployer, lp, trader, keeper):
    from tests.e2e.attacks import price_for_health

    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    account = deposit(protocol, trader, "USDC", 7_000 * USDC)
    trade_now(ch, eth, 50 * WAD, 0, 0, sender=trader, keeper=keeper)
    deposit(protocol, trader, "USDC", 3_000 * USDC)  # the margin of the order below
    place(ch, eth, 10 * WAD, sender=trader)
    assert held(protocol, eth) == (10 * WAD, 0)
    publish_usd(protocol, "WETH", round(price_for_health(protocol, account, "ETH-PERP", 0.9), 2), deployer)
    protocol.liquidation_engine.liquidate(account, eth, 10**30, sender=keeper)
    assert int(ch.positions(account, eth).size) < 50 * WAD
    receipt = fill_now(ch, account, eth, keeper=keeper)
    assert cancelled(receipt, orders).reason == "orders: position changed"
    assert held(protocol, eth) == (0, 0)


def test_refused__replaced_and_expired_orders_release_their_holds(protocol, deployer, lp, attacker):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    account = deposit(protocol, attacker, "USDC", 10_000 * USDC)
    place(ch, eth, 5 * WAD, sender=attacker)
    with ape.reverts("orders: order pending"):
        place(ch, eth, -3 * WAD, sender=attacker)  # still live: no replacement
    ape.chain.pending_timestamp += int(orders.settlement_delay())
    publish_usd(protocol, "WETH", 2_000, deployer)
    publish_usd(protocol, "WETH", 2_000, deployer)  # its round passed
    place(ch, eth, -3 * WAD, sender=attacker)  # replaces it: the old hold released, the new one held
    assert held(protocol, eth) == (0, 3 * WAD)
    ape.chain.pending_timestamp += int(orders.settlement_delay()) + int(orders.expiry()) + 1  # no round since
    receipt = orders.cancel_order(account, eth, sender=lp)
    assert cancelled(receipt, orders).reason == "orders: expired"
    assert held(protocol, eth) == (0, 0)


def test_refused__a_flip_holds_only_the_side_it_joins(protocol, deployer, lp, trader, keeper):
    ch = protocol.clearinghouse
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    account = deposit(protocol, trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, 10 * WAD, 0, 0, sender=trader, keeper=keeper)
    place(ch, eth, -15 * WAD, sender=trader)
    assert held(protocol, eth) == (0, 5 * WAD)
    fill_now(ch, account, eth, keeper=keeper)
    assert int(ch.positions(account, eth).size) == -5 * WAD
    assert held(protocol, eth) == (0, 0)
    st = ch.market_state(eth)
    assert (int(st.long_oi), int(st.short_oi)) == (0, 5 * WAD)


def test_refused__two_orders_against_the_same_state_cannot_together_pass_the_reserve(protocol, deployer, lp, attacker):
    ch, pool = protocol.clearinghouse, protocol.pool
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    ape.chain.pending_timestamp += COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_000, deployer)
    size = largest_side(protocol, eth, price_of(protocol, "ETH-PERP")) * 6 // 10
    for sub in (0, 1):
        deposit(protocol, attacker, "USDC", 1_000_000 * USDC, subaccount=sub)
    place(ch, eth, size, 0, 0, sender=attacker)
    with ape.reverts("orders: open interest reserve"):
        place(ch, eth, size, 0, 1, sender=attacker)
    assert held(protocol, eth) == (size, 0)
    value, need = reserve(protocol)
    assert need <= value and int(pool.withdrawable(lp)) == (value - need) // S2W
