"""What the keeper and oracle bots share: the deployment file, the signer, the polling loop.

Everything a user can get wrong on the command line raises `BotConfigError`, whose message is
one line naming the option (`keeper: --deployment: no such file: ...`); the scripts print it
and exit. The loop takes its `sleep` as an argument and stops after `max_iterations`, so tests
drive a bot in-process with a fake clock, and Ctrl-C (KeyboardInterrupt, from the step or the
sleep) ends it with a summary instead of a traceback. (Importing ape makes SIGINT exit with
status 130 at once; the loop puts Python's own KeyboardInterrupt back while it runs.)
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ape.exceptions import ApeException
from web3.exceptions import Web3Exception

from marginsim.protocol import Protocol, load_protocol

DEPLOYMENTS_DIR = Path("deployments")
DEPLOYMENT_BLOCK_KEY = "deployed_block"  # optional: the block scripts/deploy.py deployed at


# What a node or a call can raise that a long-running bot logs and survives (the next iteration
# tries again): ape's errors (reverts, provider errors), web3's RPC errors, lost connections.
CHAIN_ERRORS = (ApeException, Web3Exception, OSError)


class BotConfigError(ValueError):
    """A bad option or deployment; the message is one line naming it."""


def is_dev_network(network: Any) -> bool:
    """A local chain or a fork: test accounts are funded and the clock may be moved."""
    return network.name == "local" or network.name.endswith("-fork")


def deployment_path(provider: Any, override: str | None) -> Path:
    """The file scripts/deploy.py wrote for this network, or `--deployment FILE`."""
    if override:
        return Path(override)
    return DEPLOYMENTS_DIR / f"{provider.network.ecosystem.name}-{provider.network.name}-{provider.name}.json"


def load_deployment(project: Any, chain: Any, path: Path, role: str) -> tuple[Protocol, int | None]:
    """The protocol of a deployment file, checked to be on this chain, and the block it was
    deployed at when the file records it."""
    path = Path(path)
    if not path.is_file():
        raise BotConfigError(f"{role}: --deployment: no such file: {path} (run `ape run deploy --network ...` first)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BotConfigError(f"{role}: --deployment: {path} is not JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("addresses"), dict) or not isinstance(data.get("config"), dict):
        raise BotConfigError(f"{role}: --deployment: {path} has no addresses/config (not written by scripts/deploy.py)")
    clearinghouse = data["addresses"].get("clearinghouse")
    if not clearinghouse or not chain.provider.get_code(clearinghouse):
        raise BotConfigError(
            f"{role}: --deployment: no Clearinghouse at {clearinghouse} on this chain: {path} is from another chain "
            "(run `ape run deploy --network ...` again)"
        )
    try:
        protocol = load_protocol(project, path)
    except (KeyError, TypeError, ValueError) as error:
        raise BotConfigError(f"{role}: --deployment: {path} is malformed: {error!r}") from None
    block = data.get(DEPLOYMENT_BLOCK_KEY)
    return protocol, block if isinstance(block, int) and not isinstance(block, bool) else None


def choose_signer(account_manager: Any, network: Any, account: str | None, default_index: int, role: str) -> Any:
    """`--account`: an ape account alias, or on a local network a test account index
    (`default_index` when the option is absent)."""
    dev = is_dev_network(network)
    if account is None:
        if dev:
            return account_manager.test_accounts[default_index]
        raise BotConfigError(f"{role}: --account ALIAS is required on {network.name} (see `ape accounts list`)")
    if account.isdigit():
        if not dev:
            raise BotConfigError(
                f"{role}: --account {account}: test accounts exist only on local networks; give an ape account alias"
            )
        index = int(account)
        if index >= len(account_manager.test_accounts):
            raise BotConfigError(f"{role}: --account {account}: there are {len(account_manager.test_accounts)} test accounts")
        return account_manager.test_accounts[index]
    try:
        return account_manager.load(account)
    except (KeyError, ValueError):  # AccountManager.load: no such alias, or an empty one
        raise BotConfigError(f"{role}: --account {account!r} is not an ape account alias (see `ape accounts list`)") from None


def run_loop(step: Callable[[], float], sleep: Callable[[float], None], max_iterations: int | None) -> tuple[int, bool]:
    """Call `step` (which returns the seconds to wait before the next call) until
    `max_iterations` steps are done or Ctrl-C. A step interrupted midway is not counted: its
    transactions are each atomic, so stopping between them leaves nothing half done on chain.
    Returns (steps completed, whether Ctrl-C stopped it)."""
    if max_iterations is not None and max_iterations < 0:
        raise BotConfigError(f"--max-iterations must be >= 0, got {max_iterations}")
    done = 0
    with _ctrl_c_raises_keyboard_interrupt():
        try:
            while max_iterations is None or done < max_iterations:
                wait = step()
                done += 1
                if max_iterations is not None and done >= max_iterations:
                    break
                sleep(max(wait, 0.0))
        except KeyboardInterrupt:
            return done, True
    return done, False


@contextmanager
def _ctrl_c_raises_keyboard_interrupt():
    """ape's SIGINT handler calls sys.exit(130), which would skip the summary: use Python's
    default (KeyboardInterrupt) inside the loop, and restore ape's afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def first_line(error: BaseException) -> str:
    """The first line of an error message (ape's carry tracebacks and hints below it)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
