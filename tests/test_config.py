"""Tests of the config package: schema, loader messages, ${ENV}, legacy form, demo and paths."""

from __future__ import annotations

import ast
import copy
import inspect
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from annotated_types import Ge, Gt, Le, MinLen
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel, BeforeValidator
from rich.pretty import pretty_repr

import config.paths
from config import (
    CONFIG_ENV_VAR,
    DEMO_NOTICE,
    MASK,
    SOCKET_PATH_MAX,
    AccountConfig,
    AppConfig,
    ConfigError,
    CtpSettings,
    SocketConfig,
    TqsdkSettings,
    account_log_dir,
    account_state_dir,
    control_socket_path,
    data_dir,
    demo_config_path,
    load_config,
    load_config_file,
    parse_config,
    resolve_config_path,
    runtime_log_path,
    socket_dir,
    trader_log_path,
    trader_socket_path,
)
from config.schema import EXCHANGE_NAMES, check_vt_symbol
from core.models import Exchange, split_vt_symbol

SIM_PRODUCTS = {"au", "ag", "rb", "cu", "al", "sc", "i", "m", "p", "TA", "MA", "SR", "IF", "IC", "IM"}

CTP_ACCOUNT = """
  - account_id: C
    gateway: ctp
    ctp:
      userid: "${C_USER}"
      password: "${C_PASSWORD}"
      brokerid: "9999"
      td_address: "tcp://${C_HOST}:30001"
      md_address: "tcp://${C_HOST}:30011"
      auth_code: "${C_AUTH}"
"""
CTP_ENV = {"C_USER": "u1", "C_PASSWORD": "s3cret-pw", "C_HOST": "10.0.0.1", "C_AUTH": "auth-xyz"}


def parse(text: str, env: dict[str, str] | None = None, warnings: list[str] | None = None) -> AppConfig:
    return parse_config(text, "config.yaml", environ=env or {}, warnings=warnings)


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return str(info.value)


def one_account(extra: str = "", **top: str) -> str:
    """A valid file with one sim account A plus ``extra`` lines inside the account."""
    body = "accounts:\n  - account_id: A\n    gateway: sim\n" + extra
    for key, value in top.items():
        body += f"{key}: {value}\n"
    return body


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No configuration variables and an empty current directory."""
    for name in (CONFIG_ENV_VAR, "QTRADER_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- demo


def test_demo_loads_with_three_sim_accounts_and_varied_watchlists(clean_env: Path) -> None:
    loaded = load_config()
    assert loaded.is_demo
    assert loaded.source == demo_config_path()
    assert loaded.warnings == []
    cfg = loaded.config
    assert [a.account_id for a in cfg.accounts] == ["DQ1", "DQ2", "DQ3"]
    for account in cfg.accounts:
        assert account.gateway == "sim"
        assert account.mode == "process"
        assert account.enabled
        assert account.strategies  # every demo account runs strategies
        assert {s.symbol for s in account.strategies} <= set(account.watchlist)
        assert account.watchlist
    # DQ1 trades by itself, DQ2 only records signals, DQ3 runs a grid
    assert [a.auto_trading for a in cfg.accounts] == [True, False, True]
    assert any(s.class_name == "GridStrategy" for s in cfg.accounts[2].strategies)
    assert len({a.sim.seed for a in cfg.accounts}) == 3
    assert len({a.sim.initial_balance for a in cfg.accounts}) == 3
    watchlists = [tuple(a.watchlist) for a in cfg.accounts]
    assert len(set(watchlists)) == 3
    symbols = {s for wl in watchlists for s in wl}
    assert len(symbols) >= 6
    exchanges = {split_vt_symbol(s)[1] for s in symbols}
    assert {Exchange.SHFE, Exchange.INE, Exchange.DCE, Exchange.CZCE, Exchange.CFFEX} <= exchanges
    for vt_symbol in symbols:
        symbol, _ = split_vt_symbol(vt_symbol)
        product = re.match(r"[A-Za-z]+", symbol)
        assert product is not None and product.group(0) in SIM_PRODUCTS, vt_symbol
        # Contract months must be trading on 2026-11-21 (Nov 2026 contracts are gone by then) and
        # within a year: YYMM, or YMM on CZCE (the decade is the 2020s).
        digits = symbol[len(product.group(0)) :]
        yymm = int(digits) if len(digits) == 4 else (20 + int(digits[0])) * 100 + int(digits[1:])
        assert 2612 <= yymm <= 2711, vt_symbol


def test_demo_notice_text() -> None:
    assert DEMO_NOTICE == "no configuration found: running the demo (3 simulated accounts)"


def test_demo_commented_examples_are_valid_when_uncommented() -> None:
    """The commented-out CTP / paper / TqSdk accounts must stay copy-paste correct."""
    lines = demo_config_path().read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    in_example = False
    uncommented = 0
    for line in lines:
        if line.startswith("  # - account_id:"):
            in_example = True
        elif not line.startswith("  #   "):
            in_example = False
        if in_example:
            out.append("  " + line[4:])
            uncommented += 1
        else:
            out.append(line)
    assert uncommented > 10
    env = {"CTP1_USER": "u", "CTP1_PASSWORD": "p", "CTP1_AUTH_CODE": "a", "CTP_HOST": "127.0.0.1"}
    env |= {"TQ_AUTH_USER": "tu", "TQ_AUTH_PASSWORD": "tp"}
    warnings: list[str] = []
    cfg = parse("\n".join(out), env, warnings)
    assert [a.account_id for a in cfg.accounts] == ["DQ1", "DQ2", "DQ3", "CTP1", "PAPER1", "TQ1"]
    ctp = cfg.account("CTP1").ctp
    assert ctp is not None and ctp.td_address == "tcp://127.0.0.1:30001" and ctp.password == "p"
    assert cfg.account("PAPER1").market_data_from == "CTP1"
    assert warnings == []


# --------------------------------------------------------------------------- resolution


def test_resolution_falls_back_to_demo(clean_env: Path) -> None:
    assert resolve_config_path(None) == (demo_config_path(), True)


def test_resolution_prefers_local_then_env_then_cli(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = demo_config_path().read_text(encoding="utf-8")
    local = clean_env / "config" / "config.yaml"
    local.parent.mkdir()
    local.write_text(text)
    assert resolve_config_path(None) == (local, False)

    env_file = clean_env / "env.yaml"
    env_file.write_text(text)
    monkeypatch.setenv(CONFIG_ENV_VAR, str(env_file))
    assert resolve_config_path(None) == (env_file, False)

    cli_file = clean_env / "cli.yaml"
    cli_file.write_text(text)
    assert resolve_config_path("cli.yaml") == (cli_file, False)  # relative to the current directory

    loaded = load_config("cli.yaml")
    assert loaded.source == cli_file and not loaded.is_demo


def test_missing_cli_config_is_an_error_naming_it(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"--config nope\.yaml: file not found"):
        resolve_config_path("nope.yaml")


def test_missing_env_config_is_an_error_naming_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, "/no/such/file.yaml")
    with pytest.raises(ConfigError, match=r"QTRADER_CONFIG=/no/such/file\.yaml: file not found"):
        load_config()


def test_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"accounts: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"^bin\.yaml: not UTF-8 text"):
        load_config_file(binary)
    with pytest.raises(ConfigError, match=r"not a file"):
        resolve_config_path(str(tmp_path))


# --------------------------------------------------------------------------- error messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "accounts:\n  - {account_id: A, gateway: sim}\n  - {account_id: B, gateway: ctpx}\n",
            "config.yaml: accounts[1].gateway: unknown gateway 'ctpx' (expected sim, ctp, tqsdk)",
            id="literal",
        ),
        pytest.param(
            one_account("    risk: {max_order_volume: ten}\n"),
            "config.yaml: accounts[0].risk.max_order_volume: expected an integer, got 'ten'",
            id="type",
        ),
        pytest.param(
            one_account("    risk: {max_order_volume: 0}\n"),
            "config.yaml: accounts[0].risk.max_order_volume: expected an integer >= 1, got 0",
            id="bound",
        ),
        pytest.param(
            one_account("    sim: {initial_balance: -5}\n"),
            "config.yaml: accounts[0].sim.initial_balance: expected a number > 0, got -5",
            id="positive",
        ),
        pytest.param(
            one_account("    gatway: sim\n"),
            "config.yaml: accounts[0].gatway: unknown field (expected one of: account_id, gateway, enabled,",
            id="unknown-field",
        ),
        pytest.param(
            "accounts:\n  - {account_id: 'a b', gateway: sim}\n",
            "config.yaml: accounts[0].account_id: invalid account id 'a b' (expected 1-32 characters",
            id="account-id",
        ),
        pytest.param(
            "accounts:\n  - {account_id: " + "x" * 33 + ", gateway: sim}\n",
            "config.yaml: accounts[0].account_id: invalid account id",
            id="account-id-too-long",
        ),
        pytest.param(
            "accounts:\n  - account_id: A\n    gateway: ctp\n    ctp: {userid: u, password: p, brokerid: 9999,"
            " td_address: t, md_address: m}\n",
            'config.yaml: accounts[0].ctp.brokerid: expected a string, got 9999 (write it in quotes: "9999")',
            id="quote-hint",
        ),
        pytest.param(
            "accounts:\n  - account_id: A\n    gateway: ctp\n    ctp: {userid: u, brokerid: '1', td_address: t,"
            " md_address: m}\n",
            "config.yaml: accounts[0].ctp.password: required field is missing",
            id="missing-field",
        ),
        pytest.param(
            "accounts:\n  - account_id: A\n    gateway: ctp\n    ctp: {userid: '', password: p, brokerid: '1',"
            " td_address: t, md_address: m}\n",
            "config.yaml: accounts[0].ctp.userid: must not be empty",
            id="empty-string",
        ),
        pytest.param(
            one_account("    risk:\n"),
            "config.yaml: accounts[0].risk: expected a mapping, got null",
            id="empty-section",
        ),
        pytest.param(
            one_account(log="{level: debug}"),
            "config.yaml: log.level: unknown level 'debug' (expected DEBUG, INFO, WARNING, ERROR)",
            id="log-level",
        ),
        pytest.param(
            one_account(ui="{color_scheme: us}"),
            "config.yaml: ui.color_scheme: unknown color scheme 'us' (expected cn, intl)",
            id="color-scheme",
        ),
        pytest.param(
            one_account(ui="{keys: {buy: b, sell: 1}}"),
            'config.yaml: ui.keys.sell: expected a string, got 1 (write it in quotes: "1")',
            id="dict-value",
        ),
        pytest.param(
            one_account(ui="{default_volume: {rbb: 5}}"),
            "config.yaml: ui.default_volume.rbb: unknown product 'rbb'; did you mean rb? (a key is a "
            "product such as rb, a contract such as rb2610.SHFE, or default)",
            id="default-volume-product",
        ),
        pytest.param(
            one_account(ui="{default_volume: {rb2613.SHFE: 5}}"),
            "config.yaml: ui.default_volume['rb2613.SHFE']: 'rb2613.SHFE': month 13 is not 01..12",
            id="default-volume-symbol",
        ),
        pytest.param(
            one_account(ui="{default_volume: {rb: 0}}"),
            "config.yaml: ui.default_volume.rb: expected an integer >= 1, got 0",
            id="default-volume-zero",
        ),
        pytest.param(
            one_account(ui="{risk_degree_warning: 0}"),
            "config.yaml: ui.risk_degree_warning: expected a number > 0, got 0",
            id="risk-degree-warning",
        ),
        pytest.param(
            one_account(manager="{restart_backoff: [1, -1]}"),
            "config.yaml: manager.restart_backoff[1]: expected a number >= 0, got -1",
            id="list-item",
        ),
        pytest.param(
            one_account(manager="{restart_backoff: []}"),
            "config.yaml: manager.restart_backoff: must not be empty",
            id="empty-list",
        ),
        pytest.param(
            one_account(socket="{max_frame_bytes: 10}"),
            "config.yaml: socket.max_frame_bytes: expected an integer >= 1024, got 10",
            id="frame-size",
        ),
        pytest.param(
            one_account("    strategies: [{name: s, class: C, symbol: au2612.SHFE, params: {1: x}}]\n"),
            "config.yaml: accounts[0].strategies[0].params: keys must be text, got key 1",
            id="non-text-key",
        ),
        pytest.param("# nothing here\n", "config.yaml: the file is empty", id="empty-file"),
        pytest.param("- a\n- b\n", "config.yaml: expected a mapping at the top level", id="top-level-list"),
        pytest.param("manager: {}\n", "config.yaml: accounts: required", id="no-accounts-key"),
        pytest.param(
            "accounts: []\n", "config.yaml: accounts: at least one account is required", id="no-accounts"
        ),
        pytest.param(
            "acounts: []\n",
            "config.yaml: acounts: unknown field (expected one of: accounts, manager, socket, database, ui, log, publish, strategy_path);"
            " did you mean 'accounts'?",
            id="unknown-top-level",
        ),
    ],
)
def test_error_messages(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_unknown_field_suggests_the_closest_name() -> None:
    message = error_of(one_account("    gatway: sim\n"))
    assert message.startswith(
        "config.yaml: accounts[0].gatway: unknown field (expected one of: account_id, gateway"
    )
    assert message.endswith("did you mean 'gateway'?")
    nested = error_of(one_account("    risk: {max_order_volum: 1}\n"))
    assert "accounts[0].risk.max_order_volum: unknown field" in nested
    assert "did you mean 'max_order_volume'?" in nested


def test_yaml_syntax_error_names_line_and_column() -> None:
    text = "accounts:\n  - account_id: A\n    gateway: sim\n   risk: {}\n"
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith("config.yaml: line 4: invalid YAML: ")
    assert "column 4" in message
    assert "   risk: {}" in message  # the offending line is quoted under the message
    assert info.value.line == 4


def test_unclosed_flow_sequence_is_a_yaml_error() -> None:
    assert "config.yaml: line 4: invalid YAML: " in error_of(
        "accounts:\n  - account_id: A\n    gateway: [sim\n"
    )


def test_duplicate_keys_are_refused() -> None:
    text = one_account("    risk: {max_order_volume: 1}\n    risk: {max_order_volume: 2}\n")
    assert "config.yaml: line 5: invalid YAML: duplicate key 'risk', first at line 4" in error_of(text)


def test_merge_keys_may_be_overridden() -> None:
    text = (
        "x-risk: &risk {max_order_volume: 3, max_active_orders: 7}\n"
        "accounts:\n  - account_id: A\n    gateway: sim\n    risk: {<<: *risk, max_order_volume: 4}\n"
    )
    # x-risk is not a known section: anchors must live in a known place, so use the account itself.
    assert "x-risk: unknown field" in error_of(text)
    text = (
        "accounts:\n  - account_id: A\n    gateway: sim\n    risk: &risk {max_order_volume: 3, max_active_orders: 7}\n"
        "  - account_id: B\n    gateway: sim\n    risk: {<<: *risk, max_order_volume: 4}\n"
    )
    risk = parse(text).account("B").risk
    assert (risk.max_order_volume, risk.max_active_orders) == (4, 7)


def test_error_path_uses_yaml_key_class() -> None:
    text = one_account("    strategies: [{name: s, class: 5, symbol: au2612.SHFE}]\n")
    assert "accounts[0].strategies[0].class: expected a string, got 5" in error_of(text)


def test_config_error_carries_structured_fields() -> None:
    with pytest.raises(ConfigError) as info:
        parse(one_account("    risk: {max_order_volume: ten}\n"))
    assert info.value.source == "config.yaml"
    assert info.value.field == "accounts[0].risk.max_order_volume"


def test_file_name_not_full_path_starts_messages(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text("accounts:\n  - {account_id: A, gateway: ctpx}\n")
    with pytest.raises(ConfigError, match=r"^prod\.yaml: accounts\[0\]\.gateway: unknown gateway 'ctpx'"):
        load_config_file(path)


# --------------------------------------------------------------------------- ${ENV} interpolation


def test_env_interpolation_whole_embedded_and_escaped() -> None:
    cfg = parse(
        "accounts:"
        + CTP_ACCOUNT
        + "ui:\n  keys: {a: '$${NOT_A_VAR}', b: 'x-${C_USER}-$${C_USER}-${C_USER}'}\n",
        CTP_ENV,
    )
    ctp = cfg.account("C").ctp
    assert ctp is not None
    assert ctp.userid == "u1"
    assert ctp.password == "s3cret-pw"
    assert ctp.td_address == "tcp://10.0.0.1:30001"
    assert cfg.ui.keys == {"a": "${NOT_A_VAR}", "b": "x-u1-${C_USER}-u1"}


def test_env_values_are_not_expanded_again() -> None:
    cfg = parse(one_account(ui="{keys: {a: '${V}'}}"), {"V": "${OTHER}"})
    assert cfg.ui.keys == {"a": "${OTHER}"}


def test_numbers_and_booleans_can_come_from_env() -> None:
    text = one_account(
        "    enabled: ${ON}\n    sim: {initial_balance: '${BAL}', seed: '${SEED}'}\n"
        "    risk: {max_order_volume: '${VOL}'}\n"
    )
    account = parse(text, {"ON": "false", "BAL": "2500000.5", "SEED": "42", "VOL": "20"}).accounts[0]
    assert account.enabled is False
    assert account.sim.initial_balance == 2500000.5
    assert account.sim.seed == 42
    assert account.risk.max_order_volume == 20
    # Text fields stay text even when the variable holds digits.
    ctp = parse("accounts:" + CTP_ACCOUNT, CTP_ENV | {"C_USER": "012345"}).account("C").ctp
    assert ctp is not None and ctp.userid == "012345"


def test_bad_number_from_env_names_field_and_value() -> None:
    message = error_of(one_account("    risk: {max_order_volume: '${VOL}'}\n"), {"VOL": "ten"})
    assert "config.yaml: accounts[0].risk.max_order_volume: expected an integer, got 'ten'" in message


def test_missing_env_var_names_variable_and_field() -> None:
    text = (
        "accounts:\n  - {account_id: A, gateway: sim}\n  - {account_id: B, gateway: sim}"
        + CTP_ACCOUNT.replace("C_PASSWORD", "DQ2_PASSWORD")
    )
    message = error_of(text, CTP_ENV)
    assert message == "config.yaml: accounts[2].ctp.password: environment variable 'DQ2_PASSWORD' is not set"


def test_malformed_reference_is_an_error() -> None:
    message = error_of(one_account(ui="{keys: {a: 'tcp://${HOST:1'}}"))
    assert "config.yaml: ui.keys.a: malformed ${...}" in message
    assert "write $${ for a literal ${" in message


def test_interpolation_leaves_keys_and_non_strings_alone() -> None:
    cfg = parse(
        one_account("    strategies: [{name: s, class: C, symbol: au2612.SHFE, params: {'${K}': 5}}]\n")
    )
    assert cfg.accounts[0].strategies[0].params == {"${K}": 5}


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet="${}AB_ x", max_size=20))
def test_escaping_round_trips(value: str) -> None:
    """Writing every ``${`` as ``$${`` gives back exactly the original text."""
    escaped = value.replace("${", "$${")
    text = one_account(ui=yaml.safe_dump({"keys": {"k": escaped}}, default_flow_style=True).strip())
    assert parse(text).ui.keys == {"k": value}


# Anything YAML can hold, shaped loosely like a config: the loader must answer with an AppConfig or a
# ConfigError, never crash while building the message.
_names = st.sampled_from(
    [
        "accounts",
        "account_id",
        "gateway",
        "risk",
        "sim",
        "ctp",
        "watchlist",
        "manager",
        "ui",
        "keys",
        "x",
        "class",
    ]
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-2, 2),
    st.sampled_from(["sim", "ctp", "A", "${Z}", ""]),
)
_trees = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(_names, _trees, max_size=4))
def test_any_input_gives_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    try:
        parse(yaml.safe_dump(data))
    except ConfigError as exc:
        assert str(exc).startswith("config.yaml: ")


# --------------------------------------------------------------------------- legacy single-account form


def test_legacy_single_account_form() -> None:
    text = (
        "account_id: OLD1\ngateway: sim\nsim: {seed: 3}\nwatchlist: [au2612.SHFE]\n"
        "risk: {max_order_volume: 7}\nmanager: {heartbeat_timeout: 9}\nui: {color_scheme: intl}\n"
    )
    cfg = parse(text)
    assert len(cfg.accounts) == 1
    account = cfg.accounts[0]
    assert (account.account_id, account.gateway, account.sim.seed) == ("OLD1", "sim", 3)
    assert account.watchlist == ["au2612.SHFE"]
    assert account.risk.max_order_volume == 7
    assert cfg.manager.heartbeat_timeout == 9
    assert cfg.ui.color_scheme == "intl"


def test_legacy_errors_use_the_paths_of_the_file() -> None:
    assert "config.yaml: risk.max_order_volume: expected an integer" in error_of(
        "account_id: OLD1\ngateway: sim\nrisk: {max_order_volume: x}\n"
    )
    message = error_of("account_id: OLD1\ngateway: sim\nmanagr: {}\n")
    assert message.startswith("config.yaml: managr: unknown field")
    assert "did you mean 'manager'?" in message
    assert "config.yaml: ctp.password: environment variable 'PW' is not set" in error_of(
        "account_id: OLD1\ngateway: ctp\nctp: {userid: u, password: '${PW}'}\n"
    )
    assert "config.yaml: ctp: gateway 'ctp' needs a 'ctp' section" in error_of(
        "account_id: OLD1\ngateway: ctp\n"
    )


def test_legacy_and_accounts_together_is_an_error() -> None:
    assert "config.yaml: accounts: use either" in error_of("account_id: A\ngateway: sim\naccounts: []\n")


# --------------------------------------------------------------------------- cross-field checks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "accounts:\n  - {account_id: A, gateway: ctp}\n",
            "config.yaml: accounts[0].ctp: gateway 'ctp' needs a 'ctp' section",
            id="ctp-section",
        ),
        pytest.param(
            "accounts:\n  - {account_id: A, gateway: sim}\n  - {account_id: B, gateway: tqsdk}\n",
            "config.yaml: accounts[1].tqsdk: gateway 'tqsdk' needs a 'tqsdk' section",
            id="tqsdk-section",
        ),
        pytest.param(
            "accounts:\n  - {account_id: A, gateway: tqsdk, tqsdk: {account_type: account, auth_user: u,"
            " auth_password: p}}\n",
            "config.yaml: accounts[0].tqsdk.broker: required when account_type is 'account'",
            id="tqsdk-real-account",
        ),
        pytest.param(
            "accounts:\n  - {account_id: A, gateway: sim}\n  - {account_id: A, gateway: sim}\n",
            "config.yaml: accounts[1].account_id: duplicate account id 'A' (also accounts[0]",
            id="duplicate-id",
        ),
        pytest.param(
            "accounts:\n  - {account_id: dq1, gateway: sim}\n  - {account_id: DQ1, gateway: sim}\n",
            "config.yaml: accounts[1].account_id: duplicate account id 'DQ1'",
            id="duplicate-id-case",
        ),
        pytest.param(
            one_account(
                "    strategies:\n      - {name: s1, class: C, symbol: au2612.SHFE}\n"
                "      - {name: s1, class: C, symbol: rb2705.SHFE}\n"
            ),
            "config.yaml: accounts[0].strategies[1].name: duplicate strategy name 's1' (also strategies[0])",
            id="duplicate-strategy",
        ),
        pytest.param(
            one_account("    strategies: [{name: s1, class: C, symbol: au2612}]\n"),
            "config.yaml: accounts[0].strategies[0].symbol: 'au2612' is not symbol.EXCHANGE",
            id="strategy-symbol",
        ),
        pytest.param(
            one_account("    watchlist: [au2612.SHFE, rb2605.SHF]\n"),
            "config.yaml: accounts[0].watchlist[1]: 'rb2605.SHF': unknown exchange 'SHF'",
            id="watchlist-symbol",
        ),
        pytest.param(
            one_account("    watchlist: [au2612.SHFE, au2612.SHFE]\n"),
            "config.yaml: accounts[0].watchlist[1]: 'au2612.SHFE' is listed twice",
            id="watchlist-duplicate",
        ),
        pytest.param(
            one_account("    market_data_from: ZZ\n"),
            "config.yaml: accounts[0].market_data_from: 'ZZ' is not a configured account (A)",
            id="market-data-unknown",
        ),
        pytest.param(
            one_account("    market_data_from: A\n"),
            "config.yaml: accounts[0].market_data_from: an account cannot take quotes from itself",
            id="market-data-self",
        ),
        pytest.param(
            "accounts:" + CTP_ACCOUNT + "    market_data_from: P\n  - {account_id: P, gateway: sim}\n",
            "config.yaml: accounts[0].market_data_from: only a sim (paper) account",
            id="market-data-not-sim",
        ),
        pytest.param(
            "accounts:\n  - {account_id: A, gateway: sim, market_data_from: B}\n"
            "  - {account_id: B, gateway: sim, market_data_from: A}\n",
            "config.yaml: accounts[0].market_data_from: 'B' takes its own quotes from 'A'",
            id="market-data-chain",
        ),
        pytest.param(
            one_account(manager="{heartbeat_interval: 5, heartbeat_timeout: 5}"),
            "config.yaml: manager.heartbeat_timeout: must be longer than heartbeat_interval (5 <= 5)",
            id="heartbeat",
        ),
    ],
)
def test_cross_field_checks(text: str, expected: str) -> None:
    assert expected in error_of(text, CTP_ENV)


def test_paper_account_with_market_data_from_another_account() -> None:
    cfg = parse(
        "accounts:" + CTP_ACCOUNT + "  - {account_id: P, gateway: sim, market_data_from: C}\n", CTP_ENV
    )
    assert cfg.account("P").market_data_from == "C"


def test_checks_also_apply_when_built_in_code() -> None:
    with pytest.raises(ValueError, match="ctp: gateway 'ctp' needs a 'ctp' section"):
        AccountConfig(account_id="A", gateway="ctp")
    with pytest.raises(ValueError, match="at least one account"):
        AppConfig(accounts=[])
    with pytest.raises(ValueError, match=r"watchlist\.0\s+'rb2605' is not symbol\.EXCHANGE"):
        AccountConfig(account_id="A", gateway="sim", watchlist=["rb2605"])


def test_errors_raised_in_code_do_not_quote_inputs() -> None:
    """A ValidationError's text would show the whole input, secrets included."""
    with pytest.raises(ValueError, match="broker: required when account_type is 'account'") as info:
        TqsdkSettings(account_type="account", auth_user="tu", auth_password="tqpass99")
    assert "tqpass99" not in str(info.value)
    with pytest.raises(ValueError, match="brokerid") as info:
        CtpSettings(userid="u", password="hunter2", brokerid=9999, td_address="t", md_address="m")  # type: ignore[arg-type]
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            one_account("    risk: {max_order_volume: true}\n"),
            "config.yaml: accounts[0].risk.max_order_volume: expected an integer, got true",
            id="bool-for-int",
        ),
        pytest.param(
            one_account("    sim: {initial_balance: false}\n"),
            "config.yaml: accounts[0].sim.initial_balance: expected a number, got false",
            id="bool-for-float",
        ),
        pytest.param(
            one_account("    risk: {max_order_notional: x}\n"),
            "config.yaml: accounts[0].risk.max_order_notional: expected a number or null, got 'x'",
            id="optional-number",
        ),
        pytest.param(
            one_account("    mode: 5\n"),
            "config.yaml: accounts[0].mode: unknown mode 5 (expected process, embedded)",
            id="literal-number",
        ),
        pytest.param(
            one_account("    mode:\n"),
            "config.yaml: accounts[0].mode: expected one of process, embedded, got null",
            id="literal-null",
        ),
        pytest.param(
            one_account("    sim: {seed: 1.5}\n"),
            "config.yaml: accounts[0].sim.seed: expected an integer, got 1.5",
            id="fraction-for-int",
        ),
    ],
)
def test_more_error_messages(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_the_first_problem_in_the_file_is_reported() -> None:
    account = "accounts: [{account_id: A, gateway: sim, x: 1}]\n"
    manager = "manager: {y: 2}\n"
    assert error_of(account + manager).startswith("config.yaml: accounts[0].x: unknown field")
    assert error_of(manager + account).startswith("config.yaml: manager.y: unknown field")
    # within one mapping: a wrong key before a later one, and both before a missing field
    assert error_of("accounts: [{gateway: sim, mode: x, enabled: y}]\n").startswith(
        "config.yaml: accounts[0].mode: unknown mode 'x'"
    )
    # an account's own checks come after its fields, but before the next account
    text = "accounts:\n  - {account_id: A, gateway: ctp}\n  - {account_id: B, gateway: ctpx}\n"
    assert error_of(text).startswith("config.yaml: accounts[0].ctp: gateway 'ctp' needs a 'ctp' section")


# --------------------------------------------------------------------------- symbols and package boundaries


def test_exchange_names_are_those_of_the_core() -> None:
    assert tuple(e.name for e in Exchange) == EXCHANGE_NAMES
    assert all(Exchange(name).name == name for name in EXCHANGE_NAMES)  # the core parses by value


@pytest.mark.parametrize(
    "vt_symbol",
    ["au2612.SHFE", "IF2612.CFFEX", "a.b.DCE", "au2612", ".SHFE", "au2612.", "rb2605.SHF", "x.shfe"],
)
def test_symbol_check_agrees_with_the_core(vt_symbol: str) -> None:
    try:
        split_vt_symbol(vt_symbol)
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))) as info:
            check_vt_symbol(vt_symbol)
        assert str(info.value) == str(exc)
    else:
        assert check_vt_symbol(vt_symbol) == vt_symbol


def test_config_imports_nothing_from_the_core() -> None:
    code = "import sys, config; print(sorted(m for m in sys.modules if m.split('.')[0] in ('core', 'strategies')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_strategies_do_not_import_config() -> None:
    root = Path(__file__).resolve().parents[1] / "strategies"
    files = sorted(root.rglob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "config" or n.startswith("config.") for n in names), (path, names)


# --------------------------------------------------------------------------- schema shape and defaults


def test_defaults_and_strategy_class_key() -> None:
    text = one_account(
        "    strategies:\n      - name: au_ma\n        class: MaRsiStrategy\n        symbol: au2612.SHFE\n"
        "        params: {fast_window: 10}\n        risk: {stop_loss_pct: 2.0}\n"
    )
    cfg = parse(text)
    account = cfg.accounts[0]
    assert (account.enabled, account.mode, account.auto_trading) == (True, "process", False)
    assert (account.sim.initial_balance, account.sim.seed, account.sim.tick_rate) == (1_000_000, 0, 2.0)
    assert account.ctp is None and account.tqsdk is None and account.market_data_from is None
    risk = account.risk
    assert (risk.max_order_volume, risk.max_order_notional, risk.max_active_orders) == (100, None, 50)
    assert (risk.max_orders_per_second, risk.max_cancels_per_second) == (10, 10)
    assert (risk.max_daily_orders, risk.max_daily_cancels, risk.max_position_per_contract) == (
        2000,
        1000,
        200,
    )
    assert risk.check_self_trade is True and risk.duplicate_window == 1.0
    strategy = account.strategies[0]
    assert (strategy.name, strategy.class_name, strategy.symbol) == ("au_ma", "MaRsiStrategy", "au2612.SHFE")
    assert strategy.params == {"fast_window": 10}
    assert (strategy.risk.stop_loss_pct, strategy.risk.take_profit_pct, strategy.risk.max_position) == (
        2.0,
        None,
        1,
    )
    assert strategy.autostart is True
    assert strategy.redacted()["class"] == "MaRsiStrategy"
    manager = cfg.manager
    assert manager.restart_backoff == [0, 1, 2, 5, 10, 30]
    assert (manager.heartbeat_interval, manager.heartbeat_timeout, manager.request_timeout) == (1.0, 5.0, 5.0)
    assert (manager.max_restarts, manager.restart_window, manager.cooldown, manager.stable_after) == (
        5,
        60,
        300,
        30,
    )
    assert cfg.socket == SocketConfig(socket_dir=None, max_frame_bytes=16 * 1024 * 1024)
    assert (cfg.database.data_dir, cfg.database.snapshot_interval) == (None, 10.0)
    assert (cfg.ui.color_scheme, cfg.ui.keys, cfg.log.level) == ("cn", {}, "INFO")


# Every model of the schema, reached from AppConfig; the document holds one of each list and optional section.
FULL_ENV = {"P": "p"}  # secrets come from the environment, never from the file
FULL_DOCUMENT: dict[str, Any] = {
    "accounts": [
        {
            "account_id": "A",
            "gateway": "sim",
            "ctp": {"userid": "u", "password": "${P}", "brokerid": "1", "td_address": "t", "md_address": "m"},
            "tqsdk": {"auth_user": "u", "auth_password": "${P}"},
            "strategies": [{"name": "s", "class": "C", "symbol": "au2612.SHFE"}],
        }
    ],
    "publish": {"url": "redis://127.0.0.1:6379/0", "password": "${P}"},
}


def _bare(t: Any) -> Any:
    """``Annotated[X, ...]`` -> X and ``X | None`` -> X."""
    while True:
        if get_origin(t) is Annotated:
            t = get_args(t)[0]
        elif get_origin(t) in (Union, UnionType) and type(None) in get_args(t):
            (t,) = [a for a in get_args(t) if a is not type(None)]
        else:
            return t


def _schema_fields() -> tuple[list[tuple[tuple[str | int, ...], Any]], set[type[BaseModel]]]:
    """(path in FULL_DOCUMENT, FieldInfo) of every field of every model reached, and the models."""
    out: list[tuple[tuple[str | int, ...], Any]] = []
    models: set[type[BaseModel]] = set()
    todo: list[tuple[tuple[str | int, ...], type[BaseModel]]] = [((), AppConfig)]
    while todo:
        path, model = todo.pop()
        models.add(model)
        for name, info in model.model_fields.items():
            key = info.alias or name
            out.append(((*path, key), info))
            t, key_path = _bare(info.annotation), (*path, key)
            if get_origin(t) is list:
                t, key_path = _bare(get_args(t)[0]), (*key_path, 0)
            if isinstance(t, type) and issubclass(t, BaseModel):
                todo.append((key_path, t))
    return out, models


def _where(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def _with(path: tuple[str | int, ...], value: Any) -> str:
    document = copy.deepcopy(FULL_DOCUMENT)
    node: Any = document
    for seg in path[:-1]:
        node = node[seg] if isinstance(seg, int) else node.setdefault(seg, {})
    node[path[-1]] = value
    return yaml.safe_dump(document)


def _constraints(info: Any) -> list[tuple[bool, Any]]:
    """(on an item?, constraint) for the bounds and minimum lengths of a field and of its items."""
    out: list[tuple[bool, Any]] = [(False, c) for c in info.metadata]
    annotation = info.annotation
    if get_origin(annotation) in (Union, UnionType):
        out += [
            (False, c) for m in get_args(annotation) if get_origin(m) is Annotated for c in get_args(m)[1:]
        ]
    if get_origin(annotation) is list and get_origin(get_args(annotation)[0]) is Annotated:
        out += [(True, c) for c in get_args(get_args(annotation)[0])[1:]]
    validators = (BeforeValidator, AfterValidator)  # the schema's own checks, tested one by one above
    unknown = [c for _, c in out if not isinstance(c, (Gt, Ge, Le, MinLen, *validators))]
    assert not unknown, f"a constraint this test (and maybe the loader) does not know: {unknown}"
    return [(item, c) for item, c in out if not isinstance(c, validators)]


def _violation(constraint: Any) -> Any:
    if isinstance(constraint, Gt):
        return constraint.gt
    if isinstance(constraint, Ge):
        return constraint.ge - 1
    assert isinstance(constraint, Le)
    return constraint.le + 1


def test_every_field_has_messages_in_our_words() -> None:
    """A field added to the schema (or a pydantic upgrade) cannot fall back to pydantic's wording."""
    import config.schema as schema

    fields, models = _schema_fields()
    assert models == {
        obj for obj in vars(schema).values() if isinstance(obj, type) and issubclass(obj, schema._Section)
    } - {schema._Section, schema._SecretSection}
    parse(yaml.safe_dump(FULL_DOCUMENT), FULL_ENV)  # the document itself is valid
    bounds = 0
    for path, info in fields:
        bare = _bare(info.annotation)
        composite = get_origin(bare) in (list, dict) or (
            isinstance(bare, type) and issubclass(bare, BaseModel)
        )
        message = error_of(_with(path, "x" if composite else []), FULL_ENV)
        assert message.startswith(f"config.yaml: {_where(path)}: expected "), message
        assert message.endswith(("got a list", "got 'x'")) and "a value" not in message, message
        for on_item, constraint in _constraints(info):
            bounds += 1
            if isinstance(constraint, MinLen):
                bad: Any = [] if get_origin(bare) is list else ""
                expected = "must not be empty"
            else:
                bad = _violation(constraint)
                expected = rf"expected (an integer|a number) (>|>=|<=) \d+, got {bad!r}"
            target = (*path, 0) if on_item else path
            message = error_of(_with(path, [bad] if on_item else bad), FULL_ENV)
            assert re.fullmatch(rf"config\.yaml: {re.escape(_where(target))}: {expected}", message), message
    assert bounds > 25


def test_every_model_is_kw_only_and_forbids_unknown_fields() -> None:
    import config.schema as schema

    classes = [
        obj
        for obj in vars(schema).values()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == schema.__name__
    ]
    assert len(classes) >= 14
    for cls in classes:
        params = inspect.signature(cls).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), cls
        assert cls.model_config.get("extra") == "forbid", cls


def test_account_lookup() -> None:
    cfg = parse(
        "accounts:\n  - {account_id: A, gateway: sim}\n  - {account_id: B, gateway: sim, enabled: false}\n"
    )
    assert cfg.account("B").enabled is False
    assert [a.account_id for a in cfg.enabled_accounts] == ["A"]
    with pytest.raises(KeyError, match="no account 'Z'"):
        cfg.account("Z")


def test_relative_directories_are_anchored_at_the_config_file(tmp_path: Path, clean_env: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    path = sub / "q.yaml"
    path.write_text(one_account(database="{data_dir: data}", socket="{socket_dir: ~/sock}"))
    cfg = load_config_file(path)
    assert cfg.database.data_dir == str(sub / "data")
    assert cfg.socket.socket_dir == str(Path("~/sock").expanduser())


# --------------------------------------------------------------------------- secrets


def make_ctp(**overrides: str) -> CtpSettings:
    values = dict(userid="u1", password="hunter2", brokerid="9999", td_address="t", md_address="m")
    values["auth_code"] = "authcode42"
    return CtpSettings(**(values | overrides))


def test_secrets_are_masked_in_repr_rich_and_redacted() -> None:
    ctp = make_ctp()
    account = AccountConfig(account_id="A", gateway="ctp", ctp=ctp)
    tq = TqsdkSettings(auth_user="tu", auth_password="tqpass99", password="brokerpw77")
    for shown in (
        repr(ctp),
        str(ctp),
        f"{ctp}",
        repr(account),
        pretty_repr(account),
        repr(tq),
        pretty_repr(tq),
    ):
        for secret in ("hunter2", "authcode42", "tqpass99", "brokerpw77"):
            assert secret not in shown
    assert f"password='{MASK}'" in repr(ctp)
    assert "userid='u1'" in repr(ctp)
    redacted = account.redacted()
    assert redacted["ctp"]["password"] == MASK and redacted["ctp"]["auth_code"] == MASK
    assert redacted["ctp"]["userid"] == "u1"
    assert tq.redacted()["auth_password"] == MASK and tq.redacted()["password"] == MASK
    # The real values are still there for the gateway.
    assert ctp.password == "hunter2"
    # An unset optional secret shows as empty, which helps diagnosis without revealing anything.
    assert make_ctp(auth_code="").redacted()["auth_code"] == ""


def test_app_config_redacted_is_loggable() -> None:
    cfg = parse("accounts:" + CTP_ACCOUNT, CTP_ENV)
    dumped = repr(cfg.redacted()) + repr(cfg)
    assert "s3cret-pw" not in dumped and "auth-xyz" not in dumped


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("ctp: {userid: u, password: plainpw, brokerid: '9', td_address: t, md_address: m}", "ctp.password"),
        (
            "ctp: {userid: u, password: '${PW}', brokerid: '9', td_address: t, md_address: m,"
            " auth_code: plainpw}",
            "ctp.auth_code",
        ),
        ("tqsdk: {auth_user: u, auth_password: plainpw}", "tqsdk.auth_password"),
        (
            "tqsdk: {account_type: account, broker: b, user: u, password: plainpw, auth_user: u,"
            " auth_password: '${PW}'}",
            "tqsdk.password",
        ),
    ],
)
def test_literal_secrets_are_refused(section: str, field: str) -> None:
    gateway = section.split(":")[0]
    text = f"accounts:\n  - account_id: C1\n    gateway: {gateway}\n    {section}\n"
    message = error_of(text, {"PW": "from-env"})
    name = field.split(".")[1]
    variable = f"C1_{name.upper()}"
    assert message == (
        f"config.yaml: accounts[0].{field}: secret written in the file: refused (put it in an environment "
        f'variable, export {variable}=..., and write {name}: "${{{variable}}}")'
    )
    assert "plainpw" not in message


def test_a_literal_secret_in_an_unused_section_is_refused_too() -> None:
    # the gateway is sim, the tqsdk section is ignored: its password has leaked all the same
    text = "accounts:\n  - {account_id: A, gateway: sim, tqsdk: {auth_user: u, auth_password: hunter2}}\n"
    assert error_of(text).startswith(
        "config.yaml: accounts[0].tqsdk.auth_password: secret written in the file"
    )


def test_env_secrets_give_no_warning() -> None:
    warnings: list[str] = []
    parse("accounts:" + CTP_ACCOUNT, CTP_ENV, warnings)
    assert warnings == []


def test_error_messages_do_not_echo_secrets() -> None:
    text = (
        "accounts:\n  - account_id: C\n    gateway: ctp\n    ctp: {userid: u, password: 735911, brokerid: '9',"
        " td_address: t, md_address: m}\n"
    )
    message = error_of(text)
    assert "accounts[0].ctp.password: expected a string, got a number" in message
    assert "735911" not in message


def test_other_warnings() -> None:
    warnings: list[str] = []
    text = (
        "accounts:\n  - account_id: A\n    gateway: sim\n    enabled: false\n"
        "    tqsdk: {auth_user: '${U}', auth_password: '${P}'}\n"
        "  - {account_id: B, gateway: sim, enabled: false, market_data_from: A}\n"
    )
    parse(text, {"U": "u", "P": "p"}, warnings)
    assert "config.yaml: accounts[0].tqsdk: ignored: the gateway is 'sim'" in warnings
    assert "config.yaml: every account is disabled (enabled: false): nothing will run" in warnings


# --------------------------------------------------------------------------- paths


def sim_config(**socket: Any) -> AppConfig:
    return AppConfig(accounts=[AccountConfig(account_id="A", gateway="sim")], socket=SocketConfig(**socket))


def test_data_dir_precedence(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = sim_config()
    default = data_dir(cfg)
    assert default.is_absolute() and default.name == "qtrader"
    monkeypatch.setenv("QTRADER_HOME", str(clean_env / "home"))
    assert data_dir(cfg) == clean_env / "home"
    cfg.database.data_dir = str(clean_env / "cfg")
    assert data_dir(cfg) == clean_env / "cfg"
    assert data_dir(cfg, "cli") == clean_env / "cli"


def test_file_layout() -> None:
    root = Path("/data")
    assert account_log_dir(root, "DQ1") == Path("/data/logs/DQ1")
    assert trader_log_path(root, "DQ1") == Path("/data/logs/DQ1/trader.log")
    assert runtime_log_path(root) == Path("/data/logs/runtime.log")
    assert account_state_dir(root, "DQ1") == Path("/data/state/DQ1")
    assert trader_socket_path(Path("/run/q"), "DQ1") == Path("/run/q/trader-DQ1.sock")
    assert control_socket_path(Path("/run/q")) == Path("/run/q/control.sock")
    for bad in ("../etc", "a/b", "", "x" * 33):
        with pytest.raises(ValueError, match="invalid account id"):
            account_state_dir(root, bad)


@pytest.fixture
def short_tmp() -> Any:
    """A short directory under /tmp: pytest's tmp_path is too long for a Unix socket path."""
    path = Path(tempfile.mkdtemp(prefix="qc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_socket_dir_from_config_is_created_private(short_tmp: Path) -> None:
    wanted = short_tmp / "a" / "sock"
    assert socket_dir(sim_config(socket_dir=str(wanted))) == wanted
    assert wanted.is_dir() and mode_of(wanted) == 0o700


def test_existing_socket_dir_is_tightened_to_0700(short_tmp: Path) -> None:
    wanted = short_tmp / "sock"
    wanted.mkdir(mode=0o755)
    wanted.chmod(0o755)
    socket_dir(sim_config(socket_dir=str(wanted)))
    assert mode_of(wanted) == 0o700


def test_socket_dir_owned_by_someone_else_is_refused(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = short_tmp / "sock"
    wanted.mkdir(mode=0o755)
    wanted.chmod(0o755)
    other_uid = wanted.stat().st_uid + 1
    monkeypatch.setattr(config.paths.os, "getuid", lambda: other_uid)
    with pytest.raises(ConfigError, match=r"is owned by uid \d+, not by you"):
        socket_dir(sim_config(socket_dir=str(wanted)))
    assert mode_of(wanted) == 0o755  # left untouched


def test_socket_dir_symlink_is_refused(short_tmp: Path) -> None:
    real = short_tmp / "real"
    real.mkdir()
    link = short_tmp / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        socket_dir(sim_config(socket_dir=str(link)))


def test_socket_dir_defaults(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = short_tmp / "run"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert socket_dir(sim_config()) == runtime / "qtrader"
    assert mode_of(runtime / "qtrader") == 0o700
    # A stale XDG_RUNTIME_DIR (no such directory) falls back to the temp dir.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp / "gone"))
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp / "tmp"))
    (short_tmp / "tmp").mkdir()
    expected = short_tmp / "tmp" / f"qtrader-{os.getuid()}"
    assert socket_dir(sim_config()) == expected
    assert mode_of(expected) == 0o700
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert socket_dir(sim_config()) == expected


def test_socket_dir_too_long_for_unix_sockets(tmp_path: Path, short_tmp: Path) -> None:
    wanted = tmp_path / ("d" * 100)
    with pytest.raises(ConfigError, match=rf"too long for Unix sockets.*limit is {SOCKET_PATH_MAX}"):
        socket_dir(sim_config(socket_dir=str(wanted)))
    assert not wanted.exists()
    # The longest id fits in any directory that socket_dir accepts.
    ok = short_tmp / "s"
    sock_dir = socket_dir(sim_config(socket_dir=str(ok)))
    assert len(os.fsencode(trader_socket_path(sock_dir, "x" * 32))) <= SOCKET_PATH_MAX


@pytest.mark.parametrize("name", ["manual", "external"])
def test_manual_and_external_are_not_strategy_names(name: str) -> None:
    text = f"""
accounts:
  - account_id: A1
    gateway: sim
    watchlist: [au2612.SHFE]
    strategies:
      - {{name: {name}, class: GridStrategy, symbol: au2612.SHFE}}
"""
    with pytest.raises(ConfigError, match=rf"strategies\[0\]\.name: '{name}' is reserved"):
        parse_config(text, "config.yaml")


# --------------------------------------------------------------------------- symbols as the exchanges spell them


@pytest.mark.parametrize(
    ("where", "vt_symbol", "expected"),
    [
        ("watchlist", "RB2705.SHFE", "SHFE writes products in lower case; did you mean rb2705.SHFE?"),
        ("watchlist", "sa705.CZCE", "CZCE writes products in upper case; did you mean SA705.CZCE?"),
        ("watchlist", "SA2705.CZCE", "CZCE months have 3 digits (YMM, e.g. SA705); did you mean SA705.CZCE?"),
        ("watchlist", "rb705.SHFE", "SHFE months have 4 digits (YYMM, e.g. 2705); did you mean rb2705.SHFE?"),
        ("watchlist", "rb2705.DCE", "rb is listed on SHFE, not DCE; did you mean rb2705.SHFE?"),
        ("watchlist", "if2612.CFFEX", "CFFEX writes products in upper case; did you mean IF2612.CFFEX?"),
        ("watchlist", "au2613.SHFE", "month 13 is not 01..12"),
        (
            "strategy",
            "rbb2705.SHFE",
            "unknown product 'rbb' on SHFE; did you mean rb2705.SHFE? (listed: cu, ",
        ),
        ("strategy", "zz2705.GFEX", "unknown product 'zz' on GFEX (listed: si, lc, ps, pt, pd)"),
    ],
)
def test_symbols_spelled_otherwise_than_the_exchange_are_refused(
    where: str, vt_symbol: str, expected: str
) -> None:
    if where == "watchlist":
        text, field = one_account(f"    watchlist: [au2612.SHFE, {vt_symbol}]\n"), "accounts[0].watchlist[1]"
    else:
        text = one_account(
            f"    strategies:\n      - {{name: g, class: GridStrategy, symbol: {vt_symbol}}}\n"
        )
        field = "accounts[0].strategies[0].symbol"
    assert error_of(text).startswith(f"config.yaml: {field}: '{vt_symbol}': {expected}")


def test_symbols_as_each_exchange_writes_them_load() -> None:
    watchlist = "rb2705.SHFE, sc2701.INE, i2705.DCE, SA705.CZCE, IF2612.CFFEX, T2703.CFFEX, lc2705.GFEX"
    cfg = parse(one_account(f"    watchlist: [{watchlist}]\n"))
    assert cfg.accounts[0].watchlist == watchlist.split(", ")


def test_the_sim_lists_only_products_of_the_exchange_table() -> None:
    from config.symbols import PRODUCTS
    from gateways.sim_contracts import PRODUCTS as SIM_PRODUCTS

    for code, spec in SIM_PRODUCTS.items():
        assert code in PRODUCTS[spec.exchange.name], code


@pytest.mark.parametrize(
    ("vt_symbol", "expired"),
    [
        ("au2611.SHFE", True),  # the month before today's
        ("au2612.SHFE", False),  # today's month still trades (until its last trading day)
        ("rb2705.SHFE", False),
        ("SA605.CZCE", True),  # CZCE's one-digit year: 6 is 2026, not 2036
        ("SA705.CZCE", False),
        ("IF2601.CFFEX", True),
    ],
)
def test_contract_months_expire_with_their_month(vt_symbol: str, expired: bool) -> None:
    from datetime import date

    from config.symbols import month_expired

    symbol, _, exchange = vt_symbol.partition(".")
    assert month_expired(symbol, exchange, date(2026, 12, 3)) is expired


# --------------------------------------------------------------------------- hostile files


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)


def _parse_in_bounded_process(text: str) -> subprocess.CompletedProcess[str]:
    """parse_config in a child limited to 512 MB of address space and 20 s of CPU: a regression
    (an alias bomb expanded, a recursion) fails the test instead of eating the machine or hanging."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (512 * 2**20, 512 * 2**20))\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (20, 20))\n"
        "from config import ConfigError, parse_config\n"
        "try:\n"
        "    parse_config(sys.stdin.read(), 'config.yaml')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    return subprocess.run(
        [sys.executable, "-c", code],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": root},
    )


def test_an_alias_bomb_is_refused_in_bounded_memory() -> None:
    done = _parse_in_bounded_process(BILLION_LAUGHS)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout.strip() == (
        "config.yaml: line 5: refused: more than 100,000 values once its aliases (*name) are expanded"
    )


@pytest.mark.parametrize(
    "text",
    [
        "accounts: " + "[" * 5000 + "]" * 5000 + "\n",
        "".join(" " * i + f"k{i}:\n" for i in range(600)),  # 180 kB of indentation
        # aliases can build depth that the text does not show
        "".join(f"l{i}: &l{i} [*l{i - 1}]\n" if i else "l0: &l0 [x]\n" for i in range(100)),
    ],
    ids=["flow", "block", "aliases"],
)
def test_deep_nesting_is_refused_with_a_message(text: str) -> None:
    done = _parse_in_bounded_process(text)
    assert done.returncode == 2, done.stderr[-2000:]
    assert re.fullmatch(
        r"config\.yaml: line \d+: refused: nested more than 64 levels deep.*", done.stdout.strip()
    )
    assert "Traceback" not in done.stderr


def test_a_self_referencing_alias_is_refused() -> None:
    assert error_of("accounts: &a [*a]\n") == (
        "config.yaml: line 1: refused: an alias (*name) refers to a mapping or list that contains it"
    )


def test_anchors_and_merge_keys_still_work() -> None:
    text = (
        "accounts:\n"
        "  - {account_id: A, gateway: sim, risk: &risk {max_order_volume: 3}}\n"
        "  - {account_id: B, gateway: sim, risk: {<<: *risk, max_active_orders: 9}}\n"
        "  - {account_id: C, gateway: sim, risk: *risk}\n"
    )
    cfg = parse(text)
    assert (cfg.accounts[1].risk.max_order_volume, cfg.accounts[1].risk.max_active_orders) == (3, 9)
    assert cfg.accounts[2].risk.max_order_volume == 3


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("accounts: []\n" + "#" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(
        ConfigError, match=r"^big\.yaml: refused: 2,097,166 bytes \(a configuration is at most"
    ):
        load_config_file(path)


def test_a_socket_dir_too_long_is_refused_at_load_naming_field_and_length(tmp_path: Path) -> None:
    wanted = "/tmp/" + "d" * 80
    message = error_of(one_account(socket=f"{{socket_dir: {wanted}}}"))
    size = len(wanted) + len("/trader-" + "X" * 32 + ".sock")
    assert message.startswith(
        f"config.yaml: socket.socket_dir: {wanted} is too long for Unix sockets: a trader socket in it "
        f"(trader-{'X' * 32}.sock) would be {size} bytes, the limit is {SOCKET_PATH_MAX}"
    )


def test_socket_dir_writable_by_others_is_refused(short_tmp: Path) -> None:
    for mode in (0o777, 0o1777, 0o770):
        wanted = short_tmp / f"sock{mode:o}"
        wanted.mkdir()
        wanted.chmod(mode)
        with pytest.raises(ConfigError, match=rf"is writable by other users \(mode {mode:04o}\)"):
            socket_dir(sim_config(socket_dir=str(wanted)))
        assert mode_of(wanted) == mode  # left as it is: tightening would not undo a plant


def test_the_data_directory_is_still_tightened_whatever_its_mode(short_tmp: Path) -> None:
    wanted = short_tmp / "data"
    wanted.mkdir()
    wanted.chmod(0o777)
    assert config.paths.secure_data_dir(wanted) == wanted
    assert mode_of(wanted) == 0o700
