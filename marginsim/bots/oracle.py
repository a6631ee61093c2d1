"""The oracle bot: plays the protocol's mock Chainlink aggregators from a price path.

Only meaningful where the feeds are `MockAggregator`s (deployments from scripts/deploy.py) and
the bot's signer is their updater (the deployer). It walks a `marginsim.feeds` price path in
real time, accelerated `speed` times: path second t falls due at wall second t / speed after the
start. The rounds are exactly those `feeds.publish_rounds` gives for the path (Chainlink's
deviation threshold and heartbeat, the simulator's publisher); each is published with
`updateAnswer` and folded into the router with `OracleRouter.sync`, as `Protocol.publish` does.
Feeds that no path drives (and the path's own once it has ended) get their latest answer
republished once it is half the router's heartbeat old, so they never go stale.

On a dev network (the embedded chain, anvil) with speed > 1 the bot may also move the chain's
clock with each round (`marginsim.story.advance_time`), so that on-chain time, funding and the
router's volatility follow the path's time; on any other network time is never touched.

Sources (`--source`): `gbm` (mu 0, sigma 80%, one day of one-minute steps, `--seed`), `shock` or
`shock:RETURN` (flat 10 minutes, RETURN (default -0.30) over 30 minutes, flat an hour), and
`replay:PATH` (a 10-minute OHLC bar file such as eth_usd_10min_2020-03-12.csv, a path or a name
in the shared data folder, scaled to start at the feed's current price so the router's circuit
breaker does not reject the first round).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ape.exceptions import ApeException

from marginsim import feeds
from marginsim.bots.common import CHAIN_ERRORS, BotConfigError, first_line, run_loop
from marginsim.protocol import Protocol
from marginsim.story import advance_time

SOURCE_KINDS = ("gbm", "shock", "replay")
STEP_SECONDS = 60  # one path sample a minute
GBM_SIGMA = 0.80  # annualised, a volatile crypto day
GBM_DURATION_SECONDS = 86_400
SHOCK_RETURN = -0.30
SHOCK_FLAT_BEFORE_SECONDS = 600  # time for keepers to index the accounts before the fall
SHOCK_DURATION_SECONDS = 1_800
SHOCK_FLAT_AFTER_SECONDS = 3_600


@dataclass(frozen=True)
class PriceSource:
    """A parsed `--source`."""

    kind: str  # gbm | shock | replay
    file: Path | None = None  # replay only
    shock_return: float = SHOCK_RETURN  # shock only


def parse_source(text: str) -> PriceSource:
    """`gbm`, `shock`, `shock:RETURN` or `replay:PATH`; a one-line BotConfigError otherwise."""
    kind, _, argument = text.partition(":")
    if kind == "gbm" and not argument:
        return PriceSource("gbm")
    if kind == "shock":
        if not argument:
            return PriceSource("shock")
        try:
            shock_return = float(argument)
        except ValueError:
            raise BotConfigError(f"oracle: --source shock:RETURN needs a number such as -0.3, got {argument!r}") from None
        if not -1 < shock_return < 10:
            raise BotConfigError(f"oracle: --source shock:RETURN must be in (-1, 10), got {argument}")
        return PriceSource("shock", shock_return=shock_return)
    if kind == "replay" and argument:
        path = Path(argument)
        if not path.is_file():
            shared = feeds.data_file(argument)
            if not shared.is_file():
                raise BotConfigError(f"oracle: --source replay:PATH: no such price file: {argument} (nor {shared})")
            path = shared
        return PriceSource("replay", file=path)
    raise BotConfigError(f"oracle: --source must be gbm, shock, shock:RETURN or replay:PATH, got {text!r}")


def source_path(source: PriceSource, s0: float, seed: int = 0) -> feeds.PricePath:
    """The source's price path starting at `s0` USD, its first sample at path time 0."""
    try:
        if source.kind == "gbm":
            return feeds.gbm_path(
                feeds.GbmConfig(
                    mu=0.0, sigma=GBM_SIGMA, s0=s0, step_seconds=STEP_SECONDS, duration_seconds=GBM_DURATION_SECONDS, seed=seed
                )
            )
        if source.kind == "shock":
            return feeds.shock_path(
                feeds.ShockConfig(
                    s0=s0,
                    shock_return=source.shock_return,
                    shock_duration_seconds=SHOCK_DURATION_SECONDS,
                    flat_before_seconds=SHOCK_FLAT_BEFORE_SECONDS,
                    flat_after_seconds=SHOCK_FLAT_AFTER_SECONDS,
                    step_seconds=STEP_SECONDS,
                )
            )
        replay = feeds.replay_path(feeds.ReplayConfig(path=source.file, step_seconds=STEP_SECONDS))
    except ValueError as error:  # feeds' own one-line messages (FeedDataError included)
        raise BotConfigError(f"oracle: --source: {first_line(error)}") from None
    scale = s0 / float(replay.prices[0])
    return feeds.PricePath(replay.timestamps, replay.prices * scale, replay.step_seconds).starting_at(0)


@dataclass(frozen=True)
class OracleConfig:
    """How the oracle bot runs; the CLI options of scripts/oracle.py."""

    symbol: str = "WETH"  # the feed the path drives
    speed: float = 1.0  # path seconds per wall second
    deviation: float = 0.005  # Chainlink deviation threshold
    heartbeat: int = 3_600  # Chainlink heartbeat, path seconds
    poll_seconds: float = 1.0  # longest wall time between two checks
    move_chain_time: bool = False  # dev networks only: move the chain's clock with the path

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise BotConfigError(f"oracle: --speed must be > 0, got {self.speed}")
        if not 0 < self.deviation < 1:
            raise BotConfigError(f"oracle: --deviation must be in (0, 1), got {self.deviation}")
        if isinstance(self.heartbeat, bool) or not isinstance(self.heartbeat, int) or self.heartbeat < 1:
            raise BotConfigError(f"oracle: --heartbeat must be a whole number of seconds >= 1, got {self.heartbeat}")
        if not self.poll_seconds > 0:
            raise BotConfigError(f"oracle: poll_seconds must be > 0, got {self.poll_seconds}")


@dataclass
class OracleSummary:
    """What an oracle bot did, printed as one line when it stops."""

    iterations: int = 0
    rounds: Counter = field(default_factory=Counter)  # reason -> rounds published from the path
    refreshes: int = 0  # heartbeat republications of feeds without a path
    syncs: int = 0  # router syncs of feeds this signer cannot publish (real feeds), on their new rounds
    rejected: int = 0  # rounds the router rejected or that tripped its circuit breaker
    path_seconds: int = 0  # path time reached
    path_length_seconds: int = 0
    last_price_usd: float = 0.0
    symbol: str = "WETH"
    interrupted: bool = False

    def line(self) -> str:
        how = "interrupted (Ctrl-C)" if self.interrupted else "stopped"
        reasons = ", ".join(f"{self.rounds[r]} {r}" for r in ("initial", "deviation", "heartbeat") if self.rounds[r])
        return (
            f"oracle {how} after {self.iterations} iterations: {sum(self.rounds.values())} {self.symbol} rounds "
            f"({reasons or 'none'}), {self.refreshes} heartbeat refreshes of other feeds, {self.syncs} syncs of feeds "
            f"it cannot publish, {self.rejected} rejected; "
            f"path at {self.path_seconds:,} of {self.path_length_seconds:,} s, last {self.symbol} ${self.last_price_usd:,.2f}"
        )


class OracleBot:
    """Publishes a path's Chainlink rounds on a MockAggregator as (accelerated) time passes."""

    def __init__(
        self,
        protocol: Protocol,
        chain: Any,
        signer: Any,
        path: feeds.PricePath,
        config: OracleConfig = OracleConfig(),
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ):
        if config.symbol not in protocol.feeds:
            raise BotConfigError(f"oracle: --asset must be one of {', '.join(protocol.feeds)}, got {config.symbol!r}")
        self.protocol = protocol
        self.chain = chain
        self.signer = signer
        self.config = config
        self.log = log
        self.clock = clock
        self.decimals: dict[str, int] = {}
        self.publishable: dict[str, bool] = {}  # symbol -> whether this signer can publish rounds
        self._synced_round: dict[str, int] = {}  # symbol -> the feed's round last synced (real feeds)
        self.refresh_after: dict[str, int] = {}  # symbol -> age (s) at which it is republished
        for symbol, feed in protocol.feeds.items():
            self._check_feed(symbol, feed)
        path = path.starting_at(0)
        publisher = feeds.PublisherConfig(
            deviation_threshold=config.deviation, heartbeat_seconds=config.heartbeat, decimals=self.decimals[config.symbol]
        )
        self.rounds = feeds.publish_rounds(path, publisher)
        self.path_length = int(path.timestamps[-1])
        self.summary = OracleSummary(path_length_seconds=self.path_length, symbol=config.symbol)
        self._next_round = 0
        self._started: float | None = None
        self._chain_start = 0
        self._last_answer: dict[str, int] = {}

    def _check_feed(self, symbol: str, feed: Any) -> None:
        token = self.protocol.tokens[symbol]
        routed = self.protocol.oracle.feeds(token)
        if str(routed.aggregator) != str(feed.address):
            raise BotConfigError(
                f"oracle: the OracleRouter reads {symbol} from {routed.aggregator}, "
                f"not the deployment's feed {feed.address}: redeploy or fix the deployments file"
            )
        # a feed this signer can publish to (the project's MockAggregator with this signer as
        # updater, or Chainlink's MockV3Aggregator) takes a dry run of `updateAnswer`; a real
        # feed does not, and is only synced into the router when it publishes a round itself
        latest = int(feed.latestRoundData()[1])
        try:
            feed.updateAnswer.call(latest, sender=self.signer)
            self.publishable[symbol] = True
        except (ApeException, ValueError):
            self.publishable[symbol] = False
            self.log(
                f"oracle: {self.signer.address} cannot publish {symbol} on {feed.address} "
                "(a feed it does not control): syncing only"
            )
        self.decimals[symbol] = int(feed.decimals())
        self.refresh_after[symbol] = max(1, min(self.config.heartbeat, int(routed.heartbeat) // 2))

    # ------------------------------------------------------------------ the loop
    def run(self, max_iterations: int | None = None, sleep: Callable[[float], None] = time.sleep) -> OracleSummary:
        """Publish until `max_iterations` or Ctrl-C; returns the summary (also kept in .summary)."""
        self.log(
            f"oracle {self.signer.address} playing {self.config.symbol}: {len(self.rounds)} rounds over "
            f"{self.path_length:,} s of path at {self.config.speed:g}x "
            f"({'chain time follows the path' if self.config.move_chain_time else 'chain time untouched'})"
        )
        iterations, interrupted = run_loop(self.step, sleep, max_iterations)
        self.summary.iterations = iterations
        self.summary.interrupted = interrupted
        return self.summary

    def path_time(self) -> float:
        """Path seconds elapsed since the first step."""
        return 0.0 if self._started is None else (self.clock() - self._started) * self.config.speed

    def step(self) -> float:
        """Publish what is due; returns the wall seconds to wait before the next check."""
        if self._started is None:
            self._started = self.clock()
            self._chain_start = int(self.chain.blocks.head.timestamp)
        t = self.path_time()
        try:
            self._publish_due(t)
            chain_now = self._move_clock(self._chain_start + int(t))
            self._refresh_idle(chain_now)
        except CHAIN_ERRORS as error:
            self.log(f"iteration cut short: {first_line(error)}")
        self.summary.path_seconds = int(min(t, self.path_length))
        if self._next_round < len(self.rounds):
            due = self.rounds[self._next_round].round_time / self.config.speed - (self.clock() - self._started)
            return min(self.config.poll_seconds, max(due, 0.0))
        return self.config.poll_seconds

    def _publish_due(self, t: float) -> None:
        symbol = self.config.symbol
        if not self.publishable[symbol]:
            self._next_round = len(self.rounds)  # no path to play on a feed it cannot publish
            return
        while self._next_round < len(self.rounds) and self.rounds[self._next_round].round_time <= t:
            due = self.rounds[self._next_round]
            self._move_clock(self._chain_start + due.round_time)
            self._publish(symbol, due.answer, f"round {due.round_id} ({due.reason}, path {due.observed_time:,} s)")
            self.summary.rounds[due.reason] += 1
            self.summary.last_price_usd = due.answer / 10 ** self.decimals[symbol]
            self._next_round += 1
            if self._next_round == len(self.rounds):
                self.log(f"path finished at ${self.summary.last_price_usd:,.2f}: {symbol} is now held by heartbeat")

    def _refresh_idle(self, chain_now: int) -> None:
        """Republish the latest answer of every feed no path drives, at half its router heartbeat."""
        path_running = self._next_round < len(self.rounds)
        for symbol, feed in self.protocol.feeds.items():
            if path_running and symbol == self.config.symbol:
                continue
            round_id, answer, _started_at, updated_at, _answered_in = feed.latestRoundData()
            if not self.publishable[symbol]:
                if self._synced_round.get(symbol) != int(round_id):
                    self.protocol.oracle.sync(self.protocol.tokens[symbol], sender=self.signer)
                    self._synced_round[symbol] = int(round_id)
                    self.summary.syncs += 1
                continue
            if chain_now - int(updated_at) >= self.refresh_after[symbol]:
                self._publish(symbol, int(answer), "heartbeat refresh")
                self.summary.refreshes += 1

    def _move_clock(self, target: int) -> int:
        """On a dev network, move the chain's clock forward to `target`; the time the next
        transaction will carry (at least the head's)."""
        head = int(self.chain.blocks.head.timestamp)
        if not self.config.move_chain_time:
            return head
        now = max(head, int(self.chain.pending_timestamp))
        if target > now:
            advance_time(self.chain, target - now)
            now = target
        return now

    def _publish(self, symbol: str, answer: int, what: str) -> None:
        """updateAnswer then OracleRouter.sync, as Protocol.publish does; logs the router's verdict."""
        token, feed = self.protocol.tokens[symbol], self.protocol.feeds[symbol]
        previous = self._last_answer.get(symbol)
        feed.updateAnswer(answer, sender=self.signer)
        receipt = self.protocol.oracle.sync(token, sender=self.signer)
        self._last_answer[symbol] = answer
        names = {event.event_name for event in receipt.events}
        if "CircuitBreakerTripped" in names or "RoundRejected" in names:
            self.summary.rejected += 1
            verdict = "CIRCUIT BREAKER tripped" if "CircuitBreakerTripped" in names else "REJECTED by the router"
        else:
            verdict = f"accepted, vol {int(self.protocol.oracle.volatility(token)) / 10**18:.1%}"
        change = "" if not previous else f" ({answer / previous - 1:+.2%})"
        self.log(f"block {receipt.block_number}  {symbol} {what} ${answer / 10 ** self.decimals[symbol]:,.2f}{change}  {verdict}")
