# pragma version ~=0.4.3
"""
@title ChainlinkMockV3Aggregator
@notice Chainlink's own test aggregator (MockV3Aggregator.sol, v0.8 tests) transcribed call for
        call, standing in for a feed the project did not write: anyone may `updateAnswer` or
        `updateRoundData`, `latestRoundData` returns the stored round as given, `version` is 0.
        The interop test runs the protocol, `Protocol.publish` and the oracle bot against it.
@dev Test-only: not MockAggregator on purpose (no updater role, Chainlink's storage layout).
"""

version: public(uint256)  # 0, as MockV3Aggregator
decimals: public(uint8)  # decimals of every answer
description: public(String[64])  # "v0.8/tests/MockV3Aggregator.sol", as Chainlink's
latestAnswer: public(int256)  # the newest answer
latestTimestamp: public(uint256)  # updatedAt of the newest round
latestRound: public(uint256)  # id of the newest round
getAnswer: public(HashMap[uint256, int256])  # round id => answer
getTimestamp: public(HashMap[uint256, uint256])  # round id => updatedAt
_started_at: HashMap[uint256, uint256]  # round id => startedAt


@deploy
def __init__(decimals_: uint8, initial_answer: int256):
    self.decimals = decimals_
    self.description = "v0.8/tests/MockV3Aggregator.sol"
    self._update(initial_answer)


@external
def updateAnswer(answer: int256):
    """
    @notice A new round with `answer` at the current block time (anyone may call).
    """
    self._update(answer)


@external
def updateRoundData(round_id: uint80, answer: int256, timestamp: uint256, started_at: uint256):
    """
    @notice Store round `round_id` as the latest with the given answer and times (anyone).
    """
    rid: uint256 = convert(round_id, uint256)
    self.latestRound = rid
    self.latestAnswer = answer
    self.latestTimestamp = timestamp
    self.getAnswer[rid] = answer
    self.getTimestamp[rid] = timestamp
    self._started_at[rid] = started_at


@view
@external
def getRoundData(round_id: uint80) -> (uint80, int256, uint256, uint256, uint80):
    """
    @notice The stored round, as MockV3Aggregator returns it (zeros for an unknown round).
    """
    rid: uint256 = convert(round_id, uint256)
    return round_id, self.getAnswer[rid], self._started_at[rid], self.getTimestamp[rid], round_id


@view
@external
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    """
    @notice The newest round.
    """
    rid: uint256 = self.latestRound
    return convert(rid, uint80), self.getAnswer[rid], self._started_at[rid], self.getTimestamp[rid], convert(rid, uint80)


def _update(answer: int256):
    rid: uint256 = self.latestRound + 1
    self.latestAnswer = answer
    self.latestTimestamp = block.timestamp
    self.latestRound = rid
    self.getAnswer[rid] = answer
    self.getTimestamp[rid] = block.timestamp
    self._started_at[rid] = block.timestamp
