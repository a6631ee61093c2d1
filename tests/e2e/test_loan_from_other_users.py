"""Issue 9, item 1: a realised loss was an unpriced, unbounded loan of other people's tokens.

The attack, as the review replayed it: one owner holds two subaccounts. A deposits 2,500 WETH
and goes short 7,500 ETH-PERP; B deposits 4,000,000 USDC and goes long 7,500. ETH rises 17% in
four +4% rounds, each inside the circuit breaker. Both close. A's loss becomes a negative
settlement balance backed by WETH (its equity stays positive, so A is never liquidatable); B's
equal gain was credited in USDC, and B withdrew it. With a $2M pool and an honest user holding
$1,000,000 idle, before this change:
- B's withdrawal took the honest user's tokens: the honest withdrawal reverted
  `clearinghouse: insufficient liquidity`, and the tokens left no longer covered the positive
  balances;
- A owed about $2.57M at 0% interest, unchanged 30 days later;
- A took 1,200 WETH back out, about 85% loan-to-value.

What stops it now, each test below one part:
- a realised profit is paid in tokens only out of the pool's free liquidity; the rest of B's
  profit is a pending claim, which counts in its equity and is paid as tokens come back;
- a debt is a loan: it pays interest to the pool, rising with utilisation; it needs initial
  margin of its own (`debt_imr`, 25%: owe at most 80% of the haircut collateral value), so A
  cannot take the 1,200 WETH; and above `debt_liquidation_ltv` (90%) its collateral is for sale
  whatever its equity.
Each test starts from the same replay (ape restores the chain between tests).
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import trade_now
from marginsim.protocol import DEFAULT_CONFIG, deploy_protocol
from tests.e2e.attacks import reserve_out_of_the_way
from tests.e2e.incidents import USDC, WAD, deposit, events, fund_liquidity, publish_usd

SIZE = 7_500 * WAD
HONEST_USD = 1_000_000
DAY = 86_400


def positives_and_insurance(ch, accounts) -> int:
    return sum(max(int(ch.settlement(a)), 0) for a in accounts) + int(ch.insurance_balance())


DEFAULT_RESERVE: dict[str, str | None] = {}  # what the replay's first order met at the default reserve


@pytest.fixture(scope="module")
def replay(project, deployer, lp, attacker, other_trader):
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    fund_liquidity(protocol, lp, deployer, 2_000_000, 0)
    honest = deposit(protocol, other_trader, "USDC", HONEST_USD * USDC)
    a = deposit(protocol, attacker, "WETH", 2_500 * WAD, subaccount=0)
    b = deposit(protocol, attacker, "USDC", 4_000_000 * USDC, subaccount=1)
    # at the default reserve (each side at most the pool's $2M) the attack cannot even open:
    # 7,500 ETH is $15M. Set aside, to replay what the loan's own terms do
    try:
        trade_now(ch, eth, -SIZE, 0, 0, sender=attacker)
        refused = None
    except ape.exceptions.ContractLogicError as error:  # refused at the commit
        refused = error.message
    reserve_out_of_the_way(protocol, deployer)
    trade_now(ch, eth, -SIZE, 0, 0, sender=attacker)
    open_b = trade_now(ch, eth, SIZE, 0, 1, sender=attacker)
    price = 2_000.0
    for _ in range(4):  # +4% a round, inside the 20% breaker: +17% in all
        price *= 1.04
        publish_usd(protocol, "WETH", round(price, 2), deployer)
    equity, maintenance, _ = ch.margin(a)
    assert int(equity) > int(maintenance)  # A is never liquidatable on its margin: its WETH gained too
    trade_now(ch, eth, SIZE, 0, 0, sender=attacker)  # A closes first: its loss becomes its debt
    close_b = trade_now(ch, eth, -SIZE, 0, 1, sender=attacker)
    DEFAULT_RESERVE["refused"] = refused
    return protocol, {"honest": honest, "a": a, "b": b}, open_b, close_b


def test_replay__at_the_default_reserve_the_attack_cannot_open(replay):
    assert DEFAULT_RESERVE["refused"] == "orders: open interest reserve"


def test_replay__profit_beyond_the_pools_liquidity_waits_as_a_pending_claim(replay):
    protocol, accounts, open_b, close_b = replay
    ch = protocol.clearinghouse
    (trade,) = events(close_b, "Trade")
    (pending_event,) = events(close_b, "ProfitPending")
    pending = int(ch.pending(accounts["b"]))
    assert pending == int(pending_event.amount) == int(ch.total_pending())
    fees_b = int(events(open_b, "Trade")[0].fee) + int(trade.fee)
    # B was paid in tokens exactly what the pool held free; the rest of its profit is the claim
    assert int(ch.settlement(accounts["b"])) == 4_000_000 * USDC - fees_b + int(trade.realised_pnl) - pending
    # every token the pool held is lent out (its balance is all debt now), the claim is owed on
    # top: nothing is free for LPs, and no other user's token paid B
    assert int(ch.pool_balance()) == int(ch.total_debt())
    assert int(protocol.pool.withdrawable(protocol.pool.address)) == 0
    # the claim is real: it counts in B's equity as a balance would
    assert int(ch.margin(accounts["b"])[0]) == (int(ch.settlement(accounts["b"])) + pending) * 10**12
    print(f"\nA owes {-int(ch.settlement(accounts['a'])) / USDC:,.2f}; B's claim {pending / USDC:,.2f}")
    assert pending == PENDING


def test_replay__the_honest_user_withdraws_everything_and_the_tokens_cover_every_balance(replay, attacker, other_trader):
    protocol, accounts, _, _ = replay
    ch, usdc = protocol.clearinghouse, protocol.settlement
    every = list(accounts.values())
    assert int(usdc.balanceOf(ch)) >= positives_and_insurance(ch, every)
    # B takes out all it may: what the pool could pay it in tokens
    ch.withdraw(usdc, int(ch.settlement(accounts["b"])), 1, sender=attacker)
    assert int(ch.pending(accounts["b"])) == PENDING  # the claim waits: the pool holds no free token
    # the honest user's $1,000,000 is still there (before: `clearinghouse: insufficient liquidity`)
    ch.withdraw(usdc, HONEST_USD * USDC, 0, sender=other_trader)
    assert int(ch.settlement(accounts["honest"])) == 0
    assert int(usdc.balanceOf(ch)) == int(ch.settlement_held()) >= positives_and_insurance(ch, every)


def test_replay__the_debtor_cannot_borrow_85_percent_of_its_collateral(replay, attacker):
    """Before: A took 1,200 WETH out, owing about 85% of what was left. Now a debt needs initial
    margin of its own: A may owe at most C / (1 + debt_imr) of its haircut collateral value."""
    protocol, accounts, _, _ = replay
    ch, weth = protocol.clearinghouse, protocol.tokens["WETH"]
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(weth, 1_200 * WAD, 0, sender=attacker)
    # the most it may take: the haircut value left covers the debt and its 25% initial margin
    debt_imr = int(ch.debt_terms()[2])
    price = int(protocol.oracle.price(weth))
    debt_next_block = -risk.DebtView(*_debt_inputs(ch)).balance(
        -int(ch.debt_of(accounts["a"])[0]), int(ch.debt_of(accounts["a"])[1]), ape.chain.pending_timestamp
    )
    need = risk.mul_up(debt_next_block * 10**12, debt_imr) + debt_next_block * 10**12  # WAD USD
    weight = int(ch.collaterals(1).weight)
    keep = -(-need * WAD * WAD // (price * weight))  # WETH units whose haircut value covers it (about)
    most = 2_500 * WAD - keep
    print(f"\nA may take at most about {most / WAD:,.2f} WETH (owing {debt_next_block / USDC:,.2f})")
    assert most < 900 * WAD
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(weth, most + WAD, 0, sender=attacker)
    ch.withdraw(weth, most - WAD, 0, sender=attacker)


def _debt_inputs(ch) -> tuple[int, ...]:
    index, last = ch.debt_state()
    base, slope, imr, _ = ch.debt_terms()
    return int(index), int(last), int(ch.total_debt()), int(ch.pool_balance()), int(base), int(slope), int(imr)


def test_replay__the_debt_pays_interest_to_the_pool(replay, attacker):
    """Before: A's debt was unchanged 30 days later. Now it pays 2% a year plus 30% at full
    utilisation, to the pool, charged when the debt is next written."""
    protocol, accounts, _, _ = replay
    ch, usdc = protocol.clearinghouse, protocol.settlement
    written, index_at = (int(v) for v in ch.debt_of(accounts["a"]))
    view = risk.DebtView(*_debt_inputs(ch))
    pool_before = int(ch.pool_balance())
    ape.chain.mine(timestamp=ape.chain.pending_timestamp + 30 * DAY)
    # the pool's balance is all lent: utilisation 1, 32% a year
    usdc.mint(attacker, 1, sender=attacker)
    usdc.approve(ch, 1, sender=attacker)
    later = ape.chain.pending_timestamp
    owed = risk.debt_now(written, view.index_at(later), index_at)
    ch.deposit(usdc, 1, 0, sender=attacker)  # any write of A's balance charges the interest
    interest = owed - written
    assert -int(ch.settlement(accounts["a"])) == owed - 1
    assert int(ch.pool_balance()) == pool_before + interest
    print(f"\n30 days of interest on {written / USDC:,.2f}: {interest / USDC:,.2f} to the pool")
    assert interest == INTEREST_30_DAYS


def test_replay__over_the_loan_limit_its_collateral_is_sold_and_the_claim_paid(replay, attacker, deployer, keeper):
    """ETH falls back 53%: once A's debt is above 90% of its haircut collateral value, a keeper
    buys the WETH at its discount, whatever A's equity; the tokens repay the debt, and B's claim
    is paid at its next withdrawal."""
    protocol, accounts, _, _ = replay
    ch, usdc, weth, engine = protocol.clearinghouse, protocol.settlement, protocol.tokens["WETH"], protocol.liquidation_engine
    price = int(protocol.oracle.price(weth)) / WAD
    for _ in range(3):  # -15% a round, inside the breaker
        price *= 0.85
        publish_usd(protocol, "WETH", round(price, 2), deployer)
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate_collateral(accounts["a"], weth, 2**256 - 1, sender=keeper)
    price *= 0.93  # A's debt is now about 95% of its haircut WETH: above the limit, equity still positive
    publish_usd(protocol, "WETH", round(price, 2), deployer)
    debt = -int(ch.settlement(accounts["a"]))
    assert debt * 10**12 > risk.mul_down(int(ch.collateral_value(accounts["a"])), int(engine.debt_liquidation_ltv()))
    assert int(ch.margin(accounts["a"])[0]) > 0  # still solvent: for sale on its loan alone
    usdc.mint(keeper, 3 * debt, sender=keeper)
    usdc.approve(ch, 2**256 - 1, sender=keeper)
    written, index_at = (int(v) for v in ch.debt_of(accounts["a"]))
    owed = risk.debt_now(written, risk.DebtView(*_debt_inputs(ch)).index_at(ape.chain.pending_timestamp), index_at)
    receipt = engine.liquidate_collateral(accounts["a"], weth, 2**256 - 1, sender=keeper)
    (sale,) = events(receipt, "CollateralLiquidation")
    # repaid in full: the WETH sold is what repays the debt, rounded up, so A keeps the rounding
    assert int(ch.settlement(accounts["a"])) == int(sale.paid) - owed < 10 * USDC // 10**4
    assert not events(receipt, "BadDebt")
    assert int(ch.total_debt()) == 0
    print(f"\nsold {int(sale.amount) / WAD:,.4f} WETH for {int(sale.paid) / USDC:,.2f}")
    # B's claim is paid first at its next withdrawal, in full
    pending = int(ch.pending(accounts["b"]))
    wallet = int(usdc.balanceOf(attacker))
    ch.withdraw(usdc, pending, 1, sender=attacker)
    assert int(usdc.balanceOf(attacker)) - wallet == pending == PENDING
    assert int(ch.pending(accounts["b"])) == 0 == int(ch.total_pending())


PENDING = 653_674_922_803  # B's claim, token units: $653,674.92
INTEREST_30_DAYS = 70_653_492_389  # token units: $70,653.49 on $2,686,234.19 over 30 days at 32% a year
