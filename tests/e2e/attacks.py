"""Shared helpers for the incident replays: hostile tokens listed through governance, a core
protocol around a quirky settlement token, exact books of the Clearinghouse (to show an attack
changed nothing, to the unit), and price walks to a chosen health."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from marginsim.protocol import DEFAULT_CONFIG, Protocol, ProtocolConfig, deploy_contracts, deploy_protocol, wad

WAD = 10**18
USDC = 10**6  # one whole settlement coin, in token units (6 decimals)
TO_WAD = 10**12  # settlement token units to WAD USD
NO_POSITIONS_HEALTH = 2**256 - 1
MAX_SIZE = 10**30  # "close as much as the rules allow" for liquidate()


def event(receipt: Any, name: str) -> Any:
    """The one event called `name` in a receipt."""
    [found] = [e for e in receipt.events if e.event_name == name]
    return found


def events(receipt: Any, name: str) -> list[Any]:
    return [e for e in receipt.events if e.event_name == name]


# ---------------------------------------------------------------- deployments


def quiet_config(config: ProtocolConfig = DEFAULT_CONFIG) -> ProtocolConfig:
    """`config` with funding switched off in every market: equity then does not drift between
    the block a test reads it in and the block its transaction lands in, so identities hold to
    the wei. Funding is a transfer between the sides and the pool, tested on its own elsewhere."""
    return replace(config, markets=tuple(replace(m, max_funding_rate=0) for m in config.markets))


def list_collateral(
    protocol: Protocol,
    deployer: Any,
    token: Any,
    price_usd: float,
    weight: float = 0.85,
    cap_whole: int = 10**9,
    discount: float = 0.05,
    feed_decimals: int = 8,
    project: Any = None,
) -> Any:
    """Give `token` a Chainlink-style feed in the router and list it as collateral through the
    Configurator (governance), as any new collateral would be. Returns the feed."""
    feed = deployer.deploy(
        project.MockAggregator, feed_decimals, f"{token.symbol()} / USD", int(wad(price_usd) // 10 ** (18 - feed_decimals))
    )
    protocol.oracle.set_feed(token, feed, 3_600, wad(0.01), wad(10_000_000), wad(0.20), wad(0.80), sender=deployer)
    protocol.configurator.list_collateral(token, wad(weight), cap_whole * 10 ** token.decimals(), wad(discount), sender=deployer)
    return feed


def reserve_out_of_the_way(protocol: Protocol, deployer: Any) -> None:
    """Turn every market's open-interest reserve off (factor 0). The reviews' attacks were sized
    against pools smaller than one side of them (7,500 ETH, $15M, against $200k to $10M), which
    the reserve (issue 9, item 5) now refuses before they start (`test_loan_from_other_users.py`
    shows it at the default); a replay that shows the fix it is about, or a test of a mechanism
    the reserve would keep from arising (a pool run dry), turns it off first."""
    for market in protocol.markets.values():
        protocol.configurator.set_reserve_factor(market, 0, sender=deployer)


def deploy_core(project: Any, deployer: Any, settlement: Any, config: ProtocolConfig = DEFAULT_CONFIG) -> Protocol:
    """The router, Clearinghouse, Configurator, LiquidationEngine, lens and pool around a
    settlement token the caller deployed (a quirky one), wired with `connect`, with `config`'s
    liquidation parameters and no collateral or market: what the settlement-token cases need.
    `deploy_protocol` always deploys its own (and sets every parameter)."""
    protocol = deploy_contracts(project, deployer, settlement, settlement.decimals(), config)
    # the Configurator applies these to the engine the Clearinghouse was connected to
    protocol.configurator.set_liquidation_parameters(
        wad(config.liquidation_buffer), wad(config.full_liquidation_health), wad(config.dust_notional_usd), sender=deployer
    )
    return protocol


# ---------------------------------------------------------------- books


@dataclass(frozen=True)
class Books:
    """Every number an attack could move, read at one moment: custody, the internal funds, and
    each watched account's settlement balance, collateral and positions. What is stored, not
    what the clock makes of it: a debt grows by interest every second with nothing moving, so
    an account's balance is recorded as written (a debt with the index it was written at, as
    `debt_of`) and the debt index as last accrued (`debt_state`); with `total_debt`, the pool's
    balance and the terms these give `settlement(account)` at any later block exactly."""

    settlement_tokens_held: int
    settlement_held: int
    pool_balance: int
    insurance: int
    total_debt: int
    total_pending: int
    debt_state: tuple[int, int]  # the debt index as last accrued, and when
    total_bad_debt: int
    collateral_tokens_held: tuple[int, ...]  # per slot 1..n
    collateral_totals: tuple[int, ...]
    # (settlement as written, index a debt was written at (0 without one), pending claim),
    # collateral balances, positions
    accounts: tuple[tuple[tuple[int, int, int], tuple[int, ...], tuple[tuple[int, int], ...]], ...]
    market_states: tuple[tuple[int, int, int], ...]  # long OI, short OI, total cost

    def assert_consistent(self) -> None:
        """Tokens held equal the internal books, to the unit (the invariant every test keeps)."""
        assert self.settlement_tokens_held == self.settlement_held
        assert self.collateral_tokens_held == self.collateral_totals


def books(protocol: Protocol, project: Any, accounts: list[int]) -> Books:
    ch = protocol.clearinghouse
    slots = range(1, int(ch.collateral_count()) + 1)
    collaterals = [ch.collaterals(slot) for slot in slots]
    markets = range(1, int(ch.market_count()) + 1)
    return Books(
        settlement_tokens_held=int(protocol.settlement.balanceOf(ch)),
        settlement_held=int(ch.settlement_held()),
        pool_balance=int(ch.pool_balance()),
        insurance=int(ch.insurance_balance()),
        total_debt=int(ch.total_debt()),
        total_pending=int(ch.total_pending()),
        debt_state=tuple(int(v) for v in ch.debt_state()),
        total_bad_debt=int(ch.total_bad_debt()),
        collateral_tokens_held=tuple(int(project.MockERC20.at(c.token).balanceOf(ch)) for c in collaterals),
        collateral_totals=tuple(int(c.total) for c in collaterals),
        accounts=tuple(
            (
                _written_settlement(ch, a),
                tuple(int(ch.balances(a, slot)) for slot in slots),
                tuple((int(ch.positions(a, m).size), int(ch.positions(a, m).cost)) for m in markets),
            )
            for a in accounts
        ),
        market_states=tuple((int(s.long_oi), int(s.short_oi), int(s.total_cost)) for s in (ch.market_state(m) for m in markets)),
    )


def _written_settlement(ch: Any, account: int) -> tuple[int, int, int]:
    """(the balance as stored: -debt for a debt, without the interest since; the index the debt
    was written at, 0 without one; the pending claim)."""
    written, index_at = (int(v) for v in ch.debt_of(account))
    balance = -written if written else int(ch.settlement(account))
    return balance, index_at, int(ch.pending(account))


# ---------------------------------------------------------------- prices


def publish(protocol: Protocol, symbol: str, price_usd: float, publisher: Any) -> None:
    """One round on `symbol`'s feed at `price_usd`, synced, as the oracle bot does."""
    feed = protocol.feeds[symbol]
    protocol.publish(symbol, round(price_usd * 10 ** int(feed.decimals())), publisher)


def walk_price(protocol: Protocol, symbol: str, target_usd: float, publisher: Any, step: float = 0.15) -> None:
    """Publish rounds from the current price to `target_usd`, none moving more than `step`
    (inside the 20% circuit breaker), ending exactly on the target."""
    price = protocol.oracle.price(protocol.tokens[symbol]) / WAD
    while abs(target_usd / price - 1) > step:
        price *= (1 + step) if target_usd > price else (1 - step)
        publish(protocol, symbol, price, publisher)
    publish(protocol, symbol, target_usd, publisher)


def price_for_health(protocol: Protocol, account: int, market: str, health: float) -> float:
    """The oracle price (USD) of `market`'s asset at which an account holding one position in
    it, margined in the settlement coin, has `health`, at today's maintenance rate: equity moves
    by size * dP and the requirement in proportion to the price."""
    ch = protocol.clearinghouse
    market_id = protocol.markets[market]
    size = ch.positions(account, market_id).size / WAD
    price = protocol.oracle.price(protocol.market_asset(market)) / WAD
    equity, maintenance, _ = (x / WAD for x in ch.margin(account))
    # equity + size * (p - price) = health * maintenance * p / price
    return (size * price - equity) / (size - health * maintenance / price)


def hooked_settlement_protocol(project: Any, deployer: Any, lp: Any, pool_usd: int) -> tuple[Any, Protocol]:
    """(token, protocol): a default protocol whose settlement token is ReentrantERC20 (hooks on
    every transfer), its pool funded with `pool_usd` dollars by `lp`."""
    from tests.e2e.incidents import fund_liquidity

    token = deployer.deploy(project.ReentrantERC20, "Evil USD", "EUSD", 6)
    p = deploy_protocol(project, deployer, replace(DEFAULT_CONFIG, settlement_address=token.address))
    fund_liquidity(p, lp, deployer, pool_usd, 0)
    return token, p
