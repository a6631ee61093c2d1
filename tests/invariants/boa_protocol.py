"""Deploy the whole marginsim protocol in-process with titanoboa, for the invariant fuzzer.

The same contracts as the ape deployment (contracts/ and contracts/testing/), compiled once per
session by titanoboa and deployed in the order of `marginsim.protocol.deploy_protocol`, into a
`boa.Env` of their own: the fuzzer snapshots and rewinds that environment itself, so neither
titanoboa's pytest plugin (which anchors the global `boa.env` around every test) nor ape's
chain isolation can touch it. The handles are the same typed `Protocol` the ape side uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import boa
from boa.contracts.vyper.vyper_contract import StorageVar
from eth_utils import keccak

from marginsim import protocol as protocol_module
from marginsim import risk
from marginsim.protocol import DEFAULT_CONFIG, WAD, Protocol, ProtocolConfig, account_id, wad

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
SOURCES = {
    "MockERC20": CONTRACTS / "testing" / "MockERC20.vy",
    "MockAggregator": CONTRACTS / "testing" / "MockAggregator.vy",
    "OracleRouter": CONTRACTS / "OracleRouter.vy",
    "Clearinghouse": CONTRACTS / "Clearinghouse.vy",
    "Configurator": CONTRACTS / "Configurator.vy",
    "LiquidationEngine": CONTRACTS / "LiquidationEngine.vy",
    "MarginLens": CONTRACTS / "MarginLens.vy",
    "LiquidityPool": CONTRACTS / "LiquidityPool.vy",
    "Orders": CONTRACTS / "Orders.vy",
}


@cache
def compiled(name: str) -> Any:
    """The titanoboa deployer of contract `name`, compiled once per session (a few seconds each)."""
    return boa.load_partial(str(SOURCES[name]))


class _Project:
    """`project.Name` as `marginsim.protocol.deploy_protocol` reads it: the compiled deployer."""

    def __getattr__(self, name: str) -> Any:
        return compiled(name)


class _Deployer(str):
    """The deployer's address (boa takes it as `sender=`), with the `deploy(factory, *args)` that
    `marginsim.protocol.deploy_protocol` calls, deploying into `env` as the deployer."""

    env: boa.Env

    def __new__(cls, env: boa.Env, address: Any) -> _Deployer:
        deployer = super().__new__(cls, str(address))
        deployer.env = env
        return deployer

    def deploy(self, factory: Any, *args: Any) -> Any:
        with boa.swap_env(self.env), self.env.prank(str(self)):
            return factory.deploy(*args)


def deploy_protocol(env: boa.Env, deployer: Any, config: ProtocolConfig = DEFAULT_CONFIG) -> Protocol:
    """`marginsim.protocol.deploy_protocol` itself, into `env`: the one deployment, here behind
    titanoboa's compiled contracts (each mock's supply minted to `deployer`, as there)."""
    return protocol_module.deploy_protocol(_Project(), _Deployer(env, deployer), config)


# ------------------------------------------------------------------ a seeded world

USD = 10**6  # settlement token units per dollar (6 decimals)
HUGE = 10**15  # whole tokens minted to every actor wallet: never the limit in a run
MAX_UINT = 2**256 - 1


@dataclass
class Roles:
    """Role-named addresses (tests/STYLE.md): one owner for every contract at the start."""

    owner: Any
    guardian: Any
    traders: list[Any]
    second_addresses: list[Any]  # trader i's other address, used to liquidate its own accounts
    keeper: Any
    collateral_buyer: Any
    lps: list[Any]
    donor: Any
    attacker: Any  # a stranger who calls what is not theirs to call


@dataclass
class World:
    env: boa.Env
    protocol: Protocol
    roles: Roles
    accounts: list[tuple[Any, int]]  # (owner, subaccount) of every trader account the fuzzer drives
    seeded_at: int  # block timestamp of the seeded state

    def account_id(self, index: int) -> int:
        owner, subaccount = self.accounts[index]
        return account_id(owner, subaccount)


def redate(env: boa.Env, feed: Any, updater: Any) -> None:
    """Publish a MockAggregator's latest round again, same id and answer, dated now: the round a
    delayed order fills at, without moving the router's volatility estimate (as
    `marginsim.orders.redate`)."""
    round_id = feed.latest_round()
    answer = feed.latestRoundData()[1]
    now = env.evm.patch.timestamp
    feed.updateRoundData(round_id, answer, now, now, sender=updater)


def trade_now(
    env: boa.Env,
    protocol: Protocol,
    trader: Any,
    market: int,
    size_delta: int,
    limit_price: int = 0,
    subaccount: int = 0,
    *,
    feed: Any,
    updater: Any,
    keeper: Any,
) -> str | None:
    """Commit an order for `trader`'s subaccount, let the settlement delay pass, re-date `feed`
    (the market's) to now and have `keeper` fill it (as `marginsim.orders.trade_now`; the
    trader's execution fee, approved to Orders, goes to the keeper when the order fills, to the
    insurance fund when it is cancelled). Returns None when filled, the reason the order was
    cancelled otherwise."""
    orders = protocol.orders
    orders.commit_order(market, size_delta, limit_price, subaccount, sender=trader)
    env.time_travel(seconds=orders.settlement_delay())
    redate(env, feed, updater)
    if orders.execute_order(account_id(trader, subaccount), market, sender=keeper):
        return None
    (cancelled,) = [e for e in orders.get_logs() if type(e).__name__ == "OrderCancelled"]
    return cancelled.reason


def _seed_trade(
    seed: tuple[boa.Env, Protocol, Roles], trader: Any, subaccount: int, market: str, leverage: float, equity_usd: int
) -> None:
    env, protocol, roles = seed
    price = protocol.oracle.price(protocol.market_asset(market))
    size = int(abs(leverage) * equity_usd * WAD) * WAD // price
    reason = trade_now(
        env,
        protocol,
        trader,
        protocol.markets[market],
        size if leverage > 0 else -size,
        0,
        subaccount,
        feed=protocol.feed_of_market(market),
        updater=roles.owner,
        keeper=roles.keeper,
    )
    assert reason is None, f"seed trade in {market} cancelled: {reason}"


@lru_cache(maxsize=1)
def seeded_world() -> World:
    """Deploy once per session and seed: a $2M pool, a $20,000 insurance fund, every actor's
    wallet funded and approved (to the clearinghouse, the pool and Orders, for execution fees),
    and five trader accounts with collateral in each token (6, 8 and
    18 decimals) and positions from 4x to 9x, and LINK, priced by the router but not yet listed.
    The fuzzer rewinds to this state for every example."""
    env = boa.Env()
    roles = Roles(
        owner=env.generate_address("owner"),
        guardian=env.generate_address("guardian"),
        traders=[env.generate_address(f"trader{i}") for i in range(3)],
        second_addresses=[env.generate_address(f"second{i}") for i in range(3)],
        keeper=env.generate_address("keeper"),
        collateral_buyer=env.generate_address("collateral_buyer"),
        lps=[env.generate_address(f"lp{i}") for i in range(2)],
        donor=env.generate_address("donor"),
        attacker=env.generate_address("attacker"),
    )
    protocol = deploy_protocol(env, roles.owner)
    ch, pool = protocol.clearinghouse, protocol.pool
    protocol.configurator.set_guardian(roles.guardian, sender=roles.owner)
    wallets = [*roles.traders, *roles.second_addresses, roles.keeper, roles.collateral_buyer, *roles.lps, roles.donor]
    tokens = [protocol.settlement, *protocol.tokens.values()]
    for who in wallets:
        for token in tokens:
            token.mint(who, HUGE * 10 ** token.decimals(), sender=who)
            token.approve(ch, MAX_UINT, sender=who)
        protocol.settlement.approve(pool, MAX_UINT, sender=who)
        protocol.settlement.approve(protocol.orders, MAX_UINT, sender=who)  # execution fees

    # LINK: a token with a feed on the router but not listed, for the fuzzer's list_collateral
    # and list_market (deposits of it are refused until then)
    with boa.swap_env(env), env.prank(roles.owner):
        link = compiled("MockERC20").deploy("Mock LINK", "LINK", 18)
        link_feed = compiled("MockAggregator").deploy(8, "LINK / USD", 15 * 10**8)
    protocol.oracle.set_feed(link, link_feed, 3_600, wad(0.01), wad(10_000), wad(0.2), wad(0.9), sender=roles.owner)
    for who in wallets:
        link.mint(who, HUGE * 10**18, sender=who)
        link.approve(ch, MAX_UINT, sender=who)
    protocol.tokens["LINK"] = link
    protocol.feeds["LINK"] = link_feed

    pool.deposit(2_000_000 * USD, roles.lps[0], sender=roles.lps[0])
    ch.fund_insurance(20_000 * USD, sender=roles.donor)

    t0, t1, t2 = roles.traders
    weth, wbtc, usdt, usdc = (
        protocol.tokens["WETH"],
        protocol.tokens["WBTC"],
        protocol.tokens["USDT"],
        protocol.settlement,
    )
    seed = (env, protocol, roles)
    ch.deposit(usdc, 10_000 * USD, 0, sender=t0)
    _seed_trade(seed, t0, 0, "ETH-PERP", 8, 10_000)
    ch.deposit(weth, 5 * 10**18, 1, sender=t0)
    _seed_trade(seed, t0, 1, "ETH-PERP", -4, 8_500)
    ch.deposit(wbtc, 5 * 10**7, 0, sender=t1)
    _seed_trade(seed, t1, 0, "BTC-PERP", 7, 12_750)
    ch.deposit(usdt, 20_000 * USD, 1, sender=t1)
    _seed_trade(seed, t1, 1, "ETH-PERP", 5, 19_000)
    _seed_trade(seed, t1, 1, "BTC-PERP", -3, 19_000)
    ch.deposit(weth, 3 * 10**18, 0, sender=t2)
    ch.deposit(usdc, 1_000 * USD, 0, sender=t2)
    _seed_trade(seed, t2, 0, "ETH-PERP", 9, 6_100)
    # the LP's cooldown is over when fuzzing starts, so redemptions are possible at once
    env.time_travel(seconds=901)
    accounts = [(t, sub) for t in roles.traders for sub in (0, 1)]
    return World(env=env, protocol=protocol, roles=roles, accounts=accounts, seeded_at=env.evm.patch.timestamp)


# ------------------------------------------------------------------ reading the chain

MASK_64 = 2**64 - 1
MASK_128 = 2**128 - 1
REDUCE_ONLY = 1  # a market's flag bit that `Configurator.reduce_only(market)` mirrors


@dataclass(frozen=True)
class Collateral:
    token: str
    unit: int
    weight: int
    cap: int
    total: int
    liquidation_discount: int
    enabled: bool


@dataclass
class Ledger:
    """Every number the Clearinghouse keeps, through its views, for every key its storage holds
    (all keys ever written, not just the accounts the fuzzer knows), and the LiquidationEngine's
    parameters, zero entries dropped so that two ledgers compare equal exactly when the
    contracts' state is the same."""

    settlement: dict[int, int]  # account -> signed settlement balance as written (a debt without the interest since), token units
    debt_index_at: dict[int, int]  # account in debt -> the debt index its debt was written at (Clearinghouse.debt_of)
    pending: dict[int, int]  # account -> its pending claim, token units (Clearinghouse.pending)
    market_mask: dict[int, int]
    collateral_mask: dict[int, int]
    positions: dict[tuple[int, int], tuple[int, int]]  # (account, market) -> (size, cost)
    balances: dict[tuple[int, int], int]  # (account, slot) -> token units
    pool_balance: int
    insurance: int
    settlement_held: int
    total_debt: int
    total_scaled_debt: int  # sum over debts of floor(debt * 1e36 / index at write)
    total_pending: int
    total_bad_debt: int
    debt_index: int  # the index as last accrued, WAD (Clearinghouse.debt_state)
    debt_accrued_at: int  # and when
    debt_terms: tuple[int, int, int, int]  # (rate_base, rate_slope, debt_imr, ceiling), Clearinghouse.debt_terms
    reserve_factors: dict[int, int]  # market -> its open-interest reserve factor, WAD (LiquidityPool.reserve_factor)
    held: dict[int, tuple[int, int]]  # market -> (longs, shorts) placed orders hold in the pool (LiquidityPool.held)
    markets: dict[int, risk.MarketParams]
    states: dict[int, risk.MarketState]
    flags: dict[int, int]  # market -> bit 0 reduce-only, bit 1 paused
    collaterals: dict[int, Collateral]
    buffer: int  # the LiquidationEngine's parameters
    full_liquidation_health: int
    dust_notional: int
    underwater_tip_rate: int
    debt_liquidation_ltv: int
    paused: bool
    guardian: str

    def copy(self) -> Ledger:
        return replace(
            self,
            settlement=dict(self.settlement),
            debt_index_at=dict(self.debt_index_at),
            pending=dict(self.pending),
            market_mask=dict(self.market_mask),
            collateral_mask=dict(self.collateral_mask),
            positions=dict(self.positions),
            balances=dict(self.balances),
            reserve_factors=dict(self.reserve_factors),
            held=dict(self.held),
            markets=dict(self.markets),
            states=dict(self.states),
            flags=dict(self.flags),
            collaterals=dict(self.collaterals),
        )

    def normalise(self) -> Ledger:
        """Drop zero entries, as storage does not tell a zero from a never-written key."""
        self.settlement = {k: v for k, v in self.settlement.items() if v}
        self.debt_index_at = {k: v for k, v in self.debt_index_at.items() if v}
        self.pending = {k: v for k, v in self.pending.items() if v}
        self.market_mask = {k: v for k, v in self.market_mask.items() if v}
        self.collateral_mask = {k: v for k, v in self.collateral_mask.items() if v}
        self.positions = {k: v for k, v in self.positions.items() if v != (0, 0)}
        self.balances = {k: v for k, v in self.balances.items() if v}
        self.held = {k: v for k, v in self.held.items() if v != (0, 0)}
        return self

    def diff(self, other: Ledger) -> list[str]:
        """Human-readable differences, field by field and key by key."""
        out = []
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine == theirs:
                continue
            if isinstance(mine, dict):
                for key in sorted(set(mine) | set(theirs), key=str):
                    if mine.get(key) != theirs.get(key):
                        out.append(f"{name}[{key}]: {mine.get(key)} != {theirs.get(key)}")
            else:
                out.append(f"{name}: {mine} != {theirs}")
        return out


@cache
def storage_map(contract: Any, name: str) -> StorageVar:
    """HashMap `name` of `contract`, in the contract itself or in a module it initializes (boa's
    `contract._storage` lists only the contract's own variables); `.get()` dumps every key written."""

    def find(layout: dict, module_t: Any) -> StorageVar | None:
        if name in module_t.variables and "slot" in layout.get(name, {}):
            return StorageVar(contract, layout[name]["slot"], module_t.variables[name].typ)
        for alias, info in module_t.imported_modules.items():
            if alias in layout and "slot" not in layout[alias]:
                found = find(layout[alias], info.module_t)
                if found is not None:
                    return found
        return None

    found = find(contract.compiler_data.storage_layout["storage_layout"], contract.module_t)
    assert found is not None, f"no storage variable {name!r} in {contract}"
    return found


def read_ledger(clearinghouse: Any, engine: Any, configurator: Any, pool: Any) -> Ledger:
    """The Clearinghouse's ledger and the LiquidationEngine's parameters, every value read through
    the contracts' own views (which decode their packing). Storage is read only for its keys:
    which accounts, positions, balances, markets and collateral slots were ever written, so the
    ledger covers every account, not just those the fuzzer knows. A debt is read as written
    (`debt_of`: the amount and the debt index it was written at) with the global index as last
    accrued (`debt_state`; `debt_index()` is the index now), so the ledger moves only when the
    contract writes, not while interest accrues with the clock."""
    ch = clearinghouse
    accounts = storage_map(ch, "_accounts").get()
    settlement, debt_index_at = {}, {}
    for account in accounts:
        written, index_at = ch.debt_of(account)
        if written:
            settlement[account], debt_index_at[account] = -written, index_at
        else:
            settlement[account] = ch.settlement(account)
    debt_index, debt_accrued_at = ch.debt_state()
    positions = {}
    for account, per_market in storage_map(ch, "_positions").get().items():
        for market in per_market:
            position = ch.positions(account, market)
            positions[(account, market)] = (position.size, position.cost)
    balances = {
        (account, slot): ch.balances(account, slot)
        for account, per_slot in storage_map(ch, "balances").get().items()
        for slot in per_slot
    }
    # a hashmap dump also lists keys that were only read (e.g. an unknown market probed): keep
    # the listed markets and collaterals, whose asset or token is set
    zero = "0x0000000000000000000000000000000000000000"
    markets = {}
    for m in storage_map(ch, "markets").get():
        params = ch.markets(m)
        if str(params.asset) != zero:
            markets[m] = risk.MarketParams(**{k: (str(v) if k == "asset" else v) for k, v in params._asdict().items()})
    states = {m: risk.MarketState(**ch.market_state(m)._asdict()) for m in markets}
    # Only a market's reduce-only bit has a view: `paused()` is the Clearinghouse-wide switch, not
    # the PAUSED bit pause() sets on every market (and on one listed while paused) and fill_order()
    # checks. So the other flag bits are still read from storage, the top bits of the market's
    # packed core word (`PackedMarket.core`: asset | imr_multiplier << 160 | flags << 224).
    packed = storage_map(ch, "_packed").get()
    flags = {m: dict(packed[m])["core"] >> 224 for m in markets}
    # the Configurator's copy of reduce-only is the core's flag, always
    assert all(bool(flags[m] & REDUCE_ONLY) == bool(configurator.reduce_only(m)) for m in markets), "reduce-only copies differ"
    collaterals = {}
    for slot in storage_map(ch, "collaterals").get():
        col = ch.collaterals(slot)
        if str(col.token) != zero:
            collaterals[slot] = Collateral(**{k: (str(v) if k == "token" else v) for k, v in col._asdict().items()})
    return Ledger(
        settlement=settlement,
        debt_index_at=debt_index_at,
        pending={account: ch.pending(account) for account in accounts},
        market_mask={account: ch.market_mask(account) for account in accounts},
        collateral_mask={account: ch.collateral_mask(account) for account in accounts},
        positions=positions,
        balances=balances,
        pool_balance=ch.pool_balance(),
        insurance=ch.insurance_balance(),
        settlement_held=ch.settlement_held(),
        total_debt=ch.total_debt(),
        total_scaled_debt=ch.total_scaled_debt(),
        total_pending=ch.total_pending(),
        total_bad_debt=ch.total_bad_debt(),
        debt_index=debt_index,
        debt_accrued_at=debt_accrued_at,
        debt_terms=tuple(ch.debt_terms()),
        reserve_factors={m: pool.reserve_factor(m) for m in markets},
        held={m: held for m in markets if (held := tuple(pool.held(m))) != (0, 0)},
        markets=markets,
        states=states,
        flags=flags,
        collaterals=collaterals,
        buffer=engine.liquidation_buffer(),
        full_liquidation_health=engine.full_liquidation_health(),
        dust_notional=engine.dust_notional(),
        underwater_tip_rate=engine.underwater_tip_rate(),
        debt_liquidation_ltv=engine.debt_liquidation_ltv(),
        paused=ch.paused(),
        guardian=str(configurator.guardian()),
    ).normalise()


def revert_reason(output: bytes) -> str:
    """The revert string of a failed call (Error(string) ABI), '<no reason>' for a bare revert
    (e.g. Vyper's overflow checks), so an unexpected panic never matches a documented message."""
    if output[:4] == bytes.fromhex("08c379a0"):
        length = int.from_bytes(output[36:68], "big")
        return output[68 : 68 + length].decode()
    return "<no reason>"


def transact(function: Any, *args: Any, sender: Any = None) -> tuple[Any, str | None]:
    """Call a contract function: (returned value, None), or (None, revert message) when it
    reverted (its state changes undone, as on chain). The same execution titanoboa's
    `function(*args, sender=...)` runs, without building a Python traceback for every revert,
    which costs more than the call itself."""
    contract = function.contract
    computation = function.env.execute_code(
        to_address=contract._address,
        sender=sender,
        data=function.prepare_calldata(*args),
        is_modifying=function.func_t.is_mutable,
        contract=contract,
    )
    contract._computation = computation  # for get_logs()
    if computation.is_error:
        return None, revert_reason(computation.output)
    return contract.marshal_to_python(computation, function.func_t.return_type), None


def attempt(function: Any, *args: Any, sender: Any) -> str | None:
    """Send a transaction; None when it succeeded, its revert message when it reverted."""
    return transact(function, *args, sender=sender)[1]


def attempt_view(function: Any, *args: Any) -> tuple[Any, str | None]:
    """(value, None) or (None, revert message) for a view."""
    return transact(function, *args)


@dataclass(frozen=True)
class FeedState:
    """One asset as the OracleRouter stores it, with its aggregator's newest round."""

    heartbeat: int
    scale: int  # 10 ** (18 - feed decimals)
    min_price: int
    max_price: int
    last_price: int  # the accepted price, WAD
    max_deviation: int
    halted: bool
    variance: int
    mm_anchor: int
    mm_anchor_time: int
    round_id: int  # the aggregator's latest round
    answer: int  # its answer, feed units
    updated_at: int


class Storage:
    """Reads a contract's storage words by the compiler's layout (no EVM execution): a plain
    variable by its path, a HashMap entry as Vyper places it, keccak256(slot ++ key)."""

    def __init__(self, contract: Any):
        self.address = contract.address
        self.evm = contract.env.evm
        self.layout = contract.compiler_data.storage_layout["storage_layout"]

    def slot(self, *path: str) -> int:
        node = self.layout
        for name in path:
            node = node[name]
        return node["slot"]

    def word(self, slot: int) -> int:
        return int.from_bytes(self.evm.get_storage_slot(self.address, slot), "big")

    def var(self, *path: str) -> int:
        return self.word(self.slot(*path))

    def entry(self, path: tuple[str, ...], *keys: Any) -> int:
        return self.word(self.entry_slot(path, *keys))

    def entry_words(self, path: tuple[str, ...], *keys: Any, count: int) -> list[int]:
        """A HashMap entry that is a fixed array of `count` words (stored at consecutive slots)."""
        slot = self.entry_slot(path, *keys)
        return [self.word(slot + i) for i in range(count)]

    def entry_slot(self, path: tuple[str, ...], *keys: Any) -> int:
        slot = self.slot(*path)
        for key in keys:
            key_int = key if isinstance(key, int) else int(str(getattr(key, "address", key)), 16)
            slot = int.from_bytes(keccak(slot.to_bytes(32, "big") + key_int.to_bytes(32, "big")), "big")
        return slot


@cache
def storage_of(contract: Any) -> Storage:
    return Storage(contract)


def token_balance(token: Any, holder: Any) -> int:
    """An ERC-20 (snekmate) balance straight from storage."""
    return storage_of(token).entry(("erc20", "balanceOf"), holder)


def read_feed(oracle: Any, aggregator: Any, asset: str) -> FeedState:
    """Decode OracleRouter's packed storage for `asset` and the MockAggregator's newest round."""
    router, feed = storage_of(oracle), storage_of(aggregator)
    config = router.entry(("_config",), asset)
    bounds = router.entry(("_bounds",), asset)
    guard = router.entry(("_guard",), asset)
    sigma_state = router.entry(("_sigma_state",), asset)
    clock = router.entry(("_clock",), asset)
    round_id = feed.var("latest_round")
    word = feed.entry(("_rounds",), round_id)
    answer = word & (2**192 - 1)
    if answer >= 2**191:
        answer -= 2**192
    return FeedState(
        heartbeat=(config >> 160) & (2**32 - 1),
        scale=10 ** (18 - (config >> 192)),
        min_price=bounds & MASK_128,
        max_price=bounds >> 128,
        last_price=guard & MASK_128,
        max_deviation=(guard >> 128) & MASK_64,
        halted=bool((guard >> 192) & 1),
        variance=sigma_state & MASK_128,
        mm_anchor=sigma_state >> 128,
        mm_anchor_time=clock & MASK_64,
        round_id=round_id,
        answer=answer,
        updated_at=word >> 192,
    )
