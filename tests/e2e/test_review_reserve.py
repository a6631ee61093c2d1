"""Attacker's review of the open-interest reserve (issue 9, item 5; GMX v2's reserve factor):
Orders._over_reserve, LiquidityPool.reserve / _reserve_headroom, Configurator.set_reserve_factor
and marginsim.risk's mirror. Pools are $2M (`fund_liquidity`), ETH at $2,000, BTC at $30,000,
default markets (factor 1). Run with `-s` to see the figures.

#1 (medium-high), fixed: the first version reserved per market against the whole shared pool,
so N markets backed N times the pool (the review: a long of $2M in ETH and one of $2M in BTC on
a $2M pool, both +50%, took the LPs from $2,002,001.24 to $778.56). The reserve is pool-wide now:
each market's larger side needs its USD value over its factor, and the needs summed over every
market stay within the pool's value. Replayed: with ETH at its reserve, a BTC order is cancelled.

#2 (medium), open, documented ("What is not built yet"): a self-hedged pair holds every LP in
and every new order out, for its fees. Two subaccounts of one owner, long and short, each at the
reserve: no price risk, no funding (skew ~0) and no borrowing fee on reserved open interest
(GMX charges one), so the lock costs the opening fees once, about 0.1% of the pool.

#3 (medium), fixed: the first version measured the pool's capital (its balance less its claims)
before the fill, so a flip that realised a profit took its side past the reserve (1.198x in the
review). The reserve is measured against the pool's value now, which already nets traders'
unrealised PnL: realising a profit does not move it. Replayed: the flip fills within the reserve.

Refused: LP capital deposited to lift the limit cannot leave while the position it allowed stays;
the reserve reaches the 15th market. Changed since (the reserve is checked at the commit and a
placed order holds its open interest): an order committed before a factor cut fills, and every
risk-adding order after it is refused at its commit.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, place, redeem_now, trade_now, withdraw_now
from marginsim.protocol import MarketConfig, account_id
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd

S2W = 10**12
COOLDOWN = 900
FEE = 2 * USDC  # Orders' execution fee
POOL_USD = 2_000_000


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def usd(x: int) -> str:
    return f"{x / USDC:,.2f}"


def price_of(protocol, market_name: str) -> int:
    return int(protocol.oracle.price(protocol.market_asset(market_name)))


def largest_side(protocol, market: int, price: int) -> int:
    """The largest side `market` may have now, the others as they are (as the contracts round)."""
    value, need_others = (int(v) for v in protocol.pool.reserve(market, 0))
    return risk.largest_reserved_side(value, need_others, int(protocol.pool.reserve_factor(market)), price)


def reserve(protocol, market: int = 0, side: int = 0) -> tuple[int, int]:
    """LiquidityPool.reserve: (value, need), WAD; `market`'s larger side read as `side`."""
    value, need = protocol.pool.reserve(market, side)
    return int(value), int(need)


def fees_paid(receipt, ch) -> int:
    return sum(int(e.fee) for e in receipt.events.filter(ch.Trade))


# ---------------------------------------------------------------- #1: one pool, every market


def test_fixed__markets_share_one_pool__eth_at_its_reserve_leaves_btc_none(protocol, deployer, lp, attacker):
    ch, pool = protocol.clearinghouse, protocol.pool
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC, subaccount=0)
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC, subaccount=1)
    fee = fees_paid(trade_now(ch, eth, largest_side(protocol, eth, price_of(protocol, "ETH-PERP")), 0, 0, sender=attacker), ch)
    value, need = reserve(protocol)
    assert 0 <= value - need <= 2 * fee * S2W  # the ETH long uses the whole pool (its fee raised the value)
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, btc, WAD // 10, 0, 1, sender=attacker)  # $3,000 of BTC: more than the fee left room for
    lp_before = int(pool.totalAssets())
    for eth_usd, btc_usd in ((2_380, 35_700), (2_830, 42_450), (3_000, 45_000)):
        publish_usd(protocol, "WETH", eth_usd, deployer)
        publish_usd(protocol, "WBTC", btc_usd, deployer)
    lp_after = int(pool.totalAssets())
    print(f"\n#1 after +50%: LP value ${usd(lp_before)} -> ${usd(lp_after)}")
    # (k - 1) * factor of the pool, k = 1.5: half of it, plus the exit premium the long earns
    assert lp_before - lp_after <= lp_before // 2 + lp_before // 100
    assert lp_after > 900_000 * USDC


# ---------------------------------------------------------------- #2: a hedged pair locks LPs and orders


def test_finding__hedged_pair_locks_every_lp_and_both_sides_for_its_fees(protocol, deployer, lp, attacker, other_trader, keeper):
    ch, pool, lens = protocol.clearinghouse, protocol.pool, protocol.lens
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    ape.chain.pending_timestamp += COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_000, deployer)
    assert int(pool.withdrawable(lp)) >= POOL_USD * USDC - 1  # all of it, before the pair
    long = deposit(protocol, attacker, "USDC", 1_000_000 * USDC, subaccount=0)
    short = deposit(protocol, attacker, "USDC", 1_000_000 * USDC, subaccount=1)
    price = price_of(protocol, "ETH-PERP")

    cost = 0
    cost += fees_paid(trade_now(ch, eth, largest_side(protocol, eth, price), 0, 0, sender=attacker), ch)
    cost += fees_paid(trade_now(ch, eth, -int(ch.market_state(eth).long_oi), 0, 1, sender=attacker), ch)
    top_up = largest_side(protocol, eth, price) - int(ch.market_state(eth).long_oi)  # the fees raised the value
    cost += fees_paid(trade_now(ch, eth, top_up, 0, 0, sender=attacker), ch)
    st = ch.market_state(eth)
    skew = int(st.long_oi) - int(st.short_oi)
    print(
        f"\n#2 pair: long {int(st.long_oi) / WAD:,.4f} ETH, short {int(st.short_oi) / WAD:,.4f} ETH "
        f"(skew {skew / WAD:,.4f}); fees paid ${usd(cost)}; LP maxWithdraw ${usd(int(pool.withdrawable(lp)))}"
    )
    assert abs(skew) < 2 * WAD
    assert cost < POOL_USD * USDC // 900  # ~0.1% of the pool, once
    assert int(pool.withdrawable(lp)) <= 2 * USDC  # every LP held in (the last top-up's fee, ~$1)
    assert int(pool.redeemable(lp)) <= int(pool.convertToShares(2 * USDC))

    # every risk-adding order on either side is refused at its commit (nothing escrowed)
    deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    insurance = int(ch.insurance_balance())
    for size in (10 * WAD, -10 * WAD):  # $20k
        with ape.reverts("orders: open interest reserve"):
            trade_now(ch, eth, size, 0, 0, sender=other_trader)
    assert int(ch.insurance_balance()) == insurance
    assert int(ch.positions(account_id(other_trader), eth).size) == 0

    # held for a week: no funding to speak of (the skew is ~0), no borrowing fee
    equity_before = int(ch.margin(long)[0]) + int(ch.margin(short)[0])
    ape.chain.pending_timestamp += 7 * 86_400
    publish_usd(protocol, "WETH", 2_000, deployer)
    equity_after = int(ch.margin(long)[0]) + int(ch.margin(short)[0])
    rate = int(lens.funding_rate(eth))
    print(
        f"#2 a week later: funding rate {rate / WAD:.2e}/day, the pair's equity moved "
        f"${(equity_after - equity_before) / WAD:,.2f}; LP maxWithdraw ${usd(int(pool.withdrawable(lp)))}"
    )
    assert abs(equity_after - equity_before) < 50 * WAD
    assert int(pool.withdrawable(lp)) <= 2 * USDC
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, 10 * USDC, lp, lp, sender=lp)


# ---------------------------------------------------------------- #3: a flip is measured against the value


def _winning_long(protocol, deployer, trader) -> int:
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    deposit(protocol, trader, "USDC", 1_000_000 * USDC)
    trade_now(ch, eth, 400 * WAD, 0, 0, sender=trader)
    publish_usd(protocol, "WETH", 2_380, deployer)
    publish_usd(protocol, "WETH", 2_830, deployer)
    return account_id(trader)


def test_fixed__a_flip_realising_profit_stays_within_the_reserve(protocol, deployer, lp, trader, other_trader):
    ch = protocol.clearinghouse
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    _winning_long(protocol, deployer, trader)
    value_before, _ = reserve(protocol)
    # the short side may be as large as the value (which already nets the long's profit) allows
    short = largest_side(protocol, eth, price_of(protocol, "ETH-PERP"))
    receipt = trade_now(ch, eth, -(400 * WAD + short), 0, 0, sender=trader)
    realised = int(receipt.events.filter(ch.Trade)[0].realised_pnl)
    value, need = reserve(protocol)
    print(f"\n#3 flip: profit realised ${usd(realised)}; the pool's value ${value_before / WAD:,.2f} -> ${value / WAD:,.2f}")
    assert int(ch.positions(account_id(trader), eth).size) == -short
    assert realised > 300_000 * USDC
    assert need <= value  # realising the profit did not lower the value the check used
    deposit(protocol, other_trader, "USDC", 10_000 * USDC)
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, eth, -WAD, 0, 0, sender=other_trader)


# ---------------------------------------------------------------- refused


def test_order_committed_before_a_factor_cut_fills__what_follows_is_refused(protocol, deployer, lp, trader, keeper):
    """The order was checked at its commit and holds its $200k: a cut to $100k does not cancel it
    (no governance action decides a placed order's fill); the next risk-adding order is refused
    at its commit."""
    ch, orders, cfg = protocol.clearinghouse, protocol.orders, protocol.configurator
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    account = deposit(protocol, trader, "USDC", 100_000 * USDC)
    place(ch, eth, 100 * WAD, sender=trader)  # $200k: within 1.0 of $2M
    cfg.set_reserve_factor(eth, WAD // 20, sender=deployer)  # $100k
    receipt = fill_now(ch, account, eth, keeper=keeper)
    assert receipt.events.filter(orders.OrderFilled) and int(ch.positions(account, eth).size) == 100 * WAD
    deposit(protocol, trader, "USDC", 1_000 * USDC, 1)  # the margin a base unit needs, and more
    with ape.reverts("orders: open interest reserve"):
        place(ch, eth, 1, subaccount=1, sender=trader)


def test_refused__lp_capital_deposited_to_lift_the_limit_stays_behind_the_position(protocol, deployer, lp, attacker):
    """The attacker doubles the pool to open a side twice what the honest pool allows; after its
    cooldown its own deposit cannot leave while that side stays (and nobody else's can)."""
    ch, pool = protocol.clearinghouse, protocol.pool
    eth = protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    fund_liquidity(protocol, attacker, deployer, POOL_USD, 0)
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    price = price_of(protocol, "ETH-PERP")
    size = largest_side(protocol, eth, price)
    assert risk.reserve_value(size, price) > 2 * POOL_USD * WAD - WAD
    fee = fees_paid(trade_now(ch, eth, size, 0, 0, sender=attacker), ch)
    ape.chain.pending_timestamp += COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_000, deployer)
    # about the fee its own open paid the pool (0.05%) may leave, with the funding since
    out_attacker, out_lp = int(pool.withdrawable(attacker)), int(pool.withdrawable(lp))
    print(f"\nrefused: fee ${usd(fee)}; maxWithdraw attacker ${usd(out_attacker)}, lp ${usd(out_lp)}")
    assert out_attacker <= 2 * fee and out_lp <= 2 * fee
    with ape.reverts("pool: open interest reserve"):
        redeem_now(pool, int(pool.balanceOf(attacker)), attacker, attacker, sender=attacker)


def test_refused__the_fifteenth_market_counts(protocol, deployer, lp, attacker):
    """Thirteen more markets listed straight through the Configurator: the reserve's loop reaches
    market 15 (a small long there, at a tight factor, bounds every LP)."""
    ch, pool, cfg = protocol.clearinghouse, protocol.pool, protocol.configurator
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    weth = protocol.market_asset("ETH-PERP")
    while int(ch.market_count()) < 15:
        cfg.list_market(MarketConfig(f"ETH{int(ch.market_count())}-PERP", "WETH").params(weth.address), sender=deployer)
    with ape.reverts("configurator: too many markets"):
        cfg.list_market(MarketConfig("ETH16-PERP", "WETH").params(weth.address), sender=deployer)
    assert all(int(pool.reserve_factor(m)) == WAD for m in range(1, 15))
    cfg.set_reserve_factor(15, WAD // 100, sender=deployer)
    deposit(protocol, attacker, "USDC", 100_000 * USDC)
    trade_now(ch, 15, 5 * WAD, 0, 0, sender=attacker)  # $10k: needs $1M of the pool at 1%
    ape.chain.pending_timestamp += COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_000, deployer)
    value, need = reserve(protocol)
    assert need == risk.reserve_need([(5 * WAD, price_of(protocol, "ETH-PERP"), WAD // 100)])
    headroom = risk.reserve_headroom(value, need, S2W)
    assert int(pool.withdrawable(lp)) == headroom < 1_100_000 * USDC
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, headroom + 1, lp, lp, sender=lp)
