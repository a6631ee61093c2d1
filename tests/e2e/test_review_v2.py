"""Review v2: the liquidation split (Clearinghouse core + LiquidationEngine), attacked.

The one finding (a lowered skew_scale filling a reduction at price 0) is fixed, and its test
now proves the fix; the other tests are attacks that were tried and failed, kept as proofs of
the defence.
"""

from dataclasses import replace

import ape
import pytest

from marginsim.orders import trade_now
from marginsim.risk import health_of
from tests.conftest import USDC, WAD
from tests.e2e.attacks import reserve_out_of_the_way

MAX = 2**256 - 1


def liquidation_event(tx):
    return next(e for e in tx.events if e.event_name == "Liquidation")


def trade_event(tx):
    return next(e for e in tx.events if e.event_name == "Trade")


def market_config(protocol, name):
    return next(m for m in protocol.config.markets if m.name == name)


def set_eth_params(protocol, deployer, **changes):
    """Governance: change ETH-PERP's parameters through the Configurator (all bounds checked)."""
    cfg = replace(market_config(protocol, "ETH-PERP"), **changes)
    protocol.configurator.set_market(protocol.markets["ETH-PERP"], cfg.params(protocol.tokens["WETH"].address), sender=deployer)


def drop_until(ch, set_price, account, below, start=2_000.0, step=0.01):
    """Lower the ETH price in steps (inside the 20% breaker) until health < `below`."""
    price = start
    while health_of(ch, account) >= below:
        price *= 1 - step
        set_price("WETH", price)
    return price


def books_consistent(ch, usdc):
    assert usdc.balanceOf(ch) == ch.settlement_held()


# ---------------------------------------------------------------- the finding, fixed


def test_finding_skew_scale_below_open_interest__refused_so_no_fill_at_zero(
    protocol, ch, usdc, make_account, attacker, deployer, eth_market
):
    """Review v2, fixed: governance lowered skew_scale (2,000 ETH, oi_cap 15 ETH, both within
    their bounds) under a 3,000 ETH short; the premium numerator 2S + 2 skew + delta went
    negative and the short bought 1,000 ETH back at price 0, $1,997,000 out of the pool. The
    Configurator now refuses a cap below the open interest on either side, so |skew| <= oi_cap
    <= skew_scale keeps every fill positive."""
    account = make_account(attacker, collateral_usd=1_000_000, leverage=-6)
    assert ch.positions(account, eth_market).size == -3_000 * WAD
    with ape.reverts("configurator: cap below open interest"):
        set_eth_params(protocol, deployer, skew_scale=2_000, oi_cap=15)
    assert ch.markets(eth_market).skew_scale == 1_000_000 * WAD
    # the short buys back at the oracle price plus (here: minus) the usual premium
    price = protocol.oracle.price(protocol.tokens["WETH"])
    tx = trade_now(ch, eth_market, 1_000 * WAD, 0, 0, sender=attacker)
    assert trade_event(tx).fill_price >= price * 99 // 100
    books_consistent(ch, usdc)


# ---------------------------------------------------------------- defences (attacks that fail)


def test_engine_only_api__unreachable_for_anyone_else(protocol, ch, engine, make_account, trader, attacker, deployer, eth_market):
    """liquidation_close / seize_collateral only from the connected engine; the engine's setters
    only from the connected Configurator (the owner included is refused)."""
    victim = make_account(trader, collateral_usd=10_000, leverage=5)
    for who in (attacker, deployer):
        with ape.reverts("clearinghouse: not liquidation engine"):
            ch.liquidation_close(victim, eth_market, -WAD, 1, 1, 0, 10**6, who, sender=who)
        with ape.reverts("clearinghouse: not liquidation engine"):
            ch.seize_collateral(victim, 1, 0, 0, who, sender=who)
        with ape.reverts("liquidation: not configurator"):
            engine.apply_liquidation_parameters(0, WAD, 0, sender=who)
        with ape.reverts("liquidation: not configurator"):
            engine.apply_underwater_tip(10**16, sender=who)


def test_connect__front_run_and_configurator_before_connect__refused(project, protocol, deployer, attacker, usdc):
    ch = deployer.deploy(project.Clearinghouse, protocol.oracle, usdc, 6)
    cfg = deployer.deploy(project.Configurator, ch)
    engine = deployer.deploy(project.LiquidationEngine, ch)
    rogue_engine = attacker.deploy(project.LiquidationEngine, ch)
    orders = deployer.deploy(project.Orders, ch, deployer.deploy(project.MarginLens, ch))
    with ape.reverts():
        ch.connect(attacker, attacker, rogue_engine, attacker, sender=attacker)
    with ape.reverts("configurator: no liquidation engine"):
        cfg.set_underwater_tip(10**15, sender=deployer)
    with ape.reverts("liquidation: not configurator"):  # configurator() is still zero
        engine.apply_underwater_tip(10**15, sender=attacker)
    ch.connect(protocol.pool, cfg, engine, orders, sender=deployer)
    with ape.reverts("clearinghouse: already connected"):
        ch.connect(attacker, attacker, rogue_engine, attacker, sender=deployer)
    assert ch.liquidation_engine() == engine.address


def test_batch__repeated_pair_healthy_closed_and_front_run_pairs__skipped_not_reverted(
    protocol, ch, engine, usdc, fund, make_account, trader, attacker, other_trader, keeper, set_price, eth_market, btc_market
):
    victim = make_account(trader, collateral_usd=10_000, leverage=10)
    evader = make_account(attacker, collateral_usd=10_000, leverage=10)
    evader2 = make_account(attacker, collateral_usd=10_000, leverage=10, subaccount=1)
    healthy = make_account(other_trader, collateral_usd=100_000, leverage=1)
    drop_until(ch, set_price, victim, WAD, step=0.002)
    assert health_of(ch, evader) < WAD and health_of(ch, evader2) < WAD
    # the attacker front-runs the keeper's batch: one account closes itself, the other tops up
    trade_now(ch, eth_market, -ch.positions(evader, eth_market).size, 0, 0, sender=attacker)
    fund(attacker, usdc, 50_000 * USDC)
    ch.deposit(usdc, 50_000 * USDC, 1, sender=attacker)
    pairs = [
        (victim, eth_market),
        (victim, eth_market),  # repeated: the second sees the restored account
        (victim, btc_market),  # no position there
        (evader, eth_market),  # closed by its owner
        (evader2, eth_market),  # topped up
        (healthy, eth_market),
    ]
    size_before = ch.positions(victim, eth_market).size
    # the batch's return value, as a call a block earlier (a receipt's decoded return value is unreliable)
    closed = engine.liquidate_many.call([a for a, _ in pairs], [m for _, m in pairs], sender=keeper)
    assert closed[0] > 0 and list(closed[1:]) == [0] * 5
    tx = engine.liquidate_many([a for a, _ in pairs], [m for _, m in pairs], sender=keeper)
    [event] = [e for e in tx.events if e.event_name == "Liquidation"]
    assert event.account == victim and event.size_closed == ch.positions(victim, eth_market).size - size_before < 0
    assert health_of(ch, victim) >= WAD + engine.liquidation_buffer()
    books_consistent(ch, usdc)


def test_split_liquidation__max_size_steps__close_no_more_than_one_shot(
    protocol, ch, engine, chain, make_account, trader, keeper, set_price, eth_market
):
    """A keeper cutting the close into pieces (one crossing a size tier) cannot push the account into
    the whole-close rules (h * mmr < penalty, dust) and so cannot close more than the least close."""
    account = make_account(trader, collateral_usd=500_000, leverage=-9.5)  # 2,375 ETH short, tier 2 (5%)
    size = ch.positions(account, eth_market).size
    price = 2_000.0
    while health_of(ch, account) >= 62 * WAD // 100:  # h * 5% > 2% penalty: a partial close
        price *= 1.01
        set_price("WETH", price)
    assert health_of(ch, account) >= engine.full_liquidation_health()
    snap = chain.snapshot()
    one_shot = liquidation_event(engine.liquidate(account, eth_market, MAX, sender=keeper))
    assert 0 < one_shot.size_closed < -size  # partial
    chain.restore(snap)
    total = 0
    for cut in (WAD, 400 * WAD, 500 * WAD):  # the last leaves the remainder in tier 1
        total += liquidation_event(engine.liquidate(account, eth_market, cut, sender=keeper)).size_closed
    while ch.margin(account)[0] < ch.margin(account)[1]:
        total += liquidation_event(engine.liquidate(account, eth_market, MAX, sender=keeper)).size_closed
    assert ch.positions(account, eth_market).size != 0
    assert total <= one_shot.size_closed + 10**6  # rounding of the re-solved steps only


@pytest.mark.parametrize("skew_units", [-7_000, -1, 0, 3_333, 7_000])
def test_fill_price__round_trip_at_any_skew__never_gains(
    protocol, ch, usdc, make_account, trader, other_trader, deployer, eth_market, skew_units
):
    """With the fee at 0, buy-then-sell and sell-then-buy of awkward sizes lose or break even: the
    single rounding of the exact fill is always against the trader."""
    set_eth_params(protocol, deployer, fee=0, max_funding_rate=0)
    reserve_out_of_the_way(protocol, deployer)  # a 7,000 ETH skew ($14M) is larger than the $10M pool
    if skew_units:
        make_account(other_trader, collateral_usd=3_000_000, leverage=skew_units * 2_000 / 3_000_000)
    account = make_account(trader, collateral_usd=100_000)
    for size in (1, 10**6 + 1, 3 * 10**17 + 7, 10**18, 333 * 10**18 + 1):
        for sign in (1, -1):
            before = ch.settlement(account)
            pool_before = ch.pool_balance()
            trade_now(ch, eth_market, sign * size, 0, 0, sender=trader)
            trade_now(ch, eth_market, -sign * size, 0, 0, sender=trader)
            assert ch.positions(account, eth_market).size == 0
            assert ch.settlement(account) <= before
            assert ch.pool_balance() >= pool_before
    books_consistent(ch, usdc)


def test_self_liquidation__partial__second_address_loses_the_insurance_share(
    protocol, ch, engine, usdc, make_account, trader, attacker, set_price, eth_market
):
    """Owner liquidates its own account from a second address: together they lose
    (1 - keeper_share) * penalty (plus at most the one unit the realised PnL floors)."""
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    size = ch.positions(account, eth_market).size
    drop_until(ch, set_price, account, WAD, step=0.002)
    e0 = ch.margin(account)[0]
    wallet0 = usdc.balanceOf(attacker)
    event = liquidation_event(engine.liquidate(account, eth_market, MAX, sender=attacker))
    assert 0 < -event.size_closed < size  # partial
    e1 = ch.margin(account)[0]
    paid = usdc.balanceOf(attacker) - wallet0
    assert paid == event.keeper_reward == event.penalty * ch.markets(eth_market).keeper_share // WAD
    loss = (e0 - e1) // 10**12 - paid  # token units
    assert event.penalty - paid <= loss <= event.penalty - paid + 2  # + PnL floor and one second of funding
    books_consistent(ch, usdc)


def test_full_close_rule__multi_market_low_rate_market__health_not_lowered_no_tip_profit(
    protocol, ch, engine, usdc, fund, guardian, make_account, trader, attacker, set_price, eth_market, btc_market
):
    """h * mmr < penalty forces a whole close of the chosen market with the penalty capped at its
    equity share: health stays where it was (never lowered) and a self-liquidator's second address
    receives less than the account paid (the tip does not exceed the capped penalty here)."""
    fund(guardian, usdc, 100_000 * USDC)
    ch.fund_insurance(100_000 * USDC, sender=guardian)
    account = make_account(trader, collateral_usd=20_000, leverage=5)  # 20 ETH long
    trade_now(ch, btc_market, 3 * WAD, 0, 0, sender=trader)  # $90k BTC long too
    drop_until(ch, set_price, account, 6 * WAD // 10, step=0.005)  # only ETH falls
    h0 = health_of(ch, account)
    mmr = protocol.lens.market_rates(eth_market, ch.positions(account, eth_market).size)[0]
    assert h0 * mmr // WAD < ch.markets(eth_market).penalty and h0 >= engine.full_liquidation_health()
    e0 = ch.margin(account)[0]
    wallet0 = usdc.balanceOf(attacker)
    event = liquidation_event(engine.liquidate(account, eth_market, MAX, sender=attacker))
    assert ch.positions(account, eth_market).size == 0 and ch.positions(account, btc_market).size != 0
    assert event.health_after + 10**9 >= h0  # unchanged but for rounding
    received = usdc.balanceOf(attacker) - wallet0
    assert received < (e0 - ch.margin(account)[0]) // 10**12
    books_consistent(ch, usdc)


def test_liquidation_snapshot__is_a_view_and_a_zero_sized_close_moves_nothing(ch, engine, make_account, trader, eth_market):
    """The public snapshot cannot be used to move state, and the engine never sends a close for an
    account that is not below maintenance."""
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    s = ch.liquidation_snapshot(account, eth_market)
    assert s.equity >= s.maintenance
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate(account, eth_market, MAX, sender=trader)
    assert engine.liquidate_many.call([account], [eth_market], sender=trader) == [0]
    tx = engine.liquidate_many([account], [eth_market], sender=trader)
    assert not [e for e in tx.events if e.event_name == "Liquidation"]
