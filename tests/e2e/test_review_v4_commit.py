"""Attacker's review (v4) of two small money-path changes: `MarginLens.commit_margin` (with
`_after_trades` returning owed/losing/seen, and `Orders._margin_for_orders` calling it: every open
loss counted as realised at the commit, review v3 R2) and `LiquidityPool.maxWithdraw/maxRedeem`
(collaterals first, then the soft `_valuation(True)` through `_try_price`, review v3 L3). Default
protocol (`deploy_protocol(DEFAULT_CONFIG)`): ETH $2,000 (skew_scale 1,000,000, oi_cap 7,500,
imr 6% below 1,000 ETH), BTC $30,000, WBTC weight 0.85, debt_imr 0.25, settlement delay 60 s, fee
$2, bond 0.05%. Run with `-s` for the figures. Findings of the earlier reviews (the keeper's
sandwich of a large order, the known-round option, funding over the delay) are not re-reported.

FINDINGS

C1 (medium-low, fixed) A realisation before the fill splits an open loss from the add's premium gain.
`_after_trades` counts a traded market's PnL *after* the trade as the realisable loss, so an add
that fills below the oracle (a buy into a short-heavy skew) nets its discount, an unrealised gain
at the oracle, against the position's open loss. A griefer's `realise_loss` between commit and fill
realises the open loss alone; the discount stays a gain only the owner can realise, so the fill's
debt margin is debt_imr x discount above the commit's. Skew -5,200 ETH; twin accounts (10 WBTC,
long 400 ETH from $2,000, ETH $1,800) commit +717.03 ETH each at $1,791.29: discount $6,248.68,
A's commit gap $502.45. The griefer realises A's $80,122.56 (the same commit then reads
-$1,059.72): A is cancelled "clearinghouse: insufficient margin", $647.33 forfeited (fee $2 + bond
$645.33); the untouched twin fills. The hole is 0.25 x |d| x P x |2 skew + d| / (2 skew_scale),
up to ~0.19% of the add's notional at the default cap. R2 is closed only where the add pays a
premium. Fix: per traded market owed += neg(pnl_before) + neg(pnl_after - pnl_before), i.e.
never net the trade's own gain against the open loss.

C2 (low-medium, no third party needed, fixed) The same netting on a growing flip: the fill itself
realises the closed side, while the commit nets that loss with the new side's premium gain (sold
above the oracle into a long-heavy skew). 10 WBTC long 400 ETH at $1,800, longs 6,400: sell
1,597.70 ETH (short 1,197.70) at $1,810.08, new side's gain $12,075.30, commit gap $101.14, the
fill's debt margin $3,018.82 higher: cancelled at its own round, $1,079.93 forfeited (bond
$1,077.93); the flip less the hidden margin fills. Same fix as C1.

C4 (low, over-conservative, fixed) The commit ignores the pending claim. A realisation into a negative
balance is paid out of the account's claim first (`vault._set_settlement`), so no debt arises while
the claim covers the loss; `commit_margin` takes debt_after = owed - balance and asks debt_imr on the
whole loss. Balance $0, claim $19,582.99, BTC loss $15,002.55: the commit takes up to +1,140.15 ETH;
the owner realises its own loss (equity down less than a unit, balance still 0, claim $4,580.45) and the same
account then commits up to +1,159.22 ETH (+1.7%, $45,768 of notional refused for $3,750.64 of debt
margin nobody can make it owe); an order 10 ETH over the first limit fills. The excess is
debt_imr x min(claim, owed - balance). Fix: debt_after = max(owed - balance - pending, 0) (an
account in debt holds no claim, so debt_now is unchanged).

C5 (low) A flip to a smaller or equal size is in no commit check with its own fee. It is "left
unfilled" in every other order's commit, and its own commit checks the account as it stands, so its
fee (and any adverse premium, with their debt margin) is counted nowhere. 10 WBTC long 50 BTC: ETH
+1,007.01 (gap $100) and BTC -100 (long 50 -> short 50, fee ~$1,500) both commit, but cannot both
fill: a keeper filling BTC first cancels the ETH order ($1,009.01 forfeited), ETH first cancels the
flip ($752.00). Whoever executes first picks who forfeits. Fix: count every non-growing flip's fee
and adverse premium as owed (crediting none of the margin it frees) in every commit check,
its own included; or refund a fill refused after another order of the same account filled.

C6 (low, ERC-4626, fixed) maxWithdraw/maxRedeem now read 0 while a price is missing, but maxDeposit and
maxMint still read 2**256 - 1 while deposit and mint revert for the same cause ("pool: collateral
feed down" with WBTC stale, "oracle: stale answer" with ETH stale and ETH open interest), which
EIP-4626 forbids ("if deposits are entirely disabled, even temporarily, it MUST return 0"). Fix:
the same `_collateral_priced()` and soft-valuation checks (and the insolvency check) in max
deposit/mint.

FIXED: C1 and C2, `commit_margin` counts a traded market's open loss and the trade's own loss
apart (neg(pnl_before) + neg(pnl_after - pnl_before)); C4, it nets the pending claim before the
debt (max(owed - balance - claim, 0)); C6, maxDeposit and maxMint read 0 while a deposit would
revert for the pool's state. OPEN: C5 (in the README).

INFO: the second pass costs the committing account ~38.7k gas per other market it holds: with 15
positions commit_margin is 1,046,979 gas against health_after_trades' 505,379, the whole commit
1,506,094 (926,563 in review 2 with 14 positions). Nobody can add a position to another's account,
so it is not a griefing lever; a Clearinghouse view giving each market's PnL with `margin` would
halve it. The commit also counts the add's own premium loss as a debt (no one can realise it
before the fill): 0.25 x the premium, $104.03 on +679.96 ETH at skew 0, a small over-count that
happens to cover the interest below.

REFUSED (tried, failed)

- R2 for losses outside the order: a loss in a market the order does not touch (BTC $9,000.92) and
  the order's own (ETH $60,091.62, no discount), both realised between commit and fill: the
  largest order with $100 to spare (+983.36 ETH) fills.
- Interest on the griefer's debt between commit and fill: the order at the limit to the wei
  (+679.962066 ETH, gap 57 wei) fills after $80,160.00 is realised right after its commit; the
  minute's interest (3,917 units, $0.0039 plus the index's ceiling) is under the $104.03 the
  commit over-counts on the add's premium. (Not modelled: with a premium near 0, skew ~ -d/2,
  the window is debt x rate x delay, sub-cent at the defaults, and the funding the long then earns
  is larger.)
- Python mirror: `risk.commit_margin` equals the lens to the wei at every commit above (with a
  claim, with a debt, with a losing market outside the order, a flip, an add at a discount).
- Pool: the soft pass values the pool exactly as the hard one. maxWithdraw and maxRedeem equal
  min(assets of the free shares, liquidity, headroom) recomputed from `reserve(0, 0)` and the
  Clearinghouse (headroom $660,737.70 binding under $2,010,225.01 of liquidity, with a debt);
  withdraw(maxWithdraw) and redeem(maxRedeem) pass, $0.01 more reverts "pool: open interest
  reserve"; locked shares read 0 and revert "pool: cooldown"; deposit, mint, withdraw, redeem and
  `reserve` still run the hard pass (`_book(.., False)`), unchanged. The only way found to make max*
  read 0 while the flow would pass is starving `_try_price` of gas (an on-chain caller's own
  choice; a view, nothing moves).
- Out of reach of a third party: a governance write-off between commit and fill forfeits like a
  margin refusal (only pause and reduce-only are refunded), a governance act; moving the skew
  before the fill is the known same-round sandwich (README); funding over 60 s is the trader's.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import deposit_now, fill_now, place, redeem_now, trade_now, withdraw_now
from marginsim.protocol import MarketConfig
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd, refresh_feeds
from tests.e2e.test_review_v2_solvency import advance, usd, wusd

MAX_UINT = 2**256 - 1
S2W = 10**12
COOLDOWN = 900  # LiquidityPool.COOLDOWN


@pytest.fixture(scope="module")
def lp2(accounts):
    return accounts[7]


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, lp2, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def gap(lens, account: int, orders: list[tuple[int, int]]) -> int:
    """equity - initial as Orders' commit sees it (`MarginLens.commit_margin`), WAD."""
    equity, initial = lens.commit_margin(account, [m for m, _ in orders], [d for _, d in orders])
    return int(equity) - int(initial)


def largest(
    lens, account: int, market: int, sign: int, floor_wad: int, step: int = WAD // 100, hi: int = 5_000 * WAD, lo: int = 0
) -> int:
    """The largest |size_delta| in [lo, hi] (a multiple of `step`) whose commit gap stays above
    `floor_wad`, the gap falling with the size over that range."""
    while hi - lo > step:
        mid = (lo + hi) // 2
        if gap(lens, account, [(market, sign * mid)]) > floor_wad:
            lo = mid
        else:
            hi = mid
    return lo // step * step


def mirror_matches(protocol, chain, account: int, orders: list[tuple[int, int]]) -> bool:
    """`marginsim.risk.commit_margin` equals the lens to the wei at the head block."""
    ch, oracle, lens = protocol.clearinghouse, protocol.oracle, protocol.lens
    snapshot = risk.snapshot_account(ch, oracle, account, chain.blocks.head.timestamp)
    views = {m: risk.read_market_view(ch, oracle, m) for m, _ in orders}
    equity, initial = lens.commit_margin(account, [m for m, _ in orders], [d for _, d in orders])
    rate_base, rate_slope, _, _ = (int(v) for v in ch.debt_terms())
    return risk.commit_margin(snapshot, orders, views, rate_base + rate_slope) == (int(equity), int(initial))


# ---------------------------------------------------------------- C1: a realisation splits the loss from the add's premium gain


def test_fixed__a_realisation_before_the_fill_no_longer_splits_the_old_loss_from_the_adds_discount(
    protocol, deployer, lp, trader, attacker, other_trader, keeper, chain
):
    """C1 (medium-low), fixed. The commit took the traded market's PnL after the trade as one
    loss, the open loss netted with the add's discount (an unrealised gain at the oracle); a
    griefer's `realise_loss` before the fill realised the open loss alone and the fill failed:
    $647.33 forfeited. The commit now counts the open loss and the trade's own loss apart, never
    netting the discount: the largest add it accepts fills after the realisation."""
    ch, eth, orders, lens = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.orders, protocol.lens
    engine, oracle = protocol.liquidation_engine, protocol.oracle
    fund_liquidity(protocol, lp, deployer, 20_000_000, 0)
    a = deposit(protocol, other_trader, "WBTC", 10 * 10**8, subaccount=0)
    b = deposit(protocol, other_trader, "WBTC", 10 * 10**8, subaccount=1)  # its twin, left alone
    trade_now(ch, eth, 400 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, 400 * WAD, 0, 1, sender=other_trader)
    deposit(protocol, trader, "USDC", 3_000_000 * USDC)
    trade_now(ch, eth, -6_000 * WAD, 0, 0, sender=trader)  # the market: shorts heavy, a buy fills below the oracle
    advance(chain, 86_400)
    refresh_feeds(protocol, deployer, skip=("WETH",))
    publish_usd(protocol, "WETH", 1_800, deployer)
    price = int(oracle.price(protocol.tokens["WETH"]))
    st = ch.market_state(eth)
    print(f"\nC1 skew {(int(st.long_oi) - int(st.short_oi)) / WAD:,.0f} ETH")
    size = min(largest(lens, acct, eth, 1, 100 * WAD) for acct in (a, b))
    fill = int(lens.fill_price(eth, size))
    gain = size * (price - fill) // WAD  # the add's discount: an unrealised gain at the oracle
    g_a = gap(lens, a, [(eth, size)])
    assert mirror_matches(protocol, chain, a, [(eth, size)])
    print(f"C1 both commit +{size / WAD:.2f} ETH at {wusd(fill)} (oracle {wusd(price)}): discount {wusd(gain)}, gap {wusd(g_a)}")
    for sub in (0, 1):
        place(ch, eth, size, 0, sub, sender=other_trader)
    bond = int(orders.bonds(a, eth))
    insurance0 = int(ch.insurance_balance())
    tx = engine.realise_loss(a, eth, sender=attacker)
    loss = int(tx.events.filter(engine.LossRealised)[0].loss)
    after = gap(lens, a, [(eth, size)])
    print(f"C1 the griefer realises {usd(loss)}; the same commit now reads gap {wusd(after)}")
    receipt_a = fill_now(ch, a, eth, keeper=keeper)
    cancelled = receipt_a.events.filter(orders.OrderCancelled)
    filled_b = orders.execute_order(b, eth, sender=keeper).events.filter(orders.OrderFilled)
    forfeited = int(ch.insurance_balance()) - insurance0
    filled_a = receipt_a.events.filter(orders.OrderFilled)
    print(f"C1 A filled: {bool(filled_a)}, forfeited {usd(forfeited)} (bond {usd(bond)}); twin B filled: {bool(filled_b)}")
    assert filled_a and not cancelled and filled_b and forfeited == 0
    assert g_a > 0 and after > 0


# ---------------------------------------------------------------- C2: a growing flip's realised loss, netted


def test_fixed__a_growing_flip_the_commit_accepts_fills_at_its_own_round(
    protocol, deployer, lp, trader, other_trader, keeper, chain
):
    """C2 (low-medium), fixed. A flip to a larger size realises the closed side at its fill;
    the commit netted that loss with the new side's premium gain (sold above the oracle), and the
    largest flip it accepted was cancelled at its own round ($1,079.93 forfeited). Counted apart,
    the largest flip the commit accepts fills."""
    ch, eth, orders, lens = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.orders, protocol.lens
    oracle = protocol.oracle
    fund_liquidity(protocol, lp, deployer, 20_000_000, 0)
    a = deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    trade_now(ch, eth, 400 * WAD, 0, 0, sender=other_trader)
    deposit(protocol, trader, "USDC", 3_000_000 * USDC)
    trade_now(ch, eth, 6_000 * WAD, 0, 0, sender=trader)  # the market: longs heavy, a sell fills above the oracle
    advance(chain, 86_400)
    refresh_feeds(protocol, deployer, skip=("WETH",))
    publish_usd(protocol, "WETH", 1_800, deployer)
    price = int(oracle.price(protocol.tokens["WETH"]))
    # the sell that flips the 400 ETH long into the largest short the commit accepts
    sell = largest(lens, a, eth, -1, 100 * WAD, lo=400 * WAD, hi=3_000 * WAD)
    opened = sell - 400 * WAD
    fill = int(lens.fill_price(eth, -sell))
    gain = opened * (fill - price) // WAD  # the new short's premium: an unrealised gain at the oracle
    assert mirror_matches(protocol, chain, a, [(eth, -sell)])
    print(
        f"\nC2 sell {sell / WAD:.2f} ETH on +400 (short {opened / WAD:.2f}) at {wusd(fill)} (oracle {wusd(price)}): "
        f"new side's gain {wusd(gain)}, commit gap {wusd(gap(lens, a, [(eth, -sell)]))}; "
        f"debt_imr under-counted {wusd(gain // 4)}"
    )
    place(ch, eth, -sell, 0, 0, sender=other_trader)
    insurance0 = int(ch.insurance_balance())
    receipt = fill_now(ch, a, eth, keeper=keeper)  # nobody else did anything
    print(f"C2 the flip fills at its own round: {bool(receipt.events.filter(orders.OrderFilled))}")
    assert receipt.events.filter(orders.OrderFilled) and int(ch.insurance_balance()) == insurance0
    assert int(ch.positions(a, eth).size) == 400 * WAD - sell


# ---------------------------------------------------------------- refused: interest after a realisation at the limit


def test_refused__an_order_at_the_limit_to_the_wei_fills_after_a_realisation_and_a_minute_of_interest(
    protocol, deployer, lp, trader, attacker, other_trader, keeper, chain
):
    """The realised debt's interest over the settlement delay is not modelled, but the commit
    also counts the add's own premium loss as a debt (nobody can realise it before the fill):
    at the defaults that over-count dwarfs a minute of interest, so the order at the limit to
    the wei fills after a griefer's realisation."""
    ch, eth, orders, lens = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.orders, protocol.lens
    engine = protocol.liquidation_engine
    fund_liquidity(protocol, lp, deployer, 4_000_000, 0)
    a = deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    deposit(protocol, other_trader, "USDC", 2_000 * USDC)  # its fees: no debt, so nothing moves by the second
    trade_now(ch, eth, 400 * WAD, 0, 0, sender=other_trader)
    deposit(protocol, trader, "USDC", 200_000 * USDC)
    trade_now(ch, eth, -400 * WAD, 0, 0, sender=trader)  # skew 0: no funding, no discount
    advance(chain, 86_400)
    refresh_feeds(protocol, deployer, skip=("WETH",))
    publish_usd(protocol, "WETH", 1_800, deployer)
    size = largest(lens, a, eth, 1, 0, step=1, hi=2_000 * WAD)  # the largest buy the commit accepts, to the wei
    price = int(protocol.oracle.price(protocol.tokens["WETH"]))
    premium = size * (int(lens.fill_price(eth, size)) - price) // WAD  # the add's own premium: a loss
    print(
        f"\nrefused: the largest buy the commit accepts: {size / WAD:.6f} ETH, gap {gap(lens, a, [(eth, size)])} wei; "
        f"its premium {wusd(premium)} is counted as a debt too "
        f"({wusd(premium // 4)} of debt_imr nobody can realise before the fill)"
    )
    place(ch, eth, size, 0, 0, sender=other_trader)
    tx = engine.realise_loss(a, eth, sender=attacker)  # the block after the commit
    loss = int(tx.events.filter(engine.LossRealised)[0].loss)
    debt0 = -int(ch.settlement(a))
    chain.pending_timestamp = chain.pending_timestamp + int(orders.settlement_delay())
    chain.mine()
    interest = -int(ch.settlement(a)) - debt0
    receipt = fill_now(ch, a, eth, keeper=keeper)
    print(
        f"refused: a griefer realises {usd(loss)} after the commit, {interest} units "
        f"(${interest / USDC:.6f}) of interest by the round: the order fills"
    )
    assert receipt.events.filter(orders.OrderFilled) and interest > 1
    assert interest * S2W * 5 // 4 < premium // 4


# ---------------------------------------------------------------- C4: a pending claim nets the realised debt


def test_fixed__the_commit_counts_the_pending_claim_a_realisation_nets_first(
    protocol, deployer, lp, trader, attacker, other_trader, keeper, chain
):
    """C4 (low, over-conservative), fixed. A realisation into a negative balance is paid first
    out of the account's pending claim (`_set_settlement`), so no debt arises while the claim
    covers it; the commit counted the whole loss as a debt (+1,140.15 ETH accepted, +1,159.22
    after the owner realised its own loss). It now nets the claim first: the same limit before
    and after the realisation."""
    ch, eth, btc, orders, lens = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.markets["BTC-PERP"],
        protocol.orders,
        protocol.lens,
    )
    engine, cfg, usdc = protocol.liquidation_engine, protocol.configurator, protocol.settlement
    for m in (eth, btc):
        cfg.set_reserve_factor(m, 0, sender=deployer)  # a small pool: reserves off (governance)
    fund_liquidity(protocol, lp, deployer, 20_000, 0)
    w = deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    deposit(protocol, trader, "USDC", 100_000 * USDC)
    trade_now(ch, eth, 100 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, -100 * WAD, 0, 0, sender=trader)
    for p in (2_200, 2_400):  # a day apart, so the volatility stays near its start
        advance(chain, 86_400)
        refresh_feeds(protocol, deployer, skip=("WETH",))
        publish_usd(protocol, "WETH", p, deployer)
    trade_now(ch, eth, -100 * WAD, 0, 0, sender=other_trader)  # +$40k; the pool holds ~$20k: the rest is a claim
    ch.withdraw(usdc, int(ch.settlement(w)), 0, sender=other_trader)
    claim = int(ch.pending(w))
    deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    trade_now(ch, btc, 5 * WAD, 0, 0, sender=other_trader)  # its fee nets the claim: the balance stays 0
    advance(chain, 86_400)
    refresh_feeds(protocol, deployer, skip=("WBTC",))
    publish_usd(protocol, "WBTC", 27_000, deployer)
    b, claim = int(ch.settlement(w)), int(ch.pending(w))
    loss = -int(ch.margin(w)[0]) + claim * S2W + int(ch.collateral_value(w))  # the BTC position's PnL, WAD
    assert mirror_matches(protocol, chain, w, [(eth, 10 * WAD)])
    before = largest(lens, w, eth, 1, 0)
    print(f"\nC4 balance {usd(b)}, claim {usd(claim)}, BTC loss {wusd(loss)}: the commit takes up to +{before / WAD:.2f} ETH")
    assert b == 0 and claim * S2W > loss > 10_000 * WAD
    e0 = int(ch.margin(w)[0])
    engine.realise_loss(w, btc, sender=other_trader)  # its own loss, netted by the claim: equity unchanged
    e1 = int(ch.margin(w)[0])
    after = largest(lens, w, eth, 1, 0)
    print(
        f"C4 after realising its own loss (equity {e1 - e0} wei, balance {usd(int(ch.settlement(w)))}, "
        f"claim {usd(int(ch.pending(w)))}): up to +{after / WAD:.2f} ETH"
    )
    assert int(ch.settlement(w)) == 0 and -S2W <= e1 - e0 <= 0
    assert abs(after - before) <= WAD // 100  # one bisection step: no debt margin either way
    place(ch, eth, before - WAD, 0, 0, sender=other_trader)
    assert fill_now(ch, w, eth, keeper=keeper).events.filter(orders.OrderFilled)


# ---------------------------------------------------------------- C5: a same-size flip's fee is in nobody's check


def test_finding__a_same_size_flips_fee_is_in_no_commit_check_so_the_keepers_fill_order_decides_which_order_fails(
    protocol, deployer, lp, other_trader, keeper, chain
):
    """C5 (low). A flip to a smaller or equal size is in no commit list ("left unfilled"), and
    its own commit checks the account as it stands: its fee (and any adverse premium) is in no
    check. With it and a growing order placed, both accepted, they cannot both fill; whoever
    executes first picks which one is cancelled and forfeits."""
    ch, eth, btc, orders, lens = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.markets["BTC-PERP"],
        protocol.orders,
        protocol.lens,
    )
    fund_liquidity(protocol, lp, deployer, 8_000_000, 0)
    a = deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    trade_now(ch, btc, 50 * WAD, 0, 0, sender=other_trader)  # long 50 BTC
    size = largest(lens, a, eth, 1, 100 * WAD)  # the largest ETH open with $100 to spare
    snap = chain.snapshot()
    results = {}
    for first in (btc, eth):
        if first == eth:
            chain.restore(snap)  # the same two orders, the other fill order
        place(ch, eth, size, 0, 0, sender=other_trader)
        place(
            ch, btc, -100 * WAD, 0, 0, sender=other_trader
        )  # long 50 -> short 50: "grows" nothing, checked as the account stands
        fee_btc = int(lens.fill_price(btc, -100 * WAD)) * 100 * 5 // 10_000 // WAD  # 0.05% of 100 BTC, dollars
        insurance0 = int(ch.insurance_balance())
        second = eth if first == btc else btc
        r1 = fill_now(ch, a, first, keeper=keeper)
        r2 = fill_now(ch, a, second, keeper=keeper)
        cancelled = [c for r in (r1, r2) for c in r.events.filter(orders.OrderCancelled)]
        results[first] = (
            [int(f.market) for r in (r1, r2) for f in r.events.filter(orders.OrderFilled)],
            [(int(c.market), c.reason) for c in cancelled],
            int(ch.insurance_balance()) - insurance0,
        )
        print(
            f"\nC5 ETH +{size / WAD:.2f} (gap $100) and BTC -100 placed; the keeper fills "
            f"{'BTC' if first == btc else 'ETH'} first: filled {results[first][0]}, cancelled {results[first][1]}, "
            f"forfeited {usd(results[first][2])} (the flip's fee ~${fee_btc:,})"
        )
    assert results[btc][0] == [btc] and results[btc][1] == [(eth, "clearinghouse: insufficient margin")]
    assert results[eth][0] == [eth] and results[eth][1] == [(btc, "clearinghouse: insufficient margin")]


# ---------------------------------------------------------------- C6: maxDeposit / maxMint while deposits fail closed


def test_fixed__max_deposit_and_max_mint_are_zero_while_deposits_fail_closed(protocol, deployer, lp, lp2, trader, chain):
    """C6 (low, ERC-4626), fixed. maxDeposit/maxMint read 2**256 - 1 while deposit and mint
    reverted for a missing price; they now read 0 then, as maxWithdraw/maxRedeem do (and 0
    while the book is open, when the instant paths are shut; a deposit request reverts for the
    price as the instant deposit did)."""
    ch, eth, pool, usdc = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.pool, protocol.settlement
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    deposit(protocol, trader, "WBTC", 10**8, subaccount=1)  # WBTC is held: its feed counts
    deposit(protocol, trader, "USDC", 10_000 * USDC)
    trade_now(ch, eth, WAD, 0, 0, sender=trader)
    usdc.mint(lp2, 1_000 * USDC, sender=lp2)
    usdc.approve(pool, MAX_UINT, sender=lp2)
    advance(chain, 2 * 3_600)
    for skip, reason in ((("WBTC",), "pool: collateral feed down"), (("WETH",), "oracle: stale answer")):
        refresh_feeds(protocol, deployer, skip=skip)
        print(
            f"\nC6 {skip[0]} feed stale: maxWithdraw {int(pool.withdrawable(lp))}, maxRedeem {int(pool.redeemable(lp))}, "
            f"maxDeposit {int(pool.maxDeposit(lp2)):#x}, maxMint {int(pool.maxMint(lp2)):#x}; deposit reverts '{reason}'"
        )
        assert int(pool.withdrawable(lp)) == int(pool.redeemable(lp)) == 0
        assert int(pool.maxDeposit(lp2)) == int(pool.maxMint(lp2)) == 0
        with ape.reverts(reason):
            deposit_now(pool, 1_000 * USDC, lp2, sender=lp2)
        with ape.reverts("pool: book open, request instead"):
            pool.mint(10**12, lp2, sender=lp2)
        advance(chain, 2 * 3_600)
    refresh_feeds(protocol, deployer)
    assert int(pool.maxDeposit(lp2)) == int(pool.maxMint(lp2)) == 0  # the book is open: by request only
    deposit_now(pool, 1_000 * USDC, lp2, sender=lp2)
    # the long closed, the book idle: the views open, and shut again for a held collateral's feed
    trade_now(ch, eth, -WAD, 0, 0, sender=trader)
    assert int(pool.maxDeposit(lp2)) == int(pool.maxMint(lp2)) == MAX_UINT
    advance(chain, 2 * 3_600)
    refresh_feeds(protocol, deployer, skip=("WBTC",))
    assert int(pool.maxDeposit(lp2)) == int(pool.maxMint(lp2)) == 0
    with ape.reverts("pool: collateral feed down"):
        pool.deposit(1_000 * USDC, lp2, sender=lp2)


# ---------------------------------------------------------------- refused: the pool's soft valuation


def test_refused__max_withdraw_and_redeem_equal_the_flows_limits_to_the_unit(
    protocol, deployer, lp, lp2, trader, attacker, chain
):
    """The soft pass (`_try_price`) values the pool exactly as the flows' hard pass: max* equal
    min(assets of the free shares, liquidity, headroom) recomputed from `reserve(0, 0)` and the
    Clearinghouse; with the book open (withdrawable, redeemable) an exit of them by request goes
    through and $1 more reverts; locked shares read 0. `reserve` and deposits are unchanged (the hard pass)."""
    ch, eth, btc, pool, usdc = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.markets["BTC-PERP"],
        protocol.pool,
        protocol.settlement,
    )
    engine = protocol.liquidation_engine
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    loser = deposit(protocol, attacker, "WBTC", 10 * 10**8)
    trade_now(ch, eth, 500 * WAD, 0, 0, sender=attacker)
    deposit(protocol, trader, "USDC", 200_000 * USDC)
    trade_now(ch, btc, 15 * WAD, 0, 0, sender=trader)
    advance(chain, COOLDOWN + 1)
    refresh_feeds(protocol, deployer, skip=("WETH",))
    publish_usd(protocol, "WETH", 1_900, deployer)
    engine.realise_loss(loser, eth, sender=lp)  # a debt: liquidity is the balance less it
    usdc.mint(lp2, 10_000 * USDC, sender=lp2)
    usdc.approve(pool, MAX_UINT, sender=lp2)
    deposit_now(pool, 10_000 * USDC, lp2, sender=lp2)
    assert int(pool.redeemable(lp2)) == 0 and int(pool.withdrawable(lp2)) == 0
    with ape.reverts("pool: cooldown"):
        redeem_now(pool, 10**12, lp2, lp2, sender=lp2)

    def expected(owner):
        value, need = (int(v) for v in pool.reserve(0, 0))
        total = max(value, 0) // S2W
        headroom = (value - need) // S2W if value > need else 0
        liquidity = max(int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending()), 0)
        supply, free = int(pool.totalSupply()), int(pool.balanceOf(owner)) - int(pool.locked_shares(owner))
        assets = free * (total + 1) // (supply + 10**6)
        shares = min(liquidity, headroom) * (supply + 10**6) // (total + 1)
        assert total == int(pool.totalAssets())
        return min(assets, liquidity, headroom), min(free, shares), liquidity, headroom

    max_w, max_r, liquidity, headroom = expected(lp)
    print(f"\nrefused: liquidity {usd(liquidity)}, headroom {usd(headroom)}: maxWithdraw {usd(max_w)}, maxRedeem {max_r}")
    assert (int(pool.withdrawable(lp)), int(pool.redeemable(lp))) == (max_w, max_r)
    assert max_w == headroom < liquidity
    # funding and interest move the value by a few units a second, and an exit is a request
    # executed a settlement delay (60 s) after the limit was read
    slack = 1_000_000  # $1
    snap = chain.snapshot()
    withdraw_now(pool, max_w, lp, lp, sender=lp)
    assert int(pool.withdrawable(lp)) < slack
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, slack, lp, lp, sender=lp)
    chain.restore(snap)
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(pool, max_w + slack, lp, lp, sender=lp)
    receipt = redeem_now(pool, max_r, lp, lp, sender=lp)
    assert abs(headroom - int(receipt.events.filter(pool.Withdraw)[0].assets)) < slack
    assert int(pool.withdrawable(lp)) < slack


# ---------------------------------------------------------------- refused: other markets' realisations; the scan's gas


def test_refused__realising_every_open_loss_before_the_fill_including_other_markets_leaves_the_order_fillable(
    protocol, deployer, lp, attacker, other_trader, keeper, chain
):
    """R2's fix holds for a loss in a market the order does not touch (BTC) and for the order's own
    (ETH) when no premium gain is netted: both realised between the commit and the fill, the
    largest order with $100 to spare fills. The mirror equals the lens. The second pass costs
    the committing account only (nobody can add a position to another's account): gas below."""
    ch, eth, btc, orders, lens = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.markets["BTC-PERP"],
        protocol.orders,
        protocol.lens,
    )
    engine = protocol.liquidation_engine
    fund_liquidity(protocol, lp, deployer, 4_000_000, 0)
    a = deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    trade_now(ch, eth, 300 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, btc, -3 * WAD, 0, 0, sender=other_trader)
    advance(chain, 86_400)
    refresh_feeds(protocol, deployer, skip=("WETH", "WBTC"))
    publish_usd(protocol, "WETH", 1_800, deployer)
    publish_usd(protocol, "WBTC", 33_000, deployer)
    size = largest(lens, a, eth, 1, 100 * WAD)
    assert mirror_matches(protocol, chain, a, [(eth, size)])
    commit_gas = int(lens.commit_margin.estimate_gas_cost(a, [eth], [size]))
    plain_gas = int(lens.health_after_trades.estimate_gas_cost(a, [eth], [size]))
    place(ch, eth, size, 0, 0, sender=other_trader)
    losses = [int(engine.realise_loss(a, m, sender=attacker).events.filter(engine.LossRealised)[0].loss) for m in (btc, eth)]
    receipt = fill_now(ch, a, eth, keeper=keeper)
    print(
        f"\nrefused: +{size / WAD:.2f} ETH committed; the griefer realises BTC {usd(losses[0])} and ETH {usd(losses[1])}: "
        f"filled. Lens gas with 2 positions: commit_margin {commit_gas:,}, health_after_trades {plain_gas:,}"
    )
    assert receipt.events.filter(orders.OrderFilled) and min(losses) > 5_000 * USDC
    assert commit_gas - plain_gas < 60_000
    # 15 markets, a dust position in each: the account's own cost, the second pass re-reads them all
    cfg, weth = protocol.configurator, protocol.market_asset("ETH-PERP")
    while int(ch.market_count()) < 15:
        cfg.list_market(MarketConfig(f"ETH{int(ch.market_count())}-PERP", "WETH").params(weth.address), sender=deployer)
    b = deposit(protocol, attacker, "USDC", 100_000 * USDC)
    for m in range(1, 16):
        trade_now(ch, m, WAD // 100, 0, 0, sender=attacker, keeper=keeper)
    commit_gas = int(lens.commit_margin.estimate_gas_cost(b, [15], [WAD]))
    plain_gas = int(lens.health_after_trades.estimate_gas_cost(b, [15], [WAD]))
    full = int(place(ch, 15, WAD, sender=attacker).gas_used)
    print(
        f"refused: 15 positions: commit_margin {commit_gas:,} gas, health_after_trades {plain_gas:,} "
        f"(+{commit_gas - plain_gas:,}, {(commit_gas - plain_gas) // 14:,} per other market); the whole commit {full:,}"
    )
    assert plain_gas < commit_gas < 1_200_000 and full < 3_000_000
