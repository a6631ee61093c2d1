"""Issue 9, item 3: anyone could keep an LP's shares locked forever.

A deposit made to a receiver used to reset the receiver's unlock time for all of its locked
shares: one micro-USDC deposited to a victim every 14 minutes kept a $1M deposit locked for
hours, for 8 micro-USDC plus gas. Each deposit's shares are now a lot with its own unlock
time; a third party can add lots (at most four at once), never move an existing one.
"""

import ape
import pytest

from marginsim.orders import deposit_now, redeem_now
from tests.conftest import USDC
from tests.e2e.incidents import refresh_feeds

COOLDOWN = 900  # LiquidityPool: seconds a deposit's shares stay locked
MILLION = 1_000_000 * USDC


@pytest.fixture
def victim_deposit(protocol, fund, seeded_pool, other_trader):
    """The victim deposits $1M into a pool already seeded with $10M (past its own cooldown)."""
    ape.chain.pending_timestamp += COOLDOWN + 1
    fund(other_trader, protocol.settlement, MILLION, spender=seeded_pool)
    tx = deposit_now(seeded_pool, MILLION, other_trader, sender=other_trader)
    return tx.timestamp, seeded_pool.balanceOf(other_trader)


def gift_three_lots(protocol, fund, pool, receiver, giver, deposited_at, spare):
    """The giver deposits 1 micro-USDC to the receiver one, two and three minutes after the
    receiver's own deposit: with it, four lots in their cooldown. `spare` more units are funded
    for the test's own later gifts."""
    fund(giver, protocol.settlement, 3 + spare, spender=pool)
    for i in range(3):
        ape.chain.pending_timestamp = deposited_at + 60 * (i + 1)
        deposit_now(pool, 1, receiver, sender=giver)


def test_dust_every_14_minutes__victim_redeems_its_million_after_its_own_cooldown(
    protocol, fund, seeded_pool, other_trader, attacker, victim_deposit, deployer
):
    """The replayed attack: 8 deposits of 1 micro-USDC to the victim, one every 14 minutes (about
    2 hours). Before the fix the victim's $1M stayed locked to the end; now it is free 15 minutes
    after its own deposit, and only the attacker's dust shares are ever locked after that."""
    pool = seeded_pool
    deposited_at, victim_shares = victim_deposit
    fund(attacker, protocol.settlement, 8, spender=pool)
    dust_shares = 0
    for i in range(8):
        ape.chain.pending_timestamp = deposited_at + 14 * 60 * (i + 1)
        refresh_feeds(protocol, deployer)  # LP exits wait while a collateral has no price
        tx = deposit_now(pool, 1, other_trader, sender=attacker)
        dust_shares += tx.events[-1].shares
        now = tx.timestamp
        if now >= deposited_at + COOLDOWN:
            # the victim's million is out of its cooldown whatever the attacker does
            assert pool.locked_shares(other_trader) <= dust_shares
            assert pool.redeemable(other_trader) >= victim_shares
        assert pool.unlocks_at(other_trader) == now + COOLDOWN  # the dust's own lot, no more
    # two hours later: the locked amount is the dust only (worth micro-USDC), never the million
    locked = pool.locked_shares(other_trader)
    assert 0 < locked <= dust_shares
    assert pool.convertToAssets(locked) <= 8
    tx = redeem_now(pool, victim_shares, other_trader, other_trader, sender=other_trader)
    assert tx.events[-1].assets >= MILLION - 1  # the whole deposit out, less rounding in the pool's favour


def test_third_party_deposit__never_moves_an_existing_lot(protocol, fund, seeded_pool, other_trader, attacker, victim_deposit):
    """Each lot keeps its unlock time: after a gift the victim's own lot unlocks exactly when it
    did before, and the gift has a lot of its own."""
    pool = seeded_pool
    deposited_at, victim_shares = victim_deposit
    assert [tuple(lot) for lot in pool.locked_lots(other_trader)] == [(victim_shares, deposited_at + COOLDOWN)]
    fund(attacker, protocol.settlement, 1, spender=pool)
    ape.chain.pending_timestamp = deposited_at + 600
    gift = deposit_now(pool, 1, other_trader, sender=attacker)
    lots = [tuple(lot) for lot in pool.locked_lots(other_trader)]
    assert lots == [(victim_shares, deposited_at + COOLDOWN), (gift.events[-1].shares, gift.timestamp + COOLDOWN)]
    ape.chain.pending_timestamp = deposited_at + COOLDOWN
    ape.chain.mine()
    assert pool.locked_shares(other_trader) == gift.events[-1].shares


def test_own_deposit_with_four_lots__joins_the_latest_lot(protocol, fund, seeded_pool, other_trader, attacker, victim_deposit):
    """With four lots in their cooldown a third party is refused, but the holder's own deposit
    still goes through: it joins the holder's latest lot and restarts that lot's cooldown only."""
    pool = seeded_pool
    deposited_at, victim_shares = victim_deposit
    gift_three_lots(protocol, fund, pool, other_trader, attacker, deposited_at, spare=0)
    with ape.reverts("pool: too many locked deposits"):
        deposit_now(pool, 1, other_trader, sender=attacker)
    before = [tuple(lot) for lot in pool.locked_lots(other_trader)]
    fund(other_trader, protocol.settlement, 10 * USDC, spender=pool)
    tx = deposit_now(pool, 10 * USDC, other_trader, sender=other_trader)
    after = [tuple(lot) for lot in pool.locked_lots(other_trader)]
    assert after[:3] == before[:3]  # the million's lot and the first two gifts keep their times
    assert after[3] == (before[3][0] + tx.events[-1].shares, tx.timestamp + COOLDOWN)


def test_a_lot_is_free_from_its_unlock_second__a_gift_then_reuses_it(
    protocol, fund, seeded_pool, other_trader, attacker, victim_deposit
):
    """A lot unlocks at its unlock time exactly (the same instant its shares may be redeemed):
    with four live lots a gift is refused one second before the first one's unlock time and
    accepted at it, taking that lot's slot."""
    pool = seeded_pool
    deposited_at, victim_shares = victim_deposit
    gift_three_lots(protocol, fund, pool, other_trader, attacker, deposited_at, spare=1)
    ape.chain.pending_timestamp = deposited_at + COOLDOWN - 1
    with ape.reverts("pool: too many locked deposits"):
        deposit_now(pool, 1, other_trader, sender=attacker)
    ape.chain.pending_timestamp = deposited_at + COOLDOWN
    gift = deposit_now(pool, 1, other_trader, sender=attacker)
    lots = [tuple(lot) for lot in pool.locked_lots(other_trader)]
    assert lots[0] == (gift.events[-1].shares, gift.timestamp + COOLDOWN)  # the victim's old slot
    assert pool.redeemable(other_trader) >= victim_shares
