"""Shared helpers for the incident replays in tests/e2e/test_<incident>.py.

Each replay deploys its own trimmed protocol (only the collaterals and markets the incident
needs, so a deployment is cheap), funds the pool and the insurance fund, opens role-named
accounts and then drives prices through Chainlink-style rounds. Everything here is plain
plumbing: what each incident proves lives in its own test file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marginsim.orders import deposit_now
from marginsim.protocol import (
    FeedConfig,
    MarketConfig,
    Protocol,
    ProtocolConfig,
    TokenConfig,
    account_id,
)
from marginsim.story import advance_time

WAD = 10**18
MAX_UINT = 2**256 - 1
USDC = 10**6  # one settlement token (6 decimals)
SETTLEMENT_TO_WAD = 10**12

WETH_DEFAULT = TokenConfig("WETH", 18, 0.85, 1_000_000, 0.05, FeedConfig(2_000))


def trimmed_config(collaterals: tuple[TokenConfig, ...], markets: tuple[MarketConfig, ...], **overrides: Any) -> ProtocolConfig:
    """The default protocol, listing only these collaterals and markets."""
    return ProtocolConfig(collaterals=collaterals, markets=markets, **overrides)


def fund_liquidity(protocol: Protocol, lp: Any, funder: Any, pool_usd: int, insurance_usd: int) -> None:
    """An LP deposit of `pool_usd` into the pool (by request while the book is open:
    `deposit_now`) and `insurance_usd` into the insurance fund."""
    usdc, ch = protocol.settlement, protocol.clearinghouse
    if pool_usd:
        usdc.mint(lp, pool_usd * USDC, sender=lp)
        usdc.approve(protocol.pool, pool_usd * USDC, sender=lp)
        deposit_now(protocol.pool, pool_usd * USDC, lp, sender=lp)
    if insurance_usd:
        usdc.mint(funder, insurance_usd * USDC, sender=funder)
        usdc.approve(ch, insurance_usd * USDC, sender=funder)
        ch.fund_insurance(insurance_usd * USDC, sender=funder)


def deposit(protocol: Protocol, owner: Any, symbol: str, amount: int, subaccount: int = 0) -> int:
    """Mint `amount` (token units) of `symbol` ("USDC" = settlement) to `owner` and deposit it.
    Returns the account id."""
    token = protocol.settlement if symbol == protocol.config.settlement_symbol else protocol.tokens[symbol]
    ch = protocol.clearinghouse
    token.mint(owner, amount, sender=owner)
    token.approve(ch, amount, sender=owner)
    ch.deposit(token, amount, subaccount, sender=owner)
    return account_id(owner, subaccount)


def deposit_usd(protocol: Protocol, owner: Any, symbol: str, usd: int, subaccount: int = 0) -> int:
    """Deposit `usd` worth of `symbol` at the oracle price (rounded down to a token unit)."""
    if symbol == protocol.config.settlement_symbol:
        return deposit(protocol, owner, symbol, usd * USDC, subaccount)
    token = protocol.tokens[symbol]
    price = int(protocol.oracle.price(token))
    amount = usd * WAD * 10 ** int(token.decimals()) // price
    return deposit(protocol, owner, symbol, amount, subaccount)


def size_for_notional(protocol: Protocol, market: str, notional_usd: int) -> int:
    """Base units (WAD) of `notional_usd` at the oracle price, rounded down."""
    price = int(protocol.oracle.price(protocol.market_asset(market)))
    return notional_usd * WAD * WAD // price


def publish_usd(protocol: Protocol, symbol: str, price_usd: float | str, publisher: Any) -> int:
    """Publish a round at `price_usd` on the symbol's feed and sync the router. Returns the answer."""
    from decimal import Decimal

    decimals = int(protocol.feeds[symbol].decimals())
    answer = int((Decimal(str(price_usd)) * 10**decimals).to_integral_value())
    protocol.publish(symbol, answer, publisher)
    return answer


def refresh_feeds(protocol: Protocol, publisher: Any, skip: tuple[str, ...] = ()) -> None:
    """A new round on every feed but `skip`'s at its current answer, as the oracle bot's
    heartbeat: time can pass without any price going stale."""
    for symbol, feed in protocol.feeds.items():
        if symbol not in skip:
            protocol.publish(symbol, int(feed.latestRoundData()[1]), publisher)


def events(receipt: Any, name: str) -> list[Any]:
    """The decoded logs called `name` in one receipt."""
    return [log for log in receipt.events if log.event_name == name]


def move_clock_to(chain: Any, timestamp: int) -> None:
    """The next block's timestamp becomes `timestamp` (never moves backwards)."""
    now = chain.pending_timestamp
    if timestamp > now:
        advance_time(chain, timestamp - now)


@dataclass(frozen=True)
class Accounting:
    """The settlement token the clearinghouse holds against every internal claim on it."""

    held: int  # settlement.balanceOf(clearinghouse)
    settlement_held: int  # the clearinghouse's own record of it
    accounts: int  # sum of account settlement balances (signed)
    pool: int  # pool_balance (signed)
    insurance: int  # insurance_balance
    positive_claims: int  # what could be withdrawn: positive account balances + max(pool, 0) + insurance

    @property
    def internal(self) -> int:
        return self.accounts + self.pool + self.insurance


def accounting(protocol: Protocol, accounts: list[int]) -> Accounting:
    ch = protocol.clearinghouse
    balances = [int(ch.settlement(a)) for a in accounts]
    pool, insurance = int(ch.pool_balance()), int(ch.insurance_balance())
    return Accounting(
        held=int(protocol.settlement.balanceOf(ch)),
        settlement_held=int(ch.settlement_held()),
        accounts=sum(balances),
        pool=pool,
        insurance=insurance,
        positive_claims=sum(b for b in balances if b > 0) + max(pool, 0) + insurance,
    )


def collateral_accounting(protocol: Protocol, accounts: list[int]) -> list[tuple[str, int, int, int]]:
    """Per collateral: (symbol, tokens held, the clearinghouse's total, sum of account balances)."""
    ch = protocol.clearinghouse
    rows = []
    for symbol, token in protocol.tokens.items():
        slot = int(ch.collateral_slot(token))
        rows.append(
            (symbol, int(token.balanceOf(ch)), int(ch.collaterals(slot).total), sum(int(ch.balances(a, slot)) for a in accounts))
        )
    return rows
