"""Stateful invariant fuzzing of the whole protocol (issue 4), in-process on titanoboa.

A hypothesis `RuleBasedStateMachine` drives OracleRouter, Clearinghouse, LiquidationEngine,
Configurator, LiquidityPool, Orders and the mock feeds and tokens through every external mutating
function, from a seeded state (tests/invariants/boa_protocol.py: a $2M pool, a $20,000
insurance fund, five trader accounts holding USDC, WETH (18 decimals), WBTC (8) and USDT (6)
with positions from 4x to 9x). Each rule first predicts its outcome with an exact Python model of the contract
(`Model` below, built on `marginsim.risk`): the revert message, which must be one of the
documented messages, or the complete Clearinghouse ledger afterwards, which must then equal
the contract's storage to the wei. Reverts are never swallowed: a message the model did not
predict fails the run.

A negative settlement balance is a loan from the pool (issue 9, item 1): the ledger holds each
debt as written with the debt index it was written at, and the index as last accrued, so it
moves only when the contract writes; the model reads a debt with its interest to now
(`marginsim.risk.debt_index_now` / `debt_now`), accrues the index where the contract does
(every write of a balance that was or becomes negative, LP deposits and withdrawals, new debt
terms), charges the interest to the pool, nets a claim against a new debt, and counts a debt's
initial margin (debt_imr). A realised profit the pool cannot pay out of what it holds free is
the account's pending claim (ProfitPending): equity as the balance is, paid into the balance at
its next settlement withdrawal as far as the pool then holds tokens, and a liability of the
pool ahead of its LPs. Orders refuses at commit a risk-adding order of an account in debt while
the debts are above the ceiling ("orders: debt ceiling"), and any risk-adding order that would
take the capital the markets' larger sides need (each one's USD value over its reserve factor,
summed; a side counts what placed orders hold on it from their commit to their end) past the
pool's value ("orders: open interest reserve"); LP withdrawals past that reserve are refused
("pool: open interest reserve"); a debt
above debt_liquidation_ltv of what the account holds puts its collateral up for sale even with
positions open.

Trades take two steps, as on chain (contracts/Orders.vy): the owner commits an order (escrowing
the execution fee, and recording its position), the settlement delay passes, the market's latest
round is re-dated to now (same id and answer, as `marginsim.orders.trade_now`) and the keeper
executes it, and is paid the fee only when it fills. A fill the Clearinghouse refuses (what the
one-step trade reverted with), an order whose round passed (OracleRouter.round_price: a newer
round, or the first round of a new aggregator phase) and one whose position changed since the
commit (a liquidation in between) are predicted as cancellations with that reason, nothing moving
but the fee from escrow to the insurance fund (Clearinghouse.fund_insurance); a market price the
router refuses reverts the execution and the order waits, to be tried again by the next trade in
that market, and its owner's withdrawals are refused ("clearinghouse: order pending") until then.
Orders are cancelled (cancel_order, or replaced by a commit) only once they can no longer fill:
their round passed (forfeited to the insurance fund) or they expired with no round (refunded).

LPs come and go at once (deposit, mint, withdraw, redeem) or by request (issue 9, item 2):
request_deposit escrows the tokens and the execution fee in the pool, request_redeem the shares
and the fee, each recording what they are worth then; from settlement_delay later, for
REQUEST_WINDOW seconds, a keeper executes it at the worse of that and what they are worth at the
execution (and takes the fee), and after the window anyone lapses it (the escrow and the fee
back to its controller). A pool that gates its instant paths (an `instant()` view in its ABI:
`Model.gated`) opens them only while the book is idle: no market with open interest, an entry
cost or an order placed (a debt does not keep it open: no price moves what it counts); otherwise
they revert "pool: book open, request instead" (checked first) and its max* views read 0. The seeded book is
open; `book_goes_idle` closes it.

Invariants, checked after every step:

1. Tokens held == internal balances, to the wei. settlement.balanceOf(clearinghouse) ==
   settlement_held + donations; settlement_held == sum of every account's signed settlement
   balance as written (every storage key, not only the accounts the fuzzer knows) +
   pool_balance + insurance_balance; total_debt == sum of negative balances as written, each
   with the index it was written at; total_pending == sum of the claims, and no account holds a
   claim and a debt at once; per collateral,
   balanceOf(clearinghouse) == collaterals(slot).total + donations == sum of balances; the pool
   holds exactly what was donated to it; Orders holds exactly the fees of the orders still
   waiting, and exactly those orders (with the position each was placed against), and
   open_orders counts them per account (the withdrawal lock); long/short open interest and
   total_cost are the sums of the positions; masks match non-zero positions and balances.
2. No owner action leaves its account below initial margin: after a successful withdrawal or
   risk-adding trade, equity >= initial (the contract's check). A pure reduction is never
   refused; it leaves the account at or above initial margin whenever it was there before.
   (Not so on a market whose fee exceeds its initial rate, which the Configurator accepts:
   `test_reduce__fee_above_initial_rate__...` below, an expected failure until it is bounded.)
3. A healthy account (equity >= maintenance) cannot be liquidated: "liquidation: account
   healthy". A liquidation closes exactly what `marginsim.risk.liquidation_outcome` says (the
   least close of `risk.least_close_for`, capped by max_size, all of it below
   full_liquidation_health or when the remainder is dust) and charges and pays its penalty and
   keeper reward, from the Clearinghouse's `liquidation_snapshot`, which must equal
   `risk.snapshot_for` of the model's state. A partial close never lowers health (read back
   from the contract), and when max_size did not bind it restores health >= 1 + buffer. An
   honest keeper can always liquidate an unhealthy account whose prices are live.
4. Owner + liquidator gain nothing from a liquidation, whoever the liquidator is (the `liquidate`
   rule also liquidates from the owner's second address): the account's equity change (before
   any bad-debt write-off) plus the liquidator's reward (paid in tokens, or credited to its
   account 0 when the Clearinghouse holds fewer tokens) is <= 0, and < 0 when a penalty was
   charged, except for the underwater tip, which is documented and bounded: then the gain is at
   most the tip's top-up from the insurance fund (<= underwater_tip_rate * notional < base_mmr
   * notional, README "Liquidation").
5. A round trip creates no value: opening and closing it by the next order, at the same price,
   leaves the account's equity at most what it would be without the round trip (funding to the
   open as it was) plus the funding the opened size earned in between (the one block of the
   one-step trade is gone: the close's order fills settlement_delay later).
6. Accounts + pool + insurance conserve value. With V_a = (s_a + c_a) * S + sum_m (floor(size *
   (p_m - F_m)) - cost) each account's equity without its collateral (s_a its balance as
   written, c_a its pending claim, S = 10**12 WAD per token unit, p_m the feed's price, F_m the
   funding index now), the pool marked at the same prices (pool_balance - total_pending) * S -
   sum_m (ceil(net_m * (p_m - F_m)) - total_cost_m), and the insurance
   fund insurance * S (forfeited execution fees fund it too): 0 <= settlement_held * S -
   (sum_a V_a + pool + insurance) < sum_m (n_m + 1) wei, n_m the open positions in market m.
   Derivation: sum_a s_a + pool_balance + insurance == settlement_held exactly (1), sum of
   costs == total_cost, sum of sizes == net, so the difference is sum_m (ceil(net x) - sum_a
   floor(size_a x)), with each floor within 1 wei below its exact value and the ceil within 1
   wei above. And settlement_held moves only by the token flows each step makes (deposits,
   withdrawals, liquidators' rewards, collateral sales, insurance funding, forfeited execution
   fees, LP deposits and withdrawals), checked to the wei. So trades, funding, price moves,
   liquidations and bad debt only move value between accounts, pool and fund.
   The pool's totalAssets equals this mark less the skew premium of the exit, rounded down.
7. Recorded bad debt equals the shortfall: total_bad_debt rises only when an account is left
   with no positions and no collateral, by exactly its negative balance then, which the
   insurance fund pays first and the pool the rest; no account is ever left with no
   positions, no collateral and a negative balance (hidden bad debt).
8. Settlement tokens cover what is owed in tokens (issue 9's invariant 8): settlement_held and
   the Clearinghouse's real token balance are each >= the sum of every positive settlement
   balance + the insurance fund (so no profit, LP or keeper is paid with tokens that back
   them; equivalently pool_balance >= total_debt); and every honest account (a positive
   balance or a claim the pool can pay, no debt, no positions, no order open) can withdraw its
   free balance (all of it, with what the pool pays of its claim first): a dry run of Clearinghouse.withdraw, rewound, which must
   succeed, pay exactly that and leave the ledger the model predicts (unless a price of its
   collateral is refused: the margin check reads it).
9. An LP withdrawal leaves every market's larger side, with the open interest placed orders
   hold, within its open-interest reserve (issue 9, item 5): LiquidityPool.reserve equals its
   risk mirror and need <= value. Every step: LiquidityPool.held equals the model's holds (the
   ledger), so no order leaves a hold behind; maxDeposit, maxMint, maxWithdraw and maxRedeem
   are the model's (a gated pool: 0 while the book is open, and `instant()` is the model's idle
   book).
10. Each market's side, with the open interest placed orders hold on it, is within its oi_cap
   after every step (the commit and the Configurator count the holds), so no fill is ever
   refused "clearinghouse: open interest cap" and the pause and reduce-only refusals, the only
   ones refunded, meet only orders placed before the switch.
11. The pool holds exactly the escrow of the LP requests waiting (issue 9, item 2), which equal
   the model's (read from storage, every step): settlement tokens == the sum over deposit
   requests of assets + fee, plus the sum over redemption requests of their fee (plus what was
   donated to it); its own shares == the sum of the shares the redemption requests escrow
   (and a gated pool's `open_requests` == their count). An
   execution never mints more shares than its request recorded (a deposit) and never pays more
   than it recorded (a redemption): it pays the worse of the two values, exactly the model's.
   A capped execution (the value moved in the LP's favour since the request) keeps the excess
   in the pool as shares the Clearinghouse holds (`kept`, exactly the model's) and leaves the
   share price where it was, to the rounding in the pool's favour (review M1).

Profiles (environment variable MARGINSIM_FUZZ): unset or "ci": 2,000 steps, derandomized
(reproducible); "long": 100,000 steps, random. MARGINSIM_FUZZ_STEPS=N overrides the number of
steps of either. The run prints the steps executed and a table of every function called with
its outcomes and the paths taken (interest charged, claims pending, paid and netted, sales
over the loan-to-value limit, honest withdrawals), and asserts both.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import astuple, dataclass, field, replace
from typing import Any

import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from marginsim import risk
from tests.invariants.boa_protocol import (
    Collateral,
    FeedState,
    Ledger,
    World,
    attempt,
    attempt_view,
    read_feed,
    read_ledger,
    redate,
    seeded_world,
    storage_of,
    token_balance,
)

WAD = 10**18
SCALE = 10**12  # WAD per settlement token unit (6 decimals)
MAX_UINT = 2**256 - 1
MASK_128 = 2**128 - 1
DEBT_SCALE = 10**36  # vault.SCALE: total_scaled_debt's precision
REDUCE_ONLY, PAUSED = 1, 2
POOL_OFFSET = 10**6  # LiquidityPool's virtual shares (DECIMALS_OFFSET = 6)
COOLDOWN = 900
REQUEST_WINDOW = 900  # LiquidityPool: seconds after executable_at a request may execute; then it lapses
BOOK_OPEN = "pool: book open, request instead"
LOTS = 4  # LiquidityPool: deposits a holder can have in their cooldown at once

# ------------------------------------------------------------------ profiles

STEPS_PER_EXAMPLE = 25
PROFILES = {
    "ci": {"steps": 2_000, "derandomize": True},
    "long": {"steps": 100_000, "derandomize": False},
}


def fuzz_profile() -> tuple[str, int, bool]:
    """(name, steps, derandomize) from MARGINSIM_FUZZ and MARGINSIM_FUZZ_STEPS."""
    name = os.environ.get("MARGINSIM_FUZZ", "ci") or "ci"
    if name not in PROFILES:
        raise SystemExit(f"MARGINSIM_FUZZ: unknown profile {name!r} (use 'ci' or 'long')")
    steps = PROFILES[name]["steps"]
    if os.environ.get("MARGINSIM_FUZZ_STEPS"):
        try:
            steps = int(os.environ["MARGINSIM_FUZZ_STEPS"])
        except ValueError:
            raise SystemExit("MARGINSIM_FUZZ_STEPS: not an integer") from None
        if steps <= 0:
            raise SystemExit("MARGINSIM_FUZZ_STEPS: must be positive")
    return name, steps, PROFILES[name]["derandomize"]


# Every call the fuzzer makes, by "Contract.function", with its outcome ("ok" or the message).
OUTCOMES: Counter[tuple[str, str]] = Counter()
STEPS = {"run": 0}


def record(label: str, outcome: str | None) -> None:
    OUTCOMES[(label, outcome or "ok")] += 1


# ------------------------------------------------------------------ the model


class PriceError(Exception):
    """An oracle read the contract would revert on, with the oracle's message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def mul_div(x: int, y: int, d: int, roundup: bool) -> int:
    """snekmate math._mul_div."""
    q, r = divmod(x * y, d)
    return q + 1 if roundup and r else q


def ceil_div_signed(a: int, d: int) -> int:
    return -((-a) // d)


@dataclass
class OracleView:
    """What the contracts read from the OracleRouter now: each asset's price or its revert, its
    volatilities, and the feed's raw answer (which prices value conservation even while the
    router refuses it)."""

    prices: dict[str, int | None]
    errors: dict[str, str | None]
    vols: dict[str, tuple[int, int]]
    raw: dict[str, int]  # WAD
    feeds: dict[str, FeedState]


def oracle_view(feeds: dict[str, FeedState], max_vol_rise_per_hour: int, now: int) -> OracleView:
    """OracleRouter.price and .volatilities for every asset, from its storage (checked against
    the router's own views in turn, see `check_views`)."""
    prices, errors, vols, raw = {}, {}, {}, {}
    for asset, f in feeds.items():
        price = f.answer * f.scale
        error = checked_price_error(f.answer, f.updated_at, now, f.heartbeat, f.scale, f.min_price, f.max_price)
        if error is None and (f.halted or abs(price - f.last_price) * WAD > f.max_deviation * f.last_price):
            error = "oracle: circuit breaker"
        prices[asset], errors[asset] = (None, error) if error else (price, None)
        sigma = min(math.isqrt(f.variance * WAD), 10 * WAD)
        risen = f.mm_anchor + max_vol_rise_per_hour * (now - f.mm_anchor_time) // 3_600
        vols[asset] = (sigma, min(sigma, risen))
        raw[asset] = max(price, 1)
    return OracleView(prices, errors, vols, raw, dict(feeds))


@dataclass(frozen=True)
class PoolRequest:
    """A request LiquidityPool.requests holds for its controller (a deposit's payer, a
    redemption's owner): a keeper executes it from executable_at to executable_at +
    REQUEST_WINDOW, after that anyone lapses it."""

    receiver: str  # who gets the shares (deposit) or the tokens (redemption)
    deposit: bool
    executable_at: int
    assets: int  # deposit: tokens escrowed; redemption: what the shares were worth at the request
    shares: int  # deposit: shares the tokens were worth at the request; redemption: shares escrowed
    fee: int  # escrowed execution fee, the executing (or lapsing) keeper's pay


@dataclass
class PoolLedger:
    """The LiquidityPool's own books for the LP addresses (share balances and cooldowns), the
    shares it holds itself (escrowed by redemption requests) and the LPs' requests."""

    total_supply: int
    balances: dict[str, int]  # the LPs' and the pool's own
    lots: dict[str, list[int]]  # holder => LOTS words: shares | unlocks_at << 192
    requests: dict[str, PoolRequest] = field(default_factory=dict)  # controller => its request

    def copy(self) -> PoolLedger:
        return PoolLedger(self.total_supply, dict(self.balances), {h: list(w) for h, w in self.lots.items()}, dict(self.requests))


@dataclass
class Outcome:
    """A model prediction: the revert message, or None and the ledger afterwards."""

    message: str | None
    ledger: Ledger
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pending:
    """An order Orders holds: committed, not yet filled or cancelled."""

    owner: Any
    subaccount: int
    size_delta: int
    limit_price: int
    executable_at: int
    fee: int  # escrowed, settlement token units
    position: int  # the account's position size in the market at commit
    bond: int = 0  # escrowed besides the fee by an order that adds risk (Orders.bonds)

    def words(self) -> list[int]:
        """Orders._orders' packing of this order: [size_delta (int128) | limit_price << 128,
        executable_at (40 bits) | fee << 40 | position at commit (int128) << 128]."""
        return [
            (self.size_delta & MASK_128) | self.limit_price << 128,
            self.executable_at | self.fee << 40 | (self.position & MASK_128) << 128,
        ]


# Orders._round_state: what OracleRouter.round_price says of an order's first round now
NO_ROUND, FILLABLE, PASSED = "no round", "fillable", "passed"
EXPIRED = "expired"  # no round, and expiry seconds past executable_at: refunded on cancel
# fill refusals by governance's switches thrown after the commit, not by the owner: Orders
# refunds the fee and bond
GOVERNANCE_REFUSALS = ("clearinghouse: paused", "clearinghouse: reduce only")


class Model:
    """The Clearinghouse, LiquidationEngine, LiquidityPool and Configurator checks, integer for
    integer, over a ledger read from storage and the oracle as it reads now. Each method mirrors
    one external function: the order of its checks (so the first failing one names the message)
    and every write it makes. The liquidation rule itself is not copied here: it is
    `marginsim.risk.liquidation_outcome`, the one Python copy the keepers use too."""

    def __init__(self, ledger: Ledger, oracle: OracleView, now: int, gated: bool = True):
        self.ledger = ledger
        self.oracle = oracle
        self.now = now
        self.gated = gated  # the pool's instant paths only while the book is idle (LiquidityPool.instant)

    # -------------------------------------------------------------- reads

    def price(self, asset: str) -> int:
        price = self.oracle.prices[asset]
        if price is None:
            raise PriceError(self.oracle.errors[asset])
        return price

    def rates(self, params: risk.MarketParams, abs_size: int) -> tuple[int, int]:
        sigma, sigma_mm = self.oracle.vols[params.asset]
        return risk.market_rates(params, abs_size, sigma, sigma_mm)

    def index_now(self, ledger: Ledger, market: int, price: int) -> int:
        params = ledger.markets[market]
        view = risk.MarketView(params, ledger.states[market], price, 0, 0)
        return risk.funding_index_now(view, self.now)

    def margin(self, ledger: Ledger, account: int, known_market: int = 0, known_price: int = 0) -> tuple[int, int, int]:
        """margining._margin, as `risk.margin` of the account's snapshot."""
        return risk.margin(self.snapshot(ledger, account, known_market, known_price))

    def snapshot(self, ledger: Ledger, account: int, known_market: int = 0, known_price: int = 0) -> risk.AccountSnapshot:
        """What margining._margin reads: the positions, the balance as it reads now (a debt with
        its interest, which needs debt_imr of initial margin) and the pending claim (equity, as
        the balance), the haircut collateral; raises PriceError in the contract's read order
        (markets ascending, then collateral slots ascending)."""
        positions, views = {}, {}
        mask = ledger.market_mask.get(account, 0)
        for m in range(1, 16):
            if not mask >> m & 1:
                continue
            params = ledger.markets[m]
            price = known_price if m == known_market else self.price(params.asset)
            sigma, sigma_mm = self.oracle.vols[params.asset]
            positions[m] = ledger.positions.get((account, m), (0, 0))
            views[m] = risk.MarketView(params, ledger.states[m], price, sigma, sigma_mm)
        snapshot = risk.AccountSnapshot(
            settlement=self.settlement_of(ledger, account),
            settlement_to_wad=SCALE,
            positions=positions,
            markets=views,
            collaterals=self.collateral_views(ledger, account),
            timestamp=self.now,
            pending=ledger.pending.get(account, 0),
            debt_imr=ledger.debt_terms[2],
        )
        return snapshot

    def collateral_views(self, ledger: Ledger, account: int) -> list[risk.CollateralView]:
        views = []
        mask = ledger.collateral_mask.get(account, 0)
        for slot in range(1, 8):
            if not mask >> slot & 1:
                continue
            col = ledger.collaterals[slot]
            if col.weight == 0:
                continue  # written off: worth nothing, its feed is not read
            views.append(
                risk.CollateralView(col.unit, col.weight, self.price(col.token), ledger.balances.get((account, slot), 0))
            )
        return views

    def collateral_value(self, ledger: Ledger, account: int) -> int:
        """Clearinghouse.collateral_value: the haircut value, WAD."""
        return sum(c.amount * c.price // c.unit * c.weight // WAD for c in self.collateral_views(ledger, account))

    def debt_index_now(self, ledger: Ledger) -> int:
        """vault._index_now (Clearinghouse.debt_index): the index as last accrued, plus the
        interest since at the rate the debts and what the pool could lend (its balance less
        the pending claims) set as they stand."""
        rate_base, rate_slope, _, _ = ledger.debt_terms
        elapsed = self.now - ledger.debt_accrued_at
        return risk.debt_index_now(
            ledger.debt_index, elapsed, ledger.total_debt, ledger.pool_balance, rate_base, rate_slope, ledger.total_pending
        )

    def settlement_of(self, ledger: Ledger, account: int) -> int:
        """vault._settlement_of (Clearinghouse.settlement): the balance, a debt with its interest
        to now, -ceil(D * index now / index at write)."""
        balance = ledger.settlement.get(account, 0)
        if balance >= 0:
            return balance
        return -risk.debt_now(-balance, self.debt_index_now(ledger), ledger.debt_index_at[account])

    def book(self, ledger: Ledger, market: int = 0, larger: int = 0) -> tuple[int, int]:
        """LiquidityPool._book: the pool's signed value and the open-interest reserve's need, WAD,
        in one pass over the markets in order, `market`'s larger side read as `larger`. A market
        with no open interest is skipped unless its reserve is on and a side (its held orders,
        or `larger`) is not zero: then its price is read for the need. So the prices are read,
        and a PriceError raised, in the contract's order."""
        # the pending claims come first; the interest the debts owe counts as it accrues, before it
        # is charged: every debt with its interest (rounded down) less the debts as written
        accrued = ledger.total_scaled_debt * self.debt_index_now(ledger) // DEBT_SCALE
        value = (ledger.pool_balance - ledger.total_pending + max(accrued, ledger.total_debt) - ledger.total_debt) * SCALE
        sides = []
        for m in sorted(ledger.markets):
            stt = ledger.states[m]
            held = ledger.held.get(m, (0, 0))
            side = larger if m == market else max(stt.long_oi + held[0], stt.short_oi + held[1])
            idle = stt.long_oi == 0 and stt.short_oi == 0 and stt.total_cost == 0
            factor = ledger.reserve_factors[m]
            if idle and (side == 0 or factor == 0):
                continue
            params = ledger.markets[m]
            price = self.price(params.asset)
            if side and factor:
                sides.append((side, price, factor))
            if idle:
                continue
            index = self.index_now(ledger, m, price)
            net = stt.long_oi - stt.short_oi
            exit_premium = risk.ceil_div(risk.mul_up(abs(net), price) * abs(net), 2 * params.skew_scale)
            traders = risk.signed_mul_ceil(net, price - index) - stt.total_cost
            value -= traders + exit_premium
        return value, risk.reserve_need(sides)

    def pool_value(self, ledger: Ledger) -> int:
        """LiquidityPool._signed_value, WAD (raises PriceError as the pool's reads would)."""
        return self.book(ledger)[0]

    def total_assets(self, ledger: Ledger) -> int:
        value = self.pool_value(ledger)
        return value // SCALE if value > 0 else 0

    # -------------------------------------------------------------- writes

    def settle_fill(self, ledger: Ledger, account: int, credit: int, charge: int, to_pool: int) -> tuple[int, int]:
        """perps._settle_fill's money: the realised PnL `credit` less `charge` into the account,
        `to_pool` - credit into the pool; then of a profit, the part the pool cannot pay out of
        what it holds free (its balance short of every debt and the claims already pending), as
        far as the account's balance goes, becomes the account's pending claim. Returns the
        credit and the claim (ProfitPending)."""
        self.set_settlement(ledger, account, self.settlement_of(ledger, account) + credit - charge)
        ledger.pool_balance += to_pool - credit
        pending = 0
        if credit > 0:
            short = ledger.total_debt + ledger.total_pending - ledger.pool_balance
            pending = max(min(short, credit, self.settlement_of(ledger, account)), 0)
            if pending:
                self.set_settlement(ledger, account, self.settlement_of(ledger, account) - pending)
                self.add_pending(ledger, account, pending)
        return credit, pending

    def accrue_debt(self, ledger: Ledger) -> int:
        """vault._accrue_index: the index to now, stored with the time. Returns it."""
        index = self.debt_index_now(ledger)
        ledger.debt_index, ledger.debt_accrued_at = index, self.now
        return index

    def set_settlement(self, ledger: Ledger, account: int, balance: int) -> None:
        """vault._set_settlement, `balance` counted as `settlement_of` counts it. When the balance
        was or becomes a debt, the index accrues first; an old debt's interest since it was
        written goes to the pool; a new debt nets the account's claim first (the pool keeps
        what it owed); a debt is written with the index now."""
        written = ledger.settlement.get(account, 0)
        if written < 0 or balance < 0:
            index = self.accrue_debt(ledger)
            if written < 0:
                written_at = ledger.debt_index_at.pop(account)
                ledger.pool_balance += risk.debt_now(-written, index, written_at) + written
                ledger.total_scaled_debt -= -written * DEBT_SCALE // written_at
            elif ledger.pending.get(account, 0) > 0:
                netted = min(ledger.pending[account], -balance)
                ledger.pending[account] -= netted
                ledger.total_pending -= netted
                ledger.pool_balance -= netted
                balance += netted
            ledger.total_debt += max(-balance, 0) - max(-written, 0)
            if balance < 0:
                ledger.debt_index_at[account] = index
                ledger.total_scaled_debt += -balance * DEBT_SCALE // index
        ledger.settlement[account] = balance

    @staticmethod
    def add_pending(ledger: Ledger, account: int, delta: int) -> None:
        """vault._add_pending: +delta from the account's balance (the caller's) into its claim,
        the tokens left in the pool, which owes them; -delta pays the claim out of the pool."""
        ledger.pending[account] = ledger.pending.get(account, 0) + delta
        ledger.total_pending += delta
        ledger.pool_balance += delta

    def claim(self, ledger: Ledger, account: int) -> int:
        """vault._claim: the account's claim paid into its balance as far as the pool holds
        tokens (its balance less every debt). Returns what was paid."""
        paid = min(ledger.pending.get(account, 0), ledger.pool_balance - ledger.total_debt)
        if paid <= 0:
            return 0
        self.add_pending(ledger, account, -paid)
        self.set_settlement(ledger, account, self.settlement_of(ledger, account) + paid)
        return paid

    @staticmethod
    def set_bit(mapping: dict[int, int], account: int, bit: int, on: bool) -> None:
        mask = mapping.get(account, 0)
        mapping[account] = mask | (1 << bit) if on else mask & ~(1 << bit)

    def accrue(self, ledger: Ledger, market: int, price: int) -> None:
        stt = ledger.states[market]
        if stt.last_funding_time == self.now:
            return
        ledger.states[market] = replace(stt, funding_index=self.index_now(ledger, market, price), last_funding_time=self.now)

    def settle_bad_debt(self, ledger: Ledger, account: int) -> int:
        """Clearinghouse._settle_bad_debt; returns the shortfall booked."""
        s = self.settlement_of(ledger, account)
        if s >= 0 or ledger.collateral_mask.get(account, 0) != 0:
            return 0
        shortfall = -s
        from_insurance = min(shortfall, ledger.insurance)
        ledger.insurance -= from_insurance
        ledger.pool_balance -= shortfall - from_insurance
        self.set_settlement(ledger, account, 0)
        ledger.total_bad_debt += shortfall
        return shortfall

    @staticmethod
    def apply_fill(position: tuple[int, int], stt: risk.MarketState, delta: int, fill: int):
        """Clearinghouse._apply_fill: close first at average cost, then open the rest (delta 0: realise)."""
        size, cost = position
        old_size = size
        total_cost = stt.total_cost
        fill_minus_index = fill - stt.funding_index
        realised = 0
        closing = 0
        if delta == 0:
            closing = old_size  # a realisation: the whole position closed and reopened at `fill`
        elif old_size != 0 and (delta > 0) != (old_size > 0):
            closing = min(abs(delta), abs(old_size))
            if old_size < 0:
                closing = -closing
        if closing:
            cost_removed = ceil_div_signed(cost * closing, size)
            realised = risk.signed_mul_floor(closing, fill_minus_index) - cost_removed
            cost -= cost_removed
            total_cost -= cost_removed
            size -= closing
        opening = delta + closing
        if opening:
            added = risk.signed_mul_ceil(opening, fill_minus_index)
            cost += added
            total_cost += added
            size += opening
        new_state = replace(
            stt,
            long_oi=stt.long_oi + max(size, 0) - max(old_size, 0),
            short_oi=stt.short_oi + max(-size, 0) - max(-old_size, 0),
            total_cost=total_cost,
        )
        return (size, cost), new_state, realised

    # -------------------------------------------------------------- Clearinghouse

    def deposit(self, account: int, token: str, amount: int, settlement_token: str) -> Outcome:
        ledger = self.ledger.copy()
        if amount == 0:
            return Outcome("clearinghouse: zero amount", self.ledger)
        if token == settlement_token:
            self.set_settlement(ledger, account, self.settlement_of(ledger, account) + amount)
            ledger.settlement_held += amount
            return Outcome(None, ledger, {"flow": amount})
        slot = self.slot(token)
        if slot is None:
            return Outcome("clearinghouse: unknown token", self.ledger)
        col = ledger.collaterals[slot]
        if ledger.paused:
            return Outcome("clearinghouse: paused", self.ledger)
        if not col.enabled:
            return Outcome("clearinghouse: collateral disabled", self.ledger)
        if col.total + amount > col.cap:
            return Outcome("clearinghouse: deposit cap", self.ledger)
        ledger.collaterals[slot] = replace(col, total=col.total + amount)
        ledger.balances[(account, slot)] = ledger.balances.get((account, slot), 0) + amount
        self.set_bit(ledger.collateral_mask, account, slot, True)
        return Outcome(None, ledger, {"flow": 0})

    def slot(self, token: str) -> int | None:
        """The collateral slot of `token`, None while it is not listed."""
        return next((s for s, c in self.ledger.collaterals.items() if c.token == token), None)

    def withdraw(self, account: int, token: str, amount: int, settlement_token: str, open_orders: int = 0) -> Outcome:
        """Clearinghouse.withdraw, `open_orders` the account's orders not yet filled or cancelled
        (Orders.open_orders): any refuses it, so the margin a fill needs stays."""
        ledger = self.ledger.copy()
        if amount == 0:
            return Outcome("clearinghouse: zero amount", self.ledger)
        if open_orders:
            return Outcome("clearinghouse: order pending", self.ledger)
        claimed = 0
        if token == settlement_token:
            claimed = self.claim(ledger, account)  # the pending claim first, as far as the pool holds tokens
            balance = self.settlement_of(ledger, account)
            if balance < amount:
                return Outcome("clearinghouse: insufficient balance", self.ledger)
            self.set_settlement(ledger, account, balance - amount)
        else:
            slot = self.slot(token)
            if slot is None:
                return Outcome("clearinghouse: unknown token", self.ledger)
            balance = ledger.balances.get((account, slot), 0)
            if balance < amount:
                return Outcome("clearinghouse: insufficient balance", self.ledger)
            ledger.balances[(account, slot)] = balance - amount
            col = ledger.collaterals[slot]
            ledger.collaterals[slot] = replace(col, total=col.total - amount)
            if balance == amount:
                self.set_bit(ledger.collateral_mask, account, slot, False)
        # no positions and no debt: nothing required, no price read (a halted feed locks nothing)
        equity = initial = None
        if ledger.market_mask.get(account, 0) != 0 or self.settlement_of(ledger, account) < 0:
            try:
                equity, _, initial = self.margin(ledger, account)
            except PriceError as error:
                return Outcome(error.message, self.ledger)
            if equity < initial:
                return Outcome("clearinghouse: insufficient margin", self.ledger)
        if token == settlement_token:
            if ledger.settlement_held < amount:
                return Outcome("clearinghouse: insufficient liquidity", self.ledger)
            ledger.settlement_held -= amount
        info = {"flow": -amount if token == settlement_token else 0, "equity": equity, "initial": initial, "claimed": claimed}
        return Outcome(None, ledger, info)

    def trade(self, account: int, market: int, delta: int, limit_price: int) -> Outcome:
        if delta == 0:
            return Outcome("clearinghouse: zero size", self.ledger)
        if market not in self.ledger.markets:
            return Outcome("clearinghouse: unknown market", self.ledger)
        params = self.ledger.markets[market]
        try:
            price = self.price(params.asset)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        ledger = self.ledger.copy()
        self.accrue(ledger, market, price)
        stt = ledger.states[market]
        position = ledger.positions.get((account, market), (0, 0))
        old_size = position[0]
        new_size = old_size + delta
        adds_risk = abs(new_size) > abs(old_size) or (new_size != 0 and old_size != 0 and (new_size > 0) != (old_size > 0))
        flags = ledger.flags[market]
        if adds_risk and flags & PAUSED:
            return Outcome("clearinghouse: paused", self.ledger)
        if adds_risk and flags & REDUCE_ONLY:
            return Outcome("clearinghouse: reduce only", self.ledger)
        fill = risk.fill_price(price, stt.long_oi - stt.short_oi, delta, params.skew_scale)
        info = {"fill": fill, "adds_risk": adds_risk, "price": price}
        if limit_price and ((delta > 0 and fill > limit_price) or (delta < 0 and fill < limit_price)):
            return Outcome("clearinghouse: price limit", self.ledger, info)
        position, stt, realised = self.apply_fill(position, stt, delta, fill)
        if adds_risk and (stt.long_oi if new_size > 0 else stt.short_oi) > params.oi_cap:
            return Outcome("clearinghouse: open interest cap", self.ledger, info)
        fee = risk.ceil_div(risk.mul_up(risk.mul_up(abs(delta), fill), params.fee), SCALE)
        credit, pending = self.settle_fill(ledger, account, realised // SCALE, fee, fee)
        ledger.positions[(account, market)] = position
        ledger.states[market] = stt
        shortfall = 0
        if position[0] == 0:
            self.set_bit(ledger.market_mask, account, market, False)
            if ledger.market_mask.get(account, 0) == 0:
                shortfall = self.settle_bad_debt(ledger, account)
        else:
            self.set_bit(ledger.market_mask, account, market, True)
        info.update(fee=fee, credit=credit, pending=pending, shortfall=shortfall)
        if adds_risk:
            try:
                equity, _, initial = self.margin(ledger, account, market, price)
            except PriceError as error:
                return Outcome(error.message, self.ledger, info)
            if equity < initial:
                return Outcome("clearinghouse: insufficient margin", self.ledger, info)
        return Outcome(None, ledger.normalise(), info)

    def over_debt_ceiling(self, account: int, market: int, delta: int) -> bool:
        """Orders._over_debt_ceiling: an order that adds risk to an account in debt while the
        debts are above the ceiling's fraction of what the pool could lend (its balance less the
        pending claims) is refused at its commit, "orders: debt ceiling"."""
        size = self.ledger.positions.get((account, market), (0, 0))[0]
        if risk.order_growth(size, delta) == (0, 0):
            return False  # a pure reduction
        if self.settlement_of(self.ledger, account) >= 0:
            return False
        lendable = self.ledger.pool_balance - self.ledger.total_pending
        return self.ledger.total_debt * WAD > lendable * self.ledger.debt_terms[3]

    def commit_margin(self, ledger: Ledger, account: int, orders: list[tuple[int, int]]) -> str | None:
        """Orders._margin_for_orders at a commit that adds risk: `orders` (market, size_delta),
        the account's open orders that make a position larger (the new one first if it does,
        then the others in market order; empty for a flip to a smaller size with no other), all
        filled at the current prices, every open loss afterwards taken as realised
        (`risk.commit_margin`, MarginLens.commit_margin): "orders: insufficient margin" when
        equity is then below the initial requirement; the price error of a read, in the lens's
        order (the margin's, then each order's market)."""
        try:
            snapshot = self.snapshot(ledger, account)
            views = {}
            for market, _ in orders:
                params = ledger.markets[market]
                sigma, sigma_mm = self.oracle.vols[params.asset]
                views[market] = risk.MarketView(params, ledger.states[market], self.price(params.asset), sigma, sigma_mm)
        except PriceError as error:
            return error.message
        equity, initial = risk.commit_margin(snapshot, orders, views, ledger.debt_terms[0] + ledger.debt_terms[1])
        return "orders: insufficient margin" if equity < initial else None

    def commit_reserve(self, ledger: Ledger, account: int, market: int, delta: int) -> str | None:
        """Orders._hold's refusals at commit: an order whose side, with what placed orders hold
        on it, would pass the market's oi_cap, "orders: open interest cap"; (issue 9, item 5) an
        order that grows its market's larger side (each side with what placed orders hold, `risk.larger_side_after`) past the
        core's bound on a side, or, with the market's reserve on, so that the capital the markets
        need (`book`, with that side) exceeds the pool's value: "orders: open interest
        reserve" (`risk.over_reserve`, the Python mirror); the pool's valuation's price error
        when a market it must price has none. None: the order is placed."""
        size = ledger.positions.get((account, market), (0, 0))[0]
        stt = ledger.states[market]
        held = ledger.held.get(market, (0, 0))
        longs, shorts = risk.order_growth(size, delta)
        if (stt.long_oi + held[0] + longs if longs else stt.short_oi + held[1] + shorts) > ledger.markets[market].oi_cap:
            return "orders: open interest cap"  # the side it grows, with every placed order filled
        before, larger = risk.larger_side_after(stt.long_oi, stt.short_oi, held, size, delta)
        if larger <= before:
            return None  # a reduction, or the larger side does not grow
        if ledger.reserve_factors[market] == 0:
            return None  # the reserve off for this market
        try:
            value, need = self.book(ledger, market, larger)
            over = risk.over_reserve(need, value)
        except PriceError as error:
            return error.message
        return "orders: open interest reserve" if over else None

    @staticmethod
    def bond_factor(ledger: Ledger, market: int, position: int, delta: int) -> int:
        """The reserve factor Orders._hold returns for the bond: the market's when the order grows
        its larger side (with what placed orders hold, before this one), else 0."""
        stt = ledger.states[market]
        before, larger = risk.larger_side_after(stt.long_oi, stt.short_oi, ledger.held.get(market, (0, 0)), position, delta)
        return ledger.reserve_factors[market] if larger > before else 0

    @staticmethod
    def hold(ledger: Ledger, market: int, position: int, delta: int, sign: int) -> None:
        """LiquidityPool.apply_hold, in place: `sign` 1 at commit, -1 when the order ends."""
        longs, shorts = risk.order_growth(position, delta)
        if longs or shorts:
            old = ledger.held.get(market, (0, 0))
            ledger.held[market] = (old[0] + sign * longs, old[1] + sign * shorts)

    # -------------------------------------------------------------- LiquidationEngine

    def liquidation_snapshot(self, account: int, market: int) -> risk.LiquidationSnapshot:
        """Clearinghouse.liquidation_snapshot of a listed market, through `risk.snapshot_for`;
        raises PriceError in the contract's read order (the market's price, then the margin's)."""
        params = self.ledger.markets[market]
        price = self.price(params.asset)
        equity, maintenance, _ = self.margin(self.ledger, account, market, price)
        sigma, sigma_mm = self.oracle.vols[params.asset]
        view = risk.MarketView(params, self.ledger.states[market], price, sigma, sigma_mm)
        size = self.ledger.positions.get((account, market), (0, 0))[0]
        return risk.snapshot_for(view, size, equity, maintenance, self.ledger.insurance)

    @staticmethod
    def liquidation_params(ledger: Ledger) -> risk.LiquidationParams:
        """The engine's parameters, as the ledger read them from its storage."""
        return risk.LiquidationParams(
            ledger.buffer, ledger.full_liquidation_health, ledger.dust_notional, ledger.underwater_tip_rate
        )

    def liquidate(self, account: int, market: int, max_size: int, liquidator: Any) -> Outcome:
        """LiquidationEngine.liquidate. What it closes and pays (size, penalty, keeper reward with
        the underwater tip) is `risk.liquidation_outcome` of the snapshot, the one Python copy of
        the rule; this applies it as Clearinghouse.liquidation_close does, then checks the health
        after as the engine does."""
        if max_size == 0:
            return Outcome("liquidation: zero size", self.ledger)
        if market not in self.ledger.markets:
            return Outcome("clearinghouse: unknown market", self.ledger)
        try:
            snap = self.liquidation_snapshot(account, market)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        if snap.equity >= snap.maintenance:
            return Outcome("liquidation: account healthy", self.ledger)
        if snap.size == 0:
            return Outcome("liquidation: no position", self.ledger)
        params = self.liquidation_params(self.ledger)
        result = risk.liquidation_outcome(snap, params, max_size, SCALE)
        rule_close = risk.liquidation_outcome(snap, params, MAX_UINT, SCALE).close  # before the max_size cap
        # the keeper's share alone: the same rule without the tip
        share_reward = risk.liquidation_outcome(snap, replace(params, underwater_tip_rate=0), max_size, SCALE).keeper_reward
        least = None
        if result.health_before >= params.full_liquidation_health:
            least = min(risk.least_close_for(snap, params.buffer, SCALE), abs(snap.size))
        close, penalty, reward, price, fill = result.close, result.penalty, result.keeper_reward, snap.price, result.fill
        abs_size = abs(snap.size)

        # Clearinghouse.liquidation_close: the fill (profit capped as a trade's), then the
        # penalty (to the insurance fund what the account pays out of a positive balance, to the
        # pool what it can only owe), the keeper's pay out of the fund and then the pool's free
        # liquidity, and bad debt when the account is left empty
        ledger = self.ledger.copy()
        self.accrue(ledger, market, price)
        before = ledger.positions[(account, market)]
        delta = -close if snap.size > 0 else close
        position, stt, realised = self.apply_fill(before, ledger.states[market], delta, fill)
        ledger.positions[(account, market)] = position
        ledger.states[market] = stt
        credit, pending = self.settle_fill(ledger, account, realised // SCALE, 0, 0)
        liquidity = max(ledger.pool_balance - ledger.total_debt - ledger.total_pending, 0)
        balance = self.settlement_of(ledger, account)
        owed = min(max(penalty - balance, 0), penalty)
        self.set_settlement(ledger, account, balance - penalty)
        # the pool pays the keeper's share of the owed part of the penalty out of its free
        # liquidity, the insurance fund the rest (the tip included), never more tokens than are held
        reward_owed = min(reward, owed * self.ledger.markets[market].keeper_share // WAD)
        from_pool = min(reward_owed, liquidity)
        insurance = ledger.insurance + penalty - owed
        from_insurance = min(reward - from_pool, insurance)  # the fund: the rest, and what the pool cannot pay
        paid = min(from_pool + from_insurance, ledger.settlement_held)
        from_insurance = min(from_insurance, paid)
        from_pool = paid - from_insurance
        ledger.insurance = insurance - from_insurance
        ledger.pool_balance += owed - from_pool
        ledger.settlement_held -= paid
        if position[0] == 0:
            self.set_bit(ledger.market_mask, account, market, False)
        shortfall = 0
        if ledger.market_mask.get(account, 0) == 0:
            shortfall = self.settle_bad_debt(ledger, account)

        # the engine's health after, from the snapshot and this market's change alone
        health_after = risk.NO_POSITIONS_HEALTH
        if ledger.market_mask.get(account, 0) != 0:
            x = price - stt.funding_index
            pnl_change = (risk.signed_mul_floor(position[0], x) - position[1]) - (risk.signed_mul_floor(before[0], x) - before[1])
            e2 = snap.equity + pnl_change + (credit - penalty) * SCALE
            left = abs(position[0])
            m2 = (
                snap.maintenance
                - risk.mul_up(risk.mul_up(abs_size, price), risk.snapshot_rate(snap, abs_size))
                + risk.mul_up(risk.mul_up(left, price), risk.snapshot_rate(snap, left))
            )
            health_after = risk.health(e2, m2)
        info = {
            "close": close,
            "rule_close": rule_close,
            "least": least,
            "abs_size": abs_size,
            "whole": result.whole,
            "penalty": penalty,
            "reward": paid,
            "requested": reward,
            "tip_top_up": max(min(paid, reward) - share_reward, 0),
            "premium": -((fill - price) * delta // WAD),  # WAD USD the fill earned the account over the oracle price, rounded up
            "fill": fill,
            "credit": credit,
            "pending": pending,
            "health_before": result.health_before,
            "health_after": health_after,
            "equity": snap.equity,
            "maintenance": snap.maintenance,
            "shortfall": shortfall,
            "partial": position[0] != 0,
            "price": fill,
            "oracle_price": price,
            "flow": -paid,
        }
        if position[0] != 0 and health_after < result.health_before:
            return Outcome("liquidation: health worsened", self.ledger, info)
        return Outcome(None, ledger.normalise(), info)

    def loan(self, ledger: Ledger, account: int) -> tuple[int, int, bool]:
        """LiquidationEngine._loan: the debt (token units, with interest), the equity (WAD) and
        whether the debt is over debt_liquidation_ltv of the equity plus the debt."""
        debt = max(-self.settlement_of(ledger, account), 0)
        equity = self.margin(ledger, account)[0]
        debt_wad = debt * SCALE
        return debt, equity, debt > 0 and debt_wad > risk.signed_mul_floor(equity + debt_wad, ledger.debt_liquidation_ltv)

    def realise_loss(self, account: int, market: int) -> Outcome:
        """LiquidationEngine.realise_loss: the price read through the liquidation snapshot, then
        Clearinghouse.liquidation_close with size 0, no penalty and no pay: the position closed
        and reopened at the oracle price (size and open interest kept), its PnL into the balance;
        reverted unless that is a loss."""
        if market not in self.ledger.markets:
            return Outcome("clearinghouse: unknown market", self.ledger)
        try:
            price = self.liquidation_snapshot(account, market).price
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        ledger = self.ledger.copy()
        self.accrue(ledger, market, price)
        before = ledger.positions.get((account, market), (0, 0))
        position, stt, realised = self.apply_fill(before, ledger.states[market], 0, price)
        credit = realised // SCALE
        if credit >= -1:  # a gain, nothing, or the one unit the reset basis's rounding takes
            return Outcome("liquidation: no loss to realise", self.ledger)
        ledger.positions[(account, market)] = position
        ledger.states[market] = stt
        self.settle_fill(ledger, account, credit, 0, 0)
        self.set_settlement(ledger, account, self.settlement_of(ledger, account))  # the penalty step, penalty 0
        if self.loan(ledger, account)[2]:
            return Outcome("liquidation: realisation over the loan limit", self.ledger)
        return Outcome(None, ledger.normalise(), {"loss": -credit, "price": price})

    def liquidate_collateral(self, account: int, token: str, max_amount: int) -> Outcome:
        """LiquidationEngine.liquidate_collateral then Clearinghouse.seize_collateral. For sale:
        the collateral of an account whose debt (with its interest) is above
        debt_liquidation_ltv of what it holds (its equity plus its debt), whatever its positions
        and equity (`risk.collateral_for_sale`); within that limit, and always for a written-off
        token, only with no positions left and negative equity. The sale repays the debt
        (interest charged to the pool); bad debt only once no collateral and no positions are
        left."""
        if max_amount == 0:
            return Outcome("liquidation: zero amount", self.ledger)
        slot = self.slot(token)
        if slot is None:
            return Outcome("clearinghouse: unknown token", self.ledger)
        try:
            debt, equity, over_limit = self.loan(self.ledger, account)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        col = self.ledger.collaterals[slot]
        has_positions = self.ledger.market_mask.get(account, 0) != 0
        if col.weight == 0 or not over_limit:
            if has_positions:
                return Outcome("liquidation: close positions first", self.ledger)
            if equity >= 0:
                return Outcome("liquidation: account healthy", self.ledger)
        balance = self.ledger.balances.get((account, slot), 0)
        amount, paid = min(balance, max_amount), 0  # written off: taken for nothing, no feed read
        if amount == 0:
            return Outcome("liquidation: no collateral", self.ledger)
        if col.weight:
            try:
                price = self.price(token)
            except PriceError as error:
                return Outcome(error.message, self.ledger)
            discounted = price * (WAD - col.liquidation_discount) // WAD
            needed = risk.ceil_div(debt * SCALE * col.unit, discounted)
            amount = min(needed, amount)
            paid = risk.ceil_div(amount * discounted, col.unit * SCALE)
            if paid == 0:
                return Outcome("liquidation: amount too small", self.ledger)
        ledger = self.ledger.copy()
        ledger.balances[(account, slot)] = balance - amount
        ledger.collaterals[slot] = replace(col, total=col.total - amount)
        if balance == amount:
            self.set_bit(ledger.collateral_mask, account, slot, False)
        self.set_settlement(ledger, account, self.settlement_of(ledger, account) + paid)
        ledger.settlement_held += paid
        shortfall = 0
        if ledger.collateral_mask.get(account, 0) == 0 and ledger.market_mask.get(account, 0) == 0:
            shortfall = self.settle_bad_debt(ledger, account)
        info = {
            "amount": amount,
            "paid": paid,
            "flow": paid,
            "equity": equity,
            "shortfall": shortfall,
            "over_limit": over_limit and col.weight != 0,
            "has_positions": has_positions,
        }
        return Outcome(None, ledger.normalise(), info)

    def fund_insurance(self, amount: int) -> Outcome:
        if amount == 0:
            return Outcome("clearinghouse: zero amount", self.ledger)
        ledger = self.ledger.copy()
        ledger.settlement_held += amount
        ledger.insurance += amount
        return Outcome(None, ledger, {"flow": amount})

    def forfeit(self, fee: int) -> Outcome:
        """Orders._forfeit: a cancelled order's escrowed fee goes to the insurance fund, through
        Clearinghouse.fund_insurance (not called for a zero fee)."""
        ledger = self.ledger.copy()
        ledger.settlement_held += fee
        ledger.insurance += fee
        return Outcome(None, ledger, {"flow": fee})

    # -------------------------------------------------------------- LiquidityPool

    @staticmethod
    def idle(ledger: Ledger, pool: PoolLedger) -> bool:
        """LiquidityPool._quiet (its `instant()` view): no LP request pending, and no listed
        market with open interest, an entry cost or placed orders holding a side (debts count at
        face plus accrued interest, which no price moves). Then no price moves the pool's value,
        and LPs come and go at once; otherwise only by request."""
        if pool.requests:
            return False
        if any(held != (0, 0) for held in ledger.held.values()):
            return False
        return all(s.long_oi == 0 and s.short_oi == 0 and s.total_cost == 0 for s in ledger.states.values())

    def admit(self, pool: PoolLedger, assets: int, shares: int) -> str | None:
        """LiquidityPool._admit, a deposit's checks (instant, at its request and at its execution),
        in order; the valuation has already been read (it raised any PriceError)."""
        if not self.collateral_priced(self.ledger):
            return "pool: collateral feed down"
        if assets == 0 or shares == 0:
            return "pool: zero amount"
        value = self.pool_value(self.ledger)
        if value < 0 or (value == 0 and pool.total_supply != 0):
            return "pool: insolvent"
        return None

    def release(self, pool: PoolLedger, owner: str, assets: int, shares: int, allowance: int | None) -> str | None:
        """LiquidityPool._release, the owner's side of a redemption (instant or requested), in
        order: the collateral feeds, a zero amount (either side), the cooldown (only when the
        balance would cover it), the caller's allowance (`allowance` None: the owner calls), the
        balance."""
        if not self.collateral_priced(self.ledger):
            return "pool: collateral feed down"
        if assets == 0 or shares == 0:
            return "pool: zero amount"
        balance = pool.balances.get(owner, 0)
        if not (shares <= self.free_shares(pool, owner) or shares > balance):
            return "pool: cooldown"
        if allowance is not None and allowance < shares:
            return "erc20: insufficient allowance"
        if balance < shares:
            return "pool: insufficient shares"
        return None

    def pay_out(self, value: int, need: int, assets: int) -> tuple[str | None, Ledger]:
        """LiquidityPool._pay_out then Clearinghouse.pool_withdraw, with the valuation read at the
        call: the reserve's headroom, the pool's liquidity; the refusal, or the ledger after (the
        index accrued, the pool's balance and the tokens held less `assets`)."""
        if assets > risk.reserve_headroom(value, need, SCALE):
            return "pool: open interest reserve", self.ledger
        liquidity = max(self.ledger.pool_balance - self.ledger.total_debt - self.ledger.total_pending, 0)
        if assets > liquidity:
            return "clearinghouse: pool liquidity", self.ledger
        if self.ledger.settlement_held < assets:
            return "clearinghouse: insufficient liquidity", self.ledger
        ledger = self.ledger.copy()
        self.accrue_debt(ledger)  # the pool's balance sets the debt rate: the interest so far at the old one
        ledger.pool_balance -= assets
        ledger.settlement_held -= assets
        return None, ledger

    def issue(self, assets: int) -> Ledger:
        """LiquidityPool._issue's Clearinghouse.pool_deposit: the index accrued, then `assets` in."""
        ledger = self.ledger.copy()
        self.accrue_debt(ledger)
        ledger.pool_balance += assets
        ledger.settlement_held += assets
        return ledger

    def pool_deposit(
        self, pool: PoolLedger, receiver: str, assets: int | None, shares: int | None, sender: str | None = None
    ) -> Outcome:
        """deposit(assets) when `assets` is given, else mint(shares), by `sender` (None: the
        receiver): (a gated pool) "pool: book open, request instead" unless the book is idle,
        checked first; the valuation (its price errors), then `admit`'s checks and the receiver's lots."""
        if self.gated and not self.idle(self.ledger, pool):
            return Outcome(BOOK_OPEN, self.ledger)
        try:
            total_assets = self.total_assets(self.ledger)
            if assets is not None:
                shares = mul_div(assets, pool.total_supply + POOL_OFFSET, total_assets + 1, False)
            else:
                assets = mul_div(shares, total_assets + 1, pool.total_supply + POOL_OFFSET, True)
            message = self.admit(pool, assets, shares)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        if message is not None:
            return Outcome(message, self.ledger)
        lots = self.lock(pool.lots.get(receiver, [0] * LOTS), receiver, sender or receiver, shares)
        if isinstance(lots, str):
            return Outcome(lots, self.ledger)
        ledger = self.issue(assets)
        after = pool.copy()
        after.total_supply += shares
        after.balances[receiver] = after.balances.get(receiver, 0) + shares
        after.lots[receiver] = lots
        return Outcome(
            None,
            ledger,
            {"flow": assets, "assets": assets, "shares": shares, "pool": after, "total_assets": total_assets},
        )

    def lock(self, lots: list[int], receiver: str, sender: str, shares: int) -> list[int] | str:
        """LiquidityPool._lock: the receiver's lots after `shares` are locked, or the revert."""
        until = self.now + COOLDOWN
        live = [i for i, w in enumerate(lots) if w >> 192 > self.now]
        after = list(lots)
        same_block = [i for i in live if lots[i] >> 192 == until]
        if same_block:
            after[same_block[0]] += shares
            return after
        free = [i for i in range(LOTS) if i not in live]
        if free:
            after[free[0]] = shares | until << 192
            return after
        if sender != receiver:
            return "pool: too many locked deposits"
        latest = max(live, key=lambda i: (lots[i] >> 192, -i))
        after[latest] = ((lots[latest] & (2**192 - 1)) + shares) | until << 192
        return after

    def locked_shares(self, pool: PoolLedger, holder: str) -> int:
        return sum(w & (2**192 - 1) for w in pool.lots.get(holder, []) if w >> 192 > self.now)

    def free_shares(self, pool: PoolLedger, holder: str) -> int:
        balance = pool.balances.get(holder, 0)
        return balance - min(self.locked_shares(pool, holder), balance)

    def collateral_priced(self, ledger: Ledger) -> bool:
        """LiquidityPool._collateral_priced: every listed collateral of weight > 0 that some
        account holds (total > 0) has a price."""
        for col in ledger.collaterals.values():
            if col.weight and col.total:
                try:
                    self.price(col.token)
                except PriceError:
                    return False
        return True

    def pool_withdraw(
        self, pool: PoolLedger, owner: str, assets: int | None, shares: int | None, allowance: int | None = None
    ) -> Outcome:
        """withdraw(assets) when `assets` is given, else redeem(shares); the owner calls, or
        someone with `allowance` shares of it (None: the owner). (A gated pool) "pool: book
        open, request instead" unless the book is idle, checked first; the valuation (its price
        errors), the owner's side (`release`), then `pay_out`."""
        if self.gated and not self.idle(self.ledger, pool):
            return Outcome(BOOK_OPEN, self.ledger)
        try:
            value, need = self.book(self.ledger)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        total_assets = value // SCALE if value > 0 else 0
        if assets is not None:
            shares = mul_div(assets, pool.total_supply + POOL_OFFSET, total_assets + 1, True)
        else:
            assets = mul_div(shares, total_assets + 1, pool.total_supply + POOL_OFFSET, False)
        message = self.release(pool, owner, assets, shares, allowance)
        if message is None:
            message, ledger = self.pay_out(value, need, assets)
        if message is not None:
            return Outcome(message, self.ledger)
        after = pool.copy()
        after.total_supply -= shares
        after.balances[owner] -= shares
        return Outcome(
            None,
            ledger,
            {"flow": -assets, "assets": assets, "shares": shares, "pool": after, "total_assets": total_assets},
        )

    def exit_limit(self, pool: PoolLedger, owner: str) -> tuple[int, int]:
        """LiquidityPool._exit_limit (maxWithdraw, maxRedeem; a gated pool's while the book is
        idle): the owner's free shares, capped at the pool's liquidity and the
        reserve's headroom, in assets and in shares; (0, 0) while a held collateral or a market
        the valuation reads has no price."""
        if not self.collateral_priced(self.ledger):
            return 0, 0
        try:
            value, need = self.book(self.ledger)
        except PriceError:
            return 0, 0
        total_assets = value // SCALE if value > 0 else 0
        liquidity = max(self.ledger.pool_balance - self.ledger.total_debt - self.ledger.total_pending, 0)
        cap = min(liquidity, risk.reserve_headroom(value, need, SCALE))
        free = self.free_shares(pool, owner)
        supply = pool.total_supply + POOL_OFFSET
        return min(mul_div(free, total_assets + 1, supply, False), cap), min(free, mul_div(cap, supply, total_assets + 1, False))

    def max_deposit(self, pool: PoolLedger) -> int:
        """LiquidityPool._max_deposit (maxDeposit, maxMint): MAX_UINT, or 0 while a deposit would be
        refused for the pool's state (a gated pool's book open, a collateral or a market without
        a price, "pool: insolvent")."""
        if (self.gated and not self.idle(self.ledger, pool)) or not self.collateral_priced(self.ledger):
            return 0
        try:
            value = self.pool_value(self.ledger)
        except PriceError:
            return 0
        return MAX_UINT if value > 0 or (value == 0 and pool.total_supply == 0) else 0

    def pool_request_deposit(self, pool: PoolLedger, payer: str, receiver: str, assets: int, fee: int, delay: int) -> Outcome:
        """request_deposit(assets, receiver) by `payer`, its controller: "pool: request pending",
        the valuation (its price errors), the shares the assets are worth now (rounded down, as
        previewDeposit), `admit`'s checks; then `assets + fee` move from the payer into the pool
        (escrow) and the request waits `delay` (Orders' settlement_delay). Open or idle book."""
        if payer in pool.requests:
            return Outcome("pool: request pending", self.ledger)
        try:
            total_assets = self.total_assets(self.ledger)
            shares = mul_div(assets, pool.total_supply + POOL_OFFSET, total_assets + 1, False)
            message = self.admit(pool, assets, shares)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        if message is not None:
            return Outcome(message, self.ledger)
        after = pool.copy()
        after.requests[payer] = PoolRequest(receiver, True, self.now + delay, assets, shares, fee)
        return Outcome(None, self.ledger, {"flow": 0, "pool": after, "request": after.requests[payer]})

    def pool_request_redeem(
        self, pool: PoolLedger, owner: str, receiver: str, shares: int, allowance: int | None, fee: int, delay: int, escrow: str
    ) -> Outcome:
        """request_redeem(shares, receiver, owner), the owner its controller, by the owner (else
        "pool: not owner", whatever the caller's `allowance`): "pool: request pending", the
        valuation (its price errors), what
        the shares are worth now (rounded down, as previewRedeem), `release`'s checks; then the
        shares move from the owner to the pool (`escrow`, its address: the supply unchanged),
        the fee from the caller, and the request waits `delay`."""
        if allowance is not None:  # a caller other than the owner
            return Outcome("pool: not owner", self.ledger)
        if owner in pool.requests:
            return Outcome("pool: request pending", self.ledger)
        try:
            total_assets = self.total_assets(self.ledger)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        assets = mul_div(shares, total_assets + 1, pool.total_supply + POOL_OFFSET, False)
        message = self.release(pool, owner, assets, shares, allowance)
        if message is not None:
            return Outcome(message, self.ledger)
        after = pool.copy()
        after.balances[owner] -= shares
        after.balances[escrow] = after.balances.get(escrow, 0) + shares
        after.requests[owner] = PoolRequest(receiver, False, self.now + delay, assets, shares, fee)
        return Outcome(None, self.ledger, {"flow": 0, "pool": after, "request": after.requests[owner]})

    def pool_execute(self, pool: PoolLedger, controller: str, escrow: str, kept_by: str) -> Outcome:
        """execute_request(controller), by anyone: "pool: no request", "pool: request not due",
        "pool: request lapsed"; the valuation now (its price errors). A deposit mints the
        smaller of the shares recorded at the request and what the tokens are worth now, after
        `admit`'s checks and the receiver's lots (its payer the depositor), the escrowed tokens
        to the Clearinghouse; a redemption pays the smaller of the value recorded and what the
        escrowed shares are worth now (the collateral feeds, a zero amount, then `pay_out`'s
        checks), burning them from the pool. Then the fee goes to the caller. Any refusal
        leaves the request as it was."""
        request = pool.requests.get(controller)
        if request is None:
            return Outcome("pool: no request", self.ledger)
        if self.now < request.executable_at:
            return Outcome("pool: request not due", self.ledger)
        if self.now > request.executable_at + REQUEST_WINDOW:
            return Outcome("pool: request lapsed", self.ledger)
        try:
            value, need = self.book(self.ledger)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        total_assets = value // SCALE if value > 0 else 0
        after = pool.copy()
        del after.requests[controller]
        assets, shares = request.assets, request.shares
        excess = 0  # the cap's excess, shares kept by the Clearinghouse: the share price left as it was (review M1)
        if request.deposit:
            now_worth = mul_div(assets, pool.total_supply + POOL_OFFSET, total_assets + 1, False)
            excess = now_worth - min(shares, now_worth)
            shares = now_worth - excess
            message = self.admit(pool, assets, shares)
            lots = None
            if message is None:
                lots = self.lock(pool.lots.get(request.receiver, [0] * LOTS), request.receiver, controller, shares)
                if isinstance(lots, str):
                    message = lots
            if message is not None:
                return Outcome(message, self.ledger)
            ledger = self.issue(assets)
            after.total_supply += shares + excess
            after.balances[request.receiver] = after.balances.get(request.receiver, 0) + shares
            after.balances[kept_by] = after.balances.get(kept_by, 0) + excess
            after.lots[request.receiver] = lots
            flow = assets
        else:
            now_worth = mul_div(shares, total_assets + 1, pool.total_supply + POOL_OFFSET, False)
            if assets < now_worth:
                excess = shares - mul_div(assets, pool.total_supply + POOL_OFFSET, total_assets + 1, True)
            assets = min(assets, now_worth)
            if not self.collateral_priced(self.ledger):
                return Outcome("pool: collateral feed down", self.ledger)
            if assets == 0:
                return Outcome("pool: zero amount", self.ledger)
            message, ledger = self.pay_out(value, need, assets)
            if message is not None:
                return Outcome(message, self.ledger)
            after.balances[escrow] -= shares
            after.balances[kept_by] = after.balances.get(kept_by, 0) + excess
            shares -= excess
            after.total_supply -= shares
            flow = -assets
        info = {
            "flow": flow,
            "assets": assets,
            "shares": shares,
            "pool": after,
            "total_assets": total_assets,
            "request": request,
            "now_worth": now_worth,  # shares (deposit) or assets (redemption) at the value now
            "excess": excess,  # the cap's excess, shares the Clearinghouse keeps for good
        }
        return Outcome(None, ledger, info)

    def pool_lapse(self, pool: PoolLedger, controller: str, escrow: str) -> Outcome:
        """lapse_request(controller), by anyone: "pool: no request", "pool: request live" until
        executable_at + REQUEST_WINDOW has passed; then the escrow back to the controller (a
        deposit's tokens, a redemption's shares) with the fee (not to the caller: a keeper paid
        for a lapse would let requests lapse rather than execute them)."""
        request = pool.requests.get(controller)
        if request is None:
            return Outcome("pool: no request", self.ledger)
        if self.now <= request.executable_at + REQUEST_WINDOW:
            return Outcome("pool: request live", self.ledger)
        after = pool.copy()
        del after.requests[controller]
        if not request.deposit:
            after.balances[escrow] -= request.shares
            after.balances[controller] = after.balances.get(controller, 0) + request.shares
        return Outcome(None, self.ledger, {"flow": 0, "pool": after, "request": request})

    # -------------------------------------------------------------- Configurator

    def market_params_error(self, params: risk.MarketParams, buffer: int, full: int) -> str | None:
        """Configurator._check_market, in order."""
        if not (10**15 <= params.base_mmr <= 5 * 10**17):
            return "configurator: bad maintenance rate"
        if not (0 < params.tier_size < 2**80):
            return "configurator: bad tier size"
        if params.tier_mmr > 10**17:
            return "configurator: bad tier rate"
        if params.vol_k > 10 * WAD:
            return "configurator: bad vol k"
        if not (60 <= params.liquidation_horizon <= 7 * 86_400):
            return "configurator: bad horizon"
        if not (WAD < params.imr_multiplier <= 10 * WAD):
            return "configurator: bad initial multiplier"
        if risk.mul_up(params.base_mmr, params.imr_multiplier) > WAD:
            return "configurator: initial above 100%"
        if params.fee > 10**16:
            return "configurator: bad fee"
        if params.penalty > 10**17:
            return "configurator: bad penalty"
        if not no_spiral(params.penalty, params.base_mmr, buffer):
            return "configurator: liquidation spiral"
        if params.keeper_share > 9 * 10**17:
            return "configurator: bad keeper share"
        if not (0 < params.skew_scale < 2**88):
            return "configurator: bad skew scale"
        if params.oi_cap > params.skew_scale:
            return "configurator: cap above skew scale"
        if not premium_bounded(params, full):
            return "configurator: cap above premium bound"
        if params.fee + -(-params.oi_cap * WAD // params.skew_scale) >= params.base_mmr:
            return "configurator: fee above maintenance"
        if params.max_funding_rate > 10**17:
            return "configurator: bad funding rate"
        return None

    def set_market(self, market: int, params: risk.MarketParams) -> Outcome:
        ledger = self.ledger
        if market == 0 or market > len(ledger.markets):
            return Outcome("configurator: unknown market", ledger)
        if params.asset != ledger.markets[market].asset:
            return Outcome("configurator: asset fixed", ledger)
        open_interest, (held_longs, held_shorts) = ledger.states[market], ledger.held.get(market, (0, 0))
        if open_interest.long_oi + held_longs > params.oi_cap or open_interest.short_oi + held_shorts > params.oi_cap:
            return Outcome("configurator: cap below open interest", ledger)  # placed orders' holds counted
        message = self.market_params_error(params, ledger.buffer, ledger.full_liquidation_health)
        if message:
            return Outcome(message, ledger)
        if not ledger.underwater_tip_rate < params.base_mmr:
            return Outcome("configurator: tip above maintenance", ledger)
        try:
            price = self.price(ledger.markets[market].asset)
        except PriceError as error:
            return Outcome(error.message, ledger)
        after = ledger.copy()
        self.accrue(after, market, price)
        after.markets[market] = params
        return Outcome(None, after)

    def set_collateral(self, token: str, weight: int, cap: int, discount: int, enabled: bool) -> Outcome:
        if self.slot(token) is None:
            return Outcome("configurator: unknown token", self.ledger)
        if not (0 < weight <= 99 * 10**16):
            return Outcome("configurator: bad weight", self.ledger)
        if not (10**15 <= discount < WAD - weight):
            return Outcome("configurator: bad discount", self.ledger)
        after = self.ledger.copy()
        slot = self.slot(token)
        if after.collaterals[slot].weight == 0:
            try:
                self.price(token)  # restoring a written-off token needs its feed
            except PriceError as error:
                return Outcome(error.message, self.ledger)
        after.collaterals[slot] = replace(
            after.collaterals[slot], weight=weight, cap=cap, liquidation_discount=discount, enabled=enabled
        )
        return Outcome(None, after)

    def write_off_collateral(self, token: str) -> Outcome:
        slot = self.slot(token)
        if slot is None:
            return Outcome("configurator: unknown token", self.ledger)
        after = self.ledger.copy()
        after.collaterals[slot] = replace(after.collaterals[slot], weight=0, enabled=False)
        return Outcome(None, after)

    def list_collateral(self, token: str, unit: int, weight: int, cap: int, discount: int, settlement_token: str) -> Outcome:
        """Configurator.list_collateral (the token's decimals are <= 18 here)."""
        if token == settlement_token:
            return Outcome("configurator: bad token", self.ledger)
        if self.slot(token) is not None:
            return Outcome("configurator: already listed", self.ledger)
        if len(self.ledger.collaterals) + 1 >= 8:
            return Outcome("configurator: too many collaterals", self.ledger)
        try:
            self.price(token)
        except PriceError as error:
            return Outcome(error.message, self.ledger)
        if not (0 < weight <= 99 * 10**16):
            return Outcome("configurator: bad weight", self.ledger)
        if not (10**15 <= discount < WAD - weight):
            return Outcome("configurator: bad discount", self.ledger)
        after = self.ledger.copy()
        after.collaterals[len(after.collaterals) + 1] = Collateral(token, unit, weight, cap, 0, discount, True)
        return Outcome(None, after)

    def list_market(self, params: risk.MarketParams) -> Outcome:
        """Configurator.list_market then Clearinghouse.apply_market for a new id."""
        ledger = self.ledger
        market = len(ledger.markets) + 1
        if market >= 16:
            return Outcome("configurator: too many markets", ledger)
        try:
            self.price(params.asset)
        except PriceError as error:
            return Outcome(error.message, ledger)
        message = self.market_params_error(params, ledger.buffer, ledger.full_liquidation_health)
        if message:
            return Outcome(message, ledger)
        if not ledger.underwater_tip_rate < params.base_mmr:
            return Outcome("configurator: tip above maintenance", ledger)
        after = ledger.copy()
        after.markets[market] = params
        after.states[market] = risk.MarketState(0, 0, 0, 0, self.now)
        after.flags[market] = PAUSED if ledger.paused else 0
        after.reserve_factors[market] = WAD  # listed without a reserve factor: the pool reads 1.0
        return Outcome(None, after)

    def set_liquidation_parameters(self, buffer: int, full: int, dust: int) -> Outcome:
        if buffer > 5 * 10**17:
            return Outcome("configurator: bad buffer", self.ledger)
        if not (0 < full <= WAD):
            return Outcome("configurator: bad full liquidation health", self.ledger)
        if dust > 10_000 * WAD:
            return Outcome("configurator: bad dust", self.ledger)
        for m in sorted(self.ledger.markets):
            params = self.ledger.markets[m]
            if not no_spiral(params.penalty, params.base_mmr, buffer):
                return Outcome("configurator: liquidation spiral", self.ledger)
            if not premium_bounded(params, full):
                return Outcome("configurator: cap above premium bound", self.ledger)
        after = self.ledger.copy()
        after.buffer, after.full_liquidation_health, after.dust_notional = buffer, full, dust
        return Outcome(None, after)

    def set_underwater_tip(self, rate: int) -> Outcome:
        if rate > 10**16:
            return Outcome("configurator: bad tip", self.ledger)
        for m in sorted(self.ledger.markets):
            if not rate < self.ledger.markets[m].base_mmr:
                return Outcome("configurator: tip above maintenance", self.ledger)
        after = self.ledger.copy()
        after.underwater_tip_rate = rate
        return Outcome(None, after)

    def set_reserve_factor(self, market: int, factor: int) -> Outcome:
        """Configurator.set_reserve_factor: the market, the bound, then Orders.apply_reserve_factor."""
        if market not in self.ledger.markets:
            return Outcome("configurator: unknown market", self.ledger)
        if factor > 100 * WAD:
            return Outcome("configurator: bad reserve factor", self.ledger)
        after = self.ledger.copy()
        after.reserve_factors[market] = factor  # 0: off, as the pool reads it back
        return Outcome(None, after)

    def set_debt_parameters(self, rate_base: int, rate_slope: int, debt_imr: int, ceiling: int, ltv: int) -> Outcome:
        """Configurator.set_debt_parameters: its bounds in order, then
        Clearinghouse.apply_debt_terms (the index accrues at the old terms first) and
        LiquidationEngine.apply_debt_liquidation_ltv."""
        if rate_base > WAD or rate_slope > 10 * WAD:
            return Outcome("configurator: bad debt rate", self.ledger)
        if not 0 < debt_imr <= WAD:
            return Outcome("configurator: bad debt margin", self.ledger)
        if not 0 < ceiling <= WAD:
            return Outcome("configurator: bad debt ceiling", self.ledger)
        if not (ltv <= WAD and risk.mul_down(ltv, WAD + debt_imr) > WAD):
            return Outcome("configurator: bad loan to value", self.ledger)
        after = self.ledger.copy()
        self.accrue_debt(after)
        after.debt_terms = (rate_base, rate_slope, debt_imr, ceiling)
        after.debt_liquidation_ltv = ltv
        return Outcome(None, after)


def no_spiral(penalty: int, base_mmr: int, buffer: int) -> bool:
    """risk._no_spiral."""
    return risk.mul_down(WAD + buffer, base_mmr) > penalty


def premium_bounded(params: risk.MarketParams, full: int) -> bool:
    """Configurator._premium_bounded."""
    effective_penalty = min(params.penalty, risk.mul_down(full, params.base_mmr))
    return params.oi_cap * WAD * WAD <= params.skew_scale * (WAD - params.keeper_share) * effective_penalty


def checked_price_error(
    answer: int, updated_at: int, now: int, heartbeat: int, scale: int, min_price: int, max_price: int
) -> str | None:
    """OracleRouter._checked_price, in order."""
    if answer <= 0:
        return "oracle: non-positive answer"
    if updated_at == 0 or updated_at > now or now - updated_at > heartbeat:
        return "oracle: stale answer"
    price = answer * scale
    if not (min_price < price < max_price):
        return "oracle: answer out of bounds"
    return None


# ------------------------------------------------------------------ the state machine

COLLATERALS = ("WETH", "WBTC", "USDT", "LINK")  # LINK is priced but unlisted until list_collateral
TOKENS = ("USDC", *COLLATERALS)
ACCOUNT = st.integers(0, 5)
MARKET = st.integers(0, 3)  # the n-th listed market (modulo how many there are)
MARKET_OR_UNKNOWN = st.sampled_from([0, 1, 0, 1, 2, 3, -1])  # -1: the next, unlisted, id
USD_AMOUNT = st.integers(0, 250_000)  # 0 included: the zero-amount refusals
PERMILLE = st.integers(0, 1_100)  # of a balance or position; above 1,000 asks for more than there is
LIQUIDATOR = st.sampled_from(["second_address", "keeper"])
TARGET = st.integers(0, 6)  # an account by index, or 6: the one the rule's precondition fits best
NOTABLE_EVENTS = {
    "Liquidation",
    "BadDebt",
    "CollateralLiquidation",
    "ProfitPending",
    "CircuitBreakerTripped",
    "CircuitBreakerCleared",
    "RoundRejected",
}


class ProtocolMachine(RuleBasedStateMachine):
    """The whole protocol, one call per step (a few rules make a short sequence), every call
    predicted by `Model` and every invariant of the module docstring checked after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.world: World = seeded_world()
        self.env = self.world.env
        # our own environment, rewound after every example: no state leaks between examples
        self._anchor = self.env.anchor()
        self._anchor.__enter__()
        protocol = self.world.protocol
        self.roles = self.world.roles
        self.ch = protocol.clearinghouse
        self.pool = protocol.pool
        self.oracle = protocol.oracle
        self.configurator = protocol.configurator
        self.engine = protocol.liquidation_engine
        self.orders = protocol.orders
        self.lens = protocol.lens
        # the order parameters stay as deployed (no rule changes them)
        self.settlement_delay = self.orders.settlement_delay()
        self.order_expiry = self.orders.expiry()
        self.execution_fee = self.orders.execution_fee()
        self.order_bond = self.orders.order_bond()
        self.escrow = str(self.pool.address)  # the pool holds the shares of redemption requests itself
        self.kept_by = str(self.pool.CLEARINGHOUSE())  # holds a capped request's excess, as shares, for good
        self.gated = hasattr(self.pool, "instant")  # a pool whose instant paths wait for an idle book
        self.pending: dict[tuple[int, int], Pending] = {}  # (account, market) -> the order Orders holds
        self.tokens = {"USDC": protocol.settlement, **protocol.tokens}
        self.feeds = protocol.feeds
        self.addr = {sym: str(token.address) for sym, token in self.tokens.items()}
        self.decimals = {sym: token.decimals() for sym, token in self.tokens.items()}
        self.last_logs: list[Any] = []
        self.owner = {"configurator": self.roles.owner, "oracle": self.roles.owner}
        self.spare_admin = self.env.generate_address("spare_admin")
        self.donated_ch: Counter[str] = Counter()
        self.donated_pool: Counter[str] = Counter()
        self.rotation = 0
        self.sweeps = 0
        self.started = False
        self.steps_taken = 0  # rules run in this example
        self.refresh()
        self.expected = self.ledger
        self.expected_pool = self.pool_ledger

    def teardown(self) -> None:
        self._anchor.__exit__(None, None, None)

    # -------------------------------------------------------------- reading

    def refresh(self, ledger: Ledger | None = None) -> None:
        self.now = self.env.evm.patch.timestamp
        self.ledger = ledger if ledger is not None else read_ledger(self.ch, self.engine, self.configurator, self.pool)
        feeds = {self.addr[sym]: read_feed(self.oracle, self.feeds[sym], self.addr[sym]) for sym in COLLATERALS}
        self.oracle_view = oracle_view(feeds, self.oracle._storage.max_vol_rise_per_hour.get(), self.now)
        self.pool_ledger = self.read_pool()
        self.model = Model(self.ledger, self.oracle_view, self.now, self.gated)

    def read_pool(self) -> PoolLedger:
        holders = [str(a) for a in self.roles.lps]
        storage = storage_of(self.pool)
        requests = {}
        for h in holders:
            # struct Request: receiver, deposit, executable_at, assets, shares, fee (an empty one: none)
            receiver, deposit, executable_at, assets, shares, fee = storage.entry_words(("requests",), h, count=6)
            if executable_at:
                address = to_checksum_address(receiver.to_bytes(20, "big"))
                requests[h] = PoolRequest(address, bool(deposit), executable_at, assets, shares, fee)
        return PoolLedger(
            total_supply=storage.var("erc20", "totalSupply"),
            balances={h: storage.entry(("erc20", "balanceOf"), h) for h in [*holders, self.escrow, self.kept_by]},
            lots={h: storage.entry_words(("_lots",), h, count=LOTS) for h in holders},
            requests=requests,
        )

    def account(self, index: int) -> tuple[Any, int, int]:
        owner, sub = self.world.accounts[index]
        return owner, sub, self.world.account_id(index)

    def market_of(self, choice: int) -> int:
        """The `choice`-th listed market (modulo their number); -1: the next id, not listed."""
        markets = sorted(self.ledger.markets)
        return len(markets) + 1 if choice < 0 else markets[choice % len(markets)]

    def units(self, sym: str, usd: int) -> int:
        """`usd` dollars of token `sym` at the feed's price, in token units."""
        if sym == "USDC":
            return usd * 10**6
        return usd * 10 ** self.decimals[sym] * WAD // self.oracle_view.raw[self.addr[sym]]

    def live_margin(self, account: int) -> tuple[int, int, int] | None:
        try:
            return self.model.margin(self.ledger, account)
        except PriceError:
            return None

    # -------------------------------------------------------------- calling

    def call(self, label: str, function: Any, *args: Any, sender: Any, outcome: Outcome) -> bool:
        """Send one transaction and hold it to the model: same revert message, or success."""
        got = attempt(function, *args, sender=sender)
        record(label, got)
        self.last_logs = function.contract.get_logs() if got is None else []
        for event in self.last_logs:
            name = type(event).__name__
            if name in NOTABLE_EVENTS:
                record(f"event {name}", None)
        assert got == outcome.message, f"{label}{args}: the contract says {got!r}, the model {outcome.message!r} ({outcome.info})"
        if got is None:
            self.note_paths(self.ledger, outcome)
            self.expected = outcome.ledger
            if "pool" in outcome.info:
                self.expected_pool = outcome.info["pool"]
        return got is None

    def note_paths(self, before: Ledger, outcome: Outcome) -> None:
        """The loan and claim paths a successful call took, for the outcome table (the scripted
        walk asserts they were exercised): interest charged to the pool (a debt
        rewritten after its index moved: what the ledger's exact match then proves to the wei),
        a claim paid at a settlement withdrawal, a claim netted against a new debt."""
        after = outcome.ledger
        interest = sum(
            risk.debt_now(-written, after.debt_index, before.debt_index_at[account]) + written
            for account, written in before.settlement.items()
            if written < 0
            and (after.settlement.get(account, 0), after.debt_index_at.get(account)) != (written, before.debt_index_at[account])
        )
        if interest > 0:
            record("interest charged to the pool", None)
        if outcome.info.get("claimed"):
            record("claim paid at withdrawal", None)
        elif any(after.pending.get(a, 0) < claim and after.settlement.get(a, 0) <= 0 for a, claim in before.pending.items()):
            record("claim netted against a new debt", None)

    def settle_step(self) -> None:
        """Between the calls of a multi-call rule: the ledger must already match, then re-read."""
        actual = read_ledger(self.ch, self.engine, self.configurator, self.pool)
        differences = self.expected.copy().normalise().diff(actual)
        assert not differences, "ledger differs from the model:\n" + "\n".join(differences)
        self.refresh(actual)
        assert self.pool_ledger == self.expected_pool, f"pool ledger {self.pool_ledger} != model {self.expected_pool}"
        self.expected = actual
        self.expected_pool = self.pool_ledger

    def events(self, name: str) -> list[Any]:
        """Events of that name the last successful call emitted."""
        return [e for e in self.last_logs if type(e).__name__ == name]

    # -------------------------------------------------------------- vault

    # The core rules take one composite argument: hypothesis orders rules by their number of
    # arguments and favours the first ones, so these run more often than the governance rules.

    @rule(order=st.tuples(ACCOUNT, st.sampled_from(TOKENS), USD_AMOUNT, st.integers(0, 999)))
    def deposit(self, order: tuple[int, str, int, int]) -> None:
        """(account, token, dollars, extra token units)"""
        index, sym, usd, dust = order
        owner, sub, account = self.account(index)
        amount = self.units(sym, usd) + (dust if usd else 0)
        token = self.tokens[sym]
        wallet = token_balance(token, owner)
        outcome = self.model.deposit(account, self.addr[sym], amount, self.addr["USDC"])
        if self.call("Clearinghouse.deposit", self.ch.deposit, token, amount, sub, sender=owner, outcome=outcome):
            assert token_balance(token, owner) == wallet - amount

    @rule(
        order=st.tuples(
            TARGET,
            st.sampled_from([0, 0, 0, 1, 2, 3, 4]),
            st.one_of(st.sampled_from([50, 200, 500, 1_000]), PERMILLE),
            st.integers(1, 5_000),
        )
    )
    def withdraw(self, order: tuple[int, int, int, int]) -> None:
        """(account, or 6 for the one with the most equity above initial margin, token: the n-th
        of those the account holds first, then the others, permille of the balance, dollars
        asked when the balance is not positive)"""
        index, choice, permille, usd = order
        if index == 6:
            room = {i: self.live_margin(self.world.account_id(i)) for i in range(len(self.world.accounts))}
            index = max(room, key=lambda i: room[i][0] - room[i][2] if room[i] else -1)
        owner, sub, account = self.account(index)
        held = [
            t
            for t in TOKENS
            if (
                self.ledger.settlement.get(account, 0) + self.ledger.pending.get(account, 0) > 0
                if t == "USDC"
                else self.ledger.balances.get((account, self.model.slot(self.addr[t])), 0)
            )
        ]
        sym = (held + [t for t in TOKENS if t not in held])[choice]
        if sym == "USDC":
            # a withdrawal pays the pending claim into the balance first
            balance = self.ledger.settlement.get(account, 0) + self.ledger.pending.get(account, 0)
        else:
            balance = self.ledger.balances.get((account, self.model.slot(self.addr[sym])), 0)
        amount = balance * permille // 1_000 if balance > 0 else self.units(sym, usd) * (permille > 0)
        self.do_withdraw(index, sym, amount)

    def do_withdraw(self, index: int, sym: str, amount: int) -> bool:
        owner, sub, account = self.account(index)
        token = self.tokens[sym]
        wallet = token_balance(token, owner)
        outcome = self.model.withdraw(account, self.addr[sym], amount, self.addr["USDC"], self.open_orders(account))
        if not self.call("Clearinghouse.withdraw", self.ch.withdraw, token, amount, sub, sender=owner, outcome=outcome):
            return False
        assert token_balance(token, owner) == wallet + amount
        # invariant 2: a withdrawal leaves equity >= initial, read back from the contract
        try:
            expected = self.model.margin(self.expected, account)
        except PriceError:
            return True  # no positions, no debt: the withdrawal read no price, and the stale feed blocks the view
        margin = tuple(self.ch.margin(account))
        assert margin == expected
        assert margin[0] >= margin[2], f"withdraw left equity {margin[0]} below initial {margin[2]}"
        return True

    # -------------------------------------------------------------- markets

    def trade_delta(self, account: int, market: int, kind: str, leverage: int, permille: int, is_long: bool) -> int:
        size = self.ledger.positions.get((account, market), (0, 0))[0]
        price = self.oracle_view.raw[self.ledger.markets[market].asset]
        margin = self.live_margin(account)
        equity = max(margin[0] if margin else 0, 1_000 * WAD)
        sign = 1 if is_long else -1
        fresh = sign * leverage * equity * WAD // price
        if kind == "open":
            return fresh
        if kind == "reduce":
            return -size * permille // 1_000 if size else fresh // 10
        if kind == "close":
            return -size
        if kind == "flip":
            return -size - (fresh if size == 0 else (1 if size > 0 else -1) * abs(fresh))
        # "edge": the size whose initial requirement is about the equity (permille around 1,000)
        params = self.ledger.markets[market]
        _, imr = self.model.rates(params, abs(size))
        target = equity * WAD // max(risk.mul_up(price, imr), 1) * permille // 1_000
        return sign * target - size

    def market_feed(self, market: int) -> tuple[str, Any]:
        """The symbol and MockAggregator of `market`'s asset."""
        asset = self.ledger.markets[market].asset
        sym = next(s for s in COLLATERALS if self.addr[s] == asset)
        return sym, self.feeds[sym]

    def open_orders(self, account: int) -> int:
        """Orders.open_orders: the account's orders not yet filled or cancelled."""
        return sum(1 for (a, _) in self.pending if a == account)

    def round_state(self, key: tuple[int, int]) -> tuple[str, str | None]:
        """Orders._round_state of the order waiting for `key`, from OracleRouter.round_price as
        it reads now (the feed re-read; `self.ledger` must be current): NO_ROUND with the
        router's revert ("oracle: no round yet" while the newest round is dated before
        executable_at, else the price's guard), PASSED when the round before the newest is
        dated at or after executable_at, or cannot be read (getRoundData(id - 1) reverts) and
        the newest id has phase bits (the first round of a new phase), else FILLABLE."""
        account, market = key
        order = self.pending[key]
        _, feed = self.market_feed(market)
        self.refresh(self.ledger)
        asset = self.ledger.markets[market].asset
        f = self.oracle_view.feeds[asset]
        if f.updated_at < order.executable_at:
            return NO_ROUND, "oracle: no round yet"
        if f.round_id == 0:
            return PASSED, None
        previous = storage_of(feed).entry(("_rounds",), f.round_id - 1) >> 192  # 0: getRoundData reverts
        # without a readable predecessor, an id with phase bits is a proxy's new phase (passed), a
        # plain id had none (the first)
        if previous >= order.executable_at if previous else f.round_id >> 64 != 0:
            return PASSED, None
        try:
            self.model.price(asset)
        except PriceError as error:
            return NO_ROUND, error.message
        return FILLABLE, None

    def dead(self, key: tuple[int, int]) -> str | None:
        """Orders._release's verdict on the order waiting for `key`: PASSED (its fee forfeited),
        EXPIRED (no round and `expiry` seconds past executable_at: refunded), or None while it
        can still fill (or may yet get its round)."""
        state, _ = self.round_state(key)
        if state == PASSED:
            return PASSED
        if state == NO_ROUND and self.now >= self.pending[key].executable_at + self.order_expiry:
            return EXPIRED
        return None

    def commit(self, owner: Any, sub: int, account: int, market: int, delta: int, limit_price: int) -> bool:
        """Orders.commit_order, its refusals predicted in the contract's order; on success the
        execution fee moves from the owner's wallet into escrow and the order waits in `pending`
        with the position it was placed against. An order already waiting in that market is
        replaced once it can no longer fill, its fee forfeited to the insurance fund when its
        round passed, refunded (net of the new fee) when it expired with no round; while it can
        still fill: "orders: order pending"."""
        key = (account, market)
        now = self.env.evm.patch.timestamp
        waiting = self.pending.get(key)
        message, verdict = None, None
        if delta == 0:
            message = "orders: zero size"
        elif abs(delta) > MASK_128 >> 1:
            message = "orders: size too large"
        elif limit_price > MASK_128:
            message = "orders: limit too large"
        elif market not in self.ledger.markets:
            message = "orders: unknown market"
        elif waiting is not None:
            verdict = self.dead(key)
            if verdict is None:
                message = "orders: order pending"
        outcome = Outcome(message, self.ledger)
        bond = 0
        if message is None:
            # the Clearinghouse is not touched but for a replaced order's forfeited fee; the pool
            # releases the replaced order's hold, then holds the new one unless the reserve refuses it
            outcome = self.model.forfeit(waiting.fee + waiting.bond) if verdict == PASSED else Outcome(None, self.ledger.copy())
            if verdict is not None:
                self.model.hold(outcome.ledger, market, waiting.position, waiting.size_delta, -1)
            position = self.ledger.positions.get(key, (0, 0))[0]
            # what the margin is checked with: the orders that make a position larger, this one
            # first, then the others in market order; a close or a flip to a smaller size is left out
            # (a flip's own margin is then the account's as it stands)
            growing = sorted(
                (m, order.size_delta)
                for (a, m), order in self.pending.items()
                if a == account and m != market and abs(order.position + order.size_delta) > abs(order.position)
            )
            if abs(position + delta) > abs(position):
                growing.insert(0, (market, delta))
            refused = None
            adds = risk.order_growth(position, delta) != (0, 0)
            if adds and self.ledger.paused:  # governance's switches first: their fill refusal is refunded
                refused = "orders: paused"
            elif adds and self.ledger.flags[market] & REDUCE_ONLY:
                refused = "orders: reduce only"
            elif self.model.over_debt_ceiling(account, market, delta):
                refused = "orders: debt ceiling"
            elif risk.order_growth(position, delta) != (0, 0):
                refused = self.model.commit_margin(outcome.ledger, account, growing)
            if refused is None:
                refused = self.model.commit_reserve(outcome.ledger, account, market, delta)
            if refused is not None:
                outcome = Outcome(refused, self.ledger)
            else:
                growth = sum(risk.order_growth(position, delta))
                if growth:  # its bond, at the price the margin check read, over the reserve factor
                    asset = self.ledger.markets[market].asset
                    factor = self.model.bond_factor(outcome.ledger, market, position, delta)
                    bond = risk.order_bond(growth, self.model.price(asset), self.order_bond, SCALE, factor)
                self.model.hold(outcome.ledger, market, position, delta, 1)
        usdc = self.tokens["USDC"]
        wallet = token_balance(usdc, owner)
        commit = self.orders.commit_order
        if not self.call("Orders.commit_order", commit, market, delta, limit_price, sub, sender=owner, outcome=outcome):
            return False
        refund = waiting.fee + waiting.bond if verdict == EXPIRED else 0
        assert token_balance(usdc, owner) == wallet - self.execution_fee - bond + refund
        (event,) = self.events("OrderCommitted")
        assert (event.size_delta, event.limit_price, event.executable_at, event.fee, event.bond) == (
            delta,
            limit_price,
            now + self.settlement_delay,
            self.execution_fee,
            bond,
        )
        replaced = []
        if verdict is not None:
            record(f"Orders.commit_order replaced an order {verdict}", None)
        if verdict == PASSED:
            replaced = [("orders: round passed", waiting.fee, waiting.bond, str(self.ch.address))]
        elif verdict == EXPIRED:
            replaced = [("orders: expired", waiting.fee, waiting.bond, str(owner))]
        assert [(e.reason, e.fee, e.bond, str(e.fee_to)) for e in self.events("OrderCancelled")] == replaced
        self.pending[key] = Pending(
            owner, sub, delta, limit_price, now + self.settlement_delay, self.execution_fee, position, bond
        )
        self.settle_step()  # the hold (and a replaced order's fee) in the ledger before what follows reads it
        return True

    def cancel(self, key: tuple[int, int], by: Any) -> bool:
        """Orders.cancel_order by `by` (anyone): "orders: no order"; "orders: not expired" while
        the order can still fill, or has no round yet before its expiry; once its round passed
        its fee goes to the insurance fund, once expired without a round it is refunded to the
        owner. Nothing else moves."""
        account, market = key
        order = self.pending.get(key)
        verdict = None
        if order is None:
            outcome = Outcome("orders: no order", self.ledger)
        else:
            verdict = self.dead(key)
            if verdict is None:
                outcome = Outcome("orders: not expired", self.ledger)
            else:
                outcome = self.model.forfeit(order.fee + order.bond) if verdict == PASSED else Outcome(None, self.ledger.copy())
                self.model.hold(outcome.ledger, market, order.position, order.size_delta, -1)
        usdc = self.tokens["USDC"]
        owner = order.owner if order is not None else by
        wallets = {str(owner): token_balance(usdc, owner), str(by): token_balance(usdc, by)}
        if not self.call("Orders.cancel_order", self.orders.cancel_order, account, market, sender=by, outcome=outcome):
            return False
        del self.pending[key]
        record(f"Orders.cancel_order {verdict}", None)
        (event,) = self.events("OrderCancelled")
        assert (str(event.by), event.size_delta, event.fee, event.bond) == (str(by), order.size_delta, order.fee, order.bond)
        if verdict == PASSED:
            assert (event.reason, str(event.fee_to)) == ("orders: round passed", str(self.ch.address))
            refunded = 0
        else:
            assert (event.reason, str(event.fee_to)) == ("orders: expired", str(owner))
            refunded = order.fee + order.bond
        assert token_balance(usdc, owner) == wallets[str(owner)] + refunded, "the owner's fee was not refunded"
        if str(by) != str(owner):
            assert token_balance(usdc, by) == wallets[str(by)], "whoever cancels is not paid"
        return True

    def fill(self, key: tuple[int, int], redate_round: bool = True) -> bool | None:
        """The keeper executes the order waiting for `key`, after re-dating the market's latest
        round to now (as marginsim.orders.trade_now: same id and answer), predicted as
        OracleRouter.round_price and Clearinghouse.fill_order read now. True: filled, the keeper
        paid the escrowed fee. False: cancelled, "orders: round passed", "orders: position
        changed" (the position is not the one the order was placed against: a liquidation in
        between) or the Clearinghouse's reason, the fee forfeited to the insurance fund and
        nothing else moving. None: execute_order reverted (no round yet, or the market's price
        refused: the old trade's revert), the order waits."""
        account, market = key
        order = self.pending[key]
        _, feed = self.market_feed(market)
        if redate_round:
            redate(self.env, feed, self.roles.owner)
        state, message = self.round_state(key)  # the commit and the clock left the ledger as it was
        before = self.live_margin(account)
        reason = None
        outcome = Outcome(None, self.ledger)
        if state == NO_ROUND:
            outcome = Outcome(message, self.ledger)
        elif state == PASSED:
            reason = "orders: round passed"
        elif self.ledger.positions.get(key, (0, 0))[0] != order.position:
            reason = "orders: position changed"
        else:
            outcome = self.model.trade(account, market, order.size_delta, order.limit_price)
            reason = outcome.message
        refunded = reason in GOVERNANCE_REFUSALS
        if refunded:
            outcome = Outcome(None, self.ledger, outcome.info)  # nothing moves but the refund
        elif reason is not None:
            forfeited = self.model.forfeit(order.fee + order.bond)
            forfeited.info.update(outcome.info)
            outcome = forfeited
        if outcome.message is None:
            # filled or cancelled: the order's hold is released first (the fill does not look at
            # the reserve: it was checked at the commit)
            outcome = replace(outcome, ledger=outcome.ledger.copy())
            self.model.hold(outcome.ledger, market, order.position, order.size_delta, -1)
        usdc, keeper = self.tokens["USDC"], self.roles.keeper
        wallet, owner_wallet = token_balance(usdc, keeper), token_balance(usdc, order.owner)
        if not self.call("Orders.execute_order", self.orders.execute_order, account, market, sender=keeper, outcome=outcome):
            return None
        del self.pending[key]
        record("Orders.fill", reason)
        filled, cancelled = self.events("OrderFilled"), self.events("OrderCancelled")
        if reason is not None:
            # a cancelled fill: the reason the old trade reverted with (or the order's own), the
            # keeper not paid, the fee to the insurance fund, nothing else moving
            # (a refusal by governance's switches refunds the fee and bond to the owner instead)
            assert token_balance(usdc, keeper) == wallet, "a keeper was paid for an order that did not fill"
            back = order.fee + order.bond if refunded else 0
            assert token_balance(usdc, order.owner) == owner_wallet + back, "the owner's refund is wrong"
            assert not filled and not self.events("Trade")
            (event,) = cancelled
            assert (event.reason, event.fee, event.bond, event.size_delta, str(event.fee_to)) == (
                reason,
                order.fee,
                order.bond,
                order.size_delta,
                str(order.owner if refunded else self.ch.address),
            )
            forfeit = 0 if refunded else order.fee + order.bond
            deposits = [(str(e.source), e.amount) for e in self.events("InsuranceDeposit")]
            assert deposits == ([(str(self.orders.address), forfeit)] if forfeit else [])
            return False
        assert token_balance(usdc, keeper) == wallet + order.fee
        assert token_balance(usdc, order.owner) == owner_wallet + order.bond, "the bond did not come back to the owner"
        assert not cancelled
        (event,) = filled
        assert (event.fill_price, event.fee, event.bond, event.size_delta) == (
            outcome.info["fill"],
            order.fee,
            order.bond,
            order.size_delta,
        )
        self.check_profit_pending_event(outcome, account, market)
        self.check_bad_debt_event(outcome)
        after = self.model_after_margin(account)
        if outcome.info["adds_risk"]:
            # invariant 2: a fill that adds risk leaves equity >= initial, read from the contract
            margin = tuple(self.ch.margin(account))
            assert margin == after
            assert margin[0] >= margin[2], f"a risk-adding trade left equity {margin[0]} below initial {margin[2]}"
        if not outcome.info["adds_risk"] and before is not None and after is not None and before[0] >= before[2]:
            # invariant 2 for pure reductions: never refused, and never take an account that was
            # at or above initial margin below it
            assert after[0] >= after[2], (
                f"reduction {order.size_delta} in market {market} took the account from equity {before[0]} >= initial "
                f"{before[2]} to equity {after[0]} < initial {after[2]}"
            )
        return True

    def do_trade(self, owner: Any, sub: int, account: int, market: int, delta: int, limit: str) -> bool:
        """One trade, in two steps: commit an order, let the settlement delay pass, fill it at
        the market's round re-dated to now. An order still waiting in that market (its fill
        reverted) is tried first, and then is this step's trade. True when a fill happened."""
        key = (account, market)
        if key in self.pending:
            result = self.fill(key)
            if result is not None:
                return result
        limit_price = 0
        if limit != "none" and delta != 0 and market in self.ledger.markets:
            # the fill the order will get: same price (the round is re-dated, not moved), same skew
            params, stt = self.ledger.markets[market], self.ledger.states[market]
            fill = risk.fill_price(self.oracle_view.raw[params.asset], stt.long_oi - stt.short_oi, delta, params.skew_scale)
            limit_price = fill if limit == "exact" else max(fill - 1 if delta > 0 else fill + 1, 0)
        if not self.commit(owner, sub, account, market, delta, limit_price):
            return False
        self.env.time_travel(seconds=self.settlement_delay)
        return self.fill(key) is True

    def model_after_margin(self, account: int) -> tuple[int, int, int] | None:
        try:
            return self.model.margin(self.expected, account)
        except PriceError:
            return None

    @rule(
        order=st.tuples(
            ACCOUNT,
            MARKET_OR_UNKNOWN,
            st.sampled_from(["open", "reduce", "close", "flip", "edge"]),
            st.integers(1, 25),
            st.integers(0, 1_100),
            st.booleans(),
            st.sampled_from(["none", "none", "exact", "beyond"]),
        )
    )
    def trade(self, order: tuple[int, int, str, int, int, bool, str]) -> None:
        """(account, market (or an unknown one), open / reduce / close / flip / edge of initial
        margin, leverage, permille, long, price limit: none / exactly the fill / one wei beyond it)"""
        index, choice, kind, leverage, permille, is_long, limit = order
        market = self.market_of(choice)
        owner, sub, account = self.account(index)
        if market not in self.ledger.markets:
            self.commit(owner, sub, account, market, 1 if is_long else -1, 0)  # "orders: unknown market"
            return
        delta = self.trade_delta(account, market, kind, leverage, permille, is_long)
        self.do_trade(owner, sub, account, market, delta, limit)

    @rule(index=ACCOUNT, market=MARKET, leverage=st.integers(1, 20), is_long=st.booleans())
    def open_and_close(self, index: int, market: int, leverage: int, is_long: bool) -> None:
        """Open, then close what was opened by the next order (settlement_delay later, at the
        same price): invariant 5."""
        market = self.market_of(market)
        owner, sub, account = self.account(index)
        if (account, market) in self.pending:
            self.fill((account, market))  # the waiting order first; the round trip another time
            return
        size = self.ledger.positions.get((account, market), (0, 0))[0]
        delta = self.trade_delta(account, market, "open", leverage, 1_000, is_long if size == 0 else size > 0)
        untouched = self.ledger.copy()
        if not self.do_trade(owner, sub, account, market, delta, "none"):
            return
        self.settle_step()
        opened = self.ledger.states[market]  # funding accrued to the open
        # the close is a pure reduction of what was just opened: always allowed
        assert self.do_trade(owner, sub, account, market, -delta, "none")
        closed = self.expected.states[market]
        # invariant 5: a round trip creates no value for the trader beyond the funding the opened
        # size earned while it was open. Compared with the account had it not traded, funding
        # accrued to the open as it was (the trade only changes the skew after it): the skew the
        # trade added only ever makes the funding of a position on the same side worse.
        without = replace(untouched, states={**untouched.states})
        without.states[market] = replace(
            untouched.states[market], funding_index=opened.funding_index, last_funding_time=opened.last_funding_time
        )
        try:
            equity_without = self.model.margin(without, account)[0]
        except PriceError:
            return
        if self.model_after_margin(account) is None:
            return
        equity_after = self.ch.margin(account)[0]
        earned = -risk.signed_mul_floor(delta, closed.funding_index - opened.funding_index)
        assert equity_after <= equity_without + earned, (
            f"round trip of {delta} gained {equity_after - equity_without} wei, its funding {earned}"
        )

    @rule(index=ACCOUNT, market=MARKET, leverage=st.integers(1, 10), is_long=st.booleans(), new_phase=st.booleans())
    def order_round_passed(self, index: int, market: int, leverage: int, is_long: bool, new_phase: bool) -> None:
        """An order whose first round has been replaced by a newer one before the keeper came:
        two rounds published after its executable time (same answer), and the order is
        cancelled "orders: round passed", never filled at a price chosen after the fact; the
        position stays, the keeper is not paid, the fee goes to the insurance fund. With
        `new_phase`, the round after the order is the first of a new aggregator phase (the
        proxy's round id jumps to the next phase): round_price cannot read the round before it
        and counts it as passed, the same cancellation; a second round of the phase follows, so
        the market fills again. (An order already waiting is the one.)"""
        market = self.market_of(market)
        owner, sub, account = self.account(index)
        key = (account, market)
        if key not in self.pending:
            delta = self.trade_delta(account, market, "open", leverage, 1_000, is_long)
            if not self.commit(owner, sub, account, market, delta, 0):
                return
        self.env.time_travel(seconds=max(self.pending[key].executable_at - self.env.evm.patch.timestamp, 0))
        sym, feed = self.market_feed(market)
        position = tuple(self.ch.positions(account, market))
        answer = self.oracle_view.feeds[self.addr[sym]].answer
        if new_phase:
            now = self.env.evm.patch.timestamp
            first = ((feed.latest_round() >> 64) + 1) << 64 | 1
            feed.updateRoundData(first, answer, now, now, sender=self.roles.owner)
            record("MockAggregator.updateRoundData (new phase)", None)
        else:
            self.publish(sym, answer)  # the first round at or after executable_at
            self.env.time_travel(seconds=12)
            self.publish(sym, answer)  # a newer one
        assert self.fill(key, redate_round=False) is False
        assert self.events("OrderCancelled")[0].reason == "orders: round passed"
        assert tuple(self.ch.positions(account, market)) == position
        if new_phase:
            self.settle_step()  # the forfeited fee
            self.env.time_travel(seconds=12)
            self.publish(sym, answer)
            self.sync(sym)

    @rule(
        order=st.tuples(
            TARGET,
            MARKET,
            st.sampled_from(["keeper", "keeper", "attacker", "owner", "replace"]),
            st.sampled_from(["early", "expired", "passed", "as_is"]),
        )
    )
    def cancel_order(self, order: tuple[int, int, str, str]) -> None:
        """(account or 6 for the first waiting order, market, by, scenario) Orders.cancel_order,
        by the keeper, a stranger or the owner, of the account's order in the market (placed
        here, an open of 2x, when none waits), or its owner's new order replacing it
        (commit_order): at once ("orders: not expired" / "orders: order pending": it can still
        fill, and stays open, its owner's withdrawals refused until it fills or is cancelled),
        after its expiry with no round (refunded to its owner), after its round passed
        (forfeited to the insurance fund), or as it is ("orders: no order" when there is none;
        a replacement then is a plain commit). A refusal that leaves an order open is followed
        by the owner's withdrawal, refused while it is."""
        index, market, by, scenario = order
        market = self.market_of(market)
        if index == 6:
            ids = [self.world.account_id(i) for i in range(len(self.world.accounts))]
            waiting = sorted(self.pending)
            index, market = (ids.index(waiting[0][0]), waiting[0][1]) if waiting else (0, market)
        owner, sub, account = self.account(index)
        key = (account, market)
        if key not in self.pending and scenario != "as_is":
            delta = self.trade_delta(account, market, "open", 2, 1_000, True)
            if not self.commit(owner, sub, account, market, delta, 0):
                return
        if scenario == "expired":
            self.env.time_travel(seconds=self.settlement_delay + self.order_expiry)
        elif scenario == "passed":
            self.env.time_travel(seconds=self.settlement_delay)
            sym, _ = self.market_feed(market)
            answer = self.oracle_view.feeds[self.addr[sym]].answer
            self.publish(sym, answer)
            self.env.time_travel(seconds=12)
            self.publish(sym, answer)
        if by == "replace":
            delta = self.trade_delta(account, market, "open", 2, 1_000, False)
            done = self.commit(owner, sub, account, market, delta, 0)
        else:
            who = {"keeper": self.roles.keeper, "attacker": self.roles.attacker, "owner": owner}[by]
            done = self.cancel(key, who)
        if not done and self.open_orders(account):
            # the order stays open: its owner cannot withdraw ("clearinghouse: order pending")
            self.withdraw(order=(index, 0, 1_000, 1))

    @rule(order=st.tuples(TARGET, MARKET, st.integers(300, 1_900)))
    def liquidated_before_fill(self, order: tuple[int, int, int]) -> None:
        """(account or 6 for the least healthy in the market, market, basis points) The account
        commits an order to close its position, its price then moves against it (synced rounds
        of that many basis points, within the breaker's band, until it is liquidatable or six
        rounds) and a keeper liquidates it before the fill: the fill is cancelled "orders:
        position changed", so the close never opens the other side; the keeper is not paid, the
        fee goes to the insurance fund. (An order already waiting in the market is filled
        instead.)"""
        index, market, move_bp = order
        market = self.market_of(market)
        if index == 6:
            index = self.least_healthy(market)
        owner, sub, account = self.account(index)
        key = (account, market)
        if key in self.pending:
            self.fill(key)
            return
        size = self.ledger.positions.get(key, (0, 0))[0]
        if size == 0 or not self.commit(owner, sub, account, market, -size, 0):
            return
        sym, _ = self.market_feed(market)
        for _ in range(6):
            margin = self.live_margin(account)
            if margin is None or margin[0] < margin[1]:
                break
            answer = self.oracle_view.feeds[self.addr[sym]].answer
            self.publish(sym, max(answer * (10_000 - (move_bp if size > 0 else -move_bp)) // 10_000, 1))
            self.sync(sym)
            self.refresh(self.ledger)
        liquidated = self.do_liquidate(account, market, MAX_UINT, self.roles.keeper)
        self.settle_step()
        self.env.time_travel(seconds=self.settlement_delay)
        result = self.fill(key)
        if liquidated and result is not None:
            assert result is False and self.events("OrderCancelled")[0].reason == "orders: position changed"

    # -------------------------------------------------------------- liquidation

    def check_liquidation_snapshot(self, account: int, market: int) -> None:
        """The Clearinghouse's `liquidation_snapshot`, which the engine sizes and prices from,
        equals the model's `risk.snapshot_for` (or reverts with the model's message)."""
        if market not in self.ledger.markets:
            return
        got, message = attempt_view(self.ch.liquidation_snapshot, account, market)
        try:
            expected = self.model.liquidation_snapshot(account, market)
        except PriceError as error:
            assert message == error.message, f"liquidation_snapshot: {message!r} vs model {error.message!r}"
            return
        assert message is None and tuple(got) == astuple(expected), f"liquidation_snapshot {got} != model {expected}"

    def do_liquidate(self, account: int, market: int, max_size: int, liquidator: Any) -> bool:
        self.check_liquidation_snapshot(account, market)
        outcome = self.model.liquidate(account, market, max_size, liquidator)
        info = outcome.info
        if outcome.message == "liquidation: health worsened" and max_size >= info["abs_size"]:
            raise AssertionError(f"an honest liquidation of unhealthy account {account:#x} in market {market} is refused: {info}")
        usdc = self.tokens["USDC"]
        wallet = token_balance(usdc, liquidator)
        if not self.call(
            "LiquidationEngine.liquidate", self.engine.liquidate, account, market, max_size, sender=liquidator, outcome=outcome
        ):
            return False
        # the keeper is paid in tokens: out of the insurance fund, then the pool's free liquidity
        reward = token_balance(usdc, liquidator) - wallet
        assert reward == info["reward"]
        by = "keeper" if liquidator == self.roles.keeper else "owner's second address"
        record(f"liquidation {'partial' if info['partial'] else 'whole position'}, by the {by}", None)
        if info["tip_top_up"]:
            record("liquidation paid the underwater tip", None)
            # the tip is bounded as documented: at most the tip rate of the closed notional and $1,000
            notional = risk.mul_up(info["close"], info["oracle_price"])
            bound = min(risk.mul_down(notional, self.ledger.underwater_tip_rate), risk.MAX_TIP)
            assert info["tip_top_up"] * SCALE <= bound, f"tip top-up {info['tip_top_up']} above {bound} WAD"
        if info["reward"] < info["requested"]:
            record("liquidation paid less than its reward (fund and pool liquidity short)", None)
        if info["whole"] and info["fill"] != info["oracle_price"]:
            record("whole close filled at the skew premium", None)
        (event,) = self.events("Liquidation")
        assert event.health_before < WAD, "a healthy account was liquidated"
        assert (event.penalty, event.keeper_reward, event.health_before, event.health_after) == (
            info["penalty"],
            info["reward"],
            info["health_before"],
            info["health_after"],
        )
        assert (event.account, event.market, str(event.liquidator), event.price) == (
            account,
            market,
            str(liquidator),
            info["price"],
        )
        assert event.realised_pnl == info["credit"]
        self.check_profit_pending_event(outcome, account, market)
        self.check_bad_debt_event(outcome)
        # invariant 3: exactly the least close of marginsim.risk (or all of it: deep or dust), capped
        assert (
            info["close"] == min(info["rule_close"], max_size)
            and event.size_closed == (-1 if self.ledger.positions[(account, market)][0] > 0 else 1) * info["close"]
        )
        if info["least"] is not None and info["rule_close"] != info["abs_size"]:
            assert info["rule_close"] == info["least"]
        if info["partial"]:
            health = risk.health_of(self.ch, account)
            assert health == info["health_after"] and health >= info["health_before"], "a partial liquidation lowered health"
            if max_size >= info["rule_close"]:
                assert health >= WAD + self.ledger.buffer, f"a partial liquidation left health {health} below 1 + buffer"
        # invariant 4: owner + liquidator gain nothing, but the documented underwater tip
        after = self.expected
        has_anything = after.market_mask.get(account, 0) or after.collateral_mask.get(account, 0)
        equity_after = self.model.margin(after, account)[0] if has_anything else 0
        equity_after -= info["shortfall"] * SCALE  # the account's equity before its bad debt was written off
        # the skew premium a whole close earns is what any trade closing it would earn: not a gain
        # of the liquidation
        gain = equity_after - info["equity"] + reward * SCALE - max(info["premium"], 0)
        assert gain <= info["tip_top_up"] * SCALE, f"liquidation gained owner + liquidator {gain} wei ({info})"
        if info["tip_top_up"] == 0 and info["penalty"] > 0:
            assert gain < 0
        return True

    def least_healthy(self, market: int) -> int:
        """Index of the account with a position in `market` and the lowest live health."""
        best, best_health = 0, None
        for index in range(len(self.world.accounts)):
            account = self.world.account_id(index)
            margin = self.live_margin(account)
            if margin is None or (account, market) not in self.ledger.positions:
                continue
            health = risk.health(margin[0], margin[1])
            if best_health is None or health < best_health:
                best, best_health = index, health
        return best

    @rule(order=st.tuples(TARGET, MARKET, LIQUIDATOR, st.sampled_from(["all", "all", "part", "zero"]), st.integers(1, 1_000)))
    def liquidate(self, order: tuple[int, int, str, str, int]) -> None:
        """(account or 6 for the least healthy, market, keeper or the owner's second address,
        max_size: everything / part of the position / zero, permille)"""
        index, choice, liquidator, max_kind, permille = order
        market = self.market_of(choice)
        if index == 6:
            index = self.least_healthy(market)
        owner, _, account = self.account(index)
        size = abs(self.ledger.positions.get((account, market), (0, 0))[0])
        max_size = {"all": MAX_UINT, "zero": 0, "part": size * permille // 1_000 + 1}[max_kind]
        who = self.roles.keeper if liquidator == "keeper" else self.roles.second_addresses[self.roles.traders.index(owner)]
        self.do_liquidate(account, market, max_size, who)

    @rule(order=st.tuples(TARGET, MARKET, LIQUIDATOR))
    def realise_loss(self, order: tuple[int, int, str]) -> None:
        """(account or 6 for the least healthy, market, the keeper or the owner's second
        address): realise a position's loss into its balance. Equity moves by less than two
        token units (the credit's rounding, toward the pool); size and open interest stay."""
        index, choice, caller = order
        market = self.market_of(choice)
        if index == 6:
            index = self.least_healthy(market)
        owner, _, account = self.account(index)
        who = self.roles.keeper if caller == "keeper" else self.roles.second_addresses[self.roles.traders.index(owner)]
        outcome = self.model.realise_loss(account, market)
        if not self.call(
            "LiquidationEngine.realise_loss", self.engine.realise_loss, account, market, sender=who, outcome=outcome
        ):
            return
        (event,) = self.events("LossRealised")
        assert (event.account, event.market, str(event.caller), event.loss, event.price) == (
            account,
            market,
            str(who),
            outcome.info["loss"],
            outcome.info["price"],
        )
        before = self.model.margin(self.ledger, account)[0]
        after = self.model.margin(outcome.ledger, account)[0]
        assert 0 <= before - after < 2 * SCALE, f"realise_loss moved equity by {before - after} wei"
        assert outcome.ledger.positions[(account, market)][0] == self.ledger.positions[(account, market)][0]

    def do_liquidate_collateral(self, account: int, sym: str, max_amount: int) -> bool:
        buyer = self.roles.collateral_buyer
        outcome = self.model.liquidate_collateral(account, self.addr[sym], max_amount)
        usdc, token = self.tokens["USDC"], self.tokens[sym]
        slot = self.model.slot(self.addr[sym])
        # a written-off token goes to governance (the Configurator's owner), not to the buyer
        written_off = slot is not None and self.ledger.collaterals[slot].weight == 0
        receiver = self.owner["configurator"] if written_off else buyer
        paid_before, got_before = token_balance(usdc, buyer), token_balance(token, receiver)
        if not self.call(
            "LiquidationEngine.liquidate_collateral",
            self.engine.liquidate_collateral,
            account,
            token,
            max_amount,
            sender=buyer,
            outcome=outcome,
        ):
            return False
        info = outcome.info
        assert (
            token_balance(usdc, buyer) == paid_before - info["paid"]
            and token_balance(token, receiver) == got_before + info["amount"]
        )
        if written_off:
            record("written-off collateral taken to governance", None)
        self.check_bad_debt_event(outcome)
        if info["over_limit"]:
            record("collateral sale over the loan-to-value limit", None)
            if info["has_positions"]:
                record("collateral sale over the loan-to-value limit, positions open", None)
        # a sale raises more than the haircut value it removes (discount < 1 - weight): the
        # account's equity never falls, before any bad-debt write-off, but by the roundings: the
        # haircut value's two floors (< 2 wei) and the discounted price's floor (< 1 wei a unit)
        equity_after = self.model.margin(self.expected, account)[0] - info["shortfall"] * SCALE
        col = self.ledger.collaterals[self.model.slot(self.addr[sym])]
        bound = 2 + risk.ceil_div(info["amount"], col.unit)
        assert equity_after >= info["equity"] - bound, f"collateral sale lowered equity by {info['equity'] - equity_after} wei"
        return True

    def collateral_for_sale(self, account: int, sym: str | None = None) -> bool:
        """`risk.collateral_for_sale` of the model's state (what marginsim.protocol.sell_collateral
        asks) for the account's collateral (token `sym`, written off or not): a debt above
        debt_liquidation_ltv of what it holds, or no positions and negative equity. False while
        a price it needs is refused."""
        debt = -self.model.settlement_of(self.ledger, account)
        if debt <= 0:
            return False
        try:
            equity = self.model.margin(self.ledger, account)[0]
        except PriceError:
            return False
        has_positions = self.ledger.market_mask.get(account, 0) != 0
        slot = self.model.slot(self.addr[sym]) if sym else None
        written_off = slot is not None and self.ledger.collaterals[slot].weight == 0
        return risk.collateral_for_sale(debt, equity, self.ledger.debt_liquidation_ltv, has_positions, SCALE, written_off)

    @rule(
        index=TARGET,
        sym=st.sampled_from(COLLATERALS),
        max_kind=st.sampled_from(["all", "all", "part", "zero"]),
        permille=st.integers(1, 1_000),
    )
    def liquidate_collateral(self, index: int, sym: str, max_kind: str, permille: int) -> None:
        if index == 6:
            # an account whose collateral is for sale (a debt over the loan-to-value limit, or
            # no positions and negative equity), else one with debt, no positions and
            # collateral, if there is one, and a token it holds
            candidates = []
            for candidate in range(len(self.world.accounts)):
                account = self.world.account_id(candidate)
                held = [c for c in COLLATERALS if self.ledger.balances.get((account, self.model.slot(self.addr[c])), 0)]
                if held and self.collateral_for_sale(account, held[0]):
                    candidates.insert(0, (candidate, held[0]))
                elif held and not self.ledger.market_mask.get(account) and self.ledger.settlement.get(account, 0) < 0:
                    candidates.append((candidate, held[0]))
            index, sym = candidates[0] if candidates else (0, sym)
        _, _, account = self.account(index)
        balance = self.ledger.balances.get((account, self.model.slot(self.addr[sym])), 0)
        max_amount = {"all": MAX_UINT, "zero": 0, "part": balance * permille // 1_000 + 1}[max_kind]
        self.do_liquidate_collateral(account, sym, max_amount)

    @rule()
    def keeper_sweep(self) -> None:
        """Liquidate every unhealthy account in every market, then buy the collateral of every
        account whose collateral is for sale (a debt above the loan-to-value limit, or no
        positions left and negative equity), as marginsim.protocol.sell_collateral. Every other sweep the
        owners get there first and liquidate their own accounts from their second address.
        (The only rule without arguments, so hypothesis, which favours the first rule, runs it
        most often: every sweep checks every account against the liquidation invariants.)"""
        self.sweeps += 1
        for index in range(len(self.world.accounts)):
            owner, _, account = self.account(index)
            second = self.roles.second_addresses[self.roles.traders.index(owner)]
            liquidator = second if self.sweeps % 2 == 0 else self.roles.keeper
            for market in sorted(self.ledger.markets):
                margin = self.live_margin(account)
                if margin is None or margin[0] >= margin[1] or (account, market) not in self.ledger.positions:
                    continue
                if self.do_liquidate(account, market, MAX_UINT, liquidator):
                    self.settle_step()
            for sym in COLLATERALS:
                if not self.collateral_for_sale(account, sym):
                    continue
                if self.ledger.balances.get((account, self.model.slot(self.addr[sym])), 0) == 0:
                    continue
                if self.do_liquidate_collateral(account, sym, MAX_UINT):
                    self.settle_step()

    def check_profit_pending_event(self, outcome: Outcome, account: int, market: int) -> None:
        """The part of a realised profit the pool could not pay out of what it holds free is the
        account's pending claim: one ProfitPending event with exactly the model's amount."""
        pending = outcome.info.get("pending", 0)
        events = [(e.account, e.market, e.amount) for e in self.events("ProfitPending")]
        assert events == ([(account, market, pending)] if pending else []), f"ProfitPending {events}, model {pending}"

    def check_bad_debt_event(self, outcome: Outcome) -> None:
        """Invariant 7: bad debt booked == the shortfall, paid by the fund first, then the pool."""
        shortfall = outcome.info.get("shortfall", 0)
        booked = self.events("BadDebt")
        if shortfall == 0:
            assert not booked
            return
        (event,) = booked
        assert event.shortfall == shortfall == self.expected.total_bad_debt - self.ledger.total_bad_debt
        assert event.covered_by_insurance + event.socialised == shortfall
        if event.socialised:
            assert self.expected.insurance == 0, "the pool paid bad debt while the insurance fund held money"

    @rule(usd=USD_AMOUNT)
    def fund_insurance(self, usd: int) -> None:
        amount = self.units("USDC", usd)
        outcome = self.model.fund_insurance(amount)
        self.call("Clearinghouse.fund_insurance", self.ch.fund_insurance, amount, sender=self.roles.donor, outcome=outcome)

    # -------------------------------------------------------------- liquidity pool

    def check_reserves_after_withdrawal(self) -> None:
        """Invariant 9 (issue 9, item 5): an LP withdrawal leaves the capital the markets need
        within the pool's value, read from the contracts (LiquidityPool.reserve) and equal to
        the model's."""
        value, need = self.pool.reserve(0, 0)
        ledger = read_ledger(self.ch, self.engine, self.configurator, self.pool)
        assert (value, need) == self.model.book(ledger)
        assert need <= value, f"an LP withdrawal left the reserve's need {need} above the pool's value {value}"

    def pool_value_unchanged_for_others(self, outcome: Outcome) -> None:
        """An LP deposit or withdrawal never lowers the value of anyone else's share:
        (assets + 1) / (supply + offset) does not fall (the pool rounds in its favour)."""
        before_assets, before_supply = outcome.info["total_assets"], self.pool_ledger.total_supply
        after_assets = self.model.total_assets(self.expected)
        after_supply = outcome.info["pool"].total_supply
        assert (after_assets + 1) * (before_supply + POOL_OFFSET) >= (before_assets + 1) * (after_supply + POOL_OFFSET)

    @rule(lp=st.integers(0, 1), usd=USD_AMOUNT)
    def lp_deposit(self, lp: int, usd: int) -> None:
        """An instant deposit (a gated pool's while the book is open: "pool: book open, request
        instead")."""
        who = self.roles.lps[lp]
        amount = self.units("USDC", usd)
        outcome = self.model.pool_deposit(self.pool_ledger, str(who), amount, None)
        if self.call("LiquidityPool.deposit", self.pool.deposit, amount, who, sender=who, outcome=outcome):
            self.pool_value_unchanged_for_others(outcome)

    @rule(lp=st.integers(0, 1), usd=st.sampled_from([0, 1, 1, 100]))
    def lp_deposit_to_other(self, lp: int, usd: int) -> None:
        """A deposit to the other LP (dust, as a griefer would): it may be refused, but it never
        moves the unlock time of a share the receiver already holds (issue 9, item 3)."""
        who, receiver = self.roles.lps[lp], self.roles.lps[1 - lp]
        amount = max(self.units("USDC", usd), 1)
        before = self.pool_ledger.lots.get(str(receiver), [0] * LOTS)
        outcome = self.model.pool_deposit(self.pool_ledger, str(receiver), amount, None, sender=str(who))
        if self.call("LiquidityPool.deposit", self.pool.deposit, amount, receiver, sender=who, outcome=outcome):
            after = outcome.info["pool"].lots[str(receiver)]
            for word in before:
                if word >> 192 > self.now:
                    # the lot is still there, with its unlock time; only a same-block lot grows
                    assert any(w >> 192 == word >> 192 and w & (2**192 - 1) >= word & (2**192 - 1) for w in after)
            self.pool_value_unchanged_for_others(outcome)

    @rule(lp=st.integers(0, 1), usd=USD_AMOUNT)
    def lp_mint(self, lp: int, usd: int) -> None:
        who = self.roles.lps[lp]
        shares = self.units("USDC", usd) * POOL_OFFSET  # about $usd of shares at a share price near 1
        outcome = self.model.pool_deposit(self.pool_ledger, str(who), None, shares)
        if self.call("LiquidityPool.mint", self.pool.mint, shares, who, sender=who, outcome=outcome):
            self.pool_value_unchanged_for_others(outcome)

    @rule(
        lp=st.integers(0, 1),
        permille=PERMILLE,
        by_shares=st.booleans(),
        caller=st.sampled_from(["owner", "owner", "approved", "stranger"]),
    )
    def lp_withdraw(self, lp: int, permille: int, by_shares: bool, caller: str) -> None:
        """withdraw(assets) or redeem(shares) of an LP's shares, by the LP, by the other LP with
        an allowance of the LP's whole balance, or by the other LP without one (a gated pool's
        while the book is open: "pool: book open, request instead", see `lp_request_redeem`)."""
        owner = self.roles.lps[lp]
        who = owner if caller == "owner" else self.roles.lps[1 - lp]
        balance = self.pool_ledger.balances.get(str(owner), 0)
        allowance = None
        if caller != "owner":
            allowance = balance if caller == "approved" else 0
            self.pool.approve(who, allowance, sender=owner)
            record("LiquidityPool.approve", None)
        shares = balance * permille // 1_000
        wallet = token_balance(self.tokens["USDC"], who)
        if by_shares:
            outcome = self.model.pool_withdraw(self.pool_ledger, str(owner), None, shares, allowance)
            ok = self.call("LiquidityPool.redeem", self.pool.redeem, shares, who, owner, sender=who, outcome=outcome)
        else:
            try:
                assets = mul_div(
                    shares, self.model.total_assets(self.ledger) + 1, self.pool_ledger.total_supply + POOL_OFFSET, False
                )
            except PriceError:
                assets = shares // POOL_OFFSET
            outcome = self.model.pool_withdraw(self.pool_ledger, str(owner), assets, None, allowance)
            ok = self.call("LiquidityPool.withdraw", self.pool.withdraw, assets, who, owner, sender=who, outcome=outcome)
        if ok:
            assert token_balance(self.tokens["USDC"], who) == wallet + outcome.info["assets"]
            self.pool_value_unchanged_for_others(outcome)
            self.check_reserves_after_withdrawal()

    @rule(sender=st.integers(0, 1), permille=PERMILLE, via_allowance=st.booleans())
    def lp_transfer_shares(self, sender: int, permille: int, via_allowance: bool) -> None:
        source, target = self.roles.lps[sender], self.roles.lps[1 - sender]
        balance = self.pool_ledger.balances.get(str(source), 0)
        amount = balance * permille // 1_000
        free = self.model.free_shares(self.pool_ledger, str(source))
        if via_allowance:
            # the receiver pulls with an allowance: spend it first, then the cooldown
            self.pool.approve(target, amount, sender=source)
            record("LiquidityPool.approve", None)
            message = None if amount <= free else "pool: cooldown"
            outcome = Outcome(message, self.ledger)
            ok = self.call(
                "LiquidityPool.transferFrom",
                self.pool.transferFrom,
                source,
                target,
                amount,
                sender=target,
                outcome=outcome,
            )
        else:
            message = None if amount <= free else "pool: cooldown"
            outcome = Outcome(message, self.ledger)
            ok = self.call("LiquidityPool.transfer", self.pool.transfer, target, amount, sender=source, outcome=outcome)
        if ok:
            after = self.pool_ledger.copy()
            after.balances[str(source)] -= amount
            after.balances[str(target)] = after.balances.get(str(target), 0) + amount
            self.expected_pool = after

    # LP requests (issue 9, item 2): in a gated pool, while the book is open (positions, entry
    # costs, placed orders or debt), the only way in and out. The controller of a request is an LP.

    def first_with_request(self, lp: int) -> int:
        """`lp`, or for 2 the first LP with a request waiting (0 when none has one)."""
        if lp < 2:
            return lp
        return next((i for i, h in enumerate(self.roles.lps) if str(h) in self.pool_ledger.requests), 0)

    def check_request_placed(self, controller: str, outcome: Outcome) -> None:
        """The request the model placed is the contract's (its `requests` view) and its event's."""
        request = outcome.info["request"]
        view = tuple(self.pool.requests(controller))
        assert (str(view[0]), *view[1:]) == astuple(request), f"requests({controller}) {view} != model {request}"
        (event,) = self.events("RequestPlaced")
        assert (
            str(event.controller),
            str(event.receiver),
            event.deposit,
            event.assets,
            event.shares,
            event.executable_at,
            event.fee,
        ) == (controller, request.receiver, request.deposit, request.assets, request.shares, request.executable_at, request.fee)

    def request_deposit(self, payer: Any, assets: int, receiver: Any) -> bool:
        """LiquidityPool.request_deposit by `payer` (its controller): on success `assets` and the
        execution fee leave its wallet for the pool's escrow."""
        usdc = self.tokens["USDC"]
        outcome = self.model.pool_request_deposit(
            self.pool_ledger, str(payer), str(receiver), assets, self.execution_fee, self.settlement_delay
        )
        wallet = token_balance(usdc, payer)
        request = self.pool.request_deposit
        if not self.call("LiquidityPool.request_deposit", request, assets, receiver, sender=payer, outcome=outcome):
            return False
        assert token_balance(usdc, payer) == wallet - assets - self.execution_fee
        self.check_request_placed(str(payer), outcome)
        return True

    def request_redeem(self, owner: Any, shares: int, caller: Any, allowance: int | None) -> bool:
        """LiquidityPool.request_redeem of `owner`'s shares (its controller) by `caller` (with
        `allowance`, None when the owner calls), paid to the caller: on success the shares move
        to the pool's escrow and the execution fee leaves the caller's wallet."""
        usdc = self.tokens["USDC"]
        outcome = self.model.pool_request_redeem(
            self.pool_ledger,
            str(owner),
            str(caller),
            shares,
            allowance,
            self.execution_fee,
            self.settlement_delay,
            self.escrow,
        )
        wallet = token_balance(usdc, caller)
        request = self.pool.request_redeem
        if not self.call("LiquidityPool.request_redeem", request, shares, caller, owner, sender=caller, outcome=outcome):
            return False
        assert token_balance(usdc, caller) == wallet - self.execution_fee
        self.check_request_placed(str(owner), outcome)
        return True

    def execute_request(self, controller: Any) -> bool:
        """LiquidityPool.execute_request by the keeper. On success the keeper is paid the fee; a
        deposit mints its shares to the receiver, a redemption pays its tokens to the receiver,
        never more than recorded at the request (invariant 11), exactly the model's amounts."""
        usdc, keeper = self.tokens["USDC"], self.roles.keeper
        request = self.pool_ledger.requests.get(str(controller))
        outcome = self.model.pool_execute(self.pool_ledger, str(controller), self.escrow, self.kept_by)
        receiver = request.receiver if request else str(controller)
        wallets = (token_balance(usdc, keeper), token_balance(usdc, receiver))
        execute = self.pool.execute_request
        if not self.call("LiquidityPool.execute_request", execute, controller, sender=keeper, outcome=outcome):
            return False
        info = outcome.info
        kind = "deposit" if request.deposit else "redemption"
        # invariant 11: never more shares than the tokens were worth at the request (a deposit:
        # its tokens come out of the escrow), never more tokens than the shares were (a redemption)
        if request.deposit:
            assert info["shares"] <= request.shares
            assert token_balance(usdc, receiver) == wallets[1]
        else:
            assert info["assets"] <= request.assets
            assert token_balance(usdc, receiver) == wallets[1] + info["assets"]
        assert token_balance(usdc, keeper) == wallets[0] + request.fee
        (event,) = self.events("RequestExecuted")
        assert (
            str(event.controller),
            str(event.receiver),
            event.deposit,
            event.assets,
            event.shares,
            event.fee,
            str(event.keeper),
            event.kept,
        ) == (
            str(controller),
            receiver,
            request.deposit,
            info["assets"],
            info["shares"],
            request.fee,
            str(keeper),
            info["excess"],
        )
        recorded = request.shares if request.deposit else request.assets
        record(
            f"LiquidityPool.execute_request {kind} "
            + ("at the value recorded (the worse)" if info["now_worth"] > recorded else "at the value now (the worse)"),
            None,
        )
        self.pool_value_unchanged_for_others(outcome)
        if info["now_worth"] > recorded:
            # capped: the Clearinghouse keeps the excess as shares, so the share price is where it was
            # (up to the rounding in the pool's favour) and nobody holding shares at the execution
            # (a just-in-time LP included) takes any of it (review M1)
            before_assets, before_supply = info["total_assets"], self.pool_ledger.total_supply
            after_assets, after_supply = self.model.total_assets(self.expected), info["pool"].total_supply
            # (the pool rounds each side by at most a share: a share's worth is the bound)
            assert after_assets * (before_supply + POOL_OFFSET) < (before_assets + 1) * (after_supply + POOL_OFFSET + 1)
        if not request.deposit:
            self.check_reserves_after_withdrawal()
        return True

    def lapse_request(self, controller: Any, by: Any) -> bool:
        """LiquidityPool.lapse_request by `by` (anyone): on success the escrow goes back to the
        controller (a deposit's tokens; a redemption's shares, in the pool ledger) with the fee;
        `by` is not paid."""
        usdc = self.tokens["USDC"]
        outcome = self.model.pool_lapse(self.pool_ledger, str(controller), self.escrow)
        wallets = (token_balance(usdc, controller), token_balance(usdc, by))
        if not self.call("LiquidityPool.lapse_request", self.pool.lapse_request, controller, sender=by, outcome=outcome):
            return False
        request = outcome.info["request"]
        assert token_balance(usdc, controller) == wallets[0] + (request.assets if request.deposit else 0) + request.fee
        if str(by) != str(controller):
            assert token_balance(usdc, by) == wallets[1], "whoever lapses a request is not paid"
        (event,) = self.events("RequestLapsed")
        returned = (request.assets, 0) if request.deposit else (0, request.shares)
        assert (str(event.controller), event.deposit, event.assets, event.shares, event.fee, str(event.keeper)) == (
            str(controller),
            request.deposit,
            *returned,
            request.fee,
            str(by),
        )
        record(f"LiquidityPool.lapse_request {'deposit' if request.deposit else 'redemption'}", None)
        return True

    def clear_request(self, controller: Any) -> None:
        """Whatever `controller`'s request: executed as soon as it is due, or lapsed when it
        cannot execute (its window passed, or the execution was refused), so a new one can be
        placed."""
        request = self.pool_ledger.requests.get(str(controller))
        if request is None:
            return
        if self.now <= request.executable_at + REQUEST_WINDOW:
            self.env.time_travel(seconds=max(request.executable_at - self.now, 0))
            self.refresh(self.ledger)
            executed = self.execute_request(controller)
            self.settle_step()
            if executed:
                return
        self.env.time_travel(seconds=max(request.executable_at + REQUEST_WINDOW + 1 - self.now, 0))
        self.refresh(self.ledger)
        assert self.lapse_request(controller, self.roles.keeper)
        self.settle_step()

    @rule(lp=st.integers(0, 1), usd=USD_AMOUNT, to_other=st.booleans())
    def lp_request_deposit(self, lp: int, usd: int, to_other: bool) -> None:
        """(LP, dollars, shares to the other LP) request_deposit."""
        who = self.roles.lps[lp]
        self.request_deposit(who, self.units("USDC", usd), self.roles.lps[1 - lp] if to_other else who)

    @rule(lp=st.integers(0, 1), permille=PERMILLE, caller=st.sampled_from(["owner", "owner", "approved", "stranger"]))
    def lp_request_redeem(self, lp: int, permille: int, caller: str) -> None:
        """(LP, permille of its free shares (above 1,000: more than are free), caller)
        request_redeem by the LP, or by the other LP with an allowance of exactly the shares or
        without one (refused "pool: not owner": only the owner asks); the tokens are for the caller."""
        owner = self.roles.lps[lp]
        who = owner if caller == "owner" else self.roles.lps[1 - lp]
        shares = self.model.free_shares(self.pool_ledger, str(owner)) * permille // 1_000
        allowance = None
        if caller != "owner":
            allowance = shares if caller == "approved" else 0
            self.pool.approve(who, allowance, sender=owner)
            record("LiquidityPool.approve", None)
        self.request_redeem(owner, shares, who, allowance)

    @rule(
        order=st.tuples(
            st.integers(0, 2),
            st.sampled_from(["due", "due", "due", "early", "end", "late"]),
            st.sampled_from([0, 0, -300, 300, -1_500]),
            st.sampled_from(["redeem", "deposit"]),
        )
    )
    def lp_execute_request(self, order: tuple[int, str, int, str]) -> None:
        """(LP, or 2 for the first with a request; when: at executable_at (or as soon as the clock
        is past it), as it is (early when just placed), at the window's last second, one second
        after it; basis points ETH moves (a synced round) before the execution; the request the
        LP places first when it has none: 10% of its free shares, or $10,000) The keeper
        executes it: the LP gets the worse of the values at the request and now."""
        lp, timing, move_bp, kind = order
        controller = self.roles.lps[self.first_with_request(lp)]
        if str(controller) not in self.pool_ledger.requests:
            if kind == "redeem":
                free = self.model.free_shares(self.pool_ledger, str(controller))
                placed = self.request_redeem(controller, free // 10, controller, None)
            else:
                placed = self.request_deposit(controller, self.units("USDC", 10_000), controller)
            if not placed:
                return
            self.settle_step()
        request = self.pool_ledger.requests[str(controller)]
        target = {
            "due": request.executable_at,
            "early": self.now,
            "end": request.executable_at + REQUEST_WINDOW,
            "late": request.executable_at + REQUEST_WINDOW + 1,
        }[timing]
        self.env.time_travel(seconds=max(target - self.now, 0))
        self.refresh(self.ledger)
        if move_bp:
            answer = self.oracle_view.feeds[self.addr["WETH"]].answer
            self.publish("WETH", max(answer * (10_000 + move_bp) // 10_000, 1))
            self.sync("WETH")
            self.refresh(self.ledger)
        self.execute_request(controller)

    @rule(lp=st.integers(0, 2), scenario=st.sampled_from(["lapse", "lapse", "early", "as_is"]), by_keeper=st.booleans())
    def lp_lapse_request(self, lp: int, scenario: str, by_keeper: bool) -> None:
        """(LP, or 2 for the first with a request; after the window / at once / as it is (a
        request of $1,000 placed first when the LP has none but "as_is"), by the keeper or a
        stranger) lapse_request: the escrow and the fee back to the LP, nothing to whoever lapsed it."""
        controller = self.roles.lps[self.first_with_request(lp)]
        if scenario != "as_is" and str(controller) not in self.pool_ledger.requests:
            if not self.request_deposit(controller, self.units("USDC", 1_000), controller):
                return
            self.settle_step()
        request = self.pool_ledger.requests.get(str(controller))
        if request is not None and scenario == "lapse":
            self.env.time_travel(seconds=max(request.executable_at + REQUEST_WINDOW + 1 - self.now, 0))
            self.refresh(self.ledger)
        self.lapse_request(controller, self.roles.keeper if by_keeper else self.roles.attacker)

    # late in an example only: it closes every position, so the rest of the example starts over
    # from an empty book instead of the crashes and liquidations the other rules build up
    @precondition(lambda self: self.steps_taken >= STEPS_PER_EXAMPLE - 10)
    @rule(
        order=st.tuples(
            st.sampled_from(["nothing", "nothing", "order", "debt"]),
            st.integers(0, 1),
            st.integers(1, 250_000),  # above 0: the idle book's rare draws take the instant paths
            PERMILLE,
            st.booleans(),
        )
    )
    def book_goes_idle(self, order: tuple[str, int, int, int, bool]) -> None:
        """(what stays open: nothing, an order placed or a debt; the LP who deposits and mints,
        dollars, permille of the first LP's shares it takes out, by shares) Every LP request
        lapses (past its window), and the traders leave: the oracle bot's heartbeat (a halted
        feed's breaker cleared by its owner), every order waiting filled, every position closed
        and every debt repaid by a deposit. Then no price moves the pool's value (a gated pool's
        `instant()`) and the LPs come and go at once: deposit, mint, withdraw or redeem. With an
        order placed (its hold) the book is still open and a gated pool refuses them "pool: book
        open, request instead"; a debt left does not keep it open (the pool counts it at face plus
        accrued interest, which no price moves)."""
        leave, lp, usd, permille, by_shares = order
        lps = [str(a) for a in self.roles.lps]
        for controller in sorted(self.pool_ledger.requests):  # every LP request lapses first
            if controller in lps:
                self.lp_lapse_request(lp=lps.index(controller), scenario="lapse", by_keeper=True)
                self.settle_step()
        self.heartbeat("all")
        self.settle_step()
        for sym in COLLATERALS:
            if self.oracle_view.feeds[self.addr[sym]].halted:
                self.clear_circuit_breaker(sym, True)
                self.settle_step()
        for key in sorted(self.pending):
            self.env.time_travel(seconds=max(self.pending[key].executable_at - self.now, 0))
            self.refresh(self.ledger)
            self.fill(key)
            self.settle_step()
        ids = [self.world.account_id(i) for i in range(len(self.world.accounts))]
        for account, market in sorted(self.ledger.positions):
            size = self.ledger.positions.get((account, market), (0, 0))[0]
            if size:
                owner, sub, _ = self.account(ids.index(account))
                self.do_trade(owner, sub, account, market, -size, "none")
                self.settle_step()
        debtors = [account for account, balance in sorted(self.ledger.settlement.items()) if balance < 0]
        usdc = self.tokens["USDC"]
        for account in debtors[1:] if leave == "debt" else debtors:
            owner, sub, _ = self.account(ids.index(account))
            amount = -self.model.settlement_of(self.ledger, account)  # the debt with its interest to now
            outcome = self.model.deposit(account, self.addr["USDC"], amount, self.addr["USDC"])
            self.call("Clearinghouse.deposit", self.ch.deposit, usdc, amount, sub, sender=owner, outcome=outcome)
            self.settle_step()
        if leave == "order":
            owner, sub, account = self.account(0)
            market = self.market_of(0)
            self.commit(owner, sub, account, market, self.trade_delta(account, market, "open", 1, 1_000, True), 0)
        record("book_goes_idle", None if self.model.idle(self.ledger, self.pool_ledger) else "still open")
        self.lp_deposit(lp=lp, usd=usd)
        self.settle_step()
        self.lp_mint(lp=lp, usd=usd)
        self.settle_step()
        self.lp_withdraw(lp=0, permille=permille, by_shares=by_shares, caller="owner")

    @rule(
        index=TARGET,
        keep_usd=st.sampled_from([0, 0, 100, 1_000]),
        move_bp=st.sampled_from([0, 300, 1_000, 1_500]),
        refill_usd=st.sampled_from([0, 100, 1_000, 100_000]),
    )
    def pool_runs_dry(self, index: int, keep_usd: int, move_bp: int, refill_usd: int) -> None:
        """(account, or 6 for the most profitable position of all (also when the account has none),
        dollars the pool keeps free,
        basis points the price moves in the position's favour, in rounds of at most 15%, dollars
        an LP brings back) A trader realises a profit while the pool is short of tokens (issue 9,
        item 1): governance turns every market's open-interest reserve off (factor 0: the
        reserve is what keeps a pool from running dry), the LPs redeem (by request, executed
        when due: the book is open) what their free shares are worth, up to all the pool can pay
        but `keep_usd`, the price of the account's most profitable position moves its way (a
        synced round), the account closes it and the profit beyond what the pool holds free is
        its pending claim (ProfitPending): equity as its balance is, but not paid in tokens the
        pool does not hold. Then an LP deposits `refill_usd` (by request, executed when due)
        and the owner asks for its balance and the
        part of its claim the pool now holds tokens for (the claim paid at withdrawal, first
        come first served)."""
        best = None
        # the account asked for; when it has no position to realise, the most profitable of all
        candidates = [*range(len(self.world.accounts))] if index == 6 else [index]
        if index != 6 and not any(holder == self.world.account_id(index) for holder, _ in self.ledger.positions):
            candidates = [*range(len(self.world.accounts))]
        for candidate in candidates:
            account = self.world.account_id(candidate)
            for (holder, market), (size, cost) in self.ledger.positions.items():
                if holder != account or (holder, market) in self.pending:
                    continue
                try:
                    price = self.model.price(self.ledger.markets[market].asset)
                except PriceError:
                    continue
                profit = risk.signed_mul_floor(size, price - self.model.index_now(self.ledger, market, price)) - cost
                if best is None or profit > best[0]:
                    best = (profit, candidate, market)
        if best is None:
            return
        _, index, market = best
        owner, sub, account = self.account(index)
        # the open-interest reserve would keep the LPs in (a pool run dry is what it prevents):
        # governance turns it off first
        for choice in range(len(self.ledger.markets)):
            self.set_reserve_factor(choice, 0, "owner")
            self.settle_step()
        # the oracle bot's heartbeat first: LP flows wait while a held collateral has no price
        self.heartbeat("all")
        self.settle_step()
        # the book is open (the position): the LPs leave by request, the keeper executing each
        # one when it is due (a request already waiting is executed or lapsed first)
        for lp in sorted(self.roles.lps, key=lambda h: -self.model.free_shares(self.pool_ledger, str(h))):
            self.clear_request(lp)
            liquidity = max(self.ledger.pool_balance - self.ledger.total_debt - self.ledger.total_pending, 0)
            try:
                total_assets = self.model.total_assets(self.ledger)
                headroom = risk.reserve_headroom(*self.model.book(self.ledger), SCALE)
            except PriceError:
                return
            free = self.model.free_shares(self.pool_ledger, str(lp))
            worth = mul_div(free, total_assets + 1, self.pool_ledger.total_supply + POOL_OFFSET, False)
            assets = min(liquidity - self.units("USDC", keep_usd), worth, headroom)
            if assets <= 0:
                break
            # the shares worth at most `assets` now (the execution pays at most that)
            shares = mul_div(assets, self.pool_ledger.total_supply + POOL_OFFSET, total_assets + 1, False)
            placed = self.request_redeem(lp, shares, lp, None)
            self.settle_step()
            if placed:
                self.clear_request(lp)
        size = self.ledger.positions.get((account, market), (0, 0))[0]
        if size == 0:
            return
        while move_bp > 0:  # in rounds of at most 15%, inside the feeds' breakers
            step_bp, move_bp = min(move_bp, 1_500), move_bp - 1_500
            sym, _ = self.market_feed(market)
            answer = self.oracle_view.feeds[self.addr[sym]].answer
            self.publish(sym, max(answer * (10_000 + (step_bp if size > 0 else -step_bp)) // 10_000, 1))
            self.sync(sym)
            self.settle_step()
        if not self.do_trade(owner, sub, account, market, -size, "none"):
            return
        self.settle_step()
        if refill_usd:  # by request too, executed when due
            lp = self.roles.lps[1]
            self.clear_request(lp)
            placed = self.request_deposit(lp, self.units("USDC", refill_usd), lp)
            self.settle_step()
            if placed:
                self.clear_request(lp)
        payable = max(min(self.ledger.pending.get(account, 0), self.ledger.pool_balance - self.ledger.total_debt), 0)
        amount = self.ledger.settlement.get(account, 0) + payable
        if amount > 0:
            self.do_withdraw(index, "USDC", amount)

    # -------------------------------------------------------------- oracle and time

    def publish(self, sym: str, answer: int, updated_at: int | None = None) -> None:
        feed = self.feeds[sym]
        if updated_at is None:
            feed.updateAnswer(answer, sender=self.roles.owner)
            record("MockAggregator.updateAnswer", None)
        else:
            feed.updateRoundData(feed.latest_round() + 1, answer, updated_at, updated_at, sender=self.roles.owner)
            record("MockAggregator.updateRoundData", None)

    def sync(self, sym: str) -> None:
        outcome = Outcome(None, self.ledger)
        self.call("OracleRouter.sync", self.oracle.sync, self.tokens[sym], sender=self.roles.keeper, outcome=outcome)

    @rule(
        move=st.tuples(
            st.sampled_from(COLLATERALS),
            st.one_of(st.integers(-400, 400), st.integers(-1_990, 1_990)),  # small moves walk accounts into partial liquidation
            st.booleans(),
        )
    )
    def price_moves(self, move: tuple[str, int, bool]) -> None:
        """(asset, basis points, sync): a round within the breaker's band (20%; USDT's is 10%,
        so it may trip)."""
        sym, move_bp, sync = move
        answer = self.oracle_view.feeds[self.addr[sym]].answer
        self.publish(sym, max(answer * (10_000 + move_bp) // 10_000, 1))
        if sync:
            self.sync(sym)

    @rule(sym=st.sampled_from(["WETH", "WETH", "WBTC", "USDT"]), move_bp=st.integers(-6_000, 6_000), sync=st.booleans())
    def price_gaps(self, sym: str, move_bp: int, sync: bool) -> None:
        """Anything up to +-60% in one round: trips the breaker, or confirms / reverts a halt."""
        answer = self.oracle_view.feeds[self.addr[sym]].answer
        self.publish(sym, max(answer * (10_000 + move_bp) // 10_000, 1))
        if sync:
            self.sync(sym)

    @rule(sym=st.sampled_from(["WETH", "WETH", "WBTC"]), rounds=st.integers(1, 4), up=st.booleans())
    def crash(self, sym: str, rounds: int, up: bool) -> None:
        """Keepers asleep (Black Thursday): several rounds of -19% (or +19%) in a row, each synced
        and accepted, with no liquidation in between, so accounts go deep underwater."""
        asset = self.addr[sym]
        for _ in range(rounds):
            answer = read_feed(self.oracle, self.feeds[sym], asset).answer
            self.publish(sym, max(answer * (10_000 + (1_900 if up else -1_900)) // 10_000, 1))
            self.sync(sym)

    @rule(sym=st.sampled_from(COLLATERALS), age=st.integers(1, 10_000))
    def backdated_round(self, sym: str, age: int) -> None:
        """A round published with an old updatedAt (staleness, and a round sync must reject)."""
        self.publish(sym, self.oracle_view.feeds[self.addr[sym]].answer, max(self.now - age, 1))
        self.sync(sym)

    @rule(which=st.sampled_from(["all", *COLLATERALS]))
    def heartbeat(self, which: str) -> None:
        """The oracle bot's heartbeat: a feed (or every feed) republishes its answer now, and syncs."""
        for sym in COLLATERALS if which == "all" else (which,):
            self.publish(sym, self.oracle_view.feeds[self.addr[sym]].answer)
            self.sync(sym)

    @rule(sym=st.sampled_from(["halted", "halted", *COLLATERALS]), by_owner=st.sampled_from([True, True, True, False]))
    def clear_circuit_breaker(self, sym: str, by_owner: bool) -> None:
        """The router owner's override (an attacker is refused)."""
        if sym == "halted":
            sym = next((c for c in COLLATERALS if self.oracle_view.feeds[self.addr[c]].halted), None)
            if sym is None:
                # nothing halted: a 30% spike on WETH trips the breaker first, then the owner
                # accepts it (the owner's override, e.g. after confirming a real move off-chain)
                sym = "WETH"
                self.publish(sym, self.oracle_view.feeds[self.addr[sym]].answer * 13 // 10)
                self.sync(sym)
                self.settle_step()
        asset = self.addr[sym]
        f = self.oracle_view.feeds[asset]
        if not by_owner:
            message = "ownable: caller is not the owner"
        elif not f.halted:
            message = "oracle: not halted"
        else:
            message = checked_price_error(f.answer, f.updated_at, self.now, f.heartbeat, f.scale, f.min_price, f.max_price)
        outcome = Outcome(message, self.ledger)
        who = self.owner["oracle"] if by_owner else self.roles.attacker
        self.call("OracleRouter.clear_circuit_breaker", self.oracle.clear_circuit_breaker, asset, sender=who, outcome=outcome)

    @rule(seconds=st.sampled_from([1, 12, 60, 300, 600, 900, 1_800, 3_000, 3_601, 7_200, 86_400, 30 * 86_400]))
    def time_passes(self, seconds: int) -> None:
        """The clock: funding and the debts' interest accrue (a month of it can push a loan over
        its loan-to-value limit), feeds go stale and orders expire."""
        self.env.time_travel(seconds=seconds)

    @rule(recipient=st.sampled_from(["clearinghouse", "pool"]), sym=st.sampled_from(TOKENS), usd=st.integers(1, 100_000))
    def donate(self, recipient: str, sym: str, usd: int) -> None:
        """A direct transfer: it must change no internal balance (internal accounting only)."""
        amount = self.units(sym, usd)
        receiver = self.ch if recipient == "clearinghouse" else self.pool
        self.tokens[sym].transfer(receiver, amount, sender=self.roles.donor)
        record(f"MockERC20.transfer to {recipient}", None)
        (self.donated_ch if recipient == "clearinghouse" else self.donated_pool)[sym] += amount

    # -------------------------------------------------------------- governance

    @rule(
        market=MARKET,
        base_bp=st.sampled_from([10, 50, 100, 300, 300, 500, 1_000, 5_000]),
        multiplier_x100=st.sampled_from([101, 150, 200, 200, 300, 1_000]),
        fee_bp=st.sampled_from([0, 1, 5, 5, 30, 100]),
        penalty_permille=st.integers(0, 1_000),
        keeper_permille=st.integers(0, 900),
        vol_k_x10=st.sampled_from([0, 10, 30, 30, 100]),
        horizon=st.sampled_from([60, 3_600, 3_600, 86_400, 7 * 86_400]),
        tier=st.sampled_from([(1, 0), (10, 100), (100, 100), (1_000, 100), (1_000, 1_000)]),
        skew_units=st.sampled_from([10_000, 150_000, 1_000_000]),
        cap_permille=st.integers(0, 1_000),
        funding_bp=st.sampled_from([0, 100, 100, 1_000]),
        broken=st.sampled_from(
            [None, None, None, None, None, None, "fee", "penalty", "keeper_share", "oi_cap", "horizon", "asset"]
        ),
    )
    def set_market(
        self,
        market,
        base_bp,
        multiplier_x100,
        fee_bp,
        penalty_permille,
        keeper_permille,
        vol_k_x10,
        horizon,
        tier,
        skew_units,
        cap_permille,
        funding_bp,
        broken,
    ) -> None:
        """Any parameter set within the Configurator's bounds; sometimes one bound broken."""
        market = self.market_of(market)
        params = self.market_params(
            self.ledger.markets[market].asset,
            base_bp,
            multiplier_x100,
            fee_bp,
            penalty_permille,
            keeper_permille,
            vol_k_x10,
            horizon,
            tier,
            skew_units,
            cap_permille,
            funding_bp,
            broken,
        )
        outcome = self.model.set_market(market, params)
        self.call(
            "Configurator.set_market",
            self.configurator.set_market,
            market,
            tuple(params.__dict__.values()),
            sender=self.owner["configurator"],
            outcome=outcome,
        )

    def market_params(
        self,
        asset,
        base_bp,
        multiplier_x100,
        fee_bp,
        penalty_permille,
        keeper_permille,
        vol_k_x10,
        horizon,
        tier,
        skew_units,
        cap_permille,
        funding_bp,
        broken,
    ) -> risk.MarketParams:
        """A MarketParams within every Configurator bound, or with the one named `broken` broken."""
        base = base_bp * 10**14
        multiplier = multiplier_x100 * 10**16
        if risk.mul_up(base, multiplier) > WAD:
            multiplier = WAD * WAD // base
        keeper_share = keeper_permille * 10**15
        spiral_limit = min(risk.mul_down(WAD + self.ledger.buffer, base) - 1, 10**17)
        penalty = spiral_limit * penalty_permille // 1_000
        skew = skew_units * WAD
        effective = min(penalty, risk.mul_down(self.ledger.full_liquidation_health, base))
        cap_bound = min(skew * (WAD - keeper_share) * effective // WAD // WAD, skew)
        params = risk.MarketParams(
            asset=asset,
            base_mmr=base,
            tier_size=tier[0] * WAD,
            tier_mmr=tier[1] * 10**14,
            vol_k=vol_k_x10 * 10**17,
            liquidation_horizon=horizon,
            imr_multiplier=multiplier,
            fee=fee_bp * 10**14,
            penalty=penalty,
            keeper_share=keeper_share,
            skew_scale=skew,
            max_funding_rate=funding_bp * 10**14,
            oi_cap=cap_bound * cap_permille // 1_000,
        )
        if broken == "fee":
            params = replace(params, fee=10**16 + 1)
        elif broken == "penalty":
            params = replace(params, penalty=spiral_limit + 1)
        elif broken == "keeper_share":
            params = replace(params, keeper_share=9 * 10**17 + 1)
        elif broken == "oi_cap":
            params = replace(params, oi_cap=cap_bound + 1)
        elif broken == "horizon":
            params = replace(params, liquidation_horizon=59)
        elif broken == "asset":
            params = replace(params, asset=self.addr["USDT"])
        return params

    @rule(
        sym=st.sampled_from(["LINK", "WETH", "USDT"]),
        base_bp=st.sampled_from([300, 500, 1_000]),
        penalty_permille=st.integers(0, 1_000),
        keeper_permille=st.integers(0, 900),
        cap_permille=st.integers(0, 1_000),
    )
    def list_market(self, sym: str, base_bp: int, penalty_permille: int, keeper_permille: int, cap_permille: int) -> None:
        """List a new perpetual market (LINK-PERP, or a second market on WETH or USDT)."""
        if len(self.ledger.markets) >= 4:
            return self.set_market(
                0,
                base_bp,
                200,
                5,
                penalty_permille,
                keeper_permille,
                30,
                3_600,
                (1_000, 100),
                1_000_000,
                cap_permille,
                100,
                None,
            )
        params = self.market_params(
            self.addr[sym],
            base_bp,
            200,
            5,
            penalty_permille,
            keeper_permille,
            30,
            3_600,
            (1_000, 100),
            1_000_000,
            cap_permille,
            100,
            None,
        )
        outcome = self.model.list_market(params)
        self.call(
            "Configurator.list_market",
            self.configurator.list_market,
            tuple(params.__dict__.values()),
            sender=self.owner["configurator"],
            outcome=outcome,
        )

    @rule(weight_bp=st.sampled_from([7_000, 5_000, 9_900, 0]), discount_permille=st.integers(0, 1_000))
    def list_collateral(self, weight_bp: int, discount_permille: int) -> None:
        """List LINK (18 decimals) as collateral; a second listing is refused."""
        weight = weight_bp * 10**14
        discount = 10**15 + max(WAD - weight - 10**15, 0) * discount_permille // 1_000
        cap = 10**9 * WAD
        outcome = self.model.list_collateral(self.addr["LINK"], WAD, weight, cap, discount, self.addr["USDC"])
        self.call(
            "Configurator.list_collateral",
            self.configurator.list_collateral,
            self.tokens["LINK"],
            weight,
            cap,
            discount,
            sender=self.owner["configurator"],
            outcome=outcome,
        )

    @rule(
        sym=st.sampled_from(COLLATERALS),
        weight_bp=st.sampled_from([500, 5_000, 8_500, 8_500, 9_500, 9_900, 9_901]),
        discount_permille=st.integers(0, 1_000),
        cap=st.sampled_from(["keep", "keep", "tight", "full"]),
        enabled=st.sampled_from([True, True, True, False]),
    )
    def set_collateral(self, sym: str, weight_bp: int, discount_permille: int, cap: str, enabled: bool) -> None:
        weight = weight_bp * 10**14
        # discount in [0.1%, 1 - weight), and one wei past its top at permille 1,000
        discount = 10**15 + (WAD - weight - 10**15) * discount_permille // 1_000
        col = self.ledger.collaterals.get(self.model.slot(self.addr[sym]))  # None: LINK, not listed yet
        cap_now, total = (col.cap, col.total) if col else (0, 0)
        new_cap = {"keep": cap_now, "tight": total + self.units(sym, 1_000), "full": total}[cap]
        outcome = self.model.set_collateral(self.addr[sym], weight, new_cap, discount, enabled)
        self.call(
            "Configurator.set_collateral",
            self.configurator.set_collateral,
            self.tokens[sym],
            weight,
            new_cap,
            discount,
            enabled,
            sender=self.owner["configurator"],
            outcome=outcome,
        )

    @rule(sym=st.sampled_from(COLLATERALS))
    def write_off_collateral(self, sym: str) -> None:
        """Governance writes a collateral off (issue 9, item 6): afterwards every margin check and
        liquidation goes through without its feed; `set_collateral` may restore it."""
        outcome = self.model.write_off_collateral(self.addr[sym])
        self.call(
            "Configurator.write_off_collateral",
            self.configurator.write_off_collateral,
            self.tokens[sym],
            sender=self.owner["configurator"],
            outcome=outcome,
        )

    @rule(
        market=MARKET_OR_UNKNOWN,
        factor=st.sampled_from([WAD, WAD, 100 * WAD, WAD // 10, WAD // 100, WAD // 1_000, 1, 0, 100 * WAD + 1]),
        by=st.sampled_from(["owner", "owner", "owner", "attacker"]),
    )
    def set_reserve_factor(self, market: int, factor: int, by: str) -> None:
        """A market's open-interest reserve (issue 9, item 5): from the whole pool down to one
        wei of it (every risk-adding order there cancelled, every LP withdrawal refused while
        the market has open interest), or a bound broken, or an attacker calling."""
        market = self.market_of(market)
        outcome = self.model.set_reserve_factor(market, factor)
        if by == "attacker":
            outcome = Outcome("ownable: caller is not the owner", self.ledger)
        who = self.owner["configurator"] if by == "owner" else self.roles.attacker
        if self.call(
            "Configurator.set_reserve_factor", self.configurator.set_reserve_factor, market, factor, sender=who, outcome=outcome
        ):
            (event,) = self.events("ReserveFactorSet")
            assert (event.market, event.reserve_factor) == (market, factor)

    @rule(
        rate_base=st.sampled_from([2 * 10**16, 0, 10**17, WAD, WAD + 1]),
        rate_slope=st.sampled_from([3 * 10**17, 0, 3 * WAD, 10 * WAD, 10 * WAD + 1]),
        debt_imr=st.sampled_from([25 * 10**16, 10**16, 5 * 10**17, WAD, 0, WAD + 1]),
        ceiling=st.sampled_from([5 * 10**17, WAD, 10**16, 1, 0, WAD + 1]),
        ltv=st.sampled_from(["default", "lowest", "highest", "below_lowest", "above_one"]),
        by=st.sampled_from(["owner", "owner", "owner", "attacker"]),
    )
    def set_debt_parameters(self, rate_base: int, rate_slope: int, debt_imr: int, ceiling: int, ltv: str, by: str) -> None:
        """The loan's terms (issue 9, item 1): rates up to 100% a year plus 1,000% at full
        utilisation, a debt's initial margin, the debt ceiling (down to 1 wei of the pool's
        balance: every debtor's risk-adding fill refused) and the collateral sale's
        loan-to-value limit: 0.9, the least or the most the Configurator accepts for that
        debt_imr, or one wei past either; sometimes one bound broken, or an attacker calling."""
        lowest = WAD * WAD // (WAD + debt_imr)
        while risk.mul_down(lowest, WAD + debt_imr) <= WAD:
            lowest += 1
        value = {"default": 9 * 10**17, "lowest": lowest, "highest": WAD, "below_lowest": lowest - 1, "above_one": WAD + 1}[ltv]
        outcome = self.model.set_debt_parameters(rate_base, rate_slope, debt_imr, ceiling, value)
        if by == "attacker":
            outcome = Outcome("ownable: caller is not the owner", self.ledger)
        who = self.owner["configurator"] if by == "owner" else self.roles.attacker
        if self.call(
            "Configurator.set_debt_parameters",
            self.configurator.set_debt_parameters,
            rate_base,
            rate_slope,
            debt_imr,
            ceiling,
            value,
            sender=who,
            outcome=outcome,
        ):
            (event,) = self.events("DebtParametersSet")
            assert (event.rate_base, event.rate_slope, event.debt_imr, event.ceiling, event.liquidation_ltv) == (
                rate_base,
                rate_slope,
                debt_imr,
                ceiling,
                value,
            )

    @rule(
        kind=st.sampled_from(["liquidation", "tip", "oracle"]),
        buffer_bp=st.sampled_from([1_000, 0, 500, 2_000, 5_000, 5_001]),
        full_bp=st.sampled_from([5_000, 7_500, 10_000, 2_500, 1, 0]),
        dust_usd=st.sampled_from([100, 0, 1_000, 10_000, 10_001]),
        tip_bp=st.sampled_from([20, 0, 5, 50, 100, 101]),
        lam_permille=st.sampled_from([940, 500, 900, 999, 499, 1_000]),
        speed_permille=st.sampled_from([100, 1, 500, 1_000, 0, 1_001]),
    )
    def global_parameters(
        self,
        kind: str,
        buffer_bp: int,
        full_bp: int,
        dust_usd: int,
        tip_bp: int,
        lam_permille: int,
        speed_permille: int,
    ) -> None:
        """The protocol-wide parameters: liquidation buffer / full-liquidation health / dust,
        the underwater tip, or the oracle's EWMA lambda and volatility speed."""
        if kind == "liquidation":
            self.set_liquidation_parameters(buffer_bp, full_bp, dust_usd)
        elif kind == "tip":
            self.set_underwater_tip(tip_bp)
        else:
            self.set_oracle_parameters(lam_permille, speed_permille)

    def set_liquidation_parameters(self, buffer_bp: int, full_bp: int, dust_usd: int) -> None:
        outcome = self.model.set_liquidation_parameters(buffer_bp * 10**14, full_bp * 10**14, dust_usd * WAD)
        self.call(
            "Configurator.set_liquidation_parameters",
            self.configurator.set_liquidation_parameters,
            buffer_bp * 10**14,
            full_bp * 10**14,
            dust_usd * WAD,
            sender=self.owner["configurator"],
            outcome=outcome,
        )

    def set_underwater_tip(self, rate_bp: int) -> None:
        outcome = self.model.set_underwater_tip(rate_bp * 10**14)
        self.call(
            "Configurator.set_underwater_tip",
            self.configurator.set_underwater_tip,
            rate_bp * 10**14,
            sender=self.owner["configurator"],
            outcome=outcome,
        )

    def set_oracle_parameters(self, lam_permille: int, speed_permille: int) -> None:
        lam, speed = lam_permille * 10**15, speed_permille * 10**15
        message = None
        if not (5 * 10**17 <= lam <= 999 * 10**15):
            message = "oracle: bad lambda"
        elif not (0 < speed <= WAD):
            message = "oracle: bad vol speed"
        self.call(
            "OracleRouter.set_parameters",
            self.oracle.set_parameters,
            lam,
            speed,
            sender=self.owner["oracle"],
            outcome=Outcome(message, self.ledger),
        )

    @rule(
        sym=st.sampled_from(COLLATERALS),
        heartbeat=st.sampled_from([3_600, 60, 86_400, 59]),
        deviation_bp=st.sampled_from([2_000, 100, 1_000, 10_000, 99]),
        sigma_bp=st.sampled_from([8_000, 500, 100_000, 100_001]),
    )
    def set_feed(self, sym: str, heartbeat: int, deviation_bp: int, sigma_bp: int) -> None:
        """Re-set a feed's guards (same aggregator and bounds): accepts the current answer."""
        asset = self.addr[sym]
        f = self.oracle_view.feeds[asset]
        deviation, sigma = deviation_bp * 10**14, sigma_bp * 10**14
        if not (60 <= heartbeat <= 7 * 86_400):
            message = "oracle: bad heartbeat"
        elif not (10**16 <= deviation <= WAD):
            message = "oracle: bad deviation"
        elif sigma > 10 * WAD:
            message = "oracle: bad sigma"
        else:
            message = checked_price_error(f.answer, f.updated_at, self.now, heartbeat, f.scale, f.min_price, f.max_price)
        args = (asset, self.feeds[sym], heartbeat, f.min_price, f.max_price, deviation, sigma)
        self.call(
            "OracleRouter.set_feed",
            self.oracle.set_feed,
            *args,
            sender=self.owner["oracle"],
            outcome=Outcome(message, self.ledger),
        )

    @rule(
        action=st.sampled_from(["pause", "unpause", "unpause", "reduce_only", "set_guardian"]),
        by=st.sampled_from(["guardian", "owner", "owner", "attacker"]),
        market=MARKET_OR_UNKNOWN,
        on=st.booleans(),
    )
    def emergency_controls(self, action: str, by: str, market: int, on: bool) -> None:
        """Pause, unpause, reduce-only on or off, and the guardian's address."""
        market = self.market_of(market)
        if action == "pause":
            self.pause(by)
        elif action == "unpause":
            self.unpause(by)
        elif action == "reduce_only":
            self.set_reduce_only(market, on, by)
        else:
            self.set_guardian("keeper" if on else "guardian")

    def pause(self, by: str) -> None:
        who = {"guardian": self.ledger.guardian, "owner": self.owner["configurator"], "attacker": self.roles.attacker}[by]
        after = self.ledger.copy()
        after.paused = True
        after.flags = {m: f | PAUSED for m, f in after.flags.items()}
        message = None if by != "attacker" else "configurator: not guardian"
        self.call(
            "Configurator.pause",
            self.configurator.pause,
            sender=who,
            outcome=Outcome(message, after if message is None else self.ledger),
        )

    def unpause(self, by: str) -> None:
        who = {"guardian": self.ledger.guardian, "owner": self.owner["configurator"], "attacker": self.roles.attacker}[by]
        after = self.ledger.copy()
        after.paused = False
        after.flags = {m: f & ~PAUSED for m, f in after.flags.items()}
        message = None if str(who) == str(self.owner["configurator"]) else "ownable: caller is not the owner"
        self.call(
            "Configurator.unpause",
            self.configurator.unpause,
            sender=who,
            outcome=Outcome(message, after if message is None else self.ledger),
        )

    def set_reduce_only(self, market: int, on: bool, by: str) -> None:
        who = {"guardian": self.ledger.guardian, "owner": self.owner["configurator"], "attacker": self.roles.attacker}[by]
        is_owner = str(who) == str(self.owner["configurator"])
        if on:
            message = None if is_owner or str(who) == self.ledger.guardian else "configurator: not guardian"
        else:
            message = None if is_owner else "ownable: caller is not the owner"
        if message is None and market not in self.ledger.markets:
            message = "configurator: unknown market"  # checked after the caller
        after = self.ledger.copy()
        if message is None:
            after.flags[market] = after.flags[market] | REDUCE_ONLY if on else after.flags[market] & ~REDUCE_ONLY
        self.call(
            "Configurator.set_reduce_only",
            self.configurator.set_reduce_only,
            market,
            on,
            sender=who,
            outcome=Outcome(message, after if message is None else self.ledger),
        )

    def set_guardian(self, guardian: str) -> None:
        who = self.roles.guardian if guardian == "guardian" else self.roles.keeper
        after = self.ledger.copy()
        after.guardian = str(who)
        self.call(
            "Configurator.set_guardian",
            self.configurator.set_guardian,
            who,
            sender=self.owner["configurator"],
            outcome=Outcome(None, after),
        )

    @rule(
        kind=st.sampled_from(["hand_over_ownership", "attacker_calls"]),
        contract=st.sampled_from(["configurator", "oracle"]),
        call=st.sampled_from(
            [
                "pool_deposit",
                "pool_withdraw",
                "apply_market",
                "apply_collateral",
                "apply_tip",
                "apply_liquidation",
                "connect",
                "connect_again",
                "apply_emergency",
                "apply_debt_terms",
                "apply_debt_liquidation_ltv",
                "debt_parameters",
                "fill_order",
                "apply_order_parameters",
                "order_parameters",
                "execute_no_order",
                "liquidation_close",
                "seize_collateral",
                "configurator",
                "oracle",
                "feed",
                "feed_updater",
                "guardian",
                "transfer_ownership",
            ]
        ),
    )
    def access_control(self, kind: str, contract: str, call: str) -> None:
        """Two-step ownership hand-overs, and restricted functions called by an attacker."""
        if kind == "hand_over_ownership":
            self.hand_over_ownership(contract)
        else:
            self.attacker_calls(call)

    def hand_over_ownership(self, contract: str) -> None:
        """Two-step ownership: the pending owner must accept; nobody else can."""
        target = {"configurator": self.configurator, "oracle": self.oracle}[contract]
        current = self.owner[contract]
        successor = self.spare_admin if str(current) == str(self.roles.owner) else self.roles.owner
        unchanged = Outcome(None, self.ledger)
        self.call(f"{contract}.transfer_ownership", target.transfer_ownership, successor, sender=current, outcome=unchanged)
        refused = Outcome("ownable_2step: caller is not the new owner", self.ledger)
        self.call(f"{contract}.accept_ownership", target.accept_ownership, sender=self.roles.attacker, outcome=refused)
        self.call(f"{contract}.accept_ownership", target.accept_ownership, sender=successor, outcome=unchanged)
        self.owner[contract] = successor
        assert str(target.owner()) == str(successor)

    def attacker_calls(self, kind: str) -> None:
        """Every restricted function, called by someone it is not for: the exact refusal."""
        a, unchanged = self.roles.attacker, self.ledger
        not_owner = "ownable: caller is not the owner"
        market_tuple = tuple(self.ledger.markets[1].__dict__.values())
        calls = {
            "pool_deposit": (self.ch.pool_deposit, (1,), a, "clearinghouse: not pool"),
            "pool_withdraw": (self.ch.pool_withdraw, (1, a), a, "clearinghouse: not pool"),
            "apply_market": (self.ch.apply_market, (1, market_tuple, 0), a, "clearinghouse: not configurator"),
            "apply_collateral": (
                self.ch.apply_collateral,
                (self.tokens["WETH"], WAD, WAD, 0, 10**15, True),
                a,
                "clearinghouse: not configurator",
            ),
            "apply_tip": (self.engine.apply_underwater_tip, (0,), a, "liquidation: not configurator"),
            "apply_liquidation": (
                self.engine.apply_liquidation_parameters,
                (0, WAD, 0),
                a,
                "liquidation: not configurator",
            ),
            "connect": (self.ch.connect, (a, a, a, a), a, "clearinghouse: not deployer"),
            "connect_again": (self.ch.connect, (a, a, a, a), self.roles.owner, "clearinghouse: already connected"),
            "apply_emergency": (self.ch.apply_emergency, (0, 1), a, "clearinghouse: not configurator"),
            "apply_debt_terms": (self.ch.apply_debt_terms, (0, 0, WAD, WAD), a, "clearinghouse: not configurator"),
            "apply_debt_liquidation_ltv": (self.engine.apply_debt_liquidation_ltv, (WAD,), a, "liquidation: not configurator"),
            "debt_parameters": (self.configurator.set_debt_parameters, (0, 0, WAD, WAD, WAD), a, not_owner),
            # only Orders fills, at the round it read; only the Configurator sets its parameters
            "fill_order": (self.ch.fill_order, (self.world.account_id(0), 1, 1, 0, WAD), a, "clearinghouse: not orders"),
            "apply_order_parameters": (self.orders.apply_order_parameters, (1, 60, 0), a, "orders: not configurator"),
            "order_parameters": (self.configurator.set_order_parameters, (1, 60, 0), a, not_owner),
            "execute_no_order": (self.orders.execute_order, (int(str(a), 16) << 96, 1), a, "orders: no order"),
            # the engine's narrow API moves balances and the insurance fund: nobody else may call it
            "liquidation_close": (
                self.ch.liquidation_close,
                (self.world.account_id(0), 1, -1, WAD, WAD, 0, 0, a),
                a,
                "clearinghouse: not liquidation engine",
            ),
            "seize_collateral": (
                self.ch.seize_collateral,
                (self.world.account_id(0), 1, 1, 0, a),
                a,
                "clearinghouse: not liquidation engine",
            ),
            "configurator": (self.configurator.set_underwater_tip, (0,), a, not_owner),
            "oracle": (self.oracle.set_parameters, (94 * 10**16, 10**17), a, not_owner),
            "feed": (self.feeds["WETH"].updateAnswer, (1,), a, "aggregator: not updater"),
            "feed_updater": (self.feeds["WBTC"].set_updater, (a,), a, "aggregator: not updater"),
            "guardian": (self.configurator.set_guardian, (a,), a, not_owner),
            "transfer_ownership": (self.configurator.transfer_ownership, (a,), a, not_owner),
        }
        function, args, sender, message = calls[kind]
        self.call(f"restricted.{kind}", function, *args, sender=sender, outcome=Outcome(message, unchanged))

    # -------------------------------------------------------------- invariants

    @invariant()
    def protocol_invariants(self) -> None:
        actual = read_ledger(self.ch, self.engine, self.configurator, self.pool)
        differences = self.expected.copy().normalise().diff(actual)
        assert not differences, "ledger differs from the model:\n" + "\n".join(differences)
        self.check_tokens(actual)
        self.refresh(actual)
        pool_actual = self.pool_ledger
        assert pool_actual == self.expected_pool, f"pool ledger {pool_actual} != model {self.expected_pool}"
        self.check_requests(pool_actual)
        self.check_value(actual)
        self.check_views(actual)
        self.check_free_withdrawals(actual)
        self.expected = actual
        self.expected_pool = pool_actual
        if self.started:
            STEPS["run"] += 1
            self.steps_taken += 1
        self.started = True

    def check_tokens(self, ledger: Ledger) -> None:
        """Invariant 1 (and 7's 'no hidden bad debt')."""
        usdc = self.tokens["USDC"]
        assert token_balance(usdc, self.ch) == ledger.settlement_held + self.donated_ch["USDC"]
        assert ledger.settlement_held == sum(ledger.settlement.values()) + ledger.pool_balance + ledger.insurance
        assert ledger.total_debt == sum(-s for s in ledger.settlement.values() if s < 0)
        # the loan book: every debt carries the index it was written at (at most the index now),
        # an account never holds a claim and a debt at once, total_pending sums the claims
        assert set(ledger.debt_index_at) == {a for a, s in ledger.settlement.items() if s < 0}
        assert all(WAD <= i <= ledger.debt_index for i in ledger.debt_index_at.values())
        assert not any(ledger.settlement.get(a, 0) < 0 for a in ledger.pending), "an account holds a claim and a debt"
        assert ledger.total_pending == sum(ledger.pending.values())
        # invariant 8: the settlement tokens held (the internal count and the real balance) cover
        # every positive balance and the insurance fund (so the pool never pays a profit, an LP
        # or a keeper with tokens that back them: equivalently pool_balance >= total_debt)
        owed = sum(s for s in ledger.settlement.values() if s > 0) + ledger.insurance
        assert ledger.settlement_held >= owed, f"settlement_held {ledger.settlement_held} < positive balances + insurance {owed}"
        assert token_balance(usdc, self.ch) >= owed, f"tokens held {token_balance(usdc, self.ch)} < {owed}"
        for slot, col in ledger.collaterals.items():
            sym = next(s for s in COLLATERALS if self.addr[s] == col.token)
            assert token_balance(self.tokens[sym], self.ch) == col.total + self.donated_ch[sym]
            assert col.total == sum(amount for (_, s), amount in ledger.balances.items() if s == slot)
        for sym in COLLATERALS:
            if self.model.slot(self.addr[sym]) is None:
                assert token_balance(self.tokens[sym], self.ch) == self.donated_ch[sym]
        for sym in COLLATERALS:  # the pool's settlement tokens: `check_requests`
            assert token_balance(self.tokens[sym], self.pool) == self.donated_pool[sym]
        # Orders holds exactly the fees escrowed by the orders still waiting (a filled order's fee
        # went to its keeper, a cancelled one's to the insurance fund or back to its owner), and
        # exactly those orders, as committed; open_orders counts them (the withdrawal lock)
        assert token_balance(usdc, self.orders) == sum(order.fee + order.bond for order in self.pending.values())
        orders = storage_of(self.orders)
        for index in range(len(self.world.accounts)):
            account = self.world.account_id(index)
            assert orders.entry(("open_orders",), account) == self.open_orders(account), (
                f"open_orders({account:#x}) is {orders.entry(('open_orders',), account)}, "
                f"{self.open_orders(account)} orders are open"
            )
            for m in ledger.markets:
                order = self.pending.get((account, m))
                words = orders.entry_words(("_orders",), account, m, count=2)
                assert words == (order.words() if order else [0, 0]), f"order ({account:#x}, {m}): {words} != {order}"
                assert orders.entry(("bonds",), account, m) == (order.bond if order else 0)
        for m, stt in ledger.states.items():
            sizes = [size for (_, market), (size, _) in ledger.positions.items() if market == m]
            assert stt.long_oi == sum(s for s in sizes if s > 0) and stt.short_oi == sum(-s for s in sizes if s < 0)
            assert stt.total_cost == sum(cost for (_, market), (_, cost) in ledger.positions.items() if market == m)
            # invariant 10: each side with what placed orders hold on it is within the cap, so no
            # fill is refused "clearinghouse: open interest cap" (a refusal nobody's order caused)
            held_longs, held_shorts = ledger.held.get(m, (0, 0))
            cap = ledger.markets[m].oi_cap
            assert stt.long_oi + held_longs <= cap and stt.short_oi + held_shorts <= cap, (
                f"market {m}: open interest {stt.long_oi}/{stt.short_oi} + held {held_longs}/{held_shorts} > cap {cap}"
            )
        for (account, m), (size, cost) in ledger.positions.items():
            assert size != 0 and ledger.market_mask.get(account, 0) >> m & 1, f"position {size, cost} without its mask bit"
        for account, mask in ledger.market_mask.items():
            assert all((account, m) in ledger.positions for m in range(16) if mask >> m & 1)
        for account, slot in ledger.balances:
            assert ledger.collateral_mask.get(account, 0) >> slot & 1
        for account, mask in ledger.collateral_mask.items():
            assert all((account, s) in ledger.balances for s in range(8) if mask >> s & 1)
        for account, s in ledger.settlement.items():
            hidden = s < 0 and not ledger.market_mask.get(account) and not ledger.collateral_mask.get(account)
            assert not hidden, f"account {account:#x} has debt {s} with nothing left: bad debt not booked"
        # the LPs, the escrow and the shares the Clearinghouse keeps (capped requests' excess)
        holders = [*self.roles.lps, self.pool, self.ch]
        assert self.pool.totalSupply() == sum(token_balance(self.pool, h) for h in holders)

    def check_requests(self, pool: PoolLedger) -> None:
        """Invariant 11: the pool holds exactly the escrow of the requests waiting (their pool
        ledger read from storage, equal to the model's): settlement tokens, each deposit
        request's tokens and fee and each redemption request's fee (and what was donated to it);
        shares of its own, each redemption request's shares."""
        escrow = sum(r.assets + r.fee if r.deposit else r.fee for r in pool.requests.values())
        held = token_balance(self.tokens["USDC"], self.pool)
        assert held == escrow + self.donated_pool["USDC"], f"pool holds {held}, its escrow is {escrow}"
        escrowed = sum(r.shares for r in pool.requests.values() if not r.deposit)
        assert pool.balances[self.escrow] == escrowed, f"pool holds {pool.balances[self.escrow]} shares, escrowed {escrowed}"
        if self.gated:  # the count the instant paths wait on
            assert self.pool.open_requests() == len(pool.requests), f"open_requests {self.pool.open_requests()}"

    def check_value(self, ledger: Ledger) -> None:
        """Invariant 6: accounts + pool + insurance == settlement tokens held, within the bound."""
        unrealised = 0
        # a claim is the account's (equity, as its balance) and the pool's liability
        pool_mark = (ledger.pool_balance - ledger.total_pending) * SCALE
        bound = 0
        for m, stt in ledger.states.items():
            price = self.oracle_view.raw[ledger.markets[m].asset]
            index = self.model.index_now(ledger, m, price)
            positions = [(size, cost) for (_, market), (size, cost) in ledger.positions.items() if market == m]
            unrealised += sum(risk.signed_mul_floor(size, price - index) - cost for size, cost in positions)
            net = stt.long_oi - stt.short_oi
            pool_mark -= risk.signed_mul_ceil(net, price - index) - stt.total_cost
            bound += len(positions) + 1
        accounts = (sum(ledger.settlement.values()) + sum(ledger.pending.values())) * SCALE + unrealised
        value = accounts + pool_mark + ledger.insurance * SCALE
        shortfall = ledger.settlement_held * SCALE - value
        assert 0 <= shortfall < bound, (
            f"value {value} vs tokens held {ledger.settlement_held * SCALE}: off by {shortfall} (bound {bound})"
        )

    def check_views(self, ledger: Ledger) -> None:
        """The contracts' own views agree with the model. A full margin or pool valuation costs
        10-30 ms of interpreted EVM, so every other step checks one item of a rotation: every
        account's margin, every account's health, the pool's totalAssets, and the router's price
        and volatilities of every asset (against `oracle_view`) with the engine's parameters. Risk-adding trades and
        withdrawals also read their account's margin at once, for invariant 2."""
        count = len(self.world.accounts)
        assert self.ch.debt_index() == self.model.debt_index_now(ledger), "debt_index view != model"
        instant = True
        if self.gated:
            instant = self.pool.instant()
            idle = self.model.idle(ledger, self.pool_ledger)
            assert instant == idle, f"instant() is {instant}, the model's idle book {idle}"
        self.rotation = (self.rotation + 1) % (4 * count + 4)
        if self.rotation % 2:
            return  # every other step: half the cost, each item still checked every 28 steps
        item = self.rotation // 2
        if item < 2 * count:
            account = self.world.account_id(item % count)
            # the balance as it reads now (a debt with its interest) and the pending claim
            assert self.ch.settlement(account) == self.model.settlement_of(ledger, account)
            assert self.ch.pending(account) == ledger.pending.get(account, 0)
            try:
                equity, maintenance, initial = self.model.margin(ledger, account)
            except PriceError as error:
                _, message = attempt_view(self.ch.margin, account)
                assert message == error.message, f"margin view: {message!r} vs model {error.message!r}"
                return
            if item < count:
                assert tuple(self.ch.margin(account)) == (equity, maintenance, initial)
            else:
                assert risk.health_of(self.ch, account) == risk.health(equity, maintenance)
        elif item == 2 * count:
            try:
                expected_assets = self.model.total_assets(ledger)
            except PriceError as error:
                _, message = attempt_view(self.pool.totalAssets)
                assert message == error.message
            else:
                assert self.pool.totalAssets() == expected_assets
            # the LPs' limits, the ERC-4626 max* views (a gated pool's read 0 while the book is open,
            # its withdrawable and redeemable never)
            pool = self.pool_ledger
            for lp in self.roles.lps:
                exit_limit = self.model.exit_limit(pool, str(lp))
                deposit = self.model.max_deposit(pool)
                limits = (self.pool.maxDeposit(lp), self.pool.maxMint(lp), self.pool.maxWithdraw(lp), self.pool.maxRedeem(lp))
                assert limits == (deposit, deposit, *(exit_limit if instant else (0, 0))), f"max* of {lp}: {limits}"
                if self.gated:  # what a redemption could be paid now, book open or idle
                    exits = (self.pool.withdrawable(lp), self.pool.redeemable(lp))
                    assert exits == exit_limit, f"withdrawable, redeemable of {lp}: {exits}"
        else:
            for asset in self.oracle_view.feeds:
                price, message = attempt_view(self.oracle.price, asset)
                assert (price, message) == (self.oracle_view.prices[asset], self.oracle_view.errors[asset])
                assert tuple(self.oracle.volatilities(asset)) == self.oracle_view.vols[asset]
            # the engine's own views of the parameters the model reads from its storage
            engine = self.engine
            views = (engine.liquidation_buffer(), engine.full_liquidation_health(), engine.dust_notional())
            assert (*views, engine.underwater_tip_rate()) == astuple(self.model.liquidation_params(ledger))

    def check_free_withdrawals(self, ledger: Ledger) -> None:
        """Invariant 8, its second half: an honest account (a positive balance or a claim the
        pool can pay, no debt, no positions, no order open) can always take its free balance
        out. With no positions and no debt nothing is required, so all of it keeps initial
        margin: its balance and what the pool pays of its claim first. A dry run (rewound):
        the model must predict success (or a refused price of its collateral, which the margin
        check reads), the contract must agree, pay the owner exactly that and leave the ledger
        the model predicted."""
        usdc = self.tokens["USDC"]
        for index in range(len(self.world.accounts)):
            owner, sub, account = self.account(index)
            balance = ledger.settlement.get(account, 0)
            claim = max(min(ledger.pending.get(account, 0), ledger.pool_balance - ledger.total_debt), 0)
            amount = balance + claim
            if balance < 0 or amount == 0 or ledger.market_mask.get(account, 0) or self.open_orders(account):
                continue
            outcome = self.model.withdraw(account, self.addr["USDC"], amount, self.addr["USDC"])
            if outcome.message is not None and outcome.message in self.oracle_view.errors.values():
                record("honest withdrawal (dry run) refused: its collateral's price", None)
                continue
            assert outcome.message is None, f"an honest withdrawal of {amount} by {account:#x} is refused: {outcome.message}"
            wallet = token_balance(usdc, owner)
            with self.env.anchor():
                got = attempt(self.ch.withdraw, usdc, amount, sub, sender=owner)
                assert got is None, f"an honest withdrawal of {amount} by {account:#x}: the contract says {got!r}"
                assert token_balance(usdc, owner) == wallet + amount
                actual = read_ledger(self.ch, self.engine, self.configurator, self.pool)
                differences = outcome.ledger.copy().normalise().diff(actual)
                assert not differences, "honest withdrawal (dry run): ledger differs from the model:\n" + "\n".join(differences)
            record("honest withdrawal of a free balance (dry run)", None)
            if claim:
                record("honest withdrawal (dry run) paid a claim", None)


# ------------------------------------------------------------------ the tests

# Every external mutating function, as the outcome table names it. The scripted walk below makes
# each one succeed through the model at least once; the fuzz run must see the core ones succeed.
EVERY_FUNCTION = (
    "Clearinghouse.deposit",
    "Clearinghouse.withdraw",
    "Orders.commit_order",
    "Orders.execute_order",
    "Orders.fill",  # an execute_order that filled (its other outcomes: the reasons it cancelled)
    "Orders.cancel_order",
    "LiquidationEngine.liquidate",
    "LiquidationEngine.liquidate_collateral",
    "LiquidationEngine.realise_loss",
    "Clearinghouse.fund_insurance",
    "Configurator.pause",
    "Configurator.unpause",
    "Configurator.set_reduce_only",
    "Configurator.set_guardian",
    "LiquidityPool.deposit",
    "LiquidityPool.mint",
    "LiquidityPool.withdraw",
    "LiquidityPool.redeem",
    "LiquidityPool.transfer",
    "LiquidityPool.transferFrom",
    "LiquidityPool.approve",
    "LiquidityPool.request_deposit",
    "LiquidityPool.request_redeem",
    "LiquidityPool.execute_request",
    "LiquidityPool.lapse_request",
    "Configurator.list_collateral",
    "Configurator.list_market",
    "Configurator.set_market",
    "Configurator.set_collateral",
    "Configurator.set_liquidation_parameters",
    "Configurator.set_underwater_tip",
    "Configurator.set_debt_parameters",
    "Configurator.set_reserve_factor",
    "OracleRouter.sync",
    "OracleRouter.clear_circuit_breaker",
    "OracleRouter.set_parameters",
    "OracleRouter.set_feed",
    "configurator.transfer_ownership",
    "configurator.accept_ownership",
    "oracle.transfer_ownership",
    "oracle.accept_ownership",
    "MockAggregator.updateAnswer",
    "MockAggregator.updateRoundData",
    "MockERC20.transfer to clearinghouse",
    "MockERC20.transfer to pool",
)
CORE_FUNCTIONS = (
    "Clearinghouse.deposit",
    "Orders.commit_order",
    "Orders.fill",
    "LiquidationEngine.liquidate",
    "LiquidityPool.deposit",  # while the book is idle (`book_goes_idle`)
    "LiquidityPool.execute_request",
    "OracleRouter.sync",
    "Configurator.set_market",
)


def outcome_table() -> str:
    labels = sorted({label for label, _ in OUTCOMES})
    lines = []
    for label in labels:
        parts = [f"{outcome} x{n}" for (rule, outcome), n in sorted(OUTCOMES.items(), key=lambda kv: -kv[1]) if rule == label]
        lines.append(f"  {label}: " + ", ".join(parts))
    return "\n".join(lines)


@pytest.mark.slow
def test_protocol_invariants_hold_under_fuzzing():
    name, steps, derandomize = fuzz_profile()
    OUTCOMES.clear()
    STEPS["run"] = 0
    # up to ~10% of examples stop early (hypothesis caps the data one example may draw): provision 20% more
    examples = math.ceil(steps * 1.2 / STEPS_PER_EXAMPLE)
    run_state_machine_as_test(
        ProtocolMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=STEPS_PER_EXAMPLE,
            derandomize=derandomize,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            print_blob=True,
            report_multiple_bugs=False,
        ),
    )
    print(f"\nfuzz profile {name}: {STEPS['run']} steps in {examples} examples\n{outcome_table()}")
    assert STEPS["run"] >= steps, f"profile {name} asked for {steps} steps, ran {STEPS['run']}"
    if steps >= 2_000:
        # the core functions must succeed in any long enough run; the rarer loan and claim paths
        # (a pending claim, a claim paid, an honest withdrawal, interest charged) are made to
        # happen by the scripted walk below, since the random walk's reach of them varies with
        # the process it runs in (two CI runs under pytest-xdist each missed one of them)
        missing = [label for label in CORE_FUNCTIONS if OUTCOMES[(label, "ok")] == 0]
        assert not missing, f"never succeeded in {STEPS['run']} steps: {missing}"


def test_every_rule_succeeds_in_a_scripted_walk(machine):
    """Every external mutating function succeeds at least once through its rule, with the model
    predicting it and every invariant checked after each step (the fuzzer's distribution is
    hypothesis's to choose; this walk makes sure no success path of the model is dead)."""
    OUTCOMES.clear()

    def step(name: str, **arguments: Any) -> None:
        getattr(machine, name)(**arguments)
        machine.protocol_invariants()

    step("deposit", order=(0, "USDC", 5_000, 0))
    step("deposit", order=(5, "WBTC", 20_000, 0))
    step("withdraw", order=(0, 0, 100, 1))
    step("trade", order=(5, 1, "open", 3, 1_000, True, "exact"))
    step("order_round_passed", index=5, market=1, leverage=2, is_long=True, new_phase=False)
    step("order_round_passed", index=4, market=0, leverage=2, is_long=False, new_phase=True)
    step("fund_insurance", usd=1_000)
    # the book is open (the seeded positions): a gated pool's LPs come and go by request only
    step("lp_deposit", lp=1, usd=10_000)
    step("lp_mint", lp=1, usd=10_000)
    opened = BOOK_OPEN if machine.gated else "ok"
    assert OUTCOMES[("LiquidityPool.deposit", opened)] and OUTCOMES[("LiquidityPool.mint", opened)], outcome_table()
    step("lp_request_deposit", lp=1, usd=10_000, to_other=False)
    step("lp_request_deposit", lp=1, usd=10_000, to_other=False)  # "pool: request pending"
    step("lp_execute_request", order=(1, "early", 0, "deposit"))  # "pool: request not due"
    step("lp_execute_request", order=(1, "due", 0, "deposit"))
    step("lp_request_deposit", lp=0, usd=10_000, to_other=True)  # paid by LP 0, the shares LP 1's
    step("lp_execute_request", order=(0, "end", 300, "deposit"))  # at the window's last second, ETH 3% up
    for message in ("pool: request pending", "pool: request not due"):
        assert OUTCOMES[("LiquidityPool.request_deposit" if "pending" in message else "LiquidityPool.execute_request", message)]
    step("time_passes", seconds=901)
    # an order that can still fill stays: its owner's withdrawals wait; then it expires with no
    # round (refunded), and another's round passes (forfeited)
    step("cancel_order", order=(2, 0, "keeper", "early"))
    step("cancel_order", order=(2, 0, "replace", "early"))  # "orders: order pending"
    step("withdraw", order=(2, 0, 100, 1))
    assert OUTCOMES[("Clearinghouse.withdraw", "clearinghouse: order pending")]
    step("cancel_order", order=(2, 0, "attacker", "expired"))
    step("heartbeat", which="all")
    step("cancel_order", order=(3, 1, "replace", "passed"))  # the new order replaces it
    step("cancel_order", order=(3, 1, "owner", "passed"))
    step("cancel_order", order=(3, 1, "owner", "as_is"))  # "orders: no order"
    step("heartbeat", which="all")
    step("lp_withdraw", lp=1, permille=100, by_shares=True, caller="owner")  # a gated pool: "pool: book open, ..."
    step("lp_withdraw", lp=1, permille=100, by_shares=False, caller="approved")
    assert OUTCOMES[("LiquidityPool.redeem", opened)] and OUTCOMES[("LiquidityPool.withdraw", opened)], outcome_table()
    step("lp_request_redeem", lp=1, permille=100, caller="stranger")  # "pool: not owner"
    step("lp_request_redeem", lp=1, permille=1_100, caller="owner")  # "pool: insufficient shares"
    step("lp_request_redeem", lp=1, permille=100, caller="approved")  # "pool: not owner", allowance or not
    step("lp_execute_request", order=(1, "late", 0, "redeem"))  # placed by the owner first: "pool: request lapsed"
    step("lp_lapse_request", lp=1, scenario="as_is", by_keeper=False)  # by a stranger: the shares and fee back
    step("lp_lapse_request", lp=1, scenario="early", by_keeper=True)  # a deposit request: "pool: request live"
    step("lp_lapse_request", lp=1, scenario="lapse", by_keeper=True)  # its tokens and fee back
    step("heartbeat", which="all")
    step("lp_execute_request", order=(1, "due", -300, "redeem"))  # ETH down 3%: the traders' loss, the pool's gain
    step("lp_execute_request", order=(1, "due", 300, "redeem"))
    for label, message in (
        ("LiquidityPool.request_redeem", "pool: not owner"),
        ("LiquidityPool.request_redeem", "pool: insufficient shares"),
        ("LiquidityPool.execute_request", "pool: request lapsed"),
        ("LiquidityPool.lapse_request", "pool: request live"),
    ):
        assert OUTCOMES[(label, message)], outcome_table()
    step("lp_transfer_shares", sender=1, permille=100, via_allowance=False)
    step("lp_transfer_shares", sender=1, permille=100, via_allowance=True)
    step("donate", recipient="clearinghouse", sym="WETH", usd=100)
    step("donate", recipient="pool", sym="USDC", usd=100)
    # ETH drifts down 1% a round until the 8x USDC long (account 0) is liquidatable but above
    # the full-liquidation health, then its owner liquidates it from a second address: a partial
    # close, self-liquidation
    account = machine.world.account_id(0)
    while (margin := machine.live_margin(account)) is not None and margin[0] >= margin[1]:
        step("price_moves", move=("WETH", -100, True))
    assert risk.health(margin[0], margin[1]) >= machine.ledger.full_liquidation_health
    step("liquidate", order=(0, 0, "second_address", "all", 1_000))
    # every account's positions after ETH's drift: losses realised (those a realisation would
    # put over the loan limit refused), gains and flat ones refused
    for index in range(6):
        for choice in range(2):
            step("realise_loss", order=(index, choice, "keeper" if index % 2 else "second_address"))
    assert OUTCOMES[("LiquidationEngine.realise_loss", "ok")], outcome_table()
    step("crash", sym="WETH", rounds=3, up=False)  # the 9x WETH-backed long goes underwater
    step("keeper_sweep")  # liquidations, collateral sales, bad debt
    step("heartbeat", which="all")
    # the pool short of tokens: with the open-interest reserve off (which would keep it from
    # running dry), the LP takes out all it can, the most profitable position (the ETH short,
    # after the crash) closes, and the profit the pool cannot pay is a pending claim; an LP
    # deposit brings tokens back and the owner's withdrawal is paid its claim first
    step("pool_runs_dry", index=6, keep_usd=0, move_bp=0, refill_usd=100_000)
    assert OUTCOMES[("event ProfitPending", "ok")] and OUTCOMES[("claim paid at withdrawal", "ok")], outcome_table()
    # that account (no positions left) deposits: an honest account, whose free balance the
    # invariant's dry run withdraws
    step("deposit", order=(1, "USDC", 1_000, 0))
    assert OUTCOMES[("honest withdrawal of a free balance (dry run)", "ok")], outcome_table()
    # governance's switches: an order placed before a pause meets it at its fill and is refunded
    # (fee and bond back to the owner); while it lasts no order that adds risk commits
    owner, sub, account = machine.account(1)
    market = machine.market_of(0)
    assert machine.commit(owner, sub, account, market, WAD // 100, 0), outcome_table()
    machine.protocol_invariants()
    step("emergency_controls", action="pause", by="owner", market=0, on=True)
    assert not machine.commit(owner, sub, account, machine.market_of(1), WAD // 100, 0)
    machine.protocol_invariants()
    machine.env.time_travel(seconds=machine.settlement_delay)
    assert machine.fill((account, market)) is False
    machine.protocol_invariants()
    step("emergency_controls", action="unpause", by="owner", market=0, on=True)
    paths = (("Orders.commit_order", "orders: paused"), ("Orders.fill", "clearinghouse: paused"))
    assert all(OUTCOMES[path] for path in paths), outcome_table()
    step("liquidated_before_fill", order=(6, 1, 1_000))
    step("backdated_round", sym="USDT", age=10)
    step("clear_circuit_breaker", sym="halted", by_owner=True)
    step("heartbeat", which="all")
    step(
        "set_market",
        market=0,
        base_bp=300,
        multiplier_x100=200,
        fee_bp=5,
        penalty_permille=500,
        keeper_permille=500,
        vol_k_x10=30,
        horizon=3_600,
        tier=(1_000, 100),
        skew_units=1_000_000,
        cap_permille=500,
        funding_bp=100,
        broken=None,
    )
    step("set_collateral", sym="USDT", weight_bp=8_500, discount_permille=500, cap="keep", enabled=True)
    step(
        "global_parameters",
        kind="liquidation",
        buffer_bp=1_000,
        full_bp=5_000,
        dust_usd=100,
        tip_bp=20,
        lam_permille=940,
        speed_permille=100,
    )
    step(
        "global_parameters",
        kind="tip",
        buffer_bp=1_000,
        full_bp=5_000,
        dust_usd=100,
        tip_bp=5,
        lam_permille=940,
        speed_permille=100,
    )
    step(
        "global_parameters",
        kind="oracle",
        buffer_bp=1_000,
        full_bp=5_000,
        dust_usd=100,
        tip_bp=20,
        lam_permille=900,
        speed_permille=100,
    )
    step("set_feed", sym="WBTC", heartbeat=86_400, deviation_bp=2_000, sigma_bp=8_000)
    # the loan's terms: each bound broken once, an attacker refused, then a ceiling of one wei
    # of the pool's balance, which refuses the risk-adding fill of an account in debt (account
    # 5: WBTC only, so its fees are a debt), and a month of 100% interest
    for rate_base, rate_slope, debt_imr, ceiling, ltv, by in (
        (WAD + 1, 0, WAD, WAD, "highest", "owner"),
        (0, 10 * WAD + 1, WAD, WAD, "highest", "owner"),
        (0, 0, 0, WAD, "highest", "owner"),
        (0, 0, WAD + 1, WAD, "highest", "owner"),
        (0, 0, WAD, 0, "highest", "owner"),
        (0, 0, WAD, WAD + 1, "highest", "owner"),
        (0, 0, 10**16, WAD, "default", "owner"),
        (0, 0, WAD, WAD, "below_lowest", "owner"),
        (0, 0, WAD, WAD, "above_one", "owner"),
        (0, 0, WAD, WAD, "highest", "attacker"),
        (WAD, 10 * WAD, 25 * 10**16, 1, "lowest", "owner"),
    ):
        step(
            "set_debt_parameters", rate_base=rate_base, rate_slope=rate_slope, debt_imr=debt_imr, ceiling=ceiling, ltv=ltv, by=by
        )
    for message in ("rate", "margin", "ceiling"):
        assert OUTCOMES[("Configurator.set_debt_parameters", f"configurator: bad debt {message}")] == 2, outcome_table()
    assert OUTCOMES[("Configurator.set_debt_parameters", "configurator: bad loan to value")] == 3, outcome_table()
    assert OUTCOMES[("Configurator.set_debt_parameters", "ownable: caller is not the owner")] == 1, outcome_table()
    assert machine.ledger.settlement.get(machine.world.account_id(5), 0) < 0
    step("trade", order=(5, 1, "open", 1, 1_000, True, "none"))
    assert OUTCOMES[("Orders.commit_order", "orders: debt ceiling")], outcome_table()
    step("time_passes", seconds=30 * 86_400)
    step("heartbeat", which="all")
    step(
        "set_debt_parameters",
        rate_base=2 * 10**16,
        rate_slope=3 * 10**17,
        debt_imr=25 * 10**16,
        ceiling=5 * 10**17,
        ltv="default",
        by="owner",
    )
    assert OUTCOMES[("interest charged to the pool", "ok")], outcome_table()
    # a loan over its limit with its position open: account 5 (WBTC, long BTC) realises a loss
    # into a debt, then governance cuts WBTC's weight to 5%: the debt is above 0.9 of the
    # haircut collateral value and the collateral is for sale, the position still open
    step("price_moves", move=("WBTC", -1_000, True))
    step("trade", order=(5, 1, "reduce", 1, 900, True, "none"))
    step("set_collateral", sym="WBTC", weight_bp=500, discount_permille=500, cap="keep", enabled=True)
    step("liquidate_collateral", index=5, sym="WBTC", max_kind="all", permille=1_000)
    assert OUTCOMES[("collateral sale over the loan-to-value limit, positions open", "ok")], outcome_table()
    step("set_collateral", sym="WBTC", weight_bp=8_500, discount_permille=500, cap="keep", enabled=True)
    # the open-interest reserve (issue 9, item 5): each bound broken, an attacker refused, then
    # one wei of the pool's capital: a risk-adding order is refused at commit and an LP withdrawal
    # refused while the market has open interest; then back to the whole pool
    for market, factor, by in ((0, 100 * WAD + 1, "owner"), (-1, WAD, "owner"), (0, WAD, "attacker")):
        step("set_reserve_factor", market=market, factor=factor, by=by)
    assert OUTCOMES[("Configurator.set_reserve_factor", "configurator: bad reserve factor")] == 1, outcome_table()
    assert OUTCOMES[("Configurator.set_reserve_factor", "configurator: unknown market")] == 1, outcome_table()
    step("deposit", order=(0, "USDC", 50_000, 0))  # margin for both orders (account 0 was liquidated)
    step("trade", order=(0, 0, "open", 1, 1_000, True, "none"))  # open interest, within the reserve
    for market in (0, 1):
        step("set_reserve_factor", market=market, factor=1, by="owner")
    step("trade", order=(0, 0, "edge", 1, 900, True, "none"))  # within its margin, past the reserve
    assert OUTCOMES[("Orders.commit_order", "orders: open interest reserve")], outcome_table()
    # an LP's withdrawal past the reserve is refused (a gated pool's first: the book is open); by
    # request, refused at its execution, and the request waits: executed once the reserve is back
    # (LP 1: pool_runs_dry left it the refill's shares, while LP 0 may have redeemed all of its own)
    step("lp_withdraw", lp=1, permille=10, by_shares=False, caller="owner")
    assert OUTCOMES[("LiquidityPool.withdraw", BOOK_OPEN if machine.gated else "pool: open interest reserve")]
    step("lp_request_redeem", lp=1, permille=10, caller="owner")
    step("lp_execute_request", order=(1, "due", 0, "redeem"))
    assert OUTCOMES[("LiquidityPool.execute_request", "pool: open interest reserve")], outcome_table()
    assert str(machine.roles.lps[1]) in machine.pool_ledger.requests
    for market in (0, 1):
        step("set_reserve_factor", market=market, factor=WAD, by="owner")
    executed = OUTCOMES[("LiquidityPool.execute_request", "ok")]
    step("lp_execute_request", order=(1, "due", 0, "redeem"))
    assert OUTCOMES[("LiquidityPool.execute_request", "ok")] == executed + 1, outcome_table()
    step("trade", order=(0, 0, "open", 20, 1_000, True, "none"))  # past its margin: refused at commit
    assert OUTCOMES[("Orders.commit_order", "orders: insufficient margin")], outcome_table()
    step("list_collateral", weight_bp=7_000, discount_permille=500)
    step("list_market", sym="LINK", base_bp=500, penalty_permille=500, keeper_permille=500, cap_permille=500)
    # the traders leave, but for a debt (the book is idle: a debt moves with no price), then an
    # order placed (it stays open); then all of it: the LPs come and go at once (requests still work)
    step("book_goes_idle", order=("debt", 1, 10_000, 100, True))
    assert not machine.gated or machine.pool.instant(), outcome_table()
    step("book_goes_idle", order=("order", 1, 10_000, 100, True))
    assert OUTCOMES[("book_goes_idle", "still open")], outcome_table()
    step("book_goes_idle", order=("nothing", 1, 10_000, 100, True))
    assert OUTCOMES[("book_goes_idle", "ok")] and (not machine.gated or machine.pool.instant()), outcome_table()
    step("lp_withdraw", lp=1, permille=100, by_shares=False, caller="approved")
    step("lp_withdraw", lp=1, permille=100, by_shares=True, caller="owner")
    step("lp_request_redeem", lp=1, permille=100, caller="owner")
    step("lp_execute_request", order=(1, "due", 0, "redeem"))
    for action, by in (
        ("pause", "guardian"),
        ("reduce_only", "guardian"),
        ("unpause", "owner"),
        ("set_guardian", "owner"),
    ):
        step("emergency_controls", action=action, by=by, market=0, on=True)
    for contract in ("configurator", "oracle"):
        step("access_control", kind="hand_over_ownership", contract=contract, call="feed")
    paths = (
        "liquidation partial, by the owner's second address",
        "liquidation whole position, by the keeper",
        "liquidation paid the underwater tip",
        "event BadDebt",
        "event CollateralLiquidation",
        "event CircuitBreakerTripped",
        "event ProfitPending",
        "claim paid at withdrawal",
        "interest charged to the pool",
        "collateral sale over the loan-to-value limit, positions open",
        "honest withdrawal of a free balance (dry run)",
        # the worse of the two values, each way: the request's, or the execution's
        "LiquidityPool.execute_request deposit at the value recorded (the worse)",
        "LiquidityPool.execute_request deposit at the value now (the worse)",
        "LiquidityPool.execute_request redemption at the value recorded (the worse)",
        "LiquidityPool.execute_request redemption at the value now (the worse)",
        "LiquidityPool.lapse_request deposit",
        "LiquidityPool.lapse_request redemption",
    )
    missing = [label for label in (*EVERY_FUNCTION, *paths) if OUTCOMES[(label, "ok")] == 0]
    assert not missing, f"never succeeded: {missing}\n{outcome_table()}"
    for outcome in ("orders: round passed", "orders: position changed"):
        assert OUTCOMES[("Orders.fill", outcome)], outcome_table()
    for outcome in ("expired", "passed"):
        assert OUTCOMES[(f"Orders.cancel_order {outcome}", "ok")], outcome_table()
    for outcome in ("orders: not expired", "orders: no order"):
        assert OUTCOMES[("Orders.cancel_order", outcome)], outcome_table()
    assert OUTCOMES[("Orders.commit_order", "orders: order pending")], outcome_table()
    assert OUTCOMES[("Orders.commit_order replaced an order passed", "ok")], outcome_table()


# ------------------------------------------------------------------ the checks can fail


@pytest.fixture
def machine():
    machine = ProtocolMachine()
    yield machine
    machine.teardown()


def test_invariants__tokens_arriving_outside_the_accounting__are_caught(machine):
    """Invariant 1 is not vacuous: a token transfer the machine was not told about breaks
    balanceOf == internal balances + donations."""
    machine.tokens["WBTC"].transfer(machine.ch, 1, sender=machine.roles.donor)
    with pytest.raises(AssertionError):
        machine.protocol_invariants()


def test_invariants__a_state_change_the_model_did_not_predict__is_caught(machine):
    """The ledger check is not vacuous: a deposit sent behind the model's back is reported."""
    machine.ch.deposit(machine.tokens["USDC"], 1, 0, sender=machine.roles.traders[0])
    with pytest.raises(AssertionError, match="ledger differs from the model"):
        machine.protocol_invariants()


def test_invariants__a_revert_the_model_did_not_predict__is_caught(machine):
    """A call the model expects to succeed but the contract refuses fails the run."""
    owner, sub, _ = machine.account(5)  # an empty account: it cannot withdraw
    wrong = Outcome(None, machine.ledger)
    with pytest.raises(AssertionError, match="clearinghouse: insufficient balance"):
        machine.call("Clearinghouse.withdraw", machine.ch.withdraw, machine.tokens["USDC"], 1, sub, sender=owner, outcome=wrong)


# ------------------------------------------------------------------ findings


def test_commit__replacing_a_dead_order__counts_the_new_one(machine):
    """A finding of this model, fixed: Orders.commit_order over an order that can no longer fill
    (here its round passed) replaces it, and `_delete` decremented open_orders for the old one
    while the increment for the new one was only in the branch without an old order. open_orders
    then read 0 with an order open: Clearinghouse.withdraw let the account take out the margin
    the fill needs, and the order could be neither executed nor cancelled (`_delete`
    underflowed, a revert without a reason) while the account had no other order open. The
    replacing order is counted, withdrawals wait for it, and it fills."""
    owner, sub, account = machine.account(0)
    market = machine.market_of(0)
    assert machine.commit(owner, sub, account, market, -(10**15), 0)  # a reduction of its long: never refused
    machine.env.time_travel(seconds=machine.settlement_delay)
    sym, _ = machine.market_feed(market)
    answer = machine.oracle_view.feeds[machine.addr[sym]].answer
    machine.publish(sym, answer)
    machine.env.time_travel(seconds=12)
    machine.publish(sym, answer)
    assert machine.dead((account, market)) == PASSED
    assert machine.commit(owner, sub, account, market, -(10**15), 0)  # the old fee forfeited
    assert machine.orders.open_orders(account) == 1
    machine.protocol_invariants()
    machine.withdraw(order=(0, 0, 100, 1))
    assert OUTCOMES[("Clearinghouse.withdraw", "clearinghouse: order pending")]
    machine.env.time_travel(seconds=machine.settlement_delay)
    assert machine.fill((account, market)) is True
    machine.protocol_invariants()
    assert machine.orders.open_orders(account) == 0


def test_cancel__the_owner_cancelling_its_expired_order__is_refunded(machine):
    """A finding of this model, fixed: `_release` returned an expired order's fee for the caller
    to pay when the caller was the owner (commit_order nets it against the new fee), but
    cancel_order discarded the value: an owner cancelling its own expired order got nothing
    back, and the fee stayed in Orders, backing no order. The owner is refunded, as anyone
    else cancelling it refunds the owner."""
    owner, sub, account = machine.account(0)
    market = machine.market_of(0)
    assert machine.commit(owner, sub, account, market, 10**15, 0)
    machine.env.time_travel(seconds=machine.settlement_delay + machine.order_expiry)
    assert machine.dead((account, market)) == EXPIRED
    assert machine.cancel((account, market), owner)  # the fee back to the owner
    machine.protocol_invariants()


def test_reduce__fee_above_maintenance_is_refused(machine):
    """The fuzzer's finding, fixed: with base_mmr 0.1%, vol_k 0, imr_multiplier 2 (initial rate
    0.2%) and a 1% fee, a trader at initial margin who sold half its position ended at about
    -$242 of equity: a reduction, never refused, made its own account liquidatable. The
    Configurator now requires fee + the premium at the cap (oi_cap / skew_scale, rounded up)
    below base_mmr, so what a reduction costs stays below the maintenance it frees; the model
    agrees, and the market keeps its parameters."""
    ch, owner = machine.ch, machine.roles.owner
    params = replace(
        machine.ledger.markets[1],
        base_mmr=10**15,
        vol_k=0,
        imr_multiplier=2 * WAD,
        fee=10**16,
        penalty=10**15,
        tier_mmr=0,
    )
    params = replace(params, oi_cap=params.skew_scale * (WAD - params.keeper_share) * 5 * 10**14 // WAD // WAD)
    message = "configurator: fee above maintenance"
    assert machine.model.market_params_error(params, machine.ledger.buffer, machine.ledger.full_liquidation_health) == message
    assert attempt(machine.configurator.set_market, 1, tuple(params.__dict__.values()), sender=owner) == message
    assert ch.markets(1).fee == machine.ledger.markets[1].fee
