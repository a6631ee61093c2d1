"""Shared fixtures: role-named accounts and a freshly deployed oracle with mock feeds."""

import pytest

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
