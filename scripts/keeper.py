"""Keeper bot: liquidate unhealthy accounts of a deployed protocol, fill its due orders and execute
its LPs' due deposit and redemption requests, as a long-running process.

    ape run keeper --network ethereum:local:node                       # anvil (make anvil), test account 1
    ape run keeper --network ethereum:local:node --poll 2 --max-iterations 30
    ape run keeper --network ethereum:sepolia:node --account mykeeper --min-profit 5 --from-block 5000000
    ape run keeper --network ethereum:local:node --no-orders            # liquidate only (no orders, no LP requests)
    ape run keeper --network ethereum:local:node --realise-above 50000  # and price large open losses

Reads deployments/<ecosystem>-<network>-<provider>.json (or --deployment FILE), indexes accounts
from the Clearinghouse's events since the deployment block (recorded in the file, found on the
node, or --from-block), mirrors their health off-chain, confirms with MarginLens.healths, and
liquidates when the reward beats the gas (at --gas-price-gwei, or the node's gas price). It
indexes the pending orders from Orders' events too and fills each a round has made due when its
execution fee beats a fill's gas, and likewise the LPs' requests from the pool's events: each in
its window whose fee beats an execution's gas is executed. One past its window is left alone:
lapse_request pays its caller nothing (the escrow and the fee go back to the LP, who may send it
itself). --no-orders leaves both to other keepers (with none filling, every trade and every LP
request lapses). Each action is one line; Ctrl-C stops it with a one-line summary. The signer is
an ape account alias (--account); on a local network it may be a test account index, test
account 1 by default.
"""

import sys

import click
from ape import accounts, chain, networks, project
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from marginsim.bots import (
    BotConfigError,
    KeeperBot,
    KeeperConfig,
    choose_signer,
    deployment_path,
    find_deployment_block,
    load_deployment,
)


@click.command(cls=ConnectedProviderCommand)
@click.option("--deployment", default=None, help="deployment file (default deployments/<ecosystem>-<network>-<provider>.json)")
@click.option(
    "--account", "account_name", default=None, help="ape account alias; on a local network a test account index (default 1)"
)
@click.option("--poll", "poll_seconds", type=float, default=12.0, show_default=True, help="seconds between iterations")
@click.option(
    "--min-profit",
    "min_profit_usd",
    type=float,
    default=0.0,
    show_default=True,
    help="USD a liquidation, a fill or an LP request must beat its gas by",
)
@click.option("--gas-price-gwei", type=float, default=None, help="gas price for the profit test (default: the node's)")
@click.option("--max-iterations", type=int, default=None, help="stop after this many iterations (default: run until Ctrl-C)")
@click.option("--from-block", type=int, default=None, help="index events from this block (default: the deployment block)")
@click.option(
    "--no-orders", is_flag=True, default=False, help="liquidate only: leave due orders and LP requests to other keepers"
)
@click.option(
    "--realise-above",
    "realise_above_usd",
    type=float,
    default=None,
    help="realise open losses of at least this many USD into debts that bear interest (unpaid: for the LPs)",
)
def cli(
    deployment,
    account_name,
    poll_seconds,
    min_profit_usd,
    gas_price_gwei,
    max_iterations,
    from_block,
    no_orders,
    realise_above_usd,
):
    logger.set_level("WARNING")
    provider = networks.provider
    try:
        if max_iterations is not None and max_iterations < 0:
            raise BotConfigError(f"keeper: --max-iterations must be >= 0, got {max_iterations}")
        if from_block is not None and from_block < 0:
            raise BotConfigError(f"keeper: --from-block must be >= 0, got {from_block}")
        config = KeeperConfig(
            poll_seconds=poll_seconds,
            min_profit_usd=min_profit_usd,
            gas_price_gwei=gas_price_gwei,
            fill_orders=not no_orders,
            realise_above_usd=realise_above_usd,
        )
        protocol, recorded_block = load_deployment(project, chain, deployment_path(provider, deployment), "keeper")
        signer = choose_signer(accounts, provider.network, account_name, default_index=1, role="keeper")
        if from_block is None:
            from_block = (
                recorded_block if recorded_block is not None else find_deployment_block(chain, protocol.clearinghouse.address)
            )
        bot = KeeperBot(protocol, chain, signer, from_block, config, log=click.echo)
    except BotConfigError as error:
        sys.exit(str(error))
    summary = bot.run(max_iterations)
    click.echo(summary.line())
