"""Only our own trader is adopted; each trader holds only its own secrets; hung and crashing
workers; sockets out of other users' reach (issue 14). Real trader processes and real daemons,
but for two checks of the rules themselves (what makes a trader ours, how a trader's file loads)."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from config import paths as cfg_paths
from core.lockfile import PidLock, lock_holder
from core.manager import TradingManager
from core.models import TraderInfo, TraderStatus
from core.protocol import Link
from core.supervisor import RestartPolicy, TraderProxy
from core.trader_process import ACCOUNT_LOCK_FILE
from storage import AccountDatabase, database_path
from tests.conftest import CoreEnv, all_connected, pid_alive, sim_account, wait_until, wait_until_sync
from tests.test_core_integration import _marketable_buy
from tests.test_daemon import CONNECTED, Daemon

ONE = sim_account("AD1", "m2705.DCE")


def _account_lock(data_dir: Path, account_id: str) -> Path:
    return cfg_paths.account_state_dir(data_dir, account_id) / ACCOUNT_LOCK_FILE


def _stray(env: CoreEnv, account_id: str, socket_path: Path) -> subprocess.Popen[bytes]:
    """A trader of ``env`` (its own config and data directory) that knocks at ``socket_path``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core.trader",
            "--account-id",
            account_id,
            "--config",
            str(env.config_path),
            "--data-dir",
            str(env.data_dir),
            "--socket-path",
            str(socket_path),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _orders_in(data_dir: Path, account_id: str) -> list[str]:
    path = database_path(data_dir, account_id)
    if not path.exists():
        return []
    db = AccountDatabase(path)
    try:
        return [o.order_id for o in db.load_orders()]
    finally:
        db.close()


async def test_a_stray_trader_of_another_data_directory_never_becomes_the_account(core_env: CoreEnv) -> None:
    config = core_env.write_config(ONE)
    config.manager.restart_backoff = [3.0]  # a restart window the stray has every chance to use
    sock = cfg_paths.trader_socket_path(core_env.sock_dir, "AD1")
    # another daemon's trader (its own config and data directory), same account and socket dir
    other = CoreEnv(
        root=core_env.root,
        data_dir=core_env.root / "other",
        sock_dir=core_env.sock_dir,
        config_path=core_env.root / "other.yaml",
    )
    other.write_config(ONE)
    launched = time.monotonic()
    stray = _stray(other, "AD1", sock)
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    try:
        wait_until_sync(
            lambda: lock_holder(_account_lock(other.data_dir, "AD1")) == stray.pid, 30, "the stray running"
        )
        await mgr.start()
        proxy, state = mgr.proxies["AD1"], mgr.state("AD1")
        await wait_until(lambda: all_connected(mgr), 30, "our trader connected")
        await wait_until(
            lambda: proxy.foreign is not None and proxy.foreign[0] == stray.pid, 10, "the stray knocking"
        )
        assert proxy.foreign is not None and "data directory" in proxy.foreign[1]
        assert str(other.data_dir) in proxy.foreign[1]
        ours = proxy.pid
        assert ours != stray.pid and ours == lock_holder(_account_lock(core_env.data_dir, "AD1"))
        said = [e.message for e in state.logs if "not this manager's" in e.message]
        assert len(said) == 1 and f"pid {stray.pid}" in said[0], said  # once, though it knocks on

        # the restart window: ours is gone for 3 s, the stray knocks every second
        assert ours is not None
        os.kill(ours, signal.SIGKILL)
        await wait_until(lambda: proxy.link is None, 10, "our trader gone")
        proxy.foreign = None
        await wait_until(lambda: proxy.foreign is not None, 10, "the stray knocking in the window")
        assert proxy.link is None and proxy.restart_handle is not None  # refused, still waiting
        await wait_until(
            lambda: all_connected(mgr) and proxy.pid not in (None, ours), 30, "our new trader connected"
        )
        assert proxy.pid != stray.pid
        assert proxy.pid == lock_holder(_account_lock(core_env.data_dir, "AD1"))
        assert stray.poll() is None  # not ours to stop: it is only turned away
        # turned away, it trades on and knocks again no faster than every second, saying so once
        stray_log = (other.data_dir / "logs" / "AD1" / "trader.log").read_text()
        assert stray_log.count("hung up as soon as we registered") == 1, stray_log[-2000:]
        knocks = stray_log.count("connected to manager at")
        assert 2 <= knocks <= time.monotonic() - launched + 2, knocks

        # an order for AD1 lands in this daemon's AD1 database, never in the stray's
        reply = await mgr.send_order("AD1", _marketable_buy(mgr, "AD1", "m2705.DCE"))
        assert reply.ok, reply.error
        assert reply.result["order_id"] in _orders_in(core_env.data_dir, "AD1")
        assert _orders_in(other.data_dir, "AD1") == []
    finally:
        await mgr.stop()
        _stop(stray)


async def test_a_trader_started_with_another_configuration_is_not_adopted(core_env: CoreEnv) -> None:
    config = core_env.write_config(ONE)
    # the same data directory and account, loaded from another file (another daemon's config)
    copy = core_env.root / "copy.yaml"
    copy.write_text(core_env.config_path.read_text())
    sock = cfg_paths.trader_socket_path(core_env.sock_dir, "AD1")
    stray = _stray(CoreEnv(core_env.root, core_env.data_dir, core_env.sock_dir, copy), "AD1", sock)
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    try:
        lock = _account_lock(core_env.data_dir, "AD1")
        wait_until_sync(lambda: lock_holder(lock) == stray.pid, 30, "the stray holding AD1")
        await mgr.start()
        proxy, state = mgr.proxies["AD1"], mgr.state("AD1")
        await wait_until(lambda: proxy.foreign is not None, 15, "the stray knocking")
        assert proxy.foreign is not None and proxy.foreign[0] == stray.pid
        assert f"started with the configuration {copy}, not {core_env.config_path}" in proxy.foreign[1]
        # ours could not take the account it holds: named, and retried on the back-off
        await wait_until(lambda: "has not joined" in state.status_message, 20, "the holder named")
        assert f"pid {stray.pid}" in state.status_message, state.status_message
        assert proxy.link is None and state.status is not TraderStatus.CONNECTED
    finally:
        await mgr.stop()
        _stop(stray)


async def test_a_process_that_says_it_is_our_trader_is_not_taken_at_its_word(core_env: CoreEnv) -> None:
    """In the restart window, a same-user process sends a register copying every word of ours
    (data directory, configuration, venue, even our trader's pid): the kernel names its pid,
    and that pid holds no lock of our data directory."""
    config = core_env.write_config(ONE)
    config.manager.restart_backoff = [30.0]
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        proxy = mgr.proxies["AD1"]
        await wait_until(lambda: all_connected(mgr), 30, "our trader connected")
        pid = proxy.pid
        assert pid is not None
        reply = await mgr.status("AD1")
        assert reply.ok
        genuine: TraderInfo = reply.result
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: proxy.link is None, 10, "our trader gone")

        reader, writer = await asyncio.open_unix_connection(str(proxy.socket_path))
        link = Link(reader, writer, account_id="AD1", max_frame_bytes=config.socket.max_frame_bytes)
        link.send_nowait("register", genuine)  # the real trader's words, pid included
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(link.recv(), 10)  # hung up on, nothing sent
        await link.close()
        assert proxy.link is None
        assert proxy.foreign is not None and proxy.foreign[0] == os.getpid()
        assert "does not hold the account's lock" in proxy.foreign[1]
    finally:
        await mgr.stop()


def test_what_makes_a_trader_ours(core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each word of a register checked, and a trader of an earlier manager of the same data
    directory and configuration adopted (its lock held: here by this very process)."""
    monkeypatch.setenv("QT_ISO_PW", "pw")
    config = core_env.write_config(
        ONE
        + """
  - account_id: CT1
    gateway: ctp
    ctp: {userid: "000001", password: "${QT_ISO_PW}", brokerid: "9999",
          td_address: "tcp://127.0.0.1:1", md_address: "tcp://127.0.0.1:2"}
""",
    )
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    proxy = TraderProxy(
        account=config.account("CT1"),
        socket_path=cfg_paths.trader_socket_path(core_env.sock_dir, "CT1"),
        policy=RestartPolicy.from_config(config.manager),
    )
    info = TraderInfo(
        account_id="CT1",
        gateway="ctp",
        pid=os.getpid(),
        data_dir=str(core_env.data_dir),
        config_path=str(core_env.config_path),
        venue_identity="CT1: ctp user 000001 at broker 9999, td tcp://127.0.0.1:1",
    )
    lock = PidLock(_account_lock(core_env.data_dir, "CT1"))
    assert "does not hold the account's lock" in (mgr._not_ours(proxy, info, os.getpid()) or "")
    lock.acquire()
    try:
        assert mgr._not_ours(proxy, info, os.getpid()) is None  # ours
        assert "held by pid" in (mgr._not_ours(proxy, info, os.getpid() + 1) or "")
        for change, words in (
            ({"data_dir": str(core_env.root / "elsewhere")}, "runs on the data directory"),
            ({"data_dir": ""}, "data directory (not said)"),
            ({"config_path": str(core_env.root / "b.yaml")}, "started with the configuration"),
            ({"venue_identity": "CT1: ctp user 000002 at broker 9999, td tcp://127.0.0.1:1"}, "000002"),
        ):
            other = TraderInfo(**{**{f: getattr(info, f) for f in info.__struct_fields__}, **change})
            assert words in (mgr._not_ours(proxy, other, os.getpid()) or ""), change
    finally:
        lock.release()


# ---------------------------------------------------------------- secrets: each trader its own

REPO = Path(__file__).resolve().parent.parent
SECRETS = {"QT_ISO_C1_PW": "c1-Zq81-never-shown", "QT_ISO_C2_PW": "c2-Xk27-never-shown"}
OWN_SECRET = {"C1": "QT_ISO_C1_PW", "C2": "QT_ISO_C2_PW"}
#: Another user's interpreter: the venv's lives under /root, out of nobody's reach.
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534


def _ctp(account_id: str, variable: str, userid: str) -> str:
    return f"""
  - account_id: {account_id}
    gateway: ctp
    ctp:
      userid: "{userid}"
      password: "${{{variable}}}"
      auth_code: "${{{variable}}}"
      brokerid: "9999"
      td_address: "tcp://127.0.0.1:1"
      md_address: "tcp://127.0.0.1:2"
    watchlist: [rb2601.SHFE]
"""


def _as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as another local user (nobody), with nothing of ours but the stdlib."""
    return subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", code],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


def _can_be_nobody() -> str | None:
    if os.getuid() != 0:
        return "needs root to run a probe as another user"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} for the other user"
    return None


def _proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _environ(pid: int) -> dict[bytes, bytes]:
    raw = _proc(pid, "environ")
    return dict(entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)


def _memory_holds(pid: int, needles: list[bytes]) -> list[bytes]:
    """Which of ``needles`` are anywhere in the process's memory (its heap, freed or not)."""
    found: set[bytes] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r") or line.rstrip().endswith(("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except OSError:
                continue
            found.update(n for n in needles if n in chunk)
    return sorted(found)


async def test_no_secret_passes_through_the_zygote(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the zygote forks every account's trader: an account's secret it ever held (a start's
    # request, freed or not) would be in its memory, and so in every later fork's, another
    # account's trader included (ARCHITECTURE.md, Invariants 6)
    from gateways.ctp import FAKE_FRONT_ENV

    monkeypatch.setenv(FAKE_FRONT_ENV, "tests.fake_ctp:install")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("QT_ISO_C1_PW", SECRETS["QT_ISO_C1_PW"])
    config = core_env.write_config(_ctp("C1", "QT_ISO_C1_PW", "000001"))
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        await wait_until(lambda: mgr.state("C1").status is TraderStatus.CONNECTED, 30, "C1 connected")
        zygote = mgr.zygote
        assert zygote is not None and zygote.dead is None
        c1 = mgr.state("C1").pid
        assert c1 is not None and _parent(c1) == zygote.pid
        assert _memory_holds(c1, [SECRETS["QT_ISO_C1_PW"].encode()])  # the probe finds what is there
        assert _memory_holds(zygote.pid, [SECRETS["QT_ISO_C1_PW"].encode()]) == []
    finally:
        await mgr.stop()


def _parent(pid: int) -> int:
    return int(_proc(pid, "stat").rsplit(b")", 1)[1].split()[1])


async def test_each_trader_holds_only_its_own_secret_and_no_secret_leaks(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateways.ctp import FAKE_FRONT_ENV

    monkeypatch.setenv(FAKE_FRONT_ENV, "tests.fake_ctp:install")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    for variable, value in SECRETS.items():
        monkeypatch.setenv(variable, value)
    config = core_env.write_config(
        _ctp("C1", "QT_ISO_C1_PW", "000001")
        + _ctp("C2", "QT_ISO_C2_PW", "000002")
        + sim_account("S1", "m2705.DCE")
    )
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    wire: list[bytes] = []  # every message the traders sent, as it came over their sockets
    mgr.aggregator.tap(lambda _aid, msg: wire.append(msgspec.json.encode(msg)))
    await mgr.start()
    try:
        await wait_until(
            lambda: all(mgr.state(a).status is TraderStatus.CONNECTED for a in mgr.proxies),
            30,
            "all connected",
        )
        statuses = [await mgr.status(a) for a in mgr.proxies]
        assert all(r.ok for r in statuses)
        pids = {aid: proxy.pid for aid, proxy in mgr.proxies.items()}
        for aid, pid in pids.items():
            assert pid is not None
            environ, whole, cmdline = _environ(pid), _proc(pid, "environ"), _proc(pid, "cmdline")
            for variable, value in SECRETS.items():
                if variable == OWN_SECRET.get(aid):
                    assert environ[variable.encode()] == value.encode()  # its own: it logs in with it
                else:
                    assert variable.encode() not in environ, (aid, variable)
                    assert value.encode() not in whole, (aid, variable)
            assert not any(v.encode() in cmdline for v in SECRETS.values()), cmdline
        # the zygote that forked them (core/zygote.py) holds no account's secret at all
        assert mgr.zygote is not None and mgr.zygote.dead is None
        zygote_env = _proc(mgr.zygote.pid, "environ")
        assert not any(v.encode() in zygote_env for v in SECRETS.values())
        assert not any(v.encode() in _environ(mgr.zygote.pid) for v in SECRETS)
        shown = [repr(r.result) for r in statuses] + [  # what the console is told: statuses, log lines
            f"{s.status_message} {[e.message for e in s.logs]}" for s in (mgr.state(a) for a in mgr.proxies)
        ]
        assert not any(v in text for v in SECRETS.values() for text in shown), shown
        assert wire and not any(v.encode() in frame for v in SECRETS.values() for frame in wire)

        reason = _can_be_nobody()
        if reason is None:  # as another local user: no environment, and a command line without secrets
            probe = _as_nobody(
                f"for pid in {sorted(p for p in pids.values() if p)!r}:\n"
                "    try:\n"
                "        open(f'/proc/{pid}/environ', 'rb').read()\n"
                "        print(pid, 'environ READ')\n"
                "    except PermissionError:\n"
                "        print(pid, 'environ refused')\n"
                "    print(pid, 'cmdline', open(f'/proc/{pid}/cmdline', 'rb').read())\n"
            )
            assert probe.returncode == 0, probe.stderr
            assert probe.stdout.count("environ refused") == len(pids), probe.stdout
            assert "READ" not in probe.stdout
            assert probe.stdout.count("cmdline") == len(pids)
            assert not any(v in probe.stdout for v in SECRETS.values())
        else:
            print(f"not checked as another user: {reason}")
    finally:
        await mgr.stop()
    # every file the run left: databases (and their journals), logs, state, sockets' directory
    files = [p for p in core_env.root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any(p.suffix == ".log" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not any(v.encode() in data for v in SECRETS.values()), path


def test_a_trader_loads_its_file_without_the_other_accounts_secrets(core_env: CoreEnv) -> None:
    """What a trader process does with the environment it is given: its own secret is needed
    (and used), another account's is withheld, not required; the manager knows which is which."""
    from config.loader import WITHHELD, parse_config

    text = _ctp("C1", "QT_ISO_C1_PW", "000001") + _ctp("C2", "QT_ISO_C2_PW", "000002")
    yaml_text = "accounts:\n" + text
    full = parse_config(yaml_text, environ=SECRETS)
    assert full.secret_variables_of_others("C1") == {"QT_ISO_C2_PW"}
    assert full.secret_variables_of_others("C2") == {"QT_ISO_C1_PW"}
    own = {"QT_ISO_C1_PW": SECRETS["QT_ISO_C1_PW"]}
    mine = parse_config(yaml_text, environ=own, for_account="C1")
    c1, c2 = mine.account("C1").ctp, mine.account("C2").ctp
    assert c1 is not None and c2 is not None
    assert (c1.password, c1.auth_code) == (SECRETS["QT_ISO_C1_PW"],) * 2
    assert (c2.password, c2.auth_code) == (WITHHELD, WITHHELD)
    from config.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"accounts\[0\]\.ctp\.password: environment variable 'QT_ISO_C1_PW'"
    ):
        parse_config(yaml_text, environ={}, for_account="C1")  # its own is still required
    with pytest.raises(ConfigError, match="'QT_ISO_C2_PW' is not set"):
        parse_config(yaml_text, environ=own)  # the manager needs every one


# ---------------------------------------------------------------- a real daemon: sockets, hangs, crashes

TWO = sim_account("P1", "m2705.DCE", seed=1) + sim_account("P2", "au2612.SHFE", seed=2)

_CONNECT_PROBE = """
import socket, struct, sys
for path in {paths!r}:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as exc:
        print(path, "refused", exc.errno)
        continue
    frame = b'{{"type":"register","account_id":"P1","seq":1,"ts":0,"req_id":0,"data":{{}}}}'
    s.settimeout(10)
    try:
        s.sendall(struct.pack(">I", len(frame)) + frame)
        print(path, "hung up" if s.recv(1) == b"" else "ANSWERED")
    except (BrokenPipeError, ConnectionResetError):  # closed before or with our frame unread
        print(path, "hung up")
"""


def _stop_daemon(daemon: Daemon) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait()


@pytest.mark.skipif(_can_be_nobody() is not None, reason=_can_be_nobody() or "")
def test_another_local_user_reaches_no_socket(core_env: CoreEnv) -> None:
    core_env.write_config(TWO)
    daemon = Daemon(core_env)
    try:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        socks = sorted(str(p) for p in core_env.sock_dir.glob("*.sock"))
        assert len(socks) == 3, socks  # two traders' and the control socket
        probe = _as_nobody(_CONNECT_PROBE.format(paths=socks))
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.count(f"refused {errno.EACCES}") == 3, probe.stdout

        # were the modes ever loosened, the daemon still hangs up on another uid at once
        core_env.root.chmod(0o711)  # the test's own directory (mkdtemp: 0700)
        core_env.sock_dir.chmod(0o711)
        for path in socks:
            os.chmod(path, 0o666)
        probe = _as_nobody(_CONNECT_PROBE.format(paths=socks))
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.count("hung up") == 3, probe.stdout
        runtime_log = cfg_paths.runtime_log_path(core_env.data_dir)
        wait_until_sync(
            lambda: (
                runtime_log.read_text().count(f"refused a connection from uid {NOBODY}") == 2
                and f"control: refused uid {NOBODY}" in runtime_log.read_text()
            ),
            10,
            "the refusals logged",
        )
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))  # nothing else noticed
    finally:
        core_env.sock_dir.chmod(0o700)
        core_env.root.chmod(0o700)
        _stop_daemon(daemon)


@pytest.mark.parametrize("plant", ["writable by others", "another user's", "a symbolic link"])
def test_an_unsafe_socket_directory_is_refused_before_anything_starts(core_env: CoreEnv, plant: str) -> None:
    core_env.write_config(TWO)
    if plant == "writable by others":
        core_env.sock_dir.mkdir()
        core_env.sock_dir.chmod(0o777)
        expected = "is writable by other users (mode 0777)"
    elif plant == "another user's":
        if os.getuid() != 0:
            pytest.skip("needs root to give the directory to another user")
        core_env.sock_dir.mkdir(mode=0o700)
        os.chown(core_env.sock_dir, NOBODY, NOBODY)
        expected = f"is owned by uid {NOBODY}, not by you"
    else:
        real = core_env.root / "real-s"
        real.mkdir(mode=0o700)
        core_env.sock_dir.symlink_to(real)
        expected = "is a symbolic link; refusing to use it"
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--no-ui", "--config", str(core_env.config_path),
         "--data-dir", str(core_env.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert f"socket.socket_dir: {core_env.sock_dir}" in done.stderr and expected in done.stderr, done.stderr
    assert not list(core_env.data_dir.glob("state/*/trader.lock"))  # no trader was started
    assert not [p for p in core_env.root.rglob("*.sock")]


def test_a_hung_worker_is_killed_within_the_heartbeat_timeout_and_2_s(core_env: CoreEnv) -> None:
    config = core_env.write_config(TWO)  # heartbeats every 0.2 s, timeout 5 s, restart at once
    timeout = config.manager.heartbeat_timeout
    daemon = Daemon(core_env)
    lock = _account_lock(core_env.data_dir, "P1")
    old = None
    try:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        old, other = lock_holder(lock), lock_holder(_account_lock(core_env.data_dir, "P2"))
        assert old and other
        stopped = time.monotonic()
        os.kill(old, signal.SIGSTOP)  # alive but silent
        wait_until_sync(lambda: lock_holder(lock) not in (None, old), 30, "a new P1 trader")
        new = lock_holder(lock)
        started = time.monotonic()
        # a new trader connected: this one, or (should it not connect within the manager's start
        # limit, on a machine loaded enough) the one after it; never the old one
        wait_until_sync(
            lambda: any(
                " P1 " in ln and CONNECTED in ln and " pid " in ln and f"pid {old} " not in ln
                for ln in daemon.lines
            ),
            45,
            lambda: (
                f"a new P1 (first pid {new}) connected:\n{daemon.output()}\n"
                f"P1's log:\n{_tail(cfg_paths.trader_log_path(core_env.data_dir, 'P1'))}"
            ),
        )
        connected = time.monotonic()
        runtime = cfg_paths.runtime_log_path(core_env.data_dir).read_text()
        found = re.search(
            rf"P1: no heartbeat for ([\d.]+) s \(timeout {timeout:g} s\); killing pid {old}", runtime
        )
        assert found, runtime[-2000:]
        silent = float(found.group(1))
        print(
            f"\nhung worker: killed after {silent:.1f} s without a heartbeat (timeout {timeout:g} s); "
            f"new trader running {started - stopped:.1f} s and connected {connected - stopped:.1f} s "
            "after the SIGSTOP"
        )
        assert timeout <= silent <= timeout + 2.0  # the manager's own measure (to 0.1 s) when it killed
        assert not pid_alive(old)
        assert lock_holder(_account_lock(core_env.data_dir, "P2")) == other  # the other untouched
        assert "P2: no heartbeat" not in runtime
    finally:
        if old is not None and pid_alive(old):
            os.kill(old, signal.SIGKILL)
        _stop_daemon(daemon)


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


def _stamped(log_text: str, needle: str) -> list[datetime]:
    return [
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
        for line in log_text.splitlines()
        if needle in line and (m := _STAMP.match(line))
    ]


def test_a_crash_loop_backs_off_cools_down_and_says_so(core_env: CoreEnv) -> None:
    core_env.write_config(
        TWO.replace("P2", "BAD"), manager="  max_restarts: 3\n  restart_window: 60\n  cooldown: 4"
    )  # back-off 0, 0.5, 1 s
    (core_env.data_dir / "trading_BAD.db").mkdir(parents=True)  # its database cannot open: exit 1
    daemon = Daemon(core_env)
    try:
        said = [
            "restart in 0 s",
            "restart in 0.5 s",
            "restart in 1 s",
            "3 restarts within 60 s: cooling down 4 s",
        ]
        daemon.wait_for_line("cooling down 4 s", timeout=60)
        crashes = [ln for ln in daemon.lines if " BAD " in ln and "CRASHED" in ln]
        assert all("exit code 1 (" in ln and "database" in ln for ln in crashes), crashes
        assert [next(w for w in said if ln.endswith(w)) for ln in crashes] == said, crashes
        # the cool-down ends: tried again, and the back-off starts over
        daemon.wait_for_line("restart in 0 s", count=2, timeout=30)
        runtime = cfg_paths.runtime_log_path(core_env.data_dir).read_text()
        exits, starts = _stamped(runtime, "BAD: trader exit code 1"), _stamped(runtime, "BAD: trader started")
        delays = [(s - e).total_seconds() for e, s in zip(exits, starts[1:], strict=False)]
        print(f"\ncrash loop: delays between an exit and the next start {[round(d, 2) for d in delays]} s")
        assert len(delays) >= 4
        for delay, wanted in zip(delays, [0.0, 0.5, 1.0, 4.0, 0.0], strict=False):
            assert delay >= wanted - 0.01, delays  # never earlier than said
        daemon.wait_for_accounts(CONNECTED, ("P1",))  # the other account trades on
        assert "P1: trader exit" not in runtime
    finally:
        _stop_daemon(daemon)


async def test_a_trader_we_started_on_a_file_changed_under_us_is_stopped_not_left_alone(
    core_env: CoreEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """The file changed under a running manager: the account's restarted trader now trades
    another venue account than the one this manager runs. It is not adopted, and since we
    started it, it is stopped (never left trading alone), and retried on the back-off."""
    paper = "    market_data_from: S1\n"
    text = sim_account("S1", "m2705.DCE") + sim_account("S2", "m2705.DCE") + paper
    config = core_env.write_config(text)
    config.manager.venue_backoff = [60.0]
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        proxy, state = mgr.proxies["S2"], mgr.state("S2")
        await wait_until(lambda: all_connected(mgr), 30, "both connected")
        first = proxy.pid
        assert first is not None
        core_env.config_path.write_text(core_env.config_path.read_text().replace(paper, ""))
        os.kill(first, signal.SIGKILL)  # restarted at once, on the edited file
        await wait_until(lambda: "not adopted" in state.status_message, 30, "the new trader refused")
        assert proxy.foreign is not None
        refused = proxy.foreign[0]
        assert "it trades S2: sim, where this configuration has S2: sim paper, quotes from S1" in (
            state.status_message
        ), state.status_message
        assert "retry 1 in 60 s" in state.status_message
        assert state.status is TraderStatus.CRASHED and proxy.link is None
        await wait_until(lambda: not pid_alive(refused), 10, "the refused trader stopped")
        # stopped because it was refused, not killed later by the watchdog as a start that hangs
        assert "not connected" not in caplog.text and "killing pid" not in caplog.text
        assert lock_holder(_account_lock(core_env.data_dir, "S2")) is None  # nobody runs S2
        assert mgr.state("S1").status is TraderStatus.CONNECTED  # the other account trades on
    finally:
        await mgr.stop()


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"({exc})"
