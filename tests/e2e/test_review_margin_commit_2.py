"""Second attacker's review of initial margin at the commit: Orders.commit_order /
_margin_for_orders / _growth / _hold / execute_order, MarginLens.health_after_trades. Pools are
$2M (`fund_liquidity`), ETH at $2,000, BTC at $30,000, default markets (factor 1, ETH mmr 3% /
imr 6% below 1,000 ETH, feeds with a 1 h heartbeat, settlement delay 60 s, expiry a day, fee $2).
Run with `-s` to see the figures. Not re-reported: #1 (a never-filling order parks margin for $2 a
round), #3 (a stale feed under a pending order) and #4 (the scan's gas) of
test_review_margin_commit.py.

#1 (low-medium), fixed: a flip to a smaller or equal size (|position + size_delta| <= |position|,
but `_growth` nonzero) committed with no margin check at all, though its fill is checked for
initial margin (the Clearinghouse counts a flip as adding risk) and its hold is real.
`_margin_for_orders` returned True when no order in its list grew, so the account's own state was
never looked at: an account below initial margin, or even liquidatable, held |new size| on the
other side. The hold is bounded by the position (a market's need is its larger side, so position
+ flip hold add at most |position|), so the damage was the margin it skipped, not the size:
  - A 200 ETH long opened at initial margin ($24,129.96), on the minority side (another trader
    short 300 ETH, so the long needs nothing). ETH +3% in one round: the long is $11,880 in
    profit (equity $36,010.00, maintenance $12,360.00), but the initial rate follows sigma up,
    $24,000 -> $94,232.39. Any growth was refused "orders: insufficient margin"; the sell of 400
    ETH committed and held 200 ETH short: need +$412,000, 11.4 of need per $ of equity, where the
    same hold placed directly needs $94,520.75 (4.4 per $): 2.6x cheaper, up to
    initial/maintenance (7.6x at these rates) as equity falls towards maintenance.
  - Liquidatable (equity $881.46 < maintenance $927.86, a 1 BTC short), a buy of 2 BTC committed
    and held 1 BTC (~$31k).
  Fixed by dropping the "no order grows: pass" shortcut: with an empty list the account must meet
  initial margin as it stands (`health_after_trades` with no trades is the Clearinghouse's own
  margin). The flip's hold is backed by the margin of the position it shrinks; its fill is checked
  again. A close (|new| < |pos| on the same side) is still never refused for margin.

Refused (with numbers):
  - Same-size flips in two markets (200 ETH + 6 BTC minority longs at initial margin, $35,011.56):
    need +$580,000, 16.57 of need per $ deposited; the same holds placed directly as never-filling
    shorts need $35,178.36 (16.49 per $). One margin does not back a position and a hold twice:
    the larger-side need absorbs one of them.
  - A hedged pair (two subaccounts, 200 ETH long and short, $48,420.04, price-neutral) needs
    $400,000; a same-size flip on one leg takes it to $800,000 (16.52 per $), a partial flip on the
    other leg (+300 ETH on -200: holds 100 long) adds $0; one direct never-filling 400 ETH order
    needs $48,560.08 (16.47 per $): no better than #1 of test_review_margin_commit.py.
  - A liquidation between a flip's commit and its fill (+50 ETH -> +26.92 ETH, so the sell of 100
    would now open a larger short) cancels it "orders: position changed"; a position moves only
    by its own market's order (one per account and market) or a liquidation (which only shrinks
    it), so no order classified 'not growing' at its commit fills as growing.
  - Commits in any order: $60,000 backs 296.31 ETH (60% of what it alone backs), then BTC 12.981
    (32.998 alone is refused), then ETH2 (a third market) only below 3.979; all three fill, each
    fill leaves the others' stored positions current, equity $59,402.28 >= initial $59,161.52.
  - A replacement is checked with the account's other orders (a 493.85 ETH replacement refused
    with the BTC order open; the old 246.93 ETH size commits, the old hold released first).

Info: a collateral drop before the round leaves a hold under-backed until it is cleared: 50 WETH
back a 691.5 ETH hold at the limit; ETH -15% before its round leaves equity with the fill
$71,255.65 against an initial of $753,556.74 (sigma jumped too); new growth is refused, and the
hold goes at its round (refused "clearinghouse: price limit"), or at #1's and review 3's pace when
nobody clears it. A check at the commit cannot do better without re-checking holds as prices
move; the fill checks margin.
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import fill_now, place, trade_now
from marginsim.protocol import MarketConfig, account_id
from tests.e2e.attacks import price_for_health
from tests.e2e.incidents import USDC, WAD, deposit, publish_usd
from tests.e2e.test_review_margin_commit import NEVER_BUY, NEVER_SELL, after, fresh_pool, largest, shortfall
from tests.e2e.test_review_reserve import S2W, price_of, reserve, usd
from tests.e2e.test_review_reserve_3 import cancelled, filled, held

pytestmark = pytest.mark.slow  # its setup takes about 40 s: make test-slow (README "Tests")


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def need(protocol) -> int:
    """The pool's need, WAD USD (LiquidityPool.reserve(0, 0))."""
    return reserve(protocol)[1]


def margin(protocol, account: int) -> tuple[int, int, int]:
    """(equity, maintenance, initial), WAD, as the Clearinghouse sees them now."""
    return tuple(int(v) for v in protocol.clearinghouse.margin(account))


def open_at_margin(protocol, owner, orders: list[tuple[int, int]], keeper, subaccount: int = 0) -> tuple[int, int]:
    """Deposit just what `orders` need at initial margin (+$10 for funding and rounding) and fill
    them one by one. Returns (account, deposit in settlement units)."""
    account = account_id(owner, subaccount)
    amount = shortfall(protocol, account, orders) + 10 * USDC
    deposit(protocol, owner, "USDC", amount, subaccount)
    for market, size in orders:
        trade_now(protocol.clearinghouse, market, size, 0, subaccount, sender=owner, keeper=keeper)
    return account, amount


def skew_markets_short(protocol, other_trader, keeper, eth_size: int, btc_size: int = 0) -> None:
    """Another trader shorts: shorts become the larger side, so a long is the minority."""
    deposit(protocol, other_trader, "USDC", 1_000_000 * USDC)
    ch = protocol.clearinghouse
    trade_now(ch, protocol.markets["ETH-PERP"], -eth_size, sender=other_trader, keeper=keeper)
    if btc_size:
        trade_now(ch, protocol.markets["BTC-PERP"], -btc_size, sender=other_trader, keeper=keeper)


# ---------------------------------------------------------------- same-size flips, several markets


def test_refused__same_size_flips_in_two_markets_hold_no_more_per_dollar_than_direct_orders(
    protocol, deployer, lp, attacker, other_trader, keeper
):
    """A same-size flip is not checked, but its hold is bounded by its own position: a market's
    need is its larger side, so position + flip hold add at most |position| to it, and that
    position took its initial margin to open. Per dollar it holds what a direct order holds."""
    ch = protocol.clearinghouse
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    skew_markets_short(protocol, other_trader, keeper, 300 * WAD, 10 * WAD)  # shorts larger in both
    a, b = 200 * WAD, 6 * WAD
    need_before = need(protocol)
    account, paid = open_at_margin(protocol, attacker, [(eth, a), (btc, b)], keeper)
    assert need(protocol) == need_before  # minority longs: no need of their own
    equity = margin(protocol, account)[0]

    place(ch, eth, -2 * a, NEVER_SELL, sender=attacker)  # |new| == |pos|: no margin asked
    place(ch, btc, -2 * b, NEVER_SELL, sender=attacker)
    assert held(protocol, eth) == (0, a) and held(protocol, btc) == (0, b)
    added = need(protocol) - need_before
    notional = (a * price_of(protocol, "ETH-PERP") + b * price_of(protocol, "BTC-PERP")) // WAD
    assert notional <= added <= notional + 10  # exactly the two positions' notional (ceil)

    # the same holds placed directly (never-filling shorts) by a fresh subaccount
    direct = shortfall(protocol, account_id(attacker, 1), [(eth, -a), (btc, -b)]) * S2W
    per_dollar_flip, per_dollar_direct = added / (paid * S2W), added / direct
    assert per_dollar_flip <= per_dollar_direct * 1.01  # (the direct shorts pay a little premium into the skew)
    assert added / equity <= per_dollar_direct * 1.02  # the longs' fees came out of the same deposit
    print(
        f"\nflips: ${usd(paid)} backs a {a / WAD:.0f} ETH + {b / WAD:.0f} BTC minority long and same-size flips: need "
        f"+${added / WAD:,.0f} ({per_dollar_flip:.2f} of need per $ deposited, {added / equity:.2f} per $ of equity); "
        "the same holds placed directly need "
        f"${direct / WAD:,.2f} ({per_dollar_direct:.2f} per $)"
    )


# ---------------------------------------------------------------- a flip needs the account's margin


def test_fixed__a_flip_below_initial_margin_is_refused_at_its_commit(protocol, deployer, lp, attacker, other_trader, keeper):
    """Was: a flip to a smaller or equal size was in no list, so nothing was checked; an account
    below initial margin, or liquidatable, held |new size| on the other side. Now the list may be
    empty and the account must still meet initial margin as it stands."""
    ch = protocol.clearinghouse
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    skew_markets_short(protocol, other_trader, keeper, 300 * WAD)
    a = 200 * WAD
    account, paid = open_at_margin(protocol, attacker, [(eth, a)], keeper)
    initial_before = margin(protocol, account)[2]
    target = 2_060
    publish_usd(protocol, "WETH", target, deployer)  # ETH +3% in one round: the long gains, the volatility jumps
    need_before = need(protocol)
    equity, maintenance, initial = margin(protocol, account)
    assert equity > paid * S2W  # in profit ...
    assert maintenance < equity < initial  # ... yet below initial: the initial rate follows sigma up
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc, 1, sender=attacker)  # one base unit of growth anywhere: refused
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, -2 * a, NEVER_SELL, sender=attacker)  # the same-size flip: refused too
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, -a - 1, NEVER_SELL, sender=attacker)  # a flip of one base unit
    assert held(protocol, eth) == (0, 0) and need(protocol) == need_before
    place(ch, eth, -a, NEVER_SELL, sender=attacker)  # a close is never refused for margin
    assert held(protocol, eth) == (0, 0)

    # liquidatable: a flip is refused (fresh account, health 0.95)
    sub, _ = open_at_margin(protocol, attacker, [(btc, -WAD)], keeper, subaccount=3)
    low = price_for_health(protocol, sub, "BTC-PERP", 0.95)
    publish_usd(protocol, "WBTC", round(low, 2), deployer)
    e3, m3, _ = margin(protocol, sub)
    assert e3 < m3  # liquidatable
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc, 2 * WAD, NEVER_BUY, 3, sender=attacker)
    assert held(protocol, btc) == (0, 0)
    print(
        f"\nbelow initial: ${usd(paid)} for the long; ETH ${target:,} (+3%): initial ${initial_before / WAD:,.2f} -> "
        f"${initial / WAD:,.2f} (sigma), equity ${equity / WAD:,.2f}: the {2 * a / WAD:.0f} ETH flip is refused, "
        f"the close commits; liquidatable (equity ${e3 / WAD:,.2f} < maintenance ${m3 / WAD:,.2f}): a 2 BTC flip is refused"
    )


# ---------------------------------------------------------------- liquidation under a pending flip


def test_refused__a_liquidation_cannot_turn_a_flip_into_a_larger_fill_but_its_hold_waits_for_clearing(
    protocol, deployer, lp, attacker, other_trader, keeper
):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    skew_markets_short(protocol, other_trader, keeper, 300 * WAD)
    account, _ = open_at_margin(protocol, attacker, [(eth, 50 * WAD)], keeper)
    need_before = need(protocol)
    place(ch, eth, -100 * WAD, sender=attacker)  # same size: not growing, unchecked; held 50 short
    assert held(protocol, eth) == (0, 50 * WAD)
    held_need = need(protocol)
    publish_usd(protocol, "WETH", round(price_for_health(protocol, account, "ETH-PERP", 0.9), 2), deployer)
    protocol.liquidation_engine.liquidate(account, eth, 10**30, sender=keeper)
    size = int(ch.positions(account, eth).size)
    assert 0 <= size < 50 * WAD  # the sell of 100 would now be a flip to a larger short
    assert held(protocol, eth) == (0, 50 * WAD)  # still held, now backed by what the liquidation left
    equity_left = margin(protocol, account)[0]
    receipt = fill_now(ch, account, eth, keeper=keeper)
    assert cancelled(receipt, orders).reason == "orders: position changed"  # never fills on the new position
    assert not filled(receipt, orders) and int(ch.positions(account, eth).size) == size
    assert held(protocol, eth) == (0, 0)
    print(
        f"\nliquidation: the 100 ETH sell placed on +50 ETH met +{size / WAD:.2f} ETH: cancelled 'position changed'; "
        f"its 50 ETH hold (need +${(held_need - need_before) / WAD:,.0f}) stayed with ${equity_left / WAD:,.2f} of equity "
        f"until cleared (unpaid)"
    )


# ---------------------------------------------------------------- the order of commits and of fills


def test_refused__commits_in_any_order_cannot_together_exceed_the_margin_and_fills_leave_others_valid(
    protocol, deployer, lp, attacker, keeper
):
    ch, cfg, orders = protocol.clearinghouse, protocol.configurator, protocol.orders
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    weth = protocol.market_asset("ETH-PERP")
    cfg.list_market(MarketConfig("ETH2-PERP", "WETH").params(weth.address), sender=deployer)
    eth2 = int(ch.market_count())
    account = deposit(protocol, attacker, "USDC", 60_000 * USDC)
    x = largest(protocol, account, eth) * 6 // 10
    place(ch, eth, x, sender=attacker)  # fills at its round (no limit)
    y_alone = largest(protocol, account, btc)
    y = largest(protocol, account, btc, [(eth, x)]) * 98 // 100
    assert y < y_alone // 2
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc, y_alone * 9 // 10, sender=attacker)  # what the margin alone would allow
    place(ch, btc, y, sender=attacker)
    z = largest(protocol, account, eth2, [(eth, x), (btc, y)])
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth2, 2 * z + WAD // 1000, sender=attacker)
    place(ch, eth2, z // 2, sender=attacker)
    equity, initial = after(protocol, account, [(eth, x), (btc, y), (eth2, z // 2)])
    assert equity >= initial

    # each fill changes only its own market's position: the others' stored positions stay current
    for market in (eth, btc, eth2):
        receipt = fill_now(ch, account, market, keeper=keeper)
        assert filled(receipt, orders), cancelled(receipt, orders)
    e, _, i = margin(protocol, account)
    assert e >= i
    print(
        f"\norder of commits: $60,000 -> ETH {x / WAD:.2f} (60% of alone), BTC {y / WAD:.3f} (alone {y_alone / WAD:.3f} "
        f"refused), ETH2 refused past {z / WAD:.3f}; all three fill, equity ${e / WAD:,.2f} >= initial ${i / WAD:,.2f}"
    )


# ---------------------------------------------------------------- hedged subaccounts with flips, partial flips


def test_refused__a_hedged_pair_with_flips_holds_at_the_direct_rate_and_a_partial_flip_adds_nothing(
    protocol, deployer, lp, attacker, keeper
):
    ch = protocol.clearinghouse
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    a = 200 * WAD
    long, m0 = open_at_margin(protocol, attacker, [(eth, a)], keeper, subaccount=0)
    short, m1 = open_at_margin(protocol, attacker, [(eth, -a)], keeper, subaccount=1)
    need_pair = need(protocol)
    place(ch, eth, -2 * a, NEVER_SELL, 0, sender=attacker)  # same-size flip: holds a short
    need_flip = need(protocol)
    place(ch, eth, a * 3 // 2, NEVER_BUY, 1, sender=attacker)  # partial flip to +a/2: holds a/2 long
    assert held(protocol, eth) == (a // 2, a)
    assert need(protocol) == need_flip  # the longs (a + a/2) stay under the shorts (2a)
    price = price_of(protocol, "ETH-PERP")
    assert need_pair <= a * price // WAD + 1 and need_flip >= 2 * a * price // WAD
    direct = shortfall(protocol, account_id(attacker, 2), [(eth, 2 * a)]) * S2W
    per_dollar_pair = need_flip / ((m0 + m1) * S2W)
    assert per_dollar_pair <= need_flip / direct * 1.01
    print(
        f"\nhedged pair: ${usd(m0 + m1)} (price-neutral) needs ${need_pair / WAD:,.0f}; with a same-size flip "
        f"${need_flip / WAD:,.0f} ({per_dollar_pair:.2f} per $), a partial flip on the other leg +$0; one direct "
        f"never-filling order of {2 * a / WAD:.0f} ETH: ${direct / WAD:,.2f} ({need_flip / direct:.2f} per $)"
    )


# ---------------------------------------------------------------- replacing an order


def test_refused__a_replacement_is_checked_with_the_other_orders(protocol, deployer, lp, attacker):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, attacker, "USDC", 60_000 * USDC)
    x = largest(protocol, account, eth) // 2
    place(ch, eth, x, NEVER_BUY, sender=attacker)
    y = largest(protocol, account, btc, [(eth, x)]) * 98 // 100
    place(ch, btc, y, NEVER_BUY, sender=attacker)
    ape.chain.pending_timestamp += int(orders.settlement_delay())
    publish_usd(protocol, "WETH", 2_000, deployer)
    publish_usd(protocol, "WETH", 2_000, deployer)  # the ETH order's round passed: replaceable
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, 2 * x, NEVER_BUY, sender=attacker)  # the BTC order still counts
    place(ch, eth, x, NEVER_BUY, sender=attacker)  # the same size: the old hold released, the new one held
    assert held(protocol, eth) == (x, 0) and held(protocol, btc) == (y, 0)
    assert int(orders.open_orders(account)) == 2
    print(f"\nreplacement: a {2 * x / WAD:.2f} ETH replacement refused with the BTC order open; {x / WAD:.2f} ETH commits")


# ---------------------------------------------------------------- a collateral price move under a hold


def test_info__a_collateral_drop_before_the_round_leaves_a_hold_under_backed_until_it_is_cleared(
    protocol, deployer, lp, attacker, keeper
):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, attacker, "WETH", 50 * WAD)  # $100,000, $85,000 after the haircut
    size = largest(protocol, account, eth) * 99 // 100
    place(ch, eth, size, NEVER_BUY, sender=attacker)
    publish_usd(protocol, "WETH", 1_700, deployer)  # -15%, dated before the order's round
    equity, initial = after(protocol, account, [(eth, size)])
    assert equity < initial and held(protocol, eth) == (size, 0)
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc, 1, sender=attacker)
    receipt = fill_now(ch, account, eth, keeper=keeper)  # its round: refused, cleared
    assert cancelled(receipt, orders) is not None and held(protocol, eth) == (0, 0)
    print(
        f"\ncollateral: 50 WETH backs a {size / WAD:.1f} ETH hold; ETH -15% before its round: equity with the fill "
        f"${equity / WAD:,.2f} < initial ${initial / WAD:,.2f}; held until its round is cleared "
        f"('{cancelled(receipt, orders).reason}')"
    )
