"""LiquidationEngine.realise_loss (review_v2_solvency F1): anyone turns an open loss into the
account's balance at the oracle price. The figure equals marginsim.risk.realisable_loss to the
wei (funding accrued to the call included); size, open interest and equity stay (equity to
less than one token unit, toward the pool); the position's later close realises only what moved
since; a debt it creates pays the utilisation rate from the call on; a gain never realises."""

import ape

from marginsim import risk
from marginsim.orders import trade_now
from tests.conftest import USDC, WAD

S2W = 10**12
DAY = 86_400


def realise(engine, ch, oracle, chain, account, market, caller):
    """Realise at the next block's timestamp, checking the mirror and the event; returns the loss."""
    chain.pending_timestamp += 1
    snapshot = risk.snapshot_account(ch, oracle, account, chain.pending_timestamp)
    expected = risk.realisable_loss(snapshot, market)
    tx = engine.realise_loss(account, market, sender=caller)
    [event] = tx.decode_logs(engine.LossRealised)
    assert (event.account, event.market, event.caller, event.loss) == (account, market, caller, expected)
    return expected, snapshot


def test_realise_loss__with_funding__mirror_equity_size_and_open_interest(
    protocol, ch, engine, make_account, set_price, chain, trader, keeper, eth_market
):
    account = make_account(trader, collateral_usd=100_000, leverage=5)  # a lone long: skew, so funding runs
    chain.pending_timestamp += DAY
    set_price("WETH", 1_900)
    position, state = ch.positions(account, eth_market), ch.market_state(eth_market)
    loss, snapshot = realise(engine, ch, protocol.oracle, chain, account, eth_market, keeper)
    equity_before = risk.margin(snapshot)[0]  # the mirror's, at the call's timestamp
    assert loss > 25_000 * USDC  # the move ($100 x 250 ETH) and a day of funding paid by the long
    assert ch.settlement(account) == snapshot.settlement - loss  # no debt yet: no interest in between
    after = ch.positions(account, eth_market)
    assert after.size == position.size and ch.market_state(eth_market).long_oi == state.long_oi
    index = ch.market_state(eth_market).funding_index
    assert after.cost == risk.signed_mul_ceil(after.size, 1_900 * WAD - index)  # the new basis
    assert 0 <= equity_before - int(ch.margin(account)[0]) < S2W


def test_realise_loss__then_close__realises_what_one_close_would_less_rounding(
    protocol, ch, engine, make_account, set_price, chain, trader, keeper, eth_market
):
    """Realised at $1,850 and closed at $1,800: the two credits add up to what one close at the
    same fill and funding index would have realised, less at most two token units (each credit
    rounds down, the new basis rounds up: toward the pool)."""
    account = make_account(trader, collateral_usd=50_000, leverage=4)
    cost0 = ch.positions(account, eth_market).cost
    set_price("WETH", 1_850)
    s0 = int(ch.settlement(account))
    loss, _ = realise(engine, ch, protocol.oracle, chain, account, eth_market, keeper)
    set_price("WETH", 1_800)
    size = ch.positions(account, eth_market).size
    receipt = trade_now(ch, eth_market, -size, 0, 0, sender=trader)
    [trade] = receipt.decode_logs(ch.Trade)
    index = ch.market_state(eth_market).funding_index  # accrued in the close's block
    one_close = (risk.signed_mul_floor(size, trade.fill_price - index) - cost0) // S2W
    together = -loss + trade.realised_pnl
    assert 0 <= one_close - together <= 2
    assert int(ch.settlement(account)) - s0 == together - trade.fee


def test_realise_loss__a_debt_pays_interest_from_the_call(
    protocol, ch, engine, fund, chain, trader, keeper, eth_market, set_price
):
    """A WETH-backed long at a loss: realised, its balance is a debt that grows with the index."""
    weth = protocol.tokens["WETH"]
    fund(trader, weth, 100 * WAD)
    ch.deposit(weth, 100 * WAD, 3, sender=trader)
    account = (int(trader.address, 16) << 96) | 3
    trade_now(ch, eth_market, 200 * WAD, 0, 3, sender=trader)
    set_price("WETH", 1_800)
    loss, _ = realise(engine, ch, protocol.oracle, chain, account, eth_market, keeper)
    written, index_at = ch.debt_of(account)
    assert written > loss  # the loss and the fees the WETH-only account already owed
    chain.pending_timestamp += 30 * DAY
    chain.mine()
    assert -ch.settlement(account) == risk.debt_now(written, ch.debt_index(), index_at) > written


def test_realise_loss__a_gain_or_nothing__reverts(protocol, ch, engine, make_account, set_price, trader, keeper, eth_market):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    set_price("WETH", 2_200)
    with ape.reverts("liquidation: no loss to realise"):
        engine.realise_loss(account, eth_market, sender=keeper)
    flat = make_account(trader, collateral_usd=1_000, subaccount=1)
    with ape.reverts("liquidation: no loss to realise"):
        engine.realise_loss(flat, eth_market, sender=keeper)
    with ape.reverts("clearinghouse: unknown market"):
        engine.realise_loss(account, 9, sender=keeper)
