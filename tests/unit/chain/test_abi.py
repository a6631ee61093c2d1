"""The one ABI codec (`marginsim.chain.abi`): its fast path for calls made only of 32-byte words
gives eth-abi's bytes and values exactly, for every function of every compiled contract, and
hands anything it would not check back to eth-abi (whose error the caller then sees)."""

from __future__ import annotations

import random

import pytest
from eth_abi import decode, encode
from eth_abi.exceptions import EncodingError

from marginsim.chain.abi import Overload, overloads
from marginsim.chain.revm import load_artifacts

ARTIFACTS = load_artifacts()
OVERLOADS = [
    (name, entry["name"], overload)
    for name, (abi, _) in sorted(ARTIFACTS.items())
    for entry in abi
    if entry["type"] == "function"
    for overload in [overloads([entry])[len(entry["inputs"])]]
]


def _value(kind: str, rng: random.Random) -> object:
    if kind.startswith("uint"):
        bits = int(kind[4:] or 256)
        return rng.choice([0, 1, (1 << bits) - 1, rng.getrandbits(bits)])
    if kind.startswith("int"):
        bits = int(kind[3:] or 256)
        return rng.choice([0, -1, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, rng.getrandbits(bits - 1) * rng.choice([1, -1])])
    if kind == "address":
        return "0x" + rng.getrandbits(160).to_bytes(20, "big").hex()
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "bytes32":
        return rng.getrandbits(256).to_bytes(32, "big")
    raise AssertionError(kind)


def _fast(overload: Overload) -> tuple[bool, bool]:
    return overload._encode is not None, overload._decode is not None  # type: ignore[attr-defined]


def test_most_calls_take_the_fast_path():
    fast_in = sum(_fast(o)[0] for _, _, o in OVERLOADS)
    fast_out = sum(_fast(o)[1] for _, _, o in OVERLOADS)
    print(f"\n{len(OVERLOADS)} functions: {fast_in} encode and {fast_out} decode by slicing")
    assert fast_in > 0.8 * len(OVERLOADS) and fast_out > 0.8 * len(OVERLOADS)


@pytest.mark.parametrize("contract, function, overload", OVERLOADS, ids=[f"{c}.{f}" for c, f, _ in OVERLOADS])
def test_fast_path__eth_abis_bytes_and_values(contract, function, overload):
    rng = random.Random(f"{contract}.{function}")
    for _ in range(20):
        if overload._encode is not None:  # type: ignore[attr-defined]
            args = [_value(k, rng) for k in overload.inputs]
            assert overload.calldata(tuple(args)) == overload.selector + encode(overload.inputs, args)
        if overload._decode is not None:  # type: ignore[attr-defined]
            words = [w for o in overload.outputs for w in (o.strip("()").split(",") if o.startswith("(") else [o]) if w]
            raw = encode(words, [_value(k, rng) for k in words])
            slow = [f(v) if f else v for f, v in zip(overload.shapes, decode(overload.outputs, raw), strict=True)]
            assert overload.result(raw) == (slow[0] if len(slow) == 1 else tuple(slow))


def test_what_the_fast_path_would_not_check_goes_to_eth_abi():
    [overload] = overloads(
        [{"name": "f", "type": "function", "inputs": [{"type": "uint96"}, {"type": "int8"}, {"type": "address"}], "outputs": []}]
    ).values()
    assert overload._encode is not None  # type: ignore[attr-defined]
    ok = overload.calldata((2**96 - 1, -128, "0x" + "11" * 20))
    assert ok == overload.selector + encode(["uint96", "int8", "address"], [2**96 - 1, -128, "0x" + "11" * 20])
    address = "0x" + "11" * 20
    for bad in [(2**96, 0, address), (-1, 0, address), (1, 128, address), (1, 0, "0x11"), (1.5, 0, address)]:
        with pytest.raises(EncodingError):
            overload.calldata(bad)
