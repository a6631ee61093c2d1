"""Token quirks: fee-on-transfer, 6 and 8 decimals, and missing or false return values.

The incidents: fee-on-transfer tokens (STA/Balancer 2020) were credited above what arrived;
USDT's missing bool bricked callers; tokens returning false got deposits credited that never came.

What marginsim does: `Clearinghouse._pull` compares its balance before and after every pull and
refuses any shortfall with "clearinghouse: fee on transfer". Every call accepts empty return
data (`default_return_value=True`) and refuses `false` with "clearinghouse: transfer failed".
Amounts stay in each token's own units: a collateral's value is `amount * price // unit *
weight // WAD`, and everything the account owes rounds up while everything it is credited
rounds down.

What this proves: (a) a fee-on-transfer collateral or settlement coin is refused, with nothing
changed, unless the fee rounds to zero, in which case the full amount arrived and is credited.
A fee switched on after deposits leaves the books exact: the receiver bears the fee. The
LiquidityPool has no check of its own, so a fee-on-transfer settlement coin is refused by the
Clearinghouse behind it: safe, but the LP sees the token's or the Clearinghouse's message.
(b) With 6- and 8-decimal collateral and a 6-decimal settlement coin, deposits, valuation,
withdrawal to the last unit of margin and the collateral sale all match the formulas to the
unit, and each rounding (the withdrawal limit, a one-unit sale, a tiny trade's fee and PnL) goes
in the protocol's favour. (c) A USDT-style token that returns nothing works; one that returns
false is refused with "clearinghouse: transfer failed" (or "pool: transfer failed").
"""

from dataclasses import replace

import ape
import pytest

from marginsim import risk
from marginsim.orders import deposit_now, redeem_now, trade_now
from marginsim.protocol import account_id, deploy_protocol
from tests.e2e.attacks import (
    MAX_SIZE,
    TO_WAD,
    USDC,
    WAD,
    books,
    deploy_core,
    event,
    list_collateral,
    publish,
    quiet_config,
)

FEE_BPS = 100  # 1% fee on transfer
COOLDOWN = 900  # LiquidityPool: seconds before freshly minted shares may leave


def ceil_div(a, b):
    return -(-a // b)


def collateral_term(amount, price, unit, weight):
    """One collateral's haircut value, WAD, exactly as `Clearinghouse._collateral_value`."""
    return amount * price // unit * weight // WAD


def funded(token, who, amount, spender):
    token.mint(who, amount, sender=who)
    token.approve(spender, amount, sender=who)


# ================================================================ (a) fee on transfer


@pytest.fixture(scope="module")
def protocol(project, deployer, lp):
    protocol = deploy_protocol(project, deployer, quiet_config())
    funded(protocol.settlement, lp, 1_000_000 * USDC, protocol.pool)
    deposit_now(protocol.pool, 1_000_000 * USDC, lp, sender=lp)
    return protocol


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(
    protocol,
    fot_collateral,
    fot_core,
    tokens,
    no_return_collateral,
    false_collateral,
    deployer,
    trader,
    lp,
    attacker,
    keeper,
    other_trader,
    engine,
):
    """Request the module-scoped fixtures before any test, so ape's isolation snapshots them
    once instead of rebasing."""
    # the shared `engine` fixture resolves `protocol` to this module's deployment
    assert engine.address == protocol.liquidation_engine.address


@pytest.fixture(scope="module")
def fot_collateral(project, protocol, deployer):
    token = deployer.deploy(project.FeeOnTransferERC20, "Fee Token", "FOT", 18, FEE_BPS)
    list_collateral(protocol, deployer, token, 10, project=project)
    return token


def test_fee_on_transfer_collateral__deposit__refused_and_nothing_changes(project, protocol, fot_collateral, trader):
    ch = protocol.clearinghouse
    funded(fot_collateral, trader, 10 * WAD, ch)
    before = books(protocol, project, [account_id(trader)])

    with ape.reverts("clearinghouse: fee on transfer"):
        ch.deposit(fot_collateral, 10 * WAD, 0, sender=trader)

    assert books(protocol, project, [account_id(trader)]) == before
    assert fot_collateral.balanceOf(trader) == 10 * WAD
    assert fot_collateral.balanceOf(ch) == 0


def test_fee_on_transfer_collateral__fee_rounds_to_zero__full_amount_credited(project, protocol, fot_collateral, trader):
    """99 wei at 1% pays a fee of 0: the Clearinghouse received all of it, so it credits all of it."""
    ch = protocol.clearinghouse
    funded(fot_collateral, trader, 99, ch)
    ch.deposit(fot_collateral, 99, 0, sender=trader)
    slot = ch.collateral_slot(fot_collateral)
    assert ch.balances(account_id(trader), slot) == 99
    assert fot_collateral.balanceOf(ch) == ch.collaterals(slot).total == 99
    funded(fot_collateral, trader, 100, ch)
    with ape.reverts("clearinghouse: fee on transfer"):  # 100 wei pays 1 wei of fee
        ch.deposit(fot_collateral, 100, 0, sender=trader)


def test_fee_on_transfer_collateral__fee_switched_on_later__books_stay_exact(project, protocol, fot_collateral, deployer, trader):
    """USDT's fee switch: deposits made without a fee, the fee turned on afterwards. A withdrawal
    sends `amount`, so the Clearinghouse's holding and its books fall by the same amount; the
    receiver bears the fee. Further deposits are refused."""
    ch = protocol.clearinghouse
    slot = ch.collateral_slot(fot_collateral)
    fot_collateral.set_fee(0, sender=deployer)
    funded(fot_collateral, trader, 10 * WAD, ch)
    ch.deposit(fot_collateral, 10 * WAD, 0, sender=trader)
    fot_collateral.set_fee(FEE_BPS, sender=deployer)

    ch.withdraw(fot_collateral, 4 * WAD, 0, sender=trader)

    assert fot_collateral.balanceOf(trader) == 4 * WAD * 99 // 100  # 3.96: the fee was the receiver's
    assert ch.balances(account_id(trader), slot) == 6 * WAD
    assert fot_collateral.balanceOf(ch) == ch.collaterals(slot).total == 6 * WAD
    funded(fot_collateral, trader, WAD, ch)
    with ape.reverts("clearinghouse: fee on transfer"):
        ch.deposit(fot_collateral, WAD, 0, sender=trader)


@pytest.fixture(scope="module")
def fot_core(project, deployer):
    """A protocol whose settlement coin takes a 1% fee on transfer."""
    coin = deployer.deploy(project.FeeOnTransferERC20, "Fee USD", "fUSD", 6, FEE_BPS)
    return deploy_core(project, deployer, coin)


def test_fee_on_transfer_settlement__deposit_and_insurance__refused(project, fot_core, trader):
    ch, coin = fot_core.clearinghouse, fot_core.settlement
    funded(coin, trader, 1_000 * USDC, ch)
    with ape.reverts("clearinghouse: fee on transfer"):
        ch.deposit(coin, 1_000 * USDC, 0, sender=trader)
    with ape.reverts("clearinghouse: fee on transfer"):
        ch.fund_insurance(1_000 * USDC, sender=trader)
    assert (ch.settlement_held(), coin.balanceOf(ch), ch.insurance_balance()) == (0, 0, 0)
    assert ch.settlement(account_id(trader)) == 0
    assert coin.balanceOf(trader) == 1_000 * USDC


def test_fee_on_transfer_settlement__pool_deposit__refused_behind_the_pool(fot_core, lp, attacker):
    """The pool pulls `assets` from the LP (receiving 99%), then the Clearinghouse pulls
    `assets` from the pool. Alone, the pool is short of the fee and the token refuses. Topped up by a
    donation, the pool can send it all, the Clearinghouse again receives 99%, and it refuses.
    Either way nothing is minted: safe, though the pool itself has no balance check."""
    pool, ch, coin = fot_core.pool, fot_core.clearinghouse, fot_core.settlement
    funded(coin, lp, 1_000 * USDC, pool)
    with ape.reverts("erc20: burn amount exceeds balance"):  # the token's words: the fee does not fit
        deposit_now(pool, 1_000 * USDC, lp, sender=lp)

    coin.mint(attacker, 20 * USDC, sender=attacker)
    coin.transfer(pool, 20 * USDC, sender=attacker)  # the pool now holds 19.8 of its own
    with ape.reverts("clearinghouse: fee on transfer"):
        deposit_now(pool, 1_000 * USDC, lp, sender=lp)
    with ape.reverts("clearinghouse: fee on transfer"):
        pool.mint(1_000 * USDC * 10**6, lp, sender=lp)

    assert (pool.totalSupply(), pool.balanceOf(lp), pool.totalAssets()) == (0, 0, 0)
    assert (ch.pool_balance(), ch.settlement_held(), coin.balanceOf(ch)) == (0, 0, 0)
    assert coin.balanceOf(lp) == 1_000 * USDC


def test_fee_on_transfer_settlement__fee_switched_on_later__books_stay_exact(chain, fot_core, deployer, trader, lp):
    pool, ch, coin = fot_core.pool, fot_core.clearinghouse, fot_core.settlement
    coin.set_fee(0, sender=deployer)
    funded(coin, trader, 1_000 * USDC, ch)
    ch.deposit(coin, 1_000 * USDC, 0, sender=trader)
    funded(coin, lp, 1_000 * USDC, pool)
    shares = event(deposit_now(pool, 1_000 * USDC, lp, sender=lp), "Deposit").shares
    chain.pending_timestamp += COOLDOWN
    coin.set_fee(FEE_BPS, sender=deployer)

    ch.withdraw(coin, 500 * USDC, 0, sender=trader)
    assets = event(redeem_now(pool, shares, lp, lp, sender=lp), "Withdraw").assets

    assert assets == 1_000 * USDC  # the pool paid the LP's whole claim ...
    assert coin.balanceOf(lp) == assets * 99 // 100  # ... and the token took 1% on the way
    assert coin.balanceOf(trader) == 500 * USDC * 99 // 100
    assert ch.settlement(account_id(trader)) == 500 * USDC
    assert coin.balanceOf(ch) == ch.settlement_held() == 500 * USDC


# ================================================================ (b) 6 and 8 decimals


@pytest.fixture(scope="module")
def tokens(protocol):
    wbtc, usdt = protocol.tokens["WBTC"], protocol.tokens["USDT"]
    assert (wbtc.decimals(), usdt.decimals(), protocol.settlement.decimals()) == (8, 6, 6)
    return wbtc, usdt


def slot_of(ch, token):
    slot = ch.collateral_slot(token)
    return slot, ch.collaterals(slot)


def test_deposit__one_unit_of_six_and_eight_decimals__credited_and_valued_exactly(protocol, tokens, trader):
    ch, oracle = protocol.clearinghouse, protocol.oracle
    account = account_id(trader)
    wbtc, usdt = tokens
    for token, amount in ((wbtc, 1), (usdt, 1)):
        funded(token, trader, amount, ch)
        ch.deposit(token, amount, 0, sender=trader)
    # one satoshi at $30,000 is $0.0003, 0.85 of it counted; one USDT unit at $1, 0.95 counted
    assert ch.collateral_value(account) == 255 * 10**12 + 95 * 10**10

    odd = {wbtc: 123_456_789, usdt: 987_654_321}
    for token, amount in odd.items():
        funded(token, trader, amount, ch)
        ch.deposit(token, amount, 0, sender=trader)
    expected = 0
    for token, extra in odd.items():
        slot, col = slot_of(ch, token)
        assert ch.balances(account, slot) == extra + 1
        assert token.balanceOf(ch) == col.total == extra + 1
        expected += collateral_term(extra + 1, oracle.price(token), col.unit, col.weight)
    assert ch.collateral_value(account) == expected
    assert ch.margin(account)[0] == expected  # no settlement balance, no position: equity is the collateral


@pytest.fixture
def leveraged(protocol, tokens, trader):
    """0.5 WBTC and 1,000 USDT of collateral (no USDC) and an ETH long sized to leave a few
    hundred dollars above initial margin once its fee and premium are paid."""
    ch = protocol.clearinghouse
    wbtc, usdt = tokens
    for token, amount in ((wbtc, 50_000_000), (usdt, 1_000 * 10**6)):
        funded(token, trader, amount, ch)
        ch.deposit(token, amount, 0, sender=trader)
    account = account_id(trader)
    eth_price = protocol.oracle.price(protocol.tokens["WETH"])
    initial_rate = 6 * 10**16  # 2 x max(3% base, 3 * 80% * sqrt(1h / 1y))
    size = (ch.collateral_value(account) - 400 * WAD) * WAD // initial_rate * WAD // eth_price
    trade_now(ch, protocol.markets["ETH-PERP"], size, 0, 0, sender=trader)
    equity, _, initial = ch.margin(account)
    assert 100 * WAD < equity - initial < 400 * WAD
    return account


@pytest.mark.parametrize("symbol", ["WBTC", "USDT"])
def test_withdraw__to_the_last_unit_of_margin__one_unit_more_refused(protocol, leveraged, trader, symbol, chain):
    ch, oracle = protocol.clearinghouse, protocol.oracle
    token = protocol.tokens[symbol]
    slot, col = slot_of(ch, token)
    balance = ch.balances(leveraged, slot)
    price = oracle.price(token)
    # the fee left the account a debt (it holds no USDC), which grows by interest every second:
    # the margin the withdrawals meet is the one at their block, mirrored exactly from the
    # latest one (marginsim.risk, the debt with its interest to that block)
    written, index_at = ch.debt_of(leveraged)
    assert written > 0
    debt = risk.read_debt_view(ch)
    latest = risk.snapshot_account(ch, oracle, leveraged, chain.blocks.head.timestamp)
    assert risk.margin(latest) == tuple(ch.margin(leveraged))  # the mirror is exact
    when = chain.pending_timestamp + 5  # the block both withdrawals are tried in
    at_withdrawal = replace(latest, settlement=debt.balance(-written, index_at, when), timestamp=when)
    equity, _, initial = risk.margin(at_withdrawal)
    assert equity < risk.margin(latest)[0]  # the interest is counted
    free = equity - initial

    def value_lost(units):
        return collateral_term(balance, price, col.unit, col.weight) - collateral_term(
            balance - units, price, col.unit, col.weight
        )

    lo, hi = 0, balance  # the most units whose haircut value fits in `free`
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if value_lost(mid) <= free else (lo, mid - 1)
    most = lo
    assert 0 < most < balance

    # one unit more is refused and `most` accepted in the same block: the refusal is undone
    before_refusal = chain.snapshot()
    chain.pending_timestamp = when
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(token, most + 1, 0, sender=trader)
    chain.restore(before_refusal)
    chain.pending_timestamp = when
    wallet = token.balanceOf(trader)
    receipt = ch.withdraw(token, most, 0, sender=trader)
    assert receipt.timestamp == when

    assert token.balanceOf(trader) - wallet == most
    assert ch.balances(leveraged, slot) == balance - most
    assert token.balanceOf(ch) == ch.collaterals(slot).total
    equity_after, _, initial_after = ch.margin(leveraged)
    assert equity_after == equity - value_lost(most)
    # what is left above initial margin is less than one more unit's haircut value
    assert 0 <= equity_after - initial_after < value_lost(most + 1) - value_lost(most)


def test_collateral_sale__six_and_eight_decimals__paid_to_the_unit_rounded_up(
    project, protocol, leveraged, tokens, deployer, keeper, other_trader, engine
):
    ch, oracle, usdc = protocol.clearinghouse, protocol.oracle, protocol.settlement
    wbtc, usdt = tokens
    eth = protocol.markets["ETH-PERP"]
    publish(protocol, "WETH", 1_850, deployer)  # -7.5%: the long's loss exceeds its collateral's haircut value
    assert ch.margin(leveraged)[0] < 0
    engine.liquidate(leveraged, eth, MAX_SIZE, sender=keeper)
    assert ch.market_mask(leveraged) == 0 and ch.settlement(leveraged) < 0
    buyer = other_trader
    funded(usdc, buyer, 100_000 * USDC, ch)

    def sale(token, max_amount):
        """The sale, checked against the debt as its block reads it (with its interest to that
        block, from reads at the latest one). Returns (the sale event, the discounted price, that debt)."""
        slot, col = slot_of(ch, token)
        balance = ch.balances(leveraged, slot)
        written, index_at = ch.debt_of(leveraged)
        debt_view = risk.read_debt_view(ch)
        discounted = oracle.price(token) * (WAD - col.liquidation_discount) // WAD
        tx = engine.liquidate_collateral(leveraged, token, max_amount, sender=buyer)
        debt = risk.debt_now(written, debt_view.index_at(tx.timestamp), index_at)
        amount = min(ceil_div(debt * TO_WAD * col.unit, discounted), balance, max_amount)
        paid = ceil_div(amount * discounted, col.unit * TO_WAD)
        sold = event(tx, "CollateralLiquidation")
        assert (sold.amount, sold.paid) == (amount, paid)
        return sold, discounted, debt

    # one USDT unit is worth 0.98 of a settlement unit at the 2% discount: the buyer pays 1
    sold, discounted, _ = sale(usdt, 1)
    assert (sold.amount, sold.paid, discounted) == (1, 1, 98 * 10**16)
    # one satoshi at $30,001.23 less 5% is worth 285.011685 settlement units: the buyer pays 286
    publish(protocol, "WBTC", 30_001.23, deployer)
    sold, discounted, _ = sale(wbtc, 1)
    assert (sold.amount, sold.paid) == (1, 286)
    assert discounted == 28_501_168_500 * 10**12

    # then everything: the debt is larger than the collateral, so the rest is bad debt
    bad_debt_before = ch.total_bad_debt()
    sale(wbtc, MAX_SIZE)
    sold, _, debt_left = sale(usdt, MAX_SIZE)  # the debt left, with its interest to the last sale
    assert ch.collateral_mask(leveraged) == 0
    assert ch.settlement(leveraged) == 0
    assert ch.total_bad_debt() - bad_debt_before == debt_left - sold.paid
    book = books(protocol, project, [leveraged])
    book.assert_consistent()


def test_tiny_trade__six_decimal_settlement__fee_and_pnl_round_against_the_trader(protocol, trader):
    """A 1e-7 ETH round trip: $0.0002 of notional. Each fee (0.05%, a tenth of a unit) is
    charged as a whole unit, and the realised PnL (the cost basis rounded up against the close
    rounded down: zero or a fraction of a unit below it) is floored to a whole unit: the trader
    pays 2 or 3 units, and the pool gets exactly what the trader paid."""
    ch, usdc = protocol.clearinghouse, protocol.settlement
    eth = protocol.markets["ETH-PERP"]
    funded(usdc, trader, 10 * USDC, ch)
    ch.deposit(usdc, 10 * USDC, 0, sender=trader)
    account = account_id(trader)
    pool_before = ch.pool_balance()
    size = 10**11

    opened = event(trade_now(ch, eth, size, 0, 0, sender=trader), "Trade")
    closed = event(trade_now(ch, eth, -size, 0, 0, sender=trader), "Trade")

    fee_rate = ch.markets(eth).fee
    for trade in (opened, closed):
        fee_wad = ceil_div(ceil_div(size * trade.fill_price, WAD) * fee_rate, WAD)
        assert fee_wad < TO_WAD  # under one unit ...
        assert trade.fee == 1  # ... charged as one
    cost = ceil_div(size * opened.fill_price, WAD)  # the cost basis rounds up
    realised = size * closed.fill_price // WAD - cost
    assert -TO_WAD < realised <= 0
    assert closed.realised_pnl == realised // TO_WAD  # floored to a whole unit against the trader
    paid = 2 - closed.realised_pnl  # two fees and the floored PnL
    assert paid in (2, 3)
    assert ch.settlement(account) == 10 * USDC - paid
    assert ch.pool_balance() - pool_before == paid
    assert usdc.balanceOf(ch) == ch.settlement_held()


# ================================================================ (c) return values


@pytest.fixture(scope="module")
def no_return_collateral(project, protocol, deployer):
    token = deployer.deploy(project.NoReturnERC20, "Tether-like", "USDTX", 6)
    list_collateral(protocol, deployer, token, 1, weight=0.95, discount=0.02, project=project)
    return token


@pytest.fixture(scope="module")
def false_collateral(project, protocol, deployer):
    token = deployer.deploy(project.FalseReturnERC20, "False Token", "FALSE", 18)
    list_collateral(protocol, deployer, token, 10, project=project)
    return token


def test_no_return_value_collateral__deposit_and_withdraw__work(project, protocol, no_return_collateral, trader):
    ch, token = protocol.clearinghouse, no_return_collateral
    token.mint(trader, 5_000 * 10**6, sender=trader)
    token.approve(ch, 5_000 * 10**6, sender=trader)
    ch.deposit(token, 5_000 * 10**6, 0, sender=trader)
    ch.withdraw(token, 1_234_567, 0, sender=trader)
    slot = ch.collateral_slot(token)
    assert ch.balances(account_id(trader), slot) == 5_000 * 10**6 - 1_234_567
    assert token.balanceOf(trader) == 1_234_567
    books(protocol, project, [account_id(trader)]).assert_consistent()


def test_false_returning_collateral__deposit_and_withdraw__refused(project, protocol, false_collateral, deployer, trader):
    ch, token = protocol.clearinghouse, false_collateral
    funded(token, trader, 10 * WAD, ch)
    ch.deposit(token, 5 * WAD, 0, sender=trader)
    token.set_refusing(True, sender=deployer)
    before = books(protocol, project, [account_id(trader)])

    with ape.reverts("clearinghouse: transfer failed"):
        ch.deposit(token, 5 * WAD, 0, sender=trader)
    with ape.reverts("clearinghouse: transfer failed"):
        ch.withdraw(token, 5 * WAD, 0, sender=trader)

    assert books(protocol, project, [account_id(trader)]) == before
    assert token.balanceOf(trader) == 5 * WAD and token.balanceOf(ch) == 5 * WAD


def test_no_return_value_settlement__deposit_withdraw_and_pool__work(project, deployer, chain, trader, lp):
    coin = deployer.deploy(project.NoReturnERC20, "Tether-like USD", "USDTX", 6)
    core = deploy_core(project, deployer, coin)
    ch, pool = core.clearinghouse, core.pool
    coin.mint(trader, 1_000 * USDC, sender=trader)
    coin.approve(ch, 1_000 * USDC, sender=trader)
    ch.deposit(coin, 1_000 * USDC, 0, sender=trader)
    ch.withdraw(coin, 400 * USDC, 0, sender=trader)
    coin.mint(lp, 1_000 * USDC, sender=lp)
    coin.approve(pool, 1_000 * USDC, sender=lp)
    shares = event(deposit_now(pool, 1_000 * USDC, lp, sender=lp), "Deposit").shares
    chain.pending_timestamp += COOLDOWN
    redeem_now(pool, shares // 2, lp, lp, sender=lp)

    assert ch.settlement(account_id(trader)) == 600 * USDC
    assert coin.balanceOf(trader) == 400 * USDC
    assert coin.balanceOf(lp) == 500 * USDC
    assert coin.balanceOf(ch) == ch.settlement_held() == 1_100 * USDC


def test_false_returning_settlement__clearinghouse_and_pool__refused(project, deployer, trader, lp):
    coin = deployer.deploy(project.FalseReturnERC20, "False USD", "fUSD", 6)
    core = deploy_core(project, deployer, coin)
    ch, pool = core.clearinghouse, core.pool
    funded(coin, trader, 1_000 * USDC, ch)
    funded(coin, lp, 1_000 * USDC, pool)
    coin.set_refusing(True, sender=deployer)

    with ape.reverts("clearinghouse: transfer failed"):
        ch.deposit(coin, 1_000 * USDC, 0, sender=trader)
    with ape.reverts("clearinghouse: transfer failed"):
        ch.fund_insurance(1_000 * USDC, sender=trader)
    with ape.reverts("pool: transfer failed"):
        deposit_now(pool, 1_000 * USDC, lp, sender=lp)

    assert (ch.settlement_held(), ch.insurance_balance(), pool.totalSupply()) == (0, 0, 0)
    assert (coin.balanceOf(trader), coin.balanceOf(lp)) == (1_000 * USDC, 1_000 * USDC)
