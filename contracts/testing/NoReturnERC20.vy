# pragma version ~=0.4.3
"""
@title NoReturnERC20
@notice A mintable ERC-20 whose transfer, transferFrom and approve return nothing, as USDT's
        do on mainnet (it predates the final ERC-20 text). Callers must accept empty return data
        (Vyper's `default_return_value=True`). Tests only: anyone may mint.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: (
    erc20.totalSupply,
    erc20.balanceOf,
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


@external
def transfer(to: address, amount: uint256):
    """
    @notice ERC-20 transfer with no return value; reverts on failure.
    """
    erc20._transfer(msg.sender, to, amount)


@external
def transferFrom(owner: address, to: address, amount: uint256):
    """
    @notice ERC-20 transferFrom with no return value; reverts on failure.
    """
    erc20._spend_allowance(owner, msg.sender, amount)
    erc20._transfer(owner, to, amount)


@external
def approve(spender: address, amount: uint256):
    """
    @notice ERC-20 approve with no return value.
    """
    erc20._approve(msg.sender, spender, amount)
