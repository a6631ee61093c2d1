"""Long-running bots against any ape network: the keeper (`marginsim.bots.keeper`) and the
oracle player (`marginsim.bots.oracle`). scripts/keeper.py and scripts/oracle.py are their thin
command lines; the logic is here, as plain classes with an iteration limit and an injectable
clock and sleep, so tests drive them in-process on the embedded chain.

The keeper reuses the simulator's `Keeper` (event index, exact off-chain mirror, sizing) and
`LiquidationModel` (reward against gas); the oracle reuses `marginsim.feeds`' paths and
Chainlink publisher.
"""

from marginsim.bots.common import (
    BotConfigError,
    choose_signer,
    deployment_path,
    is_dev_network,
    load_deployment,
    run_loop,
)
from marginsim.bots.keeper import (
    KeeperBot,
    KeeperConfig,
    KeeperSummary,
    find_deployment_block,
)
from marginsim.bots.oracle import (
    OracleBot,
    OracleConfig,
    OracleSummary,
    PriceSource,
    parse_source,
    source_path,
)

__all__ = [
    "BotConfigError",
    "KeeperBot",
    "KeeperConfig",
    "KeeperSummary",
    "OracleBot",
    "OracleConfig",
    "OracleSummary",
    "PriceSource",
    "choose_signer",
    "deployment_path",
    "find_deployment_block",
    "is_dev_network",
    "load_deployment",
    "parse_source",
    "run_loop",
    "source_path",
]
