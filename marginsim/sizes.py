"""Bytecode size budget: every deployable contract's runtime code against 20,480 bytes, the
24,576-byte EIP-170 limit less 4 KiB of headroom for the features still to come. `make sizes`
prints the table; a test fails when a contract passes its budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EIP170_LIMIT = 24_576  # bytes of runtime code a contract may deploy
BUDGET = 20_480  # EIP170_LIMIT less 4 KiB of headroom
CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"


def deployables() -> list[str]:
    """The protocol's deployable contracts: CamelCase files in contracts/ (modules are snake_case,
    mocks and attackers live in contracts/testing/)."""
    return sorted(p.stem for p in CONTRACTS.glob("*.vy") if p.stem[0].isupper())


def sizes(project: Any) -> dict[str, int]:
    """Runtime bytecode size in bytes of each deployable, as compiled for this project."""
    result = {}
    for name in deployables():
        code = getattr(project, name).contract_type.runtime_bytecode.bytecode
        result[name] = (len(code) - 2) // 2 if code.startswith("0x") else len(code) // 2
    return result


def report(measured: dict[str, int]) -> tuple[str, bool]:
    """The table and whether every contract is within its budget."""
    lines = [f"{'contract':20} {'bytes':>8} {'budget':>8} {'left':>8}  status"]
    ok = True
    for name, size in measured.items():
        within = size <= BUDGET
        ok &= within
        lines.append(f"{name:20} {size:>8,} {BUDGET:>8,} {BUDGET - size:>8,}  {'ok' if within else 'OVER'}")
    return "\n".join(lines), ok
