"""The admin API key: from settings, or generated once into ``<home>/admin.key``."""

from __future__ import annotations

import os
import secrets

from tidings.settings import Settings


def admin_key(settings: Settings) -> str:
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value()
    path = settings.home / "admin.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("tdk_admin_" + secrets.token_urlsafe(32))
    return path.read_text().strip()
