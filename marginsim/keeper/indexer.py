"""Which accounts exist and which changed: the account events, read from the logs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eth_utils import keccak

from marginsim.protocol import CLEARINGHOUSE_ACCOUNT_EVENTS, ENGINE_ACCOUNT_EVENTS


class LogReader:
    """Some events of some contracts, read forward from `from_block` in eth_getLogs calls of at
    most `block_range` blocks (public nodes cap the range). A revm chain answers from the logs it
    keeps (`chain.get_logs`); a node through web3. `next_block` moves past a range only once all
    of it was read, so a failed read is tried again from the same block: no log is ever skipped.
    The account and order indexers share it."""

    def __init__(self, chain: Any, sources: Iterable[tuple[Any, Iterable[str]]], from_block: int, block_range: int = 2_000):
        sources = [(source, tuple(names)) for source, names in sources]
        self.chain = chain
        self.addresses = [source.address for source, _ in sources]
        self.next_block = from_block
        self.block_range = block_range
        # first topic (0x hex) -> event name
        self.topics = {
            "0x" + keccak(text=getattr(source, name).abi.selector).hex(): name for source, names in sources for name in names
        }

    def read(self, head: int | None = None) -> list[Any]:
        """The logs of blocks [next_block, head] (head: the chain's head), in chain order. A
        range the node refuses (too many results for its cap, or a hiccup) is halved and tried
        again, down to one block, and the range grows back after each success: a window
        flooded with events cannot stop the reader for good (only a single block the node
        refuses raises)."""
        head = self.chain.blocks.head.number if head is None else head
        logs: list[Any] = []
        first = self.next_block
        span = self.block_range
        while first <= head:
            last = min(head, first + span - 1)
            try:
                chunk = self._logs(first, last)
            except Exception:
                if last == first:
                    raise
                span = (last - first + 1) // 2
                continue
            logs.extend(chunk)
            first = last + 1
            span = min(self.block_range, span * 2)
        self.next_block = max(self.next_block, first)
        return logs

    def event_name(self, log: Any) -> str | None:
        """The name of the event a log read here carries."""
        return self.topics.get("0x" + bytes(log["topics"][0]).hex())

    def _logs(self, first: int, last: int) -> list[Any]:
        get_logs = getattr(self.chain, "get_logs", None)  # revm keeps its logs; a node answers eth_getLogs
        if get_logs is not None:
            return get_logs(self.addresses, first, last, list(self.topics))
        return self.chain.provider.web3.eth.get_logs(
            {"address": self.addresses, "fromBlock": first, "toBlock": last, "topics": [list(self.topics)]}
        )


class AccountIndexer(LogReader):
    """Accounts touched by the Clearinghouse's and the LiquidationEngine's account events (each
    event's first topic the account) since the last call, from `from_block` on, in eth_getLogs
    calls of at most `block_range` blocks (`LogReader`). The `BadDebt` logs read on the way are
    kept for whoever books them (`take_bad_debt_logs`). If a read fails, the same blocks are read
    again next time: no touched account is ever skipped."""

    def __init__(self, chain: Any, clearinghouse: Any, liquidation_engine: Any, from_block: int, block_range: int = 2_000):
        sources = [(clearinghouse, CLEARINGHOUSE_ACCOUNT_EVENTS), (liquidation_engine, ENGINE_ACCOUNT_EVENTS)]
        super().__init__(chain, sources, from_block, block_range)
        self._bad_debt_logs: list[Any] = []

    def touched_accounts(self, head: int | None = None) -> set[int]:
        """Accounts the events of blocks [next_block, head] touched (head: the chain's head)."""
        touched: set[int] = set()
        for log in self.read(head):
            touched.add(int.from_bytes(bytes(log["topics"][1]), "big"))
            if self.event_name(log) == "BadDebt":
                self._bad_debt_logs.append(log)
        return touched

    def take_bad_debt_logs(self) -> list[Any]:
        """The BadDebt logs read since the last call."""
        logs, self._bad_debt_logs = self._bad_debt_logs, []
        return logs
