"""Attacker's review of three small changes: 595818f (LiquidityPool._deposit refuses a value below
zero even with no shares out), 0406053 (deposit / mint / withdraw / redeem and their limits value
the pool once, `_valuation`) and 1047f7d's Orders part (the debt ceiling checked at the commit,
no longer at the fill). Default protocol, $2M pools (`fund_liquidity`), ETH at $2,000, BTC at
$30,000. Run with `-s` to see the figures.

#1 (low), open: an insolvent pool with no shares out cannot be recapitalised (595818f). With a
market's reserve off every LP can leave while its open interest stays; a price move then takes
the value below zero. The deposit that would have paid the traders is now refused ("pool:
insolvent"), which is right for the depositor, but nothing else can close the hole: once the
trader closes, its profit is a pending claim the pool cannot pay, the value stays below zero
with no open interest at all, and every risk-adding commit in a market whose reserve is on is
refused protocol-wide ("orders: open interest reserve": any need exceeds a negative value).
Only fees and trader losses in reserve-off markets can lift it back to zero. Not reachable by an
attacker alone (it needs the reserve off and every LP gone), and it only blocks; no value is
taken. Suggested fix: a share-less `recapitalise(assets)` (or the insurance fund paying the
deficit) that pays the claims and brings the value back to zero, after which the genesis
deposit rule applies.

#2 (info), open: the debt ceiling checked at the commit only (1047f7d) is passed by an account
that is in credit at its commit and a debtor at its fill: it commits an ETH long while the debts
are over the ceiling (its settlement is positive, so the check does not apply), then its BTC
close at a loss fills first and makes it a debtor; the ETH long fills anyway (before: cancelled
"orders: debt ceiling"). No new exposure: before the change the same account reached the same
state by having the ETH long filled before the BTC close (it can keep its own fills), every
fill is still margin-checked (with the debt's initial margin), one order per account and market
and the $2 fee per order bound the scale, and no withdrawal can make it a debtor while an order
is open ("clearinghouse: order pending"). Suggested fix if the ceiling must hold at the fill:
check it again at the fill for orders whose account turned debtor since the commit (it is
decided by the account's own flows, not by LP flows, so it does not reopen the reserve race).

Refused: (2) is behaviour-identical; deposit, mint, withdraw and redeem (through an allowance)
give exactly their previews (the old two-pass path) with a position in profit open, and
maxWithdraw is the old min(assets, liquidity, (value - need) / 1e12) to the unit, one more
reverting "pool: open interest reserve" (the settlement token has no hooks, and the only state
written before the values are used, the lock and the allowance, does not enter them). (1) No
position can open before the genesis deposit (any need exceeds a zero value), so nobody can
take an empty pool below zero to block the first LP; the genesis deposit at value 0 mints
assets x 10**6 shares and its owner redeems all but the virtual shares' rounding.
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import deposit_now, fill_now, place, redeem_now, trade_now, withdraw_now
from marginsim.protocol import account_id
from tests.e2e.attacks import reserve_out_of_the_way
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, move_clock_to, publish_usd
from tests.e2e.test_review_debt import self_hedged_pair
from tests.e2e.test_review_reserve import COOLDOWN, FEE, POOL_USD, S2W, price_of, reserve, usd


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def mint_approve(protocol, owner, amount: int) -> None:
    protocol.settlement.mint(owner, amount, sender=owner)
    protocol.settlement.approve(protocol.pool, amount, sender=owner)


# ---------------------------------------------------------------- (2) one valuation


def test_refused__one_valuation_gives_the_two_pass_previews(
    protocol, deployer, lp, trader, other_trader, attacker, keeper, chain
):
    """0406053 is behaviour-identical: every flow matches its preview (`_to_shares` / `_to_assets`,
    the old path; with the book open a deposit or redemption request records it and executes at
    it, mint and withdraw are refused) and withdrawable the old formula, with a long in profit and a short at a loss
    open (balanced, so funding leaves the value unchanged between the preview's block and the
    flow's; a one-sided book moves it by funding every second)."""
    ch, pool, eth = protocol.clearinghouse, protocol.pool, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, POOL_USD, 0)
    deposit(protocol, trader, "USDC", 200_000 * USDC)
    deposit(protocol, keeper, "USDC", 200_000 * USDC)
    trade_now(ch, eth, 400 * WAD, 0, 0, sender=trader)
    trade_now(ch, eth, -400 * WAD, 0, 0, sender=keeper)
    publish_usd(protocol, "WETH", 2_150, deployer)  # the long up $60k, the short down as much; the need ~$860k
    chain.pending_timestamp = chain.pending_timestamp + COOLDOWN + 1

    # with the book open the flows are requests: each records what its preview said in its block
    # (the instant paths' one-pass valuation, the same `_valuation`), and executes at it
    mint_approve(protocol, other_trader, 10_000 * USDC)
    expect = int(pool.previewDeposit(1_234_567_891))
    before = int(pool.balanceOf(other_trader))
    pool.request_deposit(1_234_567_891, other_trader, sender=other_trader)
    assert int(pool.requests(other_trader).shares) == expect
    move_clock_to(chain, int(pool.requests(other_trader).executable_at))
    pool.execute_request(other_trader, sender=keeper)
    got_dep = int(pool.balanceOf(other_trader)) - before
    assert got_dep == expect
    expect_assets = int(pool.previewMint(777_777_777_777))
    with ape.reverts("pool: book open, request instead"):
        pool.mint(777_777_777_777, other_trader, sender=other_trader)

    pool.approve(attacker, 2**256 - 1, sender=lp)  # a third party spends an allowance first
    expect_shares = int(pool.previewWithdraw(3_333_333_333))
    with ape.reverts("pool: book open, request instead"):
        pool.withdraw(3_333_333_333, attacker, lp, sender=attacker)
    expect_out = int(pool.previewRedeem(999_999_999_999))
    mint_approve(protocol, lp, int(protocol.orders.execution_fee()))
    pool.request_redeem(999_999_999_999, attacker, lp, sender=lp)  # the owner asks, paid to `attacker`
    assert int(pool.requests(lp).assets) == expect_out
    move_clock_to(chain, int(pool.requests(lp).executable_at))
    wallet = int(protocol.settlement.balanceOf(attacker))
    pool.execute_request(lp, sender=keeper)
    assert int(protocol.settlement.balanceOf(attacker)) - wallet == expect_out

    value, need = reserve(protocol)
    liquidity = int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending())
    old = min(int(pool.convertToAssets(pool.balanceOf(lp))), liquidity, (value - need) // S2W)
    max_w = int(pool.withdrawable(lp))
    print(
        f"\n(2) deposit {got_dep} shares, mint cost {usd(expect_assets)}, withdraw burnt {expect_shares}, "
        f"redeem paid {usd(expect_out)}; maxWithdraw {usd(max_w)} = old {usd(old)} (value {usd(value // S2W)}, "
        f"need {usd(need // S2W)}, ETH {price_of(protocol, 'ETH-PERP') / WAD:,.0f})"
    )
    assert max_w == old == (value - need) // S2W  # the reserve binds
    assert int(pool.redeemable(lp)) == min(int(pool.balanceOf(lp)), int(pool.convertToShares(old)))
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, max_w + 1, lp, lp, sender=lp)
    withdraw_now(pool, max_w, lp, lp, sender=lp)


# ---------------------------------------------------------------- (1) the insolvency rule


def test_refused__an_empty_pool_cannot_be_taken_below_zero_before_the_genesis_deposit(protocol, deployer, lp, attacker):
    """No LP yet: the value is 0, every position is refused at its commit, so the first deposit
    cannot be blocked; it mints assets x 10**6 shares."""
    ch, pool, eth = protocol.clearinghouse, protocol.pool, protocol.markets["ETH-PERP"]
    assert int(pool.totalSupply()) == 0 and reserve(protocol)[0] == 0
    deposit(protocol, attacker, "USDC", 100_000 * USDC)
    for size in (WAD // 10**6, -(WAD // 10**6)):  # even a millionth of an ETH, either side
        with ape.reverts("orders: open interest reserve"):
            place(ch, eth, size, sender=attacker)
    mint_approve(protocol, lp, 1_000 * USDC)
    deposit_now(pool, 1_000 * USDC, lp, sender=lp)
    print(f"\n(1) genesis deposit $1,000 at value 0: {int(pool.balanceOf(lp)):,} shares")
    assert int(pool.balanceOf(lp)) == 1_000 * USDC * 10**6


def test_finding__an_insolvent_pool_with_no_shares_out_cannot_be_recapitalised(
    protocol, deployer, lp, trader, other_trader, attacker, keeper, chain
):
    """FINDING (low), #1. ETH's reserve off, a $30k pool, a 100 ETH long; every LP leaves at $2,050;
    ETH to $2,390: the value is below zero and a deposit is refused. The trader closes: its
    profit beyond the pool's balance is a pending claim, the value stays below zero with no open
    interest left, deposits stay refused and every BTC open (reserve on) is refused at its commit."""
    ch, pool, eth, btc = (protocol.clearinghouse, protocol.pool, protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"])
    protocol.configurator.set_reserve_factor(eth, 0, sender=deployer)
    fund_liquidity(protocol, lp, deployer, 30_000, 0)
    trader_id = deposit(protocol, trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, 100 * WAD, 0, 0, sender=trader)
    chain.pending_timestamp = chain.pending_timestamp + COOLDOWN + 1
    publish_usd(protocol, "WETH", 2_050, deployer)
    redeem_now(pool, pool.balanceOf(lp), lp, lp, sender=lp)
    # no LP's shares out: only the dust the Clearinghouse keeps from the capped request (the
    # funding paid to the pool during its delay), which nobody can redeem
    assert int(pool.totalSupply()) == int(pool.balanceOf(protocol.clearinghouse)) < 10**9
    publish_usd(protocol, "WETH", 2_390, deployer)
    value_open = reserve(protocol)[0]
    assert value_open < 0
    mint_approve(protocol, other_trader, 1_000_000 * USDC)
    with ape.reverts("pool: insolvent"):
        deposit_now(pool, 1_000_000 * USDC, other_trader, sender=other_trader)

    trade_now(ch, eth, -100 * WAD, 0, 0, sender=trader)  # closes: no open interest anywhere
    assert int(ch.market_state(eth).long_oi) == 0
    value_flat = reserve(protocol)[0]
    pending = int(ch.total_pending())
    print(
        f"\n#1 value with the long open {usd(value_open // S2W)}; flat {usd(value_flat // S2W)} "
        f"(pool balance {usd(int(ch.pool_balance()))}, pending claims {usd(pending)}, "
        f"trader {usd(int(ch.settlement(trader_id)))})"
    )
    assert value_flat < 0 and pending > 0
    with ape.reverts("pool: insolvent"):
        deposit_now(pool, 1_000_000 * USDC, other_trader, sender=other_trader)
    with ape.reverts("pool: insolvent"):
        pool.mint(10**12, other_trader, sender=other_trader)
    deposit(protocol, attacker, "USDC", 100_000 * USDC)
    with ape.reverts("orders: open interest reserve"):  # BTC's reserve is on: any need > a negative value
        place(ch, btc, WAD // 100, sender=attacker)
    with ape.reverts("orders: open interest reserve"):
        place(ch, btc, -(WAD // 100), sender=attacker)


# ---------------------------------------------------------------- (3) the debt ceiling at the commit


def test_finding__credit_at_the_commit_debtor_at_the_fill_passes_the_ceiling(
    protocol, deployer, lp, attacker, other_trader, keeper
):
    """FINDING (info), #2. The debts over the ceiling (the self-hedged pair of test_review_debt #8
    closed); an account in credit ($100 USDC, 10 WETH, 0.1 BTC long now $300 down) commits 1 ETH
    long (passes: settlement >= 0) and the BTC close; the close fills first (a debtor), then the
    ETH long fills (before: cancelled "orders: debt ceiling"). A fresh ETH commit is refused."""
    ch, orders, eth, btc = (protocol.clearinghouse, protocol.orders, protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"])
    reserve_out_of_the_way(protocol, deployer)
    self_hedged_pair(protocol, deployer, lp, attacker)
    me = deposit(protocol, other_trader, "WETH", 10 * WAD)
    deposit(protocol, other_trader, "USDC", 100 * USDC)
    trade_now(ch, btc, WAD // 10, 0, 0, sender=other_trader)
    trade_now(ch, eth, 5_000 * WAD, 0, 0, sender=attacker)  # the pair closes: debts over the ceiling
    trade_now(ch, eth, -5_000 * WAD, 0, 1, sender=attacker)
    debt, lendable, ceiling = int(ch.total_debt()), int(ch.pool_balance()) - int(ch.total_pending()), int(ch.debt_terms()[3])
    assert debt * WAD > lendable * ceiling
    publish_usd(protocol, "WBTC", 27_000, deployer)
    credit = int(ch.settlement(me))
    assert credit > 0

    place(ch, eth, WAD, sender=other_trader)  # in credit: the ceiling does not apply
    place(ch, btc, -(WAD // 10), sender=other_trader)  # a reduction: never refused
    fill_now(ch, me, btc, keeper=keeper)
    debtor = int(ch.settlement(me))
    assert debtor < 0 and int(ch.positions(me, btc).size) == 0
    receipt = fill_now(ch, me, eth, keeper=keeper)
    assert not receipt.events.filter(orders.OrderCancelled)
    assert int(ch.positions(me, eth).size) == WAD
    print(
        f"\n#2 debts {usd(debt)} / lendable {usd(lendable)} = {debt / lendable:.4f} > {ceiling / WAD}; "
        f"settlement at the commit {usd(credit)}, after the BTC close {usd(debtor)}: the ETH long filled, 1 ETH "
        f"(fee {usd(FEE)} per order)"
    )
    with ape.reverts("orders: debt ceiling"):
        place(ch, eth, WAD, sender=other_trader)
    assert account_id(other_trader, 0) == me
