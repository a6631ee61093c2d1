# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title perps
@notice The Clearinghouse's perpetual markets: parameters packed for the hot paths, open
        interest and the funding index per market, positions, funding accrual, and a fill
        (close first at average cost, then open) settled into the account's balance. A module:
        its storage lives in the Clearinghouse, which initializes it; it uses the vault.
@dev A market's hot parameters are four words (`PackedMarket`), its state two (`PackedState`),
     a position one (int128 size | int128 cost). `markets(id)` keeps the full readable struct.
"""

from .interfaces import IClearinghouse
from .interfaces import IOracleRouter

import constants as c
import risk
import vault

uses: vault


struct Hot:
    asset: address  # the market's parameters as the hot paths read them (from four packed words)
    flags: uint256  # bit 0: reduce-only, bit 1: paused (no new risk either way)
    base_mmr: uint256
    tier_size: uint256
    tier_mmr: uint256
    vol_unit: uint256  # vol_k * sqrt(liquidation_horizon / year), fixed when the market is set
    imr_multiplier: uint256
    fee: uint256
    penalty: uint256
    keeper_share: uint256
    skew_scale: uint256
    max_funding_rate: uint256
    oi_cap: uint256


struct PackedMarket:
    core: uint256  # asset | imr_multiplier << 160 | flags << 224
    rates: uint256  # base_mmr | tier_mmr << 64 | vol_unit << 128 | max_funding_rate << 192
    sizes: uint256  # tier_size (80 bits) | skew_scale << 80 (88) | oi_cap << 168 (88)
    fees: uint256  # fee | penalty << 64 | keeper_share << 128


struct PackedState:
    open_interest: uint256  # long_oi (96 bits) | short_oi << 96 (96) | last_funding_time << 192 (64)
    funding: uint256  # funding_index (int128, two's complement) | total_cost << 128 (int128)


MASK_64: constant(uint256) = 2**64 - 1  # a packed WAD parameter (all are bounded below 18.4)
MASK_80: constant(uint256) = 2**80 - 1  # packed tier size
MASK_88: constant(uint256) = 2**88 - 1  # packed skew scale and open interest cap
MASK_96: constant(uint256) = 2**96 - 1  # packed open interest per side
REDUCE_ONLY: constant(uint256) = 1  # market flag
PAUSED: constant(uint256) = 2  # market flag, set on every market by pause()

markets: public(HashMap[uint256, IClearinghouse.MarketParams])  # market id 1..15 => parameters, for readers
_packed: HashMap[uint256, PackedMarket]  # market id => the same parameters in 4 slots, for the hot paths
_state: HashMap[uint256, PackedState]  # market id => open interest and funding in 2 slots
market_count: public(uint256)  # markets listed
_positions: HashMap[
    uint256, HashMap[uint256, uint256]
]  # account => market => size (high 128 bits) | cost (low), two's complement: one slot per position


@view
def _market(market: uint256) -> Hot:
    # a listed market has a non-zero packed core (its asset); no separate count read needed
    w: PackedMarket = self._packed[market]
    vault._require(w.core != 0, "clearinghouse: unknown market")
    return self._unpack(w)


@view
def _unpack(w: PackedMarket) -> Hot:
    return Hot(
        asset=convert(w.core & convert(max_value(uint160), uint256), address),
        flags=w.core >> 224,
        base_mmr=w.rates & MASK_64,
        tier_size=w.sizes & MASK_80,
        tier_mmr=(w.rates >> 64) & MASK_64,
        vol_unit=(w.rates >> 128) & MASK_64,
        imr_multiplier=(w.core >> 160) & MASK_64,
        fee=w.fees & MASK_64,
        penalty=(w.fees >> 64) & MASK_64,
        keeper_share=w.fees >> 128,
        skew_scale=(w.sizes >> 80) & MASK_88,
        max_funding_rate=w.rates >> 192,
        oi_cap=w.sizes >> 168,
    )


@view
def _load_state(market: uint256) -> IClearinghouse.MarketState:
    w: PackedState = self._state[market]
    return IClearinghouse.MarketState(
        long_oi=w.open_interest & MASK_96,
        short_oi=(w.open_interest >> 96) & MASK_96,
        total_cost=vault._from_int128(w.funding >> 128),
        funding_index=vault._from_int128(w.funding & vault.MASK_128),
        last_funding_time=w.open_interest >> 192,
    )


def _store_state(market: uint256, st: IClearinghouse.MarketState):
    vault._require(st.long_oi <= MASK_96 and st.short_oi <= MASK_96, "clearinghouse: open interest too large")
    self._state[market] = PackedState(
        open_interest=st.long_oi | (st.short_oi << 96) | (st.last_funding_time << 192),
        funding=vault._to_int128(st.funding_index) | (vault._to_int128(st.total_cost) << 128),
    )


@view
def _load_position(account: uint256, market: uint256) -> IClearinghouse.Position:
    word: uint256 = self._positions[account][market]
    return IClearinghouse.Position(size=vault._from_int128(word >> 128), cost=vault._from_int128(word & vault.MASK_128))


def _store_position(account: uint256, market: uint256, pos: IClearinghouse.Position):
    # one slot instead of two: a new position costs one fresh SSTORE (22,100 gas), not two
    self._positions[account][market] = (vault._to_int128(pos.size) << 128) | vault._to_int128(pos.cost)


@view
def _rates(params: Hot, abs_size: uint256) -> (uint256, uint256):
    sigma: uint256 = 0
    sigma_mm: uint256 = 0
    sigma, sigma_mm = vault._volatilities(params.asset)
    return risk._rates(
        params.base_mmr, params.tier_size, params.tier_mmr, params.vol_unit, params.imr_multiplier, abs_size, sigma, sigma_mm
    )


def _accrue(market: uint256, params: Hot, price: uint256) -> IClearinghouse.MarketState:
    st: IClearinghouse.MarketState = self._load_state(market)
    if st.last_funding_time == block.timestamp:
        return st
    st.funding_index = risk._funding_index_now(st, params.max_funding_rate, params.skew_scale, price)
    st.last_funding_time = block.timestamp
    log IClearinghouse.FundingAccrued(
        market=market,
        funding_index=st.funding_index,
    )
    return st


def _settle_fill(
    account: uint256,
    market: uint256,
    pos: IClearinghouse.Position,
    st: IClearinghouse.MarketState,
    size_delta: int256,
    fill: uint256,
    charge: uint256,
    to_pool: uint256,
) -> (IClearinghouse.Position, IClearinghouse.MarketState, int256):
    """
    @dev Fill `size_delta` at `fill` (a trade or a liquidation): realise PnL into the account's
         balance (rounded down; the pool takes the exact complement), charge `charge` token
         units, of which `to_pool` goes to the pool (a fee; a penalty's destination is the
         caller's), store the position and market state and keep the market mask. The caller settles bad debt (`vault._settle_bad_debt`)
         once everything the fill moves is booked.
    @return The position and market state afterwards, and the realised PnL in token units.
    """
    p: IClearinghouse.Position = empty(IClearinghouse.Position)
    s: IClearinghouse.MarketState = empty(IClearinghouse.MarketState)
    realised: int256 = 0
    p, s, realised = self._apply_fill(pos, st, size_delta, fill)
    credit: int256 = vault._to_tokens_floor(realised)
    vault._add_settlement(account, credit - convert(charge, int256))
    vault._add_pool(convert(to_pool, int256) - credit)
    if credit > 0:
        # profit is paid in tokens only out of what the pool holds free (its balance less every
        # debt and the claims already pending); the part that would leave the account a
        # positive balance the pool cannot pay is the account's pending claim, paid as tokens
        # come back. So the tokens held always cover every positive balance and the insurance
        # fund, and no profit is paid with other users' tokens.
        pending: int256 = min(
            min(convert(vault.total_debt + vault.total_pending, int256) - vault._pool_balance(), credit),
            vault._settlement_of(account),
        )
        if pending > 0:
            vault._add_settlement(account, -pending)
            vault._add_pending(account, pending)
            log IClearinghouse.ProfitPending(account=account, market=market, amount=convert(pending, uint256))
    self._store_position(account, market, p)
    self._store_state(market, s)
    mask: uint256 = vault._market_mask_of(account)
    if p.size == 0:
        vault._set_market_mask(account, mask & (~(1 << market)))
    else:
        vault._set_market_mask(account, mask | (1 << market))
    return p, s, credit


@view
def _apply_fill(
    pos: IClearinghouse.Position, st: IClearinghouse.MarketState, delta: int256, fill: uint256
) -> (IClearinghouse.Position, IClearinghouse.MarketState, int256):
    """
    @dev Close first (average cost, realising PnL), then open what is left in the new direction.
         Cost removed on a close rounds up (less PnL now) and is exact across the position's life:
         removed + remaining == original. `delta == 0` realises the position's PnL at `fill`:
         the whole position is closed and reopened there, so its size and the open interest
         stay and its cost is reset to the new basis.
    """
    p: IClearinghouse.Position = pos
    s: IClearinghouse.MarketState = st
    old_size: int256 = p.size
    index: int256 = s.funding_index
    fill_minus_index: int256 = convert(fill, int256) - index
    realised: int256 = 0

    closing: int256 = 0  # part of delta that closes, in the sign of the position being closed
    if delta == 0:
        closing = old_size  # a realisation (LiquidationEngine.realise_loss): close it all, reopen it all at `fill`
    elif old_size != 0 and (delta > 0) != (old_size > 0):
        closing = min(abs(delta), abs(old_size))
        if old_size < 0:
            closing = -closing
    if closing != 0:
        cost_removed: int256 = risk._signed_mul_div_ceil(p.cost, closing, p.size)
        realised = risk._signed_mul_floor(closing, fill_minus_index) - cost_removed
        p.cost -= cost_removed
        s.total_cost -= cost_removed
        p.size -= closing
    opening: int256 = delta + closing
    if opening != 0:
        added: int256 = risk._signed_mul_ceil(opening, fill_minus_index)
        p.cost += added
        s.total_cost += added
        p.size += opening
    # open interest per side
    s.long_oi = s.long_oi + convert(max(p.size, 0), uint256) - convert(max(old_size, 0), uint256)
    s.short_oi = s.short_oi + convert(max(-p.size, 0), uint256) - convert(max(-old_size, 0), uint256)
    return p, s, realised
