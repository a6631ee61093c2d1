import ape

from marginsim.orders import trade_now
from marginsim.protocol import account_id
from marginsim.risk import debt_now, health_of
from tests.conftest import USDC, WAD
from tests.e2e.attacks import reserve_out_of_the_way


def liquidation_event(tx):
    return next(e for e in tx.events if e.event_name == "Liquidation")


def drop_until_liquidatable(ch, set_price, account, start=2_000, step=0.02, floor_health=None):
    price = start
    while health_of(ch, account) >= WAD:
        price = price * (1 - step)
        set_price("WETH", price)
    if floor_health is not None:
        assert health_of(ch, account) > floor_health
    return price


def test_liquidate__healthy_account__reverts(ch, make_account, trader, keeper, eth_market, engine):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate(account, eth_market, 10**30, sender=keeper)


def test_liquidate__zero_size__reverts(ch, make_account, trader, keeper, eth_market, engine):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    with ape.reverts("liquidation: zero size"):
        engine.liquidate(account, eth_market, 0, sender=keeper)


def test_liquidate__unknown_market__reverts(ch, make_account, trader, keeper, engine):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    with ape.reverts("clearinghouse: unknown market"):
        engine.liquidate(account, 9, 10**30, sender=keeper)


def test_liquidate__no_position_in_market__reverts(ch, make_account, trader, keeper, btc_market, set_price, engine):
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    drop_until_liquidatable(ch, set_price, account)
    with ape.reverts("liquidation: no position"):
        engine.liquidate(account, btc_market, 10**30, sender=keeper)


def test_liquidate__partial__closes_least_size_to_buffer(
    ch, protocol, make_account, trader, keeper, eth_market, set_price, usdc, engine
):
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    drop_until_liquidatable(ch, set_price, account, step=0.01)
    health_before = health_of(ch, account)
    assert WAD // 2 <= health_before < WAD
    size_before = ch.positions(account, eth_market).size
    insurance_before = ch.insurance_balance()
    keeper_before = usdc.balanceOf(keeper)

    tx = engine.liquidate(account, eth_market, 10**30, sender=keeper)
    event = liquidation_event(tx)
    size_after = ch.positions(account, eth_market).size
    assert 0 < size_after < size_before  # partial
    target = WAD + engine.liquidation_buffer()
    assert health_of(ch, account) >= target
    assert event.health_after == health_of(ch, account)
    assert event.health_after > health_before
    # least size: one whole ETH less would not have reached the target buffer
    closed = size_before - size_after
    assert closed == -event.size_closed
    price = protocol.oracle.price(protocol.tokens["WETH"])
    e, m, _ = ch.margin(account)
    penalty_rate = protocol.clearinghouse.markets(eth_market).penalty
    mmr, _ = protocol.lens.market_rates(eth_market, size_after)
    x = WAD  # re-open 1 ETH of what was closed: equity back +penalty, requirement +rate
    e_less = e + x * price // WAD * penalty_rate // WAD
    m_less = m + x * price // WAD * mmr // WAD
    assert e_less * WAD // m_less < target
    # penalty split: keeper share to the keeper, the rest to the insurance fund
    assert usdc.balanceOf(keeper) - keeper_before == event.keeper_reward
    assert ch.insurance_balance() - insurance_before == event.penalty - event.keeper_reward
    assert event.keeper_reward == event.penalty * ch.markets(eth_market).keeper_share // WAD
    assert usdc.balanceOf(ch) == ch.settlement_held()


def test_liquidate__deep_underwater_threshold__closes_everything(ch, make_account, trader, keeper, eth_market, set_price, engine):
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    price = 2_000
    while health_of(ch, account) >= engine.full_liquidation_health():
        price *= 0.985
        set_price("WETH", price)
    tx = engine.liquidate(account, eth_market, 10**30, sender=keeper)
    assert ch.positions(account, eth_market).size == 0
    assert ch.market_mask(account) == 0
    assert liquidation_event(tx).health_after == 2**256 - 1


def test_liquidate__max_size__caps_the_close(ch, make_account, trader, keeper, eth_market, set_price, engine):
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    drop_until_liquidatable(ch, set_price, account, step=0.01)
    size = ch.positions(account, eth_market).size
    tx = engine.liquidate(account, eth_market, WAD // 10, sender=keeper)
    assert liquidation_event(tx).size_closed == -(WAD // 10)
    assert ch.positions(account, eth_market).size == size - WAD // 10


def test_liquidate__dust_remainder__closed_too(
    ch, protocol, make_account, trader, keeper, eth_market, set_price, deployer, engine
):
    # a dust threshold larger than any partial remainder forces a full close
    # the largest dust threshold ($10,000) against a $10,000 position: any partial remainder is dust
    protocol.configurator.set_liquidation_parameters(
        engine.liquidation_buffer(), engine.full_liquidation_health(), 10_000 * WAD, sender=deployer
    )
    account = make_account(trader, collateral_usd=1_000, leverage=10)
    drop_until_liquidatable(ch, set_price, account, step=0.01)
    engine.liquidate(account, eth_market, 10**30, sender=keeper)
    assert ch.positions(account, eth_market).size == 0


def test_liquidate__underwater__tip_then_bad_debt_to_insurance_then_pool(
    ch, protocol, make_account, trader, keeper, eth_market, set_price, fund, usdc, guardian, engine
):
    fund(guardian, usdc, 1_000 * USDC)
    ch.fund_insurance(1_000 * USDC, sender=guardian)
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    for price in (1_900, 1_800, 1_700):  # -15% with no keeper around: equity < 0
        set_price("WETH", price)
    e, _, _ = ch.margin(account)
    assert e < 0
    settlement_before = ch.settlement(account)
    keeper_before = usdc.balanceOf(keeper)
    tx = engine.liquidate(account, eth_market, 10**30, sender=keeper)
    event = liquidation_event(tx)
    bad = next(ev for ev in tx.events if ev.event_name == "BadDebt")
    # no penalty from an account with nothing left: the keeper is tipped by the insurance fund,
    # tip_rate (0.2%) of the closed notional, here about $170
    # (on the oracle price: the event's price is the fill, which for a whole close carries the
    # skew premium the close moves)
    oracle_price = protocol.oracle.price(protocol.tokens["WETH"])
    assert event.price > oracle_price  # selling a long into a long-heavy book earns the premium
    closed_notional = -event.size_closed * oracle_price // WAD
    tip = closed_notional * engine.underwater_tip_rate() // WAD // 10**12
    assert event.penalty == 0
    assert event.keeper_reward == tip > 100 * USDC
    assert usdc.balanceOf(keeper) - keeper_before == tip
    # the shortfall is exactly the settlement balance left negative once the loss is realised
    assert bad.shortfall == -(settlement_before + event.realised_pnl)
    # and it is the equity the view saw a block earlier, less the premium the fill earned, up to
    # that block's funding (< $0.001)
    premium = (event.price - oracle_price) * -event.size_closed // WAD
    assert abs(bad.shortfall * 10**12 + e + premium) < 10**15
    # what the tip left of the fund covers bad debt first, the pool the rest
    assert bad.covered_by_insurance == 1_000 * USDC - tip
    assert bad.socialised == bad.shortfall - bad.covered_by_insurance
    assert ch.insurance_balance() == 0
    assert ch.settlement(account) == 0
    assert ch.total_bad_debt() == bad.shortfall
    assert usdc.balanceOf(ch) == ch.settlement_held()


def test_liquidate__underwater_tip__only_for_a_whole_close(
    ch, protocol, make_account, trader, keeper, eth_market, set_price, fund, usdc, guardian, engine
):
    """Splitting the close of an underwater position into pieces must not multiply the tip."""
    fund(guardian, usdc, 20_000 * USDC)
    ch.fund_insurance(20_000 * USDC, sender=guardian)
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    for price in (1_900, 1_800, 1_700):
        set_price("WETH", price)
    size = ch.positions(account, eth_market).size
    rewards = []
    for _ in range(3):
        tx = engine.liquidate(account, eth_market, size // 4, sender=keeper)
        rewards.append(liquidation_event(tx).keeper_reward)
    assert rewards == [0, 0, 0]  # pieces of an underwater position earn nothing
    tx = engine.liquidate(account, eth_market, 10**30, sender=keeper)
    event = liquidation_event(tx)
    # the last call closes the rest: tipped on what it closed (a quarter), capped at $1,000
    price = protocol.oracle.price(protocol.tokens["WETH"])  # the tip is on the oracle notional
    assert (
        event.keeper_reward == min(-event.size_closed * price // WAD * engine.underwater_tip_rate() // WAD, 1_000 * WAD) // 10**12
    )


def test_liquidate__underwater_tip__capped_at_1000_usd(
    ch, protocol, make_account, trader, keeper, eth_market, set_price, fund, usdc, guardian, engine
):
    """The underwater tip is 0.2% of the closed notional but never more than $1,000: an $800,000
    position closed whole underwater would earn $1,360 at the rate and is paid $1,000."""
    fund(guardian, usdc, 5_000 * USDC)
    ch.fund_insurance(5_000 * USDC, sender=guardian)
    account = make_account(trader, collateral_usd=80_000, leverage=10)
    for price in (1_900, 1_800, 1_700):
        set_price("WETH", price)
    assert ch.margin(account)[0] < 0
    oracle_price = protocol.oracle.price(protocol.tokens["WETH"])
    tx = engine.liquidate(account, eth_market, 10**30, sender=keeper)
    event = liquidation_event(tx)
    at_rate = -event.size_closed * oracle_price // WAD * engine.underwater_tip_rate() // WAD
    assert at_rate > 1_000 * WAD  # the rate alone would pay more
    assert event.penalty == 0 and event.keeper_reward == 1_000 * USDC


def test_liquidate__underwater_tip__capped_by_the_insurance_fund(ch, make_account, trader, keeper, eth_market, set_price, engine):
    assert ch.insurance_balance() == 0
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    for price in (1_900, 1_800, 1_700):
        set_price("WETH", price)
    tx = engine.liquidate(account, eth_market, 10**30, sender=keeper)
    assert liquidation_event(tx).keeper_reward == 0  # an empty fund tips nothing


def test_liquidate__self_liquidation__owner_loses(ch, make_account, trader, accounts, eth_market, set_price, usdc, engine):
    second_address = accounts[7]
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    drop_until_liquidatable(ch, set_price, account, step=0.01)
    e_before, _, _ = ch.margin(account)
    wallet_before = usdc.balanceOf(second_address)
    tx = engine.liquidate(account, eth_market, 10**30, sender=second_address)
    event = liquidation_event(tx)
    e_after, _, _ = ch.margin(account)
    gained = (usdc.balanceOf(second_address) - wallet_before) * 10**12
    lost = e_before - e_after
    assert event.penalty > 0
    assert gained < lost  # net -(1 - keeper_share) * penalty
    assert lost - gained >= (event.penalty - event.keeper_reward) * 10**12 - 10**12


def test_liquidate__collateral_then_bad_debt(
    ch, protocol, fund, trader, keeper, eth_market, set_price, usdc, seeded_pool, engine
):
    weth = protocol.tokens["WETH"]
    fund(trader, weth, 5 * WAD)  # $10,000 of WETH at a 0.85 haircut
    ch.deposit(weth, 5 * WAD, 0, sender=trader)
    account = account_id(trader)
    trade_now(ch, eth_market, 40 * WAD, 0, 0, sender=trader)  # long 40 ETH on WETH collateral
    for price in (1_900, 1_800, 1_700, 1_600):
        set_price("WETH", price)
    engine.liquidate(account, eth_market, 10**30, sender=keeper)
    assert ch.market_mask(account) == 0
    e, _, _ = ch.margin(account)
    assert e < 0 and ch.settlement(account) < 0  # debt waits for the collateral sale

    with ape.reverts("liquidation: zero amount"):
        engine.liquidate_collateral(account, weth, 0, sender=keeper)
    written, index_at_write = ch.debt_of(account)
    fund(keeper, usdc, -ch.settlement(account) * 2)
    tx = engine.liquidate_collateral(account, weth, 10**30, sender=keeper)
    # the debt grew by interest until the sale; the sale left nothing owed, so the index stays
    # at the value the sale accrued it to
    assert ch.total_debt() == 0
    debt = debt_now(written, ch.debt_index(), index_at_write)
    sale = next(ev for ev in tx.events if ev.event_name == "CollateralLiquidation")
    price = protocol.oracle.price(weth)
    discount = ch.collaterals(1).liquidation_discount
    # paid at the oracle price less the discount, rounded up against the buyer
    assert sale.paid == -(-sale.amount * (price * (WAD - discount) // WAD) // (WAD * 10**12))
    assert weth.balanceOf(keeper) == sale.amount == 5 * WAD
    bad = next(ev for ev in tx.events if ev.event_name == "BadDebt")
    assert bad.shortfall == debt - sale.paid
    assert ch.settlement(account) == 0
    assert usdc.balanceOf(ch) == ch.settlement_held()
    assert weth.balanceOf(ch) == ch.collaterals(1).total


def test_liquidate_collateral__positions_open__reverts(ch, protocol, make_account, trader, keeper, engine):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    with ape.reverts("liquidation: close positions first"):
        engine.liquidate_collateral(account, protocol.tokens["WETH"], 1, sender=keeper)


def test_liquidate_collateral__solvent_account__reverts(ch, protocol, fund, trader, keeper, engine):
    weth = protocol.tokens["WETH"]
    fund(trader, weth, WAD)
    ch.deposit(weth, WAD, 0, sender=trader)
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate_collateral(account_id(trader), weth, WAD, sender=keeper)


def test_liquidate__dust_position_in_second_market__does_not_block(
    ch, protocol, make_account, trader, keeper, eth_market, btc_market, set_price, fund, usdc, engine
):
    # 20 ETH long on $10k plus a $30 BTC position: once health is low, closing ETH in full must
    # not revert just because the account keeps its BTC dust
    account = make_account(trader, collateral_usd=10_000, leverage=0)
    trade_now(ch, eth_market, 20 * WAD, 0, 0, sender=trader)
    trade_now(ch, btc_market, WAD // 1_000, 0, 0, sender=trader)  # 0.001 BTC, $30
    price = 2_000
    while health_of(ch, account) >= 4 * WAD // 10:
        price *= 0.99
        set_price("WETH", price)
    e, _, _ = ch.margin(account)
    assert e > 0
    engine.liquidate(account, eth_market, 10**30, sender=keeper)
    assert ch.positions(account, eth_market).size == 0
    # the penalty left equity for the position still open
    e_after, _, _ = ch.margin(account)
    assert e_after > 0
    engine.liquidate(account, btc_market, 10**30, sender=keeper) if health_of(ch, account) < WAD else None
    assert usdc.balanceOf(ch) == ch.settlement_held()


def test_trade__owner_closes_underwater_account__bad_debt_booked(ch, make_account, trader, eth_market, set_price):
    account = make_account(trader, collateral_usd=10_000, leverage=10)
    for price in (1_900, 1_800, 1_750):
        set_price("WETH", price)
    size = ch.positions(account, eth_market).size
    tx = trade_now(ch, eth_market, -size, 0, 0, sender=trader)
    bad = next(e for e in tx.events if e.event_name == "BadDebt")
    assert bad.shortfall > 0
    assert ch.settlement(account) == 0
    assert ch.total_bad_debt() == bad.shortfall


def test_liquidate__no_settlement_tokens_on_hand__not_blocked_keeper_paid_what_exists(project, deployer, trader, keeper, lp):
    """An empty protocol (no pool, no insurance) holds no settlement token: the liquidation goes
    through, the penalty the account can only owe is lent by the pool (which holds the claim),
    and the keeper is paid what the insurance fund and the pool's free liquidity hold: nothing.
    No balance is ever credited that the tokens held do not cover."""
    from dataclasses import replace

    from marginsim.protocol import DEFAULT_CONFIG, deploy_protocol

    # with no pool the only debt is the opening fee, which the pool's balance now holds: the
    # ceiling at 100% of that balance lets the trade through (0.5, the default, would refuse it)
    p = deploy_protocol(project, deployer, replace(DEFAULT_CONFIG, debt_ceiling=1.0))
    reserve_out_of_the_way(p, deployer)  # no pool at all: the reserve would refuse any position
    ch, usdc, wbtc = p.clearinghouse, p.settlement, p.tokens["WBTC"]
    wbtc.mint(trader, 10**7, sender=trader)
    wbtc.approve(ch, 10**7, sender=trader)
    ch.deposit(wbtc, 10**7, 0, sender=trader)  # 0.1 WBTC, $3,000
    trade_now(ch, p.markets["ETH-PERP"], 15 * WAD, 0, 0, sender=trader)
    p.publish("WETH", 1_880 * 10**8, deployer)
    victim = account_id(trader)
    assert health_of(ch, victim) < WAD and usdc.balanceOf(ch) == 0
    debt_before, pool_before = ch.total_debt(), ch.pool_balance()

    tx = p.liquidation_engine.liquidate(victim, p.markets["ETH-PERP"], 2**256 - 1, sender=keeper)
    event = liquidation_event(tx)
    assert event.penalty > 0 and event.keeper_reward == 0
    assert usdc.balanceOf(keeper) == 0 and ch.settlement(account_id(keeper)) == 0
    assert ch.insurance_balance() == 0  # the fund holds no debt as if it were tokens
    # the penalty (and the realised loss) became the victim's debt, lent by the pool
    assert ch.pool_balance() - pool_before == ch.total_debt() - debt_before > event.penalty
    assert usdc.balanceOf(ch) == ch.settlement_held() == 0
