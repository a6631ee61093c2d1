"""The simulator's direct path to the embedded chain returns what ape returns: the same decoded
views and structs, the same events and gas, and revert reasons as one-line messages."""

import pytest

from marginsim.orders import trade_now
from marginsim.protocol import account_id, deploy_protocol
from marginsim.sim.fastchain import FastContract, FastRevert, fast
from tests.conftest import USDC, WAD


@pytest.fixture(scope="module")
def deployed(project, chain, accounts):
    deployer, trader = accounts[0], accounts[2]
    protocol = deploy_protocol(project, deployer)
    usdc = protocol.settlement
    usdc.mint(trader, 10_000 * USDC, sender=trader)
    usdc.approve(protocol.clearinghouse, 2**256 - 1, sender=trader)
    # a pool to trade against (the open-interest reserve refuses any side of an empty one)
    usdc.mint(deployer, 1_000_000 * USDC, sender=deployer)
    usdc.approve(protocol.pool, 1_000_000 * USDC, sender=deployer)
    protocol.pool.deposit(1_000_000 * USDC, deployer, sender=deployer)
    return protocol, trader


def test_fast__is_used_on_the_embedded_chain(deployed, chain):
    protocol, _ = deployed
    assert isinstance(fast(protocol.clearinghouse, chain), FastContract)


def test_fast__views_and_structs_equal_ape(deployed, chain):
    protocol, trader = deployed
    ch = protocol.clearinghouse
    f = fast(ch, chain)
    ch.deposit(protocol.settlement, 5_000 * USDC, 0, sender=trader)
    trade_now(ch, protocol.markets["ETH-PERP"], 2 * WAD, 0, 0, sender=trader)
    account = account_id(trader)
    assert f.margin(account) == tuple(ch.margin(account))
    assert f.positions(account, 1) == tuple(ch.positions(account, 1))
    assert f.positions(account, 1).size == ch.positions(account, 1).size
    assert f.markets(1) == tuple(ch.markets(1))
    assert f.markets(1).asset == ch.markets(1).asset  # checksummed, as ape returns it
    assert f.collaterals(1).token == ch.collaterals(1).token
    lens = fast(protocol.lens, chain)
    assert list(lens.healths([account])) == list(protocol.lens.healths([account]))


def test_fast__transaction_gas_and_events_equal_ape(deployed, chain):
    protocol, trader = deployed
    f = fast(protocol.clearinghouse, chain)
    protocol.clearinghouse.deposit(protocol.settlement, 100 * USDC, 0, sender=trader)  # the cold first one
    receipt = f.deposit(protocol.settlement, 100 * USDC, 0, sender=trader)
    again = protocol.clearinghouse.deposit(protocol.settlement, 100 * USDC, 0, sender=trader)
    assert receipt.gas_used == again.gas_used
    [event] = [e for e in receipt.events if e.event_name == "Deposit"]
    assert event.account == account_id(trader) and event.amount == 100 * USDC
    assert event.token == protocol.settlement.address


def test_fast__reverts_carry_the_contracts_message(deployed, chain):
    protocol, trader = deployed
    f = fast(protocol.clearinghouse, chain)
    with pytest.raises(FastRevert, match="^clearinghouse: insufficient balance$"):
        f.withdraw(protocol.settlement, 10**15, 0, sender=trader)
    with pytest.raises(FastRevert, match="^oracle: unknown asset$"):
        fast(protocol.oracle, chain).price(trader)
