# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title LiquidityPool
@notice An ERC-4626 vault of the settlement token that is the counterparty to every trade.
        Its assets are held by the Clearinghouse (so PnL and fees settle there without a token
        transfer). Its value is what it would hold if every trader closed now: its realised
        balance there (deposits - withdrawals + fees + traders' net realised losses - socialised
        bad debt) minus traders' unrealised PnL, funding included, valued at the prices they
        would exit at, i.e. with the skew premium they collect on the way out.
@dev Shares are snekmate's ERC-20. The ERC-4626 logic follows snekmate's erc4626.vy with two
     changes: total assets come from internal accounting (never `balanceOf(self)`, so a direct
     transfer "donation" moves nothing), and the virtual-share offset of `DECIMALS_OFFSET`
     decimals defends against the first-depositor inflation attack on top of that.
     Rounding: deposit/redeem round shares/assets down, mint/withdraw round them up, always in
     the pool's favour; the traders' side of the value rounds up (the pool's value down).
     The open-interest reserve (GMX v2's reserve factor, validated on withdrawals too, here over
     every market at once since they share this one pool): each market's larger side, in USD,
     needs capital of its value over the market's reserve factor, and the needs summed over
     every market must stay within the pool's value (`reserve`). A side counts what placed
     orders hold on it from their commit (`held`). Orders refuses an order that adds risk past
     it at commit; `maxWithdraw` and `maxRedeem` stop at it, and a withdrawal past it reverts
     "pool: open interest reserve", so no LP flow after a commit decides whether it fills.
     After a pump has taken the sides past it (or traders' unrealised profit has taken the
     value below it), LPs wait until it comes back.
     Valuing positions at their exit price matters: at the oracle price, a trader opening a large
     position would lift the share price by the premium it paid and an LP could redeem that
     premium before the trader closed and took it back (one-transaction drain).
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC4626

from snekmate.auth import ownable
from snekmate.tokens import erc20
from snekmate.utils import math

from .interfaces import IClearinghouse
from .interfaces import IOracleRouter

import constants as c
import risk

implements: IERC20
implements: IERC4626

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

DECIMALS_OFFSET: constant(uint256) = 6  # shares have 6 more decimals than the asset
COOLDOWN: constant(uint256) = 900  # seconds after a deposit before the shares it minted can leave (GMX: 15 min)

asset: public(immutable(address))  # the settlement token
CLEARINGHOUSE: public(immutable(IClearinghouse))  # holds the assets and the positions
ORACLE: public(immutable(IOracleRouter))  # prices the positions
SETTLEMENT_TO_WAD: immutable(uint256)  # 10 ** (18 - asset decimals)

_reserve_factors: HashMap[uint256, uint256]  # market => WAD (0: never set, reads 1.0; RESERVE_OFF: off, reads 0)
RESERVE_OFF: constant(uint256) = max_value(uint256)
# market => base units that orders placed and not yet filled or cancelled would add to each side:
# longs | shorts << 128. Orders holds them at commit, releases them when the order ends.
_held: HashMap[uint256, uint256]
MASK_128: constant(uint256) = 2**128 - 1

LOTS: constant(uint256) = 4  # deposits a holder can have in their cooldown at once
MASK_192: constant(uint256) = 2**192 - 1  # a lot's shares

# Shares minted by a deposit are locked for COOLDOWN: they can be neither redeemed nor
# transferred until then, so a just-in-time LP (deposit, let a liquidation or an oracle round move
# the value, redeem) cannot leave within the same 15 minutes, whatever address it tries to move
# them to. Each deposit's shares are a lot with its own unlock time, so a deposit made *to*
# someone never moves the unlock time of shares they already hold (a dust deposit every few
# minutes cannot keep an LP locked in).
_lots: HashMap[address, uint256[LOTS]]  # holder => lots: shares | unlocks_at << 192 (empty or past: free)


struct Lot:
    shares: uint256  # shares minted by one deposit (or several in one block)
    unlocks_at: uint256  # when they become free to redeem or transfer


# Requests (issue 9, item 2). While traders hold positions (or debt, or placed orders) the pool's
# value moves with every oracle round, so an LP who sees a round pending could leave just ahead of
# one that costs the pool, or come in just ahead of one that pays it, at a value the round is
# about to change. By request, the value is recorded at the request, a keeper executes it
# `settlement_delay` (Orders') later or after, and the LP gets the worse of the two values for
# them, so a round they saw coming is always counted against them. The instant paths stay open in
# this version; closing them while traders hold positions is the step that makes requests the
# only way (issue 9, item 2, the LP half).
REQUEST_WINDOW: public(constant(uint256)) = 900  # seconds after executable_at a request may execute; then it lapses


struct Request:
    receiver: address  # who gets the shares (deposit) or the tokens (redemption)
    deposit: bool  # a deposit request (else a redemption)
    executable_at: uint256  # the earliest time a keeper may execute it (0: no request)
    assets: uint256  # deposit: tokens escrowed; redemption: what the shares were worth at the request
    shares: uint256  # deposit: shares the tokens were worth at the request; redemption: shares escrowed
    fee: uint256  # escrowed execution fee, settlement token units: the executing keeper's pay


requests: public(HashMap[address, Request])  # controller (a deposit's payer, a redemption's owner) => its request
open_requests: public(uint256)  # requests placed and neither executed nor lapsed: the instant paths wait for none


interface IOrderParameters:
    def settlement_delay() -> uint256: view
    def execution_fee() -> uint256: view


event RequestPlaced:
    controller: indexed(address)
    receiver: indexed(address)
    deposit: bool
    assets: uint256
    shares: uint256
    executable_at: uint256
    fee: uint256


event RequestExecuted:
    controller: indexed(address)
    receiver: indexed(address)
    deposit: bool
    assets: uint256  # tokens deposited, or paid out
    shares: uint256  # shares minted to the receiver, or burned
    fee: uint256  # paid to the keeper
    keeper: address
    kept: uint256  # shares: the cap's excess, minted (deposit) or moved from the escrow (redemption) to the Clearinghouse, for good


event RequestLapsed:
    controller: indexed(address)
    deposit: bool
    assets: uint256  # tokens returned (deposit)
    shares: uint256  # shares returned (redemption)
    fee: uint256  # returned to the controller
    keeper: address


@deploy
def __init__(clearinghouse: IClearinghouse, name_: String[25], symbol_: String[5]):
    ownable.__init__()
    settlement: address = staticcall clearinghouse.SETTLEMENT()
    decimals: uint8 = staticcall IERC20Decimals(settlement).decimals()
    erc20.__init__(name_, symbol_, decimals + convert(DECIMALS_OFFSET, uint8), name_, "1")
    # shares are minted only by this contract's own deposit logic
    erc20.is_minter[msg.sender] = False
    asset = settlement
    CLEARINGHOUSE = clearinghouse
    ORACLE = IOracleRouter(staticcall clearinghouse.ORACLE())
    SETTLEMENT_TO_WAD = staticcall clearinghouse.SETTLEMENT_TO_WAD()
    assert extcall IERC20(settlement).approve(
        clearinghouse.address, max_value(uint256), default_return_value=True
    ), "pool: approve failed"


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transfer of shares that are out of their cooldown.
    @param to The receiver; shares it receives this way are never locked.
    @param amount Shares (the asset's decimals + 6), at most the caller's shares out of cooldown.
    @return True; every failure reverts ("pool: cooldown" for locked shares).
    @custom:security Shares minted in the last COOLDOWN (900 s) cannot move, so a just-in-time
           LP cannot park them at another address to redeem there.
    """
    assert amount <= self._free_shares(msg.sender), "pool: cooldown"
    erc20._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transferFrom of shares that are out of their cooldown.
    @param owner Whose shares move; the caller spends `amount` of its allowance.
    @param to The receiver; shares it receives this way are never locked.
    @param amount Shares, at most the allowance and `owner`'s shares out of cooldown.
    @return True; every failure reverts ("pool: cooldown" for locked shares).
    """
    erc20._spend_allowance(owner, msg.sender, amount)
    assert amount <= self._free_shares(owner), "pool: cooldown"
    erc20._transfer(owner, to, amount)
    return True


@view
@external
def totalAssets() -> uint256:
    """
    @notice The pool's value in settlement token units: what it would hold if every trader
            closed now at their exit price; 0 if that is negative.
    @dev Funding accrued to now; the traders' side rounds up, so the value rounds down.
    @return Settlement token units, rounded down; 0 when the value is zero or negative.
    @custom:security Reads the oracle price of every market with open interest, so this and every
           conversion, preview, max*, deposit and withdrawal revert while one of those prices
           does (stale, out of bounds, halted). Under the nonreentrancy pragma these views also
           revert when called back during one of the pool's own state-changing calls.
    """
    return self._total_assets()


@view
@external
def convertToShares(assets: uint256) -> uint256:
    """
    @notice Shares `assets` are worth at the current value, rounded down.
    @dev Ignores the insolvency check: with shares out and a value of 0 it quotes far more
         shares than `deposit` would ever mint (deposit reverts "pool: insolvent").
    @param assets Settlement token units.
    @return Shares.
    """
    return self._to_shares(assets, False)


@view
@external
def convertToAssets(shares: uint256) -> uint256:
    """
    @notice Settlement tokens `shares` are worth at the current value, rounded down.
    @param shares Shares.
    @return Settlement token units.
    """
    return self._to_assets(shares, False)


@view
@external
def maxDeposit(receiver: address) -> uint256:
    """
    @notice No deposit limit while deposits are open: max_value(uint256).
    @param receiver Ignored.
    @return max_value(uint256); 0 while a deposit would revert for the pool's state: a listed
            collateral or a market the valuation reads has no valid price, or the pool is
            insolvent (shares out and a value <= 0, or a value below zero).
    """
    return self._max_deposit()


@view
@external
def previewDeposit(assets: uint256) -> uint256:
    """
    @notice Shares `deposit(assets)` would mint now, rounded down.
    @param assets Settlement token units.
    @return Shares.
    """
    return self._to_shares(assets, False)


@external
def deposit(assets: uint256, receiver: address) -> uint256:
    """
    @notice Deposit `assets` settlement tokens, mint shares (rounded down) to `receiver`.
    @dev The tokens go from the caller through the pool to the Clearinghouse in the same call.
    @param assets Settlement token units pulled from the caller (approved to this pool), > 0;
           must mint at least one share.
    @param receiver Who gets the shares, locked for COOLDOWN (900 s).
    @return Shares minted.
    @custom:security Reverts "pool: insolvent" while the value is below zero, or zero with
           shares out: a new deposit would otherwise pay the old LPs' losses, or with no shares
           out the traders' unrealised profit the pool owes. The new shares are locked in a lot
           of their own: shares the receiver already holds keep their unlock time. Reverts
           "pool: too many locked deposits" when someone else deposits to a receiver that
           already has LOTS (4) deposits in their cooldown, and "pool: collateral feed down"
           while a held collateral has no valid price (see `withdraw`).
    """
    self._only_instant()
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    value, total, headroom, priced = self._valuation(False)
    shares: uint256 = self._shares_for(assets, total, False)
    self._deposit(receiver, assets, shares, value)
    return shares


@view
@external
def maxMint(receiver: address) -> uint256:
    """
    @notice No mint limit while deposits are open: max_value(uint256).
    @param receiver Ignored.
    @return As `maxDeposit`: max_value(uint256), or 0 while a mint would revert for the pool's state.
    """
    return self._max_deposit()


@view
@external
def previewMint(shares: uint256) -> uint256:
    """
    @notice Settlement tokens `mint(shares)` would cost now, rounded up.
    @param shares Shares.
    @return Settlement token units.
    """
    return self._to_assets(shares, True)


@external
def mint(shares: uint256, receiver: address) -> uint256:
    """
    @notice Mint exactly `shares` to `receiver` for the assets they cost (rounded up).
    @param shares Shares to mint, > 0.
    @param receiver Who gets the shares, locked for COOLDOWN (900 s).
    @return Settlement token units pulled from the caller (approved to this pool).
    @custom:security As `deposit`: reverts "pool: insolvent" while the value is below zero, or
           zero with shares out; the new shares are locked in a lot of their own, as for `deposit`.
    """
    self._only_instant()
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    value, total, headroom, priced = self._valuation(False)
    assets: uint256 = self._assets_for(shares, total, True)
    self._deposit(receiver, assets, shares, value)
    return assets


@view
@external
def maxWithdraw(owner: address) -> uint256:
    """
    @notice The owner's shares out of cooldown, in assets; never more than the pool can pay now.
    @param owner The share holder.
    @return Settlement token units, rounded down; capped at the pool's realised balance less
            every account's debt (what the Clearinghouse will pay out) and at what keeps every
            market within its open-interest reserve; 0 while a listed collateral or a
            market the valuation reads has no valid price (exits fail closed, see `withdraw`).
    """
    if not self._quiet():
        return 0
    return self._exit_limit(owner)[0]


@view
@external
def withdrawable(owner: address) -> uint256:
    """
    @notice `maxWithdraw` whether or not the book is idle: what a redemption of the owner's free
            shares could be paid now (a request's execution pays at most this, at its own time).
    @param owner The share holder.
    @return Settlement token units, rounded down; 0 without a valid price.
    """
    return self._exit_limit(owner)[0]


@view
@external
def previewWithdraw(assets: uint256) -> uint256:
    """
    @notice Shares `withdraw(assets)` would burn now, rounded up.
    @dev Ignores the cooldown and the pool's liquidity; see `maxWithdraw`.
    @param assets Settlement token units.
    @return Shares.
    """
    return self._to_shares(assets, True)


@external
def withdraw(assets: uint256, receiver: address, owner: address) -> uint256:
    """
    @notice Burn the shares (rounded up) worth `assets` from `owner`, pay `receiver`.
    @param assets Settlement token units, > 0 and at most `maxWithdraw(owner)`.
    @param receiver Who gets the tokens, paid directly by the Clearinghouse.
    @param owner Whose shares burn; a caller other than `owner` spends its allowance.
    @return Shares burned.
    @custom:security Reverts "pool: cooldown" for shares still locked, "pool: open interest
           reserve" past what keeps every market within its reserve, and "clearinghouse: pool
           liquidity" beyond the pool's realised balance less every account's debt: LPs never
           take the tokens that back traders' positive balances or the insurance fund. Reverts
           "pool: collateral feed down" while a listed collateral has no valid price.
    """
    self._only_instant()
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    value, total, headroom, priced = self._valuation(False)
    shares: uint256 = self._shares_for(assets, total, True)
    self._withdraw(receiver, owner, assets, shares, headroom)
    return shares


@view
@external
def maxRedeem(owner: address) -> uint256:
    """
    @notice The owner's shares out of cooldown; never more than the pool can pay out now.
    @param owner The share holder.
    @return Shares, rounded down; 0 while a listed collateral or a market the valuation reads
            has no valid price.
    """
    if not self._quiet():
        return 0
    return self._exit_limit(owner)[1]


@view
@external
def redeemable(owner: address) -> uint256:
    """
    @notice `maxRedeem` whether or not the book is idle: the owner's free shares the pool could
            pay out now.
    @param owner The share holder.
    @return Shares, rounded down; 0 without a valid price.
    """
    return self._exit_limit(owner)[1]


@view
@external
def previewRedeem(shares: uint256) -> uint256:
    """
    @notice Settlement tokens `redeem(shares)` would pay now, rounded down.
    @dev Ignores the cooldown and the pool's liquidity; see `maxRedeem`.
    @param shares Shares.
    @return Settlement token units.
    """
    return self._to_assets(shares, False)


@external
def redeem(shares: uint256, receiver: address, owner: address) -> uint256:
    """
    @notice Burn `shares` from `owner`, pay `receiver` their assets (rounded down).
    @param shares Shares, > 0 and at most `maxRedeem(owner)`; must be worth at least one token unit.
    @param receiver Who gets the tokens, paid directly by the Clearinghouse.
    @param owner Whose shares burn; a caller other than `owner` spends its allowance.
    @return Settlement token units paid.
    @custom:security Reverts "pool: cooldown" for shares still locked, "pool: open interest
           reserve" past what keeps every market within its reserve, and "clearinghouse: pool
           liquidity" beyond the pool's realised balance less every account's debt, and
           "pool: collateral feed down" while a listed collateral has no valid price.
    """
    self._only_instant()
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    value, total, headroom, priced = self._valuation(False)
    assets: uint256 = self._assets_for(shares, total, False)
    self._withdraw(receiver, owner, assets, shares, headroom)
    return assets


@external
def request_deposit(assets: uint256, receiver: address):
    """
    @notice Ask to deposit `assets` settlement tokens for shares to `receiver`; a keeper
            executes it from `settlement_delay` (Orders') seconds on, for `execution_fee`
            (Orders').
    @dev Escrows `assets + execution_fee` from the caller in this pool; irrevocable. Records the
         shares `assets` are worth now, rounded down; the execution mints the smaller of those
         and what they are worth then.
    @param assets Settlement token units, > 0; must be worth at least one share now.
    @param receiver Who gets the shares, locked for COOLDOWN (900 s) from the execution.
    @custom:security One request per controller (here the caller): "pool: request pending"
           otherwise. The checks of `deposit` ("pool: collateral feed down", "pool: zero
           amount", "pool: insolvent") apply now and again at the execution.
    """
    assert self.requests[msg.sender].executable_at == 0, "pool: request pending"
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    value, total, headroom, priced = self._valuation(False)
    shares: uint256 = self._shares_for(assets, total, False)
    self._admit(assets, shares, value)
    self._place(msg.sender, receiver, True, assets, shares)


@external
def request_redeem(shares: uint256, receiver: address, owner: address):
    """
    @notice Ask to redeem the caller's `shares` for settlement tokens to `receiver`; a keeper
            executes it from `settlement_delay` (Orders') seconds on, for `execution_fee`
            (Orders', paid by the caller).
    @dev Escrows the shares (in this pool) and the fee; irrevocable. Records what the shares are
         worth now, rounded down; the execution pays the smaller of that and what they are worth then.
    @param shares Shares, > 0, out of their cooldown.
    @param receiver Who gets the tokens, paid by the Clearinghouse at the execution.
    @param owner Whose shares: the caller only (an ERC-7540 operator is not supported; a zap
           takes the shares with `transferFrom` first and asks as their owner). The controller.
    @custom:security "pool: not owner" for any other caller: a spender's request would take the
           owner's one request slot, and a lapse would refund its fee to the owner (review L1,
           L2). One request per controller: "pool: request pending" otherwise. Reverts as
           `redeem` does for the owner's side, in its order ("pool: collateral feed down", "pool:
           zero amount" for shares worth no token unit now, "pool: cooldown", "pool:
           insufficient shares"); the pool's liquidity and reserve are checked at the execution.
    """
    assert msg.sender == owner, "pool: not owner"
    assert self.requests[owner].executable_at == 0, "pool: request pending"
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    value, total, headroom, priced = self._valuation(False)
    assets: uint256 = self._assets_for(shares, total, False)
    self._release(owner, assets, shares)
    erc20._transfer(owner, self, shares)
    self._place(owner, receiver, False, assets, shares)


@external
def execute_request(controller: address):
    """
    @notice Anyone: execute `controller`'s request in [executable_at, executable_at +
            REQUEST_WINDOW] and take its escrowed fee. A deposit mints min(shares at the
            request, shares the tokens are worth now); a redemption pays min(assets at the
            request, assets the shares are worth now), both rounded down.
    @dev Any round between the request and the execution is counted against the LP: a value that
         rose is capped at the request's, one that fell is taken as it is now. The cap's excess
         stays in the pool as shares nobody can redeem (`kept`, held by the Clearinghouse, which
         never moves them): a deposit mints the shares its tokens are worth now, those beyond the
         request's to the Clearinghouse; a redemption burns the shares its pay is worth now
         (rounded up) and moves the rest of the escrow there. So the share price is unchanged by
         the execution and no LP holding shares then, one who came in after the request
         included, takes the excess (review M1).
    @param controller The request's controller (a deposit's payer, a redemption's owner).
    @custom:security "pool: no request", "pool: request not due" before executable_at, "pool:
           request lapsed" after the window. A deposit rechecks `deposit`'s conditions and the
           receiver's lots ("pool: too many locked deposits" when someone else pays); a
           redemption "pool: collateral feed down", "pool: zero amount" (worth no unit now),
           "pool: open interest reserve" and "clearinghouse: pool liquidity" (on the pay). A
           request that cannot execute waits, then lapses.
    """
    request: Request = self.requests[controller]
    assert request.executable_at != 0, "pool: no request"
    assert block.timestamp >= request.executable_at, "pool: request not due"
    assert block.timestamp <= request.executable_at + REQUEST_WINDOW, "pool: request lapsed"
    self.requests[controller] = empty(Request)
    self.open_requests -= 1
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    value, total, headroom, priced = self._valuation(False)
    assets: uint256 = request.assets
    shares: uint256 = request.shares
    # the cap's excess (the shares a deposit's tokens are worth now beyond those it is minted, the
    # escrowed shares beyond those its pay is worth now) stays in the pool for good as shares the
    # Clearinghouse holds and never moves: the share price is what it was, so no LP who holds
    # shares at the execution (one who came in after the request included) takes it (review M1),
    # nobody is paid by an executor's choice of moment, and no liquidity is needed for it
    excess: uint256 = 0
    if request.deposit:
        worth: uint256 = self._shares_for(assets, total, False)
        excess = worth - min(shares, worth)
        shares = worth - excess
        self._admit(assets, shares, value)
        self._lock(request.receiver, shares, controller)
        self._issue(request.receiver, assets, shares)
        if excess > 0:
            erc20._mint(CLEARINGHOUSE.address, excess)
    else:
        worth: uint256 = self._assets_for(shares, total, False)
        if assets < worth:
            excess = shares - self._shares_for(assets, total, True)
        assets = min(assets, worth)
        assert self._collateral_priced(), "pool: collateral feed down"
        assert assets > 0, "pool: zero amount"
        if excess > 0:
            erc20._transfer(self, CLEARINGHOUSE.address, excess)
        shares -= excess
        self._pay_out(request.receiver, controller, self, assets, shares, headroom)
    self._push(msg.sender, request.fee)
    log RequestExecuted(
        controller=controller,
        receiver=request.receiver,
        deposit=request.deposit,
        assets=assets,
        shares=shares,
        fee=request.fee,
        keeper=msg.sender,
        kept=excess,
    )


@external
def lapse_request(controller: address):
    """
    @notice Anyone, once `controller`'s request's window has passed unexecuted: give its escrow
            and its fee back to the controller (the tokens of a deposit to its payer, the shares
            of a redemption to its owner).
    @dev The fee goes back, not to the caller: a keeper paid for a lapse would earn the fee for
         less gas by letting a request lapse than by executing it.
    @param controller The request's controller.
    @custom:security "pool: no request", "pool: request live" until executable_at + REQUEST_WINDOW has passed.
    """
    request: Request = self.requests[controller]
    assert request.executable_at != 0, "pool: no request"
    assert block.timestamp > request.executable_at + REQUEST_WINDOW, "pool: request live"
    self.requests[controller] = empty(Request)
    self.open_requests -= 1
    if request.deposit:
        self._push(controller, request.assets + request.fee)
        log RequestLapsed(
            controller=controller, deposit=True, assets=request.assets, shares=0, fee=request.fee, keeper=msg.sender
        )
    else:
        erc20._transfer(self, controller, request.shares)
        self._push(controller, request.fee)
        log RequestLapsed(
            controller=controller, deposit=False, assets=0, shares=request.shares, fee=request.fee, keeper=msg.sender
        )


@external
def apply_reserve_factor(market: uint256, reserve_factor: uint256):
    """
    @notice Configurator only (which checks the bounds): set a market's open-interest reserve
            factor.
    @param market Market id.
    @param reserve_factor WAD, in [0, 100]: the market's larger side needs capital of its USD
           value over this factor; 0 turns the reserve off for the market (it needs none).
    """
    assert msg.sender == staticcall CLEARINGHOUSE.configurator(), "pool: not configurator"
    self._reserve_factors[market] = reserve_factor if reserve_factor != 0 else RESERVE_OFF


@external
def apply_hold(market: uint256, longs: uint256, shorts: uint256, add: bool):
    """
    @notice Orders only: hold (`add`) or release open interest an order would add to each side
            of `market` when it fills, so the reserve counts it from the order's commit: an LP
            withdrawal cannot take the capital a placed order was checked against.
    @param market Market id.
    @param longs Base units the order adds to the long side.
    @param shorts Base units the order adds to the short side.
    @param add True at commit, False when the order is filled or cancelled.
    """
    assert msg.sender == staticcall CLEARINGHOUSE.orders(), "pool: not orders"
    held: uint256 = self._held[market]
    if add:
        held = convert(convert((held & MASK_128) + longs, uint128), uint256) | (
            convert(convert((held >> 128) + shorts, uint128), uint256) << 128
        )
    else:
        held = ((held & MASK_128) - longs) | (((held >> 128) - shorts) << 128)
    self._held[market] = held


@view
@external
def held(market: uint256) -> (uint256, uint256):
    """
    @notice Open interest that placed orders would add to `market`'s sides when they fill,
            counted by the reserve from their commit.
    @param market Market id.
    @return (longs, shorts), base units.
    """
    held: uint256 = self._held[market]
    return held & MASK_128, held >> 128


@view
@external
def reserve_factor(market: uint256) -> uint256:
    """
    @notice A market's open-interest reserve factor, WAD; 1.0 until the Configurator sets one,
            0 when it turned the reserve off for the market.
    @param market Market id.
    @return WAD.
    """
    return self._reserve_factor(market)


@view
@external
def reserve(market: uint256, larger_side: uint256) -> (int256, uint256):
    """
    @notice The open-interest reserve: the pool's value and the capital the markets' open
            interest needs, both WAD USD. Either may be read as if `market`'s larger side were
            `larger_side` base units (Orders asks this for the side a fill leaves); market 0
            reads them as they are. New risk and withdrawals keep need <= value.
    @param market A market id whose larger side is replaced, or 0 for none.
    @param larger_side Base units.
    @return (value, need): value as `totalAssets` counts it before flooring (signed: it may be
            below zero); need = sum over markets of ceil(ceil(side * price / WAD) * WAD / factor).
    """
    value: int256 = 0
    need: uint256 = 0
    priced: bool = False
    value, need, priced = self._book(market, larger_side, False)
    return value, need


@view
@external
def instant() -> bool:
    """
    @notice Whether `deposit`, `mint`, `withdraw` and `redeem` work now: no market has open
            interest, an entry cost or placed orders, so no price moves the pool's value and no
            oracle round can be traded ahead of, and no LP request is pending. Otherwise LPs
            come and go by request (`request_deposit`, `request_redeem`) and the max* views read 0.
    @return True while the book is idle.
    """
    return self._quiet()


@view
@external
def locked_shares(holder: address) -> uint256:
    """
    @notice Shares of `holder` still in their cooldown (summed over its lots).
    @param holder The share holder.
    @return Shares that can be neither redeemed nor transferred yet.
    """
    return self._locked(holder)


@view
@external
def unlocks_at(holder: address) -> uint256:
    """
    @notice When the last of `holder`'s locked shares become free; 0 when none are locked.
    @param holder The share holder.
    @return A timestamp, seconds.
    """
    latest: uint256 = 0
    for lot: uint256 in self._lots[holder]:
        if lot >> 192 > block.timestamp:
            latest = max(latest, lot >> 192)
    return latest


@view
@external
def locked_lots(holder: address) -> DynArray[Lot, LOTS]:
    """
    @notice `holder`'s deposits still in their cooldown, each with its own unlock time.
    @param holder The share holder.
    @return The lots in storage order (at most LOTS).
    """
    lots: DynArray[Lot, LOTS] = []
    for lot: uint256 in self._lots[holder]:
        if lot >> 192 > block.timestamp:
            lots.append(Lot(shares=lot & MASK_192, unlocks_at=lot >> 192))
    return lots


interface IERC20Decimals:
    def decimals() -> uint8: view


@view
def _free_shares(holder: address) -> uint256:
    balance: uint256 = erc20.balanceOf[holder]
    return balance - min(self._locked(holder), balance)


@view
def _locked(holder: address) -> uint256:
    locked: uint256 = 0
    for lot: uint256 in self._lots[holder]:
        if lot >> 192 > block.timestamp:
            locked += lot & MASK_192
    return locked


def _lock(receiver: address, shares: uint256, depositor: address):
    """
    @dev Lock `shares` until now + COOLDOWN in a lot of their own: shares minted in the same block
         join that block's lot, otherwise the first free lot (empty or past its unlock time)
         takes them. With all LOTS in their cooldown, the holder's own deposit joins its latest
         lot (restarting that lot's cooldown: the holder's choice), and a deposit paid by anyone
         else (`depositor`) is refused, so no third party can extend a lock.
    """
    until: uint256 = block.timestamp + COOLDOWN
    lots: uint256[LOTS] = self._lots[receiver]
    free: uint256 = LOTS
    latest: uint256 = 0  # the live lot that unlocks last (the first such in storage order)
    latest_at: uint256 = 0
    for i: uint256 in range(LOTS):
        t: uint256 = lots[i] >> 192
        if t == until:
            self._lots[receiver][i] = lots[i] + shares
            return
        if t <= block.timestamp:
            if free == LOTS:
                free = i
        elif t > latest_at:
            latest = i
            latest_at = t
    amount: uint256 = shares
    if free == LOTS:
        assert depositor == receiver, "pool: too many locked deposits"
        free = latest
        amount += lots[latest] & MASK_192
    self._lots[receiver][free] = amount | (until << 192)


@view
def _liquidity() -> uint256:
    """
    @dev The pool's realised balance less every account's debt (losses realised into negative
         balances are backed by collateral, not tokens) less the pending claims it owes first:
         what the Clearinghouse will pay out.
    """
    liquid: int256 = staticcall CLEARINGHOUSE.pool_balance() - convert(
        staticcall CLEARINGHOUSE.total_debt() + staticcall CLEARINGHOUSE.total_pending(), int256
    )
    return convert(max(liquid, 0), uint256)


@view
def _collateral_priced() -> bool:
    """
    @dev Whether every listed collateral that still counts (weight > 0) and that some account
         holds (total > 0) has a valid price now.
         LPs leave at a value that counts traders' unrealised losses in full; an account backed
         by a collateral without a price cannot be liquidated, so the bad debt it may hide is
         not in that value yet, and an LP who left meanwhile would leave it to the others
         (review_v2_solvency F4 b). So LP exits and deposits fail closed, as they already do on
         a market's feed, until the feed is back or governance writes the token off (weight 0:
         not read): an exit would leave that bad debt to the others, a deposit would buy into
         it at a value that does not show it (review v3 L2).
         The router's `price` is called without reverting, so `maxWithdraw` can return 0.
    """
    for slot: uint256 in range(1, c.MAX_COLLATERALS):
        if slot > staticcall CLEARINGHOUSE.collateral_count():
            break
        col: IClearinghouse.Collateral = staticcall CLEARINGHOUSE.collaterals(slot)
        if col.weight == 0 or col.total == 0:
            continue  # written off, or held by nobody: no account hides anything behind it
        if not self._try_price(col.token)[0]:
            return False
    return True


@view
def _exit_limit(owner: address) -> (uint256, uint256):
    """
    @dev (maxWithdraw, maxRedeem): the owner's free shares, capped at the pool's liquidity and the
         reserve's headroom, in assets and in shares; (0, 0) while a
         listed collateral or a market the valuation reads has no valid price.
    """
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    if not self._collateral_priced():
        return 0, 0
    value, total, headroom, priced = self._valuation(True)
    if not priced:
        return 0, 0
    cap: uint256 = min(self._liquidity(), headroom)
    free: uint256 = self._free_shares(owner)
    return min(self._assets_for(free, total, False), cap), min(free, self._shares_for(cap, total, False))


@view
def _max_deposit() -> uint256:
    """
    @dev max_value(uint256) unless `_deposit` would refuse any amount for the pool's state (the
         collateral check, a valuation without a price, "pool: insolvent"): then 0, as ERC-4626
         asks of a deposit disabled even for a while (review v4, C6).
    """
    if not self._quiet() or not self._collateral_priced():
        return 0
    value: int256 = 0
    total: uint256 = 0
    headroom: uint256 = 0
    priced: bool = False
    value, total, headroom, priced = self._valuation(True)
    if not priced or not self._solvent(value):
        return 0
    return max_value(uint256)


@view
def _quiet() -> bool:
    """
    @dev Whether the pool's value depends on no price: no listed market with open interest, an
         entry cost or placed orders holding a side (`held`). Debts count at their face with the
         interest accrued to the second, which no oracle round moves. And no request pending
         (review of the gate, F1: before a capped request's excess was kept apart, an instant
         deposit just before its execution shared in it at no risk; kept so that instant flows
         and requests never interleave).
    """
    if self.open_requests != 0:
        return False
    for m: uint256 in range(1, c.MAX_MARKETS):
        if m > staticcall CLEARINGHOUSE.market_count():
            break
        st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(m)
        if st.long_oi != 0 or st.short_oi != 0 or st.total_cost != 0 or self._held[m] != 0:
            return False
    return True


@view
def _only_instant():
    """
    @dev The instant paths (`deposit`, `mint`, `withdraw`, `redeem`) only while the book is idle
         (`_quiet`), checked first: otherwise an LP who sees an oracle round pending could buy in
         before a rise or leave before a fall at the value before it (issue 9, the known round).
    """
    assert self._quiet(), "pool: book open, request instead"


@view
def _solvent(pool_value: int256) -> bool:
    """
    @dev Whether a deposit may buy in at `pool_value` (WAD): above zero, or zero with no shares out.
    """
    return pool_value > 0 or (pool_value == 0 and erc20.totalSupply == 0)


@view
def _try_price(token: address) -> (bool, uint256):
    """
    @dev The router's `price(token)` without reverting: (False, 0) when it reverts.
    """
    ok: bool = False
    response: Bytes[32] = b""
    ok, response = raw_call(
        ORACLE.address,
        abi_encode(token, method_id=method_id("price(address)")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not ok:
        return False, 0
    return True, convert(response, uint256)


@view
def _reserve_factor(market: uint256) -> uint256:
    factor: uint256 = self._reserve_factors[market]
    if factor == 0:
        return c.WAD
    if factor == RESERVE_OFF:
        return 0
    return factor


@view
def _valuation(soft: bool) -> (int256, uint256, uint256, bool):
    """
    @dev One pass over the markets (`_book`) for a deposit, a withdrawal or their limits: the
         signed value, WAD; total assets, floor(value / SETTLEMENT_TO_WAD) and 0 when the value
         is not above zero; and the reserve's headroom, the settlement token units the value
         can fall by with the need still covered: floor((value - need) / SETTLEMENT_TO_WAD), 0
         when the need is not below the value. `soft` (the max* views): a market without a
         price stops the pass and returns priced = False instead of reverting.
    """
    value: int256 = 0
    need: uint256 = 0
    priced: bool = False
    value, need, priced = self._book(0, 0, soft)
    total: uint256 = 0
    if value > 0:
        total = convert(value, uint256) // SETTLEMENT_TO_WAD
    room: int256 = value - convert(need, int256)
    headroom: uint256 = 0
    if room > 0:
        headroom = convert(room, uint256) // SETTLEMENT_TO_WAD
    return value, total, headroom, priced


@view
def _total_assets() -> uint256:
    value: int256 = self._signed_value()
    if value <= 0:
        return 0
    return convert(value, uint256) // SETTLEMENT_TO_WAD


@view
def _signed_value() -> int256:
    return self._book(0, 0, False)[0]


@view
def _book(market: uint256, larger_side: uint256, soft: bool) -> (int256, uint256, bool):
    """
    @dev The pool's value and the open-interest reserve's need, WAD USD, in one pass over the
         markets (each one's state, parameters and price read once).
         Value: per market, traders' exit PnL = net * (P - F) - total_cost + P * net^2 / 2S:
         the last term is the premium the net skew collects when it closes (its average fill is
         P * (1 + net / 2S)). Rounded up, so the pool's value rounds down.
         Need: for each market with open interest, its larger side's value ceil(side * P / WAD)
         over its reserve factor, rounded up; summed. A side counts the open interest placed
         orders hold on it (`held`). `market`'s larger side reads as `larger_side` (0: none
         replaced). A price that reverts reverts the pass, or with `soft` ends it with
         priced = False.
    """
    # pending claims are realised profit the pool owes: a liability ahead of the LPs. Interest
    # the debts owe counts as it accrues, before it is charged (at a debtor's next write):
    # every debt with its interest, rounded down, less the debts as written
    accrued: uint256 = staticcall CLEARINGHOUSE.total_scaled_debt() * staticcall CLEARINGHOUSE.debt_index() // 10**36
    value: int256 = (
        staticcall CLEARINGHOUSE.pool_balance()
        - convert(staticcall CLEARINGHOUSE.total_pending(), int256)
        + convert(max(accrued, staticcall CLEARINGHOUSE.total_debt()) - staticcall CLEARINGHOUSE.total_debt(), int256)
    ) * convert(SETTLEMENT_TO_WAD, int256)
    need: uint256 = 0
    for m: uint256 in range(1, c.MAX_MARKETS):
        if m > staticcall CLEARINGHOUSE.market_count():
            break
        st: IClearinghouse.MarketState = staticcall CLEARINGHOUSE.market_state(m)
        held: uint256 = self._held[m]
        side: uint256 = max(st.long_oi + (held & MASK_128), st.short_oi + (held >> 128))
        if m == market:
            side = larger_side
        idle: bool = st.long_oi == 0 and st.short_oi == 0 and st.total_cost == 0
        factor: uint256 = self._reserve_factor(m)
        if idle and (side == 0 or factor == 0):
            continue  # nothing to value and nothing needed: its price is not read
        params: IClearinghouse.MarketParams = staticcall CLEARINGHOUSE.markets(m)
        price: uint256 = 0
        if soft:
            ok: bool = False
            ok, price = self._try_price(params.asset)
            if not ok:
                return value, need, False
        else:
            price = staticcall ORACLE.price(params.asset)
        if side != 0 and factor != 0:
            need += risk._ceil_div(risk._mul_up(side, price) * c.WAD, factor)
        if idle:
            continue
        index: int256 = risk._funding_index_now(st, params.max_funding_rate, params.skew_scale, price)
        net: int256 = convert(st.long_oi, int256) - convert(st.short_oi, int256)
        abs_net: uint256 = convert(abs(net), uint256)
        exit_premium: uint256 = risk._ceil_div(risk._mul_up(abs_net, price) * abs_net, 2 * params.skew_scale)
        traders: int256 = risk._signed_mul_ceil(net, convert(price, int256) - index) - st.total_cost
        value -= traders + convert(exit_premium, int256)
    return value, need, True


@view
def _to_shares(assets: uint256, roundup: bool) -> uint256:
    return self._shares_for(assets, self._total_assets(), roundup)


@view
def _to_assets(shares: uint256, roundup: bool) -> uint256:
    return self._assets_for(shares, self._total_assets(), roundup)


@view
def _shares_for(assets: uint256, total_assets: uint256, roundup: bool) -> uint256:
    return math._mul_div(assets, erc20.totalSupply + 10**DECIMALS_OFFSET, total_assets + 1, roundup)


@view
def _assets_for(shares: uint256, total_assets: uint256, roundup: bool) -> uint256:
    return math._mul_div(shares, total_assets + 1, erc20.totalSupply + 10**DECIMALS_OFFSET, roundup)


def _deposit(receiver: address, assets: uint256, shares: uint256, pool_value: int256):
    self._admit(assets, shares, pool_value)
    self._lock(receiver, shares, msg.sender)
    assert extcall IERC20(asset).transferFrom(msg.sender, self, assets, default_return_value=True), "pool: transfer failed"
    self._issue(receiver, assets, shares)


def _admit(assets: uint256, shares: uint256, pool_value: int256):
    """
    @dev The checks a deposit passes, direct or requested (at the request and at its execution).
    """
    assert self._collateral_priced(), "pool: collateral feed down"
    assert assets > 0 and shares > 0, "pool: zero amount"
    # an insolvent pool (value <= 0 with shares out) would hand a new LP's deposit to the old ones,
    # and one below zero with none out to the traders it owes (found by the long fuzz profile)
    assert self._solvent(pool_value), "pool: insolvent"


def _issue(receiver: address, assets: uint256, shares: uint256):
    """
    @dev Move `assets` the pool holds to the Clearinghouse and mint `shares` to `receiver`.
    """
    extcall CLEARINGHOUSE.pool_deposit(assets)
    erc20._mint(receiver, shares)
    log IERC4626.Deposit(sender=msg.sender, owner=receiver, assets=assets, shares=shares)


def _withdraw(receiver: address, owner: address, assets: uint256, shares: uint256, headroom: uint256):
    self._release(owner, assets, shares)
    self._pay_out(receiver, owner, owner, assets, shares, headroom)


def _release(owner: address, assets: uint256, shares: uint256):
    """
    @dev The owner's side of a redemption, direct or requested: a priced book, a non-zero
         amount, shares free (out of their cooldown) that the caller may spend.
    """
    assert self._collateral_priced(), "pool: collateral feed down"
    assert assets > 0 and shares > 0, "pool: zero amount"
    assert shares <= self._free_shares(owner) or shares > erc20.balanceOf[owner], "pool: cooldown"
    if msg.sender != owner:
        erc20._spend_allowance(owner, msg.sender, shares)
    assert erc20.balanceOf[owner] >= shares, "pool: insufficient shares"


def _pay_out(receiver: address, owner: address, holder: address, assets: uint256, shares: uint256, headroom: uint256):
    """
    @dev Burn `shares` from `holder` (the owner, or this pool for an escrow) and have the
         Clearinghouse pay `assets` to `receiver`, within the reserve's headroom.
    """
    assert assets <= headroom, "pool: open interest reserve"
    erc20._burn(holder, shares)
    extcall CLEARINGHOUSE.pool_withdraw(assets, receiver)
    log IERC4626.Withdraw(sender=msg.sender, receiver=receiver, owner=owner, assets=assets, shares=shares)


def _pull(amount: uint256):
    """
    @dev Take `amount` settlement tokens from the caller into this pool (escrow), exactly.
    """
    if amount == 0:
        return
    before: uint256 = staticcall IERC20(asset).balanceOf(self)
    assert extcall IERC20(asset).transferFrom(msg.sender, self, amount, default_return_value=True), "pool: transfer failed"
    assert staticcall IERC20(asset).balanceOf(self) == before + amount, "pool: fee on transfer"


def _push(receiver: address, amount: uint256):
    if amount > 0:
        assert extcall IERC20(asset).transfer(receiver, amount, default_return_value=True), "pool: transfer failed"


def _place(controller: address, receiver: address, deposit: bool, assets: uint256, shares: uint256):
    """
    @dev Record `controller`'s request and escrow its fee (and a deposit's tokens) from the caller.
    """
    orders: IOrderParameters = IOrderParameters(staticcall CLEARINGHOUSE.orders())
    fee: uint256 = staticcall orders.execution_fee()
    executable_at: uint256 = block.timestamp + staticcall orders.settlement_delay()
    self._pull(fee + (assets if deposit else 0))
    self.requests[controller] = Request(
        receiver=receiver, deposit=deposit, executable_at=executable_at, assets=assets, shares=shares, fee=fee
    )
    self.open_requests += 1
    log RequestPlaced(
        controller=controller,
        receiver=receiver,
        deposit=deposit,
        assets=assets,
        shares=shares,
        executable_at=executable_at,
        fee=fee,
    )
