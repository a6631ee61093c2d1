"""LP requests a keeper executes: the pending ones (from the pool's events), which are due, and
the call.

While traders hold positions (or placed orders) the pool's value moves with every oracle round,
so LPs come and go by request only (contracts/LiquidityPool.vy: its instant paths revert "pool:
book open, request instead"): `request_deposit` or `request_redeem` escrows the tokens or the
shares and an execution fee (Orders'), and anyone may
`execute_request(controller)` from its `executable_at` (Orders' settlement delay after the
request) to `REQUEST_WINDOW` seconds later, paid the fee. After that window the request only
waits, pending on chain, for `lapse_request(controller)`, which anyone may send but which pays
the caller nothing: the escrow and the fee go back to the controller (a keeper paid for a lapse
would earn more by letting requests lapse than by executing them). So a keeper leaves a request
past its window to its LP. As for orders (`keeper.orders`), three things kept apart: the
requests waiting (`RequestIndexer`, from the logs, a request leaving it when its
`RequestExecuted` or `RequestLapsed` is read), which of them the time makes executable
(`due_requests`, pure), and the call with what came back (`execute`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from eth_utils import to_checksum_address

from marginsim.keeper.indexer import LogReader

REQUEST_EVENTS = ("RequestPlaced", "RequestExecuted", "RequestLapsed")
REQUEST_WINDOW = 900  # LiquidityPool.REQUEST_WINDOW: seconds after executable_at a request may execute
# gas of an execute_request, measured on the embedded chain (tests/sim/test_bot_requests.py's
# deployment: test_bots.py's $2M pool, ETH-PERP the one market with open interest; the fee paid
# to a keeper already holding the token): a redemption 233,840 (paid to a receiver holding the
# token) or 250,940 (to one holding none); a deposit 246,526 (minted to a holder whose lots are all
# out of their cooldown), 263,583 (one lot still in it) or 280,726 (a new holder). Those are with
# the pool holding no other escrow: while other LPs' requests wait (their tokens or shares in the
# pool), the pool's balances are not emptied and earn no refund, 4,800 more for a deposit and
# 9,600 for a redemption (243,440 to 285,526). A keeper's first fee costs 17,100 more (its token
# balance from zero), a one-off. The estimate covers the costliest usual one, a new LP's deposit
# beside other requests; each further market with open interest adds its price read to the
# pool's valuation. (Far above an order fill's FILL_GAS, for the same fee: Orders' execution_fee.)
# Those were measured before RequestExecuted logged the fee, which adds about 200 (a new holder's
# deposit 280,917 since): still under the estimate. A capped execution (the value moved in the
# LP's favour since the request) also writes the shares the Clearinghouse keeps: 7,351 more for a
# deposit, 8,215 for a redemption (24,451 and 25,315 for the pool's first kept shares, a one-off),
# so a capped deposit to a new holder is at the estimate (290,135, measured by
# tests/e2e/test_review_m1_excess.py's I1); a keeper that skips one at the margin leaves it to the
# next, or to its LP.
REQUEST_GAS = 290_000


class PendingRequest(NamedTuple):
    """A request placed and not yet executed or lapsed, as its `RequestPlaced` event gave it."""

    executable_at: int  # executable in [executable_at, executable_at + REQUEST_WINDOW]; after, its LP's to lapse
    fee: int  # escrowed execution fee, settlement token units: the executing keeper's pay (a lapse returns it)
    deposit: bool  # a deposit request; else a redemption


def apply_request_log(pending: dict[str, PendingRequest], name: str | None, log: Any) -> None:
    """Fold one pool log into `pending` (controller -> request; a checksum address): a placed
    request adds its request (one per controller) last, so `pending` keeps the order of the
    requests; an execution or a lapse removes it."""
    controller = to_checksum_address(bytes(log["topics"][1])[12:])
    pending.pop(controller, None)
    if name == "RequestPlaced":
        # data: deposit (bool), assets, shares, executable_at, fee
        data = bytes(log["data"])
        deposit = int.from_bytes(data[0:32], "big") != 0
        executable_at, fee = int.from_bytes(data[96:128], "big"), int.from_bytes(data[128:160], "big")
        pending[controller] = PendingRequest(executable_at, fee, deposit)


class RequestIndexer(LogReader):
    """The pending requests of `pool` (the LiquidityPool), kept from its events since `from_block`
    (one past its window stays until it is lapsed; `due_requests` leaves it out), read as the
    order index reads Orders' (`LogReader`: chunks of `block_range` blocks; a failed read leaves
    the index as it was and is tried again)."""

    def __init__(self, chain: Any, pool: Any, from_block: int, block_range: int = 2_000):
        super().__init__(chain, [(pool, REQUEST_EVENTS)], from_block, block_range)
        self.pending: dict[str, PendingRequest] = {}

    def update(self, head: int | None = None) -> dict[str, PendingRequest]:
        """Fold in the events of blocks [next_block, head] (head: the chain's head); returns the
        pending requests, controller -> request, in the order they were placed."""
        for log in self.read(head):
            apply_request_log(self.pending, self.event_name(log), log)
        return self.pending


def due_requests(pending: dict[str, PendingRequest], now: int, window: int = REQUEST_WINDOW) -> list[tuple[str, PendingRequest]]:
    """The pending requests a block dated `now` lets a keeper execute, each (controller, request),
    in the order they were placed: those in their window (executable_at <= now <= executable_at +
    window). The others are not due yet, or past their window: those stay pending on chain until
    their LP (or anyone) lapses them, for no pay, and are no keeper's business. A transaction
    lands in a later block than the one `now` is read from, so one at the very end of its window
    may revert "pool: request lapsed"."""
    return [(c, r) for c, r in pending.items() if r.executable_at <= now <= r.executable_at + window]


@dataclass(frozen=True)
class RequestDone:
    """What an `execute_request` that landed did, as its `RequestExecuted` event says."""

    receipt: Any
    deposit: bool  # a deposit request; else a redemption
    receiver: str  # who got the shares (deposit) or the tokens (redemption)
    assets: int  # settlement token units deposited or paid out
    shares: int  # shares minted or burned
    fee: int  # settlement token units the keeper was paid: the request's escrowed fee

    @property
    def gas_used(self) -> int:
        return int(self.receipt.gas_used)


def execute(protocol: Any, signer: Any, controller: str) -> RequestDone:
    """`LiquidityPool.execute_request(controller)` from `signer`. Raises the chain's revert
    (`errors.REVERTS`) when nothing happened: "pool: no request" (executed already by another
    keeper, or lapsed), "pool: request not due" / "pool: request lapsed" (out of its window), or
    the pool cannot do it now ("pool: open interest reserve", "clearinghouse: pool liquidity",
    "pool: collateral feed down", "pool: insolvent", "pool: too many locked deposits", "pool: zero
    amount"): such a request waits, and is left to its LP once its window has passed."""
    receipt = protocol.pool.execute_request(controller, sender=signer)
    for event in receipt.events:
        if event.event_name == "RequestExecuted" and _same(event.contract_address, protocol.pool.address):
            return RequestDone(
                receipt, bool(event.deposit), str(event.receiver), int(event.assets), int(event.shares), int(event.fee)
            )
    raise ValueError("execute_request logged no RequestExecuted")


def _same(a: Any, b: Any) -> bool:
    return str(a).lower() == str(b).lower()
