"""Attacker's review (v5) of the follow-up to review v4 in `MarginLens.commit_margin` /
`_after_trades` (C1/C2: a traded market's open loss and the trade's own loss counted apart; C4:
debt_after = max(owed - balance - claim, 0)) and `LiquidityPool._max_deposit` (C6). Default
protocol (`deploy_protocol(DEFAULT_CONFIG)`): ETH $2,000 (skew_scale 1,000,000, oi_cap 7,500),
BTC $30,000, WBTC weight 0.85, debt_imr 0.25, settlement delay 60 s, fee $2, bond 0.05%. Run with
`-s` for the figures. Earlier findings (the keeper's sandwich, the known round, funding over the
delay, C5) are not re-reported.

FINDINGS

V1 (low, over-conservative; a regression of the C1/C2 fix; fixed) A pure add's own premium loss is
counted as a debt, now even on a winning position. The fix adds ceil((pnl_before - pnl_after) /
S2W) to owed for every trade that loses by itself. Only a flip realises anything at its fill (its
closed part); a pure add (same direction) realises nothing, and nobody can realise its premium
loss before the fill's margin check, which runs in the same transaction. Before the fix
neg(pnl_after) let the position's open gain absorb the premium; now debt_imr x the whole premium
(less the balance) is asked for a debt that can never exist. 10 WBTC + $5,000 long 400 ETH,
ETH $2,200 (open gain ~$80k), longs 5,400: the commit accepts up to +1,391.43 ETH (premium
$18,659.87) while the fill's own check, with nothing any third party can realise, passes up to
+1,411.74 ETH: $3,899.96 of margin (0.25 x (premium + fee - balance)) and 20.31 ETH ($44,672 of
notional) refused; +1,401.43 ETH reverts "orders: insufficient margin"; the accepted limit fills
and leaves $3,900.90 of margin nobody can touch (`realise_loss` reverts "no loss to realise").
Grows with the skew: debt_imr x |d| x P x (skew + d/2) / skew_scale. Fix: for an add that does
not flip, owed += neg(pnl_before) only; for a flip, owed += neg(pnl_before) + neg(closing x
(fill - P)) (the closed part's own premium, which its fill realises), never the opening part's.

FIXED: V1, a plain add counts its open loss only; a flip counts its open loss and the premium
its fill pays on the side it closes, c = signed_mul_floor(size, fill - price) when negative.

REFUSED (tried, failed)

- Reducing the netted pending claim between commit and fill: a claim is paid only by
  `vault._claim`, called only from `Clearinghouse.withdraw` of the owner's own account, which
  reverts "clearinghouse: order pending" while the order is open; the only other change is
  `_set_settlement` netting a new debt of the same account, which is what the commit counts.
  Balance 0, claim $19,482.98, +1,162.91 ETH committed at the limit; a $1M LP deposit (the pool
  liquid again), an LP withdrawal, another account's claim paid out: the claim unchanged; a
  griefer's realisation of the BTC loss ($15,002.55) nets it to $4,480.44 (what the commit
  counted): the order fills.
- Other third-party levers at the fill: the debt ceiling is checked at the commit only; a
  realisation keeps the size (no "position changed"); `liquidate` needs maintenance, below
  initial; `liquidate_collateral` needs the loan limit, which `realise_loss` refuses to cross;
  deposits go to the caller's own account only, so nobody can add a collateral (and its feed)
  to another's margin. Interest on a griefer's debt over the delay: sub-cent (review v4).
- Python mirror: `risk.commit_margin` equals the lens to the wei in both scenarios here (an add
  on a winning position with a premium loss; a claim netting a realised loss).
- maxDeposit/maxMint: the soft pass equals the hard one; with BTC's feed stale and no BTC open
  interest or hold the price is read by neither (max, and the deposit passes); with ETH's stale
  and ETH open interest both fail (0, and "oracle: stale answer"). Receiver-specific reverts
  ("pool: too many locked deposits" for a third party's fifth deposit within the cooldown) and
  the int128 pool balance bound (2**127 units) are not pool-state limits and are not reflected
  (info).
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import deposit_now, fill_now, place, trade_now, withdraw_now
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd, refresh_feeds
from tests.e2e.test_review_v2_solvency import advance, usd, wusd
from tests.e2e.test_review_v4_commit import gap, largest, mirror_matches

MAX_UINT = 2**256 - 1
S2W = 10**12


@pytest.fixture(scope="module")
def lp2(accounts):
    return accounts[7]


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, lp2, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def fill_gap(lens, account: int, orders: list[tuple[int, int]]) -> int:
    """equity - initial the fill's own check sees (`health_after_trades`), WAD: for an account
    with no open loss and a balance covering the fee, nothing more can be realised before it."""
    _, equity, initial = lens.health_after_trades(account, [m for m, _ in orders], [d for _, d in orders])
    return int(equity) - int(initial)


# ---------------------------------------------------------------- V1: a pure add's own premium loss counted as a debt


def test_fixed__a_pure_adds_premium_loss_is_not_asked_debt_margin(
    protocol, deployer, lp, trader, attacker, other_trader, keeper, chain
):
    """V1 (low, over-conservative), fixed. The commit asked debt_imr on the add's own premium loss,
    which no one can realise before the fill's check: 20.31 ETH of a ~1,400 ETH add refused for
    $3,899.96 of margin. It now counts only the open loss for a plain add (and a flip's closing
    premium): the commit's limit is the fill's own."""
    ch, eth, orders, lens = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.orders, protocol.lens
    oracle = protocol.oracle
    fund_liquidity(protocol, lp, deployer, 20_000_000, 0)
    a = deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    deposit(protocol, other_trader, "USDC", 5_000 * USDC)  # its fees: no debt
    trade_now(ch, eth, 400 * WAD, 0, 0, sender=other_trader)
    deposit(protocol, trader, "USDC", 3_000_000 * USDC)
    trade_now(ch, eth, 5_000 * WAD, 0, 0, sender=trader)  # longs heavy: a buy pays a premium
    advance(chain, 86_400)
    refresh_feeds(protocol, deployer, skip=("WETH",))
    publish_usd(protocol, "WETH", 2_200, deployer)  # A's 400 ETH: an open gain
    price = int(oracle.price(protocol.tokens["WETH"]))
    committed = largest(lens, a, eth, 1, 0, hi=2_000 * WAD)
    lo, hi = 0, 2_000 * WAD
    while hi - lo > WAD // 100:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fill_gap(lens, a, [(eth, mid)]) > 0 else (lo, mid)
    fillable = lo
    premium = committed * (int(lens.fill_price(eth, committed)) - price) // WAD
    over = fill_gap(lens, a, [(eth, committed)]) - gap(lens, a, [(eth, committed)])
    assert mirror_matches(protocol, chain, a, [(eth, committed)])
    print(
        f"\nV1 balance {usd(int(ch.settlement(a)))}, open gain; commit limit +{committed / WAD:.2f} ETH "
        f"(premium {wusd(premium)}), the fill's own limit +{fillable / WAD:.2f} ETH: {wusd(over)} of margin over-asked, "
        f"{(fillable - committed) / WAD:.2f} ETH ({wusd((fillable - committed) * price // WAD)}) refused"
    )
    assert 0 <= fillable - committed <= WAD // 100 and over < WAD and int(ch.settlement(a)) > 0
    place(ch, eth, committed, 0, 0, sender=other_trader)
    receipt = fill_now(ch, a, eth, keeper=keeper)
    equity, _, initial = (int(v) for v in ch.margin(a))
    print(f"V1 the limit fills: {bool(receipt.events.filter(orders.OrderFilled))}, spare margin {wusd(equity - initial)}")
    assert receipt.events.filter(orders.OrderFilled) and equity - initial < 100 * WAD


# ---------------------------------------------------------------- refused: a third party cannot shrink the netted claim


def test_refused__no_third_party_can_shrink_the_pending_claim_the_commit_nets_before_the_fill(
    protocol, deployer, lp, lp2, trader, attacker, other_trader, keeper, chain
):
    """The claim C4 nets is paid only at the owner's own withdrawal (blocked while an order is
    open) or netted by the account's own new debt. LP flows, another claimant's withdrawal and a
    griefer's realisation between commit and fill: the largest order the commit accepts fills."""
    ch, eth, btc, orders, lens = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.markets["BTC-PERP"],
        protocol.orders,
        protocol.lens,
    )
    engine, cfg, usdc, pool = protocol.liquidation_engine, protocol.configurator, protocol.settlement, protocol.pool
    for m in (eth, btc):
        cfg.set_reserve_factor(m, 0, sender=deployer)  # a small pool: reserves off (governance)
    fund_liquidity(protocol, lp, deployer, 20_000, 0)
    w = deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    x = deposit(protocol, attacker, "USDC", 100_000 * USDC)  # another claimant, the griefer's
    deposit(protocol, trader, "USDC", 200_000 * USDC)
    trade_now(ch, eth, 100 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, 50 * WAD, 0, 0, sender=attacker)
    trade_now(ch, eth, -150 * WAD, 0, 0, sender=trader)
    for p in (2_200, 2_400):
        advance(chain, 86_400)
        refresh_feeds(protocol, deployer, skip=("WETH",))
        publish_usd(protocol, "WETH", p, deployer)
    trade_now(ch, eth, -100 * WAD, 0, 0, sender=other_trader)  # +$40k; the pool holds ~$20k: the rest is a claim
    ch.withdraw(usdc, int(ch.settlement(w)), 0, sender=other_trader)
    trade_now(ch, eth, -50 * WAD, 0, 0, sender=attacker)  # the griefer's own claim (the pool is dry)
    deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    trade_now(ch, btc, 5 * WAD, 0, 0, sender=other_trader)
    advance(chain, 86_400)
    refresh_feeds(protocol, deployer, skip=("WBTC",))
    publish_usd(protocol, "WBTC", 27_000, deployer)
    claim0 = int(ch.pending(w))
    assert int(ch.settlement(w)) == 0 and claim0 > 0 and int(ch.pending(x)) > 0
    size = largest(lens, w, eth, 1, 0)
    assert mirror_matches(protocol, chain, w, [(eth, size)])
    place(ch, eth, size, 0, 0, sender=other_trader)
    with ape.reverts("clearinghouse: order pending"):
        ch.withdraw(usdc, 1, 0, sender=other_trader)  # the owner cannot take its claim out either
    usdc.mint(lp2, 1_000_000 * USDC, sender=lp2)
    usdc.approve(pool, MAX_UINT, sender=lp2)
    deposit_now(pool, 1_000_000 * USDC, lp2, sender=lp2)  # the pool liquid again: claims stay pending
    ch.withdraw(usdc, 1, 0, sender=attacker)  # another claim paid first come first served
    withdraw_now(pool, 10_000 * USDC, lp, lp, sender=lp)
    claim1 = int(ch.pending(w))
    loss = int(engine.realise_loss(w, btc, sender=attacker).events.filter(engine.LossRealised)[0].loss)
    claim2 = int(ch.pending(w))
    receipt = fill_now(ch, w, eth, keeper=keeper)
    print(
        f"\nrefused: claim {usd(claim0)}, +{size / WAD:.2f} ETH committed at the limit; after LP flows and another claim "
        f"paid: {usd(claim1)}; a realised loss of {usd(loss)}: {usd(claim2)}; "
        f"filled {bool(receipt.events.filter(orders.OrderFilled))}"
    )
    assert claim1 == claim0 and claim2 == claim0 - loss and int(ch.pending(x)) == 0
    assert receipt.events.filter(orders.OrderFilled)


# ---------------------------------------------------------------- refused: maxDeposit against deposit


def test_refused__max_deposit_and_max_mint_read_zero_exactly_when_a_deposit_reverts_for_a_price(
    protocol, deployer, lp, lp2, trader, chain
):
    """A stale feed the valuation does not read (no open interest, no hold, no collateral held):
    a deposit passes; one it reads: it reverts. With the book open deposits are requests (max* 0);
    once the book is idle no market's price is read at all: max, and the instant deposit passes
    with every market feed stale."""
    ch, eth, pool, usdc = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.pool, protocol.settlement
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    deposit(protocol, trader, "USDC", 10_000 * USDC)
    trade_now(ch, eth, WAD, 0, 0, sender=trader)
    usdc.mint(lp2, 3_000 * USDC, sender=lp2)
    usdc.approve(pool, MAX_UINT, sender=lp2)
    advance(chain, 2 * 3_600)
    refresh_feeds(protocol, deployer, skip=("WBTC",))  # BTC: no open interest, WBTC held by nobody
    assert int(pool.maxDeposit(lp2)) == int(pool.maxMint(lp2)) == 0  # the book is open: by request
    deposit_now(pool, 1_000 * USDC, lp2, sender=lp2)
    advance(chain, 2 * 3_600)
    refresh_feeds(protocol, deployer, skip=("WETH",))  # ETH: open interest
    with ape.reverts("oracle: stale answer"):
        deposit_now(pool, 1_000 * USDC, lp2, sender=lp2)
    refresh_feeds(protocol, deployer)
    trade_now(ch, eth, -WAD, 0, 0, sender=trader)  # the book idle
    advance(chain, 2 * 3_600)  # every feed stale
    assert int(pool.maxDeposit(lp2)) == int(pool.maxMint(lp2)) == MAX_UINT
    pool.deposit(1_000 * USDC, lp2, sender=lp2)
    print("\nrefused: maxDeposit/maxMint max with an unread stale feed (deposit passes), 0 with a read one (reverts)")
