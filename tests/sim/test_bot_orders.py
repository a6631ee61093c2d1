"""The keeper bot fills orders: driven in-process on the embedded chain (test_bots.py's
deployment, five traders with open positions) with a trader's order committed in each test. The
bot leaves an order alone until its round, fills it at the round for its fee, leaves an order
whose round passed (a cancel would pay it nothing), loses a race without raising, skips a fill
its fee does not pay for, and with --no-orders only liquidates."""

import pytest
from click.testing import CliRunner

from marginsim.bots import KeeperBot, KeeperConfig
from marginsim.bots.keeper import describe_account
from marginsim.keeper.orders import FILL_GAS, OrderIndexer, PendingOrder, apply_order_log, due_orders
from marginsim.orders import place
from marginsim.protocol import account_id
from tests.sim.test_bots import market, script  # noqa: F401  (market: the module fixture, reused)

# the keeper bot filling orders against the embedded chain: `make test-slow` (see the README's Tests)
pytestmark = pytest.mark.slow

WAD = 10**18
USDC = 10**6
ETH_PRICE = 2_000  # the deployment's WETH price; the traders' trades leave it there


@pytest.fixture
def trader(market, accounts):  # noqa: F811
    """A sixth trader with $10,000 deposited (test_bots' five are accounts 4 to 8)."""
    protocol, signer = market["protocol"], accounts[10]
    usdc, ch = protocol.settlement, protocol.clearinghouse
    usdc.mint(signer, 10_000 * USDC, sender=signer)
    usdc.approve(ch, 2**256 - 1, sender=signer)
    ch.deposit(usdc, 10_000 * USDC, 0, sender=signer)
    return signer


def bot(market, chain, signer, log, name="keeper", **config):  # noqa: F811
    """A keeper bot indexing from before the deployment, deciding at 1 gwei unless told."""
    config = {"poll_seconds": 0, "gas_price_gwei": 1.0, **config}
    return KeeperBot(market["protocol"], chain, signer, market["block_before"], KeeperConfig(name=name, **config), log=log.append)


def commit(market, trader, size_delta, limit_price=0):  # noqa: F811
    """The trader's order in ETH-PERP (fee and bond funded and approved); its executable time."""
    protocol = market["protocol"]
    receipt = place(protocol.clearinghouse, protocol.markets["ETH-PERP"], size_delta, limit_price, sender=trader)
    return int(next(e for e in receipt.events if e.event_name == "OrderCommitted").executable_at)


def publish_round(market, chain, accounts, at):  # noqa: F811
    """A WETH round (same answer) dated `at` or later, synced into the router."""
    protocol = market["protocol"]
    chain.pending_timestamp = max(chain.pending_timestamp, at)
    protocol.publish("WETH", int(protocol.feeds["WETH"].latestRoundData()[1]), accounts[0])


def filled_events(market, start, chain):  # noqa: F811
    return list(market["protocol"].orders.OrderFilled.range(start, chain.blocks.head.number + 1))


def test_due_orders__those_of_the_market_a_round_reached__in_commit_order():
    pending = {
        (7, 1): PendingOrder(100, 2, WAD),
        (8, 2): PendingOrder(90, 2, WAD),
        (9, 1): PendingOrder(160, 2, -WAD),
        (5, 1): PendingOrder(120, 2, WAD),
    }
    assert due_orders(pending, 1, 120) == [(7, pending[(7, 1)]), (5, pending[(5, 1)])]
    assert due_orders(pending, 1, 99) == [] and due_orders(pending, 3, 10**9) == []

    def log(account, market_id, data=b""):
        return {"topics": [b"", account.to_bytes(32, "big"), market_id.to_bytes(32, "big")], "data": data}

    def committed(size, executable_at, fee):
        words = (size % 2**256, 0, executable_at, fee, 0)
        return b"".join(w.to_bytes(32, "big") for w in words)

    # a replacing commit (Orders logs the old order's cancel first) moves the order last
    apply_order_log(pending, "OrderCancelled", log(7, 1))
    apply_order_log(pending, "OrderCommitted", log(7, 1, committed(-3 * WAD, 110, 2 * USDC)))
    assert pending[(7, 1)] == PendingOrder(110, 2 * USDC, -3 * WAD)
    assert [account for account, _ in due_orders(pending, 1, 120)] == [5, 7]
    apply_order_log(pending, "OrderFilled", log(5, 1))
    assert list(pending) == [(8, 2), (9, 1), (7, 1)]


def test_order_indexer__chunks_and_a_failed_read_leave_the_same_index(market, chain, accounts, trader):  # noqa: F811
    protocol = market["protocol"]
    executable_at = commit(market, trader, WAD)
    whole = OrderIndexer(chain, protocol.orders, market["block_before"]).update()
    assert whole == {(account_id(trader), protocol.markets["ETH-PERP"]): PendingOrder(executable_at, 2 * USDC, WAD)}
    chunked = OrderIndexer(chain, protocol.orders, market["block_before"], block_range=3)
    reads = []

    def failing(first, last):
        reads.append((first, last))
        if len(reads) == 5:
            raise OSError("connection reset")
        return type(chunked)._logs(chunked, first, last)

    chunked._logs = failing
    # a refused range is halved and read again (a window flooded past a node's result cap, the
    # review's finding 1): the same index as one whole read
    assert chunked.update() == whole and (reads[4][1] - reads[4][0], reads[5][1] - reads[5][0]) == (2, 0)
    # a single block the node refuses raises, and the index stays as it was
    single = OrderIndexer(chain, protocol.orders, market["block_before"], block_range=3)

    def refuse_one(first, last):
        if first <= executable_at_block <= last:
            raise OSError("connection reset")
        return type(single)._logs(single, first, last)

    executable_at_block = chain.blocks.head.number
    single._logs = refuse_one
    with pytest.raises(OSError):
        single.update()
    assert single.next_block == market["block_before"] and single.pending == {}
    assert chunked.update() == whole and chunked.next_block == chain.blocks.head.number + 1
    assert all(last - first < 3 for first, last in reads)


def test_keeper_bot__fills_a_due_order_at_its_round_and_earns_the_fee(market, chain, accounts, trader):  # noqa: F811
    protocol, log = market["protocol"], []
    ch, orders, usdc, eth = protocol.clearinghouse, protocol.orders, protocol.settlement, protocol.markets["ETH-PERP"]
    keeper = bot(market, chain, accounts[2], log=log)
    executable_at = commit(market, trader, WAD)
    start = chain.blocks.head.number
    keeper.step()  # indexed, not due: no round dated at or after its executable time yet
    assert keeper.orders.pending == {(account_id(trader), eth): PendingOrder(executable_at, 2 * USDC, WAD)}
    assert keeper.summary.orders_filled == 0 and keeper.summary.gas_used == 0
    assert int(orders.order(account_id(trader), eth).executable_at) == executable_at  # still waiting on chain

    publish_round(market, chain, accounts, executable_at)
    balance = int(usdc.balanceOf(accounts[2]))
    keeper.step()
    [event] = filled_events(market, start, chain)
    gas = int(chain.provider.get_receipt(event.transaction_hash).gas_used)
    assert int(ch.positions(account_id(trader), eth).size) == WAD
    assert int(usdc.balanceOf(accounts[2])) == balance + 2 * USDC  # the fee, exactly
    assert event.keeper == accounts[2].address and int(event.fee) == 2 * USDC
    gas_usd = gas * 1.0 * 1e-9 * ETH_PRICE
    assert log[-1] == (
        f"block {event.block_number}  filled {describe_account(account_id(trader))} ETH-PERP +1.0000 ETH "
        f"at ${int(event.fill_price) / WAD:,.2f}  fee $2.00  gas {gas:,} (${gas_usd:,.2f})"
    )
    assert gas <= FILL_GAS  # the profit test's estimate covers a fill in a live market
    summary = keeper.summary
    assert (summary.orders_filled, summary.orders_cancelled, summary.lost_races) == (1, 0, 0)
    assert summary.fee_revenue_usd == summary.revenue_usd == 2.0 and summary.gas_used == gas
    keeper.step()  # the fill's event takes it out of the index: nothing more is sent
    assert keeper.orders.pending == {} and keeper.summary.gas_used == gas
    assert "1 orders filled, 0 cancelled, 0 lost races" in keeper.summary.line()
    assert "revenue $2.00 (fees $2.00)" in keeper.summary.line()


def test_keeper_bot__order_its_fill_would_refuse__not_sent_said_once(market, chain, accounts, trader):  # noqa: F811
    """A buy whose limit the round's price is above: the Clearinghouse would refuse the fill and
    Orders cancel it, its fee to the insurance fund, the keeper's gas for nothing. A dry run of
    execute_order at the head says so before sending (the review's finding 5: a limit order
    placed to make keepers pay for cancels), once; the order waits for its round to pass."""
    protocol, log = market["protocol"], []
    keeper = bot(market, chain, accounts[2], log=log)
    executable_at = commit(market, trader, WAD, limit_price=1_000 * WAD)
    publish_round(market, chain, accounts, executable_at)
    insurance, head = int(protocol.clearinghouse.insurance_balance()), chain.blocks.head.number
    keeper.step()
    keeper.step()
    summary = keeper.summary
    assert (summary.orders_cancelled, summary.orders_filled, summary.revenue_usd, summary.gas_used) == (0, 0, 0, 0)
    assert int(protocol.clearinghouse.insurance_balance()) == insurance and chain.blocks.head.number == head
    refused = [line for line in log if "would be refused" in line]
    who = describe_account(account_id(trader))
    assert refused == [f"block {head}  {who} ETH-PERP: its fill would be refused now, not sent (no fee in a cancel)"]


def test_keeper_bot__round_passed__not_sent_said_once(market, chain, accounts, trader):  # noqa: F811
    """A later round replaced the order's: execute_order could only cancel it, for no fee. A
    paid keeper does not spend gas on that; the order waits for its owner (or anyone) to
    cancel_order it, which returns the withdrawals it blocks."""
    protocol, log = market["protocol"], []
    eth, who = protocol.markets["ETH-PERP"], describe_account(account_id(trader))
    executable_at = commit(market, trader, WAD)
    publish_round(market, chain, accounts, executable_at)
    publish_round(market, chain, accounts, executable_at + 60)  # the order's round has passed
    keeper = bot(market, chain, accounts[2], log=log)
    keeper.step()
    head = chain.blocks.head.number
    assert (
        log[-1]
        == f"block {head}  order of {who} ETH-PERP +1.0000 ETH: its round passed, not sent (a cancel pays the keeper nothing)"
    )
    keeper.step()
    assert sum("its round passed" in line for line in log) == 1 and keeper.summary.gas_used == 0
    assert int(protocol.orders.order(account_id(trader), eth).executable_at) == executable_at
    protocol.orders.cancel_order(account_id(trader), eth, sender=trader)  # forfeited: its round passed
    keeper.step()
    assert keeper.orders.pending == {} and keeper._order_notes == {}


def test_keeper_bots__race_for_the_same_order__loser_logs_and_moves_on(market, chain, accounts, trader):  # noqa: F811
    logs = {"fast": [], "slow": []}
    bots = {name: bot(market, chain, signer, logs[name], name) for name, signer in (("fast", accounts[2]), ("slow", accounts[3]))}
    executable_at = commit(market, trader, -WAD)
    publish_round(market, chain, accounts, executable_at)
    start = chain.blocks.head.number
    plans = bots["fast"].scan(), bots["slow"].scan()  # both decide before either sends
    assert [len(plan.fills) for plan in plans] == [1, 1]
    bots["fast"].execute(plans[0])
    bots["slow"].execute(plans[1])  # reverts "orders: no order": logged, not raised
    [event] = filled_events(market, start, chain)
    assert event.keeper == accounts[2].address
    fast, slow = bots["fast"].summary, bots["slow"].summary
    assert (fast.orders_filled, fast.lost_races) == (1, 0) and (slow.orders_filled, slow.lost_races) == (0, 1)
    # the dry run before the send sees the order gone: the loser sends nothing, spends no gas
    assert slow.revenue_usd == 0 and slow.gas_used == 0
    assert logs["slow"][-1] == (
        f"block {plans[1].block}  {describe_account(account_id(trader))} ETH-PERP: "
        "order fill reverted, lost the race: orders: no order"
    )
    assert logs["fast"][-1].startswith(f"block {event.block_number}  filled ")
    assert " -1.0000 ETH at $" in logs["fast"][-1]
    assert "0 orders filled, 0 cancelled, 1 lost races" in slow.line()


def test_keeper_bot__fee_below_the_gas__skipped_said_once(market, chain, accounts, trader):  # noqa: F811
    protocol, log = market["protocol"], []
    keeper = bot(market, chain, accounts[2], log=log, gas_price_gwei=1_000.0)
    executable_at = commit(market, trader, WAD)
    publish_round(market, chain, accounts, executable_at)
    keeper.step()
    keeper.step()
    gas_usd = FILL_GAS * 1_000 * 1e-9 * ETH_PRICE
    line = (
        f"block {chain.blocks.head.number}  order of {describe_account(account_id(trader))} ETH-PERP +1.0000 ETH: "
        f"fee $2.00 < gas ${gas_usd:,.2f} + min profit $0.00, skipped"
    )
    assert [entry for entry in log if "skipped" in entry] == [line]
    assert keeper.summary.skipped_unprofitable == 2 and keeper.summary.gas_used == 0
    assert int(protocol.clearinghouse.positions(account_id(trader), protocol.markets["ETH-PERP"]).size) == 0


def test_keeper_bot__no_orders__leaves_them(market, chain, accounts, trader, tmp_path):  # noqa: F811
    protocol, log = market["protocol"], []
    eth = protocol.markets["ETH-PERP"]
    executable_at = commit(market, trader, WAD)
    publish_round(market, chain, accounts, executable_at)
    keeper = bot(market, chain, accounts[2], log=log, fill_orders=False)
    summary = keeper.run(max_iterations=2, sleep=lambda _: None)
    assert keeper.orders is None and summary.orders_filled == 0 and summary.gas_used == 0
    assert log[1] == "keeper: --no-orders: liquidating only; orders lapse unless another keeper fills them"
    path = tmp_path / "deployment.json"
    protocol.save(path)
    args = ["--deployment", str(path), "--max-iterations", "1", "--poll", "0", "--no-orders"]
    result = CliRunner().invoke(script("keeper").cli, args)
    assert result.exit_code == 0, result.output
    assert "keeper: --no-orders: liquidating only" in result.output
    assert result.output.splitlines()[-1].startswith(
        "keeper stopped after 1 iterations: 0 liquidations, 0 collateral sales, 0 orders filled"
    )
    assert int(protocol.orders.order(account_id(trader), eth).executable_at) == executable_at  # still waiting
    filler = bot(market, chain, accounts[3], log=[])  # it was due all along: a bot that fills orders fills it
    filler.step()
    assert filler.summary.orders_filled == 1 and int(protocol.clearinghouse.positions(account_id(trader), eth).size) == WAD
