"""The order bond (issue 9: a hold on the pool's capacity priced by its notional): an order that
adds risk escrows, besides the execution fee, `order_bond` (0.05% by default) of the notional it
adds at the commit's price (`risk.order_bond`, rounded up at each step). Its fill pays the keeper
the fee and refunds the bond to the owner; a cancellation at its round (refused, passed, the
position changed) forfeits both to the insurance fund; an expiry with no round refunds both. A
reduction escrows no bond; a flip bonds only the side it opens. Governance sets the rate within
[0, 1%]; an order keeps the bond it escrowed."""

import ape
import pytest

from marginsim import risk
from marginsim.orders import fill_now, market_feed, redate, trade_now
from tests.conftest import USDC, WAD
from tests.e2e.incidents import move_clock_to

S2W = 10**12
FEE = 2 * USDC
RATE = 5 * 10**14  # DEFAULT_CONFIG.order_bond
EXPIRY = 86_400
MAX_UINT = 2**256 - 1


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, ch, usdc, seeded_pool, make_account, trader, keeper, attacker, deployer):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once."""


@pytest.fixture(scope="module")
def orders(protocol):
    return protocol.orders


@pytest.fixture(scope="module")
def account(make_account, trader, usdc, orders):
    """The trader's subaccount 0 with $100k of margin, 10,000 USDC in its wallet approved to Orders."""
    acct = make_account(trader, 100_000)
    usdc.mint(trader, 10_000 * USDC, sender=trader)
    usdc.approve(orders, MAX_UINT, sender=trader)
    return acct


def bond_for(protocol, market: int, growth: int, rate: int = RATE) -> int:
    """What the commit escrows besides the fee for `growth` base units at the current price."""
    price = int(protocol.oracle.price(protocol.clearinghouse.markets(market).asset))
    return risk.order_bond(growth, price, rate, S2W)


def test_default_rate_is_the_configs(orders):
    assert orders.order_bond() == RATE


def test_commit__an_order_that_adds_risk_escrows_the_fee_and_its_bond(protocol, orders, usdc, account, trader, eth_market):
    bond = bond_for(protocol, eth_market, 10 * WAD)
    assert bond == 10 * USDC  # 10 ETH at $2,000, 0.05%
    wallet, escrow = usdc.balanceOf(trader), usdc.balanceOf(orders)
    receipt = orders.commit_order(eth_market, 10 * WAD, 0, 0, sender=trader)
    assert usdc.balanceOf(trader) == wallet - FEE - bond
    assert usdc.balanceOf(orders) == escrow + FEE + bond
    assert orders.bonds(account, eth_market) == bond
    assert orders.order(account, eth_market).fee == FEE  # the fee field is the keeper's alone
    [event] = receipt.events.filter(orders.OrderCommitted)
    assert (event.fee, event.bond) == (FEE, bond)


def test_commit__a_reduction_escrows_no_bond_and_a_flip_bonds_only_its_new_side(
    protocol, orders, usdc, ch, make_account, account, trader, keeper, eth_market
):
    trade_now(ch, eth_market, 10 * WAD, 0, 0, sender=trader, keeper=keeper)
    wallet = usdc.balanceOf(trader)
    orders.commit_order(eth_market, -4 * WAD, 0, 0, sender=trader)  # a reduction
    assert orders.bonds(account, eth_market) == 0
    assert usdc.balanceOf(trader) == wallet - FEE
    # another subaccount, long 10 too: a sell of 25 closes 10 and opens a 15 ETH short
    sub = make_account(trader, 100_000, subaccount=1)
    trade_now(ch, eth_market, 10 * WAD, 0, 1, sender=trader, keeper=keeper)
    wallet = usdc.balanceOf(trader)
    orders.commit_order(eth_market, -25 * WAD, 0, 1, sender=trader)
    bond = bond_for(protocol, eth_market, 15 * WAD)
    assert orders.bonds(sub, eth_market) == bond == 15 * USDC
    assert usdc.balanceOf(trader) == wallet - FEE - bond


@pytest.mark.parametrize("growth", [1, 10**12 - 1, 10**12 + 1])
def test_commit__the_bond_rounds_up(protocol, orders, account, trader, eth_market, growth):
    """1 base unit of ETH at $2,000 is 2e-15 USD: a bond of 1 unit (1e-6 USDC), never 0."""
    orders.commit_order(eth_market, growth, 0, 0, sender=trader)
    bond = orders.bonds(account, eth_market)
    assert bond == bond_for(protocol, eth_market, growth) >= 1
    price = int(protocol.oracle.price(protocol.clearinghouse.markets(eth_market).asset))
    assert bond * S2W * WAD * WAD >= growth * price * RATE  # never below the exact amount


def test_execute__a_fill_pays_the_keeper_the_fee_and_refunds_the_bond_to_the_owner(
    protocol, orders, usdc, ch, account, trader, keeper, eth_market
):
    orders.commit_order(eth_market, 10 * WAD, 0, 0, sender=trader)
    bond = orders.bonds(account, eth_market)
    wallet, keeper_wallet, insurance = usdc.balanceOf(trader), usdc.balanceOf(keeper), ch.insurance_balance()
    receipt = fill_now(ch, account, eth_market, keeper=keeper)
    [event] = receipt.events.filter(orders.OrderFilled)
    assert (event.fee, event.bond) == (FEE, bond)
    assert usdc.balanceOf(keeper) == keeper_wallet + FEE
    assert usdc.balanceOf(trader) == wallet + bond
    assert ch.insurance_balance() == insurance
    assert orders.bonds(account, eth_market) == 0
    assert usdc.balanceOf(orders) == 0


def test_execute__a_refused_fill_forfeits_the_fee_and_the_bond_to_the_insurance_fund(
    protocol, orders, usdc, ch, account, trader, keeper, eth_market
):
    orders.commit_order(eth_market, 10 * WAD, 1, 0, sender=trader)  # a limit of 1 wei: never fills
    bond = orders.bonds(account, eth_market)
    wallet, keeper_wallet, insurance = usdc.balanceOf(trader), usdc.balanceOf(keeper), ch.insurance_balance()
    receipt = fill_now(ch, account, eth_market, keeper=keeper)
    [event] = receipt.events.filter(orders.OrderCancelled)
    assert (event.reason, event.fee, event.bond, event.fee_to) == ("clearinghouse: price limit", FEE, bond, ch.address)
    [deposit] = receipt.events.filter(ch.InsuranceDeposit)
    assert (deposit.source, deposit.amount) == (orders.address, FEE + bond)
    assert ch.insurance_balance() == insurance + FEE + bond
    assert (usdc.balanceOf(trader), usdc.balanceOf(keeper)) == (wallet, keeper_wallet)
    assert orders.bonds(account, eth_market) == 0


def test_cancel__a_passed_round_forfeits_the_bond_an_expiry_refunds_it(
    protocol, orders, usdc, ch, make_account, account, trader, attacker, keeper, eth_market, btc_market, set_price, chain
):
    # ETH: its round passes (two rounds after it), anyone cancels: fee and bond forfeited
    orders.commit_order(eth_market, 10 * WAD, 0, 0, sender=trader)
    eth_bond = orders.bonds(account, eth_market)
    chain.pending_timestamp += int(orders.settlement_delay())
    redate(market_feed(ch, eth_market))
    set_price("WETH", 2_000)
    insurance = ch.insurance_balance()
    receipt = orders.cancel_order(account, eth_market, sender=attacker)
    [event] = receipt.events.filter(orders.OrderCancelled)
    assert (event.reason, event.bond) == ("orders: round passed", eth_bond)
    assert ch.insurance_balance() == insurance + FEE + eth_bond

    # BTC: no round by its expiry, a third party cancels: fee and bond back to the owner
    orders.commit_order(btc_market, WAD, 0, 0, sender=trader)
    btc_bond = orders.bonds(account, btc_market)
    assert btc_bond == bond_for(protocol, btc_market, WAD) == 15 * USDC  # 1 BTC at $30,000
    executable_at = int(orders.order(account, btc_market).executable_at)
    move_clock_to(chain, executable_at + EXPIRY)
    wallet, insurance = usdc.balanceOf(trader), ch.insurance_balance()
    receipt = orders.cancel_order(account, btc_market, sender=attacker)
    [event] = receipt.events.filter(orders.OrderCancelled)
    assert (event.reason, event.fee, event.bond, event.fee_to) == ("orders: expired", FEE, btc_bond, trader.address)
    assert usdc.balanceOf(trader) == wallet + FEE + btc_bond
    assert ch.insurance_balance() == insurance
    assert orders.bonds(account, btc_market) == 0
    assert usdc.balanceOf(orders) == 0


def test_set_order_bond__bounds_accepted_and_a_placed_order_keeps_its_bond(
    protocol, orders, usdc, ch, make_account, account, trader, keeper, deployer, eth_market
):
    cfg = protocol.configurator
    orders.commit_order(eth_market, 10 * WAD, 0, 0, sender=trader)
    old_bond = orders.bonds(account, eth_market)
    receipt = cfg.set_order_bond(10**16, sender=deployer)  # the largest: 1%
    [event] = receipt.events.filter(cfg.OrderBondSet)
    assert event.rate == 10**16 and orders.order_bond() == 10**16
    assert orders.bonds(account, eth_market) == old_bond
    sub = make_account(trader, 100_000, subaccount=1)
    orders.commit_order(eth_market, 10 * WAD, 0, 1, sender=trader)
    assert orders.bonds(sub, eth_market) == bond_for(protocol, eth_market, 10 * WAD, 10**16) == 200 * USDC
    wallet = usdc.balanceOf(trader)
    fill_now(ch, account, eth_market, keeper=keeper)  # the first order's fill refunds its old bond
    assert usdc.balanceOf(trader) == wallet + old_bond
    # off: no bond, and no price read for it
    cfg.set_order_bond(0, sender=deployer)
    sub2 = make_account(trader, 100_000, subaccount=2)
    wallet = usdc.balanceOf(trader)
    orders.commit_order(eth_market, 10 * WAD, 0, 2, sender=trader)
    assert orders.bonds(sub2, eth_market) == 0
    assert usdc.balanceOf(trader) == wallet - FEE


def test_set_order_bond__bad_input_reverts_and_changes_nothing(protocol, orders, deployer, attacker):
    cfg = protocol.configurator
    with ape.reverts("configurator: bad order bond"):
        cfg.set_order_bond(10**16 + 1, sender=deployer)
    with ape.reverts("orders: not configurator"):
        orders.apply_order_bond(0, sender=deployer)  # only through the Configurator, which checks the bound
    with ape.reverts("orders: not configurator"):
        orders.apply_order_bond(10**18, sender=attacker)
    assert orders.order_bond() == RATE


def test_commit__the_bond_is_over_the_reserve_factor_when_the_order_grows_the_larger_side(
    protocol, orders, usdc, ch, make_account, account, trader, keeper, deployer, eth_market
):
    """At a reserve factor of 0.5 a hold takes twice its notional of the pool's capital: an order
    that grows the larger side escrows twice the bond; one on the smaller side, which raises no
    need, the notional's. A factor of 1 or more, or the reserve off, leaves the notional's."""
    protocol.configurator.set_reserve_factor(eth_market, WAD // 2, sender=deployer)
    orders.commit_order(eth_market, 10 * WAD, 0, 0, sender=trader)  # the longs become the larger side
    assert orders.bonds(account, eth_market) == 20 * USDC == risk.order_bond(10 * WAD, 2_000 * WAD, RATE, S2W, WAD // 2)
    sub = make_account(trader, 100_000, subaccount=1)
    orders.commit_order(eth_market, -4 * WAD, 0, 1, sender=trader)  # the shorts stay the smaller side
    assert orders.bonds(sub, eth_market) == 4 * USDC
    for factor in (2 * WAD, 0):
        protocol.configurator.set_reserve_factor(eth_market, factor, sender=deployer)
        acct = make_account(trader, 100_000, subaccount=2 if factor else 3)
        orders.commit_order(eth_market, 10 * WAD, 0, 2 if factor else 3, sender=trader)
        assert orders.bonds(acct, eth_market) == 10 * USDC
