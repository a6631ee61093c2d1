# pragma version ~=0.4.3
"""
@title ThinSpotPool
@notice A thin constant-product pool (x * y = k, no fee) between a base token and the quote
        token: the spot DEX price that bZx read in 2020 and that a flash loan moved within one
        transaction. marginsim never reads it; the bZx replay shows it has no path into
        OracleRouter.price. Tests only.
@dev Outputs round down, so the pool never pays more than x * y = k allows.
"""

from ethereum.ercs import IERC20

BASE: public(immutable(IERC20))  # the asset (e.g. WETH)
QUOTE: public(immutable(IERC20))  # the quote coin (e.g. USDC)
BASE_UNIT: immutable(uint256)  # 10 ** base decimals
QUOTE_TO_WAD: immutable(uint256)  # 10 ** (18 - quote decimals)

base_reserve: public(uint256)  # base units held
quote_reserve: public(uint256)  # quote units held


event Swap:
    trader: indexed(address)
    quote_in: uint256
    base_in: uint256
    quote_out: uint256
    base_out: uint256


@deploy
def __init__(base: IERC20, quote: IERC20, base_decimals: uint8, quote_decimals: uint8):
    BASE = base
    QUOTE = quote
    BASE_UNIT = 10**convert(base_decimals, uint256)
    QUOTE_TO_WAD = 10**convert(18 - quote_decimals, uint256)


@external
def seed(base_amount: uint256, quote_amount: uint256):
    """
    @notice Add liquidity (the caller's tokens), at any ratio: a test sets the opening price.
    """
    assert extcall BASE.transferFrom(msg.sender, self, base_amount, default_return_value=True), "spot: transfer failed"
    assert extcall QUOTE.transferFrom(msg.sender, self, quote_amount, default_return_value=True), "spot: transfer failed"
    self.base_reserve += base_amount
    self.quote_reserve += quote_amount


@view
@external
def spot_price() -> uint256:
    """
    @notice Quote per whole base unit, WAD: what a naive protocol would read as "the price".
    """
    return self.quote_reserve * QUOTE_TO_WAD * BASE_UNIT // self.base_reserve


@external
def buy_base(quote_in: uint256) -> uint256:
    """
    @notice Pay `quote_in` quote for base (pushes the spot price up). Returns base out.
    """
    base_out: uint256 = self.base_reserve * quote_in // (self.quote_reserve + quote_in)
    assert extcall QUOTE.transferFrom(msg.sender, self, quote_in, default_return_value=True), "spot: transfer failed"
    self.quote_reserve += quote_in
    self.base_reserve -= base_out
    assert extcall BASE.transfer(msg.sender, base_out, default_return_value=True), "spot: transfer failed"
    log Swap(trader=msg.sender, quote_in=quote_in, base_in=0, quote_out=0, base_out=base_out)
    return base_out


@external
def sell_base(base_in: uint256) -> uint256:
    """
    @notice Pay `base_in` base for quote (pushes the spot price down). Returns quote out.
    """
    quote_out: uint256 = self.quote_reserve * base_in // (self.base_reserve + base_in)
    assert extcall BASE.transferFrom(msg.sender, self, base_in, default_return_value=True), "spot: transfer failed"
    self.base_reserve += base_in
    self.quote_reserve -= quote_out
    assert extcall QUOTE.transfer(msg.sender, quote_out, default_return_value=True), "spot: transfer failed"
    log Swap(trader=msg.sender, quote_in=0, base_in=base_in, quote_out=quote_out, base_out=0)
    return quote_out
