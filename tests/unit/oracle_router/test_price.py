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


@pytest.mark.parametrize("decimals", [6, 8, 18])
def test_price__any_feed_decimals__normalised_to_wad(oracle, deployer, make_aggregator, asset, decimals):
    feed = make_aggregator(price_usd=1_234, decimals=decimals)
    oracle.set_feed(asset, feed, HOUR, WAD, 10**6 * WAD, 2 * 10**17, 8 * 10**17, sender=deployer)
    assert oracle.price(asset) == 1_234 * WAD


def test_price__unknown_asset__reverts(oracle, asset):
    with ape.reverts("oracle: unknown asset"):
        oracle.price(asset)


def test_price__non_positive_answer__reverts(configured, feed, deployer, asset):
    feed.updateAnswer(0, sender=deployer)
    with ape.reverts("oracle: non-positive answer"):
        configured.price(asset)
    feed.updateAnswer(-5, sender=deployer)
    with ape.reverts("oracle: non-positive answer"):
        configured.price(asset)


def test_price__stale_answer__reverts(configured, feed, deployer, asset, chain):
    chain.pending_timestamp += HOUR + 1
    chain.mine()
    with ape.reverts("oracle: stale answer"):
        configured.price(asset)


def test_price__old_updated_at__reverts(configured, feed, deployer, asset, chain):
    feed.updateRoundData(
        feed.latest_round() + 1,
        2_000 * 10**8,
        chain.pending_timestamp - 2 * HOUR,
        chain.pending_timestamp - 2 * HOUR,
        sender=deployer,
    )
    with ape.reverts("oracle: stale answer"):
        configured.price(asset)


def test_price__at_heartbeat_edge__accepted(configured, feed, asset, chain):
    updated = feed.latestRoundData()[3]
    chain.pending_timestamp = updated + HOUR
    chain.mine()
    assert configured.price(asset) == 2_000 * WAD


def test_price__answer_at_min_bound__reverts(oracle, deployer, make_aggregator, asset):
    feed = make_aggregator(price_usd=2_000)
    oracle.set_feed(asset, feed, HOUR, 1_500 * WAD, 10**6 * WAD, WAD, 8 * 10**17, sender=deployer)
    feed.updateAnswer(1_500 * 10**8, sender=deployer)  # frozen at minAnswer, as LUNA's feed was
    with ape.reverts("oracle: answer out of bounds"):
        oracle.price(asset)
    feed.updateAnswer(10**6 * 10**8, sender=deployer)
    with ape.reverts("oracle: answer out of bounds"):
        oracle.price(asset)


def test_price__unsynced_jump_beyond_deviation__reverts(configured, feed, deployer, asset):
    feed.updateAnswer(2_500 * 10**8, sender=deployer)  # +25% against a 20% breaker
    with ape.reverts("oracle: circuit breaker"):
        configured.price(asset)


def test_price__unsynced_move_within_deviation__accepted(configured, feed, deployer, asset):
    feed.updateAnswer(2_300 * 10**8, sender=deployer)
    assert configured.price(asset) == 2_300 * WAD


def test_price__backdated_round_rejected_by_sync__still_checked_against_breaker(configured, feed, deployer, asset, chain, keeper):
    chain.pending_timestamp += 600
    feed.updateAnswer(2_100 * 10**8, sender=deployer)
    configured.sync(asset, sender=keeper)
    # a round whose updatedAt is older than the accepted one: sync rejects it
    feed.updateRoundData(
        feed.latest_round() + 1, 3_000 * 10**8, chain.pending_timestamp - 300, chain.pending_timestamp - 300, sender=deployer
    )
    tx = configured.sync(asset, sender=keeper)
    assert [e.event_name for e in tx.events] == ["RoundRejected"]
    with ape.reverts("oracle: circuit breaker"):
        configured.price(asset)
