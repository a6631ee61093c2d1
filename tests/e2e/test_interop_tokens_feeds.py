"""The protocol deployed against a token and a feed it did not write: an OpenZeppelin-style
6-decimal ERC-20 as the settlement coin, another as WETH collateral, and Chainlink's own
MockV3Aggregator (8 decimals) as the ETH/USD feed. `deploy_protocol` takes their addresses from
the config and deploys mocks only for the rest; the crash story then runs end to end on them,
with every wallet paid from the deployer's balance (no contract here can mint)."""

from dataclasses import replace

import pytest

from marginsim.protocol import DEFAULT_CONFIG, DeploymentError, deploy_protocol
from marginsim.story import TraderPlan, run_story, token_accounting

WAD = 10**18

TRADERS = (
    TraderPlan("usdc long 10x", "ETH-PERP", 10, "USDC", 10_000),
    TraderPlan("weth long 8x", "ETH-PERP", 8, "WETH", 20_000),
    TraderPlan("usdc short 5x", "ETH-PERP", -5, "USDC", 10_000),
)


def _real_config(project, deployer):
    usdc = deployer.deploy(project.PlainERC20, "USD Coin", "USDC", 6, 10**12 * 10**6)
    weth = deployer.deploy(project.PlainERC20, "Wrapped Ether", "WETH", 18, 10**9 * WAD)
    eth_usd = deployer.deploy(project.ChainlinkMockV3Aggregator, 8, 2_000 * 10**8)
    collaterals = tuple(
        replace(c, address=weth.address, feed=replace(c.feed, aggregator=eth_usd.address)) if c.symbol == "WETH" else c
        for c in DEFAULT_CONFIG.collaterals
    )
    return replace(DEFAULT_CONFIG, settlement_address=usdc.address, collaterals=collaterals), usdc, weth, eth_usd


def test_interop__plain_erc20_and_chainlink_mock_feed__crash_end_to_end(project, chain, accounts):
    config, usdc, weth, eth_usd = _real_config(project, accounts[0])
    result = run_story(project, chain, list(accounts)[:6], config=config, traders=TRADERS)
    protocol = result.protocol
    ch = protocol.clearinghouse

    # the deployment used the given contracts, not mocks
    assert protocol.settlement.address == usdc.address
    assert protocol.tokens["WETH"].address == weth.address
    assert protocol.feeds["WETH"].address == eth_usd.address
    assert protocol.oracle.feeds(weth).aggregator == eth_usd.address
    # the crash was published through Chainlink's own updateAnswer, and the router followed it
    assert eth_usd.latestRound() > 1
    assert protocol.oracle.price(weth) == eth_usd.latestAnswer() * 10**10

    # the longs were liquidated, the short never was
    liquidated = {d["account"] for d in result.liquidations}
    longs = [result.accounts[t.name] for t in TRADERS if t.leverage > 0]
    assert set(longs) <= liquidated
    assert result.accounts["usdc short 5x"] not in liquidated
    # tokens held == internal accounting, to the wei, on the foreign tokens too
    accounting = token_accounting(protocol, list(result.accounts.values()))
    assert accounting["held"] == accounting["settlement_held"] == accounting["internal_sum"]
    slot = ch.collateral_slot(weth)
    assert weth.balanceOf(ch) == ch.collaterals(slot).total == sum(ch.balances(a, slot) for a in result.accounts.values())


def test_interop__token_decimals_differ_from_config__one_line_error(project, accounts):
    deployer = accounts[0]
    usdc = deployer.deploy(project.PlainERC20, "USD Coin", "USDC", 18, 10**6 * WAD)
    config = replace(DEFAULT_CONFIG, settlement_address=usdc.address)
    with pytest.raises(DeploymentError, match=r"^config: USDC at 0x[0-9a-fA-F]{40} has 18 decimals, the config says 6$"):
        deploy_protocol(project, deployer, config)


def test_interop__feed_decimals_differ_from_config__one_line_error(project, accounts):
    deployer = accounts[0]
    eth_usd = deployer.deploy(project.ChainlinkMockV3Aggregator, 18, 2_000 * WAD)
    collaterals = tuple(
        replace(c, feed=replace(c.feed, aggregator=eth_usd.address)) if c.symbol == "WETH" else c
        for c in DEFAULT_CONFIG.collaterals
    )
    with pytest.raises(DeploymentError, match=r"^config: WETH feed 0x[0-9a-fA-F]{40} has 18 decimals, the config says 8$"):
        deploy_protocol(project, deployer, replace(DEFAULT_CONFIG, collaterals=collaterals))
