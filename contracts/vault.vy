# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title vault
@notice The Clearinghouse's custody: accounts and their settlement balances, collateral balances
        per token, the pool's realised balance and the insurance fund, token transfers in and
        out (with the fee-on-transfer check), debt bookkeeping and bad debt. A module: its
        storage lives in the Clearinghouse, which initializes it.
@dev An account's settlement balance and its market and collateral masks share one slot, and
     the pool's balance and the insurance fund share another, so a trade or a liquidation writes
     them with the words it touches anyway. Token units throughout; USD only in `_to_tokens_floor`.
"""

from ethereum.ercs import IERC20

from .interfaces import IOracleRouter
from .interfaces import IClearinghouse

import constants as c
import risk

MASK_128: constant(uint256) = 2**128 - 1  # low half of a packed word
MASK_64: constant(uint256) = 2**64 - 1
SCALE: constant(uint256) = 10**36  # total_scaled_debt's precision
MASK_16: constant(uint256) = 2**16 - 1  # an account's market mask (markets 1..15)
INT128_MAX: constant(int256) = 2**127 - 1  # packed signed fields are int128

ORACLE: public(immutable(address))  # the OracleRouter: the price and volatility source
SETTLEMENT: public(immutable(address))  # the ERC-20 USD coin that PnL settles in
SETTLEMENT_TO_WAD: public(immutable(uint256))  # 10 ** (18 - settlement decimals)

collaterals: public(HashMap[uint256, IClearinghouse.Collateral])  # slot 1..7 => collateral (slot 0 is settlement)
collateral_slot: public(HashMap[address, uint256])  # token => slot, 0 when unknown
collateral_count: public(uint256)  # slots in use, excluding settlement

# account => settlement balance (int128, two's complement) | market mask << 128 | collateral
# mask << 144 (8 bits) | claim-or-index << 152: one slot per account, so the masks ride on the
# balance write a trade makes anyway. The top 104 bits are the account's pending claim while
# its balance is >= 0, and the debt index its debt was last written at while it is < 0 (an
# account with a claim that goes into debt nets the claim first, so it never holds both)
_accounts: HashMap[uint256, uint256]
balances: public(HashMap[uint256, HashMap[uint256, uint256]])  # account => slot => amount

# pool's realised balance held here (int128, token units) | insurance fund << 128 (token units):
# one slot, as a liquidation moves both
_funds: uint256
settlement_held: public(uint256)  # settlement tokens the Clearinghouse should hold (internal)
total_bad_debt: public(uint256)  # cumulative shortfall booked, token units
total_debt: public(uint256)  # sum of negative settlement balances as last written (interest charged so far), token units
# sum over debts of debt * 1e36 // the index it was written at: times the index now, every debt
# with its interest (rounded down), which the LiquidityPool counts before it is charged
total_scaled_debt: public(uint256)
total_pending: public(uint256)  # sum of pending claims: realised profit the pool owes but could not pay in tokens, token units

# debt index (WAD, starts at 1) | last accrual time << 128: a debt of D written at index i0 is
# ceil(D * i / i0) at index i
_debt_index: uint256
# the loan's terms, WAD each: rate_base | rate_slope << 64 (per year) | debt_imr << 128 |
# ceiling << 192 (see Clearinghouse.debt_terms)
_debt_terms: uint256


@deploy
def __init__(oracle: IOracleRouter, settlement_token: IERC20, settlement_decimals: uint8):
    assert settlement_decimals <= 18, "clearinghouse: bad decimals"
    ORACLE = oracle.address
    SETTLEMENT = settlement_token.address
    SETTLEMENT_TO_WAD = 10**convert(18 - settlement_decimals, uint256)
    self._debt_index = c.WAD | (block.timestamp << 128)
    # the Configurator's defaults: 2% a year plus 30% at full utilisation, 25% initial margin
    # on a debt, a ceiling at half of what the pool could lend
    self._debt_terms = 2 * 10**16 | (3 * 10**17 << 64) | (25 * 10**16 << 128) | (5 * 10**17 << 192)


@pure
def _account_id(owner: address, subaccount: uint96) -> uint256:
    return (convert(owner, uint256) << 96) | convert(subaccount, uint256)


@view
def _slot(token: address) -> uint256:
    slot: uint256 = self.collateral_slot[token]
    self._require(slot != 0, "clearinghouse: unknown token")
    return slot


@view
def _settlement_of(account: uint256) -> int256:
    """
    @dev The balance, a debt with its interest to now: -ceil(D * index now / index written).
    """
    word: uint256 = self._accounts[account]
    balance: int256 = self._from_int128(word & MASK_128)
    if balance < 0:
        return -convert(risk._ceil_div(unsafe_mul(convert(-balance, uint256), self._index_now()), word >> 152), int256)
    return balance


@view
def _pending_of(account: uint256) -> uint256:
    word: uint256 = self._accounts[account]
    if word & (1 << 127) != 0:
        return 0  # in debt: the top bits are its index
    return word >> 152


@view
def _index_now() -> uint256:
    """
    @dev The debt index to now: index + ceil(index * rate * elapsed / (year * 1e18)), at most
         2**104 - 1, with rate = rate_base + rate_slope * utilisation // 1e18 and utilisation =
         min(total_debt * 1e18 // lendable, 1e18), lendable = the pool's balance less the
         pending claims (utilisation 1e18 when lendable <= 0), all as they stand now.
         Unchecked arithmetic: index < 2**104, rate < 2**65, elapsed < 2**40.
    """
    w: uint256 = self._debt_index
    index: uint256 = w & MASK_128
    elapsed: uint256 = unsafe_sub(block.timestamp, w >> 128)
    debt: uint256 = self.total_debt
    if elapsed == 0 or debt == 0:
        return index
    # what the pool could lend: its balance less the claims it owes first
    pool: int256 = self._pool_balance() - convert(self.total_pending, int256)
    utilisation: uint256 = c.WAD
    if pool > 0:
        utilisation = min(unsafe_div(unsafe_mul(debt, c.WAD), convert(pool, uint256)), c.WAD)
    terms: uint256 = self._debt_terms
    rate: uint256 = unsafe_add(terms & MASK_64, unsafe_div(unsafe_mul((terms >> 64) & MASK_64, utilisation), c.WAD))
    # at most 2**104 - 1, the width an account stores it in: interest stops there rather than
    # wrap (at the largest rate the Configurator allows, after about three years)
    return min(
        unsafe_add(
            index,
            unsafe_div(
                unsafe_add(unsafe_mul(unsafe_mul(index, rate), elapsed), c.SECONDS_PER_YEAR * c.WAD - 1),
                c.SECONDS_PER_YEAR * c.WAD,
            ),
        ),
        2**104 - 1,
    )


def _accrue_index() -> uint256:
    """
    @dev Fold the interest to now into the index before the debt or the pool's balance changes
         the rate. Returns the index.
    """
    index: uint256 = self._index_now()
    self._debt_index = index | (block.timestamp << 128)
    return index


def _add_pending(account: uint256, delta: int256):
    """
    @dev +delta takes delta out of the account's balance (the caller's) into its claim and
         leaves it in the pool, which owes it unpaid; -delta pays the claim out of the pool.
    """
    word: uint256 = self._accounts[account]
    self._accounts[account] = (word & (2**152 - 1)) | (convert(convert(word >> 152, int256) + delta, uint256) << 152)
    self.total_pending = convert(convert(self.total_pending, int256) + delta, uint256)
    self._add_pool(delta)


def _claim(account: uint256):
    """
    @dev Pay the account's pending claim, as far as the pool holds tokens (its balance less
         every debt), first come first served among claimants.
    """
    pending: uint256 = self._pending_of(account)
    if pending == 0:
        return  # the common case: no storage read beyond the account's own word
    paid: int256 = min(convert(pending, int256), self._pool_balance() - convert(self.total_debt, int256))
    if paid > 0:
        self._add_pending(account, -paid)
        self._add_settlement(account, paid)


@view
def _market_mask_of(account: uint256) -> uint256:
    return (self._accounts[account] >> 128) & MASK_16


@view
def _collateral_mask_of(account: uint256) -> uint256:
    return (self._accounts[account] >> 144) & 255


@view
def _pool_liquidity() -> uint256:
    """
    @dev The pool's free liquidity: its balance less every debt (a debt is backed by collateral,
         not tokens) less the claims it owes first. Keepers are topped up and LPs paid out of it.
    """
    liquid: int256 = self._pool_balance() - convert(self.total_debt + self.total_pending, int256)
    return convert(max(liquid, 0), uint256)


@view
def _pool_balance() -> int256:
    return self._from_int128(self._funds & MASK_128)


def _add_pool(delta: int256):
    self._funds = (self._funds & ~MASK_128) | self._to_int128(self._pool_balance() + delta)


def _add_insurance(delta: int256):
    # never negative: bad debt takes at most the balance
    insurance: uint256 = convert(convert(self._funds >> 128, int256) + delta, uint256)
    assert insurance <= MASK_128, "clearinghouse: amount too large"
    self._funds = (self._funds & MASK_128) | (insurance << 128)


def _set_settlement(account: uint256, balance: int256):
    """
    @dev `balance` is the new balance as `_settlement_of` counts it (a debt with its interest
         to now). A debt's interest is charged here: it goes to the pool. A new debt nets the
         account's own claim first; what is left is written with the index now.
    """
    word: uint256 = self._accounts[account]
    written: int256 = self._from_int128(word & MASK_128)
    hi: uint256 = word >> 152
    if written < 0 or balance < 0:
        index: uint256 = self._accrue_index()
        if written < 0:
            # the interest since the debt was written, charged to it and paid to the pool
            self._add_pool(convert(risk._ceil_div(unsafe_mul(convert(-written, uint256), index), hi), int256) + written)
            self.total_scaled_debt = unsafe_sub(
                self.total_scaled_debt, unsafe_div(unsafe_mul(convert(-written, uint256), SCALE), hi)
            )
            hi = 0
        elif hi > 0:
            # a claim the pool owes pays the new debt first, no token moving
            netted: uint256 = min(hi, convert(-balance, uint256))
            hi -= netted
            self.total_pending -= netted
            self._add_pool(-convert(netted, int256))
            balance += convert(netted, int256)
        # debts backed by collateral, not tokens: the pool may not pay these out to LPs
        self.total_debt = self.total_debt + convert(max(-balance, 0), uint256) - convert(max(-written, 0), uint256)
        if balance < 0:
            hi = index
            self.total_scaled_debt = unsafe_add(
                self.total_scaled_debt, unsafe_div(unsafe_mul(convert(-balance, uint256), SCALE), index)
            )
    self._accounts[account] = (word & (2**152 - 1) & ~MASK_128) | self._to_int128(balance) | (hi << 152)


def _add_settlement(account: uint256, delta: int256):
    self._set_settlement(account, self._settlement_of(account) + delta)


def _set_market_mask(account: uint256, mask: uint256):
    self._accounts[account] = (self._accounts[account] & ~(MASK_16 << 128)) | (mask << 128)


def _set_collateral_mask(account: uint256, mask: uint256):
    self._accounts[account] = (self._accounts[account] & ~(255 << 144)) | (mask << 144)


@pure
def _to_int128(x: int256) -> uint256:
    self._require(x >= -INT128_MAX - 1 and x <= INT128_MAX, "clearinghouse: amount too large")
    if x < 0:
        return convert(x + 2**128, uint256)  # two's complement in 128 bits
    return convert(x, uint256)


@pure
def _from_int128(bits: uint256) -> int256:
    x: int256 = convert(bits, int256)
    if x > INT128_MAX:
        x -= 2**128
    return x


def _pull_settlement(source: address, amount: uint256):
    self.settlement_held += amount
    self._pull(IERC20(SETTLEMENT), source, amount)


def _pull(token: IERC20, source: address, amount: uint256):
    """
    @dev Credits are booked before the call (nonreentrancy holds the lock); a token that delivers
         less than `amount` (a fee on transfer) is refused, so internal balances never exceed
         what the contract holds.
    """
    before: uint256 = staticcall token.balanceOf(self)
    self._require(extcall token.transferFrom(source, self, amount, default_return_value=True), "clearinghouse: transfer failed")
    self._require(staticcall token.balanceOf(self) == before + amount, "clearinghouse: fee on transfer")


def _push_settlement(receiver: address, amount: uint256):
    self._require(self.settlement_held >= amount, "clearinghouse: insufficient liquidity")
    self.settlement_held -= amount
    self._push(SETTLEMENT, receiver, amount)


def _push(token: address, receiver: address, amount: uint256):
    self._require(extcall IERC20(token).transfer(receiver, amount, default_return_value=True), "clearinghouse: transfer failed")


def _settle_bad_debt(account: uint256):
    """
    @dev Called when the account has no positions. With collateral left, the debt waits for
         `liquidate_collateral`; with none, a negative balance is bad debt.
    """
    s: int256 = self._settlement_of(account)
    if s >= 0 or self._collateral_mask_of(account) != 0:
        return
    shortfall: uint256 = convert(-s, uint256)
    from_insurance: uint256 = min(shortfall, self._funds >> 128)
    socialised: uint256 = shortfall - from_insurance
    self._add_insurance(-convert(from_insurance, int256))
    self._add_pool(-convert(socialised, int256))
    self._set_settlement(account, 0)
    self.total_bad_debt += shortfall
    log IClearinghouse.BadDebt(account=account, shortfall=shortfall, covered_by_insurance=from_insurance, socialised=socialised)


@view
def _price(asset: address) -> uint256:
    return staticcall IOracleRouter(ORACLE).price(asset)


@view
def _volatilities(asset: address) -> (uint256, uint256):
    return staticcall IOracleRouter(ORACLE).volatilities(asset)


@view
def _to_tokens_floor(amount_wad: int256) -> int256:
    return risk._div_floor(amount_wad, convert(SETTLEMENT_TO_WAD, int256))


@pure
def _require(ok: bool, reason: String[64]):
    """
    @dev An assert with its message passed in: one copy of the revert code serves every
         governance check, which keeps the contract under the 24 KB limit. perps.Hot paths (trade,
         liquidate, deposit, withdraw) keep inline asserts, which cost no gas when they pass.
    """
    assert ok, reason
