"""Deploy a full marginsim protocol from a typed configuration and hand back typed handles.

Scripts, the demo and the tests all go through `deploy_protocol`, so no address is ever
scattered through them: they ask the returned `Protocol` for a contract, a token or a market.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WAD = 10**18


def wad(x: float | int | str) -> int:
    """A decimal number as WAD, exactly (through its string form, never binary float maths)."""
    from decimal import Decimal

    return int(Decimal(str(x)) * WAD)


@dataclass(frozen=True)
class FeedConfig:
    """A Chainlink-style feed for one asset, with the router's guards."""

    price_usd: float
    decimals: int = 8
    heartbeat: int = 3_600
    min_price_usd: float = 0.01
    max_price_usd: float = 10_000_000
    max_deviation: float = 0.20
    initial_sigma: float = 0.80


@dataclass(frozen=True)
class TokenConfig:
    """A collateral token (mock on a local chain) with its haircut, cap and feed."""

    symbol: str
    decimals: int
    weight: float
    cap: int  # whole tokens
    liquidation_discount: float
    feed: FeedConfig


@dataclass(frozen=True)
class MarketConfig:
    """A perpetual market on the asset of `underlying` (a collateral symbol)."""

    name: str
    underlying: str
    base_mmr: float = 0.03
    tier_size: float = 1_000  # base units per tier step
    tier_mmr: float = 0.01
    vol_k: float = 3.0
    liquidation_horizon: int = 3_600
    imr_multiplier: float = 2.0
    fee: float = 0.0005
    penalty: float = 0.02
    keeper_share: float = 0.5
    skew_scale: float = 1_000_000
    max_funding_rate: float = 0.01
    oi_cap: float = 7_500

    def params(self, asset: str) -> tuple:
        """The on-chain MarketParams tuple, in field order."""
        return (
            asset,
            wad(self.base_mmr),
            wad(self.tier_size),
            wad(self.tier_mmr),
            wad(self.vol_k),
            self.liquidation_horizon,
            wad(self.imr_multiplier),
            wad(self.fee),
            wad(self.penalty),
            wad(self.keeper_share),
            wad(self.skew_scale),
            wad(self.max_funding_rate),
            wad(self.oi_cap),
        )


@dataclass(frozen=True)
class ProtocolConfig:
    settlement_symbol: str = "USDC"
    settlement_decimals: int = 6
    collaterals: tuple[TokenConfig, ...] = (
        TokenConfig("WETH", 18, 0.85, 1_000_000, 0.05, FeedConfig(2_000)),
        TokenConfig("WBTC", 8, 0.85, 100_000, 0.05, FeedConfig(30_000)),
        TokenConfig(
            "USDT",
            6,
            0.95,
            1_000_000_000,
            0.02,
            FeedConfig(1, min_price_usd=0.5, max_price_usd=2, max_deviation=0.1, initial_sigma=0.05),
        ),
    )
    markets: tuple[MarketConfig, ...] = (
        MarketConfig("ETH-PERP", "WETH"),
        MarketConfig("BTC-PERP", "WBTC", tier_size=100, skew_scale=150_000, oi_cap=1_000),
    )
    ewma_lambda: float = 0.94
    max_vol_rise_per_hour: float = 0.10
    liquidation_buffer: float = 0.10
    full_liquidation_health: float = 0.50
    dust_notional_usd: float = 100
    underwater_tip_rate: float = 0.002  # of closed notional, from the insurance fund, capped at $1,000


DEFAULT_CONFIG = ProtocolConfig()


@dataclass
class Protocol:
    """Typed handles on a deployed protocol."""

    oracle: Any
    clearinghouse: Any
    configurator: Any
    lens: Any
    pool: Any
    settlement: Any
    tokens: dict[str, Any] = field(default_factory=dict)  # symbol -> ERC20 (collaterals)
    feeds: dict[str, Any] = field(default_factory=dict)  # symbol -> aggregator
    markets: dict[str, int] = field(default_factory=dict)  # market name -> id
    config: ProtocolConfig = DEFAULT_CONFIG

    def market_asset(self, name: str) -> Any:
        market = next(m for m in self.config.markets if m.name == name)
        return self.tokens[market.underlying]

    def feed_of_market(self, name: str) -> Any:
        market = next(m for m in self.config.markets if m.name == name)
        return self.feeds[market.underlying]

    def publish(self, symbol: str, answer: int, publisher: Any) -> None:
        """Publish a round on `symbol`'s feed (answer in the feed's decimals) and fold it into the
        router at once, as the oracle bot does."""
        self.feeds[symbol].update_answer(answer, sender=publisher)
        self.oracle.sync(self.tokens[symbol], sender=publisher)

    def sell_collateral(self, account: int, buyer: Any) -> list[Any]:
        """When `account` has no positions left and negative equity, buy its collateral at the
        liquidation discount until its debt is repaid or the collateral is gone (the rest is
        then booked as bad debt). `buyer` needs settlement tokens approved to the clearinghouse.
        Returns the receipts; none when no sale is due."""
        ch = self.clearinghouse
        if int(ch.market_mask(account)) != 0 or int(ch.settlement(account)) >= 0 or ch.margin(account)[0] >= 0:
            return []
        receipts = []
        for slot in range(1, int(ch.collateral_count()) + 1):
            if int(ch.balances(account, slot)) == 0 or int(ch.settlement(account)) >= 0:
                continue
            receipts.append(ch.liquidate_collateral(account, ch.collaterals(slot).token, 2**256 - 1, sender=buyer))
        return receipts

    def addresses(self) -> dict[str, Any]:
        return {
            "oracle": self.oracle.address,
            "clearinghouse": self.clearinghouse.address,
            "configurator": self.configurator.address,
            "lens": self.lens.address,
            "pool": self.pool.address,
            "settlement": self.settlement.address,
            "tokens": {k: v.address for k, v in self.tokens.items()},
            "feeds": {k: v.address for k, v in self.feeds.items()},
            "markets": dict(self.markets),
        }

    def save(self, path: Path, deployed_block: int | None = None) -> None:
        """Addresses and configuration as JSON; `deployed_block`, the first block of the
        deployment, lets a keeper index events from there without searching the node."""
        data: dict[str, Any] = {"addresses": self.addresses(), "config": asdict(self.config)}
        if deployed_block is not None:
            data["deployed_block"] = deployed_block
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))


def account_id(owner: Any, subaccount: int = 0) -> int:
    """The on-chain account id: owner << 96 | subaccount."""
    return (int(str(owner), 16) << 96) | subaccount


def deploy_protocol(project: Any, deployer: Any, config: ProtocolConfig = DEFAULT_CONFIG) -> Protocol:
    """Deploy mocks (tokens, feeds), the oracle, the clearinghouse and its configurator, the
    lens and the pool, and list every collateral and market of `config`."""
    settlement = deployer.deploy(
        project.MockERC20, f"Mock {config.settlement_symbol}", config.settlement_symbol, config.settlement_decimals
    )
    oracle = deployer.deploy(project.OracleRouter, wad(config.ewma_lambda), wad(config.max_vol_rise_per_hour))
    clearinghouse = deployer.deploy(project.Clearinghouse, oracle, settlement, config.settlement_decimals)
    configurator = deployer.deploy(project.Configurator, clearinghouse)
    clearinghouse.set_configurator(configurator, sender=deployer)
    configurator.set_liquidation_parameters(
        wad(config.liquidation_buffer), wad(config.full_liquidation_health), wad(config.dust_notional_usd), sender=deployer
    )
    configurator.set_underwater_tip(wad(config.underwater_tip_rate), sender=deployer)
    lens = deployer.deploy(project.MarginLens, clearinghouse)
    pool = deployer.deploy(project.LiquidityPool, clearinghouse, "marginsim LP", "msLP")
    clearinghouse.set_pool(pool, sender=deployer)

    protocol = Protocol(oracle, clearinghouse, configurator, lens, pool, settlement, config=config)
    for token_config in config.collaterals:
        feed_config = token_config.feed
        token = deployer.deploy(project.MockERC20, f"Mock {token_config.symbol}", token_config.symbol, token_config.decimals)
        feed = deployer.deploy(
            project.MockAggregator,
            feed_config.decimals,
            f"{token_config.symbol} / USD",
            int(wad(feed_config.price_usd) // 10 ** (18 - feed_config.decimals)),
        )
        oracle.set_feed(
            token,
            feed,
            feed_config.heartbeat,
            wad(feed_config.min_price_usd),
            wad(feed_config.max_price_usd),
            wad(feed_config.max_deviation),
            wad(feed_config.initial_sigma),
            sender=deployer,
        )
        configurator.list_collateral(
            token,
            wad(token_config.weight),
            token_config.cap * 10**token_config.decimals,
            wad(token_config.liquidation_discount),
            sender=deployer,
        )
        protocol.tokens[token_config.symbol] = token
        protocol.feeds[token_config.symbol] = feed

    for market_config in config.markets:
        asset = protocol.tokens[market_config.underlying]
        configurator.list_market(market_config.params(asset.address), sender=deployer)
        protocol.markets[market_config.name] = clearinghouse.market_count()
    return protocol


def load_protocol(project: Any, path: Path) -> Protocol:
    """Typed handles on a protocol that `scripts/deploy.py` deployed and saved to `path`."""
    if not path.exists():
        raise SystemExit(f"protocol: no deployment file {path} (run `ape run deploy --network ...` first)")
    data = json.loads(path.read_text())
    addresses = data["addresses"]
    config = _config_from_dict(data["config"])
    return Protocol(
        oracle=project.OracleRouter.at(addresses["oracle"]),
        clearinghouse=project.Clearinghouse.at(addresses["clearinghouse"]),
        configurator=project.Configurator.at(addresses["configurator"]),
        lens=project.MarginLens.at(addresses["lens"]),
        pool=project.LiquidityPool.at(addresses["pool"]),
        settlement=project.MockERC20.at(addresses["settlement"]),
        tokens={k: project.MockERC20.at(v) for k, v in addresses["tokens"].items()},
        feeds={k: project.MockAggregator.at(v) for k, v in addresses["feeds"].items()},
        markets=dict(addresses["markets"]),
        config=config,
    )


def _config_from_dict(raw: dict[str, Any]) -> ProtocolConfig:
    collaterals = tuple(TokenConfig(**{**c, "feed": FeedConfig(**c["feed"])}) for c in raw["collaterals"])
    markets = tuple(MarketConfig(**m) for m in raw["markets"])
    rest = {k: v for k, v in raw.items() if k not in ("collaterals", "markets")}
    return ProtocolConfig(collaterals=collaterals, markets=markets, **rest)
