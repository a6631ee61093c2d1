"""Second attacker's review of the open-interest reserve (final version: pool-wide, value-based,
checked at commit): Orders._hold, LiquidityPool.apply_hold / held / _book / reserve /
_reserve_headroom, the RESERVE_OFF sentinel and marginsim.risk's mirror. Pools are $2M
(`fund_liquidity`), ETH at $2,000, BTC at $30,000, default markets (factor 1). Run with `-s` to
see the figures.

#1 (medium), fixed at commit, residual documented: a halted (or stale) feed in ANY market with
open interest made every risk-adding fill in every other market revert with the router's reason
(the pool prices every market in one pass); the order stayed, blocked its owner's margin and was
cancelled at its own market's next round with its fee forfeited. The reserve is now checked at
commit only: such a commit reverts with the router's reason before anything is escrowed (no
order stored, no fee taken), an order placed before the halt fills (a fill no longer values the
pool), and reductions (and orders that do not grow their market's larger side) commit and fill.
Residual, by design (the reserve fails closed): while a market with open interest has no valid
price, risk-adding commits that grow a larger side in any market whose reserve is on revert
protocol-wide, as LP withdrawals do (they price every market too). One wei of open interest
(~$0 of fees) keeps a market in the pass; the governance lever is the market's reserve factor:
set to 0, its opens commit without the pass.

#2 (medium), fixed: an order's fate was decided after its round by LP flows, which are
immediate: an order committed past the reserve waited, and once its round was public its owner
deposited into the pool and filled it (or let it lapse for the $2 fee); an LP-trader could do the
reverse (withdraw to cancel a fillable order). Now an order past the reserve is refused at its
commit, before its round is known (a deposit before the commit lets it in, which reveals
nothing), and the open interest a placed order adds is held in the pool from its commit: the
need counts it, so no withdrawal after the round can take the capital it was checked against,
and the fill does not check the reserve again.

#3 (low-medium), fixed: while the pool was over its reserve, an order that grows the smaller side
of a market (it leaves the need unchanged and cuts the pool's skew exposure) was cancelled too;
Orders now skips the check (at commit) when the market's larger side, held orders included,
does not grow (as GMX checks only the side it increases).

#4 (low), open: gas. Each market with open interest costs gas in the reserve pass of every
commit that grows a larger side (now paid by the trader at the commit, no longer by the keeper
at the fill: `execute_order` makes no pass), and the pool makes two passes per LP withdrawal. A
griefer's 1-wei positions in 14 markets ($0.000014 of fees) took an ETH open's commit from
369,209 to 922,769 gas (~39.5k per market) and an LP withdrawal from 352,388 to 1,037,908, for
good (nobody can close them but their owner); the fill stays at 145,245.

#5 (low), fixed: marginsim.risk.largest_reserved_side returned -1 (no side) for a market whose
reserve is off when the pool is over its reserve elsewhere, where Orders takes any size.

Refused: a fill moves the pool's value by its fee only (no skew premium to harvest with a
withdrawal in the same transaction); a fresh deposit that lets an order fill cannot be swapped
for the depositor's older free shares; the factor's off/on round trip.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, place, redeem_now, trade_now, withdraw_now
from marginsim.protocol import MarketConfig, account_id
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd
from tests.e2e.test_review_reserve import COOLDOWN, FEE, POOL_USD, S2W, price_of, reserve, usd


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def largest_side(protocol, market: int, price: int) -> int:
    value, need_others = reserve(protocol, market, 0)
    return risk.largest_reserved_side(value, need_others, int(protocol.pool.reserve_factor(market)), price)


def fees_paid(receipt, ch) -> int:
    return sum(int(e.fee) for e in receipt.events.filter(ch.Trade))


def cancelled_reason(receipt, orders) -> str | None:
    cancelled = receipt.events.filter(orders.OrderCancelled)
    return cancelled[0].reason if cancelled else None


# ---------------------------------------------------------------- #1: a halted feed anywhere


def test_fixed__a_halted_feed_anywhere_refuses_risk_adding_commits_not_fills(
    protocol, deployer, lp, trader, other_trader, attacker, keeper
):
    ch, orders, pool, cfg, usdc = (
        protocol.clearinghouse,
        protocol.orders,
        protocol.pool,
        protocol.configurator,
        protocol.settlement,
    )
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    # the griefer: one wei of BTC open interest on $10 of margin
    deposit(protocol, attacker, "USDC", 10 * USDC)
    dust_fee = fees_paid(trade_now(ch, btc, 1, 0, 0, sender=attacker, keeper=attacker), ch)
    assert int(ch.market_state(btc).long_oi) == 1 and dust_fee == 1  # 0.000001 USDC
    account = deposit(protocol, trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, 20 * WAD, 0, 0, sender=trader)
    # an ETH open placed before the halt: checked (and held) at its commit
    place(ch, eth, 10 * WAD, sender=trader)
    assert tuple(int(v) for v in pool.held(eth)) == (10 * WAD, 0)

    # BTC prints +25% in one round: the router halts it (max_deviation 20%) for at least the
    # confirmation delay (an hour by default, up to a day) unless the owner clears it
    publish_usd(protocol, "WBTC", 37_500, deployer)
    with ape.reverts("oracle: circuit breaker"):
        protocol.oracle.price(protocol.market_asset("BTC-PERP"))

    # the order placed before the halt fills at its round: the fill does not value the pool
    receipt = fill_now(ch, account, eth, keeper=keeper)
    assert cancelled_reason(receipt, orders) is None and len(receipt.events.filter(orders.OrderFilled)) == 1
    assert int(ch.positions(account, eth).size) == 30 * WAD
    assert tuple(int(v) for v in pool.held(eth)) == (0, 0)

    # a new ETH open is refused at its commit with BTC's reason: no order stored, no fee taken
    usdc.mint(trader, FEE, sender=trader)
    usdc.approve(orders, FEE, sender=trader)
    wallet, escrow, insurance = int(usdc.balanceOf(trader)), int(usdc.balanceOf(orders)), int(ch.insurance_balance())
    with ape.reverts("oracle: circuit breaker"):
        orders.commit_order(eth, 10 * WAD, 0, 0, sender=trader)
    assert int(orders.order(account, eth).executable_at) == 0
    assert int(usdc.balanceOf(trader)) == wallet and int(usdc.balanceOf(orders)) == escrow
    assert int(ch.insurance_balance()) == insurance
    # nothing pending: the trader's margin is free
    ch.withdraw(usdc, USDC, 0, sender=trader)

    # a reduction holds nothing and skips the pass: it commits and fills during the halt
    place(ch, eth, -5 * WAD, sender=trader)
    receipt = fill_now(ch, account, eth, keeper=keeper)
    assert cancelled_reason(receipt, orders) is None
    assert int(ch.positions(account, eth).size) == 25 * WAD
    # so does an open that does not grow ETH's larger side (a short against the 25 ETH of longs)
    other = deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    place(ch, eth, -10 * WAD, sender=other_trader)
    fill_now(ch, other, eth, keeper=keeper)
    assert int(ch.positions(other, eth).size) == -10 * WAD

    # residual, by design (fails closed): an open that grows a larger side with the reserve on
    # reverts protocol-wide, as LP withdrawals do (every pool view prices BTC)
    with ape.reverts("oracle: circuit breaker"):
        place(ch, eth, -20 * WAD, 1, sender=other_trader)  # shorts 10 -> 30: past the longs' 25
    assert int(pool.withdrawable(lp)) == 0  # reads 0 rather than reverting (review v3, L3)
    # governance's lever: ETH's reserve off, ETH opens commit (and fill) without the pass
    cfg.set_reserve_factor(eth, 0, sender=deployer)
    trade_now(ch, eth, 10 * WAD, 0, 0, sender=trader)
    assert int(ch.positions(account, eth).size) == 35 * WAD
    assert int(orders.order(account, eth).executable_at) == 0
    print(
        f"\n#1 griefer's cost: {dust_fee} token unit of fee, 1 wei of BTC; BTC halted: an ETH order "
        f"placed before the halt filled (no pool pass at the fill); a new ETH open reverted "
        f"'oracle: circuit breaker' at its commit (wallet ${usd(wallet)} and insurance ${usd(insurance)} "
        f"unchanged, no order); a 5 ETH reduction and a 10 ETH short (smaller side) committed and filled; "
        f"residual: a short growing the larger side and maxWithdraw revert; ETH factor 0: a 10 ETH open filled"
    )


# ---------------------------------------------------------------- #2: LP flows after the round


def test_fixed__an_order_past_the_reserve_is_refused_at_its_commit(protocol, deployer, lp, attacker, keeper):
    """The attacker's 1,100 ETH long ($2.2M) against a $2M pool: refused at the commit, before
    its round is known, so there is no order to fill with a deposit after the round. A deposit
    made before the commit lets it in (the round is not yet known: no option)."""
    ch, orders, pool = protocol.clearinghouse, protocol.orders, protocol.pool
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    account = deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    size = 1_100 * WAD
    value, need = reserve(protocol, eth, size)
    assert need > value
    with ape.reverts("orders: open interest reserve"):
        place(ch, eth, size, sender=attacker)
    assert int(orders.order(account, eth).executable_at) == 0
    assert tuple(int(v) for v in pool.held(eth)) == (0, 0)

    top_up = (need - value) // S2W + 1_000 * USDC
    fund_liquidity(protocol, attacker, deployer, top_up // USDC, 0)  # before the commit
    place(ch, eth, size, sender=attacker)
    assert tuple(int(v) for v in pool.held(eth)) == (size, 0)
    receipt = fill_now(ch, account, eth, keeper=keeper)
    assert cancelled_reason(receipt, orders) is None and int(ch.positions(account, eth).size) == size
    print(
        f"\n#2a value ${value / WAD:,.2f} < need ${need / WAD:,.2f} with the 1,100 ETH long: refused "
        f"'orders: open interest reserve' at its commit (no order, nothing held); after a "
        f"${usd(top_up)} deposit before the commit it committed and filled"
    )


def test_fixed__an_lp_trader_cannot_withdraw_the_capital_a_placed_order_holds(protocol, deployer, lp, attacker, keeper):
    """The reverse lever: the order fits; after its round the LP-trader tries to withdraw the
    amount that cancelled it under the old rules. The hold counts in the need from the commit:
    refused, and the order fills."""
    ch, orders, pool = protocol.clearinghouse, protocol.orders, protocol.pool
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    fund_liquidity(protocol, attacker, deployer, 300_000, 0)
    ape.chain.pending_timestamp += COOLDOWN + 1
    account = deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    size = 1_100 * WAD  # $2.2M against $2.3M: fits
    free_before = int(pool.withdrawable(attacker))
    place(ch, eth, size, sender=attacker)
    assert tuple(int(v) for v in pool.held(eth)) == (size, 0)
    ape.chain.pending_timestamp += int(orders.settlement_delay())
    publish_usd(protocol, "WETH", 2_000, deployer)  # the order's round: public from here on
    value, need = reserve(protocol)  # the hold is counted
    assert reserve(protocol, eth, size) == (value, need)  # as the old fill-time check read it
    assert need <= value
    out = (value - need) // S2W + 1  # cancelled the order under the old rules
    most = int(pool.withdrawable(attacker))
    assert most == (value - need) // S2W < out
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, out, attacker, attacker, sender=attacker)
    withdraw_now(pool, most, attacker, attacker, sender=attacker)  # all it may take: short of the hold
    receipt = orders.execute_order(account, eth, sender=keeper)
    assert len(receipt.events.filter(orders.OrderFilled)) == 1 and cancelled_reason(receipt, orders) is None
    assert int(ch.positions(account, eth).size) == size
    print(
        f"\n#2b after the round: value ${value / WAD:,.2f}, need ${need / WAD:,.2f} (hold counted); "
        f"maxWithdraw ${usd(free_before)} before the commit -> ${usd(most)}; a ${out / USDC:,.6f} withdrawal "
        f"(old rules: cancels the order) reverted 'pool: open interest reserve'; ${usd(most)} withdrawn, "
        f"then the $2.2M order filled"
    )


# ---------------------------------------------------------------- #3 and #5: the pool over its reserve


def _pool_over_its_reserve(protocol, deployer, lp, attacker) -> int:
    """The attacker's ETH long at the reserve, then ETH +10%: need > value. Returns the long."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    trade_now(ch, eth, largest_side(protocol, eth, price_of(protocol, "ETH-PERP")), 0, 0, sender=attacker)
    publish_usd(protocol, "WETH", 2_200, deployer)
    value, need = reserve(protocol)
    assert need > value
    return int(ch.market_state(eth).long_oi)


def test_fixed__over_the_reserve_an_order_on_the_smaller_side_fills(protocol, deployer, lp, attacker, other_trader):
    ch = protocol.clearinghouse
    eth = protocol.markets["ETH-PERP"]
    longs = _pool_over_its_reserve(protocol, deployer, lp, attacker)
    value, need = reserve(protocol)
    assert need > value
    short = 20 * WAD
    # the short leaves ETH's larger side (the long) where it is: the need does not move
    held = tuple(int(v) for v in protocol.pool.held(eth))
    assert held == (0, 0) and risk.larger_side_after(longs, 0, held, 0, -short) == (longs, longs)
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, -short, 0, 0, sender=other_trader)
    assert int(ch.positions(account_id(other_trader), eth).size) == -short
    assert reserve(protocol)[1] == need  # and the need did not rise
    print(f"\n#3 pool value ${value / WAD:,.2f} < need ${need / WAD:,.2f}; a 20 ETH short fills (skew cut)")
    deposit(protocol, other_trader, "USDC", 10_000 * USDC, 1)  # subaccount 1's margin for 1 ETH
    with ape.reverts("orders: open interest reserve"):  # the long side still may not grow: refused at commit
        place(ch, eth, WAD, 0, 1, sender=other_trader)


def test_fixed__mirror_allows_any_side_where_the_reserve_is_off(protocol, deployer, lp, attacker, other_trader):
    ch, cfg = protocol.clearinghouse, protocol.configurator
    btc = protocol.markets["BTC-PERP"]
    _pool_over_its_reserve(protocol, deployer, lp, attacker)
    cfg.set_reserve_factor(btc, 0, sender=deployer)
    value, need_others = reserve(protocol, btc, 0)
    assert need_others > value
    assert risk.largest_reserved_side(value, need_others, 0, price_of(protocol, "BTC-PERP")) == 2**96 - 1
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    trade_now(ch, btc, 5 * WAD, 0, 0, sender=other_trader)  # $150k: Orders skips the check
    assert int(ch.positions(account_id(other_trader), btc).size) == 5 * WAD


# ---------------------------------------------------------------- #4: gas


def test_finding__dust_open_interest_in_every_market_taxes_every_open(protocol, deployer, lp, trader, attacker, keeper):
    """The reserve's pass is made at the commit now: measured on the commit's receipt (a trade
    is commit + fill; the fill makes no pass)."""
    ch, pool, cfg = protocol.clearinghouse, protocol.pool, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    weth = protocol.market_asset("ETH-PERP")
    while int(ch.market_count()) < 15:
        cfg.list_market(MarketConfig(f"ETH{int(ch.market_count())}-PERP", "WETH").params(weth.address), sender=deployer)
    account = deposit(protocol, trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, WAD, 0, 0, sender=trader, keeper=keeper)  # ETH's state and the keeper's balance written once
    ape.chain.pending_timestamp += COOLDOWN + 1

    def open_eth() -> tuple[int, int]:
        """(commit gas, fill gas) of a 1 ETH open."""
        commit_gas = int(place(ch, eth, WAD, sender=trader).gas_used)
        return commit_gas, int(fill_now(ch, account, eth, keeper=keeper).gas_used)

    base_commit, base_fill = open_eth()
    base_withdraw = int(withdraw_now(pool, USDC, lp, lp, sender=lp).gas_used)

    deposit(protocol, attacker, "USDC", 100 * USDC)
    cost = 0
    for m in range(2, 16):
        cost += fees_paid(trade_now(ch, m, 1, 0, 0, sender=attacker, keeper=attacker), ch)
    taxed_commit, taxed_fill = open_eth()
    taxed_withdraw = int(withdraw_now(pool, USDC, lp, lp, sender=lp).gas_used)
    per_market = (taxed_commit - base_commit) // 14
    print(
        f"\n#4 griefer: 14 dust positions, fees {cost} token units (${cost / USDC:.6f}); an ETH open's "
        f"commit {base_commit:,} -> {taxed_commit:,} gas ({per_market:,} per market), its fill "
        f"{base_fill:,} -> {taxed_fill:,}; an LP withdrawal {base_withdraw:,} -> {taxed_withdraw:,}"
    )
    assert cost == 14
    assert taxed_commit - base_commit > 400_000
    assert abs(taxed_fill - base_fill) < 5_000  # the fill makes no pass
    assert taxed_withdraw - base_withdraw > 400_000


# ---------------------------------------------------------------- refused


def test_refused__a_fill_moves_the_value_by_its_fee_only(protocol, deployer, lp, attacker):
    """A large open: the traders' side nets its entry premium against the exit premium the value
    charges, so the value rises by the fee only; nothing for a withdrawal to take in between."""
    ch = protocol.clearinghouse
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    trade_now(ch, eth, WAD, 0, 0, sender=attacker)
    before, _ = reserve(protocol)
    receipt = trade_now(ch, eth, 900 * WAD, 0, 0, sender=attacker)  # premium ~$810
    after, _ = reserve(protocol)
    fee = fees_paid(receipt, ch)
    # funding for the settlement delay at the old skew is the only other move (traders pay it)
    assert 0 <= after - before - fee * S2W < WAD


def test_refused__a_fresh_deposit_that_lets_an_order_fill_cannot_be_swapped_for_older_shares(protocol, deployer, lp, attacker):
    """The attacker holds $300k of free shares; it deposits $300k more (locked) so that its $2.2M
    long fills on a $2M + $600k pool, then tries to take the older $300k out: refused."""
    ch, pool = protocol.clearinghouse, protocol.pool
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    fund_liquidity(protocol, attacker, deployer, 300_000, 0)
    ape.chain.pending_timestamp += COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_000, deployer)
    free = int(pool.balanceOf(attacker))
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    fund_liquidity(protocol, attacker, deployer, 300_000, 0)
    trade_now(ch, eth, 1_250 * WAD, 0, 0, sender=attacker)  # $2.5M of the $2.6M
    assert int(pool.redeemable(attacker)) < free // 2
    with ape.reverts("pool: open interest reserve"):
        redeem_now(pool, free, attacker, attacker, sender=attacker)


def test_refused__reserve_off_and_back_on_round_trips(protocol, deployer):
    pool, cfg = protocol.pool, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    assert int(pool.reserve_factor(eth)) == WAD
    for factor in (0, WAD // 2, 0, 100 * WAD, 0, WAD):
        cfg.set_reserve_factor(eth, factor, sender=deployer)
        assert int(pool.reserve_factor(eth)) == factor
    with ape.reverts("configurator: bad reserve factor"):
        cfg.set_reserve_factor(eth, 100 * WAD + 1, sender=deployer)
