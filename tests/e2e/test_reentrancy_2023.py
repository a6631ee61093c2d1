"""Curve / Vyper reentrancy, July 2023.

The incident: Vyper 0.2.15-0.3.0 compiled `@nonreentrant` locks wrongly, so Curve pools that
paid out raw ETH were re-entered mid-withdrawal and drained of about $70M.

What marginsim does: the Clearinghouse, LiquidationEngine, LiquidityPool and OracleRouter carry
`# pragma nonreentrancy on` (Vyper 0.4.3), which locks every external function, views included,
per contract. The Clearinghouse books every credit before it hands a token control (`_pull`),
and makes its token transfers last. The LiquidationEngine holds no funds: it drives the
Clearinghouse through `liquidation_snapshot`, `liquidation_close` and `seize_collateral`, the
last two callable by the engine alone.

What this proves: a hostile collateral, listed through the Configurator, re-enters every
mutating function of the LiquidationEngine (`liquidate`, `liquidate_many`,
`liquidate_collateral` and its three configurator-only setters), every mutating function of the
Clearinghouse but two governance setters (NOT_ATTEMPTED: the token replays at most 32 calls),
among them the engine-only `liquidation_close` and `seize_collateral` and the one-time
`connect`, the LiquidityPool's, plus the router's `sync`, from inside each token call the
Clearinghouse makes (deposit's transferFrom, withdraw's transfer, and the transfer of the
collateral that the engine's `liquidate_collateral` has the Clearinghouse's `seize_collateral`
send). A test fails when either contract gains a mutating function the list does not try.
Every Clearinghouse function reverts with empty revert data, which is Vyper's lock. So does
every engine function: inside `liquidate_collateral` the engine's own lock is held, and inside
a deposit or withdrawal each engine function's first step reads the locked Clearinghouse,
whose bare revert it passes on.
The pool's deposit, mint, withdraw and redeem revert the same way, because each reads or calls
the Clearinghouse. Replayed with no lock held, the same calls succeed or revert with their own
reason (the engine-only and governance functions with their access checks), so the lock is the
only thing that stops them.

The governance functions are locked too (the core has no owner: its emergency controls are
the Configurator's). Two re-entries succeed:
`LiquidityPool.transfer` and `OracleRouter.sync`. Neither touches the
Clearinghouse's books. A share transfer is just a share transfer (the pool's own lock is not
held), and `sync` only folds rounds that are already published. Read-only reentrancy fails
closed: the Clearinghouse's views, the MarginLens and the pool's `totalAssets` and
`convertToAssets` revert mid-call, so no half-updated number can be read. The router's `price`
answers, with exactly the value it gives outside the call. Finally, the Clearinghouse's books
after each hostile call equal, to the unit, the books after the same call made with the hooks
disarmed.
"""

from dataclasses import dataclass
from typing import Any

import ape
import pytest
from eth_abi import decode

from marginsim.orders import deposit_now, fill_now, trade_now
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol
from marginsim.risk import health_of
from tests.e2e.attacks import MAX_SIZE, USDC, WAD, books, list_collateral, publish

EVIL_PRICE = 100  # USD per whole hostile token
COOLDOWN = 900  # LiquidityPool: seconds before freshly minted shares may leave
BOOK_OPEN = "pool: book open, request instead"  # the pool's instant paths while positions are open
LOCK = b""  # Vyper's nonreentrancy check is a bare `assert`: it reverts with no data


@dataclass
class Scene:
    protocol: Any
    evil: Any  # the hostile collateral, and the contract that re-enters
    evil_account: int  # the hostile token's own Clearinghouse account (USDC, a long)
    attacker_account: int  # the attacker wallet's account holding hostile collateral
    liquidatable: int  # a USDC account below maintenance
    batch_liquidatable: int  # another one, for the engine's batch
    bankrupt: int  # an account with no positions, a debt and hostile collateral
    eth_market: int


@pytest.fixture(scope="module")
def scene(project, chain, accounts, deployer, attacker, trader, other_trader, keeper, lp):
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    ch, engine, usdc, pool = protocol.clearinghouse, protocol.liquidation_engine, protocol.settlement, protocol.pool
    eth = protocol.markets["ETH-PERP"]

    evil = attacker.deploy(project.ReentrantERC20, "Evil Collateral", "EVIL", 18)
    list_collateral(protocol, deployer, evil, EVIL_PRICE, project=project)

    usdc.mint(lp, 1_000_000 * USDC, sender=lp)
    usdc.approve(pool, 1_000_000 * USDC, sender=lp)
    deposit_now(pool, 1_000_000 * USDC, lp, sender=lp)

    # the hostile token holds protocol positions of its own: USDC margin, a long and LP shares
    usdc.mint(evil, 200_000 * USDC, sender=attacker)
    evil.execute(usdc, usdc.approve.encode_input(ch, 2**256 - 1), sender=attacker)
    evil.execute(usdc, usdc.approve.encode_input(pool, 2**256 - 1), sender=attacker)
    evil.execute(ch, ch.deposit.encode_input(usdc, 100_000 * USDC, 0), sender=attacker)
    # its LP shares, bought while the book is idle (the pool's instant paths are shut after)
    evil.execute(pool, pool.deposit.encode_input(10_000 * USDC, evil), sender=attacker)
    # its long: an order committed from its own address and filled at the next round
    orders = protocol.orders
    evil.execute(usdc, usdc.approve.encode_input(orders, 2**256 - 1), sender=attacker)
    evil.execute(orders, orders.commit_order.encode_input(eth, WAD, 0, 0), sender=attacker)
    fill_now(ch, account_id(evil), eth, keeper=keeper)

    # the attacker's wallet holds hostile collateral in the Clearinghouse
    evil.mint(attacker, 1_000 * WAD, sender=attacker)
    evil.approve(ch, 2**256 - 1, sender=attacker)
    ch.deposit(evil, 500 * WAD, 0, sender=attacker)

    # two 10x USDC longs to be below maintenance, and a 16x long on hostile collateral to go bankrupt
    second_trader = accounts[8]
    for owner in (trader, second_trader):
        usdc.mint(owner, 10_000 * USDC, sender=owner)
        usdc.approve(ch, 10_000 * USDC, sender=owner)
        ch.deposit(usdc, 10_000 * USDC, 0, sender=owner)
        trade_now(ch, eth, 50 * WAD, 0, 0, sender=owner)
    evil.mint(other_trader, 100 * WAD, sender=other_trader)
    evil.approve(ch, 2**256 - 1, sender=other_trader)
    ch.deposit(evil, 100 * WAD, 0, sender=other_trader)  # $10,000, $8,500 after the haircut
    trade_now(ch, eth, 68 * WAD, 0, 0, sender=other_trader)
    publish(protocol, "WETH", 1_850, deployer)  # -7.5%
    bankrupt = account_id(other_trader)
    engine.liquidate(bankrupt, eth, MAX_SIZE, sender=keeper)  # whole close: a debt against EVIL is left
    usdc.mint(keeper, 100_000 * USDC, sender=keeper)
    usdc.approve(ch, 2**256 - 1, sender=keeper)

    chain.pending_timestamp += COOLDOWN  # the hostile token's LP shares are free to move
    publish(protocol, "WETH", 1_850, deployer)  # a fresh round after the wait
    scene = Scene(
        protocol, evil, account_id(evil), account_id(attacker), account_id(trader), account_id(second_trader), bankrupt, eth
    )
    assert health_of(ch, scene.liquidatable) < WAD and health_of(ch, scene.batch_liquidatable) < WAD
    assert ch.market_mask(bankrupt) == 0 and ch.settlement(bankrupt) < 0 and ch.margin(bankrupt)[0] < 0
    return scene


@pytest.fixture(scope="module", autouse=True)
def _evil_feed_fresh(scene, project, deployer, chain):
    """The hostile token's feed was published at listing; keep it inside its heartbeat."""
    feed_address = scene.protocol.oracle.feeds(scene.evil).aggregator
    project.MockAggregator.at(feed_address).updateAnswer(EVIL_PRICE * 10**8, sender=deployer)


# ---------------------------------------------------------------- the attempts


@dataclass(frozen=True)
class Attempt:
    name: str
    target: Any
    data: bytes
    static: bool = False
    unlocked: str | None = None  # the revert reason with no lock held (None: it succeeds)
    inside: str = "lock"  # mid-call: "lock" (bare revert), "ok" (succeeds) or "own" (its own reason)


# Mutating functions the list leaves out: the hostile token replays at most 32 calls
# (ReentrantERC20.MAX_CALLS). They are owner- or configurator-only governance, locked by the
# same pragma as `apply_emergency` and `connect`, which are tried.
NOT_ATTEMPTED = {
    "Clearinghouse": {"apply_collateral", "apply_market"},
    "LiquidationEngine": set(),
}
NOT_CONFIGURATOR = "liquidation: not configurator"
NOT_ENGINE = "clearinghouse: not liquidation engine"


def attempts(scene: Scene, attacker: Any) -> list[Attempt]:
    """Every mutating function of the LiquidationEngine, of the Clearinghouse (but the
    governance ones in NOT_ATTEMPTED) and of the pool, the router's sync, and the views a
    read-only reentrancy would read, each with a call that does something real."""
    p = scene.protocol
    ch, engine, pool, usdc, oracle, lens = p.clearinghouse, p.liquidation_engine, p.pool, p.settlement, p.oracle, p.lens
    weth = p.tokens["WETH"]
    eth, evil_slot = scene.eth_market, int(ch.collateral_slot(scene.evil))
    return [
        Attempt("Clearinghouse.deposit", ch, ch.deposit.encode_input(usdc, USDC, 0)),
        Attempt("Clearinghouse.withdraw", ch, ch.withdraw.encode_input(usdc, USDC, 0)),
        # a trade is an order filled by Orders, the only caller of fill_order (Orders holds and
        # moves only the settlement token, never a collateral, so a hostile collateral never
        # gets control inside it)
        Attempt(
            "Clearinghouse.fill_order",
            ch,
            ch.fill_order.encode_input(scene.evil_account, eth, WAD // 10, 0, 2_000 * WAD),
            unlocked="clearinghouse: not orders",
        ),
        # liquidation goes through the engine, which drives the Clearinghouse
        Attempt("LiquidationEngine.liquidate", engine, engine.liquidate.encode_input(scene.liquidatable, eth, MAX_SIZE)),
        # the same account twice: the first pair closes, the second finds it healthy and is skipped
        Attempt(
            "LiquidationEngine.liquidate_many",
            engine,
            engine.liquidate_many.encode_input([scene.batch_liquidatable] * 2, [eth] * 2),
        ),
        Attempt(
            "LiquidationEngine.liquidate_collateral",
            engine,
            engine.liquidate_collateral.encode_input(scene.bankrupt, scene.evil, WAD),
        ),
        # what the partial liquidation above left of the position, still at a loss, realised
        Attempt("LiquidationEngine.realise_loss", engine, engine.realise_loss.encode_input(scene.liquidatable, eth)),
        # the engine's API into the Clearinghouse, called directly: a hostile caller is not the engine
        Attempt(
            "Clearinghouse.liquidation_close",
            ch,
            ch.liquidation_close.encode_input(
                scene.liquidatable, eth, -WAD, 1_850 * WAD, 1_850 * WAD, 0, 100_000 * USDC, scene.evil
            ),
            unlocked=NOT_ENGINE,
        ),
        Attempt(
            "Clearinghouse.seize_collateral",
            ch,
            ch.seize_collateral.encode_input(scene.bankrupt, evil_slot, WAD, 0, scene.evil),
            unlocked=NOT_ENGINE,
        ),
        Attempt("Clearinghouse.fund_insurance", ch, ch.fund_insurance.encode_input(USDC)),
        Attempt("Clearinghouse.pool_deposit", ch, ch.pool_deposit.encode_input(USDC), unlocked="clearinghouse: not pool"),
        Attempt(
            "Clearinghouse.pool_withdraw", ch, ch.pool_withdraw.encode_input(USDC, scene.evil), unlocked="clearinghouse: not pool"
        ),
        Attempt("LiquidityPool.deposit", pool, pool.deposit.encode_input(USDC, scene.evil), unlocked=BOOK_OPEN),
        Attempt("LiquidityPool.mint", pool, pool.mint.encode_input(10**6, scene.evil), unlocked=BOOK_OPEN),
        Attempt("LiquidityPool.withdraw", pool, pool.withdraw.encode_input(USDC, scene.evil, scene.evil), unlocked=BOOK_OPEN),
        Attempt("LiquidityPool.redeem", pool, pool.redeem.encode_input(10**6, scene.evil, scene.evil), unlocked=BOOK_OPEN),
        # governance: locked too (the core has no owner; its emergency controls are the
        # Configurator's, reaching it through apply_emergency)
        Attempt(
            "Clearinghouse.connect",
            ch,
            ch.connect.encode_input(scene.evil, scene.evil, scene.evil, scene.evil),
            unlocked="clearinghouse: not deployer",
        ),
        Attempt(
            "Clearinghouse.apply_emergency",
            ch,
            ch.apply_emergency.encode_input(eth, 1),
            unlocked="clearinghouse: not configurator",
        ),
        Attempt(
            "Clearinghouse.apply_debt_terms",
            ch,
            ch.apply_debt_terms.encode_input(0, 0, WAD, WAD),
            unlocked="clearinghouse: not configurator",
        ),
        Attempt(
            "LiquidationEngine.apply_debt_liquidation_ltv",
            engine,
            engine.apply_debt_liquidation_ltv.encode_input(WAD),
            unlocked=NOT_CONFIGURATOR,
        ),
        Attempt(
            "LiquidationEngine.apply_underwater_tip",
            engine,
            engine.apply_underwater_tip.encode_input(0),
            unlocked=NOT_CONFIGURATOR,
        ),
        Attempt(
            "LiquidationEngine.apply_liquidation_parameters",
            engine,
            engine.apply_liquidation_parameters.encode_input(0, WAD, 0),
            unlocked=NOT_CONFIGURATOR,
        ),
        # outside the Clearinghouse: the pool's share transfer and the router's sync hold no
        # Clearinghouse state, and their own contracts' locks are not held here
        Attempt("LiquidityPool.transfer", pool, pool.transfer.encode_input(attacker, 1), inside="ok"),
        Attempt("OracleRouter.sync", oracle, oracle.sync.encode_input(weth), inside="ok"),
        Attempt("view Clearinghouse.margin", ch, ch.margin.encode_input(scene.evil_account), static=True),
        # a debt's balance, read with its interest to the block (`Clearinghouse.health` is gone:
        # the health is marginsim.risk.health_of over `margin`, tried above)
        Attempt("view Clearinghouse.settlement", ch, ch.settlement.encode_input(scene.bankrupt), static=True),
        Attempt("view Clearinghouse.pool_balance", ch, ch.pool_balance.encode_input(), static=True),
        Attempt("view MarginLens.account_summary", lens, lens.account_summary.encode_input(scene.evil_account), static=True),
        Attempt("view LiquidityPool.totalAssets", pool, pool.totalAssets.encode_input(), static=True),
        Attempt("view LiquidityPool.convertToAssets", pool, pool.convertToAssets.encode_input(10**12), static=True),
        Attempt("view OracleRouter.price", oracle, oracle.price.encode_input(weth), static=True, inside="ok"),
    ]


def arm(scene: Scene, attacker: Any, armed: bool = True, strict: bool = False) -> list[Attempt]:
    listed = attempts(scene, attacker)
    scene.evil.set_calls([(a.target.address, a.data, a.static) for a in listed], armed, strict, sender=attacker)
    return listed


def revert_reason(data: bytes) -> str:
    """The string of an `Error(string)` revert; '' for anything else (a bare revert)."""
    data = bytes(data)
    if data[:4] != bytes.fromhex("08c379a0"):
        return ""
    return decode(["string"], data[4:])[0]


def reentries(receipt: Any, hook: str) -> list[Any]:
    found = [e for e in receipt.events if e.event_name == "Reentry"]
    assert {e.hook for e in found} == {hook}
    return found


def hostile_call(scene: Scene, entry: str, attacker: Any, keeper: Any) -> Any:
    """The outer call during which the Clearinghouse hands the hostile token control."""
    ch, engine = scene.protocol.clearinghouse, scene.protocol.liquidation_engine
    if entry == "deposit":  # transferFrom(attacker -> clearinghouse)
        return ch.deposit(scene.evil, 7 * WAD, 0, sender=attacker)
    if entry == "withdraw":  # transfer(clearinghouse -> attacker)
        return ch.withdraw(scene.evil, 7 * WAD, 0, sender=attacker)
    # engine.liquidate_collateral -> clearinghouse.seize_collateral -> transfer(clearinghouse -> buyer)
    # of the bankrupt account's collateral: both the engine's lock and the Clearinghouse's are held
    return engine.liquidate_collateral(scene.bankrupt, scene.evil, 7 * WAD, sender=keeper)


HOOK = {"deposit": "transferFrom", "withdraw": "transfer", "liquidate_collateral": "transfer"}


# ---------------------------------------------------------------- tests


def test_replay__no_lock_held__every_attempt_succeeds_or_gives_its_own_reason(scene, attacker):
    """The control: outside any Clearinghouse call, the same calls from the same contract do
    real things (or fail for their own reason), so a bare revert inside the hook is the lock."""
    listed = arm(scene, attacker, armed=False)
    receipt = scene.evil.replay(sender=attacker)
    results = reentries(receipt, "replay")
    assert len(results) == len(listed)
    for attempt, result in zip(listed, results, strict=False):
        if attempt.unlocked is None:
            assert result.success, attempt.name
        else:
            assert not result.success and revert_reason(result.returndata) == attempt.unlocked, attempt.name
    # the calls did happen: a liquidation, collateral bought
    names = [a.name for a in listed]
    closed = decode(["uint256"], bytes(results[names.index("LiquidationEngine.liquidate")].returndata))[0]
    assert closed > 0
    batch_closed, skipped = decode(["uint256[]"], bytes(results[names.index("LiquidationEngine.liquidate_many")].returndata))[0]
    assert batch_closed > 0 and skipped == 0
    assert decode(["uint256"], bytes(results[names.index("LiquidationEngine.liquidate_collateral")].returndata))[0] == WAD
    # ... through the engine, from the hostile token's address: the events say who liquidated what
    engine = scene.protocol.liquidation_engine
    liquidations = [e for e in receipt.events if e.event_name == "Liquidation"]
    [sale] = [e for e in receipt.events if e.event_name == "CollateralLiquidation"]
    assert {e.contract_address for e in [*liquidations, sale]} == {engine.address}
    assert {e.liquidator for e in [*liquidations, sale]} == {scene.evil.address}
    assert [(int(e.account), abs(int(e.size_closed))) for e in liquidations] == [
        (scene.liquidatable, closed),
        (scene.batch_liquidatable, batch_closed),
    ]
    assert int(sale.amount) == WAD


def test_attempts__cover_every_mutating_function_of_the_engine_and_the_core(scene, attacker):
    """The list is complete up to NOT_ATTEMPTED: a function added to either contract and not
    re-entered here fails this test."""
    listed = {a.name for a in attempts(scene, attacker)}
    assert len(listed) <= 32  # ReentrantERC20.MAX_CALLS
    p = scene.protocol
    for name, contract in (("Clearinghouse", p.clearinghouse), ("LiquidationEngine", p.liquidation_engine)):
        mutating = {m.name for m in contract.contract_type.mutable_methods}
        tried = {n.split(".", 1)[1] for n in listed if n.startswith(f"{name}.")}
        assert tried <= mutating, name  # nothing stale
        assert mutating - tried == NOT_ATTEMPTED[name], name


def _watched_accounts(scene, keeper):
    """Every account a re-entry could move: the attacker's, the liquidation targets, the keeper's."""
    return [
        scene.evil_account,
        scene.attacker_account,
        scene.liquidatable,
        scene.batch_liquidatable,
        scene.bankrupt,
        account_id(keeper),
    ]


@pytest.mark.parametrize("entry", ["deposit", "withdraw", "liquidate_collateral"])
def test_reentry__every_protocol_call_from_the_token_hook__reverts_on_the_lock(scene, project, chain, attacker, keeper, entry):
    protocol = scene.protocol
    watched = _watched_accounts(scene, keeper)
    weth = protocol.tokens["WETH"]
    price_outside = protocol.oracle.price(weth)

    # the honest call, hooks disarmed: the books it leaves
    snapshot = chain.snapshot()
    arm(scene, attacker, armed=False)
    honest = hostile_call(scene, entry, attacker, keeper)
    assert not [e for e in honest.events if e.event_name == "Reentry"]
    books_honest = books(protocol, project, watched)
    shares_honest = (protocol.pool.balanceOf(scene.evil), protocol.pool.balanceOf(attacker), protocol.pool.totalSupply())
    chain.restore(snapshot)

    listed = arm(scene, attacker)
    receipt = hostile_call(scene, entry, attacker, keeper)
    results = reentries(receipt, HOOK[entry])
    assert len(results) == len(listed)
    for attempt, result in zip(listed, results, strict=False):
        if attempt.inside == "ok":
            assert result.success, attempt.name
        elif attempt.inside == "own":
            assert not result.success and revert_reason(result.returndata) == attempt.unlocked, attempt.name
        else:
            # a bare revert: the lock, not the function's own checks (those give reasons)
            assert (result.success, bytes(result.returndata)) == (False, LOCK), attempt.name

    # read-only reentrancy: the router, which holds no lock here, answers with the true price
    by_name = dict(zip([a.name for a in listed], results, strict=False))
    price_inside = decode(["uint256"], bytes(by_name["view OracleRouter.price"].returndata))[0]
    assert price_inside == price_outside == protocol.oracle.price(weth)

    # the books equal the honest call's, to the unit; the one share moved is all that differs
    books_attacked = books(protocol, project, watched)
    assert books_attacked == books_honest
    books_attacked.assert_consistent()
    assert protocol.pool.balanceOf(scene.evil) == shares_honest[0] - 1
    assert protocol.pool.balanceOf(attacker) == shares_honest[1] + 1
    assert protocol.pool.totalSupply() == shares_honest[2]


@pytest.mark.parametrize("entry", ["deposit", "withdraw", "liquidate_collateral"])
def test_reentry__strict_token__outer_call_reverts_and_nothing_moves(scene, project, attacker, keeper, entry):
    """A token that does not swallow the failure takes the outer call down with it: the lock's
    bare revert bubbles up through the Clearinghouse, and every balance is as it was."""
    protocol = scene.protocol
    watched = _watched_accounts(scene, keeper)
    before = books(protocol, project, watched)
    wallets = (scene.evil.balanceOf(attacker), scene.evil.balanceOf(keeper), protocol.settlement.balanceOf(keeper))
    arm(scene, attacker, strict=True)

    with ape.reverts() as revert:
        hostile_call(scene, entry, attacker, keeper)
    assert revert.value.revert_message == "Transaction failed."  # ape's words for a revert with no data

    assert books(protocol, project, watched) == before
    assert (scene.evil.balanceOf(attacker), scene.evil.balanceOf(keeper), protocol.settlement.balanceOf(keeper)) == wallets
