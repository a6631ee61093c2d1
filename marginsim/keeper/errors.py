"""What a refused call raises, on each chain the keeper runs on."""

from ape.exceptions import TransactionError

from marginsim.chain.revm import Revert
from marginsim.sim.fastchain import FastRevert

# a call or transaction the contracts refused (or that failed as a transaction): on ape (its
# ContractLogicError is a TransactionError), on the simulator's fast path and on revm
REVERTS = (TransactionError, FastRevert, Revert)
