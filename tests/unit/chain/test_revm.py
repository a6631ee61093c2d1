"""The protocol on revm in process (`marginsim.chain.revm`): the same compiled bytecode, deployed
by the same `deploy_protocol`, gives the same figures to the wei as on ape's embedded chain when
the same transactions are sent at the same block times (gas may differ: printed)."""

from __future__ import annotations

from typing import Any

import ape
import pytest

from marginsim import risk
from marginsim.chain.revm import Revert, RevmChain, replay
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol

WAD = 10**18
USDC = 10**6
MAX = 2**256 - 1


@pytest.fixture(scope="module")
def revm() -> RevmChain:
    return RevmChain()


def _script(protocol: Any, clock: Any, deployer: Any, lp: Any, trader: Any, keeper: Any) -> tuple[dict, dict]:
    """An LP deposit, a trader's two-step long, three rounds down (-9.7%) and a liquidation, each at a set
    block time. Returns (figures, gas per step)."""
    ch, orders, pool, engine = protocol.clearinghouse, protocol.orders, protocol.pool, protocol.liquidation_engine
    usdc, weth, eth = protocol.settlement, protocol.tokens["WETH"], protocol.markets["ETH-PERP"]
    gas = {}
    protocol.fund(usdc, lp, 2_000_000 * USDC, deployer)
    usdc.approve(pool, MAX, sender=lp)
    gas["LP deposit"] = pool.deposit(2_000_000 * USDC, lp, sender=lp).gas_used
    protocol.fund(usdc, trader, 10_100 * USDC, deployer)
    protocol.fund(weth, trader, 2 * WAD, deployer)
    usdc.approve(ch, MAX, sender=trader)
    weth.approve(ch, MAX, sender=trader)
    usdc.approve(orders, MAX, sender=trader)
    ch.deposit(usdc, 10_000 * USDC, 0, sender=trader)
    ch.deposit(weth, 2 * WAD, 0, sender=trader)
    gas["commit"] = orders.commit_order(eth, 60 * WAD, 0, 0, sender=trader).gas_used
    clock.pending_timestamp = clock.pending_timestamp + int(orders.settlement_delay()) + 30
    protocol.publish("WETH", 2_004 * 10**8, deployer)
    fill = orders.execute_order(account_id(trader), eth, sender=keeper)
    gas["fill"] = fill.gas_used
    price = 2_004 * 10**8
    for step in (96, 96, 98):
        clock.pending_timestamp = clock.pending_timestamp + 600
        price = price * step // 100
        protocol.publish("WETH", price, deployer)
    account = account_id(trader)
    equity, maintenance, initial = (int(v) for v in ch.margin(account))
    receipt = engine.liquidate(account, eth, MAX, sender=keeper)
    gas["liquidate"] = receipt.gas_used
    [event] = receipt.events.filter(engine.Liquidation)
    figures = {
        "filled": [(int(e.size_delta), int(e.fill_price)) for e in fill.events.filter(orders.OrderFilled)],
        "before liquidation": (equity, maintenance, initial),
        "liquidation": {k: int(v) for k, v in event.event_arguments.items() if isinstance(v, int) and k != "account"},
        "position": tuple(int(v) for v in ch.positions(account, eth)),
        "settlement": int(ch.settlement(account)),
        "margin after": tuple(int(v) for v in ch.margin(account)),
        "insurance": int(ch.insurance_balance()),
        "pool assets": int(pool.totalAssets()),
        "LP shares": int(pool.balanceOf(lp)),
        "market": tuple(int(v) for v in ch.market_state(eth)),
        "vol": tuple(int(v) for v in protocol.oracle.volatilities(weth)),
    }
    return figures, gas


def test_deploy_protocol__runs_unchanged_on_revm(revm):
    protocol = deploy_protocol(revm.project, revm.accounts[0], DEFAULT_CONFIG)
    assert protocol.markets == {"ETH-PERP": 1, "BTC-PERP": 2}
    assert int(protocol.oracle.price(protocol.tokens["WETH"])) == 2_000 * WAD
    assert protocol.clearinghouse.markets(1).asset == protocol.tokens["WETH"].address
    assert revm.transactions == 34 and revm.block_number == 34  # a block per transaction


def test_a_revert_raises_the_contracts_message_and_mines_nothing(revm):
    protocol = deploy_protocol(revm.project, revm.accounts[0], DEFAULT_CONFIG)
    block, sent = revm.block_number, revm.transactions
    with pytest.raises(Revert, match="^clearinghouse: zero amount$"):
        protocol.clearinghouse.deposit(protocol.settlement, 0, 0, sender=revm.accounts[1])
    with pytest.raises(Revert, match="^lens: unknown market$"):
        protocol.lens.health_after_trade(account_id(revm.accounts[1]), 9, WAD)
    assert (revm.block_number, revm.transactions) == (block, sent)


def test_the_same_transactions_at_the_same_times_give_the_same_figures_to_the_wei(revm, accounts):
    """On ape's embedded chain and on revm: deployment, an LP deposit, a two-step long, three
    rounds down and a liquidation. Every figure equal; gas as each EVM counts it."""
    start = ape.chain.pending_timestamp + 10_000
    ape.chain.pending_timestamp = start
    ape_protocol = deploy_protocol(ape.project, accounts[0], DEFAULT_CONFIG)
    on_ape, ape_gas = _script(ape_protocol, ape.chain, *accounts[:4])
    fresh = RevmChain()
    fresh.pending_timestamp = start
    revm_protocol = deploy_protocol(fresh.project, fresh.accounts[0], DEFAULT_CONFIG)
    on_revm, revm_gas = _script(revm_protocol, fresh, *fresh.accounts[:4])
    print("\ngas (ape / revm):", {k: (ape_gas[k], revm_gas[k]) for k in ape_gas})
    assert on_ape["liquidation"]["penalty"] > 0  # the script does liquidate
    assert risk.health(*on_ape["before liquidation"][:2]) < WAD
    assert on_revm == on_ape


def test_a_recorded_run_replays_raw_with_the_same_outcomes():
    """`RevmChain.record` keeps every call into revm; `replay` runs them on a fresh EVM with the
    same blocks and calldata and meets the same reverts: the engine's own time on a run's work
    (what `make bench-sim` sets beside the simulator's)."""
    chain = RevmChain()
    recorder = chain.record()
    deployer, trader = chain.accounts[0], chain.accounts[1]
    protocol = deploy_protocol(chain.project, deployer, DEFAULT_CONFIG)
    with pytest.raises(Revert):
        protocol.clearinghouse.withdraw(protocol.settlement, 1, 0, sender=trader)  # nothing deposited
    protocol.fund(protocol.settlement, trader, 5 * USDC, deployer)
    assert int(protocol.settlement.balanceOf(trader)) == 5 * USDC
    # a rewind is on the tape too: the replay reverts to the same checkpoint, so the transfer
    # of 6 USDC that fails after it (only 5 left) fails there as well
    checkpoint = chain.snapshot()
    protocol.fund(protocol.settlement, trader, 5 * USDC, deployer)
    chain.restore(checkpoint)
    with pytest.raises(Revert):
        protocol.settlement.transfer(deployer, 6 * USDC, sender=trader)
    seconds, transactions, calls, reverts = replay(recorder.tape)
    assert (transactions, reverts) == (chain.transactions + recorder.reverts, recorder.reverts) and recorder.reverts == 2
    assert calls == chain.calls and seconds > 0
