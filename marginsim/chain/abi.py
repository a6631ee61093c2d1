"""Calldata, results and logs by a contract's JSON ABI, in the shapes ape returns.

One encoding for the two fast paths the simulator runs on, revm (`marginsim.chain.revm`) and
eth-tester behind ape's embedded chain (`marginsim.sim.fastchain`): arguments as eth-abi takes
them (a handle or an account by its address), results shaped as ape shapes them (checksummed
addresses, structs with named fields, several outputs as a tuple), events decoded by name, a
revert's reason read from its `Error(string)` output.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
checksum = lru_cache(maxsize=65_536)(to_checksum_address)  # the same few addresses, over and over


def canonical(param: dict[str, Any]) -> str:
    """eth-abi's type string of an ABI parameter: tuples spelled out, arrays kept."""
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(canonical(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind


def shape(param: dict[str, Any]) -> Callable[[Any], Any] | None:
    """A function from eth-abi's raw value to ape's shape (checksummed addresses, structs with
    named fields), or None when the raw value is already right."""
    kind = param["type"]
    if kind == "address":
        return checksum
    if kind.endswith("[]"):
        inner = shape({**param, "type": kind[:-2]})
        return (lambda values: [inner(v) for v in values]) if inner else list
    if kind == "tuple":
        components = param["components"]
        struct = namedtuple("Struct", [c["name"] for c in components])  # type: ignore[misc]
        shapes = [shape(c) for c in components]
        return lambda values: struct(*(f(v) if f else v for f, v in zip(shapes, values, strict=True)))
    return None


def arg(value: Any) -> Any:
    """An argument as eth-abi takes it: a handle or an account by its address."""
    address = getattr(value, "address", None)
    if address is not None:
        return str(address)
    if isinstance(value, (list, tuple)):
        return [arg(v) for v in value]
    return value


def reason(output: bytes) -> str:
    """The message of an `Error(string)` revert output; "" for any other."""
    if output[:4] == ERROR_SELECTOR:
        return decode(["string"], output[4:])[0]
    return ""


def signature(entry: dict[str, Any]) -> str:
    """`Name(type,...)` of a function or event entry."""
    return f"{entry['name']}({','.join(canonical(i) for i in entry['inputs'])})"


@dataclass(frozen=True)
class Overload:
    selector: bytes
    inputs: list[str]
    outputs: list[str]
    shapes: list[Any]
    view: bool

    def calldata(self, args: tuple) -> bytes:
        return self.selector + encode(self.inputs, [arg(a) for a in args])

    def result(self, raw: bytes) -> Any:
        values = [f(v) if f else v for f, v in zip(self.shapes, decode(self.outputs, raw), strict=True)]
        return values[0] if len(values) == 1 else tuple(values)


def overloads(entries: list[dict[str, Any]]) -> dict[int, Overload]:
    """A function's ABI entries by their number of arguments (how ape picks an overload)."""
    found = {}
    for entry in entries:
        found[len(entry["inputs"])] = Overload(
            keccak(text=signature(entry))[:4],
            [canonical(i) for i in entry["inputs"]],
            [canonical(o) for o in entry["outputs"]],
            [shape(o) for o in entry["outputs"]],
            entry.get("stateMutability") in ("view", "pure"),
        )
    return found


@dataclass(frozen=True)
class Event:
    event_name: str
    contract_address: str
    args: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["args"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self.args[name]

    @property
    def event_arguments(self) -> dict[str, Any]:
        """The decoded arguments by name (ape's `ContractLog.event_arguments`)."""
        return self.args


def event_topic(entry: dict[str, Any]) -> bytes:
    return keccak(text=signature(entry))


def decode_event(entry: dict[str, Any], address: str, topics: list[bytes], data: bytes) -> Event:
    """A log of the event `entry` (its first topic already matched) as an `Event`."""
    indexed = [i for i in entry["inputs"] if i["indexed"]]
    plain = [i for i in entry["inputs"] if not i["indexed"]]
    args: dict[str, Any] = {}
    for param, topic in zip(indexed, topics[1:], strict=True):
        value = decode([canonical(param)], bytes(topic))[0]
        f = shape(param)
        args[param["name"]] = f(value) if f else value
    for param, value in zip(plain, decode([canonical(p) for p in plain], bytes(data)), strict=True):
        f = shape(param)
        args[param["name"]] = f(value) if f else value
    return Event(entry["name"], address, args)
