"""Governance of the Clearinghouse: who may call each setter, every risk-parameter bound with its
exact message (checked by the Configurator, applied through the Clearinghouse's apply_*), the
liquidation-spiral bound from both sides, pause roles, connect once (pool, configurator and
liquidation engine), the liquidation parameters kept by the LiquidationEngine and set only through
the Configurator, and the two-step ownership transfer of the owned contracts (the Clearinghouse has no owner: its
emergency controls are the Configurator's)."""

import dataclasses

import ape
import pytest

from marginsim import risk
from marginsim.orders import trade_now
from marginsim.protocol import account_id
from tests.conftest import USDC, WAD

NOT_OWNER = "ownable: caller is not the owner"
NOT_NEW_OWNER = "ownable_2step: caller is not the new owner"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
HOUR = 3_600
MAX_HORIZON = 7 * 86_400

# IClearinghouse.MarketParams in field order, as marginsim.risk mirrors it
MARKET_FIELDS = tuple(f.name for f in dataclasses.fields(risk.MarketParams))


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, ch, usdc, fund, seeded_pool, set_price, deployer, guardian, attacker, trader, lp):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once instead of rebasing."""


def market_params(ch, market, **changes):
    """Market `market`'s on-chain parameters as a MarketParams tuple, some fields replaced."""
    current = ch.markets(market)
    unknown = set(changes) - set(MARKET_FIELDS)
    assert not unknown, unknown
    return tuple(changes.get(field, getattr(current, field)) for field in MARKET_FIELDS)


def as_tuple(struct):
    return tuple(getattr(struct, field) for field in MARKET_FIELDS)


def smallest_safe_buffer(penalty, base_mmr):
    """The least buffer b with floor((1 + b) * base_mmr) > penalty: the no-spiral bound as the
    liquidation formula rounds it."""
    b = max(0, (penalty * WAD) // base_mmr - WAD)
    while (WAD + b) * base_mmr // WAD <= penalty:
        b += 1
    return b


@pytest.fixture
def make_priced_token(protocol, deployer, make_token, make_aggregator):
    """A fresh token with an OracleRouter feed, ready for list_collateral."""

    def make_priced_token(decimals=18, symbol="NEW", price_usd=10):
        token = make_token(decimals, symbol)
        feed = make_aggregator(price_usd=price_usd, decimals=8, description=f"{symbol} / USD")
        protocol.oracle.set_feed(token, feed, HOUR, WAD // 100, 1_000_000 * WAD, 2 * 10**17, 8 * 10**17, sender=deployer)
        return token

    return make_priced_token


def events(receipt, name):
    return [e for e in receipt.events if e.event_name == name]


# ---------------------------------------------------------------- who may call


CONFIGURATOR_OWNER_CALLS = {
    "set_guardian": lambda p, who: p.configurator.set_guardian(who, sender=who),
    "unpause": lambda p, who: p.configurator.unpause(sender=who),
    "set_reduce_only-lift": lambda p, who: p.configurator.set_reduce_only(1, False, sender=who),
    "list_collateral": lambda p, who: p.configurator.list_collateral(p.tokens["WETH"], WAD // 2, 1, WAD // 10, sender=who),
    "set_collateral": lambda p, who: p.configurator.set_collateral(p.tokens["WETH"], WAD // 2, 1, WAD // 10, True, sender=who),
    "list_market": lambda p, who: p.configurator.list_market(market_params(p.clearinghouse, 1), sender=who),
    "set_market": lambda p, who: p.configurator.set_market(1, market_params(p.clearinghouse, 1), sender=who),
    "set_liquidation_parameters": lambda p, who: p.configurator.set_liquidation_parameters(0, WAD // 2, 0, sender=who),
    "set_underwater_tip": lambda p, who: p.configurator.set_underwater_tip(0, sender=who),
    "transfer_ownership": lambda p, who: p.configurator.transfer_ownership(who, sender=who),
}

APPLY_CALLS = {
    "apply_collateral": lambda p, who: p.clearinghouse.apply_collateral(
        p.tokens["WETH"], 10**18, WAD // 2, 1, WAD // 10, True, sender=who
    ),
    "apply_market": lambda p, who: p.clearinghouse.apply_market(1, market_params(p.clearinghouse, 1), 0, sender=who),
}

ENGINE_APPLY_CALLS = {
    "apply_liquidation_parameters": lambda p, who: p.liquidation_engine.apply_liquidation_parameters(0, WAD, 0, sender=who),
    "apply_underwater_tip": lambda p, who: p.liquidation_engine.apply_underwater_tip(WAD, sender=who),
}


def liquidation_parameters(engine):
    return (engine.liquidation_buffer(), engine.full_liquidation_health(), engine.dust_notional(), engine.underwater_tip_rate())


def test_clearinghouse__connect_by_anyone_but_its_deployer__reverts(protocol, attacker):
    """The core has no owner: only the account that deployed it may connect it, once."""
    with ape.reverts("clearinghouse: not deployer"):
        protocol.clearinghouse.connect(attacker, attacker, attacker, attacker, sender=attacker)


@pytest.mark.parametrize("setter", list(CONFIGURATOR_OWNER_CALLS))
def test_configurator_setter__not_owner__reverts(protocol, attacker, setter):
    with ape.reverts(NOT_OWNER):
        CONFIGURATOR_OWNER_CALLS[setter](protocol, attacker)


@pytest.mark.parametrize("setter", ["set_guardian", "unpause", "set_reduce_only-lift"])
def test_configurator_setter__guardian_is_not_owner__reverts(protocol, deployer, guardian, setter):
    protocol.configurator.set_guardian(guardian, sender=deployer)
    with ape.reverts(NOT_OWNER):
        CONFIGURATOR_OWNER_CALLS[setter](protocol, guardian)


def test_apply_emergency__not_configurator__reverts(protocol, deployer, guardian, attacker):
    """Pause and reduce-only reach the core only through the Configurator's roles."""
    for who in (deployer, guardian, attacker):
        with ape.reverts("clearinghouse: not configurator"):
            protocol.clearinghouse.apply_emergency(0, 1, sender=who)
        with ape.reverts("clearinghouse: not configurator"):
            protocol.clearinghouse.apply_emergency(1, 1, sender=who)
    assert not protocol.clearinghouse.paused() and not protocol.configurator.reduce_only(1)


@pytest.mark.parametrize("caller", ["attacker", "deployer"], ids=["stranger", "deployer"])
@pytest.mark.parametrize("setter", list(APPLY_CALLS))
def test_apply__not_configurator__reverts(protocol, request, setter, caller):
    """The bounds live in the Configurator: nobody, not even the owner, may bypass them."""
    with ape.reverts("clearinghouse: not configurator"):
        APPLY_CALLS[setter](protocol, request.getfixturevalue(caller))


ENGINE_ONLY_CALLS = {
    "liquidation_close": lambda p, who: p.clearinghouse.liquidation_close(
        account_id(who), 1, -WAD, 2_000 * WAD, 2_000 * WAD, 0, 20_000 * USDC, who, sender=who
    ),
    "seize_collateral": lambda p, who: p.clearinghouse.seize_collateral(account_id(who), 1, 1, 0, who, sender=who),
}


@pytest.mark.parametrize("caller", ["attacker", "deployer"], ids=["stranger", "deployer"])
@pytest.mark.parametrize("function", list(ENGINE_ONLY_CALLS))
def test_liquidation_calls__not_engine__reverts(protocol, ch, request, function, caller):
    """Closing at a chosen price, paying a chosen reward, seizing collateral: only the engine,
    which sized and priced them from a snapshot in the same transaction."""
    insurance = ch.insurance_balance()
    with ape.reverts("clearinghouse: not liquidation engine"):
        ENGINE_ONLY_CALLS[function](protocol, request.getfixturevalue(caller))
    assert ch.insurance_balance() == insurance


@pytest.mark.parametrize("market", [0, 3, 2**256 - 1])
def test_liquidation_snapshot__unknown_market__reverts(ch, trader, market):
    with ape.reverts("clearinghouse: unknown market"):
        ch.liquidation_snapshot(account_id(trader), market)


@pytest.mark.parametrize("caller", ["attacker", "deployer", "guardian"], ids=["stranger", "owner", "guardian"])
@pytest.mark.parametrize("setter", list(ENGINE_APPLY_CALLS))
def test_engine_apply__not_configurator__reverts(protocol, engine, request, setter, caller):
    """The liquidation parameters live in the engine, but their bounds in the Configurator:
    nobody else may set them, not even the owner of the Clearinghouse and the Configurator."""
    before = liquidation_parameters(engine)
    with ape.reverts("liquidation: not configurator"):
        ENGINE_APPLY_CALLS[setter](protocol, request.getfixturevalue(caller))
    assert liquidation_parameters(engine) == before


def test_engine_apply__a_second_configurator__reverts(project, protocol, deployer, engine):
    """A second Configurator, even on the same Clearinghouse, is not the one it was connected to."""
    rogue = deployer.deploy(project.Configurator, protocol.clearinghouse)
    before = liquidation_parameters(engine)
    with ape.reverts("liquidation: not configurator"):
        rogue.set_underwater_tip(0, sender=deployer)
    with ape.reverts("liquidation: not configurator"):
        rogue.set_liquidation_parameters(0, WAD // 2, 0, sender=deployer)
    assert liquidation_parameters(engine) == before


def test_configurator__wired_to_the_clearinghouse(protocol, ch, configurator, engine):
    assert ch.configurator() == configurator.address
    assert configurator.CLEARINGHOUSE() == ch.address
    assert configurator.ORACLE() == protocol.oracle.address
    assert ch.pool() == protocol.pool.address
    assert ch.liquidation_engine() == engine.address
    assert engine.CLEARINGHOUSE() == ch.address
    assert engine.ORACLE() == protocol.oracle.address
    assert engine.SETTLEMENT_TO_WAD() == ch.SETTLEMENT_TO_WAD() == 10**12


def test_liquidation_parameters__deployed_from_the_config__read_from_the_engine(protocol, engine):
    config = protocol.config
    assert liquidation_parameters(engine) == (
        int(config.liquidation_buffer * 10**18),
        int(config.full_liquidation_health * 10**18),
        int(config.dust_notional_usd) * WAD,
        2 * 10**15,
    )


# ---------------------------------------------------------------- set_market / list_market bounds


MARKET_VIOLATIONS = {
    # case: (field changes, message); each from the ETH market's defaults with one bound broken
    "base_mmr-below-min": ({"base_mmr": 10**15 - 1}, "configurator: bad maintenance rate"),
    "base_mmr-above-max": ({"base_mmr": WAD // 2 + 1}, "configurator: bad maintenance rate"),
    "tier_size-zero": ({"tier_size": 0}, "configurator: bad tier size"),
    "tier_size-beyond-80-bits": ({"tier_size": 2**80}, "configurator: bad tier size"),
    "tier_mmr-above-max": ({"tier_mmr": WAD // 10 + 1}, "configurator: bad tier rate"),
    "vol_k-above-max": ({"vol_k": 10 * WAD + 1}, "configurator: bad vol k"),
    "horizon-below-min": ({"liquidation_horizon": 59}, "configurator: bad horizon"),
    "horizon-above-max": ({"liquidation_horizon": MAX_HORIZON + 1}, "configurator: bad horizon"),
    "imr_multiplier-one": ({"imr_multiplier": WAD}, "configurator: bad initial multiplier"),
    "imr_multiplier-above-max": ({"imr_multiplier": 10 * WAD + 1}, "configurator: bad initial multiplier"),
    # 0.5 * (2 + 1e-18) rounds up to just above 100%
    "initial-above-100pct": ({"base_mmr": WAD // 2, "imr_multiplier": 2 * WAD + 1}, "configurator: initial above 100%"),
    "fee-above-max": ({"fee": WAD // 100 + 1}, "configurator: bad fee"),
    "penalty-above-max": ({"penalty": WAD // 10 + 1}, "configurator: bad penalty"),
    # buffer 0.1, base 3%: the penalty must stay below floor(1.1 * 3%) = 3.3%
    "penalty-spiral": ({"penalty": 33 * 10**15}, "configurator: liquidation spiral"),
    "keeper_share-above-max": ({"keeper_share": 9 * WAD // 10 + 1}, "configurator: bad keeper share"),
    "skew_scale-zero": ({"skew_scale": 0}, "configurator: bad skew scale"),
    "skew_scale-beyond-88-bits": ({"skew_scale": 2**88}, "configurator: bad skew scale"),
    "oi_cap-above-skew_scale": ({"oi_cap": 1_000_000 * WAD + 1}, "configurator: cap above skew scale"),
    # S * (1 - keeper_share) * min(penalty, full_liquidation_health * base_mmr)
    #   = 1M * 0.5 * min(2%, 0.5 * 3%) = 7,500 units
    "oi_cap-above-premium-bound": ({"oi_cap": 7_500 * WAD + 1}, "configurator: cap above premium bound"),
    "funding-above-max": ({"max_funding_rate": WAD // 10 + 1}, "configurator: bad funding rate"),
}

MARKET_AT_BOUNDS = {
    "base_mmr-min": {"base_mmr": 10**15, "penalty": 10**15, "oi_cap": 250 * WAD},  # 1M * 0.5 * 0.05%
    "base_mmr-max-with-initial-100pct": {"base_mmr": WAD // 2, "imr_multiplier": 2 * WAD},
    "tier_size-largest": {"tier_size": 2**80 - 1},
    "tier_mmr-max": {"tier_mmr": WAD // 10},
    "vol_k-max": {"vol_k": 10 * WAD},
    "horizon-min": {"liquidation_horizon": 60},
    "horizon-max": {"liquidation_horizon": MAX_HORIZON},
    "imr_multiplier-max": {"imr_multiplier": 10 * WAD},
    "fee-max": {"fee": WAD // 100},
    "penalty-just-below-spiral": {"penalty": 33 * 10**15 - 1},
    "keeper_share-max": {"keeper_share": 9 * WAD // 10, "oi_cap": 1_500 * WAD},  # 1M * 0.1 * 1.5%
    "skew_scale-largest": {"skew_scale": 2**88 - 1},
    "oi_cap-at-premium-bound": {"oi_cap": 7_500 * WAD},
    "funding-max": {"max_funding_rate": WAD // 10},
}


@pytest.mark.parametrize("case", list(MARKET_VIOLATIONS))
def test_set_market__bound_violated__reverts(ch, configurator, deployer, eth_market, case):
    changes, message = MARKET_VIOLATIONS[case]
    before = as_tuple(ch.markets(eth_market))
    with ape.reverts(message):
        configurator.set_market(eth_market, market_params(ch, eth_market, **changes), sender=deployer)
    assert as_tuple(ch.markets(eth_market)) == before


# list_market runs the same checks as set_market: a few representative bounds suffice
@pytest.mark.parametrize("case", ["tier_size-zero", "initial-above-100pct", "penalty-spiral", "oi_cap-above-premium-bound"])
def test_list_market__bound_violated__reverts(ch, configurator, deployer, eth_market, case):
    changes, message = MARKET_VIOLATIONS[case]
    count = ch.market_count()
    with ape.reverts(message):
        configurator.list_market(market_params(ch, eth_market, **changes), sender=deployer)
    assert ch.market_count() == count


@pytest.mark.parametrize("case", list(MARKET_AT_BOUNDS))
def test_set_market__at_bound__accepted_and_applied(ch, configurator, deployer, eth_market, case):
    if case == "base_mmr-min":
        configurator.set_underwater_tip(0, sender=deployer)  # the tip must stay below base_mmr
    params = market_params(ch, eth_market, **MARKET_AT_BOUNDS[case])
    tx = configurator.set_market(eth_market, params, sender=deployer)
    assert as_tuple(ch.markets(eth_market)) == params
    [event] = events(tx, "MarketSet")
    assert event.market == eth_market


def test_set_market__applied_values_drive_trading(ch, configurator, deployer, trader, eth_market, fund, usdc):
    """The hot paths read packed copies of the parameters: a change must reach them too."""
    fund(trader, usdc, 10_000 * USDC)
    ch.deposit(usdc, 10_000 * USDC, 0, sender=trader)
    configurator.set_market(eth_market, market_params(ch, eth_market, oi_cap=3 * WAD, fee=WAD // 100), sender=deployer)
    with ape.reverts("orders: open interest cap"):
        trade_now(ch, eth_market, 3 * WAD + 1, 0, 0, sender=trader)
    tx = trade_now(ch, eth_market, 3 * WAD, 0, 0, sender=trader)
    [trade] = events(tx, "Trade")
    assert trade.fee == -(-3 * trade.fill_price // 100 // 10**12)  # 1% of notional, rounded up


def test_set_market__asset_changed__reverts(protocol, ch, configurator, deployer, eth_market):
    with ape.reverts("configurator: asset fixed"):
        configurator.set_market(eth_market, market_params(ch, eth_market, asset=protocol.tokens["WBTC"].address), sender=deployer)


@pytest.mark.parametrize("market", [0, 3])
def test_set_market__unknown_market__reverts(ch, configurator, deployer, eth_market, market):
    with ape.reverts("configurator: unknown market"):
        configurator.set_market(market, market_params(ch, eth_market), sender=deployer)


def test_set_market__accrues_funding_at_old_rate_first(
    ch, configurator, usdc, deployer, trader, eth_market, chain, set_price, fund
):
    fund(trader, usdc, 100_000 * USDC)
    ch.deposit(usdc, 100_000 * USDC, 0, sender=trader)
    trade_now(ch, eth_market, 100 * WAD, 0, 0, sender=trader)  # a long skew: funding accrues
    index_before = ch.market_state(eth_market).funding_index
    chain.pending_timestamp += HOUR // 2
    set_price("WETH", 2_000)
    tx = configurator.set_market(eth_market, market_params(ch, eth_market, max_funding_rate=0), sender=deployer)
    state = ch.market_state(eth_market)
    assert state.funding_index > index_before  # the half hour at the old rate was booked
    assert state.last_funding_time == tx.timestamp


def test_list_market__new_id_and_funding_clock(ch, configurator, deployer, eth_market):
    count = ch.market_count()
    params = market_params(ch, eth_market, fee=0)
    tx = configurator.list_market(params, sender=deployer)
    assert ch.market_count() == count + 1
    assert as_tuple(ch.markets(count + 1)) == params
    assert ch.market_state(count + 1).last_funding_time == tx.timestamp
    assert [e.market for e in events(tx, "MarketSet")] == [count + 1]


def test_list_market__fifteenth_is_the_last(ch, configurator, deployer, eth_market):
    params = market_params(ch, eth_market)
    while ch.market_count() < 15:  # ids 1..15 fit the market bitmask
        configurator.list_market(params, sender=deployer)
    with ape.reverts("configurator: too many markets"):
        configurator.list_market(params, sender=deployer)


def test_list_market__unpriced_asset__reverts(ch, configurator, deployer, eth_market, make_token):
    count = ch.market_count()
    with ape.reverts("oracle: unknown asset"):
        configurator.list_market(market_params(ch, eth_market, asset=make_token(18, "NOFD").address), sender=deployer)
    assert ch.market_count() == count


# ---------------------------------------------------------------- the liquidation spiral bound


def test_spiral__set_market_penalty_at_bound__reverts_just_below__accepted(ch, configurator, deployer, eth_market, engine):
    buffer = engine.liquidation_buffer()
    base_mmr = ch.markets(eth_market).base_mmr
    bound = (WAD + buffer) * base_mmr // WAD  # the penalty must stay strictly below this
    with ape.reverts("configurator: liquidation spiral"):
        configurator.set_market(eth_market, market_params(ch, eth_market, penalty=bound), sender=deployer)
    configurator.set_market(eth_market, market_params(ch, eth_market, penalty=bound - 1), sender=deployer)
    assert ch.markets(eth_market).penalty == bound - 1


def test_spiral__set_market_base_mmr_too_low_for_penalty__reverts(ch, configurator, deployer, eth_market):
    # the same bound from the maintenance side: penalty 2% needs base_mmr > 2% / 1.1
    with ape.reverts("configurator: liquidation spiral"):
        configurator.set_market(
            eth_market, market_params(ch, eth_market, base_mmr=18 * 10**15, oi_cap=4_000 * WAD), sender=deployer
        )
    configurator.set_market(eth_market, market_params(ch, eth_market, base_mmr=19 * 10**15, oi_cap=4_000 * WAD), sender=deployer)
    assert ch.markets(eth_market).base_mmr == 19 * 10**15


@pytest.mark.parametrize("market_name", ["ETH-PERP", "BTC-PERP"])
def test_spiral__lowering_buffer__reverts_below_the_bound(protocol, ch, configurator, deployer, market_name, engine):
    """A lower buffer tightens the bound: with penalty 3.2% on base 3%, a buffer of 0.1 is safe
    but one of about 0.0667 or less would make every partial liquidation lower health."""
    market = protocol.markets[market_name]
    penalty = 32 * 10**15
    configurator.set_market(market, market_params(ch, market, penalty=penalty, oi_cap=100 * WAD), sender=deployer)
    base_mmr = ch.markets(market).base_mmr
    safe = smallest_safe_buffer(penalty, base_mmr)
    assert 6 * 10**16 < safe < 7 * 10**16
    health, dust = engine.full_liquidation_health(), engine.dust_notional()

    for unsafe in (0, 5 * 10**16, safe - 1):
        with ape.reverts("configurator: liquidation spiral"):
            configurator.set_liquidation_parameters(unsafe, health, dust, sender=deployer)
    assert engine.liquidation_buffer() == 10**17  # unchanged

    configurator.set_liquidation_parameters(safe, health, dust, sender=deployer)
    assert engine.liquidation_buffer() == safe
    # and at that buffer the market cannot be moved onto the spiral either
    with ape.reverts("configurator: liquidation spiral"):
        configurator.set_market(market, market_params(ch, market, penalty=penalty + 1), sender=deployer)


def test_spiral__raising_buffer__always_allowed(ch, configurator, deployer, engine):
    configurator.set_liquidation_parameters(5 * 10**17, engine.full_liquidation_health(), engine.dust_notional(), sender=deployer)
    assert engine.liquidation_buffer() == 5 * 10**17


def test_spiral__default_markets__safe_at_zero_buffer(ch, configurator, deployer, engine):
    # penalty 2% < base 3%: no buffer is needed
    configurator.set_liquidation_parameters(0, engine.full_liquidation_health(), engine.dust_notional(), sender=deployer)
    assert engine.liquidation_buffer() == 0


# ---------------------------------------------------------------- set_liquidation_parameters bounds


LIQUIDATION_VIOLATIONS = {
    "buffer-above-max": ((WAD // 2 + 1, WAD // 2, 0), "configurator: bad buffer"),
    "full-health-zero": ((WAD // 10, 0, 0), "configurator: bad full liquidation health"),
    "full-health-above-one": ((WAD // 10, WAD + 1, 0), "configurator: bad full liquidation health"),
    "dust-above-max": ((WAD // 10, WAD // 2, 10_000 * WAD + 1), "configurator: bad dust"),
}


@pytest.mark.parametrize("case", list(LIQUIDATION_VIOLATIONS))
def test_set_liquidation_parameters__bound_violated__reverts(ch, configurator, deployer, case, engine):
    args, message = LIQUIDATION_VIOLATIONS[case]
    before = (engine.liquidation_buffer(), engine.full_liquidation_health(), engine.dust_notional())
    with ape.reverts(message):
        configurator.set_liquidation_parameters(*args, sender=deployer)
    assert (engine.liquidation_buffer(), engine.full_liquidation_health(), engine.dust_notional()) == before


def test_set_liquidation_parameters__at_bounds__applied_with_event(ch, configurator, deployer, engine):
    tx = configurator.set_liquidation_parameters(WAD // 2, WAD, 10_000 * WAD, sender=deployer)
    assert (engine.liquidation_buffer(), engine.full_liquidation_health(), engine.dust_notional()) == (
        WAD // 2,
        WAD,
        10_000 * WAD,
    )
    [event] = events(tx, "LiquidationParametersSet")
    assert (event.buffer, event.full_liquidation_health, event.dust_notional) == (WAD // 2, WAD, 10_000 * WAD)
    # the other ends; full-liquidation health cannot go below 0.5 here, as the listed markets'
    # caps sit at the premium bound (test_premium_bound__lowering_full_liquidation_health__reverts)
    configurator.set_liquidation_parameters(0, WAD // 2, 0, sender=deployer)
    assert (engine.liquidation_buffer(), engine.full_liquidation_health(), engine.dust_notional()) == (0, WAD // 2, 0)


# ---------------------------------------------------------------- collateral setters


COLLATERAL_VIOLATIONS = {
    # (weight, discount, message)
    "weight-zero": (0, WAD // 10, "configurator: bad weight"),
    "weight-above-max": (99 * WAD // 100 + 1, 10**15, "configurator: bad weight"),
    "discount-below-min": (WAD // 2, 10**15 - 1, "configurator: bad discount"),
    # strictly below the haircut: a sale must raise more than the haircut value
    "discount-equal-to-haircut": (85 * WAD // 100, 15 * WAD // 100, "configurator: bad discount"),
    "discount-above-haircut": (85 * WAD // 100, 15 * WAD // 100 + 1, "configurator: bad discount"),
}


@pytest.mark.parametrize("case", list(COLLATERAL_VIOLATIONS))
def test_set_collateral__bound_violated__reverts(protocol, ch, configurator, deployer, case):
    weight, discount, message = COLLATERAL_VIOLATIONS[case]
    weth = protocol.tokens["WETH"]
    before = ch.collaterals(ch.collateral_slot(weth))
    with ape.reverts(message):
        configurator.set_collateral(weth, weight, before.cap, discount, True, sender=deployer)
    assert ch.collaterals(ch.collateral_slot(weth)) == before


@pytest.mark.parametrize("case", ["weight-zero", "discount-equal-to-haircut"])
def test_list_collateral__bound_violated__reverts(ch, configurator, deployer, make_priced_token, case):
    weight, discount, message = COLLATERAL_VIOLATIONS[case]
    token = make_priced_token()
    count = ch.collateral_count()
    with ape.reverts(message):
        configurator.list_collateral(token, weight, 10**24, discount, sender=deployer)
    assert ch.collateral_count() == count
    assert ch.collateral_slot(token) == 0


def test_set_collateral__at_bounds__applied_with_event(protocol, ch, configurator, deployer):
    weth = protocol.tokens["WETH"]
    slot = ch.collateral_slot(weth)
    tx = configurator.set_collateral(weth, 99 * WAD // 100, 5 * 10**18, WAD // 100 - 1, False, sender=deployer)
    col = ch.collaterals(slot)
    assert (col.token, col.unit) == (weth.address, 10**18)  # identity untouched
    assert (col.weight, col.cap, col.liquidation_discount, col.enabled) == (99 * WAD // 100, 5 * 10**18, WAD // 100 - 1, False)
    [event] = events(tx, "CollateralSet")
    assert (event.token, event.weight, event.cap, event.liquidation_discount, event.enabled) == (
        weth.address,
        99 * WAD // 100,
        5 * 10**18,
        WAD // 100 - 1,
        False,
    )
    configurator.set_collateral(weth, 1, 0, 10**15, True, sender=deployer)  # the other ends
    assert ch.collaterals(slot).weight == 1
    assert ch.collateral_count() == 3  # a change never takes a new slot


def test_set_collateral__unknown_token__reverts(configurator, deployer, make_priced_token):
    with ape.reverts("configurator: unknown token"):
        configurator.set_collateral(make_priced_token(), WAD // 2, 1, WAD // 10, True, sender=deployer)


def test_list_collateral__new_slot(ch, configurator, deployer, make_priced_token):
    token = make_priced_token(decimals=8)
    count = ch.collateral_count()
    configurator.list_collateral(token, WAD // 2, 10**12, WAD // 10, sender=deployer)
    slot = count + 1
    assert ch.collateral_count() == slot
    assert ch.collateral_slot(token) == slot
    col = ch.collaterals(slot)
    assert (col.token, col.unit, col.weight, col.cap, col.total, col.enabled) == (token.address, 10**8, WAD // 2, 10**12, 0, True)


@pytest.mark.parametrize("which", ["zero", "settlement"])
def test_list_collateral__bad_token__reverts(configurator, usdc, deployer, which):
    token = ZERO_ADDRESS if which == "zero" else usdc.address
    with ape.reverts("configurator: bad token"):
        configurator.list_collateral(token, WAD // 2, 1, WAD // 10, sender=deployer)


def test_list_collateral__already_listed__reverts(protocol, configurator, deployer):
    with ape.reverts("configurator: already listed"):
        configurator.list_collateral(protocol.tokens["WBTC"], WAD // 2, 1, WAD // 10, sender=deployer)


def test_list_collateral__more_than_18_decimals__reverts(configurator, deployer, make_priced_token):
    with ape.reverts("configurator: bad decimals"):
        configurator.list_collateral(make_priced_token(decimals=19), WAD // 2, 1, WAD // 10, sender=deployer)


def test_list_collateral__unpriced_token__reverts(ch, configurator, deployer, make_token):
    token = make_token(18, "NOFD")
    count = ch.collateral_count()
    with ape.reverts("oracle: unknown asset"):
        configurator.list_collateral(token, WAD // 2, 1, WAD // 10, sender=deployer)
    assert ch.collateral_count() == count
    assert ch.collateral_slot(token) == 0


def test_list_collateral__seventh_is_the_last(ch, configurator, deployer, make_priced_token):
    while ch.collateral_count() < 7:  # slots 1..7; slot 0 is the settlement token
        configurator.list_collateral(make_priced_token(), WAD // 2, 1, WAD // 10, sender=deployer)
    with ape.reverts("configurator: too many collaterals"):
        configurator.list_collateral(make_priced_token(), WAD // 2, 1, WAD // 10, sender=deployer)


# ---------------------------------------------------------------- pause, guardian, reduce-only


def test_pause__by_guardian__paused_with_event(configurator, ch, deployer, guardian):
    configurator.set_guardian(guardian, sender=deployer)
    tx = configurator.pause(sender=guardian)
    assert ch.paused()
    assert [e.by for e in events(tx, "Paused")] == [guardian.address]


def test_pause__by_owner__paused(configurator, ch, deployer, guardian):
    configurator.set_guardian(guardian, sender=deployer)
    configurator.pause(sender=deployer)
    assert ch.paused()


@pytest.mark.parametrize("caller", ["attacker", "trader"])
def test_pause__by_anyone_else__reverts(configurator, ch, deployer, guardian, request, caller):
    configurator.set_guardian(guardian, sender=deployer)
    with ape.reverts("configurator: not guardian"):
        configurator.pause(sender=request.getfixturevalue(caller))
    assert not ch.paused()


def test_pause__configurator_ownership_carries_the_pause(ch, configurator, deployer, guardian, attacker):
    """The Configurator's owner holds the emergency controls: a new owner may pause and lift,
    the old one may no longer lift."""
    configurator.set_guardian(guardian, sender=deployer)
    configurator.transfer_ownership(attacker, sender=deployer)
    configurator.accept_ownership(sender=attacker)
    configurator.pause(sender=attacker)
    with ape.reverts(NOT_OWNER):
        configurator.unpause(sender=deployer)
    configurator.unpause(sender=attacker)
    assert not ch.paused()


def test_pause__replaced_guardian__loses_the_role(configurator, ch, deployer, guardian, attacker):
    configurator.set_guardian(guardian, sender=deployer)
    tx = configurator.set_guardian(attacker, sender=deployer)
    assert configurator.guardian() == attacker.address
    assert [e.guardian for e in events(tx, "GuardianSet")] == [attacker.address]
    with ape.reverts("configurator: not guardian"):
        configurator.pause(sender=guardian)


def test_unpause__owner_only(configurator, ch, deployer, guardian):
    configurator.set_guardian(guardian, sender=deployer)
    configurator.pause(sender=guardian)
    with ape.reverts(NOT_OWNER):
        configurator.unpause(sender=guardian)
    assert ch.paused()
    tx = configurator.unpause(sender=deployer)
    assert not ch.paused()
    assert [e.by for e in events(tx, "Unpaused")] == [deployer.address]


def test_set_reduce_only__guardian_sets_owner_lifts(configurator, ch, deployer, guardian, attacker, eth_market):
    configurator.set_guardian(guardian, sender=deployer)
    with ape.reverts("configurator: not guardian"):
        configurator.set_reduce_only(eth_market, True, sender=attacker)
    tx = configurator.set_reduce_only(eth_market, True, sender=guardian)
    assert configurator.reduce_only(eth_market)
    [event] = events(tx, "ReduceOnlySet")
    assert (event.market, event.reduce_only) == (eth_market, True)
    with ape.reverts(NOT_OWNER):
        configurator.set_reduce_only(eth_market, False, sender=guardian)
    configurator.set_reduce_only(eth_market, False, sender=deployer)
    assert not configurator.reduce_only(eth_market)


@pytest.mark.parametrize("market", [0, 3])
def test_set_reduce_only__unknown_market__reverts(configurator, ch, deployer, market):
    """Market 0 is not a market (the core reads it as the pause): refused, nothing paused."""
    with ape.reverts("configurator: unknown market"):
        configurator.set_reduce_only(market, True, sender=deployer)
    assert not ch.paused()


# ---------------------------------------------------------------- connect


@pytest.fixture
def fresh_clearinghouse(project, protocol, deployer, usdc):
    return deployer.deploy(project.Clearinghouse, protocol.oracle, usdc, 6)


@pytest.fixture
def fresh_parts(project, fresh_clearinghouse, deployer):
    """A pool, a configurator and a liquidation engine deployed against the fresh clearinghouse."""
    return (
        deployer.deploy(project.LiquidityPool, fresh_clearinghouse, "fresh LP", "fLP"),
        deployer.deploy(project.Configurator, fresh_clearinghouse),
        deployer.deploy(project.LiquidationEngine, fresh_clearinghouse),
        deployer.deploy(project.Orders, fresh_clearinghouse, deployer.deploy(project.MarginLens, fresh_clearinghouse)),
    )


def wiring(ch):
    return (ch.pool(), ch.configurator(), ch.liquidation_engine(), ch.orders())


@pytest.mark.parametrize("replacement", ["same", "attacker", "zero"])
def test_connect__already_connected__reverts(protocol, ch, configurator, engine, deployer, attacker, replacement):
    args = {
        "same": (protocol.pool, configurator, engine, protocol.orders),
        "attacker": (attacker, attacker, attacker, attacker),
        "zero": (ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS),
    }[replacement]
    with ape.reverts("clearinghouse: already connected"):
        ch.connect(*args, sender=deployer)
    assert wiring(ch) == (protocol.pool.address, configurator.address, engine.address, protocol.orders.address)


def test_connect__not_deployer__reverts(fresh_clearinghouse, fresh_parts, attacker):
    """Before its deployer connects it, nobody else can wire themselves in."""
    with ape.reverts("clearinghouse: not deployer"):
        fresh_clearinghouse.connect(attacker, attacker, attacker, attacker, sender=attacker)
    with ape.reverts("clearinghouse: not deployer"):
        fresh_clearinghouse.connect(*fresh_parts, sender=attacker)
    assert wiring(fresh_clearinghouse) == (ZERO_ADDRESS,) * 4


@pytest.mark.parametrize(
    "zero", [(0,), (1,), (2,), (3,), (0, 1, 2, 3)], ids=["pool", "configurator", "liquidation_engine", "orders", "all"]
)
def test_connect__zero_address__reverts(fresh_clearinghouse, fresh_parts, deployer, zero):
    args = [ZERO_ADDRESS if i in zero else part for i, part in enumerate(fresh_parts)]
    with ape.reverts("clearinghouse: zero address"):
        fresh_clearinghouse.connect(*args, sender=deployer)
    assert wiring(fresh_clearinghouse) == (ZERO_ADDRESS,) * 4


def test_connect__once__wires_all_three(configurator, fresh_clearinghouse, fresh_parts, deployer, attacker, usdc):
    pool, configurator, engine, orders = fresh_parts
    assert wiring(fresh_clearinghouse) == (ZERO_ADDRESS,) * 4
    fresh_clearinghouse.connect(pool, configurator, engine, orders, sender=deployer)
    assert wiring(fresh_clearinghouse) == (pool.address, configurator.address, engine.address, orders.address)
    # once: neither another set of contracts nor the same one again
    with ape.reverts("clearinghouse: already connected"):
        fresh_clearinghouse.connect(attacker, attacker, attacker, attacker, sender=deployer)
    with ape.reverts("clearinghouse: already connected"):
        fresh_clearinghouse.connect(pool, configurator, engine, orders, sender=deployer)
    assert wiring(fresh_clearinghouse) == (pool.address, configurator.address, engine.address, orders.address)
    # the configurator now reaches the engine, and only it does
    configurator.set_liquidation_parameters(2 * 10**17, WAD, 50 * WAD, sender=deployer)
    configurator.set_underwater_tip(10**15, sender=deployer)
    assert liquidation_parameters(engine) == (2 * 10**17, WAD, 50 * WAD, 10**15)
    with ape.reverts("liquidation: not configurator"):
        engine.apply_underwater_tip(0, sender=deployer)
    # and the core takes liquidation calls from the engine only
    with ape.reverts("clearinghouse: not liquidation engine"):
        fresh_clearinghouse.seize_collateral(1, 1, 0, 0, deployer, sender=deployer)


def test_connect__engine_defaults_before_any_configuration(fresh_parts):
    """A new engine starts at the Configurator's defaults (buffer 10%, full liquidation below
    0.5, $100 dust, no tip), within every bound."""
    engine = fresh_parts[2]
    assert liquidation_parameters(engine) == (10**17, WAD // 2, 100 * WAD, 0)


def test_constructor__settlement_above_18_decimals__reverts(project, protocol, deployer, usdc):
    with ape.reverts("clearinghouse: bad decimals"):
        deployer.deploy(project.Clearinghouse, protocol.oracle, usdc, 19)


# ---------------------------------------------------------------- ownership


def test_ownership__configurator_two_step_transfer(ch, configurator, deployer, guardian, attacker, engine):
    configurator.transfer_ownership(guardian, sender=deployer)
    assert configurator.pending_owner() == guardian.address
    assert configurator.owner() == deployer.address
    with ape.reverts(NOT_NEW_OWNER):
        configurator.accept_ownership(sender=attacker)
    configurator.accept_ownership(sender=guardian)

    assert configurator.owner() == guardian.address
    with ape.reverts(NOT_OWNER):
        configurator.set_liquidation_parameters(0, WAD // 2, 0, sender=deployer)
    configurator.set_liquidation_parameters(0, WAD // 2, 0, sender=guardian)
    assert engine.liquidation_buffer() == 0


@pytest.mark.parametrize("contract", ["configurator", "oracle"])
def test_ownership__pending_transfer_replaced__first_nominee_cannot_accept(protocol, deployer, guardian, attacker, contract):
    owned = getattr(protocol, contract)
    owned.transfer_ownership(attacker, sender=deployer)
    owned.transfer_ownership(guardian, sender=deployer)
    with ape.reverts(NOT_NEW_OWNER):
        owned.accept_ownership(sender=attacker)
    assert owned.owner() == deployer.address


@pytest.mark.parametrize("contract", ["configurator", "oracle"])
def test_ownership__accept_without_transfer__reverts(protocol, attacker, contract):
    with ape.reverts(NOT_NEW_OWNER):
        getattr(protocol, contract).accept_ownership(sender=attacker)


def test_premium_bound__lowering_full_liquidation_health__reverts(ch, configurator, deployer, eth_market, engine):
    """The bound uses min(penalty, full_liquidation_health * base_mmr): at the default cap of
    7,500 ETH (S 1M, k 0.5, base 3%) a full-liquidation health below 0.5 would let a hedged pair
    farm the premium a liquidation leaves unpaid."""
    buffer, dust = engine.liquidation_buffer(), engine.dust_notional()
    with ape.reverts("configurator: cap above premium bound"):
        configurator.set_liquidation_parameters(buffer, WAD // 2 - 1, dust, sender=deployer)
    assert engine.full_liquidation_health() == WAD // 2
    configurator.set_liquidation_parameters(buffer, WAD // 2, dust, sender=deployer)


def test_set_underwater_tip__bounds(ch, configurator, deployer, attacker, eth_market, engine):
    with ape.reverts("ownable: caller is not the owner"):
        configurator.set_underwater_tip(10**15, sender=attacker)
    with ape.reverts("configurator: bad tip"):
        configurator.set_underwater_tip(10**16 + 1, sender=deployer)
    # every market's base maintenance rate is 3%: the tip must stay strictly below it
    configurator.set_market(
        eth_market, market_params(ch, eth_market, base_mmr=10**16, penalty=10**16 // 2, oi_cap=1_000 * WAD), sender=deployer
    )
    with ape.reverts("configurator: tip above maintenance"):
        configurator.set_underwater_tip(10**16, sender=deployer)
    tx = configurator.set_underwater_tip(10**16 - 1, sender=deployer)
    assert engine.underwater_tip_rate() == 10**16 - 1
    assert [e.rate for e in events(tx, "UnderwaterTipSet")] == [10**16 - 1]
    # and a market cannot then be set with a base rate at or below the tip
    with ape.reverts("configurator: tip above maintenance"):
        configurator.set_market(
            eth_market, market_params(ch, eth_market, base_mmr=10**16 - 1, penalty=10**15, oi_cap=100 * WAD), sender=deployer
        )
    with ape.reverts("liquidation: not configurator"):
        engine.apply_underwater_tip(0, sender=deployer)
    assert engine.underwater_tip_rate() == 10**16 - 1
