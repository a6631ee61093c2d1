# pragma version ~=0.4.3
"""
@title risk
@notice The margin formulas and the rounding helpers, as pure functions shared by the
        Clearinghouse (which enforces them) and the MarginLens (which answers what-ifs), so the
        two can never disagree. Python mirrors them in marginsim/risk.py, tested to the wei.
@dev Every helper names its rounding direction. WAD = 1e18.
"""

from .interfaces import IClearinghouse

import constants as c


@pure
def _mul_up(a: uint256, b: uint256) -> uint256:
    return self._ceil_div(a * b, c.WAD)


@pure
def _mul_down(a: uint256, b: uint256) -> uint256:
    return a * b // c.WAD


@pure
def _ceil_div(a: uint256, b: uint256) -> uint256:
    if a == 0:
        return 0
    return (a - 1) // b + 1


@pure
def _signed_mul_floor(a: int256, b: int256) -> int256:
    """
    @dev a * b / WAD rounded toward minus infinity (Vyper's // truncates toward zero).
    """
    product: int256 = a * b
    q: int256 = product // c.WAD_INT
    if product < 0 and product % c.WAD_INT != 0:
        q -= 1
    return q


@pure
def _signed_mul_ceil(a: int256, b: int256) -> int256:
    """
    @dev a * b / WAD rounded toward plus infinity.
    """
    product: int256 = a * b
    q: int256 = product // c.WAD_INT
    if product > 0 and product % c.WAD_INT != 0:
        q += 1
    return q


@pure
def _signed_mul_div_ceil(a: int256, b: int256, d: int256) -> int256:
    """
    @dev a * b / d rounded toward plus infinity.
    """
    product: int256 = a * b
    q: int256 = product // d
    if product % d != 0 and ((product > 0) == (d > 0)):
        q += 1
    return q


@pure
def _div_floor(a: int256, d: int256) -> int256:
    """
    @dev a / d rounded toward minus infinity, d > 0.
    """
    q: int256 = a // d
    if a < 0 and a % d != 0:
        q -= 1
    return q


@pure
def _health(equity: int256, maintenance: uint256) -> uint256:
    """
    @dev equity / maintenance in WAD, rounded down; max_value(uint256) without a requirement.
    """
    if maintenance == 0:
        return max_value(uint256)
    if equity <= 0:
        return 0
    return convert(equity, uint256) * c.WAD // maintenance


@pure
def _market_rates(
    params: IClearinghouse.MarketParams, abs_size: uint256, sigma: uint256, sigma_mm: uint256
) -> (uint256, uint256):
    """
    @dev (mmr, imr) of a market for a position of `abs_size`; see `_rates`.
    """
    return self._rates(
        params.base_mmr,
        params.tier_size,
        params.tier_mmr,
        self._vol_unit(params.vol_k, params.liquidation_horizon),
        params.imr_multiplier,
        abs_size,
        sigma,
        sigma_mm,
    )


@pure
def _vol_unit(vol_k: uint256, liquidation_horizon: uint256) -> uint256:
    """
    @dev vol_k * sqrt(horizon / YEAR), WAD, rounded up: the rate one unit of sigma adds.
    """
    horizon: uint256 = isqrt(liquidation_horizon * c.WAD * c.WAD // c.SECONDS_PER_YEAR)
    return self._mul_up(vol_k, horizon)


@pure
def _rates(
    base_mmr: uint256,
    tier_size: uint256,
    tier_mmr: uint256,
    vol_unit: uint256,
    imr_multiplier: uint256,
    abs_size: uint256,
    sigma: uint256,
    sigma_mm: uint256,
) -> (uint256, uint256):
    """
    @dev (mmr, imr), both rounded up:
         tier = base_mmr + tier_mmr * (|size| // tier_size)
         mmr = max(tier, vol_unit * sigma_mm)
         imr = min(imr_multiplier * max(tier, vol_unit * sigma), 100%)
         and mmr <= imr always.
    """
    tier_rate: uint256 = base_mmr + tier_mmr * (abs_size // tier_size)
    mmr: uint256 = max(tier_rate, self._mul_up(vol_unit, sigma_mm))
    imr: uint256 = min(self._mul_up(max(tier_rate, self._mul_up(vol_unit, sigma)), imr_multiplier), c.WAD)
    return min(mmr, imr), imr


@pure
def _fill_price(price: uint256, skew: int256, size_delta: int256, skew_scale: uint256) -> uint256:
    """
    @dev fill = price * (1 + (skew_before + skew_after) / 2 / skew_scale): the average premium
         over the trade. Buys round up (+1 also covers the premium's truncation), sells down.
         |skew| <= oi_cap <= skew_scale keeps the fill positive.
    """
    mid_skew: int256 = 2 * skew + size_delta
    premium: int256 = mid_skew * c.WAD_INT // (2 * convert(skew_scale, int256))
    factor: uint256 = convert(max(c.WAD_INT + premium, 0), uint256)
    if size_delta > 0:
        return self._mul_up(price, factor) + 1
    return self._mul_down(price, factor)


@pure
def _funding_rate(long_oi: uint256, short_oi: uint256, max_funding_rate: uint256, skew_scale: uint256) -> int256:
    """
    @dev Per day, WAD: max_rate * skew / skew_scale, clamped to +-max_rate. Positive: longs pay.
    """
    skew: int256 = convert(long_oi, int256) - convert(short_oi, int256)
    max_rate: int256 = convert(max_funding_rate, int256)
    rate: int256 = skew * max_rate // convert(skew_scale, int256)
    return max(min(rate, max_rate), -max_rate)


@pure
def _funding_step(rate: int256, price: uint256, elapsed: uint256) -> int256:
    """
    @dev Funding per unit of size over `elapsed` seconds: rate * price * elapsed / day, rounded
         away from zero. Its sign is the skew's, so the rounding always favours the pool, which
         holds the other side of the skew.
    """
    numerator: int256 = rate * convert(price, int256) * convert(elapsed, int256)
    denominator: int256 = c.WAD_INT * convert(c.SECONDS_PER_DAY, int256)
    step: int256 = numerator // denominator
    if numerator % denominator != 0:
        if numerator > 0:
            step += 1
        else:
            step -= 1
    return step


@pure
def _no_spiral(penalty: uint256, base_mmr: uint256, buffer: uint256) -> bool:
    """
    @dev f < (1 + b) * r for the smallest rate any tier or volatility can give (base_mmr);
         otherwise every partial close lowers health (DESIGN.md).
    """
    return self._mul_down(c.WAD + buffer, base_mmr) > penalty  # the rounding _close_for_rate uses
