"""Plain-text tables for the terminal."""

from __future__ import annotations

from marginsim.story import RoundRecord, StoryResult


def _health_cell(h: float | None) -> str:
    if h is None:
        return "-"
    if h > 99:
        return ">99"
    mark = "!" if h < 1 else " "
    return f"{h:5.2f}{mark}"


def story_header(names: list[str]) -> str:
    short = [f"T{i + 1}" for i in range(len(names))]
    cols = ["min", "ETH $", "BTC $"] + short + ["liqs", "closed $", "keeper $", "insurance $", "pool $", "bad debt $"]
    widths = [4, 8, 8] + [7] * len(names) + [5, 10, 9, 11, 13, 10]
    return "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=False))


def story_row(r: RoundRecord) -> str:
    cells = [f"{r.minute:4d}", f"{r.eth_price:8.2f}", f"{r.btc_price:8.0f}"]
    cells += [_health_cell(h).rjust(7) for h in r.health.values()]
    cells += [
        f"{r.liquidations:5d}",
        f"{r.closed_notional_usd:10,.0f}",
        f"{r.keeper_reward_usd:9,.2f}",
        f"{r.insurance_usd:11,.0f}",
        f"{r.pool_value_usd:13,.0f}",
        f"{r.bad_debt_usd:10,.2f}",
    ]
    return "  ".join(cells)


def story_summary(result: StoryResult, accounting: dict[str, int]) -> str:
    total_closed = sum(r.closed_notional_usd for r in result.rounds)
    total_reward = sum(r.keeper_reward_usd for r in result.rounds)
    total_bad = sum(r.bad_debt_usd for r in result.rounds)
    first, last = result.rounds[0], result.rounds[-1]
    lines = [
        "",
        f"liquidations: {len(result.liquidations)} calls, ${total_closed:,.0f} notional closed",
        f"keeper earned: ${total_reward:,.2f}   insurance fund: ${first.insurance_usd:,.2f} -> ${last.insurance_usd:,.2f}",
        f"pool value: ${first.pool_value_usd:,.2f} -> ${last.pool_value_usd:,.2f}   bad debt: ${total_bad:,.2f}",
        "still below maintenance: " + str(sum(1 for h in last.health.values() if h is not None and h < 1)),
        (
            "settlement tokens held by the clearinghouse: "
            f"{accounting['held']:,} = internal balances {accounting['internal_sum']:,}"
            + (
                "  (equal to the wei)"
                if accounting["held"] == accounting["internal_sum"] == accounting["settlement_held"]
                else "  MISMATCH"
            )
        ),
        "T1..: each trader's health = equity / maintenance requirement; '!' below 1 = liquidatable; '-' = no position left",
    ]
    return "\n".join(lines)
