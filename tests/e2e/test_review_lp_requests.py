"""Attacker's review of the LP requests (contracts/LiquidityPool.vy: `request_deposit`,
`request_redeem`, `execute_request`, `lapse_request`; issue 9, item 2, the LP half).

Each finding is replayed with numbers. A test marked `xfail(strict=True)` asserts the SAFE
behaviour and fails on this version: it shows a vulnerability, and turns into an XPASS (to be
unmarked) once it is fixed. The other tests show an attack that fails, with the exact revert
or the exact amounts.

Findings (severity; see each test for the numbers):
  M1  A capped request left a windfall in the pool (a redemption whose shares rose, a deposit
      whose shares fell), and it went to whoever held shares when the request executed: a
      just-in-time depositor who then executed the request took most of it from the LPs who
      were there at the request. Fixed: the excess stays in the pool as shares the Clearinghouse keeps at the
      execution, the share price unmoved by it.                             (D1, D2)
  M2  The execution's value is read whenever the executor chooses in a 900 s window, and a
      lapse refunds the fee: an LP with a standing request exits ahead of a costly round it sees
      pending, or lets it lapse for free; another LP executes someone's request at the worst
      round of the window. Only prompt keepers close it, and the $2 fee does not pay the
      290,000 gas of an execution above ~3.4 gwei at $2,000 ETH.           (T1, T3, T1-facts)
  L1  A spender with any allowance occupied the owner's one request slot ("pool: request
      pending"), over and over, for a unit of allowance a round. Fixed: only the owner asks
      ("pool: not owner").                                                  (G1)
  L2  A spender paid a redemption request's fee, a lapse refunded it to the owner. Fixed by
      the same rule: the payer is the controller.                          (G2)
  L3  Four dust deposits to a receiver make a deposit request paid by anyone else unexecutable
      for its whole window ("pool: too many locked deposits").            (G3)
  I1  Requested executions log ERC-4626 `Deposit(sender=keeper)` and `Withdraw(owner=...)` for
      shares the owner no longer held (they left at the request).         (I1)
Attacks that fail: the escrowed shares cannot be moved, redeemed or requested by anyone (S1);
no request moves locked shares or a victim's lot timers (S2); the escrowed tokens are never
counted or drawn by another path, each fee is paid once (S3); a fee-on-transfer settlement
coin cannot draw on other LPs' escrow (S4); a re-entrant settlement coin finds every pool path
locked during an execution (S5); tiny requests and zero-value executions revert, then lapse
whole (S6); a request does not get past the open-interest reserve an instant exit meets (S7);
odd receivers (zero, the pool) hurt only whoever chose them (S8).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import ape
import pytest
from ape.exceptions import ContractLogicError
from eth_abi import decode

from marginsim.orders import deposit_now, redeem_now, trade_now
from marginsim.protocol import deploy_protocol, wad
from tests.e2e.attacks import deploy_core, quiet_config, reserve_out_of_the_way
from tests.e2e.incidents import USDC, WAD, deposit, move_clock_to

COOLDOWN = 900
WINDOW = 900  # LiquidityPool.REQUEST_WINDOW
LONG = 7_500 * WAD  # the trader's long, $15M at $2,000: the pool is short of it
ALICE_USD, WHALE_USD, MALLORY_USD = 1_000_000, 4_000_000, 2_000_000
BOOK_OPEN = "pool: book open, request instead"  # LiquidityPool's instant paths while the book is open
LOCK = b""  # Vyper's nonreentrancy check reverts with no data


def eth(protocol, deployer, price_usd: float) -> None:
    """One WETH round at `price_usd` (the feed's 8 decimals), synced into the router."""
    protocol.publish("WETH", int(round(price_usd * 10**8)), deployer)


def fund(usdc, who, amount, spender) -> None:
    if amount:
        usdc.mint(who, amount, sender=who)
    usdc.approve(spender, 2**256 - 1, sender=who)


def executed(receipt):
    [found] = [e for e in receipt.events if e.event_name == "RequestExecuted"]
    return found


def reason(data: bytes) -> str:
    """The string of an `Error(string)` revert; '' for anything else (a bare revert)."""
    data = bytes(data)
    if data[:4] != bytes.fromhex("08c379a0"):
        return ""
    return decode(["string"], data[4:])[0]


@pytest.fixture(scope="module")
def whale(accounts):
    return accounts[7]


@pytest.fixture(scope="module")
def jit(accounts):
    """A fresh address with no shares: the just-in-time depositor."""
    return accounts[6]


@pytest.fixture(scope="module")
def router(accounts):
    """A contract-like payer: pays requests for others (a zap, a vault, an operator)."""
    return accounts[8]


def build_world(project, chain, deployer, lp, whale, attacker, trader, jit, router, keeper, settlement=None):
    """test_review_lp_requests.py's world: a $7M pool (Alice `lp` $1M, the whale $4M, Mallory
    `attacker` $2M), all out of their cooldown, against a 7,500 ETH long ($15M); funding off,
    reserve off. `settlement`: an existing coin (a quirky one) as the settlement token."""
    config = quiet_config()
    if settlement is not None:
        config = replace(config, settlement_address=settlement.address)
    protocol = deploy_protocol(project, deployer, config)
    pool, usdc = protocol.pool, protocol.settlement
    for who, usd in ((lp, ALICE_USD), (whale, WHALE_USD), (attacker, MALLORY_USD)):
        fund(usdc, who, usd * USDC, pool)
        pool.deposit(usd * USDC, who, sender=who)
    for who in (jit, router, keeper):
        fund(usdc, who, 0, pool)
    reserve_out_of_the_way(protocol, deployer)
    deposit(protocol, trader, "USDC", 5_000_000 * USDC)
    trade_now(protocol.clearinghouse, protocol.markets["ETH-PERP"], LONG, sender=trader)
    move_clock_to(chain, chain.pending_timestamp + COOLDOWN)
    return protocol


@pytest.fixture(scope="module")
def world(project, chain, deployer, lp, whale, attacker, trader, jit, router, keeper):
    """A $7M pool (Alice `lp` $1M, a whale $4M, Mallory `attacker` $2M), all out of their
    cooldown, against a 7,500 ETH long ($15M): a 1% ETH move is $150,000 of pool value (2.1%).
    Funding off, so the value moves only with the rounds a test publishes; the reserve off (the
    long is twice the pool) except where a test turns it on."""
    return build_world(project, chain, deployer, lp, whale, attacker, trader, jit, router, keeper)


@pytest.fixture(scope="module")
def fee(world):
    return int(world.orders.execution_fee())  # 2 USDC


@pytest.fixture(autouse=True)
def fresh_round(world, deployer):
    """Each test starts on a fresh $2,000 round (the clock moves on between tests)."""
    eth(world, deployer, 2_000)


# ============================================================ M1: the windfall goes to a JIT LP


def test_D1_jit_deposit_takes_none_of_the_windfall_of_a_capped_redemption(world, chain, deployer, lp, whale, attacker, jit, fee):
    """M1, fixed. The whale asks to redeem its 4e18 shares: $4,004,301.79 recorded. A round then
    pays the pool (ETH -1%, the long loses $150,000): the shares are worth $4,090,337.50 at the
    execution, the whale is paid the $4,004,301.79 of the request. A fresh address asks to
    deposit $5,000,000 after the round, at the price that counts the escrowed shares at full
    value; when its request is due (the whale's too) it executes its own first, then the
    whale's (anyone may, and it earns the fee). Before the fix the $86,035.71 windfall stayed in
    the pool and the JIT depositor's shares were worth $53,320.74 more than it paid at once.
    Now the execution gives the windfall to the Clearinghouse as shares it keeps for good (`kept` in
    RequestExecuted: the escrowed shares beyond those the whale's pay is worth): the share price
    is the same before and after it, so the JIT depositor gains nothing and Alice and Mallory,
    the LPs of record, lose nothing to it either."""
    pool, usdc = world.pool, world.settlement
    vault = pool.CLEARINGHOUSE()  # keeps a capped request's excess as shares, for good
    fund(usdc, whale, fee, pool)
    shares = int(pool.balanceOf(whale))
    pool.request_redeem(shares, whale, whale, sender=whale)
    recorded = int(pool.requests(whale).assets)
    eth(world, deployer, 1_980)  # the long loses $150,000
    stake = 5_000_000 * USDC
    fund(usdc, jit, stake + fee, pool)
    pool.request_deposit(stake, jit, sender=jit)  # after the round: at the value that counts it
    move_clock_to(chain, int(pool.requests(jit).executable_at))
    windfall = int(pool.convertToAssets(shares)) - recorded
    assert windfall > 80_000 * USDC  # $86,035.71 the capped redemption leaves over
    pool.execute_request(jit, sender=jit)  # its own first, at the value that counts the escrow in full
    worth = int(pool.convertToAssets(shares))  # the escrow's value just before the whale's execution
    others = {who: int(pool.convertToAssets(pool.balanceOf(who))) for who in (lp, attacker, jit)}
    held = int(pool.balanceOf(vault))
    event = executed(pool.execute_request(whale, sender=jit))
    assert event.assets == recorded
    assert event.shares + event.kept == shares  # burned, and the rest of the escrow kept by the Clearinghouse
    assert int(pool.balanceOf(vault)) == held + event.kept
    assert abs(int(pool.convertToAssets(event.kept)) - (worth - recorded)) <= 2  # the windfall, as shares
    for who, before in others.items():  # nobody's shares moved in value by the execution (rounding only)
        assert 0 <= int(pool.convertToAssets(pool.balanceOf(who))) - before <= 2, who
    gain = int(pool.convertToAssets(pool.balanceOf(jit))) - stake
    assert gain <= 2, f"the JIT depositor took {gain / USDC:,.2f} USDC of the {windfall / USDC:,.2f} windfall"


def test_D2_jit_deposit_takes_none_of_the_surplus_of_a_capped_deposit(world, chain, deployer, lp, whale, router, jit, fee):
    """M1, fixed, the mirror: `router` asks to deposit $4,000,000; a round then costs the pool
    (ETH +1%, the long gains $150,000). It is minted the 3.9957e18 shares of the request, where
    its tokens buy 4.0834e18 now: before the fix the $85,943.29 surplus stayed in the pool, and
    a fresh address that asked to deposit $5,000,000 after the round (at the lower price) and
    executed its own request first, then the router's, was up $27,247.21 at once. Now the
    execution mints the shares the tokens are worth now, those beyond the request's to the
    Clearinghouse, kept for good (`kept`): the pool keeps every token and the share price is where it was."""
    pool, usdc = world.pool, world.settlement
    vault = pool.CLEARINGHOUSE()  # keeps a capped request's excess as shares, for good
    assets = 4_000_000 * USDC
    fund(usdc, router, assets + fee, pool)
    pool.request_deposit(assets, router, sender=router)
    recorded = int(pool.requests(router).shares)
    eth(world, deployer, 2_020)  # the long gains $150,000
    stake = 5_000_000 * USDC
    fund(usdc, jit, stake + fee, pool)
    pool.request_deposit(stake, jit, sender=jit)  # after the round: at its lower price
    move_clock_to(chain, int(pool.requests(jit).executable_at))
    pool.execute_request(jit, sender=jit)  # its own first, at the lower price of now
    worth = int(pool.convertToShares(assets))
    assert worth > recorded  # capped: the tokens buy more shares now
    others = {who: int(pool.convertToAssets(pool.balanceOf(who))) for who in (lp, whale, jit)}
    held = int(pool.balanceOf(vault))
    event = executed(pool.execute_request(router, sender=jit))
    assert (event.assets, event.shares, event.kept) == (assets, recorded, worth - recorded)
    assert int(pool.convertToAssets(event.kept)) > 80_000 * USDC  # the surplus, as shares
    assert int(pool.balanceOf(vault)) == held + event.kept
    for who, before in others.items():
        assert 0 <= int(pool.convertToAssets(pool.balanceOf(who))) - before <= 2, who
    gain = int(pool.convertToAssets(pool.balanceOf(jit))) - stake
    assert gain <= 2, f"the JIT depositor took {gain / USDC:,.2f} USDC of the capped deposit's surplus"


# ============================================================ M2: the executor picks the moment


def test_T1_facts__a_standing_request_costs_nothing_to_keep_or_to_drop(world, chain, attacker, keeper, fee):
    """What M2 rests on, as the contract states it: the controller may execute its own request
    (and is paid its own fee), any time in [executable_at, executable_at + 900]; unexecuted, it
    lapses and the fee comes back in full. A 2 USDC fee against REQUEST_GAS = 290,000: a keeper
    skips it above 2 / (290,000 * $2,000 * 1e-9) = 3.4 gwei (marginsim/bots/keeper.py
    `_plan_requests`), and then nobody but the LP decides when, or whether, it executes."""
    pool, usdc = world.pool, world.settlement
    fund(usdc, attacker, fee, pool)
    shares, wallet = int(pool.balanceOf(attacker)), int(usdc.balanceOf(attacker))
    pool.request_redeem(shares, attacker, attacker, sender=attacker)
    executable_at = int(pool.requests(attacker).executable_at)
    move_clock_to(chain, executable_at + WINDOW + 1)
    pool.lapse_request(attacker, sender=keeper)
    assert int(pool.balanceOf(attacker)) == shares  # the standing option cost nothing but gas ...
    assert int(usdc.balanceOf(attacker)) == wallet  # ... the fee came back whole
    fund(usdc, attacker, 0, pool)
    pool.request_redeem(shares, attacker, attacker, sender=attacker)  # ... and is renewed at once
    move_clock_to(chain, int(pool.requests(attacker).executable_at) + WINDOW - 1)  # 899 s after it was due
    receipt = pool.execute_request(attacker, sender=attacker)
    assert executed(receipt).keeper == attacker.address and executed(receipt).fee == fee


@pytest.mark.xfail(
    strict=True,
    reason="M2 (medium): a standing request lets its LP exit ahead of a round seen pending in the window",
)
def test_T1_standing_request_exits_ahead_of_a_round_seen_in_the_window(world, chain, deployer, attacker, fee):
    """Mallory keeps a standing request for her 2e18 shares ($2,002,150.89 recorded) and no
    keeper executes it at once (the fee does not pay the gas; T1_facts). 360 s after the request
    she sees a round pending that costs the pool (ETH +0.5%: the long gains $75,000) and executes
    her own request just before it lands: paid the $2,002,150.89 of the request, where her
    shares are worth $1,980,641.96 once the round is in. +$21,508.93 taken from Alice and the
    whale, what the request was meant to stop (test_known_round_lp.py); had no round come she
    would have let it lapse for nothing and asked again.
    Fix: value the execution at the first oracle round dated at or after executable_at (Orders'
    `round_price`), refusing it once a newer round replaced that one; a request not executed at
    its round lapses with the fee (and a bond on the amount, like Orders' order bond) forfeited,
    not refunded; and an execution fee that pays REQUEST_GAS, so keepers execute at once."""
    pool, usdc = world.pool, world.settlement
    fund(usdc, attacker, fee, pool)
    shares = int(pool.balanceOf(attacker))
    pool.request_redeem(shares, attacker, attacker, sender=attacker)
    recorded = int(pool.requests(attacker).assets)
    move_clock_to(chain, int(pool.requests(attacker).executable_at) + 300)
    # what the shares are worth once the pending round is in, had she not left
    snapshot = chain.snapshot()
    eth(world, deployer, 2_010)
    worth_after = int(pool.convertToAssets(shares))
    chain.restore(snapshot)
    assert recorded - worth_after > 20_000 * USDC  # the round is worth $21,508.93 to her
    paid = None
    with contextlib.suppress(ContractLogicError):  # ahead of the round she saw pending (a fixed pool makes her wait)
        paid = executed(pool.execute_request(attacker, sender=attacker)).assets
    eth(world, deployer, 2_010)
    if paid is None:
        paid = executed(pool.execute_request(attacker, sender=attacker)).assets
    # SAFE: a round seen pending while the request waits is counted against the LP
    assert paid <= worth_after + 2, f"paid {paid / USDC:,.2f}, worth {worth_after / USDC:,.2f} after the round"


@pytest.mark.xfail(
    strict=True,
    reason="M2 (medium): any executor reads a request's value at the worst round of its window",
)
def test_T3_an_lp_executes_another_lps_request_at_the_worst_round(world, chain, deployer, whale, attacker, fee):
    """The whale's request ($4,004,301.79 recorded) is due; a heartbeat round at executable_at +
    10 leaves the price at $2,000 (what a prompt keeper, or a round-pinned execution, pays:
    $4,004,301.79). At +300 a round takes ETH to $2,020 (the long gains $150,000) and Mallory, an
    LP, executes the whale's request right then: paid $3,918,266.07, -$86,035.71; ETH is back at
    $2,000 at +400 and Mallory's own shares are worth +$57,357.14 (Alice +$28,678.57). The whale
    can only protect itself by executing its own request at once.
    Fix: as T1 (the value of the first round at or after executable_at)."""
    pool, usdc = world.pool, world.settlement
    fund(usdc, whale, fee, pool)
    shares = int(pool.balanceOf(whale))
    pool.request_redeem(shares, whale, whale, sender=whale)
    recorded = int(pool.requests(whale).assets)
    executable_at = int(pool.requests(whale).executable_at)
    move_clock_to(chain, executable_at + 10)
    eth(world, deployer, 2_000)  # the first round after executable_at: nothing moved
    mallory_before = int(pool.convertToAssets(pool.balanceOf(attacker)))
    move_clock_to(chain, executable_at + 300)
    eth(world, deployer, 2_020)
    try:
        paid = executed(pool.execute_request(whale, sender=attacker)).assets
    except ContractLogicError:
        return  # a fixed pool refuses an execution at a round after the request's own
    move_clock_to(chain, executable_at + 400)
    eth(world, deployer, 2_000)
    mallory_gain = int(pool.convertToAssets(pool.balanceOf(attacker))) - mallory_before
    # SAFE: the executor does not choose the round: the whale gets the first round's value
    assert paid >= recorded - 2, (
        f"paid {paid / USDC:,.2f} of {recorded / USDC:,.2f}; the executing LP's shares "
        f"{mallory_gain / USDC:+,.2f} once the price came back"
    )


# ============================================================ L1-L3: spenders and receivers


def test_G1_fixed__a_spender_cannot_take_the_owners_request_slot(world, chain, lp, router, fee):
    """L1 (low), fixed. Alice approved `router` for 10 USDC of shares (a zap's allowance). The
    router asked to redeem 998,926 shares of hers (worth 1 unit) to itself, keyed by Alice: her
    own request reverted "pool: request pending" for the next 60 to 960 s, round after round
    (three rounds for 3 units of allowance and no fee; 10 USDC of allowance lasted 19 years at
    one a minute), and once requests are the only way out she could not leave until she
    revoked. Now only the owner asks ("pool: not owner", the allowance untouched) and Alice's
    request goes through."""
    pool, usdc = world.pool, world.settlement
    alice_shares = int(pool.balanceOf(lp))
    pool.approve(router, 10 * USDC * 10**6, sender=lp)
    fund(usdc, router, 3 * fee, pool)
    fund(usdc, lp, fee, pool)
    dust = int(pool.previewWithdraw(1))  # shares worth one unit, rounded up
    with ape.reverts("pool: not owner"):
        pool.request_redeem(dust, router, lp, sender=router)
    assert int(pool.allowance(lp, router)) == 10 * USDC * 10**6
    pool.request_redeem(alice_shares // 2, lp, lp, sender=lp)
    assert int(pool.requests(lp).shares) == alice_shares // 2


def test_G2_fixed__a_lapse_refunds_the_fee_to_whoever_paid_it(world, chain, lp, router, keeper, fee):
    """L2 (low), fixed. `router` placed a redemption request for Alice's shares and paid its 2 USDC
    fee; nobody executed it and it lapsed: the shares went back to Alice (right) and so did the
    fee (the router's money). Now only the owner places its redemption request, so the payer of
    the fee is the controller a lapse refunds: Alice pays 2 USDC and gets exactly them back."""
    pool, usdc = world.pool, world.settlement
    shares = 10**15
    pool.approve(router, shares, sender=lp)
    fund(usdc, router, fee, pool)
    with ape.reverts("pool: not owner"):
        pool.request_redeem(shares, router, lp, sender=router)
    fund(usdc, lp, fee, pool)
    alice_wallet, alice_shares = int(usdc.balanceOf(lp)), int(pool.balanceOf(lp))
    pool.request_redeem(shares, router, lp, sender=lp)
    assert int(usdc.balanceOf(lp)) == alice_wallet - fee
    move_clock_to(chain, int(pool.requests(lp).executable_at) + WINDOW + 1)
    pool.lapse_request(lp, sender=keeper)
    assert (int(usdc.balanceOf(lp)), int(pool.balanceOf(lp))) == (alice_wallet, alice_shares)


@pytest.mark.xfail(strict=True, reason="L3 (low): dust lots make a third party's deposit request unexecutable")
def test_G3_dust_lots_block_a_deposit_request_paid_by_someone_else(world, chain, accounts, lp, router, keeper, fee):
    """`router` asks to deposit $100,000 for Alice. Mallory, from four addresses, asks to
    deposit 1 unit ($0.000001) to Alice from each and executes each when due, the last 14 s
    before the router's is due: Alice's four lots are in their cooldown, and the router's
    request reverts "pool: too many locked deposits" when it is due. As each dust lot unlocks
    (900 s after it), the same address renews it in that block with a request placed a
    settlement delay before, so the request is refused all 7 times a keeper tries in its window,
    for 8 units ($0.000008) and 8 fees she pays herself; then it lapses, the router's $100,000
    tied up for 16 minutes, the keeper's dry runs for nothing. The instant path (while the book
    is idle) has the same refusal.
    Fix: take the receiver's lot at the request (a request holds one of the receiver's LOTS
    until it executes or lapses), or pay a requested deposit's shares into a lot of the
    receiver's latest unlock time without extending it, or a minimum deposit to a third party."""
    pool, usdc = world.pool, world.settlement
    delay = int(world.orders.settlement_delay())
    sybils = [accounts[i] for i in (10, 11, 12, 13)]
    for who in sybils:
        fund(usdc, who, 10 * (fee + 1), pool)
    fund(usdc, router, 100_000 * USDC + fee, pool)
    start = chain.pending_timestamp
    executable_at = start + 4 * 14 + 2 * delay  # the router asks so the last dust lands 14 s before
    placed = {}

    def dust_request(who, at: int) -> None:
        """`who` asks for 1 unit to Alice so that it is due at `at`."""
        move_clock_to(chain, at - delay)
        pool.request_deposit(1, lp, sender=who)
        placed[who] = at

    def dust_due(who) -> None:
        move_clock_to(chain, placed[who])
        with contextlib.suppress(ContractLogicError):  # a fixed pool may keep a lot for the request
            pool.execute_request(who, sender=who)

    dust_times = [executable_at - k for k in (56, 42, 28, 14)]  # after the router asks, before it is due
    for who, at in zip(sybils, dust_times, strict=True):
        dust_request(who, at)
    move_clock_to(chain, executable_at - delay)
    pool.request_deposit(100_000 * USDC, lp, sender=router)
    assert int(pool.requests(router).executable_at) == executable_at
    for who in sybils:
        dust_due(who)
    attempts, done = [], False

    def keeper_tries() -> None:
        nonlocal done
        if done:
            return
        try:
            pool.execute_request(router, sender=keeper)
            done = True
        except ContractLogicError as error:
            attempts.append(error.message)

    unlocks = sorted(int(lot.unlocks_at) for lot in pool.locked_lots(lp))
    for at in (executable_at, executable_at + 600):
        move_clock_to(chain, at)
        keeper_tries()
    for who, at in zip(sybils, unlocks, strict=True):  # each lot renewed in the block it unlocks in
        dust_request(who, at)
    for who in sybils:
        dust_due(who)
        keeper_tries()
    move_clock_to(chain, executable_at + WINDOW)
    keeper_tries()
    # SAFE: a deposit request paid by someone else still executes in its window
    assert attempts == [], f"refused {len(attempts)} times in its window: {attempts[0]!r}"


# ============================================================ I1: events


def test_I1_requested_executions_log_the_keeper_as_the_erc4626_sender(world, chain, lp, router, keeper, fee):
    """Informational: a requested deposit logs `Deposit(sender=<keeper>, owner=<receiver>)`,
    though the router paid; a requested redemption logs `Withdraw(sender=<keeper>, owner=<LP>)`
    for shares that left the LP at the request (`Transfer(LP -> pool)`) and burn from the pool
    (`Transfer(pool -> 0)`): an indexer that reads ERC-4626 events for who paid, or that debits
    `Withdraw.shares` from the owner, misreads them. RequestExecuted carries the controller."""
    pool, usdc = world.pool, world.settlement
    fund(usdc, router, 1_000 * USDC + 2 * fee, pool)
    pool.request_deposit(1_000 * USDC, lp, sender=router)
    move_clock_to(chain, int(pool.requests(router).executable_at))
    receipt = pool.execute_request(router, sender=keeper)
    [dep] = [e for e in receipt.events if e.event_name == "Deposit"]
    assert (dep.sender, dep.owner) == (keeper.address, lp.address)
    fund(usdc, lp, fee, pool)
    placed = pool.request_redeem(10**15, lp, lp, sender=lp)
    assert [
        (e.sender, e.receiver) for e in placed.events if e.event_name == "Transfer" and e.contract_address == pool.address
    ] == [(lp.address, pool.address)]
    move_clock_to(chain, int(pool.requests(lp).executable_at))
    receipt = pool.execute_request(lp, sender=keeper)
    [wd] = [e for e in receipt.events if e.event_name == "Withdraw"]
    burns = [(e.sender, e.receiver) for e in receipt.events if e.event_name == "Transfer" and e.contract_address == pool.address]
    assert (wd.sender, wd.owner, wd.shares) == (keeper.address, lp.address, 10**15)
    assert burns == [(pool.address, "0x0000000000000000000000000000000000000000")]


# ============================================================ S1-S7: attacks that fail


def test_S1_escrowed_shares_cannot_be_moved_redeemed_or_requested(world, chain, whale, attacker, jit, keeper, fee):
    """The whale's 4e18 shares sit in the pool (balanceOf(pool)), free of any lot. Nobody can
    move them: the pool never approves anyone, so transferFrom stops at the allowance, a request
    with the pool as owner at "pool: not owner" (and redeem and withdraw, which the open book refuses first,
    at the same `_release` check once it is idle); redeemable(pool) quotes them but nothing can
    spend it. A donation of shares to the pool sticks there and changes no request: the
    lapse returns exactly the whale's 4e18, the donation stays."""
    pool, usdc = world.pool, world.settlement
    fund(usdc, whale, fee, pool)
    escrow = int(pool.balanceOf(whale))
    pool.request_redeem(escrow, whale, whale, sender=whale)
    assert int(pool.balanceOf(pool)) == escrow and int(pool.locked_shares(pool)) == 0
    assert int(pool.redeemable(pool)) > 0 and int(pool.allowance(pool, attacker)) == 0
    with ape.reverts("erc20: insufficient allowance"):
        pool.transferFrom(pool, attacker, escrow, sender=attacker)
    with ape.reverts(BOOK_OPEN):
        pool.redeem(escrow, attacker, pool, sender=attacker)
    with ape.reverts(BOOK_OPEN):
        pool.withdraw(1_000 * USDC, attacker, pool, sender=attacker)
    fund(usdc, attacker, fee, pool)
    with ape.reverts("pool: not owner"):
        pool.request_redeem(escrow, attacker, pool, sender=attacker)
    pool.transfer(pool, 10**15, sender=attacker)  # a donation of shares: stuck, counted nowhere
    move_clock_to(chain, int(pool.requests(whale).executable_at) + WINDOW + 1)
    pool.lapse_request(whale, sender=keeper)
    assert int(pool.balanceOf(whale)) == escrow and int(pool.balanceOf(pool)) == 10**15


def test_S2_no_request_moves_locked_shares_or_a_victims_lot_timers(world, chain, lp, jit, router, attacker, keeper, fee):
    """Shares in their cooldown cannot be requested by their owner ("pool: cooldown"), nor by a
    spender ("pool: not owner", first); a deposit request executed to a victim puts its shares in a lot of their own
    (the victim's unlock times do not move), and once the victim's four lots are in their
    cooldown, one paid by someone else reverts "pool: too many locked deposits"."""
    pool, usdc = world.pool, world.settlement
    fund(usdc, jit, 10_000 * USDC + fee, pool)
    deposit_now(pool, 5_000 * USDC, jit, sender=jit)
    locked = int(pool.balanceOf(jit))
    with ape.reverts("pool: cooldown"):
        pool.request_redeem(locked, jit, jit, sender=jit)
    pool.approve(router, locked, sender=jit)
    fund(usdc, router, 2 * fee, pool)
    with ape.reverts("pool: not owner"):  # a spender never asks for the owner
        pool.request_redeem(locked, router, jit, sender=router)
    before = [(int(lot.shares), int(lot.unlocks_at)) for lot in pool.locked_lots(jit)]
    fund(usdc, attacker, 1_000 * USDC + fee, pool)
    pool.request_deposit(1_000 * USDC, jit, sender=attacker)
    move_clock_to(chain, int(pool.requests(attacker).executable_at))
    pool.execute_request(attacker, sender=keeper)
    after = [(int(lot.shares), int(lot.unlocks_at)) for lot in pool.locked_lots(jit)]
    assert after[0] == before[0] and len(after) == 2  # the victim's lot unchanged, a new one beside it
    for _ in range(2):  # fill the victim's lots with its own deposits
        chain.pending_timestamp += 1
        deposit_now(pool, 1_000 * USDC, jit, sender=jit)
    fund(usdc, attacker, 1_000 * USDC + fee, pool)
    pool.request_deposit(1_000 * USDC, jit, sender=attacker)
    full = [(int(lot.shares), int(lot.unlocks_at)) for lot in pool.locked_lots(jit)]
    move_clock_to(chain, int(pool.requests(attacker).executable_at))
    with ape.reverts("pool: too many locked deposits"):
        pool.execute_request(attacker, sender=keeper)
    assert [(int(lot.shares), int(lot.unlocks_at)) for lot in pool.locked_lots(jit)] == full


def test_S3_escrowed_tokens_are_counted_nowhere_drawn_by_nothing_else_and_paid_once(
    world, chain, lp, whale, router, jit, keeper, fee
):
    """With a $100,000 deposit request and a redemption request pending and 1,000 USDC donated
    to the pool: the pool holds 100,000 + 2 + 2 + 1,000 USDC, its value (totalAssets) counts none
    of it, a deposit and a redemption executed meanwhile leave it alone, each execution pays its keeper the
    fee once ("pool: no request" after), and what is left is the donation, counted nowhere."""
    pool, usdc = world.pool, world.settlement
    value = int(pool.totalAssets())
    fund(usdc, router, 100_000 * USDC + fee, pool)
    pool.request_deposit(100_000 * USDC, router, sender=router)
    fund(usdc, whale, fee, pool)
    pool.request_redeem(10**18, whale, whale, sender=whale)
    fund(usdc, jit, 1_000 * USDC + 50_000 * USDC, pool)
    usdc.transfer(pool, 1_000 * USDC, sender=jit)
    assert int(usdc.balanceOf(pool)) == 101_000 * USDC + 2 * fee
    assert int(pool.totalAssets()) == value
    deposit_now(pool, 50_000 * USDC, jit, sender=jit)
    redeem_now(pool, 10**17, lp, lp, sender=lp)
    assert int(usdc.balanceOf(pool)) == 101_000 * USDC + 2 * fee
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    keeper_wallet = int(usdc.balanceOf(keeper))
    pool.execute_request(router, sender=keeper)
    pool.execute_request(whale, sender=keeper)
    for who in (router, whale):
        with ape.reverts("pool: no request"):
            pool.execute_request(who, sender=keeper)
    move_clock_to(chain, chain.pending_timestamp + WINDOW + 1)
    with ape.reverts("pool: no request"):
        pool.lapse_request(router, sender=keeper)
    assert int(usdc.balanceOf(keeper)) == keeper_wallet + 2 * fee
    assert int(usdc.balanceOf(pool)) == 1_000 * USDC and int(pool.balanceOf(pool)) == 0


@pytest.fixture(scope="module")
def fot(project, deployer):
    """A core protocol whose settlement coin can take a fee on transfer (off for now)."""
    coin = deployer.deploy(project.FeeOnTransferERC20, "Fee USD", "fUSD", 6, 0)
    return coin, deploy_core(project, deployer, coin)


def test_S4_fee_on_transfer_coin_cannot_draw_on_the_escrow(fot, chain, deployer, lp, attacker, keeper):
    """Alice's deposit request escrows 1,000 + 2 fUSD; then the coin's 1% fee is switched on.
    An instant deposit would deliver 990 to the pool, which could send the Clearinghouse the
    1,000 it asks for out of Alice's escrow; the Clearinghouse checks what it received
    ("clearinghouse: fee on transfer"), and while a request is pending the instant paths are
    shut anyway ("pool: book open, request instead", deposit and mint alike); a new request is
    refused by the pool's own check ("pool: fee on transfer"). Alice's request cannot execute (the same
    refusal) and lapses: the pool sends her 1,002 fUSD, the token keeps its 1% (10.02), and the
    pool ends with nothing. Nobody's escrow paid for anyone else."""
    coin, core = fot
    pool = core.pool
    fee = int(core.orders.execution_fee())
    fund(coin, lp, 1_000 * USDC + fee, pool)
    pool.request_deposit(1_000 * USDC, lp, sender=lp)
    coin.set_fee(100, sender=deployer)
    fund(coin, attacker, 2_000 * USDC, pool)
    with ape.reverts(BOOK_OPEN):  # a request is pending: the instant paths are shut
        pool.deposit(1_000 * USDC, attacker, sender=attacker)
    with ape.reverts(BOOK_OPEN):
        pool.mint(1_000 * USDC * 10**6, attacker, sender=attacker)
    with ape.reverts("pool: fee on transfer"):
        pool.request_deposit(1_000 * USDC, attacker, sender=attacker)
    assert int(coin.balanceOf(pool)) == 1_000 * USDC + fee
    move_clock_to(chain, int(pool.requests(lp).executable_at))
    with ape.reverts("clearinghouse: fee on transfer"):
        pool.execute_request(lp, sender=keeper)
    move_clock_to(chain, int(pool.requests(lp).executable_at) + WINDOW + 1)
    wallet = int(coin.balanceOf(lp))
    pool.lapse_request(lp, sender=keeper)
    escrow = 1_000 * USDC + fee
    assert int(coin.balanceOf(lp)) - wallet == escrow - escrow * 100 // 10_000  # 991.98 of 1,002
    assert int(coin.balanceOf(pool)) == 0 and int(pool.totalSupply()) == 0


@pytest.fixture(scope="module")
def hooked(project, deployer):
    """A core protocol whose settlement coin calls back into the protocol on every transfer."""
    coin = deployer.deploy(project.ReentrantERC20, "Evil USD", "EUSD", 6)
    return coin, deploy_core(project, deployer, coin)


def test_S5_reentrant_coin_finds_every_pool_path_locked_during_an_execution(hooked, chain, deployer, lp, whale, keeper):
    """Alice and the whale each have a redemption request pending (the whale's shares in
    escrow). During the execution of Alice's, on the Clearinghouse's payment and on the keeper's
    fee, the coin tries: executing Alice's again (a second fee), lapsing the whale's, redeeming
    and transferring the whale's escrowed shares out of the pool, a request with the pool as
    owner, and reading totalAssets mid-call. Every attempt hits the lock (a bare revert); the
    same list replayed with no lock held shows what stops each then: "pool: no request",
    "pool: request live", the instant redeem shut while a request is pending, the allowance the
    pool never gives, and "pool: not owner"."""
    coin, core = hooked
    pool = core.pool
    fee = int(core.orders.execution_fee())
    for who in (lp, whale):
        fund(coin, who, 10_000 * USDC + fee, pool)
        pool.deposit(10_000 * USDC, who, sender=who)
    move_clock_to(chain, chain.pending_timestamp + COOLDOWN)
    for who in (lp, whale):
        pool.request_redeem(int(pool.balanceOf(who)) // 2, who, who, sender=who)
    escrow = int(pool.requests(whale).shares)
    attempts = [
        ("execute again", pool.execute_request.encode_input(lp), False),
        ("lapse other", pool.lapse_request.encode_input(whale), False),
        ("redeem escrow", pool.redeem.encode_input(escrow, coin, pool), False),
        ("transferFrom escrow", pool.transferFrom.encode_input(pool, coin, escrow), False),
        ("request as pool", pool.request_redeem.encode_input(escrow, coin, pool), False),
        ("totalAssets", pool.totalAssets.encode_input(), True),
    ]
    coin.set_calls([(pool.address, data, static) for _, data, static in attempts], True, False, sender=deployer)
    move_clock_to(chain, int(pool.requests(lp).executable_at))
    receipt = pool.execute_request(lp, sender=keeper)
    inside = [e for e in receipt.events if e.event_name == "Reentry"]
    assert len(inside) == 2 * len(attempts)  # the Clearinghouse's payment and the keeper's fee
    assert all((e.success, bytes(e.returndata)) == (False, LOCK) for e in inside)
    assert int(coin.balanceOf(keeper)) == fee and int(pool.balanceOf(pool)) == escrow
    outside = [e for e in coin.replay(sender=deployer).events if e.event_name == "Reentry"]
    assert [(e.success, reason(e.returndata)) for e in outside[:5]] == [
        (False, "pool: no request"),
        (False, "pool: request live"),
        (False, BOOK_OPEN),  # the whale's request still pending shuts the instant redeem
        (False, "erc20: insufficient allowance"),
        (False, "pool: not owner"),
    ]
    assert outside[5].success and int(pool.balanceOf(pool)) == escrow


def test_S6_tiny_requests_and_zero_value_executions_revert_then_lapse_whole(world, chain, deployer, whale, keeper, fee):
    """One share is worth no unit: "pool: zero amount" at the request. The fewest shares worth
    one unit (998,926) can be requested; a round that costs the pool (ETH +0.5%) makes them
    worth 0 at the execution, which reverts "pool: zero amount" (never a burn for nothing) and
    the request lapses with its shares and fee whole. A 1-unit deposit request mints at most
    the shares of the request (a min of two floors)."""
    pool, usdc = world.pool, world.settlement
    fund(usdc, whale, 2 * fee + 1, pool)
    with ape.reverts("pool: zero amount"):
        pool.request_redeem(1, whale, whale, sender=whale)
    dust = int(pool.previewWithdraw(1))
    assert int(pool.convertToAssets(dust)) == 1 and int(pool.convertToAssets(dust - 1)) == 0
    balance, wallet = int(pool.balanceOf(whale)), int(usdc.balanceOf(whale))
    pool.request_redeem(dust, whale, whale, sender=whale)
    eth(world, deployer, 2_010)
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    assert int(pool.convertToAssets(dust)) == 0
    with ape.reverts("pool: zero amount"):
        pool.execute_request(whale, sender=keeper)
    move_clock_to(chain, int(pool.requests(whale).executable_at) + WINDOW + 1)
    pool.lapse_request(whale, sender=keeper)
    assert (int(pool.balanceOf(whale)), int(usdc.balanceOf(whale))) == (balance, wallet)
    pool.request_deposit(1, whale, sender=whale)
    recorded = int(pool.requests(whale).shares)
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    minted = executed(pool.execute_request(whale, sender=keeper)).shares
    assert 0 < minted <= recorded and int(pool.convertToAssets(minted)) <= 1


def test_S7_a_request_does_not_get_past_the_open_interest_reserve(world, chain, deployer, attacker, keeper, fee):
    """With the ETH reserve factor set so the pool's headroom is $100,000, Mallory's instant
    exit of her $2M would revert "pool: open interest reserve" (`withdrawable` reads at most
    $100,000; the open book refuses the instant path first); a request for it is accepted (by
    design) but its execution reverts so, and it lapses with the shares and fee back.
    A $50,000 request, within the headroom, executes."""
    pool, usdc = world.pool, world.settlement
    market = world.markets["ETH-PERP"]
    value, _ = (int(v) for v in pool.reserve(0, 0))
    side = int(world.clearinghouse.market_state(market).long_oi) * 2_000  # WAD USD at $2,000
    world.configurator.set_reserve_factor(market, side * WAD // (value - wad(100_000)), sender=deployer)
    assert int(pool.withdrawable(attacker)) <= 100_000 * USDC and int(pool.maxWithdraw(attacker)) == 0
    shares = int(pool.balanceOf(attacker))
    with ape.reverts(BOOK_OPEN):
        pool.redeem(shares, attacker, attacker, sender=attacker)
    fund(usdc, attacker, 2 * fee, pool)
    wallet = int(usdc.balanceOf(attacker))
    pool.request_redeem(shares, attacker, attacker, sender=attacker)
    move_clock_to(chain, int(pool.requests(attacker).executable_at))
    with ape.reverts("pool: open interest reserve"):
        pool.execute_request(attacker, sender=keeper)
    move_clock_to(chain, int(pool.requests(attacker).executable_at) + WINDOW + 1)
    pool.lapse_request(attacker, sender=keeper)
    assert (int(pool.balanceOf(attacker)), int(usdc.balanceOf(attacker))) == (shares, wallet)
    small = int(pool.previewWithdraw(50_000 * USDC))
    pool.request_redeem(small, attacker, attacker, sender=attacker)
    move_clock_to(chain, int(pool.requests(attacker).executable_at))
    assert executed(pool.execute_request(attacker, sender=keeper)).assets <= 50_000 * USDC


def test_S8_odd_receivers_hurt_only_the_one_who_chose_them(world, chain, whale, router, keeper, fee):
    """Receiver choices: a deposit request to the zero address cannot execute ("erc20: mint to
    the zero address") and lapses whole; one to the pool itself mints shares nobody can ever
    move (a gift to the other LPs), kept apart from the escrow: a redemption request beside it
    lapses with exactly its own shares. A redemption paid to the pool leaves the tokens in the
    pool's balance, counted nowhere (the pool's value does not include them)."""
    pool, usdc = world.pool, world.settlement
    fund(usdc, router, 2_000 * USDC + 3 * fee, pool)
    pool.request_deposit(1_000 * USDC, "0x0000000000000000000000000000000000000000", sender=router)
    move_clock_to(chain, int(pool.requests(router).executable_at))
    with ape.reverts("erc20: mint to the zero address"):
        pool.execute_request(router, sender=keeper)
    move_clock_to(chain, int(pool.requests(router).executable_at) + WINDOW + 1)
    wallet = int(usdc.balanceOf(router))
    pool.lapse_request(router, sender=keeper)
    assert int(usdc.balanceOf(router)) == wallet + 1_000 * USDC + fee
    pool.request_deposit(1_000 * USDC, pool, sender=router)
    fund(usdc, whale, fee, pool)
    pool.request_redeem(10**18, whale, whale, sender=whale)
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    gift = executed(pool.execute_request(router, sender=keeper)).shares
    assert int(pool.balanceOf(pool)) == 10**18 + gift
    move_clock_to(chain, int(pool.requests(whale).executable_at) + WINDOW + 1)
    whale_shares = int(pool.balanceOf(whale))
    pool.lapse_request(whale, sender=keeper)
    assert int(pool.balanceOf(whale)) == whale_shares + 10**18 and int(pool.balanceOf(pool)) == gift
    value = int(pool.totalAssets())
    pool.request_redeem(10**17, pool, whale, sender=whale)
    move_clock_to(chain, int(pool.requests(whale).executable_at))
    paid = executed(pool.execute_request(whale, sender=keeper)).assets
    assert int(usdc.balanceOf(pool)) == paid and int(pool.totalAssets()) == value - paid
