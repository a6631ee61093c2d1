# pragma version ~=0.4.3
"""
@title margining
@notice The margin check's arithmetic over an account's whole book: equity (settlement balance
        at $1, haircut collateral, unrealised PnL with funding accrued to now) and the
        maintenance and initial requirements. A stateless module over the vault and perps;
        the formulas themselves are the `risk` module's.
"""

from .interfaces import IClearinghouse
from .interfaces import IOracleRouter

import constants as c
import risk
import vault
import perps

uses: vault
uses: perps


@view
def _margin(account: uint256, known_market: uint256, known_price: uint256) -> (int256, uint256, uint256):
    pnl: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    pnl, maintenance, initial = self._positions_risk(account, known_market, known_price)
    balance: int256 = vault._settlement_of(account)
    if balance < 0:
        # a debt is a loan from the pool: it needs initial margin of its own (debt_imr), so
        # an account may owe at most 1 / (1 + debt_imr) of its haircut collateral value
        initial += risk._mul_up(
            unsafe_mul(convert(-balance, uint256), vault.SETTLEMENT_TO_WAD), (vault._debt_terms >> 128) & vault.MASK_64
        )
    # a pending claim counts as the balance does: the pool owes it
    equity: int256 = (balance + convert(vault._pending_of(account), int256)) * convert(vault.SETTLEMENT_TO_WAD, int256)
    equity += convert(self._collateral_value(account), int256) + pnl
    return equity, maintenance, initial


@view
def _collateral_value(account: uint256) -> uint256:
    mask: uint256 = vault._collateral_mask_of(account)
    total: uint256 = 0
    for slot: uint256 in range(1, c.MAX_COLLATERALS):
        if mask >> slot == 0:
            break
        if mask & (1 << slot) == 0:
            continue
        col: IClearinghouse.Collateral = vault.collaterals[slot]
        if col.weight == 0:
            continue  # written off: worth nothing, and its feed is not read
        price: uint256 = vault._price(col.token)
        # amount * price / unit, then the haircut; both rounded down (a credit)
        total += vault.balances[account][slot] * price // col.unit * col.weight // c.WAD
    return total


@view
def _positions_risk(account: uint256, known_market: uint256, known_price: uint256) -> (int256, uint256, uint256):
    """
    @dev Unrealised PnL (rounded down), maintenance and initial requirements (rounded up) over
         the account's markets, with funding accrued to now. `known_price` is the oracle price
         of `known_market` that the caller already read in this transaction (0: none).
    """
    mask: uint256 = vault._market_mask_of(account)
    pnl: int256 = 0
    maintenance: uint256 = 0
    initial: uint256 = 0
    for m: uint256 in range(1, c.MAX_MARKETS):
        if mask >> m == 0:
            break
        if mask & (1 << m) == 0:
            continue
        # margin needs no fees: three parameter slots, not four
        params: perps.Hot = perps._unpack(
            perps.PackedMarket(core=perps._packed[m].core, rates=perps._packed[m].rates, sizes=perps._packed[m].sizes, fees=0)
        )
        pos: IClearinghouse.Position = perps._load_position(account, m)
        price: uint256 = known_price
        if m != known_market:
            price = vault._price(params.asset)
        index: int256 = risk._funding_index_now(perps._load_state(m), params.max_funding_rate, params.skew_scale, price)
        pnl += risk._signed_mul_floor(pos.size, convert(price, int256) - index) - pos.cost
        abs_size: uint256 = convert(abs(pos.size), uint256)
        mmr: uint256 = 0
        imr: uint256 = 0
        mmr, imr = perps._rates(params, abs_size)
        notional: uint256 = risk._mul_up(abs_size, price)
        maintenance += risk._mul_up(notional, mmr)
        initial += risk._mul_up(notional, imr)
    return pnl, maintenance, initial
