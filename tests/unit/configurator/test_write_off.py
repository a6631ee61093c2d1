"""`Configurator.write_off_collateral` (issue 9, item 6): a collateral whose feed is halted or
stale is valued at zero without reading its feed, so it blocks no margin check, quote or
liquidation of the accounts holding it; `set_collateral` restores it once its feed prices it."""

import ape

from marginsim import risk
from marginsim.orders import trade_now
from marginsim.protocol import account_id
from tests.conftest import WAD

HEARTBEAT = 3_600  # the default feeds' heartbeat


def test_write_off__stale_feed_no_longer_blocks_margin_quotes_or_the_mirror(
    protocol, ch, fund, seeded_pool, trader, deployer, set_price, btc_market, chain
):
    weth, cfg, lens = protocol.tokens["WETH"], protocol.configurator, protocol.lens
    account = account_id(trader)
    fund(trader, protocol.settlement, 50_000 * 10**6)
    ch.deposit(protocol.settlement, 50_000 * 10**6, 0, sender=trader)
    fund(trader, weth, 3 * WAD)
    ch.deposit(weth, 3 * WAD, 0, sender=trader)
    trade_now(ch, btc_market, 5 * WAD, 0, 0, sender=trader)  # $150k of BTC on $50k + 3 WETH
    slot = ch.collateral_slot(weth)
    before = ch.collaterals(slot)
    equity_before = ch.margin(account)[0]

    # WETH's feed goes stale while BTC's keeps printing
    chain.pending_timestamp += HEARTBEAT + 1
    set_price("WBTC", 30_000)
    with ape.reverts("oracle: stale answer"):
        ch.margin(account)

    tx = cfg.write_off_collateral(weth, sender=deployer)
    event = tx.events.filter(cfg.CollateralSet)[0]
    assert (event.weight, event.cap, event.liquidation_discount, event.enabled) == (
        0,
        before.cap,
        before.liquidation_discount,
        False,
    )
    after = ch.collaterals(slot)
    assert (after.weight, after.enabled, after.unit, after.cap) == (0, False, before.unit, before.cap)

    # every read works again without the WETH feed; the haircut value (3 * 2,000 * 0.85) is gone
    equity, maintenance, initial = ch.margin(account)
    assert ch.collateral_value(account) == 0
    assert equity_before - equity >= 3 * 2_000 * 85 * WAD // 100 - WAD  # the WETH's credit, less funding
    snapshot = risk.snapshot_account(ch, protocol.oracle, account, chain.blocks.head.timestamp)
    assert risk.margin(snapshot) == (equity, maintenance, initial)  # the mirror skips the feed too
    assert lens.max_withdraw(account, weth) == 3 * WAD  # worth nothing to the margin: all of it may go
    ch.withdraw(weth, 3 * WAD, 0, sender=trader)
    assert ch.collateral_mask(account) == 0

    # restoring it needs its feed to price it again
    with ape.reverts("oracle: stale answer"):
        cfg.set_collateral(weth, before.weight, before.cap, before.liquidation_discount, True, sender=deployer)
    set_price("WETH", 2_000)
    cfg.set_collateral(weth, before.weight, before.cap, before.liquidation_discount, True, sender=deployer)
    assert ch.collaterals(slot).weight == before.weight
