"""Gas benchmark: receipt gasUsed (21,000 base included) of the protocol's main calls, against
targets of half their Aave v3 analogue. `make gas` prints the table and writes
gas-snapshot.json. A benchmark, not a test: it asserts nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from marginsim.orders import fill_now, trade_now
from marginsim.protocol import (
    DEFAULT_CONFIG,
    FeedConfig,
    MarketConfig,
    ProtocolConfig,
    TokenConfig,
    account_id,
    deploy_protocol,
)
from marginsim.risk import health_of

WAD = 10**18
MAX_UINT = 2**256 - 1

# Half of Aave v3's figures (supply 146,755; borrow 249,844; v3.7 partial liquidationCall 340,429).
TARGETS = {
    "deposit": 73_000,
    "open, live market": 125_000,
    "partial liquidation, 1 market": 160_000,
    "batch liquidation, per account after the first": 60_000,  # Liquity v1's batch: ~60,000 a trove
}
EXTRA_MARKET_TARGET = 15_000
BATCH = 4  # accounts in the measured liquidate_many

# Four markets, so a liquidation can be measured with 1 to 4 open in the account.
GAS_CONFIG = replace(
    DEFAULT_CONFIG,
    collaterals=DEFAULT_CONFIG.collaterals
    + (
        TokenConfig("LINK", 18, 0.7, 10_000_000, 0.1, FeedConfig(15)),
        TokenConfig("SOL", 9, 0.7, 10_000_000, 0.1, FeedConfig(100)),
    ),
    markets=DEFAULT_CONFIG.markets
    + (
        MarketConfig("LINK-PERP", "LINK", tier_size=100_000, skew_scale=10_000_000, oi_cap=50_000),
        MarketConfig("SOL-PERP", "SOL", tier_size=10_000, skew_scale=1_000_000, oi_cap=5_000),
    ),
)


def run(project: Any, chain: Any, signers: list[Any], config: ProtocolConfig = GAS_CONFIG) -> dict[str, int]:
    deployer, lp, trader, keeper = signers[:4]
    p = deploy_protocol(project, deployer, config)
    ch, usdc = p.clearinghouse, p.settlement
    unit = 10**config.settlement_decimals
    usdc.mint(lp, 10_000_000 * unit, sender=lp)
    usdc.approve(p.pool, MAX_UINT, sender=lp)
    p.pool.deposit(10_000_000 * unit, lp, sender=lp)
    for who in (trader, keeper):
        usdc.mint(who, 1_000_000 * unit, sender=who)
        usdc.approve(ch, MAX_UINT, sender=who)
        weth = p.tokens["WETH"]
        weth.mint(who, 1_000 * WAD, sender=who)
        weth.approve(ch, MAX_UINT, sender=who)

    # a live protocol: the insurance fund is already funded (so no call pays for its first write)
    usdc.mint(deployer, 100_000 * unit, sender=deployer)
    usdc.approve(ch, MAX_UINT, sender=deployer)
    ch.fund_insurance(100_000 * unit, sender=deployer)

    gas: dict[str, int] = {}

    def measure(name: str, tx: Any) -> None:
        gas[name] = int(tx.gas_used)

    measure("deposit", ch.deposit(usdc, 10_000 * unit, 0, sender=trader))
    measure("deposit, again", ch.deposit(usdc, 1_000 * unit, 0, sender=trader))
    measure("deposit collateral (WETH)", ch.deposit(p.tokens["WETH"], 5 * WAD, 0, sender=trader))
    measure("withdraw", ch.withdraw(usdc, 1_000 * unit, 0, sender=trader))
    eth = p.markets["ETH-PERP"]
    measure("open, first in an empty market", trade_now(ch, eth, 10 * WAD, 0, 0, sender=trader))
    # a second trader opening in a market that already has open interest: the usual case
    ch.deposit(usdc, 10_000 * unit, 0, sender=keeper)
    # a trade is two transactions: the trader's commit (escrows the execution fee) and the
    # keeper's fill at the next round; each fill row below is the fill alone
    usdc.approve(p.orders, MAX_UINT, sender=keeper)
    measure("commit an order", p.orders.commit_order(eth, 10 * WAD, 0, 0, sender=keeper))
    measure("open, live market", fill_now(ch, account_id(keeper), eth, keeper=trader))
    trade_now(ch, eth, -10 * WAD, 0, 0, sender=keeper)
    measure("increase", trade_now(ch, eth, 5 * WAD, 0, 0, sender=trader))
    measure("withdraw, position open", ch.withdraw(usdc, 100 * unit, 0, sender=trader))
    measure("close", trade_now(ch, eth, -15 * WAD, 0, 0, sender=trader))

    names = [m.name for m in config.markets]
    for open_markets in range(1, len(names) + 1):
        snapshot = chain.snapshot()
        account = _leveraged_account(p, signers[4], names[:open_markets], unit)
        _crash_until(p, deployer, account, lambda h: WAD // 2 <= h < WAD)
        label = "partial liquidation, 1 market" if open_markets == 1 else f"partial liquidation, {open_markets} markets"
        measure(label, p.liquidation_engine.liquidate(account, eth, MAX_UINT, sender=keeper))
        chain.restore(snapshot)

    # a loss realised into the balance (anyone may call it: no penalty, nobody paid), and an LP's
    # exit with open interest in four markets and the prices of the collaterals accounts hold to
    # check: by request (the instant paths are shut while the book is open), the LP escrowing the
    # shares and a keeper executing it a settlement delay later (the execution is the row with
    # the valuation and the payment)
    snapshot = chain.snapshot()
    chain.pending_timestamp += 901  # the LP's shares out of their cooldown
    account = _leveraged_account(p, signers[4], names, unit)
    _crash_until(p, deployer, account, lambda h: h < 2 * WAD)
    measure("realise a loss", p.liquidation_engine.realise_loss(account, eth, sender=keeper))
    usdc.mint(lp, int(p.orders.execution_fee()), sender=lp)
    shares = int(p.pool.previewWithdraw(1_000 * unit))
    measure("LP redemption request, positions open", p.pool.request_redeem(shares, lp, lp, sender=lp))
    chain.pending_timestamp = int(p.pool.requests(lp).executable_at)
    measure("LP redemption executed, positions open", p.pool.execute_request(lp, sender=keeper))
    chain.restore(snapshot)

    snapshot = chain.snapshot()
    account = _leveraged_account(p, signers[4], ["ETH-PERP"], unit)
    _crash_until(p, deployer, account, lambda h: h == 0, step=0.05)
    measure("full liquidation with bad debt", p.liquidation_engine.liquidate(account, eth, MAX_UINT, sender=keeper))
    chain.restore(snapshot)

    # a batch: BATCH accounts alike, liquidated in one liquidate_many; the figure is the cost of
    # each account after the first
    snapshot = chain.snapshot()
    batch = [_leveraged_account(p, signers[4], ["ETH-PERP"], unit, subaccount=i) for i in range(BATCH)]
    _crash_until(p, deployer, batch, lambda h: WAD // 2 <= h < WAD)
    one = chain.snapshot()
    single = int(p.liquidation_engine.liquidate_many(batch[:1], [eth], sender=keeper).gas_used)
    chain.restore(one)
    every = int(p.liquidation_engine.liquidate_many(batch, [eth] * BATCH, sender=keeper).gas_used)
    gas["batch liquidation, first account"] = single
    gas["batch liquidation, per account after the first"] = (every - single) // (BATCH - 1)
    chain.restore(snapshot)
    return gas


def _leveraged_account(p: Any, owner: Any, markets: list[str], unit: int, subaccount: int = 0) -> int:
    """USDC collateral of $10,000 and 10x in total, spread evenly over `markets`."""
    ch, usdc = p.clearinghouse, p.settlement
    usdc.mint(owner, 10_000 * unit, sender=owner)
    usdc.approve(ch, MAX_UINT, sender=owner)
    ch.deposit(usdc, 10_000 * unit, subaccount, sender=owner)
    for name in markets:
        price = p.oracle.price(p.market_asset(name))
        notional = 100_000 * WAD // len(markets)
        trade_now(ch, p.markets[name], notional * WAD // price, 0, subaccount, sender=owner)
    return account_id(owner, subaccount)


def _crash_until(p: Any, publisher: Any, account: int | list[int], done: Any, step: float = 0.01) -> None:
    """Lower every market's price by `step` per round until `done(health)` holds for every account."""
    ch = p.clearinghouse
    symbols = sorted({m.underlying for m in p.config.markets})
    every = account if isinstance(account, list) else [account]
    for _ in range(200):
        if all(done(health_of(ch, a)) for a in every):
            return
        for symbol in symbols:
            p.publish(symbol, int(p.feeds[symbol].latestRoundData()[1] * (1 - step)), publisher)
    raise RuntimeError("gas: account never reached the wanted health")


def report(gas: dict[str, int]) -> tuple[str, dict[str, Any]]:
    lines = [f"{'call':40} {'gas used':>10} {'target':>10}  status"]
    for name, used in gas.items():
        target = TARGETS.get(name)
        status = "" if target is None else ("met" if used <= target else "over")
        lines.append(f"{name:40} {used:>10,} {'' if target is None else f'{target:,}':>10}  {status}")
    increments = []
    liquidations = [gas[k] for k in gas if k.startswith("partial liquidation")]
    for a, b in zip(liquidations, liquidations[1:], strict=False):
        increments.append(b - a)
    if increments:
        worst = max(increments)
        lines.append(
            f"{'each extra open market in a liquidation':40} {worst:>10,} {EXTRA_MARKET_TARGET:>10,}  "
            + ("met" if worst <= EXTRA_MARKET_TARGET else "over")
            + f"  (steps: {', '.join(f'{i:,}' for i in increments)})"
        )
    snapshot = {
        "gas_used": gas,
        "targets": TARGETS,
        "extra_market_increments": increments,
        "extra_market_target": EXTRA_MARKET_TARGET,
    }
    return "\n".join(lines), snapshot


def write_snapshot(snapshot: dict[str, Any], path: Path = Path("gas-snapshot.json")) -> None:
    path.write_text(json.dumps(snapshot, indent=2) + "\n")
