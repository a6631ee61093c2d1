"""Debt as a loan and profit claims (issue 9, item 1, with the changes of 02:15): the debt index
and the interest it charges (the formula to the wei at several utilisations, the utilisation
against what the pool could lend, its balance less the pending claims, where it accrues and
where it does not, the interest paid to the pool when a debt is next written, the index
saturating at 2**104 - 1), the LiquidityPool's value counting the interest accrued but not yet
charged (total_scaled_debt), pending profit claims (created beyond the pool's free liquidity,
counted in equity, paid first come first served at a settlement withdrawal, netted against a
new debt, kept out of the LPs' value), the initial margin a debt needs, the debt ceiling (now
Orders' "orders: debt ceiling" refusal at the commit), the collateral sale over the loan-to-value limit
(the debt against debt_liquidation_ltv of equity plus debt; a written-off token only under the
no-positions-and-negative-equity rule), the keeper's pay split while claims are pending, and
the Configurator's debt parameters.

A debt grows every second: expected values are computed from the last accrual (an index read in
the block of a transaction that accrued, or `debt_state()`) with marginsim.risk.debt_index_now,
and views are read at the head block's timestamp, which each test pins with
`chain.mine(timestamp=...)` or `chain.pending_timestamp`.
"""

import dataclasses

import ape
import pytest

from marginsim import risk
from marginsim.orders import bond_of, fill_now, handles, market_feed, redate, trade_now, withdraw_now
from marginsim.protocol import account_id
from tests.conftest import USDC, WAD
from tests.e2e.attacks import reserve_out_of_the_way

S2W = 10**12  # SETTLEMENT_TO_WAD of the 6-decimal settlement token
YEAR = 31_536_000
DAY = 86_400
COOLDOWN = 900  # LiquidityPool: an LP's new shares are locked this long
USDT = 10**6  # one whole USDT (6 decimals, $1, weight 0.95, discount 0.02)
MAX_UINT = 2**256 - 1
NOT_OWNER = "ownable: caller is not the owner"
# (rate_base, rate_slope, debt_imr, ceiling) and the liquidation LTV: DEFAULT_CONFIG's, WAD
DEFAULT_TERMS = (2 * 10**16, 3 * 10**17, 25 * 10**16, 5 * 10**17)
DEFAULT_LTV = 9 * 10**17
MAX_INDEX = 2**104 - 1  # the debt index saturates here (the width an account stores it in)
SCALE = 10**36  # total_scaled_debt's precision


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(
    protocol,
    ch,
    configurator,
    usdc,
    fund,
    seeded_pool,
    make_account,
    set_price,
    engine,
    deployer,
    guardian,
    trader,
    other_trader,
    keeper,
    attacker,
    lp,
):
    """Request the module- and session-scoped fixtures before any test, so ape's isolation
    snapshots them once instead of rebasing. The open-interest reserve is off: these tests
    drain the pool to book claims, which the reserve exists to prevent."""
    reserve_out_of_the_way(protocol, deployer)


@pytest.fixture(scope="module")
def usdt(protocol):
    return protocol.tokens["USDT"]


@pytest.fixture(scope="module")
def weth(protocol):
    return protocol.tokens["WETH"]


# ---------------------------------------------------------------- helpers


def terms(ch):
    return tuple(int(v) for v in ch.debt_terms())


def debt_of(ch, account):
    return tuple(int(v) for v in ch.debt_of(account))


def anchor(ch, chain, tx):
    """(index, time) of the accrual `tx` made: the index read in its own block."""
    assert chain.blocks.head.timestamp == tx.timestamp
    return int(ch.debt_index()), tx.timestamp


def loan(ch, account):
    """What the account's debt at a later time depends on, read before anything accrues again:
    its written debt and index, the total debt, the pool's balance, the pending claims and the
    rates."""
    base, slope, _, _ = terms(ch)
    written, written_at = debt_of(ch, account)
    return {
        "written": written,
        "written_at": written_at,
        "total_debt": int(ch.total_debt()),
        "pool": int(ch.pool_balance()),
        "pending": int(ch.total_pending()),
        "base": base,
        "slope": slope,
    }


def owed_at(loan_, anchor_, timestamp):
    """The debt of `loan_` with its interest to `timestamp`, from the accrual `anchor_`: token
    units, rounded up."""
    index, time = anchor_
    index = risk.debt_index_now(
        index, timestamp - time, loan_["total_debt"], loan_["pool"], loan_["base"], loan_["slope"], loan_["pending"]
    )
    return risk.debt_now(loan_["written"], index, loan_["written_at"])


def lp_value(pool, pending, total_debt, scaled, index):
    """LiquidityPool.totalAssets with no open interest: the pool's balance less the claims plus
    the interest accrued but not yet charged, max(scaled * index // 1e36, total_debt) -
    total_debt (0 when the value is not positive)."""
    return max(pool - pending + max(scaled * index // SCALE, total_debt) - total_debt, 0)


def no_trader_pnl(ch):
    """No market holds a position or a cost: the LP's value is its balances alone."""
    for market in range(1, int(ch.market_count()) + 1):
        state = ch.market_state(market)
        assert (state.long_oi, state.short_oi, state.total_cost) == (0, 0, 0)


def commit_order(ch, usdc, owner, market, size_delta, subaccount=0):
    """Mint and approve `owner`'s execution fee and its order's bond and commit the order; returns
    the commit's receipt."""
    orders, _, _ = handles(ch)
    fee = int(orders.execution_fee()) + bond_of(ch, market, size_delta, subaccount, sender=owner)
    usdc.mint(owner, fee, sender=owner)
    usdc.approve(orders, fee, sender=owner)
    return orders.commit_order(market, size_delta, 0, subaccount, sender=owner)


def execute_order(ch, usdc, owner, market, size_delta, subaccount=0):
    """Place `owner`'s order and have a keeper execute it at the next round, as trade_now does,
    but return the execution's receipt whether it filled or Orders cancelled it."""
    commit_order(ch, usdc, owner, market, size_delta, subaccount)
    return fill_now(ch, account_id(owner, subaccount), market, keeper=ape.accounts.test_accounts[-1])


def assert_refused_at_commit(ch, usdc, owner, market, size_delta, reason, subaccount=0, open_orders=0):
    """Orders refuses `owner`'s order at its commit with `reason`: the commit reverts, so no order
    is stored in `market` (the account keeps `open_orders` orders elsewhere) and no fee is
    escrowed: the owner keeps it, Orders holds no more, the insurance fund gets nothing."""
    orders, _, _ = handles(ch)
    account = account_id(owner, subaccount)
    fee = int(orders.execution_fee())
    usdc.mint(owner, fee, sender=owner)
    usdc.approve(orders, fee, sender=owner)
    balances = (int(usdc.balanceOf(owner)), int(usdc.balanceOf(orders)), int(ch.insurance_balance()))
    assert balances[0] >= fee
    with ape.reverts(reason):
        orders.commit_order(market, size_delta, 0, subaccount, sender=owner)
    order = orders.order(account, market)
    assert (order.size_delta, order.limit_price, order.executable_at, order.fee, order.position) == (0, 0, 0, 0, 0)
    assert orders.open_orders(account) == open_orders
    assert (int(usdc.balanceOf(owner)), int(usdc.balanceOf(orders)), int(ch.insurance_balance())) == balances


def mine_at(chain, timestamp):
    chain.mine(timestamp=timestamp)
    assert chain.blocks.head.timestamp == timestamp


def at(chain, timestamp):
    """The next transaction lands at `timestamp`."""
    chain.pending_timestamp = timestamp
    assert chain.pending_timestamp == timestamp


def event(tx, name):
    found = [e for e in tx.events if e.event_name == name]
    assert len(found) == 1, f"{len(found)} {name} events"
    return found[0]


def events(tx, name):
    return [e for e in tx.events if e.event_name == name]


def custody_holds(ch, usdc):
    assert usdc.balanceOf(ch) == ch.settlement_held()


@pytest.fixture
def make_debtor(ch, protocol, fund, usdt, set_price, btc_market):
    """`owner`'s subaccount holds `usdt_amount` whole USDT and nothing else, buys 1 BTC at
    $30,000 and sells it at $27,000: it owes the loss and both fees (about $3,028.5) and has no
    position. Returns (account, the closing fill's receipt: the accrual that wrote the debt)."""

    def make_debtor(owner, usdt_amount=10_000, subaccount=0):
        fund(owner, usdt, usdt_amount * USDT)
        ch.deposit(usdt, usdt_amount * USDT, subaccount, sender=owner)
        trade_now(ch, btc_market, WAD, 0, subaccount, sender=owner)
        set_price("WBTC", 27_000)
        tx = trade_now(ch, btc_market, -WAD, 0, subaccount, sender=owner)
        account = account_id(owner, subaccount)
        assert ch.market_mask(account) == 0
        assert ch.settlement(account) < -3_000 * USDC
        assert debt_of(ch, account) == (-int(ch.settlement(account)), int(ch.debt_index()))
        return account, tx

    return make_debtor


def usdt_round_dated(protocol, deployer, t):
    """A USDT round (same answer) dated `t`, sent before the clock reaches it: the LP flow at `t`
    finds the collateral the debtor holds priced (LP flows wait on a held collateral without a
    price) without a transaction at `t` that would move the index's arithmetic."""
    feed = protocol.feeds["USDT"]
    feed.updateRoundData(int(feed.latest_round()) + 1, int(feed.latestRoundData()[1]), t, t, sender=deployer)


def drain_pool(ch, pool, lp, chain, leave):
    """Past the LP's cooldown, the LP takes out all of the pool's free liquidity but `leave` (by
    request while a position is open: `withdraw_now`)."""
    chain.pending_timestamp += COOLDOWN + 1
    amount = int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending()) - leave
    tx = withdraw_now(pool, amount, lp, lp, sender=lp)
    assert int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending()) == leave
    return tx


# ---------------------------------------------------------------- the debt index and interest


@pytest.mark.parametrize(
    "pool_over_debt, utilisation",
    [(None, None), (4, WAD // 4), (2, WAD // 2), (1, WAD)],
    ids=["seeded pool", "utilisation 1/4", "utilisation 1/2", "pool == debt: utilisation 1"],
)
def test_debt_index__formula_to_the_wei(ch, chain, make_debtor, trader, seeded_pool, lp, pool_over_debt, utilisation):
    account, tx = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    last = anchor(ch, chain, tx)
    assert last[0] == written_at  # the debt was written at the index of its own transaction
    if pool_over_debt is not None:
        # the LP leaves `pool_over_debt` times the debt in the pool (a withdrawal accrues)
        amount = int(ch.pool_balance()) - pool_over_debt * written
        chain.pending_timestamp += COOLDOWN + 1
        last = anchor(ch, chain, seeded_pool.withdraw(amount, lp, lp, sender=lp))
        assert ch.pool_balance() == pool_over_debt * written
    total_debt, pool = int(ch.total_debt()), int(ch.pool_balance())
    assert total_debt == written
    base, slope, _, _ = terms(ch)

    elapsed = 30 * DAY
    mine_at(chain, last[1] + elapsed)

    u = min(total_debt * WAD // pool, WAD)
    if utilisation is not None:
        assert u == utilisation
    rate = base + slope * u // WAD
    expected = last[0] + -(-last[0] * rate * elapsed // (YEAR * WAD))  # rounded up
    assert ch.debt_index() == expected == risk.debt_index_now(last[0], elapsed, total_debt, pool, base, slope)
    # the debt reads with its interest, rounded up against the debtor
    owed = -(-written * expected // written_at)
    assert owed > written
    assert ch.settlement(account) == -owed == -risk.debt_now(written, expected, written_at)
    # nothing is written by reading: the stored debt and the totals stand
    assert debt_of(ch, account) == (written, written_at)
    assert (ch.total_debt(), ch.pool_balance()) == (total_debt, pool)


def test_debt_index__lp_cannot_take_the_pool_below_the_total_debt(ch, chain, make_debtor, trader, seeded_pool, lp):
    """The LP can take the pool's balance down to the total debt and no further (the pool's
    liquidity is its balance less every debt and claim): an LP alone cannot bring what the pool
    could lend below the debt. (Claims can: see the `lendable <= 0` test below.)"""
    account, _ = make_debtor(trader)
    drain_pool(ch, seeded_pool, lp, chain, 0)
    assert ch.pool_balance() == ch.total_debt() > 0
    assert seeded_pool.maxWithdraw(lp) == 0
    with ape.reverts("clearinghouse: pool liquidity"):
        seeded_pool.withdraw(1, lp, lp, sender=lp)


def test_interest__charged_to_the_pool_when_the_debt_is_next_written(ch, chain, usdc, fund, make_debtor, trader):
    account, tx = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    last = anchor(ch, chain, tx)
    assert ch.total_scaled_debt() == written * SCALE // written_at
    fund(trader, usdc, 100 * USDC)
    pool, total_debt = int(ch.pool_balance()), int(ch.total_debt())
    base, slope, _, _ = terms(ch)

    at(chain, last[1] + 10 * DAY)
    tx = ch.deposit(usdc, 100 * USDC, 0, sender=trader)  # a partial repayment rewrites the debt
    assert tx.timestamp == last[1] + 10 * DAY

    index = risk.debt_index_now(last[0], 10 * DAY, total_debt, pool, base, slope)
    owed = risk.debt_now(written, index, written_at)
    interest = owed - written
    assert interest > USDC  # ten days at a little over 2% a year on about $3,000: about $1.66
    assert ch.pool_balance() == pool + interest
    assert ch.total_debt() == owed - 100 * USDC
    assert debt_of(ch, account) == (owed - 100 * USDC, index)  # rewritten at the index now
    assert ch.debt_index() == index  # the same block: folded in, not counted again
    assert ch.settlement(account) == -(owed - 100 * USDC)
    # the scaled debt: the old term taken out exactly, the new one added at the index now
    assert ch.total_scaled_debt() == (owed - 100 * USDC) * SCALE // index
    custody_holds(ch, usdc)


def test_interest__repaid_in_full__then_the_index_stands_still(ch, chain, usdc, fund, make_debtor, trader):
    account, tx = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    last = anchor(ch, chain, tx)
    fund(trader, usdc, 5_000 * USDC)
    pool, total_debt = int(ch.pool_balance()), int(ch.total_debt())
    base, slope, _, _ = terms(ch)

    at(chain, last[1] + 7 * DAY)
    tx = ch.deposit(usdc, 5_000 * USDC, 0, sender=trader)

    index = risk.debt_index_now(last[0], 7 * DAY, total_debt, pool, base, slope)
    owed = risk.debt_now(written, index, written_at)
    assert ch.settlement(account) == 5_000 * USDC - owed
    assert ch.pool_balance() == pool + owed - written
    assert ch.total_debt() == 0 and ch.total_scaled_debt() == 0
    assert debt_of(ch, account) == (0, 0)
    assert ch.debt_index() == index
    # no debt: a year passes and the index does not move
    mine_at(chain, tx.timestamp + YEAR)
    assert ch.debt_index() == index
    assert ch.settlement(account) == 5_000 * USDC - owed


def test_debt_index__no_debt_ever__stays_at_one(ch, chain, make_account, trader, eth_market):
    assert ch.total_debt() == 0
    assert ch.debt_index() == WAD
    make_account(trader, collateral_usd=10_000, leverage=2)  # trades that owe nothing
    mine_at(chain, chain.blocks.head.timestamp + YEAR)
    assert ch.debt_index() == WAD
    assert ch.total_debt() == 0


def test_debt_index__accrues_at_pool_withdraw_and_pool_deposit(
    ch, chain, usdc, fund, make_debtor, trader, seeded_pool, lp, protocol, deployer
):
    account, tx = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    i0, t0 = anchor(ch, chain, tx)
    base, slope, _, _ = terms(ch)
    pool0 = int(ch.pool_balance())

    # day 1: the LP leaves twice the debt (utilisation 1/2); the first day accrues at the old pool
    usdt_round_dated(protocol, deployer, t0 + DAY)
    at(chain, t0 + DAY)
    seeded_pool.withdraw(pool0 - 2 * written, lp, lp, sender=lp)
    i1 = risk.debt_index_now(i0, DAY, written, pool0, base, slope)
    assert ch.debt_index() == i1
    assert ch.pool_balance() == 2 * written

    # day 2: the second day at utilisation 1/2
    mine_at(chain, t0 + 2 * DAY)
    i2 = risk.debt_index_now(i1, DAY, written, 2 * written, base, slope)
    assert ch.debt_index() == i2
    assert i2 != risk.debt_index_now(i0, 2 * DAY, written, 2 * written, base, slope)  # had the withdrawal not accrued
    assert i2 != risk.debt_index_now(i0, 2 * DAY, written, pool0, base, slope)

    # day 3: the LP deposits 1M back; days 2 and 3 accrue at utilisation 1/2 first
    fund(lp, usdc, 1_000_000 * USDC, spender=seeded_pool)
    usdt_round_dated(protocol, deployer, t0 + 3 * DAY)
    at(chain, t0 + 3 * DAY)
    seeded_pool.deposit(1_000_000 * USDC, lp, sender=lp)
    i3 = risk.debt_index_now(i1, 2 * DAY, written, 2 * written, base, slope)
    assert ch.debt_index() == i3
    assert ch.pool_balance() == 2 * written + 1_000_000 * USDC

    # day 4: at the deeper pool's utilisation
    mine_at(chain, t0 + 4 * DAY)
    i4 = risk.debt_index_now(i3, DAY, written, 2 * written + 1_000_000 * USDC, base, slope)
    assert ch.debt_index() == i4
    assert i4 != risk.debt_index_now(i1, 3 * DAY, written, 2 * written + 1_000_000 * USDC, base, slope)
    assert ch.settlement(account) == -risk.debt_now(written, i4, written_at)
    assert debt_of(ch, account) == (written, written_at)  # neither the deposit nor the withdrawal rewrote it


def test_debt_index__set_debt_parameters__old_rate_up_to_the_change(ch, chain, configurator, deployer, make_debtor, trader):
    account, tx = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    i0, t0 = anchor(ch, chain, tx)
    total_debt, pool = int(ch.total_debt()), int(ch.pool_balance())

    at(chain, t0 + 10 * DAY)
    configurator.set_debt_parameters(5 * 10**17, 2 * WAD, 25 * 10**16, 5 * 10**17, DEFAULT_LTV, sender=deployer)
    i1 = risk.debt_index_now(i0, 10 * DAY, total_debt, pool, *DEFAULT_TERMS[:2])
    assert ch.debt_index() == i1

    mine_at(chain, t0 + 20 * DAY)
    i2 = risk.debt_index_now(i1, 10 * DAY, total_debt, pool, 5 * 10**17, 2 * WAD)
    assert ch.debt_index() == i2
    assert i2 != risk.debt_index_now(i0, 20 * DAY, total_debt, pool, 5 * 10**17, 2 * WAD)  # no retroactive rate
    assert ch.settlement(account) == -risk.debt_now(written, i2, written_at)


def test_interest__rates_zero__no_more_interest(ch, chain, usdc, fund, configurator, deployer, make_debtor, trader):
    account, tx = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    i0, t0 = anchor(ch, chain, tx)
    total_debt, pool = int(ch.total_debt()), int(ch.pool_balance())

    at(chain, t0 + DAY)
    configurator.set_debt_parameters(0, 0, *DEFAULT_TERMS[2:], DEFAULT_LTV, sender=deployer)
    i1 = risk.debt_index_now(i0, DAY, total_debt, pool, *DEFAULT_TERMS[:2])
    owed = risk.debt_now(written, i1, written_at)
    assert owed > written  # the day before the change was charged at the old rate

    mine_at(chain, t0 + DAY + YEAR)
    assert ch.debt_index() == i1
    assert ch.settlement(account) == -owed

    # the next write charges the pool only what accrued before the change
    fund(trader, usdc, USDC)
    ch.deposit(usdc, USDC, 0, sender=trader)
    assert ch.pool_balance() == pool + owed - written
    assert debt_of(ch, account) == (owed - USDC, i1)
    assert ch.total_debt() == owed - USDC


def test_debt_index__non_debtor_trade_moves_the_pool_without_accruing(
    ch, chain, make_debtor, make_account, trader, other_trader, eth_market, set_price
):
    """Documented behaviour: only a debt's write, an LP deposit or withdrawal and a change of
    the terms accrue. A trade that only moves the pool's balance (here another trader's realised
    loss) does not, so the utilisation after it applies back to the last accrual."""
    account, tx = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    last = anchor(ch, chain, tx)
    pool_before = int(ch.pool_balance())
    base, slope, _, _ = terms(ch)

    make_account(other_trader, collateral_usd=100_000, leverage=0)
    trade_now(ch, eth_market, 100 * WAD, 0, 0, sender=other_trader)
    set_price("WETH", 1_800)
    trade_now(ch, eth_market, -100 * WAD, 0, 0, sender=other_trader)  # realises about $20,000 into the pool
    assert ch.settlement(account_id(other_trader)) > 0
    pool_after = int(ch.pool_balance())
    assert pool_after > pool_before + 19_000 * USDC
    assert debt_of(ch, account) == (written, written_at)

    mine_at(chain, last[1] + 30 * DAY)
    expected = risk.debt_index_now(last[0], 30 * DAY, written, pool_after, base, slope)
    assert ch.debt_index() == expected
    assert expected < risk.debt_index_now(last[0], 30 * DAY, written, pool_before, base, slope)


def test_debt_index__saturates_at_2_104_minus_1__then_the_debt_stops_growing(
    ch, chain, usdc, fund, configurator, deployer, make_debtor, trader, seeded_pool, lp
):
    """At the largest rates the Configurator allows (rate_base 1, rate_slope 10: 1,100% a year at
    full utilisation) the index, accrued once a year, grows 12-fold a year and reaches the
    2**104 - 1 an account stores it in after 13 years: it stops there rather than wrap, and so
    does every debt."""
    account, _ = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    drain_pool(ch, seeded_pool, lp, chain, 0)  # the pool's balance == the debt: utilisation 1
    highest = (WAD, 10 * WAD)
    configurator.set_debt_parameters(*highest, *DEFAULT_TERMS[2:], DEFAULT_LTV, sender=deployer)
    index, time = (int(v) for v in ch.debt_state())
    total_debt, pool = int(ch.total_debt()), int(ch.pool_balance())
    assert total_debt == pool == written

    years = 0
    while index < MAX_INDEX:
        # a year passes (chain.mine jumps the clock), then the next accrual folds it in
        mine_at(chain, time + YEAR)
        expected = min(index + -(-index * 11 * WAD * YEAR // (YEAR * WAD)), MAX_INDEX)  # 12x, or the cap
        assert expected == min(12 * index, MAX_INDEX)
        assert ch.debt_index() == expected == risk.debt_index_now(index, YEAR, total_debt, pool, *highest)
        at(chain, time + YEAR + 1)
        configurator.set_debt_parameters(*highest, *DEFAULT_TERMS[2:], DEFAULT_LTV, sender=deployer)  # accrues
        accrued = min(index + -(-index * 11 * WAD * (YEAR + 1) // (YEAR * WAD)), MAX_INDEX)
        index, time = (int(v) for v in ch.debt_state())
        assert index == accrued
        assert time == chain.blocks.head.timestamp
        years += 1
        assert years <= 13
    assert (years, index) == (13, MAX_INDEX)
    owed = -(-written * MAX_INDEX // written_at)
    assert ch.settlement(account) == -owed
    assert owed > 10**22  # about $6e16: interest stopped, the arithmetic did not wrap

    # saturated: ten more years and the index and the debt stand still
    mine_at(chain, time + 10 * YEAR)
    assert ch.debt_index() == MAX_INDEX
    assert ch.settlement(account) == -owed
    # the debtor's next write charges that interest to the pool and the debt, rewritten at the
    # saturated index, never grows again
    fund(trader, usdc, USDC)
    ch.deposit(usdc, USDC, 0, sender=trader)
    assert debt_of(ch, account) == (owed - USDC, MAX_INDEX)
    assert ch.pool_balance() == pool + owed - written
    assert ch.total_debt() == owed - USDC
    assert ch.total_scaled_debt() == (owed - USDC) * SCALE // MAX_INDEX
    mine_at(chain, chain.blocks.head.timestamp + YEAR)
    assert ch.settlement(account) == -(owed - USDC)
    custody_holds(ch, usdc)


# ---------------------------------------------------------------- profit claims


def book(ch, account):
    """What a fill's claim depends on, read before it."""
    return {
        "pool": int(ch.pool_balance()),
        "debt": int(ch.total_debt()),
        "pending": int(ch.total_pending()),
        "settlement": int(ch.settlement(account)),
        "claim": int(ch.pending(account)),
    }


def expected_claim(before, trade):
    """perps._settle_fill: the realised profit the pool cannot pay out of its free liquidity."""
    credit, fee = int(trade.realised_pnl), int(trade.fee)
    if credit <= 0:
        return 0
    pool_after = before["pool"] + fee - credit
    balance_after = before["settlement"] + credit - fee
    return max(min(before["debt"] + before["pending"] - pool_after, credit, balance_after), 0)


def close_long(ch, owner, market, size):
    """Close `size` of `owner`'s long; returns (Trade event, receipt, book before)."""
    account = account_id(owner)
    before = book(ch, account)
    tx = trade_now(ch, market, -size, 0, 0, sender=owner)
    return event(tx, "Trade"), tx, before


@pytest.fixture
def claims_book(ch, chain, make_account, seeded_pool, lp, set_price, eth_market, trader, other_trader, accounts):
    """A pool with $1,000 of free liquidity; the trader (A) long 10 ETH and other_trader (B) long
    5 ETH on $20,000 each, a third account (C) short `c_short` ETH on $100,000; then ETH +10%."""

    def claims_book(c_short):
        c = accounts[8]
        drain_pool(ch, seeded_pool, lp, chain, 1_000 * USDC)
        make_account(trader, collateral_usd=20_000)
        make_account(other_trader, collateral_usd=20_000)
        make_account(c, collateral_usd=100_000)
        trade_now(ch, eth_market, 10 * WAD, 0, 0, sender=trader)
        trade_now(ch, eth_market, 5 * WAD, 0, 0, sender=other_trader)
        trade_now(ch, eth_market, -c_short * WAD, 0, 0, sender=c)
        set_price("WETH", 2_200)
        return account_id(trader), account_id(other_trader), c

    return claims_book


def test_claim__profit_beyond_free_liquidity__pending(ch, usdc, claims_book, trader, eth_market):
    a, _, _ = claims_book(8)
    trade, tx, before = close_long(ch, trader, eth_market, 10 * WAD)
    credit, fee = int(trade.realised_pnl), int(trade.fee)
    pool_after_fill = before["pool"] + fee - credit
    claim = before["debt"] + before["pending"] - pool_after_fill  # the part the pool cannot pay
    assert 0 < claim < credit
    assert claim == expected_claim(before, trade)

    pending_event = event(tx, "ProfitPending")
    assert (pending_event.account, pending_event.market, pending_event.amount) == (a, eth_market, claim)
    assert ch.pending(a) == claim
    assert ch.total_pending() == before["pending"] + claim
    balance = before["settlement"] + credit - fee - claim
    assert ch.settlement(a) == balance
    assert ch.pool_balance() == pool_after_fill + claim == before["debt"] + before["pending"]
    # the claim counts in equity as the balance does
    assert tuple(ch.margin(a)) == ((balance + claim) * S2W, 0, 0)
    custody_holds(ch, usdc)
    # no token came back to pay it: only the balance can leave
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, balance + 1, 0, sender=trader)
    assert ch.pending(a) == claim


def test_claim__paid_at_withdrawal__first_come_first_served(ch, usdc, claims_book, trader, other_trader, eth_market):
    a, b, c = claims_book(8)
    trade_a, _, before_a = close_long(ch, trader, eth_market, 10 * WAD)
    claim_a = expected_claim(before_a, trade_a)
    trade_b, tx_b, before_b = close_long(ch, other_trader, eth_market, 5 * WAD)
    claim_b = expected_claim(before_b, trade_b)
    assert claim_b == int(trade_b.realised_pnl)  # the pool paid B's profit nothing in tokens
    assert event(tx_b, "ProfitPending").amount == claim_b
    assert (ch.pending(a), ch.pending(b), ch.total_pending()) == (claim_a, claim_b, claim_a + claim_b)
    # C closes its short at a loss: tokens come back into the pool, not enough for both claims
    trade_now(ch, eth_market, 8 * WAD, 0, 0, sender=c)
    payable = int(ch.pool_balance()) - int(ch.total_debt())
    assert claim_b < payable < claim_a + claim_b

    # B withdraws first: its claim is paid in full
    balance_b, pool, wallet_b = int(ch.settlement(b)), int(ch.pool_balance()), int(usdc.balanceOf(other_trader))
    ch.withdraw(usdc, USDC, 0, sender=other_trader)
    assert ch.pending(b) == 0
    assert ch.settlement(b) == balance_b + claim_b - USDC
    assert ch.pool_balance() == pool - claim_b
    assert ch.total_pending() == claim_a
    assert usdc.balanceOf(other_trader) == wallet_b + USDC

    # A comes second: paid what is left, the rest stays pending
    paid_a = payable - claim_b
    assert 0 < paid_a < claim_a
    balance_a = int(ch.settlement(a))
    ch.withdraw(usdc, USDC, 0, sender=trader)
    assert ch.pending(a) == claim_a - paid_a
    assert ch.settlement(a) == balance_a + paid_a - USDC
    assert ch.pool_balance() == ch.total_debt() == 0
    assert ch.total_pending() == claim_a - paid_a
    assert tuple(ch.margin(a)) == ((balance_a + claim_a - USDC) * S2W, 0, 0)  # equity unchanged by the payment
    custody_holds(ch, usdc)


@pytest.fixture
def refilled_claims(ch, claims_book, make_debtor, keeper, trader, other_trader, eth_market):
    """The keeper's subaccount owes about $3,028 (a debt the pool lent: part of its value, not of
    its liquidity); A and B close at a profit the pool can pay only in part (claims pending);
    C closes its 20 ETH short at a loss that refills the pool. No position is left. Returns the
    debtor's account and the receipt of the fill that wrote its debt."""

    def refilled_claims():
        debtor, tx = make_debtor(keeper)
        _, _, c = claims_book(20)
        close_long(ch, trader, eth_market, 10 * WAD)
        close_long(ch, other_trader, eth_market, 5 * WAD)
        trade_now(ch, eth_market, 20 * WAD, 0, 0, sender=c)  # C's loss refills the pool
        no_trader_pnl(ch)
        pool, debt, pending = int(ch.pool_balance()), int(ch.total_debt()), int(ch.total_pending())
        assert pending > 0 and debt > 0 and pool - debt - pending > 0
        return debtor, tx

    return refilled_claims


def test_claim__lp_value_and_max_withdraw_net_of_total_pending(ch, chain, usdc, refilled_claims, seeded_pool, lp):
    refilled_claims()
    pool, debt, pending = int(ch.pool_balance()), int(ch.total_debt()), int(ch.total_pending())
    index, scaled = int(ch.debt_index()), int(ch.total_scaled_debt())
    accrued = scaled * index // SCALE - debt  # the debt's interest since it was written, not yet charged
    assert accrued > 0

    assert seeded_pool.totalAssets() == pool - pending + accrued == lp_value(pool, pending, debt, scaled, index)
    assert seeded_pool.maxWithdraw(lp) == pool - debt - pending < seeded_pool.convertToAssets(seeded_pool.balanceOf(lp))
    with ape.reverts("clearinghouse: pool liquidity"):
        seeded_pool.withdraw(pool - debt - pending + 1, lp, lp, sender=lp)
    wallet = int(usdc.balanceOf(lp))
    seeded_pool.withdraw(pool - debt - pending, lp, lp, sender=lp)
    assert usdc.balanceOf(lp) == wallet + pool - debt - pending
    assert ch.pool_balance() == debt + pending  # the claims and the debt are left
    assert seeded_pool.maxWithdraw(lp) == 0


def test_utilisation__pending_claims__rate_on_the_pools_balance_less_the_claims(ch, chain, refilled_claims):
    """The rate's utilisation is total_debt / (pool_balance - total_pending): the claims are owed
    before anything is lent."""
    debtor, _ = refilled_claims()
    written, written_at = debt_of(ch, debtor)
    index, time = (int(v) for v in ch.debt_state())  # the last accrual (the LP's withdrawal)
    pool, debt, pending = int(ch.pool_balance()), int(ch.total_debt()), int(ch.total_pending())
    base, slope, _, _ = terms(ch)
    lendable = pool - pending
    utilisation = debt * WAD // lendable
    assert debt * WAD // pool < utilisation < WAD  # the claims matter

    elapsed = 30 * DAY
    mine_at(chain, time + elapsed)
    rate = base + slope * utilisation // WAD
    expected = index + -(-index * rate * elapsed // (YEAR * WAD))
    assert ch.debt_index() == expected == risk.debt_index_now(index, elapsed, debt, pool, base, slope, pending)
    assert expected > risk.debt_index_now(index, elapsed, debt, pool, base, slope)  # on the whole balance: lower
    assert ch.settlement(debtor) == -risk.debt_now(written, expected, written_at)
    assert risk.read_debt_view(ch).index_at(time + elapsed) == expected


def test_utilisation__claims_beyond_the_pools_balance__nothing_to_lend__full_rate(ch, chain, illiquid_short):
    """A claim is the profit the pool lacked: with claims larger than the pool's balance less
    the debts, pool_balance - total_pending <= 0 and the rate is the highest, rate_base +
    rate_slope (the index's `lendable <= 0` branch)."""
    victim = illiquid_short(2_600)  # owes its open fee; the trader's claim is about $4,977
    written, written_at = debt_of(ch, victim)
    index, time = (int(v) for v in ch.debt_state())
    pool, debt, pending = int(ch.pool_balance()), int(ch.total_debt()), int(ch.total_pending())
    assert pool - pending < 0 < debt == written
    base, slope, _, _ = terms(ch)

    elapsed = 30 * DAY
    mine_at(chain, time + elapsed)
    expected = index + -(-index * (base + slope) * elapsed // (YEAR * WAD))
    assert ch.debt_index() == expected == risk.debt_index_now(index, elapsed, debt, pool, base, slope, pending)
    assert ch.settlement(victim) == -risk.debt_now(written, expected, written_at)


def test_claim__new_debt_nets_the_accounts_own_claim_first(
    ch, chain, usdc, weth, fund, claims_book, trader, eth_market, set_price
):
    a, _, _ = claims_book(8)
    trade, _, before = close_long(ch, trader, eth_market, 10 * WAD)
    claim = expected_claim(before, trade)
    balance = int(ch.settlement(a))
    ch.withdraw(usdc, balance, 0, sender=trader)  # the pool holds nothing free: no claim paid
    assert (ch.settlement(a), ch.pending(a)) == (0, claim)
    fund(trader, weth, 2 * WAD)
    ch.deposit(weth, 2 * WAD, 0, sender=trader)
    index = int(ch.debt_index())

    # a fee the balance cannot pay: the claim pays it, no debt
    pool = int(ch.pool_balance())
    fee = int(event(trade_now(ch, eth_market, 5 * WAD, 0, 0, sender=trader), "Trade").fee)
    assert (ch.settlement(a), ch.pending(a)) == (0, claim - fee)
    assert ch.total_pending() == claim - fee
    assert ch.pool_balance() == pool  # the fee came in, the claim it paid went out
    assert (ch.total_debt(), debt_of(ch, a)) == (0, (0, 0))

    # a loss beyond the rest of the claim: the claim nets first, the rest is a debt
    set_price("WETH", 1_900)
    pool = int(ch.pool_balance())
    trade = event(trade_now(ch, eth_market, -5 * WAD, 0, 0, sender=trader), "Trade")
    loss = int(trade.fee) - int(trade.realised_pnl)
    debt = loss - (claim - fee)
    assert debt > 0
    assert ch.pending(a) == 0 and ch.total_pending() == 0
    assert ch.settlement(a) == -debt
    assert debt_of(ch, a) == (debt, index)  # no debt before: the index had not moved
    assert ch.total_debt() == debt
    assert ch.pool_balance() == pool - (claim - fee) + loss
    custody_holds(ch, usdc)


# ---------------------------------------------------------------- the LPs' value: interest accrued, not yet charged


def test_lp_value__total_assets_counts_the_interest_accrued_but_not_charged__exact(
    ch, chain, usdc, fund, make_debtor, set_price, trader, other_trader, seeded_pool
):
    """totalAssets = pool_balance - total_pending + floor(total_scaled_debt * debt_index() / 1e36)
    - total_debt (no positions open), total_scaled_debt the sum over debtors of floor(debt *
    1e36 / the index it was written at), its term taken out exactly when a debt is rewritten."""
    a, _ = make_debtor(trader)
    set_price("WBTC", 30_000)
    b, _ = make_debtor(other_trader, usdt_amount=40_000)  # BTC's volatility is up: more margin
    no_trader_pnl(ch)
    debts = {a: debt_of(ch, a), b: debt_of(ch, b)}
    assert debts[a][1] < debts[b][1]  # written at two indices
    # the scaled debt: the sum over debtors of floor(debt * 1e36 // the index it was written at)
    assert ch.total_scaled_debt() == sum(w * SCALE // i for w, i in debts.values())
    assert ch.total_debt() == sum(w for w, _ in debts.values())

    mine_at(chain, chain.blocks.head.timestamp + 90 * DAY)
    pool, debt, pending = int(ch.pool_balance()), int(ch.total_debt()), int(ch.total_pending())
    index, scaled = int(ch.debt_index()), int(ch.total_scaled_debt())
    accrued = scaled * index // SCALE - debt
    owed = {account: risk.debt_now(w, index, i) for account, (w, i) in debts.items()}
    assert accrued > 25 * USDC  # 90 days at about 2% a year on about $6,057
    # the debts as their owners read them round up; the scaled sum rounds down
    assert 0 <= sum(owed.values()) - debt - accrued <= 2
    assert seeded_pool.totalAssets() == pool - pending + accrued == lp_value(pool, pending, debt, scaled, index)

    # A's next write charges its interest to the pool: the value moves by the rounding only
    fund(trader, usdc, 100 * USDC)
    last = tuple(int(v) for v in ch.debt_state())
    t = chain.blocks.head.timestamp + 1
    at(chain, t)
    ch.deposit(usdc, 100 * USDC, 0, sender=trader)
    base, slope, _, _ = terms(ch)
    index = risk.debt_index_now(last[0], t - last[1], debt, pool, base, slope, pending)
    assert ch.debt_index() == index
    w_a, i_a = debts[a]
    w_b, i_b = debts[b]
    owed_a = risk.debt_now(w_a, index, i_a)
    assert debt_of(ch, a) == (owed_a - 100 * USDC, index)
    assert ch.total_scaled_debt() == (owed_a - 100 * USDC) * SCALE // index + w_b * SCALE // i_b
    assert ch.pool_balance() == pool + owed_a - w_a
    assert ch.total_debt() == debt - w_a + owed_a - 100 * USDC
    value_before = lp_value(pool, pending, debt, scaled, index)  # the same instant, before the write
    value_after = lp_value(int(ch.pool_balance()), pending, int(ch.total_debt()), int(ch.total_scaled_debt()), index)
    assert seeded_pool.totalAssets() == value_after
    assert 0 <= value_after - value_before <= 1  # a's interest charged rounds up, accrued rounded down


def test_lp_value__deposit_just_before_a_debtors_write__gains_nothing_of_the_interest_before_it(
    ch, chain, usdc, fund, make_debtor, trader, attacker, seeded_pool, protocol, deployer
):
    """The interest a debt accrued was counted in the LPs' value only when charged (at the
    debtor's next write), so a large deposit just before that write took a share of interest
    earned before it. Counted as it accrues, the deposit buys at a price that already holds it:
    a $10M deposit a second before the write of a debt that accrued about $61 in a year gains
    nothing but its rounding (1 unit, $0.000001), where it would have gained about $30.42
    before."""
    account, tx = make_debtor(trader)
    written, written_at = debt_of(ch, account)
    last = anchor(ch, chain, tx)
    no_trader_pnl(ch)
    deposit = 10_000_000 * USDC
    fund(attacker, usdc, deposit, spender=seeded_pool)
    fund(trader, usdc, 100 * USDC)
    pool, debt, pending = int(ch.pool_balance()), int(ch.total_debt()), int(ch.total_pending())
    scaled, supply = int(ch.total_scaled_debt()), int(seeded_pool.totalSupply())
    assert scaled == written * SCALE // written_at
    base, slope, _, _ = terms(ch)

    # a year on, the attacker deposits $10M: shares at the value with the year's interest in it
    t1 = last[1] + YEAR
    i1 = risk.debt_index_now(last[0], YEAR, debt, pool, base, slope, pending)
    interest = risk.debt_now(written, i1, written_at) - written
    assert 60 * USDC < interest < 62 * USDC
    value = lp_value(pool, pending, debt, scaled, i1)
    shares = deposit * (supply + 10**6) // (value + 1)
    usdt_round_dated(protocol, deployer, t1)
    at(chain, t1)
    seeded_pool.deposit(deposit, attacker, sender=attacker)
    assert seeded_pool.balanceOf(attacker) == shares

    # a second later the debtor's write charges the year's interest to the pool
    t2 = t1 + 1
    i2 = risk.debt_index_now(i1, 1, debt, pool + deposit, base, slope, pending)
    owed = risk.debt_now(written, i2, written_at)
    at(chain, t2)
    ch.deposit(usdc, 100 * USDC, 0, sender=trader)
    assert ch.pool_balance() == pool + deposit + owed - written
    value2 = lp_value(pool + deposit + owed - written, pending, owed - 100 * USDC, (owed - 100 * USDC) * SCALE // i2, i2)
    assert seeded_pool.totalAssets() == value2
    worth = shares * (value2 + 1) // (supply + shares + 10**6)
    assert seeded_pool.convertToAssets(shares) == worth
    gain = worth - deposit
    assert -2 <= gain <= 1  # nothing but the rounding
    # counted only when charged, the same deposit would have taken its share of the year
    old_shares = deposit * (supply + 10**6) // (pool - pending + 1)
    old_gain = old_shares * (pool + deposit + owed - written + 1) // (supply + old_shares + 10**6) - deposit
    assert 30 * USDC < old_gain < 31 * USDC


# ---------------------------------------------------------------- the debt's initial margin


def collateral_units_for(price, unit, weight, need):
    """The fewest token units whose haircut value (amount * price // unit * weight // 1e18,
    as margining._collateral_value) is at least `need` WAD USD."""
    value = lambda units: units * price // unit * weight // WAD  # noqa: E731
    units = need * unit * WAD // (price * weight)
    while value(units) < need:
        units += 1
    while units > 0 and value(units - 1) >= need:
        units -= 1
    return units


def test_debt_margin__collateral_withdrawal__at_the_limit_both_sides(ch, chain, protocol, usdt, make_debtor, set_price, trader):
    account, tx = make_debtor(trader)
    last = anchor(ch, chain, tx)
    set_price("USDT", 1)  # a fresh round (accrues nothing)
    slot = ch.collateral_slot(usdt)
    col = ch.collaterals(slot)
    price = int(protocol.oracle.price(usdt))
    imr = terms(ch)[2]
    held = 10_000 * USDT
    before = loan(ch, account)

    def most_withdrawable(timestamp):
        # equity >= initial: C - debt >= mul_up(debt, debt_imr), the debt with its interest then
        debt = owed_at(before, last, timestamp) * S2W
        return held - collateral_units_for(price, int(col.unit), int(col.weight), debt + risk.mul_up(debt, imr))

    t1 = chain.blocks.head.timestamp + 60
    limit = most_withdrawable(t1)
    assert 5_000 * USDT < limit < 7_000 * USDT
    at(chain, t1)
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(usdt, limit + 1, 0, sender=trader)
    assert chain.blocks.head.timestamp == t1  # the failed withdrawal was mined at t1
    assert ch.balances(account, slot) == held

    t2 = t1 + 1
    limit = most_withdrawable(t2)
    at(chain, t2)
    tx = ch.withdraw(usdt, limit, 0, sender=trader)
    assert tx.timestamp == t2
    assert ch.balances(account, slot) == held - limit
    assert usdt.balanceOf(trader) == limit
    equity, maintenance, initial = ch.margin(account)
    debt = -int(ch.settlement(account)) * S2W
    assert maintenance == 0 and initial == risk.mul_up(debt, imr)
    # exactly at the limit: one more unit of USDT would have been worth more than what is left
    assert 0 <= equity - initial < risk.mul_up(price, int(col.weight)) // int(col.unit) + 1
    assert debt * (WAD + imr) <= int(ch.collateral_value(account)) * WAD  # debt <= C / (1 + debt_imr)


def test_debt_margin__settlement_withdrawal_by_a_debtor__reverts(ch, usdc, make_debtor, trader):
    make_debtor(trader)
    with ape.reverts("clearinghouse: insufficient balance"):
        ch.withdraw(usdc, 1, 0, sender=trader)


def test_debt_margin__risk_adding_fill_includes_the_debts_initial_margin(ch, chain, protocol, make_debtor, trader, eth_market):
    account, _ = make_debtor(trader)
    lens = protocol.lens
    debt_margin = risk.mul_up(-int(ch.settlement(account)) * S2W, terms(ch)[2])
    assert debt_margin > 700 * WAD  # a quarter of about $3,028

    def free_after(size):
        _, equity, initial = lens.health_after_trade(account, eth_market, size)
        return int(equity) - int(initial)

    # 1 ETH more costs about 6.05% of $2,000 of free margin (6% initial, 0.05% fee)
    per_eth = free_after(0) - free_after(WAD)
    refused = (free_after(0) + debt_margin // 2) * WAD // per_eth  # free margin -debt_margin / 2 after it
    accepted = (free_after(0) - debt_margin // 2) * WAD // per_eth  # +debt_margin / 2
    # without the debt's margin both would fill; with it, the larger one leaves equity short
    assert -debt_margin + 100 * WAD < free_after(refused) < -100 * WAD
    assert free_after(accepted) > 100 * WAD
    with ape.reverts("orders: insufficient margin"):  # the lens's what-if, at the order's commit
        trade_now(ch, eth_market, refused, 0, 0, sender=trader)
    assert ch.market_mask(account) == 0

    trade_now(ch, eth_market, accepted, 0, 0, sender=trader)
    assert ch.positions(account, eth_market).size == accepted
    snapshot = risk.snapshot_account(ch, protocol.oracle, account, chain.blocks.head.timestamp)
    equity, maintenance, initial = ch.margin(account)
    assert (equity, maintenance, initial) == risk.margin(snapshot)
    positions_only = risk.margin(dataclasses.replace(snapshot, debt_imr=0))[2]
    assert initial - positions_only == risk.mul_up(-int(ch.settlement(account)) * S2W, terms(ch)[2])
    assert equity >= initial


# ---------------------------------------------------------------- the debt ceiling (Orders)


@pytest.mark.parametrize("claims", [False, True], ids=["no claims", "claims pending"])
@pytest.mark.parametrize("below", [False, True], ids=["ceiling at the limit: fills", "one wei lower: refused at commit"])
def test_debt_ceiling__at_the_limit_both_sides(
    ch, protocol, configurator, deployer, usdc, make_debtor, refilled_claims, keeper, eth_market, below, claims
):
    """Orders refuses at its commit (a revert: nothing stored, no fee escrowed) an order adding
    risk to a debtor when total_debt * 1e18 > (pool_balance - total_pending) * ceiling, all as
    stored at the commit (the debt as last written, its interest not yet charged); the fill's
    own fee does not count."""
    account, _ = refilled_claims() if claims else make_debtor(keeper)
    # rates 0 freeze the debt (the change accrues what is due first), so the fill's numbers are known
    configurator.set_debt_parameters(0, 0, *DEFAULT_TERMS[2:], DEFAULT_LTV, sender=deployer)
    owed = -int(ch.settlement(account))
    written, _ = debt_of(ch, account)
    total_debt, pool, pending = int(ch.total_debt()), int(ch.pool_balance()), int(ch.total_pending())
    assert total_debt == written < owed  # the stored total: the interest is not charged yet
    ceiling = risk.ceil_div(total_debt * WAD, pool - pending)  # the least ceiling the order passes
    assert 0 < ceiling < WAD
    if claims:
        assert total_debt * WAD <= pool * (ceiling - 1)  # on the whole balance one wei lower would pass
    configurator.set_debt_parameters(0, 0, DEFAULT_TERMS[2], ceiling - below, DEFAULT_LTV, sender=deployer)
    assert terms(ch)[3] == ceiling - below
    insurance = int(ch.insurance_balance())

    if below:
        assert_refused_at_commit(ch, usdc, keeper, eth_market, WAD, "orders: debt ceiling")
        assert ch.market_mask(account) == 0
        assert ch.settlement(account) == -owed
        assert (ch.total_debt(), ch.pool_balance(), ch.total_pending()) == (total_debt, pool, pending)
        assert ch.insurance_balance() == insurance
    else:
        params = ch.markets(eth_market)
        state = ch.market_state(eth_market)
        price = int(protocol.oracle.price(protocol.tokens["WETH"]))
        fill = risk.fill_price(price, int(state.long_oi) - int(state.short_oi), WAD, int(params.skew_scale))
        fee = risk.ceil_div(risk.mul_up(risk.mul_up(WAD, fill), int(params.fee)), S2W)
        receipt = execute_order(ch, usdc, keeper, eth_market, WAD)
        trade = event(receipt, "Trade")
        assert (trade.account, trade.fill_price, trade.fee, trade.new_size) == (account, fill, fee, WAD)
        assert event(receipt, "OrderFilled").fill_price == fill
        assert ch.positions(account, eth_market).size == WAD
        # the fill charged the interest to the pool and added the fee to the debt
        assert (ch.total_debt(), ch.pool_balance()) == (owed + fee, pool + owed - written + fee)
        assert ch.total_pending() == pending
        assert ch.insurance_balance() == insurance


def test_debt_ceiling__over__risk_refused_at_commit_for_a_debtor__reductions_and_non_debtors_fill(
    ch, usdc, configurator, deployer, make_debtor, make_account, fund, weth, trader, other_trader, keeper, eth_market
):
    account, _ = make_debtor(trader)
    trade_now(ch, eth_market, 2 * WAD, 0, 0, sender=trader)  # within the default ceiling
    configurator.set_debt_parameters(*DEFAULT_TERMS[:3], 1, DEFAULT_LTV, sender=deployer)  # 1e-18 of what the pool could lend
    assert ch.total_debt() * WAD > (ch.pool_balance() - ch.total_pending()) * 1

    # the debtor adds risk: more, and a flip (which adds risk too); trade_now's commit reverts alike
    for size in (WAD, -4 * WAD):
        assert_refused_at_commit(ch, usdc, trader, eth_market, size, "orders: debt ceiling")
        assert ch.positions(account, eth_market).size == 2 * WAD
    with ape.reverts("orders: debt ceiling"):
        trade_now(ch, eth_market, WAD, 0, 0, sender=trader)
    # a reduction fills, and so does the close
    trade_now(ch, eth_market, -WAD, 0, 0, sender=trader)
    assert ch.positions(account, eth_market).size == WAD
    trade_now(ch, eth_market, -WAD, 0, 0, sender=trader)
    assert ch.market_mask(account) == 0

    # an account that owes nothing adds risk
    other = make_account(other_trader, collateral_usd=10_000)
    trade_now(ch, eth_market, 3 * WAD, 0, 0, sender=other_trader)
    assert ch.positions(other, eth_market).size == 3 * WAD
    assert ch.settlement(other) > 0

    # the status is read at the commit: an account with collateral only (balance 0) commits and
    # fills, though the fee leaves it in debt...
    keeper_account = account_id(keeper)
    fund(keeper, weth, WAD)
    ch.deposit(weth, WAD, 0, sender=keeper)
    assert ch.settlement(keeper_account) == 0
    receipt = trade_now(ch, eth_market, WAD, 0, 0, sender=keeper)
    fee = int(event(receipt, "Trade").fee)
    assert ch.positions(keeper_account, eth_market).size == WAD
    assert debt_of(ch, keeper_account) == (fee, int(ch.debt_state()[0]))
    # ...and, a debtor now, its next order adding risk is refused at its commit, its reduction fills
    assert_refused_at_commit(ch, usdc, keeper, eth_market, WAD, "orders: debt ceiling")
    trade_now(ch, eth_market, -WAD // 2, 0, 0, sender=keeper)
    assert ch.positions(keeper_account, eth_market).size == WAD // 2


def test_debt_ceiling__committed_within_it__fills_after_an_lp_withdrawal_at_its_round_crosses_it(
    ch, chain, usdc, seeded_pool, lp, make_debtor, trader, eth_market, btc_market
):
    """The ceiling is checked at the commit, on the pool as it is then: a debtor's order
    committed while the debts are within it still fills after its round is out and the LP has
    withdrawn (by request) to leave the debts over it (before: cancelled "orders: debt ceiling",
    its fee to the fund, an option on a known round). A new order adding risk from the same
    account is refused at its commit meanwhile."""
    orders, _, _ = handles(ch)
    account, _ = make_debtor(trader)
    ceiling = terms(ch)[3]
    total_debt, pending = int(ch.total_debt()), int(ch.total_pending())
    assert ceiling == DEFAULT_TERMS[3] and pending == 0
    assert total_debt * WAD <= (int(ch.pool_balance()) - pending) * ceiling  # within it: the commit passes
    chain.pending_timestamp += COOLDOWN + 1  # the LP's shares are unlocked
    commit_order(ch, usdc, trader, eth_market, WAD)
    assert orders.order(account, eth_market).size_delta == WAD and orders.open_orders(account) == 1

    # the LP leaves (by request: the order's hold keeps the book open) to put the debts over the
    # ceiling by $1, executed a settlement delay later; then the order's round is out
    lendable = risk.ceil_div(total_debt * WAD, ceiling) - 1
    withdraw_now(seeded_pool, int(ch.pool_balance()) - pending - lendable + USDC, lp, lp, sender=lp)
    left = int(ch.pool_balance()) - int(ch.total_pending())
    assert int(ch.total_debt()) == total_debt and left <= lendable - USDC + 1
    assert total_debt * WAD > left * ceiling
    redate(market_feed(ch, eth_market))
    assert_refused_at_commit(ch, usdc, trader, btc_market, WAD // 10, "orders: debt ceiling", open_orders=1)

    insurance = int(ch.insurance_balance())
    receipt = orders.execute_order(account, eth_market, sender=ape.accounts.test_accounts[-1])
    assert event(receipt, "OrderFilled").account == account and not events(receipt, "OrderCancelled")
    assert event(receipt, "Trade").new_size == WAD
    assert ch.positions(account, eth_market).size == WAD
    assert orders.open_orders(account) == 0
    assert ch.insurance_balance() == insurance


# ---------------------------------------------------------------- collateral sale over the LTV


@pytest.fixture
def crashed_debtor(ch, fund, usdt, set_price, eth_market, trader):
    """The trader's 10,000 USDT (worth $9,500 haircut) back a 10 ETH long bought at $2,000; ETH
    falls to `price` in steps under the 20% breaker and the trader sells 9.9 ETH there: the loss is
    a debt, 0.1 ETH stays open. Returns (account, the reducing fill's receipt)."""

    def crashed_debtor(price):
        fund(trader, usdt, 10_000 * USDT)
        ch.deposit(usdt, 10_000 * USDT, 0, sender=trader)
        trade_now(ch, eth_market, 10 * WAD, 0, 0, sender=trader)
        for step in (1_650, 1_350, 1_100, price):
            set_price("WETH", step)
        tx = trade_now(ch, eth_market, -99 * WAD // 10, 0, 0, sender=trader)
        account = account_id(trader)
        assert ch.positions(account, eth_market).size == WAD // 10
        return account, tx

    return crashed_debtor


def over_the_limit(ch, account, ltv=DEFAULT_LTV):
    """LiquidationEngine.liquidate_collateral's test, read at the head block: (debt, equity,
    maintenance, whether debt * S2W > floor((equity + debt * S2W) * ltv))."""
    debt = max(-int(ch.settlement(account)), 0)
    equity, maintenance, _ = (int(v) for v in ch.margin(account))
    over = debt > 0 and debt * S2W > risk.signed_mul_floor(equity + debt * S2W, ltv)
    return debt, equity, maintenance, over


def sale_terms(ch, oracle, token):
    col = ch.collaterals(ch.collateral_slot(token))
    discounted = int(oracle.price(token)) * (WAD - int(col.liquidation_discount)) // WAD
    return int(col.unit), discounted


def test_collateral_sale__over_ltv_with_positions_and_positive_equity__exact(
    ch, chain, protocol, engine, usdc, usdt, fund, crashed_debtor, keeper, eth_market
):
    account, tx = crashed_debtor(1_100)
    last = anchor(ch, chain, tx)
    debt, equity, maintenance, over = over_the_limit(ch, account)
    assert ch.collateral_value(account) == 9_500 * WAD
    # over the limit: the debt is more than 90% of what the account holds (equity + debt: the
    # haircut collateral and the unrealised loss of 0.1 ETH, about $9,410)
    assert over and debt * S2W > 9 * equity
    assert equity > maintenance > 0 and ch.market_mask(account) != 0  # healthy, positions open
    unit, discounted = sale_terms(ch, protocol.oracle, usdt)
    assert discounted == 98 * WAD // 100
    fund(keeper, usdc, 20_000 * USDC)
    bad_debt = int(ch.total_bad_debt())

    # a partial sale: 1,000 USDT for 980 USDC
    before = loan(ch, account)
    sale_tx = engine.liquidate_collateral(account, usdt, 1_000 * USDT, sender=keeper)
    owed = owed_at(before, last, sale_tx.timestamp)
    sale = event(sale_tx, "CollateralLiquidation")
    assert (sale.account, sale.token, sale.liquidator, sale.amount, sale.paid) == (
        account,
        usdt.address,
        keeper.address,
        1_000 * USDT,
        980 * USDC,
    )
    assert ch.settlement(account) == -(owed - 980 * USDC)
    assert ch.balances(account, ch.collateral_slot(usdt)) == 9_000 * USDT
    assert usdt.balanceOf(keeper) == 1_000 * USDT
    assert usdc.balanceOf(keeper) == 20_000 * USDC - 980 * USDC
    assert not events(sale_tx, "BadDebt")
    last = anchor(ch, chain, sale_tx)

    # still over the limit: the rest of the debt, sold at most what repays it
    assert over_the_limit(ch, account)[3]
    before = loan(ch, account)
    sale_tx = engine.liquidate_collateral(account, usdt, MAX_UINT, sender=keeper)
    owed = owed_at(before, last, sale_tx.timestamp)
    amount = risk.ceil_div(owed * S2W * unit, discounted)
    paid = risk.ceil_div(amount * discounted, unit * S2W)
    sale = event(sale_tx, "CollateralLiquidation")
    assert (sale.amount, sale.paid) == (amount, paid)
    assert 0 <= paid - owed < USDC  # the debt repaid, at most a unit's rounding over
    assert ch.settlement(account) == paid - owed
    assert debt_of(ch, account) == (0, 0) and ch.total_debt() == 0
    assert ch.balances(account, ch.collateral_slot(usdt)) == 9_000 * USDT - amount
    assert ch.positions(account, eth_market).size == WAD // 10
    assert ch.total_bad_debt() == bad_debt
    custody_holds(ch, usdc)


@pytest.mark.parametrize(
    "offset, message",
    [(0, "liquidation: close positions first"), (-1, None)],
    ids=["ltv at the debt: within the limit", "ltv one wei lower: for sale"],
)
def test_collateral_sale__at_the_ltv_limit_both_sides(
    ch, chain, protocol, engine, configurator, deployer, usdc, usdt, fund, crashed_debtor, keeper, offset, message
):
    """The limit is debt * S2W <= floor((equity + debt * S2W) * ltv): equity plus debt is what the
    account holds (haircut collateral, unrealised PnL, pending claim), not the collateral alone.
    Funding moves the 0.1 ETH position's PnL every second, so the equity is computed for the
    sale's own timestamp and checked against the chain there."""
    account, _ = crashed_debtor(1_100)
    configurator.set_debt_parameters(0, 0, *DEFAULT_TERMS[2:], DEFAULT_LTV, sender=deployer)  # freeze the debt
    fund(keeper, usdc, 1_000 * USDC)
    debt = -int(ch.settlement(account))
    debt_wad = debt * S2W
    t = chain.pending_timestamp + 30
    equity = risk.margin(risk.snapshot_account(ch, protocol.oracle, account, t))[0]
    held = equity + debt_wad
    assert held < int(ch.collateral_value(account))  # the unrealised loss counts
    ltv = risk.ceil_div(debt_wad * WAD, held)  # the least LTV that holds the debt
    assert risk.signed_mul_floor(held, ltv) >= debt_wad > risk.signed_mul_floor(held, ltv - 1)
    assert debt_wad <= risk.mul_down(int(ch.collateral_value(account)), ltv - 1)  # on the collateral alone: within either way
    configurator.set_debt_parameters(0, 0, *DEFAULT_TERMS[2:], ltv + offset, sender=deployer)
    assert engine.debt_liquidation_ltv() == ltv + offset
    assert chain.pending_timestamp < t

    at(chain, t)
    if message:
        with ape.reverts(message):
            engine.liquidate_collateral(account, usdt, 100 * USDT, sender=keeper)
        assert chain.blocks.head.timestamp == t
        assert ch.margin(account)[0] == equity  # the equity the engine saw
        assert ch.settlement(account) == -debt
        assert ch.balances(account, ch.collateral_slot(usdt)) == 10_000 * USDT
    else:
        tx = engine.liquidate_collateral(account, usdt, 100 * USDT, sender=keeper)
        assert tx.timestamp == t
        assert ch.settlement(account) == -(debt - 98 * USDC)
        assert usdt.balanceOf(keeper) == 100 * USDT


def test_collateral_sale__all_collateral_sold_positions_open__no_bad_debt_until_closed(
    ch, chain, protocol, engine, usdc, usdt, fund, crashed_debtor, keeper, trader, eth_market
):
    account, tx = crashed_debtor(1_000)
    last = anchor(ch, chain, tx)
    assert -int(ch.settlement(account)) > 9_800 * USDC  # more than the collateral fetches
    fund(keeper, usdc, 20_000 * USDC)
    bad_debt = int(ch.total_bad_debt())

    before = loan(ch, account)
    sale_tx = engine.liquidate_collateral(account, usdt, MAX_UINT, sender=keeper)
    owed = owed_at(before, last, sale_tx.timestamp)
    sale = event(sale_tx, "CollateralLiquidation")
    assert (sale.amount, sale.paid) == (10_000 * USDT, 9_800 * USDC)
    assert ch.collateral_mask(account) == 0 and ch.market_mask(account) != 0
    assert not events(sale_tx, "BadDebt")
    assert ch.total_bad_debt() == bad_debt
    assert ch.settlement(account) == -(owed - 9_800 * USDC)
    assert ch.total_debt() == owed - 9_800 * USDC
    last = anchor(ch, chain, sale_tx)

    # the owner closes the last position: now the rest is bad debt
    insurance = int(ch.insurance_balance())
    before = loan(ch, account)
    close = trade_now(ch, eth_market, -WAD // 10, 0, 0, sender=trader)
    trade = event(close, "Trade")
    owed = owed_at(before, last, close.timestamp)
    shortfall = owed - int(trade.realised_pnl) + int(trade.fee)
    bad = event(close, "BadDebt")
    assert (bad.account, bad.shortfall, bad.covered_by_insurance, bad.socialised) == (
        account,
        shortfall,
        min(insurance, shortfall),
        shortfall - min(insurance, shortfall),
    )
    assert ch.total_bad_debt() == bad_debt + shortfall
    assert ch.settlement(account) == 0 and ch.total_debt() == 0
    custody_holds(ch, usdc)


def test_collateral_sale__written_off_token__not_taken_from_a_healthy_account_over_the_limit(
    ch, protocol, engine, configurator, deployer, usdc, usdt, weth, fund, crashed_debtor, keeper, trader, eth_market
):
    """A written-off token (weight 0) repays nothing when taken, so it is only ever taken under
    the old rule: no positions and negative equity. An account over the loan-to-value limit but
    healthy keeps it (while its USDT is for sale), with positions and without."""
    fund(trader, weth, WAD)
    ch.deposit(weth, WAD, 0, sender=trader)
    account, _ = crashed_debtor(1_100)
    configurator.write_off_collateral(weth, sender=deployer)
    weth_slot = ch.collateral_slot(weth)
    assert ch.collaterals(weth_slot).weight == 0
    fund(keeper, usdc, 1_000 * USDC)

    debt, equity, maintenance, over = over_the_limit(ch, account)
    assert over and equity > maintenance > 0 and ch.market_mask(account) != 0  # over the limit, healthy
    assert risk.collateral_for_sale(debt, equity, DEFAULT_LTV, True, S2W)
    assert not risk.collateral_for_sale(debt, equity, DEFAULT_LTV, True, S2W, written_off=True)
    with ape.reverts("liquidation: close positions first"):
        engine.liquidate_collateral(account, weth, MAX_UINT, sender=keeper)

    # the owner closes the last position: no positions, equity still positive, still over the limit
    trade_now(ch, eth_market, -WAD // 10, 0, 0, sender=trader)
    debt, equity, maintenance, over = over_the_limit(ch, account)
    assert ch.market_mask(account) == 0 and maintenance == 0
    assert over and equity > 0
    assert not risk.collateral_for_sale(debt, equity, DEFAULT_LTV, False, S2W, written_off=True)
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate_collateral(account, weth, MAX_UINT, sender=keeper)
    assert ch.balances(account, weth_slot) == WAD
    assert weth.balanceOf(keeper) == 0

    # the USDT is for sale all along
    tx = engine.liquidate_collateral(account, usdt, 100 * USDT, sender=keeper)
    sale = event(tx, "CollateralLiquidation")
    assert (sale.token, sale.amount, sale.paid) == (usdt.address, 100 * USDT, 98 * USDC)
    assert ch.balances(account, weth_slot) == WAD


# ---------------------------------------------------------------- the keeper's pay while claims are pending


@pytest.fixture
def illiquid_short(ch, chain, fund, usdt, usdc, guardian, seeded_pool, lp, make_account, set_price, trader, accounts, eth_market):
    """A victim (accounts[7]) holds 1,000 USDT only ($950 haircut) and is short 2 ETH (its open
    fee is a debt); the insurance fund holds $5,000; the pool keeps $1,000 free and the trader's
    10 ETH long closes at `price` (ETH up from $2,000 through $2,300) with a profit the pool can
    pay only $1,000 of: the rest is a pending claim and the pool has no free liquidity. Returns
    the victim's account."""

    def illiquid_short(price):
        owner = accounts[7]
        fund(guardian, usdc, 5_000 * USDC)
        ch.fund_insurance(5_000 * USDC, sender=guardian)
        fund(owner, usdt, 1_000 * USDT)
        ch.deposit(usdt, 1_000 * USDT, 0, sender=owner)
        trade_now(ch, eth_market, -2 * WAD, 0, 0, sender=owner)
        victim = account_id(owner)
        assert ch.settlement(victim) < 0  # the open fee
        drain_pool(ch, seeded_pool, lp, chain, 1_000 * USDC)
        make_account(trader, collateral_usd=20_000)
        trade_now(ch, eth_market, 10 * WAD, 0, 0, sender=trader)
        for step in (2_300, price):
            set_price("WETH", step)
        trade, _, before = close_long(ch, trader, eth_market, 10 * WAD)
        claim = expected_claim(before, trade)
        assert ch.pending(account_id(trader)) == claim > 0
        # the claim is what the pool lacked: its balance less the debts and claims is -claim
        assert ch.pool_balance() - ch.total_debt() - ch.total_pending() == -claim  # no free liquidity
        return victim

    return illiquid_short


def keeper_split(ch, engine, protocol, eth_market, liquidation, timestamp, before):
    """The engine's reward and Clearinghouse.liquidation_close's split of it for `liquidation`
    (the event) of the whole 2 ETH short at `timestamp`, from `before` (liquidation_book, read
    just before): (reward promised, reward_owed: the pool's part, paid by the pool, paid by the
    fund, penalty owed, the balance after the close before the penalty)."""
    params = ch.markets(eth_market)
    share = int(params.keeper_share)
    penalty = int(liquidation.penalty)
    notional = risk.mul_up(2 * WAD, int(protocol.oracle.price(protocol.tokens["WETH"])))
    tip = min(
        min(risk.mul_down(notional, int(engine.underwater_tip_rate())), risk.MAX_TIP) // S2W,
        before["insurance"] + penalty - penalty * share // WAD,
    )
    reward = max(penalty * share // WAD, tip)
    owed_fee = owed_at(before["loan"], before["anchor"], timestamp)
    s = -owed_fee + int(liquidation.realised_pnl)  # the balance after the close, before the penalty
    owed = min(max(penalty - s, 0), penalty)
    reward_owed = min(reward, owed * share // WAD)
    from_pool = min(reward_owed, before["liquidity"]) if reward_owed > 0 else 0
    from_insurance = min(reward - from_pool, before["insurance"] + penalty - owed)  # the rest, and what the pool cannot pay
    return reward, reward_owed, from_pool, from_insurance, owed, s


def liquidation_book(ch, victim):
    """What the keeper's pay depends on, read just before the liquidation."""
    return {
        "insurance": int(ch.insurance_balance()),
        "pool": int(ch.pool_balance()),
        "debt": int(ch.total_debt()),
        "pending": int(ch.total_pending()),
        "liquidity": max(int(ch.pool_balance()) - int(ch.total_debt()) - int(ch.total_pending()), 0),
        "loan": loan(ch, victim),
        "anchor": tuple(int(v) for v in ch.debt_state()),
    }


def test_liquidation__underwater_tip_paid_by_the_fund_while_claims_pending_and_no_liquidity(
    ch, chain, protocol, engine, usdc, illiquid_short, keeper, eth_market
):
    """Underwater (equity < 0): no penalty, so nothing owed and no pool part; the insurance fund
    pays the whole tip, though the pool holds no free token."""
    victim = illiquid_short(2_600)
    equity, maintenance, _ = ch.margin(victim)
    assert equity < 0
    before = liquidation_book(ch, victim)
    wallet = int(usdc.balanceOf(keeper))
    tx = engine.liquidate(victim, eth_market, MAX_UINT, sender=keeper)
    liquidation = event(tx, "Liquidation")
    assert liquidation.size_closed == 2 * WAD and liquidation.penalty == 0
    reward, reward_owed, from_pool, from_insurance, owed, s = keeper_split(
        ch, engine, protocol, eth_market, liquidation, tx.timestamp, before
    )
    assert (owed, reward_owed, from_pool) == (0, 0, 0)
    assert reward == from_insurance > 10 * USDC  # 0.2% of about $5,200
    assert liquidation.keeper_reward == from_insurance
    assert usdc.balanceOf(keeper) == wallet + from_insurance
    assert ch.insurance_balance() == before["insurance"] - from_insurance
    # the loss is lent by the pool: its balance and the debts rise alike; the claims stand
    written = before["loan"]["written"]
    owed_fee = -(s - int(liquidation.realised_pnl))
    assert ch.settlement(victim) == s
    assert ch.pool_balance() == before["pool"] + owed_fee - written - int(liquidation.realised_pnl)
    assert ch.total_debt() == before["debt"] - written - s
    assert ch.total_pending() == before["pending"]
    assert ch.pool_balance() - ch.total_debt() - ch.total_pending() == before["pool"] - before["debt"] - before["pending"] < 0
    assert not events(tx, "BadDebt")  # the USDT is still there
    custody_holds(ch, usdc)


def test_whole_close_with_a_little_equity_left__the_fund_pays_what_the_illiquid_pool_cannot(
    ch, chain, protocol, engine, usdc, illiquid_short, keeper, eth_market
):
    """Was a finding: an account below full_liquidation_health with a little equity left,
    closed whole while claims leave the pool no free token. The penalty is owed, the keeper's
    share of it is the pool's part, and the pool cannot pay it: the keeper got nothing, less than
    the tip it would get had it waited for the equity to go negative. Now the insurance fund
    pays what the pool cannot (it exists to keep liquidations going); the pool still lends the
    whole penalty."""
    victim = illiquid_short(2_455)
    equity, maintenance, _ = (int(v) for v in ch.margin(victim))
    assert 0 < equity < maintenance // 2  # below full_liquidation_health: a whole close
    before = liquidation_book(ch, victim)
    assert before["liquidity"] == 0
    wallet = int(usdc.balanceOf(keeper))
    tx = engine.liquidate(victim, eth_market, MAX_UINT, sender=keeper)
    liquidation = event(tx, "Liquidation")
    assert liquidation.size_closed == 2 * WAD and liquidation.penalty > 0
    reward, reward_owed, from_pool, from_insurance, owed, s = keeper_split(
        ch, engine, protocol, eth_market, liquidation, tx.timestamp, before
    )
    penalty = int(liquidation.penalty)
    share = int(ch.markets(eth_market).keeper_share)
    notional = risk.mul_up(2 * WAD, int(protocol.oracle.price(protocol.tokens["WETH"])))
    tip = risk.mul_down(notional, int(engine.underwater_tip_rate())) // S2W
    assert owed == penalty  # the account pays it by owing it
    assert reward == penalty * share // WAD >= tip > 9 * USDC
    assert reward_owed == reward and from_pool == 0 and from_insurance == reward  # the fund pays it all
    assert liquidation.keeper_reward == reward
    assert usdc.balanceOf(keeper) == wallet + reward
    assert ch.insurance_balance() == before["insurance"] - reward
    # the pool lent the whole penalty: the account owes it, the keeper's share included
    assert ch.settlement(victim) == s - penalty
    written = before["loan"]["written"]
    owed_fee = -(s - int(liquidation.realised_pnl))
    assert ch.pool_balance() == before["pool"] + owed_fee - written - int(liquidation.realised_pnl) + penalty
    assert ch.total_debt() == before["debt"] - written - (s - penalty)
    custody_holds(ch, usdc)


# ---------------------------------------------------------------- Configurator.set_debt_parameters


def debt_parameters(ch, engine):
    return (*terms(ch), int(engine.debt_liquidation_ltv()))


def test_set_debt_parameters__defaults(ch, engine):
    assert debt_parameters(ch, engine) == (*DEFAULT_TERMS, DEFAULT_LTV)


def test_set_debt_parameters__applies_and_logs(ch, engine, configurator, deployer):
    values = (10**18, 10 * WAD, WAD, WAD, WAD)  # every upper bound
    tx = configurator.set_debt_parameters(*values, sender=deployer)
    logged = event(tx, "DebtParametersSet")
    assert (logged.rate_base, logged.rate_slope, logged.debt_imr, logged.ceiling, logged.liquidation_ltv) == values
    assert debt_parameters(ch, engine) == values


BASE = dict(rate_base=DEFAULT_TERMS[0], rate_slope=DEFAULT_TERMS[1], debt_imr=DEFAULT_TERMS[2], ceiling=DEFAULT_TERMS[3])
BASE["liquidation_ltv"] = DEFAULT_LTV
DEBT_BOUNDS = [
    (dict(rate_base=0), None),
    (dict(rate_base=WAD), None),
    (dict(rate_base=WAD + 1), "configurator: bad debt rate"),
    (dict(rate_base=MAX_UINT), "configurator: bad debt rate"),
    (dict(rate_slope=0), None),
    (dict(rate_slope=10 * WAD), None),
    (dict(rate_slope=10 * WAD + 1), "configurator: bad debt rate"),
    (dict(debt_imr=0), "configurator: bad debt margin"),
    (dict(debt_imr=1, liquidation_ltv=WAD), None),  # the least margin needs an LTV of 1
    (dict(debt_imr=WAD), None),
    (dict(debt_imr=WAD + 1), "configurator: bad debt margin"),
    (dict(ceiling=0), "configurator: bad debt ceiling"),
    (dict(ceiling=1), None),
    (dict(ceiling=WAD), None),
    (dict(ceiling=WAD + 1), "configurator: bad debt ceiling"),
    (dict(liquidation_ltv=WAD), None),
    (dict(liquidation_ltv=WAD + 1), "configurator: bad loan to value"),
    (dict(liquidation_ltv=0), "configurator: bad loan to value"),
    # ltv * (1 + debt_imr) > 1, rounded down: 0.8 * 1.25 is exactly 1
    (dict(liquidation_ltv=8 * 10**17), "configurator: bad loan to value"),
    (dict(liquidation_ltv=8 * 10**17 + 1), None),
    (dict(debt_imr=WAD, liquidation_ltv=5 * 10**17), "configurator: bad loan to value"),
    (dict(debt_imr=WAD, liquidation_ltv=5 * 10**17 + 1), None),
    (dict(debt_imr=1, liquidation_ltv=WAD - 1), "configurator: bad loan to value"),
]


@pytest.mark.parametrize(
    "changes, message",
    DEBT_BOUNDS,
    ids=[
        ",".join(f"{k}={v}" for k, v in changes.items()) + (" ok" if message is None else " bad")
        for changes, message in DEBT_BOUNDS
    ],
)
def test_set_debt_parameters__bounds(ch, engine, configurator, deployer, changes, message):
    values = tuple({**BASE, **changes}.values())
    before = debt_parameters(ch, engine)
    if message is None:
        configurator.set_debt_parameters(*values, sender=deployer)
        assert debt_parameters(ch, engine) == values
    else:
        with ape.reverts(message):
            configurator.set_debt_parameters(*values, sender=deployer)
        assert debt_parameters(ch, engine) == before


@pytest.fixture
def roles(deployer, guardian, attacker, trader):
    return {"owner": deployer, "guardian": guardian, "attacker": attacker, "trader": trader}


@pytest.mark.parametrize("role", ["attacker", "guardian", "trader"])
def test_set_debt_parameters__not_the_owner__reverts(ch, engine, configurator, deployer, guardian, roles, role):
    configurator.set_guardian(guardian, sender=deployer)
    with ape.reverts(NOT_OWNER):
        configurator.set_debt_parameters(0, 0, WAD, WAD, WAD, sender=roles[role])
    assert debt_parameters(ch, engine) == (*DEFAULT_TERMS, DEFAULT_LTV)


@pytest.mark.parametrize("role", ["attacker", "owner"])
def test_apply_debt_terms__only_the_configurator(ch, roles, role):
    with ape.reverts("clearinghouse: not configurator"):
        ch.apply_debt_terms(0, 0, 1, 1, sender=roles[role])
    assert terms(ch) == DEFAULT_TERMS


@pytest.mark.parametrize("role", ["attacker", "owner"])
def test_apply_debt_liquidation_ltv__only_the_configurator(engine, roles, role):
    with ape.reverts("liquidation: not configurator"):
        engine.apply_debt_liquidation_ltv(0, sender=roles[role])
    assert engine.debt_liquidation_ltv() == DEFAULT_LTV


# ---------------------------------------------------------------- regressions (findings of the earlier rules, fixed)


FUNDING_BUFFER_SECONDS = 300  # MarginLens: max_withdraw's quote keeps room for 5 minutes


@pytest.mark.parametrize("full", [False, True], ids=["seeded pool", "pool == debt: utilisation 1"])
def test_lens_max_withdraw__a_debtors_quote_holds_for_five_minutes(
    ch, chain, protocol, usdt, make_debtor, set_price, trader, seeded_pool, lp, full
):
    """Was a finding: MarginLens.max_withdraw kept room for 5 minutes of funding but none for a
    debt's interest, so an account in debt without positions got a quote exact to the unit that
    reverted one second later. The lens now keeps room for 5 minutes of the debt's interest at
    the highest rate (rate_base + rate_slope) and that interest's initial margin: the quote,
    exact to the formula, still withdraws 5 minutes later, at full utilisation too."""
    account, _ = make_debtor(trader)
    if full:
        drain_pool(ch, seeded_pool, lp, chain, 0)
        assert ch.pool_balance() == ch.total_debt()
    set_price("USDT", 1)  # a fresh round (accrues nothing)
    now = chain.blocks.head.timestamp
    quote = int(protocol.lens.max_withdraw(account, usdt))
    col = ch.collaterals(ch.collateral_slot(usdt))
    price, weight = int(protocol.oracle.price(usdt)), int(col.weight)
    base, slope, imr, _ = terms(ch)
    equity, _, initial = (int(v) for v in ch.margin(account))
    debt = -int(ch.settlement(account))
    growth = risk.ceil_div(debt * S2W * (base + slope) * FUNDING_BUFFER_SECONDS, YEAR * WAD)
    free = equity - initial - growth - risk.mul_up(growth, imr)
    assert quote == min((free - 2) * USDT // risk.mul_up(price, weight), 10_000 * USDT)
    assert 5_000 * USDT < quote < 7_000 * USDT

    at(chain, now + FUNDING_BUFFER_SECONDS)
    tx = ch.withdraw(usdt, quote, 0, sender=trader)
    assert tx.timestamp == now + FUNDING_BUFFER_SECONDS
    assert usdt.balanceOf(trader) == quote
    equity, _, initial = ch.margin(account)
    assert equity >= initial


def test_withdrawal_at_initial_margin__no_longer_lands_the_collateral_in_a_sale(
    ch, chain, protocol, configurator, deployer, engine, usdc, usdt, fund, make_debtor, set_price, trader, keeper, eth_market
):
    """Was a finding: the sale compared the debt with debt_liquidation_ltv of the haircut
    collateral, PnL ignored, so an account in debt with an unrealised profit could withdraw
    collateral down to far below debt / ltv (at initial margin, never liquidatable) and anyone
    bought the rest at the liquidation discount in the next block. The sale now compares the
    debt with ltv of equity plus debt (the profit counts), and an account at initial margin
    (equity >= debt_imr * debt) is within it since ltv * (1 + debt_imr) > 1."""
    # ETH-PERP's initial rate without the volatility term (vol_k 0), so a 5% move is a profit
    # larger than the position's initial margin: 3% * 1.01
    market = ch.markets(eth_market)
    changes = {"vol_k": 0, "imr_multiplier": 101 * 10**16}
    params = tuple(changes.get(f.name, getattr(market, f.name)) for f in dataclasses.fields(risk.MarketParams))
    configurator.set_market(eth_market, params, sender=deployer)
    account, _ = make_debtor(trader)  # owes about $3,028 against 10,000 USDT
    trade_now(ch, eth_market, 80 * WAD, 0, 0, sender=trader)
    set_price("WETH", 2_100)  # about $8,000 of unrealised profit
    set_price("USDT", 1)

    quote = int(protocol.lens.max_withdraw(account, usdt))
    ch.withdraw(usdt, quote, 0, sender=trader)
    left = int(ch.balances(account, ch.collateral_slot(usdt)))
    assert 0 < left < 2_000 * USDT  # most of it withdrawn
    debt, equity, maintenance, over = over_the_limit(ch, account)
    _, _, initial = ch.margin(account)
    assert equity >= initial > maintenance  # healthy: at initial margin
    assert equity >= risk.mul_up(debt * S2W, DEFAULT_TERMS[2])  # and so at least debt_imr of the debt
    # the old rule (the collateral alone) would put it up for sale: the debt is over 3x that limit
    assert debt * S2W > 3 * risk.mul_down(int(ch.collateral_value(account)), DEFAULT_LTV)
    assert not over  # the new one does not
    assert not risk.collateral_for_sale(debt, equity, DEFAULT_LTV, True, S2W)

    fund(keeper, usdc, 2_000 * USDC)
    with ape.reverts("liquidation: close positions first"):
        engine.liquidate_collateral(account, usdt, MAX_UINT, sender=keeper)
    assert ch.balances(account, ch.collateral_slot(usdt)) == left
    assert usdt.balanceOf(keeper) == 0
