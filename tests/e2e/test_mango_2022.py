"""Mango Markets, 2022-10-11: one trader held both sides of MNGO-PERP in two accounts, pumped the
thin MNGO oracle about 10x in minutes, and borrowed $114M against the long's unrealised profit.

What marginsim does about it: a price can move at most `max_deviation` (20%) per accepted round,
so a tenfold pump takes at least 13 rounds; unrealised PnL counts toward margin but is never a
token balance, so only realised PnL can leave (a withdrawal needs the balance and initial
margin afterwards); each market's open interest is capped per side (in base units), so one
trader's position, and the pool's exposure to it, is bounded; the volatility estimate jumps with
the pump, raising the initial margin at once.

What the test proves, on a thin $1 token with a 200,000-unit cap ($200k at entry) against a $1M
pool: the attacker opens long and short at the cap from two accounts and pumps the feed 14
rounds of +19% (11.4x) while an honest keeper liquidates the losing short. During the pump the
long cannot withdraw a cent past initial margin ("clearinghouse: insufficient margin"), at the
top it cannot withdraw any of its $2M of paper profit ("clearinghouse: insufficient balance"),
and no trade can add to either side past the cap ("clearinghouse: open interest cap"). If the
attacker just lets the price come back, the protocol is solvent and its tokens equal its
books. If it closes the long at the top, its realised profit stays within the cap's bound,
cap * (top - entry) * (1 + cap / 2 skew_scale). That bound is in base units and not tied to
the pool's size: here it exceeds the $1M pool, and the last test pins what happens then (a
known limitation, README "Not built yet"): the pool pays in tokens only what it holds free,
the excess is the long's pending claim (the LPs' value goes below zero by exactly it), the
books stay exact, and an honest depositor withdraws in full while the claim waits.
"""

from __future__ import annotations

import ape
import pytest

from marginsim.orders import trade_now
from marginsim.protocol import FeedConfig, MarketConfig, TokenConfig, deploy_protocol
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
MNGO_PERP = MarketConfig("MNGO-PERP", "MNGO", tier_size=1_000_000, skew_scale=SKEW_SCALE_UNITS, oi_cap=CAP_UNITS)


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
    trade_now(ch, market, CAP_UNITS * WAD, 0, 0, sender=attacker)
    trade_now(ch, market, -CAP_UNITS * WAD, 0, 1, sender=attacker)
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


def test_mango__open_interest_cap_holds_on_both_sides(opened, attacker, trader):
    protocol, _, _, _ = opened
    ch, market = protocol.clearinghouse, protocol.markets["MNGO-PERP"]
    state = ch.market_state(market)
    assert int(state.long_oi) == int(state.short_oi) == CAP_UNITS * WAD
    deposit(protocol, trader, "USDC", 50_000 * USDC)
    for sender, subaccount in ((attacker, 0), (trader, 0)):
        with ape.reverts("clearinghouse: open interest cap"):
            trade_now(ch, market, 1, 0, subaccount, sender=sender)
    for sender, subaccount in ((attacker, 1), (trader, 0)):
        with ape.reverts("clearinghouse: open interest cap"):
            trade_now(ch, market, -1, 0, subaccount, sender=sender)


def test_mango__unrealised_profit_cannot_be_withdrawn_past_initial_margin(opened, chain, deployer, keeper, attacker):
    protocol, long, short, _ = opened
    ch, lens, usdc, market = protocol.clearinghouse, protocol.lens, protocol.settlement, protocol.markets["MNGO-PERP"]
    pump = Pump(protocol, chain, deployer, keeper, [long, short])
    answers = pump_answers()

    pump.round(answers[0])
    # one +19% round: the long is $38k up, but volatility jumped and the initial margin with it
    equity, _, initial = ch.margin(long)
    assert int(equity) > 20_000 * WAD + 30_000 * WAD and int(equity) < int(initial)
    assert int(lens.max_withdraw(long, usdc)) == 0
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(usdc, 1, 0, sender=attacker)

    for answer in answers[1:]:
        pump.round(answer)
    assert answers[-1] >= 10 * ENTRY_ANSWER  # tenfold
    assert int(ch.market_mask(short)) == 0  # the short was liquidated on the way up
    equity, _, initial = ch.margin(long)
    balance = int(ch.settlement(long))
    # $2M of paper profit and ample margin, but only the deposited balance can leave
    assert int(equity) - int(initial) > 500_000 * WAD
    assert int(lens.max_withdraw(long, usdc)) == balance < 20_000 * USDC
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, balance + 1, 0, sender=attacker)
    # the cap still holds at the top: the attacker cannot add to the long, nor re-open a short
    with ape.reverts("clearinghouse: open interest cap"):
        trade_now(ch, market, 1, 0, 0, sender=attacker)


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


def test_mango__profit_taken_at_the_top_is_bounded_by_the_cap(opened, chain, deployer, keeper, attacker):
    protocol, long, short, _ = opened
    ch, market = protocol.clearinghouse, protocol.markets["MNGO-PERP"]
    cost = int(ch.positions(long, market).cost)
    pump = Pump(protocol, chain, deployer, keeper, [long, short])
    for answer in pump_answers():
        pump.round(answer)
    top = pump_answers()[-1] * 10**10  # WAD
    pool_before, debt_before, pending_before = int(ch.pool_balance()), int(ch.total_debt()), int(ch.total_pending())
    tx = trade_now(ch, market, -CAP_UNITS * WAD, 0, 0, sender=attacker)
    trade = tx.events.filter(ch.Trade)[0]
    realised, fee = int(trade.realised_pnl), int(trade.fee)
    # the cap's bound: the capped size times the move, plus the skew premium a capped skew earns
    # on the way out (entry cost already included the premium paid on the way in)
    bound_wad = CAP_UNITS * top * (2 * SKEW_SCALE_UNITS + CAP_UNITS) // (2 * SKEW_SCALE_UNITS) - cost
    assert 0 < realised * SETTLEMENT_TO_WAD <= bound_wad
    assert realised > 2_000_000 * USDC  # a real attack: the bound is what limits it
    # the profit less the closing fee is more than the pool holds free (its balance less what
    # is lent and what earlier claims wait for): the pool pays in tokens exactly what it holds
    # free, and the rest is the long's pending claim
    assert fee > 0
    free = pool_before - debt_before - pending_before
    assert 0 < free < realised - fee
    claims = tx.events.filter(ch.ProfitPending)
    assert len(claims) == 1 and int(claims[0].account) == long
    assert int(claims[0].amount) == int(ch.pending(long)) == realised - fee - free
    assert int(ch.total_pending()) == pending_before + realised - fee - free
    assert int(ch.pool_balance()) == pool_before - realised + fee + int(claims[0].amount)


def test_mango__profit_taken_at_the_top__the_loss_beyond_the_pool_is_booked_not_hidden(
    opened, chain, deployer, keeper, attacker, other_trader
):
    """Known limitation (README, "Not built yet"): the cap is in base units and not tied to the
    pool's size, so an 11.4x pump on a $1M pool lets the long realise more than the pool holds.
    The profit is credited in full (capping it at the pool's realised balance was tried and let
    LPs front-run winners), but paid in tokens only up to what the pool holds free: the excess
    is the long's pending claim, paid as tokens come back to the pool, so the attacker cannot
    withdraw tokens that back other users' balances. What the test pins: the books stay exact,
    the loss (the claims pending less the pool's balance: the LPs' value below zero) is exactly
    the attacker's unpaid claim, within the cap's bound less the pool's capital, and an honest
    depositor withdraws its balance in full."""
    protocol, long, short, bystander = opened
    ch, usdc, market = protocol.clearinghouse, protocol.settlement, protocol.markets["MNGO-PERP"]
    pump = Pump(protocol, chain, deployer, keeper, [long, short])
    for answer in pump_answers():
        pump.round(answer)
    top = pump_answers()[-1] * 10**10
    cost = int(ch.positions(long, market).cost)
    trade_now(ch, market, -CAP_UNITS * WAD, 0, 0, sender=attacker)
    claim = int(ch.pending(long))
    assert claim > 0
    takeable = min(int(ch.settlement(long)), int(ch.settlement_held()))
    ch.withdraw(usdc, takeable, 0, sender=attacker)
    assert int(ch.pending(long)) == claim  # nothing in the pool is free to pay it
    for answer in return_answers(pump_answers()[-1]):
        pump.round(answer)

    accounts = [long, short, bystander]
    books = accounting(protocol, accounts)
    assert books.held == books.settlement_held == books.internal  # exact, nothing hidden
    assert books.pool >= 0  # the pool never paid out more than it held
    loss = int(ch.total_pending()) - int(ch.pool_balance())
    assert loss > 0
    assert loss == claim == int(ch.pending(long))  # the pool's whole deficit is the attacker's unpaid claim
    bound_wad = CAP_UNITS * top * (2 * SKEW_SCALE_UNITS + CAP_UNITS) // (2 * SKEW_SCALE_UNITS) - cost
    assert loss * SETTLEMENT_TO_WAD <= bound_wad - (POOL_USD - 20_000) * USDC * SETTLEMENT_TO_WAD
    claims = sum(max(int(ch.settlement(a)), 0) + int(ch.pending(a)) for a in accounts) + books.insurance
    assert claims - books.held == loss + int(ch.total_debt())  # the shortfall is the pool's deficit
    # the tokens cover every balance that can be withdrawn now: the honest depositor is paid in full
    assert books.held >= sum(max(int(ch.settlement(a)), 0) for a in accounts) + books.insurance
    wallet = int(usdc.balanceOf(other_trader))
    ch.withdraw(usdc, int(ch.settlement(bystander)), 0, sender=other_trader)
    assert int(usdc.balanceOf(other_trader)) - wallet == 100_000 * USDC
    # and the attacker's claim still cannot be paid with it
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, 1, 0, sender=attacker)
    assert int(ch.pending(long)) == claim
