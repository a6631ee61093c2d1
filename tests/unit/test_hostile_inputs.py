"""Hostile inputs: every external function of every protocol contract, the bad inputs tried and
the exact message each gets, as one table (`ROWS`) that is the single source of both these tests
and docs/hostile-inputs.md.

Each row is run against one module-scoped deployed protocol (ape's isolation rolls every row back):
its setup puts the protocol in the state the row needs (paused, stale oracle, underwater account,
...), then the call must revert with the row's exact message, be sent by the row's caller (a real,
mined, failed transaction; a view is an eth_call and mines nothing), and change nothing: the
storage of every deployed contract (so every token balance and every view), the token balances of
the contracts and of the caller, and the function's own views are equal before and after.

Regenerate the document after editing the table:
    .venv/bin/python -m tests.unit.hostile_inputs_table > docs/hostile-inputs.md
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ape
import pytest
from ape.exceptions import TransactionError

from marginsim import risk
from marginsim.orders import bond_of, deposit_now, place, trade_now, withdraw_now
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol
from tests.conftest import USDC, WAD
from tests.unit.hostile_inputs_table import DOC_PATH, render

ROOT = Path(__file__).resolve().parents[2]
ZERO = "0x0000000000000000000000000000000000000000"
MAX_ADDRESS = "0xFFfFfFffFFfffFFfFFfFFFFFffFFFffffFfFFFfF"  # the address analogue of id 2**256 - 1
MAX_UINT = 2**256 - 1
HEARTBEAT = 3_600  # every feed of the test protocol
COOLDOWN = 900  # LiquidityPool
BOOK_OPEN = "pool: book open, request instead"  # LiquidityPool: the instant paths while the book is open
REQUEST_WINDOW = 900  # LiquidityPool: seconds after executable_at a request may execute; then it lapses
ETH, BTC = 1, 2  # market ids; market_count is 2, so 3 is "count + 1"
WETH = 10**18
WBTC = 10**8
NOT_OWNER = "ownable: caller is not the owner"
NOT_NEW_OWNER = "ownable_2step: caller is not the new owner"
NO_REASON = None  # a revert without a reason string (ABI decoding, checked arithmetic, no code)

# IClearinghouse.MarketParams in field order, as marginsim.risk mirrors it
MARKET_FIELDS = tuple(f.name for f in dataclasses.fields(risk.MarketParams))

# A token that lies, for the messages only a misbehaving ERC-20 reaches. mode 0: honest;
# mode 1: transfer, transferFrom and approve return False and move nothing; mode 2: a transfer
# delivers one unit less than asked (fee on transfer). Compiled here, as the table's own fixture.
QUIRKY_ERC20 = """
# pragma version ~=0.4.3
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)
decimals: public(uint8)
mode: public(uint256)

@deploy
def __init__(decimals_: uint8):
    self.decimals = decimals_

@external
def set_mode(mode: uint256):
    self.mode = mode

@external
def mint(owner: address, amount: uint256):
    self.balanceOf[owner] += amount
    self.totalSupply += amount

@external
def approve(spender: address, amount: uint256) -> bool:
    if self.mode == 1:
        return False
    self.allowance[msg.sender][spender] = amount
    return True

@external
def transfer(to: address, amount: uint256) -> bool:
    if self.mode == 1:
        return False
    self._move(msg.sender, to, amount)
    return True

@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    if self.mode == 1:
        return False
    self.allowance[owner][msg.sender] -= amount
    self._move(owner, to, amount)
    return True

def _move(source: address, to: address, amount: uint256):
    self.balanceOf[source] -= amount
    fee: uint256 = 0
    if self.mode == 2 and amount > 0:
        fee = 1
    self.balanceOf[to] += amount - fee
"""


# ---------------------------------------------------------------- the context every row runs in


@dataclass
class Ctx:
    """The deployed protocol, the actors and the extra contracts the rows use."""

    project: Any
    chain: Any
    p: Any  # marginsim.protocol.Protocol
    roles: dict[str, Any]
    new_token: Any  # priced by the oracle, not listed
    new_feed: Any
    d19_token: Any  # priced, 19 decimals
    agg19: Any  # an aggregator with 19 decimals, not set on any asset
    fee_token: Any  # listed collateral that charges a fee on transfer
    false_token: Any  # listed collateral that can be switched to return False
    mini_settlement: Any  # a lying settlement token
    mini_ch: Any  # Clearinghouse on it, connected to the four below (no market listed)
    mini_pool: Any  # LiquidityPool on it
    mini_cfg: Any  # Configurator on it
    mini_engine: Any  # LiquidationEngine on it
    mini_orders: Any  # Orders on it: its execution fee is paid in the lying token
    bare_ch: Any  # a Clearinghouse not yet connected (no pool, configurator, liquidation engine or orders)
    bare_pool: Any  # a LiquidityPool on it
    bare_cfg: Any  # a Configurator on it: every call that needs the liquidation engine or orders reverts
    bare_engine: Any  # a LiquidationEngine on it
    bare_orders: Any  # an Orders on it
    empty: Any  # a second protocol that holds no settlement token at all (no LP, no insurance)
    contracts: list[Any] = field(default_factory=list)  # every deployed contract, for storage roots

    @property
    def ch(self):
        return self.p.clearinghouse

    @property
    def engine(self):
        return self.p.liquidation_engine

    @property
    def orders(self):
        return self.p.orders

    @property
    def oracle(self):
        return self.p.oracle

    @property
    def cfg(self):
        return self.p.configurator

    @property
    def lens(self):
        return self.p.lens

    @property
    def pool(self):
        return self.p.pool

    @property
    def usdc(self):
        return self.p.settlement

    @property
    def weth(self):
        return self.p.tokens["WETH"]

    @property
    def wbtc(self):
        return self.p.tokens["WBTC"]

    def __getattr__(self, name):
        roles = self.__dict__.get("roles", {})
        if name in roles:
            return roles[name]
        raise AttributeError(name)

    def token(self, symbol: str):
        return {
            "USDC": self.usdc,
            "WETH": self.weth,
            "WBTC": self.wbtc,
            "msLP": self.pool,
            "FOT": self.fee_token,
            "RF": self.false_token,
            "QS": self.mini_settlement,
        }[symbol]

    def read(self, view, *args):
        """Call a view for the before/after comparison. With an explicit `from`, the call skips
        web3's account lookup: twice as fast, and these reads are most of a row's time."""
        return view(*args, sender=self.roles["owner"])

    def account(self, role: str, subaccount: int = 0) -> int:
        return account_id(self.roles[role], subaccount)

    def market_params(self, market: int = ETH, **changes) -> tuple:
        current = self.read(self.ch.markets, market)
        return tuple(changes.get(name, getattr(current, name)) for name in MARKET_FIELDS)


def storage_roots(chain, contracts) -> dict[str, bytes]:
    """The storage trie root of each contract at the chain's head: equal roots, equal storage
    (every balance, allowance, parameter and position the contract keeps)."""
    accounts = chain.provider.evm_backend.chain.get_vm().state._account_db
    return {
        f"{c.contract_type.name}@{c.address}": accounts._get_storage_root(bytes.fromhex(str(c.address)[2:])) for c in contracts
    }


def fund(token, who, amount, spender=None, approve=None):
    """Mint `amount` of `token` to `who`, approving `spender` for `approve` (default: amount)."""
    token.mint(who, amount, sender=who)
    if spender is not None:
        token.approve(spender, amount if approve is None else approve, sender=who)


def deploy_quirky(project, deployer, decimals):
    import vyper
    from ape.contracts import ContractContainer
    from ethpm_types import ContractType

    out = vyper.compile_code(QUIRKY_ERC20, output_formats=["abi", "bytecode"])
    contract_type = ContractType.model_validate(
        {"contractName": "QuirkyERC20", "abi": out["abi"], "deploymentBytecode": {"bytecode": out["bytecode"]}}
    )
    return deployer.deploy(ContractContainer(contract_type), decimals)


def priced_token(project, oracle, owner, symbol, decimals=18, price_usd=10):
    """A new token with an OracleRouter feed (not listed as collateral)."""
    token = owner.deploy(project.MockERC20, f"Mock {symbol}", symbol, decimals)
    feed = owner.deploy(project.MockAggregator, 8, f"{symbol} / USD", price_usd * 10**8)
    oracle.set_feed(token, feed, HEARTBEAT, WAD // 100, 10**7 * WAD, 2 * 10**17, 8 * 10**17, sender=owner)
    return token, feed


@pytest.fixture(scope="module")
def ctx(project, chain, protocol, seeded_pool, deployer, guardian, trader, keeper, lp, attacker, other_trader):
    """The protocol every row starts from: a 10M USDC pool past its cooldown, a $20k insurance
    fund, a guardian, a trader near initial margin, funded attackers and keepers, and the extra
    tokens, feeds and contracts some rows need."""
    p = protocol
    ch, oracle, cfg = p.clearinghouse, p.oracle, p.configurator
    chain.pending_timestamp += COOLDOWN + 1  # the LP's seed shares are free to leave
    protocol.configurator.set_guardian(guardian, sender=deployer)
    fund(p.settlement, deployer, 20_000 * USDC, spender=ch)
    ch.fund_insurance(20_000 * USDC, sender=deployer)

    # trader subaccount 0: 2,000 USDC + 1 WETH, 25 ETH long: healthy, close to initial margin
    fund(p.settlement, trader, 2_000 * USDC, spender=ch)
    ch.deposit(p.settlement, 2_000 * USDC, 0, sender=trader)
    fund(p.tokens["WETH"], trader, 2 * WETH, spender=ch)
    ch.deposit(p.tokens["WETH"], WETH, 0, sender=trader)
    trade_now(ch, ETH, 25 * WAD, 0, 0, sender=trader)
    # trader subaccount 1: 1 WETH, no positions, no debt
    ch.deposit(p.tokens["WETH"], WETH, 1, sender=trader)
    # victim: 10,000 USDC + 0.1 WBTC, 50 ETH long (10x): liquidatable at ETH -10%, underwater at -15%
    fund(p.settlement, other_trader, 10_000 * USDC, spender=ch)
    ch.deposit(p.settlement, 10_000 * USDC, 0, sender=other_trader)
    fund(p.tokens["WBTC"], other_trader, WBTC // 10, spender=ch)
    ch.deposit(p.tokens["WBTC"], WBTC // 10, 0, sender=other_trader)
    trade_now(ch, ETH, 50 * WAD, 0, 0, sender=other_trader)

    # attacker: 1,000 USDC with only 500 approved to the clearinghouse, all to the pool;
    # 1 WETH with 0.5 approved. keeper: 100,000 USDC and 1 WETH, both approved in full.
    fund(p.settlement, attacker, 1_000 * USDC, spender=ch, approve=500 * USDC)
    p.settlement.approve(p.pool, MAX_UINT, sender=attacker)
    fund(p.tokens["WETH"], attacker, WETH, spender=ch, approve=WETH // 2)
    fund(p.settlement, keeper, 100_000 * USDC, spender=ch, approve=MAX_UINT)
    fund(p.tokens["WETH"], keeper, WETH, spender=ch, approve=MAX_UINT)

    new_token, new_feed = priced_token(project, oracle, deployer, "NEW")
    d19_token, d19_feed = priced_token(project, oracle, deployer, "D19", decimals=19)
    agg19 = deployer.deploy(project.MockAggregator, 19, "NINETEEN / USD", 10 * 10**19)

    fee_token = deploy_quirky(project, deployer, 18)
    false_token = deploy_quirky(project, deployer, 18)
    quirky_feeds = []
    for token in (fee_token, false_token):
        feed = deployer.deploy(project.MockAggregator, 8, "QUIRKY / USD", 10 * 10**8)
        oracle.set_feed(token, feed, HEARTBEAT, WAD // 100, 10**7 * WAD, 2 * 10**17, 8 * 10**17, sender=deployer)
        cfg.list_collateral(token, WAD // 2, 10**30, WAD // 10, sender=deployer)
        fund(token, attacker, 1_000 * WETH, spender=ch, approve=MAX_UINT)
        quirky_feeds.append(feed)
    fee_token.set_mode(2, sender=deployer)

    mini_settlement = deploy_quirky(project, deployer, 6)
    mini_ch = deployer.deploy(project.Clearinghouse, oracle, mini_settlement, 6)
    mini_pool = deployer.deploy(project.LiquidityPool, mini_ch, "mini LP", "mLP")
    mini_cfg = deployer.deploy(project.Configurator, mini_ch)
    mini_engine = deployer.deploy(project.LiquidationEngine, mini_ch)
    mini_orders = deployer.deploy(project.Orders, mini_ch, deployer.deploy(project.MarginLens, mini_ch))
    mini_ch.connect(mini_pool, mini_cfg, mini_engine, mini_orders, sender=deployer)
    fund(mini_settlement, attacker, 1_000 * USDC, spender=mini_pool, approve=MAX_UINT)
    bare_ch = deployer.deploy(project.Clearinghouse, oracle, p.settlement, 6)
    bare_pool = deployer.deploy(project.LiquidityPool, bare_ch, "bare LP", "bLP")
    bare_cfg = deployer.deploy(project.Configurator, bare_ch)
    bare_engine = deployer.deploy(project.LiquidationEngine, bare_ch)
    bare_orders = deployer.deploy(project.Orders, bare_ch, deployer.deploy(project.MarginLens, bare_ch))
    empty = deploy_protocol(project, deployer, DEFAULT_CONFIG)

    contracts = [ch, p.liquidation_engine, p.orders, oracle, cfg, p.lens, p.pool, p.settlement]
    contracts += [*p.tokens.values(), *p.feeds.values()]
    contracts += [new_token, new_feed, d19_token, d19_feed, agg19, fee_token, false_token, *quirky_feeds]
    contracts += [mini_settlement, mini_ch, mini_pool, mini_cfg, mini_engine, mini_orders]
    contracts += [bare_ch, bare_pool, bare_cfg, bare_engine, bare_orders]
    contracts += [
        empty.clearinghouse,
        empty.liquidation_engine,
        empty.orders,
        empty.oracle,
        empty.configurator,
        empty.lens,
        empty.pool,
        empty.settlement,
        *empty.tokens.values(),
        *empty.feeds.values(),
    ]
    roles = {
        "owner": deployer,
        "guardian": guardian,
        "trader": trader,
        "keeper": keeper,
        "lp": lp,
        "attacker": attacker,
        "victim": other_trader,
    }
    return Ctx(
        project=project,
        chain=chain,
        p=p,
        roles=roles,
        new_token=new_token,
        new_feed=new_feed,
        d19_token=d19_token,
        agg19=agg19,
        fee_token=fee_token,
        false_token=false_token,
        mini_settlement=mini_settlement,
        mini_ch=mini_ch,
        mini_pool=mini_pool,
        mini_cfg=mini_cfg,
        mini_engine=mini_engine,
        mini_orders=mini_orders,
        bare_ch=bare_ch,
        bare_pool=bare_pool,
        bare_cfg=bare_cfg,
        bare_engine=bare_engine,
        bare_orders=bare_orders,
        empty=empty,
        contracts=contracts,
    )


# ---------------------------------------------------------------- setups: the states rows need


def publish(symbol: str, price_usd: float, sync: bool = True):
    """A new round on `symbol`'s feed at `price_usd` (synced into the router unless told)."""

    def setup(x: Ctx):
        x.p.feeds[symbol].updateAnswer(int(price_usd * 10**8), sender=x.owner)
        if sync:
            x.oracle.sync(x.p.tokens[symbol], sender=x.owner)

    return setup


def publish_raw(answer: int, updated_at: Callable[[Ctx], int] | None = None):
    """A WETH round with a raw answer (8 decimals) and optionally an explicit updatedAt."""

    def setup(x: Ctx):
        feed = x.p.feeds["WETH"]
        if updated_at is None:
            feed.updateAnswer(answer, sender=x.owner)
        else:
            feed.updateRoundData(feed.latest_round() + 1, answer, updated_at(x), updated_at(x), sender=x.owner)

    return setup


def then(*setups):
    def setup(x: Ctx):
        for step in setups:
            step(x)

    return setup


def stale(x: Ctx):
    """Every feed's newest round is older than its heartbeat."""
    x.chain.pending_timestamp += HEARTBEAT + 1
    x.chain.mine()


def wbtc_stale(x: Ctx):
    """Every feed stale, then WETH's publishes again: WBTC, which the victim holds, has no price,
    and BTC-PERP is idle, so only the LP's collateral check reads it (tokens nobody holds are
    not read)."""
    stale(x)
    publish("WETH", 2_000)(x)


eth_breaker = publish("WETH", 2_600)  # +30%, beyond the 20% breaker, synced: the asset halts


def paused(x: Ctx):
    x.cfg.pause(sender=x.guardian)


def eth_reduce_only(x: Ctx):
    x.cfg.set_reduce_only(ETH, True, sender=x.guardian)


def order_pending(x: Ctx):
    """The trader commits an order to sell 1 ETH in ETH-PERP (subaccount 0), its execution fee
    minted to it and approved to Orders first: the order waits for its round."""
    fee = int(x.orders.execution_fee())
    fund(x.usdc, x.trader, fee, spender=x.orders)
    x.orders.commit_order(ETH, -WAD, 0, 0, sender=x.trader)


def settlement_delay_passed(x: Ctx):
    """The settlement delay passes (no new round yet)."""
    x.chain.pending_timestamp += int(x.orders.settlement_delay())


def just_before_expiry(x: Ctx):
    """The next block is one second short of the trader's ETH-PERP order expiring."""
    order = x.orders.order(x.account("trader"), ETH)
    x.chain.pending_timestamp = int(order.executable_at) + int(x.orders.expiry()) - 1


def expired(x: Ctx):
    """The next block is the first at which the trader's ETH-PERP order may expire (no round came)."""
    order = x.orders.order(x.account("trader"), ETH)
    x.chain.pending_timestamp = int(order.executable_at) + int(x.orders.expiry())


def its_round(x: Ctx):
    """A new ETH round (at the same $2,000, synced) after the trader's order became executable:
    its first round, the newest, so the order can fill."""
    publish("WETH", 2_000)(x)


def its_round_late_then_expired(x: Ctx):
    """The trader's ETH-PERP order's first round comes ten seconds before the order would expire,
    then its expiry passes: that round is still the newest and fresh, so the order can fill."""
    order = x.orders.order(x.account("trader"), ETH)
    deadline = int(order.executable_at) + int(x.orders.expiry())
    x.chain.pending_timestamp = deadline - 10
    its_round(x)
    x.chain.pending_timestamp = deadline + 1


def sub1_order_pending(x: Ctx):
    """The trader commits an order to buy 1 ETH in ETH-PERP on subaccount 1 (1 WETH, no
    positions, no debt), its execution fee and bond minted to it and approved to Orders first."""
    fee = int(x.orders.execution_fee()) + bond_of(x.ch, ETH, WAD, 1, sender=x.trader)  # and its bond
    fund(x.usdc, x.trader, fee, spender=x.orders)
    x.orders.commit_order(ETH, WAD, 0, 1, sender=x.trader)


def mini_eth_listed(x: Ctx):
    """ETH-PERP listed on the mini clearinghouse, the attacker's lying settlement token approved
    to its Orders: an order there escrows its fee in that token. Its open-interest reserve off:
    the mini pool is empty, and an order must reach the fee's transfer."""
    x.mini_cfg.list_market(x.market_params(ETH), sender=x.owner)
    x.mini_cfg.set_reserve_factor(x.mini_ch.market_count(), 0, sender=x.owner)
    x.mini_settlement.approve(x.mini_orders, MAX_UINT, sender=x.attacker)
    # the margin an order there needs ($500 for 1 ETH), deposited while the token still behaves
    fund(x.mini_settlement, x.attacker, 500 * USDC, spender=x.mini_ch)
    x.mini_ch.deposit(x.mini_settlement, 500 * USDC, 0, sender=x.attacker)


def open_long(x: Ctx, role: str, collateral_usdc: int, size_eth: int):
    who = x.roles[role]
    fund(x.usdc, who, collateral_usdc * USDC, spender=x.ch)
    x.ch.deposit(x.usdc, collateral_usdc * USDC, 0, sender=who)
    trade_now(x.ch, ETH, size_eth * WAD, 0, 0, sender=who)


def liquidatable(x: Ctx):
    """ETH -10%: the victim's health falls below 1 (about 0.9), its equity stays positive."""
    publish("WETH", 1_800)(x)


def underwater(x: Ctx):
    """ETH -15% and a keeper closes the victim's whole position. Left: no positions, a negative
    settlement balance and 0.1 WBTC: a collateral sale is due."""
    publish("WETH", 1_700)(x)
    x.engine.liquidate(x.account("victim"), ETH, MAX_UINT, sender=x.keeper)


def lp_cooldown(x: Ctx):
    """The attacker deposits 100 USDC into the pool (at once while the book is idle, else by a
    request executed a settlement delay later): the minted shares are locked 15 minutes."""
    deposit_now(x.pool, 100 * USDC, x.attacker, sender=x.attacker)


def lp_four_gift_lots(x: Ctx):
    """The keeper deposits 1 micro-USDC to the LP in four blocks (at once while the book is
    idle, else by request): the LP now has four lots in their cooldown, the most a third party
    may fill."""
    x.usdc.approve(x.pool, MAX_UINT, sender=x.keeper)
    for _ in range(4):
        x.chain.pending_timestamp += 1
        deposit_now(x.pool, 1, x.lp, sender=x.keeper)


def book_idle(x: Ctx):
    """The trader and the victim close their ETH-PERP positions at $2,000: no market has open
    interest, an entry cost or an order placed, so the pool's instant paths (deposit, mint,
    withdraw, redeem) are open (`instant()`)."""
    trade_now(x.ch, ETH, -25 * WAD, 0, 0, sender=x.trader)
    trade_now(x.ch, ETH, -50 * WAD, 0, 0, sender=x.roles["victim"])
    assert x.pool.instant()


def traders_in_profit(x: Ctx):
    """ETH +5%: the traders' unrealised profit lowers the pool's value below its liquidity, so
    the LP's maxWithdraw is bounded by its shares."""
    publish("WETH", 2_100)(x)


def in_debt_over_the_ceiling(x: Ctx):
    """Trader subaccount 1 (1 WETH, no USDC) opens 1 ETH long, ETH -5%, closes: its realised loss
    is a debt; governance then sets the debt ceiling to its least (1e-18 of what the pool could
    lend), so the debts are above it."""
    trader = x.roles["trader"]
    trade_now(x.ch, ETH, WAD, 0, 1, sender=trader)
    publish("WETH", 1_900)(x)
    trade_now(x.ch, ETH, -WAD, 0, 1, sender=trader)
    assert x.ch.settlement(x.account("trader", 1)) < 0
    x.cfg.set_debt_parameters(2 * 10**16, 3 * 10**17, 25 * 10**16, 1, 9 * 10**17, sender=x.owner)


def traders_at_a_loss(x: Ctx):
    """The victim goes 5,000 ETH long on 2M USDC; ETH -15%: its unrealised loss raises the
    pool's value above its realised balance, which is all the pool can pay out."""
    open_long(x, "victim", 2_000_000, 5_000)
    publish("WETH", 1_700)(x)


def reserve_nearly_full(x: Ctx):
    """The victim goes 400 ETH long on 100,000 USDC, then governance sets ETH's reserve factor
    to 10%: the long side ($800k) needs $8M of the pool's $10M value, so most of the LP's
    shares may not leave."""
    open_long(x, "victim", 100_000, 400)
    x.cfg.set_reserve_factor(ETH, WAD // 10, sender=x.owner)


def cap_held_by_a_placed_order(x: Ctx):
    """Governance sets ETH's oi_cap to the long side's open interest plus 10 ETH, and the victim
    (10,000 USDC) places a 10 ETH long order, not yet filled: with its hold the cap is full."""
    st = x.ch.market_state(ETH)
    x.cfg.set_market(ETH, x.market_params(ETH, oi_cap=int(st.long_oi) + 10 * WAD), sender=x.owner)
    victim = x.roles["victim"]
    fund(x.usdc, victim, 10_000 * USDC, spender=x.ch)
    x.ch.deposit(x.usdc, 10_000 * USDC, 0, sender=victim)
    place(x.ch, ETH, 10 * WAD, sender=victim)


def trader_not_approved_to_orders(x: Ctx):
    """The trader holds an execution fee but its approval to Orders is withdrawn."""
    fund(x.usdc, x.trader, int(x.orders.execution_fee()))
    x.usdc.approve(x.orders, 0, sender=x.trader)


def trader_wallet_emptied(x: Ctx):
    """The trader sends its whole USDC wallet away (the bond its orders got back included)."""
    x.usdc.transfer(x.keeper, x.usdc.balanceOf(x.trader), sender=x.trader)


def trader_adds_margin(x: Ctx):
    """The trader deposits 100,000 USDC more into subaccount 0: margin for 200 ETH more."""
    fund(x.usdc, x.trader, 100_000 * USDC, spender=x.ch)
    x.ch.deposit(x.usdc, 100_000 * USDC, 0, sender=x.trader)


def reserve_aside(x: Ctx):
    """Both markets' open-interest reserve off (factor 0): the pool's other checks come first for
    the withdrawals that follow."""
    for market in (ETH, BTC):
        x.cfg.set_reserve_factor(market, 0, sender=x.owner)


def insolvent_pool(x: Ctx):
    """The victim goes 400 ETH long; with the reserve off the LP takes out all it can but $10 (by
    request); ETH +12%: the traders' profit exceeds the pool, whose value is <= 0 with shares
    outstanding."""
    open_long(x, "victim", 100_000, 400)
    reserve_aside(x)
    # by request (the book is open), $10 short of it: the value drifts in the minute it waits
    withdraw_now(x.pool, x.pool.withdrawable(x.lp) - 10 * USDC, x.lp, x.lp, sender=x.lp)
    publish("WETH", 2_240)(x)


def pending_owner(contract: str):
    def setup(x: Ctx):
        getattr(x, contract).transfer_ownership(x.lp, sender=x.owner)

    return setup


def fifteen_markets(x: Ctx):
    for _ in range(int(x.ch.market_count()), 15):
        x.cfg.list_market(x.market_params(ETH), sender=x.owner)


def seven_collaterals(x: Ctx):
    """Fill every collateral slot (1..7; 5 are listed in the base state) with new priced tokens."""
    for n in range(int(x.ch.collateral_count()), 7):
        token, _ = priced_token(x.project, x.oracle, x.owner, f"C{n}")
        x.cfg.list_collateral(token, WAD // 2, 10**30, WAD // 10, sender=x.owner)


def eth_penalty_near_spiral(x: Ctx):
    """ETH-PERP penalty 3.2%: safe at the 10% buffer (1.1 * 3% = 3.3%), a spiral at buffer 0."""
    x.cfg.set_market(ETH, x.market_params(ETH, penalty=32 * 10**15), sender=x.owner)


def btc_low_maintenance(x: Ctx):
    """BTC-PERP base maintenance 0.5% (penalty and cap lowered to stay within their bounds)."""
    x.cfg.set_market(BTC, x.market_params(BTC, base_mmr=5 * 10**15, penalty=5 * 10**15, oi_cap=100 * WAD), sender=x.owner)


def weth_disabled(x: Ctx):
    c = x.ch.collaterals(x.ch.collateral_slot(x.weth))
    x.cfg.set_collateral(x.weth, c.weight, c.cap, c.liquidation_discount, False, sender=x.owner)


def weth_cap_reached(x: Ctx):
    c = x.ch.collaterals(x.ch.collateral_slot(x.weth))
    x.cfg.set_collateral(x.weth, c.weight, c.total, c.liquidation_discount, True, sender=x.owner)


def false_token_lies(x: Ctx):
    x.false_token.set_mode(1, sender=x.owner)


def false_token_deposited_then_lies(x: Ctx):
    x.ch.deposit(x.false_token, 100 * WETH, 0, sender=x.attacker)
    x.false_token.set_mode(1, sender=x.owner)


def mini_settlement_lies(x: Ctx):
    x.mini_settlement.set_mode(1, sender=x.owner)


def mini_settlement_charges_a_fee(x: Ctx):
    x.mini_settlement.set_mode(2, sender=x.owner)


def mint_to(symbol: str, role: str, amount: int):
    def setup(x: Ctx):
        x.token(symbol).mint(x.roles[role], amount, sender=x.owner)

    return setup


def attacker_shares_approved_to_keeper(x: Ctx):
    lp_cooldown(x)
    x.pool.approve(x.keeper, MAX_UINT, sender=x.attacker)


def deposit_requested(receiver: Callable[[Ctx], Any] = lambda x: x.attacker, assets: int = 100 * USDC):
    """The attacker asks the pool to deposit `assets` (100 USDC) for `receiver` (itself): the
    tokens and the 2 USDC execution fee wait in the pool's escrow for a keeper (its 1,000 USDC are
    approved to the pool)."""

    def setup(x: Ctx):
        x.pool.request_deposit(assets, receiver(x), sender=x.attacker)

    return setup


def redemption_requested(
    shares: Callable[[Ctx], int] = lambda x: x.pool.balanceOf(x.lp), receiver: Callable[[Ctx], Any] = lambda x: x.lp
):
    """The LP asks the pool to redeem `shares` (all of its) for `receiver` (itself), the execution
    fee minted to it and approved to the pool first: the shares and the fee wait in the pool's
    escrow for a keeper."""

    def setup(x: Ctx):
        fund(x.usdc, x.lp, int(x.orders.execution_fee()), spender=x.pool)
        x.pool.request_redeem(shares(x), receiver(x), x.lp, sender=x.lp)

    return setup


def lp_deposit_requested(x: Ctx):
    """The LP asks the pool to deposit 100 USDC for itself, the tokens and the execution fee
    minted to it and approved to the pool first."""
    fund(x.usdc, x.lp, 100 * USDC + int(x.orders.execution_fee()), spender=x.pool)
    x.pool.request_deposit(100 * USDC, x.lp, sender=x.lp)


def request_at(role: str, offset: int):
    """The next block is `offset` seconds from `role`'s request's executable_at."""

    def setup(x: Ctx):
        x.chain.pending_timestamp = int(x.pool.requests(x.roles[role]).executable_at) + offset

    return setup


def request_due(role: str):
    """`role`'s request may execute in the next block: its executable_at has come (the clock is
    moved on to it if the setup has not already passed it), its window not yet over."""

    def setup(x: Ctx):
        executable_at = int(x.pool.requests(x.roles[role]).executable_at)
        x.chain.pending_timestamp = max(int(x.chain.pending_timestamp), executable_at)
        assert int(x.chain.pending_timestamp) <= executable_at + REQUEST_WINDOW

    return setup


def request_executed(role: str):
    """A keeper executes `role`'s request as soon as it is due."""

    def setup(x: Ctx):
        request_due(role)(x)
        x.pool.execute_request(x.roles[role], sender=x.keeper)

    return setup


def request_lapsed(role: str):
    """`role`'s request's window passes unexecuted and a keeper lapses it (its escrow goes back)."""

    def setup(x: Ctx):
        request_at(role, REQUEST_WINDOW + 1)(x)
        x.pool.lapse_request(x.roles[role], sender=x.keeper)

    return setup


wbtc_halted = publish("WBTC", 39_000)  # +30%, beyond the 20% breaker, synced: WBTC, which the victim holds, has no price


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    contract: str
    function: str
    bad_input: str  # what is hostile about the call, in words
    caller: str | None  # role that sends it; None: a view, called without a transaction
    call: Callable[[Ctx, Any], Any]  # makes the call, given the context and the caller's account
    message: str | None  # the exact revert reason; None: reverts with no reason string
    setup: Callable[[Ctx], None] | None = None  # the state the row needs, built before the call
    token: str = "USDC"  # whose balances (clearinghouse, pool, caller) must not move
    views: Callable[[Ctx], tuple] | None = None  # the function's own state, read before and after

    @property
    def id(self) -> str:
        return f"{self.contract}.{self.function}: {self.bad_input}"


# The function's own views, read before and after each row (the storage roots cover the rest).
def oracle_views(x: Ctx) -> tuple:
    return (x.read(x.oracle.vol, x.weth), x.read(x.oracle.ewma_lambda))


def account_views(role: str, subaccount: int = 0):
    """The account's settlement balance, its pending claim, collateral mask and ETH-PERP position.
    A debt is read as written, with the index it was written at: the balance `settlement` reads
    grows with interest every second, and a failed transaction still mines a block."""

    def views(x: Ctx) -> tuple:
        a = x.account(role, subaccount)
        balance = x.read(x.ch.settlement, a)
        if balance < 0:
            balance = x.read(x.ch.debt_of, a)
        return (balance, x.read(x.ch.pending, a), x.read(x.ch.collateral_mask, a), x.read(x.ch.positions, a, ETH))

    return views


def ch_views(x: Ctx) -> tuple:
    return (x.read(x.ch.settlement_held), x.read(x.ch.pool_balance), x.read(x.ch.insurance_balance))


def governance_views(x: Ctx) -> tuple:
    return (x.read(x.ch.paused), x.read(x.cfg.guardian))


def engine_views(x: Ctx) -> tuple:
    """The liquidation parameters, kept by the LiquidationEngine and set through the Configurator."""
    e = x.engine
    return (
        x.read(e.liquidation_buffer),
        x.read(e.full_liquidation_health),
        x.read(e.dust_notional),
        x.read(e.underwater_tip_rate),
        x.read(e.debt_liquidation_ltv),
    )


def configurator_views(x: Ctx) -> tuple:
    return (x.read(x.ch.markets, ETH), x.read(x.ch.collaterals, 1), x.read(x.ch.debt_terms), *engine_views(x))


def connection_views(x: Ctx) -> tuple:
    return (x.read(x.ch.pool), x.read(x.ch.configurator), x.read(x.ch.liquidation_engine), x.read(x.ch.orders))


def bare_connection_views(x: Ctx) -> tuple:
    ch = x.bare_ch
    return (x.read(ch.pool), x.read(ch.configurator), x.read(ch.liquidation_engine), x.read(ch.orders))


def order_parameter_views(orders: Callable[[Ctx], Any]):
    def views(x: Ctx) -> tuple:
        o = orders(x)
        return (x.read(o.settlement_delay), x.read(o.expiry), x.read(o.execution_fee), x.read(o.order_bond))

    return views


def orders_views(role: str = "trader", subaccount: int = 0, orders: Callable[[Ctx], Any] = lambda x: x.orders):
    """`role`'s order in ETH-PERP and its position there, with the order parameters."""

    def views(x: Ctx) -> tuple:
        a = x.account(role, subaccount)
        return (x.read(orders(x).order, a, ETH), x.read(x.ch.positions, a, ETH), *order_parameter_views(orders)(x))

    return views


def reserve_views(x: Ctx) -> tuple:
    return (x.read(x.pool.reserve_factor, ETH), x.read(x.pool.reserve_factor, BTC))


def held_views(x: Ctx) -> tuple:
    """The trader's order and position in ETH-PERP, the order parameters, and the open interest
    placed orders hold in the pool in both markets."""
    return (*orders_views()(x), x.read(x.pool.held, ETH), x.read(x.pool.held, BTC))


def pool_views(x: Ctx) -> tuple:
    return (x.read(x.pool.totalSupply), x.read(x.ch.pool_balance))


UNKNOWN_MARKETS = (("0", lambda x: 0), ("count + 1", lambda x: int(x.ch.market_count()) + 1), ("2**256 - 1", lambda x: MAX_UINT))
UNKNOWN_ASSETS = (
    ("zero address", lambda x: ZERO),
    ("an address without a feed", lambda x: x.attacker.address),
    ("0xfff...f", lambda x: MAX_ADDRESS),
)
UNLISTED_TOKENS = (
    ("zero address", lambda x: ZERO),
    ("a priced token that is not listed", lambda x: x.new_token.address),
    ("0xfff...f", lambda x: MAX_ADDRESS),
)

# ---- OracleRouter

FEED_OK = {
    "heartbeat": HEARTBEAT,
    "min_price": WAD // 100,
    "max_price": 10**7 * WAD,
    "max_deviation": 2 * 10**17,
    "initial_sigma": 8 * 10**17,
}


def set_feed(asset=None, aggregator=None, **changes):
    """OracleRouter.set_feed for WETH on its own feed with valid guards, some replaced."""
    args = {**FEED_OK, **changes}

    def call(x: Ctx, who):
        a = asset(x) if asset else x.weth
        agg = aggregator(x) if aggregator else x.p.feeds["WETH"]
        return x.oracle.set_feed(
            a,
            agg,
            args["heartbeat"],
            args["min_price"],
            args["max_price"],
            args["max_deviation"],
            args["initial_sigma"],
            sender=who,
        )

    return call


def oracle_rows() -> list[Row]:
    def R(function, bad, caller, call, message, **kw):
        return Row("OracleRouter", function, bad, caller, call, message, views=kw.pop("views", oracle_views), **kw)

    def deploy(lam, speed):
        return lambda x, who: who.deploy(x.project.OracleRouter, lam, speed)

    rows = [
        R("__init__", "ewma_lambda 0.5 - 1 wei", "owner", deploy(5 * 10**17 - 1, 10**17), "oracle: bad lambda"),
        R("__init__", "ewma_lambda 0.999 + 1 wei", "owner", deploy(999 * 10**15 + 1, 10**17), "oracle: bad lambda"),
        R("__init__", "max_vol_rise_per_hour 0", "owner", deploy(94 * 10**16, 0), "oracle: bad vol speed"),
        R("__init__", "max_vol_rise_per_hour 1 + 1 wei", "owner", deploy(94 * 10**16, WAD + 1), "oracle: bad vol speed"),
        R(
            "set_parameters",
            "not the owner",
            "attacker",
            lambda x, who: x.oracle.set_parameters(94 * 10**16, 10**17, sender=who),
            NOT_OWNER,
        ),
        R(
            "set_parameters",
            "not the owner (the guardian)",
            "guardian",
            lambda x, who: x.oracle.set_parameters(94 * 10**16, 10**17, sender=who),
            NOT_OWNER,
        ),
        R(
            "set_parameters",
            "ewma_lambda 0",
            "owner",
            lambda x, who: x.oracle.set_parameters(0, 10**17, sender=who),
            "oracle: bad lambda",
        ),
        R(
            "set_parameters",
            "ewma_lambda 0.5 - 1 wei",
            "owner",
            lambda x, who: x.oracle.set_parameters(5 * 10**17 - 1, 10**17, sender=who),
            "oracle: bad lambda",
        ),
        R(
            "set_parameters",
            "ewma_lambda 0.999 + 1 wei",
            "owner",
            lambda x, who: x.oracle.set_parameters(999 * 10**15 + 1, 10**17, sender=who),
            "oracle: bad lambda",
        ),
        R(
            "set_parameters",
            "max_vol_rise_per_hour 0",
            "owner",
            lambda x, who: x.oracle.set_parameters(94 * 10**16, 0, sender=who),
            "oracle: bad vol speed",
        ),
        R(
            "set_parameters",
            "max_vol_rise_per_hour 1 + 1 wei",
            "owner",
            lambda x, who: x.oracle.set_parameters(94 * 10**16, WAD + 1, sender=who),
            "oracle: bad vol speed",
        ),
        R(
            "set_confirmation_delay",
            "not the owner",
            "attacker",
            lambda x, who: x.oracle.set_confirmation_delay(600, sender=who),
            NOT_OWNER,
        ),
        R(
            "set_confirmation_delay",
            "a day + 1 s",
            "owner",
            lambda x, who: x.oracle.set_confirmation_delay(86_401, sender=who),
            "oracle: bad confirmation delay",
        ),
        R("set_feed", "not the owner", "attacker", set_feed(), NOT_OWNER),
        R("set_feed", "asset zero address", "owner", set_feed(asset=lambda x: ZERO), "oracle: zero asset"),
        R("set_feed", "aggregator zero address", "owner", set_feed(aggregator=lambda x: ZERO), "oracle: zero aggregator"),
        R("set_feed", "aggregator without code (an EOA)", "owner", set_feed(aggregator=lambda x: x.attacker.address), NO_REASON),
        R("set_feed", "heartbeat 59 s", "owner", set_feed(heartbeat=59), "oracle: bad heartbeat"),
        R("set_feed", "heartbeat a week + 1 s", "owner", set_feed(heartbeat=7 * 86_400 + 1), "oracle: bad heartbeat"),
        R("set_feed", "min_price 0", "owner", set_feed(min_price=0), "oracle: bad bounds"),
        R("set_feed", "max_price == min_price", "owner", set_feed(min_price=WAD, max_price=WAD), "oracle: bad bounds"),
        R("set_feed", "max_price 2**128 (above the packed range)", "owner", set_feed(max_price=2**128), "oracle: bad bounds"),
        R("set_feed", "max_deviation 1% - 1 wei", "owner", set_feed(max_deviation=10**16 - 1), "oracle: bad deviation"),
        R("set_feed", "max_deviation 100% + 1 wei", "owner", set_feed(max_deviation=WAD + 1), "oracle: bad deviation"),
        R("set_feed", "initial_sigma 1000% + 1 wei", "owner", set_feed(initial_sigma=10 * WAD + 1), "oracle: bad sigma"),
        R("set_feed", "aggregator with 19 decimals", "owner", set_feed(aggregator=lambda x: x.agg19), "oracle: bad decimals"),
        R("set_feed", "current answer 0", "owner", set_feed(), "oracle: non-positive answer", setup=publish_raw(0)),
        R("set_feed", "current answer older than the heartbeat", "owner", set_feed(), "oracle: stale answer", setup=stale),
        R("set_feed", "current answer at min_price", "owner", set_feed(min_price=2_000 * WAD), "oracle: answer out of bounds"),
        R("set_feed", "current answer at max_price", "owner", set_feed(max_price=2_000 * WAD), "oracle: answer out of bounds"),
        R(
            "clear_circuit_breaker",
            "not the owner",
            "attacker",
            lambda x, who: x.oracle.clear_circuit_breaker(x.weth, sender=who),
            NOT_OWNER,
            setup=eth_breaker,
        ),
        R(
            "clear_circuit_breaker",
            "asset not halted",
            "owner",
            lambda x, who: x.oracle.clear_circuit_breaker(x.weth, sender=who),
            "oracle: not halted",
        ),
        R(
            "clear_circuit_breaker",
            "halted, newest answer stale",
            "owner",
            lambda x, who: x.oracle.clear_circuit_breaker(x.weth, sender=who),
            "oracle: stale answer",
            setup=then(eth_breaker, stale),
        ),
        R(
            "clear_circuit_breaker",
            "halted, newest answer at min_price",
            "owner",
            lambda x, who: x.oracle.clear_circuit_breaker(x.weth, sender=who),
            "oracle: answer out of bounds",
            setup=then(eth_breaker, publish_raw(10**6)),
        ),
        R(
            "clear_circuit_breaker",
            "halted, newest answer -1",
            "owner",
            lambda x, who: x.oracle.clear_circuit_breaker(x.weth, sender=who),
            "oracle: non-positive answer",
            setup=then(eth_breaker, publish_raw(-1)),
        ),
        R("price", "answer 0", None, lambda x, who: x.oracle.price(x.weth), "oracle: non-positive answer", setup=publish_raw(0)),
        R(
            "price",
            "answer -1",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: non-positive answer",
            setup=publish_raw(-1),
        ),
        R(
            "price",
            "answer older than the heartbeat",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: stale answer",
            setup=stale,
        ),
        R(
            "price",
            "round from the future (updatedAt = now + 1 h)",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: stale answer",
            setup=publish_raw(2_000 * 10**8, lambda x: x.chain.pending_timestamp + HEARTBEAT),
        ),
        R(
            "price",
            "round with updatedAt 0",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: stale answer",
            setup=publish_raw(2_000 * 10**8, lambda x: 0),
        ),
        R(
            "price",
            "answer at min_price ($0.01)",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: answer out of bounds",
            setup=publish_raw(10**6),
        ),
        R(
            "price",
            "answer below min_price",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: answer out of bounds",
            setup=publish_raw(1),
        ),
        R(
            "price",
            "answer at max_price ($10M)",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: answer out of bounds",
            setup=publish_raw(10**7 * 10**8),
        ),
        R(
            "price",
            "circuit breaker tripped (+30% round, synced)",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: circuit breaker",
            setup=eth_breaker,
        ),
        R(
            "price",
            "+30% round not yet synced",
            None,
            lambda x, who: x.oracle.price(x.weth),
            "oracle: circuit breaker",
            setup=publish("WETH", 2_600, sync=False),
        ),
        R("assets", "index == asset_count", None, lambda x, who: x.oracle.assets(x.oracle.asset_count()), NO_REASON),
        R(
            "transfer_ownership",
            "not the owner",
            "attacker",
            lambda x, who: x.oracle.transfer_ownership(who, sender=who),
            NOT_OWNER,
        ),
        R(
            "accept_ownership",
            "no transfer pending",
            "attacker",
            lambda x, who: x.oracle.accept_ownership(sender=who),
            NOT_NEW_OWNER,
        ),
        R(
            "accept_ownership",
            "transfer pending to someone else",
            "attacker",
            lambda x, who: x.oracle.accept_ownership(sender=who),
            NOT_NEW_OWNER,
            setup=pending_owner("oracle"),
        ),
    ]
    for label, asset in UNKNOWN_ASSETS:
        rows += [
            R("price", f"unknown asset: {label}", None, lambda x, who, a=asset: x.oracle.price(a(x)), "oracle: unknown asset"),
            R(
                "volatility",
                f"unknown asset: {label}",
                None,
                lambda x, who, a=asset: x.oracle.volatility(a(x)),
                "oracle: unknown asset",
            ),
            R(
                "maintenance_volatility",
                f"unknown asset: {label}",
                None,
                lambda x, who, a=asset: x.oracle.maintenance_volatility(a(x)),
                "oracle: unknown asset",
            ),
            R(
                "volatilities",
                f"unknown asset: {label}",
                None,
                lambda x, who, a=asset: x.oracle.volatilities(a(x)),
                "oracle: unknown asset",
            ),
            R(
                "sync",
                f"unknown asset: {label}",
                "keeper",
                lambda x, who, a=asset: x.oracle.sync(a(x), sender=who),
                "oracle: unknown asset",
            ),
            R(
                "clear_circuit_breaker",
                f"unknown asset: {label}",
                "owner",
                lambda x, who, a=asset: x.oracle.clear_circuit_breaker(a(x), sender=who),
                "oracle: unknown asset",
            ),
        ]
    return rows


# ---- Clearinghouse


def clearinghouse_rows() -> list[Row]:
    def R(function, bad, caller, call, message, **kw):
        return Row("Clearinghouse", function, bad, caller, call, message, views=kw.pop("views", ch_views), **kw)

    trader0 = account_views("trader")
    victim = account_views("victim")

    def deposit(token, amount, sub=0):
        return lambda x, who: x.ch.deposit(token(x), amount, sub, sender=who)

    def withdraw(token, amount, sub=0):
        return lambda x, who: x.ch.withdraw(token(x), amount, sub, sender=who)

    def fill_order(role="attacker", size=WAD, limit=0, price=lambda x: 1):
        """Clearinghouse.fill_order as Orders would send it, for `role`'s account at `price`."""
        return lambda x, who: x.ch.fill_order(x.account(role), ETH, size, limit, price(x), sender=who)

    def usdc(x):
        return x.usdc

    def weth(x):
        return x.weth

    def liquidation_close(account="victim", size=-WAD, price=None, penalty=0, reward=0):
        """Clearinghouse.liquidation_close as the engine would send it, the caller as keeper."""
        return lambda x, who: x.ch.liquidation_close(
            x.account(account),
            ETH,
            size,
            x.read(x.oracle.price, x.weth) if price is None else price,
            x.read(x.oracle.price, x.weth) if price is None else price,
            penalty,
            reward,
            who,
            sender=who,
        )

    def seize_collateral(account=("victim", 0), slot_of="WBTC", amount=WBTC // 10, paid=0):
        """Clearinghouse.seize_collateral of all of an account's collateral in one slot, the caller as buyer."""
        return lambda x, who: x.ch.seize_collateral(
            x.account(*account), x.read(x.ch.collateral_slot, x.token(slot_of)), amount, paid, who, sender=who
        )

    def connect(bare=False, pool=None, configurator=None, engine=None, orders=None):
        """Clearinghouse.connect on the protocol's (connected) clearinghouse, or on the bare one
        (not connected) with its own pool, configurator, engine and orders; some replaced."""

        def call(x, who):
            if bare:
                target, defaults = x.bare_ch, (x.bare_pool, x.bare_cfg, x.bare_engine, x.bare_orders)
            else:
                target, defaults = x.ch, (x.pool, x.cfg, x.engine, x.orders)
            args = [
                default if f is None else f(x, who)
                for f, default in zip((pool, configurator, engine, orders), defaults, strict=True)
            ]
            return target.connect(*args, sender=who)

        return call

    def caller(x, who):
        return who

    def zero(x, who):
        return ZERO

    rows = [
        R(
            "__init__",
            "settlement decimals 19",
            "owner",
            lambda x, who: who.deploy(x.project.Clearinghouse, x.oracle, x.usdc, 19),
            "clearinghouse: bad decimals",
        ),
        # deposit
        R("deposit", "amount 0 (settlement)", "attacker", deposit(usdc, 0), "clearinghouse: zero amount"),
        R("deposit", "amount 0 (collateral)", "attacker", deposit(weth, 0), "clearinghouse: zero amount", token="WETH"),
        R("deposit", "settlement above allowance", "attacker", deposit(usdc, 501 * USDC), "erc20: insufficient allowance"),
        R(
            "deposit",
            "settlement above balance",
            "keeper",
            deposit(usdc, 100_001 * USDC),
            "erc20: transfer amount exceeds balance",
        ),
        R("deposit", "settlement 2**256 - 1", "keeper", deposit(usdc, MAX_UINT), NO_REASON),
        R(
            "deposit",
            "settlement 2**127 (beyond the packed int128 balance)",
            "keeper",
            deposit(usdc, 2**127),
            "clearinghouse: amount too large",
            setup=mint_to("USDC", "keeper", 2**127),
        ),
        R(
            "deposit",
            "collateral above allowance",
            "attacker",
            deposit(weth, WETH // 2 + 1),
            "erc20: insufficient allowance",
            token="WETH",
        ),
        R(
            "deposit",
            "collateral above balance",
            "keeper",
            deposit(weth, WETH + 1),
            "erc20: transfer amount exceeds balance",
            token="WETH",
        ),
        R(
            "deposit",
            "collateral while paused",
            "keeper",
            deposit(weth, WETH),
            "clearinghouse: paused",
            setup=paused,
            token="WETH",
        ),
        R(
            "deposit",
            "collateral disabled by governance",
            "keeper",
            deposit(weth, WETH),
            "clearinghouse: collateral disabled",
            setup=weth_disabled,
            token="WETH",
        ),
        R(
            "deposit",
            "collateral above its deposit cap",
            "keeper",
            deposit(weth, 1),
            "clearinghouse: deposit cap",
            setup=weth_cap_reached,
            token="WETH",
        ),
        R(
            "deposit",
            "collateral that charges a fee on transfer",
            "attacker",
            deposit(lambda x: x.fee_token, WETH),
            "clearinghouse: fee on transfer",
            token="FOT",
        ),
        R(
            "deposit",
            "collateral whose transferFrom returns False",
            "attacker",
            deposit(lambda x: x.false_token, WETH),
            "clearinghouse: transfer failed",
            setup=false_token_lies,
            token="RF",
        ),
        # withdraw
        R("withdraw", "amount 0", "trader", withdraw(usdc, 0), "clearinghouse: zero amount", views=trader0),
        R(
            "withdraw",
            "settlement above balance",
            "trader",
            withdraw(usdc, 2_001 * USDC),
            "clearinghouse: insufficient balance",
            views=trader0,
        ),
        R("withdraw", "settlement 2**256 - 1", "trader", withdraw(usdc, MAX_UINT), NO_REASON, views=trader0),
        R(
            "withdraw",
            "collateral above balance",
            "trader",
            withdraw(weth, WETH + 1, sub=1),
            "clearinghouse: insufficient balance",
            token="WETH",
            views=account_views("trader", 1),
        ),
        R(
            "withdraw",
            "settlement leaving the account below initial margin",
            "trader",
            withdraw(usdc, 1_000 * USDC),
            "clearinghouse: insufficient margin",
            views=trader0,
        ),
        R(
            "withdraw",
            "collateral leaving the account below initial margin",
            "trader",
            withdraw(weth, WETH),
            "clearinghouse: insufficient margin",
            token="WETH",
            views=trader0,
        ),
        R(
            "withdraw",
            "account with positions, oracle stale",
            "trader",
            withdraw(usdc, 1 * USDC),
            "oracle: stale answer",
            setup=stale,
            views=trader0,
        ),
        R(
            "withdraw",
            "collateral whose transfer returns False",
            "attacker",
            withdraw(lambda x: x.false_token, 100 * WETH),
            "clearinghouse: transfer failed",
            setup=false_token_deposited_then_lies,
            token="RF",
            views=account_views("attacker"),
        ),
        # an account with an order open keeps the margin its fill needs: no withdrawal at all
        R(
            "withdraw",
            "settlement, an order open (waiting for its round)",
            "trader",
            withdraw(usdc, 1 * USDC),
            "clearinghouse: order pending",
            setup=order_pending,
            views=trader0,
        ),
        R(
            "withdraw",
            "settlement, an order open whose round came (it can fill)",
            "trader",
            withdraw(usdc, 1 * USDC),
            "clearinghouse: order pending",
            setup=then(order_pending, settlement_delay_passed, its_round),
            views=trader0,
        ),
        R(
            "withdraw",
            "settlement, an order open past its expiry, not yet cancelled",
            "trader",
            withdraw(usdc, 1 * USDC),
            "clearinghouse: order pending",
            setup=then(order_pending, expired),
            views=trader0,
        ),
        R(
            "withdraw",
            "half the collateral of an account without positions or debt, an order open",
            "trader",
            withdraw(weth, WETH // 2, sub=1),
            "clearinghouse: order pending",
            setup=sub1_order_pending,
            token="WETH",
            views=account_views("trader", 1),
        ),
        R(
            "withdraw",
            "on a clearinghouse not yet connected (its orders is the zero address, an address without code)",
            "attacker",
            lambda x, who: x.bare_ch.withdraw(x.usdc, 1 * USDC, 0, sender=who),
            NO_REASON,
            views=bare_connection_views,
        ),
        # fill_order: only Orders fills, at the price of the round it read; its refusals of a
        # fill (paused, reduce only, price limit, open-interest cap, margin) cancel the order
        R(
            "fill_order",
            "not Orders: opening a position without collateral at a price of 1 wei",
            "attacker",
            fill_order(),
            "clearinghouse: not orders",
        ),
        R(
            "fill_order",
            "not Orders: closing one's own position at a price of one's choosing",
            "trader",
            fill_order(role="trader", size=-25 * WAD, price=lambda x: 10**30),
            "clearinghouse: not orders",
            views=trader0,
        ),
        R(
            "fill_order",
            "not Orders: size 0",
            "attacker",
            fill_order(size=0, price=lambda x: 2_000 * WAD),
            "clearinghouse: not orders",
        ),
        R("fill_order", "not Orders (the owner)", "owner", fill_order(role="trader"), "clearinghouse: not orders", views=trader0),
        R(
            "fill_order",
            "not Orders, on a clearinghouse not yet connected (its orders is the zero address)",
            "owner",
            lambda x, who: x.bare_ch.fill_order(x.account("attacker"), ETH, WAD, 0, WAD, sender=who),
            "clearinghouse: not orders",
        ),
        # fund_insurance
        R(
            "fund_insurance",
            "amount 0",
            "attacker",
            lambda x, who: x.ch.fund_insurance(0, sender=who),
            "clearinghouse: zero amount",
        ),
        R(
            "fund_insurance",
            "above allowance",
            "attacker",
            lambda x, who: x.ch.fund_insurance(501 * USDC, sender=who),
            "erc20: insufficient allowance",
        ),
        R(
            "fund_insurance",
            "above balance",
            "keeper",
            lambda x, who: x.ch.fund_insurance(100_001 * USDC, sender=who),
            "erc20: transfer amount exceeds balance",
        ),
        R(
            "fund_insurance",
            "2**128 (beyond the packed fund)",
            "keeper",
            lambda x, who: x.ch.fund_insurance(2**128, sender=who),
            "clearinghouse: amount too large",
            setup=mint_to("USDC", "keeper", 2**128),
        ),
        # pool custody
        R(
            "pool_deposit",
            "not the pool",
            "attacker",
            lambda x, who: x.ch.pool_deposit(100 * USDC, sender=who),
            "clearinghouse: not pool",
        ),
        R(
            "pool_deposit",
            "not the pool (the owner)",
            "owner",
            lambda x, who: x.ch.pool_deposit(100 * USDC, sender=who),
            "clearinghouse: not pool",
        ),
        R(
            "pool_withdraw",
            "not the pool",
            "attacker",
            lambda x, who: x.ch.pool_withdraw(100 * USDC, who, sender=who),
            "clearinghouse: not pool",
        ),
        R(
            "pool_withdraw",
            "not the pool (the owner)",
            "owner",
            lambda x, who: x.ch.pool_withdraw(100 * USDC, who, sender=who),
            "clearinghouse: not pool",
        ),
        # views that price
        R(
            "health",
            "account with positions, oracle stale",
            None,
            lambda x, who: risk.health_of(x.ch, x.account("trader")),
            "oracle: stale answer",
            setup=stale,
        ),
        R(
            "margin",
            "account with positions, oracle circuit breaker tripped",
            None,
            lambda x, who: x.ch.margin(x.account("trader")),
            "oracle: circuit breaker",
            setup=eth_breaker,
        ),
        R(
            "collateral_value",
            "WETH collateral, WETH answer 0",
            None,
            lambda x, who: x.ch.collateral_value(x.account("trader", 1)),
            "oracle: non-positive answer",
            setup=publish_raw(0),
        ),
        # liquidation custody: only the LiquidationEngine moves balances for a liquidation
        R(
            "liquidation_snapshot",
            "liquidatable account, oracle stale",
            None,
            lambda x, who: x.ch.liquidation_snapshot(x.account("victim"), ETH),
            "oracle: stale answer",
            setup=then(liquidatable, stale),
        ),
        R(
            "liquidation_snapshot",
            "liquidatable account, oracle circuit breaker tripped",
            None,
            lambda x, who: x.ch.liquidation_snapshot(x.account("victim"), ETH),
            "oracle: circuit breaker",
            setup=then(liquidatable, publish("WETH", 2_300)),
        ),
        R(
            "liquidation_close",
            "not the engine: closing a liquidatable account's whole position, all of its penalty as the caller's reward",
            "attacker",
            liquidation_close(size=-50 * WAD, penalty=1_000 * USDC, reward=1_000 * USDC),
            "clearinghouse: not liquidation engine",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidation_close",
            "not the engine: a healthy account's position closed at 1 wei, the insurance fund as reward",
            "attacker",
            liquidation_close(account="trader", size=-25 * WAD, price=1, reward=20_000 * USDC),
            "clearinghouse: not liquidation engine",
            views=trader0,
        ),
        R(
            "liquidation_close",
            "not the engine (the owner)",
            "owner",
            liquidation_close(size=-WAD),
            "clearinghouse: not liquidation engine",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidation_close",
            "not the engine (the account's own owner)",
            "victim",
            liquidation_close(size=-50 * WAD, price=1_800 * WAD),
            "clearinghouse: not liquidation engine",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "seize_collateral",
            "not the engine: an underwater account's WBTC for nothing",
            "attacker",
            seize_collateral(paid=0),
            "clearinghouse: not liquidation engine",
            setup=underwater,
            token="WBTC",
            views=victim,
        ),
        R(
            "seize_collateral",
            "not the engine: a healthy account's WETH for 1 unit",
            "keeper",
            seize_collateral(account=("trader", 1), slot_of="WETH", amount=WETH, paid=1),
            "clearinghouse: not liquidation engine",
            token="WETH",
            views=account_views("trader", 1),
        ),
        R(
            "seize_collateral",
            "not the engine (the owner)",
            "owner",
            seize_collateral(paid=1_000 * USDC),
            "clearinghouse: not liquidation engine",
            setup=underwater,
            token="WBTC",
            views=victim,
        ),
        # governance
        R("connect", "not the deployer", "attacker", connect(), "clearinghouse: not deployer", views=connection_views),
        R(
            "connect",
            "not the deployer (the guardian)",
            "guardian",
            connect(),
            "clearinghouse: not deployer",
            views=connection_views,
        ),
        R(
            "connect",
            "not the deployer, before the deployer connects (a front-run wiring the caller in)",
            "attacker",
            connect(bare=True, pool=caller, configurator=caller, engine=caller, orders=caller),
            "clearinghouse: not deployer",
            views=bare_connection_views,
        ),
        R(
            "connect",
            "already connected: the same contracts again",
            "owner",
            connect(),
            "clearinghouse: already connected",
            views=connection_views,
        ),
        R(
            "connect",
            "already connected: the caller as pool, configurator, engine and orders",
            "owner",
            connect(pool=caller, configurator=caller, engine=caller, orders=caller),
            "clearinghouse: already connected",
            views=connection_views,
        ),
        R(
            "connect",
            "already connected: zero addresses",
            "owner",
            connect(pool=zero, configurator=zero, engine=zero, orders=zero),
            "clearinghouse: already connected",
            views=connection_views,
        ),
        R(
            "connect",
            "pool zero address (not yet connected)",
            "owner",
            connect(bare=True, pool=zero),
            "clearinghouse: zero address",
            views=bare_connection_views,
        ),
        R(
            "connect",
            "configurator zero address (not yet connected)",
            "owner",
            connect(bare=True, configurator=zero),
            "clearinghouse: zero address",
            views=bare_connection_views,
        ),
        R(
            "connect",
            "liquidation_engine zero address (not yet connected)",
            "owner",
            connect(bare=True, engine=zero),
            "clearinghouse: zero address",
            views=bare_connection_views,
        ),
        R(
            "connect",
            "orders zero address (not yet connected)",
            "owner",
            connect(bare=True, orders=zero),
            "clearinghouse: zero address",
            views=bare_connection_views,
        ),
        R(
            "connect",
            "every address zero (not yet connected)",
            "owner",
            connect(bare=True, pool=zero, configurator=zero, engine=zero, orders=zero),
            "clearinghouse: zero address",
            views=bare_connection_views,
        ),
        R(
            "apply_emergency",
            "not the configurator (the guardian)",
            "guardian",
            lambda x, who: x.ch.apply_emergency(0, 1, sender=who),
            "clearinghouse: not configurator",
            views=governance_views,
        ),
    ]
    apply_calls = {
        "apply_collateral": lambda x, who: x.ch.apply_collateral(x.weth, WETH, WAD // 2, 1, WAD // 10, True, sender=who),
        "apply_market": lambda x, who: x.ch.apply_market(ETH, x.market_params(ETH), 0, sender=who),
        # no interest, the least initial margin on a debt, a ceiling of 1e-18 of the pool
        "apply_debt_terms": lambda x, who: x.ch.apply_debt_terms(0, 0, 1, 1, sender=who),
    }
    for function, call in apply_calls.items():
        rows += [
            R(function, "not the configurator", "attacker", call, "clearinghouse: not configurator", views=configurator_views),
            R(
                function,
                "not the configurator (the owner)",
                "owner",
                call,
                "clearinghouse: not configurator",
                views=configurator_views,
            ),
        ]
    for label, market in UNKNOWN_MARKETS:
        rows += [
            R(
                "liquidation_snapshot",
                f"unknown market: {label}",
                None,
                lambda x, who, m=market: x.ch.liquidation_snapshot(x.account("victim"), m(x)),
                "clearinghouse: unknown market",
                setup=liquidatable,
            ),
        ]
    for label, token in UNLISTED_TOKENS:
        rows += [
            R(
                "deposit",
                f"unknown token: {label}",
                "attacker",
                lambda x, who, t=token: x.ch.deposit(t(x), 1, 0, sender=who),
                "clearinghouse: unknown token",
            ),
            R(
                "withdraw",
                f"unknown token: {label}",
                "trader",
                lambda x, who, t=token: x.ch.withdraw(t(x), 1, 0, sender=who),
                "clearinghouse: unknown token",
                views=trader0,
            ),
        ]
    return rows


# ---- Orders


def orders_rows() -> list[Row]:
    def R(function, bad, caller, call, message, **kw):
        return Row("Orders", function, bad, caller, call, message, views=kw.pop("views", orders_views()), **kw)

    def commit(size=WAD, limit=0, market=ETH, sub=0):
        return lambda x, who: x.orders.commit_order(market, size, limit, sub, sender=who)

    def execute(role="trader", market=ETH):
        return lambda x, who: x.orders.execute_order(x.account(role), market, sender=who)

    def cancel(role="trader", market=ETH):
        return lambda x, who: x.orders.cancel_order(x.account(role), market, sender=who)

    def apply(orders):
        # no delay, the shortest expiry, no fee: orders filled in their own block, for free
        return lambda x, who: orders(x).apply_order_parameters(0, 60, 0, sender=who)

    def mini_commit(x, who):
        return x.mini_orders.commit_order(ETH, WAD, 0, 0, sender=who)

    attacker = orders_views("attacker")
    mini = orders_views("attacker", orders=lambda x: x.mini_orders)
    round_came = then(order_pending, settlement_delay_passed)

    rows = [
        R(
            "__init__",
            "clearinghouse and lens without code (an EOA)",
            "owner",
            lambda x, who: who.deploy(x.project.Orders, x.attacker, x.attacker),
            NO_REASON,
        ),
        R(
            "__init__",
            "a lens that reads another clearinghouse",
            "owner",
            lambda x, who: who.deploy(x.project.Orders, x.mini_ch, x.lens),
            "orders: lens of another clearinghouse",
        ),
        # commit_order
        R("commit_order", "size 0", "trader", commit(0), "orders: zero size"),
        R("commit_order", "size 2**127 (beyond the packed int128)", "trader", commit(2**127), "orders: size too large"),
        R("commit_order", "size -2**127 (|size| beyond 2**127 - 1)", "trader", commit(-(2**127)), "orders: size too large"),
        R("commit_order", "size 2**255 - 1", "trader", commit(2**255 - 1), "orders: size too large"),
        R("commit_order", "size -2**255 (its absolute value overflows)", "trader", commit(-(2**255)), NO_REASON),
        R(
            "commit_order",
            "limit_price 2**128 (beyond the packed 128 bits)",
            "trader",
            commit(limit=2**128),
            "orders: limit too large",
        ),
        R("commit_order", "limit_price 2**256 - 1", "trader", commit(limit=MAX_UINT), "orders: limit too large"),
        R(
            "commit_order",
            "an order already pending in that market, its round not yet come",
            "trader",
            commit(WAD),
            "orders: order pending",
            setup=order_pending,
        ),
        R(
            "commit_order",
            "replacing a pending order once the settlement delay passed (a free option on the next round)",
            "trader",
            commit(-WAD, limit=1),
            "orders: order pending",
            setup=round_came,
        ),
        R(
            "commit_order",
            "replacing a pending order one second before it expires",
            "trader",
            commit(WAD),
            "orders: order pending",
            setup=then(order_pending, just_before_expiry),
        ),
        R(
            "commit_order",
            "replacing a pending order whose round came and is still the newest (it can fill)",
            "trader",
            commit(WAD),
            "orders: order pending",
            setup=then(round_came, its_round),
        ),
        R(
            "commit_order",
            "replacing a pending order past its expiry, its round came just before and can still fill",
            "trader",
            commit(WAD),
            "orders: order pending",
            setup=then(order_pending, its_round_late_then_expired),
        ),
        R(
            "commit_order",
            "execution fee not approved to Orders (a reduction: no margin asked)",
            "trader",
            commit(-WAD),
            "erc20: insufficient allowance",
            setup=trader_not_approved_to_orders,
        ),
        R(
            "commit_order",
            "execution fee approved, the wallet empty",
            "trader",
            commit(-WAD),
            "erc20: transfer amount exceeds balance",
            setup=trader_wallet_emptied,
        ),
        R(
            "commit_order",
            "fee token's transferFrom returns False",
            "attacker",
            mini_commit,
            "orders: transfer failed",
            setup=then(mini_eth_listed, mini_settlement_lies),
            token="QS",
            views=mini,
        ),
        R(
            "commit_order",
            "fee token charges a fee on transfer",
            "attacker",
            mini_commit,
            "orders: fee on transfer",
            setup=then(mini_eth_listed, mini_settlement_charges_a_fee),
            token="QS",
            views=mini,
        ),
        R(
            "commit_order",
            "adds risk to an account in debt while the debts are above the ceiling",
            "trader",
            commit(WAD, sub=1),
            "orders: debt ceiling",
            setup=in_debt_over_the_ceiling,
            views=orders_views("trader", 1),
        ),
        R(
            "commit_order",
            "adds risk past the open-interest reserve (ETH at a 10% factor: 600 ETH long would need $12M of $10M)",
            "trader",
            commit(200 * WAD),
            "orders: open interest reserve",
            setup=then(reserve_nearly_full, trader_adds_margin),
            views=held_views,
        ),
        R("commit_order", "adds risk while paused", "trader", commit(WAD), "orders: paused", setup=paused),
        R(
            "commit_order",
            "adds risk in a reduce-only market",
            "trader",
            commit(WAD),
            "orders: reduce only",
            setup=eth_reduce_only,
        ),
        R(
            "commit_order",
            "adds risk past the market's oi_cap once placed orders are counted (the cap full with another's order)",
            "trader",
            commit(WAD),
            "orders: open interest cap",
            setup=then(cap_held_by_a_placed_order, trader_adds_margin),
            views=held_views,
        ),
        R(
            "commit_order",
            "adds risk past the account's initial margin (25 ETH long near it: 100 ETH more)",
            "trader",
            commit(100 * WAD),
            "orders: insufficient margin",
            views=held_views,
        ),
        R(
            "commit_order",
            "a side past 2**96 - 1 base units (the core's bound on a side), the reserve off: no margin backs it",
            "trader",
            commit(2**96),
            "orders: insufficient margin",
            setup=reserve_aside,
            views=held_views,
        ),
        R(
            "commit_order",
            "a flip to a smaller short below initial margin (ETH -10%)",
            "trader",
            commit(-40 * WAD),
            "orders: insufficient margin",
            setup=liquidatable,
            views=held_views,
        ),
        R(
            "commit_order",
            "adds risk while a market with open interest has a stale price (the pool cannot be valued)",
            "trader",
            commit(WAD),
            "oracle: stale answer",
            setup=stale,
            views=held_views,
        ),
        # execute_order
        R("execute_order", "no order", "keeper", execute("attacker"), "orders: no order", views=attacker),
        R(
            "execute_order",
            "no order in that market (one pending in another)",
            "keeper",
            execute(market=BTC),
            "orders: no order",
            setup=order_pending,
        ),
        R(
            "execute_order",
            "settlement delay not yet passed",
            "keeper",
            execute(),
            "oracle: no round yet",
            setup=order_pending,
        ),
        R(
            "execute_order",
            "settlement delay passed, no round since",
            "keeper",
            execute(),
            "oracle: no round yet",
            setup=round_came,
        ),
        R(
            "execute_order",
            "settlement delay passed, no round since (by the order's own owner)",
            "trader",
            execute(),
            "oracle: no round yet",
            setup=round_came,
        ),
        R(
            "execute_order",
            "its round came: +30%, oracle circuit breaker tripped",
            "keeper",
            execute(),
            "oracle: circuit breaker",
            setup=then(round_came, eth_breaker),
        ),
        R(
            "execute_order",
            "its round came: +30%, not yet synced",
            "keeper",
            execute(),
            "oracle: circuit breaker",
            setup=then(round_came, publish("WETH", 2_600, sync=False)),
        ),
        R(
            "execute_order",
            "its round came, now older than the heartbeat",
            "keeper",
            execute(),
            "oracle: stale answer",
            setup=then(round_came, publish("WETH", 2_000), stale),
        ),
        R(
            "execute_order",
            "its round came with answer 0",
            "keeper",
            execute(),
            "oracle: non-positive answer",
            setup=then(round_came, publish_raw(0)),
        ),
        R(
            "execute_order",
            "its round came with answer $0.01 (at min_price)",
            "keeper",
            execute(),
            "oracle: answer out of bounds",
            setup=then(round_came, publish_raw(10**6)),
        ),
        # cancel_order
        R("cancel_order", "no order", "attacker", cancel("attacker"), "orders: no order", views=attacker),
        R(
            "cancel_order",
            "someone else's order, its round not yet come",
            "attacker",
            cancel(),
            "orders: not expired",
            setup=order_pending,
        ),
        R(
            "cancel_order",
            "one's own order once the settlement delay passed (a free option on the next round)",
            "trader",
            cancel(),
            "orders: not expired",
            setup=round_came,
        ),
        R(
            "cancel_order",
            "someone else's order, one second before it expires",
            "keeper",
            cancel(),
            "orders: not expired",
            setup=then(order_pending, just_before_expiry),
        ),
        R(
            "cancel_order",
            "someone else's order whose round came and is still the newest (it can fill)",
            "keeper",
            cancel(),
            "orders: not expired",
            setup=then(round_came, its_round),
        ),
        R(
            "cancel_order",
            "one's own order whose round came and is still the newest (seeing the price, backing out)",
            "trader",
            cancel(),
            "orders: not expired",
            setup=then(round_came, its_round),
        ),
        R(
            "cancel_order",
            "someone else's order past its expiry, its round came just before and can still fill",
            "keeper",
            cancel(),
            "orders: not expired",
            setup=then(order_pending, its_round_late_then_expired),
        ),
        R(
            "cancel_order",
            "one's own order past its expiry, its round came just before and can still fill",
            "trader",
            cancel(),
            "orders: not expired",
            setup=then(order_pending, its_round_late_then_expired),
        ),
        # apply_order_bond
        R(
            "apply_order_bond",
            "not the configurator (the owner)",
            "owner",
            lambda x, who: x.orders.apply_order_bond(0, sender=who),
            "orders: not configurator",
        ),
        R(
            "apply_order_bond",
            "not the configurator",
            "attacker",
            lambda x, who: x.orders.apply_order_bond(10**18, sender=who),
            "orders: not configurator",
        ),
        # apply_order_parameters
        R("apply_order_parameters", "not the configurator", "attacker", apply(lambda x: x.orders), "orders: not configurator"),
        R(
            "apply_order_parameters",
            "not the configurator (the owner)",
            "owner",
            apply(lambda x: x.orders),
            "orders: not configurator",
        ),
        R(
            "apply_order_parameters",
            "not the configurator (the guardian)",
            "guardian",
            apply(lambda x: x.orders),
            "orders: not configurator",
        ),
        R(
            "apply_order_parameters",
            "clearinghouse not yet connected (its configurator is the zero address)",
            "attacker",
            apply(lambda x: x.bare_orders),
            "orders: not configurator",
            views=order_parameter_views(lambda x: x.bare_orders),
        ),
    ]
    for label, market in UNKNOWN_MARKETS:
        rows += [
            R(
                "commit_order",
                f"unknown market: {label}",
                "trader",
                lambda x, who, m=market: x.orders.commit_order(m(x), WAD, 0, 0, sender=who),
                "orders: unknown market",
            ),
            R(
                "execute_order",
                f"unknown market: {label}",
                "keeper",
                lambda x, who, m=market: x.orders.execute_order(x.account("trader"), m(x), sender=who),
                "orders: no order",
            ),
        ]
    return rows


# ---- LiquidationEngine


def engine_rows() -> list[Row]:
    def R(function, bad, caller, call, message, **kw):
        return Row("LiquidationEngine", function, bad, caller, call, message, views=kw.pop("views", engine_views), **kw)

    trader0 = account_views("trader")
    victim = account_views("victim")

    def bare_engine_views(x: Ctx) -> tuple:
        e = x.bare_engine
        return (
            x.read(e.liquidation_buffer),
            x.read(e.full_liquidation_health),
            x.read(e.dust_notional),
            x.read(e.underwater_tip_rate),
            x.read(e.debt_liquidation_ltv),
        )

    rows = [
        R(
            "__init__",
            "clearinghouse without code (an EOA)",
            "owner",
            lambda x, who: who.deploy(x.project.LiquidationEngine, x.attacker),
            NO_REASON,
        ),
        # liquidate
        R(
            "liquidate",
            "max_size 0",
            "keeper",
            lambda x, who: x.engine.liquidate(x.account("victim"), ETH, 0, sender=who),
            "liquidation: zero size",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidate",
            "healthy account",
            "keeper",
            lambda x, who: x.engine.liquidate(x.account("trader"), ETH, MAX_UINT, sender=who),
            "liquidation: account healthy",
            views=trader0,
        ),
        R(
            "liquidate",
            "account without positions",
            "keeper",
            lambda x, who: x.engine.liquidate(x.account("attacker"), ETH, MAX_UINT, sender=who),
            "liquidation: account healthy",
        ),
        R(
            "liquidate",
            "liquidatable account, no position in that market",
            "keeper",
            lambda x, who: x.engine.liquidate(x.account("victim"), BTC, MAX_UINT, sender=who),
            "liquidation: no position",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidate",
            "liquidatable account, oracle circuit breaker tripped",
            "keeper",
            lambda x, who: x.engine.liquidate(x.account("victim"), ETH, MAX_UINT, sender=who),
            "oracle: circuit breaker",
            setup=then(liquidatable, publish("WETH", 2_300)),
            views=victim,
        ),
        R(
            "liquidate",
            "max_size 1 wei (the realised PnL's token rounding outweighs the maintenance freed)",
            "keeper",
            lambda x, who: x.engine.liquidate(x.account("victim"), ETH, 1, sender=who),
            "liquidation: health worsened",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidate",
            "liquidatable account, oracle stale",
            "keeper",
            lambda x, who: x.engine.liquidate(x.account("victim"), ETH, MAX_UINT, sender=who),
            "oracle: stale answer",
            setup=then(liquidatable, stale),
            views=victim,
        ),
        # liquidate_many
        R(
            "liquidate_many",
            "2 accounts, 1 market (a liquidatable pair first)",
            "keeper",
            lambda x, who: x.engine.liquidate_many([x.account("victim"), x.account("trader")], [ETH], sender=who),
            "liquidation: length mismatch",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidate_many",
            "1 account, 2 markets",
            "keeper",
            lambda x, who: x.engine.liquidate_many([x.account("victim")], [ETH, BTC], sender=who),
            "liquidation: length mismatch",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidate_many",
            "1 account, no market",
            "keeper",
            lambda x, who: x.engine.liquidate_many([x.account("victim")], [], sender=who),
            "liquidation: length mismatch",
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidate_many",
            "65 pairs (MAX_BATCH is 64)",
            "keeper",
            lambda x, who: x.engine.liquidate_many([x.account("victim")] * 65, [ETH] * 65, sender=who),
            NO_REASON,
            setup=liquidatable,
            views=victim,
        ),
        R(
            "liquidate_many",
            "liquidatable pair, oracle stale",
            "keeper",
            lambda x, who: x.engine.liquidate_many([x.account("victim")], [ETH], sender=who),
            "oracle: stale answer",
            setup=then(liquidatable, stale),
            views=victim,
        ),
        R(
            "liquidate_many",
            "liquidatable pair, oracle circuit breaker tripped",
            "keeper",
            lambda x, who: x.engine.liquidate_many([x.account("victim")], [ETH], sender=who),
            "oracle: circuit breaker",
            setup=then(liquidatable, publish("WETH", 2_300)),
            views=victim,
        ),
        # realise_loss: a loss only, at a fresh oracle price, in a listed market
        R(
            "realise_loss",
            "position in profit (ETH +5%)",
            "attacker",
            lambda x, who: x.engine.realise_loss(x.account("victim"), ETH, sender=who),
            "liquidation: no loss to realise",
            setup=traders_in_profit,
            views=victim,
        ),
        R(
            "realise_loss",
            "account without a position in the market",
            "attacker",
            lambda x, who: x.engine.realise_loss(x.account("trader", 1), ETH, sender=who),
            "liquidation: no loss to realise",
            views=account_views("trader", 1),
        ),
        R(
            "realise_loss",
            "market 3 (not listed)",
            "attacker",
            lambda x, who: x.engine.realise_loss(x.account("victim"), 3, sender=who),
            "clearinghouse: unknown market",
            views=victim,
        ),
        R(
            "realise_loss",
            "a loss that would put the debt over the loan limit (ETH -15%, 0.1 WBTC behind it)",
            "attacker",
            lambda x, who: x.engine.realise_loss(x.account("victim"), ETH, sender=who),
            "liquidation: realisation over the loan limit",
            setup=publish("WETH", 1_700),
            views=victim,
        ),
        R(
            "realise_loss",
            "position at a loss, oracle stale",
            "attacker",
            lambda x, who: x.engine.realise_loss(x.account("victim"), ETH, sender=who),
            "oracle: stale answer",
            setup=then(liquidatable, stale),
            views=victim,
        ),
        # liquidate_collateral
        R(
            "liquidate_collateral",
            "max_amount 0",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("victim"), x.wbtc, 0, sender=who),
            "liquidation: zero amount",
            setup=underwater,
            views=victim,
        ),
        R(
            "liquidate_collateral",
            "token is the settlement token",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("victim"), x.usdc, MAX_UINT, sender=who),
            "clearinghouse: unknown token",
            setup=underwater,
            views=victim,
        ),
        R(
            "liquidate_collateral",
            "account still has positions",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("trader"), x.weth, MAX_UINT, sender=who),
            "liquidation: close positions first",
            views=trader0,
        ),
        R(
            "liquidate_collateral",
            "account with collateral and no debt",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("trader", 1), x.weth, MAX_UINT, sender=who),
            "liquidation: account healthy",
            views=account_views("trader", 1),
        ),
        # a written-off token repays nothing: taken only from an account with no positions and
        # negative equity, whatever its debt (tests/unit/clearinghouse/test_debt.py: over the limit too)
        R(
            "liquidate_collateral",
            "written-off token (WETH), account with positions",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("trader"), x.weth, MAX_UINT, sender=who),
            "liquidation: close positions first",
            setup=weth_written_off,
            views=trader0,
        ),
        R(
            "liquidate_collateral",
            "written-off token (WETH), account without positions or debt (equity 0)",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("trader", 1), x.weth, MAX_UINT, sender=who),
            "liquidation: account healthy",
            setup=weth_written_off,
            views=account_views("trader", 1),
        ),
        R(
            "liquidate_collateral",
            "empty account",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("attacker"), x.weth, MAX_UINT, sender=who),
            "liquidation: account healthy",
        ),
        R(
            "liquidate_collateral",
            "underwater account, token it does not hold",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("victim"), x.weth, MAX_UINT, sender=who),
            "liquidation: no collateral",
            setup=underwater,
            views=victim,
        ),
        R(
            "liquidate_collateral",
            "underwater account, buyer's allowance too small",
            "attacker",
            lambda x, who: x.engine.liquidate_collateral(x.account("victim"), x.wbtc, MAX_UINT, sender=who),
            "erc20: insufficient allowance",
            setup=underwater,
            views=victim,
        ),
        R(
            "liquidate_collateral",
            "underwater account, oracle stale",
            "keeper",
            lambda x, who: x.engine.liquidate_collateral(x.account("victim"), x.wbtc, MAX_UINT, sender=who),
            "oracle: stale answer",
            setup=then(underwater, stale),
            views=victim,
        ),
    ]
    apply_calls = {
        # buffer 0, deep-liquidation health 1 (every liquidation closes everything), no dust rule
        "apply_liquidation_parameters": lambda e: lambda x, who: e(x).apply_liquidation_parameters(0, WAD, 0, sender=who),
        # a tip of 100% of the closed notional, far above the Configurator's 1% bound
        "apply_underwater_tip": lambda e: lambda x, who: e(x).apply_underwater_tip(WAD, sender=who),
        # an LTV of 0: every account's collateral for sale the moment it owes anything
        "apply_debt_liquidation_ltv": lambda e: lambda x, who: e(x).apply_debt_liquidation_ltv(0, sender=who),
    }
    for function, call in apply_calls.items():
        rows += [
            R(function, "not the configurator", "attacker", call(lambda x: x.engine), "liquidation: not configurator"),
            R(function, "not the configurator (the owner)", "owner", call(lambda x: x.engine), "liquidation: not configurator"),
            R(
                function,
                "not the configurator (the guardian)",
                "guardian",
                call(lambda x: x.engine),
                "liquidation: not configurator",
            ),
            R(
                function,
                "clearinghouse not yet connected (its configurator is the zero address)",
                "attacker",
                call(lambda x: x.bare_engine),
                "liquidation: not configurator",
                views=bare_engine_views,
            ),
        ]
    for label, market in UNKNOWN_MARKETS:
        rows += [
            R(
                "liquidate",
                f"unknown market: {label}",
                "keeper",
                lambda x, who, m=market: x.engine.liquidate(x.account("victim"), m(x), MAX_UINT, sender=who),
                "clearinghouse: unknown market",
                setup=liquidatable,
                views=victim,
            ),
            R(
                "liquidate_many",
                f"a liquidatable pair, then one in an unknown market: {label} (the first close is undone too)",
                "keeper",
                lambda x, who, m=market: x.engine.liquidate_many(
                    [x.account("victim"), x.account("trader")], [ETH, m(x)], sender=who
                ),
                "clearinghouse: unknown market",
                setup=liquidatable,
                views=victim,
            ),
        ]
    for label, token in UNLISTED_TOKENS:
        rows += [
            R(
                "liquidate_collateral",
                f"unknown token: {label}",
                "keeper",
                lambda x, who, t=token: x.engine.liquidate_collateral(x.account("victim"), t(x), MAX_UINT, sender=who),
                "clearinghouse: unknown token",
                setup=underwater,
                views=victim,
            ),
        ]
    return rows


# ---- Configurator

COLLATERAL_OK = {"weight": WAD // 2, "cap": 10**30, "discount": WAD // 10}


def list_collateral(token=None, **changes):
    args = {**COLLATERAL_OK, **changes}
    return lambda x, who: x.cfg.list_collateral(
        token(x) if token else x.new_token, args["weight"], args["cap"], args["discount"], sender=who
    )


def set_collateral(token=None, **changes):
    args = {**COLLATERAL_OK, **changes}
    return lambda x, who: x.cfg.set_collateral(
        token(x) if token else x.weth, args["weight"], args["cap"], args["discount"], True, sender=who
    )


# Every market bound, each side that exists: (what is wrong, field changes to ETH-PERP's, message)
MARKET_BOUNDS = (
    ("base_mmr 0.1% - 1 wei", {"base_mmr": 10**15 - 1}, "configurator: bad maintenance rate"),
    ("base_mmr 50% + 1 wei", {"base_mmr": 5 * 10**17 + 1}, "configurator: bad maintenance rate"),
    ("tier_size 0", {"tier_size": 0}, "configurator: bad tier size"),
    ("tier_size 2**80", {"tier_size": 2**80}, "configurator: bad tier size"),
    ("tier_mmr 10% + 1 wei", {"tier_mmr": 10**17 + 1}, "configurator: bad tier rate"),
    ("vol_k 10 + 1 wei", {"vol_k": 10 * WAD + 1}, "configurator: bad vol k"),
    ("liquidation_horizon 59 s", {"liquidation_horizon": 59}, "configurator: bad horizon"),
    ("liquidation_horizon a week + 1 s", {"liquidation_horizon": 7 * 86_400 + 1}, "configurator: bad horizon"),
    ("imr_multiplier 1.0 (initial == maintenance)", {"imr_multiplier": WAD}, "configurator: bad initial multiplier"),
    ("imr_multiplier 10 + 1 wei", {"imr_multiplier": 10 * WAD + 1}, "configurator: bad initial multiplier"),
    (
        "base_mmr 50% x imr_multiplier 2 + 1 wei (initial above 100%)",
        {"base_mmr": WAD // 2, "imr_multiplier": 2 * WAD + 1},
        "configurator: initial above 100%",
    ),
    ("fee 1% + 1 wei", {"fee": 10**16 + 1}, "configurator: bad fee"),
    ("penalty 10% + 1 wei", {"penalty": 10**17 + 1}, "configurator: bad penalty"),
    ("penalty 3.3% == (1 + buffer) x base_mmr", {"penalty": 33 * 10**15}, "configurator: liquidation spiral"),
    ("keeper_share 90% + 1 wei", {"keeper_share": 9 * 10**17 + 1}, "configurator: bad keeper share"),
    ("skew_scale 0", {"skew_scale": 0}, "configurator: bad skew scale"),
    ("skew_scale 2**88", {"skew_scale": 2**88}, "configurator: bad skew scale"),
    ("oi_cap skew_scale + 1 wei", {"oi_cap": 10**6 * WAD + 1}, "configurator: cap above skew scale"),
    ("oi_cap 1 wei above the premium bound (7,500)", {"oi_cap": 7_500 * WAD + 1}, "configurator: cap above premium bound"),
    (
        "fee 1% + premium at the cap 0.3% >= base_mmr 1.2% (a reduction could cost more than it frees)",
        {"base_mmr": 12 * 10**15, "penalty": 10**16, "oi_cap": 3_000 * WAD, "fee": 10**16},
        "configurator: fee above maintenance",
    ),
    ("max_funding_rate 10%/day + 1 wei", {"max_funding_rate": 10**17 + 1}, "configurator: bad funding rate"),
    (
        "base_mmr 0.2% == the underwater tip rate",
        {"base_mmr": 2 * 10**15, "penalty": 2 * 10**15, "oi_cap": 500 * WAD},
        "configurator: tip above maintenance",
    ),
)


def configurator_rows() -> list[Row]:
    def R(function, bad, caller, call, message, **kw):
        return Row("Configurator", function, bad, caller, call, message, views=kw.pop("views", configurator_views), **kw)

    def unconnected_views(x: Ctx) -> tuple:
        ch, e = x.bare_ch, x.bare_engine
        return (
            x.read(ch.market_count),
            x.read(ch.collateral_count),
            x.read(ch.collateral_slot, x.new_token),
            x.read(e.liquidation_buffer),
            x.read(e.underwater_tip_rate),
        )

    def liquidation(buffer=10**17, full=WAD // 2, dust=100 * WAD):
        return lambda x, who: x.cfg.set_liquidation_parameters(buffer, full, dust, sender=who)

    def order_parameters(delay=60, expiry=86_400, fee=2 * USDC):
        return lambda x, who: x.cfg.set_order_parameters(delay, expiry, fee, sender=who)

    def debt_parameters(rate_base=2 * 10**16, rate_slope=3 * 10**17, debt_imr=25 * 10**16, ceiling=WAD // 2, ltv=9 * 10**17):
        return lambda x, who: x.cfg.set_debt_parameters(rate_base, rate_slope, debt_imr, ceiling, ltv, sender=who)

    def reserve_factor(market=ETH, factor=WAD // 2):
        return lambda x, who: x.cfg.set_reserve_factor(market, factor, sender=who)

    order_views = order_parameter_views(lambda x: x.orders)

    rows = [
        R(
            "__init__",
            "clearinghouse without code (an EOA)",
            "owner",
            lambda x, who: who.deploy(x.project.Configurator, x.attacker),
            NO_REASON,
        ),
        R("list_collateral", "not the owner", "attacker", list_collateral(), NOT_OWNER),
        R("list_collateral", "not the owner (the guardian)", "guardian", list_collateral(), NOT_OWNER),
        R("list_collateral", "token zero address", "owner", list_collateral(lambda x: ZERO), "configurator: bad token"),
        R(
            "list_collateral",
            "token is the settlement token",
            "owner",
            list_collateral(lambda x: x.usdc),
            "configurator: bad token",
        ),
        R("list_collateral", "token already listed", "owner", list_collateral(lambda x: x.weth), "configurator: already listed"),
        R(
            "list_collateral",
            "every collateral slot in use",
            "owner",
            list_collateral(lambda x: x.d19_token),
            "configurator: too many collaterals",
            setup=seven_collaterals,
        ),
        R(
            "list_collateral",
            "token without a feed",
            "owner",
            list_collateral(lambda x: x.attacker.address),
            "oracle: unknown asset",
        ),
        R("list_collateral", "token 0xfff...f", "owner", list_collateral(lambda x: MAX_ADDRESS), "oracle: unknown asset"),
        R("list_collateral", "token's oracle stale", "owner", list_collateral(), "oracle: stale answer", setup=stale),
        R(
            "list_collateral",
            "token with 19 decimals",
            "owner",
            list_collateral(lambda x: x.d19_token),
            "configurator: bad decimals",
        ),
        R("list_collateral", "weight 0", "owner", list_collateral(weight=0), "configurator: bad weight"),
        R("list_collateral", "weight 0.99 + 1 wei", "owner", list_collateral(weight=99 * 10**16 + 1), "configurator: bad weight"),
        R(
            "list_collateral",
            "liquidation_discount 0.1% - 1 wei",
            "owner",
            list_collateral(discount=10**15 - 1),
            "configurator: bad discount",
        ),
        R(
            "list_collateral",
            "liquidation_discount == 1 - weight",
            "owner",
            list_collateral(weight=WAD // 2, discount=WAD // 2),
            "configurator: bad discount",
        ),
        R("set_collateral", "not the owner", "attacker", set_collateral(), NOT_OWNER),
        R("set_collateral", "weight 0", "owner", set_collateral(weight=0), "configurator: bad weight"),
        R("set_collateral", "weight 0.99 + 1 wei", "owner", set_collateral(weight=99 * 10**16 + 1), "configurator: bad weight"),
        R(
            "set_collateral",
            "liquidation_discount 0.1% - 1 wei",
            "owner",
            set_collateral(discount=10**15 - 1),
            "configurator: bad discount",
        ),
        R(
            "set_collateral",
            "liquidation_discount == 1 - weight",
            "owner",
            set_collateral(weight=WAD // 2, discount=WAD // 2),
            "configurator: bad discount",
        ),
        R(
            "list_market",
            "not the owner",
            "attacker",
            lambda x, who: x.cfg.list_market(x.market_params(ETH), sender=who),
            NOT_OWNER,
        ),
        R(
            "list_market",
            "not the owner (the guardian)",
            "guardian",
            lambda x, who: x.cfg.list_market(x.market_params(ETH), sender=who),
            NOT_OWNER,
        ),
        R(
            "list_market",
            "every market id in use",
            "owner",
            lambda x, who: x.cfg.list_market(x.market_params(ETH), sender=who),
            "configurator: too many markets",
            setup=fifteen_markets,
        ),
        R(
            "list_market",
            "asset zero address",
            "owner",
            lambda x, who: x.cfg.list_market(x.market_params(ETH, asset=ZERO), sender=who),
            "oracle: unknown asset",
        ),
        R(
            "list_market",
            "asset without a feed",
            "owner",
            lambda x, who: x.cfg.list_market(x.market_params(ETH, asset=x.attacker.address), sender=who),
            "oracle: unknown asset",
        ),
        R(
            "list_market",
            "asset's oracle stale",
            "owner",
            lambda x, who: x.cfg.list_market(x.market_params(ETH), sender=who),
            "oracle: stale answer",
            setup=stale,
        ),
        R(
            "set_market",
            "not the owner",
            "attacker",
            lambda x, who: x.cfg.set_market(ETH, x.market_params(ETH), sender=who),
            NOT_OWNER,
        ),
        R(
            "set_market",
            "asset changed",
            "owner",
            lambda x, who: x.cfg.set_market(ETH, x.market_params(ETH, asset=x.wbtc.address), sender=who),
            "configurator: asset fixed",
        ),
        R(
            "set_market",
            "oi_cap below the open interest already on a side (a lower skew_scale could fill at 0)",
            "owner",
            lambda x, who: x.cfg.set_market(ETH, x.market_params(ETH, oi_cap=WAD), sender=who),
            "configurator: cap below open interest",
            setup=lambda x: open_long(x, "trader", 10_000, 2),
        ),
        R(
            "set_market",
            "market's oracle halted (funding accrues first)",
            "owner",
            lambda x, who: x.cfg.set_market(ETH, x.market_params(ETH), sender=who),
            "oracle: circuit breaker",
            setup=eth_breaker,
        ),
        R("set_liquidation_parameters", "not the owner", "attacker", liquidation(), NOT_OWNER),
        R(
            "set_liquidation_parameters",
            "buffer 50% + 1 wei",
            "owner",
            liquidation(buffer=5 * 10**17 + 1),
            "configurator: bad buffer",
        ),
        R(
            "set_liquidation_parameters",
            "full_liquidation_health 0",
            "owner",
            liquidation(full=0),
            "configurator: bad full liquidation health",
        ),
        R(
            "set_liquidation_parameters",
            "full_liquidation_health 1 + 1 wei",
            "owner",
            liquidation(full=WAD + 1),
            "configurator: bad full liquidation health",
        ),
        R(
            "set_liquidation_parameters",
            "dust_notional $10,000 + 1 wei",
            "owner",
            liquidation(dust=10**4 * WAD + 1),
            "configurator: bad dust",
        ),
        R(
            "set_liquidation_parameters",
            "buffer 0 with a market whose penalty is 3.2% > base_mmr 3%",
            "owner",
            liquidation(buffer=0),
            "configurator: liquidation spiral",
            setup=eth_penalty_near_spiral,
        ),
        R(
            "set_liquidation_parameters",
            "full_liquidation_health 0.4 (ETH-PERP's cap above its premium bound)",
            "owner",
            liquidation(full=4 * 10**17),
            "configurator: cap above premium bound",
        ),
        R("set_underwater_tip", "not the owner", "attacker", lambda x, who: x.cfg.set_underwater_tip(0, sender=who), NOT_OWNER),
        R(
            "set_underwater_tip",
            "rate 1% + 1 wei",
            "owner",
            lambda x, who: x.cfg.set_underwater_tip(10**16 + 1, sender=who),
            "configurator: bad tip",
        ),
        R(
            "set_underwater_tip",
            "rate == a market's base_mmr (0.5%)",
            "owner",
            lambda x, who: x.cfg.set_underwater_tip(5 * 10**15, sender=who),
            "configurator: tip above maintenance",
            setup=btc_low_maintenance,
        ),
        R("set_order_parameters", "not the owner", "attacker", order_parameters(), NOT_OWNER, views=order_views),
        R("set_order_parameters", "not the owner (the guardian)", "guardian", order_parameters(), NOT_OWNER, views=order_views),
        R(
            "set_order_parameters",
            "settlement_delay 0 (a round in the order's own block may already be known)",
            "owner",
            order_parameters(delay=0),
            "configurator: bad settlement delay",
            views=order_views,
        ),
        R(
            "set_order_parameters",
            "settlement_delay an hour + 1 s",
            "owner",
            order_parameters(delay=3_601),
            "configurator: bad settlement delay",
            views=order_views,
        ),
        R(
            "set_order_parameters",
            "expiry 59 s",
            "owner",
            order_parameters(expiry=59),
            "configurator: bad order expiry",
            views=order_views,
        ),
        R(
            "set_order_parameters",
            "expiry a week + 1 s",
            "owner",
            order_parameters(expiry=7 * 86_400 + 1),
            "configurator: bad order expiry",
            views=order_views,
        ),
        R(
            "set_order_parameters",
            "execution_fee 1,000 USDC + 1 unit",
            "owner",
            order_parameters(fee=1_000 * USDC + 1),
            "configurator: bad execution fee",
            views=order_views,
        ),
        R(
            "set_order_parameters",
            "execution_fee 2**256 - 1",
            "owner",
            order_parameters(fee=MAX_UINT),
            "configurator: bad execution fee",
            views=order_views,
        ),
        R(
            "set_order_bond",
            "not the owner",
            "attacker",
            lambda x, who: x.cfg.set_order_bond(0, sender=who),
            NOT_OWNER,
            views=order_views,
        ),
        R(
            "set_order_bond",
            "rate 1% + 1 wei",
            "owner",
            lambda x, who: x.cfg.set_order_bond(10**16 + 1, sender=who),
            "configurator: bad order bond",
            views=order_views,
        ),
        R(
            "set_order_bond",
            "rate 2**256 - 1",
            "owner",
            lambda x, who: x.cfg.set_order_bond(MAX_UINT, sender=who),
            "configurator: bad order bond",
            views=order_views,
        ),
        R("set_reserve_factor", "not the owner", "attacker", reserve_factor(), NOT_OWNER, views=reserve_views),
        R("set_reserve_factor", "not the owner (the guardian)", "guardian", reserve_factor(), NOT_OWNER, views=reserve_views),
        R(
            "set_reserve_factor",
            "factor 100 + 1 wei",
            "owner",
            reserve_factor(factor=100 * WAD + 1),
            "configurator: bad reserve factor",
            views=reserve_views,
        ),
        *(
            R(
                "set_reserve_factor",
                f"market {label}",
                "owner",
                lambda x, who, m=market: x.cfg.set_reserve_factor(m(x), WAD, sender=who),
                "configurator: unknown market",
                views=reserve_views,
            )
            for label, market in UNKNOWN_MARKETS
        ),
        R("set_debt_parameters", "not the owner", "attacker", debt_parameters(), NOT_OWNER),
        R("set_debt_parameters", "not the owner (the guardian)", "guardian", debt_parameters(), NOT_OWNER),
        R(
            "set_debt_parameters",
            "rate_base 100% + 1 wei",
            "owner",
            debt_parameters(rate_base=WAD + 1),
            "configurator: bad debt rate",
        ),
        R(
            "set_debt_parameters",
            "rate_base 2**256 - 1",
            "owner",
            debt_parameters(rate_base=MAX_UINT),
            "configurator: bad debt rate",
        ),
        R(
            "set_debt_parameters",
            "rate_slope 1,000% + 1 wei",
            "owner",
            debt_parameters(rate_slope=10 * WAD + 1),
            "configurator: bad debt rate",
        ),
        R(
            "set_debt_parameters",
            "rate_slope 2**256 - 1",
            "owner",
            debt_parameters(rate_slope=MAX_UINT),
            "configurator: bad debt rate",
        ),
        R("set_debt_parameters", "debt_imr 0", "owner", debt_parameters(debt_imr=0), "configurator: bad debt margin"),
        R(
            "set_debt_parameters",
            "debt_imr 100% + 1 wei",
            "owner",
            debt_parameters(debt_imr=WAD + 1),
            "configurator: bad debt margin",
        ),
        R("set_debt_parameters", "ceiling 0", "owner", debt_parameters(ceiling=0), "configurator: bad debt ceiling"),
        R(
            "set_debt_parameters",
            "ceiling 100% + 1 wei",
            "owner",
            debt_parameters(ceiling=WAD + 1),
            "configurator: bad debt ceiling",
        ),
        R("set_debt_parameters", "liquidation_ltv 0", "owner", debt_parameters(ltv=0), "configurator: bad loan to value"),
        R(
            "set_debt_parameters",
            "liquidation_ltv 100% + 1 wei",
            "owner",
            debt_parameters(ltv=WAD + 1),
            "configurator: bad loan to value",
        ),
        R(
            "set_debt_parameters",
            "liquidation_ltv 80% with debt_imr 25% (0.8 * 1.25 is not above 1: a withdrawal could leave the collateral for sale)",
            "owner",
            debt_parameters(ltv=8 * 10**17),
            "configurator: bad loan to value",
        ),
        R(
            "set_debt_parameters",
            "liquidation_ltv 50% with debt_imr 100%",
            "owner",
            debt_parameters(debt_imr=WAD, ltv=WAD // 2),
            "configurator: bad loan to value",
        ),
        R(
            "set_debt_parameters",
            "liquidation_ltv 100% - 1 wei with debt_imr 1 wei (rounded down, not above 1)",
            "owner",
            debt_parameters(debt_imr=1, ltv=WAD - 1),
            "configurator: bad loan to value",
        ),
        # the emergency controls: the Configurator's roles, applied through apply_emergency
        R(
            "set_guardian",
            "not the owner",
            "attacker",
            lambda x, who: x.cfg.set_guardian(who, sender=who),
            NOT_OWNER,
            views=lambda x: (x.read(x.cfg.guardian),),
        ),
        R(
            "set_guardian",
            "not the owner (the guardian)",
            "guardian",
            lambda x, who: x.cfg.set_guardian(x.attacker, sender=who),
            NOT_OWNER,
            views=lambda x: (x.read(x.cfg.guardian),),
        ),
        R(
            "pause",
            "neither guardian nor owner",
            "attacker",
            lambda x, who: x.cfg.pause(sender=who),
            "configurator: not guardian",
            views=governance_views,
        ),
        R(
            "pause",
            "neither guardian nor owner (a trader)",
            "trader",
            lambda x, who: x.cfg.pause(sender=who),
            "configurator: not guardian",
            views=governance_views,
        ),
        R(
            "unpause",
            "not the owner",
            "attacker",
            lambda x, who: x.cfg.unpause(sender=who),
            NOT_OWNER,
            setup=paused,
            views=governance_views,
        ),
        R(
            "unpause",
            "not the owner (the guardian)",
            "guardian",
            lambda x, who: x.cfg.unpause(sender=who),
            NOT_OWNER,
            setup=paused,
            views=governance_views,
        ),
        R(
            "set_reduce_only",
            "set by neither guardian nor owner",
            "attacker",
            lambda x, who: x.cfg.set_reduce_only(ETH, True, sender=who),
            "configurator: not guardian",
            views=lambda x: (x.read(x.cfg.reduce_only, ETH),),
        ),
        R(
            "set_reduce_only",
            "lifted by the guardian (owner only)",
            "guardian",
            lambda x, who: x.cfg.set_reduce_only(ETH, False, sender=who),
            NOT_OWNER,
            setup=eth_reduce_only,
            views=lambda x: (x.read(x.cfg.reduce_only, ETH),),
        ),
        R(
            "set_reduce_only",
            "lifted by an attacker",
            "attacker",
            lambda x, who: x.cfg.set_reduce_only(ETH, False, sender=who),
            NOT_OWNER,
            setup=eth_reduce_only,
            views=lambda x: (x.read(x.cfg.reduce_only, ETH),),
        ),
        R("transfer_ownership", "not the owner", "attacker", lambda x, who: x.cfg.transfer_ownership(who, sender=who), NOT_OWNER),
        R(
            "accept_ownership",
            "no transfer pending",
            "attacker",
            lambda x, who: x.cfg.accept_ownership(sender=who),
            NOT_NEW_OWNER,
        ),
        R(
            "accept_ownership",
            "transfer pending to someone else",
            "attacker",
            lambda x, who: x.cfg.accept_ownership(sender=who),
            NOT_NEW_OWNER,
            setup=pending_owner("cfg"),
        ),
        # a Configurator on a Clearinghouse that is not yet connected: no engine to keep the
        # liquidation parameters, and the Clearinghouse does not take its apply_* calls
        R(
            "list_market",
            "clearinghouse not yet connected",
            "owner",
            lambda x, who: x.bare_cfg.list_market(x.market_params(ETH), sender=who),
            "configurator: no liquidation engine",
            views=unconnected_views,
        ),
        R(
            "set_market",
            "clearinghouse not yet connected (it has no market)",
            "owner",
            lambda x, who: x.bare_cfg.set_market(ETH, x.market_params(ETH), sender=who),
            "configurator: unknown market",
            views=unconnected_views,
        ),
        R(
            "set_liquidation_parameters",
            "clearinghouse not yet connected",
            "owner",
            lambda x, who: x.bare_cfg.set_liquidation_parameters(10**17, WAD // 2, 100 * WAD, sender=who),
            "configurator: no liquidation engine",
            views=unconnected_views,
        ),
        R(
            "set_underwater_tip",
            "clearinghouse not yet connected",
            "owner",
            lambda x, who: x.bare_cfg.set_underwater_tip(2 * 10**15, sender=who),
            "configurator: no liquidation engine",
            views=unconnected_views,
        ),
        R(
            "set_order_parameters",
            "clearinghouse not yet connected (no Orders to set them on)",
            "owner",
            lambda x, who: x.bare_cfg.set_order_parameters(60, 86_400, 2 * USDC, sender=who),
            "configurator: no orders",
            views=lambda x: (*unconnected_views(x), *order_parameter_views(lambda x: x.bare_orders)(x)),
        ),
        R(
            "set_order_bond",
            "clearinghouse not yet connected (no Orders to set it on)",
            "owner",
            lambda x, who: x.bare_cfg.set_order_bond(0, sender=who),
            "configurator: no orders",
            views=lambda x: (*unconnected_views(x), *order_parameter_views(lambda x: x.bare_orders)(x)),
        ),
        R(
            "set_debt_parameters",
            "clearinghouse not yet connected (it does not know this configurator)",
            "owner",
            lambda x, who: x.bare_cfg.set_debt_parameters(2 * 10**16, 3 * 10**17, 25 * 10**16, WAD // 2, 9 * 10**17, sender=who),
            "clearinghouse: not configurator",
            views=lambda x: (*unconnected_views(x), x.read(x.bare_ch.debt_terms), x.read(x.bare_engine.debt_liquidation_ltv)),
        ),
        R(
            "list_collateral",
            "clearinghouse not yet connected (it does not know this configurator)",
            "owner",
            lambda x, who: x.bare_cfg.list_collateral(x.new_token, WAD // 2, 10**30, WAD // 10, sender=who),
            "clearinghouse: not configurator",
            views=unconnected_views,
        ),
    ]
    for label, changes, message in MARKET_BOUNDS:
        rows += [
            R(
                "list_market",
                label,
                "owner",
                lambda x, who, c=changes: x.cfg.list_market(x.market_params(ETH, **c), sender=who),
                message,
            ),
            R(
                "set_market",
                label,
                "owner",
                lambda x, who, c=changes: x.cfg.set_market(ETH, x.market_params(ETH, **c), sender=who),
                message,
            ),
        ]
    for label, market in UNKNOWN_MARKETS:
        rows.append(
            R(
                "set_market",
                f"unknown market: {label}",
                "owner",
                lambda x, who, m=market: x.cfg.set_market(m(x), x.market_params(ETH), sender=who),
                "configurator: unknown market",
            )
        )
        rows.append(
            R(
                "set_reduce_only",
                f"unknown market: {label}",
                "guardian",
                lambda x, who, m=market: x.cfg.set_reduce_only(m(x), True, sender=who),
                "configurator: unknown market",
                views=governance_views,
            )
        )
    for label, token in UNLISTED_TOKENS:
        rows.append(R("set_collateral", f"unknown token: {label}", "owner", set_collateral(token), "configurator: unknown token"))
        rows.append(
            R(
                "write_off_collateral",
                f"unknown token: {label}",
                "owner",
                lambda x, who, t=token: x.cfg.write_off_collateral(t(x), sender=who),
                "configurator: unknown token",
            )
        )
    rows += [
        R(
            "write_off_collateral",
            "not the owner",
            "attacker",
            lambda x, who: x.cfg.write_off_collateral(x.weth, sender=who),
            NOT_OWNER,
        ),
        R(
            "set_collateral",
            "restoring a written-off token while its feed is stale",
            "owner",
            set_collateral(),
            "oracle: stale answer",
            setup=then(weth_written_off, stale),
        ),
    ]
    return rows


def weth_written_off(x: Ctx):
    """Governance writes WETH off (weight 0, deposits off)."""
    x.cfg.write_off_collateral(x.weth, sender=x.owner)


# ---- MarginLens (views only)


def lens_rows() -> list[Row]:
    def R(function, bad, call, message, **kw):
        return Row("MarginLens", function, bad, None, call, message, **kw)

    def trader(x):
        return x.account("trader")

    rows = [
        Row(
            "MarginLens",
            "__init__",
            "clearinghouse without code (an EOA)",
            "owner",
            lambda x, who: who.deploy(x.project.MarginLens, x.attacker),
            NO_REASON,
        ),
        R(
            "healths",
            "batch of 513 accounts (MAX_BATCH is 512)",
            lambda x, who: x.lens.healths([x.account("trader")] * 513),
            NO_REASON,
        ),
        R(
            "account_summary",
            "account with positions, oracle stale",
            lambda x, who: x.lens.account_summary(trader(x)),
            "oracle: stale answer",
            setup=stale,
        ),
        R(
            "healths",
            "account with positions, oracle circuit breaker tripped",
            lambda x, who: x.lens.healths([trader(x)]),
            "oracle: circuit breaker",
            setup=eth_breaker,
        ),
        R(
            "health_after_trade",
            "oracle stale",
            lambda x, who: x.lens.health_after_trade(trader(x), ETH, WAD),
            "oracle: stale answer",
            setup=stale,
        ),
        R(
            "health_after_trades",
            "two markets, one size",
            lambda x, who: x.lens.health_after_trades(trader(x), [ETH, BTC], [WAD]),
            "lens: length mismatch",
        ),
        R(
            "health_after_trades",
            "a market twice",
            lambda x, who: x.lens.health_after_trades(trader(x), [ETH, BTC, ETH], [WAD, WAD, -WAD]),
            "lens: market repeated",
        ),
        R(
            "health_after_trades",
            "an unknown market after a listed one",
            lambda x, who: x.lens.health_after_trades(trader(x), [ETH, 3], [WAD, WAD]),
            "lens: unknown market",
        ),
        R(
            "health_after_trades",
            "oracle stale",
            lambda x, who: x.lens.health_after_trades(trader(x), [], []),
            "oracle: stale answer",
            setup=stale,
        ),
        R(
            "commit_margin",
            "two markets, one size",
            lambda x, who: x.lens.commit_margin(trader(x), [ETH, BTC], [WAD]),
            "lens: length mismatch",
        ),
        R(
            "commit_margin",
            "a market twice",
            lambda x, who: x.lens.commit_margin(trader(x), [BTC, BTC], [WAD, -WAD]),
            "lens: market repeated",
        ),
        R(
            "commit_margin",
            "an unknown market",
            lambda x, who: x.lens.commit_margin(trader(x), [3], [WAD]),
            "lens: unknown market",
        ),
        R(
            "commit_margin",
            "no trades, oracle stale (the account's own market is read)",
            lambda x, who: x.lens.commit_margin(trader(x), [], []),
            "oracle: stale answer",
            setup=stale,
        ),
        R(
            "max_withdraw",
            "account with positions, oracle stale",
            lambda x, who: x.lens.max_withdraw(trader(x), x.usdc),
            "oracle: stale answer",
            setup=stale,
        ),
    ]
    for label, market in UNKNOWN_MARKETS:
        rows += [
            R(
                "health_after_trade",
                f"unknown market: {label}",
                lambda x, who, m=market: x.lens.health_after_trade(trader(x), m(x), WAD),
                "lens: unknown market",
            ),
            R(
                "liquidation_price",
                f"unknown market: {label}",
                lambda x, who, m=market: x.lens.liquidation_price(trader(x), m(x)),
                "lens: unknown market",
            ),
            R(
                "market_rates",
                f"unknown market: {label}",
                lambda x, who, m=market: x.lens.market_rates(m(x), WAD),
                "lens: unknown market",
            ),
            R(
                "fill_price",
                f"unknown market: {label}",
                lambda x, who, m=market: x.lens.fill_price(m(x), WAD),
                "lens: unknown market",
            ),
            R(
                "funding_rate",
                f"unknown market: {label}",
                lambda x, who, m=market: x.lens.funding_rate(m(x)),
                "lens: unknown market",
            ),
        ]
    for label, token in UNLISTED_TOKENS:
        rows.append(
            R(
                "max_withdraw",
                f"unknown token: {label} (account with free margin)",
                lambda x, who, t=token: x.lens.max_withdraw(trader(x), t(x)),
                "lens: unknown token",
            )
        )
    return rows


# ---- LiquidityPool


def pool_rows() -> list[Row]:
    def R(function, bad, caller, call, message, **kw):
        return Row("LiquidityPool", function, bad, caller, call, message, views=kw.pop("views", pool_views), **kw)

    def lp_all(x):
        return x.pool.balanceOf(x.lp)

    def attacker_locked(x):
        return x.pool.balanceOf(x.attacker)

    def request_views(*roles):
        """The requests of `roles` (their controllers), with the pool's supply and balance."""

        def views(x: Ctx) -> tuple:
            return (*(x.read(x.pool.requests, x.roles[role]) for role in roles), *pool_views(x))

        return views

    def mini_views(x):
        return (x.read(x.mini_pool.requests, x.attacker), x.read(x.mini_pool.totalSupply), x.read(x.mini_ch.pool_balance))

    def worth_one_unit(x):
        """Shares worth 1 micro-USDC now (a hundred share units, 1e-4 micro-USDC, above the least)."""
        return x.pool.previewWithdraw(1) + 100

    attacker_requests = request_views("attacker")
    lp_requests = request_views("lp")

    rows = [
        R(
            "__init__",
            "settlement token whose approve returns False",
            "owner",
            lambda x, who: who.deploy(x.project.LiquidityPool, x.mini_ch, "mini LP", "mLP"),
            "pool: approve failed",
            setup=mini_settlement_lies,
            token="QS",
            views=lambda x: (x.read(x.mini_ch.pool),),
        ),
        R(
            "deposit",
            "assets 0, the book idle",
            "attacker",
            lambda x, who: x.pool.deposit(0, who, sender=who),
            "pool: zero amount",
            setup=book_idle,
        ),
        R(
            "deposit",
            "above allowance, the book idle",
            "keeper",
            lambda x, who: x.pool.deposit(1 * USDC, who, sender=who),
            "erc20: insufficient allowance",
            setup=book_idle,
        ),
        R(
            "deposit",
            "above balance, the book idle",
            "attacker",
            lambda x, who: x.pool.deposit(1_001 * USDC, who, sender=who),
            "erc20: transfer amount exceeds balance",
            setup=book_idle,
        ),
        R(
            "deposit",
            "receiver zero address, the book idle",
            "attacker",
            lambda x, who: x.pool.deposit(100 * USDC, ZERO, sender=who),
            "erc20: mint to the zero address",
            setup=book_idle,
        ),
        R(
            "deposit",
            "pool insolvent (traders' profit exceeds it): the book open, refused first",
            "attacker",
            lambda x, who: x.pool.deposit(100 * USDC, who, sender=who),
            BOOK_OPEN,
            setup=insolvent_pool,
        ),
        R(
            "deposit",
            "open positions, oracle stale: the book open, refused first",
            "attacker",
            lambda x, who: x.pool.deposit(100 * USDC, who, sender=who),
            BOOK_OPEN,
            setup=stale,
        ),
        R(
            "withdraw",
            "a held collateral's feed (WBTC) stale, the markets' in use fresh, the book idle",
            "lp",
            lambda x, who: x.pool.withdraw(100 * USDC, who, who, sender=who),
            "pool: collateral feed down",
            setup=then(book_idle, wbtc_stale),
        ),
        R(
            "redeem",
            "a held collateral's feed (WBTC) stale, the markets' in use fresh, the book idle",
            "lp",
            lambda x, who: x.pool.redeem(10**9, who, who, sender=who),
            "pool: collateral feed down",
            setup=then(book_idle, wbtc_stale),
        ),
        R(
            "deposit",
            "a held collateral's feed (WBTC) stale, the markets' in use fresh, the book idle",
            "attacker",
            lambda x, who: x.pool.deposit(100 * USDC, who, sender=who),
            "pool: collateral feed down",
            setup=then(book_idle, wbtc_stale),
        ),
        R(
            "mint",
            "a held collateral's feed (WBTC) stale, the markets' in use fresh, the book idle",
            "attacker",
            lambda x, who: x.pool.mint(10**12, who, sender=who),
            "pool: collateral feed down",
            setup=then(book_idle, wbtc_stale),
        ),
        R(
            "deposit",
            "asset's transferFrom returns False",
            "attacker",
            lambda x, who: x.mini_pool.deposit(100 * USDC, who, sender=who),
            "pool: transfer failed",
            setup=mini_settlement_lies,
            token="QS",
            views=lambda x: (x.read(x.mini_pool.totalSupply), x.read(x.mini_ch.pool_balance)),
        ),
        R(
            "deposit",
            "to an LP with four lots in their cooldown, the book idle",
            "attacker",
            lambda x, who: x.pool.deposit(1, x.lp, sender=who),
            "pool: too many locked deposits",
            setup=then(book_idle, lp_four_gift_lots),
        ),
        R(
            "mint",
            "shares 0, the book idle",
            "attacker",
            lambda x, who: x.pool.mint(0, who, sender=who),
            "pool: zero amount",
            setup=book_idle,
        ),
        R(
            "mint",
            "above allowance, the book idle",
            "keeper",
            lambda x, who: x.pool.mint(10**12, who, sender=who),
            "erc20: insufficient allowance",
            setup=book_idle,
        ),
        R(
            "mint",
            "above balance, the book idle",
            "attacker",
            lambda x, who: x.pool.mint(x.pool.previewDeposit(1_001 * USDC), who, sender=who),
            "erc20: transfer amount exceeds balance",
            setup=book_idle,
        ),
        R(
            "mint",
            "to an LP with four lots in their cooldown, the book idle",
            "attacker",
            lambda x, who: x.pool.mint(10**6, x.lp, sender=who),
            "pool: too many locked deposits",
            setup=then(book_idle, lp_four_gift_lots),
        ),
        R(
            "mint",
            "receiver zero address, the book idle",
            "attacker",
            lambda x, who: x.pool.mint(10**12, ZERO, sender=who),
            "erc20: mint to the zero address",
            setup=book_idle,
        ),
        R(
            "mint",
            "pool insolvent: the book open, refused first",
            "attacker",
            lambda x, who: x.pool.mint(10**12, who, sender=who),
            BOOK_OPEN,
            setup=insolvent_pool,
        ),
        R(
            "apply_reserve_factor",
            "not the configurator",
            "attacker",
            lambda x, who: x.pool.apply_reserve_factor(ETH, 1, sender=who),
            "pool: not configurator",
            views=reserve_views,
        ),
        R(
            "apply_reserve_factor",
            "not the configurator (the owner)",
            "owner",
            lambda x, who: x.pool.apply_reserve_factor(ETH, 1, sender=who),
            "pool: not configurator",
            views=reserve_views,
        ),
        R(
            "apply_hold",
            "not Orders",
            "attacker",
            lambda x, who: x.pool.apply_hold(ETH, 10**30, 0, True, sender=who),
            "pool: not orders",
            views=held_views,
        ),
        R(
            "apply_hold",
            "not Orders (the owner), a release",
            "owner",
            lambda x, who: x.pool.apply_hold(ETH, 0, 0, False, sender=who),
            "pool: not orders",
            views=held_views,
        ),
        R(
            "withdraw",
            "assets 0, the book idle",
            "lp",
            lambda x, who: x.pool.withdraw(0, who, who, sender=who),
            "pool: zero amount",
            setup=book_idle,
        ),
        R(
            "withdraw",
            "shares still in their cooldown, the book idle",
            "attacker",
            lambda x, who: x.pool.withdraw(50 * USDC, who, who, sender=who),
            "pool: cooldown",
            setup=then(book_idle, lp_cooldown),
        ),
        R(
            "withdraw",
            "what the owner's shares are worth + 1 USDC, the book idle",
            "lp",
            lambda x, who: x.pool.withdraw(x.pool.previewRedeem(x.pool.balanceOf(who)) + USDC, who, who, sender=who),
            "pool: insufficient shares",
            setup=then(book_idle, reserve_aside),
        ),
        R(
            "withdraw",
            "withdrawable + 1 (more than the pool's liquidity): the book open, refused first",
            "lp",
            lambda x, who: x.pool.withdraw(x.pool.withdrawable(who) + 1, who, who, sender=who),
            BOOK_OPEN,
            setup=then(reserve_aside, traders_at_a_loss),
        ),
        R(
            "withdraw",
            "withdrawable + 1 USDC (past the open-interest reserve): the book open, refused first",
            "lp",
            lambda x, who: x.pool.withdraw(x.pool.withdrawable(who) + USDC, who, who, sender=who),
            BOOK_OPEN,
            setup=reserve_nearly_full,
        ),
        R(
            "withdraw",
            "someone else's shares without allowance, the book idle",
            "attacker",
            lambda x, who: x.pool.withdraw(100 * USDC, who, x.lp, sender=who),
            "erc20: insufficient allowance",
            setup=book_idle,
        ),
        R(
            "withdraw",
            "receiver zero address, the book idle",
            "lp",
            lambda x, who: x.pool.withdraw(100 * USDC, ZERO, who, sender=who),
            "erc20: transfer to the zero address",
            setup=book_idle,
        ),
        R(
            "redeem",
            "shares 0, the book idle",
            "lp",
            lambda x, who: x.pool.redeem(0, who, who, sender=who),
            "pool: zero amount",
            setup=book_idle,
        ),
        R(
            "redeem",
            "shares still in their cooldown, the book idle",
            "attacker",
            lambda x, who: x.pool.redeem(attacker_locked(x), who, who, sender=who),
            "pool: cooldown",
            setup=then(book_idle, lp_cooldown),
        ),
        R(
            "redeem",
            "balance + 1, the book idle",
            "lp",
            lambda x, who: x.pool.redeem(lp_all(x) + 1, who, who, sender=who),
            "pool: insufficient shares",
            setup=then(book_idle, reserve_aside),
        ),
        R(
            "redeem",
            "shares worth $100,000 more than the pool's liquidity (within the reserve): the book open, refused first",
            "lp",
            lambda x, who: x.pool.redeem(x.pool.convertToShares(x.pool.withdrawable(who) + 100_000 * USDC), who, who, sender=who),
            BOOK_OPEN,
            setup=then(reserve_aside, traders_at_a_loss),
        ),
        R(
            "redeem",
            "all shares, past the open-interest reserve: the book open, refused first",
            "lp",
            lambda x, who: x.pool.redeem(lp_all(x), who, who, sender=who),
            BOOK_OPEN,
            setup=reserve_nearly_full,
        ),
        R(
            "redeem",
            "someone else's shares without allowance, the book idle",
            "attacker",
            lambda x, who: x.pool.redeem(10**12, who, x.lp, sender=who),
            "erc20: insufficient allowance",
            setup=book_idle,
        ),
        R(
            "redeem",
            "receiver zero address, the book idle",
            "lp",
            lambda x, who: x.pool.redeem(10**12, ZERO, who, sender=who),
            "erc20: transfer to the zero address",
            setup=book_idle,
        ),
        R(
            "deposit",
            "no positions, an order placed (it holds open interest): the book open",
            "attacker",
            lambda x, who: x.pool.deposit(100 * USDC, who, sender=who),
            BOOK_OPEN,
            setup=then(book_idle, sub1_order_pending),
        ),
        R(
            "mint",
            "no positions, an order placed: the book open",
            "attacker",
            lambda x, who: x.pool.mint(10**12, who, sender=who),
            BOOK_OPEN,
            setup=then(book_idle, sub1_order_pending),
        ),
        R(
            "withdraw",
            "no positions, an order placed: the book open",
            "lp",
            lambda x, who: x.pool.withdraw(100 * USDC, who, who, sender=who),
            BOOK_OPEN,
            setup=then(book_idle, sub1_order_pending),
        ),
        R(
            "redeem",
            "no positions, an order placed: the book open",
            "lp",
            lambda x, who: x.pool.redeem(10**12, who, who, sender=who),
            BOOK_OPEN,
            setup=then(book_idle, sub1_order_pending),
        ),
        # requests: request_deposit / request_redeem place, execute_request / lapse_request end them
        R(
            "request_deposit",
            "the caller's deposit request still pending",
            "attacker",
            lambda x, who: x.pool.request_deposit(100 * USDC, who, sender=who),
            "pool: request pending",
            setup=deposit_requested(),
            views=attacker_requests,
        ),
        R(
            "request_deposit",
            "the caller's redemption request still pending",
            "lp",
            lambda x, who: x.pool.request_deposit(100 * USDC, who, sender=who),
            "pool: request pending",
            setup=redemption_requested(lambda x: 10**12),
            views=lp_requests,
        ),
        R(
            "request_deposit",
            "assets 0",
            "attacker",
            lambda x, who: x.pool.request_deposit(0, who, sender=who),
            "pool: zero amount",
            views=attacker_requests,
        ),
        R(
            "request_deposit",
            "a held collateral's feed (WBTC) stale, the markets' in use fresh",
            "attacker",
            lambda x, who: x.pool.request_deposit(100 * USDC, who, sender=who),
            "pool: collateral feed down",
            setup=wbtc_stale,
            views=attacker_requests,
        ),
        R(
            "request_deposit",
            "pool insolvent (traders' profit exceeds it)",
            "attacker",
            lambda x, who: x.pool.request_deposit(100 * USDC, who, sender=who),
            "pool: insolvent",
            setup=insolvent_pool,
            views=attacker_requests,
        ),
        R(
            "request_deposit",
            "open positions, oracle stale",
            "attacker",
            lambda x, who: x.pool.request_deposit(100 * USDC, who, sender=who),
            "oracle: stale answer",
            setup=stale,
            views=attacker_requests,
        ),
        R(
            "request_deposit",
            "nothing approved to the pool",
            "keeper",
            lambda x, who: x.pool.request_deposit(1 * USDC, who, sender=who),
            "erc20: insufficient allowance",
            views=request_views("keeper"),
        ),
        R(
            "request_deposit",
            "assets within the balance, assets + execution fee above it",
            "attacker",
            lambda x, who: x.pool.request_deposit(999 * USDC, who, sender=who),
            "erc20: transfer amount exceeds balance",
            views=attacker_requests,
        ),
        R(
            "request_deposit",
            "asset's transferFrom returns False",
            "attacker",
            lambda x, who: x.mini_pool.request_deposit(100 * USDC, who, sender=who),
            "pool: transfer failed",
            setup=mini_settlement_lies,
            token="QS",
            views=mini_views,
        ),
        R(
            "request_deposit",
            "asset charges a fee on transfer",
            "attacker",
            lambda x, who: x.mini_pool.request_deposit(100 * USDC, who, sender=who),
            "pool: fee on transfer",
            setup=mini_settlement_charges_a_fee,
            token="QS",
            views=mini_views,
        ),
        R(
            "request_redeem",
            "the owner's redemption request still pending",
            "lp",
            lambda x, who: x.pool.request_redeem(10**12, who, who, sender=who),
            "pool: request pending",
            setup=redemption_requested(lambda x: 10**12),
            views=lp_requests,
        ),
        R(
            "request_redeem",
            "someone else's shares, with allowance (the owner's deposit request pending)",
            "keeper",
            lambda x, who: x.pool.request_redeem(10**12, who, x.lp, sender=who),
            "pool: not owner",
            setup=then(lp_deposit_requested, lambda x: x.pool.approve(x.keeper, MAX_UINT, sender=x.lp)),
            views=lp_requests,
        ),
        R(
            "request_redeem",
            "shares 0",
            "lp",
            lambda x, who: x.pool.request_redeem(0, who, who, sender=who),
            "pool: zero amount",
            views=lp_requests,
        ),
        R(
            "request_redeem",
            "1 share unit (worth no token unit)",
            "lp",
            lambda x, who: x.pool.request_redeem(1, who, who, sender=who),
            "pool: zero amount",
            views=lp_requests,
        ),
        R(
            "request_redeem",
            "a held collateral's feed (WBTC) stale, the markets' in use fresh",
            "lp",
            lambda x, who: x.pool.request_redeem(10**12, who, who, sender=who),
            "pool: collateral feed down",
            setup=wbtc_stale,
            views=lp_requests,
        ),
        R(
            "request_redeem",
            "shares still in their cooldown",
            "attacker",
            lambda x, who: x.pool.request_redeem(attacker_locked(x), who, who, sender=who),
            "pool: cooldown",
            setup=lp_cooldown,
            views=attacker_requests,
        ),
        R(
            "request_redeem",
            "someone else's shares without allowance",
            "attacker",
            lambda x, who: x.pool.request_redeem(10**12, who, x.lp, sender=who),
            "pool: not owner",
            views=lp_requests,
        ),
        R(
            "request_redeem",
            "balance + 1",
            "lp",
            lambda x, who: x.pool.request_redeem(lp_all(x) + 1, who, who, sender=who),
            "pool: insufficient shares",
            views=lp_requests,
        ),
        R(
            "request_redeem",
            "execution fee not approved to the pool",
            "lp",
            lambda x, who: x.pool.request_redeem(10**12, who, who, sender=who),
            "erc20: insufficient allowance",
            setup=mint_to("USDC", "lp", 10 * USDC),
            views=lp_requests,
        ),
        R(
            "execute_request",
            "a controller without a request",
            "keeper",
            lambda x, who: x.pool.execute_request(x.attacker, sender=who),
            "pool: no request",
            views=attacker_requests,
        ),
        R(
            "execute_request",
            "controller zero address",
            "keeper",
            lambda x, who: x.pool.execute_request(ZERO, sender=who),
            "pool: no request",
        ),
        R(
            "execute_request",
            "a request already executed",
            "keeper",
            lambda x, who: x.pool.execute_request(x.attacker, sender=who),
            "pool: no request",
            setup=then(deposit_requested(), request_executed("attacker")),
            views=attacker_requests,
        ),
        R(
            "execute_request",
            "one second before executable_at",
            "keeper",
            lambda x, who: x.pool.execute_request(x.attacker, sender=who),
            "pool: request not due",
            setup=then(deposit_requested(), request_at("attacker", -1)),
            views=attacker_requests,
        ),
        R(
            "execute_request",
            "one second after its window (executable_at + 900)",
            "keeper",
            lambda x, who: x.pool.execute_request(x.lp, sender=who),
            "pool: request lapsed",
            setup=then(redemption_requested(), request_at("lp", REQUEST_WINDOW + 1)),
            views=lp_requests,
        ),
        R(
            "execute_request",
            "deposit: the pool insolvent since the request",
            "keeper",
            lambda x, who: x.pool.execute_request(x.attacker, sender=who),
            "pool: insolvent",
            setup=then(deposit_requested(), insolvent_pool, request_due("attacker")),
            views=attacker_requests,
        ),
        R(
            "execute_request",
            "deposit: a held collateral's feed (WBTC) halted since the request",
            "keeper",
            lambda x, who: x.pool.execute_request(x.attacker, sender=who),
            "pool: collateral feed down",
            setup=then(deposit_requested(), wbtc_halted, request_due("attacker")),
            views=attacker_requests,
        ),
        R(
            "execute_request",
            "deposit paid by the attacker to an LP that has four lots in their cooldown since",
            "keeper",
            lambda x, who: x.pool.execute_request(x.attacker, sender=who),
            "pool: too many locked deposits",
            setup=then(deposit_requested(lambda x: x.lp, assets=1), lp_four_gift_lots, request_due("attacker")),
            views=request_views("attacker", "lp"),
        ),
        R(
            "execute_request",
            "deposit requested for the zero address",
            "keeper",
            lambda x, who: x.pool.execute_request(x.attacker, sender=who),
            "erc20: mint to the zero address",
            setup=then(deposit_requested(lambda x: ZERO), request_due("attacker")),
            views=attacker_requests,
        ),
        R(
            "execute_request",
            "redemption: a held collateral's feed (WBTC) halted since the request",
            "keeper",
            lambda x, who: x.pool.execute_request(x.lp, sender=who),
            "pool: collateral feed down",
            setup=then(redemption_requested(lambda x: 10**12), wbtc_halted, request_due("lp")),
            views=lp_requests,
        ),
        R(
            "execute_request",
            "redemption: shares worth 1 micro-USDC at the request, none once traders are in profit",
            "keeper",
            lambda x, who: x.pool.execute_request(x.lp, sender=who),
            "pool: zero amount",
            setup=then(redemption_requested(worth_one_unit), traders_in_profit, request_due("lp")),
            views=lp_requests,
        ),
        R(
            "execute_request",
            "redemption: all the LP's shares, past the open-interest reserve",
            "keeper",
            lambda x, who: x.pool.execute_request(x.lp, sender=who),
            "pool: open interest reserve",
            setup=then(reserve_nearly_full, redemption_requested(), request_due("lp")),
            views=lp_requests,
        ),
        R(
            "execute_request",
            "redemption: all the LP's shares, more than the pool's liquidity (reserve off)",
            "keeper",
            lambda x, who: x.pool.execute_request(x.lp, sender=who),
            "clearinghouse: pool liquidity",
            setup=then(reserve_aside, traders_at_a_loss, redemption_requested(), request_due("lp")),
            views=lp_requests,
        ),
        R(
            "execute_request",
            "redemption requested for the zero address",
            "keeper",
            lambda x, who: x.pool.execute_request(x.lp, sender=who),
            "erc20: transfer to the zero address",
            setup=then(redemption_requested(lambda x: 10**12, lambda x: ZERO), request_due("lp")),
            views=lp_requests,
        ),
        R(
            "lapse_request",
            "a controller without a request",
            "keeper",
            lambda x, who: x.pool.lapse_request(x.attacker, sender=who),
            "pool: no request",
            views=attacker_requests,
        ),
        R(
            "lapse_request",
            "a request already lapsed",
            "keeper",
            lambda x, who: x.pool.lapse_request(x.attacker, sender=who),
            "pool: no request",
            setup=then(deposit_requested(), request_lapsed("attacker")),
            views=attacker_requests,
        ),
        R(
            "lapse_request",
            "a request not yet due",
            "keeper",
            lambda x, who: x.pool.lapse_request(x.attacker, sender=who),
            "pool: request live",
            setup=deposit_requested(),
            views=attacker_requests,
        ),
        R(
            "lapse_request",
            "the last second of its window (executable_at + 900), by its controller",
            "lp",
            lambda x, who: x.pool.lapse_request(who, sender=who),
            "pool: request live",
            setup=then(redemption_requested(), request_at("lp", REQUEST_WINDOW)),
            views=lp_requests,
        ),
        R(
            "transfer",
            "shares still in their cooldown",
            "attacker",
            lambda x, who: x.pool.transfer(x.keeper, attacker_locked(x), sender=who),
            "pool: cooldown",
            setup=lp_cooldown,
            token="msLP",
        ),
        R(
            "transfer",
            "more than the balance (none)",
            "attacker",
            lambda x, who: x.pool.transfer(x.keeper, 1, sender=who),
            "pool: cooldown",
            token="msLP",
        ),
        R(
            "transfer",
            "to the zero address",
            "lp",
            lambda x, who: x.pool.transfer(ZERO, 1, sender=who),
            "erc20: transfer to the zero address",
            token="msLP",
        ),
        R(
            "transferFrom",
            "without allowance",
            "attacker",
            lambda x, who: x.pool.transferFrom(x.lp, who, 1, sender=who),
            "erc20: insufficient allowance",
            token="msLP",
        ),
        R(
            "transferFrom",
            "shares still in their cooldown",
            "keeper",
            lambda x, who: x.pool.transferFrom(x.attacker, who, attacker_locked(x), sender=who),
            "pool: cooldown",
            setup=attacker_shares_approved_to_keeper,
            token="msLP",
        ),
        R(
            "approve",
            "spender zero address",
            "lp",
            lambda x, who: x.pool.approve(ZERO, 1, sender=who),
            "erc20: approve to the zero address",
            token="msLP",
        ),
    ]
    return rows


ROWS: list[Row] = [
    *oracle_rows(),
    *clearinghouse_rows(),
    *orders_rows(),
    *engine_rows(),
    *configurator_rows(),
    *lens_rows(),
    *pool_rows(),
]

FILL_REFUSAL = "a fill refusal: Orders cancels the order with this reason; tests/unit/orders/test_orders.py checks each"

# Messages in contracts/*.vy that no row can reach, each with the reason. A message leaves this
# list the moment a row reaches it (test_allow_list_is_exact fails until it does).
UNREACHABLE = {
    # _store_state: a fill stores the market's open interest before fill_order compares it with
    # oi_cap, so an order of more than 2**96 base units reaches the 96-bit packing limit first;
    # that too is a fill refusal (Orders cancels the order with this reason). A liquidation only
    # lowers open interest.
    "clearinghouse: open interest too large": "a fill refusal (an order beyond 2**96 base units): Orders cancels the order "
    "with this reason; liquidations only lower open interest",
    # liquidate_collateral: amount > 0 and the discounted price > 0, so the buyer's payment,
    # rounded up, is at least 1 unit.
    "liquidation: amount too small": "paid = ceil(amount * discounted price) >= 1 whenever amount > 0",
    # list_collateral / list_market: OracleRouter.price never returns 0 (it reverts, or returns a
    # price above min_price > 0), so the router's own message comes first.
    "configurator: no price": "OracleRouter.price reverts before it could return 0",
    # _push_settlement: the tokens held always cover every positive balance, the insurance fund
    # and the pool's free liquidity (profit is capped at that liquidity, a debt-funded penalty is
    # lent by the pool, the keeper is paid out of the fund and that liquidity), so a withdrawal
    # of a balance, an LP's withdrawal or a keeper's pay never finds too few tokens; the fuzzer
    # checks the cover after every step.
    "clearinghouse: insufficient liquidity": "tokens held >= positive balances + insurance + pool liquidity",
    # fill_order: only Orders calls it (any other caller gets "clearinghouse: not orders"), and a
    # refusal with a reason does not revert there: Orders cancels the order, forfeits its fee to the
    # insurance fund and logs OrderCancelled with the reason. ("clearinghouse: paused" and "clearinghouse:
    # insufficient margin" are still reached by deposit and withdraw rows.)
    "clearinghouse: reduce only": FILL_REFUSAL,
    "clearinghouse: price limit": FILL_REFUSAL,
    # fill_order's cap: Orders.commit_order holds against oi_cap with every placed order counted,
    # and the Configurator keeps a new cap above each side's open interest plus those holds, so
    # no fill can pass it (tests/e2e/test_review_v2_trading.py tries every path)
    "clearinghouse: open interest cap": "open interest + placed orders' holds <= oi_cap at every commit and cap change",
    # (The debt ceiling is no longer a fill refusal: Orders.commit_order checks it and reverts
    # "orders: debt ceiling", a row above.)
    # commit_order refuses size 0 ("orders: zero size"), so no order of size 0 reaches a fill
    "clearinghouse: zero size": "Orders refuses a size-0 order at commit (orders: zero size), so no fill has size 0",
}

# assert ..., "msg" / _require(..., "msg") / raise "msg"; and Orders' _release(..., "msg"), whose
# last argument is the assert message it reverts with while the order can still fill. (The
# reasons Orders logs in OrderCancelled, "orders: round passed", "orders: position changed" and
# "orders: expired", are not revert messages, and none of these forms
# matches them.) A condition that spans lines is matched too: `_require(` at the end of a line
# with the message alone on the line before the closing `)`, and an assert whose line ends with
# `(` and whose `), "msg"` closes it (within eight lines either way).
MESSAGE_PATTERN = re.compile(
    r'(?:\bassert\b[^\n#]*?,|_require\([^\n]*?,|\b_release\([^\n]*?,)\s*"([^"\n]+)"|\braise\s+"([^"\n]+)"'
    r'|_require\([ \t]*\n(?:[^\n]*\n){0,8}?[ \t]*"([^"\n]+)",?[ \t]*\n[ \t]*\)'
    r'|\bassert\b[^\n#]*\([ \t]*\n(?:[^\n]*\n){0,8}?[ \t]*\),[ \t]*"([^"\n]+)"'
)


def contract_messages() -> dict[str, set[str]]:
    """Every revert message in contracts/*.vy (not contracts/testing/), with the files it is in."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "contracts").glob("*.vy")):
        for match in MESSAGE_PATTERN.finditer(path.read_text()):
            found.setdefault(next(group for group in match.groups() if group), set()).add(path.name)
    return found


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(ctx):
    """Build the base state before any row, so ape's isolation snapshots it once."""


def balances(x: Ctx, row: Row, who) -> dict[str, int]:
    """The row's token held by the contracts it concerns and by its caller."""
    token = x.token(row.token)
    holders = {"clearinghouse": x.ch, "orders": x.orders}  # Orders escrows execution fees
    if row.contract == "LiquidationEngine":
        holders["liquidation engine"] = x.engine  # holds nothing, and must not start to
    if row.contract == "LiquidityPool":
        holders["pool"] = x.pool
    if row.token == "QS":
        holders = {"clearinghouse": x.mini_ch, "pool": x.mini_pool, "orders": x.mini_orders}
    if who is not None:
        holders["caller"] = who
    return {f"{row.token}.balanceOf({name})": int(x.read(token.balanceOf, holder)) for name, holder in holders.items()}


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_hostile_input__reverts_with_its_message_and_changes_nothing(ctx, row):
    if row.setup is not None:
        row.setup(ctx)
    who = ctx.roles[row.caller] if row.caller else None
    roots_before = storage_roots(ctx.chain, ctx.contracts)
    balances_before = balances(ctx, row, who)
    views_before = row.views(ctx) if row.views else ()
    height = ctx.chain.blocks.height
    nonce = who.nonce if who is not None else None

    expected = TransactionError.DEFAULT_MESSAGE if row.message is NO_REASON else row.message
    with ape.reverts(expected) as revert:
        row.call(ctx, who)

    if who is None:
        assert ctx.chain.blocks.height == height, "a view row must not send a transaction"
    else:
        # a real transaction from the row's caller, mined and failed
        assert revert.value.txn.sender == who.address
        assert who.nonce == nonce + 1
        assert ctx.chain.blocks.height == height + 1
    changed = [name for name, root in storage_roots(ctx.chain, ctx.contracts).items() if roots_before[name] != root]
    assert not changed, f"storage changed in {changed}"
    assert balances(ctx, row, who) == balances_before
    assert (row.views(ctx) if row.views else ()) == views_before


def test_rows__ids_are_unique():
    ids = [row.id for row in ROWS]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_rows__every_contract_message_is_covered_or_allow_listed():
    in_sources = contract_messages()
    covered = {row.message for row in ROWS}
    missing = sorted(set(in_sources) - covered - set(UNREACHABLE))
    assert not missing, f"messages no row reaches (add a row, or allow-list with a reason): {missing}"


def test_rows__allow_list_is_exact():
    in_sources = contract_messages()
    covered = {row.message for row in ROWS}
    assert not (set(UNREACHABLE) & covered), f"allow-listed but reached by a row: {set(UNREACHABLE) & covered}"
    assert set(UNREACHABLE) <= set(in_sources), f"allow-listed but not in contracts/: {set(UNREACHABLE) - set(in_sources)}"


def test_rows__every_external_function_has_a_row(project):
    """Every state-changing external function (and constructor) of every protocol contract."""
    missing = []
    for name in ("OracleRouter", "Clearinghouse", "Orders", "LiquidationEngine", "Configurator", "MarginLens", "LiquidityPool"):
        abi = getattr(project, name).contract_type.abi
        mutating = {f.name for f in abi if f.type == "function" and f.stateMutability not in ("view", "pure")}
        if any(f.type == "constructor" and f.inputs for f in abi):
            mutating.add("__init__")
        have = {row.function for row in ROWS if row.contract == name}
        missing += [f"{name}.{function}" for function in sorted(mutating - have)]
    assert not missing, f"external functions without a hostile-input row: {missing}"


def test_doc__matches_the_table():
    rendered = render(ROWS, UNREACHABLE)
    assert DOC_PATH.exists() and DOC_PATH.read_text() == rendered, (
        f"{DOC_PATH.relative_to(ROOT)} is out of date: "
        "run `.venv/bin/python -m tests.unit.hostile_inputs_table > docs/hostile-inputs.md`"
    )
