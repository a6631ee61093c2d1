from dataclasses import replace

import ape

from marginsim.protocol import MarketConfig
from marginsim.risk import MarketParams, vol_unit
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
    with ape.reverts("clearinghouse: not deployer"):
        ch.connect(attacker, attacker, attacker, attacker, sender=attacker)
    with ape.reverts("clearinghouse: already connected"):
        ch.connect(attacker, attacker, attacker, attacker, sender=deployer)
    assert ch.configurator() == protocol.configurator.address
    assert ch.liquidation_engine() == protocol.liquidation_engine.address


def test_set_market__fee_plus_premium_at_the_cap_equal_to_maintenance__reverts_one_wei_less_accepted(
    protocol, deployer, eth_market
):
    """The fee bound at its limit (issue 9, item 7: a `<` turned `<=` survived the suite):
    fee + ceil(oi_cap / skew_scale) must stay strictly below base_mmr. With base_mmr 1.2% and a
    0.3% premium at the cap, a 0.9% fee equals it and is refused; one wei less is accepted."""
    configurator, ch = protocol.configurator, protocol.clearinghouse
    asset = protocol.tokens["WETH"].address
    config = MarketConfig("ETH-PERP", "WETH", base_mmr=0.012, penalty=0.01, oi_cap=3_000, fee=0.009)
    at_limit = list(config.params(asset))
    fee_index = list(MarketParams.__dataclass_fields__).index("fee")
    assert at_limit[fee_index] + 3_000 * WAD * WAD // (1_000_000 * WAD) == at_limit[1]  # fee + premium == base_mmr
    with ape.reverts("configurator: fee above maintenance"):
        configurator.set_market(eth_market, tuple(at_limit), sender=deployer)
    below = list(at_limit)
    below[fee_index] -= 1
    configurator.set_market(eth_market, tuple(below), sender=deployer)
    assert ch.markets(eth_market).fee == 9 * 10**15 - 1
