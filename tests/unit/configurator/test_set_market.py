from dataclasses import replace

import ape

from marginsim.protocol import MarketConfig
from marginsim.risk import vol_unit
from tests.conftest import WAD


def test_set_market__cap_above_premium_bound__reverts(protocol, deployer, eth_market):
    configurator, ch = protocol.configurator, protocol.clearinghouse
    asset = protocol.tokens["WETH"].address
    # cap <= S (1 - k) min(f, full_liquidation_health * base_mmr) = 100,000 * 0.5 * 1.5%
    too_big = MarketConfig("X", "WETH", skew_scale=100_000, oi_cap=751, penalty=0.02, keeper_share=0.5)
    with ape.reverts("configurator: cap above premium bound"):
        configurator.set_market(eth_market, too_big.params(asset), sender=deployer)
    edge = replace(too_big, oi_cap=750)
    configurator.set_market(eth_market, edge.params(asset), sender=deployer)
    assert ch.markets(eth_market).oi_cap == 750 * WAD


def test_apply_market__not_configurator__reverts(protocol, deployer, eth_market, attacker):
    config = MarketConfig("ETH-PERP", "WETH")
    params = config.params(protocol.tokens["WETH"].address)
    unit = vol_unit(params[4], params[5])
    with ape.reverts("clearinghouse: not configurator"):
        protocol.clearinghouse.apply_market(eth_market, params, unit, sender=attacker)
    with ape.reverts("clearinghouse: not configurator"):
        protocol.clearinghouse.apply_market(eth_market, params, unit, sender=deployer)


def test_connect__only_once(protocol, deployer, attacker):
    ch = protocol.clearinghouse
    with ape.reverts("ownable: caller is not the owner"):
        ch.connect(attacker, attacker, attacker, sender=attacker)
    with ape.reverts("clearinghouse: already connected"):
        ch.connect(attacker, attacker, attacker, sender=deployer)
    assert ch.configurator() == protocol.configurator.address
    assert ch.liquidation_engine() == protocol.liquidation_engine.address
