"""Settings are one typed model: what the starter passes, then OGPGY_* environment variables, then
secret files, then the defaults; `ogpgy config` prints the effective values with secrets redacted."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.config import Settings
from common.config.settings import redact
from mesh.cli import main


def test_the_environment_sets_every_field_and_the_starter_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGPGY_PORT", "7103")
    monkeypatch.setenv("OGPGY_TOKEN_TTL_SECONDS", "60")
    monkeypatch.setenv("OGPGY_ADDRESSES", '{"account": "dns:///account.ogpgy.svc.cluster.local:7103"}')
    monkeypatch.setenv("OGPGY_FAULTS", "not-a-setting")  # another OGPGY_ variable is no error
    settings = Settings()
    assert (settings.port, settings.token_ttl_seconds) == (7103, 60)
    assert settings.addresses == {"account": "dns:///account.ogpgy.svc.cluster.local:7103"}
    assert Settings(port=9).port == 9


def test_a_wrong_value_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGPGY_PORT", "seventy")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_secrets_come_from_mounted_files(tmp_path: Path) -> None:
    (tmp_path / "OGPGY_ADMIN_PASSWORD").write_text("from-a-secret")
    (tmp_path / "OGPGY_POSTGRES_DSN").write_text("postgresql://bank:pw@db:5432/ogpgy")
    # _secrets_dir is pydantic-settings' own init argument, not a field: its typed signature lists fields only.
    settings = Settings(_secrets_dir=tmp_path)  # type: ignore[call-arg]
    assert (settings.admin_password, settings.postgres_dsn) == ("from-a-secret", "postgresql://bank:pw@db:5432/ogpgy")


def test_secrets_are_redacted_but_where_they_point_is_not() -> None:
    assert redact("postgresql://bank:pw@db:5432/ogpgy") == "postgresql://bank:***@db:5432/ogpgy"
    assert redact("host=db user=bank password=pw dbname=ogpgy") == "host=db user=bank password=*** dbname=ogpgy"
    assert redact("redis://cache:6379/0") == "redis://cache:6379/0"
    settings = Settings(admin_password="pa=ss://word", smtp_url="smtp://mail:25", postgres_dsn="postgresql://u:pw@db/x")
    shown = settings.redacted()
    assert (shown["admin_password"], shown["smtp_url"]) == ("***", "smtp://mail:25")
    assert "pa=ss" not in repr(settings) and "pw@" not in repr(settings), "a logged or printed Settings keeps its secrets"


def test_ogpgy_config_prints_a_process_settings_without_its_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mesh = tmp_path / "mesh.toml"
    mesh.write_text(
        '[mesh]\ndata_dir = "data"\nredis = "redis://cache:6379/0"\npostgres = "postgresql://bank:pw@db/ogpgy"\n'
        'smtp = "smtp://mail:25"\n'
        + "".join(
            f'[process.{c}]\naddresses = ["127.0.0.1:{7100 + n}"]\n'
            for n, c in enumerate(
                ("identity", "customer", "account", "payment", "lending", "interest", "notification", "velocitypay")
            )
        )
    )
    monkeypatch.setenv("OGPGY_ADMIN_PASSWORD", "operator-secret")
    assert main(["config", "--process", "account", "--config", str(mesh)]) == 0
    printed = capsys.readouterr().out
    assert "port = 7102" in printed and 'instance_name = "account[0]"' in printed
    assert 'postgres_dsn = "postgresql://bank:***@db/ogpgy"' in printed
    assert "operator-secret" not in printed and "pw@" not in printed


def test_ogpgy_config_shows_a_process_of_the_shipped_mesh(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped mesh.toml starts Redis, PostgreSQL and the mail server itself (`local`): their
    addresses exist only once `up --distributed` runs, which `config` says instead of failing."""
    for process, port in (("account", 7103), ("identity", 7101)):
        assert main(["config", "--process", process]) == 0
        printed = capsys.readouterr().out
        assert f"port = {port}" in printed and 'database = "postgres"' in printed
