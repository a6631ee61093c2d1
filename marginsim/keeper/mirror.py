"""A keeper's view of the protocol: the accounts it indexed, mirrored exactly off-chain.

A keeper knows only what a real one could: it builds its account list from the Clearinghouse's
events (`marginsim.keeper.indexer`), mirrors every account's health off-chain with the
contract's own integer arithmetic (`marginsim.risk`), and sizes a liquidation as the contract
will (`Keeper.plan`). Whether a liquidation pays is the planner's (`marginsim.keeper.planner`),
kept apart as makerdao/auction-keeper keeps can_bark apart from its bidding models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marginsim import risk
from marginsim.keeper.model import LiquidationModel
from marginsim.sim.scenario import KeeperSpec

WAD = 10**18
MAX_UINT = 2**256 - 1


@dataclass
class AccountMirror:
    """What changes an account only through its own events: re-read when one touches it."""

    settlement: int = 0  # as written: a debt without the interest since (see `debt_index_at`)
    positions: dict[int, tuple[int, int]] = field(default_factory=dict)  # market -> (size, cost)
    collateral: dict[int, int] = field(default_factory=dict)  # slot -> amount
    debt_index_at: int = 0  # the debt index a negative balance was written at (`debt_of`)
    pending: int = 0  # profit the pool owes, not yet paid in tokens


@dataclass(frozen=True)
class Candidate:
    account: int
    market: int
    equity: int
    maintenance: int
    mirror_health: int


class Keeper:
    """One keeper bot: its own signer, delay, censorship windows and profit threshold."""

    def __init__(self, spec: KeeperSpec, signer: Any, protocol: Any, model: LiquidationModel | None = None):
        self.spec = spec
        self.signer = signer
        self.protocol = protocol
        self.model = model or LiquidationModel()
        self.accounts: dict[int, AccountMirror] = {}
        self.first_liquidatable_block: dict[int, int] = {}
        self.settlement_to_wad = int(protocol.clearinghouse.SETTLEMENT_TO_WAD())
        self.debt = risk.read_debt_view(protocol.clearinghouse)
        self.debt_liquidation_ltv = int(protocol.liquidation_engine.debt_liquidation_ltv())

    def read_debt(self, debt: risk.DebtView | None = None) -> None:
        """The debt index's inputs change with every debt and LP flow, without an account's
        event: read them once a step (or take the step's one read, `debt`)."""
        self.debt = debt if debt is not None else risk.read_debt_view(self.protocol.clearinghouse)

    # ------------------------------------------------------------------ indexing
    def observe(self, touched: set[int], loaded: dict[int, AccountMirror] | None = None) -> None:
        """New Clearinghouse events touched these accounts: (re)load them. The engine reads the
        logs once per step (one eth_getLogs) and hands every keeper the same view; `loaded`,
        when given, holds the accounts already read from the chain this step."""
        for account in touched:
            mirror = loaded.get(account) if loaded else None
            self.accounts[account] = mirror if mirror is not None else self.load(account)

    def load(self, account: int) -> AccountMirror:
        """An account's settlement balance, positions and collateral, read from the chain."""
        ch = self.protocol.clearinghouse
        mirror = AccountMirror(settlement=int(ch.settlement(account)), pending=int(ch.pending(account)))
        if mirror.settlement < 0:
            # a debt grows without an event: keep it as written, with its index
            written, mirror.debt_index_at = (int(v) for v in ch.debt_of(account))
            mirror.settlement = -written
        mask = int(ch.market_mask(account))
        for market in range(1, risk.MAX_MARKETS):
            if mask >> market & 1:
                pos = ch.positions(account, market)
                mirror.positions[market] = (int(pos.size), int(pos.cost))
        collateral_mask = int(ch.collateral_mask(account))
        for slot in range(1, risk.MAX_COLLATERALS):
            if collateral_mask >> slot & 1:
                mirror.collateral[slot] = int(ch.balances(account, slot))
        return mirror

    # ------------------------------------------------------------------ the mirror
    def priced(self, account: int, market_views: dict[int, risk.MarketView], collateral: dict[int, Any]) -> bool:
        """Whether every market and collateral of `account` has a price this step: while a
        circuit breaker halts an asset, the contracts cannot value (or liquidate) an account
        that holds it, and neither can the mirror."""
        mirror = self.accounts[account]
        return all(m in market_views for m in mirror.positions) and all(s in collateral for s in mirror.collateral)

    def snapshot(
        self,
        account: int,
        market_views: dict[int, risk.MarketView],
        collateral: dict[int, tuple[int, int, int]],
        timestamp: int,
    ) -> risk.AccountSnapshot:
        """`collateral`: slot -> (unit, weight, price). A debt's interest comes from `debt`, the
        debt index's inputs as last read (`read_debt`)."""
        mirror = self.accounts[account]
        debt = self.debt
        settlement = mirror.settlement
        if settlement < 0:
            settlement = debt.balance(settlement, mirror.debt_index_at, timestamp)
        return risk.AccountSnapshot(
            settlement=settlement,
            settlement_to_wad=self.settlement_to_wad,
            positions=dict(mirror.positions),
            markets={m: market_views[m] for m in mirror.positions},
            collaterals=[risk.CollateralView(*collateral[slot], amount) for slot, amount in mirror.collateral.items()],
            timestamp=timestamp,
            pending=mirror.pending,
            debt_imr=debt.debt_imr,
        )

    def candidates(
        self,
        market_views: dict[int, risk.MarketView],
        collateral: dict[int, tuple[int, int, int]],
        timestamp: int,
        sim_block: int,
        margins: dict[int, tuple[int, int]] | None = None,
    ) -> list[Candidate]:
        """Accounts the mirror says are below maintenance, whose delay has passed. `margins`
        (account -> (equity, maintenance)), when given, is this step's scan of the same mirror
        already made (`scan_margins`): the simulator's keepers share one."""
        if margins is None:
            margins = self.scan_margins(market_views, collateral, timestamp)
        found: list[Candidate] = []
        for account, mirror in self.accounts.items():
            if not mirror.positions:
                self.first_liquidatable_block.pop(account, None)
                continue
            if account not in margins:
                continue  # halted: nothing can be done until the price returns
            equity, maintenance = margins[account]
            if equity >= maintenance:
                self.first_liquidatable_block.pop(account, None)
                continue
            first = self.first_liquidatable_block.setdefault(account, sim_block)
            if sim_block - first < self.spec.delay_blocks:
                continue
            # the market with the largest maintenance requirement goes first
            market = max(
                mirror.positions,
                key=lambda m: risk.mul_up(abs(mirror.positions[m][0]), market_views[m].price),
            )
            found.append(Candidate(account, market, equity, maintenance, risk.health(equity, maintenance)))
        return found

    def scan_margins(
        self, market_views: dict[int, risk.MarketView], collateral: dict[int, tuple[int, int, int]], timestamp: int
    ) -> dict[int, tuple[int, int]]:
        """(equity, maintenance) of every mirrored account holding positions whose assets all
        have a price this step: one pass of `risk.margin` over the book."""
        margins = {}
        views = {m: risk.accrued(v, timestamp) for m, v in market_views.items()}  # each market's funding once
        for account, mirror in self.accounts.items():
            if mirror.positions and self.priced(account, views, collateral):
                equity, maintenance, _ = risk.margin(self.snapshot(account, views, collateral, timestamp))
                margins[account] = (equity, maintenance)
        return margins

    def plan(
        self, candidate: Candidate, view: risk.MarketView, params: risk.LiquidationParams, insurance: int
    ) -> risk.LiquidationOutcome:
        """What `LiquidationEngine.liquidate(candidate, market, max)` will close and pay, from the
        mirror: the contract's own rule (`risk.liquidation_outcome`)."""
        size = self.accounts[candidate.account].positions[candidate.market][0]
        snapshot = risk.snapshot_for(view, size, candidate.equity, candidate.maintenance, insurance)
        return risk.liquidation_outcome(snapshot, params, MAX_UINT, self.settlement_to_wad)
