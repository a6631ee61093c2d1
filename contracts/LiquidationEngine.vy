# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title LiquidationEngine
@notice Permissionless liquidation of accounts below maintenance margin: sizes the least close
        that restores health, prices the penalty and the keeper's pay, and sells the collateral
        of accounts left in debt. It holds no funds: every token and every balance stays in the
        Clearinghouse, which it drives through a narrow API (`liquidation_close` and
        `seize_collateral`, which only this contract may call, and the `liquidation_snapshot`
        view).
@dev Liquidation is the rare path, so it lives in its own deployable, where it has room to
     grow (auctions, gas-indexed pay, batches), and costs one cross-contract round trip
     (a snapshot and a close, about 5,000 gas) instead of bytes in the core. The arithmetic
     is the pure `risk` module, mirrored in Python by marginsim/risk.py.
     Glossary: E equity, M maintenance requirement (WAD USD), h = E / M, b the buffer a
     partial close restores (h' >= 1 + b), f the penalty rate, k the keeper's share of it.
"""

from .interfaces import IClearinghouse
from .interfaces import ILiquidationEngine
from .interfaces import IOracleRouter

import constants as c
import risk


interface IOwned:
    def owner() -> address: view


implements: ILiquidationEngine

NO_POSITIONS_HEALTH: constant(uint256) = max_value(uint256)  # health of an account without positions
MAX_TIP: constant(uint256) = 1_000 * 10**18  # $1,000: the most one underwater liquidation is tipped, WAD USD
MASK_64: constant(uint256) = 2**64 - 1  # a packed WAD liquidation parameter
MAX_BATCH: constant(uint256) = 64  # (account, market) pairs per liquidate_many call

CLEARINGHOUSE: public(immutable(IClearinghouse))  # holds every balance; trusts only this engine to liquidate
ORACLE: public(immutable(IOracleRouter))  # the Clearinghouse's price source
SETTLEMENT_TO_WAD: public(immutable(uint256))  # 10 ** (18 - settlement decimals), as the Clearinghouse's

# buffer b (a partial liquidation targets health >= 1 + b) | full-liquidation health << 64 |
# dust notional << 128 (WAD; bounded by the Configurator to 0.5, 1 and $10,000): one slot
_liquidation_params: uint256
underwater_tip_rate: public(uint256)  # tip for closing a whole position, WAD of closed notional
debt_liquidation_ltv: public(
    uint256
)  # a debt above this fraction of the haircut collateral value puts the collateral up for sale, WAD


@deploy
def __init__(clearinghouse: IClearinghouse):
    CLEARINGHOUSE = clearinghouse
    SETTLEMENT_TO_WAD = staticcall clearinghouse.SETTLEMENT_TO_WAD()
    ORACLE = IOracleRouter(staticcall clearinghouse.ORACLE())
    # the Configurator's defaults, within its bounds: buffer 10%, full liquidation below 0.5, $100 dust
    self._liquidation_params = 10**17 | (5 * 10**17 << 64) | (100 * c.WAD << 128)
    self.debt_liquidation_ltv = 9 * 10**17  # 90%


@external
def liquidate(account: uint256, market: uint256, max_size: uint256) -> uint256:
    """
    @notice Permissionless: close part of an account's position in `market` when its equity is
            below its maintenance requirement, at the oracle price, charging a penalty on the
            closed notional that is split between the caller and the insurance fund.
    @dev Closes the least size that brings health back to 1 + buffer across size tiers
         (`risk._least_close`); everything when health is below `full_liquidation_health`, when
         health * mmr < penalty (the penalty is then capped at the equity share and no partial
         close can raise health) or when the remainder would be under `dust_notional`; never
         more than `max_size`. A close of a
         whole position pays the caller at least the underwater tip. When the account is left
         with no positions, no collateral and a negative balance, the shortfall is bad debt:
         the insurance fund pays what it can, the pool the rest.
    @param account The account id (owner << 96 | subaccount).
    @param market The market to close in.
    @param max_size Most base units the caller is willing to close, > 0.
    @return Base units closed.
    @custom:security The penalty is charged only out of the account's positive equity, so
           self-liquidation through a second address loses (1 - keeper_share) * penalty. The
           one payment from the insurance fund is the underwater tip on a whole close:
           `underwater_tip_rate` of the closed notional (below every base maintenance rate, so
           an account loses more than the tip to get there), at most $1,000 and at most the
           fund. Only whole closes are tipped, so splitting cannot multiply the cap.
    """
    assert max_size > 0, "liquidation: zero size"
    return self._liquidate(account, market, max_size, True)


@external
def liquidate_many(accounts: DynArray[uint256, MAX_BATCH], markets: DynArray[uint256, MAX_BATCH]) -> DynArray[uint256, MAX_BATCH]:
    """
    @notice Liquidate several (account, market) pairs in one call, each exactly as `liquidate`
            with no size cap would; a pair that is no longer liquidatable (healthy, or its
            position already closed by another keeper) is skipped, not reverted, so one lost
            race does not sink the batch.
    @param accounts Account ids, at most 64.
    @param markets The market to close for each account (the same account may appear again
           with another market).
    @return Base units closed per pair (0 for a skipped pair).
    @custom:security Every pair re-reads its account after the previous pair's close, so a
           batch can never liquidate on stale health. Parameter errors (an unknown market)
           still revert the whole batch.
    """
    assert len(accounts) == len(markets), "liquidation: length mismatch"
    closed: DynArray[uint256, MAX_BATCH] = []
    for i: uint256 in range(MAX_BATCH):
        if i == len(accounts):
            break
        closed.append(self._liquidate(accounts[i], markets[i], max_value(uint256), False))
    return closed


@external
def liquidate_collateral(account: uint256, token: address, max_amount: uint256) -> uint256:
    """
    @notice Buy collateral of an account in debt, at the oracle price less the token's
            liquidation discount, paying settlement token (approved to the Clearinghouse) that
            repays the debt. For sale: the collateral of an account whose debt is above
            `debt_liquidation_ltv` of what it holds (its equity plus its debt: haircut
            collateral, unrealised PnL and pending claim), whatever its equity and its
            positions; otherwise, and always for a written-off token, of an account with no
            positions left and negative equity. Never a zero bid: the price is the oracle's. A
            written-off token (weight 0) is taken for nothing, without reading its feed, and
            sent to governance (the Configurator's owner), not to the caller, to dispose of
            for the insurance fund once it is worth something again.
    @dev Sells at most what repays the debt, rounded up in units; the buyer's payment rounds
         up. When the account is left with no collateral and no positions, the rest of the debt
         is bad debt. A withdrawal or a fill that adds risk leaves a debt at most
         1 / (1 + debt_imr) of what the account holds, below the limit (the Configurator
         requires debt_liquidation_ltv * (1 + debt_imr) > 1), so neither lands an account in a sale.
    @param account The account id.
    @param token A collateral token the account holds.
    @param max_amount Most token units the caller will buy, > 0.
    @return Token units bought.
    """
    assert max_amount > 0, "liquidation: zero amount"
    slot: uint256 = staticcall CLEARINGHOUSE.collateral_slot(token)
    assert slot != 0, "clearinghouse: unknown token"
    debt: uint256 = 0
    equity: int256 = 0
    over_limit: bool = False
    debt, equity, over_limit = self._loan(account)
    col: IClearinghouse.Collateral = staticcall CLEARINGHOUSE.collaterals(slot)
    if col.weight == 0 or not over_limit:
        # a loan within its limit, or a written-off token (its sale repays nothing): for sale
        # only once the positions are gone and equity is not
        assert staticcall CLEARINGHOUSE.market_mask(account) == 0, "liquidation: close positions first"
        assert equity < 0, "liquidation: account healthy"
    amount: uint256 = min(staticcall CLEARINGHOUSE.balances(account, slot), max_amount)
    assert amount > 0, "liquidation: no collateral"

    paid: uint256 = 0
    receiver: address = msg.sender
    if col.weight != 0:
        price: uint256 = staticcall ORACLE.price(token)
        discounted: uint256 = price * (c.WAD - col.liquidation_discount) // c.WAD  # WAD per unit
        # units that repay the debt at the discounted price (rounded up, capped by the balance)
        amount = min(risk._ceil_div(debt * SETTLEMENT_TO_WAD * col.unit, discounted), amount)
        paid = risk._ceil_div(amount * discounted, col.unit * SETTLEMENT_TO_WAD)  # the buyer rounds up
        assert paid > 0, "liquidation: amount too small"
    else:
        # written off (weight 0): governance valued it at nothing and its feed is not read. Taken
        # for nothing, which clears the way for the rest of the debt to settle as bad debt, it
        # goes to governance (the Configurator's owner), never to the caller: an owner taking
        # its own token back for free would walk away from its debt with it
        receiver = staticcall IOwned(staticcall CLEARINGHOUSE.configurator()).owner()
    extcall CLEARINGHOUSE.seize_collateral(account, slot, amount, paid, receiver)
    log ILiquidationEngine.CollateralLiquidation(account=account, token=token, liquidator=msg.sender, amount=amount, paid=paid)
    return amount


@external
def realise_loss(account: uint256, market: uint256) -> uint256:
    """
    @notice Permissionless: realise the unrealised loss of `account`'s position in `market` at
            the oracle price. The loss leaves the position (its cost basis is reset to the
            price; size and open interest stay) for the account's settlement balance: where
            the balance goes negative it is a debt to the pool, which bears the utilisation
            rate's interest and counts against the debt ceiling and `debt_imr`; a realisation
            never puts the collateral up for sale (see below).
    @dev Without it a loss kept open is an interest-free loan while the pool has already paid
         its counterpart's profit in tokens (review_v2_solvency F1). Equity does not change
         (the credit rounds down by less than one token unit, toward the pool), no penalty is
         charged and nobody is paid: LPs, whose capital the loss holds, are the ones who call
         it, or a keeper on their behalf.
    @param account The account id (owner << 96 | subaccount).
    @param market The market id.
    @return The loss realised, settlement token units (> 0).
    @custom:security Only a loss of more than one token unit: a gain realised by a third party
           would be paid out of the pool's free liquidity on the owner's behalf, and at a basis
           just reset the credit's own rounding is a loss of one unit, so both revert
           `liquidation: no loss to realise` (as does a flat position or none). A realisation
           that would leave the debt over `debt_liquidation_ltv` reverts
           `liquidation: realisation over the loan limit`: a third party cannot put a healthy
           account's collateral up for sale. Funding accrues to now first, at the same price.
    """
    price: uint256 = (staticcall CLEARINGHOUSE.liquidation_snapshot(account, market)).price
    result: IClearinghouse.LiquidationResult = extcall CLEARINGHOUSE.liquidation_close(
        account, market, 0, price, price, 0, 0, msg.sender
    )
    # more than the one unit the credit's own rounding takes at the reset basis (review v3 R3)
    assert result.realised_pnl < -1, "liquidation: no loss to realise"
    # a third party may price a loan, never put the account's collateral up for sale with it
    # (review v3 R1): a loss that large stays under maintenance margin until its owner closes
    assert not self._loan(account)[2], "liquidation: realisation over the loan limit"
    loss: uint256 = convert(-result.realised_pnl, uint256)
    log ILiquidationEngine.LossRealised(account=account, market=market, caller=msg.sender, loss=loss, price=price)
    return loss


@view
def _loan(account: uint256) -> (uint256, int256, bool):
    """
    @dev The account's debt (settlement token units, with its interest; 0 without one), its
         equity (WAD) and whether the debt is over `debt_liquidation_ltv` of what the account
         holds, its equity plus its debt: debt * S2W > floor((E + debt * S2W) * ltv / 1e18).
    """
    debt: uint256 = convert(max(-(staticcall CLEARINGHOUSE.settlement(account)), 0), uint256)
    equity: int256 = (staticcall CLEARINGHOUSE.margin(account))[0]
    debt_wad: int256 = convert(debt * SETTLEMENT_TO_WAD, int256)
    over: bool = debt > 0 and debt_wad > risk._signed_mul_floor(equity + debt_wad, convert(self.debt_liquidation_ltv, int256))
    return debt, equity, over


@external
def apply_liquidation_parameters(buffer: uint256, full_liquidation_health: uint256, dust_notional: uint256):
    """
    @notice Configurator only: the liquidation buffer, deep-underwater health and dust notional,
            checked against their bounds there.
    @param buffer b, WAD: a partial close restores health 1 + b.
    @param full_liquidation_health WAD: below it a liquidation closes the whole position.
    @param dust_notional WAD USD: a remainder below it is closed too.
    """
    assert msg.sender == staticcall CLEARINGHOUSE.configurator(), "liquidation: not configurator"
    self._liquidation_params = buffer | (full_liquidation_health << 64) | (dust_notional << 128)


@external
def apply_debt_liquidation_ltv(ltv: uint256):
    """
    @notice Configurator only: `debt_liquidation_ltv`, checked there against the initial limit.
    @param ltv WAD.
    """
    assert msg.sender == staticcall CLEARINGHOUSE.configurator(), "liquidation: not configurator"
    self.debt_liquidation_ltv = ltv


@external
def apply_underwater_tip(rate: uint256):
    """
    @notice Configurator only: the tip rate for closing a whole position, checked there.
    @param rate WAD of the closed notional.
    """
    assert msg.sender == staticcall CLEARINGHOUSE.configurator(), "liquidation: not configurator"
    self.underwater_tip_rate = rate


@view
@external
def liquidation_buffer() -> uint256:
    """
    @notice b: a partial liquidation closes the least size that restores health 1 + b, WAD.
    @return b, WAD.
    """
    return self._liquidation_params & MASK_64


@view
@external
def full_liquidation_health() -> uint256:
    """
    @notice Below this health a liquidation closes the whole position, WAD.
    @return WAD.
    """
    return (self._liquidation_params >> 64) & MASK_64


@view
@external
def dust_notional() -> uint256:
    """
    @notice A remainder below this notional is closed too, WAD USD.
    @return WAD USD.
    """
    return self._liquidation_params >> 128


def _liquidate(account: uint256, market: uint256, max_size: uint256, strict: bool) -> uint256:
    """
    @dev One liquidation (see `liquidate`). `strict`: revert when the account is healthy or has
         no position in `market`; otherwise return 0 for such a pair (batches).
    """
    s: IClearinghouse.LiquidationSnapshot = staticcall CLEARINGHOUSE.liquidation_snapshot(account, market)
    params: uint256 = self._liquidation_params
    if not strict and (s.equity >= convert(s.maintenance, int256) or s.size == 0):
        return 0
    assert s.equity < convert(s.maintenance, int256), "liquidation: account healthy"
    assert s.size != 0, "liquidation: no position"
    health_before: uint256 = risk._health(s.equity, s.maintenance)

    abs_size: uint256 = convert(abs(s.size), uint256)
    mmr: uint256 = risk._snapshot_rates(s, abs_size)
    close: uint256 = abs_size
    # a partial close only where it can restore health: above full_liquidation_health, and where
    # the penalty is not capped at the equity share (h * r < f): capped, it takes exactly the
    # health the close frees and every partial close leaves h where it was
    if health_before >= (params >> 64) & MASK_64 and risk._mul_down(health_before, mmr) >= s.penalty:
        close = min(risk._least_close(s, params & MASK_64, SETTLEMENT_TO_WAD), abs_size)
        if risk._mul_down(abs_size - close, s.price) < params >> 128:
            close = abs_size  # the remainder would be dust
    close = min(close, max_size)

    size_delta: int256 = convert(close, int256)
    if s.size > 0:
        size_delta = -size_delta
    fill: uint256 = s.price
    premium: int256 = 0
    if close == abs_size:
        # a whole close pays (or earns) the skew premium it moves, as a trade would: below
        # full_liquidation_health the penalty shrinks with the equity, so a close at the bare
        # price would hand the premium to whoever trades the skew back. The premium is paid
        # first, the penalty only out of the equity left (rounded up: never more than is there)
        fill = risk._fill_price(s.price, s.skew, size_delta, s.skew_scale)
        premium = max(risk._signed_mul_ceil(size_delta, convert(fill, int256) - convert(s.price, int256)), 0)
    closed_notional: uint256 = risk._mul_up(close, s.price)
    penalty: uint256 = risk._liquidation_penalty(
        s.equity - premium, s.maintenance, closed_notional, mmr, s.penalty, SETTLEMENT_TO_WAD
    )
    keeper_reward: uint256 = penalty * s.keeper_share // c.WAD
    if close == abs_size:
        # a whole close pays at least the tip, topped up from the insurance fund (which has
        # already received the penalty's share): without it, underwater positions rot
        # (Maker, Black Thursday) or keepers wait for an account to sink
        tip: uint256 = min(
            min(risk._mul_down(closed_notional, self.underwater_tip_rate), MAX_TIP) // SETTLEMENT_TO_WAD,
            s.insurance + penalty - keeper_reward,
        )
        keeper_reward = max(keeper_reward, tip)
    result: IClearinghouse.LiquidationResult = extcall CLEARINGHOUSE.liquidation_close(
        account, market, size_delta, s.price, fill, penalty, keeper_reward, msg.sender
    )

    health_after: uint256 = NO_POSITIONS_HEALTH
    if result.market_mask != 0:
        # health after the close, from the values before and this market's change alone (the
        # other markets did not move): `health()` afterwards returns exactly this number
        scale: int256 = convert(SETTLEMENT_TO_WAD, int256)
        equity_after: int256 = s.equity + result.pnl_change + (result.realised_pnl - convert(penalty, int256)) * scale
        left: uint256 = abs_size - close
        maintenance_after: uint256 = (
            s.maintenance
            - risk._mul_up(risk._mul_up(abs_size, s.price), mmr)
            + risk._mul_up(risk._mul_up(left, s.price), risk._snapshot_rates(s, left))
        )
        health_after = risk._health(equity_after, maintenance_after)
        if left != 0:
            # a partial close must leave the account healthier; a whole market closed (deep or
            # dust rule) may not, and the next call closes the next market
            assert health_after >= health_before, "liquidation: health worsened"
    log ILiquidationEngine.Liquidation(
        account=account,
        market=market,
        liquidator=msg.sender,
        size_closed=size_delta,
        price=fill,
        realised_pnl=result.realised_pnl,
        penalty=penalty,
        keeper_reward=result.keeper_paid,
        health_before=health_before,
        health_after=health_after,
    )
    return close
