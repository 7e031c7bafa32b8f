"""`tidings profiles import FILE`: the same import as the API, on the store of the home."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli.processes import TIDINGS, clean_env


def test_a_file_is_imported_and_its_bad_rows_are_listed_by_line(tmp_path: Path) -> None:
    rows = tmp_path / "people.csv"
    rows.write_text(
        '\ufeffid,email,attributes.note\nann,ann@example.com,"a\nb"\nbob,not-an-email,x\n',
        encoding="utf-8",
    )
    env = clean_env(TIDINGS_HOME=str(tmp_path / "home"), TIDINGS_ENV="development")
    run = subprocess.run(
        [str(TIDINGS), "profiles", "import", str(rows)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "2 rows: 1 created, 0 updated, 1 failed" in run.stdout
    assert "line 4, email:" in run.stderr
    again = subprocess.run(
        [str(TIDINGS), "profiles", "import", str(rows), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert '"updated": 1' in again.stdout
    unknown = tmp_path / "people.txt"
    unknown.write_text("id\nx\n")
    refused = subprocess.run(
        [str(TIDINGS), "profiles", "import", str(unknown)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "--format" in refused.stderr
