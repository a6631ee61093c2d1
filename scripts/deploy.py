"""Deploy the full protocol with its default markets to any ape network and write the addresses
to deployments/<ecosystem>-<network>-<provider>.json, which the other scripts and the bots read.

    ape run deploy                                   # embedded local chain, test account 0
    ape run deploy --network ethereum:local:node     # e.g. anvil on 127.0.0.1:8545
    MARGINSIM_DEPLOYER=myalias ape run deploy --network ethereum:sepolia:node

On a network other than the embedded one the deployer is the ape account whose alias is in
MARGINSIM_DEPLOYER (see `ape accounts list`); on a local node it defaults to test account 0.
MARGINSIM_CONFIG=FILE.toml names existing tokens and Chainlink feeds by address
(`marginsim.protocol.load_config`); whatever it does not name is deployed as a mock.
"""

import os
import sys
from pathlib import Path

from ape import accounts, chain, networks, project
from ape.logging import logger

from marginsim.protocol import DEFAULT_CONFIG, DeploymentError, deploy_protocol, load_config


def _deployer():
    alias = os.environ.get("MARGINSIM_DEPLOYER")
    if alias:
        try:
            return accounts.load(alias)
        except Exception:  # ape raises its own error types here; any failure means the same thing
            sys.exit(f"deploy: MARGINSIM_DEPLOYER={alias!r} is not an ape account alias (see `ape accounts list`)")
    return accounts.test_accounts[0]


def main():
    logger.set_level("WARNING")
    network = networks.provider.network
    deployer = _deployer()
    first_block = chain.blocks.head.number + 1
    try:
        config_file = os.environ.get("MARGINSIM_CONFIG")
        config = load_config(Path(config_file)) if config_file else DEFAULT_CONFIG
        protocol = deploy_protocol(project, deployer, config)
    except DeploymentError as error:
        sys.exit(f"deploy: {error}")
    path = Path("deployments") / f"{network.ecosystem.name}-{network.name}-{networks.provider.name}.json"
    protocol.save(path, deployed_block=first_block)
    print(f"deployed to {network.ecosystem.name}:{network.name} by {deployer.address}")
    for name, address in protocol.addresses().items():
        print(f"  {name:14} {address}")
    print(f"addresses written to {path}")
