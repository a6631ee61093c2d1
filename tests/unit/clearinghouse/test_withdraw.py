"""Clearinghouse.withdraw: balances, the initial-margin check, pause, and MarginLens.max_withdraw."""

import ape
import pytest

from marginsim.orders import trade_now
from marginsim.protocol import account_id
from marginsim.risk import SECONDS_PER_YEAR, ceil_div, mul_up
from tests.conftest import USDC, WAD

COLLATERALS = [("USDT", 6), ("WBTC", 8), ("WETH", 18)]
USDC_TO_WAD = 10**12


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, ch, configurator, usdc, fund, seeded_pool, make_account, deployer, trader, other_trader):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once instead of rebasing."""


@pytest.fixture(params=COLLATERALS, ids=[f"{symbol}-{decimals}dec" for symbol, decimals in COLLATERALS])
def collateral(request, protocol):
    symbol, decimals = request.param
    token = protocol.tokens[symbol]
    assert token.decimals() == decimals
    return token


@pytest.fixture
def deposit_collateral(ch, fund):
    """Deposit `amount` whole tokens of `token` into `owner`'s subaccount; returns token units."""

    def deposit_collateral(owner, token, amount, subaccount=0):
        units = int(amount * 10 ** token.decimals())
        fund(owner, token, units)
        ch.deposit(token, units, subaccount, sender=owner)
        return units

    return deposit_collateral


@pytest.fixture
def hedge(ch, make_account, other_trader):
    """Take the other side of `account`'s position in `market` from a well-funded account, so
    the market's skew is zero and no funding accrues between a view and the next block."""

    def hedge(account, market):
        make_account(other_trader, collateral_usd=1_000_000, subaccount=7)
        size = ch.positions(account, market).size
        trade_now(ch, market, -size, 0, 7, sender=other_trader)
        state = ch.market_state(market)
        assert state.long_oi == state.short_oi

    return hedge


def withdraw_events(receipt):
    return [e for e in receipt.events if e.event_name == "Withdraw"]


def free_margin(ch, account):
    equity, _, initial = ch.margin(account)
    return equity - initial


# ---------------------------------------------------------------- settlement token


def test_withdraw__settlement__pays_out_and_debits(ch, usdc, make_account, trader):
    account = make_account(trader, collateral_usd=1_000)
    held_before = ch.settlement_held()

    tx = ch.withdraw(usdc, 400 * USDC, 0, sender=trader)

    assert ch.settlement(account) == 600 * USDC
    assert usdc.balanceOf(trader) == 400 * USDC
    assert ch.settlement_held() == held_before - 400 * USDC
    assert usdc.balanceOf(ch) == ch.settlement_held()
    [event] = withdraw_events(tx)
    assert (event.account, event.token, event.amount, event.receiver) == (account, usdc.address, 400 * USDC, trader.address)


def test_withdraw__settlement_whole_balance__leaves_zero(ch, usdc, make_account, trader):
    account = make_account(trader, collateral_usd=1_000)
    ch.withdraw(usdc, 1_000 * USDC, 0, sender=trader)
    assert ch.settlement(account) == 0
    assert usdc.balanceOf(trader) == 1_000 * USDC


def test_withdraw__settlement_above_balance__reverts(ch, usdc, make_account, trader):
    make_account(trader, collateral_usd=1_000)
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, 1_000 * USDC + 1, 0, sender=trader)


def test_withdraw__settlement_from_empty_account__reverts(ch, usdc, trader):
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, 1, 0, sender=trader)


def test_withdraw__zero_amount__reverts(ch, usdc, make_account, trader):
    make_account(trader, collateral_usd=1_000)
    with ape.reverts("clearinghouse: zero amount"):
        ch.withdraw(usdc, 0, 0, sender=trader)


def test_withdraw__negative_settlement_balance__reverts(protocol, ch, usdc, deposit_collateral, trader, eth_market):
    # collateral-only account: the trading fee drives the settlement balance below zero
    deposit_collateral(trader, protocol.tokens["WETH"], 10)
    trade_now(ch, eth_market, 2 * WAD, 0, 0, sender=trader)
    account = account_id(trader, 0)
    assert ch.settlement(account) < 0
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, 1, 0, sender=trader)


def test_withdraw__other_owners_balance__not_reachable(ch, usdc, make_account, trader, other_trader):
    make_account(trader, collateral_usd=1_000)
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, 1 * USDC, 0, sender=other_trader)


# ---------------------------------------------------------------- collateral tokens


def test_withdraw__collateral_partial__keeps_mask_bit(ch, deposit_collateral, trader, collateral):
    units = deposit_collateral(trader, collateral, 3)
    slot = ch.collateral_slot(collateral)
    account = account_id(trader, 0)
    total_before = ch.collaterals(slot).total

    tx = ch.withdraw(collateral, units // 3, 0, sender=trader)

    assert ch.balances(account, slot) == units - units // 3
    assert ch.collateral_mask(account) == 1 << slot
    assert ch.collaterals(slot).total == total_before - units // 3
    assert collateral.balanceOf(trader) == units // 3
    assert collateral.balanceOf(ch) == units - units // 3
    [event] = withdraw_events(tx)
    assert (event.account, event.token, event.amount, event.receiver) == (account, collateral.address, units // 3, trader.address)


def test_withdraw__collateral_whole_balance__clears_mask_bit(ch, deposit_collateral, trader, collateral):
    units = deposit_collateral(trader, collateral, 3)
    slot = ch.collateral_slot(collateral)
    account = account_id(trader, 0)

    ch.withdraw(collateral, units, 0, sender=trader)

    assert ch.balances(account, slot) == 0
    assert ch.collateral_mask(account) == 0
    assert ch.collaterals(slot).total == 0
    assert ch.collateral_value(account) == 0
    assert collateral.balanceOf(trader) == units


def test_withdraw__collateral_above_balance__reverts(ch, deposit_collateral, trader, collateral):
    units = deposit_collateral(trader, collateral, 3)
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(collateral, units + 1, 0, sender=trader)


def test_withdraw__collateral_zero_amount__reverts(ch, deposit_collateral, trader, collateral):
    deposit_collateral(trader, collateral, 3)
    with ape.reverts("clearinghouse: zero amount"):
        ch.withdraw(collateral, 0, 0, sender=trader)


def test_withdraw__unknown_token__reverts(ch, make_token, make_account, trader):
    make_account(trader, collateral_usd=1_000)
    with ape.reverts("clearinghouse: unknown token"):
        ch.withdraw(make_token(18, "STRAY"), 1, 0, sender=trader)


def test_withdraw__collateral_from_sibling_subaccount__reverts(ch, deposit_collateral, trader, collateral):
    deposit_collateral(trader, collateral, 3, subaccount=1)
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(collateral, 1, 2, sender=trader)


# ---------------------------------------------------------------- initial margin


def test_withdraw__below_initial_margin_with_position__reverts(ch, usdc, make_account, trader):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    equity, _, initial = ch.margin(account)
    balance = ch.settlement(account)
    # leave $100 less than the initial requirement (but well within the balance)
    too_much = (equity - initial) // USDC_TO_WAD + 100 * USDC
    assert too_much < balance
    wallet = usdc.balanceOf(trader)  # the open's bond, refunded at its fill
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(usdc, too_much, 0, sender=trader)
    assert ch.settlement(account) == balance
    assert usdc.balanceOf(trader) == wallet


def test_withdraw__above_initial_margin_with_position__allowed(ch, usdc, make_account, trader):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    equity, _, initial = ch.margin(account)
    amount = (equity - initial) // USDC_TO_WAD - 100 * USDC  # keeps $100 above initial
    wallet = usdc.balanceOf(trader)  # the open's bond, refunded at its fill
    ch.withdraw(usdc, amount, 0, sender=trader)
    equity, _, initial = ch.margin(account)
    assert equity >= initial
    assert usdc.balanceOf(trader) == wallet + amount


def test_withdraw__collateral_backing_a_position__reverts(ch, deposit_collateral, trader, eth_market, collateral):
    units = deposit_collateral(trader, collateral, {6: 20_000, 8: 1, 18: 10}[collateral.decimals()])
    account = account_id(trader, 0)
    trade_now(ch, eth_market, 20 * WAD, 0, 0, sender=trader)  # ~$40k notional, initial ~$2.4k
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(collateral, units, 0, sender=trader)
    assert ch.balances(account, ch.collateral_slot(collateral)) == units


def test_withdraw__while_paused__allowed(configurator, ch, usdc, make_account, trader, deployer):
    account = make_account(trader, collateral_usd=10_000, leverage=2)
    configurator.pause(sender=deployer)
    wallet = usdc.balanceOf(trader)  # the open's bond, refunded at its fill
    ch.withdraw(usdc, 1_000 * USDC, 0, sender=trader)
    assert ch.paused()
    assert usdc.balanceOf(trader) == wallet + 1_000 * USDC
    assert ch.margin(account)[0] >= ch.margin(account)[2]


def test_withdraw__while_paused__margin_still_checked(configurator, ch, usdc, make_account, trader, deployer):
    make_account(trader, collateral_usd=10_000, leverage=5)
    configurator.pause(sender=deployer)
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(usdc, 9_000 * USDC, 0, sender=trader)


# ---------------------------------------------------------------- MarginLens.max_withdraw


def test_max_withdraw__no_position__whole_balance(protocol, ch, usdc, make_account, deposit_collateral, trader, collateral):
    account = make_account(trader, collateral_usd=1_000)
    units = deposit_collateral(trader, collateral, 2)
    assert protocol.lens.max_withdraw(account, usdc) == 1_000 * USDC
    assert protocol.lens.max_withdraw(account, collateral) == units
    ch.withdraw(collateral, units, 0, sender=trader)
    ch.withdraw(usdc, 1_000 * USDC, 0, sender=trader)
    assert ch.margin(account)[0] == 0


def test_max_withdraw__settlement_with_position__is_the_exact_limit(protocol, ch, usdc, make_account, hedge, trader, eth_market):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    hedge(account, eth_market)
    max_amount = protocol.lens.max_withdraw(account, usdc)
    assert 0 < max_amount < ch.settlement(account)

    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(usdc, max_amount + 10 * USDC, 0, sender=trader)
    ch.withdraw(usdc, max_amount, 0, sender=trader)

    # what is left above initial margin is less than one settlement unit
    assert 0 <= free_margin(ch, account) < USDC_TO_WAD
    assert protocol.lens.max_withdraw(account, usdc) == 0


def lens_interest_room(ch, debt):
    """What `MarginLens.max_withdraw` keeps free for a debt of `debt` token units: its interest
    over FUNDING_BUFFER_SECONDS (300) at the highest rate (rate_base + rate_slope), rounded up,
    plus that interest's initial margin, WAD USD."""
    rate_base, rate_slope, debt_imr, _ = ch.debt_terms()
    growth = ceil_div(debt * USDC_TO_WAD * (rate_base + rate_slope) * 300, SECONDS_PER_YEAR * WAD)
    return growth + mul_up(growth, debt_imr)


def test_max_withdraw__collateral_with_position__is_the_exact_limit(
    protocol, ch, deposit_collateral, hedge, trader, eth_market, collateral, chain
):
    units = deposit_collateral(trader, collateral, {6: 20_000, 8: 1, 18: 10}[collateral.decimals()])
    account = account_id(trader, 0)
    trade_now(ch, eth_market, 20 * WAD, 0, 0, sender=trader)
    hedge(account, eth_market)
    max_units = protocol.lens.max_withdraw(account, collateral)
    assert 0 < max_units < units
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(collateral, max_units + units // 100, 0, sender=trader)

    # the fee is the account's only settlement balance: a debt, growing by interest every
    # second, for which the lens keeps room. Quoted and withdrawn in one block, that room is
    # exactly what is left on top of the rounding
    when = chain.pending_timestamp + 1
    chain.pending_timestamp = when
    max_units = protocol.lens.max_withdraw(account, collateral, block_id="pending")
    debt = -ch.settlement(account, block_id="pending")
    assert debt > 0
    receipt = ch.withdraw(collateral, max_units, 0, sender=trader)
    assert receipt.timestamp == when and -ch.settlement(account) == debt

    # what is left above initial margin is the interest room and less than one more token unit
    room = lens_interest_room(ch, debt)
    assert room > 0
    col = ch.collaterals(ch.collateral_slot(collateral))
    one_unit = -(-protocol.oracle.price(collateral) * col.weight // WAD) // col.unit + 1  # WAD USD
    assert room <= free_margin(ch, account) <= room + one_unit
    assert collateral.balanceOf(trader) == max_units


def test_max_withdraw__underwater_on_initial__zero(protocol, ch, usdc, make_account, trader, set_price):
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    set_price("WETH", 1_900)  # -5% on 10x: equity falls below the initial requirement
    assert free_margin(ch, account) < 0
    assert protocol.lens.max_withdraw(account, usdc) == 0
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(usdc, 1 * USDC, 0, sender=trader)


def test_max_withdraw__account_paying_funding__quote_holds_a_block_later(
    protocol, ch, deposit_collateral, trader, eth_market, chain
):
    weth = protocol.tokens["WETH"]
    deposit_collateral(trader, weth, 10)  # whole tokens
    account = account_id(trader, 0)
    trade_now(ch, eth_market, 20 * WAD, 0, 0, sender=trader)  # alone on the long side: pays funding
    assert protocol.lens.funding_rate(eth_market) > 0
    quote = protocol.lens.max_withdraw(account, weth)
    chain.pending_timestamp += 60  # the withdrawal lands a minute later, after more funding
    ch.withdraw(weth, quote, 0, sender=trader)
    assert weth.balanceOf(trader) == quote
