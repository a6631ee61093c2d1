"""Black Thursday, 2020-03-12: ETH fell from $195 to $101 within the day while gas ran past 200
gwei; Maker's keepers were priced out, 36% of its auctions cleared at zero bids and it lost 5.67M DAI.

What marginsim does about it: a liquidation that closes a whole position pays its keeper a tip
from the insurance fund even when the account has no equity left (so an underwater account is
worth closing at any gas the tip covers); an account's collateral is sold only at the oracle
price less the token's listed discount (never a bid of zero); and whatever no collateral
covers is bad debt, paid by the insurance fund and then the pool, each step an event.

What this test proves, on the real day: the 10-minute bars of ../shared/data are replayed
through `marginsim.feeds` and published as Chainlink rounds (2% deviation or the hour: 120
rounds, which keeps the file near a minute), and the day's 90th-percentile gas prices drive two
gas-aware keepers built on the simulator's `Keeper` (one censored through both crash legs, the
other 30 minutes late; both also buy the collateral of an account whose debt outgrew it after
its positions were closed, when the discount beats the gas). Then every collateral sale paid
exactly amount * oracle price * (1 - discount), rounded up against the buyer; every BadDebt
event equals the account's shortfall (its balance once positions and collateral are gone, and
the contract's own negative equity before the close, marked at the close's fill: a whole close
fills at the skew-premium price, as a trade would) and insurance draw + socialised equals it;
the insurance fund and the pool moved by exactly those amounts, the penalties (the part paid
out of a positive balance to the fund, the part only owed to the pool), the keepers' pay
(out of the fund, then the pool's free liquidity) and the interest on the debts carried (the
pool's, to the token unit; the keepers mirror it too); underwater closes paid the capped tip on
the notional at the oracle price; nothing underwater is left unbooked at the end; and tokens held
equal internal balances to the wei.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from marginsim import feeds, risk
from marginsim.keeper.mirror import Keeper
from marginsim.orders import trade_now
from marginsim.protocol import FeedConfig, MarketConfig, TokenConfig, deploy_protocol
from marginsim.sim.scenario import KeeperSpec
from tests.e2e.incidents import (
    MAX_UINT,
    SETTLEMENT_TO_WAD,
    USDC,
    WAD,
    accounting,
    collateral_accounting,
    deposit_usd,
    events,
    fund_liquidity,
    move_clock_to,
    size_for_notional,
    trimmed_config,
)

pytestmark = pytest.mark.slow  # the replay takes about 90 s: make test-slow (README "Tests")

PRICE_FILE = "eth_usd_10min_2020-03-12.csv"
GAS_FILE = "gas_price_10min_2020-03-12.csv"
DEVIATION = 0.02  # Chainlink deviation threshold of the replayed feed
HEARTBEAT = 3_600
BLOCK_SECONDS = 12
POOL_USD = 2_000_000
INSURANCE_USD = 1_500  # small on purpose: the day's bad debt runs past it and is socialised
# the two legs of the crash (seconds after 00:00 UTC): 10:30-13:30 and 23:00-24:00
CRASH_LEGS = ((37_800, 48_600), (82_800, 86_400))
KEEPERS = (
    KeeperSpec("censored", delay_blocks=0, censored=CRASH_LEGS),
    KeeperSpec("late", delay_blocks=150),  # 30 minutes behind every account
)


@dataclass(frozen=True)
class TraderPlan:
    name: str
    collateral: str  # "USDC" or "WETH"
    collateral_usd: int
    leverage: float  # notional / haircut collateral value; negative = short


TRADERS = (
    TraderPlan("usdc long 12x", "USDC", 5_000, 12),
    TraderPlan("usdc long 8x", "USDC", 20_000, 8),
    TraderPlan("usdc long 5x", "USDC", 40_000, 5),
    TraderPlan("usdc long 3x", "USDC", 60_000, 3),
    TraderPlan("weth long 5x", "WETH", 20_000, 5),
    TraderPlan("weth long 3x", "WETH", 50_000, 3),
    TraderPlan("weth long 2x", "WETH", 30_000, 2),
    TraderPlan("usdc short 5x", "USDC", 20_000, -5),
    TraderPlan("small usdc long 4x", "USDC", 1_500, 4),
)


@dataclass
class LiquidationDone:
    keeper: str
    time: int  # seconds after 00:00 UTC
    account: int
    gas_gwei: float
    settlement_before: int  # as the liquidation's block reads it: a debt with its interest to that block
    interest: int  # what that interest added to a debt since it was written (the pool's, booked by the close)
    insurance_before: int
    equity_before: int  # the contract's equity at the liquidation's block (mirrored exactly)
    price: int  # the oracle price the engine read, WAD (the event's price is the fill)
    closed_notional: int  # WAD, at the oracle price (as the engine's penalty and tip)
    premium: int  # the closed position marked at the fill less marked at the oracle price, WAD
    event: Any
    bad_debt: Any | None
    planned: risk.LiquidationOutcome  # the engine's rule (marginsim.risk) on the mirror at that block


@dataclass
class SaleDone:
    account: int
    price: int  # oracle price of the collateral at the sale, WAD
    settlement_before: int  # as the sale's block reads it: the debt with its interest to that block
    interest: int  # what that interest added to the debt since it was written (the pool's, booked by the sale)
    event: Any
    bad_debt: Any | None


@dataclass
class Replay:
    protocol: Any
    accounts: dict[str, int]
    answers: list[int]  # every published round, 8 decimals
    pool_start: int
    insurance_start: int
    liquidations: list[LiquidationDone] = field(default_factory=list)
    sales: list[SaleDone] = field(default_factory=list)
    first_liquidatable: dict[int, int] = field(default_factory=dict)  # account -> seconds


@pytest.fixture(scope="module")
def replay(project, chain, accounts) -> Replay:
    signers = list(accounts)
    deployer, lp = signers[0], signers[4]
    keeper_signers = [signers[3], signers[7]]
    trader_signers = signers[10 : 10 + len(TRADERS)]

    path = feeds.replay_path(feeds.ReplayConfig(feeds.data_file(PRICE_FILE), step_seconds=60))
    rounds = feeds.publish_rounds(
        zip(path.timestamps, path.prices, strict=True),
        feeds.PublisherConfig(deviation_threshold=DEVIATION, heartbeat_seconds=HEARTBEAT),
    )
    gas = feeds.read_gas_prices(feeds.data_file(GAS_FILE))
    day_start = rounds[0].round_time

    weth = TokenConfig("WETH", 18, 0.85, 1_000_000, 0.05, FeedConfig(rounds[0].answer / 10**8))
    protocol = deploy_protocol(project, deployer, trimmed_config((weth,), (MarketConfig("ETH-PERP", "WETH"),)))
    ch, usdc = protocol.clearinghouse, protocol.settlement
    fund_liquidity(protocol, lp, deployer, POOL_USD, INSURANCE_USD)
    for signer in keeper_signers:
        usdc.mint(signer, 10_000_000 * USDC, sender=signer)
        usdc.approve(ch, MAX_UINT, sender=signer)

    # traders open at the day's first price
    opened: dict[str, int] = {}
    for plan, signer in zip(TRADERS, trader_signers, strict=False):
        account = deposit_usd(protocol, signer, plan.collateral, plan.collateral_usd)
        weight = 1 if plan.collateral == "USDC" else 0.85
        size = size_for_notional(protocol, "ETH-PERP", int(plan.collateral_usd * weight * abs(plan.leverage)))
        trade_now(ch, protocol.markets["ETH-PERP"], size if plan.leverage > 0 else -size, 0, 0, sender=signer)
        opened[plan.name] = account

    result = Replay(protocol, opened, [r.answer for r in rounds], int(ch.pool_balance()), int(ch.insurance_balance()))
    market = _MarketReader(protocol)
    keepers = [Keeper(spec, signer, protocol) for spec, signer in zip(KEEPERS, keeper_signers, strict=False)]
    _observe(keepers, set(opened.values()))
    chain_start = chain.pending_timestamp
    protocol.publish("WETH", rounds[0].answer, deployer)  # the first round, fresh at the replay's start

    for rnd in rounds[1:]:
        t = rnd.round_time - day_start
        move_clock_to(chain, chain_start + t)
        protocol.publish("WETH", rnd.answer, deployer)
        # every keeper mirrors every account off-chain (marginsim.risk, exact to the contract)
        views, collateral = market.views()
        timestamp = chain.pending_timestamp
        mirror = keepers[0]
        in_trouble = []
        for account in opened.values():
            equity, maintenance, _ = risk.margin(mirror.snapshot(account, views, collateral, timestamp))
            if equity < maintenance:
                result.first_liquidatable.setdefault(account, t)
                in_trouble.append(account)
        if not in_trouble:
            for keeper in keepers:
                keeper.first_liquidatable_block.clear()
            continue

        gas_gwei = gas.at(rnd.round_time).p90_gwei
        eth_usd = rnd.answer / 10**8
        sim_block = t // BLOCK_SECONDS
        for keeper in keepers:
            views, collateral = market.views()
            found = keeper.candidates(views, collateral, timestamp, sim_block)
            if keeper.spec.censored_at(t):
                continue  # it sees them, but its transactions do not land
            for candidate in found:
                # the engine's own rule on the mirror: what it will close and pay the keeper
                outcome = keeper.plan(candidate, views[market.id], market.liquidation_params, int(ch.insurance_balance()))
                reward = keeper.model.reward_usd(outcome, SETTLEMENT_TO_WAD)
                if reward < keeper.model.gas_cost_usd(keeper.model.gas_estimate, gas_gwei, eth_usd):
                    continue  # priced out by gas this round
                _liquidate(result, keeper, candidate.account, market, t, gas_gwei)
                _observe(keepers, {candidate.account})
                views, collateral = market.views()
            # positions gone, debt left against collateral worth less than it: buy the
            # collateral at its discount when that beats the gas
            for account in in_trouble:
                held = keeper.accounts[account]
                if held.positions or not held.collateral or held.settlement >= 0:
                    continue
                equity, _, _ = risk.margin(keeper.snapshot(account, views, collateral, timestamp))
                if equity >= 0:
                    continue
                unit, _weight, price = collateral[market.weth_slot]
                value = min(held.collateral[market.weth_slot] * price // unit, -held.settlement * SETTLEMENT_TO_WAD)
                if value * market.discount // WAD / WAD < keeper.model.gas_cost_usd(SALE_GAS, gas_gwei, eth_usd):
                    continue
                _sell_collateral(result, keeper, account, market)
                _observe(keepers, {account})
                views, collateral = market.views()
    return result


SALE_GAS = 110_000  # what a liquidate_collateral call costs, roughly


class _MarketReader:
    """The ETH-PERP market and WETH collateral as the keepers read them: static parameters once,
    the price, volatilities and open interest on demand (three calls)."""

    def __init__(self, protocol: Any):
        ch, engine = protocol.clearinghouse, protocol.liquidation_engine
        self.protocol = protocol
        self.id = protocol.markets["ETH-PERP"]
        self.weth = protocol.tokens["WETH"]
        self.params = risk.MarketParams(*[v if isinstance(v, int) else str(v) for v in ch.markets(self.id)])
        self.weth_slot = int(ch.collateral_slot(self.weth))
        col = ch.collaterals(self.weth_slot)
        self.unit, self.weight, self.discount = int(col.unit), int(col.weight), int(col.liquidation_discount)
        # buffer, full-liquidation health, dust notional and underwater tip: the engine's parameters
        self.liquidation_params = risk.read_liquidation_params(engine)

    def views(self, pending: bool = False) -> tuple[dict[int, risk.MarketView], dict[int, tuple[int, int, int]]]:
        """`pending`: read in the block the next transaction lands in, not the latest one."""
        at = {"block_id": "pending"} if pending else {}
        ch, oracle = self.protocol.clearinghouse, self.protocol.oracle
        price = int(oracle.price(self.weth, **at))
        sigma, sigma_mm = oracle.volatilities(self.weth, **at)
        state = risk.MarketState(*[int(v) for v in ch.market_state(self.id, **at)])
        return (
            {self.id: risk.MarketView(self.params, state, price, int(sigma), int(sigma_mm))},
            {self.weth_slot: (self.unit, self.weight, price)},
        )


def _observe(keepers: list[Keeper], touched: set[int]) -> None:
    """Both keepers index the same events: load each touched account once and share it. A
    transaction also moves the debt index's inputs (debts grow without an event): one read,
    shared."""
    keepers[0].observe(touched)
    for keeper in keepers[1:]:
        for account in touched:
            keeper.accounts[account] = keepers[0].accounts[account]
    debt = risk.read_debt_view(keepers[0].protocol.clearinghouse)
    for keeper in keepers:
        keeper.read_debt(debt)


def _settlement_at(debt: risk.DebtView, timestamp: int, raw: int, written: int, index_at: int) -> tuple[int, int]:
    """(the account's settlement balance as a transaction landing at `timestamp` reads it, the
    interest a debt gained since it was written), from `raw = settlement(account)`,
    `(written, index_at) = debt_of(account)` and `debt`, all read at the latest block before it."""
    if written == 0:
        return raw, 0
    balance = debt.balance(-written, index_at, timestamp)
    return balance, -balance - written


def _liquidate(result: Replay, keeper: Keeper, account: int, market: _MarketReader, t: int, gas_gwei: float) -> None:
    ch = result.protocol.clearinghouse
    raw, insurance_before = int(ch.settlement(account)), int(ch.insurance_balance())
    written, index_at = (int(v) for v in ch.debt_of(account))
    debt = risk.read_debt_view(ch)  # the debt index's inputs as the liquidation starts from them
    keeper.read_debt(debt)
    # read in the pending block, the one the liquidation lands in: the maintenance volatility
    # may rise with the clock, so a read in the latest block can be a second stale
    views, collateral = market.views(pending=True)
    size = keeper.accounts[account].positions[market.id][0]
    tx = result.protocol.liquidation_engine.liquidate(account, market.id, MAX_UINT, sender=keeper.signer)
    settlement_before, interest = _settlement_at(debt, int(tx.timestamp), raw, written, index_at)
    # the contract's equity at the liquidation's block: the mirror, funding accrued to that block
    equity, maintenance, _ = risk.margin(keeper.snapshot(account, views, collateral, int(tx.timestamp)))
    snapshot = risk.snapshot_for(views[market.id], size, equity, maintenance, insurance_before)
    planned = risk.liquidation_outcome(snapshot, market.liquidation_params, MAX_UINT, SETTLEMENT_TO_WAD)
    event = events(tx, "Liquidation")[0]
    bad = events(tx, "BadDebt")
    # what the fill adds to (or takes from) the closed size's value at the oracle price, each
    # marked as the contract marks it (floored, net of the funding index at that block)
    price, index = int(snapshot.price), risk.funding_index_now(views[market.id], int(tx.timestamp))
    closed = -int(event.size_closed)  # in the sign of the position
    premium = risk.signed_mul_floor(closed, int(event.price) - index) - risk.signed_mul_floor(closed, price - index)
    result.liquidations.append(
        LiquidationDone(
            keeper.spec.name,
            t,
            account,
            gas_gwei,
            settlement_before,
            interest,
            insurance_before,
            equity,
            price,
            risk.mul_up(abs(int(event.size_closed)), price),
            premium,
            event,
            bad[0] if bad else None,
            planned,
        )
    )


def _sell_collateral(result: Replay, keeper: Keeper, account: int, market: _MarketReader) -> None:
    ch = result.protocol.clearinghouse
    price, raw = int(result.protocol.oracle.price(market.weth)), int(ch.settlement(account))
    written, index_at = (int(v) for v in ch.debt_of(account))
    debt = risk.read_debt_view(ch)
    tx = result.protocol.liquidation_engine.liquidate_collateral(account, market.weth, MAX_UINT, sender=keeper.signer)
    settlement_before, interest = _settlement_at(debt, int(tx.timestamp), raw, written, index_at)
    bad = events(tx, "BadDebt")
    result.sales.append(
        SaleDone(account, price, settlement_before, interest, events(tx, "CollateralLiquidation")[0], bad[0] if bad else None)
    )


def _penalty_and_pay_routes(done: LiquidationDone) -> tuple[int, int]:
    """(the part of the penalty the account could only owe, which the pool lends it; the part of
    the keeper's pay the insurance fund paid), in token units, as the Clearinghouse books a
    liquidation: the pool pays the owed fraction of the reward out of its free liquidity, the
    fund the rest and the tip, never more than the keeper was paid in all."""
    e = done.event
    penalty, balance = int(e.penalty), done.settlement_before + int(e.realised_pnl)
    owed = min(max(penalty - balance, 0), penalty)
    reward = int(done.planned.keeper_reward)  # what the engine asked for
    reward_owed = reward * owed // penalty if owed else 0
    from_insurance = min(reward - reward_owed, done.insurance_before + penalty - owed)
    return owed, min(from_insurance, int(e.keeper_reward))


# ------------------------------------------------------------------------------------ tests


def test_black_thursday__the_day_is_replayed_with_delayed_keepers_at_extreme_gas(replay):
    # ETH halves on the replayed feed: $195.21 at the open, $101.01 at the low (the bar's low
    # is a sample of the path, and 101.01 is more than 2% below every earlier round)
    assert replay.answers[0] == 195_21_000_000
    assert min(replay.answers) == 101_01_000_000
    # both keepers were out or late when it mattered: some account waited at least 30 minutes
    delays = [d.time - replay.first_liquidatable[d.account] for d in replay.liquidations]
    assert max(delays) >= 1_800
    # and liquidations landed while gas was above 100 gwei (the 90th percentile of the bar)
    assert any(d.gas_gwei > 100 for d in replay.liquidations)
    # the crash sent accounts under water: some liquidations closed accounts with no equity
    assert any(d.equity_before <= 0 for d in replay.liquidations)


def test_black_thursday__every_close_is_the_rules_least_close(replay):
    """Each liquidation of the day closed and paid exactly what marginsim.risk's rule (the
    engine's: least close across size tiers, whole below full_liquidation_health or when the
    rest is dust, the penalty, the keeper's share or the tip) says, from the mirror at its block."""
    assert replay.liquidations
    for done in replay.liquidations:
        e, planned = done.event, done.planned
        assert abs(int(e.size_closed)) == planned.close, done.account
        assert (int(e.penalty), int(e.keeper_reward), int(e.health_before)) == (
            planned.penalty,
            planned.keeper_reward,
            planned.health_before,
        ), done.account
    # partial closes happened on the day, and each left its account at least 1 + buffer healthy
    buffer = replay.protocol.liquidation_engine.liquidation_buffer()
    partial = [d for d in replay.liquidations if not d.planned.whole]
    assert partial
    for done in partial:
        assert int(done.event.health_after) >= WAD + buffer


def test_black_thursday__every_collateral_sale_is_at_oracle_less_discount__never_a_zero_bid(replay):
    protocol = replay.protocol
    ch = protocol.clearinghouse
    collateral = ch.collaterals(ch.collateral_slot(protocol.tokens["WETH"]))
    unit, discount = int(collateral.unit), int(collateral.liquidation_discount)
    assert discount == 5 * 10**16  # the listed 5%
    assert replay.sales, "the crash left WETH-backed accounts in debt: their collateral must be sold"
    for sale in replay.sales:
        amount, paid = int(sale.event.amount), int(sale.event.paid)
        discounted = sale.price * (WAD - discount) // WAD
        # exactly amount * oracle * (1 - discount), rounded up against the buyer
        assert paid == risk.ceil_div(amount * discounted, unit * SETTLEMENT_TO_WAD)
        assert paid > 0
        # never below the discounted value, and never more than the debt it repays (plus rounding)
        assert paid * SETTLEMENT_TO_WAD * unit >= amount * discounted
        assert paid <= -sale.settlement_before + 1
        # Maker's zero bids: collateral went for 0% of its value; here, 95% of it at the oracle
        value_wad = amount * sale.price // unit
        assert paid * SETTLEMENT_TO_WAD * 100 >= value_wad * 95


def test_black_thursday__bad_debt_is_booked_equal_to_the_shortfall(replay):
    protocol = replay.protocol
    ch = protocol.clearinghouse
    booked = []
    for done in replay.liquidations:
        if done.bad_debt is None:
            continue
        e, bad = done.event, done.bad_debt
        # the shortfall is the balance the close left: before + realised PnL - penalty
        shortfall = -(done.settlement_before + int(e.realised_pnl) - int(e.penalty))
        assert int(bad.shortfall) == shortfall > 0
        # and it is the account's equity before the close, marked at the close's fill (the oracle
        # price plus the premium a whole close moves), less the penalty, in whole token units
        assert int(e.price) == done.planned.fill
        assert shortfall == risk.ceil_div(-(done.equity_before + done.premium), SETTLEMENT_TO_WAD) + int(e.penalty)
        if done.equity_before <= 0:  # no penalty from nothing
            assert int(e.penalty) == 0
        else:  # the penalty is at most the equity at the oracle price: a close that grows the
            # skew pays a premium, and the debt left is at most that premium
            assert shortfall <= risk.ceil_div(-done.premium, SETTLEMENT_TO_WAD)
        # settled after the penalty and the keeper's pay are booked: the fund first
        owed, from_insurance = _penalty_and_pay_routes(done)
        fund_left = done.insurance_before + int(e.penalty) - owed - from_insurance
        assert int(bad.covered_by_insurance) == min(shortfall, fund_left)
        booked.append(bad)
    for sale in replay.sales:
        if sale.bad_debt is None:
            continue
        shortfall = -(sale.settlement_before + int(sale.event.paid))
        assert int(sale.bad_debt.shortfall) == shortfall > 0
        booked.append(sale.bad_debt)
    assert booked, "the crash left debt no collateral covers: it must be booked"
    for bad in booked:
        assert int(bad.covered_by_insurance) + int(bad.socialised) == int(bad.shortfall)
        assert int(ch.settlement(bad.account)) == 0  # the debt is cleared once booked
    total = sum(int(b.shortfall) for b in booked)
    assert total == int(ch.total_bad_debt())
    covered = sum(int(b.covered_by_insurance) for b in booked)
    socialised = sum(int(b.socialised) for b in booked)
    assert covered + socialised == total
    # the insurance fund ran dry and the pool took the rest (both routes are exercised)
    assert covered > 0 and socialised > 0

    # insurance: + each penalty paid out of a positive balance, - each keeper's pay it funded,
    # - what it covered; to the token unit
    routes = [_penalty_and_pay_routes(d) for d in replay.liquidations]
    to_insurance = sum(int(d.event.penalty) - owed - paid for d, (owed, paid) in zip(replay.liquidations, routes, strict=True))
    assert int(ch.insurance_balance()) == replay.insurance_start + to_insurance - covered
    # pool: pays every realised profit, receives every realised loss, lends each penalty an
    # account can only owe (holding the claim), pays keepers the fund could not, absorbs what
    # was socialised, and earns the interest each debt had gained when a close or a sale
    # rewrote it (the only transactions that touch a debt on this day)
    realised = sum(int(d.event.realised_pnl) for d in replay.liquidations)
    to_pool = sum(owed - (int(d.event.keeper_reward) - paid) for d, (owed, paid) in zip(replay.liquidations, routes, strict=True))
    interest = sum(d.interest for d in replay.liquidations) + sum(s.interest for s in replay.sales)
    assert interest > 0  # debts were carried through the day
    assert int(ch.pool_balance()) == replay.pool_start - realised + to_pool - socialised + interest


def test_black_thursday__underwater_closes_pay_the_keeper_a_tip(replay):
    engine = replay.protocol.liquidation_engine  # the replay's own deployment, not the shared fixture's
    tip_rate = int(engine.underwater_tip_rate())
    underwater = [d for d in replay.liquidations if d.equity_before <= 0]
    assert underwater
    for done in underwater:
        # no equity, no penalty: the keeper is paid the tip on the notional closed at the oracle
        # price (not the fill), from the insurance fund, as capped (at most the fund, which pays
        # it all)
        tip = min(min(risk.mul_down(done.closed_notional, tip_rate), 1_000 * WAD) // SETTLEMENT_TO_WAD, done.insurance_before)
        assert int(done.event.penalty) == 0
        assert int(done.event.keeper_reward) == tip
        assert _penalty_and_pay_routes(done) == (0, tip)


def test_black_thursday__nothing_underwater_is_left_unbooked(replay):
    protocol = replay.protocol
    ch = protocol.clearinghouse
    for name, account in replay.accounts.items():
        equity = ch.margin(account)[0]
        if int(ch.market_mask(account)) == 0 and int(ch.collateral_mask(account)) == 0:
            assert int(ch.settlement(account)) >= 0, name  # a debt without backing is booked
        # an account still open is not hiding a loss beyond its equity
        assert int(equity) >= 0, f"{name}: equity {int(equity) / WAD:.2f} USD left unbooked"


def test_black_thursday__tokens_equal_internal_balances(replay):
    protocol = replay.protocol
    ch = protocol.clearinghouse
    accounts = list(replay.accounts.values())
    books = accounting(protocol, accounts)
    assert books.held == books.settlement_held == books.internal
    # the tokens cover every positive claim except what is owed by accounts still in debt,
    # and each such debt is backed by the account's own equity (solvent after the day)
    assert books.held == books.positive_claims - int(ch.total_debt())
    assert books.pool >= 0
    for account in accounts:
        if int(ch.settlement(account)) < 0:
            assert int(ch.margin(account)[0]) >= 0
    for symbol, held, total, balances in collateral_accounting(protocol, accounts):
        assert held == total == balances, symbol
