"""A scripted crash, told on any ape network: traders deposit and open leveraged positions, the
oracle price of ETH falls 30% over two hours of 10-minute rounds (one of them an -8% gap), and a
keeper liquidates every
account that falls below maintenance margin. `make demo` prints it as a table.

The keeper here is the simulator's and the bot's (`marginsim.keeper`), with no gas to pay: it
finds accounts from the account events (never from the story's own list of traders), mirrors
them, confirms on chain with `MarginLens.healths` and liquidates what is below maintenance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marginsim import risk
from marginsim.keeper.executor import liquidate, onchain_healths
from marginsim.keeper.indexer import AccountIndexer
from marginsim.keeper.market import read_collaterals, read_market_params, read_markets
from marginsim.keeper.mirror import Keeper
from marginsim.keeper.planner import collateral_for_sale, plan_liquidations
from marginsim.protocol import DEFAULT_CONFIG, Protocol, ProtocolConfig, account_id, deploy_protocol
from marginsim.risk import health_of, order_bond
from marginsim.sim.scenario import KeeperSpec

WAD = 10**18
MAX_UINT = 2**256 - 1
KEEPER_WORKING_CAPITAL_USD = 10_000_000  # settlement tokens the keeper starts with, to buy collateral of accounts in debt


@dataclass(frozen=True)
class TraderPlan:
    """One trader of the story: what they post and what they open."""

    name: str
    market: str  # "ETH-PERP" or "BTC-PERP"
    leverage: float  # notional / collateral value; negative = short
    collateral_symbol: str  # "USDC" (settlement) or a collateral symbol
    collateral_usd: float


DEFAULT_TRADERS: tuple[TraderPlan, ...] = (
    TraderPlan("careful long 3x", "ETH-PERP", 3, "USDC", 20_000),
    TraderPlan("bold long 10x", "ETH-PERP", 10, "USDC", 10_000),
    TraderPlan("bolder long 10x", "ETH-PERP", 10, "USDC", 25_000),
    TraderPlan("degen long 14x", "ETH-PERP", 14, "USDC", 5_000),
    TraderPlan("WETH-backed long 5x", "ETH-PERP", 5, "WETH", 20_000),
    TraderPlan("short 5x", "ETH-PERP", -5, "USDC", 20_000),
    TraderPlan("BTC long 6x", "BTC-PERP", 6, "WBTC", 30_000),
)


# ETH over 12 rounds, 10 minutes apart: -30% in all, with one -8% gap at minute 40 that jumps
# accounts a keeper had just brought back to health 1.1 straight past zero equity.
DEFAULT_ETH_PATH: tuple[float, ...] = (0.98, 0.95, 0.925, 0.85, 0.84, 0.825, 0.81, 0.79, 0.77, 0.745, 0.72, 0.70)


@dataclass
class RoundRecord:
    """What one oracle round did."""

    minute: int
    eth_price: float
    btc_price: float
    health: dict[str, float | None]  # trader -> health (None: no position left)
    liquidations: int
    closed_notional_usd: float
    keeper_reward_usd: float
    insurance_usd: float
    pool_value_usd: float
    bad_debt_usd: float


@dataclass
class StoryResult:
    protocol: Protocol
    accounts: dict[str, int]
    rounds: list[RoundRecord] = field(default_factory=list)
    liquidations: list[dict[str, Any]] = field(default_factory=list)


def usd(amount_wad: int) -> float:
    return amount_wad / WAD


class EventIndexKeeper:
    """The story's keeper: the one keeper package (`marginsim.keeper`) with no gas to pay, so
    every account the mirror finds below maintenance is worth liquidating. Each round it indexes
    the account events, plans from the mirror, confirms on chain, liquidates, then buys the
    collateral the engine puts up for sale."""

    def __init__(self, protocol: Protocol, chain: Any, sender: Any, funder: Any, from_block: int = 0):
        self.protocol = protocol
        self.sender = sender
        self.keeper = Keeper(KeeperSpec("story"), sender, protocol)
        self.indexer = AccountIndexer(chain, protocol.clearinghouse, protocol.liquidation_engine, from_block)
        ch = protocol.clearinghouse
        self.params = read_market_params(ch, list(protocol.markets.values()))
        self.collaterals = read_collaterals(ch)
        self.liquidation = risk.read_liquidation_params(protocol.liquidation_engine)
        # working capital to buy collateral of accounts left in debt
        settlement = protocol.settlement
        protocol.fund(settlement, sender, KEEPER_WORKING_CAPITAL_USD * 10 ** int(settlement.decimals()), funder)
        settlement.approve(ch, MAX_UINT, sender=sender)

    @property
    def accounts(self) -> set[int]:
        return set(self.keeper.accounts)

    def run(self, chain: Any) -> list[dict[str, Any]]:
        self.keeper.observe(self.indexer.touched_accounts())
        self.keeper.read_debt()
        head = chain.blocks.head
        views, collateral = read_markets(self.protocol, self.params, self.collaterals)
        insurance = self.protocol.clearinghouse.insurance_balance
        worth, _ = plan_liquidations(
            self.keeper, views, collateral, head.timestamp, head.number, self.liquidation, lambda: int(insurance()), 0.0, 0.0
        )
        worth.sort(key=lambda p: p.candidate.account)
        confirmed = onchain_healths(self.protocol.lens, [p.candidate.account for p in worth])
        done: list[dict[str, Any]] = []
        for planned in worth:
            account, market = planned.candidate.account, planned.candidate.market
            if confirmed[account] >= WAD:
                continue
            result = liquidate(self.protocol, self.sender, account, market)
            done.append(
                {
                    "account": account,
                    "market": market,
                    "size_closed": result.size_closed,
                    "price": result.price,
                    "penalty": result.penalty,
                    "keeper_reward": result.keeper_reward,
                    "health_before": result.health_before,
                    "health_after": result.health_after,
                }
            )
        # positions gone, debt left against collateral: buy the collateral at its discount
        self.keeper.observe(self.indexer.touched_accounts())
        views, collateral = read_markets(self.protocol, self.params, self.collaterals)
        for account in sorted(collateral_for_sale(self.keeper, views, collateral, chain.blocks.head.timestamp)):
            self.protocol.sell_collateral(account, self.sender)
        return done


def run_story(
    project: Any,
    chain: Any,
    accounts: Any,
    config: ProtocolConfig = DEFAULT_CONFIG,
    traders: tuple[TraderPlan, ...] = DEFAULT_TRADERS,
    eth_path: tuple[float, ...] = None,  # ETH price per round as a fraction of the start
    btc_drop: float = 0.15,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> StoryResult:
    """Deploy, fund, trade, crash, liquidate. `accounts` is a list of signers: [0] deploys and
    publishes prices, [1] is the LP, [2] the keeper, [3:] the traders."""
    deployer, lp, keeper_signer = accounts[0], accounts[1], accounts[2]
    protocol = deploy_protocol(project, deployer, config)
    ch = protocol.clearinghouse
    usdc = protocol.settlement
    unit = 10**config.settlement_decimals

    # liquidity and an insurance fund
    # every wallet is paid from the deployer, which holds each mock's supply: nothing mints
    protocol.fund(usdc, lp, 2_000_000 * unit, deployer)
    usdc.approve(protocol.pool, 2_000_000 * unit, sender=lp)
    protocol.pool.deposit(2_000_000 * unit, lp, sender=lp)
    usdc.approve(ch, 20_000 * unit, sender=deployer)
    ch.fund_insurance(20_000 * unit, sender=deployer)

    result = StoryResult(protocol=protocol, accounts={})
    for plan, signer in zip(traders, accounts[3:], strict=False):
        if plan.collateral_symbol == "USDC":
            token, price = usdc, WAD
        else:
            token = protocol.tokens[plan.collateral_symbol]
            price = protocol.oracle.price(token)
        amount = int(plan.collateral_usd * WAD) * 10 ** token.decimals() // price
        protocol.fund(token, signer, amount, deployer)
        token.approve(ch, amount, sender=signer)
        ch.deposit(token, amount, 0, sender=signer)
        market_price = protocol.oracle.price(protocol.market_asset(plan.market))
        size = int(abs(plan.leverage) * plan.collateral_usd * WAD) * WAD // market_price
        # a trade is an order: the execution fee and the bond escrowed, filled by the keeper at the
        # next round (the bond then comes back)
        fee = int(protocol.orders.execution_fee())
        factor = int(protocol.pool.reserve_factor(protocol.markets[plan.market]))  # the bond at most
        fee += order_bond(size, market_price, int(protocol.orders.order_bond()), int(ch.SETTLEMENT_TO_WAD()), factor)
        if fee:
            protocol.fund(usdc, signer, fee, deployer)
            usdc.approve(protocol.orders, fee, sender=signer)
        protocol.commit(signer, protocol.markets[plan.market], size if plan.leverage > 0 else -size)
        result.accounts[plan.name] = account_id(signer)

    eth_start = protocol.oracle.price(protocol.tokens["WETH"]) / WAD
    btc_start = protocol.oracle.price(protocol.tokens["WBTC"]) / WAD
    # the opening round, a settlement delay later, at the same prices: the keeper fills the orders
    advance_time(chain, int(protocol.orders.settlement_delay()))
    _publish(protocol, deployer, "WETH", eth_start)
    _publish(protocol, deployer, "WBTC", btc_start)
    for plan in traders[: len(result.accounts)]:
        protocol.orders.execute_order(result.accounts[plan.name], protocol.markets[plan.market], sender=keeper_signer)

    keeper = EventIndexKeeper(protocol, chain, keeper_signer, deployer)
    path = eth_path or DEFAULT_ETH_PATH
    rounds = len(path)
    btc_step = (1 - btc_drop) ** (1 / rounds)

    result.rounds.append(_record(protocol, result, 0, [], bad_debt_before=0))
    if on_round:
        on_round(result.rounds[-1])
    for i in range(1, rounds + 1):
        advance_time(chain, 600)
        eth_price = eth_start * path[i - 1]
        btc_price = btc_start * btc_step**i
        _publish(protocol, deployer, "WETH", eth_price)
        _publish(protocol, deployer, "WBTC", btc_price)
        bad_debt_before = ch.total_bad_debt()
        done = keeper.run(chain)
        result.liquidations.extend(done)
        result.rounds.append(_record(protocol, result, 10 * i, done, bad_debt_before))
        if on_round:
            on_round(result.rounds[-1])
    return result


def advance_time(chain: Any, seconds: int) -> None:
    """Move the chain's clock: the embedded chain directly, a dev node (anvil, hardhat) through
    evm_increaseTime; on a live network time passes by itself and this does nothing."""
    from ape.exceptions import APINotImplementedError

    try:
        chain.pending_timestamp += seconds
    except APINotImplementedError:
        try:
            chain.provider.make_request("evm_increaseTime", [seconds])
        except Exception:  # a live node refuses dev methods; real time goes on instead
            return


def _publish(protocol: Protocol, publisher: Any, symbol: str, price_usd: float) -> None:
    protocol.publish(symbol, int(round(price_usd * 10 ** protocol.feeds[symbol].decimals())), publisher)


def _record(
    protocol: Protocol, result: StoryResult, minute: int, done: list[dict[str, Any]], bad_debt_before: int
) -> RoundRecord:
    ch = protocol.clearinghouse
    scale = 10**protocol.config.settlement_decimals
    health: dict[str, float | None] = {}
    for name, account in result.accounts.items():
        health[name] = None if ch.market_mask(account) == 0 else health_of(ch, account) / WAD
    return RoundRecord(
        minute=minute,
        eth_price=protocol.oracle.price(protocol.tokens["WETH"]) / WAD,
        btc_price=protocol.oracle.price(protocol.tokens["WBTC"]) / WAD,
        health=health,
        liquidations=len(done),
        closed_notional_usd=sum(abs(d["size_closed"]) * d["price"] for d in done) / WAD / WAD,
        keeper_reward_usd=sum(d["keeper_reward"] for d in done) / scale,
        insurance_usd=ch.insurance_balance() / scale,
        pool_value_usd=protocol.pool.totalAssets() / scale,
        bad_debt_usd=(ch.total_bad_debt() - bad_debt_before) / scale,
    )


def token_accounting(protocol: Protocol, accounts: list[int]) -> dict[str, int]:
    """Settlement tokens held vs the internal balances that claim them, to the wei."""
    ch = protocol.clearinghouse
    internal = sum(ch.settlement(a) for a in accounts) + ch.pool_balance() + ch.insurance_balance()
    return {
        "held": protocol.settlement.balanceOf(ch),
        "settlement_held": ch.settlement_held(),
        "internal_sum": internal,
    }
