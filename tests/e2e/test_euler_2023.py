"""Euler, March 2023.

The incident: `donateToReserves` lowered an account's equity with no health check; the attacker
self-liquidated from a second address and the discount paid more than the donation ($197M).

What marginsim does: nothing an owner can do lowers an account's equity without a margin check.
Withdrawals and any trade that adds risk need initial margin afterwards. Pure reductions pay
only a fee far below the maintenance rate they free. Direct token transfers touch no internal
balance: custody is `settlement_held` and `collaterals(slot).total`, never `balanceOf`.
`fund_insurance` spends the caller's wallet, not an account. A liquidation's penalty comes only
out of the account's positive equity, and the liquidator gets only `keeper_share` of it, so
self-liquidation through a second address loses `(1 - keeper_share) * penalty`. A close of a
whole position fills at the skew-premium price, exactly as a trade of that size would, so it
earns (or pays) the premium it moves: a gain any trade closing the same position would make, not
one of the liquidation. A collateral
sale moves value between the owner and the buyer at the oracle price, less a discount the buyer
gains exactly as the owner loses it.

What this proves, with funding off so that equity is the same in the block a test reads it and
the block its transaction lands in: donations and `fund_insurance` move no account and no
share price, and are simply lost. From initial margin, every owner action either reverts with
its exact message or leaves the account healthy. Self-liquidation at health 0.95 and 0.70
(partial), 0.55 (whole: health * r < f, no partial close restores health) and 0.45 (whole: below
`full_liquidation_health`) changes owner + liquidator value, net of the premium a whole close's
fill earns over the oracle price (`fill_premium`, rounded down so that it never flatters the
attack), by exactly `-(penalty - keeper_reward)` minus the protocol's rounding. That rounding is
documented in `rounding_kept` and is under one settlement unit plus one wei (and at most one wei
in the account's favour).

Near zero equity, and underwater, the liquidator's underwater tip (from the insurance fund) can
exceed what the account still had. That is the one place self-liquidation nets a positive amount
at the moment of the call (net of the fill's premium, which underwater shrinks the bad debt
instead of reaching the owner), and it is the README's stated bound. The tip is at most 0.2% of
notional, and the owner lost its whole margin (over 4% of notional) to get there, so the attack
as a whole loses. This is asserted to the unit, together with who paid the tip. A self-purchase
of collateral at the discount leaves owner + buyer unchanged at the oracle price, to the wei.
"""

import ape
import pytest

from marginsim import risk
from marginsim.orders import deposit_now, trade_now
from marginsim.protocol import account_id, deploy_protocol
from tests.e2e.attacks import (
    MAX_SIZE,
    TO_WAD,
    USDC,
    WAD,
    books,
    event,
    price_for_health,
    publish,
    quiet_config,
    walk_price,
)

INSURANCE_USDC = 50_000
MARGIN_USDC = 10_000


@pytest.fixture(scope="module")
def accomplice(accounts):
    """The attacker's second address: the liquidator of its own account."""
    return accounts[7]


@pytest.fixture(scope="module")
def protocol(project, deployer, lp, guardian):
    protocol = deploy_protocol(project, deployer, quiet_config())
    ch, usdc, pool = protocol.clearinghouse, protocol.settlement, protocol.pool
    usdc.mint(lp, 2_000_000 * USDC, sender=lp)
    usdc.approve(pool, 2_000_000 * USDC, sender=lp)
    deposit_now(pool, 2_000_000 * USDC, lp, sender=lp)
    usdc.mint(guardian, INSURANCE_USDC * USDC, sender=guardian)
    usdc.approve(ch, INSURANCE_USDC * USDC, sender=guardian)
    ch.fund_insurance(INSURANCE_USDC * USDC, sender=guardian)
    return protocol


@pytest.fixture(scope="module", autouse=True)
def _module_fixtures_first(protocol, engine, accomplice, deployer, attacker, keeper, lp, guardian):
    """Request the module-scoped fixtures before any test, so ape's isolation snapshots them once."""
    # the shared `engine` fixture resolves `protocol` to this module's deployment
    assert engine.address == protocol.liquidation_engine.address


@pytest.fixture
def owned(protocol, attacker):
    """The attacker's account: $10,000 of USDC and a 10x ETH long (50 ETH at $2,000)."""
    ch, usdc = protocol.clearinghouse, protocol.settlement
    usdc.mint(attacker, MARGIN_USDC * USDC, sender=attacker)
    usdc.approve(ch, MARGIN_USDC * USDC, sender=attacker)
    ch.deposit(usdc, MARGIN_USDC * USDC, 0, sender=attacker)
    trade_now(ch, protocol.markets["ETH-PERP"], 50 * WAD, 0, 0, sender=attacker)
    return account_id(attacker)


def to_health(protocol, account, health, publisher):
    """Publish rounds (each inside the breaker) to the price at which `account` has `health`
    (negative: equity of `health` times the maintenance requirement)."""
    walk_price(protocol, "WETH", round(price_for_health(protocol, account, "ETH-PERP", health), 8), publisher)


def fill_premium(price, fill, size_delta):
    """What a close of `size_delta` at `fill` earns over the same close at the oracle `price`
    (negative: what it pays), WAD USD, rounded down: never more than the close really earned."""
    return (fill - price) * -size_delta // WAD


def rounding_kept(protocol, before, after, price, credit, fill):
    """What the protocol's rounding kept out of a liquidation of a long closed at `fill` (the
    oracle `price` for a partial close, the skew-premium fill for a whole one), in WAD:
    - r1: the realised PnL at the fill floored to a whole settlement unit (0 <= r1 < 1e12);
    - r2: splitting floor(size * p) into the closed part and the rest (0 or 1 wei);
    - r3: the closed part marked at the fill, floored, less the same at the price, floored, is
      the premium rounded down (`fill_premium`) or one wei more, which the account keeps (0 or 1
      wei, counted against the rounding kept; 0 when the fill is the price).
    Then the account's equity falls by exactly penalty + r1 + r2 - r3 - fill_premium."""
    index = protocol.clearinghouse.market_state(protocol.markets["ETH-PERP"]).funding_index
    p, q = price - index, fill - index
    closed = before.size - after.size
    cost_removed = before.cost - after.cost
    realised = closed * q // WAD - cost_removed
    r1 = realised - credit * TO_WAD
    r2 = before.size * p // WAD - after.size * p // WAD - closed * p // WAD
    r3 = closed * q // WAD - closed * p // WAD - fill_premium(price, fill, -closed)
    assert 0 <= r1 < TO_WAD and r2 in (0, 1) and r3 in (0, 1)
    return r1 + r2 - r3


# ---------------------------------------------------------------- donations


def test_donations__to_clearinghouse_and_pool__move_no_account_and_are_lost(
    project, protocol, owned, attacker, accomplice, deployer, engine
):
    ch, pool, usdc, weth = protocol.clearinghouse, protocol.pool, protocol.settlement, protocol.tokens["WETH"]
    to_health(protocol, owned, 1.02, deployer)  # just above maintenance: the donor's target
    margin, health = ch.margin(owned), risk.health_of(ch, owned)
    assert WAD < health < WAD * 103 // 100
    share_value, total_assets = pool.convertToAssets(10**12), pool.totalAssets()
    before = books(protocol, project, [owned])

    usdc.mint(attacker, 20_000 * USDC, sender=attacker)
    weth.mint(attacker, 3 * WAD, sender=attacker)
    usdc.transfer(ch, 10_000 * USDC, sender=attacker)
    weth.transfer(ch, 2 * WAD, sender=attacker)
    usdc.transfer(pool, 10_000 * USDC, sender=attacker)
    weth.transfer(pool, WAD, sender=attacker)

    assert ch.margin(owned) == margin and risk.health_of(ch, owned) == health
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate(owned, protocol.markets["ETH-PERP"], MAX_SIZE, sender=accomplice)
    assert (pool.convertToAssets(10**12), pool.totalAssets()) == (share_value, total_assets)
    after = books(protocol, project, [owned])
    # the internal books did not move; the tokens sit in custody, owned by nobody
    assert (after.settlement_held, after.pool_balance, after.insurance, after.accounts) == (
        before.settlement_held,
        before.pool_balance,
        before.insurance,
        before.accounts,
    )
    assert after.settlement_tokens_held == after.settlement_held + 10_000 * USDC
    weth_slot = ch.collateral_slot(weth)
    assert weth.balanceOf(ch) == ch.collaterals(weth_slot).total + 2 * WAD
    assert (usdc.balanceOf(pool), weth.balanceOf(pool)) == (10_000 * USDC, WAD)


def test_fund_insurance__the_reserves_donation__leaves_the_account_as_it_was(
    protocol, owned, attacker, accomplice, deployer, engine
):
    """Euler's `donateToReserves` took from the account; `fund_insurance` takes from the wallet."""
    ch, usdc = protocol.clearinghouse, protocol.settlement
    to_health(protocol, owned, 1.02, deployer)
    margin, insurance = ch.margin(owned), ch.insurance_balance()
    usdc.mint(attacker, 5_000 * USDC, sender=attacker)
    usdc.approve(ch, 5_000 * USDC, sender=attacker)

    ch.fund_insurance(5_000 * USDC, sender=attacker)

    assert ch.margin(owned) == margin
    assert ch.insurance_balance() == insurance + 5_000 * USDC
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate(owned, protocol.markets["ETH-PERP"], MAX_SIZE, sender=accomplice)


def test_owner_actions__from_initial_margin__none_makes_the_account_liquidatable(protocol, owned, attacker, accomplice, engine):
    ch, usdc = protocol.clearinghouse, protocol.settlement
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    equity, _, initial = ch.margin(owned)
    most = (equity - initial) // TO_WAD  # a settlement withdrawal lowers equity unit for unit
    with ape.reverts("clearinghouse: insufficient margin"):
        ch.withdraw(usdc, most + 1, 0, sender=attacker)
    ch.withdraw(usdc, most, 0, sender=attacker)
    equity, _, initial = ch.margin(owned)
    assert 0 <= equity - initial < TO_WAD  # at initial margin, to the unit

    refused = [
        ("clearinghouse", lambda: ch.withdraw(usdc, 1, 0, sender=attacker)),
        ("orders", lambda: trade_now(ch, eth, WAD // 100, 0, 0, sender=attacker)),  # increase: refused at its commit
        # flip: at its commit, which counts the open loss and the closing premium as realised
        ("orders", lambda: trade_now(ch, eth, -100 * WAD, 0, 0, sender=attacker)),
        ("orders", lambda: trade_now(ch, btc, WAD // 100, 0, 0, sender=attacker)),  # a second market
    ]
    for contract, action in refused:
        with ape.reverts(f"{contract}: insufficient margin"):
            action()
    # the one thing that lowers equity unchecked is a reduction's fee, and it raises health
    health = risk.health_of(ch, owned)
    for _ in range(3):
        trade_now(ch, eth, -10 * WAD, 0, 0, sender=attacker)
        assert risk.health_of(ch, owned) > health
        health = risk.health_of(ch, owned)
    assert health > WAD
    with ape.reverts("liquidation: account healthy"):
        engine.liquidate(owned, eth, MAX_SIZE, sender=accomplice)


# ---------------------------------------------------------------- self-liquidation


# (health, whole close?) With penalty f = 2% and maintenance rate r = 3%, no partial close can
# restore health once health * r < f (health < 0.667: the penalty is capped at the equity share
# the close frees), so the engine closes the whole position; below full_liquidation_health (0.5)
# it does so by rule.
HEALTHS = [(0.95, False), (0.7, False), (0.55, True), (0.45, True)]


@pytest.mark.parametrize("health,whole", HEALTHS, ids=["partial-0.95", "partial-0.70", "whole-0.55", "whole-0.45-deep"])
def test_self_liquidation__across_the_health_range__owner_and_liquidator_lose_the_insurance_share(
    protocol, owned, accomplice, deployer, health, whole, engine
):
    """A partial close fills at the oracle price; a whole close at the skew-premium fill, as a
    trade of its size would. The long is the whole book, so selling it all shrinks the skew and
    earns the premium: what any trade closing the position would earn, so it is taken out of
    owner + liquidator's change (rounded down, `fill_premium`) before the strict check that the
    liquidation itself loses the insurance fund's share of the penalty and the rounding."""
    ch, usdc = protocol.clearinghouse, protocol.settlement
    eth = protocol.markets["ETH-PERP"]
    to_health(protocol, owned, health, deployer)
    health_before = risk.health_of(ch, owned)
    assert abs(health_before - health * WAD) < WAD // 100
    position = ch.positions(owned, eth)
    equity = ch.margin(owned)[0]
    snapshot = ch.liquidation_snapshot(owned, eth)  # the oracle price and skew the engine reads
    wallet = usdc.balanceOf(accomplice)
    insurance = ch.insurance_balance()

    receipt = engine.liquidate(owned, eth, MAX_SIZE, sender=accomplice)

    liquidation = event(receipt, "Liquidation")
    assert liquidation.health_before == health_before
    assert (ch.positions(owned, eth).size == 0) == whole
    price, size_delta = snapshot.price, liquidation.size_closed
    fill = risk.fill_price(price, snapshot.skew, size_delta, snapshot.skew_scale) if whole else price
    assert liquidation.price == fill
    premium = fill_premium(price, fill, size_delta)
    assert (premium > 0) == whole  # selling the long out of a book it alone makes long earns
    kept = rounding_kept(protocol, position, ch.positions(owned, eth), price, liquidation.realised_pnl, fill)
    gained = usdc.balanceOf(accomplice) - wallet
    equity_lost = equity - ch.margin(owned)[0]
    assert gained == liquidation.keeper_reward == liquidation.penalty * ch.markets(eth).keeper_share // WAD
    assert equity_lost == liquidation.penalty * TO_WAD + kept - premium
    # owner + liquidator, net of the fill's premium: exactly the insurance fund's share, and the
    # rounding, lost
    change = gained * TO_WAD - equity_lost - premium
    assert change == -(liquidation.penalty - liquidation.keeper_reward) * TO_WAD - kept
    assert change < 0
    assert ch.insurance_balance() - insurance == liquidation.penalty - liquidation.keeper_reward
    assert usdc.balanceOf(ch) == ch.settlement_held()


@pytest.mark.parametrize("health", [0.03, -0.5], ids=["near-zero-0.03", "underwater"])
def test_self_liquidation__near_zero_or_underwater__tip_is_less_than_the_loss_to_get_there(
    protocol, owned, attacker, accomplice, deployer, health, engine
):
    """The whole close fills at the skew-premium price and, selling the long out of a book it
    alone makes long, earns the premium (rounded down, `fill_premium`), as any trade closing it
    would. The tip is on the closed notional at the oracle price. With equity left the premium
    stays in the account's balance, and owner + liquidator's change is measured net of it;
    underwater it shrinks the bad debt instead and never reaches the owner."""
    ch, usdc = protocol.clearinghouse, protocol.settlement
    eth = protocol.markets["ETH-PERP"]
    start = MARGIN_USDC * USDC + usdc.balanceOf(accomplice)  # the attack's capital, both wallets
    equity_open = ch.margin(owned)[0]
    to_health(protocol, owned, health, deployer)
    position = ch.positions(owned, eth)
    equity = ch.margin(owned)[0]
    assert (equity > 0) == (health > 0)
    snapshot = ch.liquidation_snapshot(owned, eth)  # the oracle price and skew the engine reads
    insurance = ch.insurance_balance()

    receipt = engine.liquidate(owned, eth, MAX_SIZE, sender=accomplice)

    liquidation = event(receipt, "Liquidation")
    assert ch.market_mask(owned) == 0  # below full_liquidation_health: the whole position
    price, size_delta = snapshot.price, liquidation.size_closed
    assert liquidation.price == risk.fill_price(price, snapshot.skew, size_delta, snapshot.skew_scale)
    premium = fill_premium(price, liquidation.price, size_delta)
    assert premium > 0  # the long is the book: closing it earns the premium
    closed_notional = -(size_delta * price // WAD)  # _mul_up at the oracle price: the size closed is negative
    tip = closed_notional * engine.underwater_tip_rate() // WAD // TO_WAD
    kept = rounding_kept(protocol, position, ch.positions(owned, eth), price, liquidation.realised_pnl, liquidation.price)
    assert liquidation.keeper_reward == tip > liquidation.penalty * ch.markets(eth).keeper_share // WAD
    if equity > 0:  # all the equity left is the penalty (rounded down to a unit), the rest rounding
        assert liquidation.penalty == equity // TO_WAD
        assert ch.settlement(owned) * TO_WAD == equity - liquidation.penalty * TO_WAD - kept + premium
        # paid out of a positive balance, the whole penalty goes to the insurance fund
        assert ch.settlement(owned) >= 0
        assert ch.insurance_balance() - insurance == liquidation.penalty - tip
    else:  # no penalty from nothing; the shortfall is booked as bad debt, insurance first
        bad_debt = event(receipt, "BadDebt")
        assert liquidation.penalty == 0 and ch.settlement(owned) == 0
        assert bad_debt.shortfall * TO_WAD == -equity + kept - premium  # the premium shrinks the debt
        assert bad_debt.covered_by_insurance == bad_debt.shortfall
        assert insurance - ch.insurance_balance() == tip + bad_debt.shortfall
    # at this moment owner + liquidator, net of the premium they kept, are up by the tip less the
    # equity that was left ...
    premium_kept = premium if equity > 0 else 0
    change = max(ch.margin(owned)[0], 0) - max(equity, 0) + tip * TO_WAD - premium_kept
    assert change == tip * TO_WAD - (liquidation.penalty * TO_WAD + kept if equity > 0 else 0)
    assert 0 < change <= tip * TO_WAD
    # ... but the owner lost its margin to get here, over twenty times the tip
    assert equity_open - equity > 20 * tip * TO_WAD
    if ch.settlement(owned) > 0:
        ch.withdraw(usdc, ch.settlement(owned), 0, sender=attacker)
    end = usdc.balanceOf(attacker) + usdc.balanceOf(accomplice)
    assert end < start
    assert usdc.balanceOf(ch) == ch.settlement_held()


def test_self_purchase_of_collateral__at_the_discount__owner_and_buyer_unchanged(
    project, protocol, attacker, accomplice, keeper, deployer, engine
):
    """An account on WBTC collateral, long ETH, loses its haircut equity (not yet its market
    value); a keeper closes the position; the owner's second address buys the WBTC at 5% under
    the oracle. The discount the buyer gains is exactly what the owner loses (besides the interest
    its debt paid the pool until the sale)."""
    ch, usdc, oracle = protocol.clearinghouse, protocol.settlement, protocol.oracle
    wbtc, eth = protocol.tokens["WBTC"], protocol.markets["ETH-PERP"]
    wbtc.mint(attacker, 10**8, sender=attacker)
    wbtc.approve(ch, 10**8, sender=attacker)
    ch.deposit(wbtc, 10**8, 0, sender=attacker)  # $30,000; $25,500 after the haircut
    account = account_id(attacker)
    trade_now(ch, eth, 200 * WAD, 0, 0, sender=attacker)
    publish(protocol, "WETH", 1_861, deployer)  # -6.95%: about -$27,800
    engine.liquidate(account, eth, MAX_SIZE, sender=keeper)
    assert ch.market_mask(account) == 0 and ch.margin(account)[0] < 0
    btc_price = oracle.price(wbtc)
    slot = ch.collateral_slot(wbtc)

    def owner_value():  # at the oracle, no haircut: what the account is worth to its owner
        return ch.settlement(account) * TO_WAD + ch.balances(account, slot) * btc_price // 10**8

    def buyer_value():
        return usdc.balanceOf(accomplice) * TO_WAD + wbtc.balanceOf(accomplice) * btc_price // 10**8

    assert owner_value() > 0  # haircut equity gone, market value not
    usdc.mint(accomplice, 40_000 * USDC, sender=accomplice)
    usdc.approve(ch, 40_000 * USDC, sender=accomplice)
    before = owner_value() + buyer_value()
    # the debt grows by interest until the sale lands (a block later): the pool's, not the buyer's
    seen = ch.settlement(account)
    written, index_at = ch.debt_of(account)
    debt = risk.read_debt_view(ch)

    receipt = engine.liquidate_collateral(account, wbtc, MAX_SIZE, sender=accomplice)
    sold = event(receipt, "CollateralLiquidation")
    debt_at_sale = risk.debt_now(written, debt.index_at(receipt.timestamp), index_at)
    interest = debt_at_sale + seen  # what the debt gained between `before` and the sale
    assert debt_at_sale > -seen > 0 and interest > 0

    assert ch.settlement(account) >= 0 and ch.balances(account, slot) > 0  # debt repaid, some left
    discount = sold.amount * btc_price // 10**8 - sold.paid * TO_WAD
    assert discount > 0  # the buyer's gain at the oracle price ...
    assert owner_value() + buyer_value() == before - interest * TO_WAD  # ... is exactly the owner's loss
    books(protocol, project, [account]).assert_consistent()
