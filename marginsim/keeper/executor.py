"""Sending: confirming on chain, liquidating, realising a loss; what came back, decoded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_UINT = 2**256 - 1
HEALTHS_BATCH = 512  # MarginLens.MAX_BATCH: the most accounts one healths() call takes


def onchain_healths(lens: Any, accounts: list[int]) -> dict[int, int]:
    """On-chain health of `accounts` (`MarginLens.healths`), in calls of at most 512 accounts."""
    healths: dict[int, int] = {}
    for start in range(0, len(accounts), HEALTHS_BATCH):
        batch = accounts[start : start + HEALTHS_BATCH]
        healths.update(zip(batch, (int(h) for h in lens.healths(batch)), strict=True))
    return healths


@dataclass(frozen=True)
class Liquidated:
    """A liquidation that landed: its receipt and its `Liquidation` event's figures."""

    receipt: Any
    size_closed: int  # base units, signed as the change to the position
    price: int  # WAD
    penalty: int  # settlement token units
    keeper_reward: int  # settlement token units
    health_before: int
    health_after: int  # MAX_UINT when no position is left

    @property
    def gas_used(self) -> int:
        return int(self.receipt.gas_used)


def liquidate(protocol: Any, signer: Any, account: int, market: int) -> Liquidated:
    """`LiquidationEngine.liquidate(account, market, max)` from `signer`; raises the chain's
    revert (`errors.REVERTS`) when refused (another keeper's landed first, the account
    recovered, the price is halted)."""
    receipt = protocol.liquidation_engine.liquidate(account, market, MAX_UINT, sender=signer)
    event = next(e for e in receipt.events if e.event_name == "Liquidation")
    return Liquidated(
        receipt,
        int(event.size_closed),
        int(event.price),
        int(event.penalty),
        int(event.keeper_reward),
        int(event.health_before),
        int(event.health_after),
    )


@dataclass(frozen=True)
class Realised:
    """A realisation that landed: its receipt and the loss its `LossRealised` event reports."""

    receipt: Any
    loss: int  # settlement token units moved from the position into the balance

    @property
    def gas_used(self) -> int:
        return int(self.receipt.gas_used)


def realise(protocol: Any, signer: Any, account: int, market: int) -> Realised:
    """`LiquidationEngine.realise_loss(account, market)` from `signer`; raises the chain's revert
    (`errors.REVERTS`) when refused (no loss left to realise, or over the loan limit)."""
    receipt = protocol.liquidation_engine.realise_loss(account, market, sender=signer)
    event = next(e for e in receipt.events if e.event_name == "LossRealised")
    return Realised(receipt, int(event.loss))
