"""Attacker's review (v2, solvency) of the DEBT, LP and LIQUIDATION paths after issue 9: the
debt as a loan (vault._set_settlement, _index_now, the ceiling in Orders, margining's debt_imr),
debt-based collateral sales and the write-off (LiquidationEngine.liquidate_collateral,
Clearinghouse.seize_collateral, Configurator.write_off_collateral), owed penalties
(Clearinghouse.liquidation_close) and the LP's share price (LiquidityPool._book, _lock).
Default protocol (`deploy_protocol(DEFAULT_CONFIG)`, reserve factor 1 unless a test says), ETH
at $2,000, BTC at $30,000, feeds with a 1 h heartbeat and a 20% breaker. Run with `-s` for the
figures. The previous reviews' findings (test_review_debt.py #1-#9, test_review_pool_valuation,
test_review_reserve*, test_review_bond, ...) and the README's "What is not built yet" are not
re-reported.

FINDINGS

F1 (medium-high) An unrealised loss is still an unpriced loan. Issue 9 item 1 made a realised
loss an interest-bearing debt; the same loss left unrealised pays nothing, while the pool has
already paid its counterpart out in tokens. $10M pool. The attacker: A (2,500 WETH) short
4,000 ETH, B ($1.5M) long 4,000 ETH; a day later one +19% round; B closes and withdraws
$3,008,217.52 (its ~$1.51M profit paid in LP tokens, no claim); C ($1.5M) opens long 4,000 ETH
so the book is flat again (no skew: no funding). A keeps an unrealised loss of $1,536,000.52
and owes only its $3,992.22 fee. A year later A's equity moved -$80.40 (the interest on its
fee), C's $0.00, the LPs earned $80.40. Control: A realises the same loss (owes
$1,563,882.67, utilisation 0.156): a year costs it $104,451.40, all to the LPs. The unrealised
loan also escapes `debt_imr`, the debt ceiling and the 90% loan-to-value sale (only
maintenance margin backs it), and with the pair's reserve lock the LPs can withdraw $497,485.70
of $10.0M meanwhile. Fix: let anyone realise a losing position's PnL into the balance at the
oracle price (a permissionless `settle_pnl(account, market)` that resets the cost basis: the
loss becomes the interest-bearing debt of item 1), or pay a realised profit in tokens only out of
free liquidity net of the traders' net unrealised loss (so B waits as a claim until A's loss is
realised), or a borrowing fee on the pool capital open interest uses (GMX v2).
Fixed: `LiquidationEngine.realise_loss(account, market)`, the first fix proposed. The LP realises
A's loss ($1,536,000.52; equity unchanged), A owes $1,539,992.74 and a year later has paid
$101,688.27 of interest, all to the LPs.

F2 (high, when governance writes a token off), fixed: a write-off is a free default option for every
debtor holding the token. After `write_off_collateral` an account with no positions and a debt
has equity -debt < 0, so `liquidate_collateral` gives its whole balance of the token to any
caller for nothing, the owner included, and the debt becomes bad debt. The attacker: A (10 WBTC,
$300,000) short 500 ETH, B ($100,000) long 500; ETH +10%; both close: A owes $101,575.05
(equity $153,424.95 over its initial $25,393.76, a sound loan), B withdraws $199,474.98. The
WBTC feed goes stale (an outage, not a crash) and WBTC is written off, as the README prescribes.
A's owner calls `liquidate_collateral(A, WBTC)` itself: 10 WBTC back for $0; bad debt
$101,575.87: the insurance fund's whole $50,000.00 and $51,575.87 of the LPs' value. The owner
ends +$99,474.98 in USDC with its 10 WBTC, worth $300,000 again when the feed returns. The same
rule hands an honest flat WBTC trader's 10 WBTC to the first keeper for a $2.00 fee debt (review
debt #1 called the take of an "insolvent" account intended; the point here is that the write-off
makes every debtor "insolvent" and the owner can take its own). Fix: a written-off balance
taken by `liquidate_collateral` goes to the insurance fund (protocol custody), and the debt it
backs is not settled as bad debt but held until governance restores the token (the owner may
repay and withdraw meanwhile) or sells it, any surplus going back to the owner; at the least, the
taker pays the account's debt (`paid = debt`), so defaulting costs the defaulter its debt.
Fixed in part: the written-off balance taken goes to governance (the Configurator's owner), never
to the caller: the owner gets nothing back, and defaulting costs it the token (here $300,000 of
WBTC for a $101,575.05 debt). Not built: holding the debt until the token is restored or sold,
and returning a surplus to the owner (an honest flat debtor's 10 WBTC for a $2 fee go to
governance, which must return the surplus by hand); the owner can still repay first.

F3 (medium-low) A just-in-time LP takes the pool's share of an owed penalty; the cooldown only
delays its exit. A penalty an account can only owe is lent by the pool, which pays the keeper its
half, so the pool's value steps up by the other half at the liquidation. $2M pool; a 100 WETH
trader long 900 ETH, ETH -6.25% (health 0.8921). The attacker deposits $18M, liquidates (penalty
$16,189.09 owed, $8,094.54 to it as keeper, from the pool), the value steps +$8,648.33 (the
pool's half and $553.78 of exit premium the oracle-price partial close releases), waits 15
minutes and redeems: +$7,739.67, where the honest LP gets $908.75 of the $8,648.33 that was its
own. The README says the cooldown stops this ("A just-in-time deposit around a liquidation ...
cannot take existing LPs' gain"); it only adds 15 minutes of exposure to a flat-ish book. The
same holds for a large fill's fee, announced by its commit a settlement delay ahead. Fix: vest
the pool's income from liquidations (and fees) over a period longer than the cooldown
(Yearn-style profit unlocking: book it as unvested and release it linearly in `_book`), or a
deposit fee above the largest step a block can bring.

F4 (medium) LPs leave ahead of bad debt the pool values at face. The pool's value counts every
trader's unrealised loss as its own gain, including the part beyond the trader's collateral;
the loss becomes socialised bad debt only at the liquidation, and old shares redeem at once.
a) A $4M pool of two LPs, insurance $0; a $120,000 trader long 900 ETH; one -12% round: equity
-$97,710.55. LP2 redeems $2,108,498.88 (half of a value that counts the whole $216,000 loss);
the liquidation books $96,997.75 of bad debt and the honest LP bears all of it (it would have
borne half). A race against the keeper, won with a priority fee.
b) A halted collateral feed makes it hours, not a race: 10 WBTC, long 900 ETH; the WBTC feed
stops, ETH -17.5%: every liquidation reverts "oracle: stale answer", but LP flows read only
market prices; five hours in LP2 redeems $2,158,022.48, and after the write-off the bad debt,
$316,044.95 (F2's free take included), falls on the honest LP alone.
Fix: redemptions requested and priced after a delay that covers liquidation latency
(ERC-7540), or an exit fee; and fail closed as for market feeds: refuse LP withdrawals while a
listed collateral with weight > 0 and deposits has no valid price (its holders cannot be
liquidated, so the value is not known).
Fixed in part: b) LP exits fail closed while a listed collateral of weight > 0 has no valid
price ("pool: collateral feed down"); a) is still open (the delayed redemption is not built).

F5 (low) The debt ceiling is lifted by a 15-minute LP deposit. It measures total debt against
what the pool could lend, and unlike the reserve no LP withdrawal is checked against it. Review
debt #8's pair: A owes $1,263,602.40, 0.6252 of lendable > 0.5; A's 1,000 ETH order is refused
"orders: debt ceiling". The attacker's second address deposits $600,000 (0.4821), A's order
commits and fills, and after the cooldown the deposit leaves ($600,258.02 back): the ratio is
0.6255 again and the biggest debtor holds 1,000 ETH more. Fix: refuse an LP withdrawal that
takes total debt above the ceiling (as the reserve does), or measure the ceiling against
capital out of its cooldown.
Accepted: the ceiling gates new risk at the commit; realised losses (and realise_loss, F1's fix)
take debts above it with no order at all. Measuring against capital out of its cooldown only
makes the deposit wait, since such capital can leave at any moment; refusing LP withdrawals above
the ceiling would lock every LP whenever losses are realised past it. Each debt stays bounded by
debt_imr, interest rising with utilisation and the sale above debt_liquidation_ltv.

F6 (medium-low) A partial liquidation lands a collateral-backed account over its loan limit, so
a discounted sale of its collateral follows at once. The least close restores health 1.1, but
it realises the closed part's loss and lends the penalty, both into the debt the 90% limit
reads. 100 WETH long 990 ETH; ETH -6%: health 0.6990; the engine closes 916.13 ETH (penalty
$34,446.45) to health 1.1000, and the debt is then $146,279.38, 0.9696 of what the account
holds: in the same block the keeper buys 81.9033 WETH worth $153,978.29 for $146,279.38, another
$7,698.91 (22% on top of the penalty). A trader with USDC as collateral in the same spot pays
the penalty only. Fix: make the least close also restore the loan's limit (its constraint in the
solve), or sell after a liquidation only the least that brings the debt back under the limit
(issue 11), at a discount on that part only.

REFUSED (tried, failed)

- Interest avoidance by tiny debts, splitting or write timing: every write charges
  ceil(D * i / i0) - D, never below the exact interest: a 2-unit debt pays a whole unit for 30
  days (exact 0.003), five subaccounts of 300,001 units pay 2,470 against 2,469 for one of
  1,500,001, and writing every 6 days pays 2,470.
- The books through an owed-penalty partial liquidation, a close into debt, a bad debt the fund
  covers, a sale over the loan limit with equity > 0, an underwater account sold out, and a
  write-off with its free take: at every step the settlement tokens held equal
  `settlement_held` and the balances as written + the pool + the fund, and cover every positive
  balance + the fund + the pool's free liquidity; total_debt and total_pending are their sums;
  collateral tokens equal their totals. A bad debt the fund covers moves the pool's value by
  $0.00 (its loss and interest were counted already: no step to time).
- Self-liquidation with an owed penalty the pool pays the keeper: the owner nets -$8,094.54,
  (1 - keeper share) x the $16,189.09 penalty, to the wei; the fund is untouched.
- A written-off token neither leaves a debtor's account ("clearinghouse: insufficient margin")
  nor can be taken while positions are open ("liquidation: close positions first"); the
  positions are liquidated as usual without the token's feed.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest

from marginsim import risk
from marginsim.orders import deposit_now, fill_now, place, redeem_now, trade_now, withdraw_now
from marginsim.protocol import account_id
from tests.e2e.attacks import reserve_out_of_the_way
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd, refresh_feeds
from tests.e2e.test_review_debt import self_hedged_pair

MAX_UINT = 2**256 - 1
S2W = 10**12
DAY = 86_400
YEAR = 365 * DAY
COOLDOWN = 900  # LiquidityPool.COOLDOWN


@pytest.fixture(scope="module")
def lp2(accounts):
    return accounts[7]


@pytest.fixture(scope="module")
def buddy(accounts):
    """The attacker's second address."""
    return accounts[8]


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, lp2, buddy, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def usd(x: int) -> str:
    return f"${x / USDC:,.2f}"


def wusd(x: int) -> str:
    return f"${x / WAD:,.2f}"


def near(x: int, dollars: float, tolerance: float = 1.0) -> bool:
    """`x` token units within `tolerance` dollars of `dollars`."""
    return abs(x - round(dollars * USDC)) <= tolerance * USDC


def advance(chain: Any, seconds: int) -> None:
    chain.pending_timestamp = chain.pending_timestamp + seconds


def value(protocol) -> int:
    return int(protocol.pool.totalAssets())


def lp_assets(protocol, who) -> int:
    pool = protocol.pool
    return int(pool.convertToAssets(pool.balanceOf(who)))


# ---------------------------------------------------------------- F1: an unrealised loss is an interest-free loan


def test_fixed__an_unrealised_loss_is_realised_by_anyone_and_pays_the_loans_interest(protocol, deployer, lp, attacker, chain):
    """F1. Issue 9 item 1 priced a realised loss as a loan; the same loss kept unrealised, with
    the skew re-hedged by a third subaccount, paid neither interest nor funding (A's equity
    moved -$80.40 in a year: the interest on its fee). Now anyone (here the LP whose capital it
    holds) realises it with `LiquidationEngine.realise_loss`: equity unchanged to the token unit,
    the loss becomes A's interest-bearing debt and the LPs earn the loan's interest."""
    ch, eth, usdc = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.settlement
    engine = protocol.liquidation_engine
    fund_liquidity(protocol, lp, deployer, 10_000_000, 0)
    a = deposit(protocol, attacker, "WETH", 2_500 * WAD, subaccount=0)
    b = deposit(protocol, attacker, "USDC", 1_500_000 * USDC, subaccount=1)
    c = deposit(protocol, attacker, "USDC", 1_500_000 * USDC, subaccount=2)
    trade_now(ch, eth, -4_000 * WAD, 0, 0, sender=attacker)  # A short
    trade_now(ch, eth, 4_000 * WAD, 0, 1, sender=attacker)  # B long: the pair is flat
    advance(chain, DAY)
    publish_usd(protocol, "WETH", 2_380, deployer)  # ETH +19%, inside the 20% breaker
    trade_now(ch, eth, -4_000 * WAD, 0, 1, sender=attacker)  # B takes its profit
    profit = int(ch.settlement(b))
    assert int(ch.pending(b)) == 0
    ch.withdraw(usdc, profit, 1, sender=attacker)  # in tokens, out of the LPs' free liquidity
    trade_now(ch, eth, 4_000 * WAD, 0, 2, sender=attacker)  # C re-hedges A: skew 0, funding 0
    st = ch.market_state(eth)
    assert int(st.long_oi) == int(st.short_oi) == 4_000 * WAD  # no skew: no funding either way
    s_a0 = int(ch.settlement(a))
    loss = int(ch.collateral_value(a)) + s_a0 * S2W - int(ch.margin(a)[0])  # A's unrealised loss, WAD
    assert loss > 1_500_000 * WAD and near(-s_a0, 3_992.22, 0.05) and profit > 3_000_000 * USDC

    # the LP realises it: the mirror predicts the figure, equity moves by less than a token unit
    chain.pending_timestamp += 12
    snapshot = risk.snapshot_account(ch, protocol.oracle, a, chain.pending_timestamp)
    expected = risk.realisable_loss(snapshot, eth)
    e_before = risk.margin(snapshot)[0]
    tx = engine.realise_loss(a, eth, sender=lp)
    [event] = tx.decode_logs(engine.LossRealised)
    assert int(event.loss) == expected and int(event.caller == lp) and int(event.price) == 2_380 * WAD
    # the fee's debt, its interest to the block (a few units on $3,992 over seconds) and the loss
    assert 0 <= snapshot.settlement - expected - int(ch.settlement(a)) <= 10
    # equity moves only by the credit's rounding (< 1 unit, toward the pool) and the fee debt's interest
    assert 0 <= e_before - int(ch.margin(a)[0]) < 10 * S2W
    assert int(ch.positions(a, eth).size) == -4_000 * WAD and int(ch.market_state(eth).short_oi) == 4_000 * WAD
    written = int(ch.debt_of(a)[0])
    e_a0, e_c0, v0, lp0 = int(ch.margin(a)[0]), int(ch.margin(c)[0]), value(protocol), lp_assets(protocol, lp)
    print(f"\nF1 the LP realises A's loss {usd(expected)}: A owes {usd(written)}, equity unchanged")
    assert written == -int(ch.settlement(a)) and near(written, 1_539_992.74, 1)
    with ape.reverts("liquidation: no loss to realise"):
        engine.realise_loss(a, eth, sender=lp)  # realised: nothing left to realise at this price
    with ape.reverts("liquidation: no loss to realise"):
        engine.realise_loss(b, eth, sender=lp)  # no position

    advance(chain, YEAR)
    publish_usd(protocol, "WETH", 2_380, deployer)
    e_a1, e_c1, v1, lp1 = int(ch.margin(a)[0]), int(ch.margin(c)[0]), value(protocol), lp_assets(protocol, lp)
    print(
        f"F1 a year later: A owes {usd(-int(ch.settlement(a)))}, its equity moved {wusd(e_a1 - e_a0)} "
        f"(-$80.40 unrealised); C's {wusd(e_c1 - e_c0)}; pool value +{usd(v1 - v0)}; LP +{usd(lp1 - lp0)}"
    )
    interest = (e_a0 - e_a1) // S2W
    assert interest > 100_000 * USDC  # the loan's interest, as the control below pays (was $80.40)
    assert e_c1 == e_c0  # and still no funding
    assert abs((v1 - v0) - interest) <= 1 * USDC and abs((lp1 - lp0) - interest) <= 1 * USDC


# ---------------------------------------------------------------- F2: a write-off is a free default option


def test_fixed__a_written_off_token_taken_goes_to_governance_so_a_debtor_cannot_take_it_back(
    protocol, deployer, lp, attacker, other_trader, keeper, chain
):
    """F2 (high), fixed. After a write-off a flat debtor's written-off WBTC is still taken for $0
    and its debt settled as bad debt, but the token goes to governance (the Configurator's owner),
    not to the caller: the owner who calls it on its own account gets nothing back, and defaulting
    costs it the $300,000 of WBTC it left behind, more than the $99,474.98 its pair took out."""
    ch, eth, usdc, engine, cfg = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.settlement,
        protocol.liquidation_engine,
        protocol.configurator,
    )
    wbtc = protocol.tokens["WBTC"]
    slot = int(ch.collateral_slot(wbtc))
    fund_liquidity(protocol, lp, deployer, 2_000_000, 50_000)
    a = deposit(protocol, attacker, "WBTC", 10 * 10**8, subaccount=0)  # $300,000 of WBTC
    b = deposit(protocol, attacker, "USDC", 100_000 * USDC, subaccount=1)
    victim = deposit(protocol, other_trader, "WBTC", 10 * 10**8)  # an honest WBTC trader
    trade_now(ch, eth, -500 * WAD, 0, 0, sender=attacker)
    trade_now(ch, eth, 500 * WAD, 0, 1, sender=attacker)
    trade_now(ch, eth, WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, -WAD, 0, 0, sender=other_trader)  # flat; its two fees are its debt
    advance(chain, DAY)
    publish_usd(protocol, "WETH", 2_200, deployer)
    publish_usd(protocol, "WBTC", 30_000, deployer)
    trade_now(ch, eth, 500 * WAD, 0, 0, sender=attacker)  # A closes: its loss becomes its debt
    trade_now(ch, eth, -500 * WAD, 0, 1, sender=attacker)  # B takes the profit
    withdrawn = int(ch.settlement(b))
    ch.withdraw(usdc, withdrawn, 1, sender=attacker)
    debt = -int(ch.settlement(a))
    e, m, i = (int(v) for v in ch.margin(a))
    print(f"\nF2 A owes {usd(debt)}, equity {wusd(e)}, initial {wusd(i)}; victim owes {usd(-int(ch.settlement(victim)))}")
    assert near(debt, 101_575.05, 0.5) and e > i  # a loan within its limits
    assert near(-int(ch.settlement(victim)), 2.00, 0.01) and int(ch.market_mask(victim)) == 0

    # the WBTC feed goes stale (an outage, not a crash): governance writes WBTC off
    advance(chain, 2 * 3_600)
    publish_usd(protocol, "WETH", 2_200, deployer)
    with ape.reverts("oracle: stale answer"):
        protocol.oracle.price(wbtc)
    cfg.write_off_collateral(wbtc, sender=deployer)
    insurance0, value0 = int(ch.insurance_balance()), value(protocol)
    wallet0, treasury0 = int(wbtc.balanceOf(attacker)), int(wbtc.balanceOf(deployer))
    assert cfg.owner() == deployer.address
    tx = engine.liquidate_collateral(a, wbtc, MAX_UINT, sender=attacker)  # the owner itself
    sale = tx.events.filter(engine.CollateralLiquidation)[0]
    bad = tx.events.filter(ch.BadDebt)[0]
    print(
        f"F2 the owner takes {int(sale.amount) / 1e8} WBTC for {int(sale.paid)}; bad debt {usd(int(bad.shortfall))}: "
        f"insurance {usd(int(bad.covered_by_insurance))}, pool {usd(int(bad.socialised))}; "
        f"pool value {usd(value0)} -> {usd(value(protocol))}"
    )
    tx2 = engine.liquidate_collateral(victim, wbtc, MAX_UINT, sender=keeper)  # and a stranger, the honest one's
    sale2 = tx2.events.filter(engine.CollateralLiquidation)[0]
    print(f"F2 the victim's {int(sale2.amount) / 1e8} WBTC taken for {int(sale2.paid)} (it owed $2.00) go to governance")
    assert (int(sale.amount), int(sale.paid)) == (10 * 10**8, 0) == (int(sale2.amount), int(sale2.paid))
    assert int(bad.shortfall) >= debt and int(bad.covered_by_insurance) == 50_000 * USDC == insurance0
    bad2 = tx2.events.filter(ch.BadDebt)[0]
    assert near(int(bad.socialised), 51_575.87, 0.5) and near(int(bad2.shortfall), 2.00, 0.01)
    assert near(value0 - value(protocol), (int(bad.socialised) + int(bad2.socialised)) / USDC, 0.01)  # the LPs pay it
    assert int(ch.balances(a, slot)) == 0 and int(ch.settlement(a)) == 0 and int(ch.insurance_balance()) == 0
    publish_usd(protocol, "WBTC", 30_000, deployer)  # the feed comes back at the same price
    print(
        f"F2 fixed: attacker wallet +{(int(wbtc.balanceOf(attacker)) - wallet0) / 1e8} WBTC, governance "
        f"+{(int(wbtc.balanceOf(deployer)) - treasury0) / 1e8} WBTC; B withdrew {usd(withdrawn)} of its $100,000.00 "
        f"(+{usd(withdrawn - 100_000 * USDC)}) against the $300,000 of WBTC A left"
    )
    assert int(wbtc.balanceOf(attacker)) == wallet0  # nothing back
    assert int(wbtc.balanceOf(deployer)) - treasury0 == 20 * 10**8  # both accounts' WBTC, in governance's custody
    assert near(withdrawn - 100_000 * USDC, 99_474.98, 0.5) and withdrawn - 100_000 * USDC < 300_000 * USDC
    assert int(protocol.oracle.price(wbtc)) == 30_000 * WAD  # the token it took back is worth its price again


# ---------------------------------------------------------------- F3: a JIT LP takes the pool's share of an owed penalty


def _weth_victim_at_partial_liquidation(protocol, deployer, other_trader) -> int:
    """100 WETH, long 900 ETH at $2,000; ETH -6.25%: health about 0.9, a partial close whose
    penalty the account can only owe (its settlement is its opening fee, a debt)."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    victim = deposit(protocol, other_trader, "WETH", 100 * WAD)
    trade_now(ch, eth, 900 * WAD, 0, 0, sender=other_trader)
    publish_usd(protocol, "WETH", 1_875, deployer)
    return victim


def test_finding__a_jit_lp_takes_the_pools_share_of_an_owed_penalty(protocol, deployer, lp, attacker, other_trader, chain):
    """F3 (medium-low). An $18M deposit just before a liquidation whose penalty is owed takes ~90%
    of the pool's step; the cooldown only delays the exit."""
    ch, eth, usdc, pool, engine = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.settlement,
        protocol.pool,
        protocol.liquidation_engine,
    )
    fund_liquidity(protocol, lp, deployer, 2_000_000, 50_000)
    victim = _weth_victim_at_partial_liquidation(protocol, deployer, other_trader)
    e, m, _ = (int(v) for v in ch.margin(victim))
    s0 = int(ch.settlement(victim))
    print(f"\nF3 victim: settlement {usd(s0)}, equity {wusd(e)}, maintenance {wusd(m)}, health {e / m:.4f}")
    assert int(ch.settlement(victim)) < 0  # its opening fee: any penalty is owed, lent by the pool
    jit = 18_000_000 * USDC
    usdc.mint(attacker, jit, sender=attacker)
    usdc.approve(pool, jit, sender=attacker)
    lp0 = lp_assets(protocol, lp)
    deposit_now(pool, jit, attacker, sender=attacker)
    shares = int(pool.balanceOf(attacker))
    v0 = value(protocol)
    wallet = int(usdc.balanceOf(attacker))
    tx = engine.liquidate(victim, eth, MAX_UINT, sender=attacker)
    liq = tx.events.filter(engine.Liquidation)[0]
    v1 = value(protocol)
    reward = int(usdc.balanceOf(attacker)) - wallet
    print(
        f"F3 liquidation: closed {abs(int(liq.size_closed)) / WAD:,.4f} ETH, penalty {usd(int(liq.penalty))}, "
        f"keeper paid {usd(reward)}; pool value {usd(v0)} -> {usd(v1)} (+{usd(v1 - v0)}); "
        f"insurance {usd(int(ch.insurance_balance()))}"
    )
    advance(chain, COOLDOWN + 1)
    wallet = int(usdc.balanceOf(attacker))
    redeem_now(pool, shares, attacker, attacker, sender=attacker)
    gain = int(usdc.balanceOf(attacker)) - wallet - jit
    lp_gain = lp_assets(protocol, lp) - lp0
    print(f"F3 JIT LP gain {usd(gain)}; honest LP gain {usd(lp_gain)} (alone it would have had the whole {usd(v1 - v0)})")
    # the JIT's deposit is a request now, executed a settlement delay before the liquidation: a
    # minute's funding moves the figures by a cent
    assert near(int(liq.penalty), 16_189.10, 0.01) and near(reward, 8_094.55, 0.01)
    assert near(v1 - v0, 8_648.33, 0.05)  # the pool's half of the owed penalty + the exit premium the close released
    assert near(gain, 7_739.67, 0.5) and near(lp_gain, 908.75, 0.5)
    assert gain > 8 * lp_gain


# ---------------------------------------------------------------- F4: an LP leaves ahead of visible bad debt


def test_finding__an_lp_leaves_ahead_of_bad_debt_the_pool_values_at_face(
    protocol, deployer, lp, lp2, other_trader, keeper, chain
):
    """F4a (medium). An LP redeems at a value that counts an underwater trader's whole loss; the
    other LP bears all of the bad debt."""
    ch, eth, usdc, pool, engine = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.settlement,
        protocol.pool,
        protocol.liquidation_engine,
    )
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)  # the honest LP
    fund_liquidity(protocol, lp2, deployer, 2_000_000, 0)  # the LP who reads the chain
    victim = deposit(protocol, other_trader, "USDC", 120_000 * USDC)
    trade_now(ch, eth, 900 * WAD, 0, 0, sender=other_trader)
    advance(chain, COOLDOWN + 1)
    publish_usd(protocol, "WETH", 1_760, deployer)  # one -12% round
    e, m, _ = (int(v) for v in ch.margin(victim))
    v0 = value(protocol)
    insurance = int(ch.insurance_balance())
    print(f"\nF4 victim equity {wusd(e)} (maintenance {wusd(m)}); pool value {usd(v0)}; insurance {usd(insurance)}")
    shares = int(pool.redeemable(lp2))
    assert shares == int(pool.balanceOf(lp2))
    wallet = int(usdc.balanceOf(lp2))
    redeem_now(pool, shares, lp2, lp2, sender=lp2)
    out = int(usdc.balanceOf(lp2)) - wallet
    lp_before = lp_assets(protocol, lp)
    tx = engine.liquidate(victim, eth, MAX_UINT, sender=keeper)
    bad = tx.events.filter(ch.BadDebt)[0]
    lp_after = lp_assets(protocol, lp)
    print(
        f"F4 lp2 redeemed {usd(out)} (deposited $2,000,000.00); bad debt {usd(int(bad.shortfall))} "
        f"(insurance {usd(int(bad.covered_by_insurance))}, pool {usd(int(bad.socialised))}); "
        f"honest LP {usd(lp_before)} -> {usd(lp_after)} ({usd(lp_after - lp_before)})"
    )
    assert e < 0 and near(out, 2_108_498.88, 0.5)  # half of a value that counts the victim's whole loss
    assert near(int(bad.shortfall), 96_997.75, 0.5) and int(bad.socialised) == int(bad.shortfall)
    assert near(lp_before - lp_after, 96_997.75, 0.5)  # all of it, where it would have borne half


def test_fixed__lp_exits_wait_while_a_collateral_feed_is_down_so_the_bad_debt_it_hides_is_shared(
    protocol, deployer, lp, lp2, other_trader, keeper, chain
):
    """F4b (medium). A stale collateral feed blocked the liquidation for hours while LP flows went
    on at face value: five hours in, LP2 redeemed $2,158,022.48 and the honest LP alone bore the
    $316,044.95 of bad debt. LP exits now fail closed while a listed collateral has no valid
    price ("pool: collateral feed down", maxWithdraw and maxRedeem 0), as they do on a market's
    feed; once governance writes the token off and the account is liquidated, both LPs bear it:
    each leaves with its $2,000,000.00, where LP2 took $158,022.48 of the honest LP's."""
    ch, eth, usdc, pool, engine, cfg = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.settlement,
        protocol.pool,
        protocol.liquidation_engine,
        protocol.configurator,
    )
    wbtc = protocol.tokens["WBTC"]
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    fund_liquidity(protocol, lp2, deployer, 2_000_000, 0)
    victim = deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    trade_now(ch, eth, 900 * WAD, 0, 0, sender=other_trader)
    advance(chain, 2 * 3_600)  # the WBTC feed stops: nothing priced in WBTC can be read
    publish_usd(protocol, "WETH", 1_650, deployer)  # ETH -17.5%
    with ape.reverts("oracle: stale answer"):
        engine.liquidate(victim, eth, MAX_UINT, sender=keeper)
    advance(chain, 3 * 3_600)  # hours later, still halted (every other feed publishes)
    refresh_feeds(protocol, deployer, skip=("WBTC",))
    shares = int(pool.balanceOf(lp2))
    assert int(pool.redeemable(lp2)) == 0 and int(pool.withdrawable(lp2)) == 0
    with ape.reverts("pool: collateral feed down"):
        redeem_now(pool, shares, lp2, lp2, sender=lp2)
    with ape.reverts("pool: collateral feed down"):
        withdraw_now(pool, 1 * USDC, lp2, lp2, sender=lp2)
    # governance's way out, in one batch (a Safe multisend) so no exit runs between: the
    # write-off, the liquidation and the take of the written-off balance
    cfg.write_off_collateral(wbtc, sender=deployer)
    engine.liquidate(victim, eth, MAX_UINT, sender=keeper)
    tx = engine.liquidate_collateral(victim, wbtc, MAX_UINT, sender=keeper)
    bad = tx.events.filter(ch.BadDebt)[0]
    wallet = int(usdc.balanceOf(lp2))
    lp_before = lp_assets(protocol, lp)
    redeem_now(pool, shares, lp2, lp2, sender=lp2)  # exits open again: the token no longer counts
    out = int(usdc.balanceOf(lp2)) - wallet
    print(
        f"\nF4b during the halt LP exits wait; after the write-off: bad debt {usd(int(bad.shortfall))} "
        f"(pool {usd(int(bad.socialised))}); lp2 redeems {usd(out)} (was $2,158,022.48), the honest LP holds {usd(lp_before)}"
    )
    assert near(int(bad.socialised), 316_044.95, 0.5)
    assert abs(out - lp_before) <= 1 * USDC  # the two LPs bear it alike
    # neither takes the phantom gain the pool's value counted while the account was out of reach
    assert near(out, 2_000_000, 1)


# ---------------------------------------------------------------- F5: the debt ceiling lifted for fifteen minutes


def _over_ceiling(ch) -> tuple[bool, int, int]:
    view = risk.read_debt_view(ch)
    lendable = view.pool_balance - view.total_pending
    return view.total_debt * WAD > lendable * int(ch.debt_terms()[3]), view.total_debt, lendable


def test_accepted__an_lp_deposit_lifts_the_debt_ceiling_for_an_order_and_leaves(protocol, deployer, lp, attacker, buddy, chain):
    """F5 (low). One cooldown's LP deposit takes the debt ratio under the ceiling for one commit; it
    leaves afterwards and the ratio is back over it."""
    ch, eth, usdc, pool = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.settlement, protocol.pool
    reserve_out_of_the_way(protocol, deployer)  # as review_debt #8: a pair larger than the pool
    self_hedged_pair(protocol, deployer, lp, attacker)
    trade_now(ch, eth, 5_000 * WAD, 0, 0, sender=attacker)
    trade_now(ch, eth, -5_000 * WAD, 0, 1, sender=attacker)
    a = account_id(attacker, 0)
    over, total, lendable = _over_ceiling(ch)
    owes = -int(ch.settlement(a))
    print(f"\nF5 A owes {usd(owes)}; total_debt {usd(total)} / lendable {usd(lendable)} = {total / lendable:.4f}")
    assert over
    with ape.reverts("orders: debt ceiling"):
        place(ch, eth, 1_000 * WAD, sender=attacker)
    # the attacker's second address deposits into the pool for one cooldown
    x = 600_000 * USDC
    usdc.mint(buddy, x, sender=buddy)
    usdc.approve(pool, x, sender=buddy)
    deposit_now(pool, x, buddy, sender=buddy)
    over, total, lendable = _over_ceiling(ch)
    print(f"F5 after a {usd(x)} LP deposit: {total / lendable:.4f}")
    assert not over
    place(ch, eth, 1_000 * WAD, sender=attacker)  # the biggest debtor adds risk again
    fill_now(ch, a, eth, keeper=ape.accounts.test_accounts[-1])
    advance(chain, COOLDOWN + 1)
    publish_usd(protocol, "WETH", 2_240, deployer)
    wallet = int(usdc.balanceOf(buddy))
    redeem_now(pool, int(pool.balanceOf(buddy)), buddy, buddy, sender=buddy)
    back = int(usdc.balanceOf(buddy)) - wallet
    over, total, lendable = _over_ceiling(ch)
    print(
        f"F5 A holds {int(ch.positions(a, eth).size) / WAD:,.0f} ETH; the deposit came back {usd(back)}; "
        f"ratio {total / lendable:.4f} again"
    )
    assert over and int(ch.positions(a, eth).size) == 1_000 * WAD and back >= x


# ---------------------------------------------------------------- F6: a partial liquidation lands a collateral account in a sale


def test_finding__a_partial_liquidation_leaves_a_collateral_account_over_its_loan_limit(
    protocol, deployer, lp, other_trader, keeper, chain
):
    """F6 (medium-low). The least close restores health 1.1 but leaves the debt above 90% of
    holdings: a discounted collateral sale follows in the same block."""
    ch, eth, usdc, engine = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.settlement, protocol.liquidation_engine
    weth = protocol.tokens["WETH"]
    fund_liquidity(protocol, lp, deployer, 4_000_000, 50_000)
    usdc.mint(keeper, 1_000_000 * USDC, sender=keeper)
    usdc.approve(ch, MAX_UINT, sender=keeper)
    victim = deposit(protocol, other_trader, "WETH", 100 * WAD)
    trade_now(ch, eth, 990 * WAD, 0, 0, sender=other_trader)
    publish_usd(protocol, "WETH", 1_880, deployer)
    e, m, _ = (int(v) for v in ch.margin(victim))
    print(f"\nF6 victim: equity {wusd(e)}, maintenance {wusd(m)}, health {e / m:.4f}")
    assert e * 100 // m == 69
    wallet = int(usdc.balanceOf(keeper))
    tx = engine.liquidate(victim, eth, MAX_UINT, sender=keeper)
    liq = tx.events.filter(engine.Liquidation)[0]
    e, m, _ = (int(v) for v in ch.margin(victim))
    debt = -int(ch.settlement(victim))
    print(
        f"F6 partial close {abs(int(liq.size_closed)) / WAD:,.2f} ETH, penalty {usd(int(liq.penalty))}, "
        f"health after {int(liq.health_after) / WAD:.4f}; debt {usd(debt)} / holdings {wusd(e + debt * S2W)} "
        f"= {debt * S2W / (e + debt * S2W):.4f}"
    )
    reward = int(usdc.balanceOf(keeper)) - wallet
    assert int(liq.health_after) >= 11 * 10**17 and e >= m  # healthy again, by the engine's own target
    assert debt * S2W * 10 > (e + debt * S2W) * 9  # and over the loan limit at once
    price = int(protocol.oracle.price(weth))
    tx = engine.liquidate_collateral(victim, weth, MAX_UINT, sender=keeper)
    sale = tx.events.filter(engine.CollateralLiquidation)[0]
    worth = int(sale.amount) * price // WAD
    discount = worth - int(sale.paid) * S2W
    print(
        f"F6 then, at once: {int(sale.amount) / WAD:,.4f} WETH (worth {wusd(worth)}) sold for {usd(int(sale.paid))}: "
        f"the victim loses {wusd(discount)} more; the keeper made {usd(reward)} + {wusd(discount)}"
    )
    assert near(int(liq.penalty), 34_446.45, 0.01) and near(debt, 146_279.38, 0.05)
    assert near(discount // S2W, 7_698.91, 0.5)


# ---------------------------------------------------------------- refused


def test_refused__self_liquidation_with_an_owed_penalty_the_pool_pays_still_loses(protocol, deployer, lp, attacker, buddy, chain):
    """Refused: the pool paying the keeper its share of an owed penalty does not make
    self-liquidation pay."""
    ch, eth, usdc, engine = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.settlement, protocol.liquidation_engine
    fund_liquidity(protocol, lp, deployer, 2_000_000, 50_000)
    victim = _weth_victim_at_partial_liquidation(protocol, deployer, attacker)
    e0 = int(ch.margin(victim)[0])
    wallet = int(usdc.balanceOf(buddy))
    pool0, ins0, v0 = int(ch.pool_balance()), int(ch.insurance_balance()), value(protocol)
    tx = engine.liquidate(victim, eth, MAX_UINT, sender=buddy)
    liq = tx.events.filter(engine.Liquidation)[0]
    e1 = int(ch.margin(victim)[0])
    reward = int(usdc.balanceOf(buddy)) - wallet
    net = (e1 - e0) + reward * S2W
    print(
        f"\nR self-liquidation: penalty {usd(int(liq.penalty))} (owed), buddy paid {usd(reward)} by the pool; "
        f"account equity {wusd(e1 - e0)}; owner net {wusd(net)}; pool balance +{usd(int(ch.pool_balance()) - pool0)}, "
        f"insurance +{usd(int(ch.insurance_balance()) - ins0)}, pool value +{usd(value(protocol) - v0)}"
    )
    k = int(ch.markets(protocol.markets["ETH-PERP"]).keeper_share)
    # all of it owed (a debt), up to a block's interest and funding (under a cent)
    assert int(liq.penalty) > 0 and abs(e1 - e0 + int(liq.penalty) * S2W) <= 10**16
    assert reward == int(liq.penalty) * k // WAD
    assert net < 0 and abs(net + (int(liq.penalty) - reward) * S2W) <= 10**16  # loses (1 - keeper share) x penalty
    assert int(ch.insurance_balance()) == ins0


def _shape_debt(protocol, owner, subaccount: int, target: int) -> int:
    """A WETH-only account that opened and closed 1 ETH (its two fees are its debt), then repaid
    all but about `target` units. Returns the account id."""
    ch, eth, usdc = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.settlement
    account = deposit(protocol, owner, "WETH", 10 * WAD, subaccount=subaccount)
    trade_now(ch, eth, WAD, 0, subaccount, sender=owner)
    trade_now(ch, eth, -WAD, 0, subaccount, sender=owner)
    owed = -int(ch.settlement(account))
    repay = owed - target
    usdc.mint(owner, repay, sender=owner)
    usdc.approve(ch, repay, sender=owner)
    ch.deposit(usdc, repay, subaccount, sender=owner)
    return account


def _write(protocol, owner, subaccount: int) -> tuple[int, int]:
    """Write the account's balance (a 1-unit deposit): the interest the pool was charged, and the
    debt index it was charged at."""
    ch, usdc = protocol.clearinghouse, protocol.settlement
    usdc.mint(owner, 1, sender=owner)
    usdc.approve(ch, 1, sender=owner)
    before = int(ch.pool_balance())
    ch.deposit(usdc, 1, subaccount, sender=owner)
    return int(ch.pool_balance()) - before, int(ch.debt_state()[0])


def test_refused__no_interest_is_avoided_by_tiny_debts_splitting_or_write_timing(protocol, deployer, lp, attacker, chain):
    """Refused: every write charges ceil(D * i / i0) - D, at least the exact interest, however the
    debt is split or timed."""
    ch = protocol.clearinghouse
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    single = _shape_debt(protocol, attacker, 0, 1_500_000)
    splits = [_shape_debt(protocol, attacker, k, 300_000) for k in range(1, 6)]
    tiny = _shape_debt(protocol, attacker, 6, 1)
    frequent = _shape_debt(protocol, attacker, 7, 1_500_000)
    subs = {single: 0, tiny: 6, frequent: 7, **{a: k for k, a in zip(range(1, 6), splits, strict=True)}}
    written = {a: tuple(int(v) for v in ch.debt_of(a)) for a in subs}
    charged = {a: 0 for a in subs}
    exact = {}
    d, i0 = written[frequent]
    for _ in range(5):  # the frequent debtor writes every 6 days: each write charges to its index
        advance(chain, 6 * DAY)
        paid, index = _write(protocol, attacker, 7)
        assert paid == -(-d * index // i0) - d  # ceil(D * i / i0) - D: rounded against the debtor
        charged[frequent] += paid
        d, i0 = (int(v) for v in ch.debt_of(frequent))
    exact[frequent] = written[frequent][0] * index / written[frequent][1] - written[frequent][0]
    for a, k in subs.items():
        if a == frequent:
            continue
        d, i0 = written[a]
        charged[a], index = _write(protocol, attacker, k)
        assert charged[a] == -(-d * index // i0) - d
        exact[a] = d * index / i0 - d
    print()
    for a, k in subs.items():
        print(f"R interest, subaccount {k}: debt {written[a][0]:,} units, charged {charged[a]}, exact {exact[a]:.3f}")
        assert charged[a] >= exact[a]  # never below what the index owes
    assert charged[tiny] == 1  # a 2-unit debt pays a whole unit for 30 days (exact: 0.003)
    split_total = sum(charged[a] for a in splits)
    print(
        f"R 5 x 300,001 units charged {split_total}; 1 x 1,500,001 charged {charged[single]}; "
        f"written every 6 days {charged[frequent]}"
    )
    assert split_total >= charged[single] - 1 and charged[frequent] >= charged[single] - 1


def _books(protocol, accounts: list[int], label: str) -> None:
    """Settlement tokens held == the Clearinghouse's record == every balance as written + the pool
    + the insurance fund; they cover every positive balance + the fund + the pool's free
    liquidity; total_debt and total_pending are their sums; each collateral's tokens held equal
    its total and the balances."""
    ch, usdc = protocol.clearinghouse, protocol.settlement
    held = int(usdc.balanceOf(ch))
    debts = [int(ch.debt_of(a)[0]) for a in accounts]
    balances = [-d if d else int(ch.settlement(a)) for a, d in zip(accounts, debts, strict=True)]
    pool, insurance = int(ch.pool_balance()), int(ch.insurance_balance())
    pending = sum(int(ch.pending(a)) for a in accounts)
    liquidity = max(pool - int(ch.total_debt()) - int(ch.total_pending()), 0)
    positives = sum(max(b, 0) for b in balances)
    print(
        f"R books {label}: held {usd(held)}; positives {usd(positives)} + insurance {usd(insurance)} "
        f"+ free {usd(liquidity)}; debt {usd(sum(debts))}; pool value {usd(value(protocol))}"
    )
    assert held == int(ch.settlement_held()) == sum(balances) + pool + insurance
    assert int(ch.total_debt()) == sum(debts) and int(ch.total_pending()) == pending
    assert held >= positives + insurance + liquidity
    for token in protocol.tokens.values():
        slot = int(ch.collateral_slot(token))
        assert int(token.balanceOf(ch)) == int(ch.collaterals(slot).total) == sum(int(ch.balances(a, slot)) for a in accounts)


def test_refused__the_books_hold_through_owed_penalties_sales_write_off_and_bad_debt(
    protocol, deployer, lp, trader, other_trader, attacker, keeper, chain
):
    """Refused: the token books balance and cover every claim through each debt and liquidation
    path."""
    ch, eth, usdc, engine, cfg = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.settlement,
        protocol.liquidation_engine,
        protocol.configurator,
    )
    wbtc, weth = protocol.tokens["WBTC"], protocol.tokens["WETH"]
    fund_liquidity(protocol, lp, deployer, 8_000_000, 200_000)
    usdc.mint(keeper, 10_000_000 * USDC, sender=keeper)
    usdc.approve(ch, MAX_UINT, sender=keeper)
    w = deposit(protocol, other_trader, "WETH", 100 * WAD)
    u = deposit(protocol, trader, "USDC", 100_000 * USDC)
    z = deposit(protocol, attacker, "WBTC", 10 * 10**8, subaccount=0)
    s = deposit(protocol, attacker, "WETH", 82 * WAD, subaccount=1)
    every = [w, u, z, s]
    trade_now(ch, eth, 900 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, 800 * WAD, 0, 0, sender=trader)
    trade_now(ch, eth, 100 * WAD, 0, 0, sender=attacker)
    trade_now(ch, eth, 900 * WAD, 0, 1, sender=attacker)
    _books(protocol, every, "opened")

    publish_usd(protocol, "WETH", 1_875, deployer)
    tx = engine.liquidate(w, eth, MAX_UINT, sender=keeper)  # partial, its penalty owed: the pool lends it
    liq = tx.events.filter(engine.Liquidation)[0]
    assert 0 < abs(int(liq.size_closed)) < 900 * WAD and int(ch.settlement(w)) < 0
    _books(protocol, every, "partial liquidation, owed penalty")
    trade_now(ch, eth, -900 * WAD, 0, 1, sender=attacker)  # S closes at a loss: a debt on WETH
    _books(protocol, every, "S closed into debt")

    publish_usd(protocol, "WETH", 1_760, deployer)
    v0 = value(protocol)
    tx = engine.liquidate(u, eth, MAX_UINT, sender=keeper)  # underwater: bad debt, the fund pays it
    bad = tx.events.filter(ch.BadDebt)[0]
    assert int(bad.covered_by_insurance) == int(bad.shortfall) > 0
    print(f"R U's bad debt {usd(int(bad.shortfall))} from the fund; pool value {usd(v0)} -> {usd(value(protocol))}")
    assert near(value(protocol) - v0, 0, 0.01)  # its interest and loss were counted already: no step for an LP to time
    _books(protocol, every, "bad debt covered by the fund")

    debt, (equity, _, _) = -int(ch.settlement(s)), ch.margin(s)
    assert int(equity) > 0 and debt * S2W > (int(equity) + debt * S2W) * 9 // 10  # over the loan limit, solvent
    tx = engine.liquidate_collateral(s, weth, MAX_UINT, sender=keeper)
    assert int(ch.settlement(s)) >= 0 and not tx.events.filter(ch.BadDebt)
    _books(protocol, every, "over-limit sale with equity > 0")

    engine.liquidate(w, eth, MAX_UINT, sender=keeper)  # the rest of W, underwater
    assert int(ch.market_mask(w)) == 0 and int(ch.margin(w)[0]) < 0
    tx = engine.liquidate_collateral(w, weth, MAX_UINT, sender=keeper)  # its WETH, then bad debt
    assert tx.events.filter(ch.BadDebt)
    _books(protocol, every, "W sold out, bad debt")

    publish_usd(protocol, "WBTC", 30_000, deployer)
    trade_now(ch, eth, -100 * WAD, 0, 0, sender=attacker)  # Z flat, in debt on WBTC
    advance(chain, 2 * 3_600)
    publish_usd(protocol, "WETH", 1_760, deployer)
    cfg.write_off_collateral(wbtc, sender=deployer)
    tx = engine.liquidate_collateral(z, wbtc, MAX_UINT, sender=keeper)
    assert tx.events.filter(ch.BadDebt)
    _books(protocol, every, "write-off, free take, bad debt")


def test_refused__a_write_off_neither_releases_the_collateral_to_a_debtor_nor_shields_its_positions(
    protocol, deployer, lp, attacker, keeper, chain
):
    """Refused: a written-off token cannot be withdrawn by a debtor below margin nor taken while
    positions are open; the positions are liquidated as usual."""
    ch, eth, engine, cfg = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.liquidation_engine,
        protocol.configurator,
    )
    wbtc = protocol.tokens["WBTC"]
    fund_liquidity(protocol, lp, deployer, 2_000_000, 50_000)
    a = deposit(protocol, attacker, "WBTC", 10 * 10**8)
    deposit(protocol, attacker, "USDC", 20_000 * USDC)
    trade_now(ch, eth, 500 * WAD, 0, 0, sender=attacker)  # long $1M on $300k of WBTC and $20k
    advance(chain, 2 * 3_600)
    publish_usd(protocol, "WETH", 2_000, deployer)
    cfg.write_off_collateral(wbtc, sender=deployer)
    e, m, _ = (int(v) for v in ch.margin(a))
    print(f"\nR write-off: equity without WBTC {wusd(e)} against maintenance {wusd(m)}")
    with ape.reverts("clearinghouse: insufficient margin"):  # the owner cannot pull it out
        ch.withdraw(wbtc, 10**8, 0, sender=attacker)
    with ape.reverts("liquidation: close positions first"):  # nor can anyone take it while positions are open
        engine.liquidate_collateral(a, wbtc, MAX_UINT, sender=keeper)
    tx = engine.liquidate(a, eth, MAX_UINT, sender=keeper)  # its positions are liquidated as usual
    closed = abs(int(tx.events.filter(engine.Liquidation)[0].size_closed))
    print(f"R write-off: liquidated {closed / WAD:,.2f} ETH of 500 without reading the WBTC feed")
    assert e < int(m) and closed > 0
