"""The simulation's traders. The keepers are `marginsim.keeper`'s, the one keeper package the
simulator, the keeper bot and the story share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TraderState:
    """A trader of the population and what it will do when its health falls."""

    name: str
    signer: Any
    account: int
    market: str
    tops_up: bool
    closes: bool
    collateral_usd: float
    topup_below: int  # health (WAD) below which it tops up, if it does
    close_below: int  # health (WAD) below which it closes, if it does
    topped_up: int = 0
    closed: bool = False
