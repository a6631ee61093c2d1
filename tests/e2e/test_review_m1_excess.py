"""Attacker's review of the M1 fix (contracts/LiquidityPool.vy `execute_request`), third round:
a capped request's excess now stays in the pool for good as shares the Clearinghouse holds
(`pool.CLEARINGHOUSE()`, which calls no pool function, so never moves them: nobody can redeem
them), logged as `kept`. A capped deposit mints the receiver the recorded shares and the
Clearinghouse the rest of what its tokens are worth now; a capped redemption pays the recorded
assets, burns the escrowed shares they are worth now (rounded up) and moves the rest of the
escrow from the pool to the Clearinghouse; only the pay needs liquidity and headroom. (The first
version sent the excess to the insurance fund as tokens: L1, L2 below; the second gave it to
the pool's owner as shares, which made the owner the gainer of L2 and let its own requests
escape the cap, O1.)

Convention as in test_review_lp_requests.py: `xfail(strict=True)` asserts the SAFE behaviour and
fails on this version (a finding still open); the other tests replay an attack that fails, or a
fixed finding, with exact amounts or the exact revert.

Findings (severity; numbers in each test, on test_review_lp_requests.py's world: a $7M pool,
Alice $1M, the whale $4M, Mallory $2M, against a 7,500 ETH long, $15M):
  L1  (low, liveness) FIXED. The insurance version needed the pool's liquidity for a capped
      redemption's whole worth (the excess left as tokens first): a request sized at
      `redeemable` reverted "clearinghouse: pool liquidity" whenever the value had risen before
      its execution. Now only the pay needs liquidity: Mallory, the last LP, recorded
      $2,002,150.89 <= liquidity $2,002,150.89 (+1 unit), worth $2,152,713.39 at the execution,
      is paid, 1 unit of liquidity left; the Clearinghouse then holds the whole supply, worth
      the $150,562.50 excess, redeemable by nobody.                                        (L1)
  L2  (low, STILL OPEN; fixed only by M2) The execution is neutral at the mark it reads, and
      the executor chooses the mark (review M2: anyone, any time in the 900 s window, e.g. just
      ahead of a round it sees pending that undoes a move). Kept shares do not fix it: the
      excess is counted in shares at the transient value, so when the price comes back the
      reversal lands pro rata on every holder and the kept shares bear only their own part of
      it; the rest of the excess's value has moved from the LPs of record into shares nobody
      redeems. Nobody gains any more (the owner's and the executor's balances stay 0): a grief
      costing the executor gas, no longer a profit for the owner. Redemption: the whale's
      $4,004,301.79 executed at a round of ETH $1,980 between two $2,000 rounds: 0.0841e18
      shares ($86,035.71) kept; once ETH is back Alice is -$27,309.45, Mallory -$54,618.90, the
      kept shares worth $81,928.35, their sum (the insurance version: -$28,678.57 and
      -$57,357.14, to the fund). Deposit: $4M executed at a round of $2,020: 0.0877e18 shares
      ($85,943.29) kept; once back Alice -$7,924.47, the whale -$31,697.89, Mallory -$15,848.94,
      the depositor -$31,663.83, the kept shares worth $87,135.13, their sum. README's "an
      execution at a round that passes leaves the other LPs whole once the price is back" and
      the contract's "so an execution at a passing price fixes nobody's loss" do not hold. No
      destination for the excess but the LPs of record (which M1 rules out) makes them whole;
      the fix is M2's: the value of a round the executor does not choose (the first at or
      after executable_at).                                                          (L2a, L2b)
  O1  (info) FIXED. The owner's own requests are capped like anyone's: its $1M deposit to
      itself, capped, mints it the recorded 0.9989e18 shares and the Clearinghouse the
      0.0219e18 beyond; its capped redemption of them pays the recorded $978,514.18 and moves
      the escrowed shares beyond ($18,751.20) to the Clearinghouse, none back to it. The owner
      (`owner`, fixed at the deployment) is paid nothing by an execution any more.        (O1)
  I1  (info) Gas (keeper holding the token, another request escrowed beside): uncapped 282,784
      (deposit to a new LP) / 252,983 (redemption); capped 290,135 / 261,198 (+7,351, +8,215)
      once the Clearinghouse holds pool shares, 307,235 / 278,298 (+24,451, +25,315) for the
      pool's first kept shares, a one-off since they never leave (owner version: +9,444 /
      +10,308, +26,544 / +27,408; the immutable saves the owner's SLOAD; insurance version:
      +8,951, +17,606). A capped deposit to a new LP is still above
      marginsim.keeper.requests.REQUEST_GAS (290,000), by 135; that comment's "about 9,500 more
      (27,000 ...)" and "292,228" are the owner version's.                                 (I1)
  I2  (info, pre-existing) The instant-path gate (`open_requests != 0`) lost its reason (F1: a
      JIT deposit before a capped execution no longer gains anything) but stays: one 1-unit
      request shuts an idle pool's deposit/mint/withdraw/redeem for delay + window = 960 s,
      costing its author only gas (a lapse refunds the fee and the unit).                 (I2)
  I3  (info, restated) A capped deposit's ERC-4626 Deposit logs its assets and the receiver's
      shares only, while the supply rises by `kept` more (an ERC-20 Transfer from zero to the
      Clearinghouse): a share price read off Deposit events is the request's, not the
      execution's. RequestExecuted.assets is what entered or left (asserted in S1).
  I4  (info, new) Kept shares are a permanent pro-rata claim on the pool: they take their part
      of every later gain (fees, funding, interest, traders' losses) and loss, forever, so the
      LPs' yield is diluted by kept / supply, a fraction that only grows (S1's run: 0.0683e18
      kept; after L1's exits, all of the supply), and their value never leaves the
      Clearinghouse's pool balance. The views count them as any holder's: `redeemable` (and
      maxRedeem/maxWithdraw on an idle book) report them free (S6); an integrator summing
      holders' claims overstates what LPs can take out.                                   (S6)

Attacks that fail (plain tests): the share price never falls at an execution and `kept` is
exactly `floor(assets * (S+1e6) / (T+1)) - recorded` (deposit) or `escrow - ceil(paid * (S+1e6) /
(T+1))` (redemption), the pool's balance moving by exactly the assets or the pay, the insurance
fund and the owner never, over dust to $3.3M requests (S1); a re-entrant settlement coin finds
the pool locked on both transfers of a capped deposit and of a capped redemption (the excess
moves no token), the Clearinghouse on every one but the keeper's fee (S2); a fee-on-transfer
coin has no excess round trip to draw on another LP's escrow: the capped redemption executes,
the pool's tokens fall by exactly the fee (S3); an insolvent pool reverts ("pool: insolvent",
"pool: zero amount") and keeps nothing (S4); a capped redemption paid to the pool itself moves
only its own escrow's excess to the Clearinghouse, other escrow (tokens and shares) untouched
(S5); kept shares never enter the Clearinghouse's lots (only a deposit made to it does, and
expires), and nobody moves them: `transferFrom(clearinghouse, ...)` without allowance reverts
"erc20: insufficient allowance", `request_redeem(..., owner=clearinghouse)` from another account
"pool: not owner" (S6).
Examined without a test: the Clearinghouse's only outgoing calls are its token pulls and
pushes, bounded by its internal books, so even were the pool's share listed as a collateral
the kept shares back no account's balance; the instant `redeem`/`withdraw` with owner =
Clearinghouse spend an allowance it never grants ("erc20: insufficient allowance", after the
book-open gate); the kept address is an immutable, never zero, and a balance write takes no
hook, so an execution cannot be made to revert through it; an attacker whose own request is
capped loses only its excess (the price does not move, S1), and to cap other LPs' requests it
must move the pool's value their way, at a cost above what their caps take, for no gain now
(the caps go to no one); the opposite move (executing a redemption at a transient low of the
value, paid uncapped below its record) pays the LPs of record at the requester's cost: review
M2's, not this fix's; `total == 0` (a deposit is refused insolvent or takes the whole orphan
value as before; once anything is kept the supply never returns to zero).
"""

# ruff: noqa: F811  (the fixtures imported from test_review_lp_requests are the tests' arguments)
from __future__ import annotations

import ape
import pytest

from marginsim.keeper.requests import REQUEST_GAS
from tests.e2e.attacks import deploy_core, walk_price
from tests.e2e.incidents import USDC, move_clock_to
from tests.e2e.test_review_lp_requests import (  # its fixtures too: the same world, one per module
    BOOK_OPEN,
    COOLDOWN,
    WINDOW,
    build_world,
    eth,
    executed,
    fee,  # noqa: F401
    fresh_round,  # noqa: F401
    fund,
    jit,  # noqa: F401
    router,  # noqa: F401
    whale,  # noqa: F401
    world,  # noqa: F401
)

VIRTUAL = 10**6  # LiquidityPool's 10**DECIMALS_OFFSET virtual shares


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def price_key(pool) -> tuple[int, int]:
    """(totalAssets + 1, totalSupply + virtual): the share price is the ratio."""
    return int(pool.totalAssets()) + 1, int(pool.totalSupply()) + VIRTUAL


def liquidity(ch) -> int:
    return int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending())


def owned(pool, who) -> int:
    """What `who`'s shares are worth now, settlement units."""
    return int(pool.convertToAssets(pool.balanceOf(who)))


# ============================================================ findings


def test_L1_fixed__a_capped_redemption_sized_at_redeemable_is_paid(world, chain, deployer, lp, whale, attacker, keeper, fee):
    """L1, fixed. Alice and the whale leave at an unchanged price (no cap). Mallory, now the only
    LP, asks to redeem what `redeemable` says the pool can pay: all her shares, $2,002,150.89
    recorded, the pool's liquidity $2,002,150.89 (+1 unit). A round pays the pool (ETH -1%: the
    long loses $150,000 unrealised): her shares are worth $2,152,713.39, the liquidity has not
    moved. She is paid the $2,002,150.89 (1 unit of liquidity left); the escrowed shares that
    pay is worth now, rounded up, burn; the rest move to the Clearinghouse, then the only
    holder, worth the $150,562.50 excess (the pool's whole value, but the virtual shares'
    unit), which nobody can redeem. Under the insurance version this reverted "clearinghouse:
    pool liquidity" and lapsed."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    assert pool.CLEARINGHOUSE() == ch.address
    for who in (lp, whale):
        fund(usdc, who, fee, pool)
        pool.request_redeem(int(pool.balanceOf(who)), who, who, sender=who)
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    for who in (lp, whale):
        assert executed(pool.execute_request(who, sender=keeper)).kept == 0
    fund(usdc, attacker, fee, pool)
    shares = int(pool.redeemable(attacker))  # what the pool says it could pay out now: all of hers
    assert shares == int(pool.balanceOf(attacker))
    pool.request_redeem(shares, attacker, attacker, sender=attacker)
    recorded = int(pool.requests(attacker).assets)
    eth(world, deployer, 1_980)  # the long loses $150,000: the value rises, the liquidity does not
    move_clock_to(chain, int(pool.requests(attacker).executable_at))
    worth, free = int(pool.convertToAssets(shares)), liquidity(ch)
    assert recorded == 2_002_150_892_857 and free == recorded + 1 and worth == 2_152_713_392_857
    t, s = price_key(pool)
    assert int(pool.balanceOf(ch)) == 0
    event = executed(pool.execute_request(attacker, sender=keeper))
    burned = ceil_div(recorded * s, t)
    # SAFE: the request is paid what it was capped at, which the pool can pay
    assert (event.assets, event.shares, event.kept) == (recorded, burned, shares - burned)
    assert liquidity(ch) == 1 and int(pool.balanceOf(pool)) == 0
    assert int(pool.balanceOf(ch)) == event.kept == int(pool.totalSupply())
    assert owned(pool, ch) == worth - recorded == int(pool.totalAssets()) - 1 == 150_562_500_000
    assert int(pool.balanceOf(deployer)) == 0  # the owner: nothing


@pytest.mark.xfail(strict=True, reason="L2 (low, open until M2): the executor's round moves LP money into kept shares")
def test_L2a_executing_a_redemption_at_a_transient_high_locks_the_other_lps_money_in_kept_shares(
    world, chain, deployer, lp, whale, attacker, jit, fee
):
    """The whale asks to redeem its 4e18 shares ($4,004,301.79). A round at executable_at + 10
    leaves ETH at $2,000; one at +300 takes it to $1,980 (the pool +$150,000, unrealised); a
    stranger (a keeper seeing the $2,000 round pending, or anyone who wishes the LPs ill)
    executes the whale's request right then: the whale is paid its $4,004,301.79, 3.9159e18
    escrowed shares burn and 0.0841e18 ($86,035.71 at $1,980) move to the Clearinghouse. At
    +400 ETH is back at $2,000: Alice's shares are worth $27,309.45 less than before, Mallory's
    $54,618.90 less, and the kept shares $81,928.35 (of the $150,000 reversal they bore only
    their 2.7%): the excess was counted in shares at the transient value, so the reversal lands
    pro rata on every holder, the kept shares barely. Nobody gains now (the owner's balance
    stays 0, the kept value is redeemable by no one): a grief costing the executor only gas.
    Executed at the +10 round, they lose nothing. Fixed only by M2 (the value of the first round
    at or after executable_at, which the executor does not choose)."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    fund(usdc, whale, fee, pool)
    shares = int(pool.balanceOf(whale))
    pool.request_redeem(shares, whale, whale, sender=whale)
    recorded = int(pool.requests(whale).assets)
    executable_at = int(pool.requests(whale).executable_at)
    move_clock_to(chain, executable_at + 10)
    eth(world, deployer, 2_000)  # the round a prompt keeper executes at: nothing moved
    stay = {who: owned(pool, who) for who in (lp, attacker)}
    move_clock_to(chain, executable_at + 300)
    eth(world, deployer, 1_980)  # a transient high of the pool's value
    event = executed(pool.execute_request(whale, sender=jit))
    assert (event.assets, event.kept) == (recorded, 84_135_565_132_204_729) and recorded == 4_004_301_785_714
    assert int(pool.convertToAssets(event.kept)) == 86_035_714_285
    move_clock_to(chain, executable_at + 400)
    eth(world, deployer, 2_000)  # back
    loss = {who: before - owned(pool, who) for who, before in stay.items()}
    kept = owned(pool, ch)
    assert (loss[lp], loss[attacker], kept) == (27_309_450_783, 54_618_901_567, 81_928_352_350)
    assert abs(kept - loss[lp] - loss[attacker]) <= 2  # the LPs' loss sits in the kept shares
    assert int(pool.balanceOf(deployer)) == 0 and int(pool.balanceOf(jit)) == 0  # nobody gains
    # SAFE: whoever executes, whenever in the window, the LPs who stay lose nothing to it
    assert max(loss.values()) <= 2, f"kept {kept / USDC:,.2f}: Alice -{loss[lp] / USDC:,.2f}"


@pytest.mark.xfail(strict=True, reason="L2 (low, open until M2): the executor's round moves LP money into kept shares")
def test_L2b_executing_a_deposit_at_a_transient_low_locks_the_lps_of_records_money_in_kept_shares(
    world, chain, deployer, lp, whale, attacker, router, jit, fee
):
    """`router` asks to deposit $4,000,000. Rounds: $2,000 at executable_at + 10, $2,020 at
    +300 (the pool -$150,000), $2,000 at +400. A stranger executes at the $2,020 round: the
    router is minted the 3.9957e18 shares of the request, the Clearinghouse the 0.0877e18
    beyond them ($85,943.29 at $2,020): the $4M bought shares at the transient value. Once ETH
    is back: Alice -$7,924.47, the whale -$31,697.89, Mallory -$15,848.94 and the router
    -$31,663.83 against what it paid; the kept shares are worth $87,135.13, the four losses'
    sum, which nobody can redeem (the insurance version took $85,943.29 from the same four;
    the owner version gave the owner the $87,135.13)."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    assets = 4_000_000 * USDC
    fund(usdc, router, assets + fee, pool)
    pool.request_deposit(assets, router, sender=router)
    recorded = int(pool.requests(router).shares)
    executable_at = int(pool.requests(router).executable_at)
    move_clock_to(chain, executable_at + 10)
    eth(world, deployer, 2_000)
    stay = {who: owned(pool, who) for who in (lp, whale, attacker)}
    move_clock_to(chain, executable_at + 300)
    eth(world, deployer, 2_020)  # a transient low of the pool's value
    event = executed(pool.execute_request(router, sender=jit))
    assert (event.shares, event.kept) == (recorded, 87_736_039_684_949_262)
    assert int(pool.convertToAssets(event.kept)) == 85_943_286_884
    move_clock_to(chain, executable_at + 400)
    eth(world, deployer, 2_000)
    loss = {who: before - owned(pool, who) for who, before in stay.items()}
    depositor = assets - owned(pool, router)
    kept = owned(pool, ch)
    assert (loss[lp], loss[whale], loss[attacker], depositor, kept) == (
        7_924_471_464,
        31_697_885_858,
        15_848_942_929,
        31_663_833_102,
        87_135_133_352,
    )
    assert abs(kept - sum(loss.values()) - depositor) <= 4
    assert int(pool.balanceOf(deployer)) == 0 and int(pool.balanceOf(jit)) == 0  # nobody gains
    # SAFE: the LPs of record lose nothing to the executor's choice of round
    assert max(loss.values()) <= 2, f"kept {kept / USDC:,.2f}: whale -{loss[whale] / USDC:,.2f}"


def test_O1_fixed__the_owners_own_requests_are_capped_like_anyones(world, chain, deployer, keeper, fee):
    """O1, fixed (obsolete: the owner is paid nothing now). The deployer (the pool's owner)
    asks to deposit $1,000,000 to itself; ETH +1% (the pool -$150,000) before the execution:
    it is minted the request's 0.9989e18 shares (locked in a lot), not the 1.0209e18 its tokens
    are worth then; the 0.0219e18 beyond go to the Clearinghouse. Out of its cooldown, at ETH
    $2,020, it asks to redeem all of them ($978,514.18 recorded); ETH back at $2,000 (the pool
    +$150,000): they are worth $997,265.38, it is paid the $978,514.18 and the escrowed shares
    beyond ($18,751.20) move to the Clearinghouse, none back to it (the first excess, 0.0219e18,
    is worth $21,897.55 by then, in the Clearinghouse too). Its requests are capped as
    anyone's: the executor's choice of round gives it nothing either way."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    assert pool.owner() == deployer.address
    fund(usdc, deployer, 1_000_000 * USDC + 2 * fee, pool)
    pool.request_deposit(1_000_000 * USDC, deployer, sender=deployer)
    recorded = int(pool.requests(deployer).shares)
    eth(world, deployer, 2_020)  # costs the pool: capped
    move_clock_to(chain, int(pool.requests(deployer).executable_at))
    worth = int(pool.convertToShares(1_000_000 * USDC))
    event = executed(pool.execute_request(deployer, sender=keeper))
    assert (event.shares, event.kept) == (recorded, worth - recorded) and event.kept > 0
    assert int(pool.balanceOf(deployer)) == int(pool.locked_shares(deployer)) == recorded
    assert int(pool.balanceOf(ch)) == event.kept
    first = event.kept
    move_clock_to(chain, chain.pending_timestamp + COOLDOWN)
    eth(world, deployer, 2_020)
    pool.request_redeem(recorded, deployer, deployer, sender=deployer)
    at_request = int(pool.requests(deployer).assets)
    eth(world, deployer, 2_000)  # pays the pool: capped
    move_clock_to(chain, int(pool.requests(deployer).executable_at))
    now, wallet = int(pool.convertToAssets(recorded)), int(usdc.balanceOf(deployer))
    event = executed(pool.execute_request(deployer, sender=keeper))
    assert event.assets == at_request < now and event.shares + event.kept == recorded and event.kept > 0
    assert int(pool.balanceOf(deployer)) == 0 and int(usdc.balanceOf(deployer)) == wallet + at_request
    assert int(pool.balanceOf(ch)) == first + event.kept
    assert (recorded, worth) == (998_925_708_913_940_473, 1_020_859_718_835_177_789)
    assert (at_request, now, int(pool.convertToAssets(event.kept))) == (978_514_178_278, 997_265_379_187, 18_751_200_909)
    assert (first, int(pool.convertToAssets(first))) == (21_934_009_921_237_316, 21_897_553_067)


def test_I1_facts__gas_of_capped_executions(world, chain, deployer, whale, attacker, router, keeper, fee):
    """A $1M deposit request to a new holder and a 1e18-share redemption, with another LP's
    request escrowed beside them, each executed uncapped (ETH unchanged) and capped (ETH +0.05%
    for the deposit, -0.05% for the redemption), the Clearinghouse holding no pool shares yet
    or some already; the keeper already holds the token. Uncapped 282,784 (deposit) / 252,983
    (redemption); capped 290,135 / 261,198 (+7,351 for the mint to the Clearinghouse, +8,215
    for the escrow's transfer to it) once it holds pool shares, 307,235 / 278,298 (+24,451 /
    +25,315: its balance from zero) for the pool's first kept shares, a one-off (kept shares
    never leave). A capped deposit to a new LP is 135 above marginsim's REQUEST_GAS (290,000),
    whose comment still quotes the owner version's 292,228."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    fund(usdc, keeper, 1, pool)  # a keeper already holding the token (its first fee is a one-off 17,100)
    gas = {}
    for case in ("uncapped", "first kept", "kept before"):
        snap = chain.snapshot()
        fund(usdc, router, 1_000_000 * USDC + fee, pool)
        pool.request_deposit(1_000_000 * USDC, router, sender=router)
        fund(usdc, whale, fee, pool)
        pool.request_redeem(10**18, whale, whale, sender=whale)
        fund(usdc, attacker, 1_000 * USDC + fee, pool)
        pool.request_deposit(1_000 * USDC, attacker, sender=attacker)  # other escrow beside them
        if case == "kept before":
            pool.transfer(ch, 10**12, sender=attacker)  # the Clearinghouse's balance already non-zero
        assert (int(pool.balanceOf(ch)) > 0) == (case == "kept before")
        move_clock_to(chain, int(pool.requests(attacker).executable_at))
        measured = []
        for controller, capped_at in ((router, 2_001), (whale, 1_999)):
            inner = chain.snapshot()
            eth(world, deployer, 2_000 if case == "uncapped" else capped_at)
            receipt = pool.execute_request(controller, sender=keeper)
            assert (executed(receipt).kept > 0) == (case != "uncapped")
            measured.append(int(receipt.gas_used))
            chain.restore(inner)
        gas[case] = tuple(measured)
        chain.restore(snap)
    extra = {case: (gas[case][0] - gas["uncapped"][0], gas[case][1] - gas["uncapped"][1]) for case in gas}
    assert gas == {
        "uncapped": (282_784, 252_983),
        "kept before": (290_135, 261_198),  # +7,351 (the mint), +8,215 (the escrow's transfer)
        "first kept": (307_235, 278_298),  # +24,451, +25,315: the Clearinghouse's balance from zero, once a pool
    }, (gas, extra)
    assert gas["kept before"][0] > REQUEST_GAS == 290_000 > gas["uncapped"][0], gas


def test_I2_facts__one_request_shuts_an_idle_pools_instant_paths(idle, chain, lp, attacker, keeper):
    """An idle core pool (no market): Alice deposits instantly. Mallory asks to deposit 1 unit:
    the instant paths revert "pool: book open, request instead" until her request executes or
    lapses, here delay + window = 960 s; the lapse gives her the unit and the 2-token fee
    back. With the excess kept by the Clearinghouse as shares at the execution's price, what
    the gate guarded (F1) no longer pays."""
    coin, core = idle
    pool = core.pool
    fee = int(core.orders.execution_fee())
    fund(coin, lp, 10_000 * USDC, pool)
    pool.deposit(5_000 * USDC, lp, sender=lp)
    assert pool.instant()
    fund(coin, attacker, 1 + fee, pool)
    wallet = int(coin.balanceOf(attacker))
    pool.request_deposit(1, attacker, sender=attacker)
    assert not pool.instant()
    with ape.reverts(BOOK_OPEN):
        pool.deposit(1_000 * USDC, lp, sender=lp)
    move_clock_to(chain, int(pool.requests(attacker).executable_at) + WINDOW)
    with ape.reverts(BOOK_OPEN):
        pool.redeem(10**15, lp, lp, sender=lp)
    move_clock_to(chain, chain.pending_timestamp + 1)
    pool.lapse_request(attacker, sender=keeper)
    assert int(coin.balanceOf(attacker)) == wallet and pool.instant()
    assert int(core.orders.settlement_delay()) + WINDOW == 960


# ============================================================ attacks that fail


# ============================================================ attacks that fail


def test_S1_rounding_the_share_price_never_falls_and_kept_is_exact(
    world, chain, deployer, accounts, lp, whale, attacker, keeper, fee
):
    """Five deposit requests (1 unit, 7 units, 1.234567, 999,999.999999 and 3,333,333.333333
    tokens) and three redemption requests (3 dust lots + 7 shares, 1e18 + 12,345, 1e18 - 1)
    at $2,000; ETH $2,013.37 caps every deposit, then $1,987.65 caps the redemptions. At each
    execution (T, S the total assets and supply before, V = 1e6 virtual shares):
    deposit: kept = floor(assets * (S+V) / (T+1)) - recorded shares, minted to the
    Clearinghouse, the receiver minted the recorded shares, the pool's balance up by exactly
    assets, the Deposit event (assets, the receiver's shares); redemption: paid min(recorded,
    worth), burned ceil(paid * (S+V) / (T+1)) when capped, kept = escrow - burned moved from the
    pool to the Clearinghouse, the pool's balance down by exactly the pay; the insurance fund
    and the owner never move. (T+1)/(S+V) never falls. Seven are capped (the dust redemption is
    worth exactly its record: none moves); the Clearinghouse ends with 0.0683e18 shares, worth
    $68,549.17."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    payers = [accounts[i] for i in (10, 11, 12, 13, 14)]
    sizes = [1, 7, 1_234_567, 999_999_999_999, 3_333_333_333_333]
    for who, assets in zip(payers, sizes, strict=True):
        fund(usdc, who, assets + fee, pool)
        pool.request_deposit(assets, who, sender=who)
    dust = int(pool.previewWithdraw(1))
    redemptions = {lp: 3 * dust + 7, whale: 10**18 + 12_345, attacker: 999_999_999_999_999_999}
    for who, shares in redemptions.items():
        fund(usdc, who, fee, pool)
        pool.request_redeem(shares, who, who, sender=who)
    move_clock_to(chain, int(pool.requests(attacker).executable_at))
    eth(world, deployer, 2_013.37)  # costs the pool: every deposit is capped
    kept, capped = 0, []

    def run(controller):
        nonlocal kept, capped
        request = pool.requests(controller)
        t, s = price_key(pool)
        balance, supply, escrow = int(ch.pool_balance()), int(pool.totalSupply()), int(pool.balanceOf(pool))
        held, insurance = int(pool.balanceOf(ch)), int(ch.insurance_balance())
        receiver = int(pool.balanceOf(request.receiver))
        receipt = pool.execute_request(controller, sender=keeper)
        event = executed(receipt)
        if request.deposit:
            worth = int(request.assets) * s // t
            assert worth > int(request.shares) == event.shares
            assert (event.assets, event.kept) == (int(request.assets), worth - int(request.shares))
            assert int(ch.pool_balance()) == balance + int(request.assets)
            assert int(pool.totalSupply()) == supply + worth
            assert int(pool.balanceOf(request.receiver)) == receiver + event.shares
            [logged] = [e for e in receipt.events if e.event_name == "Deposit"]
            assert (logged.assets, logged.shares) == (int(request.assets), event.shares)
        else:
            worth = int(request.shares) * t // s
            paid = min(int(request.assets), worth)
            burned = ceil_div(paid * s, t) if int(request.assets) < worth else int(request.shares)
            assert (event.assets, event.shares, event.kept) == (paid, burned, int(request.shares) - burned)
            assert int(ch.pool_balance()) == balance - paid
            assert int(pool.totalSupply()) == supply - burned
            assert int(pool.balanceOf(pool)) == escrow - int(request.shares)
            [logged] = [e for e in receipt.events if e.event_name == "Withdraw"]
            assert (logged.assets, logged.shares) == (paid, burned)
        assert int(pool.balanceOf(ch)) == held + event.kept
        assert int(ch.insurance_balance()) == insurance and int(pool.balanceOf(deployer)) == 0
        t2, s2 = price_key(pool)
        assert t2 * s >= t * s2  # the share price never falls
        kept += event.kept
        if event.kept > 0:
            capped.append(controller)

    for who in payers:
        run(who)
    eth(world, deployer, 1_987.65)  # pays the pool: every redemption is capped
    for who in redemptions:
        run(who)
    assert capped == [*payers, whale, attacker]
    assert (kept, int(pool.balanceOf(ch)), owned(pool, ch)) == (68_296_912_928_819_768, kept, 68_549_168_986)


def test_S2_reentrant_coin_finds_every_path_locked_in_a_capped_execution(hooked, chain, deployer, lp, whale, router, keeper):
    """The world on a settlement coin that calls back on every transfer. Alice's and the
    whale's redemption requests and the router's $1M deposit request wait; the coin tries, on
    each transfer of the router's capped deposit (`pool_deposit`'s pull, the fee) and of the
    whale's capped redemption (the pay, the fee): executing the whale's request, lapsing
    Alice's, redeeming or moving the escrowed shares, a request as the pool, totalAssets, and
    the Clearinghouse's pool_balance. Every pool attempt hits the lock (a bare revert); the
    Clearinghouse's view too, except on the keeper's fee, after the Clearinghouse is done. The
    excess moves no token (the insurance version had 3 and 4 transfers), and its shares move
    inside the pool before any call out. The pool holds exactly Alice's escrow after, the
    Clearinghouse exactly the kept shares."""
    coin, w = hooked
    pool = w.pool
    eth(w, deployer, 2_000)
    fee = int(w.orders.execution_fee())
    fund(coin, lp, fee, pool)
    pool.request_redeem(10**18, lp, lp, sender=lp)
    fund(coin, whale, fee, pool)
    pool.request_redeem(10**18, whale, whale, sender=whale)
    fund(coin, router, 1_000_000 * USDC + fee, pool)
    pool.request_deposit(1_000_000 * USDC, router, sender=router)
    escrow = int(pool.balanceOf(pool))
    attempts = [
        (pool, pool.execute_request.encode_input(whale), False),
        (pool, pool.lapse_request.encode_input(lp), False),
        (pool, pool.redeem.encode_input(escrow, coin, pool), False),
        (pool, pool.transferFrom.encode_input(pool, coin, escrow), False),
        (pool, pool.request_redeem.encode_input(escrow, coin, pool), False),
        (pool, pool.totalAssets.encode_input(), True),
        (w.clearinghouse, w.clearinghouse.pool_balance.encode_input(), True),
    ]
    coin.set_calls([(t.address, data, static) for t, data, static in attempts], True, False, sender=deployer)
    n = len(attempts)
    move_clock_to(chain, int(pool.requests(router).executable_at))
    seen, kept = {}, 0
    for who, price in ((router, 2_010), (whale, 1_990)):
        eth(w, deployer, price)  # costs the pool (the deposit capped), then pays it (the redemption capped)
        receipt = pool.execute_request(who, sender=keeper)
        assert executed(receipt).kept > 0
        kept += executed(receipt).kept
        seen[who] = [(e.hook, e.success, len(bytes(e.returndata))) for e in receipt.events if e.event_name == "Reentry"]
    locked, view_ok = (False, 0), (True, 32)
    assert [h for h, *_ in seen[router][::n]] == ["transferFrom", "transfer"]
    assert [h for h, *_ in seen[whale][::n]] == ["transfer", "transfer"]
    for who, hooks in seen.items():
        chunks = [hooks[i : i + n] for i in range(0, len(hooks), n)]
        for k, chunk in enumerate(chunks):
            assert all((ok, size) == locked for _, ok, size in chunk[:-1]), (who, k)
            assert chunk[-1][1:] == (view_ok if k == len(chunks) - 1 else locked), (who, k)
    assert int(pool.balanceOf(pool)) == 10**18  # Alice's escrow, untouched
    assert int(pool.balanceOf(w.clearinghouse)) == kept


def test_S3_fee_on_transfer_capped_redemption_leaves_other_escrow_alone(fot, chain, deployer, lp, whale, keeper):
    """The world on a coin whose 1% transfer fee is switched on after Alice's $100,000 deposit
    request is escrowed and the whale's 1e18-share redemption is requested. ETH -1% caps the
    redemption. The excess is shares, so no token makes a round trip through the pool (the
    insurance version's did, and reverted "clearinghouse: fee on transfer" before it could draw
    on Alice's escrow): the execution goes through, the pool's token balance falls by exactly
    the keeper's fee (Alice's escrow is whole), the whale receives the pay less the coin's 1%
    (its coin's cost, as for any payment) and the Clearinghouse the excess shares."""
    coin, w = fot
    pool = w.pool
    eth(w, deployer, 2_000)
    fee = int(w.orders.execution_fee())
    fund(coin, lp, 100_000 * USDC + fee, pool)
    pool.request_deposit(100_000 * USDC, lp, sender=lp)  # another LP's tokens in the pool
    fund(coin, whale, fee, pool)
    pool.request_redeem(10**18, whale, whale, sender=whale)
    held, wallet = int(coin.balanceOf(pool)), int(coin.balanceOf(whale))
    eth(w, deployer, 1_980)  # pays the pool: the redemption is capped
    coin.set_fee(100, sender=deployer)
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    event = executed(pool.execute_request(whale, sender=keeper))
    assert event.kept > 0 and int(pool.balanceOf(w.clearinghouse)) == event.kept
    assert int(coin.balanceOf(pool)) == held - fee == 100_000 * USDC + fee
    assert int(coin.balanceOf(whale)) == wallet + event.assets - event.assets // 100
    assert (event.assets, int(pool.convertToAssets(event.kept))) == (1_001_075_446_428, 21_508_928_571)


def test_S4_insolvent_pool_requests_revert_before_any_excess_moves(world, chain, deployer, whale, router, keeper, fee):
    """A $100,000 deposit request and a 1e18-share redemption request wait; ETH walks to
    $3,000 (the long gains $7.5M, the pool's value below zero, totalAssets 0). The deposit,
    whose tokens would be worth all but infinitely many shares now, reverts "pool: insolvent"
    before anything is minted; the redemption "pool: zero amount". The Clearinghouse is given
    no share; both lapse whole."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    fund(usdc, router, 100_000 * USDC + fee, pool)
    pool.request_deposit(100_000 * USDC, router, sender=router)
    fund(usdc, whale, fee, pool)
    shares = int(pool.balanceOf(whale))
    pool.request_redeem(10**18, whale, whale, sender=whale)
    walk_price(world, "WETH", 3_000, deployer)
    assert int(pool.reserve(0, 0)[0]) < 0 and int(pool.totalAssets()) == 0
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    eth(world, deployer, 3_000)
    with ape.reverts("pool: insolvent"):
        pool.execute_request(router, sender=keeper)
    with ape.reverts("pool: zero amount"):
        pool.execute_request(whale, sender=keeper)
    assert int(pool.balanceOf(ch)) == 0
    move_clock_to(chain, int(pool.requests(whale).executable_at) + WINDOW + 1)
    wallet = int(usdc.balanceOf(router))
    pool.lapse_request(router, sender=keeper)
    pool.lapse_request(whale, sender=keeper)
    assert int(usdc.balanceOf(router)) == wallet + 100_000 * USDC + fee and int(pool.balanceOf(whale)) == shares
    assert int(pool.balanceOf(ch)) == 0


def test_S5_capped_redemption_paid_to_the_pool_leaves_other_escrow_alone(world, chain, deployer, lp, whale, router, keeper, fee):
    """The router's $100,000 deposit request and Alice's 1e18-share redemption request wait;
    the whale asks to redeem 1e18 shares to the pool itself. ETH -1% caps it: the excess shares
    move from the pool's balance to the Clearinghouse (exactly the whale's escrow less the
    burned, Alice's escrowed shares stay), the pay lands in the pool's tokens (counted nowhere,
    the whale's loss), the keeper takes the fee, and the router's tokens are untouched: its
    request and Alice's then execute, and the pool holds exactly the stray pay and no share."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    fund(usdc, router, 100_000 * USDC + fee, pool)
    pool.request_deposit(100_000 * USDC, router, sender=router)
    fund(usdc, lp, fee, pool)
    pool.request_redeem(10**18, lp, lp, sender=lp)
    fund(usdc, whale, fee, pool)
    pool.request_redeem(10**18, pool, whale, sender=whale)
    eth(world, deployer, 1_980)
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    held = int(usdc.balanceOf(pool))
    event = executed(pool.execute_request(whale, sender=keeper))
    assert event.kept > 0 and event.shares + event.kept == 10**18
    assert int(pool.balanceOf(ch)) == event.kept and int(pool.balanceOf(pool)) == 10**18  # Alice's
    assert int(usdc.balanceOf(pool)) == held - fee + event.assets
    value = int(pool.totalAssets())
    assert executed(pool.execute_request(router, sender=keeper)).kept == 0  # the pool gained: not capped
    assert int(pool.totalAssets()) == value + 100_000 * USDC
    assert executed(pool.execute_request(lp, sender=keeper)).kept > 0  # capped as the whale's
    assert int(usdc.balanceOf(pool)) == event.assets and int(pool.balanceOf(pool)) == 0


def test_S6_kept_shares_have_no_lots_and_nobody_can_move_them(world, chain, deployer, accounts, keeper, fee):
    """Five strangers each request a deposit (1 unit to $10,000) to themselves, and a sixth
    one to the Clearinghouse (a donation); ETH +1% caps all six. The Clearinghouse is kept the
    excess of each (the 1-unit one's too: 21,934 shares, worth no unit), none of it locked: its
    lots hold only the lot of the deposit made to it (the recorded shares), and the kept shares
    are free of any cooldown, as `redeemable` reports, yet nobody can move them: a
    `transferFrom` without allowance reverts "erc20: insufficient allowance", a redemption
    request naming the Clearinghouse as owner "pool: not owner" (the Clearinghouse calls no
    pool function, so it never approves, transfers or requests)."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    payers = [accounts[i] for i in (10, 11, 12, 13, 14, 15)]
    sizes = [1, 1_000, 1_000_000, 100_000_000, 10_000_000_000, 10_000_000_000]
    for k, (who, assets) in enumerate(zip(payers, sizes, strict=True)):
        fund(usdc, who, assets + fee, pool)
        pool.request_deposit(assets, ch if k == 5 else who, sender=who)
    donated = int(pool.requests(payers[5]).shares)
    eth(world, deployer, 2_020)
    move_clock_to(chain, int(pool.requests(payers[5]).executable_at))
    excess = [executed(pool.execute_request(who, sender=keeper)).kept for who in payers]
    assert excess[:2] == [21_934, 21_934_010] and all(e > 0 for e in excess)
    kept = sum(excess)
    assert int(pool.balanceOf(ch)) == kept + donated
    assert int(pool.locked_shares(ch)) == donated and len(pool.locked_lots(ch)) == 1
    assert int(pool.redeemable(ch)) == kept  # free shares, by the views
    move_clock_to(chain, chain.pending_timestamp + COOLDOWN)
    assert int(pool.locked_shares(ch)) == 0 and len(pool.locked_lots(ch)) == 0 and int(pool.unlocks_at(ch)) == 0
    for thief in (keeper, deployer):
        with ape.reverts("erc20: insufficient allowance"):
            pool.transferFrom(ch, thief, kept, sender=thief)
        with ape.reverts("erc20: insufficient allowance"):
            pool.transferFrom(ch, thief, 1, sender=thief)
        with ape.reverts("pool: not owner"):
            pool.request_redeem(kept, thief, ch, sender=thief)
        with ape.reverts("pool: not owner"):
            pool.request_redeem(1, ch, ch, sender=thief)
    assert int(pool.allowance(ch, keeper)) == int(pool.allowance(ch, deployer)) == 0
    assert int(pool.balanceOf(ch)) == kept + donated and int(pool.balanceOf(deployer)) == 0


# ============================================================ fixtures on other coins


@pytest.fixture(scope="module")
def idle(project, deployer):
    """A core protocol (no market: its book is idle) on a plain coin."""
    coin = deployer.deploy(project.FeeOnTransferERC20, "Plain USD", "pUSD", 6, 0)
    return coin, deploy_core(project, deployer, coin)


@pytest.fixture(scope="module")
def hooked(project, chain, deployer, lp, whale, attacker, trader, jit, router, keeper):
    """The world on a settlement coin that calls back into the protocol on every transfer."""
    coin = deployer.deploy(project.ReentrantERC20, "Evil USD", "EUSD", 6)
    return coin, build_world(project, chain, deployer, lp, whale, attacker, trader, jit, router, keeper, coin)


@pytest.fixture(scope="module")
def fot(project, chain, deployer, lp, whale, attacker, trader, jit, router, keeper):
    """The world on a coin that can take a fee on transfer (off for now)."""
    coin = deployer.deploy(project.FeeOnTransferERC20, "Fee USD", "fUSD", 6, 0)
    return coin, build_world(project, chain, deployer, lp, whale, attacker, trader, jit, router, keeper, coin)
