"""`MarginLens.max_withdraw` quotes an amount `withdraw` accepts: the collateral value floors
twice, so the quote keeps 2 wei of room (an exact quote could leave equity 1 wei short)."""

import pytest

from marginsim.orders import trade_now
from marginsim.protocol import account_id
from tests.conftest import WAD


@pytest.mark.parametrize("weth,price", [(10 * WAD + 7, 1_873.37), (3 * WAD + 123_456_789, 1_911.11), (25 * WAD + 1, 1_799.99)])
def test_max_withdraw__collateral_after_realised_loss__withdraw_succeeds(
    protocol, ch, fund, seeded_pool, trader, set_price, eth_market, weth, price
):
    token = protocol.tokens["WETH"]
    fund(trader, token, weth)
    ch.deposit(token, weth, 0, sender=trader)
    size = weth * 4  # 4x the collateral's ETH, long
    trade_now(ch, eth_market, size, 0, 0, sender=trader)
    set_price("WETH", price)
    trade_now(ch, eth_market, -size, 0, 0, sender=trader)  # the loss is realised: a negative balance
    account = account_id(trader)
    assert ch.settlement(account) < 0 and ch.market_mask(account) == 0
    quote = protocol.lens.max_withdraw(account, token)
    assert 0 < quote < weth
    ch.withdraw(token, quote, 0, sender=trader)
    equity, _, initial = ch.margin(account)
    assert equity >= initial
