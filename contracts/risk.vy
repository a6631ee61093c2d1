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
    @dev vol_k * sqrt(horizon / YEAR), WAD: the rate one unit of sigma adds. The square root is
         floored (isqrt), then the product with vol_k rounded up, so the unit can sit a few wei
         below the exact value; every rate built on it rounds up again.
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
         over the trade, computed in one division, price * (2 S + 2 skew + delta) / (2 S), so
         the only rounding is the last one: a buy rounds up, a sell down (both against the
         trader). |skew| <= oi_cap <= skew_scale keeps the numerator positive; 0 if governance
         lowered skew_scale below the open interest and it is not.
    """
    numerator: int256 = 2 * convert(skew_scale, int256) + 2 * skew + size_delta
    if numerator <= 0:
        return 0
    if size_delta > 0:
        return self._ceil_div(price * convert(numerator, uint256), 2 * skew_scale)
    return price * convert(numerator, uint256) // (2 * skew_scale)


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


@view
def _funding_index_now(st: IClearinghouse.MarketState, max_funding_rate: uint256, skew_scale: uint256, price: uint256) -> int256:
    """
    @dev The market's funding index accrued to now at `price`: the stored index plus one step
         of `_funding_rate` over the seconds since it was last accrued. The Clearinghouse (which
         stores it), the LiquidityPool (its mark-to-market) and the MarginLens (what-ifs) all
         read it through this one function.
    """
    elapsed: uint256 = block.timestamp - st.last_funding_time
    if elapsed == 0:
        return st.funding_index
    rate: int256 = self._funding_rate(st.long_oi, st.short_oi, max_funding_rate, skew_scale)
    return st.funding_index + self._funding_step(rate, price, elapsed)


@pure
def _no_spiral(penalty: uint256, base_mmr: uint256, buffer: uint256) -> bool:
    """
    @dev f < (1 + b) * r for the smallest rate any tier or volatility can give (base_mmr);
         otherwise every partial close lowers health (DESIGN.md).
    """
    return self._mul_down(c.WAD + buffer, base_mmr) > penalty  # the rounding _close_for_rate uses


# ---------------------------------------------------------------- liquidation arithmetic


@pure
def _snapshot_rates(s: IClearinghouse.LiquidationSnapshot, abs_size: uint256) -> uint256:
    """
    @dev The maintenance rate the margin check gives a position of `abs_size` in the snapshot's
         market (see `_rates`).
    """
    mmr: uint256 = 0
    imr: uint256 = 0
    mmr, imr = self._rates(s.base_mmr, s.tier_size, s.tier_mmr, s.vol_unit, s.imr_multiplier, abs_size, s.sigma, s.sigma_mm)
    return mmr


@pure
def _close_for_rate(
    s: IClearinghouse.LiquidationSnapshot,
    abs_size: uint256,
    m_other: uint256,
    rate: uint256,
    buffer: uint256,
    settlement_to_wad: uint256,
) -> uint256:
    """
    @dev Least size x (base units, rounded up) that restores E' >= (1 + b) M' when the
         remainder's rate is `rate`, closing at the oracle price with penalty f:
             x * price >= ((1 + b) (M_other + N r) - (E - slack)) / ((1 + b) r - f)
         N = |size| * price rounded up; (1 + b) r rounded down and every other step up, so
         the health reached is at least the target. slack = 2 settlement token units: the
         rounding of the realised PnL and of the penalty to token units.
         The denominator is positive for every rate >= base_mmr by the spiral bound.
    """
    b1: uint256 = c.WAD + buffer
    notional: uint256 = self._mul_up(abs_size, s.price)
    slack: int256 = convert(2 * settlement_to_wad, int256)
    target: int256 = convert(self._mul_up(m_other + self._mul_up(notional, rate), b1), int256) - (s.equity - slack)
    if target <= 0:
        return 0
    denominator: uint256 = self._mul_down(b1, rate) - s.penalty
    x_notional: uint256 = self._ceil_div(convert(target, uint256) * c.WAD, denominator)
    return self._ceil_div(x_notional * c.WAD, s.price)


@pure
def _least_close(s: IClearinghouse.LiquidationSnapshot, buffer: uint256, settlement_to_wad: uint256) -> uint256:
    """
    @dev The least size (base units) whose close restores health 1 + buffer, across size
         tiers; |size| when no close can.
         A remainder of r units sits in tier t = r // tier_size, whose rate R_t does not fall
         as t grows. Closing x in tier t's range [lo_t, hi_t] (hi_t = |size| - t * tier_size)
         restores health iff x >= X(R_t) (`_close_for_rate`). Closing more never hurts (the
         spiral bound), so P(t): X(R_t) <= hi_t holds for every tier up to some t* and for
         none above: a binary search over t finds t*, and the least close is
         max(X(R_t*), lo_t*). At most 128 halvings (tier counts are below 2^128).
    """
    abs_size: uint256 = convert(abs(s.size), uint256)
    mmr: uint256 = self._snapshot_rates(s, abs_size)
    m_other: uint256 = s.maintenance - self._mul_up(self._mul_up(abs_size, s.price), mmr)
    top: uint256 = abs_size // s.tier_size  # the position's own tier
    x: uint256 = self._close_for_rate(s, abs_size, m_other, mmr, buffer, settlement_to_wad)
    if x <= abs_size - top * s.tier_size:
        return x  # the remainder stays in the position's own tier: no lower tier can do better
    if self._close_for_rate(s, abs_size, m_other, self._snapshot_rates(s, 0), buffer, settlement_to_wad) > abs_size:
        return abs_size  # even tier 0's rate cannot restore health
    lo: uint256 = 0  # P(lo) holds
    hi: uint256 = top  # P(hi) fails
    for i: uint256 in range(128):
        if hi - lo <= 1:
            break
        mid: uint256 = (lo + hi) // 2
        rate: uint256 = self._snapshot_rates(s, mid * s.tier_size)
        if self._close_for_rate(s, abs_size, m_other, rate, buffer, settlement_to_wad) <= abs_size - mid * s.tier_size:
            lo = mid
        else:
            hi = mid
    x = self._close_for_rate(s, abs_size, m_other, self._snapshot_rates(s, lo * s.tier_size), buffer, settlement_to_wad)
    # the least x whose remainder is in tier lo: remainder <= (lo + 1) * tier_size - 1
    upper_remainder: uint256 = (lo + 1) * s.tier_size - 1
    if upper_remainder < abs_size:
        x = max(x, abs_size - upper_remainder)
    return x


@pure
def _liquidation_penalty(
    equity: int256,
    maintenance: uint256,
    closed_notional: uint256,
    mmr: uint256,
    penalty_rate: uint256,
    settlement_to_wad: uint256,
) -> uint256:
    """
    @dev Penalty in settlement token units: penalty_rate of the closed notional, rounded up,
         but never more than the share of the account's positive equity that backed the
         maintenance this close frees (rounded down), so positions left open keep their equity;
         0 when equity <= 0.
    """
    if equity <= 0:
        return 0
    penalty: uint256 = self._ceil_div(self._mul_up(closed_notional, penalty_rate), settlement_to_wad)
    freed: uint256 = min(self._mul_up(closed_notional, mmr), maintenance)
    return min(penalty, convert(equity, uint256) * freed // maintenance // settlement_to_wad)
