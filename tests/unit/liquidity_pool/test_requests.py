"""LiquidityPool requests: a deposit or a redemption a keeper executes `settlement_delay` later,
at the worse of the two values for the LP (issue 9, item 2, the LP half; the attack replayed in
tests/e2e/test_known_round_lp.py)."""

import ape
import pytest

from marginsim.orders import deposit_now, place, trade_now
from marginsim.protocol import account_id
from tests.conftest import USDC, WAD

COOLDOWN = 900
WINDOW = 900  # REQUEST_WINDOW


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(
    protocol,
    ch,
    seeded_pool,
    make_account,
    set_price,
    deployer,
    trader,
    lp,
    attacker,
    other_trader,
    keeper,
    pool,
    usdc,
    fee,
    delay,
):
    """Module fixtures once, the seed's cooldown passed; a trader holds a 100 ETH long, so the
    book is open and the pool's value moves with the ETH price."""
    ape.chain.pending_timestamp += COOLDOWN
    make_account(trader, collateral_usd=100_000, leverage=2)


@pytest.fixture(scope="module")
def pool(protocol):
    return protocol.pool


@pytest.fixture(scope="module")
def usdc(protocol):
    return protocol.settlement


@pytest.fixture(scope="module")
def fee(protocol):
    return int(protocol.orders.execution_fee())


@pytest.fixture(scope="module")
def delay(protocol):
    return int(protocol.orders.settlement_delay())


def mint_to(usdc, who, amount, pool):
    usdc.mint(who, amount, sender=who)
    usdc.approve(pool, 2**256 - 1, sender=who)


def last(receipt, name):
    [found] = [e for e in receipt.events if e.event_name == name]
    return found


# ---------------------------------------------------------------- redemption requests


def test_request_redeem__escrows_the_shares_and_the_fee_and_records_the_value(pool, usdc, lp, fee, delay):
    mint_to(usdc, lp, fee, pool)
    shares = 10**15
    worth = pool.convertToAssets(shares)
    supply, balance, wallet = pool.totalSupply(), pool.balanceOf(lp), usdc.balanceOf(lp)
    receipt = pool.request_redeem(shares, lp, lp, sender=lp)
    placed = last(receipt, "RequestPlaced")
    now = ape.chain.blocks.head.timestamp
    assert (placed.controller, placed.receiver, placed.deposit) == (lp.address, lp.address, False)
    assert (placed.assets, placed.shares, placed.executable_at, placed.fee) == (worth, shares, now + delay, fee)
    request = pool.requests(lp)
    assert (request.assets, request.shares, request.executable_at, request.fee) == (worth, shares, now + delay, fee)
    assert pool.balanceOf(lp) == balance - shares and pool.balanceOf(pool) == shares
    assert pool.totalSupply() == supply  # escrowed, not burned
    assert usdc.balanceOf(lp) == wallet - fee and usdc.balanceOf(pool) == fee


def test_request_redeem__one_request_per_controller(pool, usdc, lp, fee):
    mint_to(usdc, lp, 2 * fee, pool)
    pool.request_redeem(10**15, lp, lp, sender=lp)
    with ape.reverts("pool: request pending"):
        pool.request_redeem(10**15, lp, lp, sender=lp)
    with ape.reverts("pool: request pending"):
        pool.request_deposit(1_000 * USDC, lp, sender=lp)


def test_request_redeem__refusals(pool, usdc, lp, attacker, fee):
    mint_to(usdc, attacker, 1_000 * USDC, pool)
    with ape.reverts("pool: insufficient shares"):
        pool.request_redeem(10**15, attacker, attacker, sender=attacker)
    with ape.reverts("pool: zero amount"):
        pool.request_redeem(0, lp, lp, sender=lp)
    with ape.reverts("pool: not owner"):
        pool.request_redeem(10**15, attacker, lp, sender=attacker)
    # shares a requested deposit minted are in their cooldown
    pool.request_deposit(1_000 * USDC - fee, attacker, sender=attacker)
    ape.chain.pending_timestamp += 60
    pool.execute_request(attacker, sender=lp)
    with ape.reverts("pool: cooldown"):
        pool.request_redeem(pool.balanceOf(attacker), attacker, attacker, sender=attacker)


def test_request_redeem__only_the_owner_asks__a_spender_takes_the_shares_first(pool, usdc, lp, attacker, keeper, fee):
    """An approved spender cannot ask for the owner ("pool: not owner", the allowance untouched):
    its request would take the owner's one request slot and a lapse would refund its fee to the
    owner. A zap moves the shares to itself (`transferFrom`) and asks as their owner."""
    pool.approve(attacker, 10**15, sender=lp)
    mint_to(usdc, attacker, fee, pool)
    with ape.reverts("pool: not owner"):
        pool.request_redeem(10**15, attacker, lp, sender=attacker)
    assert pool.allowance(lp, attacker) == 10**15 and pool.requests(lp).executable_at == 0
    pool.transferFrom(lp, attacker, 10**15, sender=attacker)
    pool.request_redeem(10**15, attacker, attacker, sender=attacker)
    assert pool.requests(attacker).receiver == attacker.address
    ape.chain.pending_timestamp += 60
    before = usdc.balanceOf(attacker)
    pool.execute_request(attacker, sender=keeper)
    assert usdc.balanceOf(attacker) > before


def test_execute_request__timing(pool, usdc, lp, keeper, fee, delay):
    with ape.reverts("pool: no request"):
        pool.execute_request(lp, sender=keeper)
    mint_to(usdc, lp, fee, pool)
    pool.request_redeem(10**15, lp, lp, sender=lp)
    executable_at = pool.requests(lp).executable_at
    ape.chain.pending_timestamp = executable_at - 1
    with ape.reverts("pool: request not due"):
        pool.execute_request(lp, sender=keeper)
    with ape.reverts("pool: request live"):
        pool.lapse_request(lp, sender=keeper)
    ape.chain.pending_timestamp = executable_at + WINDOW + 1
    with ape.reverts("pool: request lapsed"):
        pool.execute_request(lp, sender=keeper)


@pytest.mark.parametrize("new_price", [2_100, 1_900])
def test_execute_redeem__pays_the_smaller_of_the_two_values(pool, usdc, lp, keeper, set_price, fee, new_price):
    mint_to(usdc, lp, fee, pool)
    shares = 10**18
    pool.request_redeem(shares, lp, lp, sender=lp)
    at_request = pool.requests(lp).assets
    set_price("WETH", new_price)  # the long's profit costs the pool (2,100) or its loss pays it (1,900)
    ape.chain.pending_timestamp = pool.requests(lp).executable_at
    worth_now = pool.convertToAssets(shares)  # at the round; the execution adds a few seconds of funding
    supply, wallet, keeper_wallet = pool.totalSupply(), usdc.balanceOf(lp), usdc.balanceOf(keeper)
    vault = pool.CLEARINGHOUSE()  # keeps a capped request's excess as shares, for good
    held = pool.balanceOf(vault)
    receipt = pool.execute_request(lp, sender=keeper)
    paid = usdc.balanceOf(lp) - wallet
    executed = last(receipt, "RequestExecuted")
    withdrawn = last(receipt, "Withdraw")
    burned = shares - executed.kept
    if new_price > 2_000:  # the value fell: paid what the shares are worth now, every share burned, none kept
        assert worth_now < at_request - 500 * USDC
        assert abs(paid - worth_now) <= 10 * USDC
        assert executed.kept == 0 and pool.balanceOf(vault) == held
    else:  # it rose: paid what they were worth at the request, the rest of the escrow kept by the Clearinghouse
        assert worth_now > at_request + 500 * USDC
        assert paid == at_request
        assert 0 < executed.kept < shares and pool.balanceOf(vault) == held + executed.kept
        assert burned == pool.previewWithdraw(paid)  # the shares the pay is worth now, rounded up
        # the kept shares are the rise (funding since the round moves it a little)
        assert abs(pool.convertToAssets(executed.kept) - (worth_now - at_request)) <= 10 * USDC
    assert (executed.assets, executed.shares, executed.fee, executed.keeper) == (paid, burned, fee, keeper.address)
    assert (withdrawn.owner, withdrawn.receiver, withdrawn.assets, withdrawn.shares) == (lp.address, lp.address, paid, burned)
    assert pool.totalSupply() == supply - burned and pool.balanceOf(pool) == 0
    assert usdc.balanceOf(keeper) == keeper_wallet + fee and usdc.balanceOf(pool) == 0
    assert pool.requests(lp).executable_at == 0


def test_lapse_request__returns_the_escrow_and_the_fee_to_the_owner(pool, usdc, lp, keeper, fee):
    mint_to(usdc, lp, fee, pool)
    balance, wallet = pool.balanceOf(lp), usdc.balanceOf(lp)
    pool.request_redeem(10**15, lp, lp, sender=lp)
    ape.chain.pending_timestamp = pool.requests(lp).executable_at + WINDOW + 1
    keeper_wallet = usdc.balanceOf(keeper)
    receipt = pool.lapse_request(lp, sender=keeper)
    lapsed = last(receipt, "RequestLapsed")
    assert (lapsed.controller, lapsed.deposit, lapsed.assets, lapsed.shares, lapsed.fee, lapsed.keeper) == (
        lp.address,
        False,
        0,
        10**15,
        fee,
        keeper.address,
    )
    assert pool.balanceOf(lp) == balance and pool.balanceOf(pool) == 0
    # the fee goes back: a keeper paid for lapses would let requests lapse rather than execute them
    assert usdc.balanceOf(lp) == wallet and usdc.balanceOf(keeper) == keeper_wallet
    with ape.reverts("pool: no request"):
        pool.lapse_request(lp, sender=keeper)


# ---------------------------------------------------------------- deposit requests


def test_request_deposit__refusals(pool, usdc, attacker):
    mint_to(usdc, attacker, 10 * USDC, pool)
    with ape.reverts("pool: zero amount"):
        pool.request_deposit(0, attacker, sender=attacker)


@pytest.mark.parametrize("new_price", [2_100, 1_900])
def test_execute_deposit__mints_the_smaller_of_the_two_share_counts(pool, usdc, attacker, keeper, set_price, fee, new_price):
    assets = 100_000 * USDC
    mint_to(usdc, attacker, assets + fee, pool)
    pool.request_deposit(assets, attacker, sender=attacker)
    assert usdc.balanceOf(pool) == assets + fee and usdc.balanceOf(attacker) == 0
    at_request = pool.requests(attacker).shares
    assert at_request == pool.previewDeposit(assets)
    set_price("WETH", new_price)
    ape.chain.pending_timestamp = pool.requests(attacker).executable_at
    worth_now = pool.previewDeposit(assets)
    vault = pool.CLEARINGHOUSE()  # keeps a capped request's excess as shares, for good
    held = pool.balanceOf(vault)
    receipt = pool.execute_request(attacker, sender=keeper)
    executed = last(receipt, "RequestExecuted")
    minted = executed.shares
    if new_price < 2_000:  # the pool gained: a share costs more now, and fewer are minted
        assert worth_now < at_request * 9_999 // 10_000
        assert abs(minted - worth_now) <= worth_now // 100_000
        assert executed.kept == 0 and pool.balanceOf(vault) == held
    else:  # a share costs less now: the shares of the request, those beyond them kept by the Clearinghouse
        assert worth_now > at_request * 10_001 // 10_000
        assert minted == at_request
        # together the shares the tokens are worth at the execution (funding moves it a little)
        assert abs(minted + executed.kept - worth_now) <= worth_now // 100_000
        assert pool.balanceOf(vault) == held + executed.kept
        assert (last(receipt, "Deposit").assets, executed.assets) == (assets, assets)
    assert pool.balanceOf(attacker) == minted == pool.locked_shares(attacker)
    assert usdc.balanceOf(pool) == 0 and usdc.balanceOf(keeper) >= fee


def test_execute_deposit__a_third_party_cannot_extend_a_full_set_of_lots(pool, usdc, attacker, lp, keeper):
    mint_to(usdc, lp, 10_000 * USDC, pool)
    mint_to(usdc, attacker, 10_000 * USDC, pool)
    for _ in range(4):  # the LP's own deposits (by request: the book is open) fill its four lots
        deposit_now(pool, 1_000 * USDC, lp, sender=lp)
        ape.chain.pending_timestamp += 1
    pool.request_deposit(1 * USDC, lp, sender=attacker)
    ape.chain.pending_timestamp = pool.requests(attacker).executable_at
    with ape.reverts("pool: too many locked deposits"):
        pool.execute_request(attacker, sender=keeper)


def test_lapse_deposit__returns_the_tokens_to_the_payer(pool, usdc, attacker, lp, keeper, fee):
    mint_to(usdc, attacker, 1_000 * USDC + fee, pool)
    pool.request_deposit(1_000 * USDC, lp, sender=attacker)
    ape.chain.pending_timestamp = pool.requests(attacker).executable_at + WINDOW + 1
    wallet = usdc.balanceOf(attacker)
    pool.lapse_request(attacker, sender=lp)  # anyone may lapse it: the tokens and the fee go back to the payer
    assert usdc.balanceOf(attacker) == wallet + 1_000 * USDC + fee
    assert usdc.balanceOf(pool) == 0


# ---------------------------------------------------------------- the instant paths, only while the book is idle

BOOK_OPEN = "pool: book open, request instead"


def test_instant_paths__refused_first_while_the_book_is_open(pool, usdc, lp, attacker):
    """With the trader's long open: deposit, mint, withdraw and redeem revert before anything
    else (even for amounts that would fail their own checks), the ERC-4626 max* views read 0,
    and withdrawable / redeemable quote what a request could be paid now."""
    mint_to(usdc, attacker, 1_000 * USDC, pool)
    assert not pool.instant()
    state = (pool.totalSupply(), pool.balanceOf(lp), usdc.balanceOf(attacker), usdc.balanceOf(pool))
    with ape.reverts(BOOK_OPEN):
        pool.deposit(1_000 * USDC, attacker, sender=attacker)
    with ape.reverts(BOOK_OPEN):
        pool.mint(10**12, attacker, sender=attacker)
    with ape.reverts(BOOK_OPEN):
        pool.withdraw(0, lp, lp, sender=lp)  # zero amount: the gate is first
    with ape.reverts(BOOK_OPEN):
        pool.redeem(pool.balanceOf(lp) + 1, lp, lp, sender=lp)
    assert (pool.totalSupply(), pool.balanceOf(lp), usdc.balanceOf(attacker), usdc.balanceOf(pool)) == state
    assert (pool.maxDeposit(lp), pool.maxMint(lp), pool.maxWithdraw(lp), pool.maxRedeem(lp)) == (0, 0, 0, 0)
    shares = pool.redeemable(lp)
    assert 0 < shares <= pool.balanceOf(lp)
    # the LP's free shares within the liquidity, in assets (a floor of shares, then of assets)
    assert pool.convertToAssets(shares) <= pool.withdrawable(lp) <= pool.convertToAssets(shares) + 1


def test_instant__opens_when_every_position_closes__and_a_placed_order_shuts_it(protocol, ch, pool, usdc, trader, attacker, lp):
    """Closing the long leaves the book idle (no open interest, no entry cost, no hold): the
    instant paths work and the max* views equal withdrawable / redeemable. A placed order (its
    hold) shuts them again until it fills or is cancelled."""
    market = protocol.markets["ETH-PERP"]
    size = int(ch.positions(account_id(trader), market).size)
    trade_now(ch, market, -size, sender=trader)
    assert pool.instant()
    assert (pool.maxWithdraw(lp), pool.maxRedeem(lp)) == (pool.withdrawable(lp), pool.redeemable(lp))
    assert pool.maxDeposit(lp) == 2**256 - 1
    mint_to(usdc, attacker, 1_000 * USDC, pool)
    minted = pool.previewDeposit(1_000 * USDC)
    pool.deposit(1_000 * USDC, attacker, sender=attacker)
    assert pool.balanceOf(attacker) == minted  # no price in the value: the preview holds
    place(ch, market, WAD, sender=trader)
    assert not pool.instant() and pool.maxRedeem(lp) == 0
    with ape.reverts(BOOK_OPEN):
        pool.redeem(10**12, lp, lp, sender=lp)
