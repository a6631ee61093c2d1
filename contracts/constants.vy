# pragma version ~=0.4.3
"""
@title constants
@notice Units and limits shared by every contract. WAD fixed point: 1e18 == 1.0.
"""

WAD: constant(uint256) = 10**18  # 1.0 in WAD fixed point
WAD_INT: constant(int256) = 10**18  # 1.0 in WAD fixed point, signed
SECONDS_PER_YEAR: constant(uint256) = 31_536_000  # 365 days; volatility is annualised over it
SECONDS_PER_DAY: constant(uint256) = 86_400  # funding rates are quoted per day
MAX_MARKETS: constant(uint256) = 16  # market ids 0..15; an account's open markets fit a bitmask
MAX_COLLATERALS: constant(uint256) = 8  # collateral slots 0..7 (slot 0 is the settlement token)
MAX_SYNC_ROUNDS: constant(uint256) = 16  # oracle rounds one sync() folds into the volatility estimate
