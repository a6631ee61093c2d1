"""Attacker's review (v3) of two money-moving changes: `LiquidationEngine.realise_loss` (with
`perps._apply_fill(delta == 0)` and `Clearinghouse.liquidation_close(size_delta = 0)`) and the
LP exits' fail-closed check `LiquidityPool._collateral_priced`. Default protocol
(`deploy_protocol(DEFAULT_CONFIG)`): ETH $2,000, BTC $30,000, USDT $1 (listed, weight 0.95,
bounds $0.50-$2), feeds with a 1 h heartbeat, WBTC weight 0.85 and a 5% sale discount,
debt_imr 0.25, debt_liquidation_ltv 0.9. Run with `-s` for the figures. Findings of the earlier
reviews (test_review_v2_solvency.py F1-F6, test_review_debt.py) are not re-reported.

FINDINGS

R1 (medium, fixed) A third party turns a HEALTHY collateral-backed account into a discounted collateral
sale, in one transaction. A realised loss counts against `debt_liquidation_ltv`, an unrealised
one does not, so any caller can realise and then buy. 20 WBTC ($510,000 haircut) long 464 ETH;
ETH $2,000 -> $1,000 in four rounds: equity $45,320.60, maintenance $13,920.00 (health 3.26);
`liquidate` reverts "account healthy", `liquidate_collateral` "close positions first". The
attacker calls `realise_loss` (debt $464,679.40 = 0.9111 of what the account holds) and at once
`liquidate_collateral`: 16.3045 WBTC worth $489,136.22 for $464,679.41, +$24,456.81, all of it
taken from the owner's net worth ($135,320.60 -> $110,863.78, -18%); the account had no moment
to top up (its health afterwards reads 6.77: the sale was never needed for solvency). The
engine's own invariant ("a withdrawal or a fill ... never lands an account in a sale") is broken
by a third party's call. Fix: a sale only of an account below its initial requirement (debt_imr
included) or a grace period after a realisation before a sale (or `realise_loss` refusing when
the result is over the limit), and at most the least that brings the debt under the limit.

R2 (low-medium, fixed) Realising between an order's commit and its fill cancels it and forfeits its fee
and bond. The commit checks initial margin with the loss unrealised (no debt_imr); the fill
checks it again, now with 25% of the realised loss added. Two identical 10-WBTC accounts long
400 ETH, ETH -10% a day later; each commits the same +739.65 ETH (margin gaps $8,000.58 and
$7,680.38 at the commit). A griefer realises one of them ($80,165.76: debt_imr adds $20,041.44):
its fill is cancelled "clearinghouse: insufficient margin" and its $2.00 fee + $665.68 bond go to
the insurance fund; the untouched twin fills. Fix:
refund (do not forfeit) an order refused after a third party's realisation, e.g. check at commit
with the loss counted as realised (margin as if `realise_loss` had run), which makes the fill's
check no stricter than the commit's.

R3 (low, fixed) The "no loss to realise" guard is passed by the credit's own rounding. After one
realisation the cost basis is ceil(size * (P - F)) and the PnL at the same price is
floor - ceil = -1 wei, credited floor(-1e-12) = -1 token unit. On a flat book (no funding) at
$1,999.99 a hedged 1 ETH + 1 wei long is realised once, then again and again at the same price:
each call takes exactly $0.000001 from the owner to the pool and emits `LossRealised(loss = 1)`,
forever (an integral size * (P - F) reverts, see REFUSED). Negligible value per call, but an
unbounded stream of fake "losses" for the gas. Fix: require
realised <= -SETTLEMENT_TO_WAD (a whole unit of loss before rounding), or a minimum loss.

L1 (medium-low, fixed) LP exits freeze on a collateral nobody holds. `_collateral_priced` checks every
listed token of weight > 0, held or not. USDT is listed with total deposits 0; it depegs to
$0.45 (below its $0.50 bound): `price` reverts "answer out of bounds" for good, every LP exit
reverts "pool: collateral feed down" and maxRedeem is 0, though no account can hide bad debt
behind a token nobody holds. Disabling deposits does not help; only a write-off (weight 0) does.
A stale feed does the same for an hour-long outage. Fix: skip a token whose `total` is 0.

L2 (medium-low, fixed) Deposits stay open while exits are closed, at the value the check distrusts. The
WBTC feed stops; a 10-WBTC account long 900 ETH is under water after ETH -17.5% but cannot be
liquidated; exits revert, yet a new LP deposits $2,000,000 at a value that counts the whole loss.
When the feed returns the liquidation and the sale book $31,043.28 of bad debt; the new LP's
$2,000,000 is then worth $1,985,614.94 (-$14,385.06), its share of a bad debt already there.
Fix: apply the same check to `deposit` and `mint` (fail closed both ways).

L3 (low, ERC-4626, fixed) maxWithdraw/maxRedeem still revert, not return 0, when the dead collateral
feed is also a market's asset with open interest (WBTC with a BTC-PERP position): `_valuation`
runs first and reverts "oracle: stale answer". Only a collateral without a market (USDT) gives 0.
Fix: check `_collateral_priced` first, and value the markets without reverting in max*.

FIXED: R1, `realise_loss` reverts "liquidation: realisation over the loan limit" when the debt
would be over `debt_liquidation_ltv` afterwards; R3, a realisation must move more than one token
unit; L1, a collateral no account holds (total 0) is not read; L2, LP deposits and mints fail
closed too; R2, the commit's margin check takes every open loss as realised
(`MarginLens.commit_margin`), so a fill's check is no stricter than its commit's at the same
prices; L3, max* check the collaterals first and read the markets' prices without reverting:
0, not a revert, while any price the valuation needs is missing.

REFUSED (tried, failed)

- Realising moves nothing but the rounding: equity -0..1 unit, maintenance unchanged, health
  unchanged (the account stays non-liquidatable), the pool's value +0..1 unit, the LP's shares
  worth +0..1 unit; no token leaves the Clearinghouse (penalty 0, keeper_reward 0: the caller,
  the insurance fund and `settlement_held` unchanged) and the order book is untouched (size kept:
  no "position changed" cancellation).
- A gain, an exact cost basis (integral size * (P - F)), no position and an unknown market revert;
  `liquidation_close` is the engine's alone.
- A third party cannot create the LP freeze: listing a collateral, changing one, writing one off
  and setting a feed are owner-only; a written-off token is skipped.
- By reading only: a pending claim nets against the realised debt (`_set_settlement`) with equity
  unchanged and the pool's free liquidity up by the netted amount, so neither a third party's
  realisation nor a self-realisation moves the claim queue against others; no reentrancy (no
  token moves, penalty and reward 0); liquidation sizing and penalty read equity and maintenance,
  which a realisation does not move.
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import deposit_now, fill_now, place, redeem_now, trade_now, withdraw_now
from tests.e2e.incidents import USDC, WAD, deposit, fund_liquidity, publish_usd, refresh_feeds
from tests.e2e.test_review_v2_solvency import advance, near, usd, wusd

MAX_UINT = 2**256 - 1
S2W = 10**12
COOLDOWN = 900  # LiquidityPool.COOLDOWN


@pytest.fixture(scope="module")
def lp2(accounts):
    return accounts[7]


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, deployer, lp, lp2, trader, other_trader, attacker, keeper):
    """Module fixtures first, so ape's isolation snapshots them once."""


def net_worth(protocol, account: int) -> int:
    """The account at market value (collateral at the oracle price, no haircut), WAD USD."""
    ch = protocol.clearinghouse
    equity = int(ch.margin(account)[0])
    worth = equity - int(ch.collateral_value(account))
    for token in protocol.tokens.values():
        slot = int(ch.collateral_slot(token))
        units = int(ch.balances(account, slot))
        if units:
            worth += units * int(protocol.oracle.price(token)) // 10 ** int(token.decimals())
    return worth


# ---------------------------------------------------------------- R1: realise, then buy a healthy account's collateral


def test_fixed__a_third_party_cannot_realise_a_loss_into_a_sale_of_a_healthy_accounts_collateral(
    protocol, deployer, lp, attacker, other_trader
):
    """R1 (medium), fixed. Health 3.26 and not for sale; a stranger's `realise_loss` put the debt
    at 0.9111 of what the account held (over the 90% limit) and the same stranger bought 16.3045
    WBTC at 5% off: +$24,456.81, the owner's loss. A realisation that would leave the debt over
    the limit now reverts "liquidation: realisation over the loan limit": the loss stays under
    maintenance margin until its owner closes, and nothing is for sale."""
    ch, eth, engine = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.liquidation_engine
    wbtc = protocol.tokens["WBTC"]
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    victim = deposit(protocol, other_trader, "WBTC", 20 * 10**8)  # $600,000, $510,000 haircut
    trade_now(ch, eth, 464 * WAD, 0, 0, sender=other_trader)
    for p in (1_640, 1_345, 1_103, 1_000):  # ETH -50%, each round inside the 20% breaker
        publish_usd(protocol, "WETH", p, deployer)
    e, m, _ = (int(v) for v in ch.margin(victim))
    worth0 = net_worth(protocol, victim)
    s0 = int(ch.settlement(victim))
    print(f"\nR1 victim: equity {wusd(e)}, maintenance {wusd(m)}, health {e / m:.2f}, net worth {wusd(worth0)}")
    assert e > 3 * m  # healthy, by a wide margin
    with ape.reverts("liquidation: realisation over the loan limit"):
        engine.realise_loss(victim, eth, sender=attacker)
    with ape.reverts("liquidation: close positions first"):
        engine.liquidate_collateral(victim, wbtc, MAX_UINT, sender=attacker)
    assert int(ch.settlement(victim)) == s0 and abs(net_worth(protocol, victim) - worth0) < WAD  # funding, seconds
    # the same account with a smaller loss (ETH back to $1,300) is realised, and not for sale
    publish_usd(protocol, "WETH", 1_150, deployer)
    publish_usd(protocol, "WETH", 1_300, deployer)
    engine.realise_loss(victim, eth, sender=attacker)
    debt = -int(ch.settlement(victim))
    held = int(ch.margin(victim)[0]) + debt * S2W
    print(f"R1 at $1,300 the loss is realised: debt {usd(debt)} = {debt * S2W / held:.4f} of what it holds")
    assert debt * S2W * 10 <= held * 9
    with ape.reverts("liquidation: close positions first"):
        engine.liquidate_collateral(victim, wbtc, MAX_UINT, sender=attacker)


# ---------------------------------------------------------------- R2: realise between commit and fill


def _largest_gap_below(view, account: int, market: int, gap_wad: int) -> int:
    """The base units of a buy, in 0.01 ETH, that leave equity - initial closest above `gap_wad`,
    as `view(account, market, size) -> (equity, initial)` computes them."""
    lo, hi = 0, 5_000 * WAD
    while hi - lo > WAD // 100:
        mid = (lo + hi) // 2
        equity, initial = view(account, market, mid)
        if int(equity) - int(initial) > gap_wad:
            lo = mid
        else:
            hi = mid
    return lo // (WAD // 100) * (WAD // 100)


def test_fixed__a_realisation_between_commit_and_fill_no_longer_cancels_the_order(
    protocol, deployer, lp, attacker, other_trader, keeper, chain
):
    """R2 (low-medium), fixed. The commit counted the loss without debt_imr; a realisation before
    the fill added 25% of it to the fill's initial requirement, and the order was cancelled with
    its fee and bond forfeited. The commit now takes every open loss as realised
    (`MarginLens.commit_margin`): the order that was cancelled is refused at its commit, and the
    largest order the commit accepts fills after the griefer's realisation."""
    ch, eth, orders, lens = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.orders, protocol.lens
    engine = protocol.liquidation_engine
    fund_liquidity(protocol, lp, deployer, 4_000_000, 0)
    a = deposit(protocol, other_trader, "WBTC", 10 * 10**8, subaccount=0)
    b = deposit(protocol, other_trader, "WBTC", 10 * 10**8, subaccount=1)  # its twin, left alone
    trade_now(ch, eth, 400 * WAD, 0, 0, sender=other_trader)
    trade_now(ch, eth, 400 * WAD, 0, 1, sender=other_trader)
    advance(chain, 86_400)  # a day later, so the -10% round does not blow the volatility up
    refresh_feeds(protocol, deployer, skip=("WETH",))
    publish_usd(protocol, "WETH", 1_800, deployer)

    def unrealised(account, market, size):
        return lens.health_after_trade(account, market, size)[1:]

    def committed(account, market, size):
        return lens.commit_margin(account, [market], [size])

    before = _largest_gap_below(unrealised, a, eth, 8_000 * WAD)  # the order that was cancelled
    with ape.reverts("orders: insufficient margin"):
        place(ch, eth, before, 0, 0, sender=other_trader)
    # the twin bought second, at a higher premium: the smaller of the two; $100 for a block's funding
    size = min(_largest_gap_below(committed, acct, eth, 100 * WAD) for acct in (a, b))
    equity, initial = (int(v) for v in committed(a, eth, size))
    print(f"\nR2 the commit refuses +{before / WAD:.2f} ETH; it accepts +{size / WAD:.2f} ETH (gap {wusd(equity - initial)})")
    assert size < before
    for sub in (0, 1):
        place(ch, eth, size, 0, sub, sender=other_trader)
    insurance0 = int(ch.insurance_balance())
    tx = engine.realise_loss(a, eth, sender=attacker)
    loss = int(tx.events.filter(engine.LossRealised)[0].loss)
    filled_a = fill_now(ch, a, eth, keeper=keeper).events.filter(orders.OrderFilled)
    filled_b = orders.execute_order(b, eth, sender=keeper).events.filter(orders.OrderFilled)
    print(f"R2 the griefer realises {usd(loss)}: both orders fill")
    assert filled_a and filled_b and int(ch.insurance_balance()) == insurance0  # nothing forfeited
    assert int(ch.positions(a, eth).size) == int(ch.positions(b, eth).size) == 400 * WAD + size
    assert near(loss, 80_165.76, 1)


# ---------------------------------------------------------------- R3: the guard passes on rounding


def _hedged_victim(protocol, deployer, lp, trader, attacker, size: int) -> int:
    """`trader` long `size` ETH with $10,000, hedged by the attacker: skew 0, no funding."""
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    victim = deposit(protocol, trader, "USDC", 10_000 * USDC)
    deposit(protocol, attacker, "USDC", 10_000 * USDC)
    trade_now(ch, eth, size, 0, 0, sender=trader)
    trade_now(ch, eth, -size, 0, 0, sender=attacker)
    st = ch.market_state(eth)
    assert int(st.long_oi) == int(st.short_oi)  # skew 0: the funding rate is 0 from here
    return victim


def test_fixed__the_no_loss_guard_is_not_passed_by_the_reset_basiss_rounding(protocol, deployer, lp, trader, attacker):
    """R3 (low), fixed. At an inexact P - F every call after the first realised -1 wei, credited
    -1 unit: $0.000001 taken per call, forever. A realisation must now move more than one unit."""
    ch, eth, engine = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.liquidation_engine
    victim = _hedged_victim(protocol, deployer, lp, trader, attacker, WAD + 1)
    publish_usd(protocol, "WETH", "1999.99", deployer)
    engine.realise_loss(victim, eth, sender=attacker)  # the real loss (its premium, -$0.01)
    s0, pool0 = int(ch.settlement(victim)), int(ch.pool_balance())
    for _ in range(3):
        with ape.reverts("liquidation: no loss to realise"):
            engine.realise_loss(victim, eth, sender=attacker)
    assert int(ch.settlement(victim)) == s0 and int(ch.pool_balance()) == pool0


# ---------------------------------------------------------------- L1: an unheld collateral freezes every LP exit


def test_fixed__a_collateral_nobody_holds_does_not_hold_lp_exits(protocol, deployer, lp, attacker, chain):
    """L1 (medium-low), fixed. USDT: listed, weight 0.95, nothing deposited; a depeg below its
    bound reverted its price for good, and every LP exit with it. A token no account holds is
    not read; once someone deposits it, its feed counts again."""
    ch, pool, oracle = protocol.clearinghouse, protocol.pool, protocol.oracle
    usdt = protocol.tokens["USDT"]
    slot = int(ch.collateral_slot(usdt))
    fund_liquidity(protocol, lp, deployer, 1_000_000, 0)
    advance(chain, COOLDOWN + 1)
    shares = int(pool.balanceOf(lp))
    col = ch.collaterals(slot)
    assert int(col.total) == 0 and int(col.weight) > 0
    publish_usd(protocol, "USDT", "0.45", deployer)  # below its $0.50 bound: the router rejects it
    with ape.reverts("oracle: answer out of bounds"):
        oracle.price(usdt)
    assert int(pool.redeemable(lp)) == shares
    redeem_now(pool, shares // 2, lp, lp, sender=lp)
    # someone holds it: the exits wait for its price again
    publish_usd(protocol, "USDT", 1, deployer)
    deposit(protocol, attacker, "USDT", 100 * 10**6)
    publish_usd(protocol, "USDT", "0.45", deployer)
    assert int(pool.redeemable(lp)) == 0
    with ape.reverts("pool: collateral feed down"):
        redeem_now(pool, shares // 4, lp, lp, sender=lp)


def test_fixed__a_written_off_token_still_held_does_not_hold_lp_exits(protocol, deployer, lp, attacker, chain):
    """The other way out of L1: governance writes the token off (weight 0, valued at nothing
    without its feed) while accounts still hold it; its dead feed no longer holds the exits."""
    ch, pool, cfg = protocol.clearinghouse, protocol.pool, protocol.configurator
    usdt = protocol.tokens["USDT"]
    fund_liquidity(protocol, lp, deployer, 1_000_000, 0)
    advance(chain, COOLDOWN + 1)
    shares = int(pool.balanceOf(lp))
    deposit(protocol, attacker, "USDT", 100 * 10**6)
    publish_usd(protocol, "USDT", "0.45", deployer)  # below its bound: no price
    assert int(pool.redeemable(lp)) == 0
    cfg.write_off_collateral(usdt, sender=deployer)
    assert int(ch.collaterals(int(ch.collateral_slot(usdt))).total) == 100 * 10**6  # still held
    assert int(pool.redeemable(lp)) == shares
    redeem_now(pool, shares, lp, lp, sender=lp)
    assert int(pool.balanceOf(lp)) == 0


# ---------------------------------------------------------------- L2: deposits stay open while exits are closed


def test_fixed__no_lp_deposit_while_exits_are_closed_so_none_buys_into_hidden_bad_debt(
    protocol, deployer, lp, lp2, other_trader, keeper, chain
):
    """L2 (medium-low), fixed. With the WBTC feed down exits were closed but a new LP's $2,000,000
    went in at a value counting the whole loss, and lost $14,385.06 of a bad debt that predated
    it ($31,043.28 when the feed returned). Deposits and mints now fail closed too (a deposit
    request as well; with the position open the instant paths are shut first)."""
    ch, eth, usdc, pool, engine = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.settlement,
        protocol.pool,
        protocol.liquidation_engine,
    )
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    victim = deposit(protocol, other_trader, "WBTC", 10 * 10**8)
    trade_now(ch, eth, 900 * WAD, 0, 0, sender=other_trader)
    advance(chain, 2 * 3_600)  # the WBTC feed stops
    publish_usd(protocol, "WETH", 1_650, deployer)  # ETH -17.5%: the account is under water
    with ape.reverts("oracle: stale answer"):
        engine.liquidate(victim, eth, MAX_UINT, sender=keeper)
    with ape.reverts("pool: collateral feed down"):
        withdraw_now(pool, 1 * USDC, lp, lp, sender=lp)
    usdc.mint(lp2, 2_000_000 * USDC, sender=lp2)
    usdc.approve(pool, MAX_UINT, sender=lp2)
    with ape.reverts("pool: collateral feed down"):
        deposit_now(pool, 2_000_000 * USDC, lp2, sender=lp2)
    with ape.reverts("pool: book open, request instead"):  # the instant paths wait for an idle book
        pool.mint(10**12, lp2, sender=lp2)
    publish_usd(protocol, "WBTC", 30_000, deployer)  # the feed returns: the keeper books the loss first
    engine.liquidate(victim, eth, MAX_UINT, sender=keeper)
    deposit_now(pool, 2_000_000 * USDC, lp2, sender=lp2)
    assert near(int(pool.convertToAssets(pool.balanceOf(lp2))), 2_000_000, 1)


# ---------------------------------------------------------------- L3: max* revert instead of 0


def test_fixed__max_withdraw_is_zero_not_a_revert_when_the_dead_collateral_is_a_market_asset(
    protocol, deployer, lp, trader, chain
):
    """L3 (low), fixed. WBTC is collateral and BTC-PERP's asset: with BTC-PERP open interest the
    valuation reads it; max* now return 0 there too (ERC-4626), and the flows still revert."""
    ch, btc, pool = protocol.clearinghouse, protocol.markets["BTC-PERP"], protocol.pool
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    deposit(protocol, trader, "WBTC", 10**8, subaccount=1)  # WBTC is held: its feed counts
    advance(chain, COOLDOWN + 1)
    advance(chain, 2 * 3_600)
    refresh_feeds(protocol, deployer, skip=("WBTC",))
    assert int(pool.redeemable(lp)) == 0 and int(pool.withdrawable(lp)) == 0  # BTC-PERP idle: 0
    publish_usd(protocol, "WBTC", 30_000, deployer)
    deposit(protocol, trader, "USDC", 10_000 * USDC)
    trade_now(ch, btc, WAD, 0, 0, sender=trader)
    advance(chain, 2 * 3_600)
    refresh_feeds(protocol, deployer, skip=("WBTC",))
    assert int(pool.redeemable(lp)) == 0 and int(pool.withdrawable(lp)) == 0  # BTC-PERP open: 0 as well
    with ape.reverts("oracle: stale answer"):
        redeem_now(pool, 1, lp, lp, sender=lp)  # the flow values first, and reverts with the router
    with ape.reverts("oracle: stale answer"):
        pool.totalAssets()
    publish_usd(protocol, "WBTC", 30_000, deployer)
    assert int(pool.redeemable(lp)) > 0 and int(pool.withdrawable(lp)) > 0


def test_fixed__max_withdraw_is_zero_when_only_a_market_feed_is_down(protocol, deployer, lp, trader, chain):
    """L3, the same without any collateral involved: the ETH feed stale with ETH-PERP open; max*
    were "oracle: stale answer" since v2 and are 0 now, while the flows revert as before."""
    ch, eth, pool = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.pool
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    deposit(protocol, trader, "USDC", 10_000 * USDC)
    trade_now(ch, eth, WAD, 0, 0, sender=trader)
    advance(chain, COOLDOWN + 1)
    advance(chain, 2 * 3_600)
    refresh_feeds(protocol, deployer, skip=("WETH",))
    assert int(pool.redeemable(lp)) == 0 and int(pool.withdrawable(lp)) == 0
    with ape.reverts("oracle: stale answer"):
        redeem_now(pool, 1, lp, lp, sender=lp)
    refresh_feeds(protocol, deployer)
    assert int(pool.redeemable(lp)) > 0


# ---------------------------------------------------------------- refused


def test_refused__realising_moves_only_the_rounding_pays_nobody_and_keeps_orders(
    protocol, deployer, lp, trader, attacker, other_trader, keeper, chain
):
    """Equity, health, the LPs' value and every token balance move by at most one unit; a placed
    order is not cancelled by the realisation (its size is kept)."""
    ch, eth, usdc, pool, engine, orders = (
        protocol.clearinghouse,
        protocol.markets["ETH-PERP"],
        protocol.settlement,
        protocol.pool,
        protocol.liquidation_engine,
        protocol.orders,
    )
    fund_liquidity(protocol, lp, deployer, 2_000_000, 10_000)
    victim = deposit(protocol, trader, "USDC", 80_000 * USDC)
    deposit(protocol, other_trader, "USDC", 80_000 * USDC)
    trade_now(ch, eth, 300 * WAD, 0, 0, sender=trader)
    trade_now(ch, eth, -300 * WAD, 0, 0, sender=other_trader)  # skew 0: no funding between the reads
    advance(chain, 3_000)
    publish_usd(protocol, "WETH", "1843.37", deployer)
    place(ch, eth, -10 * WAD, 0, 0, sender=trader)  # a reduction waiting for its round
    e0, m0, _ = (int(v) for v in ch.margin(victim))
    v0, lp0 = int(pool.totalAssets()), int(pool.convertToAssets(pool.balanceOf(lp)))
    ins0, held0, wallet0 = int(ch.insurance_balance()), int(ch.settlement_held()), int(usdc.balanceOf(attacker))
    tx = engine.realise_loss(victim, eth, sender=attacker)
    loss = int(tx.events.filter(engine.LossRealised)[0].loss)
    e1, m1, _ = (int(v) for v in ch.margin(victim))
    v1, lp1 = int(pool.totalAssets()), int(pool.convertToAssets(pool.balanceOf(lp)))
    print(f"\nrefused: realised {usd(loss)}; equity {e1 - e0} wei, pool value +{v1 - v0} units, LP +{lp1 - lp0} units")
    assert loss > 40_000 * USDC
    assert -S2W <= e1 - e0 <= 0 and m1 == m0 and e1 / m1 == pytest.approx(e0 / m0, rel=1e-9)
    assert 0 <= v1 - v0 <= 1 and 0 <= lp1 - lp0 <= 1
    assert (int(ch.insurance_balance()), int(ch.settlement_held()), int(usdc.balanceOf(attacker))) == (ins0, held0, wallet0)
    assert e1 > m1  # healthy before, healthy after: no liquidation opens
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate(victim, eth, MAX_UINT, sender=attacker)
    receipt = fill_now(ch, victim, eth, keeper=keeper)
    assert receipt.events.filter(orders.OrderFilled) and int(ch.positions(victim, eth).size) == 290 * WAD


def test_refused__a_gain_an_exact_basis_no_position_and_an_unknown_market_cannot_be_realised(
    protocol, deployer, lp, trader, attacker, other_trader
):
    ch, eth, engine = protocol.clearinghouse, protocol.markets["ETH-PERP"], protocol.liquidation_engine
    victim = _hedged_victim(protocol, deployer, lp, trader, attacker, 2 * WAD)
    hedge = int(str(attacker), 16) << 96
    publish_usd(protocol, "WETH", 1_990, deployer)
    with ape.reverts("liquidation: no loss to realise"):
        engine.realise_loss(hedge, eth, sender=other_trader)  # the short's gain
    engine.realise_loss(victim, eth, sender=other_trader)
    with ape.reverts("liquidation: no loss to realise"):
        engine.realise_loss(victim, eth, sender=other_trader)  # 2 ETH x (P - F): integral, exact
    with ape.reverts("liquidation: no loss to realise"):
        engine.realise_loss(victim, protocol.markets["BTC-PERP"], sender=other_trader)  # no position
    with ape.reverts("clearinghouse: unknown market"):
        engine.realise_loss(victim, 9, sender=other_trader)
    with ape.reverts("clearinghouse: not liquidation engine"):
        ch.liquidation_close(victim, eth, 0, 1_000 * WAD, 1_000 * WAD, 0, 0, attacker, sender=attacker)


def test_refused__no_third_party_can_create_the_lp_freeze(protocol, deployer, attacker):
    cfg, oracle = protocol.configurator, protocol.oracle
    usdt, feed = protocol.tokens["USDT"], protocol.feeds["USDT"]
    for call in (
        lambda: cfg.list_collateral(attacker, WAD // 2, 1, WAD // 10, sender=attacker),
        lambda: cfg.set_collateral(usdt, WAD // 2, 1, WAD // 10, True, sender=attacker),
        lambda: cfg.write_off_collateral(usdt, sender=attacker),
        lambda: oracle.set_feed(usdt, feed, 3_600, 1, 10 * WAD, WAD // 10, WAD // 10, sender=attacker),
    ):
        with ape.reverts("ownable: caller is not the owner"):
            call()
