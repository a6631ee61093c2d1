"""The budgets CI holds the contracts to: runtime size (`make sizes`) and gas (`make gas`)."""

import json
from pathlib import Path

from marginsim import gas, sizes

SNAPSHOT = Path(__file__).resolve().parents[2] / "gas-snapshot.json"
GROWTH = 1.02  # a figure may grow 2% over the committed snapshot before this fails


def test_sizes__every_deployable_within_budget(project):
    measured = sizes.sizes(project)
    assert set(measured) >= {"Clearinghouse", "LiquidationEngine", "Configurator", "OracleRouter", "MarginLens", "LiquidityPool"}
    over = {name: size for name, size in measured.items() if size > sizes.BUDGET}
    assert not over, f"over the {sizes.BUDGET:,}-byte budget: {over}"


def test_gas__no_figure_grows_over_2_percent_of_the_snapshot(project, chain, accounts):
    """Run `make gas` and commit gas-snapshot.json with a change that costs gas on purpose."""
    committed = json.loads(SNAPSHOT.read_text())["gas_used"]
    measured = gas.run(project, chain, list(accounts)[:6])
    missing = sorted(set(measured) - set(committed))
    assert not missing, f"not in gas-snapshot.json (run `make gas`): {missing}"
    grown = {name: f"{used:,} > {committed[name]:,} + 2%" for name, used in measured.items() if used > committed[name] * GROWTH}
    assert not grown, f"gas grew (run `make gas` and commit the snapshot if intended): {grown}"
