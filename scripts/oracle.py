"""Oracle bot: play a deployed protocol's mock Chainlink feeds from a price path, in (accelerated) real time.

    ape run oracle --network ethereum:local:node                                 # GBM at 1x, test account 0
    ape run oracle --network ethereum:local:node --source shock --speed 60       # -30% in 30 path minutes
    ape run oracle --network ethereum:local:node --source shock:-0.5 --speed 60 --max-iterations 100
    ape run oracle --network ethereum:local:node --source replay:eth_usd_10min_2020-03-12.csv --speed 120

Only for deployments from scripts/deploy.py, whose feeds are MockAggregators updated by the
deployer (--account; on a local network test account 0 by default). Publishes a round when the
price moved --deviation from the last one or --heartbeat seconds of path time passed (Chainlink's
rules, marginsim.feeds.publish_rounds), syncs the OracleRouter, and keeps the other feeds fresh.
With --speed above 1 on a local network the chain's clock follows the path; elsewhere it is never
moved. Each round is one line; Ctrl-C stops it with a one-line summary.
"""

import sys

import click
from ape import accounts, chain, networks, project
from ape.cli import ConnectedProviderCommand
from ape.logging import logger

from marginsim.bots import (
    BotConfigError,
    OracleBot,
    OracleConfig,
    choose_signer,
    deployment_path,
    is_dev_network,
    load_deployment,
    parse_source,
    source_path,
)

WAD = 10**18


@click.command(cls=ConnectedProviderCommand)
@click.option("--deployment", default=None, help="deployment file (default deployments/<ecosystem>-<network>-<provider>.json)")
@click.option(
    "--account",
    "account_name",
    default=None,
    help="the feeds' updater: ape account alias; on a local network a test account index (default 0)",
)
@click.option("--source", default="gbm", show_default=True, help="gbm | shock | shock:RETURN | replay:PATH")
@click.option("--asset", "symbol", default="WETH", show_default=True, help="the feed the path drives")
@click.option("--speed", type=float, default=1.0, show_default=True, help="path seconds per wall second")
@click.option("--deviation", type=float, default=0.005, show_default=True, help="deviation threshold (0.005 = 0.5%)")
@click.option("--heartbeat", type=int, default=3_600, show_default=True, help="heartbeat, seconds of path time")
@click.option("--max-iterations", type=int, default=None, help="stop after this many iterations (default: run until Ctrl-C)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the gbm path")
def cli(deployment, account_name, source, symbol, speed, deviation, heartbeat, max_iterations, seed):
    logger.set_level("WARNING")
    provider = networks.provider
    try:
        if max_iterations is not None and max_iterations < 0:
            raise BotConfigError(f"oracle: --max-iterations must be >= 0, got {max_iterations}")
        if seed < 0:
            raise BotConfigError(f"oracle: --seed must be >= 0, got {seed}")
        price_source = parse_source(source)
        config = OracleConfig(
            symbol=symbol,
            speed=speed,
            deviation=deviation,
            heartbeat=heartbeat,
            move_chain_time=is_dev_network(provider.network) and speed > 1,
        )
        protocol, _ = load_deployment(project, chain, deployment_path(provider, deployment), "oracle")
        if symbol not in protocol.feeds:
            raise BotConfigError(f"oracle: --asset must be one of {', '.join(protocol.feeds)}, got {symbol!r}")
        signer = choose_signer(accounts, provider.network, account_name, default_index=0, role="oracle")
        feed = protocol.feeds[symbol]
        s0 = int(feed.latestRoundData()[1]) / 10 ** int(feed.decimals())
        path = source_path(price_source, s0, seed)
        bot = OracleBot(protocol, chain, signer, path, config, log=click.echo)
    except BotConfigError as error:
        sys.exit(str(error))
    summary = bot.run(max_iterations)
    click.echo(summary.line())
