"""The keeper bot executes LP requests: driven in-process on the embedded chain (test_bots.py's
deployment: a $2M pool and five traders with open ETH-PERP positions, so the pool's value
moves with every round). An LP asks to redeem and another to deposit; the bot
leaves both alone until they are due, executes them in their window for their fees, leaves a
request past its window to its LP (a lapse pays its caller nothing: the escrow and the fee go
back to the LP), loses a race without raising, waits on a request the pool cannot pay now (said
once), skips one its fee does not pay for, and with --no-orders leaves them."""

import pytest
from eth_utils import to_checksum_address

from marginsim.bots.keeper import KeeperBot, KeeperConfig
from marginsim.keeper.requests import (
    REQUEST_GAS,
    REQUEST_WINDOW,
    PendingRequest,
    RequestIndexer,
    apply_request_log,
    due_requests,
)
from tests.sim.test_bot_orders import bot, publish_round
from tests.sim.test_bots import market  # noqa: F401  (market: the module fixture, reused)

# the keeper bot executing LP requests against the embedded chain: `make test-slow` (see the README's Tests)
pytestmark = pytest.mark.slow

USDC = 10**6
SHARE = 10**12  # one pool share: the settlement token's 6 decimals + the pool's 6
FEE = 2 * USDC  # Orders' execution fee in the deployment: a request escrows it too
ETH_PRICE = 2_000  # the deployment's WETH price; gas in USD at 1 gwei
REDEEMED = 1_000 * SHARE  # shares the LP asks to redeem
DEPOSITED = 1_000 * USDC  # tokens the depositor asks to deposit


@pytest.fixture(scope="module", autouse=True)
def lps(market, chain, accounts):  # noqa: F811
    """Module state, once: the seed LP (accounts[1], every share) out of its deposit's cooldown
    with tokens for a request's fee, and a depositor (accounts[11]) with $10,000, both approved
    to the pool; a fresh WETH round after the wait."""
    protocol = market["protocol"]
    pool, usdc = protocol.pool, protocol.settlement
    assert int(protocol.clearinghouse.market_state(protocol.markets["ETH-PERP"]).long_oi) > 0  # the traders' positions
    publish_round(market, chain, accounts, chain.pending_timestamp + 900)  # the seed's cooldown passed
    lp, depositor = accounts[1], accounts[11]
    usdc.mint(lp, 10 * USDC, sender=lp)
    usdc.mint(depositor, 10_000 * USDC, sender=depositor)
    usdc.approve(pool, 2**256 - 1, sender=depositor)  # the seed LP approved it in test_bots' fixture
    assert int(protocol.orders.execution_fee()) == FEE
    return lp, depositor


def placed(receipt):
    [event] = [e for e in receipt.events if e.event_name == "RequestPlaced"]
    return event


def request_both(market, lps):  # noqa: F811
    """The LP's redemption, then the depositor's deposit: their RequestPlaced events."""
    pool = market["protocol"].pool
    lp, depositor = lps
    redemption = placed(pool.request_redeem(REDEEMED, lp, lp, sender=lp))
    deposit = placed(pool.request_deposit(DEPOSITED, depositor, sender=depositor))
    return redemption, deposit


def events(market, name, start, chain):  # noqa: F811
    return list(getattr(market["protocol"].pool, name).range(start, chain.blocks.head.number + 1))


def gas_of(chain, event):
    return int(chain.provider.get_receipt(event.transaction_hash).gas_used)


def usd(gas):
    return f"${gas * 1e-9 * ETH_PRICE:,.2f}"  # at the tests' 1 gwei


def test_due_requests__those_in_their_window__in_placing_order():
    pending = {
        "0xA": PendingRequest(100, FEE, True),
        "0xB": PendingRequest(50, FEE, False),
        "0xC": PendingRequest(200, FEE, False),
        "0xD": PendingRequest(99, FEE, True),
    }
    a, b, c, d = ((controller, pending[controller]) for controller in ("0xA", "0xB", "0xC", "0xD"))
    assert due_requests(pending, 999) == [a, c, d]  # 0xD's window, [99, 999], ends at 999 inclusive; 0xB's passed
    assert due_requests(pending, 1_000) == [a, c]  # past their window: their LPs' to lapse, not a keeper's
    assert due_requests(pending, 49) == []  # none due yet
    assert due_requests(pending, 100, window=10) == [a, d]

    def log(controller, data=b""):
        return {"topics": [b"", bytes(12) + bytes.fromhex(controller), bytes(12) + bytes(20)], "data": data}

    def request(deposit, executable_at, fee):
        words = (int(deposit), 5 * USDC, 7 * SHARE, executable_at, fee)
        return b"".join(w.to_bytes(32, "big") for w in words)

    controller, other = "ab" * 20, "cd" * 20
    key, other_key = to_checksum_address(controller), to_checksum_address(other)  # the pending's keys
    folded: dict = {}
    apply_request_log(folded, "RequestPlaced", log(controller, request(True, 160, FEE)))
    apply_request_log(folded, "RequestPlaced", log(other, request(False, 170, 3 * USDC)))
    assert folded == {key: PendingRequest(160, FEE, True), other_key: PendingRequest(170, 3 * USDC, False)}
    apply_request_log(folded, "RequestExecuted", log(controller))  # and the same controller asks again: last
    apply_request_log(folded, "RequestPlaced", log(controller, request(False, 400, FEE)))
    assert list(folded.items())[-1] == (key, PendingRequest(400, FEE, False))
    apply_request_log(folded, "RequestLapsed", log(controller))
    assert list(folded) == [other_key]


def test_request_indexer__the_pools_requests_from_its_events(market, chain, accounts, lps):  # noqa: F811
    protocol = market["protocol"]
    lp, depositor = lps
    assert int(protocol.pool.REQUEST_WINDOW()) == REQUEST_WINDOW
    redemption, deposit = request_both(market, lps)
    whole = RequestIndexer(chain, protocol.pool, market["block_before"]).update()
    assert whole == {
        lp.address: PendingRequest(int(redemption.executable_at), FEE, False),
        depositor.address: PendingRequest(int(deposit.executable_at), FEE, True),
    }
    assert int(deposit.executable_at) == int(chain.blocks.head.timestamp) + int(protocol.orders.settlement_delay())
    chunked = RequestIndexer(chain, protocol.pool, market["block_before"], block_range=3)
    assert chunked.update() == whole and list(chunked.pending) == [lp.address, depositor.address]


def test_keeper_bot__executes_a_redemption_and_a_deposit_once_due_and_earns_the_fees(market, chain, accounts, lps):  # noqa: F811
    protocol, log = market["protocol"], []
    pool, usdc = protocol.pool, protocol.settlement
    lp, depositor = lps
    keeper = bot(market, chain, accounts[2], log=log)
    lp_tokens, depositor_shares = int(usdc.balanceOf(lp)), int(pool.balanceOf(depositor))
    redemption, deposit = request_both(market, lps)
    executable_at = int(deposit.executable_at)
    assert int(redemption.executable_at) <= executable_at
    assert int(pool.balanceOf(pool)) == REDEEMED  # the redemption's shares in escrow
    start = chain.blocks.head.number

    keeper.step()  # indexed, not due: the head block is dated before their executable time
    assert keeper.requests.pending == {
        lp.address: PendingRequest(int(redemption.executable_at), FEE, False),
        depositor.address: PendingRequest(executable_at, FEE, True),
    }
    assert keeper.summary.requests_executed == 0 and keeper.summary.gas_used == 0
    assert int(pool.requests(lp).executable_at) == int(redemption.executable_at)  # still waiting on chain

    publish_round(market, chain, accounts, int(redemption.executable_at) - 3)  # a round just before: not due
    assert chain.blocks.head.timestamp < int(redemption.executable_at)
    keeper.step()
    assert keeper.summary.requests_executed == 0 and keeper.summary.gas_used == 0

    publish_round(market, chain, accounts, executable_at)
    balance = int(usdc.balanceOf(accounts[2]))
    keeper.step()
    redeemed, deposited = events(market, "RequestExecuted", start, chain)
    assert (redeemed.controller, redeemed.deposit, deposited.controller, deposited.deposit) == (
        lp.address,
        False,
        depositor.address,
        True,
    )
    assert redeemed.keeper == deposited.keeper == accounts[2].address
    assert int(redeemed.fee) == int(deposited.fee) == FEE  # the events name the fee paid
    assert int(usdc.balanceOf(accounts[2])) == balance + 2 * FEE  # both fees, exactly
    # the redemption burns exactly the shares asked for and pays at most what they were worth
    # at the request; the deposit takes exactly the tokens and mints at most the request's shares
    assert int(redeemed.shares) == REDEEMED and 0 < int(redeemed.assets) <= int(redemption.assets)
    assert int(deposited.assets) == DEPOSITED and 0 < int(deposited.shares) <= int(deposit.shares)
    assert int(usdc.balanceOf(lp)) == lp_tokens - FEE + int(redeemed.assets)
    assert int(pool.balanceOf(depositor)) == depositor_shares + int(deposited.shares)
    assert int(pool.balanceOf(pool)) == 0 and int(usdc.balanceOf(pool)) == 0  # the escrows are gone
    gases = gas_of(chain, redeemed), gas_of(chain, deposited)
    assert all(gas <= REQUEST_GAS for gas in gases)  # the profit test's estimate covers both
    assert log[-2:] == [
        f"block {redeemed.block_number}  executed the redemption request of {lp.address}: "
        f"{int(redeemed.shares) / SHARE:,.6f} msLP for ${int(redeemed.assets) / USDC:,.2f} to {lp.address}  "
        f"fee $2.00  gas {gases[0]:,} ({usd(gases[0])})",
        f"block {deposited.block_number}  executed the deposit request of {depositor.address}: "
        f"${DEPOSITED / USDC:,.2f} for {int(deposited.shares) / SHARE:,.6f} msLP to {depositor.address}  "
        f"fee $2.00  gas {gases[1]:,} ({usd(gases[1])})",
    ]
    summary = keeper.summary
    assert (summary.requests_executed, summary.lost_races) == (2, 0)
    assert summary.revenue_usd == summary.fee_revenue_usd == 4.0 and summary.gas_used == sum(gases)
    keeper.step()  # the executions' events take them out of the index: nothing more is sent
    assert keeper.requests.pending == {} and keeper.summary.gas_used == sum(gases)
    assert "0 lost races, 2 LP requests executed, 0 skipped as unprofitable, " in summary.line()
    assert "revenue $4.00 (fees $4.00)" in summary.line()


def test_keeper_bot__requests_past_their_window__left_alone__their_lps_lapse_them_for_escrow_and_fee(
    market,  # noqa: F811
    chain,
    accounts,
    lps,
):
    """Nobody executed them in their window: the bot sends nothing (a lapse would pay it nothing)
    and says nothing; each LP lapses its own and gets back its escrow and its fee exactly; the
    lapses' events take them out of the bot's index."""
    protocol, log = market["protocol"], []
    pool, usdc = protocol.pool, protocol.settlement
    lp, depositor = lps
    lp_shares, lp_tokens = int(pool.balanceOf(lp)), int(usdc.balanceOf(lp))
    depositor_tokens = int(usdc.balanceOf(depositor))
    redemption, deposit = request_both(market, lps)
    assert (int(pool.balanceOf(lp)), int(usdc.balanceOf(lp))) == (lp_shares - REDEEMED, lp_tokens - FEE)
    assert int(usdc.balanceOf(depositor)) == depositor_tokens - DEPOSITED - FEE
    start = chain.blocks.head.number
    publish_round(market, chain, accounts, int(deposit.executable_at) + REQUEST_WINDOW + 1)  # nobody executed them
    keeper = bot(market, chain, accounts[2], log=log)
    balance = int(usdc.balanceOf(accounts[2]))
    plan = keeper.scan()
    assert plan.requests == []  # past their window: not the bot's business
    keeper.execute(plan)
    keeper.step()
    assert keeper.summary.gas_used == 0 and keeper.summary.skipped_unprofitable == 0
    assert int(usdc.balanceOf(accounts[2])) == balance
    assert not [line for line in log if lp.address in line or depositor.address in line]  # nothing said of them
    assert events(market, "RequestExecuted", start, chain) == events(market, "RequestLapsed", start, chain) == []
    assert list(keeper.requests.pending) == [lp.address, depositor.address]  # still pending on chain, till lapsed
    assert int(pool.requests(lp).executable_at) == int(redemption.executable_at)

    pool.lapse_request(lp, sender=lp)
    pool.lapse_request(depositor, sender=depositor)
    back_shares, back_tokens = events(market, "RequestLapsed", start, chain)
    assert (back_shares.controller, back_shares.deposit, int(back_shares.shares), int(back_shares.assets)) == (
        lp.address,
        False,
        REDEEMED,
        0,
    )
    assert (back_tokens.controller, back_tokens.deposit, int(back_tokens.assets), int(back_tokens.shares)) == (
        depositor.address,
        True,
        DEPOSITED,
        0,
    )
    assert int(back_shares.fee) == int(back_tokens.fee) == FEE  # returned to the controller
    assert (back_shares.keeper, back_tokens.keeper) == (lp.address, depositor.address)
    assert (int(pool.balanceOf(lp)), int(usdc.balanceOf(lp))) == (lp_shares, lp_tokens)  # every share and the fee back
    assert int(usdc.balanceOf(depositor)) == depositor_tokens  # the tokens and the fee back
    assert int(pool.balanceOf(pool)) == 0 and int(usdc.balanceOf(pool)) == 0  # the escrows are gone
    keeper.step()  # the lapses' events take them out of the index
    assert keeper.requests.pending == {} and keeper.summary.gas_used == 0
    assert int(usdc.balanceOf(accounts[2])) == balance
    assert "0 lost races, 0 LP requests executed, 0 skipped as unprofitable, " in keeper.summary.line()
    assert "revenue $0.00 (fees $0.00)" in keeper.summary.line()


def test_keeper_bots__race_for_the_same_request__loser_logs_and_moves_on(market, chain, accounts, lps):  # noqa: F811
    protocol = market["protocol"]
    lp, _ = lps
    logs = {"fast": [], "slow": []}
    bots = {name: bot(market, chain, signer, logs[name], name) for name, signer in (("fast", accounts[2]), ("slow", accounts[3]))}
    redemption = placed(protocol.pool.request_redeem(REDEEMED, lp, lp, sender=lp))
    publish_round(market, chain, accounts, int(redemption.executable_at))
    start = chain.blocks.head.number
    plans = bots["fast"].scan(), bots["slow"].scan()  # both decide before either sends
    assert [len(plan.requests) for plan in plans] == [1, 1]
    bots["fast"].execute(plans[0])
    bots["slow"].execute(plans[1])  # reverts "pool: no request": logged, not raised
    [event] = events(market, "RequestExecuted", start, chain)
    assert event.keeper == accounts[2].address
    fast, slow = bots["fast"].summary, bots["slow"].summary
    assert (fast.requests_executed, fast.lost_races) == (1, 0) and (slow.requests_executed, slow.lost_races) == (0, 1)
    assert slow.revenue_usd == 0 and slow.gas_used == 0  # refused at the gas estimate: nothing mined
    assert logs["slow"][-1] == (
        f"block {plans[1].block}  redemption request of {lp.address}: execution reverted, lost the race: pool: no request"
    )
    assert logs["fast"][-1].startswith(f"block {event.block_number}  executed the redemption request of {lp.address}: ")
    assert "1 lost races, 0 LP requests executed" in slow.line()
    # someone else (here the LP itself) executes the next one before the bot sends: lost too
    depositor = lps[1]
    deposit = placed(protocol.pool.request_deposit(DEPOSITED, depositor, sender=depositor))
    publish_round(market, chain, accounts, int(deposit.executable_at))
    plan = bots["slow"].scan()
    protocol.pool.execute_request(depositor, sender=depositor)
    bots["slow"].execute(plan)
    assert (slow.requests_executed, slow.lost_races) == (0, 2)


def test_keeper_bot__request_the_pool_cannot_pay__waits_said_once__then_left_to_its_lp(market, chain, accounts, lps):  # noqa: F811
    """The LP asks to redeem every share: the traders' open interest needs part of the pool's
    value (the open-interest reserve), so the execution reverts; the bot logs it once, tries
    again each iteration (refused at the dry run: no gas spent), and after its window drops it
    (and what it said of it) without a word; the LP lapses it, its shares and fee back."""
    protocol, log = market["protocol"], []
    pool, usdc = protocol.pool, protocol.settlement
    lp, _ = lps
    shares, tokens = int(pool.balanceOf(lp)), int(usdc.balanceOf(lp))
    redemption = placed(pool.request_redeem(shares, lp, lp, sender=lp))
    keeper = bot(market, chain, accounts[2], log=log)
    publish_round(market, chain, accounts, int(redemption.executable_at))
    head = chain.blocks.head.number
    keeper.step()
    publish_round(market, chain, accounts, int(redemption.executable_at) + 60)
    keeper.step()
    waits = [line for line in log if "waits" in line]
    assert waits == [f"block {head}  redemption request of {lp.address}: execution reverted, waits: pool: open interest reserve"]
    assert keeper.summary.requests_executed == 0 and keeper.summary.lost_races == 0 and keeper.summary.gas_used == 0
    assert keeper.requests.pending[lp.address].executable_at == int(redemption.executable_at)
    assert keeper._request_notes == {(lp.address, int(redemption.executable_at)): "pool: open interest reserve"}
    publish_round(market, chain, accounts, int(redemption.executable_at) + REQUEST_WINDOW + 1)
    said = len(log)
    keeper.step()
    assert log[said:] == [] and keeper._request_notes == {}  # dropped, nothing said: its LP's now
    assert keeper.summary.gas_used == 0 and keeper.summary.requests_executed == 0
    assert lp.address in keeper.requests.pending and int(pool.requests(lp).executable_at) == int(redemption.executable_at)
    receipt = pool.lapse_request(lp, sender=lp)
    [lapsed] = [e for e in receipt.events if e.event_name == "RequestLapsed"]
    assert (int(lapsed.shares), int(lapsed.fee)) == (shares, FEE)
    assert (int(pool.balanceOf(lp)), int(usdc.balanceOf(lp))) == (shares, tokens)  # every share and the fee back
    keeper.step()
    assert lp.address not in keeper.requests.pending and keeper.summary.gas_used == 0


def test_keeper_bot__fee_below_the_gas__skipped_said_once(market, chain, accounts, lps):  # noqa: F811
    protocol, log = market["protocol"], []
    _, depositor = lps
    keeper = bot(market, chain, accounts[2], log=log, gas_price_gwei=1_000.0)
    deposit = placed(protocol.pool.request_deposit(DEPOSITED, depositor, sender=depositor))
    publish_round(market, chain, accounts, int(deposit.executable_at))
    keeper.step()
    keeper.step()
    gas_usd = REQUEST_GAS * 1_000 * 1e-9 * ETH_PRICE
    line = (
        f"block {chain.blocks.head.number}  deposit request of {depositor.address}: execution fee $2.00 "
        f"< gas ${gas_usd:,.2f} + min profit $0.00, skipped"
    )
    assert [entry for entry in log if "skipped" in entry] == [line]
    assert keeper.summary.skipped_unprofitable == 2 and keeper.summary.gas_used == 0
    assert int(protocol.pool.requests(depositor).executable_at) == int(deposit.executable_at)  # still waiting


def test_keeper_bot__no_orders__leaves_the_requests(market, chain, accounts, lps):  # noqa: F811
    protocol, log = market["protocol"], []
    lp, _ = lps
    redemption = placed(protocol.pool.request_redeem(REDEEMED, lp, lp, sender=lp))
    publish_round(market, chain, accounts, int(redemption.executable_at))
    keeper = KeeperBot(
        protocol,
        chain,
        accounts[2],
        market["block_before"],
        KeeperConfig(poll_seconds=0, gas_price_gwei=1.0, fill_orders=False),
        log=log.append,
    )
    summary = keeper.run(max_iterations=1, sleep=lambda _: None)
    assert keeper.requests is None and summary.requests_executed == 0 and summary.gas_used == 0
    assert log[2] == "keeper: --no-orders: LP requests too: they lapse unless another keeper executes them"
    assert int(protocol.pool.requests(lp).executable_at) == int(redemption.executable_at)  # still waiting
