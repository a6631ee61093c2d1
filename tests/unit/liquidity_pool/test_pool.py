"""LiquidityPool: ERC-4626 round trips, rounding in the pool's favour, donations, the
first-depositor inflation attack, and how traders' PnL moves the pool's value and liquidity."""

import ape
import pytest

from marginsim.orders import deposit_now, redeem_now, trade_now, withdraw_now
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol
from tests.conftest import USDC, WAD
from tests.e2e.attacks import reserve_out_of_the_way

USDC_TO_WAD = 10**12
VIRTUAL_SHARES = 10**6  # 10 ** DECIMALS_OFFSET


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def empty(project, deployer):
    """A second protocol whose pool nobody has deposited into (the conftest one gets seeded)."""
    return deploy_protocol(project, deployer, DEFAULT_CONFIG)


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(
    empty, protocol, ch, usdc, fund, seeded_pool, make_account, set_price, deployer, trader, lp, attacker, other_trader
):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once instead of rebasing."""
    # the pool's own mechanics, apart from the open-interest reserve (tests/unit/orders/test_reserve.py):
    # some positions here are larger than the pools they trade against
    reserve_out_of_the_way(empty, deployer)
    reserve_out_of_the_way(protocol, deployer)


@pytest.fixture(scope="module")
def pool(protocol):
    return protocol.pool


def mint_and_approve(token, who, amount, spender):
    token.mint(who, amount, sender=who)
    token.approve(spender, amount, sender=who)


def event(receipt, name):
    [found] = [e for e in receipt.events if e.event_name == name]
    return found


COOLDOWN = 900  # LiquidityPool: seconds after a deposit before the shares may leave


def wait_cooldown():
    """Let a deposit's cooldown pass (well inside the oracle heartbeat)."""
    ape.chain.pending_timestamp += COOLDOWN


@pytest.fixture(autouse=True)
def _past_seed_cooldowns(_module_fixtures_first):
    # the module's seeded deposits happened just before: every test starts after their cooldown
    wait_cooldown()


def lp_deposit(protocol, who, amount):
    """Mint `amount` settlement units to `who` and deposit them into `protocol`'s pool; returns
    the shares minted, once their cooldown has passed."""
    mint_and_approve(protocol.settlement, who, amount, protocol.pool)
    shares = event(deposit_now(protocol.pool, amount, who, sender=who), "Deposit").shares
    wait_cooldown()
    return shares


def open_position(protocol, who, collateral_usd, size):
    settlement, ch = protocol.settlement, protocol.clearinghouse
    mint_and_approve(settlement, who, collateral_usd * USDC, ch)
    ch.deposit(settlement, collateral_usd * USDC, 0, sender=who)
    trade_now(ch, protocol.markets["ETH-PERP"], size, 0, 0, sender=who)
    return account_id(who, 0)


def set_eth_price(protocol, deployer, price_usd):
    feed = protocol.feeds["WETH"]
    feed.updateAnswer(int(price_usd * 10 ** feed.decimals()), sender=deployer)
    protocol.oracle.sync(protocol.tokens["WETH"], sender=deployer)


@pytest.fixture
def fees_paid(protocol, ch, make_account, trader, eth_market):
    """A trader opens and closes 37 ETH: the pool earns the fees, so assets per share are no
    longer a round number and every rounding direction shows."""
    make_account(trader, collateral_usd=100_000)
    trade_now(ch, eth_market, 37 * WAD, 0, 0, sender=trader)
    trade_now(ch, eth_market, -37 * WAD, 0, 0, sender=trader)
    state = ch.market_state(eth_market)
    assert (state.long_oi, state.short_oi, state.total_cost) == (0, 0, 0)
    assert protocol.pool.totalAssets() > 10_000_000 * USDC


# ---------------------------------------------------------------- round trips


def test_deposit__first_deposit__shares_and_custody(empty, lp):
    pool, usdc, ch = empty.pool, empty.settlement, empty.clearinghouse
    mint_and_approve(usdc, lp, 1_000 * USDC, pool)
    assert pool.previewDeposit(1_000 * USDC) == 1_000 * USDC * VIRTUAL_SHARES

    tx = deposit_now(pool, 1_000 * USDC, lp, sender=lp)

    deposit = event(tx, "Deposit")
    assert (deposit.sender, deposit.owner, deposit.assets, deposit.shares) == (lp.address, lp.address, 1_000 * USDC, 10**15)
    assert pool.balanceOf(lp) == pool.totalSupply() == 10**15
    assert pool.totalAssets() == 1_000 * USDC
    assert ch.pool_balance() == 1_000 * USDC
    assert usdc.balanceOf(pool) == 0  # the assets live in the clearinghouse
    assert usdc.balanceOf(ch) == ch.settlement_held() == 1_000 * USDC


def test_deposit_then_redeem__round_trip_returns_the_deposit(empty, lp):
    pool, usdc = empty.pool, empty.settlement
    shares = lp_deposit(empty, lp, 1_000 * USDC + 1)
    tx = redeem_now(pool, shares, lp, lp, sender=lp)
    withdraw = event(tx, "Withdraw")
    assert (withdraw.receiver, withdraw.owner, withdraw.assets, withdraw.shares) == (
        lp.address,
        lp.address,
        1_000 * USDC + 1,
        shares,
    )
    assert usdc.balanceOf(lp) == 1_000 * USDC + 1
    assert pool.totalSupply() == 0
    assert empty.clearinghouse.pool_balance() == 0


def test_mint_then_withdraw__round_trip(empty, lp):
    pool, usdc = empty.pool, empty.settlement
    shares = 5 * 10**14
    cost = pool.previewMint(shares)
    mint_and_approve(usdc, lp, cost, pool)
    tx = pool.mint(shares, lp, sender=lp)
    wait_cooldown()
    assert event(tx, "Deposit").assets == cost == 500 * USDC
    assert pool.balanceOf(lp) == shares

    burned = pool.previewWithdraw(cost)
    tx = withdraw_now(pool, cost, lp, lp, sender=lp)
    assert event(tx, "Withdraw").shares == burned == shares
    assert pool.balanceOf(lp) == 0
    assert usdc.balanceOf(lp) == cost


def test_redeem__on_behalf__needs_allowance(pool, usdc, lp, attacker):
    with ape.reverts("erc20: insufficient allowance"):
        redeem_now(pool, 10**12, attacker, lp, sender=attacker)
    pool.approve(attacker, 10**12, sender=lp)
    tx = redeem_now(pool, 10**12, attacker, lp, sender=attacker)
    assert pool.allowance(lp, attacker) == 0
    assert usdc.balanceOf(attacker) == event(tx, "Withdraw").assets == 10**6


def test_redeem__more_than_balance__reverts(pool, lp):
    with ape.reverts("pool: insufficient shares"):
        redeem_now(pool, pool.balanceOf(lp) + 1, lp, lp, sender=lp)


@pytest.mark.parametrize("entry", ["deposit", "mint", "withdraw", "redeem"])
def test_zero_amount__reverts(pool, lp, entry):
    call = {
        "deposit": lambda: deposit_now(pool, 0, lp, sender=lp),
        "mint": lambda: pool.mint(0, lp, sender=lp),
        "withdraw": lambda: withdraw_now(pool, 0, lp, lp, sender=lp),
        "redeem": lambda: redeem_now(pool, 0, lp, lp, sender=lp),
    }[entry]
    with ape.reverts("pool: zero amount"):
        call()


@pytest.mark.parametrize("amount", [1, 1_000_003])
def test_withdraw__shares_burned_round_up(pool, fees_paid, amount):
    # assets per share are not a round number now: burning rounds up, minting down
    assert pool.previewWithdraw(amount) == pool.convertToShares(amount) + 1
    assert pool.previewDeposit(amount) == pool.convertToShares(amount)


@pytest.mark.parametrize("caller", ["trader", "lp"])
@pytest.mark.parametrize("entry", ["pool_deposit", "pool_withdraw"])
def test_clearinghouse_custody__only_the_pool__reverts_for_others(ch, request, caller, entry):
    who = request.getfixturevalue(caller)
    with ape.reverts("clearinghouse: not pool"):
        if entry == "pool_deposit":
            ch.pool_deposit(1, sender=who)
        else:
            ch.pool_withdraw(1, who, sender=who)


# ---------------------------------------------------------------- rounding in the pool's favour


AMOUNTS = [1, 7, 1_000_003, 123_456_789_012]


@pytest.mark.parametrize("amount", AMOUNTS)
def test_rounding__deposit_then_redeem__never_returns_more(pool, usdc, other_trader, fees_paid, amount):
    preview = pool.previewDeposit(amount)
    shares = lp_deposit_seeded(pool, usdc, other_trader, amount)
    assert shares == preview < amount * VIRTUAL_SHARES  # fewer shares than at launch
    assets_back = redeem_all(pool, other_trader, shares)
    assert assets_back <= amount
    assert amount - assets_back <= 1  # and loses at most the rounding


@pytest.mark.parametrize("amount", AMOUNTS)
def test_rounding__previews_favour_the_pool(pool, fees_paid, amount):
    assert pool.previewDeposit(amount) <= pool.previewWithdraw(amount)
    shares = pool.previewDeposit(amount)
    assert pool.previewMint(shares) >= pool.previewRedeem(shares)
    assert pool.previewMint(shares) <= amount  # what those shares cost is at most what buys them
    assert pool.previewRedeem(pool.previewWithdraw(amount)) >= amount


@pytest.mark.parametrize("shares", [1, 999_999, 10**6 + 1, 123_456_789_012_345])
def test_rounding__mint_then_redeem__never_returns_more(pool, usdc, other_trader, fees_paid, shares):
    cost = pool.previewMint(shares)
    mint_and_approve(usdc, other_trader, cost, pool)
    paid = event(pool.mint(shares, other_trader, sender=other_trader), "Deposit").assets
    wait_cooldown()
    assert paid == cost > 0  # even a single share costs a whole token unit
    back = redeem_all(pool, other_trader, shares)
    assert back <= paid
    assert paid - back <= 1


@pytest.mark.parametrize("amount", AMOUNTS)
def test_rounding__withdraw_burns_at_least_what_deposit_minted(pool, usdc, other_trader, fees_paid, amount):
    minted = lp_deposit_seeded(pool, usdc, other_trader, 2 * amount)
    preview = pool.previewWithdraw(amount)
    burned = event(withdraw_now(pool, amount, other_trader, other_trader, sender=other_trader), "Withdraw").shares
    assert burned == preview
    assert 2 * burned >= minted  # half the assets cost at least half the shares


def redeem_all(pool, who, shares):
    """Redeem `shares`; returns the assets paid. Shares worth less than one token unit redeem
    to nothing, which the pool refuses (the unit stays with the pool)."""
    if pool.previewRedeem(shares) == 0:
        with ape.reverts("pool: zero amount"):
            redeem_now(pool, shares, who, who, sender=who)
        return 0
    return event(redeem_now(pool, shares, who, who, sender=who), "Withdraw").assets


def lp_deposit_seeded(pool, usdc, who, amount):
    mint_and_approve(usdc, who, amount, pool)
    shares = event(deposit_now(pool, amount, who, sender=who), "Deposit").shares
    wait_cooldown()
    return shares


# ---------------------------------------------------------------- donations


@pytest.mark.parametrize("target", ["pool", "clearinghouse"])
def test_donation__direct_transfer__moves_neither_assets_nor_share_price(ch, usdc, pool, attacker, target):
    assets, price, supply = pool.totalAssets(), pool.convertToAssets(10**12), pool.totalSupply()
    balance, held = ch.pool_balance(), ch.settlement_held()
    usdc.mint(attacker, 1_000_000 * USDC, sender=attacker)
    usdc.transfer(pool if target == "pool" else ch, 1_000_000 * USDC, sender=attacker)

    assert pool.totalAssets() == assets
    assert pool.convertToAssets(10**12) == price
    assert pool.totalSupply() == supply
    assert (ch.pool_balance(), ch.settlement_held()) == (balance, held)


@pytest.mark.parametrize("target", ["pool", "clearinghouse"])
def test_inflation_attack__donation__victim_loses_nothing(empty, attacker, lp, target):
    pool, usdc, ch = empty.pool, empty.settlement, empty.clearinghouse
    attacker_shares = lp_deposit(empty, attacker, 1)  # one token unit
    usdc.mint(attacker, 1_000_000 * USDC, sender=attacker)
    usdc.transfer(pool if target == "pool" else ch, 1_000_000 * USDC, sender=attacker)

    victim_shares = lp_deposit(empty, lp, 1_000 * USDC)

    assert victim_shares == 1_000 * USDC * attacker_shares  # the same price the attacker paid
    victim_back = event(redeem_now(pool, victim_shares, lp, lp, sender=lp), "Withdraw").assets
    assert victim_back == 1_000 * USDC
    assert pool.previewRedeem(attacker_shares) <= 1  # the donation is simply lost


def test_inflation_attack__real_value_through_fees__no_trade_against_an_empty_pool(empty, deployer, attacker, lp):
    """Fees are real value, so they would lift the share price: the attacker held one unit of
    shares and paid ~$2,000 of fees through a 1,000 ETH round trip (the virtual shares kept the
    victim's loss under a cent). With the open-interest reserve no position can open against a
    pool worth one token unit: even at the largest factor (100), a side needs a hundredth of
    its value in the pool, so the fees never arrive."""
    pool, ch = empty.pool, empty.clearinghouse
    empty.configurator.set_reserve_factor(empty.markets["ETH-PERP"], 100 * WAD, sender=deployer)  # on, at its largest
    attacker_shares = lp_deposit(empty, attacker, 1)
    assert pool.totalAssets() == 1
    with ape.reverts("orders: open interest reserve"):
        open_position(empty, attacker, 200_000, 1_000 * WAD)
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, empty.markets["ETH-PERP"], WAD // 1_000, 0, 0, sender=attacker)  # $2 of ETH
    victim_shares = lp_deposit(empty, lp, 1_000 * USDC)
    assert pool.previewRedeem(victim_shares) == 1_000 * USDC
    assert pool.previewRedeem(attacker_shares) <= 1


# ---------------------------------------------------------------- traders' PnL and liquidity


@pytest.mark.parametrize("new_price", [2_200, 1_800], ids=["trader-profit", "trader-loss"])
def test_total_assets__moves_against_traders_pnl(protocol, ch, pool, make_account, set_price, trader, eth_market, new_price):
    account = make_account(trader, collateral_usd=100_000, leverage=2)  # 100 ETH long
    assets_before, share_price_before = pool.totalAssets(), pool.convertToAssets(10**12)
    pnl_before = protocol.lens.account_summary(account).unrealised_pnl

    set_price("WETH", new_price)

    pnl_change = protocol.lens.account_summary(account).unrealised_pnl - pnl_before
    net = ch.market_state(eth_market).long_oi
    # the pool also owes the exit premium P * net^2 / 2S, which moves with the price
    premium_change = (new_price - 2_000) * WAD * net * net // (2 * ch.markets(eth_market).skew_scale) // WAD
    expected_change = -(pnl_change + premium_change) // USDC_TO_WAD
    assert abs((pool.totalAssets() - assets_before) - expected_change) <= 3
    if new_price > 2_000:
        assert pool.totalAssets() < assets_before - 19_000 * USDC
        assert pool.convertToAssets(10**12) < share_price_before
    else:
        assert pool.totalAssets() > assets_before + 19_000 * USDC
        assert pool.convertToAssets(10**12) > share_price_before


def test_withdraw__traders_in_profit__lp_cannot_take_the_deposit_back(
    protocol, ch, pool, make_account, set_price, trader, lp, eth_market
):
    account = make_account(trader, collateral_usd=1_000_000, leverage=5)  # 2,500 ETH long
    set_price("WETH", 2_300)
    assert pool.withdrawable(lp) < 10_000_000 * USDC - 500_000 * USDC
    with ape.reverts("pool: insufficient shares"):
        withdraw_now(pool, 10_000_000 * USDC, lp, lp, sender=lp)

    # the LP leaves with its share of the value but what the open interest needs (the reserve at
    # 100: a hundredth of the long's value); what stays covers the trader's profit
    paid = event(redeem_now(pool, pool.redeemable(lp), lp, lp, sender=lp), "Withdraw").assets
    assert 8_000_000 * USDC < paid < 10_000_000 * USDC - 500_000 * USDC
    trade_now(ch, eth_market, -ch.positions(account, eth_market).size, 0, 0, sender=trader)
    assert ch.pool_balance() >= 0
    ch.withdraw(protocol.settlement, ch.settlement(account), 0, sender=trader)
    assert protocol.settlement.balanceOf(ch) == ch.settlement_held()


def test_withdraw__traders_at_a_loss__limited_to_realised_balance(ch, pool, make_account, set_price, trader, lp):
    """Unrealised trader losses count in the pool's value but cannot be paid out before they
    are realised: a redeem beyond the realised balance reverts in the clearinghouse."""
    make_account(trader, collateral_usd=2_000_000, leverage=5)  # 5,000 ETH long
    set_price("WETH", 1_700)  # the trader is down ~$1.5M
    balance = ch.pool_balance()
    assert pool.convertToAssets(pool.balanceOf(lp)) > balance  # the value counts them
    assert pool.withdrawable(lp) == balance  # the liquidity does not
    with ape.reverts("clearinghouse: pool liquidity"):  # within the reserve (at 100), past the balance
        redeem_now(pool, pool.convertToShares(balance + 100_000 * USDC), lp, lp, sender=lp)
    # the realised part is available: by request (the book is open), all but $1 of it (the long
    # pays the pool funding in the minute the request waits, which the request's value counts)
    paid = event(withdraw_now(pool, balance - USDC, lp, lp, sender=lp), "Withdraw").assets
    assert balance - USDC <= paid < balance and ch.pool_balance() == balance - paid


def test_deposit__insolvent_pool__reverts(empty, deployer, lp, trader, other_trader):
    lp_deposit(empty, lp, 30_000 * USDC)  # a 100 ETH side needs $2,000 at the reserve's 100
    open_position(empty, trader, 100_000, 100 * WAD)
    set_eth_price(empty, deployer, 2_390)  # the trader's ~$39k profit exceeds the pool
    assert empty.pool.totalAssets() == 0
    mint_and_approve(empty.settlement, other_trader, 1_000 * USDC, empty.pool)
    with ape.reverts("pool: insolvent"):
        deposit_now(empty.pool, 1_000 * USDC, other_trader, sender=other_trader)


def test_deposit__no_shares_out_and_the_value_below_zero__reverts(empty, deployer, lp, trader, other_trader):
    """The long fuzz profile's finding: every LP gone (the reserve off, so they could leave), then
    the traders' unrealised profit takes the value below zero; a deposit would have minted shares
    worth nothing, its tokens owed to the traders."""
    lp_deposit(empty, lp, 30_000 * USDC)
    open_position(empty, trader, 100_000, 100 * WAD)
    empty.configurator.set_reserve_factor(empty.markets["ETH-PERP"], 0, sender=deployer)
    wait_cooldown()
    set_eth_price(empty, deployer, 2_050)  # the trader's profit below the pool's balance: every share can leave
    redeem_now(empty.pool, empty.pool.balanceOf(lp), lp, lp, sender=lp)
    # no LP's shares out: only the dust the Clearinghouse keeps when the request was capped (the
    # funding paid to the pool during its delay); nobody can redeem it
    assert empty.pool.totalSupply() == empty.pool.balanceOf(empty.clearinghouse) < 10**9
    set_eth_price(empty, deployer, 2_390)
    value, _ = (int(v) for v in empty.pool.reserve(0, 0))
    assert value < 0
    mint_and_approve(empty.settlement, other_trader, 100 * USDC, empty.pool)
    with ape.reverts("pool: insolvent"):
        deposit_now(empty.pool, 100 * USDC, other_trader, sender=other_trader)
    set_eth_price(empty, deployer, 2_000)  # back: the value is the fees, above zero, and it takes deposits
    deposit_now(empty.pool, 100 * USDC, other_trader, sender=other_trader)
    assert empty.pool.convertToAssets(empty.pool.balanceOf(other_trader)) > 99 * USDC


def test_redeem__within_cooldown__reverts(pool, usdc, other_trader):
    mint_and_approve(usdc, other_trader, 1_000 * USDC, pool)
    shares = event(deposit_now(pool, 1_000 * USDC, other_trader, sender=other_trader), "Deposit").shares
    assert pool.redeemable(other_trader) == 0 and pool.withdrawable(other_trader) == 0
    with ape.reverts("pool: cooldown"):
        redeem_now(pool, shares, other_trader, other_trader, sender=other_trader)
    wait_cooldown()
    assert pool.redeemable(other_trader) == shares
    redeem_now(pool, shares, other_trader, other_trader, sender=other_trader)


def test_transfer__locked_shares_cannot_move(pool, usdc, other_trader, attacker):
    """A just-in-time LP cannot dodge the cooldown by moving its new shares to another address."""
    mint_and_approve(usdc, attacker, 1_000 * USDC, pool)
    shares = event(deposit_now(pool, 1_000 * USDC, attacker, sender=attacker), "Deposit").shares
    with ape.reverts("pool: cooldown"):
        pool.transfer(other_trader, shares, sender=attacker)
    pool.approve(other_trader, shares, sender=attacker)
    with ape.reverts("pool: cooldown"):
        pool.transferFrom(attacker, other_trader, shares, sender=other_trader)
    wait_cooldown()
    pool.transfer(other_trader, shares, sender=attacker)
    assert pool.balanceOf(other_trader) == shares


def test_deposit__to_someone_else__locks_only_the_new_shares(pool, usdc, lp, attacker):
    """Griefing: a 1-unit deposit to an LP must not freeze the LP's existing shares."""
    held = pool.balanceOf(lp)
    assert pool.redeemable(lp) == held
    mint_and_approve(usdc, attacker, 1, pool)
    gift = event(deposit_now(pool, 1, lp, sender=attacker), "Deposit").shares
    assert pool.locked_shares(lp) == gift
    assert pool.redeemable(lp) == held  # everything it had before is still free
    redeem_now(pool, held, lp, lp, sender=lp)
    assert pool.balanceOf(lp) == gift
