# pragma version ~=0.4.3
"""
@title FalseReturnERC20
@notice A mintable ERC-20 that, once told to refuse, answers transfer and transferFrom with
        `false` and moves nothing instead of reverting (ZRX, BAT and other early tokens fail this
        way). A caller that ignores the return value credits tokens it never received.
        Tests only: anyone may mint.
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

refusing: public(bool)  # transfers return false and move nothing while set


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    ownable.__init__()
    erc20.__init__(name_, symbol_, decimals_, name_, "1")


@external
def set_refusing(refusing_: bool):
    """
    @notice Start or stop refusing transfers (the deployer only).
    """
    ownable._check_owner()
    self.refusing = refusing_


@external
def mint(owner: address, amount: uint256):
    """
    @notice Mint `amount` to `owner`; open to anyone (test token).
    """
    erc20._mint(owner, amount)


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transfer; returns false and moves nothing while refusing.
    """
    if self.refusing:
        return False
    erc20._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transferFrom; returns false and moves nothing while refusing.
    """
    if self.refusing:
        return False
    erc20._spend_allowance(owner, msg.sender, amount)
    erc20._transfer(owner, to, amount)
    return True
