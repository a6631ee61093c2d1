"""The keeper bot: the simulator's keeper as a polling process against a real node.

Each iteration (`KeeperBot.step`) does, in order:
1. read the Clearinghouse's and LiquidationEngine's account events since the last iteration (eth_getLogs in chunks of
   `log_block_range` blocks, from the deployment block on the first) and reload every account
   they touched (`Keeper.observe`);
2. read the markets from the chain: parameters, state, oracle price and volatilities, the
   collateral prices, the liquidation parameters and the insurance fund;
3. plan with the keeper package's planner, as the simulator's keepers do: mirror every indexed
   account's health off-chain exactly (`marginsim.risk`), size each liquidation as the contract
   will and keep those whose reward (`LiquidationModel`) beats their gas at the current gas
   price and the oracle's ETH price, plus `min_profit_usd` (`keeper.planner.plan_liquidations`);
4. confirm those with one batched `MarginLens.healths` call and send them;
5. buy the collateral the engine puts up for sale (`keeper.planner.collateral_for_sale`: a debt
   above the loan-to-value limit, or no positions left and negative equity);
6. fill the orders a round has made due (`keeper.orders`: the pending orders from Orders' events,
   `due_orders` at each market's latest round), each whose execution fee beats the gas of a fill
   (`FILL_GAS`) plus `min_profit_usd`. An order whose round has passed is not sent: execute_order
   would only cancel it, paying the keeper nothing (its owner, or anyone, may `cancel_order` it).
   Without orders filled every trade lapses, so a keeper that only liquidates must say so
   (`fill_orders=False`, `--no-orders`);
7. after the fills, execute the LP requests the time has made due (`keeper.requests`: the
   pending requests from the pool's events, `due_requests` at the head block's time): each in
   its window whose fee beats the gas of an execution (`REQUEST_GAS`) plus `min_profit_usd`,
   after a dry run (a revert mined would cost the gas). A request past its window is left
   alone: `lapse_request` pays its caller nothing (the escrow and the fee go back to the LP), so
   it waits on chain for its LP to lapse it. `--no-orders` leaves the requests too: with no
   keeper executing them, they lapse unless their LPs execute them.

An asset whose price the router refuses (a circuit breaker's halt, a stale round) leaves its
accounts alone until it returns, with one line when that starts and when it ends.

A liquidation that reverts (another keeper's landed first, or the account recovered) is logged
as a lost race and the bot moves on; so is a fill that reverts "orders: no order" (another
keeper filled or cancelled it first), and a fill the router refuses (no price) waits; likewise a
request execution that reverts "pool: no request" (another keeper came first) is a lost race,
and one the pool refuses now (its reserve, its liquidity, a feed down) waits, said once.
Reads that fail (a node hiccup) skip the iteration with one line. Every action is one log line
naming the block, the account (or the LP), the market, the size (or the amounts), the reward
(or fee) and the gas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from marginsim import risk
from marginsim.bots.common import CHAIN_ERRORS, BotConfigError, first_line, run_loop
from marginsim.keeper.errors import REVERTS
from marginsim.keeper.executor import liquidate, onchain_healths, realise
from marginsim.keeper.indexer import AccountIndexer
from marginsim.keeper.market import read_collaterals, read_market_params, read_markets
from marginsim.keeper.mirror import Keeper
from marginsim.keeper.model import LiquidationModel
from marginsim.keeper.orders import FILL_GAS, OrderIndexer, PendingOrder, due_orders, fill_order
from marginsim.keeper.planner import (
    PlannedLiquidation,
    PlannedRealisation,
    collateral_for_sale,
    losses_to_realise,
    plan_liquidations,
)
from marginsim.keeper.requests import REQUEST_GAS, PendingRequest, RequestIndexer, due_requests
from marginsim.keeper.requests import execute as execute_request
from marginsim.protocol import Protocol
from marginsim.sim.scenario import KeeperSpec

WAD = 10**18
MAX_UINT = 2**256 - 1
REALISATIONS_PER_ITERATION = 5  # unpaid: the largest losses first, the rest at the next iterations


@dataclass(frozen=True)
class KeeperConfig:
    """How the keeper bot runs; the CLI options of scripts/keeper.py."""

    name: str = "keeper"
    poll_seconds: float = 12.0  # between iterations: about one block
    min_profit_usd: float = 0.0  # a liquidation, an order fill or an LP request must beat its gas by this much
    gas_price_gwei: float | None = None  # None: the provider's gas price at each iteration
    log_block_range: int = 2_000  # blocks per eth_getLogs call (public nodes cap the range)
    parameter_refresh_iterations: int = 25  # governed parameters are re-read this often (~5 min)
    # fill due orders and execute due LP requests, each for its fee; False (--no-orders): liquidate only
    fill_orders: bool = True
    realise_above_usd: float | None = None  # realise open losses this large into debts (--realise-above); None: never

    def __post_init__(self) -> None:
        if not self.poll_seconds >= 0:
            raise BotConfigError(f"keeper: --poll must be >= 0 seconds, got {self.poll_seconds}")
        if not self.min_profit_usd >= 0:
            raise BotConfigError(f"keeper: --min-profit must be >= 0 USD, got {self.min_profit_usd}")
        if self.gas_price_gwei is not None and not self.gas_price_gwei >= 0:
            raise BotConfigError(f"keeper: --gas-price-gwei must be >= 0, got {self.gas_price_gwei}")
        if self.parameter_refresh_iterations < 1:
            raise BotConfigError(f"keeper: parameter_refresh_iterations must be >= 1, got {self.parameter_refresh_iterations}")
        if self.log_block_range < 1:
            raise BotConfigError(f"keeper: log_block_range must be >= 1, got {self.log_block_range}")
        if self.realise_above_usd is not None and not self.realise_above_usd >= 1:
            raise BotConfigError(f"keeper: --realise-above must be >= 1 USD, got {self.realise_above_usd}")


@dataclass
class KeeperSummary:
    """What a keeper bot did, printed as one line when it stops."""

    iterations: int = 0
    liquidations: int = 0
    collateral_sales: int = 0
    lost_races: int = 0
    skipped_unprofitable: int = 0  # liquidations, order fills and LP requests not worth their gas, each iteration
    failed_iterations: int = 0
    orders_filled: int = 0
    orders_cancelled: int = 0  # sent, and cancelled by Orders (refused at the fill): no fee earned
    requests_executed: int = 0  # LP deposit and redemption requests executed, each for its fee
    losses_realised: int = 0  # open losses realised into debts (--realise-above): unpaid, for the LPs
    revenue_usd: float = 0.0  # keeper rewards and execution fees received
    fee_revenue_usd: float = 0.0  # of which execution fees (orders' and LP requests')
    gas_used: int = 0  # by every transaction the keeper sent
    gas_usd: float = 0.0
    interrupted: bool = False

    def line(self) -> str:
        how = "interrupted (Ctrl-C)" if self.interrupted else "stopped"
        return (
            f"keeper {how} after {self.iterations} iterations: {self.liquidations} liquidations, "
            f"{self.collateral_sales} collateral sales, {self.orders_filled} orders filled, "
            f"{self.orders_cancelled} cancelled, {self.lost_races} lost races, "
            f"{self.requests_executed} LP requests executed, "
            f"{self.skipped_unprofitable} skipped as unprofitable, {self.losses_realised} losses realised, "
            f"revenue ${self.revenue_usd:,.2f} "
            f"(fees ${self.fee_revenue_usd:,.2f}), "
            f"gas {self.gas_used:,} (${self.gas_usd:,.2f}), net ${self.revenue_usd - self.gas_usd:,.2f}"
        )


@dataclass(frozen=True)
class GovernedParameters:
    """What only governance changes: read once every `parameter_refresh_iterations`."""

    markets: dict[int, risk.MarketParams]  # market id -> parameters
    collaterals: dict[int, tuple[int, int, str]]  # slot -> (unit, weight, token)
    liquidation: risk.LiquidationParams  # the LiquidationEngine's


@dataclass(frozen=True)
class MarketData:
    """One iteration's read of the markets: what the mirror and the profitability model need."""

    block: int
    timestamp: int
    views: dict[int, risk.MarketView]  # market id -> view; a market without a price is left out
    collateral: dict[int, tuple[int, int, int]]  # slot -> (unit, weight, price); likewise
    eth_price_usd: float
    liquidation: risk.LiquidationParams
    insurance: int  # settlement token units
    missing: dict[str, str] = field(default_factory=dict)  # asset -> why the router gives no price


@dataclass(frozen=True)
class PlannedFill:
    """A due order worth filling: its fee against the gas of a fill."""

    account: int
    market: int
    order: PendingOrder
    fee_usd: float
    gas_usd: float  # FILL_GAS at the iteration's gas price


@dataclass(frozen=True)
class PlannedRequest:
    """A due LP request worth executing: its fee against the gas of an execution."""

    controller: str  # the LP: a deposit's payer, a redemption's owner
    request: PendingRequest
    fee_usd: float
    gas_usd: float  # REQUEST_GAS at the iteration's gas price


@dataclass
class Plan:
    """What one iteration decided to send, before sending it."""

    block: int
    gas_price_gwei: float
    eth_price_usd: float
    liquidations: list[PlannedLiquidation] = field(default_factory=list)
    collateral_sales: list[int] = field(default_factory=list)  # accounts
    fills: list[PlannedFill] = field(default_factory=list)
    requests: list[PlannedRequest] = field(default_factory=list)  # in the order they were placed
    realisations: list[PlannedRealisation] = field(default_factory=list)


def find_deployment_block(chain: Any, address: str) -> int:
    """The first block with code at `address` (binary search on eth_getCode). Needs the node to
    keep old state (an archive node, anvil, the embedded chain); otherwise pass --from-block."""
    head = chain.blocks.head.number
    try:
        if not chain.provider.get_code(address, block_id=head):
            raise BotConfigError(f"keeper: no contract at {address}")
        low, high = -1, head  # no code at low (or before genesis), code at high
        while high - low > 1:
            middle = (low + high) // 2
            if chain.provider.get_code(address, block_id=middle):
                high = middle
            else:
                low = middle
    except BotConfigError:
        raise
    except (*CHAIN_ERRORS, ValueError) as error:  # a pruned node: "missing trie node", "header not found"
        raise BotConfigError(
            f"keeper: --from-block: the node cannot say when {address} was deployed ({first_line(error)}); pass --from-block N"
        ) from None
    return high


def describe_account(account: int) -> str:
    """owner/subaccount, as the account id owner << 96 | subaccount encodes it."""
    return f"{to_checksum_address((account >> 96).to_bytes(20, 'big'))}/{account & (2**96 - 1)}"


class KeeperBot:
    """One keeper: the simulator's `Keeper` (event index, exact mirror, sizing, profitability)
    driven by a polling loop against whatever chain ape is connected to."""

    def __init__(
        self,
        protocol: Protocol,
        chain: Any,
        signer: Any,
        from_block: int,
        config: KeeperConfig = KeeperConfig(),
        log: Callable[[str], None] = print,
        model: LiquidationModel | None = None,
    ):
        if "WETH" not in protocol.tokens:
            raise BotConfigError("keeper: the deployment has no WETH feed to price gas in USD")
        self.protocol = protocol
        self.chain = chain
        self.signer = signer
        self.config = config
        self.log = log
        self.keeper = Keeper(KeeperSpec(config.name, min_profit_usd=config.min_profit_usd), signer, protocol, model)
        self.indexer = AccountIndexer(
            chain, protocol.clearinghouse, protocol.liquidation_engine, from_block, config.log_block_range
        )
        self.summary = KeeperSummary()
        self.market_names = {market_id: name for name, market_id in protocol.markets.items()}
        self._settlement_to_wad = int(protocol.clearinghouse.SETTLEMENT_TO_WAD())
        self._eth_price_usd = 0.0  # the last ETH price read, for gas in USD while WETH is halted
        self._missing: dict[str, str] = {}  # assets without a price at the last read
        self._approved = False
        self._governed: GovernedParameters | None = None
        self._governed_age = 0  # market_data reads since the governed parameters were read
        self._reported_unprofitable: set[int] = set()
        self.orders = OrderIndexer(chain, protocol.orders, from_block, config.log_block_range) if config.fill_orders else None
        # what was last said of each order not sent, (account, market, executable_at) -> why, so
        # it is said once; an order whose round passed stays here and is not looked at again
        self._order_notes: dict[tuple[int, int, int], str] = {}
        self.requests = RequestIndexer(chain, protocol.pool, from_block, config.log_block_range) if config.fill_orders else None
        # likewise for LP requests not sent or refused, (controller, executable_at) -> why, while due
        self._request_notes: dict[tuple[str, int], str] = {}
        self._share_unit: tuple[int, str] | None = None  # the pool's 10 ** decimals and symbol, read once

    # ------------------------------------------------------------------ the loop
    def run(self, max_iterations: int | None = None, sleep: Callable[[float], None] = time.sleep) -> KeeperSummary:
        """Poll until `max_iterations` or Ctrl-C; returns the summary (also kept in .summary)."""
        self.log(
            f"keeper {self.signer.address} watching Clearinghouse {self.protocol.clearinghouse.address} "
            f"from block {self.indexer.next_block}, every {self.config.poll_seconds:g} s"
        )
        if self.orders is None:
            self.log("keeper: --no-orders: liquidating only; orders lapse unless another keeper fills them")
            self.log("keeper: --no-orders: LP requests too: they lapse unless another keeper executes them")
        iterations, interrupted = run_loop(self.step, sleep, max_iterations)
        self.summary.iterations = iterations
        self.summary.interrupted = interrupted
        return self.summary

    def step(self) -> float:
        """One iteration; returns the seconds to wait before the next."""
        plan = self.scan()
        if plan is not None:
            try:
                self.execute(plan)
            except CHAIN_ERRORS as error:  # not a revert (those are handled): the node
                self.summary.failed_iterations += 1
                self.log(f"block {plan.block}  iteration cut short: {first_line(error)}")
        return self.config.poll_seconds

    # ------------------------------------------------------------------ deciding
    def scan(self) -> Plan | None:
        """Index, mirror, confirm and price: what to send now. None when the chain could not be
        read (logged; the next iteration tries again)."""
        try:
            head = self.chain.blocks.head
            self.index(head.number)
            data = self.market_data(head.number, head.timestamp)
            gas_price = self.gas_price_gwei()
            return self._plan(data, gas_price)
        except CHAIN_ERRORS as error:
            self.summary.failed_iterations += 1
            self.log(f"iteration skipped: cannot read the chain: {first_line(error)}")
            return None

    def index(self, head: int) -> None:
        """Reload every account the events up to block `head` touched. If a read fails, the
        same blocks are read again next time: no touched account is ever skipped."""
        start = self.indexer.next_block
        touched = self.indexer.touched_accounts(head)  # on a failed read it rewinds itself
        self.indexer.take_bad_debt_logs()  # the simulator books them; the bot logs bad debt from its own sales
        new = touched - self.keeper.accounts.keys()
        try:
            self.keeper.observe(touched)
        except CHAIN_ERRORS:
            self.indexer.next_block = start
            raise
        if touched:
            self.log(
                f"block {head}  events touched {len(touched)} accounts ({len(new)} new, {len(self.keeper.accounts)} indexed)"
            )

    def governed(self) -> GovernedParameters:
        """The parameters only governance changes, re-read every `parameter_refresh_iterations`."""
        if self._governed is None or self._governed_age >= self.config.parameter_refresh_iterations:
            ch = self.protocol.clearinghouse
            self._governed = GovernedParameters(
                markets=read_market_params(ch, list(self.market_names)),
                collaterals=read_collaterals(ch),
                liquidation=risk.read_liquidation_params(self.protocol.liquidation_engine),
            )
            self._governed_age = 0
        self._governed_age += 1
        return self._governed

    def market_data(self, block: int, timestamp: int) -> MarketData:
        """Every market's state, price and volatilities, and every collateral's price, now (an
        asset the router gives no price for left out, with its reason)."""
        governed = self.governed()
        missing: dict[str, str] = {}
        views, collateral = read_markets(self.protocol, governed.markets, governed.collaterals, missing=missing)
        weth = str(self.protocol.tokens["WETH"])
        weth_slot = next((slot for slot, (_, _, token) in governed.collaterals.items() if token == weth), None)
        if weth_slot in collateral:
            self._eth_price_usd = collateral[weth_slot][2] / WAD
        self.keeper.read_debt()  # the debt index's inputs: debts grow without an account's event
        return MarketData(
            block=block,
            timestamp=timestamp,
            views=views,
            collateral=collateral,
            eth_price_usd=self._eth_price_usd,
            liquidation=governed.liquidation,
            insurance=int(self.protocol.clearinghouse.insurance_balance()),
            missing=missing,
        )

    def gas_price_gwei(self) -> float:
        if self.config.gas_price_gwei is not None:
            return self.config.gas_price_gwei
        return int(self.chain.provider.gas_price) / 1e9

    def mirror_healths(self, data: MarketData | None = None) -> dict[int, int]:
        """Every indexed account's health as the mirror computes it, at the head block (after
        indexing the events up to it, so accounts the bot itself just changed are current); an
        account holding an asset without a price has none and is left out."""
        head = self.chain.blocks.head
        self.index(head.number)
        if data is None:
            data = self.market_data(head.number, head.timestamp)
        return {
            account: risk.health(*risk.margin(self.keeper.snapshot(account, data.views, data.collateral, data.timestamp))[:2])
            for account in self.keeper.accounts
            if self.keeper.priced(account, data.views, data.collateral)
        }

    def _plan(self, data: MarketData, gas_price: float) -> Plan:
        plan = Plan(data.block, gas_price, data.eth_price_usd)
        self._report_missing(data)
        # one pass of the mirror for the liquidations, the collateral sales and the realisations
        margins = self.keeper.scan_margins(data.views, data.collateral, data.timestamp)
        worth, not_worth = plan_liquidations(
            self.keeper,
            data.views,
            data.collateral,
            data.timestamp,
            data.block,
            data.liquidation,
            lambda: data.insurance,
            gas_price,
            data.eth_price_usd,
            margins,
        )
        for planned in not_worth:
            self.summary.skipped_unprofitable += 1
            candidate = planned.candidate
            if candidate.account not in self._reported_unprofitable:
                self._reported_unprofitable.add(candidate.account)
                self.log(
                    f"block {data.block}  {describe_account(candidate.account)} {self.market_names[candidate.market]} "
                    f"health {candidate.mirror_health / WAD:.4f}: reward ${planned.reward_usd:,.2f} < gas "
                    f"${planned.gas_usd:,.2f} + min profit ${self.config.min_profit_usd:,.2f}, skipped"
                )
        # priced first, then confirmed: one batched view for the ones worth a transaction
        confirmed = self._confirm(list(dict.fromkeys(p.candidate.account for p in worth)))
        for planned in worth:
            candidate = planned.candidate
            self._reported_unprofitable.discard(candidate.account)
            onchain = confirmed[candidate.account]
            if onchain >= WAD:
                self.log(
                    f"block {data.block}  {describe_account(candidate.account)} {self.market_names[candidate.market]}: "
                    f"mirror health {candidate.mirror_health / WAD:.4f}, chain {_health_text(onchain)}: "
                    "not liquidatable, skipped"
                )
                continue
            plan.liquidations.append(planned)
        plan.collateral_sales = collateral_for_sale(self.keeper, data.views, data.collateral, data.timestamp, margins=margins)
        if self.config.realise_above_usd is not None:
            plan.realisations = losses_to_realise(
                self.keeper, data.views, data.collateral, data.timestamp, self.config.realise_above_usd, margins
            )
        if self.orders is not None:
            try:
                self.orders.update(data.block)  # on a failed read it is left as it was
                plan.fills = self._plan_fills(data, gas_price)
            except CHAIN_ERRORS as error:  # a node hiccup: the liquidations planned above still go
                self.summary.failed_iterations += 1
                self.log(f"block {data.block}  order fills skipped: cannot read the chain: {first_line(error)}")
        if self.requests is not None:
            try:
                self.requests.update(data.block)  # on a failed read it is left as it was
                plan.requests = self._plan_requests(data, gas_price)
            except CHAIN_ERRORS as error:  # a node hiccup: what was planned above still goes
                self.summary.failed_iterations += 1
                self.log(f"block {data.block}  LP requests skipped: cannot read the chain: {first_line(error)}")
        return plan

    def _plan_fills(self, data: MarketData, gas_price: float) -> list[PlannedFill]:
        """The due orders worth a transaction: per market with orders waiting, its feed's latest
        round time makes them due (`due_orders`); the router's `round_price`, the view
        execute_order settles with, says whether that round is still the order's (0: it passed)
        or has no price now; then the fee must beat a fill's gas plus `min_profit_usd`."""
        pending = self.orders.pending
        live = {(account, market, order.executable_at) for (account, market), order in pending.items()}
        self._order_notes = {key: note for key, note in self._order_notes.items() if key in live}
        gas_usd = self.keeper.model.gas_cost_usd(FILL_GAS, gas_price, data.eth_price_usd)
        fills: list[PlannedFill] = []
        for market in sorted({market for _, market in pending}):
            name = self.market_names.get(market)
            if name is None:
                continue  # listed after this bot started: not in the deployment file
            round_time = int(self.protocol.feed_of_market(name).latestRoundData()[3])
            for account, order in due_orders(pending, market, round_time):
                key = (account, market, order.executable_at)
                if self._order_notes.get(key) == "passed":
                    continue
                what = f"block {data.block}  order of {describe_account(account)} {name} {_size_text(order.size_delta, name)}"
                fee_usd = order.fee * self._settlement_to_wad / WAD
                if fee_usd < gas_usd + self.config.min_profit_usd:  # first: it needs no node call
                    self.summary.skipped_unprofitable += 1
                    self._note_order(
                        key,
                        "unprofitable",
                        f"{what}: fee ${fee_usd:,.2f} < gas ${gas_usd:,.2f} + min profit "
                        f"${self.config.min_profit_usd:,.2f}, skipped",
                    )
                    continue
                try:
                    price = int(self.protocol.oracle.round_price(self.protocol.market_asset(name), order.executable_at))
                except REVERTS as error:
                    self._note_order(key, "waiting", f"{what}: no price to fill at ({first_line(error)}): waits")
                    continue
                if price == 0:
                    self._note_order(key, "passed", f"{what}: its round passed, not sent (a cancel pays the keeper nothing)")
                    continue
                if self._order_notes.get(key) != "refused":  # said once: the dry run says it again
                    self._order_notes.pop(key, None)
                fills.append(PlannedFill(account, market, order, fee_usd, gas_usd))
        return fills

    def _plan_requests(self, data: MarketData, gas_price: float) -> list[PlannedRequest]:
        """The due LP requests worth executing (`due_requests` at the head block's time), each
        whose fee beats the gas of an execution (`REQUEST_GAS`) plus `min_profit_usd`. Those not
        due yet wait; those past their window are dropped (with what was said of them): they are
        their LPs' to lapse, for no pay."""
        due = due_requests(self.requests.pending, data.timestamp)
        live = {(controller, request.executable_at) for controller, request in due}
        self._request_notes = {key: note for key, note in self._request_notes.items() if key in live}
        gas_usd = self.keeper.model.gas_cost_usd(REQUEST_GAS, gas_price, data.eth_price_usd)
        planned: list[PlannedRequest] = []
        for controller, request in due:
            key = (controller, request.executable_at)
            fee_usd = request.fee * self._settlement_to_wad / WAD
            if fee_usd < gas_usd + self.config.min_profit_usd:
                self.summary.skipped_unprofitable += 1
                self._note_request(
                    key,
                    "unprofitable",
                    f"block {data.block}  {_request_text(controller, request.deposit)}: execution fee ${fee_usd:,.2f} "
                    f"< gas ${gas_usd:,.2f} + min profit ${self.config.min_profit_usd:,.2f}, skipped",
                )
                continue
            if self._request_notes.get(key) == "unprofitable":  # said again if it turns so again
                self._request_notes.pop(key)
            planned.append(PlannedRequest(controller, request, fee_usd, gas_usd))
        if planned and self._share_unit is None:
            self._share_unit = (10 ** int(self.protocol.pool.decimals()), str(self.protocol.pool.symbol()))
        return planned

    def _note_request(self, key: tuple[str, int], note: str, line: str) -> None:
        """Log why an LP request is not sent (or waits), once for as long as the reason holds."""
        if self._request_notes.get(key) != note:
            self._request_notes[key] = note
            self.log(line)

    def _note_order(self, key: tuple[int, int, int], note: str, line: str) -> None:
        """Log why an order is not sent, once for as long as the reason holds."""
        if self._order_notes.get(key) != note:
            self._order_notes[key] = note
            self.log(line)

    def _report_missing(self, data: MarketData) -> None:
        """One line when an asset loses its price (its accounts wait) and one when it returns."""
        names = {str(token): symbol for symbol, token in self.protocol.tokens.items()}
        for asset, reason in data.missing.items():
            if asset not in self._missing:
                self.log(f"block {data.block}  no price for {names.get(asset, asset)} ({reason}): its accounts wait")
        for asset in self._missing.keys() - data.missing.keys():
            self.log(f"block {data.block}  {names.get(asset, asset)} is priced again")
        self._missing = dict(data.missing)

    def _confirm(self, accounts: list[int]) -> dict[int, int]:
        """On-chain health of `accounts`, in batched MarginLens.healths calls."""
        return onchain_healths(self.protocol.lens, accounts)

    # ------------------------------------------------------------------ acting
    def execute(self, plan: Plan) -> None:
        """Send the planned liquidations, then the collateral sales; a revert is logged, never raised."""
        ch = self.protocol.clearinghouse
        sold: set[int] = set()
        for planned in plan.liquidations:
            candidate = planned.candidate
            name = self.market_names[candidate.market]
            who = describe_account(candidate.account)
            try:
                done = liquidate(self.protocol, self.signer, candidate.account, candidate.market)
            except REVERTS as error:
                self.summary.lost_races += 1
                self._count_gas(getattr(error, "txn", None), plan)
                self.log(f"block {plan.block}  {who} {name}: liquidation reverted, lost the race: {first_line(error)}")
                continue
            receipt = done.receipt
            reward = done.keeper_reward * self._settlement_to_wad / WAD
            gas_usd = self._count_gas(receipt, plan)
            self.summary.liquidations += 1
            self.summary.revenue_usd += reward
            after = done.health_after
            kind = "full" if after == MAX_UINT or ch.positions(candidate.account, candidate.market).size == 0 else "partial"
            self.log(
                f"block {receipt.block_number}  liquidated {who} {name} size {abs(done.size_closed) / WAD:,.4f} "
                f"{name.split('-')[0]} ({kind}) at ${done.price / WAD:,.2f}  health {done.health_before / WAD:.4f} -> "
                f"{_health_text(after)}  reward ${reward:,.2f}  gas {done.gas_used:,} (${gas_usd:,.2f})"
            )
            if after == MAX_UINT and self._sell_collateral(candidate.account, plan):  # no positions left
                sold.add(candidate.account)
        for account in plan.collateral_sales:
            if account not in sold:
                self._sell_collateral(account, plan)
        # paid fills before unpaid realisations: an order whose round passes while we wait is lost
        for planned in plan.fills:
            self._fill(planned, plan)
        for planned in plan.requests:  # paid too: a request whose window passes pays no keeper
            self._execute_request(planned, plan)
        liquidated = {p.candidate.account for p in plan.liquidations} | sold
        for realisation in plan.realisations[:REALISATIONS_PER_ITERATION]:
            if realisation.account not in liquidated:  # changed since the plan: next iteration
                self._realise(realisation, plan)

    def _realise(self, planned: PlannedRealisation, plan: Plan) -> None:
        """Realise one open loss into the account's balance, where a debt bears interest for the
        LPs (`LiquidationEngine.realise_loss`, unpaid); a revert is logged, never raised."""
        name = self.market_names[planned.market]
        who = describe_account(planned.account)
        try:
            done = realise(self.protocol, self.signer, planned.account, planned.market)
        except REVERTS as error:
            self._count_gas(getattr(error, "txn", None), plan)
            self.log(f"block {plan.block}  {who} {name}: realisation reverted: {first_line(error)}")
            return
        gas_usd = self._count_gas(done.receipt, plan)
        self.summary.losses_realised += 1
        unit = self._settlement_to_wad / WAD
        self.log(
            f"block {done.receipt.block_number}  realised {who} {name} loss ${done.loss * unit:,.2f} into its balance "
            f"(debt ${planned.debt_after * unit:,.2f})  gas {done.gas_used:,} (${gas_usd:,.2f})"
        )

    def _fill(self, planned: PlannedFill, plan: Plan) -> None:
        """Send one due order's execute_order and log what came of it: a fill (the fee is ours),
        a cancel (Orders refused it at its round: no fee), or a revert (another keeper came
        first, or the price went away: logged, never raised)."""
        name = self.market_names[planned.market]
        who = describe_account(planned.account)
        key = (planned.account, planned.market, planned.order.executable_at)
        try:
            # a dry run at the head: a round that landed since the plan, a limit the fill price
            # misses or a margin gone would make it a cancel, which pays the keeper nothing
            if not self.protocol.orders.execute_order.call(planned.account, planned.market, sender=self.signer):
                line = f"block {plan.block}  {who} {name}: its fill would be refused now, not sent (no fee in a cancel)"
                self._note_order(key, "refused", line)
                return
            done = fill_order(self.protocol, self.signer, planned.account, planned.market)
        except REVERTS as error:
            self._count_gas(getattr(error, "txn", None), plan)
            reason = first_line(error)
            if "orders: no order" in reason:
                self.summary.lost_races += 1
                self.log(f"block {plan.block}  {who} {name}: order fill reverted, lost the race: {reason}")
            else:
                self.log(f"block {plan.block}  {who} {name}: order fill reverted, waits: {reason}")
            return
        receipt = done.receipt
        gas_usd = self._count_gas(receipt, plan)
        size = _size_text(done.size_delta, name)
        if done.filled:
            fee_usd = done.fee * self._settlement_to_wad / WAD
            self.summary.orders_filled += 1
            self.summary.revenue_usd += fee_usd
            self.summary.fee_revenue_usd += fee_usd
            self.log(
                f"block {receipt.block_number}  filled {who} {name} {size} at ${done.price / WAD:,.2f}  "
                f"fee ${fee_usd:,.2f}  gas {done.gas_used:,} (${gas_usd:,.2f})"
            )
        else:
            self.summary.orders_cancelled += 1
            where = "refunded to its owner" if done.refunded else "to the insurance fund"
            self.log(
                f"block {receipt.block_number}  cancelled {who} {name} {size}: {done.reason}  "
                f"fee ${planned.fee_usd:,.2f} {where}  gas {done.gas_used:,} (${gas_usd:,.2f})"
            )

    def _execute_request(self, planned: PlannedRequest, plan: Plan) -> None:
        """Send one due LP request's execute_request and log what came of it; a revert is logged,
        never raised: "pool: no request" is a lost race (another keeper executed it first, or its
        LP lapsed it), anything else (the pool cannot pay or admit it now, or its window just
        ended) waits, said once per reason."""
        request, what = planned.request, _request_text(planned.controller, planned.request.deposit)
        try:
            # a dry run at the head first: a revert mined costs the keeper its gas (a request the
            # pool cannot pay now would cost it again at every iteration), one called costs nothing
            self.protocol.pool.execute_request.call(planned.controller, sender=self.signer)
            done = execute_request(self.protocol, self.signer, planned.controller)
        except REVERTS as error:
            self._count_gas(getattr(error, "txn", None), plan)
            reason = first_line(error)
            if "pool: no request" in reason:
                self.summary.lost_races += 1
                self.log(f"block {plan.block}  {what}: execution reverted, lost the race: {reason}")
            else:  # its window just ended ("pool: request lapsed"): no longer due, left to its LP
                how = "its window ended, left to its LP" if "pool: request lapsed" in reason else "waits"
                line = f"block {plan.block}  {what}: execution reverted, {how}: {reason}"
                self._note_request((planned.controller, request.executable_at), reason, line)
            return
        receipt = done.receipt
        gas_usd = self._count_gas(receipt, plan)
        fee_usd = done.fee * self._settlement_to_wad / WAD
        self.summary.requests_executed += 1
        self.summary.revenue_usd += fee_usd
        self.summary.fee_revenue_usd += fee_usd
        if done.deposit:
            moved = f"{self._usd_text(done.assets)} for {self._shares_text(done.shares)}"
        else:
            moved = f"{self._shares_text(done.shares)} for {self._usd_text(done.assets)}"
        self.log(
            f"block {receipt.block_number}  executed the {'deposit' if done.deposit else 'redemption'} request of "
            f"{planned.controller}: {moved} to {done.receiver}  fee ${fee_usd:,.2f}  gas {done.gas_used:,} (${gas_usd:,.2f})"
        )

    def _usd_text(self, amount: int) -> str:
        """Settlement token units as dollars: "$1,000.00"."""
        return f"${amount * self._settlement_to_wad / WAD:,.2f}"

    def _shares_text(self, shares: int) -> str:
        """Pool shares in whole shares with the pool's symbol: "999.000000 msLP"."""
        if self._share_unit is None:
            self._share_unit = (10 ** int(self.protocol.pool.decimals()), str(self.protocol.pool.symbol()))
        unit, symbol = self._share_unit
        return f"{shares / unit:,.6f} {symbol}"

    def _sell_collateral(self, account: int, plan: Plan) -> bool:
        """Buy `account`'s collateral at the liquidation discount if it has no positions and a
        debt (Protocol.sell_collateral checks that on chain); True when something was bought."""
        protocol, who = self.protocol, describe_account(account)
        try:
            if int(protocol.clearinghouse.settlement(account)) >= 0:
                return False  # no debt: nothing to sell (sell_collateral checks the rest)
            if not self._approved:
                if int(protocol.settlement.allowance(self.signer, protocol.clearinghouse)) < MAX_UINT // 2:
                    receipt = protocol.settlement.approve(protocol.clearinghouse, MAX_UINT, sender=self.signer)
                    self._count_gas(receipt, plan)
                    self.log(
                        f"block {receipt.block_number}  approved the Clearinghouse to take settlement tokens "
                        "for collateral purchases"
                    )
                self._approved = True
            receipts = protocol.sell_collateral(account, self.signer)
        except REVERTS as error:
            self.log(f"block {plan.block}  {who}: collateral purchase failed: {first_line(error)}")
            return False
        unit = 10**protocol.config.settlement_decimals
        symbols = {str(token): symbol for symbol, token in protocol.tokens.items()}
        for receipt in receipts:
            gas_usd = self._count_gas(receipt, plan)
            for event in receipt.events:
                if event.event_name != "CollateralLiquidation":
                    continue
                self.summary.collateral_sales += 1
                symbol = symbols.get(str(event.token), str(event.token))
                decimals = next((c.decimals for c in protocol.config.collaterals if c.symbol == symbol), 18)
                self.log(
                    f"block {receipt.block_number}  bought collateral of {who}: {int(event.amount) / 10**decimals:,.6f} {symbol} "
                    f"for ${int(event.paid) / unit:,.2f}  gas {int(receipt.gas_used):,} (${gas_usd:,.2f})"
                )
            for event in receipt.events:
                if event.event_name == "BadDebt":
                    self.log(f"block {receipt.block_number}  {who}: bad debt ${int(event.shortfall) / unit:,.2f} booked")
        return bool(receipts)

    def _count_gas(self, receipt: Any, plan: Plan) -> float:
        """Add a mined transaction's gas to the summary; its USD cost at the gas price the
        decision used (--gas-price-gwei) or, without one, the price the receipt paid."""
        if receipt is None or not hasattr(receipt, "gas_used") or receipt.gas_used is None:
            return 0.0  # reverted before it was mined (gas estimation): nothing spent
        gas = int(receipt.gas_used)
        if self.config.gas_price_gwei is not None:
            gwei = self.config.gas_price_gwei
        else:
            gwei = int(getattr(receipt, "gas_price", 0) or 0) / 1e9 or plan.gas_price_gwei
        usd = self.keeper.model.gas_cost_usd(gas, gwei, plan.eth_price_usd)
        self.summary.gas_used += gas
        self.summary.gas_usd += usd
        return usd


def _health_text(health: int) -> str:
    return "no positions" if health == MAX_UINT else f"{health / WAD:.4f}"


def _request_text(controller: str, deposit: bool) -> str:
    """An LP request, for the log: "deposit request of 0xAb..."."""
    return f"{'deposit' if deposit else 'redemption'} request of {controller}"


def _size_text(size_delta: int, market_name: str) -> str:
    """An order's size in its base asset, signed: "+1.0000 ETH"."""
    return f"{size_delta / WAD:+,.4f} {market_name.split('-')[0]}"
