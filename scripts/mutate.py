"""Mutation benchmark (`make mutate`, not a test): plant one small, plausible bug at a time in the
money paths (a rounding direction, a bound, a cap, a metric), run the tests that should notice
it, and print which test killed each mutant. Every mutant must die; a survivor is a blind spot
of the suite (exit 1).

Each mutant replaces one exact piece of source that occurs once in its file; the file is
restored afterwards whatever happens (and the contracts recompiled). `MUTANTS=id,id` runs only
those. Run from the repository root with the project's venv: `make mutate`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APE = ROOT / ".venv" / "bin" / "ape"


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository root
    old: str  # occurs exactly once in the file
    new: str
    what: str
    tests: tuple[str, ...]  # the tests that should notice it


MUTANTS = (
    Mutant(
        "fee-bound",
        "contracts/Configurator.vy",
        "params.fee + risk._ceil_div(params.oi_cap * c.WAD, params.skew_scale) < params.base_mmr",
        "params.fee + risk._ceil_div(params.oi_cap * c.WAD, params.skew_scale) <= params.base_mmr",
        "Configurator: the fee bound allows fee + premium == base_mmr",
        ("tests/unit/configurator/test_set_market.py",),
    ),
    Mutant(
        "fill-buy-rounds-down",
        "contracts/risk.vy",
        "return self._ceil_div(price * convert(numerator, uint256), 2 * skew_scale)",
        "return price * convert(numerator, uint256) // (2 * skew_scale)",
        "risk._fill_price: a buy's fill rounds down (for the trader)",
        ("tests/sim/test_risk_mirror.py", "tests/unit/clearinghouse/test_trade.py"),
    ),
    Mutant(
        "penalty-rounds-down",
        "contracts/risk.vy",
        "penalty: uint256 = self._ceil_div(self._mul_up(closed_notional, penalty_rate), settlement_to_wad)",
        "penalty: uint256 = self._mul_up(closed_notional, penalty_rate) // settlement_to_wad",
        "risk._liquidation_penalty: the penalty rounds down (for the account)",
        ("tests/unit/liquidation_engine/test_least_size.py",),
    ),
    Mutant(
        "oi-cap-off-by-one",
        "contracts/Clearinghouse.vy",
        'vault._require((st.long_oi if new_size > 0 else st.short_oi) <= params.oi_cap, "clearinghouse: open interest cap")',
        'vault._require((st.long_oi if new_size > 0 else st.short_oi) < params.oi_cap, "clearinghouse: open interest cap")',
        "trade: a long may not reach the open-interest cap exactly",
        ("tests/unit/clearinghouse/test_trade.py",),
    ),
    Mutant(
        "reserve-inclusive",
        "contracts/Orders.vy",
        'assert convert(need, int256) <= value, "orders: open interest reserve"',
        'assert convert(need, int256) < value, "orders: open interest reserve"',
        "Orders: a side may not reach its open-interest reserve exactly",
        ("tests/unit/orders/test_reserve.py",),
    ),
    Mutant(
        "hold-never-released",
        "contracts/Orders.vy",
        "apply_hold(market, longs, shorts, False)",
        "apply_hold(market, 0, 0, False)",
        "Orders: an order that ends leaves its open interest held in the pool",
        ("tests/unit/orders/test_reserve.py",),
    ),
    Mutant(
        "reserve-headroom-rounds-down",
        "contracts/LiquidityPool.vy",
        "need += risk._ceil_div(risk._mul_up(side, price) * c.WAD, factor)",
        "need += risk._mul_up(side, price) * c.WAD // factor",
        "LiquidityPool: the capital a side needs rounds down",
        ("tests/unit/orders/test_reserve.py",),
    ),
    Mutant(
        "mirror-reserve-rounds-down",
        "marginsim/risk.py",
        "    return mul_up(side_oi, price)",
        "    return mul_down(side_oi, price)",
        "marginsim.risk.reserve_value: a side's USD value rounds down",
        ("tests/unit/orders/test_reserve.py",),
    ),
    Mutant(
        "tip-uncapped",
        "contracts/LiquidationEngine.vy",
        "min(risk._mul_down(closed_notional, self.underwater_tip_rate), MAX_TIP) // SETTLEMENT_TO_WAD,",
        "risk._mul_down(closed_notional, self.underwater_tip_rate) // SETTLEMENT_TO_WAD,",
        "LiquidationEngine: the underwater tip loses its $1,000 cap",
        ("tests/unit/clearinghouse/test_liquidate.py",),
    ),
    Mutant(
        "least-close-tier-floor",
        "contracts/risk.vy",
        "        x = max(x, abs_size - upper_remainder)\n",
        "        pass\n",
        "risk._least_close: the close no longer reaches down into the solved tier",
        ("tests/unit/liquidation_engine/test_least_size.py",),
    ),
    Mutant(
        "premium-not-first",
        "contracts/LiquidationEngine.vy",
        "s.equity - premium, s.maintenance, closed_notional, mmr, s.penalty, SETTLEMENT_TO_WAD",
        "s.equity, s.maintenance, closed_notional, mmr, s.penalty, SETTLEMENT_TO_WAD",
        "LiquidationEngine: the penalty is taken before the premium a whole close pays",
        ("tests/e2e/test_skew_premium_liquidation.py", "tests/e2e/test_black_thursday_2020.py"),
    ),
    Mutant(
        "lot-unlock-inclusive",
        "contracts/LiquidityPool.vy",
        "        if t <= block.timestamp:\n            if free == LOTS:",
        "        if t < block.timestamp:\n            if free == LOTS:",
        "LiquidityPool: a lot unlocking this second is not reused",
        ("tests/e2e/test_lp_lock_griefing.py", "tests/unit/liquidity_pool"),
    ),
    Mutant(
        "write-off-reads-feed",
        "contracts/margining.vy",
        "        if col.weight == 0:\n            continue  # written off: worth nothing, and its feed is not read\n",
        "",
        "margining: a written-off collateral's feed is still read",
        ("tests/unit/configurator/test_write_off.py",),
    ),
    Mutant(
        "mirror-fill-rounds-down",
        "marginsim/risk.py",
        "        return ceil_div(price * numerator, 2 * skew_scale)",
        "        return price * numerator // (2 * skew_scale)",
        "marginsim.risk.fill_price: a buy's fill rounds down",
        ("tests/sim/test_risk_mirror.py", "tests/unit/liquidation_engine/test_least_size.py"),
    ),
    Mutant(
        "delay-metric-reset",
        "marginsim/sim/engine.py",
        "delay_blocks=sim_block - liquidatable_since.get(candidate.account, sim_block),",
        "delay_blocks=0,",
        "simulator: every liquidation delay is recorded as 0",
        ("tests/sim/test_simulation.py",),
    ),
    Mutant(
        "commit-margin-credits-closes",
        "contracts/Orders.vy",
        "if abs(other.position + other.size_delta) > abs(other.position):",
        "if abs(other.position + other.size_delta) >= 0:",
        "Orders._margin_for_orders: every other open order is filled in the what-if, a close too",
        ("tests/unit/orders/test_margin.py", "tests/e2e/test_review_margin_commit.py"),
    ),
    Mutant(
        "commit-margin-one-other-ignored",
        "contracts/Orders.vy",
        "if self.open_orders[account] > 1:",
        "if self.open_orders[account] > 2:",
        "Orders._margin_for_orders: a single other open order is left out of the what-if",
        ("tests/unit/orders/test_margin.py",),
    ),
    Mutant(
        "commit-margin-flip-unchecked",
        "contracts/Orders.vy",
        "    equity: int256 = 0\n    initial: uint256 = 0\n",
        "    if len(markets) == 0:\n        return True\n    equity: int256 = 0\n    initial: uint256 = 0\n",
        "Orders._margin_for_orders: a smaller flip with nothing else growing is not checked",
        ("tests/e2e/test_review_margin_commit_2.py",),
    ),
    Mutant(
        "commit-under-pause",
        "contracts/Orders.vy",
        '        assert not staticcall CLEARINGHOUSE.paused(), "orders: paused"\n',
        "",
        "Orders.commit_order: an order that adds risk commits while paused (a free, refunded hold)",
        ("tests/unit/orders/test_orders.py",),
    ),
    Mutant(
        "pause-refusal-forfeits",
        "contracts/Orders.vy",
        'if h == keccak256("clearinghouse: paused") or',
        'if h == keccak256("clearinghouse: paused!") or',
        "Orders.execute_order: a fill refused for a pause thrown after the commit forfeits fee and bond",
        ("tests/unit/orders/test_orders.py",),
    ),
    Mutant(
        "commit-cap-unchecked",
        "contracts/Orders.vy",
        "assert (longs_after if longs != 0 else shorts_after) <= (staticcall",
        "assert 0 <= (staticcall",
        "Orders._hold: the open-interest cap not checked at the commit with the placed orders",
        ("tests/unit/orders/test_orders.py",),
    ),
    Mutant(
        "cap-cut-ignores-holds",
        "contracts/Configurator.vy",
        "assert st.long_oi + held_longs <= params.oi_cap",
        "assert st.long_oi <= params.oi_cap",
        "Configurator.set_market: a new cap checked against the open interest without the holds",
        ("tests/unit/orders/test_orders.py",),
    ),
    Mutant(
        "written-off-to-caller",
        "contracts/LiquidationEngine.vy",
        "receiver = staticcall IOwned(staticcall CLEARINGHOUSE.configurator()).owner()",
        "receiver = msg.sender",
        "LiquidationEngine.liquidate_collateral: a written-off balance goes to the caller",
        ("tests/e2e/test_venus_luna_2022.py",),
    ),
    Mutant(
        "realise-a-gain",
        "contracts/LiquidationEngine.vy",
        'assert result.realised_pnl < -1, "liquidation: no loss to realise"',
        'assert result.realised_pnl != 0, "liquidation: no loss to realise"',
        "LiquidationEngine.realise_loss: a third party may realise a gain",
        ("tests/unit/clearinghouse/test_realise_loss.py",),
    ),
    Mutant(
        "realise-one-unit",
        "contracts/LiquidationEngine.vy",
        'assert result.realised_pnl < -1, "liquidation: no loss to realise"',
        'assert result.realised_pnl < 0, "liquidation: no loss to realise"',
        "LiquidationEngine.realise_loss: the reset basis's one-unit rounding passes as a loss",
        ("tests/e2e/test_review_v3_realise.py",),
    ),
    Mutant(
        "realise-over-the-limit",
        "contracts/LiquidationEngine.vy",
        '    assert not self._loan(account)[2], "liquidation: realisation over the loan limit"\n',
        "",
        "LiquidationEngine.realise_loss: a realisation may put the collateral up for sale",
        ("tests/e2e/test_review_v3_realise.py",),
    ),
    Mutant(
        "realise-keeps-basis",
        "contracts/perps.vy",
        "closing = old_size  # a realisation",
        "closing = 0  # a realisation",
        "perps._apply_fill: a realisation (delta 0) closes nothing",
        ("tests/unit/clearinghouse/test_realise_loss.py",),
    ),
    Mutant(
        "pool-exit-reads-written-off-feed",
        "contracts/LiquidityPool.vy",
        "        if col.weight == 0 or col.total == 0:",
        "        if col.total == 0:",
        "LiquidityPool._collateral_priced: a written-off token's feed still holds LP exits",
        ("tests/e2e/test_review_v3_realise.py",),
    ),
    Mutant(
        "pool-exit-reads-unheld-feed",
        "contracts/LiquidityPool.vy",
        "        if col.weight == 0 or col.total == 0:",
        "        if col.weight == 0:",
        "LiquidityPool._collateral_priced: a token nobody holds still holds LP exits",
        ("tests/e2e/test_review_v3_realise.py",),
    ),
    Mutant(
        "pool-deposit-ignores-feeds",
        "contracts/LiquidityPool.vy",
        '    assert self._collateral_priced(), "pool: collateral feed down"\n'
        '    assert assets > 0 and shares > 0, "pool: zero amount"\n    # an insolvent',
        '    assert assets > 0 and shares > 0, "pool: zero amount"\n    # an insolvent',
        "LiquidityPool._deposit: LP deposits go on while a held collateral has no price",
        ("tests/e2e/test_review_v3_realise.py",),
    ),
    Mutant(
        "pool-exit-ignores-feeds",
        "contracts/LiquidityPool.vy",
        "        if not ok:\n            return False\n",
        "",
        "LiquidityPool._collateral_priced: LP exits go on while a collateral has no price",
        ("tests/e2e/test_review_v2_solvency.py",),
    ),
    Mutant(
        "trader-threshold-inclusive",
        "marginsim/sim/engine.py",
        "if trader.tops_up and trader.topped_up < 3 and h < trader.topup_below:",
        "if trader.tops_up and trader.topped_up < 3 and h <= trader.topup_below:",
        "simulator: a trader tops up at exactly its threshold",
        ("tests/sim/test_traders_and_sweep.py",),
    ),
)


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{APE.parent}:{os.environ.get('PATH', '')}", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


def killer(output: str) -> str | None:
    """The first failing test id in pytest's short summary, or None when everything passed."""
    found = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return found.group(1) if found else None


def try_mutant(mutant: Mutant) -> tuple[str, float]:
    path = ROOT / mutant.path
    source = path.read_text()
    if source.count(mutant.old) != 1:
        return "stale: the mutated text is not in the file exactly once", 0.0
    started = time.monotonic()
    try:
        path.write_text(source.replace(mutant.old, mutant.new))
        if mutant.path.endswith(".vy"):
            # --force: a module's dependents are not recompiled when only the module changed
            compiled = run([str(APE), "compile", "--force"])
            if compiled.returncode != 0:
                return "killed by the compiler", time.monotonic() - started
        result = run([str(APE), "test", *mutant.tests, "-x", "-q", "-p", "no:cacheprovider"])
        return (killer(result.stdout) or ("SURVIVED" if result.returncode == 0 else "killed (see the run)")), (
            time.monotonic() - started
        )
    finally:
        path.write_text(source)


def main() -> int:
    only = {m for m in os.environ.get("MUTANTS", "").split(",") if m}
    unknown = only - {m.id for m in MUTANTS}
    if unknown:
        print(f"mutate: unknown mutant(s) {', '.join(sorted(unknown))}; known: {', '.join(m.id for m in MUTANTS)}")
        return 2
    chosen = [m for m in MUTANTS if not only or m.id in only]
    survivors = 0
    print(f"{'mutant':28} {'seconds':>8}  killed by")
    try:
        for mutant in chosen:
            verdict, seconds = try_mutant(mutant)
            survivors += verdict == "SURVIVED" or verdict.startswith("stale")
            print(f"{mutant.id:28} {seconds:8.1f}  {verdict}")
            print(f"{'':28} {'':8}  ({mutant.what})")
    finally:
        run([str(APE), "compile", "--force"])  # the restored sources
    print(f"{len(chosen) - survivors} of {len(chosen)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
