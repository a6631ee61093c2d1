"""Shared fixtures: role-named accounts and a freshly deployed oracle with mock feeds."""

import pytest

from marginsim.orders import trade_now

WAD = 10**18
ETH_PRICE = 2_000  # USD, the default starting price of the ETH feed
BTC_PRICE = 30_000


@pytest.fixture(scope="session")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def guardian(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def trader(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def keeper(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def lp(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def attacker(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def other_trader(accounts):
    return accounts[6]


@pytest.fixture
def make_token(project, deployer):
    def make(decimals=18, symbol="TKN"):
        return deployer.deploy(project.MockERC20, f"Mock {symbol}", symbol, decimals)

    return make


@pytest.fixture
def make_aggregator(project, deployer):
    def make(price_usd=ETH_PRICE, decimals=8, description="ETH / USD"):
        return deployer.deploy(project.MockAggregator, decimals, description, int(price_usd * 10**decimals))

    return make


@pytest.fixture
def oracle(project, deployer):
    # lambda 0.94 (RiskMetrics), maintenance sigma may rise 10 vol points an hour
    return deployer.deploy(project.OracleRouter, 94 * 10**16, 10**17)


# ------------------------------------------------------------------ full protocol

from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol  # noqa: E402

USDC = 10**6


@pytest.fixture(scope="module")
def protocol(project, deployer):
    return deploy_protocol(project, deployer, DEFAULT_CONFIG)


@pytest.fixture(scope="module")
def ch(protocol):
    return protocol.clearinghouse


@pytest.fixture(scope="module")
def configurator(protocol):
    return protocol.configurator


@pytest.fixture(scope="module")
def usdc(protocol):
    return protocol.settlement


@pytest.fixture(scope="module")
def eth_market(protocol):
    return protocol.markets["ETH-PERP"]


@pytest.fixture(scope="module")
def btc_market(protocol):
    return protocol.markets["BTC-PERP"]


@pytest.fixture(scope="module")
def set_price(protocol, deployer, chain):
    """Publish a new round on a collateral's feed and sync the router, like the oracle bot."""

    def set_price(symbol, price_usd, sync=True):
        feed = protocol.feeds[symbol]
        decimals = feed.decimals()
        feed.updateAnswer(int(round(price_usd * 10**decimals)), sender=deployer)
        if sync:
            protocol.oracle.sync(protocol.tokens[symbol], sender=deployer)

    return set_price


@pytest.fixture(scope="module")
def fund(protocol, ch):
    """Mint `amount` (token units) of a token to `who` and approve the clearinghouse."""

    def fund(who, token, amount, spender=None):
        token.mint(who, amount, sender=who)
        token.approve(spender or ch, amount, sender=who)

    return fund


@pytest.fixture(scope="module")
def seeded_pool(protocol, fund, lp):
    """An LP deposit of 10M USDC so the pool can pay traders' profits."""
    amount = 10_000_000 * USDC
    fund(lp, protocol.settlement, amount, spender=protocol.pool)
    protocol.pool.deposit(amount, lp, sender=lp)
    return protocol.pool


@pytest.fixture(scope="module")
def make_account(protocol, ch, fund, seeded_pool):
    """Deposit `collateral_usd` of USDC into `owner`'s subaccount and open `leverage` x that
    notional in `market` (long if leverage > 0). Returns the account id."""

    def make_account(owner, collateral_usd=10_000, leverage=0, market="ETH-PERP", subaccount=0):
        amount = int(collateral_usd * USDC)
        if amount:
            fund(owner, protocol.settlement, amount)
            ch.deposit(protocol.settlement, amount, subaccount, sender=owner)
        if leverage:
            market_id = protocol.markets[market]
            price = protocol.oracle.price(protocol.market_asset(market))
            size = int(abs(leverage) * collateral_usd * WAD * WAD // price)
            trade_now(ch, market_id, size if leverage > 0 else -size, 0, subaccount, sender=owner)
        return account_id(owner, subaccount)

    return make_account


@pytest.fixture(scope="module")
def engine(protocol):
    """The LiquidationEngine: liquidations and collateral sales go through it."""
    return protocol.liquidation_engine
