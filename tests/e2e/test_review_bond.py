"""Attacker's review of the order bond (contracts/Orders.vy: commit_order, execute_order,
cancel_order, _release, _forfeit, _delete, _bond; Configurator.set_order_bond) and of the
stricter `_margin_for_orders` (a flip to a smaller or equal size needs initial margin as the
account stands). Pools are $2M unless said (`fund_liquidity`), ETH at $2,000, BTC at $30,000,
default markets (factor 1, 1 h heartbeat, settlement delay 60 s, expiry a day, fee $2, bond
0.05%). Run with `-s` to see the figures.

FINDINGS

#1 (medium), fixed: the bond was priced on the notional the order adds, but the pool capacity a hold takes
is that notional over the market's reserve factor. Review margin_commit #1's figure is right
only at factor 1: 1,000 ETH holds the whole $2M pool for a $1,000.00 bond + $2 fee per round
(and $162,000.50 of parked margin). In a market governance has given a factor below 1 (the
Configurator's advice for a thin token: "well below 1"), the same lock is factor times cheaper:
BTC at factor 0.1 -> a 6.67 BTC ($200k) limit-1 buy holds the whole pool (LP maxWithdraw $0,
ETH opens refused "orders: open interest reserve") for a $100.00 bond + $2 per round and
$12,104.45 of margin (13x less): $2,448 a day at an hourly round instead of $24,048. Fix: bond the need
the hold adds, not the notional: rate * notional * WAD / reserve_factor (the USD capital the
hold takes, what LiquidityPool.reserve counts), e.g. bond = rate * (need_after - need_before)
read in `_hold`, with a floor of the notional-based bond. Fixed: `_hold` returns the market's
reserve factor when the order grows the larger side, and the bond is divided by it when it is
below 1 (never below the notional-based bond): the 6.67 BTC hold now escrows $1,000, as 1,000 ETH
does at factor 1.

#2 (medium-low), fixed: a third party can push someone else's order into forfeiting its bond. The commit
checks the pool-wide reserve with every hold counted, but not the market's base-unit `oi_cap`,
which only the fill checks: two orders committed against the same state can together exceed the
cap, and the keeper who fills first chooses which one is refused. $20M pool (reserve room 10,000
ETH), ETH oi_cap 7,500: a victim's 5,000 ETH long and the attacker's 2,600 ETH long both commit
(holds 7,600); at the round the attacker fills his own first and then executes the victim's:
cancelled "clearinghouse: open interest cap", the victim's $5,000 bond + $2 fee go to the
insurance fund (before the bond: $2). The attacker's own order fills, so it costs him nothing
he did not want. (By reading, not tested: the skew premium gives a keeper the same lever on a
tight limit price, filling a same-side order first.) Fix:
hold against `oi_cap` at the commit too (st.long_oi + held_longs + longs <= oi_cap, "orders:
open interest cap"), and forfeit only the fee, refunding the bond, when the refusal is not the
owner's doing (cap, pause, reduce-only, position changed by a liquidation). Fixed: `_hold` checks
the side the order grows, with every placed order's hold on it, against `oi_cap` ("orders: open
interest cap"): the attacker's 2,600 ETH commit is refused, 2,500 is placed, and both orders fill
in either order, the victim's $5,000 bond back. The Configurator keeps a new cap above the
open interest plus the holds (test_review_v2_trading.py #3), so no fill meets the cap. (A
position changed by a liquidation still forfeits: the owner's margin let it be liquidated.)

#3 (low), fixed: emergency controls confiscate bonds. A guardian's `pause` or `set_reduce_only` turns
every pending risk-adding order into a forfeit at its round ("clearinghouse: paused" / "reduce
only"): a 100 ETH order loses $100 + $2, a 3 BTC order $45 + $2, to the insurance fund. The
README's procedure for a reserve-factor cut (set reduce-only first so placed orders are
cancelled) now costs each pending trader 0.05% of its notional. Fix: as #2, refund the bond on
refusals the owner did not cause (at least "paused" and "reduce only"). Fixed: a fill refused
"clearinghouse: paused" or "clearinghouse: reduce only" cancels with the fee and bond refunded
to the owner (OrderCancelled's fee_to the owner), as an expiry does; the insurance fund takes
nothing. (An order that adds risk cannot be placed under those switches: test_review_v2_trading.py
#1.)

#4 (low) No cap on what the commit escrows. `commit_order` pulls the bond at the rate in force
when it executes; traders approve Orders for max (marginsim.orders.place does). A
`set_order_bond(1%)` landing before a trader's commit takes $2,000 + $2 for a 100 ETH order
where the trader saw $100 + $2 (20x). Fix: a `max_escrow` argument to commit_order (revert
"orders: bond above max"), or a timelock on the rate.

#5 (info) The fill now depends on the owner receiving a transfer. A fill pushes the bond to
`account >> 96`; a settlement token that refuses that transfer (USDC/USDT blacklisting: the
issuer controls it, not the attacker; modelled with ReentrantERC20 failing the second transfer
of the fill) makes the whole `execute_order` revert instead of filling: the order cannot fill,
its round passes, and it is then forfeited, $10 bond + $2 fee, to the insurance fund. (Its expiry
refund is a push to the owner too, so a blocked owner's expired order cannot be cleared until a
round passes; by reading the code, not tested.) With the deployed mock token nothing can refuse the push. Fix: credit the bond to
the account's settlement balance in the Clearinghouse (or a claimable mapping) instead of a
transfer to the owner.

REFUSED (tried, failed)

- Escrow accounting: over commit, flip, fill, replacement of a passed order, refusal at the
  round, expiry refund and a mid-flight rate change, Orders' token balance equals the sum of
  fee + bond of the open orders at every step and ends at 0; each order's refund or forfeit is
  the bond it escrowed (the 0.05% one after the rate went to 1%).
- Bond avoidance: a 1-wei order escrows 1 unit (ceil); two 5 ETH subaccount orders escrow what one
  10 ETH order does; a flip bonds exactly its new side; the bond is read from the guarded
  oracle in the commit's own transaction (nothing between price and bond), and a later round
  (+2.5%) does not change what the fill refunds.
- Bond-free or margin-free flip: a flip to a smaller opposite size of an account below initial
  margin is refused "orders: insufficient margin" (the empty list now checks the account as it
  stands); its plain close still commits, with no bond and no hold.
- A keeper cannot choose cancel over fill: before or at the round cancel_order reverts "orders:
  not expired", the owner's replacement "orders: order pending"; execute_order at every gas
  limit from 60,000 to the full fill + 60,000, every 2,500, either reverts or fills, never
  cancels the fillable order (no gas-starved forfeit; on a mock feed without phase bits, so
  OracleRouter.round_price's failed-getRoundData-counts-as-passed branch of a proxy is not
  reached: there the 63/64 rule leaves that read far more gas than it needs).
- Reentrancy through a hooked settlement token (ReentrantERC20) from the commit's pull and from
  the forfeit's transferFrom inside Clearinghouse.fund_insurance: execute_order, commit_order
  and cancel_order all revert bare (Orders' lock); the escrow balances, and the other order
  still fills afterwards.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, market_feed, place, redate, trade_now
from marginsim.protocol import account_id
from tests.e2e.attacks import hooked_settlement_protocol, price_for_health
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd
from tests.e2e.test_review_margin_commit import NEVER_BUY, fresh_pool, shortfall
from tests.e2e.test_review_reserve import FEE, POOL_USD, S2W, price_of, usd
from tests.e2e.test_review_reserve_3 import cancelled, filled, held, largest_side

RATE = 5 * 10**14  # the default bond, 0.05%
MAX_UINT = 2**256 - 1


@pytest.fixture(scope="module")
def evil(project, deployer, lp):
    """A protocol whose settlement token is ReentrantERC20 (hooks on every transfer)."""
    return hooked_settlement_protocol(project, deployer, lp, POOL_USD)


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, evil, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def escrowed(p, pairs) -> int:
    """What Orders should hold: fee + bond of every open order among (account, market) pairs."""
    total = 0
    for account, market in pairs:
        order = p.orders.order(account, market)
        if int(order.executable_at) != 0:
            total += int(order.fee)
        total += int(p.orders.bonds(account, market))
    return total


def assert_escrow(p, pairs) -> None:
    assert int(p.settlement.balanceOf(p.orders)) == escrowed(p, pairs)


def evil_fresh(evil, deployer):
    """The hooked-token protocol with both feeds fresh: (token, protocol, clearinghouse, orders, ETH-PERP)."""
    token, p = evil
    publish_usd(p, "WETH", 2_000, deployer)
    publish_usd(p, "WBTC", 30_000, deployer)
    return token, p, p.clearinghouse, p.orders, p.markets["ETH-PERP"]


def insurance(p) -> int:
    return int(p.clearinghouse.insurance_balance())


# ---------------------------------------------------------------- #1: the bond ignores the reserve factor


def test_fixed__a_low_reserve_factor_market_costs_the_same_bond_to_hold_the_whole_pool(
    protocol, deployer, lp, attacker, other_trader
):
    """Was: a tenth of the bond for the same hold at factor 0.1. Now the bond is divided by the
    factor (the capital the hold takes): the whole pool costs the same bond in either market; the
    margin is still the position's (13x less here, open in part as margin_commit #1)."""
    ch, orders, pool, cfg = protocol.clearinghouse, protocol.orders, protocol.pool, protocol.configurator
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = account_id(attacker)

    # the claim of review margin_commit #1, at factor 1: 1,000 ETH, a $1,000 bond and $162k of margin
    p_eth = price_of(protocol, "ETH-PERP")
    size_eth = largest_side(protocol, eth, p_eth)
    bond_eth = risk.order_bond(size_eth, p_eth, RATE, S2W)
    margin_eth = shortfall(protocol, account, [(eth, size_eth)])
    assert abs(bond_eth - 1_000 * USDC) <= USDC

    # governance gives BTC a factor of 0.1 (a "thin" market): the same pool, a tenth of the notional
    cfg.set_reserve_factor(btc, 10**17, sender=deployer)
    p_btc = price_of(protocol, "BTC-PERP")
    size_btc = largest_side(protocol, btc, p_btc)
    margin_btc = shortfall(protocol, account, [(btc, size_btc)])
    deposit(protocol, attacker, "USDC", margin_btc)
    place(ch, btc, size_btc, NEVER_BUY, sender=attacker)
    bond_btc = int(orders.bonds(account, btc))
    assert bond_btc == risk.order_bond(size_btc, p_btc, RATE, S2W, 10**17)  # over the factor
    assert abs(bond_btc - bond_eth) <= USDC  # the same bond for the same capacity
    assert margin_btc * 9 < margin_eth  # the margin is still the position's
    assert held(protocol, btc) == (size_btc, 0)
    assert int(pool.withdrawable(lp)) <= USDC  # every LP held in
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    with ape.reverts("orders: open interest reserve"):
        place(ch, eth, WAD, sender=other_trader)  # and every open that grows a larger side refused

    before = insurance(protocol)
    receipt = fill_now(ch, account, btc, keeper=attacker)
    assert cancelled(receipt, orders).reason == "clearinghouse: price limit"
    assert insurance(protocol) == before + FEE + bond_btc  # all it paid for the round
    print(
        f"\n#1 whole-pool hold: ETH factor 1 {size_eth / WAD:,.2f} ETH bond ${usd(bond_eth)} margin ${usd(margin_eth)}; "
        f"BTC factor 0.1 {size_btc / WAD:,.4f} BTC (${size_btc * p_btc / WAD / WAD:,.0f}) bond ${usd(bond_btc)} "
        f"margin ${usd(margin_btc)}: ${usd((FEE + bond_btc) * 24)} a day vs ${usd((FEE + bond_eth) * 24)}"
    )


# ---------------------------------------------------------------- #2: an oi_cap race steers the victim's bond


def test_fixed__the_cap_is_held_at_the_commit_so_no_fill_order_makes_the_victims_order_fail(
    protocol, deployer, lp, trader, attacker
):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 20_000_000, 0)  # reserve room 10,000 ETH, above the 7,500 cap
    publish_usd(protocol, "WETH", 2_000, deployer)
    assert int(ch.markets(eth).oi_cap) == 7_500 * WAD
    victim = deposit(protocol, trader, "USDC", 5_000_000 * USDC)
    mine = deposit(protocol, attacker, "USDC", 3_000_000 * USDC)
    place(ch, eth, 5_000 * WAD, sender=trader)
    with ape.reverts("orders: open interest cap"):  # 5,000 held + 2,600 > 7,500: refused, nothing escrowed
        place(ch, eth, 2_600 * WAD, sender=attacker)
    place(ch, eth, 2_500 * WAD, sender=attacker)  # the most the cap has room for with the victim's hold
    assert held(protocol, eth) == (7_500 * WAD, 0)
    bond = int(orders.bonds(victim, eth))
    assert bond == 5_000 * USDC
    wallet, before = int(protocol.settlement.balanceOf(trader)), insurance(protocol)

    assert filled(fill_now(ch, mine, eth, keeper=attacker), orders)  # the attacker's first, at the round
    receipt = orders.execute_order(victim, eth, sender=attacker)  # then the victim's, same round: it fills
    assert filled(receipt, orders)
    assert insurance(protocol) == before
    assert int(protocol.settlement.balanceOf(trader)) == wallet + bond  # the bond back
    assert int(ch.positions(victim, eth).size) == 5_000 * WAD and int(ch.positions(mine, eth).size) == 2_500 * WAD
    print(f"\n#2 fixed: the victim's 5,000 ETH order fills after the attacker's; its ${usd(bond)} bond comes back")


# ---------------------------------------------------------------- #3: pause / reduce-only forfeit bonds


def test_fixed__a_pause_or_reduce_only_refunds_every_pending_orders_fee_and_bond(
    protocol, deployer, lp, trader, other_trader, keeper
):
    ch, orders, cfg, usdc = protocol.clearinghouse, protocol.orders, protocol.configurator, protocol.settlement
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    t = deposit(protocol, trader, "USDC", 100_000 * USDC)
    o = deposit(protocol, other_trader, "USDC", 100_000 * USDC)

    place(ch, eth, 100 * WAD, sender=trader)
    bond_t = int(orders.bonds(t, eth))
    assert bond_t == 100 * USDC
    cfg.pause(sender=deployer)  # the guardian's (or owner's) emergency stop
    before, wallet = insurance(protocol), int(usdc.balanceOf(trader))
    event = cancelled(fill_now(ch, t, eth, keeper=keeper), orders)
    assert (event.reason, event.fee_to) == ("clearinghouse: paused", trader.address)
    assert insurance(protocol) == before
    assert int(usdc.balanceOf(trader)) == wallet + FEE + bond_t
    cfg.unpause(sender=deployer)

    place(ch, btc, 3 * WAD, sender=other_trader)
    bond_o = int(orders.bonds(o, btc))
    assert bond_o == 45 * USDC
    cfg.set_reduce_only(btc, True, sender=deployer)  # the README's first step of a factor cut
    before, wallet = insurance(protocol), int(usdc.balanceOf(other_trader))
    event = cancelled(fill_now(ch, o, btc, keeper=keeper), orders)
    assert (event.reason, event.fee_to) == ("clearinghouse: reduce only", other_trader.address)
    assert insurance(protocol) == before
    assert int(usdc.balanceOf(other_trader)) == wallet + FEE + bond_o
    assert_escrow(protocol, [(t, eth), (o, btc)])
    print(f"\n#3 fixed: pause refunds a 100 ETH order's ${usd(FEE + bond_t)}; reduce-only a 3 BTC order's ${usd(FEE + bond_o)}")


# ---------------------------------------------------------------- #4: no cap on the escrow


def test_finding__a_rate_raise_landing_before_a_commit_takes_twenty_times_the_bond(protocol, deployer, lp, trader):
    orders, usdc, cfg = protocol.orders, protocol.settlement, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, trader, "USDC", 100_000 * USDC)
    usdc.mint(trader, 10_000 * USDC, sender=trader)
    usdc.approve(orders, MAX_UINT, sender=trader)
    seen = risk.order_bond(100 * WAD, price_of(protocol, "ETH-PERP"), RATE, S2W)
    assert seen == 100 * USDC  # what the trader expects when it signs
    cfg.set_order_bond(10**16, sender=deployer)  # 1%, the bound, lands first
    wallet = int(usdc.balanceOf(trader))
    orders.commit_order(eth, 100 * WAD, 0, 0, sender=trader)  # no argument bounds what is pulled
    taken = wallet - int(usdc.balanceOf(trader))
    assert taken == FEE + 20 * seen == FEE + int(orders.bonds(account, eth))
    print(f"\n#4 a 100 ETH commit expected ${usd(FEE + seen)} and paid ${usd(taken)}")


# ---------------------------------------------------------------- #5: the refund push


def test_finding__a_token_refusing_the_owners_refund_reverts_the_fill_and_the_bond_is_later_forfeited(
    evil, chain, deployer, trader, keeper
):
    token, p, ch, orders, eth = evil_fresh(evil, deployer)
    account = deposit(p, trader, "USDC", 100_000 * USDC)
    place(ch, eth, 10 * WAD, sender=trader)
    bond = int(orders.bonds(account, eth))
    assert bond == 10 * USDC
    # the token refuses the fill's second transfer (the bond's, to the owner), as a blacklist would:
    # its hook spends a 1-unit allowance the keeper gave it, present for the first transfer only
    token.mint(keeper, 1, sender=keeper)
    token.approve(token, 1, sender=keeper)
    token.set_calls([(token.address, token.transferFrom.encode_input(keeper, keeper, 1), False)], True, True, sender=deployer)
    chain.pending_timestamp += int(orders.settlement_delay())
    redate(market_feed(ch, eth))
    with ape.reverts("erc20: insufficient allowance"):
        orders.execute_order(account, eth, sender=keeper)  # the whole fill reverts, not cancelled
    assert int(orders.order(account, eth).executable_at) != 0
    token.set_calls([], False, False, sender=deployer)
    publish_usd(p, "WETH", 2_000, deployer)  # its round passes
    before = insurance(p)
    receipt = orders.cancel_order(account, eth, sender=keeper)
    assert cancelled(receipt, orders).reason == "orders: round passed"
    assert insurance(p) == before + FEE + bond and int(ch.positions(account, eth).size) == 0
    assert_escrow(p, [(account, eth)])
    print(f"\n#5 a refused refund transfer: the fill reverts, later forfeited ${usd(FEE + bond)}")


# ---------------------------------------------------------------- refused


def test_refused__escrow_equals_open_fees_and_bonds_through_every_path(
    protocol, deployer, lp, trader, other_trader, keeper, attacker
):
    ch, orders, usdc, cfg = protocol.clearinghouse, protocol.orders, protocol.settlement, protocol.configurator
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fresh_pool(protocol, deployer, lp)
    t = deposit(protocol, trader, "USDC", 200_000 * USDC)
    o = deposit(protocol, other_trader, "USDC", 200_000 * USDC)
    pairs = [(t, eth), (t, btc), (o, eth), (o, btc)]
    assert_escrow(protocol, pairs)

    place(ch, eth, 10 * WAD, sender=trader)
    place(ch, btc, WAD, sender=other_trader)
    assert (int(orders.bonds(t, eth)), int(orders.bonds(o, btc))) == (10 * USDC, 15 * USDC)
    assert_escrow(protocol, pairs)

    cfg.set_order_bond(10**16, sender=deployer)  # governance mid-flight: placed orders keep theirs
    assert (int(orders.bonds(t, eth)), int(orders.bonds(o, btc))) == (10 * USDC, 15 * USDC)
    wallet = int(usdc.balanceOf(trader))
    assert filled(fill_now(ch, t, eth, keeper=keeper), orders)
    assert int(usdc.balanceOf(trader)) == wallet + 10 * USDC  # the bond it escrowed, not 1%
    assert_escrow(protocol, pairs)

    place(ch, eth, -25 * WAD, sender=trader)  # a flip: bonds only its 15 ETH short, at 1%
    flip_bond = int(orders.bonds(t, eth))
    assert flip_bond == risk.order_bond(15 * WAD, price_of(protocol, "ETH-PERP"), 10**16, S2W) == 300 * USDC
    assert_escrow(protocol, pairs)

    ape.chain.pending_timestamp += 61
    publish_usd(protocol, "WETH", 2_000, deployer)  # its round ...
    publish_usd(protocol, "WETH", 2_000, deployer)  # ... passed
    before = insurance(protocol)
    place(ch, eth, 5 * WAD, NEVER_BUY, sender=trader)  # the replacement forfeits the passed flip
    assert insurance(protocol) == before + FEE + flip_bond
    assert_escrow(protocol, pairs)

    before, bond = insurance(protocol), int(orders.bonds(t, eth))
    assert cancelled(fill_now(ch, t, eth, keeper=keeper), orders).reason == "clearinghouse: price limit"
    assert insurance(protocol) == before + FEE + bond
    assert_escrow(protocol, pairs)

    ape.chain.pending_timestamp += 86_400 + 120  # the BTC order: no round by its expiry
    wallet = int(usdc.balanceOf(other_trader))
    with ape.reverts():
        protocol.oracle.round_price(protocol.market_asset("BTC-PERP"), int(orders.order(o, btc).executable_at))
    receipt = orders.cancel_order(o, btc, sender=attacker)  # anyone: refunded to its owner
    assert cancelled(receipt, orders).reason == "orders: expired"
    assert int(usdc.balanceOf(other_trader)) == wallet + FEE + 15 * USDC
    assert_escrow(protocol, pairs)
    assert int(usdc.balanceOf(orders)) == 0


def test_refused__no_bond_avoidance_by_rounding_splitting_flipping_or_a_later_price(protocol, deployer, lp, trader, keeper):
    ch, orders, usdc = protocol.clearinghouse, protocol.orders, protocol.settlement
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    a0 = deposit(protocol, trader, "USDC", 100_000 * USDC, 0)
    a1 = deposit(protocol, trader, "USDC", 100_000 * USDC, 1)
    a2 = deposit(protocol, trader, "USDC", 100_000 * USDC, 2)
    place(ch, eth, 1, 0, 2, sender=trader)
    assert int(orders.bonds(a2, eth)) == 1  # 1 wei of ETH: one unit, rounded up
    place(ch, eth, 5 * WAD, 0, 1, sender=trader)
    assert int(orders.bonds(a1, eth)) == 5 * USDC  # split in two: 5 + 5 = one 10 ETH order's 10
    trade_now(ch, eth, 10 * WAD, 0, 0, sender=trader, keeper=keeper)
    place(ch, eth, -25 * WAD, 0, 0, sender=trader)  # a flip: its 15 ETH short, bonded, held
    bond = int(orders.bonds(a0, eth))
    assert bond == 15 * USDC
    assert held(protocol, eth)[1] == 15 * WAD
    # the price moves before the fill: the refund is what was escrowed
    ape.chain.pending_timestamp += 61
    publish_usd(protocol, "WETH", 2_050, deployer)
    wallet = int(usdc.balanceOf(trader))
    assert filled(orders.execute_order(a0, eth, sender=keeper), orders)
    assert int(usdc.balanceOf(trader)) == wallet + bond
    assert int(ch.positions(a0, eth).size) == -15 * WAD


def test_refused__a_flip_to_a_smaller_size_below_initial_margin_is_refused_its_close_is_not(
    protocol, deployer, lp, attacker, keeper
):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, attacker, "USDC", 4_000 * USDC)
    trade_now(ch, eth, 10 * WAD, 0, 0, sender=attacker, keeper=keeper)
    publish_usd(protocol, "WETH", round(price_for_health(protocol, account, "ETH-PERP", 1.1), 2), deployer)
    equity, maintenance, initial = (int(v) for v in ch.margin(account))
    assert maintenance < equity < initial
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, -15 * WAD, sender=attacker)  # to a 5 ETH short: the empty list is checked
    place(ch, eth, -10 * WAD, sender=attacker)  # the close: no bond, nothing held
    assert int(orders.bonds(account, eth)) == 0 and held(protocol, eth) == (0, 0)


def test_refused__a_keeper_cannot_cancel_a_fillable_order_nor_starve_it_into_a_forfeit(
    protocol, deployer, lp, trader, keeper, chain
):
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    fresh_pool(protocol, deployer, lp)
    account = deposit(protocol, trader, "USDC", 100_000 * USDC)
    place(ch, eth, 10 * WAD, sender=trader)
    with ape.reverts("orders: not expired"):
        orders.cancel_order(account, eth, sender=keeper)  # before its round
    chain.pending_timestamp += 61
    redate(market_feed(ch, eth))
    with ape.reverts("orders: not expired"):
        orders.cancel_order(account, eth, sender=keeper)  # at its round
    with ape.reverts("orders: order pending"):
        place(ch, eth, WAD, sender=trader)

    snap = chain.snapshot()
    full = int(orders.execute_order(account, eth, sender=keeper).gas_used)
    chain.restore(snap)
    outcomes = set()
    for gas in range(60_000, full + 60_000, 2_500):
        snap = chain.snapshot()
        try:
            receipt = orders.execute_order(account, eth, sender=keeper, gas=gas)
            assert not receipt.failed
            outcomes.add("filled" if filled(receipt, orders) else cancelled(receipt, orders).reason)
        except Exception:  # noqa: BLE001 - any revert: the order stays
            outcomes.add("reverted")
        chain.restore(snap)
    assert outcomes == {"reverted", "filled"}
    print(f"\nrefused: execute_order from 60,000 to {full + 60_000:,} gas, every 2,500: {sorted(outcomes)} (full fill {full:,})")


def test_refused__reentrancy_from_the_pull_and_the_forfeit_transfer_hooks(evil, deployer, trader, other_trader, keeper):
    token, p, ch, orders, eth = evil_fresh(evil, deployer)
    mine = deposit(p, trader, "USDC", 100_000 * USDC)
    victim = deposit(p, other_trader, "USDC", 100_000 * USDC)
    pairs = [(mine, eth), (victim, eth)]
    place(ch, eth, 10 * WAD, sender=other_trader)
    calls = [
        (orders.address, orders.execute_order.encode_input(victim, eth), False),
        (orders.address, orders.commit_order.encode_input(eth, WAD, 0, 0), False),
        (orders.address, orders.cancel_order.encode_input(victim, eth), False),
    ]
    token.set_calls(calls, True, False, sender=deployer)
    receipt = place(ch, eth, 10 * WAD, NEVER_BUY, sender=trader)  # the pull's transferFrom calls back
    tries = receipt.events.filter(token.Reentry)
    assert [(t.hook, t.success, bytes(t.returndata)) for t in tries] == [("transferFrom", False, b"")] * 3
    assert_escrow(p, pairs)

    before, bond = insurance(p), int(orders.bonds(mine, eth))
    receipt = fill_now(ch, mine, eth, keeper=keeper)  # refused: the forfeit's transferFrom calls back
    assert cancelled(receipt, orders).reason == "clearinghouse: price limit"
    tries = receipt.events.filter(token.Reentry)
    assert [(t.hook, t.success, bytes(t.returndata)) for t in tries] == [("transferFrom", False, b"")] * 3
    assert insurance(p) == before + FEE + bond
    assert int(orders.order(victim, eth).executable_at) != 0  # untouched
    assert_escrow(p, pairs)
    token.set_calls([], False, False, sender=deployer)
    assert filled(orders.execute_order(victim, eth, sender=keeper), orders)  # same round, still newest
    assert_escrow(p, pairs)
    assert int(token.balanceOf(orders)) == 0
