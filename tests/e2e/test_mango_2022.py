"""Mango Markets, 2022-10-11: one trader held both sides of MNGO-PERP in two accounts, pumped the
thin MNGO oracle about 10x in minutes, and borrowed $114M against the long's unrealised profit.

What marginsim does about it: a price can move at most `max_deviation` (20%) per accepted round,
so a tenfold pump takes at least 13 rounds; unrealised PnL counts toward margin but is never a
token balance, so only realised PnL can leave (a withdrawal needs the balance and initial
margin afterwards); the volatility estimate jumps with the pump, raising the initial margin at
once; and each side of the market is capped twice: in base units (`oi_cap`) and in USD against
the pool (issue 9, item 5: the open-interest reserve, GMX v2's reserve factor), so what the
positions can win is tied to what the pool holds.

What the test proves, on a thin $1 token against a $1M pool with a reserve factor of 0.08 (a
governance choice for a token that can run 11x: a long opened at the limit and pumped k-fold
wins about (k - 1) * 0.08 of the pool): the attacker opens long and short at the reserve from
two accounts ($80k each) and pumps the feed 14 rounds of +19% (11.4x) while an honest keeper
liquidates the losing short. No order can take either side past the reserve ("orders: open
interest reserve"); during the pump the long cannot withdraw past initial margin, at the top it
cannot withdraw any of its paper profit, nobody can add to the long, and LPs cannot withdraw
the capital the long side needs ("pool: open interest reserve"). If the attacker closes the
long at the top, its profit is within the reserve's bound and the pool pays it in tokens, with
no claim left waiting: the pool stays solvent and every honest user is paid in full. If it lets
the price come back, the protocol is solvent and its tokens equal its books.
What the reserve does not bound (README, "Not built yet"): a run far beyond the one the factor
was set for (here past about 13.5x) could still win more than the pool; the profit beyond its
free tokens would then wait as a claim, and issue 11's auto-deleveraging is the last step.
"""

from __future__ import annotations

import ape
import pytest

from marginsim import risk
from marginsim.orders import redeem_now, trade_now, withdraw_now
from marginsim.protocol import FeedConfig, MarketConfig, TokenConfig, deploy_protocol, wad
from marginsim.risk import health_of
from tests.e2e.incidents import (
    MAX_UINT,
    SETTLEMENT_TO_WAD,
    USDC,
    WAD,
    accounting,
    deposit,
    fund_liquidity,
    move_clock_to,
    trimmed_config,
)

ENTRY_ANSWER = 1 * 10**8  # $1.00, 8 decimals
CAP_UNITS = 200_000
RESERVE_FACTOR = 0.08  # either side at most $80k of the $1M pool at entry: (11.4 - 1) * 0.08 < 1
RESERVE_UNITS = 80_000  # the side the reserve allows at $1: exactly at the limit
SKEW_SCALE_UNITS = 40_000_000  # the Configurator: cap <= S (1 - k) min(f, h_full base_mmr) = 0.0075 S
POOL_USD = 1_000_000
INSURANCE_USD = 50_000
ROUND_SECONDS = 60
PUMP_ROUNDS = 14  # +19% each: 1.19**14 = 11.4x

MNGO = TokenConfig(
    "MNGO",
    18,
    0.5,
    1_000_000_000,
    0.1,
    FeedConfig(1, min_price_usd=0.001, max_price_usd=1_000, max_deviation=0.2, initial_sigma=0.8),
)
MNGO_PERP = MarketConfig(
    "MNGO-PERP", "MNGO", tier_size=1_000_000, skew_scale=SKEW_SCALE_UNITS, oi_cap=CAP_UNITS, reserve_factor=RESERVE_FACTOR
)


def pump_answers() -> list[int]:
    answers = [ENTRY_ANSWER]
    for _ in range(PUMP_ROUNDS):
        answers.append(answers[-1] * 119 // 100)  # never more than the breaker's 20%
    return answers[1:]


def return_answers(top: int) -> list[int]:
    answers = [top]
    while answers[-1] * 84 // 100 > ENTRY_ANSWER:
        answers.append(answers[-1] * 84 // 100)  # -16% a round, inside the breaker
    return answers[1:] + [ENTRY_ANSWER]


@pytest.fixture(scope="module")
def opened(project, deployer, lp, attacker, other_trader):
    protocol = deploy_protocol(project, deployer, trimmed_config((MNGO,), (MNGO_PERP,)))
    fund_liquidity(protocol, lp, deployer, POOL_USD, INSURANCE_USD)
    ch, market = protocol.clearinghouse, protocol.markets["MNGO-PERP"]
    long = deposit(protocol, attacker, "USDC", 20_000 * USDC, subaccount=0)
    short = deposit(protocol, attacker, "USDC", 20_000 * USDC, subaccount=1)
    trade_now(ch, market, RESERVE_UNITS * WAD, 0, 0, sender=attacker)
    trade_now(ch, market, -RESERVE_UNITS * WAD, 0, 1, sender=attacker)
    # an honest depositor with nothing at stake in MNGO
    bystander = deposit(protocol, other_trader, "USDC", 100_000 * USDC)
    return protocol, long, short, bystander


class Pump:
    """Publishes rounds one minute apart; after each, an honest keeper liquidates whatever is
    below maintenance (all of it, as many calls as it takes)."""

    def __init__(self, protocol, chain, publisher, keeper, accounts):
        self.protocol, self.chain, self.publisher, self.keeper, self.accounts = protocol, chain, publisher, keeper, accounts

    def round(self, answer: int) -> None:
        move_clock_to(self.chain, self.chain.pending_timestamp + ROUND_SECONDS)
        self.protocol.publish("MNGO", answer, self.publisher)
        ch, engine = self.protocol.clearinghouse, self.protocol.liquidation_engine
        market = self.protocol.markets["MNGO-PERP"]
        for account in self.accounts:
            while int(ch.market_mask(account)) != 0 and int(health_of(ch, account)) < WAD:
                engine.liquidate(account, market, MAX_UINT, sender=self.keeper)


def room(protocol) -> int:
    """Base units either side may still grow by at the oracle price before the reserve's limit."""
    ch, market = protocol.clearinghouse, protocol.markets["MNGO-PERP"]
    price = int(protocol.oracle.price(protocol.market_asset("MNGO-PERP")))
    value, need_others = (int(v) for v in protocol.pool.reserve(market, 0))
    state = ch.market_state(market)
    largest = risk.largest_reserved_side(value, need_others, wad(RESERVE_FACTOR), price)
    return largest - max(int(state.long_oi), int(state.short_oi))


def test_mango__open_interest_reserve_holds_on_both_sides(opened, attacker, trader):
    protocol, _, _, _ = opened
    ch, market = protocol.clearinghouse, protocol.markets["MNGO-PERP"]
    state = ch.market_state(market)
    assert int(state.long_oi) == int(state.short_oi) == RESERVE_UNITS * WAD  # far below the base-unit cap
    value, need = (int(v) for v in protocol.pool.reserve(0, 0))
    assert need == 1_000_000 * WAD <= value < 1_000_200 * WAD  # $80k at 0.08: the whole pool (plus its fees)
    deposit(protocol, trader, "USDC", 50_000 * USDC)
    over = room(protocol) + 1
    for sender, subaccount in ((attacker, 0), (trader, 0)):
        with ape.reverts("orders: open interest reserve"):
            trade_now(ch, market, over, 0, subaccount, sender=sender)
    for sender, subaccount in ((attacker, 1), (trader, 0)):
        with ape.reverts("orders: open interest reserve"):
            trade_now(ch, market, -over, 0, subaccount, sender=sender)
    assert int(ch.market_state(market).long_oi) == RESERVE_UNITS * WAD


def test_mango__unrealised_profit_cannot_be_withdrawn_past_initial_margin(opened, chain, deployer, keeper, attacker, lp):
    protocol, long, short, _ = opened
    ch, lens, usdc, market = protocol.clearinghouse, protocol.lens, protocol.settlement, protocol.markets["MNGO-PERP"]
    pump = Pump(protocol, chain, deployer, keeper, [long, short])
    answers = pump_answers()

    pump.round(answers[0])
    # one +19% round: the long is $15k up, but volatility jumped and the initial margin with it
    equity, _, initial = ch.margin(long)
    assert int(equity) > 20_000 * WAD + 15_000 * WAD and int(equity) < int(initial)
    assert int(lens.max_withdraw(long, usdc)) == 0
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(usdc, 1, 0, sender=attacker)

    for answer in answers[1:]:
        pump.round(answer)
    assert answers[-1] >= 10 * ENTRY_ANSWER  # tenfold
    assert int(ch.market_mask(short)) == 0  # the short was liquidated on the way up
    equity, _, initial = ch.margin(long)
    balance = int(ch.settlement(long))
    # $830k of paper profit and ample margin, but only the deposited balance can leave
    assert int(equity) - int(initial) > 250_000 * WAD
    assert int(lens.max_withdraw(long, usdc)) == balance < 20_000 * USDC
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, balance + 1, 0, sender=attacker)
    # the reserve holds at the top: the long side needs 11x the capital it opened against, and
    # the pool's value is lower by the long's paper profit: nobody can add, and the LPs cannot
    # withdraw the capital the long needs
    value, need = (int(v) for v in protocol.pool.reserve(0, 0))
    assert need > 10 * value
    with ape.reverts("orders: open interest reserve"):
        trade_now(ch, market, 1, 0, 0, sender=attacker)
    assert int(protocol.pool.withdrawable(lp)) == 0
    with ape.reverts("pool: open interest reserve"):
        withdraw_now(protocol.pool, 1, lp, lp, sender=lp)


def test_mango__price_returns__protocol_is_solvent(opened, chain, deployer, keeper, attacker, other_trader):
    protocol, long, short, bystander = opened
    ch, usdc = protocol.clearinghouse, protocol.settlement
    pump = Pump(protocol, chain, deployer, keeper, [long, short])
    for answer in pump_answers():
        pump.round(answer)
    # the attacker takes out everything it is allowed to at the top: its own deposit
    ch.withdraw(usdc, int(protocol.lens.max_withdraw(long, usdc)), 0, sender=attacker)
    for answer in return_answers(pump_answers()[-1]):
        pump.round(answer)

    accounts = [long, short, bystander]
    books = accounting(protocol, accounts)
    assert books.held == books.settlement_held == books.internal
    assert books.pool >= 0
    # every positive balance and the insurance fund are backed by tokens, without collecting any debt
    assert books.held >= sum(max(int(ch.settlement(a)), 0) for a in accounts) + books.insurance
    assert int(ch.total_debt()) == 0
    ch.withdraw(usdc, 100_000 * USDC, 0, sender=other_trader)
    assert int(usdc.balanceOf(other_trader)) == 100_000 * USDC


def test_mango__profit_taken_at_the_top_is_bounded_by_the_reserve(opened, chain, deployer, keeper, attacker):
    protocol, long, short, _ = opened
    ch, market = protocol.clearinghouse, protocol.markets["MNGO-PERP"]
    cost = int(ch.positions(long, market).cost)
    pump = Pump(protocol, chain, deployer, keeper, [long, short])
    for answer in pump_answers():
        pump.round(answer)
    top = pump_answers()[-1] * 10**10  # WAD
    free = int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending())
    tx = trade_now(ch, market, -RESERVE_UNITS * WAD, 0, 0, sender=attacker)
    trade = tx.events.filter(ch.Trade)[0]
    realised, fee = int(trade.realised_pnl), int(trade.fee)
    # the reserve's bound: the side it allowed times the move, plus the skew premium that side
    # earns on the way out (entry cost already included the premium paid on the way in)
    bound_wad = RESERVE_UNITS * top * (2 * SKEW_SCALE_UNITS + RESERVE_UNITS) // (2 * SKEW_SCALE_UNITS) - cost
    assert 0 < realised * SETTLEMENT_TO_WAD <= bound_wad
    assert realised > 800_000 * USDC  # a real attack: the reserve is what limits it
    print(f"\nthe long's profit at the top {realised / USDC:,.2f}; the pool held free {free / USDC:,.2f}")
    # less than the pool holds free: paid in tokens, no claim waits
    assert realised - fee < free
    assert not tx.events.filter(ch.ProfitPending)
    assert int(ch.pending(long)) == int(ch.total_pending()) == 0


def test_mango__profit_taken_at_the_top__the_pool_stays_solvent(opened, chain, deployer, keeper, attacker, other_trader, lp):
    """The long closes at the top and withdraws everything; the price comes back. The books stay
    exact, the pool owes no claim and its value is still positive, the LP redeems what its
    shares are worth, and the honest depositor withdraws in full."""
    protocol, long, short, bystander = opened
    ch, usdc, market, pool = protocol.clearinghouse, protocol.settlement, protocol.markets["MNGO-PERP"], protocol.pool
    pump = Pump(protocol, chain, deployer, keeper, [long, short])
    for answer in pump_answers():
        pump.round(answer)
    trade_now(ch, market, -RESERVE_UNITS * WAD, 0, 0, sender=attacker)
    balance = int(ch.settlement(long))
    assert balance > 800_000 * USDC
    ch.withdraw(usdc, balance, 0, sender=attacker)  # the profit is paid in tokens, all of it
    assert int(ch.pending(long)) == 0
    for answer in return_answers(pump_answers()[-1]):
        pump.round(answer)

    accounts = [long, short, bystander]
    books = accounting(protocol, accounts)
    assert books.held == books.settlement_held == books.internal
    assert int(ch.total_pending()) == 0
    assert books.pool > 0 and int(pool.totalAssets()) > 0  # the LPs lost, but less than they had
    assert books.held >= sum(max(int(ch.settlement(a)), 0) for a in accounts) + books.insurance
    wallet = int(usdc.balanceOf(other_trader))
    ch.withdraw(usdc, int(ch.settlement(bystander)), 0, sender=other_trader)
    assert int(usdc.balanceOf(other_trader)) - wallet == 100_000 * USDC
    # the market is flat again: the LP takes its whole remaining value
    assert int(ch.market_state(market).long_oi) == int(ch.market_state(market).short_oi) == 0
    move_clock_to(chain, chain.pending_timestamp + 901)
    assets = int(pool.withdrawable(lp))
    assert assets == int(pool.previewRedeem(pool.balanceOf(lp)))
    wallet = int(usdc.balanceOf(lp))
    redeem_now(pool, pool.balanceOf(lp), lp, lp, sender=lp)
    assert int(usdc.balanceOf(lp)) - wallet == assets > 0
