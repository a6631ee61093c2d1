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


# ---- static words: most of the protocol's calls take and return only 32-byte words (integers,
# addresses, booleans, structs of them), which encode and decode by slicing: eth-abi's general
# codec costs ~40 us a call, about what revm takes to run it. Anything else (strings, bytes,
# arrays) and any value the fast path would not check goes through eth-abi.


def _word_decoder(kind: str) -> Callable[[bytes], Any] | None:
    if "[" in kind or "(" in kind:
        return None
    if kind.startswith("uint"):
        return lambda w: int.from_bytes(w, "big")
    if kind.startswith("int"):
        return lambda w: int.from_bytes(w, "big", signed=True)
    if kind == "address":
        return lambda w: "0x" + w[12:].hex()  # the shape checksums it, as it does eth-abi's
    if kind == "bool":
        return lambda w: w[31] == 1
    if kind == "bytes32":
        return bytes
    return None


def _word_encoder(kind: str) -> Callable[[Any], bytes] | None:
    """A checked encoder of one word; it raises where eth-abi would refuse, so the caller falls
    back to eth-abi for its message."""
    if "[" in kind or "(" in kind:
        return None
    if kind.startswith("uint"):
        top = 1 << int(kind[4:] or 256)

        def uint(v: Any) -> bytes:
            if type(v) is not int or not 0 <= v < top:
                raise ValueError
            return v.to_bytes(32, "big")

        return uint
    if kind.startswith("int"):
        half = 1 << (int(kind[3:] or 256) - 1)

        def sint(v: Any) -> bytes:
            if type(v) is not int or not -half <= v < half:
                raise ValueError
            return v.to_bytes(32, "big", signed=True)

        return sint
    if kind == "address":

        def address(v: Any) -> bytes:
            if type(v) is not str or len(v) != 42 or v[:2] not in ("0x", "0X"):
                raise ValueError
            return bytes(12) + bytes.fromhex(v[2:])

        return address
    if kind == "bool":

        def boolean(v: Any) -> bytes:
            if type(v) is not bool:
                raise ValueError
            return bytes(31) + (b"\x01" if v else b"\x00")

        return boolean
    return None


def _words(kind: str) -> list[str] | None:
    """The word types of a word or of a struct of words, in their encoded order; None for
    anything else (dynamic types, arrays, structs holding structs): those go through eth-abi."""
    if kind.startswith("(") and kind.endswith(")"):
        inner = kind[1:-1]
        words = inner.split(",") if inner and "(" not in inner else None
    else:
        words = [kind]
    return words if words is not None and all(_word_decoder(k) is not None for k in words) else None


def _static_decoder(outputs: list[str]) -> Callable[[bytes], list[Any]] | None:
    """Decode outputs that are words or structs of words by slicing, as eth-abi would."""
    groups = [_words(o) for o in outputs]
    if any(g is None for g in groups):
        return None
    decoders = [[_word_decoder(k) for k in g] for g in groups]  # type: ignore[union-attr]
    size = 32 * sum(len(g) for g in decoders)

    def decode_words(raw: bytes) -> list[Any]:
        if len(raw) < size:
            return list(decode(outputs, raw))  # eth-abi's error for a short output
        values, at = [], 0
        for output, group in zip(outputs, decoders, strict=True):
            parts = []
            for word in group:
                parts.append(word(raw[at : at + 32]))
                at += 32
            values.append(tuple(parts) if output.startswith("(") else parts[0])
        return values

    return decode_words


def _static_encoder(inputs: list[str]) -> Callable[[list[Any]], bytes] | None:
    encoders = [_word_encoder(k) for k in inputs]
    if any(e is None for e in encoders):
        return None

    def encode_words(values: list[Any]) -> bytes:
        return b"".join(e(v) for e, v in zip(encoders, values, strict=True))  # type: ignore[misc]

    return encode_words


@dataclass(frozen=True)
class Overload:
    selector: bytes
    inputs: list[str]
    outputs: list[str]
    shapes: list[Any]
    view: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "_encode", _static_encoder(self.inputs))
        object.__setattr__(self, "_decode", _static_decoder(self.outputs))

    def calldata(self, args: tuple) -> bytes:
        values = [arg(a) for a in args]
        if self._encode is not None and len(values) == len(self.inputs):
            try:
                return self.selector + self._encode(values)
            except (ValueError, TypeError):
                pass  # eth-abi says why
        return self.selector + encode(self.inputs, values)

    def result(self, raw: bytes) -> Any:
        decoded = self._decode(raw) if self._decode is not None else decode(self.outputs, raw)
        values = [f(v) if f else v for f, v in zip(self.shapes, decoded, strict=True)]
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
