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

import risk

MASK_128: constant(uint256) = 2**128 - 1  # low half of a packed word
MASK_16: constant(uint256) = 2**16 - 1  # an account's market mask (markets 1..15)
INT128_MAX: constant(int256) = 2**127 - 1  # packed signed fields are int128

ORACLE: public(immutable(address))  # the OracleRouter: the price and volatility source
SETTLEMENT: public(immutable(address))  # the ERC-20 USD coin that PnL settles in
SETTLEMENT_TO_WAD: public(immutable(uint256))  # 10 ** (18 - settlement decimals)

collaterals: public(HashMap[uint256, IClearinghouse.Collateral])  # slot 1..7 => collateral (slot 0 is settlement)
collateral_slot: public(HashMap[address, uint256])  # token => slot, 0 when unknown
collateral_count: public(uint256)  # slots in use, excluding settlement

# account => settlement balance (int128, two's complement) | market mask << 128 | collateral
# mask << 144 (8 bits): one slot per account, so the masks ride on the balance write a trade
# makes anyway
_accounts: HashMap[uint256, uint256]
balances: public(HashMap[uint256, HashMap[uint256, uint256]])  # account => slot => amount

# pool's realised balance held here (int128, token units) | insurance fund << 128 (token units):
# one slot, as a liquidation moves both
_funds: uint256
settlement_held: public(uint256)  # settlement tokens the Clearinghouse should hold (internal)
total_bad_debt: public(uint256)  # cumulative shortfall booked, token units
total_debt: public(uint256)  # sum of negative settlement balances, token units


@deploy
def __init__(oracle: IOracleRouter, settlement_token: IERC20, settlement_decimals: uint8):
    assert settlement_decimals <= 18, "clearinghouse: bad decimals"
    ORACLE = oracle.address
    SETTLEMENT = settlement_token.address
    SETTLEMENT_TO_WAD = 10**convert(18 - settlement_decimals, uint256)


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
    return self._from_int128(self._accounts[account] & MASK_128)


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
         not tokens). Keepers are topped up and LPs paid out of it.
    """
    liquid: int256 = self._pool_balance() - convert(self.total_debt, int256)
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
    before: int256 = self._settlement_of(account)
    if before < 0 or balance < 0:
        # debts backed by collateral, not tokens: the pool may not pay these out to LPs
        self.total_debt = self.total_debt + convert(max(-balance, 0), uint256) - convert(max(-before, 0), uint256)
    self._accounts[account] = (self._accounts[account] & ~MASK_128) | self._to_int128(balance)


def _add_settlement(account: uint256, delta: int256):
    self._set_settlement(account, self._settlement_of(account) + delta)


def _set_market_mask(account: uint256, mask: uint256):
    self._accounts[account] = (self._accounts[account] & ~(MASK_16 << 128)) | (mask << 128)


def _set_collateral_mask(account: uint256, mask: uint256):
    self._accounts[account] = (self._accounts[account] & ~(255 << 144)) | (mask << 144)


@pure
def _to_int128(x: int256) -> uint256:
    assert x >= -INT128_MAX - 1 and x <= INT128_MAX, "clearinghouse: amount too large"
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
    self._require(
        extcall IERC20(SETTLEMENT).transfer(receiver, amount, default_return_value=True), "clearinghouse: transfer failed"
    )


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
    if from_insurance > 0:
        log IClearinghouse.InsurancePayout(account=account, amount=from_insurance)
    log IClearinghouse.BadDebt(account=account, shortfall=shortfall, covered_by_insurance=from_insurance, socialised=socialised)


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
