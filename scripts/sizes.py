"""Print each deployable's runtime size against its budget (`make sizes`); exit 1 when one is over."""

import sys

from ape import project

from marginsim.sizes import report, sizes


def main():
    table, ok = report(sizes(project))
    print(table)
    if not ok:
        print("sizes: a contract is over its budget of 20,480 bytes")
        sys.exit(1)
