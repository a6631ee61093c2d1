# pragma version ~=0.4.3
"""
@title FeeOnTransferERC20
@notice A mintable ERC-20 that burns a fee out of every transfer, so the receiver gets less than
        `amount` (STA, PAXG, and USDT's dormant fee switch). The fee can be switched on after
        deposits exist, as USDT's could be. Tests only: anyone may mint.
@dev fee = amount * fee_bps // 10_000, rounded down, so small amounts pass whole.
"""

from ethereum.ercs import IERC20

implements: IERC20

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: (
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.approve,
    erc20.allowance,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
)

MAX_BPS: constant(uint256) = 10_000  # 100% in basis points

fee_bps: public(uint256)  # share of every transfer burnt, in basis points


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8, fee_bps_: uint256):
    ownable.__init__()
    erc20.__init__(name_, symbol_, decimals_, name_, "1")
    self._set_fee(fee_bps_)


@external
def set_fee(fee_bps_: uint256):
    """
    @notice Switch the fee on, off or to another rate (the deployer only).
    """
    ownable._check_owner()
    self._set_fee(fee_bps_)


@external
def mint(owner: address, amount: uint256):
    """
    @notice Mint `amount` to `owner`; open to anyone (test token).
    """
    erc20._mint(owner, amount)


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` out of the caller's balance; `to` receives it less the fee.
    """
    self._transfer_less_fee(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` out of `owner`'s balance (allowance spent in full); `to` receives it
            less the fee.
    """
    erc20._spend_allowance(owner, msg.sender, amount)
    self._transfer_less_fee(owner, to, amount)
    return True


def _transfer_less_fee(owner: address, to: address, amount: uint256):
    fee: uint256 = amount * self.fee_bps // MAX_BPS
    erc20._transfer(owner, to, amount - fee)
    if fee > 0:
        erc20._burn(owner, fee)


def _set_fee(fee_bps_: uint256):
    assert fee_bps_ <= MAX_BPS, "token: bad fee"
    self.fee_bps = fee_bps_
