"""The long-running keeper and oracle bots, driven in-process on the embedded chain with a fake
clock: the oracle publishes a crash's Chainlink rounds, competing keepers liquidate from events
with a mirror equal to the contract's, the loser of a race moves on, Ctrl-C ends a run with a
summary, and bad input fails with one line."""

import importlib.util
import json
import os
import signal
from pathlib import Path

import ape
import pytest
from click.testing import CliRunner

from marginsim import feeds
from marginsim.bots import (
    BotConfigError,
    KeeperBot,
    KeeperConfig,
    OracleBot,
    OracleConfig,
    choose_signer,
    find_deployment_block,
    load_deployment,
    parse_source,
    source_path,
)
from marginsim.orders import trade_now
from marginsim.protocol import DEFAULT_CONFIG, account_id, deploy_protocol
from marginsim.risk import health_of

WAD = 10**18
USDC = 10**6
MAX_UINT = 2**256 - 1
STEP = 60  # path seconds between samples
# ETH falls 21% in 11 minutes, with a -8.1% gap at minute 6
CRASH = (2_000, 1_970, 1_940, 1_910, 1_880, 1_850, 1_700, 1_680, 1_650, 1_620, 1_600, 1_580)
SPEED = 60  # one path minute per fake wall second
TRADERS = (  # (collateral, collateral USD, leverage); negative leverage = short
    ("USDC", 10_000, 10),
    ("USDC", 20_000, 8),
    ("WETH", 10_000, 8),
    ("USDC", 20_000, 3),
    ("USDC", 10_000, -5),
)


class FakeClock:
    """Wall time that passes only when the bot sleeps."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def interrupt(_seconds):
    raise KeyboardInterrupt


def ctrl_c(_seconds):
    """A real Ctrl-C: SIGINT to this process (ape's own handler would exit with status 130)."""
    os.kill(os.getpid(), signal.SIGINT)


def script(name):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"marginsim_script_{name}", Path(__file__).parents[2] / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def market(project, chain, accounts):
    deployer, lp = accounts[0], accounts[1]
    block_before = chain.blocks.head.number
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    ch, usdc = protocol.clearinghouse, protocol.settlement
    usdc.mint(lp, 2_000_000 * USDC, sender=lp)
    usdc.approve(protocol.pool, MAX_UINT, sender=lp)
    protocol.pool.deposit(2_000_000 * USDC, lp, sender=lp)
    usdc.mint(deployer, 20_000 * USDC, sender=deployer)
    usdc.approve(ch, MAX_UINT, sender=deployer)
    ch.fund_insurance(20_000 * USDC, sender=deployer)
    traders = {}
    for signer, (symbol, collateral_usd, leverage) in zip(accounts[4:], TRADERS, strict=False):
        token = usdc if symbol == "USDC" else protocol.tokens[symbol]
        price = WAD if symbol == "USDC" else protocol.oracle.price(token)
        amount = collateral_usd * WAD * 10 ** token.decimals() // price
        token.mint(signer, amount, sender=signer)
        token.approve(ch, MAX_UINT, sender=signer)
        ch.deposit(token, amount, 0, sender=signer)
        size = abs(leverage) * collateral_usd * WAD * WAD // protocol.oracle.price(protocol.tokens["WETH"])
        trade_now(ch, protocol.markets["ETH-PERP"], size if leverage > 0 else -size, 0, 0, sender=signer)
        traders[(symbol, collateral_usd, leverage)] = account_id(signer)
    for keeper in (accounts[2], accounts[3]):
        usdc.mint(keeper, 1_000_000 * USDC, sender=keeper)  # to buy collateral of accounts in debt
    path = feeds.PricePath([STEP * i for i in range(len(CRASH))], [float(p) for p in CRASH], STEP)
    clock = FakeClock()
    oracle_log = []
    oracle_bot = OracleBot(
        protocol, chain, deployer, path, OracleConfig(speed=SPEED, move_chain_time=True), log=oracle_log.append, clock=clock
    )
    return {
        "protocol": protocol,
        "block_before": block_before,
        "traders": traders,
        "path": path,
        "clock": clock,
        "oracle": oracle_bot,
        "oracle_log": oracle_log,
        "chain_start": chain.blocks.head.timestamp,
    }


@pytest.fixture(scope="module")
def crash(market, chain, accounts):
    """The whole run, in one module fixture (ape reverts each test's own transactions):
    the oracle bot publishes the first six rounds; two keepers race for the same accounts; the
    fast one liquidates the rest of the crash round by round while the slow one only watches;
    then the path ends and 40 minutes pass. Mirror checks are recorded at every step."""
    protocol, oracle, clock = market["protocol"], market["oracle"], market["clock"]
    run = {"mirror_checks": [], "logs": {"fast": [], "slow": []}}
    start = find_deployment_block(chain, protocol.clearinghouse.address)
    bots = {
        name: KeeperBot(protocol, chain, signer, start, KeeperConfig(name=name, poll_seconds=0), log=run["logs"][name].append)
        for name, signer in (("fast", accounts[2]), ("slow", accounts[3]))
    }
    run["bots"] = bots

    def check_mirrors():
        head = chain.blocks.head
        data = bots["fast"].market_data(head.number, head.timestamp)
        fast, slow = bots["fast"].mirror_healths(data), bots["slow"].mirror_healths(data)  # each indexes first
        indexed = sorted(fast)
        lens = dict(zip(indexed, protocol.lens.healths(indexed), strict=False))
        contract = {a: health_of(protocol.clearinghouse, a) for a in indexed}
        run["mirror_checks"].append((fast, slow, lens, contract))

    # 1. the oracle bot publishes the first six rounds (to $1,850, -7.5%)
    run["oracle_blocks"] = [chain.blocks.head.number]
    run["oracle_summary"] = oracle.run(max_iterations=6, sleep=clock.sleep)
    run["oracle_rounds"] = dict(run["oracle_summary"].rounds)
    run["oracle_blocks"].append(chain.blocks.head.number)
    run["price_at_race"] = protocol.oracle.price(protocol.tokens["WETH"])
    run["time_at_race"] = chain.blocks.head.timestamp

    # 2. both keepers plan before either sends: the second one's calls revert
    run["race_start"] = chain.blocks.head.number + 1
    run["plans"] = bots["fast"].scan(), bots["slow"].scan()
    bots["fast"].execute(run["plans"][0])
    bots["slow"].execute(run["plans"][1])
    run["race_end"] = chain.blocks.head.number
    run["race_counts"] = {name: (bot.summary.liquidations, bot.summary.lost_races) for name, bot in bots.items()}
    check_mirrors()

    # 3. the rest of the path, gap included, one round at a time
    run["crash_start"] = chain.blocks.head.number + 1
    for _ in range(len(CRASH) - 6):
        clock.sleep(1)
        oracle.step()
        bots["fast"].step()  # the slow keeper only watches: its index must stay exact too
        check_mirrors()
    run["crash_end"] = chain.blocks.head.number

    # 4. the path is over; 40 minutes of path time pass (past half the router's heartbeat)
    refreshes = oracle.summary.refreshes
    clock.sleep(40)
    oracle.step()
    run["refreshed"] = oracle.summary.refreshes - refreshes
    run["feed_ages"] = {s: chain.blocks.head.timestamp - f.latestRoundData()[3] for s, f in protocol.feeds.items()}
    run["final_price"] = protocol.oracle.price(protocol.tokens["WETH"])
    bots["fast"].step()
    check_mirrors()  # funding accrued over the 40 minutes
    return run


def liquidations(protocol, chain, start, stop):
    return list(protocol.liquidation_engine.Liquidation.range(start, stop + 1))


def test_deployment_block__recorded_in_the_file_or_found_on_the_node(market, project, chain, tmp_path):
    protocol, path = market["protocol"], tmp_path / "deployment.json"
    protocol.save(path)
    assert load_deployment(project, chain, path, "keeper")[1] is None  # scripts/deploy.py records none yet
    # settlement token, its supply minted to the deployer, oracle router, then the clearinghouse:
    # one block each
    assert find_deployment_block(chain, protocol.clearinghouse.address) == market["block_before"] + 4
    path.write_text(json.dumps({**json.loads(path.read_text()), "deployed_block": market["block_before"] + 1}))
    loaded, block = load_deployment(project, chain, path, "keeper")
    assert block == market["block_before"] + 1 and loaded.addresses() == protocol.addresses()


def test_oracle_bot__publishes_the_chainlink_rounds_of_the_path(market, crash):
    protocol = market["protocol"]
    first, last = crash["oracle_blocks"]
    expected = feeds.publish_rounds(market["path"], feeds.PublisherConfig(decimals=8))[:6]
    published = [int(log.current) for log in protocol.feeds["WETH"].AnswerUpdated.range(first + 1, last + 1)]
    assert published == [r.answer for r in expected] == [p * 10**8 for p in CRASH[:6]]
    assert crash["oracle_rounds"] == {"initial": 1, "deviation": 5}
    assert crash["price_at_race"] == 1_850 * WAD
    # a dev network at 60x: the chain's clock followed the path (5 minutes of it)
    assert crash["time_at_race"] >= market["chain_start"] + 300
    assert sum("accepted" in line for line in market["oracle_log"][:7]) == 6
    assert market["oracle"].summary.rejected == 0


def test_keeper_bots__race_for_the_same_account__loser_logs_and_moves_on(market, crash, chain, accounts):
    protocol = market["protocol"]
    fast_plan, slow_plan = crash["plans"]
    planned = {p.candidate.account for p in fast_plan.liquidations}
    assert planned == {p.candidate.account for p in slow_plan.liquidations}
    assert market["traders"][("USDC", 10_000, 10)] in planned  # the 10x long is below maintenance at -7.5%
    events = liquidations(protocol, chain, crash["race_start"], crash["race_end"])
    assert {int(e.account) for e in events} == planned
    assert {e.liquidator for e in events} == {accounts[2].address}
    assert crash["race_counts"] == {"fast": (len(planned), 0), "slow": (0, len(planned))}
    lost = [line for line in crash["logs"]["slow"] if "lost the race" in line]
    assert len(lost) == len(planned) and all("liquidation: account healthy" in line for line in lost)


def test_keeper_bot__mirror_equals_the_contract_for_every_indexed_account(market, crash):
    assert len(crash["mirror_checks"]) == len(CRASH) - 6 + 2
    for fast, slow, lens, contract in crash["mirror_checks"]:
        assert len(fast) == len(TRADERS)
        assert fast == slow == lens == contract


def test_keeper_bot__liquidates_the_crash_and_sells_collateral(market, crash, chain, accounts):
    protocol, keeper = market["protocol"], crash["bots"]["fast"]
    events = liquidations(protocol, chain, crash["crash_start"], crash["crash_end"])
    assert len(events) >= 2 and {e.liquidator for e in events} == {accounts[2].address}
    # the gap took the WETH-backed long underwater: its collateral was bought, its shortfall booked
    weth_long = market["traders"][("WETH", 10_000, 8)]
    sales = list(protocol.liquidation_engine.CollateralLiquidation.range(crash["crash_start"], crash["crash_end"] + 1))
    assert [int(e.account) for e in sales] == [weth_long] and keeper.summary.collateral_sales == 1
    assert protocol.clearinghouse.balances(weth_long, 1) == 0 and protocol.clearinghouse.settlement(weth_long) == 0
    # nothing indexed is left below maintenance; the 3x long and the short were spared
    assert all(h >= WAD for h in protocol.lens.healths(sorted(keeper.keeper.accounts)))
    every = liquidations(protocol, chain, market["block_before"], chain.blocks.head.number)
    spared = {market["traders"][("USDC", 20_000, 3)], market["traders"][("USDC", 10_000, -5)]}
    assert spared.isdisjoint(int(e.account) for e in every)
    assert len([line for line in crash["logs"]["fast"] if " liquidated " in line]) == keeper.summary.liquidations == len(every)
    rewards = sum(int(e.keeper_reward) for e in every) / USDC
    assert keeper.summary.revenue_usd == pytest.approx(rewards) and keeper.summary.gas_used > 0


def test_oracle_bot__path_over__every_feed_held_by_heartbeat(crash):
    assert crash["refreshed"] == 3  # WETH (its path is over), WBTC and USDT
    assert all(age < 1_800 for age in crash["feed_ages"].values())
    assert crash["final_price"] == 1_580 * WAD  # the last answer, republished


def test_keeper_bot__stale_oracle__its_accounts_wait_and_the_bot_recovers(market, crash, chain, accounts):
    """A price the router refuses (here every feed stale) is not a node failure: the bot keeps
    indexing, leaves the accounts it cannot value alone (as the contracts must), says so once,
    and picks them up again when the price returns (the simulator's keepers do the same)."""
    protocol, log = market["protocol"], []
    keeper = KeeperBot(protocol, chain, accounts[3], market["block_before"], KeeperConfig(poll_seconds=0), log=log.append)
    chain.pending_timestamp += 7_200  # two hours without a round: past the router's heartbeat
    chain.mine()
    keeper.step()
    assert any(line.endswith("no price for WETH (oracle: stale answer): its accounts wait") for line in log)
    assert keeper.summary.failed_iterations == 0 and keeper.summary.liquidations == 0
    assert len(keeper.keeper.accounts) == len(TRADERS)  # indexed all the same
    waiting = keeper.mirror_healths()  # only the accounts the crash left without a position are valued
    assert len(waiting) < len(TRADERS) and set(waiting.values()) == {MAX_UINT}
    keeper.step()
    assert sum("no price for WETH" in line for line in log) == 1  # said once, not every iteration
    market["oracle"].step()  # the oracle bot's heartbeat brings every feed back
    logged = len(log)
    keeper.step()
    assert any(line.endswith("WETH is priced again") for line in log[logged:])
    assert keeper.summary.failed_iterations == 0
    assert keeper.mirror_healths() == dict(
        zip(sorted(keeper.keeper.accounts), protocol.lens.healths(sorted(keeper.keeper.accounts)), strict=False)
    )


def test_bots__ctrl_c__one_line_summary(market, chain, accounts):
    protocol = market["protocol"]
    log = []
    keeper = KeeperBot(protocol, chain, accounts[3], chain.blocks.head.number, KeeperConfig(poll_seconds=0), log=log.append)
    handler = signal.getsignal(signal.SIGINT)
    summary = keeper.run(sleep=ctrl_c)
    assert signal.getsignal(signal.SIGINT) is handler  # ape's handler is back after the loop
    assert summary.interrupted and summary.iterations == 1
    assert summary.line().startswith("keeper interrupted (Ctrl-C) after 1 iterations: 0 liquidations")
    flat = feeds.PricePath([0, STEP], [1_580.0, 1_580.0], STEP)
    oracle = OracleBot(protocol, chain, accounts[0], flat, OracleConfig(), log=log.append, clock=FakeClock())
    summary = oracle.run(sleep=interrupt)
    assert summary.interrupted and summary.iterations == 1 and summary.rounds == {"initial": 1}
    assert "\n" not in summary.line() and summary.line().startswith(
        "oracle interrupted (Ctrl-C) after 1 iterations: 1 WETH rounds"
    )


def test_bad_input__one_line_errors(market, project, chain, accounts, tmp_path):
    protocol = market["protocol"]
    cases = [
        (lambda: load_deployment(project, chain, tmp_path / "missing.json", "keeper"), "keeper: --deployment: no such file"),
        (lambda: parse_source("brownian"), "oracle: --source must be gbm, shock, shock:RETURN or replay:PATH, got 'brownian'"),
        (lambda: parse_source("replay:no-such-file.csv"), "oracle: --source replay:PATH: no such price file: no-such-file.csv"),
        (lambda: parse_source("shock:steep"), "oracle: --source shock:RETURN needs a number"),
        (lambda: OracleConfig(speed=0), "oracle: --speed must be > 0"),
        (lambda: OracleConfig(heartbeat=0), "oracle: --heartbeat must be"),
        (lambda: KeeperConfig(poll_seconds=-1), "keeper: --poll must be >= 0"),
        (
            lambda: choose_signer(ape.accounts, chain.provider.network, "no-such-alias", 1, "keeper"),
            "keeper: --account 'no-such-alias' is not an ape account alias",
        ),
    ]
    elsewhere = tmp_path / "other-chain.json"
    addresses = {**protocol.addresses(), "clearinghouse": "0x" + "12" * 20}
    elsewhere.write_text(json.dumps({"addresses": addresses, "config": {}}))
    cases.append((lambda: load_deployment(project, chain, elsewhere, "oracle"), "oracle: --deployment: no Clearinghouse at"))
    for call, message in cases:
        with pytest.raises(BotConfigError) as error:
            call()
        assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_oracle_bot__feed_it_cannot_publish__says_so_and_only_syncs(market, chain, accounts):
    """A signer that is not a feed's updater (as with a real Chainlink feed) gets one line per
    feed and the bot only syncs the router when a feed has a round it has not synced."""
    lines: list[str] = []
    bot = OracleBot(market["protocol"], chain, accounts[3], market["path"], OracleConfig(), log=lines.append)
    weth_feed = market["protocol"].feeds["WETH"].address
    assert f"oracle: {accounts[3].address} cannot publish WETH on {weth_feed} (a feed it does not control): syncing only" in lines
    assert not any(bot.publishable.values())
    bot.step()
    assert bot.summary.syncs == len(market["protocol"].feeds)  # each feed's current round, once
    assert sum(bot.summary.rounds.values()) == 0  # nothing published
    bot.step()
    assert bot.summary.syncs == len(market["protocol"].feeds)  # no new round, no new sync


def test_sources__paths_start_at_the_feed_price():
    replay = source_path(parse_source("replay:eth_usd_10min_2020-03-12.csv"), 2_000.0)
    raw = feeds.replay_path(feeds.ReplayConfig(feeds.data_file("eth_usd_10min_2020-03-12.csv")))
    assert replay.prices[0] == pytest.approx(2_000.0) and int(replay.timestamps[0]) == 0
    assert replay.prices[-1] / replay.prices[0] == pytest.approx(raw.prices[-1] / raw.prices[0])
    shock = source_path(parse_source("shock:-0.4"), 1_000.0)
    assert shock.prices[0] == 1_000.0 and shock.prices[-1] == pytest.approx(600.0)
    gbm = source_path(parse_source("gbm"), 1_000.0, seed=3)
    assert gbm.prices[0] == 1_000.0 and len(gbm) == 1_441


def test_scripts__bad_input__exit_with_one_line(tmp_path):
    result = CliRunner().invoke(script("keeper").cli, ["--deployment", str(tmp_path / "none.json")])
    assert result.exit_code == 1
    assert (
        result.output
        == f"keeper: --deployment: no such file: {tmp_path / 'none.json'} (run `ape run deploy --network ...` first)\n"
    )
    result = CliRunner().invoke(script("oracle").cli, ["--source", "brownian"])
    assert result.exit_code == 1
    assert result.output == "oracle: --source must be gbm, shock, shock:RETURN or replay:PATH, got 'brownian'\n"


def test_scripts__run_against_a_deployment_file(market, crash, tmp_path):
    path = tmp_path / "deployment.json"
    market["protocol"].save(path)
    result = CliRunner().invoke(script("oracle").cli, ["--deployment", str(path), "--source", "shock", "--max-iterations", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "WETH round 1 (initial, path 0 s) $1,580.00" in lines[1] and lines[-1].startswith(
        "oracle stopped after 1 iterations: 1 WETH rounds"
    )
    result = CliRunner().invoke(script("keeper").cli, ["--deployment", str(path), "--max-iterations", "1", "--poll", "0"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith(f"from block {market['block_before'] + 4}, every 0 s")  # found on the node
    assert "events touched 5 accounts (5 new, 5 indexed)" in lines[1]
    assert lines[-1].startswith("keeper stopped after 1 iterations: 0 liquidations")
