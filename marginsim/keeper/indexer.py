"""Which accounts exist and which changed: the account events, read from the logs."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak

from marginsim.protocol import CLEARINGHOUSE_ACCOUNT_EVENTS, ENGINE_ACCOUNT_EVENTS


class AccountIndexer:
    """Accounts touched by the Clearinghouse's and the LiquidationEngine's account events (each
    event's first topic the account) since the last call, from `from_block` on, in eth_getLogs
    calls of at most `block_range` blocks (public nodes cap the range). A revm chain answers
    from the logs it keeps (`chain.get_logs`); a node through web3. The `BadDebt` logs read on
    the way are kept for whoever books them (`take_bad_debt_logs`). If a read fails, the same
    blocks are read again next time: no touched account is ever skipped."""

    def __init__(self, chain: Any, clearinghouse: Any, liquidation_engine: Any, from_block: int, block_range: int = 2_000):
        self.chain = chain
        sources = [(clearinghouse, CLEARINGHOUSE_ACCOUNT_EVENTS), (liquidation_engine, ENGINE_ACCOUNT_EVENTS)]
        self.addresses = [source.address for source, _ in sources]
        self.next_block = from_block
        self.block_range = block_range
        self.topics = {
            "0x" + keccak(text=getattr(source, name).abi.selector).hex(): name for source, names in sources for name in names
        }
        self._bad_debt_logs: list[Any] = []

    def touched_accounts(self, head: int | None = None) -> set[int]:
        """Accounts the events of blocks [next_block, head] touched (head: the chain's head)."""
        head = self.chain.blocks.head.number if head is None else head
        touched: set[int] = set()
        start, bad_debt = self.next_block, len(self._bad_debt_logs)
        try:
            while self.next_block <= head:
                last = min(head, self.next_block + self.block_range - 1)
                for log in self._logs(self.next_block, last):
                    touched.add(int.from_bytes(bytes(log["topics"][1]), "big"))
                    if self.topics.get("0x" + bytes(log["topics"][0]).hex()) == "BadDebt":
                        self._bad_debt_logs.append(log)
                self.next_block = last + 1
        except Exception:
            self.next_block = start
            del self._bad_debt_logs[bad_debt:]
            raise
        return touched

    def take_bad_debt_logs(self) -> list[Any]:
        """The BadDebt logs read since the last call."""
        logs, self._bad_debt_logs = self._bad_debt_logs, []
        return logs

    def _logs(self, first: int, last: int) -> list[Any]:
        get_logs = getattr(self.chain, "get_logs", None)  # revm keeps its logs; a node answers eth_getLogs
        if get_logs is not None:
            return get_logs(self.addresses, first, last, list(self.topics))
        return self.chain.provider.web3.eth.get_logs(
            {"address": self.addresses, "fromBlock": first, "toBlock": last, "topics": [list(self.topics)]}
        )
