"""The Python mirror of the margin arithmetic equals the contracts to the wei."""

import pytest

from marginsim import risk
from marginsim.story import TraderPlan, run_story

WAD = 10**18


@pytest.fixture(scope="module")
def crash(project, chain, accounts):
    traders = (
        TraderPlan("long 10x", "ETH-PERP", 10, "USDC", 10_000),
        TraderPlan("weth long 5x", "ETH-PERP", 5, "WETH", 20_000),
        TraderPlan("short 7x", "ETH-PERP", -7, "USDC", 15_000),
        TraderPlan("wbtc long 6x", "BTC-PERP", 6, "WBTC", 30_000),
    )
    checks = []

    def on_round(record):
        checks.append(record)

    result = run_story(project, chain, list(accounts)[:7], traders=traders, eth_path=(0.97, 0.94, 0.9, 0.85), on_round=on_round)
    return result


def test_margin__mirror_equals_contract_for_every_account(crash, chain):
    ch, oracle = crash.protocol.clearinghouse, crash.protocol.oracle
    # time has passed since the last trade, so funding accrues in the view: the mirror must match
    chain.pending_timestamp += 1_800  # inside the feeds' heartbeat
    chain.mine()
    timestamp = chain.blocks.head.timestamp
    for account in crash.accounts.values():
        snapshot = risk.snapshot_account(ch, oracle, account, timestamp)
        assert risk.margin(snapshot) == tuple(ch.margin(account))
        assert risk.health(*risk.margin(snapshot)[:2]) == risk.health_of(ch, account)


@pytest.mark.parametrize("size_units", [1, 999, 1_000, 2_500, 10_000])
def test_market_rates__mirror_equals_lens(crash, size_units):
    lens, ch, oracle = crash.protocol.lens, crash.protocol.clearinghouse, crash.protocol.oracle
    market = crash.protocol.markets["ETH-PERP"]
    params = risk.MarketParams(*[v if isinstance(v, int) else str(v) for v in ch.markets(market)])
    sigma, sigma_mm = oracle.volatilities(params.asset)
    assert risk.market_rates(params, size_units * WAD, sigma, sigma_mm) == tuple(lens.market_rates(market, size_units * WAD))


@pytest.mark.parametrize("delta", [WAD, -WAD, 1234 * WAD // 10, -9_999 * WAD, 7])
def test_fill_price__mirror_equals_lens(crash, delta):
    lens, ch, oracle = crash.protocol.lens, crash.protocol.clearinghouse, crash.protocol.oracle
    market = crash.protocol.markets["ETH-PERP"]
    st = ch.market_state(market)
    params = ch.markets(market)
    price = oracle.price(params.asset)
    expected = risk.fill_price(price, st.long_oi - st.short_oi, delta, params.skew_scale)
    assert expected == lens.fill_price(market, delta)
