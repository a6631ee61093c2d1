"""Attacker's review of issue 9 item 1: a negative settlement balance as a loan from the pool,
with interest (the debt index), and profit the pool cannot pay in tokens as a pending claim
(contracts/vault.vy, perps._settle_fill, margining._margin, Clearinghouse.liquidation_close,
LiquidationEngine.liquidate_collateral, LiquidityPool._signed_value, Orders._over_debt_ceiling).

Tests named `test_finding__*` replay a finding that is still open (by design or documented):
they assert the outcome that happens today, with the reviewer's numbers re-derived on the
current contracts, so each must be flipped if it is ever fixed. Tests named `test_refused__*`
or `test_fixed__*` replay a finding fixed after the review and assert what happens now. Run
with `-s` to see the figures. Dollar figures that move with interest (a few cents a second on
$1M) are pinned to within a dollar.

#1 (HIGH), fixed. A written-off collateral (weight 0) was for sale whenever debt > ltv * C,
and C = 0 for an account holding only that token: any debt at all, even a $20 fee, let anyone
take the whole balance for nothing from a healthy account with positions open. Before: 10 WBTC
($300,000) taken for $0 from an account at equity $3,979.60 over maintenance $1,320.00, owing
$20.00. Now a written-off token is for sale only under the old rule (no positions and equity
< 0): the same take is refused "liquidation: close positions first", and once the owner is
flat (balance +$3,958.04) "liquidation: account healthy". What is left is the intended cleanup
of an insolvent account: 1 WBTC taken for $0 from an account owing $4,042.04 with no
positions, the debt then settled as bad debt out of the insurance fund.

#2 (MEDIUM-HIGH), fixed. The LP value counted a debt as last written, so months of interest
reached the share price in one step at the debtor's next write, a moment anyone can see coming.
Before (re-derived from the state with the old valuation): on $1,012,024.09 of debt, 180 days
accrue $60,288.12; a $3M just-in-time LP in for 15 minutes around the write would have taken
~$30,084 of it, and a debtor itself depositing $30M before repaying would have paid ~$5,501 of
its $60,288 interest. Now the value adds the accrued interest (total_scaled_debt x index):
the honest LP's value grows $60,288.12 over the 180 days as it accrues; the JIT LP gains $1.11,
its share of the $2.25 accrued while it was in; the debtor pays its $60,288.13 in full.

#3 (MEDIUM), open, documented: claims are paid first come first served. Before and now: two
claims ($331,627.08 booked first, $513,124.69 booked later), the debtor repays $400,000; the
later claimant withdraws first and takes every returning token ($402,753.44), the earlier one
gets $0 and waits. Fix (not built): a queue (claims paid pro rata or in booking order).

#4 (MEDIUM), fixed. A keeper liquidating a debtor while claims left the pool no free
liquidity was paid nothing: the whole keeper reward, tip included, counted as the pool's part
(reward x owed / penalty), payable only from free liquidity. Now the pool's part is the
keeper's share of the owed penalty, and the insurance fund pays whatever the pool does not
(the tip, and the pool's part while it has no free token). The reviewer's replay (a partial
close of 65.38 ETH at health 0.817, penalty $2,876.90): keeper paid $0 -> $1,438.45, from the
fund (control with free liquidity: $1,438.46, from the pool). A whole close near zero equity
(penalty $290.02, tip $440): $0 -> $440.00, from the fund.

#5 (LOW-MEDIUM), fixed. Utilisation counted pending claims as lendable. Before: with $663,003
owed, a pool balance of $1,065,757 and $844,752 of it claims, u = 0.6221 and the rate 20.66%;
30 days' interest $11,259.92. Now lendable = pool_balance - total_pending ($221,005): u = 1,
the rate 32%, 30 days' interest $17,437.91, to the wei of marginsim.risk.debt_index_now.

#6 (LOW), by design (a claim is not tokens): an account whose realised profit is a claim pays
its liquidation penalty by netting the claim, all of it "owed", so the whole $1,577.62 goes to
the LPs (value +$1,577.63) as a lower total_pending. Before: the insurance fund +$0, the
keeper $0. Now (#4's fix) the fund pays the keeper its $788.81 share: the fund is $788.81
down for a penalty the LPs keep in full.

#7 (LOW), fixed. The sale rule read the haircut collateral alone (debt > ltv * C) while the
withdrawal check let unrealised PnL back a debt: a withdrawal at initial margin ($156,390.90
USDT) left a debt of $50,632.46 over 0.9 x C = $37,285.78 at health 3.46, and a keeper bought
51,666 USDT for $50,632.46 (the owner losing ~$1,033). Now the rule is debt > ltv * (equity +
debt): $50,632.46 against 0.9 x $86,418.41, and the sale is refused "liquidation: close
positions first".

#8 (LOW), open, documented: the debt ceiling (now in Orders, on what the pool could lend)
refuses risk-adding orders of any account in debt, and a self-hedged pair puts total debt over
it: $1,263,601.87 / $2,021,203.79 = 0.6252 > 0.5, at 20.76% a year ($718.53 a day). A
collateral-only trader (10 WETH) still opens its first position (its settlement is 0 when
Orders checks; the old core check, after the fill's fee, refused even that); its $1.12 fee
makes it a debtor, and its next order is refused at its commit "orders: debt ceiling" (before:
cancelled at the fill, the $2 fee to the insurance fund; now the commit reverts, nothing is
stored or escrowed, and an order committed before the ceiling was crossed still fills).
Reductions and withdrawals are not affected.

#9 (INFO), fixed. The index is stored in 104 bits per account. Before: at the Configurator's
largest rate (1,100% a year) and full utilisation, in monthly steps the index passed 2**104
after 48 steps (3.95 years) and a debt written then read back more than 4x. Now the index
saturates at 2**104 - 1 (the same 48 steps): the debt ($3,028.62 grown to $6.14e16) is
written at exactly that index, reads back as written, and from then on accrues nothing, for
every debt (interest stops for good: nothing resets the index).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import ape
import pytest

from marginsim import risk
from marginsim.orders import deposit_now, fill_now, place, redeem_now, trade_now, withdraw_now
from tests.e2e.attacks import reserve_out_of_the_way
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, move_clock_to, publish_usd, refresh_feeds

MAX_UINT = 2**256 - 1
S2W = 10**12
DAY = 86_400
COOLDOWN = 900  # LiquidityPool.COOLDOWN
FEE = 2 * USDC  # Orders' execution fee
MAX_INDEX = 2**104 - 1  # the debt index's ceiling (an account's top 104 bits)


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


@pytest.fixture(scope="module", autouse=True)
def _reserve_aside(_module_fixtures_first, protocol, deployer):
    reserve_out_of_the_way(protocol, deployer)  # the review's pairs of 7,500 ETH are larger than the pool


def usd(x: int) -> str:
    return f"{x / USDC:,.2f}"


def near(x: int, dollars: float, tolerance: float = 1.0) -> bool:
    """`x` token units within `tolerance` dollars of `dollars` (interest moves a few cents a second)."""
    return abs(x - round(dollars * USDC)) <= tolerance * USDC


def snapshot(chain: Any) -> Any:
    chain.mine()  # a snapshot id is a block hash: keep it apart from the isolation snapshot
    return chain.snapshot()


# ---------------------------------------------------------------- #1 (fixed): a written-off token taken for free


def test_refused__written_off_collateral_of_a_healthy_debtor_is_not_for_sale(
    protocol, deployer, lp, trader, other_trader, attacker
):
    """#1, fixed. The victim: 10 WBTC ($300,000), long 20 ETH; ETH +10%; its $20 fee is its only
    debt; WBTC is written off. The free take is refused while it has positions and, once it is
    flat, because its equity is positive. Only an account with no positions and negative equity
    (here: 1 WBTC, its short closed at a $4,042 loss) gives its written-off token away, and its
    debt then settles as bad debt."""
    ch, engine, cfg = protocol.clearinghouse, protocol.liquidation_engine, protocol.configurator
    wbtc, eth = protocol.tokens["WBTC"], protocol.markets["ETH-PERP"]
    slot = int(ch.collateral_slot(wbtc))
    fund_liquidity(protocol, lp, deployer, 2_000_000, 100_000)
    victim = deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    trade_now(ch, eth, 20 * WAD, 0, 0, sender=other_trader)
    insolvent = deposit(protocol, trader, "WBTC", 10**8)
    trade_now(ch, eth, -20 * WAD, 0, 0, sender=trader)
    publish_usd(protocol, "WETH", 2_200, deployer)  # ETH +10%
    trade_now(ch, eth, 20 * WAD, 0, 0, sender=trader)  # the short closed at a loss: in debt
    debt = -int(ch.settlement(victim))
    cfg.write_off_collateral(wbtc, sender=deployer)  # WBTC's feed halts: written off
    equity, maintenance, _ = (int(v) for v in ch.margin(victim))
    print(f"\n#1 victim: debt {usd(debt)}, equity ${equity / WAD:,.2f}, maintenance ${maintenance / WAD:,.2f}")
    assert near(debt, 20.00, 0.01)  # 20 ETH x $2,000 x 0.05%, and a second's interest
    assert near(equity // S2W, 3_979.60, 0.5) and near(maintenance // S2W, 1_320.00, 0.01)
    assert int(ch.market_mask(victim)) != 0

    with ape.reverts("liquidation: close positions first"):
        engine.liquidate_collateral(victim, wbtc, MAX_UINT, sender=attacker)
    trade_now(ch, eth, -20 * WAD, 0, 0, sender=other_trader)  # flat: the profit realised
    balance = int(ch.settlement(victim))
    print(f"#1 victim flat: balance {usd(balance)}")
    assert near(balance, 3_958.04, 0.5)
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate_collateral(victim, wbtc, MAX_UINT, sender=attacker)
    assert int(ch.balances(victim, slot)) == 10 * 10**8 and int(wbtc.balanceOf(attacker)) == 0

    # what is left of the free take: the old rule, an insolvent account with no positions
    owed = -int(ch.settlement(insolvent))
    insurance = int(ch.insurance_balance())
    tx = engine.liquidate_collateral(insolvent, wbtc, MAX_UINT, sender=attacker)
    sale = tx.events.filter(engine.CollateralLiquidation)[0]
    bad = tx.events.filter(ch.BadDebt)[0]
    print(
        f"#1 insolvent: owed {usd(owed)}; sold {int(sale.amount) / 1e8} WBTC for {int(sale.paid)}; "
        f"bad debt {usd(int(bad.shortfall))}"
    )
    assert (int(sale.amount), int(sale.paid)) == (10**8, 0)
    assert near(owed, 4_042.04) and int(bad.shortfall) >= owed
    assert int(bad.covered_by_insurance) == int(bad.shortfall) == insurance - int(ch.insurance_balance())
    assert int(ch.settlement(insolvent)) == 0


# ---------------------------------------------------------------- #2 (fixed): interest before a just-in-time LP


def _debtor_1m(protocol, deployer, lp, trader) -> int:
    """LP $2M; the debtor: 2,500 WETH, long 5,000 ETH closed 10% lower: $1,012,024.09 owed."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    debtor = deposit(protocol, trader, "WETH", 2_500 * WAD)
    trade_now(ch, eth, 5_000 * WAD, 0, 0, sender=trader)
    publish_usd(protocol, "WETH", 1_800, deployer)
    trade_now(ch, eth, -5_000 * WAD, 0, 0, sender=trader)
    return debtor


def _uncharged(ch) -> int:
    """Interest accrued on every debt and not yet charged, as the LP value counts it now (the
    old valuation left it out)."""
    return max(int(ch.total_scaled_debt()) * int(ch.debt_index()) // 10**36, int(ch.total_debt())) - int(ch.total_debt())


def test_fixed__jit_lp_deposit_takes_no_interest_accrued_before_it(protocol, deployer, lp, trader, attacker, chain):
    """#2, fixed. 180 days of interest on a $1M debt: the honest LP's value grows as it accrues.
    A $3M LP deposited just before the debtor's write and redeemed after the cooldown gains
    only its share of the interest accrued while it was in ($1.11), not half of the 180 days'
    (~$30,084 under the old valuation)."""
    ch, pool, usdc = protocol.clearinghouse, protocol.pool, protocol.settlement
    debtor = _debtor_1m(protocol, deployer, lp, trader)
    written = -int(ch.settlement(debtor))
    value_start, lp_start = int(pool.totalAssets()), int(pool.convertToAssets(pool.balanceOf(lp)))
    chain.mine(timestamp=chain.pending_timestamp + 180 * DAY)
    refresh_feeds(protocol, deployer)  # the oracle bot's heartbeat: LP flows wait on a stale collateral feed
    accrued = -int(ch.settlement(debtor)) - written
    grown = int(pool.totalAssets()) - value_start
    print(f"\n#2 debt {usd(written)}; 180 days accrue {usd(accrued)}; the LP value grew {usd(grown)}")
    assert near(written, 1_012_024.09, 0.01) and near(accrued, 60_288.12)
    assert abs(grown - accrued) <= 2  # counted as it accrues (was 0: counted at the next write)

    jit = 3_000_000 * USDC
    usdc.mint(attacker, jit, sender=attacker)
    usdc.approve(pool, jit, sender=attacker)
    uncharged, value_in = _uncharged(ch), int(pool.totalAssets())
    old_gain = uncharged * jit // (value_in - uncharged + jit)  # its share of the step, old valuation
    deposit_now(pool, jit, attacker, sender=attacker)
    shares = int(pool.balanceOf(attacker))
    owed_in = -int(ch.settlement(debtor))
    usdc.mint(trader, 1, sender=trader)
    usdc.approve(ch, 1, sender=trader)
    ch.deposit(usdc, 1, 0, sender=trader)  # the debtor's write charges the 180 days
    chain.pending_timestamp = chain.pending_timestamp + COOLDOWN + 1
    wallet = int(usdc.balanceOf(attacker))
    redeem_now(pool, shares, attacker, attacker, sender=attacker)
    gain = int(usdc.balanceOf(attacker)) - wallet - jit
    window = -int(ch.settlement(debtor)) + 1 - owed_in  # interest accrued while it was in
    fair = window * jit // (value_in + jit)
    lp_gain = int(pool.convertToAssets(pool.balanceOf(lp))) - lp_start
    print(
        f"#2 JIT LP $3M for 15 min: gain {usd(gain)} (its share of {usd(window)} accrued meanwhile: {usd(fair)}); "
        f"old valuation ~{usd(old_gain)}"
    )
    print(f"#2 honest LP over the 180 days: +{usd(lp_gain)}")
    assert near(old_gain, 30_083.77, 20)
    assert 0 <= gain <= fair + 1 and near(gain, 1.11, 0.05)
    assert near(lp_gain, 60_289.27)


def test_fixed__debtor_lp_round_trip_pays_its_interest(protocol, deployer, lp, trader, chain):
    """#2, the debtor's own round trip, fixed: it deposits $30M into the pool just before it
    repays, so that the interest its repayment books would be shared mostly with itself, and
    redeems after the cooldown. It now pays its 180 days' interest in full ($60,288.13; ~$5,501
    under the old valuation), all of it to the honest LP."""
    ch, pool, usdc = protocol.clearinghouse, protocol.pool, protocol.settlement
    debtor = _debtor_1m(protocol, deployer, lp, trader)
    lp_start = int(pool.convertToAssets(pool.balanceOf(lp)))
    chain.mine(timestamp=chain.pending_timestamp + 180 * DAY)
    refresh_feeds(protocol, deployer)  # the oracle bot's heartbeat: LP flows wait on a stale collateral feed

    jit = 30_000_000 * USDC
    usdc.mint(trader, jit + 2_000_000 * USDC, sender=trader)
    usdc.approve(pool, jit, sender=trader)
    usdc.approve(ch, MAX_UINT, sender=trader)
    wallet_start = int(usdc.balanceOf(trader))
    uncharged, value_in = _uncharged(ch), int(pool.totalAssets())
    deposit_now(pool, jit, trader, sender=trader)
    owed = -int(ch.settlement(debtor))
    written = int(ch.debt_of(debtor)[0])
    ch.deposit(usdc, owed + 1_000 * USDC, 0, sender=trader)  # repays the debt with its interest
    interest = owed - written
    chain.pending_timestamp = chain.pending_timestamp + COOLDOWN + 1
    redeem_now(pool, int(pool.balanceOf(trader)), trader, trader, sender=trader)
    publish_usd(protocol, "WETH", 1_800, deployer)  # the feed is stale after 180 days
    ch.withdraw(usdc, int(ch.settlement(debtor)), 0, sender=trader)
    net_paid = wallet_start - int(usdc.balanceOf(trader)) - written
    lp_gain = int(pool.convertToAssets(pool.balanceOf(lp))) - lp_start
    old_net = interest - uncharged * jit // (value_in - uncharged + jit)
    print(
        f"\n#2b interest on {usd(written)} over 180 days {usd(interest)}: "
        f"the debtor's net cost {usd(net_paid)} (old valuation ~{usd(old_net)}); honest LP +{usd(lp_gain)}"
    )
    assert near(interest, 60_288.13) and near(old_net, 5_500.71, 20)
    assert interest <= net_paid <= interest + USDC // 100  # its pool round trip earned it nothing
    assert interest <= lp_gain <= interest + USDC // 100  # all of it, and the debtor's rounding


# ---------------------------------------------------------------- #3 and #5: claims pending


def _two_claims(protocol, deployer, lp, trader, other_trader, attacker) -> tuple[int, int, int]:
    """The reviewer's book: LP $200k; a WETH-only debtor short 5,000 ETH against two USDC longs
    of 2,500 ETH each; ETH +10%; the debtor closes (about $1M owed), then the honest long closes
    (its claim booked first), then the late one. Returns (debtor, honest, late)."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 200_000, 0)
    debtor = deposit(protocol, trader, "WETH", 2_500 * WAD)
    honest = deposit(protocol, other_trader, "USDC", 1_000_000 * USDC)
    late = deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    trade_now(ch, eth, -5_000 * WAD, 0, 0, sender=trader)
    trade_now(ch, eth, 2_500 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, 2_500 * WAD, 0, 0, sender=attacker)
    publish_usd(protocol, "WETH", 2_200, deployer)
    trade_now(ch, eth, 5_000 * WAD, 0, 0, sender=trader)
    trade_now(ch, eth, -2_500 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, -2_500 * WAD, 0, 0, sender=attacker)
    return debtor, honest, late


def _repay(protocol, trader, amount: int) -> Any:
    ch, usdc = protocol.clearinghouse, protocol.settlement
    usdc.mint(trader, amount, sender=trader)
    usdc.approve(ch, amount, sender=trader)
    return ch.deposit(usdc, amount, 0, sender=trader)


def test_finding__claims_are_paid_first_come_first_served(protocol, deployer, lp, trader, other_trader, attacker):
    """FINDING (medium), open, documented: vault._claim pays min(claim, pool_balance -
    total_debt) to whoever withdraws first. After the debtor repays $400,000 the later
    claimant withdraws one unit and takes every token that came back ($402,753.44); the claim
    booked first gets nothing and keeps waiting. Fix (not built): pay claims pro rata or in
    booking order."""
    ch, usdc = protocol.clearinghouse, protocol.settlement
    _, honest, late = _two_claims(protocol, deployer, lp, trader, other_trader, attacker)
    honest_claim, late_claim = int(ch.pending(honest)), int(ch.pending(late))
    print(
        f"\n#3 claims: honest (first) {usd(honest_claim)}, late {usd(late_claim)}; "
        f"total_debt {usd(int(ch.total_debt()))}, pool {usd(int(ch.pool_balance()))}, pending {usd(int(ch.total_pending()))}"
    )
    assert near(honest_claim, 331_627.08) and near(late_claim, 513_124.69)
    _repay(protocol, trader, 400_000 * USDC)
    back = int(ch.pool_balance()) - int(ch.total_debt())
    wallet = int(usdc.balanceOf(attacker))
    ch.withdraw(usdc, 1, 0, sender=attacker)  # any settlement withdrawal pays the claim first
    paid_late = late_claim - int(ch.pending(late))
    ch.withdraw(usdc, 1, 0, sender=other_trader)
    paid_honest = honest_claim - int(ch.pending(honest))
    left = int(ch.pool_balance()) - int(ch.total_debt())
    print(f"#3 tokens back {usd(back)}: late claim paid {usd(paid_late)}, honest (earlier) {usd(paid_honest)}; left {usd(left)}")
    assert near(back, 402_753.44) and paid_late >= back  # interest charged at the withdrawal joins it
    assert paid_honest == 0 and int(ch.pending(honest)) == honest_claim and left <= 0
    assert int(usdc.balanceOf(attacker)) - wallet == 1


def test_fixed__utilisation_counts_pending_claims_as_lent(protocol, deployer, lp, trader, other_trader, attacker, chain):
    """#5, fixed. After the repayment, $663,003 owed, pool balance $1,065,757 of which $844,752
    is claims: the rate used to read u = debt / pool_balance = 0.6221 (20.66% a year); it now
    reads u = debt / (pool_balance - total_pending), capped at 1 (32%). Over 30 days the index
    moves exactly as marginsim.risk.debt_index_now with total_pending says: $17,437.91 of
    interest instead of $11,259.92."""
    ch = protocol.clearinghouse
    debtor, _, _ = _two_claims(protocol, deployer, lp, trader, other_trader, attacker)
    _repay(protocol, trader, 400_000 * USDC)
    view = risk.read_debt_view(ch)
    lendable = view.pool_balance - view.total_pending
    old_u = min(view.total_debt * WAD // view.pool_balance, WAD)
    new_u = min(view.total_debt * WAD // lendable, WAD)
    print(
        f"\n#5 total_debt {usd(view.total_debt)}, pool {usd(view.pool_balance)}, "
        f"pending {usd(view.total_pending)}, lendable {usd(lendable)}: u {old_u / WAD:.4f} -> {new_u / WAD:.4f}"
    )
    assert near(view.total_debt, 663_003.23) and near(view.total_pending, 844_751.77)
    assert 6_220 * 10**14 < old_u < 6_222 * 10**14 and new_u == WAD
    written, at = (int(v) for v in ch.debt_of(debtor))
    usdc = protocol.settlement
    usdc.mint(trader, 1, sender=trader)
    usdc.approve(ch, 1, sender=trader)
    view = risk.read_debt_view(ch)  # unchanged: nothing accrued since
    move_clock_to(chain, view.last_time + 30 * DAY)
    tx = ch.deposit(usdc, 1, 0, sender=trader)  # the debtor's write accrues the index
    index = int(ch.debt_state()[0])
    old_index = replace(view, total_pending=0).index_at(tx.timestamp)
    interest = risk.debt_now(written, index, at) - written
    old_interest = risk.debt_now(written, old_index, at) - written
    rate = (index - view.index) * 365 * WAD // (view.index * 30)
    old_rate = (old_index - view.index) * 365 * WAD // (view.index * 30)
    print(f"#5 30 days: rate {old_rate / WAD:.4%} -> {rate / WAD:.4%}; interest {usd(old_interest)} -> {usd(interest)}")
    assert tx.timestamp == view.last_time + 30 * DAY
    assert index == view.index_at(tx.timestamp) != old_index
    assert near(interest, 17_437.91) and near(old_interest, 11_259.92)
    assert abs(rate - 32 * 10**16) < 10**12 and abs(old_rate - 2_066 * 10**14) < 10**15


# ---------------------------------------------------------------- #4 (fixed) and #6 (by design): while claims are pending


def _liquidate(protocol, victim, keeper, market: str = "ETH-PERP") -> tuple[int, int, int]:
    """(penalty, what the keeper received, size closed)."""
    usdc, engine = protocol.settlement, protocol.liquidation_engine
    before = int(usdc.balanceOf(keeper))
    tx = engine.liquidate(victim, protocol.markets[market], MAX_UINT, sender=keeper)
    liq = tx.events.filter(engine.Liquidation)[0]
    paid = int(usdc.balanceOf(keeper)) - before
    assert int(liq.keeper_reward) == paid
    return int(liq.penalty), paid, abs(int(liq.size_closed))


def _claims_book(protocol, deployer, lp, trader, other_trader, attacker, victim_owner, victim_btc: int, victim_eth: int) -> int:
    """LP $200k, insurance $100k, the debtor short 5,000 ETH against two 2,500 ETH longs, and a
    WBTC-only victim with `victim_eth` ETH (and 20 BTC when it holds 2 WBTC); ETH +10%; the
    debtor closes (about $1M owed). Returns the victim."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 200_000, 100_000)
    deposit(protocol, trader, "WETH", 2_500 * WAD)
    deposit(protocol, other_trader, "USDC", 1_000_000 * USDC)
    deposit(protocol, attacker, "USDC", 1_000_000 * USDC)
    victim = deposit(protocol, victim_owner, "WBTC", victim_btc)
    trade_now(ch, eth, -5_000 * WAD, 0, 0, sender=trader)
    trade_now(ch, eth, 2_500 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, 2_500 * WAD, 0, 0, sender=attacker)
    trade_now(ch, eth, victim_eth, 0, 0, sender=victim_owner)
    if victim_btc > 10**8:
        trade_now(ch, protocol.markets["BTC-PERP"], 20 * WAD, 0, 0, sender=victim_owner)
    publish_usd(protocol, "WETH", 2_200, deployer)
    trade_now(ch, eth, 5_000 * WAD, 0, 0, sender=trader)
    return victim


def _claims_pending(protocol, other_trader, attacker) -> None:
    """Both longs close in profit: the pool, with every token lent, books claims."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    trade_now(ch, eth, -2_500 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, -2_500 * WAD, 0, 0, sender=attacker)
    assert int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending()) < 0  # no free liquidity


def test_fixed__keeper_paid_for_a_partial_liquidation_while_claims_are_pending(
    protocol, deployer, lp, trader, other_trader, attacker, keeper, accounts, chain
):
    """#4, fixed, as the reviewer replayed it: the victim (1 WBTC, short 100 ETH, its $100 fee
    its debt) at health 0.817 is partly liquidated (65.38 ETH, no tip). With free liquidity in
    the pool the keeper gets $1,438.46 (half the $2,876.92 penalty) from the pool. With claims
    pending the pool has no free token: before the fix the keeper got $0 (its whole reward was
    the pool's part); now the insurance fund pays what the pool cannot, $1,438.45, and the LPs
    still lend the whole penalty to the account (a debt)."""
    ch = protocol.clearinghouse
    victim = _claims_book(protocol, deployer, lp, trader, other_trader, attacker, accounts[7], 10**8, -100 * WAD)
    equity, maintenance, _ = (int(v) for v in ch.margin(victim))
    print(f"\n#4 victim health {equity / maintenance:.3f}, balance {usd(int(ch.settlement(victim)))}")
    assert 0.81 < equity / maintenance < 0.82 and int(ch.settlement(victim)) < 0

    snap = snapshot(chain)
    free = int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending())
    insurance = int(ch.insurance_balance())
    penalty, paid, closed = _liquidate(protocol, victim, keeper)
    print(
        f"#4 control, free liquidity {usd(free)}: closed {closed / WAD:.2f} ETH, "
        f"penalty {usd(penalty)}, keeper paid {usd(paid)}, "
        f"insurance {usd(int(ch.insurance_balance()) - insurance)}"
    )
    assert near(penalty, 2_876.92, 0.1) and 65 * WAD < closed < 66 * WAD
    assert paid == penalty // 2 and int(ch.insurance_balance()) == insurance  # the pool pays it
    chain.restore(snap)

    _claims_pending(protocol, other_trader, attacker)
    insurance = int(ch.insurance_balance())
    debt = -int(ch.settlement(victim))
    penalty, paid, closed = _liquidate(protocol, victim, keeper)
    d_insurance = int(ch.insurance_balance()) - insurance
    print(
        f"#4 claims pending {usd(int(ch.total_pending()))}: closed {closed / WAD:.2f} ETH, penalty {usd(penalty)}, "
        f"keeper paid {usd(paid)} (before the fix: 0.00), insurance {usd(d_insurance)}"
    )
    assert near(penalty, 2_876.90, 0.1) and 65 * WAD < closed < 66 * WAD
    assert paid == penalty // 2 and d_insurance == -paid  # all of it from the fund
    assert -int(ch.settlement(victim)) >= debt + penalty  # the penalty lent by the pool


def test_fixed__keeper_tipped_for_a_whole_close_while_claims_are_pending(
    protocol, deployer, lp, trader, other_trader, attacker, keeper, accounts
):
    """#4, fixed, the tip: the same victim, WBTC down to $24,000 with claims pending: equity
    $290, health below 0.5, so its whole 100 ETH is closed and tipped 0.2% of $220,000 = $440
    (more than half its $290.02 penalty). Before the fix the whole reward, tip included, was
    the pool's part, unpaid without free liquidity: $0. Now the fund pays all $440."""
    ch = protocol.clearinghouse
    victim = _claims_book(protocol, deployer, lp, trader, other_trader, attacker, accounts[7], 10**8, -100 * WAD)
    _claims_pending(protocol, other_trader, attacker)
    publish_usd(protocol, "WBTC", 26_000, deployer)
    publish_usd(protocol, "WBTC", 24_000, deployer)  # two rounds: within the 20% breaker
    equity, maintenance, _ = (int(v) for v in ch.margin(victim))
    insurance = int(ch.insurance_balance())
    penalty, paid, closed = _liquidate(protocol, victim, keeper)
    d_insurance = int(ch.insurance_balance()) - insurance
    print(
        f"\n#4 whole close at health {equity / maintenance:.3f} (equity ${equity / WAD:,.2f}): closed {closed / WAD:.0f} ETH, "
        f"penalty {usd(penalty)}, keeper paid {usd(paid)} (before the fix: 0.00); insurance {usd(d_insurance)}"
    )
    assert closed == 100 * WAD and near(penalty, 290.02, 0.1)
    assert paid == 440 * USDC and d_insurance == -paid  # the whole tip, from the fund


def test_finding__penalty_paid_out_of_a_claim_goes_to_the_lps(
    protocol, deployer, lp, trader, other_trader, attacker, keeper, accounts
):
    """FINDING (low), #6, by design: a claim is not tokens. The victim (2 WBTC, long 100 ETH and
    20 BTC) realises its ETH profit as a claim when the keeper closes that market (health
    0.239: a whole close); its balance is then 0, so the whole $1,577.62 penalty is "owed" and
    nets against its claim: the LPs get all of it (value +$1,577.63, total_pending lower by the
    penalty). Before #4's fix the insurance fund got $0 and the keeper $0; now the fund pays
    the keeper its $788.81 share (the pool has no free token), so the fund is $788.81 down for
    a penalty the LPs keep in full."""
    ch = protocol.clearinghouse
    victim = _claims_book(protocol, deployer, lp, trader, other_trader, attacker, accounts[7], 2 * 10**8, 100 * WAD)
    _claims_pending(protocol, other_trader, attacker)
    publish_usd(protocol, "WBTC", 27_000, deployer)
    equity, maintenance, _ = (int(v) for v in ch.margin(victim))
    insurance, pending, value = int(ch.insurance_balance()), int(ch.total_pending()), int(protocol.pool.totalAssets())
    print(
        f"\n#6 victim health {equity / maintenance:.3f}, "
        f"balance {usd(int(ch.settlement(victim)))}, claim {usd(int(ch.pending(victim)))}"
    )
    assert 0.23 < equity / maintenance < 0.24 and int(ch.pending(victim)) == 0
    penalty, paid, closed = _liquidate(protocol, victim, keeper)
    d_insurance, d_value = int(ch.insurance_balance()) - insurance, int(protocol.pool.totalAssets()) - value
    claim = int(ch.pending(victim))
    print(
        f"#6 closed {closed / WAD:.0f} ETH, penalty {usd(penalty)}: insurance {usd(d_insurance)}, keeper {usd(paid)}, "
        f"claim now {usd(claim)}, balance {usd(int(ch.settlement(victim)))}, "
        f"total_pending {usd(int(ch.total_pending()) - pending)}, LP value {usd(d_value)}"
    )
    assert closed == 100 * WAD and near(penalty, 1_577.62, 0.1)
    assert paid == penalty // 2 and d_insurance == -paid  # the keeper's share, from the fund
    assert near(claim, 18_023.34) and int(ch.settlement(victim)) == 0
    assert abs(d_value - penalty) <= USDC // 10  # the whole penalty to the LPs (and a block's interest)


# ---------------------------------------------------------------- #7 (fixed): a withdrawal at initial margin and a forced sale


def test_refused__a_withdrawal_at_initial_margin_leaves_the_collateral_off_sale(
    protocol, deployer, lp, other_trader, keeper, chain
):
    """#7, fixed. The victim (200,000 USDT) long 10 BTC and 250 ETH; a day later BTC +15%, ETH
    -10%; it closes the ETH loser (a $50,632 debt) and withdraws what the lens allows
    (156,390.90 USDT): health 3.46, equity at initial margin. The old rule (debt > 0.9 x the
    haircut collateral, $37,285.78) put it up for sale: 51,666 USDT for $50,632.46, ~$1,033
    lost by a healthy owner. The rule now reads debt > 0.9 x (equity + debt) = $77,776.57: the sale
    is refused "liquidation: close positions first"."""
    ch, engine, lens, usdc = protocol.clearinghouse, protocol.liquidation_engine, protocol.lens, protocol.settlement
    usdt, eth, btc = protocol.tokens["USDT"], protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    victim = deposit(protocol, other_trader, "USDT", 200_000 * 10**6)
    trade_now(ch, btc, 10 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, 250 * WAD, 0, 0, sender=other_trader)
    chain.mine(timestamp=chain.pending_timestamp + DAY)
    publish_usd(protocol, "WBTC", 34_500, deployer)  # BTC +15%
    publish_usd(protocol, "WETH", 1_800, deployer)  # ETH -10%
    publish_usd(protocol, "USDT", 1, deployer)
    trade_now(ch, eth, -250 * WAD, 0, 0, sender=other_trader)  # the ETH loser closed: a debt
    most = int(lens.max_withdraw(victim, usdt))
    ch.withdraw(usdt, most, 0, sender=other_trader)  # accepted by the margin check
    equity, maintenance, initial = (int(v) for v in ch.margin(victim))
    C = int(ch.collateral_value(victim))
    debt = -int(ch.settlement(victim))
    ltv = int(engine.debt_liquidation_ltv())
    old_limit, new_limit = risk.mul_down(C, ltv), risk.signed_mul_floor(equity + debt * S2W, ltv)
    col = ch.collaterals(int(ch.collateral_slot(usdt)))
    discounted = WAD * (WAD - int(col.liquidation_discount)) // WAD  # USDT at $1
    old_amount = risk.ceil_div(debt * S2W * int(col.unit), discounted)
    print(
        f"\n#7 withdrew {most / 1e6:,.2f} USDT: equity {equity / WAD:,.2f}, initial {initial / WAD:,.2f}, C {C / WAD:,.2f}, "
        f"debt {usd(debt)}, health {equity / maintenance:.2f}"
    )
    print(
        f"#7 old limit 0.9 x C = {old_limit / WAD:,.2f} (sold {old_amount / 1e6:,.2f} USDT for {usd(debt)}: the owner loses "
        f"{(old_amount - debt) / 1e6:,.2f}); new limit 0.9 x (E + debt) = {new_limit / WAD:,.2f}"
    )
    assert near(most, 156_390.90, 5.0) and near(debt, 50_632.46) and 3.4 < equity / maintenance < 3.5
    assert equity >= initial and equity - initial < 10 * WAD  # at initial margin
    assert debt * S2W > old_limit and debt * S2W <= new_limit
    assert risk.collateral_for_sale(debt, equity, ltv, True, S2W) is False
    usdc.mint(keeper, 200_000 * USDC, sender=keeper)
    usdc.approve(ch, MAX_UINT, sender=keeper)
    with ape.reverts("liquidation: close positions first"):
        engine.liquidate_collateral(victim, usdt, MAX_UINT, sender=keeper)


# ---------------------------------------------------------------- #8: the debt ceiling used to grief


def self_hedged_pair(protocol, deployer, lp, attacker) -> None:
    """#8's pair on a $2M pool: 2,500 WETH short 5,000 ETH in subaccount 0, 4M USDC long 5,000
    in subaccount 1, then ETH +12% ($2,240); both legs still open."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    deposit(protocol, attacker, "WETH", 2_500 * WAD, subaccount=0)
    deposit(protocol, attacker, "USDC", 4_000_000 * USDC, subaccount=1)
    trade_now(ch, eth, -5_000 * WAD, 0, 0, sender=attacker)
    trade_now(ch, eth, 5_000 * WAD, 0, 1, sender=attacker)
    publish_usd(protocol, "WETH", 2_240, deployer)


def test_finding__a_self_hedged_pair_lifts_total_debt_over_the_ceiling(protocol, deployer, lp, attacker, other_trader):
    """FINDING (low), #8, open, documented. The attacker: subaccount 0 with 2,500 WETH short 5,000
    ETH, subaccount 1 with $4M long 5,000 ETH; ETH +12%; both close: subaccount 0 owes
    $1,263,601.87 against $2,021,203.79 the pool could lend (0.6252 > the 0.5 ceiling), at
    20.76% a year ($718.53 a day), while subaccount 1 holds the profit. A collateral-only
    trader (10 WETH) opens 1 ETH (its settlement is 0 when Orders checks); its $1.12 fee makes
    it a debtor; its next 1 ETH is refused at its commit "orders: debt ceiling" (a revert:
    no order stored, its $2 fee stays in its wallet, the insurance fund gets nothing; before,
    the order was cancelled at its fill and the fee forfeited). A reduction still fills, and a
    withdrawal goes through. Fix (not built): count against the ceiling only the debt an order
    would add, or charge more than the interest for holding the pool's lending above it."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    self_hedged_pair(protocol, deployer, lp, attacker)
    trade_now(ch, eth, 5_000 * WAD, 0, 0, sender=attacker)  # pure reductions: never refused
    trade_now(ch, eth, -5_000 * WAD, 0, 1, sender=attacker)
    view = risk.read_debt_view(ch)
    lendable = view.pool_balance - view.total_pending
    u = min(view.total_debt * WAD // lendable, WAD)
    rate = view.rate_base + view.rate_slope * u // WAD
    per_day = view.total_debt * rate // WAD // 365
    ceiling = int(ch.debt_terms()[3])
    print(
        f"\n#8 total_debt {usd(view.total_debt)} / lendable {usd(lendable)} = {view.total_debt / lendable:.4f} "
        f"> {ceiling / WAD}; rate {rate / WAD:.2%}: {usd(per_day)} a day"
    )
    assert near(view.total_debt, 1_263_601.87, 0.1) and near(lendable, 2_021_203.79, 0.1)
    assert view.total_debt * WAD > lendable * ceiling
    assert near(per_day, 718.53, 0.05)

    victim = deposit(protocol, other_trader, "WETH", 10 * WAD)
    trade_now(ch, eth, WAD, 0, 0, sender=other_trader)  # its first order: no debt yet, it fills
    print(f"#8 the victim after its first fill: {usd(int(ch.settlement(victim)))}")
    assert near(-int(ch.settlement(victim)), 1.12, 0.01)  # 1 ETH x $2,240 x 0.05%, and its interest
    orders, usdc = protocol.orders, protocol.settlement
    usdc.mint(other_trader, FEE, sender=other_trader)
    usdc.approve(orders, FEE, sender=other_trader)
    wallet, escrow, insurance = (int(usdc.balanceOf(other_trader)), int(usdc.balanceOf(orders)), int(ch.insurance_balance()))
    with ape.reverts("orders: debt ceiling"):
        orders.commit_order(eth, WAD, 0, 0, sender=other_trader)
    order = orders.order(victim, eth)
    assert (order.size_delta, order.limit_price, order.executable_at, order.fee, order.position) == (0, 0, 0, 0, 0)
    assert int(orders.open_orders(victim)) == 0
    assert (int(usdc.balanceOf(other_trader)), int(usdc.balanceOf(orders))) == (wallet, escrow)  # no fee escrowed
    assert int(ch.insurance_balance()) == insurance  # nor forfeited
    with ape.reverts("orders: debt ceiling"):  # the one-step trade alike: its commit reverts
        trade_now(ch, eth, WAD, 0, 0, sender=other_trader)
    assert int(ch.insurance_balance()) == insurance
    assert int(ch.positions(victim, eth).size) == WAD
    trade_now(ch, eth, -WAD // 2, 0, 0, sender=other_trader)  # a reduction fills
    assert int(ch.positions(victim, eth).size) == WAD // 2
    weth = protocol.tokens["WETH"]
    ch.withdraw(weth, WAD, 0, sender=other_trader)  # and a withdrawal goes through
    assert int(weth.balanceOf(other_trader)) == WAD


def test_finding__an_order_committed_within_the_ceiling_fills_after_the_pair_lifts_debt_over_it(
    protocol, deployer, lp, attacker, other_trader
):
    """#8, the check at the commit. The same pair, but the victim (a debtor by its first fill's
    fee) commits its next 1 ETH while the pair is still open and the debts are within the
    ceiling; the attacker closes both legs before the order's round, lifting total debt over
    the ceiling; the victim's order fills all the same (before: cancelled "orders: debt
    ceiling" at the fill, its $2 fee to the insurance fund). Only its next order adding risk,
    committed over the ceiling, is refused."""
    ch, eth, orders = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.orders
    self_hedged_pair(protocol, deployer, lp, attacker)
    victim = deposit(protocol, other_trader, "WETH", 10 * WAD)
    trade_now(ch, eth, WAD, 0, 0, sender=other_trader)
    assert int(ch.settlement(victim)) < 0  # a debtor
    ceiling = int(ch.debt_terms()[3])
    view = risk.read_debt_view(ch)
    assert view.total_debt * WAD <= (view.pool_balance - view.total_pending) * ceiling  # within it
    place(ch, eth, WAD, sender=other_trader)
    assert int(orders.open_orders(victim)) == 1

    trade_now(ch, eth, 5_000 * WAD, 0, 0, sender=attacker)  # the pair closes: over the ceiling
    trade_now(ch, eth, -5_000 * WAD, 0, 1, sender=attacker)
    view = risk.read_debt_view(ch)
    print(f"\n#8 total_debt {usd(view.total_debt)} / lendable {usd(view.pool_balance - view.total_pending)} at the fill")
    assert view.total_debt * WAD > (view.pool_balance - view.total_pending) * ceiling
    insurance = int(ch.insurance_balance())
    receipt = fill_now(ch, victim, eth, keeper=ape.accounts.test_accounts[-1])
    assert not receipt.events.filter(orders.OrderCancelled)
    assert len(receipt.events.filter(orders.OrderFilled)) == 1
    assert int(ch.positions(victim, eth).size) == 2 * WAD
    assert int(orders.open_orders(victim)) == 0 and int(ch.insurance_balance()) == insurance
    with ape.reverts("orders: debt ceiling"):  # a new order adding risk, committed over it
        trade_now(ch, eth, WAD, 0, 0, sender=other_trader)
    assert int(ch.positions(victim, eth).size) == 2 * WAD


# ---------------------------------------------------------------- #9 (fixed): the debt index's width


def test_fixed__the_debt_index_saturates_at_104_bits(protocol, deployer, lp, trader, chain):
    """#9, fixed. Rates at the Configurator's maximum (100% + 1,000% at full utilisation), the
    LP withdraws every free token (utilisation 1), the debtor ($3,028.62 owed) writes its
    balance every 30 days. After 48 steps (3.95 years) the index reaches 2**104 - 1 and stops
    there: the debt is written at exactly that index and reads back as written (before: a
    truncated index, a debt read back more than 4x), and a month later neither moved: no debt
    accrues interest any more."""
    ch, cfg, pool, usdc, btc = (
        protocol.clearinghouse,
        protocol.configurator,
        protocol.pool,
        protocol.settlement,
        protocol.markets["BTC-PERP"],
    )
    cfg.set_debt_parameters(10**18, 10 * 10**18, 25 * 10**16, 5 * 10**17, 9 * 10**17, sender=deployer)
    fund_liquidity(protocol, lp, deployer, 100_000, 0)
    debtor = deposit(protocol, trader, "USDT", 10_000 * 10**6)
    trade_now(ch, btc, WAD, 0, 0, sender=trader)
    publish_usd(protocol, "WBTC", 27_000, deployer)
    trade_now(ch, btc, -WAD, 0, 0, sender=trader)
    chain.pending_timestamp = chain.pending_timestamp + COOLDOWN + 1
    free = int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending())
    withdraw_now(pool, free, lp, lp, sender=lp)  # utilisation 1
    usdc.mint(trader, 10**6, sender=trader)
    usdc.approve(ch, MAX_UINT, sender=trader)
    first = -int(ch.settlement(debtor))
    steps = 0
    while int(ch.debt_state()[0]) < MAX_INDEX and steps < 60:
        chain.pending_timestamp = chain.pending_timestamp + 30 * DAY
        ch.deposit(usdc, 1, 0, sender=trader)  # the debtor's write: accrues and rewrites the debt
        steps += 1
    index = int(ch.debt_state()[0])
    written, at = (int(v) for v in ch.debt_of(debtor))
    read = -int(ch.settlement(debtor))
    print(
        f"\n#9 debt {usd(first)}; the index {index:.4e} (2**104 - 1: {index == MAX_INDEX}) after {steps} monthly steps "
        f"({steps * 30 / 365:.2f} years); written {written / USDC:.4e} at {at:.4e}, reads {read / USDC:.4e}"
    )
    assert near(first, 3_028.62, 0.05) and steps == 48 and index == MAX_INDEX
    assert at == MAX_INDEX and read == written
    chain.pending_timestamp = chain.pending_timestamp + 30 * DAY
    ch.deposit(usdc, 1, 0, sender=trader)
    written2, at2 = (int(v) for v in ch.debt_of(debtor))
    print(
        f"#9 a month later: written {written2 / USDC:.4e} at {at2:.4e}, "
        f"reads {-int(ch.settlement(debtor)) / USDC:.4e}: no interest"
    )
    assert (written2, at2) == (written - 1, MAX_INDEX) and -int(ch.settlement(debtor)) == written2
    assert int(ch.debt_index()) == MAX_INDEX
