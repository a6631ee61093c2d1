"""Clearinghouse.deposit: settlement and collateral into isolated accounts, and every refusal."""

import ape
import pytest

from marginsim.protocol import account_id
from tests.conftest import USDC, WAD

# (symbol, decimals) of each listed collateral: the 6/8/18 decimals cases
COLLATERALS = [("USDT", 6), ("WBTC", 8), ("WETH", 18)]


@pytest.fixture(params=COLLATERALS, ids=[f"{symbol}-{decimals}dec" for symbol, decimals in COLLATERALS])
def collateral(request, protocol):
    symbol, decimals = request.param
    token = protocol.tokens[symbol]
    assert token.decimals() == decimals
    return token


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, ch, configurator, usdc, fund, deployer, trader, other_trader):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once instead of rebasing."""


@pytest.fixture(scope="module")
def configurator(protocol):
    """Risk parameters (caps, enabling) are set through the Configurator."""
    return protocol.configurator


def whole(token, amount):
    """`amount` whole tokens in token units."""
    return int(amount * 10 ** token.decimals())


def deposit_events(receipt):
    return [e for e in receipt.events if e.event_name == "Deposit"]


# ---------------------------------------------------------------- settlement token


def test_deposit__settlement__credits_balance_and_custody(ch, usdc, fund, trader):
    amount = 1_234 * USDC + 567_891
    fund(trader, usdc, amount)
    held_before = ch.settlement_held()
    ch_balance_before = usdc.balanceOf(ch)

    tx = ch.deposit(usdc, amount, 0, sender=trader)

    account = account_id(trader, 0)
    assert ch.settlement(account) == amount
    assert usdc.balanceOf(trader) == 0
    assert usdc.balanceOf(ch) == ch_balance_before + amount
    assert ch.settlement_held() == held_before + amount
    assert usdc.balanceOf(ch) == ch.settlement_held()
    assert ch.collateral_mask(account) == 0  # the settlement balance is not a collateral slot
    [event] = deposit_events(tx)
    assert event.account == account
    assert event.token == usdc.address
    assert event.amount == amount


def test_deposit__settlement_twice__balances_add(ch, usdc, fund, trader):
    fund(trader, usdc, 300 * USDC)
    ch.deposit(usdc, 100 * USDC, 0, sender=trader)
    ch.deposit(usdc, 200 * USDC, 0, sender=trader)
    assert ch.settlement(account_id(trader, 0)) == 300 * USDC


def test_deposit__settlement_zero_amount__reverts(ch, usdc, trader):
    with ape.reverts("clearinghouse: zero amount"):
        ch.deposit(usdc, 0, 0, sender=trader)


def test_deposit__settlement_without_allowance__reverts_and_credits_nothing(ch, usdc, trader):
    usdc.mint(trader, 100 * USDC, sender=trader)  # minted but not approved
    with ape.reverts("erc20: insufficient allowance"):
        ch.deposit(usdc, 100 * USDC, 0, sender=trader)
    assert ch.settlement(account_id(trader, 0)) == 0
    assert usdc.balanceOf(ch) == ch.settlement_held()


def test_deposit__settlement_while_paused__still_credited(configurator, ch, usdc, fund, trader, deployer):
    configurator.pause(sender=deployer)
    fund(trader, usdc, 500 * USDC)
    ch.deposit(usdc, 500 * USDC, 0, sender=trader)
    assert ch.paused()
    assert ch.settlement(account_id(trader, 0)) == 500 * USDC


# ---------------------------------------------------------------- collateral tokens


def test_deposit__collateral__credits_slot_mask_total_and_value(protocol, ch, fund, trader, collateral):
    amount = whole(collateral, 2.5) + 7  # a few extra units past the whole amount
    slot = ch.collateral_slot(collateral)
    total_before = ch.collaterals(slot).total
    fund(trader, collateral, amount)

    tx = ch.deposit(collateral, amount, 0, sender=trader)

    account = account_id(trader, 0)
    assert ch.balances(account, slot) == amount
    assert ch.collateral_mask(account) == 1 << slot
    assert ch.collaterals(slot).total == total_before + amount
    assert collateral.balanceOf(ch) == amount
    assert collateral.balanceOf(trader) == 0
    assert ch.settlement(account) == 0
    # haircut value, rounded down: amount * price / unit * weight
    col = ch.collaterals(slot)
    price = protocol.oracle.price(collateral)
    assert ch.collateral_value(account) == amount * price // col.unit * col.weight // WAD
    assert ch.collateral_value(account) < amount * price // col.unit  # the haircut applies
    [event] = deposit_events(tx)
    assert (event.account, event.token, event.amount) == (account, collateral.address, amount)


def test_deposit__two_collaterals__mask_has_both_bits(protocol, ch, fund, trader):
    weth, wbtc = protocol.tokens["WETH"], protocol.tokens["WBTC"]
    fund(trader, weth, whole(weth, 1))
    fund(trader, wbtc, whole(wbtc, 1))
    ch.deposit(weth, whole(weth, 1), 0, sender=trader)
    ch.deposit(wbtc, whole(wbtc, 1), 0, sender=trader)
    expected = (1 << ch.collateral_slot(weth)) | (1 << ch.collateral_slot(wbtc))
    assert ch.collateral_mask(account_id(trader, 0)) == expected


def test_deposit__collateral_zero_amount__reverts(ch, trader, collateral):
    with ape.reverts("clearinghouse: zero amount"):
        ch.deposit(collateral, 0, 0, sender=trader)


def test_deposit__unknown_token__reverts(ch, make_token, fund, trader):
    stray = make_token(18, "STRAY")
    fund(trader, stray, 10**18)
    with ape.reverts("clearinghouse: unknown token"):
        ch.deposit(stray, 10**18, 0, sender=trader)


def test_deposit__collateral_up_to_cap__accepted_one_unit_more__reverts(
    ch, configurator, fund, trader, other_trader, deployer, collateral
):
    slot = ch.collateral_slot(collateral)
    col = ch.collaterals(slot)
    cap = whole(collateral, 3)
    configurator.set_collateral(collateral, col.weight, cap, col.liquidation_discount, True, sender=deployer)
    fund(trader, collateral, cap)
    fund(other_trader, collateral, 1)

    ch.deposit(collateral, cap - 1, 0, sender=trader)
    ch.deposit(collateral, 1, 0, sender=trader)  # exactly at the cap
    assert ch.collaterals(slot).total == cap
    # the cap is on the total across every account, not per account
    with ape.reverts("clearinghouse: deposit cap"):
        ch.deposit(collateral, 1, 0, sender=other_trader)


def test_deposit__collateral_over_cap_at_once__reverts(ch, configurator, fund, trader, deployer, collateral):
    col = ch.collaterals(ch.collateral_slot(collateral))
    cap = whole(collateral, 1)
    configurator.set_collateral(collateral, col.weight, cap, col.liquidation_discount, True, sender=deployer)
    fund(trader, collateral, cap + 1)
    with ape.reverts("clearinghouse: deposit cap"):
        ch.deposit(collateral, cap + 1, 0, sender=trader)


def test_deposit__disabled_collateral__reverts(ch, configurator, fund, trader, deployer, collateral):
    col = ch.collaterals(ch.collateral_slot(collateral))
    configurator.set_collateral(collateral, col.weight, col.cap, col.liquidation_discount, False, sender=deployer)
    fund(trader, collateral, whole(collateral, 1))
    with ape.reverts("clearinghouse: collateral disabled"):
        ch.deposit(collateral, whole(collateral, 1), 0, sender=trader)


def test_deposit__collateral_re_enabled__accepted(ch, configurator, fund, trader, deployer, collateral):
    col = ch.collaterals(ch.collateral_slot(collateral))
    configurator.set_collateral(collateral, col.weight, col.cap, col.liquidation_discount, False, sender=deployer)
    configurator.set_collateral(collateral, col.weight, col.cap, col.liquidation_discount, True, sender=deployer)
    fund(trader, collateral, whole(collateral, 1))
    ch.deposit(collateral, whole(collateral, 1), 0, sender=trader)
    assert ch.balances(account_id(trader, 0), ch.collateral_slot(collateral)) == whole(collateral, 1)


def test_deposit__collateral_while_paused__reverts(configurator, ch, fund, trader, deployer, collateral):
    configurator.pause(sender=deployer)
    fund(trader, collateral, whole(collateral, 1))
    with ape.reverts("clearinghouse: paused"):
        ch.deposit(collateral, whole(collateral, 1), 0, sender=trader)


def test_deposit__collateral_after_unpause__accepted(configurator, ch, fund, trader, deployer, collateral):
    configurator.pause(sender=deployer)
    configurator.unpause(sender=deployer)
    fund(trader, collateral, whole(collateral, 1))
    ch.deposit(collateral, whole(collateral, 1), 0, sender=trader)
    assert ch.balances(account_id(trader, 0), ch.collateral_slot(collateral)) == whole(collateral, 1)


# ---------------------------------------------------------------- subaccounts


def test_deposit__two_subaccounts__isolated(protocol, ch, usdc, fund, trader):
    weth = protocol.tokens["WETH"]
    slot = ch.collateral_slot(weth)
    fund(trader, usdc, 700 * USDC)
    fund(trader, weth, whole(weth, 2))

    ch.deposit(usdc, 700 * USDC, 1, sender=trader)
    ch.deposit(weth, whole(weth, 2), 2, sender=trader)

    first, second = account_id(trader, 1), account_id(trader, 2)
    assert first != second
    assert (ch.settlement(first), ch.balances(first, slot), ch.collateral_mask(first)) == (700 * USDC, 0, 0)
    assert (ch.settlement(second), ch.balances(second, slot), ch.collateral_mask(second)) == (0, whole(weth, 2), 1 << slot)
    # the default subaccount of the same owner holds nothing
    main = account_id(trader, 0)
    assert (ch.settlement(main), ch.balances(main, slot), ch.collateral_mask(main)) == (0, 0, 0)
    assert ch.margin(first)[0] == 700 * USDC * 10**12
    assert ch.margin(second)[0] == ch.collateral_value(second) > 0


def test_deposit__subaccount_balance__not_withdrawable_from_sibling(ch, usdc, fund, trader):
    fund(trader, usdc, 100 * USDC)
    ch.deposit(usdc, 100 * USDC, 1, sender=trader)
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, 1, 2, sender=trader)


def test_deposit__credits_the_caller__not_another_owner(ch, usdc, fund, trader, other_trader):
    fund(trader, usdc, 100 * USDC)
    ch.deposit(usdc, 100 * USDC, 0, sender=trader)
    assert ch.settlement(account_id(other_trader, 0)) == 0
    assert ch.settlement(account_id(trader, 0)) == 100 * USDC
