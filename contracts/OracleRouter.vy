# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title OracleRouter
@notice One Chainlink AggregatorV3 feed per asset, normalised to WAD, with the guards that
        failed elsewhere: non-positive answers, stale answers (per-feed heartbeat on `updatedAt`),
        answers at or outside configured bounds (the LUNA min-answer trap), and a deviation
        circuit breaker. It also keeps, per asset, an exponentially weighted estimate of realised
        volatility from each accepted round, normalised by the time between rounds.
@dev Glossary
     - price: the feed's latest answer scaled to WAD (USD per whole unit of the asset).
     - accepted price: the newest round `sync` accepted; the breaker compares against it.
     - variance: EWMA of r^2 * YEAR / dt over accepted rounds, r = p1 / p0 - 1 (annualised, WAD).
     - sigma = sqrt(variance): annualised volatility, WAD (0.8e18 = 80%).
     - maintenance sigma: sigma as the maintenance margin sees it. It follows sigma down at once
       but up only at `max_vol_rise_per_hour`, so one volatile round cannot by itself push an
       account into liquidation; the initial margin uses sigma itself and rises at once.
     Circuit breaker: a round more than `max_deviation` away from the accepted price halts the
     asset: `price` reverts "oracle: circuit breaker", so opens, increases, withdrawals *and*
     liquidations priced off it wait. In `sync`, a later round within `max_deviation` of the
     accepted price clears it at once (the spike is gone); a round within `max_deviation` of the
     pending level (the halted round's price) clears it at that level only once it is dated at
     least `confirmation_delay` after the pending level's first round (the move is confirmed);
     a round away from both starts a new pending level and its clock. The owner can clear it
     too. Liquidations wait on purpose: Compound's 2020 DAI spike liquidated accounts that were
     healthy at the true price. The wait is one more round when the price comes back, and at
     least `confirmation_delay` (default an hour, at most a day) when it does not.
@custom:security `sync` is permissionless and idempotent; the bots call it after every round.
     Reads never depend on it having run: `price` itself checks the newest round against the
     accepted price, so a skipped sync can only halt, never let an unchecked jump through.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from .interfaces import IAggregatorV3
from .interfaces import IOracleRouter

import constants as c

implements: IOracleRouter

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


event ParametersSet:
    ewma_lambda: uint256
    max_vol_rise_per_hour: uint256


event ConfirmationDelaySet:
    seconds: uint256


struct Feed:
    aggregator: IAggregatorV3  # the Chainlink feed (or proxy)
    heartbeat: uint256  # seconds after updatedAt beyond which an answer is stale
    scale: uint256  # 10 ** (18 - feed decimals): answer * scale is WAD
    min_price: uint256  # WAD; an answer at or below it is rejected (frozen minAnswer)
    max_price: uint256  # WAD; an answer at or above it is rejected
    max_deviation: uint256  # WAD fraction; a larger move from the accepted price halts the asset


struct VolState:
    variance: uint256  # EWMA of annualised squared returns, WAD
    mm_anchor: uint256  # maintenance sigma at mm_anchor_time, WAD
    mm_anchor_time: uint256  # block time at which mm_anchor was fixed
    last_price: uint256  # accepted price, WAD
    last_time: uint256  # updatedAt of the accepted round
    last_round: uint80  # newest round id sync has looked at
    halted: bool  # circuit breaker tripped and not yet cleared
    pending_price: uint256  # the halted round's price, WAD
    pending_since: uint256  # updatedAt of the first round at the pending level


MAX_HEARTBEAT: constant(uint256) = 7 * 86_400  # a week; longer means no staleness check at all
MIN_HEARTBEAT: constant(uint256) = 60  # a minute
MIN_DEVIATION: constant(uint256) = 10**16  # 1%: tighter would halt on ordinary rounds
MAX_SIGMA: constant(uint256) = 10 * 10**18  # 1000% annualised, a cap on any estimate
MIN_DT: constant(uint256) = 60  # seconds; rounds closer together are treated as this far apart
MIN_LAMBDA: constant(uint256) = 5 * 10**17  # 0.5
MAX_LAMBDA: constant(uint256) = 999 * 10**15  # 0.999
MAX_RISE_PER_HOUR: constant(uint256) = 10**18  # +100 vol points an hour at most
MAX_CONFIRMATION_DELAY: constant(uint256) = 86_400  # a day
DEFAULT_CONFIRMATION_DELAY: constant(uint256) = 3_600  # Compound's 2020 DAI spike lasted about an hour
MAX_PRICE: constant(uint256) = 2**128 - 1  # prices are packed into 128 bits
MASK_64: constant(uint256) = 2**64 - 1
MASK_128: constant(uint256) = 2**128 - 1

# Packed so that `price` reads three slots and `volatilities` three (`_config` only for its
# existence check) plus the speed:
_config: HashMap[address, uint256]  # asset => aggregator | heartbeat << 160 | decimals << 192
_bounds: HashMap[address, uint256]  # asset => min_price | max_price << 128 (WAD)
_guard: HashMap[address, uint256]  # asset => last_price | max_deviation << 128 | halted << 192
_sigma_state: HashMap[address, uint256]  # asset => variance | mm_anchor << 128 (WAD)
_clock: HashMap[address, uint256]  # asset => mm_anchor_time | last_time << 64 | last_round << 128
_pending: HashMap[address, uint256]  # asset => pending_price | pending_since << 128
assets: public(DynArray[address, 32])  # every configured asset, for bots
ewma_lambda: public(uint256)  # weight of the old variance per accepted round, WAD
max_vol_rise_per_hour: public(uint256)  # how fast maintenance sigma may rise, WAD per hour
# how long a new level beyond the breaker must hold (by the feed's updatedAt) before it is accepted
confirmation_delay: public(uint256)


@deploy
def __init__(ewma_lambda: uint256, max_vol_rise_per_hour: uint256):
    ownable.__init__()
    ownable_2step.__init__()
    self._set_parameters(ewma_lambda, max_vol_rise_per_hour)
    self.confirmation_delay = DEFAULT_CONFIRMATION_DELAY


@external
def set_confirmation_delay(seconds: uint256):
    """
    @notice How long rounds at a new level beyond the circuit breaker must keep coming, by
            their updatedAt, before that level is accepted. A return near the accepted price
            lifts the halt at once. Owner only.
    @dev Read as each round is processed, so it applies to a halt already pending too.
    @param seconds Seconds, at most 86,400 (a day); 0: the second round at the new level
           confirms it.
    """
    ownable._check_owner()
    assert seconds <= MAX_CONFIRMATION_DELAY, "oracle: bad confirmation delay"
    self.confirmation_delay = seconds
    log ConfirmationDelaySet(seconds=seconds)


@external
def set_parameters(ewma_lambda: uint256, max_vol_rise_per_hour: uint256):
    """
    @notice Set the EWMA decay and the speed at which maintenance volatility may rise, for
            every asset. Owner only.
    @param ewma_lambda Weight of the previous variance, WAD, in [0.5, 0.999]; used from the next
           accepted round.
    @param max_vol_rise_per_hour Annualised sigma points per hour, WAD, in (0, 1].
    @custom:security The new speed applies retroactively: maintenance sigma is
           min(sigma, anchor + speed * (now - anchor time)) and an anchor is re-fixed only when
           a round is accepted, so raising the speed can lift maintenance sigma, and with it
           maintenance requirements, for every asset in the same block.
    """
    ownable._check_owner()
    self._set_parameters(ewma_lambda, max_vol_rise_per_hour)


@external
def set_feed(
    asset: address,
    aggregator: IAggregatorV3,
    heartbeat: uint256,
    min_price: uint256,
    max_price: uint256,
    max_deviation: uint256,
    initial_sigma: uint256,
):
    """
    @notice Configure (or replace) the feed of an asset. Owner only. The feed's current answer
            must pass the non-positive, staleness and bounds guards; it becomes the accepted price.
    @dev The circuit breaker is not applied to that answer: there may be no accepted price yet.
    @param asset The asset's key, not zero (its token address, or any unique address for a
           perp-only asset); at most 32 assets.
    @param aggregator A Chainlink AggregatorV3 feed (not zero) with at most 18 decimals.
    @param heartbeat Seconds after which an answer is stale, in [60, 604800].
    @param min_price Lowest sane price, WAD, > 0; answers at or below it are rejected.
    @param max_price Highest sane price, WAD, > min_price and < 2^128; answers at or above it
           are rejected.
    @param max_deviation Largest accepted move between rounds, WAD fraction, in [0.01, 1].
    @param initial_sigma Starting annualised volatility, WAD, <= 10 (1000%).
    @custom:security Replacing a feed resets the asset's state: a halt and its pending level are
           dropped, the new answer is accepted whatever its distance from the old accepted
           price, and variance and the maintenance anchor restart at `initial_sigma`, so
           maintenance sigma moves there at once, not at `max_vol_rise_per_hour`.
    """
    ownable._check_owner()
    assert asset != empty(address), "oracle: zero asset"
    assert aggregator.address != empty(address), "oracle: zero aggregator"
    assert heartbeat >= MIN_HEARTBEAT and heartbeat <= MAX_HEARTBEAT, "oracle: bad heartbeat"
    assert min_price > 0 and max_price > min_price and max_price <= MAX_PRICE, "oracle: bad bounds"
    assert max_deviation >= MIN_DEVIATION and max_deviation <= c.WAD, "oracle: bad deviation"
    assert initial_sigma <= MAX_SIGMA, "oracle: bad sigma"
    decimals: uint8 = staticcall aggregator.decimals()
    assert decimals <= 18, "oracle: bad decimals"

    feed: Feed = Feed(
        aggregator=aggregator,
        heartbeat=heartbeat,
        scale=10**convert(18 - decimals, uint256),
        min_price=min_price,
        max_price=max_price,
        max_deviation=max_deviation,
    )
    round_id: uint80 = 0
    answer: int256 = 0
    updated_at: uint256 = 0
    round_id, answer, updated_at = self._latest(aggregator)
    p: uint256 = self._checked_price(feed, answer, updated_at)

    if self._config[asset] == 0:
        self.assets.append(asset)
    self._config[asset] = convert(aggregator.address, uint256) | (heartbeat << 160) | (convert(decimals, uint256) << 192)
    self._bounds[asset] = min_price | (max_price << 128)
    self._store_vol(
        asset,
        max_deviation,
        VolState(
            variance=initial_sigma * initial_sigma // c.WAD,
            mm_anchor=initial_sigma,
            mm_anchor_time=block.timestamp,
            last_price=p,
            last_time=updated_at,
            last_round=round_id,
            halted=False,
            pending_price=0,
            pending_since=0,
        ),
    )
    log IOracleRouter.FeedSet(
        asset=asset,
        aggregator=aggregator.address,
        heartbeat=heartbeat,
        min_price=min_price,
        max_price=max_price,
        max_deviation=max_deviation,
    )


@external
def clear_circuit_breaker(asset: address):
    """
    @notice Owner override: accept the feed's current answer and lift the halt.
    @dev The answer must still pass the non-positive, staleness and bounds guards. Its move from
         the old accepted price is folded into the volatility estimate as `sync` would, and the
         next `sync` starts after the current round.
    @param asset A configured asset whose circuit breaker is tripped; reverts "oracle: not
           halted" otherwise.
    """
    ownable._check_owner()
    feed: Feed = self._feed(asset)
    st: VolState = self._load_vol(asset)
    assert st.halted, "oracle: not halted"
    round_id: uint80 = 0
    answer: int256 = 0
    updated_at: uint256 = 0
    round_id, answer, updated_at = self._latest(feed.aggregator)
    p: uint256 = self._checked_price(feed, answer, updated_at)
    st = self._accept(st, p, updated_at)
    st.halted = False
    st.pending_price = 0
    st.last_round = round_id
    self._store_vol(asset, feed.max_deviation, st)
    log IOracleRouter.CircuitBreakerCleared(asset=asset, price=p, by_owner=True)


@external
def sync(asset: address):
    """
    @notice Fold every round published since the last sync (up to 16) into the volatility
            estimate and the circuit breaker. Permissionless; a no-op when nothing is new.
    @dev Rounds are walked by id within the current Chainlink phase; after a phase change or a
         gap of more than 16 rounds only the newest round is taken. A round that is
         non-positive, out of bounds, dated in the future or before the accepted round (or the
         pending level's first round) is skipped with `RoundRejected`; the heartbeat does not
         apply here.
    @param asset A configured asset; reverts "oracle: unknown asset" otherwise.
    @custom:security Prices never depend on it having run, but the volatility estimate and the
           breaker's clearing do: an asset nobody syncs keeps its old sigma, and a halted one
           stays halted until a sync or the owner clears it.
    """
    feed: Feed = self._feed(asset)
    st: VolState = self._load_vol(asset)
    latest_id: uint80 = 0
    latest_answer: int256 = 0
    latest_updated: uint256 = 0
    latest_id, latest_answer, latest_updated = self._latest(feed.aggregator)
    if latest_id == st.last_round:
        return

    first_id: uint80 = latest_id
    same_phase: bool = (convert(latest_id, uint256) >> 64) == (convert(st.last_round, uint256) >> 64)
    if same_phase and latest_id > st.last_round and latest_id - st.last_round <= convert(c.MAX_SYNC_ROUNDS, uint80):
        first_id = st.last_round + 1

    for i: uint256 in range(c.MAX_SYNC_ROUNDS):
        round_id: uint80 = first_id + convert(i, uint80)
        if round_id > latest_id:
            break
        answer: int256 = latest_answer
        updated_at: uint256 = latest_updated
        if round_id != latest_id:
            _id: uint80 = 0
            _started: uint256 = 0
            _answered: uint80 = 0
            _id, answer, _started, updated_at, _answered = staticcall feed.aggregator.getRoundData(round_id)
        st = self._process_round(asset, feed, st, round_id, answer, updated_at)
        st.last_round = round_id
    self._store_vol(asset, feed.max_deviation, st)


@view
@external
def price(asset: address) -> uint256:
    """
    @notice The asset's price in WAD, after every guard.
    @dev Reverts "oracle: unknown asset", "oracle: non-positive answer", "oracle: stale answer",
         "oracle: answer out of bounds" or "oracle: circuit breaker".
    @param asset A configured asset.
    @return USD per whole unit of the asset, WAD.
    @custom:security The newest round is checked against the accepted price whether or not
           `sync` has seen it, so this can revert "oracle: circuit breaker" before any sync trips
           the breaker. It never returns 0: every failure reverts.
    """
    return self._price(asset)


@view
@external
def round_price(asset: address, after: uint256) -> uint256:
    """
    @notice The price of the first round dated at or after `after`, while it is the newest:
            what a delayed order placed before `after` fills at (see Orders). A round dated
            later than the first one means the first has passed.
    @dev Reverts "oracle: no round yet" while the newest round is dated before `after`, and
         with every guard `price` has. The round before the newest is read with
         `getRoundData(id - 1)`. When that read fails on a proxy's round (phase bits set: the
         first round of a new phase, whose predecessor lives in the previous phase) the newest
         round is not known to be the first and counts as passed; on a plain aggregator's
         round (no phase bits) it had no predecessor and is the first.
    @param asset A configured asset; reverts "oracle: unknown asset" otherwise.
    @param after A time, seconds: the earliest `updatedAt` the round may have.
    @return The price, WAD, or 0 once a newer round has replaced the first one after `after`.
    """
    feed: Feed = self._feed(asset)
    round_id: uint80 = 0
    answer: int256 = 0
    updated_at: uint256 = 0
    round_id, answer, updated_at = self._latest(feed.aggregator)
    assert updated_at >= after, "oracle: no round yet"
    if round_id == 0:
        return 0
    ok: bool = False
    data: Bytes[160] = b""
    ok, data = raw_call(
        feed.aggregator.address,
        abi_encode(round_id - 1, method_id=method_id("getRoundData(uint80)")),
        max_outsize=160,
        is_static_call=True,
        revert_on_failure=False,
    )
    if ok and len(data) == 160:
        if convert(slice(data, 96, 32), uint256) >= after:
            return 0  # the round before the newest was already at or after `after`
    elif convert(round_id, uint256) >> 64 != 0:
        return 0  # a proxy's new phase: its predecessor is in the previous phase, unknown here
    return self._guarded_price(asset, feed, answer, updated_at)


@view
@external
def volatility(asset: address) -> uint256:
    """
    @notice Current annualised volatility estimate, WAD (drives the initial margin).
    @param asset A configured asset; reverts "oracle: unknown asset" otherwise.
    @return sqrt(variance), WAD (0.8e18 = 80%), capped at 10 (1000%), as of the last accepted
            round.
    """
    self._feed(asset)
    return self._sigma(self._sigma_state[asset] & MASK_128)


@view
@external
def maintenance_volatility(asset: address) -> uint256:
    """
    @notice Volatility as the maintenance margin sees it: the estimate, but risen at most
            `max_vol_rise_per_hour` per hour since it was last fixed.
    @param asset A configured asset; reverts "oracle: unknown asset" otherwise.
    @return min(sigma, anchor + max_vol_rise_per_hour * hours since the anchor), WAD.
    """
    self._feed(asset)
    st: VolState = self._load_vol(asset)
    return self._maintenance_sigma(st, self._sigma(st.variance))


@view
@external
def volatilities(asset: address) -> (uint256, uint256):
    """
    @notice Both volatilities in one call: (sigma for initial margin, sigma for maintenance).
    @param asset A configured asset; reverts "oracle: unknown asset" otherwise.
    @return (`volatility(asset)`, `maintenance_volatility(asset)`), WAD; the second never
            exceeds the first.
    """
    assert self._config[asset] != 0, "oracle: unknown asset"
    word: uint256 = self._sigma_state[asset]
    clock: uint256 = self._clock[asset]
    sigma: uint256 = self._sigma(word & MASK_128)
    anchor: uint256 = word >> 128
    risen: uint256 = anchor + self.max_vol_rise_per_hour * (block.timestamp - (clock & MASK_64)) // 3600
    return sigma, min(sigma, risen)


@view
@external
def asset_count() -> uint256:
    """
    @notice How many assets have been configured, for bots walking `assets`.
    @return The length of `assets`, at most 32.
    """
    return len(self.assets)


@view
@external
def feeds(asset: address) -> Feed:
    """
    @notice An asset's feed and guards (zero for an unknown asset).
    @param asset The asset's key.
    @return The aggregator, heartbeat (seconds), scale (10 ** (18 - decimals)), min_price and
            max_price (WAD) and max_deviation (WAD fraction).
    """
    if self._config[asset] == 0:
        return empty(Feed)
    return self._feed(asset)


@view
@external
def vol(asset: address) -> VolState:
    """
    @notice An asset's volatility and circuit-breaker state.
    @param asset The asset's key; not checked, so an unknown asset reads as all zero.
    @return The state as stored: variance (WAD, not sigma), the maintenance anchor at its time
            (not today's maintenance sigma: see `maintenance_volatility`), the accepted price
            (WAD) and its updatedAt, the newest round id seen, the halt and the pending level.
    """
    return self._load_vol(asset)


@view
def _feed(asset: address) -> Feed:
    config: uint256 = self._config[asset]
    assert config != 0, "oracle: unknown asset"
    bounds: uint256 = self._bounds[asset]
    return Feed(
        aggregator=IAggregatorV3(convert(config & convert(max_value(uint160), uint256), address)),
        heartbeat=(config >> 160) & convert(max_value(uint32), uint256),
        scale=10**(18 - (config >> 192)),
        min_price=bounds & MASK_128,
        max_price=bounds >> 128,
        max_deviation=(self._guard[asset] >> 128) & MASK_64,
    )


@view
def _load_vol(asset: address) -> VolState:
    guard: uint256 = self._guard[asset]
    word: uint256 = self._sigma_state[asset]
    clock: uint256 = self._clock[asset]
    return VolState(
        variance=word & MASK_128,
        mm_anchor=word >> 128,
        mm_anchor_time=clock & MASK_64,
        last_price=guard & MASK_128,
        last_time=(clock >> 64) & MASK_64,
        last_round=convert(clock >> 128, uint80),
        halted=(guard >> 192) & 1 == 1,
        pending_price=self._pending[asset] & MASK_128,
        pending_since=self._pending[asset] >> 128,
    )


def _store_vol(asset: address, max_deviation: uint256, st: VolState):
    halted: uint256 = 0
    if st.halted:
        halted = 1
    self._guard[asset] = st.last_price | (max_deviation << 128) | (halted << 192)
    self._sigma_state[asset] = st.variance | (st.mm_anchor << 128)
    self._clock[asset] = st.mm_anchor_time | (st.last_time << 64) | (convert(st.last_round, uint256) << 128)
    self._pending[asset] = st.pending_price | (st.pending_since << 128)


@view
def _latest(aggregator: IAggregatorV3) -> (uint80, int256, uint256):
    round_id: uint80 = 0
    answer: int256 = 0
    started_at: uint256 = 0
    updated_at: uint256 = 0
    answered_in: uint80 = 0
    round_id, answer, started_at, updated_at, answered_in = staticcall aggregator.latestRoundData()
    return round_id, answer, updated_at


@view
def _checked_price(feed: Feed, answer: int256, updated_at: uint256) -> uint256:
    assert answer > 0, "oracle: non-positive answer"
    assert updated_at != 0 and updated_at <= block.timestamp, "oracle: stale answer"
    assert block.timestamp - updated_at <= feed.heartbeat, "oracle: stale answer"
    p: uint256 = convert(answer, uint256) * feed.scale
    assert p > feed.min_price and p < feed.max_price, "oracle: answer out of bounds"
    return p


@view
def _price(asset: address) -> uint256:
    feed: Feed = self._feed(asset)
    round_id: uint80 = 0
    answer: int256 = 0
    updated_at: uint256 = 0
    round_id, answer, updated_at = self._latest(feed.aggregator)
    return self._guarded_price(asset, feed, answer, updated_at)


@view
def _guarded_price(asset: address, feed: Feed, answer: int256, updated_at: uint256) -> uint256:
    """
    @dev The newest round's answer, through every guard: positive, fresh, in bounds, and within
         the breaker's band of the accepted price (the asset not halted).
    """
    p: uint256 = self._checked_price(feed, answer, updated_at)
    guard: uint256 = self._guard[asset]
    assert (guard >> 192) & 1 == 0, "oracle: circuit breaker"
    # whether or not sync has seen it, the newest round must be within the breaker's band of the
    # accepted price (a round sync rejected, e.g. a backdated one, gets no free pass)
    assert not self._deviates(guard & MASK_128, p, feed.max_deviation), "oracle: circuit breaker"
    return p


@pure
def _deviates(reference: uint256, p: uint256, max_deviation: uint256) -> bool:
    diff: uint256 = max(p, reference) - min(p, reference)
    return diff * c.WAD > max_deviation * reference


@view
def _sigma(variance: uint256) -> uint256:
    return min(isqrt(variance * c.WAD), MAX_SIGMA)


@view
def _maintenance_sigma(st: VolState, sigma: uint256) -> uint256:
    risen: uint256 = st.mm_anchor + self.max_vol_rise_per_hour * (block.timestamp - st.mm_anchor_time) // 3600
    return min(sigma, risen)


def _process_round(asset: address, feed: Feed, st: VolState, round_id: uint80, answer: int256, updated_at: uint256) -> VolState:
    s: VolState = st
    # a round dated before the accepted one, or before the pending level's first round, cannot
    # move the breaker's clock back
    if answer <= 0 or updated_at < max(s.last_time, s.pending_since) or updated_at > block.timestamp:
        log IOracleRouter.RoundRejected(asset=asset, round_id=convert(round_id, uint256), answer=answer)
        return s
    p: uint256 = convert(answer, uint256) * feed.scale
    if p <= feed.min_price or p >= feed.max_price:
        log IOracleRouter.RoundRejected(asset=asset, round_id=convert(round_id, uint256), answer=answer)
        return s

    if s.halted:
        # back near the accepted price: the spike is gone. Near the pending level: confirmed
        # only once rounds there have kept coming for `confirmation_delay` (Compound's 2020 DAI
        # spike was printed for an hour). Anywhere else: a new pending level, its clock restarts.
        near_pending: bool = not self._deviates(s.pending_price, p, feed.max_deviation)
        if not self._deviates(s.last_price, p, feed.max_deviation) or (
            near_pending and updated_at >= s.pending_since + self.confirmation_delay
        ):
            s = self._accept(s, p, updated_at)
            s.halted = False
            s.pending_price = 0
            s.pending_since = 0
            log IOracleRouter.CircuitBreakerCleared(asset=asset, price=p, by_owner=False)
        elif not near_pending:
            s.pending_price = p
            s.pending_since = updated_at
        return s

    if self._deviates(s.last_price, p, feed.max_deviation):
        s.halted = True
        s.pending_price = p
        s.pending_since = updated_at
        log IOracleRouter.CircuitBreakerTripped(
            asset=asset, round_id=convert(round_id, uint256), last_price=s.last_price, new_price=p
        )
        return s

    s = self._accept(s, p, updated_at)
    log IOracleRouter.RoundAccepted(asset=asset, round_id=convert(round_id, uint256), price=p, variance=s.variance)
    return s


@view
def _accept(st: VolState, p: uint256, updated_at: uint256) -> VolState:
    """
    @dev variance' = lambda * variance + (1 - lambda) * r^2 * YEAR / dt, with r the simple
         return against the accepted price and dt floored at MIN_DT. The maintenance anchor is
         re-fixed at its current value first, so its rise keeps its bounded speed across updates.
    """
    s: VolState = st
    old_sigma: uint256 = self._sigma(s.variance)
    s.mm_anchor = self._maintenance_sigma(s, old_sigma)
    s.mm_anchor_time = block.timestamp

    dt: uint256 = MIN_DT
    if updated_at > s.last_time:
        dt = max(updated_at - s.last_time, MIN_DT)
    move: uint256 = max(p, s.last_price) - min(p, s.last_price)
    r: uint256 = move * c.WAD // s.last_price  # |return|, WAD
    sample: uint256 = r * r // c.WAD * c.SECONDS_PER_YEAR // dt  # annualised r^2, WAD
    lam: uint256 = self.ewma_lambda
    s.variance = min((lam * s.variance + (c.WAD - lam) * sample) // c.WAD, MAX_SIGMA * MAX_SIGMA // c.WAD)

    new_sigma: uint256 = self._sigma(s.variance)
    if new_sigma < s.mm_anchor:
        s.mm_anchor = new_sigma  # volatility falling: maintenance follows at once
    s.last_price = p
    s.last_time = updated_at
    return s


def _set_parameters(ewma_lambda: uint256, max_vol_rise_per_hour: uint256):
    assert ewma_lambda >= MIN_LAMBDA and ewma_lambda <= MAX_LAMBDA, "oracle: bad lambda"
    assert max_vol_rise_per_hour > 0 and max_vol_rise_per_hour <= MAX_RISE_PER_HOUR, "oracle: bad vol speed"
    self.ewma_lambda = ewma_lambda
    self.max_vol_rise_per_hour = max_vol_rise_per_hour
    log ParametersSet(ewma_lambda=ewma_lambda, max_vol_rise_per_hour=max_vol_rise_per_hour)
