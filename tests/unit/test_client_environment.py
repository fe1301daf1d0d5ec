"""One shell set up for one bank serves every client: the `ogpgy` client commands and BankClient
take the target, the CA, the client certificate and the caller from the same OGPGY_* variables,
and an option given on the command line still wins."""

from __future__ import annotations

from pathlib import Path

import pytest
from ogpgy_client import ENVIRONMENT, BankClient

from mesh.cli import _parser
from mesh.cli_operator import CLIENT_ENVIRONMENT

COMMANDS = (
    ["token"],
    ["reconcile"],
    ["interest", "run", "--date", "2026-01-01"],
    ["fees", "charge", "--month", "2026-01"],
    ["loans", "collect", "--date", "2026-01-01"],
)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_client_command_takes_the_bank_from_the_environment(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGPGY_TARGET", "bank.example:443")
    monkeypatch.setenv("OGPGY_USERNAME", "ops")
    monkeypatch.setenv("OGPGY_DATA_DIR", "/srv/bank")
    monkeypatch.setenv("OGPGY_CA_FILE", "/etc/bank/ca.pem")
    monkeypatch.setenv("OGPGY_CERT_FILE", "/etc/bank/operator.pem")
    monkeypatch.setenv("OGPGY_KEY_FILE", "/etc/bank/operator.key")
    args = _parser().parse_args(command)
    assert (args.target, args.username, args.data_dir) == ("bank.example:443", "ops", Path("/srv/bank"))
    assert (args.cacert, args.cert, args.key) == (
        Path("/etc/bank/ca.pem"),
        Path("/etc/bank/operator.pem"),
        Path("/etc/bank/operator.key"),
    )
    assert _parser().parse_args([*command, "--target", "other:1"]).target == "other:1", "the command line wins"


def test_without_the_environment_the_commands_call_the_local_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in CLIENT_ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)
    args = _parser().parse_args(["token"])
    assert (args.target, args.username, args.data_dir, args.cacert, args.cert) == (
        "127.0.0.1:50051",
        "admin",
        Path("var"),
        None,
        None,
    )


def test_the_cli_and_the_client_read_the_same_names() -> None:
    assert set(CLIENT_ENVIRONMENT.values()) - {"OGPGY_DATA_DIR"} == set(ENVIRONMENT) - {"OGPGY_PASSWORD"}


async def test_bank_client_from_the_environment_needs_a_password_and_the_ca_for_a_certificate() -> None:
    with pytest.raises(ValueError, match="OGPGY_PASSWORD"):
        BankClient.from_env({"OGPGY_TARGET": "127.0.0.1:1"})
    with pytest.raises(ValueError, match="CA"):
        BankClient.from_env({"OGPGY_PASSWORD": "pw", "OGPGY_CERT_FILE": "/nowhere.pem"})
    async with BankClient.from_env({"OGPGY_PASSWORD": "pw"}) as local:
        assert local.channel is not None


def test_a_certificate_without_the_banks_ca_is_refused_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    from mesh.cli_operator import _tls

    monkeypatch.delenv("OGPGY_CA_FILE", raising=False)
    monkeypatch.setenv("OGPGY_CERT_FILE", "/etc/bank/operator.pem")
    with pytest.raises(OSError, match="CA"):
        _tls(_parser().parse_args(["token"]))
