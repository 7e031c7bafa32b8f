"""Production mode refuses to guess, and every configuration error is one or two lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.settings import Settings
from tidings.startup import ConfigurationError, load_settings
from tidings.store.secrets import SecretBox, generate_key
from tidings.temporal.client import configured_address
from tidings.temporal.devserver import StackError, temporal_endpoint

TIDINGS = str(Path(sys.executable).parent / "tidings")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TIDINGS_* or TEMPORAL_* variable, no .env, no Temporal config file."""
    for name in list(os.environ):
        if name.startswith(("TIDINGS_", "TEMPORAL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def production_lines(error: pytest.ExceptionInfo[ConfigurationError]) -> list[str]:
    return [line.split(" ", 1)[0] for line in error.value.lines]


def test_production_names_each_missing_setting_on_its_own_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "production")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert production_lines(error) == [
        "TEMPORAL_ADDRESS",
        "TIDINGS_SECRET_KEY",
        "TIDINGS_ADMIN_KEY",
    ]
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("TIDINGS_ADMIN_KEY", "admin")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert production_lines(error) == ["TIDINGS_SECRET_KEY"]
    monkeypatch.setenv("TIDINGS_SECRET_KEY", generate_key())
    assert load_settings().production
    # no key file was written on the way
    assert not (clean_env / ".tidings").exists()


def test_a_postgresql_store_means_production(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "postgresql://tidings@db.internal/tidings")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert len(error.value.lines) == 3
    assert "PostgreSQL" in error.value.lines[0]
    # a developer's own PostgreSQL beside the embedded stack says so explicitly
    monkeypatch.setenv("TIDINGS_ENV", "development")
    assert not load_settings().production
    monkeypatch.delenv("TIDINGS_ENV")
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "sqlite:///x.db")
    assert not load_settings().production


def test_a_bad_key_in_production_is_one_line_naming_which(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "production")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "t:7233")
    monkeypatch.setenv("TIDINGS_ADMIN_KEY", "admin")
    monkeypatch.setenv("TIDINGS_SECRET_KEY", f"{generate_key()},not-a-key")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert error.value.lines == [
        "TIDINGS_SECRET_KEY (key 2 of 2) is not a valid Fernet key (32 url-safe base64-encoded "
        "bytes); make one with `tidings keys generate`"
    ]


def test_dotenv_names_temporal_too_and_the_environment_wins(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("TEMPORAL_ADDRESS=from-file:7233\nTIDINGS_COHORT_SIZE=7\n")
    assert configured_address() == "from-file:7233"
    assert Settings().cohort_size == 7
    monkeypatch.setenv("TEMPORAL_ADDRESS", "from-env:7233")
    assert configured_address() == "from-env:7233"


async def test_production_never_starts_a_dev_server(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(env="production", home=clean_env / "home")
    with pytest.raises(StackError, match="TEMPORAL_ADDRESS"):
        async with temporal_endpoint(settings):
            pass
    assert not (clean_env / "home").exists()


def run_cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "TEMPORAL_"))}
    clean |= {"TEMPORAL_CONFIG_FILE": str(home / "absent.toml"), "TIDINGS_HOME": str(home)}
    return subprocess.run(
        [TIDINGS, *args], env=clean | env, cwd=home, capture_output=True, text=True, timeout=60
    )


def production_env(**overrides: str) -> dict[str, str]:
    return {
        "TIDINGS_ENV": "production",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "TIDINGS_SECRET_KEY": generate_key(),
        "TIDINGS_ADMIN_KEY": "admin",
    } | overrides


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("worker",), {"TIDINGS_ENV": "production"}, "TEMPORAL_ADDRESS is not set"),
        (("db", "current"), {"TIDINGS_LOG_LEVEL": "loud"}, "TIDINGS_LOG_LEVEL: Input should be"),
        (
            ("db", "current"),
            production_env(TIDINGS_DATABASE_URL="postgresql://u@127.0.0.1:1/x"),
            "cannot reach the database",
        ),
        (
            ("worker",),
            production_env(TIDINGS_DATABASE_URL="sqlite:///unmigrated.db"),
            "the database schema is at revision none",
        ),
        (("api",), production_env(TIDINGS_SECRET_KEY="short"), "TIDINGS_SECRET_KEY is not a"),
    ],
)
def test_configuration_errors_are_a_line_or_two_never_a_traceback(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    done = run_cli(tmp_path, *args, **env)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("20")]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert 1 <= len(lines) <= 3, done.stderr
    assert lines[0].startswith(f"tidings: {expected}"), done.stderr
    # production never wrote a key file nor started a dev server
    assert not (tmp_path / "secret.key").exists()
    assert not (tmp_path / "temporal.json").exists()


def test_keys_generate_and_version(tmp_path: Path) -> None:
    key = run_cli(tmp_path, "keys", "generate").stdout.strip()
    SecretBox(key.encode())  # a valid Fernet key
    assert run_cli(tmp_path, "--version").stdout.startswith("tidings ")


def test_db_commands_upgrade_report_and_downgrade(tmp_path: Path) -> None:
    env = {"TIDINGS_DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}"}
    current = run_cli(tmp_path, "db", "current", **env)
    assert current.returncode == 1
    assert "not migrated" in current.stdout
    assert run_cli(tmp_path, "db", "upgrade", **env).returncode == 0
    assert run_cli(tmp_path, "db", "current", **env).returncode == 0
    history = run_cli(tmp_path, "db", "history", **env).stdout.splitlines()
    assert history[0].startswith("  0001")
    assert history[-1].startswith("* ")
    assert run_cli(tmp_path, "db", "downgrade", "--", "-1", **env).returncode == 0
    behind = run_cli(tmp_path, "db", "current", **env)
    assert behind.returncode == 1
    assert history[-2].split()[0] in behind.stdout


async def test_keys_rotate_reencrypts_every_stored_credential(tmp_path: Path) -> None:
    from tidings.store.db import Database
    from tidings.store.models import App

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    assert run_cli(tmp_path, "db", "upgrade", TIDINGS_DATABASE_URL=url).returncode == 0
    old, new = generate_key(), generate_key()
    db = Database(url)
    try:
        async with db.write() as session:
            session.add(
                App(
                    id="sealed",
                    name="sealed",
                    credentials_version=3,
                    apns_secret=SecretBox(old.encode()).seal("apns secret"),
                    fcm_secret="env:FCM_ACCOUNT",
                )
            )
        done = run_cli(
            tmp_path, "keys", "rotate", TIDINGS_DATABASE_URL=url, TIDINGS_SECRET_KEY=f"{new},{old}"
        )
        assert done.returncode == 0, done.stderr
        assert "1 credentials re-encrypted" in done.stdout
        async with db.read() as session:
            app = await session.get(App, "sealed")
        assert app is not None
        assert app.apns_secret is not None
        assert SecretBox(new.encode()).open(app.apns_secret) == "apns secret"
        assert app.fcm_secret == "env:FCM_ACCOUNT"
        assert app.credentials_version == 3  # senders are not rebuilt for the same secret
        # a key list that opens nothing says which credential, and fails
        stranger = run_cli(
            tmp_path, "keys", "rotate", TIDINGS_DATABASE_URL=url, TIDINGS_SECRET_KEY=old
        )
        assert stranger.returncode == 1
        assert "sealed: apns_secret" in stranger.stderr
    finally:
        await db.dispose()


def test_a_queue_choice_the_settings_cannot_serve_starts_nothing(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "worker", "--queues", "delivery")
    assert done.returncode == 2
    assert "TIDINGS_DELIVERY_TASK_QUEUE" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "temporal.json").exists()
