"""Deploy a full marginsim protocol from a typed configuration and hand back typed handles.

Scripts, the demo and the tests all go through `deploy_protocol`, so no address is ever
scattered through them: they ask the returned `Protocol` for a contract, a token or a market.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from marginsim import risk

WAD = 10**18
# The events that change an account, by the contract that emits them; each one's first topic is
# the account id, so a keeper indexes accounts from them.
CLEARINGHOUSE_ACCOUNT_EVENTS = ("Trade", "Deposit", "Withdraw", "BadDebt")
# every event that changes an account names it first: a keeper that missed LossRealised kept a
# realised loss as open (no debt, no interest) and overstated the account's health
ENGINE_ACCOUNT_EVENTS = ("Liquidation", "CollateralLiquidation", "LossRealised")


def wad(x: float | int | str) -> int:
    """A decimal number as WAD, exactly (through its string form, never binary float maths)."""
    from decimal import Decimal

    return int(Decimal(str(x)) * WAD)


@dataclass(frozen=True)
class FeedConfig:
    """A Chainlink-style feed for one asset, with the router's guards. `aggregator`: the address
    of an existing AggregatorV3 (a Chainlink proxy); None deploys a MockAggregator answering
    `price_usd` with `decimals` decimals."""

    price_usd: float
    decimals: int = 8
    heartbeat: int = 3_600
    min_price_usd: float = 0.01
    max_price_usd: float = 10_000_000
    max_deviation: float = 0.20
    initial_sigma: float = 0.80
    aggregator: str | None = None


@dataclass(frozen=True)
class TokenConfig:
    """A collateral token with its haircut, cap and feed. `address`: an existing ERC-20 (its
    decimals must equal `decimals`); None deploys a MockERC20."""

    symbol: str
    decimals: int
    weight: float
    cap: int  # whole tokens
    liquidation_discount: float
    feed: FeedConfig
    address: str | None = None


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
    reserve_factor: float = 1.0  # the larger side needs its USD value / this of the pool's value, summed over markets; 0: off

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
    """What `deploy_protocol` deploys and lists. Tokens and feeds named by address are used as
    they are; only the unnamed ones are deployed as mocks (with `MOCK_SUPPLY` minted to the
    deployer, the funded account everything else is paid from)."""

    settlement_symbol: str = "USDC"
    settlement_decimals: int = 6
    settlement_address: str | None = None  # an existing ERC-20 (e.g. USDC); None deploys a mock
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
    settlement_delay: int = 60  # seconds between an order and the earliest oracle round it fills at
    order_expiry: int = 86_400  # seconds an unfilled order waits past its executable time before anyone may cancel it
    execution_fee_usd: float = 2  # settlement tokens a trader escrows per order for the keeper who fills it
    order_bond: float = 0.0005  # of its notional an order that adds risk escrows too: refunded at its fill, forfeited if not
    debt_rate_base: float = 0.02  # yearly interest on a negative settlement balance with nothing lent
    debt_rate_slope: float = 0.30  # yearly interest added at full utilisation (total debt / the pool's balance)
    debt_imr: float = 0.25  # initial margin on a debt: owe at most 1 / 1.25 = 80% of the haircut collateral value
    debt_ceiling: float = 0.5  # total debt, as a fraction of the pool's balance, above which a debtor may not add risk
    debt_liquidation_ltv: float = 0.9  # a debt above this fraction of the haircut collateral value puts it up for sale
    oracle_confirmation_delay: int = 3_600  # seconds a new level beyond a feed's circuit breaker must hold to be accepted


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
    liquidation_engine: Any
    orders: Any
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
        self.feeds[symbol].updateAnswer(answer, sender=publisher)
        self.oracle.sync(self.tokens[symbol], sender=publisher)

    def commit(self, signer: Any, market: int, size_delta: int, limit_price: int = 0, subaccount: int = 0) -> Any:
        """Place an order for `signer`'s subaccount (its execution fee approved to `orders`)."""
        return self.orders.commit_order(market, size_delta, limit_price, subaccount, sender=signer)

    def sell_collateral(self, account: int, buyer: Any) -> list[Any]:
        """Buy each collateral of `account` the engine puts up for sale (`risk.collateral_for_sale`:
        a debt above `debt_liquidation_ltv` of what the account holds, or no positions left and
        negative equity), at the liquidation discount, until the debt is repaid or the
        collateral is gone (with no positions left, the rest is then booked as bad debt).
        `buyer` needs settlement tokens approved to the clearinghouse. Returns the receipts;
        none when no sale is due."""
        ch, engine = self.clearinghouse, self.liquidation_engine
        ltv, scale = int(engine.debt_liquidation_ltv()), int(ch.SETTLEMENT_TO_WAD())
        receipts = []
        for slot in range(1, int(ch.collateral_count()) + 1):
            debt = -int(ch.settlement(account))
            if debt <= 0:
                break
            if int(ch.balances(account, slot)) == 0:
                continue
            col = ch.collaterals(slot)
            equity = int(ch.margin(account)[0])
            has_positions = int(ch.market_mask(account)) != 0
            if not risk.collateral_for_sale(debt, equity, ltv, has_positions, scale, written_off=int(col.weight) == 0):
                continue
            receipts.append(engine.liquidate_collateral(account, col.token, 2**256 - 1, sender=buyer))
        return receipts

    def fund(self, token: Any, receiver: Any, amount: int, funder: Any) -> None:
        """Pay `amount` units of `token` to `receiver` out of `funder`'s balance: the simulator,
        the story and the keepers take their working capital from a funded account (the deployer
        holds each mock's supply), never by minting, so they run on real tokens too."""
        held = int(token.balanceOf(funder))
        if held < amount:
            raise DeploymentError(f"funding: {funder} holds {held} units of {token.address}, {amount} needed")
        token.transfer(receiver, amount, sender=funder)

    def addresses(self) -> dict[str, Any]:
        return {
            "oracle": self.oracle.address,
            "clearinghouse": self.clearinghouse.address,
            "liquidation_engine": self.liquidation_engine.address,
            "orders": self.orders.address,
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


def configure(configurator: Any, config: ProtocolConfig, **tx: Any) -> None:
    """Set the protocol-wide parameters of `config` through a connected Configurator: orders,
    liquidation, the underwater tip and the debt. `tx`: the backend's transaction arguments
    (ape's `sender=`; none on titanoboa)."""
    configurator.set_order_parameters(
        config.settlement_delay,
        config.order_expiry,
        int(wad(config.execution_fee_usd) // 10 ** (18 - config.settlement_decimals)),
        **tx,
    )
    configurator.set_order_bond(wad(config.order_bond), **tx)
    configurator.set_liquidation_parameters(
        wad(config.liquidation_buffer), wad(config.full_liquidation_health), wad(config.dust_notional_usd), **tx
    )
    configurator.set_underwater_tip(wad(config.underwater_tip_rate), **tx)
    configurator.set_debt_parameters(
        wad(config.debt_rate_base),
        wad(config.debt_rate_slope),
        wad(config.debt_imr),
        wad(config.debt_ceiling),
        wad(config.debt_liquidation_ltv),
        **tx,
    )


def list_market(clearinghouse: Any, configurator: Any, market_config: MarketConfig, asset: Any, **tx: Any) -> int:
    """List `market_config` on `asset` (its address) through a connected Configurator and set
    its open-interest reserve; returns the market id. `tx` as for `configure`."""
    configurator.list_market(market_config.params(asset), **tx)
    market = int(clearinghouse.market_count())
    configurator.set_reserve_factor(market, wad(market_config.reserve_factor), **tx)
    return market


def deploy_contracts(
    project: Any, deployer: Any, settlement: Any, decimals: int, config: ProtocolConfig = DEFAULT_CONFIG
) -> Protocol:
    """The router, Clearinghouse, Configurator, LiquidationEngine, lens, pool and Orders around
    `settlement` (`decimals` decimals), wired with `connect`; no parameter set beyond the
    contracts' defaults, no collateral or market. `deploy_protocol` configures and lists on it."""
    oracle = deployer.deploy(project.OracleRouter, wad(config.ewma_lambda), wad(config.max_vol_rise_per_hour))
    clearinghouse = deployer.deploy(project.Clearinghouse, oracle, settlement, decimals)
    configurator = deployer.deploy(project.Configurator, clearinghouse)
    liquidation_engine = deployer.deploy(project.LiquidationEngine, clearinghouse)
    lens = deployer.deploy(project.MarginLens, clearinghouse)
    pool = deployer.deploy(project.LiquidityPool, clearinghouse, "marginsim LP", "msLP")
    orders = deployer.deploy(project.Orders, clearinghouse, lens)
    clearinghouse.connect(pool, configurator, liquidation_engine, orders, sender=deployer)
    return Protocol(oracle, clearinghouse, configurator, lens, pool, settlement, liquidation_engine, orders, config=config)


def deploy_protocol(project: Any, deployer: Any, config: ProtocolConfig = DEFAULT_CONFIG) -> Protocol:
    """Deploy the oracle, the clearinghouse, its configurator, liquidation engine, orders, lens and pool,
    wire them, and list every collateral and market of `config`. Tokens and feeds the config
    names by address are used as they are (any ERC-20, any Chainlink AggregatorV3); the others
    are deployed as mocks, each mock token's `MOCK_SUPPLY` minted to `deployer`."""
    settlement = _token(project, deployer, config.settlement_symbol, config.settlement_decimals, config.settlement_address)
    protocol = deploy_contracts(project, deployer, settlement, config.settlement_decimals, config)
    oracle, clearinghouse, configurator = protocol.oracle, protocol.clearinghouse, protocol.configurator
    configure(configurator, config, sender=deployer)
    if config.oracle_confirmation_delay != int(oracle.confirmation_delay()):  # the router's default needs no transaction
        oracle.set_confirmation_delay(config.oracle_confirmation_delay, sender=deployer)
    for token_config in config.collaterals:
        feed_config = token_config.feed
        token = _token(project, deployer, token_config.symbol, token_config.decimals, token_config.address)
        feed = _feed(project, deployer, token_config.symbol, feed_config)
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
        protocol.markets[market_config.name] = list_market(
            clearinghouse, configurator, market_config, asset.address, sender=deployer
        )
    return protocol


class DeploymentError(ValueError):
    """A configuration that cannot be deployed; the message is one line naming the field."""


MOCK_SUPPLY = 10**12  # whole tokens of each mock minted to the deployer: the funded account


def _token(project: Any, deployer: Any, symbol: str, decimals: int, address: str | None) -> Any:
    """The ERC-20 at `address` (its decimals checked against the config), or a new mock whose
    supply the deployer holds."""
    if address is None:
        token = deployer.deploy(project.MockERC20, f"Mock {symbol}", symbol, decimals)
        token.mint(deployer, MOCK_SUPPLY * 10**decimals, sender=deployer)
        return token
    token = _erc20_at(project, address)
    actual = int(token.decimals())
    if actual != decimals:
        raise DeploymentError(f"config: {symbol} at {address} has {actual} decimals, the config says {decimals}")
    return token


def _feed(project: Any, deployer: Any, symbol: str, feed: FeedConfig) -> Any:
    """The AggregatorV3 at `feed.aggregator` (its decimals checked), or a new mock answering
    `feed.price_usd`."""
    if feed.aggregator is None:
        answer = int(wad(feed.price_usd) // 10 ** (18 - feed.decimals))
        return deployer.deploy(project.MockAggregator, feed.decimals, f"{symbol} / USD", answer)
    aggregator = project.MockAggregator.at(feed.aggregator)  # read through AggregatorV3's calls only
    actual = int(aggregator.decimals())
    if actual != feed.decimals:
        raise DeploymentError(f"config: {symbol} feed {feed.aggregator} has {actual} decimals, the config says {feed.decimals}")
    return aggregator


def _erc20_at(project: Any, address: str) -> Any:
    # MockERC20's ABI is a superset of ERC-20's; only the standard calls are made on a token the
    # deployment did not deploy
    return project.MockERC20.at(address)


def load_protocol(project: Any, path: Path) -> Protocol:
    """Typed handles on a protocol that `scripts/deploy.py` deployed and saved to `path`."""
    if not path.exists():
        raise SystemExit(f"protocol: no deployment file {path} (run `ape run deploy --network ...` first)")
    data = json.loads(path.read_text())
    addresses = data["addresses"]
    contracts = [f.name for f in fields(Protocol) if f.name not in ("tokens", "feeds", "markets", "config")]
    missing = [name for name in contracts if name not in addresses]
    if missing:
        raise SystemExit(
            f"protocol: deployment file {path} has no {missing[0]} address (written by an older version): "
            "redeploy with `make deploy`"
        )
    config = _config_from_dict(data["config"])
    return Protocol(
        oracle=project.OracleRouter.at(addresses["oracle"]),
        clearinghouse=project.Clearinghouse.at(addresses["clearinghouse"]),
        configurator=project.Configurator.at(addresses["configurator"]),
        lens=project.MarginLens.at(addresses["lens"]),
        pool=project.LiquidityPool.at(addresses["pool"]),
        settlement=_erc20_at(project, addresses["settlement"]),
        liquidation_engine=project.LiquidationEngine.at(addresses["liquidation_engine"]),
        orders=project.Orders.at(addresses["orders"]),
        tokens={k: _erc20_at(project, v) for k, v in addresses["tokens"].items()},
        feeds={k: project.MockAggregator.at(v) for k, v in addresses["feeds"].items()},
        markets=dict(addresses["markets"]),
        config=config,
    )


def _config_from_dict(raw: dict[str, Any]) -> ProtocolConfig:
    """A ProtocolConfig from its dict form (a deployments file's "config", or a deploy TOML):
    top-level keys override the defaults; `collaterals` and `markets`, when given, replace them.
    Raises DeploymentError naming the first unknown or missing field."""
    known = {f.name for f in fields(ProtocolConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DeploymentError(f"config: unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    rest = {k: v for k, v in raw.items() if k not in ("collaterals", "markets")}
    try:
        collaterals = DEFAULT_CONFIG.collaterals
        if "collaterals" in raw:
            collaterals = tuple(TokenConfig(**{**c, "feed": FeedConfig(**c["feed"])}) for c in raw["collaterals"])
        markets = DEFAULT_CONFIG.markets
        if "markets" in raw:
            markets = tuple(MarketConfig(**m) for m in raw["markets"])
    except (TypeError, KeyError) as error:
        raise DeploymentError(f"config: {error}") from None
    return ProtocolConfig(collaterals=collaterals, markets=markets, **rest)


def load_config(path: Path) -> ProtocolConfig:
    """A deploy configuration from a TOML file with ProtocolConfig's fields, e.g. to name the
    settlement coin, the collaterals and their Chainlink feeds on a real network:

        settlement_address = "0xA0b8...eB48"           # USDC
        [[collaterals]]
        symbol = "WETH"
        decimals = 18
        weight = 0.85
        cap = 1000000
        liquidation_discount = 0.05
        address = "0xC02a...6Cc2"
        feed = { price_usd = 2000, aggregator = "0x5f4e...8419" }
    """
    import tomllib

    if not path.exists():
        raise DeploymentError(f"config: no file {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise DeploymentError(f"config: {path} is not TOML: {error}") from None
    return _config_from_dict(raw)
