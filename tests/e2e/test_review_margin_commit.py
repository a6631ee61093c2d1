"""Attacker's review of initial margin at the commit (the fix for test_review_reserve_3.py #1 and
#1b): Orders.commit_order / _margin_for_orders, MarginLens.health_after_trades. Pools are $2M
(`fund_liquidity`), ETH at $2,000, BTC at $30,000, default markets (factor 1, feeds with a 1 h
heartbeat, settlement delay 60 s, expiry a day, fee $2). Run with `-s` to see the figures.

#1 (medium, was #1 of review 3), fixed in part: a hold now needs initial margin, but the margin
is only parked, never at risk, and the order need never fill. A buy with limit 1 wei (or any
limit no fill reaches) backed by $162,000.50 holds 1,000 ETH, the whole $2M pool: every LP's
maxWithdraw reads $0 and every open that grows a larger side is refused, until ETH's next round;
then its fill is refused ("clearinghouse: price limit") and the whole $162,000.50 can be
withdrawn, and the attacker commits again. It cost $2 per round of the feed ($48 a day); now the
order also escrows its bond (`order_bond`, 0.05% of the notional it adds: $1,000 here), refunded
by a fill and forfeited with the fee to the insurance fund when it does not fill: $1,002 per
round, $24,048 a day at an hourly heartbeat (1.2% of the pool a day), plus the use of 8.1% of
the pool's size in capital. Still open: the margin itself is never at risk; a reservation fee
per held notional per second, paid to the LPs, would price the hold by its length, not by round.

#2 (low-medium), fixed: a flip's close was credited in the what-if even when the order never
filled, so one margin backed a real position and a hold of its size. With $50k: a 407.70 ETH long
($815k, real), then a sell of 407.70 ETH + 1 wei (limit 2**128 - 1: it never fills) took the lens
to a 1-wei short, freeing the long's initial margin; a BTC long of 26.52 BTC ($795k, limit 1) then
committed, where 0.28 BTC ($8.3k) alone was the limit: the pool's need $1.61M against $50k of
margin. Now the check fills only the orders that make a position larger (|position + size_delta|
> |position|, this one included) and leaves a close or a flip to a smaller or equal size unfilled:
the BTC order is refused, and what the long's margin leaves still commits.

#3 (low), open: a pending risk-adding order in a market whose feed stops blocks every
risk-adding commit of that account, in every market ("oracle: stale answer": the what-if prices
every pending order's market), until that order can be cleared (its next round or its expiry, a
day later; "orders: not expired" before). Shown with BTC's reserve off, where the pool does not
read BTC's price, so the block is the new check's: another trader's ETH open commits and the
account's own ETH reduction commits (reductions skip the check). Fix: let the owner cancel an
order whose market has no valid price, or leave such an order out of the what-if and refuse its
fill when the account would lack margin (the fill checks margin anyway).

#4 (info): the scan costs its own account alone. With 15 markets listed and 14 other orders open,
a commit reads each slot and prices all 15 markets in the lens: 1,382,429 gas against
932,775 for another account's commit in the same pool state (the rest is review 2's reserve
pass over 15 held markets). Keepers' fills and other accounts are untouched. `market_count()`
is now read once per commit (it was read once per market: 14 calls saved).

Refused: an order with no margin (review 3's #1) and the 2**96 - 1 holds where the reserve is off
(#1b) now revert "orders: insufficient margin"; one subaccount's margin does not back another's
order; the margin cannot leave while an order is open (withdrawal "clearinghouse: order pending",
no collateral sale of an account without debt); a reduction that a liquidation would turn into
an open is cancelled "orders: position changed" and held nothing; the lens at the limit is what
the fill checks (one base unit more is refused at the commit). The debt ceiling is checked before
margin (an account in debt over it reads "orders: debt ceiling"): no bypass in the order.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, market_feed, place, redate, trade_now
from marginsim.protocol import MarketConfig, account_id
from tests.e2e.attacks import price_for_health
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd
from tests.e2e.test_review_reserve import COOLDOWN, FEE, POOL_USD, S2W, price_of, usd
from tests.e2e.test_review_reserve_3 import MAX_OI, cancelled, held, largest_side

NEVER_SELL = 2**128 - 1  # a sell's limit no fill reaches
NEVER_BUY = 1  # a buy's limit no fill reaches (1 wei)


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def after(protocol, account: int, orders: list[tuple[int, int]]) -> tuple[int, int]:
    """(equity, initial) after `orders`, WAD, as the commit's check computes them."""
    equity, initial = protocol.lens.commit_margin(account, [m for m, _ in orders], [d for _, d in orders])
    return int(equity), int(initial)


def shortfall(protocol, account: int, orders: list[tuple[int, int]], surplus: bool = False) -> int:
    """Settlement token units the account must add for `orders` to pass the check (0 if none;
    with `surplus`, minus the whole units it could take out instead). Exact while the balance
    covers the orders' fees and losses; short of that the debt margin (`debt_imr` on them) makes
    it an upper bound."""
    equity, initial = after(protocol, account, orders)
    need = -(-(initial - equity) // S2W)
    return need if surplus else max(need, 0)


def largest(protocol, account: int, market: int, others: list[tuple[int, int]] = ()) -> int:
    """The largest long in `market` the check lets `account` commit with `others` open."""
    low, high = 0, 10**30
    while high - low > 1:
        mid = (low + high) // 2
        equity, initial = after(protocol, account, [(market, mid), *others])
        low, high = (mid, high) if equity >= initial else (low, mid)
    return low


def fresh_pool(protocol, deployer, lp) -> int:
    """A $2M pool past its cooldown, both feeds fresh; returns the LP's maxWithdraw."""
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    ape.chain.pending_timestamp += COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_000, deployer)
    publish_usd(protocol, "WBTC", 30_000, deployer)
    return int(protocol.pool.withdrawable(lp))


# ---------------------------------------------------------------- #1: margin parked, not at risk


def test_fixed_in_part__a_never_filling_order_forfeits_its_bond_each_round_its_margin_returned(
    protocol, deployer, lp, attacker, other_trader, keeper
):
    ch, orders, pool = protocol.clearinghouse, protocol.orders, protocol.pool
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    free_before = fresh_pool(protocol, deployer, lp)
    account = account_id(attacker)
    size = largest_side(protocol, eth, price_of(protocol, "ETH-PERP"))  # the whole pool
    margin = shortfall(protocol, account, [(eth, size)])  # with no balance the fee would be a debt ...
    deposit(protocol, attacker, "USDC", margin)
    surplus = -shortfall(protocol, account, [(eth, size)], surplus=True)  # ... needing debt_imr: give it back
    ch.withdraw(protocol.settlement, surplus, 0, sender=attacker)
    margin -= surplus
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, size + WAD // 100, NEVER_BUY, sender=attacker)  # the check binds ...
    place(ch, eth, size, NEVER_BUY, sender=attacker)  # ... and a hold it can back commits
    assert held(protocol, eth) == (size, 0)
    assert int(pool.withdrawable(lp)) <= USDC
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    with ape.reverts("orders: open interest reserve"):
        place(ch, btc, WAD // 10, sender=other_trader)
    with ape.reverts("clearinghouse: order pending"):
        ch.withdraw(protocol.settlement, USDC, 0, sender=attacker)

    bond = int(orders.bonds(account, eth))
    assert bond == risk.order_bond(size, price_of(protocol, "ETH-PERP"), int(orders.order_bond()), S2W)

    # its round: the fill is refused for its limit, the fee and the bond forfeited, the margin all there
    insurance = int(ch.insurance_balance())
    receipt = fill_now(ch, account, eth, keeper=attacker)
    assert cancelled(receipt, orders).reason == "clearinghouse: price limit"
    assert int(ch.insurance_balance()) == insurance + FEE + bond
    assert int(ch.settlement(account)) == margin and held(protocol, eth) == (0, 0)
    place(ch, eth, size, NEVER_BUY, sender=attacker)  # again, for the next round: another bond
    assert int(pool.withdrawable(lp)) <= USDC
    fill_now(ch, account, eth, keeper=attacker)
    assert int(ch.insurance_balance()) == insurance + 2 * (FEE + bond)
    ch.withdraw(protocol.settlement, margin, 0, sender=attacker)  # and out, in full
    assert int(ch.settlement(account)) == 0
    print(
        f"\n#1 ${usd(margin)} of margin ({margin / (POOL_USD * USDC):.1%} of the pool) holds {size / WAD:,.0f} ETH: LP "
        f"maxWithdraw ${usd(free_before)} -> $0, BTC opens refused; each round its limit-1 buy is refused, "
        f"${usd(FEE)} + a ${usd(bond)} bond forfeited (was ${usd(FEE)}), the margin withdrawn in full afterwards: "
        f"${usd((FEE + bond) * 24)} a day at an hourly round plus ${margin / USDC * 0.05 / 8_760:,.2f} an hour of capital at 5%"
    )


# ---------------------------------------------------------------- #2: a flip's close credited, never filled


def test_fixed__a_never_filling_flip_does_not_free_its_positions_margin(protocol, deployer, lp, attacker, keeper):
    ch = protocol.clearinghouse
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, attacker, "USDC", 50_000 * USDC)
    x = largest(protocol, account, eth) * 99 // 100
    trade_now(ch, eth, x, 0, 0, sender=attacker, keeper=keeper)  # a real long, at its margin
    alone = largest(protocol, account, btc)
    y = largest(protocol, account, btc, [(eth, -(x + 1))]) * 98 // 100  # what the attack committed
    assert y > 20 * alone
    place(ch, eth, -(x + 1), NEVER_SELL, sender=attacker)  # a flip to a 1-wei short: no margin asked ...
    assert held(protocol, eth) == (0, 1)
    with ape.reverts("orders: insufficient margin"):
        place(ch, btc, y, NEVER_BUY, sender=attacker)  # ... and its close is not credited
    place(ch, btc, alone * 9 // 10, NEVER_BUY, sender=attacker)  # what the long's margin leaves commits
    assert held(protocol, btc) == (alone * 9 // 10, 0)
    assert int(ch.positions(account, eth).size) == x
    # a flip to the same size (sell 2x): either the long or the short, one margin for both
    ape.chain.pending_timestamp += int(protocol.orders.settlement_delay())
    redate(market_feed(ch, eth))
    publish_usd(protocol, "WETH", 2_000, deployer)  # (its round passed: replaceable)
    place(ch, eth, -2 * x, NEVER_SELL, sender=attacker)
    assert held(protocol, eth) == (0, x)
    print(
        f"\n#2 $50,000: a {x / WAD:,.2f} ETH long and a never-filling sell of it + 1 wei: a {y / WAD:,.2f} BTC hold "
        f"is refused, {alone * 9 // 10 / WAD:.2f} BTC (what the long's margin leaves) commits"
    )


# ---------------------------------------------------------------- #3: a stopped feed under a pending order


def test_finding__a_pending_order_on_a_stopped_feed_blocks_the_accounts_opens_everywhere(
    protocol, deployer, lp, attacker, other_trader, keeper
):
    ch, orders, cfg = protocol.clearinghouse, protocol.orders, protocol.configurator
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    cfg.set_reserve_factor(btc, 0, sender=deployer)  # the pool never reads BTC's price
    account = deposit(protocol, attacker, "USDC", 100_000 * USDC)
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, 10 * WAD, 0, 0, sender=attacker, keeper=keeper)
    place(ch, btc, WAD, sender=attacker)  # a BTC open waits for BTC's next round
    ape.chain.pending_timestamp += 3_601  # BTC's feed stops; ETH prints on
    publish_usd(protocol, "WETH", 2_000, deployer)
    with ape.reverts("oracle: stale answer"):
        place(ch, eth, WAD, sender=attacker)  # any open of this account, in any market
    with ape.reverts("orders: not expired"):
        orders.cancel_order(account, btc, sender=attacker)  # and it cannot clear the order
    place(ch, eth, WAD, sender=other_trader)  # others are not touched
    place(ch, eth, -WAD, sender=attacker)  # its reductions are not checked
    ape.chain.pending_timestamp += 86_400
    publish_usd(protocol, "WETH", 2_000, deployer)
    receipt = orders.cancel_order(account, btc, sender=attacker)  # a day later: expired, refunded
    assert cancelled(receipt, orders).reason == "orders: expired"
    ape.chain.pending_timestamp += 60
    publish_usd(protocol, "WETH", 2_000, deployer)  # (the ETH reduction's round passed)
    place(ch, eth, WAD, sender=attacker)
    print("\n#3 a BTC order under a stopped feed: the account's ETH opens revert 'oracle: stale answer' for a day")


# ---------------------------------------------------------------- #4: the scan's gas


def test_info__the_scan_of_15_markets_costs_the_account_that_has_the_orders(protocol, deployer, lp, attacker, other_trader):
    ch, cfg = protocol.clearinghouse, protocol.configurator
    fresh_pool(protocol, deployer, lp)
    weth = protocol.market_asset("ETH-PERP")
    while int(ch.market_count()) < 15:
        cfg.list_market(MarketConfig(f"ETH{int(ch.market_count())}-PERP", "WETH").params(weth.address), sender=deployer)
    for wallet in (attacker, other_trader):
        deposit(protocol, wallet, "USDC", 1_000_000 * USDC)
    for m in range(1, 15):
        place(ch, m, WAD // 100, NEVER_BUY, sender=attacker)
    base = int(place(ch, 15, WAD // 100, NEVER_BUY, sender=other_trader).gas_used)  # its only order, same pool state
    scanned = int(place(ch, 15, WAD // 100, NEVER_BUY, sender=attacker).gas_used)  # with 14 others open
    print(f"\n#4 a commit with no other order {base:,} gas; with 14 others open in 15 markets {scanned:,}")
    assert int(protocol.orders.open_orders(account_id(attacker))) == 15
    assert scanned > base + 200_000


# ---------------------------------------------------------------- refused


def test_refused__no_margin_holds_of_review_3_now_revert(protocol, deployer, lp, attacker):
    ch, cfg, orders = protocol.clearinghouse, protocol.configurator, protocol.orders
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, 1_000 * WAD, sender=attacker)  # #1: no deposit, the whole pool
    cfg.set_reserve_factor(btc, 0, sender=deployer)
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    for size in (MAX_OI, -MAX_OI):  # #1b: the core's bound on a side
        with ape.reverts("orders: insufficient margin"):
            place(ch, btc, size, sender=attacker)
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, 1_000 * WAD, 0, 1, sender=attacker)  # subaccount 1: subaccount 0's margin is not its
    assert int(orders.open_orders(account_id(attacker))) == 0 and held(protocol, btc) == (0, 0)


def test_refused__the_margin_cannot_leave_while_its_order_is_open(protocol, deployer, lp, attacker, keeper):
    ch, engine = protocol.clearinghouse, protocol.liquidation_engine
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, attacker, "WETH", 100 * WAD)
    place(ch, eth, 50 * WAD, NEVER_BUY, sender=attacker)
    with ape.reverts("clearinghouse: order pending"):
        ch.withdraw(protocol.tokens["WETH"], WAD, 0, sender=attacker)
    with ape.reverts("liquidation: account healthy"):  # no debt: no collateral sale to itself either
        engine.liquidate_collateral(account, protocol.tokens["WETH"], WAD, sender=keeper)


def test_refused__a_reduction_a_liquidation_would_turn_into_an_open_is_cancelled(protocol, deployer, lp, trader, keeper):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, trader, "USDC", 7_000 * USDC)
    trade_now(ch, eth, 50 * WAD, 0, 0, sender=trader, keeper=keeper)
    place(ch, eth, -45 * WAD, sender=trader)  # a reduction: no margin asked, nothing held
    assert held(protocol, eth) == (0, 0)
    publish_usd(protocol, "WETH", round(price_for_health(protocol, account, "ETH-PERP", 0.9), 2), deployer)
    protocol.liquidation_engine.liquidate(account, eth, 10**30, sender=keeper)
    assert 0 < int(ch.positions(account, eth).size) < 45 * WAD  # the sell would now open a short
    receipt = fill_now(ch, account, eth, keeper=keeper)
    assert cancelled(receipt, orders).reason == "orders: position changed"
    assert held(protocol, eth) == (0, 0)
