"""The Configurator keeps the liquidation parameters' bounds but writes the parameters to the
LiquidationEngine the Clearinghouse was connected to: before `connect` there is none, and every
call that needs it reverts; afterwards the engine takes them from this Configurator only."""

import ape
import pytest

from marginsim.protocol import MarketConfig
from tests.conftest import WAD

NO_ENGINE = "configurator: no liquidation engine"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@pytest.fixture
def unconnected(project, protocol, deployer):
    """A Clearinghouse on the protocol's oracle, with a Configurator and a LiquidationEngine
    deployed against it but not connected."""
    ch = deployer.deploy(project.Clearinghouse, protocol.oracle, protocol.settlement, 6)
    return ch, deployer.deploy(project.Configurator, ch), deployer.deploy(project.LiquidationEngine, ch)


def eth_params(protocol):
    return MarketConfig("ETH-PERP", "WETH").params(protocol.tokens["WETH"].address)


def engine_parameters(engine):
    return (engine.liquidation_buffer(), engine.full_liquidation_health(), engine.dust_notional(), engine.underwater_tip_rate())


CALLS_NEEDING_THE_ENGINE = {
    "list_market": lambda protocol, cfg, who: cfg.list_market(eth_params(protocol), sender=who),
    "set_liquidation_parameters": lambda protocol, cfg, who: cfg.set_liquidation_parameters(
        10**17, WAD // 2, 100 * WAD, sender=who
    ),
    "set_underwater_tip": lambda protocol, cfg, who: cfg.set_underwater_tip(2 * 10**15, sender=who),
}


@pytest.mark.parametrize("call", list(CALLS_NEEDING_THE_ENGINE))
def test_not_connected__calls_needing_the_engine__revert(protocol, unconnected, deployer, call):
    ch, cfg, engine = unconnected
    assert ch.liquidation_engine() == ZERO_ADDRESS
    before = engine_parameters(engine)
    with ape.reverts(NO_ENGINE):
        CALLS_NEEDING_THE_ENGINE[call](protocol, cfg, deployer)
    assert ch.market_count() == 0
    assert engine_parameters(engine) == before


def test_not_connected__bounds_still_checked_first(unconnected, deployer):
    """A value out of bounds gets its own message, connected or not."""
    _, cfg, _ = unconnected
    with ape.reverts("configurator: bad buffer"):
        cfg.set_liquidation_parameters(WAD // 2 + 1, WAD // 2, 0, sender=deployer)
    with ape.reverts("configurator: bad tip"):
        cfg.set_underwater_tip(10**16 + 1, sender=deployer)


def test_not_connected__not_owner__reverts_before_the_engine_lookup(protocol, unconnected, attacker):
    _, cfg, _ = unconnected
    for call in CALLS_NEEDING_THE_ENGINE.values():
        with ape.reverts("ownable: caller is not the owner"):
            call(protocol, cfg, attacker)


def test_not_connected__set_market_and_list_collateral(protocol, unconnected, deployer):
    """set_market finds no market; list_collateral needs no engine but the Clearinghouse does
    not yet know this Configurator."""
    ch, cfg, _ = unconnected
    with ape.reverts("configurator: unknown market"):
        cfg.set_market(1, eth_params(protocol), sender=deployer)
    with ape.reverts("clearinghouse: not configurator"):
        cfg.list_collateral(protocol.tokens["WETH"], WAD // 2, 10**24, WAD // 10, sender=deployer)
    assert ch.collateral_count() == 0


def test_connected__the_same_calls_reach_the_engine(project, protocol, unconnected, deployer, attacker):
    ch, cfg, engine = unconnected
    pool = deployer.deploy(project.LiquidityPool, ch, "fresh LP", "fLP")
    orders = deployer.deploy(project.Orders, ch, deployer.deploy(project.MarginLens, ch))
    ch.connect(pool, cfg, engine, orders, sender=deployer)
    cfg.set_liquidation_parameters(2 * 10**17, WAD, 0, sender=deployer)
    cfg.set_underwater_tip(10**15, sender=deployer)
    assert engine_parameters(engine) == (2 * 10**17, WAD, 0, 10**15)
    cfg.list_market(eth_params(protocol), sender=deployer)
    assert ch.market_count() == 1
    assert ch.markets(1).asset == protocol.tokens["WETH"].address
    # the engine takes them from the connected Configurator only
    with ape.reverts("liquidation: not configurator"):
        engine.apply_liquidation_parameters(0, WAD // 2, 0, sender=deployer)
    with ape.reverts("liquidation: not configurator"):
        engine.apply_underwater_tip(0, sender=attacker)
