"""The ``publish:`` section and ``--publish``: readable refusals, secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, LoadedConfig
from config.loader import parse_config
from tui.cli import main, publish_settings

ACCOUNTS = "accounts: [{account_id: A1, gateway: sim}]\n"


def test_a_password_written_in_the_file_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(ACCOUNTS + "publish: {url: 'redis://h:6379/0', password: hunter2}\n", "config.yaml")
    assert "publish.password: secret written in the file: refused" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    config = parse_config(
        ACCOUNTS + "publish: {url: 'redis://h:6379/0', password: '${PW}'}\n", environ={"PW": "hunter2"}
    )
    assert config.publish is not None and config.publish.password == "hunter2"
    assert "hunter2" not in repr(config.publish)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://h:6379/0", "expected redis://HOST[:PORT][/DB] or rediss://"),
        ("redis://user:hunter2@h:6379/0", "with no user or password in it"),
    ],
)
def test_a_bad_url_is_refused_in_words(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(ACCOUNTS + f"publish: {{url: '{url}'}}\n", "config.yaml")
    assert str(refused.value).startswith("config.yaml: publish.url: expected redis://")
    assert words in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_command_line_url_replaces_the_configs_and_keeps_its_credentials(tmp_path: Path) -> None:
    config = parse_config(
        ACCOUNTS + "publish: {url: 'redis://a:1/0', host: sh, username: u, password: '${PW}'}\n",
        environ={"PW": "pw"},
    )
    loaded = LoadedConfig(config=config, source=tmp_path / "c.yaml", is_demo=False, warnings=[])
    settings = publish_settings(loaded, "rediss://b:6380/2")
    assert settings is not None
    assert (settings.url, settings.host, settings.username, settings.password) == (
        "rediss://b:6380/2",
        "sh",
        "u",
        "pw",
    )
    with pytest.raises(ValueError, match="--publish http://b: expected redis://"):
        publish_settings(loaded, "http://b")


def test_attach_refuses_a_url_that_is_not_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--attach", "redis://", "--data-dir", "/tmp/redis-data/cli"]) == 2
    assert "--attach redis://: expected redis://HOST" in capsys.readouterr().err


def test_no_trader_gets_the_redis_password() -> None:
    text = ACCOUNTS + "publish: {url: 'redis://h:6379/0', password: '${QT_REDIS_PW}'}\n"
    config = parse_config(text, environ={"QT_REDIS_PW": "pw"})
    assert "QT_REDIS_PW" in config.secret_variables_of_others("A1")  # kept out of its environment
    # and a trader, started without it, still loads the file
    config = parse_config(text, environ={}, for_account="A1")
    assert config.publish is not None and config.publish.password != "pw"
