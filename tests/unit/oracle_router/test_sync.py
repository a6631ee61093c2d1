import ape
import pytest

from tests.conftest import WAD

HOUR = 3600


@pytest.fixture
def feed(make_aggregator):
    return make_aggregator(price_usd=2_000, decimals=8)


@pytest.fixture
def asset(make_token):
    return make_token(18, "WETH")


@pytest.fixture
def configured(oracle, deployer, feed, asset):
    oracle.set_feed(asset, feed, HOUR, 1 * WAD, 1_000_000 * WAD, 20 * 10**16, 8 * 10**17, sender=deployer)
    return oracle


def publish(feed, deployer, chain, price, after=600):
    chain.pending_timestamp += after
    feed.updateAnswer(int(price * 10**8), sender=deployer)


def test_sync__breaker_trips_then_a_level_held_for_the_delay_clears(configured, feed, deployer, asset, chain, keeper):
    assert configured.confirmation_delay() == HOUR
    publish(feed, deployer, chain, 2_600)  # +30%
    tx = configured.sync(asset, sender=keeper)
    assert [e.new_price for e in tx.events if e.event_name == "CircuitBreakerTripped"] == [2_600 * WAD]
    tripped_at = feed.latestRoundData()[3]
    assert configured.vol(asset).halted and configured.vol(asset).pending_since == tripped_at
    with ape.reverts("oracle: circuit breaker"):
        configured.price(asset)

    # printed again 10 minutes later: not yet a confirmation (Compound's DAI spike held an hour)
    publish(feed, deployer, chain, 2_650)
    configured.sync(asset, sender=keeper)
    st = configured.vol(asset)
    assert st.halted and st.pending_price == 2_600 * WAD and st.pending_since == tripped_at

    # still at that level an hour after it first printed: the move is confirmed
    publish(feed, deployer, chain, 2_640, after=HOUR - 600)
    tx = configured.sync(asset, sender=keeper)
    assert [e.price for e in tx.events if e.event_name == "CircuitBreakerCleared"] == [2_640 * WAD]
    assert not configured.vol(asset).halted
    assert configured.price(asset) == 2_640 * WAD


def test_sync__a_third_level_restarts_the_confirmation_clock(configured, feed, deployer, asset, chain, keeper):
    publish(feed, deployer, chain, 2_600)
    configured.sync(asset, sender=keeper)
    publish(feed, deployer, chain, 3_400, after=1_800)  # beyond both the accepted and the pending level
    configured.sync(asset, sender=keeper)
    st = configured.vol(asset)
    assert st.halted and st.pending_price == 3_400 * WAD and st.pending_since == feed.latestRoundData()[3]
    publish(feed, deployer, chain, 3_410, after=1_800)  # an hour after 2,600, half an hour after 3,400
    configured.sync(asset, sender=keeper)
    assert configured.vol(asset).halted


def test_sync__zero_delay__the_second_round_confirms(configured, feed, deployer, asset, chain, keeper):
    tx = configured.set_confirmation_delay(0, sender=deployer)
    assert [e.seconds for e in tx.events if e.event_name == "ConfirmationDelaySet"] == [0]
    publish(feed, deployer, chain, 2_600)
    configured.sync(asset, sender=keeper)
    publish(feed, deployer, chain, 2_650)
    configured.sync(asset, sender=keeper)
    assert configured.price(asset) == 2_650 * WAD


def test_set_confirmation_delay__bounds_and_owner(configured, deployer, keeper):
    with ape.reverts("oracle: bad confirmation delay"):
        configured.set_confirmation_delay(86_401, sender=deployer)
    with ape.reverts("ownable: caller is not the owner"):
        configured.set_confirmation_delay(60, sender=keeper)
    configured.set_confirmation_delay(86_400, sender=deployer)
    assert configured.confirmation_delay() == 86_400


def test_sync__spike_reverts__accepted_price_kept(configured, feed, deployer, asset, chain, keeper):
    publish(feed, deployer, chain, 2_600)
    configured.sync(asset, sender=keeper)
    publish(feed, deployer, chain, 2_010)  # back near the accepted price
    configured.sync(asset, sender=keeper)
    st = configured.vol(asset)
    assert not st.halted and st.last_price == 2_010 * WAD


def test_sync__folds_every_missed_round(configured, feed, deployer, asset, chain, keeper):
    for p in (2_100, 2_200, 2_300):  # each within 20%, together +15%
        publish(feed, deployer, chain, p)
    tx = configured.sync(asset, sender=keeper)
    accepted = [e.price for e in tx.events if e.event_name == "RoundAccepted"]
    assert accepted == [2_100 * WAD, 2_200 * WAD, 2_300 * WAD]
    assert configured.vol(asset).last_round == feed.latest_round()


def test_sync__nothing_new__no_change(configured, asset, keeper):
    before = configured.vol(asset)
    tx = configured.sync(asset, sender=keeper)
    assert configured.vol(asset) == before
    assert len(tx.events) == 0


def test_sync__non_positive_round__rejected_and_skipped(configured, feed, deployer, asset, chain, keeper):
    publish(feed, deployer, chain, 0)
    tx = configured.sync(asset, sender=keeper)
    assert [e.event_name for e in tx.events] == ["RoundRejected"]
    assert configured.vol(asset).last_price == 2_000 * WAD


def test_clear_circuit_breaker__owner_accepts_current_answer(configured, feed, deployer, asset, chain, keeper):
    publish(feed, deployer, chain, 1_000)  # -50%
    configured.sync(asset, sender=keeper)
    with ape.reverts("ownable: caller is not the owner"):
        configured.clear_circuit_breaker(asset, sender=keeper)
    configured.clear_circuit_breaker(asset, sender=deployer)
    assert configured.price(asset) == 1_000 * WAD


def test_clear_circuit_breaker__not_halted__reverts(configured, deployer, asset):
    with ape.reverts("oracle: not halted"):
        configured.clear_circuit_breaker(asset, sender=deployer)


def test_volatility__ewma_matches_python_mirror(configured, feed, deployer, asset, chain, keeper):
    lam = 94 * 10**16
    variance = (8 * 10**17) ** 2 // WAD
    last_price, last_time = 2_000 * WAD, feed.latestRoundData()[3]
    for p in (2_050, 1_990, 2_100, 2_080):
        publish(feed, deployer, chain, p, after=900)
        configured.sync(asset, sender=keeper)
        price = p * WAD
        updated = feed.latestRoundData()[3]
        dt = max(updated - last_time, 60)
        r = abs(price - last_price) * WAD // last_price
        sample = r * r // WAD * 31_536_000 // dt
        variance = (lam * variance + (WAD - lam) * sample) // WAD
        last_price, last_time = price, updated
    assert configured.vol(asset).variance == variance


def test_volatility__volatile_rounds__maintenance_rises_at_bounded_speed(configured, feed, deployer, asset, chain, keeper):
    sigma0 = configured.volatility(asset)
    price = 2_000
    for i in range(6):  # +-15% every 10 minutes: realised vol far above 80%
        price = price * (115 if i % 2 == 0 else 87) // 100
        publish(feed, deployer, chain, price)
        configured.sync(asset, sender=keeper)
    sigma = configured.volatility(asset)
    mm_sigma = configured.maintenance_volatility(asset)
    assert sigma > 2 * sigma0  # the initial-margin volatility moved at once
    # the maintenance volatility rose at most 0.1 per hour over the hour that passed
    elapsed = chain.pending_timestamp - configured.vol(asset).mm_anchor_time
    assert mm_sigma <= sigma0 + 10**17 * (3600 + elapsed) // 3600
    assert mm_sigma < sigma
    # and catches up later
    chain.pending_timestamp += 120 * HOUR  # (10 - 0.8) / 0.1 = 92 hours to reach the cap
    chain.mine()
    assert configured.maintenance_volatility(asset) == configured.volatility(asset)


def test_set_feed__bad_parameters__revert(oracle, deployer, make_aggregator, asset, keeper):
    feed = make_aggregator()
    ok = dict(heartbeat=HOUR, lo=WAD, hi=10**6 * WAD, dev=2 * 10**17, sigma=8 * 10**17)

    def call(sender=deployer, **kw):
        a = {**ok, **kw}
        return oracle.set_feed(asset, feed, a["heartbeat"], a["lo"], a["hi"], a["dev"], a["sigma"], sender=sender)

    with ape.reverts("ownable: caller is not the owner"):
        call(sender=keeper)
    with ape.reverts("oracle: bad heartbeat"):
        call(heartbeat=59)
    with ape.reverts("oracle: bad heartbeat"):
        call(heartbeat=7 * 86_400 + 1)
    with ape.reverts("oracle: bad bounds"):
        call(lo=0)
    with ape.reverts("oracle: bad bounds"):
        call(hi=WAD)
    with ape.reverts("oracle: bad deviation"):
        call(dev=10**16 - 1)
    with ape.reverts("oracle: bad deviation"):
        call(dev=WAD + 1)
    with ape.reverts("oracle: bad sigma"):
        call(sigma=10 * WAD + 1)
    with ape.reverts("oracle: answer out of bounds"):
        call(lo=3_000 * WAD)
    assert oracle.asset_count() == 0


def test_set_parameters__bounds(oracle, deployer):
    with ape.reverts("oracle: bad lambda"):
        oracle.set_parameters(5 * 10**17 - 1, 10**17, sender=deployer)
    with ape.reverts("oracle: bad lambda"):
        oracle.set_parameters(999 * 10**15 + 1, 10**17, sender=deployer)
    with ape.reverts("oracle: bad vol speed"):
        oracle.set_parameters(94 * 10**16, 0, sender=deployer)
    with ape.reverts("oracle: bad vol speed"):
        oracle.set_parameters(94 * 10**16, WAD + 1, sender=deployer)
    oracle.set_parameters(9 * 10**17, 2 * 10**17, sender=deployer)
    assert oracle.ewma_lambda() == 9 * 10**17
