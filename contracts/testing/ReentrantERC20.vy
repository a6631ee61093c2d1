# pragma version ~=0.4.3
"""
@title ReentrantERC20
@notice A hostile collateral token for the Curve/Vyper 2023 reentrancy replay. On every
        `transfer` and `transferFrom` (the moments the Clearinghouse hands it control) it
        replays a list of calls the test set, from its own address, into the protocol: every
        mutating function, and views for read-only reentrancy. Each attempt is caught and
        logged (`Reentry`: success and the exact return or revert data), so one outer call
        shows the fate of every attempt. In strict mode the first failure is re-raised
        instead, so the outer call reverts.
@dev The same list can be replayed outside any call (`replay`) to show what each attempt does
     when no lock is held: the difference is the lock. The contract also holds its own
     protocol accounts (`execute`), so a re-entered withdrawal would have something to take.
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
    ownable.owner,
)


struct Call:
    target: address  # contract re-entered
    data: Bytes[MAX_CALLDATA]  # selector and arguments
    static: bool  # a view: made with STATICCALL (read-only reentrancy)


event Reentry:
    hook: String[16]  # "transfer", "transferFrom" or "replay"
    index: uint256  # position in the call list
    target: address
    success: bool
    returndata: Bytes[MAX_RETURN]  # the return value, or the revert data (empty: a bare revert)


MAX_CALLS: constant(uint256) = 32  # attempts per hook
MAX_CALLDATA: constant(uint256) = 292  # selector + 9 words
MAX_RETURN: constant(uint256) = 320  # ten words: every view and revert reason used here fits

calls: public(DynArray[Call, MAX_CALLS])  # what each hook replays
armed: public(bool)  # hooks replay while set
strict: public(bool)  # re-raise the first failed attempt (the outer call reverts)
_replaying: bool  # a hook is running: a transfer made by a re-entered call does not recurse


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    ownable.__init__()
    erc20.__init__(name_, symbol_, decimals_, name_, "1")


@external
def set_calls(calls_: DynArray[Call, MAX_CALLS], armed_: bool, strict_: bool):
    """
    @notice Set the attempts every hook makes, and arm or disarm the hooks (the deployer only).
    """
    ownable._check_owner()
    self.calls = calls_
    self.armed = armed_
    self.strict = strict_


@external
def execute(target: address, data: Bytes[MAX_CALLDATA]) -> Bytes[MAX_RETURN]:
    """
    @notice Make a call from this contract, reverting with the callee's reason (the deployer
            only): how it opens its own protocol accounts and LP position.
    """
    ownable._check_owner()
    return raw_call(target, data, max_outsize=MAX_RETURN)


@external
def replay():
    """
    @notice Make every attempt now, outside any protocol call: what each does with no lock held.
    """
    ownable._check_owner()
    self._attempt("replay")


@external
def mint(owner: address, amount: uint256):
    """
    @notice Mint `amount` to `owner`; open to anyone (test token).
    """
    erc20._mint(owner, amount)


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transfer, then the attempts (the protocol's state is mid-call here).
    """
    erc20._transfer(msg.sender, to, amount)
    self._hook("transfer")
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transferFrom, then the attempts.
    """
    erc20._spend_allowance(owner, msg.sender, amount)
    erc20._transfer(owner, to, amount)
    self._hook("transferFrom")
    return True


def _hook(name: String[16]):
    if not self.armed or self._replaying:
        return
    self._attempt(name)


def _attempt(name: String[16]):
    self._replaying = True
    for i: uint256 in range(MAX_CALLS):
        if i >= len(self.calls):
            break
        call: Call = self.calls[i]
        success: bool = False
        returndata: Bytes[MAX_RETURN] = b""
        if call.static:
            success, returndata = raw_call(
                call.target, call.data, max_outsize=MAX_RETURN, is_static_call=True, revert_on_failure=False
            )
        else:
            success, returndata = raw_call(call.target, call.data, max_outsize=MAX_RETURN, revert_on_failure=False)
        if not success and self.strict:
            raw_revert(returndata)
        log Reentry(hook=name, index=i, target=call.target, success=success, returndata=returndata)
    self._replaying = False
