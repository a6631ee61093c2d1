from marginsim.orders import trade_now
from tests.conftest import USDC


def test_open_and_close__round_trip(protocol, ch, make_account, trader, eth_market, usdc):
    account = make_account(trader, collateral_usd=10_000, leverage=5)
    pos = ch.positions(account, eth_market)
    assert pos.size > 0
    e, m, i = ch.margin(account)
    assert e > i > m > 0
    trade_now(ch, eth_market, -pos.size, 0, 0, sender=trader)
    assert ch.positions(account, eth_market).size == 0
    assert ch.settlement(account) < 10_000 * USDC  # fees and premium paid
    assert usdc.balanceOf(ch) == ch.settlement_held()
