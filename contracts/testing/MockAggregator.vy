# pragma version ~=0.4.3
"""
@title MockAggregator
@notice A Chainlink-compatible price feed for tests and simulations. The oracle bot (or a test)
        publishes rounds; readers see exactly what a Chainlink AggregatorV3 proxy returns:
        `(roundId, answer, startedAt, updatedAt, answeredInRound)` with answeredInRound == roundId,
        and `getRoundData` of an unknown round reverts as Chainlink's does.
@dev Not for production: any address set as `updater` can publish any answer.
"""

from ..interfaces import IAggregatorV3

implements: IAggregatorV3


event AnswerUpdated:
    current: indexed(int256)
    roundId: indexed(uint256)
    updatedAt: uint256


event NewRound:
    roundId: indexed(uint256)
    startedBy: indexed(address)
    startedAt: uint256


decimals: public(uint8)  # decimals of `answer` (8 for Chainlink USD pairs)
description: public(String[64])  # e.g. "ETH / USD"
version: public(uint256)  # Chainlink's aggregator version number
latest_round: public(uint80)  # id of the newest round, 0 before the first
updater: public(address)  # who may publish rounds
# round id => answer (int192, two's complement) | updatedAt << 192: one slot per round, as
# Chainlink's OCR aggregator packs its transmissions (startedAt == updatedAt there too)
_rounds: HashMap[uint80, uint256]


@deploy
def __init__(decimals_: uint8, description_: String[64], initial_answer: int256):
    self.decimals = decimals_
    self.description = description_
    self.version = 4
    self.updater = msg.sender
    self._publish(1, initial_answer, block.timestamp)


@external
def set_updater(updater: address):
    """
    @notice Hand publishing rights to another address (the oracle bot).
    """
    assert msg.sender == self.updater, "aggregator: not updater"
    self.updater = updater


@external
def updateAnswer(answer: int256):
    """
    @notice Publish a new round at the current block time (Chainlink MockV3Aggregator's call).
    @param answer The price with `decimals` decimals (may be <= 0 to test rejection).
    """
    assert msg.sender == self.updater, "aggregator: not updater"
    self._publish(self.latest_round + 1, answer, block.timestamp)


@external
def updateRoundData(_roundId: uint80, _answer: int256, _timestamp: uint256, _startedAt: uint256):
    """
    @notice Publish round `_roundId` as the latest with an explicit timestamp, e.g. an old one
            to test staleness (Chainlink MockV3Aggregator's call).
    @dev startedAt is reported equal to updatedAt, as Chainlink's OCR aggregators do; the
         `_startedAt` argument is accepted for the call's shape and not stored.
    @param _roundId The round id, > 0.
    @param _answer The price with `decimals` decimals.
    @param _timestamp The round's updatedAt.
    @param _startedAt Ignored (see @dev).
    """
    assert msg.sender == self.updater, "aggregator: not updater"
    assert _roundId > 0, "aggregator: round zero"
    self._publish(_roundId, _answer, _timestamp)


@view
@external
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    """
    @notice The newest round, as Chainlink returns it.
    """
    round_id: uint80 = self.latest_round
    answer: int256 = 0
    updated_at: uint256 = 0
    answer, updated_at = self._round(round_id)
    return round_id, answer, updated_at, updated_at, round_id


@view
@external
def getRoundData(_roundId: uint80) -> (uint80, int256, uint256, uint256, uint80):
    """
    @notice A past round; reverts for a round that does not exist, as Chainlink's does.
    """
    answer: int256 = 0
    updated_at: uint256 = 0
    answer, updated_at = self._round(_roundId)
    assert updated_at != 0, "No data present"
    return _roundId, answer, updated_at, updated_at, _roundId


@view
@external
def latestAnswer() -> int256:
    answer: int256 = 0
    updated_at: uint256 = 0
    answer, updated_at = self._round(self.latest_round)
    return answer


@view
def _round(round_id: uint80) -> (int256, uint256):
    word: uint256 = self._rounds[round_id]
    answer: int256 = convert(word & (2**192 - 1), int256)
    if answer >= 2**191:
        answer -= 2**192
    return answer, word >> 192


def _publish(round_id: uint80, answer: int256, updated_at: uint256):
    assert answer >= -(2**191) and answer < 2**191, "aggregator: answer too large"
    bits: uint256 = 0
    if answer < 0:
        bits = convert(answer + 2**192, uint256)
    else:
        bits = convert(answer, uint256)
    self._rounds[round_id] = bits | (updated_at << 192)
    self.latest_round = round_id
    log NewRound(roundId=convert(round_id, uint256), startedBy=msg.sender, startedAt=updated_at)
    log AnswerUpdated(current=answer, roundId=convert(round_id, uint256), updatedAt=updated_at)
