"""Whether a liquidation pays: the reward the contract will pay against the gas it costs."""

from __future__ import annotations

from dataclasses import dataclass

from marginsim import risk

WAD = 10**18


@dataclass
class LiquidationModel:
    """Profitability: the keeper reward the contract will pay (`risk.liquidation_outcome`, the
    exact rule) against the gas the call will cost."""

    gas_estimate: int = 160_000  # a one-market partial liquidation (make gas: ~150k)

    def reward_usd(self, outcome: risk.LiquidationOutcome, settlement_to_wad: int) -> float:
        return outcome.keeper_reward * settlement_to_wad / WAD

    def gas_cost_usd(self, gas: int, gas_price_gwei: float, eth_price_usd: float) -> float:
        return gas * gas_price_gwei * 1e-9 * eth_price_usd
