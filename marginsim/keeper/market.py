"""The markets as a keeper reads them each block: parameters, state, prices and volatilities."""

from __future__ import annotations

from typing import Any

from marginsim import risk
from marginsim.keeper.errors import REVERTS


def read_markets(
    protocol: Any,
    params: dict[int, risk.MarketParams],
    collaterals: dict[int, tuple[int, int, Any]],
    known_prices: dict[str, int] | None = None,
    missing: dict[str, str] | None = None,
) -> tuple[dict[int, risk.MarketView], dict[int, tuple[int, int, int]]]:
    """The views of the markets in `params` (market id -> parameters) and the prices of the
    collaterals in `collaterals` (slot -> (unit, weight, token)): (market id -> MarketView,
    slot -> (unit, weight, price)). Each asset's price is read once; a collateral's comes from
    `known_prices` (token -> WAD price) when the caller vouches for it (a feed it knows has not
    moved). A price the router refuses (a circuit breaker's halt, a stale or out-of-bounds
    round) leaves its market and collateral out: the contracts cannot value an account holding
    them either, so a keeper leaves such an account alone until the price returns; `missing`,
    when given, collects each such asset with the router's reason."""
    oracle, ch = protocol.oracle, protocol.clearinghouse
    prices: dict[str, int | None] = dict(known_prices or {})

    def price_of(asset: str) -> int | None:
        if asset not in prices:
            try:
                prices[asset] = int(oracle.price(asset))
            except REVERTS as error:
                prices[asset] = None
                if missing is not None:
                    missing[asset] = str(getattr(error, "message", "") or error).splitlines()[0]
        return prices[asset]

    views: dict[int, risk.MarketView] = {}
    for market, market_params in params.items():
        price = price_of(market_params.asset)
        if price is None:
            continue
        state = risk.MarketState(*[int(v) for v in ch.market_state(market)])
        sigma, sigma_mm = oracle.volatilities(market_params.asset)
        views[market] = risk.MarketView(market_params, state, price, int(sigma), int(sigma_mm))
    collateral = {}
    for slot, (unit, weight, token) in collaterals.items():
        price = price_of(str(token))
        if price is not None:
            collateral[slot] = (unit, weight, price)
    return views, collateral


def read_market_params(clearinghouse: Any, markets: list[int]) -> dict[int, risk.MarketParams]:
    """Each market's governed parameters (market id -> MarketParams)."""
    return {
        market: risk.MarketParams(*[v if isinstance(v, int) else str(v) for v in clearinghouse.markets(market)])
        for market in markets
    }


def read_collaterals(clearinghouse: Any) -> dict[int, tuple[int, int, str]]:
    """Every listed collateral: slot -> (unit, weight, token address)."""
    listed = ((slot, clearinghouse.collaterals(slot)) for slot in range(1, int(clearinghouse.collateral_count()) + 1))
    return {slot: (int(c.unit), int(c.weight), str(c.token)) for slot, c in listed}
