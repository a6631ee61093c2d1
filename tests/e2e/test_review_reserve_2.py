"""Second attacker's review of the open-interest reserve (final version: pool-wide, value-based):
Orders._over_reserve, LiquidityPool._book / reserve / _reserve_headroom, the RESERVE_OFF
sentinel and marginsim.risk's mirror. Pools are $2M (`fund_liquidity`), ETH at $2,000, BTC at
$30,000, default markets (factor 1). Run with `-s` to see the figures.

#1 (medium), open: a halted (or stale) feed in ANY market with open interest makes every
risk-adding fill in every other market revert with the router's reason (the pool prices every
market in one pass). The order is not cancelled: it stays, its owner can neither replace it nor
withdraw margin, and at its own market's next round it is cancelled "orders: round passed" with
its fee forfeited. One wei of open interest (a griefer's, ~$0 of fees) keeps a market in the
pass for good; no governance control removes it.

#2 (medium), open: an order's fate is decided after its round by LP flows, which are immediate.
An order committed past the reserve waits unpaid (keepers earn nothing by cancelling it); once
its round is public its owner deposits into the pool and fills it, or lets it lapse for the $2
fee. An LP-trader can do the reverse (withdraw to cancel a fillable order). The trader holds a
free option on the round: the property delayed orders exist for is lost.

#3 (low-medium), fixed: while the pool was over its reserve, an order that grows the smaller side
of a market (it leaves the need unchanged and cuts the pool's skew exposure) was cancelled too;
Orders now skips the check when the market's larger side does not grow (as GMX checks only the
side it increases).

#4 (low), open: gas. Each market with open interest costs ~40k gas in the reserve pass of every
risk-adding fill (about 27k of it `Clearinghouse.markets(m)`: 13 cold slots for 3 fields), and
the pool makes two passes per LP withdrawal. A griefer's 1-wei positions in 14 markets ($0.000014
of fees) took an ETH open from 289,699 to 843,259 gas and an LP withdrawal from 314,015 to
999,535, for good (nobody can close them but their owner).

#5 (low), fixed: marginsim.risk.largest_reserved_side returned -1 (no side) for a market whose
reserve is off when the pool is over its reserve elsewhere, where Orders fills any size.

Refused: a fill moves the pool's value by its fee only (no skew premium to harvest with a
withdrawal in the same transaction); a fresh deposit that lets an order fill cannot be swapped
for the depositor's older free shares; the factor's off/on round trip.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, trade_now
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


def commit(protocol, owner, market: int, size: int, subaccount: int = 0) -> int:
    """Place an order (its fee minted and approved); returns the account id."""
    usdc, orders = protocol.settlement, protocol.orders
    usdc.mint(owner, FEE, sender=owner)
    usdc.approve(orders, FEE, sender=owner)
    orders.commit_order(market, size, 0, subaccount, sender=owner)
    return account_id(owner, subaccount)


def cancelled_reason(receipt, orders) -> str | None:
    cancelled = receipt.events.filter(orders.OrderCancelled)
    return cancelled[0].reason if cancelled else None


# ---------------------------------------------------------------- #1: a halted feed anywhere


def test_finding__a_halted_feed_anywhere_stalls_every_risk_adding_fill_then_forfeits_it(
    protocol, deployer, lp, trader, attacker, keeper
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

    # BTC prints +25% in one round: the router halts it (max_deviation 20%) for at least the
    # confirmation delay (an hour by default, up to a day) unless the owner clears it
    publish_usd(protocol, "WBTC", 37_500, deployer)
    with ape.reverts("oracle: circuit breaker"):
        protocol.oracle.price(protocol.market_asset("BTC-PERP"))

    # control: with ETH's reserve off the ETH open fills (the trader holds no BTC; its margin
    # check never reads BTC): the reserve's pass is the only reason the next one cannot
    cfg.set_reserve_factor(eth, 0, sender=deployer)
    trade_now(ch, eth, 10 * WAD, 0, 0, sender=trader)
    cfg.set_reserve_factor(eth, WAD, sender=deployer)

    # with it on: the fill reverts with BTC's reason; the order is not cancelled, it stays
    commit(protocol, trader, eth, 10 * WAD)
    with ape.reverts("oracle: circuit breaker"):
        fill_now(ch, account, eth, keeper=keeper)
    assert int(orders.order(account, eth).executable_at) != 0
    # meanwhile its owner can neither replace it nor take margin out
    usdc.mint(trader, FEE, sender=trader)
    usdc.approve(orders, FEE, sender=trader)
    with ape.reverts("orders: order pending"):
        orders.commit_order(eth, 1 * WAD, 0, 0, sender=trader)
    with ape.reverts("clearinghouse: order pending"):
        ch.withdraw(usdc, USDC, 0, sender=trader)
    # (LPs are stuck too, as before the reserve: every pool view prices BTC)
    with ape.reverts("oracle: circuit breaker"):
        pool.maxWithdraw(lp)

    # ETH's next round: the order's round has passed, it is cancelled and its fee forfeited
    insurance = int(ch.insurance_balance())
    ape.chain.pending_timestamp += 60
    publish_usd(protocol, "WETH", 2_000, deployer)
    receipt = orders.execute_order(account, eth, sender=keeper)
    assert cancelled_reason(receipt, orders) == "orders: round passed"
    assert int(ch.insurance_balance()) == insurance + FEE
    assert int(ch.positions(account, eth).size) == 10 * WAD  # only the control's open
    print(
        f"\n#1 griefer's cost: {dust_fee} token unit of fee, 1 wei of BTC; every ETH open reverts "
        f"'oracle: circuit breaker' and forfeits ${usd(FEE)} at ETH's next round"
    )


# ---------------------------------------------------------------- #2: LP flows decide after the round


def _order_past_the_reserve(protocol, deployer, lp, attacker) -> tuple[int, int]:
    """A $2M pool; the attacker's 1,100 ETH long ($2.2M) is committed past it, then its round
    (at $2,000) is published. Returns (account, size)."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    size = 1_100 * WAD
    account = commit(protocol, attacker, eth, size)
    ape.chain.pending_timestamp += int(protocol.orders.settlement_delay())
    publish_usd(protocol, "WETH", 2_000, deployer)  # the order's round: public from here on
    value, need = reserve(protocol, eth, size)
    assert need > value  # a keeper who executed now would only cancel it, unpaid
    assert int(ch.market_state(eth).long_oi) == 0
    return account, size


def test_finding__round_public_then_a_deposit_fills_an_order_past_the_reserve(protocol, deployer, lp, attacker, keeper):
    """The market runs on to $2,060 after the round: the attacker deposits just enough, fills
    at the round's $2,000 and closes at the next round."""
    ch, orders, pool = protocol.clearinghouse, protocol.orders, protocol.pool
    eth = protocol.markets["ETH-PERP"]
    account, size = _order_past_the_reserve(protocol, deployer, lp, attacker)
    value, need = reserve(protocol, eth, size)
    top_up = (need - value) // S2W + 1_000 * USDC
    fund_liquidity(protocol, attacker, deployer, top_up // USDC, 0)  # after the round, before the fill
    receipt = orders.execute_order(account, eth, sender=attacker)
    assert cancelled_reason(receipt, orders) is None and int(ch.positions(account, eth).size) == size
    fill = int(receipt.events.filter(ch.Trade)[0].fill_price)
    publish_usd(protocol, "WETH", 2_060, deployer)
    close = trade_now(ch, eth, -size, 0, 0, sender=attacker, keeper=attacker)
    profit = int(close.events.filter(ch.Trade)[0].realised_pnl) - fees_paid(receipt, ch) - fees_paid(close, ch)
    share = int(pool.balanceOf(attacker)) / int(pool.totalSupply())
    print(
        f"\n#2 enabled after the round: top-up ${usd(top_up)} ({share:.1%} of the pool), fill at "
        f"${fill / WAD:,.2f}, closed at $2,060: profit net of fees ${usd(profit)}, "
        f"of which its own LP share pays ~${usd(int(profit * share))}"
    )
    assert profit > 50_000 * USDC
    assert profit * (1 - share) > 45_000 * USDC


def test_finding__round_public_and_adverse_the_same_order_lapses_for_its_fee(protocol, deployer, lp, attacker, keeper):
    """The market runs on to $1,940 instead: the attacker does nothing; a keeper's execution
    cancels it for the reserve. Cost: the $2 execution fee."""
    ch, orders = protocol.clearinghouse, protocol.orders
    eth = protocol.markets["ETH-PERP"]
    account, _ = _order_past_the_reserve(protocol, deployer, lp, attacker)
    insurance = int(ch.insurance_balance())
    equity = int(ch.margin(account)[0])
    receipt = orders.execute_order(account, eth, sender=keeper)
    assert cancelled_reason(receipt, orders) == "orders: open interest reserve"
    assert int(ch.positions(account, eth).size) == 0
    assert int(ch.insurance_balance()) == insurance + FEE
    assert int(ch.margin(account)[0]) == equity  # the trading account lost nothing; the fee was escrowed
    print(f"\n#2 adverse round: order cancelled 'orders: open interest reserve', attacker's cost ${usd(FEE)}")


def test_finding__round_public_an_lp_trader_withdraws_to_cancel_a_fillable_order(protocol, deployer, lp, attacker, keeper):
    """The reverse lever: the order fits; after its round the LP-trader withdraws enough to
    make it cancel (racing keepers, or in the round's block)."""
    orders, pool = protocol.orders, protocol.pool
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    fund_liquidity(protocol, attacker, deployer, 300_000, 0)
    ape.chain.pending_timestamp += COOLDOWN + 1
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    size = 1_100 * WAD  # $2.2M against $2.3M: fits
    account = commit(protocol, attacker, eth, size)
    ape.chain.pending_timestamp += int(orders.settlement_delay())
    publish_usd(protocol, "WETH", 2_000, deployer)
    value, need = reserve(protocol, eth, size)
    assert need <= value  # fillable by any keeper now
    out = (value - need) // S2W + 1
    pool.withdraw(out, attacker, attacker, sender=attacker)
    receipt = orders.execute_order(account, eth, sender=keeper)
    assert cancelled_reason(receipt, orders) == "orders: open interest reserve"
    print(f"\n#2 reverse: a ${usd(out)} withdrawal after the round cancelled a fillable $2.2M order")


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
    assert risk.larger_side_after(longs, 0, 0, -short) == longs
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, -short, 0, 0, sender=other_trader)
    assert int(ch.positions(account_id(other_trader), eth).size) == -short
    assert reserve(protocol)[1] == need  # and the need did not rise
    print(f"\n#3 pool value ${value / WAD:,.2f} < need ${need / WAD:,.2f}; a 20 ETH short fills (skew cut)")
    with ape.reverts("orders: open interest reserve"):  # the long side still may not grow
        trade_now(ch, eth, WAD, 0, 1, sender=other_trader)


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


def test_finding__dust_open_interest_in_every_market_taxes_every_open(protocol, deployer, lp, trader, attacker):
    ch, pool, cfg = protocol.clearinghouse, protocol.pool, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    weth = protocol.market_asset("ETH-PERP")
    while int(ch.market_count()) < 15:
        cfg.list_market(MarketConfig(f"ETH{int(ch.market_count())}-PERP", "WETH").params(weth.address), sender=deployer)
    deposit(protocol, trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, WAD, 0, 0, sender=trader)  # ETH's state written once
    ape.chain.pending_timestamp += COOLDOWN + 1
    base_open = int(trade_now(ch, eth, WAD, 0, 0, sender=trader).gas_used)
    base_withdraw = int(pool.withdraw(USDC, lp, lp, sender=lp).gas_used)

    deposit(protocol, attacker, "USDC", 100 * USDC)
    cost = 0
    for m in range(2, 16):
        cost += fees_paid(trade_now(ch, m, 1, 0, 0, sender=attacker, keeper=attacker), ch)
    taxed_open = int(trade_now(ch, eth, WAD, 0, 0, sender=trader).gas_used)
    taxed_withdraw = int(pool.withdraw(USDC, lp, lp, sender=lp).gas_used)
    per_market = (taxed_open - base_open) // 14
    print(
        f"\n#4 griefer: 14 dust positions, fees {cost} token units (${cost / USDC:.6f}); an ETH open "
        f"{base_open:,} -> {taxed_open:,} gas ({per_market:,} per market); an LP withdrawal "
        f"{base_withdraw:,} -> {taxed_withdraw:,}"
    )
    assert cost == 14
    assert taxed_open - base_open > 400_000
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
    assert int(pool.maxRedeem(attacker)) < free // 2
    with ape.reverts("pool: open interest reserve"):
        pool.redeem(free, attacker, attacker, sender=attacker)


def test_refused__reserve_off_and_back_on_round_trips(protocol, deployer):
    pool, cfg = protocol.pool, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    assert int(pool.reserve_factor(eth)) == WAD
    for factor in (0, WAD // 2, 0, 100 * WAD, 0, WAD):
        cfg.set_reserve_factor(eth, factor, sender=deployer)
        assert int(pool.reserve_factor(eth)) == factor
    with ape.reverts("configurator: bad reserve factor"):
        cfg.set_reserve_factor(eth, 100 * WAD + 1, sender=deployer)
