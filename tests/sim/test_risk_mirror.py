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


def test_accrued__a_scan_with_each_market_accrued_once_gives_every_margin_unchanged():
    """`risk.accrued` moves a market's funding to a time as the core's accrual writes it: the
    keepers' scan accrues each market once a step and every account's margin is the same to the
    wei as with the funding computed per position (both skews, elapsed 0 and a day)."""
    import dataclasses
    import random

    rng = random.Random(11)
    params = risk.MarketParams(
        asset="0x" + "00" * 20,
        base_mmr=3 * 10**16,
        tier_size=1_000 * 10**18,
        tier_mmr=10**16,
        vol_k=3 * 10**18,
        liquidation_horizon=3600,
        imr_multiplier=2 * 10**18,
        fee=5 * 10**14,
        penalty=2 * 10**16,
        keeper_share=5 * 10**17,
        skew_scale=10**6 * 10**18,
        max_funding_rate=10**16,
        oi_cap=7_500 * 10**18,
    )
    for _ in range(200):
        long_oi, short_oi = rng.randrange(10**24), rng.randrange(10**24)
        state = risk.MarketState(long_oi, short_oi, rng.randrange(-(10**27), 10**27), rng.randrange(-(10**22), 10**22), 1_000)
        view = risk.MarketView(params, state, rng.randrange(10**20, 10**22), rng.randrange(10**18), rng.randrange(10**18))
        timestamp = 1_000 + rng.choice([0, 1, 86_400, rng.randrange(10**6)])
        size = rng.randrange(-(10**22), 10**22)
        snapshot = risk.AccountSnapshot(
            settlement=rng.randrange(-(10**10), 10**11),
            settlement_to_wad=10**12,
            positions={1: (size, rng.randrange(-(10**27), 10**27))},
            markets={1: view},
            collaterals=[],
            timestamp=timestamp,
        )
        accrued = risk.accrued(view, timestamp)
        assert accrued.state.last_funding_time == timestamp
        assert risk.margin(snapshot) == risk.margin(dataclasses.replace(snapshot, markets={1: accrued}))
