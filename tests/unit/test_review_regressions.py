"""Regressions from the attacker review of session 2's changes.

A cap of realised profit at the pool's realised balance (tried against the Mango replay and
withdrawn) let an LP front-run a winner's close and take the forfeit, forfeited profit in a
liquidation that the pool owed, and put MarginLens out of step with the contract. These tests
pin the behaviour the protocol must keep: a winner is paid in full whatever the pool's realised
balance, and the lens quotes what the contract does. The last one: a backdated round while
the circuit breaker is tripped cannot shorten the confirmation delay."""

import pytest

from marginsim import risk
from marginsim.orders import deposit_now, redeem_now, trade_now
from marginsim.protocol import account_id
from tests.conftest import USDC, WAD
from tests.e2e.attacks import reserve_out_of_the_way

POOL_USD = 10_000
SIZE = 10 * WAD  # ETH, $20,000 at $2,000


@pytest.fixture(scope="module", autouse=True)
def _reserve_off(protocol, deployer):
    """These regressions run positions against a pool smaller than them (or none), which the
    open-interest reserve would refuse: it is off here."""
    reserve_out_of_the_way(protocol, deployer)


def _trade_event(tx):
    return next(e for e in tx.events if e.event_name == "Trade")


def _realised_tokens(ch, account, market, price_wad, premium=True, timestamp=None):
    """Floor of a whole close's realised PnL at the oracle price plus the closing premium (a
    trade's fill, and a liquidation's when it closes the whole position; `premium=False` for the
    bare oracle price of a partial liquidation), token units, as the contract computes it before
    any cap; with `timestamp`, funding accrued to it (the block the close lands in)."""
    pos = ch.positions(account, market)
    st = ch.market_state(market)
    params = ch.markets(market)
    skew = int(st.long_oi) - int(st.short_oi)
    fill = risk.fill_price(price_wad, skew, -int(pos.size), int(params.skew_scale)) if premium else price_wad
    index = int(st.funding_index)
    if timestamp is not None:
        state = risk.MarketState(*(int(v) for v in st))
        market_params = risk.MarketParams(*(v if isinstance(v, int) else str(v) for v in params))
        index = risk.funding_index_now(risk.MarketView(market_params, state, price_wad, 0, 0), timestamp)
    realised = risk.signed_mul_floor(int(pos.size), fill - index) - int(pos.cost)
    return realised // (10**12)


def test_cap__lp_withdraws_before_winner_closes__winner_still_paid(
    protocol, ch, usdc, fund, lp, trader, other_trader, chain, set_price
):
    """A long and a short of equal size net to zero: the pool carries no risk and every dollar
    the long wins, the short loses (out of its own margin). An LP who owns the pool redeems
    95% of its shares just before the winner closes: the winner's profit is capped at the 5%
    left and the rest is forfeited; when the loser closes, the pool books the full loss, so the
    LP's remaining 5% of shares are worth the forfeit. The winner should be paid in full: the
    pool's mark-to-market value (what LPs redeem at) covered the profit all along."""
    pool, eth = protocol.pool, protocol.markets["ETH-PERP"]
    fund(lp, usdc, POOL_USD * USDC, spender=pool)
    deposit_now(pool, POOL_USD * USDC, lp, sender=lp)
    for who, size in ((trader, SIZE), (other_trader, -SIZE)):
        fund(who, usdc, 5_000 * USDC)
        ch.deposit(usdc, 5_000 * USDC, 0, sender=who)
        trade_now(ch, eth, size, 0, 0, sender=who)

    chain.pending_timestamp += 901  # the LP's shares are out of their cooldown
    set_price("WETH", 2_200)
    winner = account_id(trader)
    full_profit = _realised_tokens(ch, winner, eth, 2_200 * WAD)
    assert full_profit > 1_900 * USDC

    shares = pool.balanceOf(lp)
    redeem_now(pool, shares * 95 // 100, lp, lp, sender=lp)
    redeemed = usdc.balanceOf(lp)

    tx = trade_now(ch, eth, -SIZE, 0, 0, sender=trader)
    trade_now(ch, eth, SIZE, 0, 0, sender=other_trader)
    lp_total = redeemed + pool.convertToAssets(pool.balanceOf(lp))

    assert _trade_event(tx).realised_pnl == full_profit  # not the pool's ~$500 realised balance
    # the LP ends with its deposit plus fees, not plus the winner's forfeited profit
    assert lp_total < (POOL_USD + 100) * USDC


def test_cap__liquidating_a_winning_market__profit_repays_the_losing_one(
    protocol, ch, usdc, fund, trader, keeper, set_price, engine, chain
):
    """Cross margin: long ETH (winning) and long BTC (losing badly), the pool empty (no LP yet).
    A keeper closes the whole ETH position (health below the full-liquidation threshold): its
    profit is forfeited to the pool, the account's debt grows by it, and that debt is later bad
    debt paid by the insurance fund and then the LPs, while the same LPs pocketed the forfeit.
    The profit is owed by the account's own losing BTC position to the same pool; it should be
    credited (what the pool cannot pay now as the account's pending claim, counted in its
    equity). A whole close fills at the skew-premium price, as a trade would (the Liquidation
    event's `price`): the profit is the one realised at that fill."""
    eth, btc = protocol.markets["ETH-PERP"], protocol.markets["BTC-PERP"]
    fund(trader, usdc, 10_000 * USDC)
    ch.deposit(usdc, 10_000 * USDC, 0, sender=trader)
    trade_now(ch, eth, 20 * WAD, 0, 0, sender=trader)  # $40,000
    trade_now(ch, btc, 2 * WAD, 0, 0, sender=trader)  # $60,000
    account = account_id(trader)
    set_price("WETH", 2_300)
    for price in (27_000, 24_300, 22_500):
        set_price("WBTC", price)
    assert risk.health_of(ch, account) < 5 * 10**17  # below full-liquidation health: ETH closes whole
    assert ch.pool_balance() < 1_000 * USDC

    timestamp = chain.pending_timestamp + 1
    chain.pending_timestamp = timestamp  # the liquidation's block: funding accrued to it
    # the engine's fill for a whole close: the trade fill for size_delta = -size at the skew before it
    full_profit = _realised_tokens(ch, account, eth, 2_300 * WAD, premium=True, timestamp=timestamp)
    pos, st = ch.positions(account, eth), ch.market_state(eth)
    fill = risk.fill_price(2_300 * WAD, int(st.long_oi) - int(st.short_oi), -int(pos.size), int(ch.markets(eth).skew_scale))
    before, pending_before, total_pending_before = ch.settlement(account), ch.pending(account), ch.total_pending()
    tx = engine.liquidate(account, eth, 2**256 - 1, sender=keeper)
    liq = next(e for e in tx.events if e.event_name == "Liquidation")
    assert int(liq.size_closed) == -int(pos.size) and int(liq.price) == fill != 2_300 * WAD
    # in full, to the token unit, not capped at the pool's ~$70 of fees
    assert liq.realised_pnl == full_profit
    # credited in full: what the pool's free tokens cover is paid into the balance, the rest is
    # the account's pending claim (counted in its equity), paid as tokens come back
    claim = next(e for e in tx.events if e.event_name == "ProfitPending")
    assert claim.account == account and claim.market == eth and 0 < claim.amount < liq.realised_pnl
    assert ch.pending(account) == pending_before + claim.amount
    assert ch.total_pending() == total_pending_before + claim.amount
    assert ch.settlement(account) == before + liq.realised_pnl - liq.penalty - claim.amount
    # the claim is exactly what the pool could not pay: it keeps only the tokens of earlier claims
    assert ch.pool_balance() - ch.total_debt() == total_pending_before


def test_cap__lens_health_after_trade__matches_the_capped_close(protocol, ch, usdc, fund, trader, other_trader, set_price):
    """MarginLens.health_after_trade promises the equity the Clearinghouse computes after the
    trade, up to one token unit of rounding. With an empty pool (a long and a short netting to
    zero, no LP) a winner's close is capped at the pool's fees, and the lens still reports the
    whole profit: a front-end or bot trusting it over-states the account by the forfeit."""
    eth = protocol.markets["ETH-PERP"]
    for who, size in ((trader, SIZE), (other_trader, -SIZE)):
        fund(who, usdc, 5_000 * USDC)
        ch.deposit(usdc, 5_000 * USDC, 0, sender=who)
        trade_now(ch, eth, size, 0, 0, sender=who)
    set_price("WETH", 2_200)
    winner = account_id(trader)
    _, predicted, _ = protocol.lens.health_after_trade(winner, eth, -SIZE)

    trade_now(ch, eth, -SIZE, 0, 0, sender=trader)
    actual = ch.margin(winner)[0]
    assert abs(int(predicted) - int(actual)) <= 10**12  # within one token unit, as the lens promises


def test_oracle__backdated_round_while_halted__cannot_shorten_the_confirmation_delay(
    oracle, deployer, make_aggregator, make_token, chain, keeper
):
    """While halted, a round at a third level restarts the pending clock at its updatedAt, which
    is only checked against the last ACCEPTED round's time. A round backdated to before the
    round that tripped the breaker (a publisher bug, a phase change) therefore starts the clock
    in the past, and a level first seen ten minutes ago is accepted as if held for an hour."""
    feed, asset = make_aggregator(price_usd=2_000, decimals=8), make_token(18, "WETH")
    oracle.set_feed(asset, feed, 3_600, 1 * WAD, 1_000_000 * WAD, 20 * 10**16, 8 * 10**17, sender=deployer)
    accepted_at = feed.latestRoundData()[3]
    chain.pending_timestamp += 3_600
    feed.updateAnswer(2_600 * 10**8, sender=deployer)  # +30%: trips
    oracle.sync(asset, sender=keeper)
    tripped_at = feed.latestRoundData()[3]
    feed.updateRoundData(
        feed.latest_round() + 1, 3_400 * 10**8, accepted_at + 1, accepted_at + 1, sender=deployer
    )  # third level, backdated
    oracle.sync(asset, sender=keeper)
    chain.pending_timestamp += 600
    feed.updateAnswer(3_410 * 10**8, sender=deployer)  # ten minutes after the trip
    oracle.sync(asset, sender=keeper)

    st = oracle.vol(asset)
    assert st.halted  # not 3,410 accepted ten minutes after it first printed
    assert st.pending_since >= tripped_at
