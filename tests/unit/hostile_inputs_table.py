"""Render the hostile-inputs table (tests/unit/test_hostile_inputs.py: ROWS) as
docs/hostile-inputs.md. The test suite fails while the document differs from this rendering.

    .venv/bin/python -m tests.unit.hostile_inputs_table > docs/hostile-inputs.md
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "hostile-inputs.md"
REGENERATE = ".venv/bin/python -m tests.unit.hostile_inputs_table > docs/hostile-inputs.md"
CONTRACT_ORDER = ("OracleRouter", "Clearinghouse", "Orders", "LiquidationEngine", "Configurator", "MarginLens", "LiquidityPool")

INTRO = """\
# Hostile inputs

Every external function of the protocol's contracts, the bad inputs tried and the exact message
each gets. The table is generated from `ROWS` in `tests/unit/test_hostile_inputs.py`, which is
also what the tests run: each row is called on a freshly deployed protocol (after the row's own
setup, e.g. a paused market, a stale feed or an underwater account) and must

- revert with exactly the message below (*no reason string* means a bare revert: ABI decoding,
  checked arithmetic, or a call to an address without code);
- have been sent by the caller below (a real transaction, mined and failed; views are calls);
- change nothing: the storage root of every deployed contract (so every token balance and every
  view), the token balances of the contracts and of the caller, and the function's own views are
  equal before and after.

Further tests check that every revert message in `contracts/*.vy` is reached by a row (or listed
at the end as unreachable, with the reason), that every state-changing external function and
constructor has a row, and that this file equals the rendering of the table.

Trades take two steps: a trader commits an order (`Orders.commit_order`) and anyone executes
it at the first oracle round dated at least the settlement delay later. The Clearinghouse's
refusals of a fill (pause, reduce-only, the price limit, the open-interest cap, initial margin)
do not revert the execution: Orders cancels the order with that reason (its execution fee goes
to the insurance fund), so they are not rows here (see the end;
`tests/unit/orders/test_orders.py` checks each). Nor are the reasons Orders itself logs when it
cancels an order (`orders: round passed`, `orders: position changed`, `orders: expired`): they
are not revert messages. The debt ceiling and the open-interest reserve are checked at the
commit, which reverts (`orders: debt ceiling`, `orders: open interest reserve`): rows below. An
order cannot be cancelled or replaced while it can still fill, and an account with an order
open cannot withdraw.

Roles: *owner* deployed the Clearinghouse (only its deployer may connect it; it has no owner)
and owns the OracleRouter and the Configurator (the LiquidationEngine and Orders have no owner:
only the Configurator the Clearinghouse is connected to sets their parameters, only the engine
may call the Clearinghouse's liquidation functions and only Orders its `fill_order`);
*guardian* may pause; *attacker*, *keeper*, *trader*, *lp* and *victim* are ordinary accounts.
Unknown ids are tried as `0`, `count + 1` and `2**256 - 1`; unknown addresses as the zero
address, a real but unconfigured one, and `0xfff...f`.

Regenerate after editing the table:

    {regenerate}
"""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _message(message: str | None) -> str:
    return "*no reason string*" if message is None else f"`{_cell(message)}`"


def render(rows: Iterable[Any], unreachable: dict[str, str]) -> str:
    """The Markdown document for `rows` (objects with contract, function, bad_input, caller and
    message) and the allow-list of unreachable messages."""
    rows = list(rows)
    messages = {row.message for row in rows if row.message is not None}
    functions = {(row.contract, row.function) for row in rows}
    out = [INTRO.format(regenerate=REGENERATE)]
    out.append(
        f"\n{len(rows)} rows over {len(functions)} functions; {len(messages)} distinct revert messages (the "
        f"contracts' own and those of snekmate's ERC-20 and ownable), plus bare reverts.\n"
    )
    contracts = sorted({row.contract for row in rows}, key=lambda c: (CONTRACT_ORDER + (c,)).index(c))
    for contract in contracts:
        mine = [row for row in rows if row.contract == contract]
        first_seen: dict[str, int] = {}
        for index, row in enumerate(mine):
            first_seen.setdefault(row.function, index)
        mine = sorted(mine, key=lambda row: first_seen[row.function])  # stable: a function's rows together
        out.append(f"\n## {contract}\n\n| function | hostile input | caller | reverts with |\n|---|---|---|---|\n")
        for row in mine:
            function = "constructor" if row.function == "__init__" else f"`{row.function}`"
            caller = row.caller or "anyone (view)"
            out.append(f"| {function} | {_cell(row.bad_input)} | {caller} | {_message(row.message)} |\n")
    out.append("\n## Messages no input can reach\n\n| message | why |\n|---|---|\n")
    for message, reason in sorted(unreachable.items()):
        out.append(f"| `{_cell(message)}` | {_cell(reason)} |\n")
    return "".join(out)


def main() -> None:
    from tests.unit.test_hostile_inputs import ROWS, UNREACHABLE

    sys.stdout.write(render(ROWS, UNREACHABLE))


if __name__ == "__main__":
    main()
