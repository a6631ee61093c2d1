"""A thin, fast path to ape's embedded chain for the simulator's hot loop.

ape wraps every call and transaction in validation, gas pricing, receipt decoding and history
bookkeeping: about 11 ms per view call and 35 ms per transaction on these machines, most of it
Python around a sub-millisecond EVM execution. On the embedded chain (`ethereum:local:test`) the
simulator instead talks to the same eth-tester instance ape holds, with calldata encoded and
results decoded by eth-abi from the contract's own ABI: the same chain, the same contracts and
the same blocks, at roughly a tenth of the overhead.

Calldata, results and logs go through `marginsim.chain.abi`, the encoding the revm chain uses too.
`fast(contract)` returns a handle with the contract's methods (`handle.fn(*args)` for views,
`handle.fn(*args, sender=account)` for transactions) when the connected provider is the embedded
chain, and the ape contract itself on any other network, so callers never branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marginsim.chain.abi import ERROR_SELECTOR, Event, decode_event, event_topic, overloads, reason

CALL_GAS = 30_000_000
TX_GAS = 3_000_000  # above any single protocol call (a 4-market liquidation is ~275k)
MAX_FEE = 10**12  # wei per gas the sender accepts; it pays only the chain's base fee


class FastRevert(Exception):
    """A fast-path transaction or call reverted; `message` is the revert reason."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FastReceipt:
    txn_hash: str
    gas_used: int
    events: list[Event]


class _Method:
    def __init__(self, handle: FastContract, entries: list[dict[str, Any]]):
        self.handle = handle
        self.name = entries[0]["name"]
        self.by_arity = overloads(entries)

    def __call__(self, *args: Any, sender: Any = None) -> Any:
        try:
            overload = self.by_arity[len(args)]
        except KeyError:
            raise TypeError(f"{self.name}: no overload takes {len(args)} arguments") from None
        tester = self.handle.tester
        data = "0x" + overload.calldata(args).hex()
        if overload.view or sender is None:
            try:
                raw = tester.call(
                    {"from": self.handle.caller, "to": self.handle.address, "data": data, "gas": CALL_GAS}, "latest"
                )
            except Exception as error:  # eth-tester raises TransactionFailed with the reason
                raise FastRevert(_reason(error)) from None
            return overload.result(bytes.fromhex(raw[2:]))
        txn = {
            "from": str(getattr(sender, "address", sender)),
            "to": self.handle.address,
            "data": data,
            "gas": TX_GAS,
            "value": 0,
            "max_fee_per_gas": MAX_FEE,
            "max_priority_fee_per_gas": 0,
        }
        try:
            txn_hash = tester.send_transaction(txn)
        except Exception as error:
            raise FastRevert(_reason(error)) from None
        receipt = tester.get_transaction_receipt(txn_hash)
        if receipt.get("status", 1) == 0:
            # mined and reverted: replay it as a call on the state it left (unchanged but for the
            # sender's nonce and gas) to read the reason
            try:
                tester.call({k: txn[k] for k in ("from", "to", "data", "gas")}, "latest")
            except Exception as error:
                raise FastRevert(_reason(error)) from None
            raise FastRevert("reverted without a reason")
        return FastReceipt(txn_hash, int(receipt["gas_used"]), self.handle.decode_logs(receipt["logs"]))


def _reason(error: Exception) -> str:
    """The revert string eth-tester reports (`execution reverted: <reason>` or the bare reason)."""
    first = error.args[0] if error.args else None
    if isinstance(first, (bytes, bytearray)) and bytes(first)[:4] == ERROR_SELECTOR:
        return reason(bytes(first))
    return (str(first) if error.args else str(error)).removeprefix("execution reverted: ")


def _bytes(value: Any) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


class FastContract:
    """Methods of one deployed contract, called through eth-tester directly."""

    def __init__(self, contract: Any, tester: Any, caller: str):
        self.contract = contract
        self.address = str(contract.address)
        self.tester = tester
        self.caller = caller
        entries = [entry.model_dump(mode="json", by_alias=True) for entry in contract.contract_type.abi]
        functions: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            if entry["type"] == "function":
                functions.setdefault(entry["name"], []).append(entry)
        self._methods = {name: _Method(self, overloaded) for name, overloaded in functions.items()}
        self._events = {event_topic(entry): entry for entry in entries if entry["type"] == "event"}

    def __getattr__(self, name: str) -> Any:
        methods = self.__dict__.get("_methods", {})
        if name in methods:
            return methods[name]
        return getattr(self.__dict__["contract"], name)

    def __str__(self) -> str:
        return self.address

    def decode_logs(self, logs: list[dict[str, Any]]) -> list[Event]:
        events = []
        for log in logs:
            if log["address"].lower() != self.address.lower() or not log["topics"]:
                continue
            topics = [_bytes(t) for t in log["topics"]]
            entry = self._events.get(topics[0])
            if entry is not None:
                events.append(decode_event(entry, self.address, topics, _bytes(log["data"])))
        return events


def embedded_tester(chain: Any) -> Any | None:
    """eth-tester behind ape's embedded chain, or None on any other provider."""
    provider = getattr(chain, "provider", None)  # none on revm, whose handles are already fast
    tester = getattr(provider, "tester", None)
    return getattr(tester, "ethereum_tester", None) if tester is not None else None


def fast(contract: Any, chain: Any) -> Any:
    """A fast handle on `contract` on the embedded chain; the ape contract elsewhere."""
    tester = embedded_tester(chain)
    if tester is None:
        return contract
    return FastContract(contract, tester, tester.get_accounts()[0])
