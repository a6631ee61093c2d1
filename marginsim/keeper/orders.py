"""Orders a keeper fills: the pending ones (from Orders' events), which are due, and the fill.

Every trade is a delayed order (contracts/Orders.vy): it fills at the first round of its
market's feed dated at or after its `executable_at`, and whoever sends `execute_order` then is
paid its execution fee. A keeper therefore needs three things, kept apart so the simulator's
order book and the keeper bot share them: the orders waiting (`OrderIndexer`, from the logs as
the account index is), which of them a round has made due (`due_orders`, pure), and the call
with what came back (`fill_order`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from marginsim.keeper.indexer import LogReader

ORDER_EVENTS = ("OrderCommitted", "OrderFilled", "OrderCancelled")
# gas of an execute_order that fills, measured on the embedded chain (tests/sim/test_bot_orders.py's
# deployment, a one-market account): opening a position 186,549 (long) / 186,692 (short), adding
# to one 169,485, flipping one 171,043, reducing or closing one 118,743 to 128,383. The estimate
# covers the costliest usual fill, an open; the first fill in an empty market (225,367 in the gas
# benchmark) is a one-off, and a cancel costs less than a fill.
FILL_GAS = 190_000


class PendingOrder(NamedTuple):
    """An order placed and not yet filled or cancelled, as its `OrderCommitted` event gave it."""

    executable_at: int  # it fills at the first round dated at or after this time
    fee: int  # escrowed execution fee, settlement token units: the filling keeper's pay
    size_delta: int  # base units, WAD; > 0 buys


def apply_order_log(pending: dict[tuple[int, int], PendingOrder], name: str | None, log: Any) -> None:
    """Fold one Orders log into `pending` ((account, market) -> order): a commit adds its order
    (one per account and market: a new commit replaces the old, whose cancel Orders logs first)
    and moves it last, so `pending` keeps the order of the commits; a fill or a cancel removes it."""
    topics = log["topics"]
    key = (int.from_bytes(bytes(topics[1]), "big"), int.from_bytes(bytes(topics[2]), "big"))
    pending.pop(key, None)
    if name == "OrderCommitted":
        # data: size_delta (int256), limit_price, executable_at, fee, bond
        data = bytes(log["data"])
        size_delta = int.from_bytes(data[0:32], "big", signed=True)
        executable_at, fee = int.from_bytes(data[64:96], "big"), int.from_bytes(data[96:128], "big")
        pending[key] = PendingOrder(executable_at, fee, size_delta)


class OrderIndexer(LogReader):
    """The orders of `orders` (the Orders contract) waiting to be filled, kept from its events
    since `from_block`, read as the account index reads its own (`LogReader`: chunks of
    `block_range` blocks; a failed read leaves the index as it was and is tried again)."""

    def __init__(self, chain: Any, orders: Any, from_block: int, block_range: int = 2_000):
        super().__init__(chain, [(orders, ORDER_EVENTS)], from_block, block_range)
        self.pending: dict[tuple[int, int], PendingOrder] = {}

    def update(self, head: int | None = None) -> dict[tuple[int, int], PendingOrder]:
        """Fold in the events of blocks [next_block, head] (head: the chain's head); returns
        the pending orders, (account, market) -> order, in the order they were committed."""
        for log in self.read(head):
            apply_order_log(self.pending, self.event_name(log), log)
        return self.pending


def due_orders(pending: dict[tuple[int, int], PendingOrder], market: int, round_time: int) -> list[tuple[int, PendingOrder]]:
    """(account, order) of each order of `market` that the market's latest round, dated
    `round_time` (its `updatedAt`), lets execute_order settle, in the order they were committed.
    Whether the round is still the order's own (fills) or a later one (the order's round passed:
    execute_order cancels it) is the router's `round_price` to say."""
    return [(account, order) for (account, m), order in pending.items() if m == market and order.executable_at <= round_time]


@dataclass(frozen=True)
class Filled:
    """What an `execute_order` that landed did: filled (the fee is the keeper's) or cancelled."""

    receipt: Any
    filled: bool
    size_delta: int  # base units, WAD, of the order
    price: int  # the fill price, WAD; 0 for a cancel
    fee: int  # settlement token units earned: the order's fee when filled, else 0
    reason: str = ""  # why Orders cancelled it
    refunded: bool = False  # a cancel's fee and bond went back to the owner, not the insurance fund

    @property
    def gas_used(self) -> int:
        return int(self.receipt.gas_used)


def fill_order(protocol: Any, signer: Any, account: int, market: int) -> Filled:
    """`Orders.execute_order(account, market)` from `signer`. Raises the chain's revert
    (`errors.REVERTS`) when nothing happened: "orders: no order" (filled or cancelled already,
    by another keeper), or the router's price errors while there is no round to fill at."""
    receipt = protocol.orders.execute_order(account, market, sender=signer)
    for event in receipt.events:
        if event.event_name == "OrderFilled":
            return Filled(receipt, True, int(event.size_delta), int(event.fill_price), int(event.fee))
        if event.event_name == "OrderCancelled":
            owner = (account >> 96).to_bytes(20, "big")
            refunded = bytes.fromhex(str(event.fee_to).removeprefix("0x")) == owner
            return Filled(receipt, False, int(event.size_delta), 0, 0, str(event.reason), refunded)
    raise ValueError("execute_order logged neither OrderFilled nor OrderCancelled")
