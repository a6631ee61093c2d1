"""The keeper realises large open losses (`--realise-above`): an unrealised loss is an
interest-free loan from the pool until someone calls `LiquidationEngine.realise_loss`, which
moves it into the balance, where a debt bears the utilisation rate's interest for the LPs. The
bot, driven in-process on the embedded chain, realises a WETH-backed long's loss after ETH
falls 8%, exactly as the mirror planned it; leaves a loss below its threshold alone; and the
simulator's keeper does the same with the mirror still equal to the contract at every step."""

from dataclasses import replace
from pathlib import Path

import pytest

from marginsim import risk
from marginsim.bots import BotConfigError, KeeperBot, KeeperConfig
from marginsim.bots.keeper import describe_account
from marginsim.chain.revm import RevmChain
from marginsim.orders import trade_now
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol
from marginsim.sim.engine import run_simulation, signers_needed
from marginsim.sim.report import summary_table
from marginsim.sim.scenario import load_scenario

# the keeper bot realising losses against the embedded chain: `make test-slow` (see the README's Tests)
pytestmark = pytest.mark.slow

WAD = 10**18
USDC = 10**6
MAX_UINT = 2**256 - 1
SHORT = Path(__file__).parent / "scenarios" / "short-crash.toml"


@pytest.fixture
def loser(project, chain, accounts):
    """A fresh protocol with a $2M pool and a trader long 100 ETH on 20 WETH of collateral and no
    USDC; then ETH falls 8% ($2,000 -> $1,840): a $16,000 open loss, the account still healthy."""
    deployer, lp, trader = accounts[0], accounts[1], accounts[4]
    block_before = chain.blocks.head.number
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    ch, usdc, weth = protocol.clearinghouse, protocol.settlement, protocol.tokens["WETH"]
    usdc.mint(lp, 2_000_000 * USDC, sender=lp)
    usdc.approve(protocol.pool, MAX_UINT, sender=lp)
    protocol.pool.deposit(2_000_000 * USDC, lp, sender=lp)
    weth.mint(trader, 20 * WAD, sender=trader)
    weth.approve(ch, MAX_UINT, sender=trader)
    ch.deposit(weth, 20 * WAD, 0, sender=trader)
    trade_now(ch, protocol.markets["ETH-PERP"], 100 * WAD, sender=trader)
    chain.pending_timestamp += 60
    protocol.publish("WETH", 1_840 * 10**8, deployer)
    account = account_id(trader)
    assert risk.health_of(ch, account) > WAD
    return protocol, account, block_before


def bot(protocol, chain, signer, block_before, log, **config):
    config = {"poll_seconds": 0, "gas_price_gwei": 1.0, "fill_orders": False, **config}
    return KeeperBot(protocol, chain, signer, block_before, KeeperConfig(**config), log=log.append)


def test_keeper_bot__realises_a_large_open_loss_into_a_debt_as_the_mirror_planned(loser, chain, accounts):
    protocol, account, block_before = loser
    ch, eth = protocol.clearinghouse, protocol.markets["ETH-PERP"]
    size, cost = (int(v) for v in ch.positions(account, eth))
    balance = int(ch.settlement(account))
    log: list[str] = []
    keeper = bot(protocol, chain, accounts[2], block_before, log, realise_above_usd=10_000)
    equity_before = int(ch.margin(account)[0])
    keeper.step()
    [event] = protocol.liquidation_engine.LossRealised.range(block_before, chain.blocks.head.number + 1)
    loss = int(event.loss)
    assert 16_000 * USDC < loss < 16_100 * USDC  # 100 ETH x $160, and the funding and premium paid
    assert int(ch.settlement(account)) == balance - loss  # now a debt to the pool, with interest
    assert abs(int(ch.margin(account)[0]) - equity_before) < 10**16  # unchanged but the seconds' funding: < 1 cent
    assert int(ch.positions(account, eth).size) == size and int(ch.positions(account, eth).cost) != cost
    line = next(entry for entry in log if "realised" in entry)
    assert line.startswith(
        f"block {chain.blocks.head.number}  realised {describe_account(account)} ETH-PERP loss ${loss / USDC:,.2f} "
        f"into its balance (debt ${(loss - balance) / USDC:,.2f})  gas "
    )
    assert keeper.summary.losses_realised == 1 and "1 losses realised" in keeper.summary.line()
    keeper.step()  # the basis is reset: nothing left to realise
    assert keeper.summary.losses_realised == 1
    # the realisation's event reloads the account: the mirror holds the debt, with its interest
    chain.pending_timestamp += 600  # interest accrues (the feed stays fresh within its heartbeat)
    chain.mine()
    assert keeper.mirror_healths()[account] == risk.health_of(ch, account)


def test_keeper_bot__leaves_a_loss_below_its_threshold_and_realises_nothing_by_default(loser, chain, accounts):
    protocol, account, block_before = loser
    for config in ({"realise_above_usd": 20_000}, {}):
        keeper = bot(protocol, chain, accounts[2], block_before, [], **config)
        keeper.step()
        assert keeper.summary.losses_realised == 0
    assert not list(protocol.liquidation_engine.LossRealised.range(block_before, chain.blocks.head.number + 1))
    with pytest.raises(BotConfigError, match=r"^keeper: --realise-above must be >= 1 USD, got 0$"):
        KeeperConfig(realise_above_usd=0)


def test_simulated_keeper__realises_losses_with_the_mirror_equal_to_the_contract_every_step():
    """The short crash with its first keeper realising losses above $1,000: the losses are
    realised, and the keepers' mirror (debts with their index) still equals the contract's
    health for every account at every step (`verify_mirror`)."""
    scenario = load_scenario(SHORT)
    first, *rest = scenario.keepers
    scenario = replace(scenario, keepers=(replace(first, realise_above_usd=1_000.0), *rest))
    chain = RevmChain()
    result = run_simulation(
        chain.project, chain, chain.signers(signers_needed(scenario)), scenario, network="revm", verify_mirror=True
    )
    assert result.keepers[first.name].losses_realised > 0
    assert all(k.losses_realised == 0 for name, k in result.keepers.items() if name != first.name)
    header = next(line for line in summary_table(result).splitlines() if line.strip().startswith("keeper "))
    assert header.rstrip().endswith("losses realised")  # the column shows once a keeper realised one
