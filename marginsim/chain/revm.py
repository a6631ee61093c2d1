"""The protocol's compiled bytecode on revm, in process (pyrevm), behind the handles ape gives.

`RevmChain` is one EVM: accounts, a block clock, snapshots. `chain.project` offers each compiled
contract as ape's `project` does (`project.Clearinghouse`, `.at(address)`), and
`chain.accounts[i].deploy(container, *args)` deploys it, so `marginsim.protocol.deploy_protocol`
runs on it unchanged. A contract handle's methods read (`handle.fn(*args)`) or send
(`handle.fn(*args, sender=account)`) as ape's do: structs come back with named fields, addresses
checksummed, several outputs as a tuple; a transaction returns a receipt with `gas_used` and its
decoded `events` (`receipt.events.filter(handle.EventName)`); a revert raises `Revert` with the
contract's message.

The bytecode is the one ape compiled (`.build/__local__.json`), so the contracts are the same
ones the embedded chain runs; only the EVM differs (revm, in Rust). Gas is charged at price 0:
senders need no ether, and `gas_used` is revm's count of the same execution.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from pyrevm import EVM, BlockEnv, Env

from marginsim.chain.abi import Event, arg, canonical, checksum, decode_event, event_topic, overloads, reason, signature

BUILD = Path(__file__).resolve().parents[2] / ".build" / "__local__.json"
TX_GAS = 30_000_000  # a block's worth: above any single protocol call
GENESIS_TIMESTAMP = 1_700_000_000
_REVERT = re.compile(r"Revert \{ gas_used: (\d+), output: 0x([0-9a-fA-F]*) \}")


class Revert(Exception):
    """A call or transaction reverted; `message` is the contract's reason ("" for none)."""

    def __init__(self, message: str, gas_used: int = 0):
        super().__init__(message)
        self.message = message
        self.gas_used = gas_used


@dataclass(frozen=True)
class EventSignature:
    selector: str  # "Name(type,...)", as ape's event ABI spells it


@dataclass(frozen=True)
class EventType:
    """`handle.EventName`: what `receipt.events.filter` takes; `abi.selector` its signature."""

    name: str
    address: str
    abi: EventSignature


class Events(list):
    def filter(self, event_type: EventType) -> list[Event]:
        return [e for e in self if e.event_name == event_type.name and e.contract_address == event_type.address]


class Receipt:
    """A mined transaction: its gas, block, sender and events (decoded when first read)."""

    def __init__(self, chain: RevmChain, gas_used: int, logs: list[Any], block_number: int, timestamp: int, sender: str):
        self.chain = chain
        self.gas_used = gas_used
        self.logs = logs
        self.block_number = block_number
        self.timestamp = timestamp
        self.sender = sender

    @cached_property
    def events(self) -> Events:
        return Events(e for e in (self.chain.decode_log(log) for log in self.logs) if e is not None)


class _Function:
    def __init__(self, handle: Contract, abis: list[dict[str, Any]]):
        self.handle = handle
        self.name = abis[0]["name"]
        self.by_arity = overloads(abis)

    def __call__(self, *args: Any, sender: Any = None) -> Any:
        try:
            overload = self.by_arity[len(args)]
        except KeyError:
            raise TypeError(f"{self.name}: no overload takes {len(args)} arguments") from None
        calldata = overload.calldata(args)
        chain = self.handle.chain
        if overload.view or sender is None:
            return overload.result(chain.call(self.handle.address, calldata))
        return chain.transact(str(getattr(sender, "address", sender)), self.handle.address, calldata)


class Contract:
    """A deployed contract's methods and event types."""

    def __init__(self, chain: RevmChain, name: str, address: str):
        self.chain = chain
        self.contract_name = name
        self.address = checksum(address)
        abi = chain.artifacts[name][0]
        grouped: dict[str, list[dict[str, Any]]] = {}
        for entry in abi:
            if entry["type"] == "function":
                grouped.setdefault(entry["name"], []).append(entry)
        self._functions = {name: _Function(self, entries) for name, entries in grouped.items()}
        self._events = {e["name"]: EventSignature(signature(e)) for e in abi if e["type"] == "event"}
        chain.register(self)

    def __getattr__(self, name: str) -> Any:
        functions = self.__dict__.get("_functions", {})
        if name in functions:
            return functions[name]
        events = self.__dict__.get("_events", {})
        if name in events:
            return EventType(name, self.__dict__["address"], events[name])
        raise AttributeError(f"{self.__dict__.get('contract_name')} has no {name}")

    def __str__(self) -> str:
        return self.address

    def __repr__(self) -> str:
        return f"<{self.contract_name} {self.address}>"

    def __eq__(self, other: object) -> bool:
        return str(other).lower() == self.address.lower()

    def __hash__(self) -> int:
        return hash(self.address.lower())


@dataclass(frozen=True)
class Container:
    """`project.Name`: deploy it with `account.deploy(container, *args)`, or take one `.at(address)`."""

    chain: RevmChain
    name: str

    def at(self, address: str) -> Contract:
        return Contract(self.chain, self.name, str(address))


class Project:
    def __init__(self, chain: RevmChain):
        self._chain = chain

    def __getattr__(self, name: str) -> Container:
        if name.startswith("_") or name not in self._chain.artifacts:
            raise AttributeError(f"project: no compiled contract {name}")
        return Container(self._chain, name)


@dataclass(frozen=True)
class Account:
    """A sender: an address the chain knows (no key: the EVM takes the caller as given)."""

    chain: RevmChain
    address: str

    def deploy(self, container: Container, *args: Any) -> Contract:
        return self.chain.deploy(container.name, args, self.address)

    def __str__(self) -> str:
        return self.address

    def __eq__(self, other: object) -> bool:
        return str(other).lower() == self.address.lower()

    def __hash__(self) -> int:
        return hash(self.address.lower())


TEST_MNEMONIC = "test test test test test test test test test test test junk"  # ape's test accounts (ape-config.yaml)
TEST_ACCOUNTS = 40


@cache
def _sender_address(index: int) -> str:
    if index < TEST_ACCOUNTS:
        from eth_account import Account as KeyedAccount

        KeyedAccount.enable_unaudited_hdwallet_features()
        return KeyedAccount.from_mnemonic(TEST_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").address
    return to_checksum_address(keccak(text=f"marginsim account {index}")[-20:])


def load_artifacts(path: Path = BUILD) -> dict[str, tuple[list[dict[str, Any]], bytes]]:
    """Each compiled contract's ABI and deployment bytecode, as ape wrote them."""
    if not path.exists():
        raise SystemExit(f"revm: no compiled contracts at {path} (run `ape compile` first)")
    types = json.loads(path.read_text())["contractTypes"]
    artifacts = {}
    for name, contract_type in types.items():
        code = (contract_type.get("deploymentBytecode") or {}).get("bytecode")
        if code and code != "0x":
            artifacts[name] = (contract_type["abi"], bytes.fromhex(code.removeprefix("0x")))
    return artifacts


@dataclass(frozen=True)
class _Head:
    number: int
    timestamp: int


@dataclass(frozen=True)
class _Blocks:
    head: _Head


@dataclass
class RevmChain:
    """One in-process EVM with the clock of ape's embedded chain: every transaction is mined in a
    block of its own at `pending_timestamp`, which then moves to that time + 1; setting
    `pending_timestamp` later mines an empty block a second before it (eth-tester's time
    travel); a reverted transaction mines nothing; view calls run on the latest block, at its
    time."""

    timestamp: int = GENESIS_TIMESTAMP  # the latest block's
    block_number: int = 0
    artifacts: dict[str, tuple[list[dict[str, Any]], bytes]] = field(default_factory=load_artifacts)
    transactions: int = 0  # transactions mined (a reverted one is not)
    calls: int = 0  # view calls made

    def __post_init__(self) -> None:
        self._pending = self.timestamp + 1
        self.logs: list[tuple[int, Any]] = []  # (block, revm log) of every mined transaction, in order
        self.evm = EVM(env=Env(block=BlockEnv(number=self.block_number, timestamp=self.timestamp)), spec_id="CANCUN")
        self.project = Project(self)
        self.accounts = [self.account(i) for i in range(10)]

    def account(self, index: int) -> Account:
        """The `index`-th sender (no key behind it: the EVM takes the caller as given). The first
        40 are the addresses of ape's test accounts (its test mnemonic), so a run with the same
        senders gives the same figures on both chains (accounts are ordered by their ids); the
        others are derived from their index."""
        return Account(self, _sender_address(index))

    def signers(self, count: int) -> list[Account]:
        """`count` senders, as many as a run needs."""
        return [self.account(i) for i in range(count)]

    @property
    def blocks(self) -> Any:
        """`chain.blocks.head.number` / `.timestamp`, as ape's chain has them."""
        head = _Head(self.block_number, self.timestamp)
        return _Blocks(head)

    def get_logs(self, addresses: list[str], from_block: int, to_block: int, topics: list[str]) -> list[dict[str, Any]]:
        """The logs of `addresses` mined in [from_block, to_block] whose first topic is one of
        `topics` (0x hex), as eth_getLogs returns them: address, topics (bytes), data, blockNumber."""
        wanted = {a.lower() for a in addresses}
        first = {bytes.fromhex(t.removeprefix("0x")) for t in topics}
        found = []
        # the logs are in block order: start at the first of `from_block` (a step reads only its
        # own blocks, so a day's run does not walk every earlier log each step)
        start = bisect.bisect_left(self.logs, from_block, key=lambda entry: entry[0])
        for block, log in itertools.islice(self.logs, start, None):
            if block > to_block:
                break
            if log.address.lower() not in wanted:
                continue
            log_topics, data = log.data
            if log_topics and bytes(log_topics[0]) in first:
                found.append(
                    {
                        "address": checksum(log.address),
                        "topics": [bytes(t) for t in log_topics],
                        "data": bytes(data),
                        "blockNumber": block,
                    }
                )
        return found

    # ------------------------------------------------------------ clock

    @property
    def pending_timestamp(self) -> int:
        """The next block's time."""
        return self._pending

    @pending_timestamp.setter
    def pending_timestamp(self, value: int) -> None:
        if value == self._pending:
            return
        if value <= self.timestamp:
            raise ValueError(f"revm: timestamp {value} is not after the latest block's {self.timestamp}")
        self._pending = value - 1
        self._next_block()  # an empty block a second before, as eth-tester's time travel mines

    def _next_block(self) -> tuple[int, int]:
        """Open the next block at `pending_timestamp`; returns the latest block's (number, time) to undo it."""
        latest = (self.block_number, self.timestamp)
        self.block_number += 1
        self.timestamp = self._pending
        self._pending = self.timestamp + 1
        self.evm.set_block_env(BlockEnv(number=self.block_number, timestamp=self.timestamp))
        return latest

    def _undo_block(self, latest: tuple[int, int]) -> None:
        pending = self.timestamp
        self.block_number, self.timestamp = latest
        self._pending = pending
        self.evm.set_block_env(BlockEnv(number=self.block_number, timestamp=self.timestamp))

    def mine(self) -> None:
        """An empty block at `pending_timestamp`."""
        self._next_block()

    def snapshot(self) -> tuple[Any, int, int, int, int]:
        return self.evm.snapshot(), self.block_number, self.timestamp, self._pending, len(self.logs)

    def restore(self, snapshot: tuple[Any, int, int, int, int]) -> None:
        checkpoint, self.block_number, self.timestamp, self._pending, logs = snapshot
        del self.logs[logs:]
        self.evm.revert(checkpoint)
        self.evm.set_block_env(BlockEnv(number=self.block_number, timestamp=self.timestamp))

    def record(self) -> Recorder:
        """From now on, keep every call this chain makes into revm (blocks, deployments,
        transactions, view calls), in order, on the returned recorder's `tape` (and count the
        reverts): `replay` runs them again on a fresh EVM with nothing else around them, the
        engine's own speed on the same work."""
        recorder = Recorder(self.evm)
        self.evm = recorder
        return recorder

    # ------------------------------------------------------------ execution

    def deploy(self, name: str, args: tuple, sender: str) -> Contract:
        abi, code = self.artifacts[name]
        constructor = next((e for e in abi if e["type"] == "constructor"), None)
        if constructor is not None:
            code += encode([canonical(i) for i in constructor["inputs"]], [arg(a) for a in args])
        latest = self._next_block()
        try:
            address = self.evm.deploy(sender, code, 0, TX_GAS)
        except RuntimeError as error:
            self._undo_block(latest)
            raise self._revert(error) from None
        self.transactions += 1
        return Contract(self, name, address)

    def call(self, to: str, calldata: bytes) -> bytes:
        self.calls += 1
        try:
            return bytes(self.evm.message_call(caller=self.accounts[0].address, to=to, calldata=calldata, is_static=True))
        except RuntimeError as error:
            raise self._revert(error) from None

    def transact(self, sender: str, to: str, calldata: bytes) -> Receipt:
        latest = self._next_block()
        try:
            self.evm.message_call(caller=sender, to=to, calldata=calldata, gas=TX_GAS, gas_price=0)
        except RuntimeError as error:
            self._undo_block(latest)
            raise self._revert(error) from None
        self.transactions += 1
        result = self.evm.result
        logs = result.logs
        self.logs.extend((self.block_number, log) for log in logs)
        return Receipt(self, result.gas_used, logs, self.block_number, self.timestamp, sender)

    @staticmethod
    def _revert(error: RuntimeError) -> Revert:
        text = str(error.args[0]) if error.args else str(error)
        match = _REVERT.search(text)
        if match is None:
            return Revert(text)
        return Revert(reason(bytes.fromhex(match.group(2))), int(match.group(1)))

    def decode_log(self, log: Any) -> Event | None:
        """A revm log as an event of a contract this chain knows; None for another's."""
        address = checksum(log.address)
        topics, data = log.data
        entry = self._event_abis().get((address, bytes(topics[0]) if topics else b""))
        if entry is None:
            return None
        return decode_event(entry, address, [bytes(t) for t in topics], bytes(data))

    def _event_abis(self) -> dict[tuple[str, bytes], dict[str, Any]]:
        return self.__dict__.setdefault("_events_by_topic", {})

    def register(self, contract: Contract) -> None:
        """Let the receipts decode `contract`'s events (every deployed or `at` handle registers)."""
        events = self._event_abis()
        for entry in self.artifacts[contract.contract_name][0]:
            if entry["type"] == "event":
                events[(contract.address, event_topic(entry))] = entry


class Recorder:
    """An EVM that keeps the calls made into it (`RevmChain.record`)."""

    def __init__(self, evm: EVM):
        self.evm = evm
        self.tape: list[tuple[Any, ...]] = []
        self.reverts = 0
        self._checkpoints: list[Any] = []

    @property
    def result(self) -> Any:
        return self.evm.result

    def set_block_env(self, block: BlockEnv) -> None:
        self.tape.append(("block", block.number, block.timestamp))
        self.evm.set_block_env(block)

    def deploy(self, sender: str, code: bytes, value: int, gas: int) -> str:
        self.tape.append(("deploy", sender, code))
        try:
            return self.evm.deploy(sender, code, value, gas)
        except RuntimeError:
            self.reverts += 1
            raise

    def message_call(self, caller: str, to: str, calldata: bytes, **options: Any) -> Any:
        self.tape.append(("call" if options.get("is_static") else "transact", caller, to, calldata))
        try:
            return self.evm.message_call(caller=caller, to=to, calldata=calldata, **options)
        except RuntimeError:
            self.reverts += 1
            raise

    def snapshot(self) -> int:
        """A checkpoint, kept on the tape by its index among the run's checkpoints, so `replay`
        takes the same one where the run reverts to it."""
        self._checkpoints.append(self.evm.snapshot())
        self.tape.append(("snapshot",))
        return len(self._checkpoints) - 1

    def revert(self, checkpoint: int) -> None:
        self.tape.append(("revert", checkpoint))
        self.evm.revert(self._checkpoints[checkpoint])


def replay(tape: list[tuple[Any, ...]]) -> tuple[float, int, int, int]:
    """Run a recorded tape (`RevmChain.record`) on a fresh EVM, raw: the same blocks, calldata,
    senders and timestamps, no ABI encoding, receipts or simulator around them. Returns (wall
    seconds, transactions, view calls, reverts): the engine's own speed on a run's exact work."""
    evm = EVM(env=Env(block=BlockEnv(number=0, timestamp=GENESIS_TIMESTAMP)), spec_id="CANCUN")
    transactions = calls = reverts = 0
    checkpoints: list[Any] = []
    started = time.perf_counter()
    for op in tape:
        kind = op[0]
        try:
            if kind == "call":
                calls += 1
                evm.message_call(caller=op[1], to=op[2], calldata=op[3], is_static=True)
            elif kind == "transact":
                transactions += 1
                evm.message_call(caller=op[1], to=op[2], calldata=op[3], gas=TX_GAS, gas_price=0)
            elif kind == "block":
                evm.set_block_env(BlockEnv(number=op[1], timestamp=op[2]))
            elif kind == "snapshot":
                checkpoints.append(evm.snapshot())
            elif kind == "revert":
                evm.revert(checkpoints[op[1]])
            else:
                transactions += 1
                evm.deploy(op[1], op[2], 0, TX_GAS)
        except RuntimeError:
            reverts += 1
    return time.perf_counter() - started, transactions, calls, reverts
