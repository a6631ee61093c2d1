"""A thin, fast path to ape's embedded chain for the simulator's hot loop.

ape wraps every call and transaction in validation, gas pricing, receipt decoding and history
bookkeeping: about 11 ms per view call and 35 ms per transaction on these machines, most of it
Python around a sub-millisecond EVM execution. On the embedded chain (`ethereum:local:test`) the
simulator instead talks to the same eth-tester instance ape holds, with calldata encoded and
results decoded by eth-abi from the contract's own ABI: the same chain, the same contracts and
the same blocks, at roughly a tenth of the overhead.

`fast(contract)` returns a handle with the contract's methods (`handle.fn(*args)` for views,
`handle.fn(*args, sender=account)` for transactions) when the connected provider is the embedded
chain, and the ape contract itself on any other network, so callers never branch.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

CALL_GAS = 30_000_000
TX_GAS = 3_000_000  # above any single protocol call (a 4-market liquidation is ~275k)
MAX_FEE = 10**12  # wei per gas the sender accepts; it pays only the chain's base fee


class FastRevert(Exception):
    """A fast-path transaction or call reverted; `message` is the revert reason."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FastEvent:
    event_name: str
    args: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.args[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class FastReceipt:
    txn_hash: str
    gas_used: int
    events: list[FastEvent]


def _abi_type(param: Any) -> str:
    return param.canonical_type


def _converter(param: Any) -> Any:
    """A function from eth-abi's raw value to the shape ape returns: checksummed addresses,
    structs with named fields; None when the raw value is already right."""
    if param.type == "address":
        return to_checksum_address
    if param.type == "address[]":
        return lambda values: [to_checksum_address(v) for v in values]
    components = getattr(param, "components", None)
    if param.type == "tuple" and components:
        struct = namedtuple("Struct", [c.name for c in components])  # type: ignore[misc]
        inner = [_converter(c) for c in components]
        return lambda values: struct(*(f(v) if f else v for f, v in zip(inner, values, strict=False)))
    return None


def _bytes(value: Any) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def _encode_arg(value: Any) -> Any:
    address = getattr(value, "address", None)
    if address is not None:
        return str(address)
    return value


class _Method:
    def __init__(self, handle: FastContract, abi: Any):
        self.handle = handle
        self.abi = abi
        self.selector = keccak(text=abi.selector)[:4]
        self.input_types = [_abi_type(i) for i in abi.inputs]
        self.output_types = [_abi_type(o) for o in abi.outputs]
        self.converters = [_converter(o) for o in abi.outputs]
        self.view = abi.stateMutability in ("view", "pure")

    def _calldata(self, args: tuple) -> str:
        return "0x" + (self.selector + encode(self.input_types, [_encode_arg(a) for a in args])).hex()

    def _decode(self, raw: bytes) -> Any:
        values = decode(self.output_types, raw)
        converted = [f(v) if f else v for f, v in zip(self.converters, values, strict=False)]
        if len(converted) == 1:
            return converted[0]
        return tuple(converted)

    def __call__(self, *args: Any, sender: Any = None) -> Any:
        tester = self.handle.tester
        data = self._calldata(args)
        if self.view or sender is None:
            try:
                raw = tester.call(
                    {"from": self.handle.caller, "to": self.handle.address, "data": data, "gas": CALL_GAS}, "latest"
                )
            except Exception as error:  # eth-tester raises TransactionFailed with the reason
                raise FastRevert(_reason(error)) from None
            return self._decode(bytes.fromhex(raw[2:]))
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
    text = str(error.args[0]) if error.args else str(error)
    if isinstance(error.args[0] if error.args else None, (bytes, bytearray)):
        raw = bytes(error.args[0])
        if raw[:4] == bytes.fromhex("08c379a0"):
            return decode(["string"], raw[4:])[0]
    return text.removeprefix("execution reverted: ")


class FastContract:
    """Methods of one deployed contract, called through eth-tester directly."""

    def __init__(self, contract: Any, tester: Any, caller: str):
        self.contract = contract
        self.address = str(contract.address)
        self.tester = tester
        self.caller = caller
        self._methods: dict[str, _Method] = {}
        for abi in contract.contract_type.abi:
            if getattr(abi, "type", None) == "function":
                self._methods.setdefault(abi.name, _Method(self, abi))
        self._events = {}
        for abi in contract.contract_type.abi:
            if getattr(abi, "type", None) == "event":
                self._events[keccak(text=abi.selector)] = abi

    def __getattr__(self, name: str) -> Any:
        methods = self.__dict__.get("_methods", {})
        if name in methods:
            return methods[name]
        return getattr(self.__dict__["contract"], name)

    def __str__(self) -> str:
        return self.address

    def decode_logs(self, logs: list[dict[str, Any]]) -> list[FastEvent]:
        events = []
        for log in logs:
            if log["address"].lower() != self.address.lower() or not log["topics"]:
                continue
            abi = self._events.get(_bytes(log["topics"][0]))
            if abi is None:
                continue
            indexed = [i for i in abi.inputs if i.indexed]
            plain = [i for i in abi.inputs if not i.indexed]
            args = {}
            for param, topic in zip(indexed, log["topics"][1:], strict=False):
                value = decode([_abi_type(param)], _bytes(topic))[0]
                args[param.name] = to_checksum_address(value) if param.type == "address" else value
            for param, value in zip(plain, decode([_abi_type(p) for p in plain], _bytes(log["data"])), strict=False):
                args[param.name] = to_checksum_address(value) if param.type == "address" else value
            events.append(FastEvent(abi.name, args))
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
