# pragma version ~=0.4.3
"""
@title PlainERC20
@notice An ERC-20 written the way OpenZeppelin's ERC20 behaves, standing in for a token the
        project did not write (USDC on a real network): fixed supply minted to the deployer, no
        public mint, OpenZeppelin's revert strings, `transfer` and `transferFrom` return true.
        The interop test deploys the protocol against it to prove `deploy_protocol` and
        everything downstream work with a token whose only functions are ERC-20's.
@dev Test-only: not MockERC20 on purpose (no mint, no snekmate).
"""

from ethereum.ercs import IERC20

implements: IERC20

name: public(String[32])  # e.g. "USD Coin"
symbol: public(String[8])  # e.g. "USDC"
decimals: public(uint8)  # 6 for USDC
totalSupply: public(uint256)  # fixed at deployment
balanceOf: public(HashMap[address, uint256])  # holder => units
allowance: public(HashMap[address, HashMap[address, uint256]])  # owner => spender => units


@deploy
def __init__(name_: String[32], symbol_: String[8], decimals_: uint8, supply: uint256):
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_
    self.totalSupply = supply
    self.balanceOf[msg.sender] = supply
    log IERC20.Transfer(sender=empty(address), receiver=msg.sender, value=supply)


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` from the caller to `to`.
    """
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` from `owner` to `to` on an allowance; an infinite allowance is not spent.
    """
    allowed: uint256 = self.allowance[owner][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "ERC20: insufficient allowance"
        self.allowance[owner][msg.sender] = allowed - amount
    self._transfer(owner, to, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Let `spender` move up to `amount` of the caller's tokens.
    """
    assert spender != empty(address), "ERC20: approve to the zero address"
    self.allowance[msg.sender][spender] = amount
    log IERC20.Approval(owner=msg.sender, spender=spender, value=amount)
    return True


def _transfer(owner: address, to: address, amount: uint256):
    assert to != empty(address), "ERC20: transfer to the zero address"
    held: uint256 = self.balanceOf[owner]
    assert held >= amount, "ERC20: transfer amount exceeds balance"
    self.balanceOf[owner] = held - amount
    self.balanceOf[to] += amount
    log IERC20.Transfer(sender=owner, receiver=to, value=amount)
