from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tidings.settings import Settings


def test_defaults_put_state_under_the_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(home=tmp_path / "state")
    assert (
        settings.resolved_database_url
        == f"sqlite:///{(tmp_path / 'state' / 'tidings.db').resolve()}"
    )
    assert settings.task_queue == "tidings"


def test_tidings_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("TIDINGS_COHORT_SIZE", "250")
    settings = Settings()
    assert settings.resolved_database_url == "postgresql://u@h/db"
    assert settings.cohort_size == 250


def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_COHORT_SIZE", "0")
    with pytest.raises(ValidationError, match="cohort_size"):
        Settings()


def test_secrets_do_not_show_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "very-secret-value")
    monkeypatch.setenv("TIDINGS_ADMIN_KEY", "admin-secret-value")
    text = repr(Settings())
    assert "very-secret-value" not in text
    assert "admin-secret-value" not in text


def test_importing_tidings_does_no_io(tmp_path: Path) -> None:
    """Importing every module must not create files, connect, or read settings."""
    code = (
        "import tidings.cli.app, tidings.api.app, tidings.worker.resources, tidings.stack, "
        "tidings.cli.demo, "
        "worker, starter"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    assert list(tmp_path.iterdir()) == []
