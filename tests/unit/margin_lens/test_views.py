"""MarginLens what-ifs agree with what the Clearinghouse then does."""

import ape
import pytest

from marginsim.orders import trade_now
from marginsim.risk import health_of
from tests.conftest import WAD

TOKEN_UNIT_WAD = 10**12  # one settlement token unit in WAD


def test_account_summary__parts_add_up_to_the_margin(protocol, ch, make_account, trader, set_price):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    set_price("WETH", 1_950)
    summary = protocol.lens.account_summary(account)
    equity, maintenance, initial = ch.margin(account)
    assert (summary.equity, summary.maintenance, summary.initial) == (equity, maintenance, initial)
    assert summary.health == health_of(ch, account)
    assert summary.equity == summary.settlement * TOKEN_UNIT_WAD + summary.collateral_value + summary.unrealised_pnl
    assert summary.unrealised_pnl < 0  # a long after a fall


@pytest.mark.parametrize("delta_eth", [3, -2, -25, -40])  # increase, reduce, close, flip
def test_health_after_trade__matches_the_trade(protocol, ch, make_account, trader, eth_market, delta_eth):
    account = make_account(trader, collateral_usd=10_000, leverage=5)  # long 25 ETH
    delta = delta_eth * WAD
    health, equity, initial = protocol.lens.health_after_trade(account, eth_market, delta)
    trade_now(ch, eth_market, delta, 0, 0, sender=trader)
    e, m, i = ch.margin(account)
    # realised PnL rounds to whole settlement units on chain (one unit), and the order fills a
    # settlement delay (60 s) after the view: a minute more funding (under 20 units here)
    assert abs(e - equity) <= 20 * TOKEN_UNIT_WAD
    assert i == initial
    assert abs(health_of(ch, account) - health) <= health // 10**8 + 1  # the minute's funding, again


def test_health_after_trade__unknown_market__reverts(protocol, make_account, trader):
    account = make_account(trader, collateral_usd=1_000)
    with ape.reverts("lens: unknown market"):
        protocol.lens.health_after_trade(account, 9, WAD)


@pytest.mark.parametrize("leverage", [10, -10])
def test_liquidation_price__is_where_equity_meets_maintenance(
    protocol, ch, make_account, trader, eth_market, set_price, leverage
):
    account = make_account(trader, collateral_usd=10_000, leverage=leverage)
    price = protocol.lens.liquidation_price(account, eth_market) / WAD
    assert (price < 2_000) if leverage > 0 else (price > 2_000)
    safe, unsafe = (price * 1.002, price * 0.998) if leverage > 0 else (price * 0.998, price * 1.002)
    set_price("WETH", safe)
    assert health_of(ch, account) >= WAD
    set_price("WETH", unsafe)
    assert health_of(ch, account) < WAD


def test_liquidation_price__collateral_in_the_same_asset_counts(protocol, ch, fund, trader, eth_market):
    from marginsim.protocol import account_id

    weth = protocol.tokens["WETH"]
    fund(trader, weth, 10 * WAD)
    ch.deposit(weth, 10 * WAD, 0, sender=trader)
    trade_now(ch, eth_market, -20 * WAD, 0, 0, sender=trader)  # short 20 ETH against 10 WETH
    account = account_id(trader)
    price = protocol.lens.liquidation_price(account, eth_market)
    # the WETH collateral hedges half the short: the liquidation price is further away than
    # for the same short on $20,000 of USDC (about +6.3%)
    assert price > 2_000 * WAD * 110 // 100


def test_liquidation_price__no_position__zero(protocol, make_account, trader, eth_market):
    account = make_account(trader, collateral_usd=1_000)
    assert protocol.lens.liquidation_price(account, eth_market) == 0


def test_healths__batched_view_matches_single(protocol, ch, make_account, trader, other_trader):
    a = make_account(trader, collateral_usd=10_000, leverage=5)
    b = make_account(other_trader, collateral_usd=1_000)
    assert list(protocol.lens.healths([a, b])) == [health_of(ch, a), 2**256 - 1]
