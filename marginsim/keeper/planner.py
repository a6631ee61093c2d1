"""What to send: which liquidations pay, and which accounts' collateral is for sale.

Given the keeper's mirror and one read of the markets, the plan is a function of them: no chain
read but the insurance fund's balance (read once, and only when there is a candidate). The
keeper then confirms the planned accounts on chain with one batched view before sending
(`executor.onchain_healths`): pricing first saves the node calls on accounts that would not pay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marginsim import risk
from marginsim.keeper.mirror import Candidate, Keeper


@dataclass(frozen=True)
class PlannedLiquidation:
    candidate: Candidate
    outcome: risk.LiquidationOutcome  # what the contract will close and pay (`Keeper.plan`)
    reward_usd: float  # the keeper's reward
    gas_usd: float  # the call's expected gas cost


def plan_liquidations(
    keeper: Keeper,
    views: dict[int, risk.MarketView],
    collateral: dict[int, tuple[int, int, int]],
    timestamp: int,
    block: int,
    params: risk.LiquidationParams,
    read_insurance: Callable[[], int],
    gas_price_gwei: float,
    eth_price_usd: float,
    margins: dict[int, tuple[int, int]] | None = None,
) -> tuple[list[PlannedLiquidation], list[PlannedLiquidation]]:
    """(worth sending, not worth it): every account the mirror finds below maintenance whose
    delay has passed (`Keeper.candidates`), sized as the contract will size it, its reward
    against the gas of `model.gas_estimate` at this gas price plus the keeper's
    `min_profit_usd`. `margins`: this step's scan of the mirror, when already made."""
    found = keeper.candidates(views, collateral, timestamp, block, margins)
    if not found:
        return [], []
    insurance = read_insurance()
    model, settlement_to_wad = keeper.model, keeper.settlement_to_wad
    cost = model.gas_cost_usd(model.gas_estimate, gas_price_gwei, eth_price_usd)
    worth: list[PlannedLiquidation] = []
    not_worth: list[PlannedLiquidation] = []
    for candidate in found:
        outcome = keeper.plan(candidate, views[candidate.market], params, insurance)
        planned = PlannedLiquidation(candidate, outcome, model.reward_usd(outcome, settlement_to_wad), cost)
        (not_worth if planned.reward_usd < cost + keeper.spec.min_profit_usd else worth).append(planned)
    return worth, not_worth


def collateral_for_sale(
    keeper: Keeper,
    views: dict[int, risk.MarketView],
    collateral: dict[int, tuple[int, int, int]],
    timestamp: int,
    exclude: set[int] | Any = frozenset(),
    margins: dict[int, tuple[int, int]] | None = None,
) -> list[int]:
    """Accounts whose collateral the engine puts up for sale now, by the mirror
    (`risk.collateral_for_sale`: a debt above the loan-to-value limit, or no positions left and
    negative equity), but those in `exclude` and those holding an asset without a price."""
    accounts = []
    for account, mirror in keeper.accounts.items():
        if account in exclude or mirror.settlement >= 0 or not any(mirror.collateral.values()):
            continue
        if not keeper.priced(account, views, collateral):
            continue
        snapshot = keeper.snapshot(account, views, collateral, timestamp)
        equity = margins[account][0] if margins and account in margins else risk.margin(snapshot)[0]
        written_off = all(collateral[slot][1] == 0 for slot, amount in mirror.collateral.items() if amount)
        if risk.collateral_for_sale(
            -snapshot.settlement,
            equity,
            keeper.debt_liquidation_ltv,
            bool(mirror.positions),
            snapshot.settlement_to_wad,
            written_off=written_off,
        ):
            accounts.append(account)
    return accounts


LANDING_SLACK = 10_000  # a realisation is planned with its debt and its equity 1/10,000 of the debt worse


@dataclass(frozen=True)
class PlannedRealisation:
    account: int
    market: int
    loss: int  # settlement token units the realisation moves into the balance (`risk.realisable_loss`)
    debt_after: int  # settlement token units the account then owes the pool (before its pending claim)


def losses_to_realise(
    keeper: Keeper,
    views: dict[int, risk.MarketView],
    collateral: dict[int, tuple[int, int, int]],
    timestamp: int,
    min_loss_usd: float,
    margins: dict[int, tuple[int, int]] | None = None,
) -> list[PlannedRealisation]:
    """Open losses worth realising now (`LiquidationEngine.realise_loss`): an unrealised loss is
    an interest-free loan from the pool until someone realises it into the balance, where a debt
    bears the utilisation rate's interest for the LPs. For each account, its largest realisable
    loss of at least `min_loss_usd` (one a step: the next one's debt depends on this one), but
    where the debt would then be over the loan limit (the call reverts: a third party may not put
    collateral up for sale; the check allows for the blocks until the call lands, `LANDING_SLACK`,
    so a borderline account is skipped rather than reverted). Largest first."""
    s2w = keeper.settlement_to_wad
    ltv = keeper.debt_liquidation_ltv
    planned: list[PlannedRealisation] = []
    for account, mirror in keeper.accounts.items():
        if not mirror.positions or not keeper.priced(account, views, collateral):
            continue
        snapshot = keeper.snapshot(account, views, collateral, timestamp)
        market, loss = max(((m, risk.realisable_loss(snapshot, m)) for m in mirror.positions), key=lambda ml: ml[1])
        if loss == 0 or loss * s2w < min_loss_usd * risk.WAD:
            continue
        equity = margins[account][0] if margins and account in margins else risk.margin(snapshot)[0]
        debt_after = max(loss - snapshot.settlement, 0)
        # as it will be when the call lands: a unit of rounding, and a margin of 0.01% of the
        # debt for the interest and funding of the blocks until then (a year's interest at 500%
        # accrues 0.01% in ten minutes)
        slack = s2w + debt_after * s2w // LANDING_SLACK
        if risk.collateral_for_sale(debt_after + debt_after // LANDING_SLACK, equity - slack, ltv, True, s2w):
            continue  # "liquidation: realisation over the loan limit"
        planned.append(PlannedRealisation(account, market, loss, debt_after))
    planned.sort(key=lambda p: -p.loss)
    return planned
