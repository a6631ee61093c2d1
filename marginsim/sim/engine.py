"""The simulation loop: time, oracle rounds, traders, competing keepers, metrics.

One step (scenario.step_seconds) does, in order:
1. move the chain's clock to the step's time;
2. publish every Chainlink round due by then (marginsim.feeds.publish_rounds on the true path),
   then `OracleRouter.sync`, as the oracle bot does; feeds without a path get heartbeat rounds;
   after each round, the keepers fill the traders' orders that round prices (delayed orders:
   an order placed in one step fills at the first round dated a settlement delay later);
3. read the new Clearinghouse events once (the keepers' shared view of the chain);
4. traders whose health fell below their threshold top up or place an order to close;
5. every keeper mirrors every indexed account's health off-chain, confirms its candidates with
   one batched on-chain view, and, in a random order drawn from the seed, sends the
   liquidations that pay for their gas; a keeper that loses a race pays for a reverted call;
6. record a SeriesPoint.

Simulated blocks are time / block_seconds: delays are counted in them, whatever the chain mines.
"""

from __future__ import annotations

import contextlib
import math
import time as wallclock
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from marginsim import feeds, risk
from marginsim.chain.revm import Revert, RevmChain
from marginsim.keeper.errors import REVERTS
from marginsim.keeper.executor import liquidate, onchain_healths, realise
from marginsim.keeper.indexer import AccountIndexer
from marginsim.keeper.market import read_collaterals, read_market_params, read_markets
from marginsim.keeper.mirror import Keeper
from marginsim.keeper.orders import PendingOrder, due_orders, fill_order
from marginsim.keeper.planner import collateral_for_sale, losses_to_realise, plan_liquidations
from marginsim.protocol import (
    DEFAULT_CONFIG,
    Protocol,
    ProtocolConfig,
    account_id,
    deploy_protocol,
)
from marginsim.risk import health_of
from marginsim.sim.agents import TraderState
from marginsim.sim.fastchain import fast
from marginsim.sim.results import BadDebtRecord, KeeperStats, LiquidationRecord, OracleRound, SeriesPoint, SimulationResult
from marginsim.sim.scenario import Scenario, ScenarioError, gas_price_gwei, price_path
from marginsim.story import advance_time

WAD = 10**18
MAX_UINT = 2**256 - 1
MARKET_UNDERLYING = {"ETH-PERP": "WETH", "BTC-PERP": "WBTC"}
TOPUP_SHARE = 0.5  # a top-up adds this share of the first deposit, in settlement token, at most 3 times
REVERTED_CALL_GAS = 45_000  # what a liquidate() that reverts after the margin check costs a loser
KEEPER_WORKING_CAPITAL_USD = 10_000_000  # settlement tokens each keeper holds to buy collateral
# a long opening (each transaction a block a second later) republishes every feed this often, as
# an oracle's heartbeat would, and the keepers fill the opens each round prices: hundreds of
# traders take more than a feed's hour-long heartbeat to open (none of this happens for 30)
OPENING_HEARTBEAT_SECONDS = 1_800
ORDER_FEES_FUNDED = 4  # execution fees each trader is funded for: its open, its close and spares
HEALTH_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # the series' health bands
HEALTH_CAP = 10.0  # health quantiles are capped here for plotting


class MirrorMismatch(AssertionError):
    """The keeper's off-chain health differs from the contract's (verify_mirror runs only)."""


def protocol_config(scenario: Scenario, start_prices: dict[str, float]) -> ProtocolConfig:
    """The default protocol with the scenario's overrides and the paths' starting prices."""
    collaterals = []
    for token in DEFAULT_CONFIG.collaterals:
        overrides = dict(scenario.collaterals.get(token.symbol, {}))
        feed = replace(token.feed, **overrides.pop("feed", {}))
        market = next((m for m, u in MARKET_UNDERLYING.items() if u == token.symbol and m in start_prices), None)
        if market is not None:
            feed = replace(feed, price_usd=start_prices[market])
        collaterals.append(replace(token, feed=feed, **overrides))
    markets = tuple(replace(m, **scenario.markets.get(m.name, {})) for m in DEFAULT_CONFIG.markets)
    overrides = {k: v for k, v in scenario.protocol.items()}
    return replace(DEFAULT_CONFIG, collaterals=tuple(collaterals), markets=markets, **overrides)


def check_parameters(scenario: Scenario) -> None:
    """Deploy the scenario's protocol on a scratch revm chain (a third of a second): the
    contracts' first refusal of its parameters becomes a one-line ScenarioError, before a run
    deploys anything. The contracts hold the bounds; this asks them rather than copying them."""
    start_prices = {spec.market: float(price_path(spec, scenario.seed).prices[0]) for spec in scenario.feeds}
    chain = RevmChain()
    try:
        deploy_protocol(chain.project, chain.signers(1)[0], protocol_config(scenario, start_prices))
    except Revert as error:
        raise ScenarioError(f"scenario {scenario.source}: the contracts refuse its parameters: {error.message}") from None


def run_simulation(
    project: Any,
    chain: Any,
    signers: list[Any],
    scenario: Scenario,
    seed: int | None = None,
    network: str = "local",
    on_step: Callable[[int, int], None] | None = None,
    verify_mirror: bool = False,
) -> SimulationResult:
    """Deploy a fresh protocol and run `scenario` on it; `signers` needs 2 + keepers + traders."""
    started = wallclock.perf_counter()
    seed = scenario.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    needed = signers_needed(scenario)
    if len(signers) < needed:
        raise ValueError(f"simulate: the scenario needs {needed} funded accounts, the network has {len(signers)}")

    # ---------------------------------------------------------------- paths and rounds
    paths = {spec.market: price_path(spec, seed) for spec in scenario.feeds}
    path_start = {m: int(p.timestamps[0]) for m, p in paths.items()}
    duration = min(int(p.timestamps[-1] - p.timestamps[0]) for p in paths.values())
    if scenario.duration_seconds is not None:
        duration = min(duration, scenario.duration_seconds)
    rounds = {
        spec.market: feeds.publish_rounds(
            (
                (int(t) - path_start[spec.market], float(p))
                for t, p in zip(paths[spec.market].timestamps, paths[spec.market].prices, strict=False)
            ),
            feeds.PublisherConfig(
                deviation_threshold=spec.deviation, heartbeat_seconds=spec.heartbeat, publication_lag_seconds=spec.lag_seconds
            ),
        )
        for spec in scenario.feeds
    }
    start_prices = {m: float(p.prices[0]) for m, p in paths.items()}
    gas_gwei = gas_price_gwei(scenario.gas)

    # ---------------------------------------------------------------- protocol and liquidity
    deployer, lp = signers[0], signers[1]
    keeper_signers = signers[2 : 2 + len(scenario.keepers)]
    trader_signers = signers[2 + len(scenario.keepers) : needed]
    protocol = _fast_protocol(deploy_protocol(project, deployer, protocol_config(scenario, start_prices)), chain)
    ch, usdc, lens = protocol.clearinghouse, protocol.settlement, protocol.lens
    unit = 10**protocol.config.settlement_decimals
    pool_amount = int(scenario.pool_usd * unit)
    # every wallet is paid from the deployer's balance (it holds each mock's supply; on a real
    # token it must be funded): nothing here mints
    protocol.fund(usdc, lp, pool_amount, deployer)
    usdc.approve(protocol.pool, pool_amount, sender=lp)
    protocol.pool.deposit(pool_amount, lp, sender=lp)
    if scenario.insurance_usd > 0:
        amount = int(scenario.insurance_usd * unit)
        usdc.approve(ch, amount, sender=deployer)
        ch.fund_insurance(amount, sender=deployer)
    for signer in keeper_signers:
        protocol.fund(usdc, signer, KEEPER_WORKING_CAPITAL_USD * unit, deployer)
        usdc.approve(ch, MAX_UINT, sender=signer)

    result = SimulationResult(scenario=scenario.name, seed=seed, network=network, started_block=chain.blocks.head.number)
    replayed = [spec.market for spec in scenario.feeds if spec.kind == "replay"]
    if replayed:
        result.clock_start = path_start[replayed[0]]
    keepers = [Keeper(spec, signer, protocol) for spec, signer in zip(scenario.keepers, keeper_signers, strict=False)]
    for keeper in keepers:
        result.keepers[keeper.spec.name] = KeeperStats(keeper.spec.name)

    # ---------------------------------------------------------------- traders open
    book = _OrderBook(protocol)
    state = _LoopState(protocol, scenario, rounds, start_prices)
    heartbeat_at = chain.pending_timestamp

    def keep_feeds_alive() -> None:
        nonlocal heartbeat_at
        if chain.pending_timestamp - heartbeat_at < OPENING_HEARTBEAT_SECONDS:
            return
        heartbeat_at = chain.pending_timestamp
        for symbol, feed in protocol.feeds.items():
            protocol.publish(symbol, int(feed.latestRoundData()[1]), deployer)
        for market in protocol.markets.values():
            book.fill_due(market, keepers, result, gas_gwei(0), state)

    traders = _open_traders(protocol, scenario, trader_signers, rng, deployer, book, keep_feeds_alive)
    # the opening orders fill at the first round of step 0, a settlement delay after they were placed
    chain_start = chain.pending_timestamp + int(protocol.orders.settlement_delay())
    # every block since the run's deployment: a long opening spans more than any fixed window
    events = AccountIndexer(chain, ch, protocol.liquidation_engine, result.started_block)
    liquidatable_since: dict[int, int] = {}
    bad_debt_total = 0.0
    static = _static_parameters(protocol)

    steps = duration // scenario.step_seconds
    clock_blocks = 0  # empty blocks the clock's moves mined: not transactions
    for step in range(steps + 1):
        t = step * scenario.step_seconds
        sim_block = t // scenario.block_seconds
        clock_blocks += _move_clock(chain, chain_start + t)
        gas_price = gas_gwei(t)
        eth_price = state.publish_due(
            t,
            chain,
            deployer,
            result,
            sim_block,
            lambda market, gas_price=gas_price: book.fill_due(market, keepers, result, gas_price, state),
        )
        state.refresh_idle_feeds(t, chain, deployer)

        touched = events.touched_accounts()
        loaded = {account: keepers[0].load(account) for account in touched}  # one read, every keeper's view
        for keeper in keepers:
            keeper.observe(touched, loaded)
        views, collateral = state.market_views(chain_start + t)
        debt = risk.read_debt_view(protocol.clearinghouse)  # debts grow without an event: one read a step
        for keeper in keepers:
            keeper.read_debt(debt)
        # health of every account from the exact off-chain mirror (one EVM margin() costs ~20 ms
        # here, the mirror ~0.1 ms); verify_mirror runs assert it equals the contract's each step
        # one scan a step: every keeper mirrors the same accounts (`loaded`), so the metrics and
        # each keeper's candidates share it
        scan_started = wallclock.perf_counter()
        margins = keepers[0].scan_margins(views, collateral, chain_start + t)
        scan_seconds = wallclock.perf_counter() - scan_started
        result.scan_seconds_total += scan_seconds
        result.scan_seconds_max = max(result.scan_seconds_max, scan_seconds)
        result.scan_accounts_max = max(result.scan_accounts_max, len(margins))
        healths = _mirror_healths(keepers[0], margins)
        for account, h in healths.items():
            if h < WAD:
                liquidatable_since.setdefault(account, sim_block)
            else:
                liquidatable_since.pop(account, None)
        if verify_mirror:
            accounts = sorted(healths)
            onchain = onchain_healths(lens, accounts)
            _verify_mirror(keepers[0], views, collateral, chain.blocks.head.timestamp, onchain)

        result.trader_topups, result.trader_closes = _traders_act(
            traders, healths, protocol, unit, result.trader_topups, result.trader_closes, book
        )
        _keepers_act(
            keepers,
            protocol,
            views,
            collateral,
            chain_start + t,
            sim_block,
            t,
            gas_price,
            eth_price,
            rng,
            result,
            liquidatable_since,
            static,
            margins,
        )

        for record in _bad_debt_records(events.take_bad_debt_logs(), unit, t, sim_block):
            result.bad_debt.append(record)
            bad_debt_total += record.shortfall_usd
        result.series.append(state.series_point(t, sim_block, paths, bad_debt_total, healths))
        result.peak_open_interest_usd = max(result.peak_open_interest_usd, result.series[-1].open_interest_usd)
        if on_step:
            on_step(step, steps)
    result.censored_delays = [sim_block - since for since in liquidatable_since.values()]

    all_accounts = sorted(set(keepers[0].accounts) | {tr.account for tr in traders})
    # one margin read per account gives both end figures: health (as MarginLens.healths computes
    # it) and the negative equity the books have not yet called bad debt, positions or not (a
    # debt behind collateral nobody bought has no health to show it)
    final = []
    for account in all_accounts:
        try:
            equity, maintenance, _ = ch.margin(account)
        except REVERTS:
            result.unpriced_at_end += 1  # an asset it holds is halted at the end: no figure to give
            continue
        final.append((int(equity), int(maintenance)))
    result.accounts = len(all_accounts)
    result.still_liquidatable_at_end = sum(1 for equity, maintenance in final if risk.health(equity, maintenance) < WAD)
    short = [equity for equity, _ in final if equity < 0]
    result.underwater_at_end = len(short)
    result.underwater_at_end_usd = -sum(short) / WAD
    result.steps = steps + 1
    # one block per transaction once the run starts, but the empty blocks the clock's moves mined
    result.transactions = chain.blocks.head.number - result.started_block - clock_blocks
    result.wall_seconds = wallclock.perf_counter() - started
    return result


def signers_needed(scenario: Scenario) -> int:
    """Senders a run of `scenario` takes: the deployer, the LP, each keeper and each trader."""
    return 2 + len(scenario.keepers) + scenario.traders.count


def run_on_revm(
    scenario: Scenario, seed: int | None = None, on_step: Callable[[int, int], None] | None = None
) -> tuple[SimulationResult, RevmChain]:
    """`run_simulation` on a fresh revm chain with the senders the scenario takes; the chain too,
    for its transaction and view-call counts."""
    chain = RevmChain()
    signers = chain.signers(signers_needed(scenario))
    return run_simulation(chain.project, chain, signers, scenario, seed=seed, network="revm", on_step=on_step), chain


# -------------------------------------------------------------------- helpers


def _move_clock(chain: Any, target: int) -> int:
    """Move the clock to `target`; returns the empty blocks that mined (one on the embedded
    chain and on revm, none on a node that moves its clock without a block)."""
    now = chain.pending_timestamp
    if target <= now:
        return 0
    before = chain.blocks.head.number
    advance_time(chain, target - now)
    return chain.blocks.head.number - before


def _open_traders(
    protocol: Protocol,
    scenario: Scenario,
    signers: list[Any],
    rng: np.random.Generator,
    funder: Any,
    book: _OrderBook,
    after_each: Callable[[], None] = lambda: None,
) -> list[TraderState]:
    """Draw, fund (from `funder`: the collateral, settlement token for its orders' execution
    fees, and for a trader who tops up a reserve for its three top-ups), deposit and place each
    trader's opening order (filled at the first round of the run, or at a heartbeat of a long
    opening: `after_each` runs after each trader)."""
    spec = scenario.traders
    ch, oracle = protocol.clearinghouse, protocol.oracle
    traders: list[TraderState] = []
    for i, signer in enumerate(signers):
        market = spec.markets[int(rng.integers(len(spec.markets)))]
        symbol = spec.draw_collateral(rng)
        collateral_usd = spec.draw_collateral_usd(rng)
        leverage = spec.draw_leverage(rng)
        long = bool(rng.random() < spec.long_share)
        tops_up = bool(rng.random() < spec.topup_share)
        closes = (not tops_up) and bool(rng.random() < spec.close_share)
        token = protocol.settlement if symbol == "USDC" else protocol.tokens[symbol]
        price = WAD if symbol == "USDC" else int(oracle.price(token))
        weight = WAD if symbol == "USDC" else int(ch.collaterals(ch.collateral_slot(token)).weight)
        amount = int(collateral_usd * WAD) * 10 ** int(token.decimals()) // price
        protocol.fund(token, signer, amount, funder)
        if tops_up:
            unit = 10**protocol.config.settlement_decimals
            protocol.fund(protocol.settlement, signer, 3 * int(collateral_usd * TOPUP_SHARE * unit), funder)
            protocol.settlement.approve(ch, MAX_UINT, sender=signer)
        protocol.settlement.approve(protocol.orders, MAX_UINT, sender=signer)
        token.approve(ch, MAX_UINT, sender=signer)
        ch.deposit(token, amount, 0, sender=signer)
        market_id = protocol.markets[market]
        market_price = int(oracle.price(protocol.market_asset(market)))
        # leverage on the haircut value, capped under the initial margin the market asks for
        # that size today (size tiers and volatility raise it), with room for fee and premium
        usable = collateral_usd * weight / WAD
        size = int(usable * leverage * WAD) * WAD // market_price
        _, imr = protocol.lens.market_rates(market_id, size)
        size = min(size, int(0.9 * usable * WAD / imr * WAD) * WAD // market_price)
        # and within what is left of the open-interest cap on its side, in base units, and of the
        # pool's open-interest reserve in USD (at today's price: the fill's round may differ a little)
        state, cap = ch.market_state(market_id), int(ch.markets(market_id).oi_cap)
        value, need_others = (int(v) for v in protocol.pool.reserve(market_id, 0))
        reserved = risk.largest_reserved_side(value, need_others, int(protocol.pool.reserve_factor(market_id)), market_price)
        held_longs, held_shorts = (int(v) for v in protocol.pool.held(market_id))  # orders placed, not yet filled
        side = int(state.long_oi) + held_longs if long else int(state.short_oi) + held_shorts
        room = min(cap, reserved) - side
        size = min(size, room * 99 // 100)
        # its execution fees, and its open's bond (refunded at the fill: `risk.order_bond` on the
        # size at today's price, at most over the market's reserve factor)
        factor = int(protocol.pool.reserve_factor(market_id))
        bond = risk.order_bond(max(size, 0), market_price, book.bond_rate, book.scale, factor)
        protocol.fund(protocol.settlement, signer, ORDER_FEES_FUNDED * book.fee + bond, funder)
        if size > 0:
            book.commit(signer, market_id, size if long else -size)
        after_each()
        traders.append(
            TraderState(
                f"trader-{i + 1}",
                signer,
                account_id(signer),
                market,
                tops_up,
                closes,
                collateral_usd,
                topup_below=int(spec.topup_below_health * WAD),
                close_below=int(spec.close_below_health * WAD),
            )
        )
    return traders


def _traders_act(
    traders: list[TraderState],
    healths: dict[int, int],
    protocol: Protocol,
    unit: int,
    topups: int,
    closes: int,
    book: _OrderBook,
) -> tuple[int, int]:
    """Top up (at most three times, half the first deposit each) or place an order to close the
    whole position, below the threshold. Returns the running counts of top-ups and closes."""
    ch = protocol.clearinghouse
    for trader in traders:
        h = healths.get(trader.account, MAX_UINT)
        if h == MAX_UINT or trader.closed:
            continue
        if trader.tops_up and trader.topped_up < 3 and h < trader.topup_below:
            amount = int(trader.collateral_usd * TOPUP_SHARE * unit)  # from the reserve funded at open
            ch.deposit(protocol.settlement, amount, 0, sender=trader.signer)
            trader.topped_up += 1
            topups += 1
        elif trader.closes and h < trader.close_below:
            market = protocol.markets[trader.market]
            size = int(ch.positions(trader.account, market).size)
            if size != 0:
                try:
                    book.commit(trader.signer, market, -size)
                except REVERTS:
                    continue  # halted: the owner tries again next step
                closes += 1
            trader.closed = True
    return topups, closes


def _keepers_act(
    keepers: list[Keeper],
    protocol: Protocol,
    views: dict[int, risk.MarketView],
    collateral: dict[int, tuple[int, int, int]],
    timestamp: int,
    sim_block: int,
    t: float,
    gas_price: float,
    eth_price: float,
    rng: np.random.Generator,
    result: SimulationResult,
    liquidatable_since: dict[int, int],
    static: tuple[risk.LiquidationParams, int],
    margins: dict[int, tuple[int, int]],
) -> None:
    ch, lens = protocol.clearinghouse, protocol.lens
    params, settlement_to_wad = static
    plans: list[tuple[Keeper, list[tuple[Any, int]]]] = []
    insurance: list[int] = []  # read once a step, by the first keeper with a candidate

    def read_insurance() -> int:
        if not insurance:
            insurance.append(int(ch.insurance_balance()))
        return insurance[0]

    for keeper in keepers:
        stats = result.keepers[keeper.spec.name]
        # price each candidate off-chain first, as a keeper does to save its node calls; then
        # confirm the ones worth a transaction with one batched view
        worth, not_worth = plan_liquidations(
            keeper, views, collateral, timestamp, sim_block, params, read_insurance, gas_price, eth_price, margins
        )
        stats.skipped_unprofitable += len(not_worth)
        if not worth:
            continue
        onchain = onchain_healths(lens, list(dict.fromkeys(p.candidate.account for p in worth)))
        plan = []
        for planned in worth:
            candidate = planned.candidate
            if onchain[candidate.account] >= WAD:
                continue
            view = views[candidate.market]
            least = risk.mul_up(
                risk.least_close(
                    view,
                    abs(keeper.accounts[candidate.account].positions[candidate.market][0]),
                    candidate.equity,
                    candidate.maintenance,
                    params.buffer,
                    settlement_to_wad,
                ),
                view.price,
            )
            plan.append((candidate, least))
        if plan:
            plans.append((keeper, plan))

    order = rng.permutation(len(plans))
    landed: set[int] = set()
    sold: set[int] = set()
    for index in order:
        keeper, plan = plans[int(index)]
        stats = result.keepers[keeper.spec.name]
        if keeper.spec.censored_at(t):
            continue  # its transactions do not land in this window
        for candidate, least in plan:
            # the keepers confirmed against the same state: only an account another keeper has
            # already liquidated in this block can have changed since
            if candidate.account in landed and int(health_of(ch, candidate.account)) >= WAD:
                # another keeper's liquidation landed first in this block: on a real chain this
                # call would be mined and revert "liquidation: account healthy", costing its gas
                stats.lost_races += 1
                stats.gas_spent_usd += keeper.model.gas_cost_usd(REVERTED_CALL_GAS, gas_price, eth_price)
                continue
            try:
                done = liquidate(protocol, keeper.signer, candidate.account, candidate.market)
            except REVERTS:
                # e.g. the other keeper's close left no position in this market: a reverted call
                stats.lost_races += 1
                stats.gas_spent_usd += keeper.model.gas_cost_usd(REVERTED_CALL_GAS, gas_price, eth_price)
                continue
            landed.add(candidate.account)
            gas_cost = keeper.model.gas_cost_usd(done.gas_used, gas_price, eth_price)
            reward = done.keeper_reward * settlement_to_wad / WAD
            stats.liquidations += 1
            stats.revenue_usd += reward
            stats.gas_spent_usd += gas_cost
            result.liquidations.append(
                LiquidationRecord(
                    time=t,
                    block=sim_block,
                    keeper=keeper.spec.name,
                    account=candidate.account,
                    market=_name_of(protocol, candidate.market),
                    size_closed=done.size_closed / WAD,
                    notional_usd=abs(done.size_closed) * done.price / WAD / WAD,
                    penalty_usd=done.penalty * settlement_to_wad / WAD,
                    keeper_reward_usd=reward,
                    gas_used=done.gas_used,
                    gas_cost_usd=gas_cost,
                    least_notional_usd=least / WAD,
                    delay_blocks=sim_block - liquidatable_since.get(candidate.account, sim_block),
                    health_before=done.health_before / WAD,
                    health_after=math.inf if done.health_after == MAX_UINT else done.health_after / WAD,
                    full_close=done.health_after == MAX_UINT or ch.positions(candidate.account, candidate.market).size == 0,
                )
            )
            # positions gone, debt left against collateral: buy the collateral at its discount
            _buy_collateral(keeper, protocol, candidate.account, stats, gas_price, eth_price)
            sold.add(candidate.account)

    # accounts whose collateral is for sale (a debt above the engine's loan-to-value limit, or no
    # positions left and negative equity): the mirror finds them, the first keeper on duty buys it
    on_duty = [k for k in keepers if not k.spec.censored_at(t)]
    if on_duty:
        keeper = on_duty[0]
        # the step's scan holds for every account not liquidated since (those are in `sold`)
        for account in collateral_for_sale(keeper, views, collateral, timestamp, sold, margins):
            _buy_collateral(keeper, protocol, account, result.keepers[keeper.spec.name], gas_price, eth_price)
            sold.add(account)
    # open losses into debts that bear interest, by the first keeper on duty that does it (unpaid)
    realiser = next((k for k in on_duty if k.spec.realise_above_usd is not None), None)
    if realiser is not None:
        stats = result.keepers[realiser.spec.name]
        for planned in losses_to_realise(realiser, views, collateral, timestamp, realiser.spec.realise_above_usd, margins):
            if planned.account in sold:
                continue  # liquidated or sold this step: its mirror is stale until the next
            try:
                done = realise(protocol, realiser.signer, planned.account, planned.market)
            except REVERTS:
                stats.gas_spent_usd += realiser.model.gas_cost_usd(REVERTED_CALL_GAS, gas_price, eth_price)
                continue
            stats.losses_realised += 1
            stats.gas_spent_usd += realiser.model.gas_cost_usd(done.gas_used, gas_price, eth_price)


def _buy_collateral(
    keeper: Keeper, protocol: Protocol, account: int, stats: KeeperStats, gas_price: float, eth_price: float
) -> None:
    """The keeper buys what `account` has for sale (`Protocol.sell_collateral`). A sale it cannot
    pay for (its working capital spent, in a large run) reverts and is counted as a reverted call."""
    try:
        receipts = protocol.sell_collateral(account, keeper.signer)
    except REVERTS:
        stats.gas_spent_usd += keeper.model.gas_cost_usd(REVERTED_CALL_GAS, gas_price, eth_price)
        return
    for receipt in receipts:
        stats.gas_spent_usd += keeper.model.gas_cost_usd(int(receipt.gas_used), gas_price, eth_price)


class _OrderBook:
    """The traders' open orders, kept as the keeper package keeps them (`keeper.orders`), here
    from each commit's own receipt: each is filled (or cancelled as unfillable, its fee then going
    to the insurance fund) by the keepers in turn right after a round of its market dated at or
    after its executable time (`due_orders`, `fill_order`); a keeper is paid the order's fee."""

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self.fee = int(protocol.orders.execution_fee())
        self.bond_rate = int(protocol.orders.order_bond())
        self.scale = int(protocol.clearinghouse.SETTLEMENT_TO_WAD())
        self.unit = 10**protocol.config.settlement_decimals
        self.pending: dict[tuple[int, int], PendingOrder] = {}  # (account, market) -> order, in commit order
        self.turn = 0

    def commit(self, signer: Any, market: int, size_delta: int) -> None:
        receipt = self.protocol.orders.commit_order(market, size_delta, 0, 0, sender=signer)
        event = next(e for e in receipt.events if e.event_name == "OrderCommitted")
        key = (account_id(signer), market)
        self.pending.pop(key, None)  # a new commit replaces the account's order in the market
        self.pending[key] = PendingOrder(int(event.executable_at), int(event.fee), int(event.size_delta))

    def fill_due(self, market: int, keepers: list[Keeper], result: SimulationResult, gas_price: float, state: Any) -> None:
        if not self.pending or not keepers:
            return
        feed = self.protocol.feed_of_market(_name_of(self.protocol, market))
        due = due_orders(self.pending, market, int(feed.latestRoundData()[3]))
        eth_price = state.last_price.get("ETH-PERP", next(iter(state.last_price.values())))
        for account, _ in due:
            keeper = keepers[self.turn % len(keepers)]
            try:
                done = fill_order(self.protocol, keeper.signer, account, market)
            except REVERTS:
                continue  # the market's price is halted: a keeper's simulation says wait for a later round
            del self.pending[(account, market)]
            self.turn += 1
            stats = result.keepers[keeper.spec.name]
            if done.filled:  # cancelled: the fee went to insurance (or back to its owner)
                stats.orders_filled += 1
                stats.revenue_usd += done.fee / self.unit
            stats.gas_spent_usd += keeper.model.gas_cost_usd(done.gas_used, gas_price, eth_price)


def _fast_protocol(protocol: Protocol, chain: Any) -> Protocol:
    """The same protocol with every handle on the fast path (the embedded chain only)."""
    return replace(
        protocol,
        oracle=fast(protocol.oracle, chain),
        clearinghouse=fast(protocol.clearinghouse, chain),
        configurator=fast(protocol.configurator, chain),
        liquidation_engine=fast(protocol.liquidation_engine, chain),
        orders=fast(protocol.orders, chain),
        lens=fast(protocol.lens, chain),
        pool=fast(protocol.pool, chain),
        settlement=fast(protocol.settlement, chain),
        tokens={k: fast(v, chain) for k, v in protocol.tokens.items()},
        feeds={k: fast(v, chain) for k, v in protocol.feeds.items()},
    )


def _mirror_healths(keeper: Keeper, margins: dict[int, tuple[int, int]]) -> dict[int, int]:
    """Health (WAD; MAX_UINT without positions) of every account the keepers index, from this
    step's scan (`Keeper.scan_margins`), but those holding an asset whose price is halted."""
    healths = {}
    for account, mirror in keeper.accounts.items():
        if not mirror.positions:
            healths[account] = MAX_UINT
        elif account in margins:
            healths[account] = risk.health(*margins[account])
    return healths


def _static_parameters(protocol: Protocol) -> tuple[risk.LiquidationParams, int]:
    """The liquidation engine's parameters and the settlement scale: fixed for a run."""
    return risk.read_liquidation_params(protocol.liquidation_engine), int(protocol.clearinghouse.SETTLEMENT_TO_WAD())


def _name_of(protocol: Protocol, market: int) -> str:
    return next(name for name, mid in protocol.markets.items() if mid == market)


def _verify_mirror(
    keeper: Keeper,
    views: dict[int, risk.MarketView],
    collateral: dict[int, tuple[int, int, int]],
    timestamp: int,
    onchain: dict[int, int],
) -> None:
    for account in keeper.accounts:
        if not keeper.priced(account, views, collateral):
            continue
        mirror = risk.health(*risk.margin(keeper.snapshot(account, views, collateral, timestamp))[:2])
        if account in onchain and mirror != onchain[account]:
            raise MirrorMismatch(f"account {account:#x}: mirror health {mirror} != contract {onchain[account]}")


def _bad_debt_records(logs: list[Any], unit: int, t: float, sim_block: int) -> list[BadDebtRecord]:
    """`BadDebt(account, shortfall, insurance, socialised)` logs as records, in USD."""
    records = []
    for log in logs:
        data = bytes(log["data"])
        shortfall, insurance, socialised = (int.from_bytes(data[i : i + 32], "big") for i in (0, 32, 64))
        account = int.from_bytes(bytes(log["topics"][1]), "big")
        records.append(BadDebtRecord(t, sim_block, account, shortfall / unit, insurance / unit, socialised / unit))
    return records


class _LoopState:
    """Oracle publication and the per-step market reads the keepers share."""

    def __init__(
        self,
        protocol: Protocol,
        scenario: Scenario,
        rounds: dict[str, list[feeds.PublishedRound]],
        start_prices: dict[str, float],
    ):
        self.protocol = protocol
        self.scenario = scenario
        self.rounds = rounds
        self.next_round = {m: 1 for m in rounds}  # round 1 (the initial answer) is the deployment's
        self.last_price = dict(start_prices)
        self.idle_feeds = [s for s in protocol.feeds if s not in {MARKET_UNDERLYING[m] for m in rounds}]
        self.idle_refreshed_at = 0
        self.idle_prices: dict[str, int] = {}
        self.views: dict[int, risk.MarketView] = {}
        self.pool_value_usd = 0.0
        ch = protocol.clearinghouse
        # the markets a path drives (no trader holds another) and the collaterals: fixed for a run
        self.params = read_market_params(ch, [mid for name, mid in protocol.markets.items() if name in rounds])
        self.collaterals = read_collaterals(ch)

    def publish_due(
        self, t: float, chain: Any, publisher: Any, result: SimulationResult, sim_block: int, on_round: Callable[[int], None]
    ) -> float:
        """Publish every round due by `t`; after each, `on_round(market id)` (the keepers fill
        the orders it prices). Returns the ETH price."""
        for market, rounds in self.rounds.items():
            symbol = MARKET_UNDERLYING[market]
            i = self.next_round[market]
            while i < len(rounds) and rounds[i].round_time <= t:
                self.protocol.publish(symbol, rounds[i].answer, publisher)
                self.last_price[market] = rounds[i].answer / 10**8
                on_round(self.protocol.markets[market])
                result.rounds.append(
                    OracleRound(rounds[i].round_time, sim_block, market, rounds[i].answer / 10**8, rounds[i].reason)
                )
                i += 1
            self.next_round[market] = i
            if t == 0:
                # the deployment's answer is as old as the setup: publish the first round afresh
                self.protocol.publish(symbol, rounds[0].answer, publisher)
                result.rounds.append(OracleRound(0, sim_block, market, rounds[0].answer / 10**8, rounds[0].reason))
                on_round(self.protocol.markets[market])
        return self.last_price.get("ETH-PERP", next(iter(self.last_price.values())))

    def refresh_idle_feeds(self, t: float, chain: Any, publisher: Any) -> None:
        """Feeds no scenario path drives still need heartbeat rounds, or they go stale."""
        if t - self.idle_refreshed_at < 1_800 and t != 0:
            return
        self.idle_refreshed_at = t
        for symbol in self.idle_feeds:
            feed = self.protocol.feeds[symbol]
            answer = int(feed.latestRoundData()[1])
            self.protocol.publish(symbol, answer, publisher)
            self.idle_prices[str(self.protocol.tokens[symbol])] = answer * 10 ** (18 - int(feed.decimals()))

    def market_views(self, timestamp: int) -> tuple[dict[int, risk.MarketView], dict[int, tuple[int, int, int]]]:
        """The keepers' one read of the markets this step; the idle feeds' prices are the
        answers this loop republished (`refresh_idle_feeds`)."""
        self.views, collateral = read_markets(self.protocol, self.params, self.collaterals, self.idle_prices)
        return self.views, collateral

    def series_point(
        self, t: float, sim_block: int, paths: dict[str, feeds.PricePath], bad_debt: float, onchain: dict[int, int]
    ) -> SeriesPoint:
        ch, pool = self.protocol.clearinghouse, self.protocol.pool
        unit = 10**self.protocol.config.settlement_decimals
        market_price = {}
        for market, path in paths.items():
            index = min(int(t // path.step_seconds), len(path) - 1)
            market_price[market] = float(path.prices[index])
        oracle_price = {m: self.last_price[m] for m in paths}
        open_interest = 0.0
        for view in self.views.values():
            open_interest += (view.state.long_oi + view.state.short_oi) / WAD * view.price / WAD
        healths = [h for h in onchain.values() if h != MAX_UINT]
        # a halted price stops the pool's valuation: the last one stands until it returns
        with contextlib.suppress(*REVERTS):
            self.pool_value_usd = int(pool.totalAssets()) / unit
        capped = sorted(min(h / WAD, HEALTH_CAP) for h in healths)
        quantiles = tuple(float(q) for q in np.quantile(capped, HEALTH_QUANTILES)) if capped else (0.0,) * 5
        return SeriesPoint(
            time=t,
            block=sim_block,
            market_price=market_price,
            oracle_price=oracle_price,
            insurance_usd=int(ch.insurance_balance()) / unit,
            pool_value_usd=self.pool_value_usd,
            open_interest_usd=open_interest,
            bad_debt_usd=bad_debt,
            liquidatable_accounts=sum(1 for h in healths if h < WAD),
            health_quantiles=quantiles,  # type: ignore[arg-type]
            open_accounts=len(healths),
        )
