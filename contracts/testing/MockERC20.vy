# pragma version ~=0.4.3
"""
@title MockERC20
@notice A mintable ERC-20 with any number of decimals (6, 8 and 18 occur), built on snekmate.
        Anyone may mint: it exists for tests and simulations only.
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
    erc20.transfer,
    erc20.transferFrom,
    erc20.approve,
    erc20.allowance,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
)


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    ownable.__init__()
    erc20.__init__(name_, symbol_, decimals_, name_, "1")


@external
def mint(owner: address, amount: uint256):
    """
    @notice Mint `amount` to `owner`; open to anyone (test token).
    """
    erc20._mint(owner, amount)
