"""`LiquidationEngine.liquidate` closes the least size that restores health 1 + buffer, across
size tiers, and the Python mirror (`marginsim.risk.liquidation_outcome`) predicts the close, the
penalty and the keeper's reward to the wei.

The property, on chain: with a snapshot of the chain, `liquidate(max_size = huge)` closes x and
leaves health >= 1 + b; from the same snapshot, `liquidate(max_size = x - tolerance)` leaves
health below 1 + b; when the close ends just below a size-tier boundary, one wei less does. The
tolerance is the solve's documented slack (two settlement token units of
equity, the rounding of the realised PnL and of the penalty) expressed in base units, plus two
units of rounding: tolerance = ceil(2 * unit_wad * WAD^2 / (price * ((1 + b) r - f))) + 2.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginsim import risk
from marginsim.orders import trade_now
from tests.conftest import USDC, WAD

MAX = 2**256 - 1


def _snapshot(chain, protocol, account, market):
    """The engine's snapshot as the mirror computes it at the next block's timestamp, which this
    pins (funding accrues with time, so a view at the last block would differ by its funding)."""
    timestamp = chain.pending_timestamp + 1
    chain.pending_timestamp = timestamp
    ch = protocol.clearinghouse
    snapshot = risk.snapshot_account(ch, protocol.oracle, account, timestamp)
    equity, maintenance, _ = risk.margin(snapshot)
    size = snapshot.positions[market][0]
    return risk.snapshot_for(snapshot.markets[market], size, equity, maintenance, int(ch.insurance_balance()))


def _params(engine):
    return risk.read_liquidation_params(engine)


def _event(tx):
    return next(e for e in tx.events if e.event_name == "Liquidation")


def _tolerance(s, buffer, settlement_to_wad, remainder):
    rate = risk.snapshot_rate(s, remainder)
    per_unit = s.price * (risk.mul_down(WAD + buffer, rate) - s.penalty)  # WAD^2 USD per base unit
    return risk.ceil_div(2 * settlement_to_wad * WAD * WAD, per_unit) + 2


def _open(ch, protocol, fund, owner, size_eth, collateral_usd, subaccount=0):
    usdc = protocol.settlement
    fund(owner, usdc, int(collateral_usd * USDC))
    ch.deposit(usdc, int(collateral_usd * USDC), subaccount, sender=owner)
    trade_now(ch, protocol.markets["ETH-PERP"], int(size_eth * WAD), 0, subaccount, sender=owner)
    return (int(str(owner), 16) << 96) | subaccount


def _health_after(chain, engine, ch, account, market, max_size, keeper):
    timestamp = chain.pending_timestamp
    snapshot = chain.snapshot()
    chain.pending_timestamp = timestamp
    tx = engine.liquidate(account, market, max_size, sender=keeper)
    health = risk.health_of(ch, account)
    closed = -int(_event(tx).size_closed)
    chain.restore(snapshot)
    return closed, health


def _open_at_initial_margin(ch, protocol, lens, fund, owner, size_eth):
    """Open `size_eth` long with 3% more than its initial requirement (plus fee and premium)."""
    market = protocol.markets["ETH-PERP"]
    _, imr = lens.market_rates(market, int(size_eth * WAD))
    price = protocol.oracle.price(protocol.tokens["WETH"]) / WAD
    collateral = size_eth * price * (imr / WAD) * 1.03 + size_eth * price * 0.003
    return _open(ch, protocol, fund, owner, size_eth, collateral)


def _drop_until(ch, set_price, account, health_below, step=0.005):
    price = 2_000.0
    while risk.health_of(ch, account) >= health_below:
        price *= 1 - step
        set_price("WETH", price)


# positions below, at and across the 1,000 ETH tier size, at several depths below maintenance
CASES = [(50, 0.97), (999, 0.9), (1_000, 0.97), (1_500, 0.9), (2_100, 0.95), (3_050, 0.8), (3_050, 0.6)]


@pytest.mark.parametrize("size_eth,health_below", CASES)
def test_liquidate__least_size__one_tolerance_less_stays_below_target(
    chain, ch, protocol, engine, fund, seeded_pool, trader, keeper, set_price, eth_market, size_eth, health_below
):
    account = _open_at_initial_margin(ch, protocol, protocol.lens, fund, trader, size_eth)
    _drop_until(ch, set_price, account, health_below * WAD)
    health = risk.health_of(ch, account)
    params = _params(engine)
    assert params.full_liquidation_health <= health < WAD, "case must be a partial liquidation"
    s = _snapshot(chain, protocol, account, eth_market)
    unit = int(ch.SETTLEMENT_TO_WAD())
    expected = risk.liquidation_outcome(s, params, MAX, unit)
    assert not expected.whole

    closed, health_after = _health_after(chain, engine, ch, account, eth_market, MAX, keeper)
    assert closed == expected.close, (closed, expected, health)
    target = WAD + params.buffer
    assert health_after >= target
    remainder = abs(s.size) - closed
    # just below a tier boundary, one wei less keeps the higher tier's rate, whose least close is
    # larger; elsewhere the solve's slack is the tolerance
    at_boundary = (remainder + 1) % s.tier_size == 0
    less_size = closed - 1 if at_boundary else closed - _tolerance(s, params.buffer, unit, remainder)
    if less_size == 0:
        assert health < target  # closing nothing leaves the account where it is
    else:
        less, health_less = _health_after(chain, engine, ch, account, eth_market, less_size, keeper)
        assert less == less_size
        assert health_less < target


def test_liquidate__tier_boundary__closes_about_100_eth_not_630(
    chain, ch, protocol, engine, fund, seeded_pool, trader, keeper, set_price, eth_market
):
    """A 2,100 ETH long at health 0.89 (ETH $1,872.14): the two-step tier search of v1 kept its
    first answer, 629.60 ETH, at the 5% rate of tier 2. Closing 100 ETH and one wei moves the
    remainder into tier 1 (4%), which already restores health above 1.1."""
    account = _open(ch, protocol, fund, trader, 2_100, 450_000)
    set_price("WETH", 1_872.14)
    assert 880 * WAD // 1_000 < risk.health_of(ch, account) < 900 * WAD // 1_000
    tx = engine.liquidate(account, eth_market, MAX, sender=keeper)
    closed = -int(_event(tx).size_closed)
    assert closed == 100 * WAD + 1  # the remainder, 1,999.999...9 ETH, is in tier 1
    assert ch.positions(account, eth_market).size == 2_000 * WAD - 1
    assert risk.health_of(ch, account) >= WAD + engine.liquidation_buffer()


def test_liquidate__mirror__close_penalty_and_reward_to_the_wei(
    chain, ch, protocol, engine, fund, seeded_pool, trader, keeper, set_price, eth_market, usdc
):
    account = _open_at_initial_margin(ch, protocol, protocol.lens, fund, trader, 1_500)
    _drop_until(ch, set_price, account, 9 * WAD // 10)
    s = _snapshot(chain, protocol, account, eth_market)
    expected = risk.liquidation_outcome(s, _params(engine), MAX, int(ch.SETTLEMENT_TO_WAD()))
    before = usdc.balanceOf(keeper)
    event = _event(engine.liquidate(account, eth_market, MAX, sender=keeper))
    assert -int(event.size_closed) == expected.close
    assert int(event.penalty) == expected.penalty
    assert int(event.keeper_reward) == expected.keeper_reward
    assert int(event.health_before) == expected.health_before
    assert usdc.balanceOf(keeper) - before == expected.keeper_reward


# ------------------------------------------------------------------ the search, in Python


def _least_by_scan(s, buffer, unit):
    """The definition: scan every tier from the position's own down, first feasible wins."""
    abs_size = abs(s.size)
    mmr = risk.snapshot_rate(s, abs_size)
    m_other = s.maintenance - risk.mul_up(risk.mul_up(abs_size, s.price), mmr)
    for t in range(abs_size // s.tier_size, -1, -1):
        x = risk.close_for_rate(s, abs_size, m_other, risk.snapshot_rate(s, t * s.tier_size), buffer, unit)
        hi = abs_size - t * s.tier_size
        if x <= hi:
            upper_remainder = (t + 1) * s.tier_size - 1
            return max(x, abs_size - upper_remainder) if upper_remainder < abs_size else x
    return abs_size


@settings(max_examples=400, deadline=None)
@given(
    tiers=st.integers(min_value=0, max_value=40),
    fraction=st.integers(min_value=0, max_value=999),
    health_milli=st.integers(min_value=300, max_value=999),
    tier_mmr_bps=st.integers(min_value=0, max_value=300),
    sigma_pct=st.integers(min_value=0, max_value=300),
)
def test_least_close__binary_search_equals_tier_scan(tiers, fraction, health_milli, tier_mmr_bps, sigma_pct):
    tier_size = 100 * WAD
    size = tiers * tier_size + fraction * tier_size // 1_000 + 1
    price = 2_000 * WAD
    base, tier_mmr = 3 * 10**16, tier_mmr_bps * 10**14
    unit_vol = risk.vol_unit(3 * WAD, 3_600)
    sigma = sigma_pct * 10**16
    mmr, _ = risk.rates(base, tier_size, tier_mmr, unit_vol, 2 * WAD, size, sigma, sigma)
    maintenance = risk.mul_up(risk.mul_up(size, price), mmr)
    equity = maintenance * health_milli // 1_000
    s = risk.LiquidationSnapshot(
        equity, maintenance, price, size, base, tier_size, tier_mmr, unit_vol, 2 * WAD, sigma, sigma, 2 * 10**16, WAD // 2, 0
    )
    buffer, unit = WAD // 10, 10**12
    assert risk.least_close_for(s, buffer, unit) == _least_by_scan(s, buffer, unit)


def test_liquidate__penalty_capped_band__closes_whole_position(
    chain, ch, protocol, engine, fund, seeded_pool, trader, keeper, set_price, eth_market
):
    """Between full_liquidation_health (0.5) and penalty / mmr (2% / 3% = 0.667) the penalty is
    capped at the equity share of the maintenance freed, so it takes exactly the health a close
    frees: a partial close leaves health where it was (the account stays liquidatable and would
    be closed piece by piece, a penalty and a keeper's gas each time). The engine closes the whole
    position at once there."""
    account = _open_at_initial_margin(ch, protocol, protocol.lens, fund, trader, 50)
    _drop_until(ch, set_price, account, 650 * WAD // 1_000)
    health = risk.health_of(ch, account)
    s = _snapshot(chain, protocol, account, eth_market)
    mmr = risk.snapshot_rate(s, abs(s.size))
    assert engine.full_liquidation_health() <= health and risk.mul_down(health, mmr) < s.penalty

    # why: a partial close (half the position) leaves health unchanged up to token rounding
    half, health_half = _health_after(chain, engine, ch, account, eth_market, abs(s.size) // 2, keeper)
    assert half == abs(s.size) // 2
    assert abs(health_half - health) < 10**9  # 1e-9 of health: rounding only
    assert health_half < WAD

    event = _event(engine.liquidate(account, eth_market, MAX, sender=keeper))
    assert -int(event.size_closed) == abs(s.size)
    assert ch.positions(account, eth_market).size == 0
