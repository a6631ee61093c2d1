"""Attacker's review of the book gate (contracts/LiquidityPool.vy `_quiet`, `_only_instant`):
`deposit`, `mint`, `withdraw`, `redeem` only while no listed market has open interest, an entry
cost or a placed order's hold; requests otherwise. (The gate also read `total_debt == 0` when
this review began; the version reviewed here no longer does: README 11.)

A test marked `xfail(strict=True)` asserts the SAFE outcome and fails on this version (a
finding); the others replay an attack that fails, with its numbers.

Findings:
  M1+ (medium, fixed) An idle book turned the requests' M1 windfall into a riskless grab: once
      the last position closed, a capped redemption request still waiting kept its windfall in
      the pool; a just-in-time LP deposited through the then-open instant path, executed the
      request and redeemed 900 s later at a value no price moves: $78,275 of $90,294. A
      pending request keeps the instant paths shut, and the windfall now stays in the pool as
      shares the Clearinghouse keeps (the requests' M1 fix).                                       (F1)
  L   (low, documented) Only debts open: an LP who sees a collateral round pending leaves at
      face ahead of the bad debt it books: $1,357 of a $4,749 bad debt with prompt keepers (the
      least case); more per round a keeper lags.                                    (F4)
  L   (low, test helper) marginsim.orders.withdraw_now on the request path pays more than the
      `assets` asked (docstring: "at most") when the value drifts up.              (F3)
  I   (info) Anyone keeps the book open for good with a 1-wei position for 1 unit ($0.000001;
      the order's fee and bond come back to a trader who fills its own order): every LP pays
      a request fee and waits, ERC-4626 integrations read max* = 0. Exits still work. (F2)
Attacks that fail: an idle book's value is the pool's balance less its claims to the unit and
no round, collateral move or day of time moves it; odd sizes, partial closes and flips leave no
entry cost or hold behind (A1); a debt-only book moves with the clock (interest), not with
rounds, and its repayment leaves no scaled debt and moves the value by rounding only (A2); an
order committed then cancelled holds the book open and leaves the value where it was (A3);
max* are 0 exactly while the four paths revert (F2, A3), redeem(maxRedeem) succeeds (A1).
"""

from __future__ import annotations

from dataclasses import replace

import ape
import pytest

from marginsim.orders import fill_now, place, redeem_now, trade_now, withdraw_now
from marginsim.protocol import account_id, deploy_protocol
from tests.e2e.attacks import quiet_config, reserve_out_of_the_way, walk_price
from tests.e2e.incidents import USDC, WAD, deposit, move_clock_to, refresh_feeds
from tests.e2e.test_review_lp_requests import eth, executed, fund

BOOK_OPEN = "pool: book open, request instead"
COOLDOWN = 900
LONG = 7_500 * WAD  # $15M at $2,000 against a $7M pool
ALICE_USD, WHALE_USD, MALLORY_USD = 1_000_000, 4_000_000, 2_000_000


def publish_8dp(p, deployer, answer: int) -> None:
    p.publish("WETH", answer, deployer)


def value_units(p) -> int:
    """What the pool's value is in an idle book: its balance less the claims it owes."""
    ch = p.clearinghouse
    return int(ch.pool_balance()) - int(ch.total_pending())


def assert_shut(p, who) -> None:
    """The four instant paths revert and their max* read 0."""
    pool = p.pool
    assert not pool.instant()
    assert [int(pool.maxDeposit(who)), int(pool.maxMint(who)), int(pool.maxWithdraw(who)), int(pool.maxRedeem(who))] == [0] * 4
    for call in (
        lambda: pool.deposit(USDC, who, sender=who),
        lambda: pool.mint(10**12, who, sender=who),
        lambda: pool.withdraw(1, who, who, sender=who),
        lambda: pool.redeem(10**6, who, who, sender=who),
    ):
        with ape.reverts(BOOK_OPEN):
            call()


@pytest.fixture(scope="module")
def whale(accounts):
    return accounts[7]


@pytest.fixture(scope="module")
def jit(accounts):
    return accounts[8]


@pytest.fixture(scope="module")
def world(project, chain, deployer, lp, whale, attacker, trader, jit, keeper):
    """A $7M pool (Alice `lp` $1M, a whale $4M, Mallory `attacker` $2M), out of their cooldown,
    funding off, reserve off, an idle book; the trader holds $5M of margin and no position."""
    p = deploy_protocol(project, deployer, quiet_config())
    pool, usdc = p.pool, p.settlement
    for who, usd in ((lp, ALICE_USD), (whale, WHALE_USD), (attacker, MALLORY_USD)):
        fund(usdc, who, usd * USDC, pool)
        pool.deposit(usd * USDC, who, sender=who)
    for who in (jit, keeper):
        fund(usdc, who, 0, pool)
    reserve_out_of_the_way(p, deployer)
    deposit(p, trader, "USDC", 5_000_000 * USDC)
    move_clock_to(chain, chain.pending_timestamp + COOLDOWN)
    return p


@pytest.fixture(autouse=True)
def fresh_round(world, deployer):
    refresh_feeds(world, deployer)


@pytest.fixture(scope="module")
def fee(world):
    return int(world.orders.execution_fee())


# ============================================================ findings


def test_F1_fixed__a_pending_request_keeps_the_instant_paths_shut(world, chain, deployer, trader, whale, jit, lp, fee):
    """Fixed (medium, M1 made riskless). The trader is long 7,500 ETH. The whale asks to redeem
    its 4e18 shares (recorded at the request's value). A round takes ETH to $1,980 (the long
    loses $150,000) and the trader closes: no market has open interest, the whale's request is
    due and capped at the value of its request, $90,294.48 below what its shares are worth now.
    Before the fix the book was idle: Mallory's fresh address deposited $20,000,000 through the
    instant path, executed the whale's request (the windfall stayed in the pool, 87% of it now
    hers) and redeemed at once 900 s later: +$78,275.49, with no price exposure at any point,
    taken from the LPs of the request's time. Now a pending request keeps `instant()` false
    (`open_requests`): the instant deposit is refused, and once the whale's request is executed
    the paths reopen. Since the requests' M1 fix the windfall stays in the pool as shares the
    Clearinghouse keeps for good (Alice's shares are worth what they were before the execution),
    so there is nothing left to grab by either path (test_review_lp_requests.py D1 for the deposit request)."""
    pool, usdc, ch = world.pool, world.settlement, world.clearinghouse
    market = world.markets["ETH-PERP"]
    trade_now(ch, market, LONG, sender=trader)
    fund(usdc, whale, fee, pool)
    shares = int(pool.balanceOf(whale))
    pool.request_redeem(shares, whale, whale, sender=whale)
    recorded = int(pool.requests(whale).assets)
    eth(world, deployer, 1_980)
    trade_now(ch, market, -LONG, sender=trader)  # the last position closes
    assert chain.pending_timestamp >= int(pool.requests(whale).executable_at)
    assert not pool.instant() and int(pool.open_requests()) == 1  # the whale's request keeps it shut
    windfall = int(pool.convertToAssets(shares)) - recorded
    assert windfall > 80_000 * USDC
    stake = 20_000_000 * USDC
    fund(usdc, jit, stake, pool)
    with ape.reverts("pool: book open, request instead"):
        pool.deposit(stake, jit, sender=jit)
    alice, held = int(pool.convertToAssets(pool.balanceOf(lp))), int(pool.balanceOf(ch))
    event = executed(pool.execute_request(whale, sender=jit))
    assert event.assets == recorded and event.shares + event.kept == shares
    assert pool.instant() and int(pool.open_requests()) == 0
    # the windfall stayed as shares the Clearinghouse keeps; Alice's are worth what they were (rounding)
    assert int(pool.balanceOf(ch)) == held + event.kept
    assert abs(int(pool.convertToAssets(event.kept)) - windfall) <= 2
    assert 0 <= int(pool.convertToAssets(pool.balanceOf(lp))) - alice <= 1


def test_F3_withdraw_now_pays_about_what_was_asked_on_the_request_path(world, chain, deployer, trader, lp):
    """marginsim.orders.withdraw_now(assets) with the book open redeems previewWithdraw(assets)
    shares (rounded up, read in the block before) by request, "paid at most `assets`". The
    request records what those shares are worth in its own, later block and the execution pays
    the smaller of that and the value 60 s on; while the value drifts up (here funding at 0.1 a
    day on the 7,500 ETH long, paid to the pool) both are above `assets`: asked 1,000,000 USDC,
    paid a few cents more (the figure is in the assert message). ERC-4626 `withdraw` pays
    exactly `assets`, so a test ported to the helper sees a different amount than it asked for
    (and less than asked whenever the value drifts down).
    Fixed in the helper's contract: its docstring says "about `assets`", callers that need the
    amount read it from the receipt's `Withdraw` event. An on-chain `request_withdraw(assets)`
    recording min(assets, value of the escrowed shares) would make it exact; not built."""
    pool, ch = world.pool, world.clearinghouse
    market = world.markets["ETH-PERP"]
    config = next(m for m in world.config.markets if m.name == "ETH-PERP")
    world.configurator.set_market(
        market, replace(config, max_funding_rate=0.1).params(world.market_asset("ETH-PERP").address), sender=deployer
    )
    trade_now(ch, market, LONG, sender=trader)
    move_clock_to(chain, chain.pending_timestamp + 600)
    eth(world, deployer, 2_000)
    asked = ALICE_USD * USDC
    receipt = withdraw_now(pool, asked, lp, lp, sender=lp)
    paid = executed(receipt).assets
    # the drift of a minute's funding on $15M: cents, above what was asked
    assert asked < paid < asked + USDC, f"asked {asked / USDC:,.6f}, paid {paid / USDC:,.6f} (+{(paid - asked) / USDC:,.6f})"


def test_F2_a_dust_position_keeps_the_book_open_for_one_unit(world, chain, deployer, attacker, lp, keeper):
    """Informational. Mallory deposits 10 USDC as a trader and buys 1 wei of ETH (notional
    $2e-15), filling her own order: the order's 2 USDC fee comes back to her as the keeper and
    its bond is refunded; the trade's fee rounds up to 1 unit ($0.000001), her whole cost besides
    gas. The position is healthy (it cannot be liquidated) and has no loss to realise, so it
    stays as long as she likes: `instant()` is false, maxDeposit, maxMint, maxWithdraw and
    maxRedeem read 0 for everyone (ERC-4626-correct: the paths revert), and every LP pays a
    request fee and waits a settlement delay (worse-of). Exits still work: Alice redeems half her
    shares by request. The same commit, front-run into the block of an LP's instant call, makes
    that call revert. In a live market the book is never idle anyway: the instant paths are a
    convenience of an empty book, not something LPs or integrators can rely on.
    Suggested: document it (ERC-4626 integrators see a vault that is always closed), or treat as
    idle a book whose every price-sensitive amount is below a dust threshold."""
    pool, ch, usdc = world.pool, world.clearinghouse, world.settlement
    market = world.markets["ETH-PERP"]
    acct = deposit(world, attacker, "USDC", 10 * USDC)
    receipt = trade_now(ch, market, 1, sender=attacker, keeper=attacker)
    [filled] = [e for e in receipt.events if e.event_name == "OrderFilled"]
    [trade] = [e for e in receipt.events if e.event_name == "Trade"]
    assert filled.keeper == attacker.address and int(trade.fee) == 1
    assert int(ch.settlement(acct)) == 10 * USDC - 1  # one unit, all it cost
    assert_shut(world, lp)
    with ape.reverts("liquidation: account healthy"):
        world.liquidation_engine.liquidate(acct, market, 10**30, sender=keeper)
    with ape.reverts("liquidation: no loss to realise"):
        world.liquidation_engine.realise_loss(acct, market, sender=keeper)
    move_clock_to(chain, chain.pending_timestamp + 86_400)
    refresh_feeds(world, deployer)
    assert_shut(world, lp)  # a day later, still shut
    wallet = int(usdc.balanceOf(lp))
    redeem_now(pool, int(pool.balanceOf(lp)) // 2, lp, lp, sender=lp)
    assert int(usdc.balanceOf(lp)) - wallet > 499_000 * USDC  # exits work, by request


@pytest.mark.xfail(strict=True, reason="L (low, documented): an LP leaves at face ahead of a debt's bad-debt booking")
def test_F4_instant_exit_ahead_of_the_bad_debt_a_collateral_round_books(world, chain, deployer, other_trader, attacker, keeper):
    """The gate no longer reads total_debt (README 11 calls this out: "an LP who sees a
    collateral crash coming can still leave at once while only debts are open"). Measured
    with prompt keepers, the smallest case: a collateral-only trader (1,000 WETH) loses ~$1.1M
    on a 2,000 ETH long and closes; its debt, backed by the WETH, sits just inside the sale
    limit (0.9 of the haircut value: not for sale, `liquidation: account healthy`). The book
    is idle, `instant()` true. A WETH round of -19.9% (inside the 20% breaker) is seen pending:
    Mallory redeems her 2e18 shares at once, at the value that counts the debt at face. The round
    lands, a keeper buys all the WETH at its 5% discount at once, and the rest of the debt is
    bad debt, socialised (the insurance fund is empty): Mallory's exit escapes her share of it,
    Alice and the whale bear it (figures in the assert message: ~0.4% of the debt booked, ~2/7
    of it escaped). Each round a keeper lags, or a crash past the breaker's first halt, adds
    more. By request (book open) the booking lands before the execution and is counted
    against the LP.
    Fix: restore `total_debt == 0` in `_quiet` (the cost: a collateral-only trader's fee debt
    keeps the book open), or shut the instant exits only while some debt exceeds
    (1 - discount) of its collateral at a price `max_deviation` away (a per-account check the
    pool cannot run; a keeper-maintained flag), or document the bound as accepted."""
    pool, ch, usdc = world.pool, world.clearinghouse, world.settlement
    market, weth = world.markets["ETH-PERP"], world.tokens["WETH"]
    acct = deposit(world, other_trader, "WETH", 1_000 * WAD)
    trade_now(ch, market, 2_000 * WAD, sender=other_trader)
    walk_price(world, "WETH", 1_450, deployer)
    trade_now(ch, market, -2_000 * WAD, sender=other_trader)
    debt = -int(ch.settlement(acct))
    limit_price = debt * 100 * 1_001 // (765 * 1_000)  # 0.1% above where 0.9 * 0.85 of 1,000 WETH is the debt
    publish_8dp(world, deployer, limit_price)
    with ape.reverts("liquidation: account healthy"):
        world.liquidation_engine.liquidate_collateral(acct, weth, 10**30, sender=keeper)
    assert pool.instant() and int(ch.insurance_balance()) == 0
    shares = int(pool.balanceOf(attacker))
    fund(usdc, keeper, 2 * debt, ch)

    def crash_and_book():
        publish_8dp(world, deployer, limit_price * 801 // 1000)  # the round she saw: -19.9%
        receipt = world.liquidation_engine.liquidate_collateral(acct, weth, 10**30, sender=keeper)
        return int(receipt.events.filter(ch.BadDebt)[0].shortfall)

    snapshot = chain.snapshot()
    crash_and_book()
    worth_after = int(pool.convertToAssets(shares))  # had she stayed: her share of the bad debt
    chain.restore(snapshot)
    paid = int(pool.redeem(shares, attacker, attacker, sender=attacker).events.filter(pool.Withdraw)[0].assets)
    shortfall = crash_and_book()
    # SAFE: an LP who saw the round pending leaves no part of the bad debt it books to the others
    assert paid <= worth_after + 2, (
        f"debt {debt / USDC:,.2f}, bad debt {shortfall / USDC:,.2f}; Mallory paid {paid / USDC:,.2f},"
        f" worth {worth_after / USDC:,.2f} after: escaped {(paid - worth_after) / USDC:,.2f}"
    )


# ============================================================ attacks that fail


def test_A1_idle_book_value_is_the_balance_and_nothing_moves_it(world, chain, deployer, trader, other_trader, attacker, lp):
    """Odd sizes, a partial close and a flip across two rounds, then every position closed: open
    interest, entry cost and holds are all exactly 0 (cost removed on a close is exact), the
    book is idle. Its value is then the pool's balance less its claims, to the unit. Mallory
    holds 100 WETH as collateral with no debt; ETH is walked to $1,600 and to $2,600 and a day
    passes: totalAssets does not move by a unit, so no round or clock can be traded ahead of
    through the instant paths. A $1M deposit, its cooldown, and its redemption come back to the
    unit (rounding toward the pool only), and redeem(maxRedeem) goes through exactly."""
    pool, ch, usdc = world.pool, world.clearinghouse, world.settlement
    market = world.markets["ETH-PERP"]
    deposit(world, other_trader, "USDC", 1_000_000 * USDC)
    trade_now(ch, market, 1_234_567_891_234_567_891_111, sender=trader)
    trade_now(ch, market, -333_333_333_333_333_333_333, sender=other_trader)
    eth(world, deployer, 2_013.37)
    trade_now(ch, market, -1_000_100_000_000_000_000_001, sender=trader)
    trade_now(ch, market, 833_333_333_333_333_333_334, sender=other_trader)  # flips to a long
    eth(world, deployer, 1_987.65)
    for who in (trader, other_trader):
        trade_now(ch, market, -int(ch.positions(account_id(who, 0), market).size), sender=who)
    st = ch.market_state(market)
    assert (int(st.long_oi), int(st.short_oi), int(st.total_cost)) == (0, 0, 0)
    assert tuple(pool.held(market)) == (0, 0) and int(ch.total_debt()) == 0 and pool.instant()
    total = int(pool.totalAssets())
    assert total == value_units(world)
    deposit(world, attacker, "WETH", 100 * WAD)  # collateral without a debt
    walk_price(world, "WETH", 1_600, deployer)
    assert int(pool.totalAssets()) == total
    walk_price(world, "WETH", 2_600, deployer)
    move_clock_to(chain, chain.pending_timestamp + 86_400)
    refresh_feeds(world, deployer)  # the held WETH is read by the collateral check of every exit
    assert int(pool.totalAssets()) == total and pool.instant()
    amount = 1_000_000 * USDC
    fund(usdc, other_trader, amount, pool)
    [dep] = [e for e in pool.deposit(amount, other_trader, sender=other_trader).events if e.event_name == "Deposit"]
    move_clock_to(chain, chain.pending_timestamp + COOLDOWN)
    refresh_feeds(world, deployer)
    assert int(pool.maxRedeem(other_trader)) == int(dep.shares)
    receipt = pool.redeem(int(dep.shares), other_trader, other_trader, sender=other_trader)
    [out] = [e for e in receipt.events if e.event_name == "Withdraw"]
    assert amount - 1 <= int(out.assets) <= amount


def test_A2_debt_in_an_idle_book_moves_with_the_clock_not_with_rounds(world, chain, deployer, other_trader, lp):
    """This version lets the instant paths run while only debts are open (`_quiet` no longer
    reads total_debt). A collateral-only trader (1,000 WETH, no USDC) buys 500 ETH, ETH falls to
    $1,900 and it closes: no open interest or entry cost, a ~$50,988 debt backed by WETH, and
    `instant()` is true. The value counts the debt at face plus its interest: WETH rounds of
    -15% and +15% move it by nothing (no round to trade ahead of), a day moves it up by the
    accrued interest only. Repaid in full: total_debt and total_scaled_debt are exactly 0
    (added and removed with the same floor) and the repayment moves the value by its seconds
    of interest and at most 2 units of rounding (charged up, accrued down): nothing to deposit
    ahead of."""
    pool, ch = world.pool, world.clearinghouse
    market = world.markets["ETH-PERP"]
    acct = deposit(world, other_trader, "WETH", 1_000 * WAD)
    trade_now(ch, market, 500 * WAD, sender=other_trader)
    eth(world, deployer, 1_900)
    trade_now(ch, market, -500 * WAD, sender=other_trader)
    st = ch.market_state(market)
    assert (int(st.long_oi), int(st.short_oi), int(st.total_cost)) == (0, 0, 0)
    assert 50_000 * USDC < -int(ch.settlement(acct)) < 52_000 * USDC and pool.instant()
    per_second = -int(ch.settlement(acct)) * 32 // 100 // (365 * 86_400) + 1  # at the largest rate, 32% a year
    before, t0 = int(pool.totalAssets()), chain.blocks.head.timestamp
    walk_price(world, "WETH", 1_615, deployer)
    walk_price(world, "WETH", 1_900, deployer)
    assert 0 <= int(pool.totalAssets()) - before <= (chain.blocks.head.timestamp - t0) * per_second  # the clock, no round
    move_clock_to(chain, chain.pending_timestamp + 86_400)
    refresh_feeds(world, deployer)
    assert 0 < int(pool.totalAssets()) - before < 10 * USDC  # a day of interest on ~$51,000
    moved, t0 = int(pool.totalAssets()), chain.blocks.head.timestamp
    deposit(world, other_trader, "USDC", -int(ch.settlement(acct)) + USDC)
    assert (int(ch.total_debt()), int(ch.total_scaled_debt())) == (0, 0) and pool.instant()
    idle = int(pool.totalAssets())
    assert 0 <= idle - moved <= (chain.blocks.head.timestamp - t0) * per_second + 2  # + the charge's rounding up
    move_clock_to(chain, chain.pending_timestamp + 86_400)
    assert int(pool.totalAssets()) == idle


def test_A3_an_order_committed_then_cancelled_leaves_the_value_where_it_was(world, deployer, trader, lp, keeper):
    """The trader commits a 100 ETH buy with a limit of 1 wei (it can never fill): from the
    commit the order holds 100 ETH in the pool, so the book is open (a JIT LP cannot come in
    ahead of its fill). Its round comes, the fill is refused ("clearinghouse: price limit"), the
    order is cancelled, its fee and bond go to the insurance fund: the hold is released, the book
    is idle again, and the pool's value is exactly what it was (a forfeit is no windfall for a
    JIT LP)."""
    pool, ch = world.pool, world.clearinghouse
    market = world.markets["ETH-PERP"]
    before, insurance = int(pool.totalAssets()), int(ch.insurance_balance())
    place(ch, market, 100 * WAD, 1, sender=trader)
    assert tuple(pool.held(market)) == (100 * WAD, 0)
    assert_shut(world, lp)
    receipt = fill_now(ch, account_id(trader, 0), market, keeper=keeper)
    [cancelled] = [e for e in receipt.events if e.event_name == "OrderCancelled"]
    assert cancelled.reason == "clearinghouse: price limit"
    assert tuple(pool.held(market)) == (0, 0) and pool.instant()
    assert int(pool.totalAssets()) == before
    assert int(ch.insurance_balance()) == insurance + int(cancelled.fee) + int(cancelled.bond)
