"""A review of the keeper bot's order filling and loss realisation, as an attacker would read it.

Driven in-process on the embedded chain with test_bots.py's deployment (five traders with ETH
positions) and test_bot_orders.py's helpers. Each finding is one test with its figures, written
against the code as reviewed (each failed there), and passing since its fix: a refused range is
halved (1, high: a log window flooded past a node's result cap blinded the bot for good); the
Orders log read cannot cost the iteration's liquidations (2); paid fills go before unpaid
realisations (3) and each fill is dry-run at the head first (4, 5: a round that landed since
the plan, a limit the fill misses); the fee is checked before any node call (6); realisations
are planned with the landing's slack (7); the bot drains the BadDebt logs it reads (9). Still
`xfail(strict=True)`: 8, a realisation is unpaid whatever the gas. The rest were refused as
found (other contracts' logs, unknown markets, many orders, a stale mirror).
"""

import time
from dataclasses import replace

import ape
import pytest
from web3.exceptions import Web3RPCError

import marginsim.bots.keeper as keeper_module
from marginsim import risk
from marginsim.keeper.indexer import AccountIndexer
from marginsim.keeper.orders import FILL_GAS, PendingOrder, due_orders
from marginsim.keeper.planner import losses_to_realise
from marginsim.orders import trade_now
from marginsim.protocol import account_id
from tests.sim.test_bot_orders import bot, commit, publish_round, trader  # noqa: F401  (trader: a fixture)
from tests.sim.test_bots import market  # noqa: F401  (the module fixture, reused)

# the keeper bot review replays against the embedded chain: `make test-slow` (see the README's Tests)
pytestmark = pytest.mark.slow

WAD = 10**18
USDC = 10**6
MAX_UINT = 2**256 - 1
ETH_PRICE = 2_000  # the deployment's WETH price, which prices the keeper's gas
NODE_CAP = "query returned more than 10000 results"  # Infura's eth_getLogs refusal (web3: Web3RPCError)


# ---------------------------------------------------------------- helpers


def btc_long(protocol, signer, size):
    """`signer` deposits 10,000 USDT (weight 0.95: $9,500 of margin, no settlement tokens) and goes
    long `size` BTC-PERP at $30,000: a market none of test_bots' traders is in."""
    ch, usdt = protocol.clearinghouse, protocol.tokens["USDT"]
    usdt.mint(signer, 10_000 * 10**6, sender=signer)
    usdt.approve(ch, MAX_UINT, sender=signer)
    ch.deposit(usdt, 10_000 * 10**6, 0, sender=signer)
    trade_now(ch, protocol.markets["BTC-PERP"], size, sender=signer)
    return account_id(signer)


def fund(protocol, signer, amount, spender):
    usdc = protocol.settlement
    usdc.mint(signer, amount, sender=signer)
    usdc.approve(spender, MAX_UINT, sender=signer)


def crash_eth(market, accounts):  # noqa: F811
    """ETH $2,000 -> $1,820 (-9%): test_bots' 10x long falls below maintenance."""
    protocol = market["protocol"]
    protocol.publish("WETH", 1_820 * 10**8, accounts[0])
    victim = market["traders"][("USDC", 10_000, 10)]
    assert risk.health_of(protocol.clearinghouse, victim) < WAD
    return victim


def cap_results(reader, cap):
    """The node refuses an eth_getLogs range holding more than `cap` logs, as Infura refuses
    more than 10,000 (Alchemy and others cap the response likewise)."""
    read = type(reader)._logs

    def logs(first, last):
        found = read(reader, first, last)
        if len(found) > cap:
            raise Web3RPCError(NODE_CAP)
        return found

    reader._logs = logs


def receipt_gas(chain, line):
    """The gas of the transaction a bot log line names by its block (one transaction a block)."""
    block = int(line.split()[1])
    [txn] = chain.blocks[block].transactions
    return int(chain.provider.get_receipt(txn.txn_hash.hex()).gas_used)


class CountingOracle:
    """The router, counting the `round_price` calls the bot makes (one node call each)."""

    def __init__(self, oracle):
        self._oracle = oracle
        self.round_price_calls = 0

    def __getattr__(self, name):
        return getattr(self._oracle, name)

    def round_price(self, *args):
        self.round_price_calls += 1
        return self._oracle.round_price(*args)


# ---------------------------------------------------------------- index poisoning and reads


def test_log_flood__a_window_over_the_nodes_result_cap_blinds_the_keeper_for_good(market, chain, accounts):  # noqa: F811
    """An attacker floods one 2,000-block window with cheap account events (1-unit USDC deposits:
    no fee, no margin). eth_getLogs of that window is refused every iteration, `next_block`
    never moves past it (a refused read is retried whole), and the bot never liquidates again.
    Here the node's cap is the window's natural count + 3 and four deposits pass it; against
    Infura it takes 10,001 deposits, at the gas measured here."""
    protocol = market["protocol"]
    ch, usdc, attacker = protocol.clearinghouse, protocol.settlement, accounts[13]
    natural = len(AccountIndexer(chain, ch, protocol.liquidation_engine, market["block_before"]).read())
    fund(protocol, attacker, 10 * USDC, ch)
    gas = [int(ch.deposit(usdc, 1, 0, sender=attacker).gas_used) for _ in range(4)]
    victim = crash_eth(market, accounts)
    log = []
    keeper = bot(market, chain, accounts[2], log, fill_orders=False)
    cap_results(keeper.indexer, natural + 3)
    for _ in range(3):
        keeper.step()
    # the figures: a repeated 1-unit deposit costs 54,870 gas; 10,001 of them, 5.5e8 gas, are
    # $1,097 at 1 gwei and ETH $2,000 (~$11 at the 0.01 gwei of an L2), once: the window stays
    assert gas[-1] < 60_000 and 10_001 * gas[-1] * 1e-9 * ETH_PRICE < 1_200
    if keeper.summary.failed_iterations:  # today: every iteration, on the same window
        assert keeper.summary.failed_iterations == 3 and keeper.indexer.next_block == market["block_before"]
        assert log[-1] == f"iteration skipped: cannot read the chain: {NODE_CAP}"
        assert risk.health_of(ch, victim) < WAD  # still liquidatable, and still not liquidated
    assert keeper.summary.liquidations >= 1


def test_orders_log_read_fails__the_iterations_liquidations_are_skipped_too(market, chain, accounts):  # noqa: F811
    """`_plan` keeps the liquidations when planning fills fails ("the liquidations planned above
    still go"), but `scan` reads Orders' logs before planning anything: a node refusing that read
    (a hiccup, or Orders' own events flooded past its cap, as above) costs every liquidation."""
    victim = crash_eth(market, accounts)
    log = []
    keeper = bot(market, chain, accounts[2], log)  # fills orders: the default

    def refused(first, last):
        raise Web3RPCError(NODE_CAP)

    keeper.orders._logs = refused
    keeper.step()
    if keeper.summary.liquidations == 0:  # today: the whole iteration is skipped
        assert log[-1] == f"iteration skipped: cannot read the chain: {NODE_CAP}"
    assert victim in keeper.keeper.accounts  # the account index was read: only the orders' read failed
    assert keeper.summary.liquidations >= 1


def test_index_poisoning__other_contracts_unknown_markets_and_many_orders_are_refused(market, chain, accounts, project):  # noqa: F811
    """Refused: (1) a rogue contract (a second Orders wired to the same Clearinghouse) logs an
    OrderCommitted with the real topic, due and for a real account: the reader's address filter
    drops it, nothing is sent; (2) Orders refuses an order for an unlisted market, and an order of
    a market listed after the bot started is skipped without a node call; (3) 100,000 pending
    orders cost `due_orders` well under a second, each costing its placer a $2 fee, its margin
    and the commit's gas."""
    protocol = market["protocol"]
    ch, eth, owner = protocol.clearinghouse, protocol.markets["ETH-PERP"], accounts[4]  # test_bots' 10x long
    rogue = accounts[0].deploy(project.Orders, ch, protocol.lens)
    fund(protocol, owner, 10 * USDC, rogue)
    receipt = rogue.commit_order(eth, -WAD, 0, 0, sender=owner)  # a reduction: no hold in the pool, so it commits
    [event] = [e for e in receipt.events if e.event_name == "OrderCommitted"]
    publish_round(market, chain, accounts, int(event.executable_at))
    log = []
    keeper = bot(market, chain, accounts[2], log)
    plan = keeper.scan()
    rogue_log = next(entry for entry in receipt.logs if entry["address"] == rogue.address)
    rogue_topic = "0x" + bytes(rogue_log["topics"][0]).hex()
    assert keeper.orders.topics[rogue_topic] == "OrderCommitted"  # the same event, from another address
    assert keeper.orders.pending == {} and plan.fills == [] and keeper.summary.gas_used == 0

    with ape.reverts("orders: unknown market"):
        protocol.orders.commit_order(99, WAD, 0, 0, sender=owner)
    counting = CountingOracle(protocol.oracle)
    keeper.protocol = replace(protocol, oracle=counting)
    keeper.orders.pending[(account_id(owner), 99)] = PendingOrder(0, 1_000 * USDC, WAD)  # listed after the bot started
    data = keeper.market_data(chain.blocks.head.number, chain.blocks.head.timestamp)
    assert keeper._plan_fills(data, 1.0) == [] and counting.round_price_calls == 0

    many = {(10**30 + i, 1 + i % 2): PendingOrder(i, 2 * USDC, WAD) for i in range(100_000)}
    start = time.perf_counter()
    due = due_orders(many, 1, 60_000)
    assert len(due) == 30_001 and time.perf_counter() - start < 1.0


def test_bad_debt_logs__the_bot_keeps_every_one_it_ever_read(market, chain, accounts):  # noqa: F811
    """Info (open, minor): AccountIndexer keeps each BadDebt log for `take_bad_debt_logs`, which
    only the simulator calls: the bot's list grows for as long as it runs (and a log is kept twice
    when `index` rewinds after a failed reload). Three reads of one BadDebt log each: three kept."""
    keeper = bot(market, chain, accounts[2], [], fill_orders=False)
    topic = next(t for t, name in keeper.indexer.topics.items() if name == "BadDebt")
    bad_debt = {"topics": [bytes.fromhex(topic[2:]), (7).to_bytes(32, "big")], "data": b""}
    keeper.indexer._logs = lambda first, last: [bad_debt]
    for _ in range(3):
        keeper.index(keeper.indexer.next_block)
    assert len(keeper.indexer._bad_debt_logs) in (0, 3)
    assert keeper.indexer._bad_debt_logs == []


def test_mirror__every_change_to_an_account_is_an_event_the_bot_reads(market, chain, accounts, trader):  # noqa: F811
    """Refused (no stale mirror): every contract path that writes an account's balance, claim,
    positions or collateral logs an event the index reads, the account first: deposit and
    withdraw (a claim is paid only inside withdraw), Clearinghouse.fill_order (Trade, for fills
    through Orders), liquidation_close (the engine's Liquidation, or LossRealised, logged only
    when the realisation stands), seize_collateral (CollateralLiquidation) and bad debt
    (BadDebt); netting a claim against a new debt happens only inside those. Here, after the bot
    indexed: a withdrawal, a third party's realisation, another keeper's fill; ten minutes of
    interest and funding later the mirror equals the chain for every account."""
    protocol = market["protocol"]
    ch, btc, eth = protocol.clearinghouse, protocol.markets["BTC-PERP"], protocol.markets["ETH-PERP"]
    btc_account = btc_long(protocol, accounts[12], WAD)
    keeper = bot(market, chain, accounts[2], [], fill_orders=False)
    keeper.step()
    ch.withdraw(protocol.tokens["USDT"], 10**6, 0, sender=accounts[12])
    protocol.publish("WBTC", 28_000 * 10**8, accounts[0])
    protocol.liquidation_engine.realise_loss(btc_account, btc, sender=accounts[14])
    executable_at = commit(market, trader, WAD)
    publish_round(market, chain, accounts, executable_at)
    protocol.orders.execute_order(account_id(trader), eth, sender=accounts[3])
    chain.pending_timestamp += 600
    chain.mine()
    healths = keeper.mirror_healths()
    assert int(ch.settlement(btc_account)) < 0 and int(ch.positions(account_id(trader), eth).size) == WAD
    assert {btc_account, account_id(trader)} <= healths.keys()
    assert healths == {account: risk.health_of(ch, account) for account in healths}


# ---------------------------------------------------------------- order fills: gas griefing


def test_limit_order_griefing__the_bot_pays_a_cancel_it_could_have_foreseen(market, chain, accounts, trader):  # noqa: F811
    """A buy limited to $1,000 with ETH at $2,000: at its round the Clearinghouse refuses the fill
    ("clearinghouse: price limit") and Orders cancels it. OrderCommitted carries the limit and the
    round's fill price is the contract's `fill_price` of the market state, so the bot can know
    before sending (or simulate execute_order with an eth_call, which returns False for every
    cancel). Figures: the attacker forfeits the $2 fee and the $1 bond (0.05% of $2,000) to the
    insurance fund; the keeper pays the cancel's 117,126 gas. The FILL_GAS rule sends only while
    the fee covers 190,000 gas (up to 5.26 gwei at ETH $2,000), so a cancel costs the keeper at
    most $1.23: bounded griefing, each costing the attacker $3 (2.4x the keeper's loss) plus its
    commit's gas."""
    protocol, log = market["protocol"], []
    keeper = bot(market, chain, accounts[2], log)
    executable_at = commit(market, trader, WAD, limit_price=1_000 * WAD)
    publish_round(market, chain, accounts, executable_at)
    insurance = int(protocol.clearinghouse.insurance_balance())
    keeper.step()
    forfeited = int(protocol.clearinghouse.insurance_balance()) - insurance
    cancels = [line for line in log if " cancelled " in line]
    if cancels:
        gas = receipt_gas(chain, cancels[0])
        assert forfeited == 3 * USDC and 110_000 < gas < 0.65 * FILL_GAS  # $2 fee + $1 bond; 117,126 gas
        max_gwei = 2 / (FILL_GAS * 1e-9 * ETH_PRICE)  # 5.26 gwei: the dearest gas the bot still sends a fill at
        assert 1.1 < gas * max_gwei * 1e-9 * ETH_PRICE < 1.3  # the keeper's worst loss per cancel: $1.23
    assert keeper.summary.orders_cancelled == 0 and keeper.summary.gas_used == 0


def test_stale_fill_plan__a_round_landing_between_two_fills_cancels_the_second(market, chain, accounts, trader, monkeypatch):  # noqa: F811
    """Two orders due at one round: on a live chain each send waits for its receipt (a block), and
    a new round can land meanwhile (a volatile market, when orders are many). The second fill then
    only cancels ("orders: round passed"): the keeper pays its 96,062 gas for no fee (the
    trader's $2 fee and $1 bond, forfeit either way once the round passed, go to the insurance
    fund). One `round_price` (or `execute_order` eth_call) before each send would skip it.
    Also shown, refused by Orders: while an order can fill, its owner can neither cancel nor
    replace it, so no order is pulled from under a keeper; an owner who fills its own order
    first only makes the keeper's send a lost race (test_bot_orders' race: under 50,000 gas)."""
    protocol, log = market["protocol"], []
    other = accounts[11]
    fund(protocol, other, 10_000 * USDC, protocol.clearinghouse)
    protocol.clearinghouse.deposit(protocol.settlement, 10_000 * USDC, 0, sender=other)
    first = commit(market, trader, WAD)
    second = commit(market, other, -WAD)
    publish_round(market, chain, accounts, max(first, second))  # the first round of both
    # refused by Orders: nobody, the owner included, cancels or replaces an order that can fill
    eth = protocol.markets["ETH-PERP"]
    with ape.reverts("orders: not expired"):
        protocol.orders.cancel_order(account_id(other), eth, sender=other)
    with ape.reverts("orders: order pending"):
        protocol.orders.commit_order(eth, -2 * WAD, 0, 0, sender=other)
    keeper = bot(market, chain, accounts[2], log)
    real_fill = keeper_module.fill_order

    def fill_then_next_round(*args):
        done = real_fill(*args)
        publish_round(market, chain, accounts, chain.pending_timestamp)  # landed while the keeper waited
        return done

    monkeypatch.setattr(keeper_module, "fill_order", fill_then_next_round)
    keeper.step()
    summary = keeper.summary
    assert summary.orders_filled == 1
    cancels = [line for line in log if " cancelled " in line]
    if cancels:
        assert "orders: round passed" in cancels[0] and 90_000 < receipt_gas(chain, cancels[0]) < 100_000  # 96,062
    assert summary.orders_cancelled == 0


def test_realisations_before_fills__a_round_in_between_cancels_a_fill_that_would_have_landed(
    market,  # noqa: F811
    chain,
    accounts,
    trader,  # noqa: F811
    monkeypatch,
):
    """A BTC long with a $2,000 open loss (the bot realises above $1,000) and a due ETH order:
    the realisation goes first, its receipt takes a block, the ETH feed's next round lands in it,
    and the fill the bot then sends only cancels (96,015 gas for nothing; the trader's $2 fee and
    $1 bond forfeited, its trade lost). Sent first, it would have filled. A crash has
    many losses to realise (one transaction each, waited for) and frequent rounds. Also shown:
    the mirror still equals the chain after the realisation and the cancel (LossRealised and
    Trade/Orders events reload what changed)."""
    protocol, log = market["protocol"], []
    btc_long(protocol, accounts[12], WAD)
    executable_at = commit(market, trader, WAD)
    protocol.publish("WBTC", 28_000 * 10**8, accounts[0])  # -$2,000 on the BTC long
    publish_round(market, chain, accounts, executable_at)  # the order's round: due
    keeper = bot(market, chain, accounts[2], log, realise_above_usd=1_000)
    real_realise = keeper_module.realise

    def realise_then_next_round(*args):
        done = real_realise(*args)
        publish_round(market, chain, accounts, chain.pending_timestamp)  # landed while the keeper waited
        return done

    monkeypatch.setattr(keeper_module, "realise", realise_then_next_round)
    keeper.step()
    summary = keeper.summary
    assert summary.losses_realised == 1
    assert summary.orders_filled == 1 and summary.orders_cancelled == 0


def test_unprofitable_due_orders__each_costs_a_node_call_every_iteration(market, chain, accounts):  # noqa: F811
    """At 1,000 gwei no $2 fee pays a fill (FILL_GAS is $380), yet each due order is priced with
    `round_price` first, every iteration, until its round passes (a quiet feed: up to its 1-hour
    heartbeat, 300 iterations). 50 due orders (put in the index as Orders' events would) cost
    100 node calls in two iterations; the fee test needs none."""
    protocol, log = market["protocol"], []
    keeper = bot(market, chain, accounts[2], log, gas_price_gwei=1_000.0)
    counting = CountingOracle(protocol.oracle)
    keeper.protocol = replace(protocol, oracle=counting)
    round_time = int(protocol.feeds["WETH"].latestRoundData()[3])
    eth = protocol.markets["ETH-PERP"]
    keeper.orders.pending.update({(10**30 + i, eth): PendingOrder(round_time, 2 * USDC, WAD) for i in range(50)})
    keeper.scan()
    keeper.scan()
    assert keeper.summary.skipped_unprofitable == 100 and keeper.summary.gas_used == 0
    assert sum("skipped" in line for line in log) == 50  # said once each
    assert counting.round_price_calls == 0


# ---------------------------------------------------------------- loss realisation


def border_price(keeper, data, market_id, slot, account, timestamp):
    """The lowest feed answer (8 decimals) at which the mirror still plans `account`'s
    realisation at `timestamp`: below it, the debt would be over the loan limit."""

    def planned(answer):
        price = answer * 10**10
        views = {**data.views, market_id: replace(data.views[market_id], price=price)}
        collateral = dict(data.collateral)
        unit, weight, _ = collateral[slot]
        collateral[slot] = (unit, weight, price)
        return any(p.account == account for p in losses_to_realise(keeper.keeper, views, collateral, timestamp, 1.0))

    low, high = 20_000 * 10**8, 25_000 * 10**8
    assert not planned(low) and planned(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if planned(middle) else (middle, high)
    return high, planned


def test_realisation_at_the_loan_limit__one_unit_of_slack_is_not_the_next_blocks_interest(market, chain, accounts):  # noqa: F811
    """A BTC long on USDT with a $4,535 debt (the owner cut 1 of 1.5 BTC at $25,500) and 0.5 BTC
    left, priced where realising its loss leaves the debt at the loan limit 6 s after the scan.
    The mirror plans it at the scan (one unit of slack, $0.000001); the transaction lands 12 s
    later, when the debt's interest (~$0.00003 on $4,535 at 2%) has pushed it over, and reverts
    "liquidation: realisation over the loan limit" after running the whole close: 214,393 gas
    for nothing ($0.43 at 1 gwei, $8.58 at 20 gwei), once per crossing of the limit (the next
    iteration's mirror sees the account over and skips it). A slack of the interest and
    funding of a few blocks (or the check at the expected landing time) would skip it."""
    protocol, log = market["protocol"], []
    btc = protocol.markets["BTC-PERP"]
    account = btc_long(protocol, accounts[12], 3 * WAD // 2)
    protocol.publish("WBTC", 25_500 * 10**8, accounts[0])
    trade_now(protocol.clearinghouse, btc, -WAD, sender=accounts[12])  # a reduction: always allowed
    keeper = bot(market, chain, accounts[2], log, realise_above_usd=1_000, fill_orders=False)
    head = chain.blocks.head
    keeper.index(head.number)
    data = keeper.market_data(head.number, head.timestamp)
    wbtc = str(protocol.tokens["WBTC"])
    slot = next(s for s, (_, _, token) in keeper.governed().collaterals.items() if token == wbtc)
    scan_time = chain.pending_timestamp + 1  # publish: two transactions, a second apart
    answer, planned = border_price(keeper, data, btc, slot, account, scan_time + 6)
    assert planned(answer - 1) is False
    protocol.publish("WBTC", answer, accounts[0])  # ~$21,970
    assert chain.blocks.head.timestamp == scan_time
    assert risk.health_of(protocol.clearinghouse, account) > WAD  # healthy: nothing to liquidate
    plan = keeper.scan()
    assert [p.account for p in plan.realisations] in ([account], []) and not plan.liquidations  # [account] today
    chain.pending_timestamp = scan_time + 12  # the transaction lands a block later
    keeper.execute(plan)
    keeper.step()  # the next iteration: the mirror now sees the loan over the limit
    reverted = [line for line in log if "realisation reverted" in line]
    assert len(reverted) <= 1 and all("liquidation: realisation over the loan limit" in line for line in reverted)
    if reverted:  # today: the whole close runs before the check reverts: 214,393 gas for nothing
        assert 200_000 < keeper.summary.gas_used < 230_000
    assert reverted == []  # planned with the landing's slack: it lands, or it is not planned


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="open (low): a realisation is unpaid and losses_to_realise ignores the gas price: at "
    "1,000 gwei the bot spends more on one than the interest it earns the pool in a year",
)
def test_realisation_at_a_gas_spike__unpaid_gas_beyond_a_years_interest(market, chain, accounts):  # noqa: F811
    """At 1,000 gwei the bot skips every fill and liquidation its pay does not cover, but still
    realises a $2,000 loss into a debt: 216,807 gas, $434, for the LPs' interest of ~$40 a year
    (2% at this utilisation). In a crash gas spikes, losses are many and each is one unpaid
    transaction, sent (and waited for) before the next scan."""
    protocol, log = market["protocol"], []
    btc_long(protocol, accounts[12], WAD)
    protocol.publish("WBTC", 28_000 * 10**8, accounts[0])
    keeper = bot(market, chain, accounts[2], log, realise_above_usd=1_000, gas_price_gwei=1_000.0, fill_orders=False)
    keeper.step()
    summary = keeper.summary
    if summary.losses_realised:
        [line] = [line for line in log if " realised " in line]
        loss = float(line.split(" loss $")[1].split()[0].replace(",", ""))
        yearly_interest = loss * 0.02
        assert summary.gas_usd > 5 * yearly_interest and summary.revenue_usd == 0
    assert summary.gas_usd <= 2_000 * 0.02
