# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title emergency
@notice The Clearinghouse's emergency controls: a guardian (and the owner) may pause new risk
        everywhere or make one market reduce-only; only the owner lifts either. Pause stops
        opens, increases and non-settlement collateral deposits; closes, settlement deposits,
        withdrawals that keep initial margin and liquidations continue. A module: its storage
        lives in the Clearinghouse, which initializes it and exports its functions.
@dev Both flags ride in each market's packed core word (perps), so a trade reads them with the
     parameters it loads anyway.
"""

from snekmate.auth import ownable

from .interfaces import IClearinghouse

import perps
import vault

uses: ownable
uses: perps

guardian: public(address)  # may pause and set reduce-only; only the owner undoes either
paused: public(bool)  # no new risk while set; closes, withdrawals and liquidations go on


@deploy
def __init__():
    self.guardian = msg.sender


@external
def set_guardian(guardian: address):
    """
    @notice Set the pause guardian.
    @param guardian Who may pause and set reduce-only besides the owner.
    """
    ownable._check_owner()
    self.guardian = guardian
    log IClearinghouse.GuardianSet(guardian=guardian)


@external
def pause():
    """
    @notice Stop new risk: opens, increases and non-settlement deposits. Closes, withdrawals
            that keep initial margin and liquidations continue. Guardian or owner.
    """
    vault._require(msg.sender == self.guardian or msg.sender == ownable.owner, "clearinghouse: not guardian")
    self.paused = True
    perps._set_market_flag(perps.PAUSED, True)
    log IClearinghouse.Paused(by=msg.sender)


@external
def unpause():
    """
    @notice Lift a pause. Owner only.
    """
    ownable._check_owner()
    self.paused = False
    perps._set_market_flag(perps.PAUSED, False)
    log IClearinghouse.Unpaused(by=msg.sender)


@external
def set_reduce_only(market: uint256, reduce_only: bool):
    """
    @notice Allow only reductions in a market (owner or guardian may set it; only the owner
            lifts it).
    @param market The market id.
    @param reduce_only True to allow only reductions (owner or guardian), False to lift it (owner).
    """
    perps._market(market)
    if reduce_only:
        vault._require(msg.sender == self.guardian or msg.sender == ownable.owner, "clearinghouse: not guardian")
    else:
        ownable._check_owner()
    flags: uint256 = perps._packed[market].core >> 224
    if reduce_only:
        flags |= perps.REDUCE_ONLY
    else:
        flags &= ~perps.REDUCE_ONLY
    perps._packed[market].core = (perps._packed[market].core & (2**224 - 1)) | (flags << 224)
    log IClearinghouse.ReduceOnlySet(market=market, reduce_only=reduce_only)


@view
@external
def reduce_only(market: uint256) -> bool:
    """
    @notice Whether only reductions are allowed in `market` (set by the guardian or owner).
    @param market The market id.
    @return True while only reductions are allowed.
    """
    return (perps._packed[market].core >> 224) & perps.REDUCE_ONLY != 0
