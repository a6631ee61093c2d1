"""Print the gas table and write gas-snapshot.json (`make gas`)."""

from ape import accounts, chain, project
from ape.logging import logger

from marginsim.gas import report, run, write_snapshot


def main():
    logger.set_level("WARNING")
    gas = run(project, chain, list(accounts.test_accounts)[:6])
    table, snapshot = report(gas)
    print(table)
    write_snapshot(snapshot)
    print("written to gas-snapshot.json")
