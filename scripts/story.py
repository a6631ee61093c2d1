"""The scripted crash story (`make story`): seven traders, a 30% fall in twelve rounds, one keeper,
on the embedded local chain (or any network given with --network)."""

from ape import accounts, chain, project
from ape.logging import logger

from marginsim.report import story_header, story_row, story_summary
from marginsim.story import DEFAULT_TRADERS, run_story, token_accounting


def main():
    logger.set_level("WARNING")  # one line per round, not one per transaction
    signers = list(accounts.test_accounts)[: 3 + len(DEFAULT_TRADERS)]
    print("marginsim demo: 7 traders, then ETH falls 30% (BTC 15%) in 12 oracle rounds, 10 minutes apart,\nwith one -8% gap;")
    print("a keeper liquidates every account that falls below maintenance margin.\n")
    for i, t in enumerate(DEFAULT_TRADERS):
        print(f"  T{i + 1}: {t.name:<20} {t.market}, ${t.collateral_usd:,.0f} of {t.collateral_symbol} as collateral")
    print()
    print(story_header([t.name for t in DEFAULT_TRADERS]))
    result = run_story(project, chain, signers, on_round=lambda r: print(story_row(r), flush=True))
    accounting = token_accounting(result.protocol, list(result.accounts.values()))
    print(story_summary(result, accounting))
