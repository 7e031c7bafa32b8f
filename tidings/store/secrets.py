"""Provider credentials at rest: sealed with Fernet, or stored as a reference.

A sealed value is one of
    ``enc:<fernet token>``   the secret, encrypted with the process' secret key;
    ``env:<VARIABLE>``       read from that environment variable when needed;
    ``file:<path>``          read from that file when needed.
References let ops keep keys in their own secret store; the database then holds no secret.

The secret key may be several keys, newest first (``MultiFernet``): new secrets are sealed
with the newest, any of them opens, and :meth:`SecretBox.rotate` reseals a value under the
newest, which is how ``tidings keys rotate`` retires an old key.
A ``file:`` reference is read only if it names a regular file (``read_secret_file``): a FIFO
would block its reader until something writes to it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# far more than any credential (a .p8 key, a certificate chain, a service account)
MAX_SECRET_FILE_BYTES = 1 << 20


class SecretError(ValueError):
    """A sealed secret cannot be opened; the message names why, never the secret."""


def read_secret_file(path: str) -> str:
    """The text of the regular file at ``path``. Opened without blocking and refused unless it
    is a regular file (a FIFO would block the read until a writer came, a device or a socket
    for ever) or if it is larger than any credential; SecretError naming the reference."""
    named = f"credential reference file:{path}"
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise SecretError(f"{named}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"{named}: not a regular file (a FIFO, device or directory)")
        try:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
        except OSError as error:
            raise SecretError(f"{named}: {error.strerror}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SecretError(f"{named}: larger than {MAX_SECRET_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{named}: not UTF-8 text") from None


def generate_key() -> str:
    """A new secret key, as TIDINGS_SECRET_KEY takes it."""
    return Fernet.generate_key().decode()


class SecretBox:
    def __init__(self, keys: bytes | Sequence[bytes]) -> None:
        self._keys = [keys] if isinstance(keys, bytes) else list(keys)
        if not self._keys:
            raise SecretError("TIDINGS_SECRET_KEY is empty: give one key (`tidings keys generate`)")
        fernets = []
        for position, key in enumerate(self._keys, start=1):
            try:
                fernets.append(Fernet(key))
            except ValueError:
                which = "" if len(self._keys) == 1 else f" (key {position} of {len(self._keys)})"
                raise SecretError(
                    f"TIDINGS_SECRET_KEY{which} is not a valid Fernet key (32 url-safe "
                    "base64-encoded bytes); make one with `tidings keys generate`"
                ) from None
        self._fernet = MultiFernet(fernets)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def derived_key(self, purpose: str) -> bytes:
        """A key of its own for another use (signing tracked links, say), derived from the
        newest secret key: every process sharing the secret derives the same one, and the
        secret itself is never used for two things."""
        return self.derived_keys(purpose)[0]

    def derived_keys(self, purpose: str) -> list[bytes]:
        """The derived key of every secret key, newest first: what was signed under an older
        key still verifies while that key is listed."""
        return [
            hmac.new(key, f"tidings:{purpose}".encode(), hashlib.sha256).digest()
            for key in self._keys
        ]

    @classmethod
    def from_settings(cls, secret_key: str | None, home: Path) -> SecretBox:
        """Use the configured keys (comma-separated, newest first), or a key generated once
        into ``<home>/secret.key``."""
        if secret_key:
            return cls([key.encode() for key in secret_key.replace(",", " ").split()])
        path = home / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = Fernet.generate_key()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
        return cls(path.read_bytes().strip())

    def rotate(self, sealed: str) -> str:
        """The value sealed under the newest key (references are returned as they are);
        SecretError when no listed key opens it."""
        scheme, _, rest = sealed.partition(":")
        if scheme != "enc":
            return sealed
        try:
            return "enc:" + self._fernet.rotate(rest.encode()).decode()
        except InvalidToken:
            raise SecretError(
                "a stored credential cannot be decrypted with any key in TIDINGS_SECRET_KEY "
                "(list the old key after the new one while rotating)"
            ) from None

    def sealed_with_newest(self, sealed: str) -> bool:
        """Whether an ``enc:`` value opens under the newest key alone."""
        scheme, _, rest = sealed.partition(":")
        if scheme != "enc":
            return True
        try:
            Fernet(self._keys[0]).decrypt(rest.encode())
        except InvalidToken:
            return False
        return True

    def seal(self, secret: str) -> str:
        return "enc:" + self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        scheme, _, rest = sealed.partition(":")
        if scheme == "enc":
            try:
                return self._fernet.decrypt(rest.encode()).decode()
            except InvalidToken as error:
                raise SecretError(
                    "a stored credential cannot be decrypted with this process' secret key "
                    "(was TIDINGS_SECRET_KEY changed?)"
                ) from error
        if scheme == "env":
            value = os.environ.get(rest)
            if value is None:
                raise SecretError(f"credential reference env:{rest}: variable is not set")
            return value
        if scheme == "file":
            return read_secret_file(rest)
        raise SecretError("a stored credential has an unknown scheme")


def reference(value: str) -> str | None:
    """``env:NAME`` or ``file:/path`` given by a user is stored as is; None otherwise."""
    scheme, _, rest = value.partition(":")
    if scheme in ("env", "file") and rest and "\n" not in value:
        return value
    return None
