"""Named dashboard users: who may sign in, each with a scrypt hash of a password of their own.

Users come from a file (LINEGUARD_DASHBOARD_USERS_FILE) and/or the environment
(LINEGUARD_DASHBOARD_USERS), both as ``name:hash`` entries: one a line in the file (``#`` starts a
comment), separated by commas or whitespace in the variable. ``lineguard dashboard-user NAME``
prints (or writes into the file) the entry of a new password. The name a user signs in with is
the name their reviews are signed with.

A hash reads ``scrypt$N$r$p$salt$key`` (salt and key in base64): the parameters travel with it, so
they can be raised later without invalidating the hashes already given out.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from dashboard.errors import SettingsError

#: scrypt's cost parameters for new hashes (about 50 ms and 16 MiB per check).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_KEY_BYTES = 32
#: What a user name may be: it signs reviews and shows on pages.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HASH = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


def hash_password(password: str) -> str:
    """A new ``scrypt$...`` hash of `password` with a fresh salt."""
    if not password:
        raise ValueError("a dashboard password must not be empty")
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def password_matches(password: str, hashed: str) -> bool:
    """Whether `password` is the one `hashed` was made from (a comparison in constant time)."""
    match = _HASH.fullmatch(hashed)
    if match is None:
        return False
    n, r, p = (int(value) for value in match.group(1, 2, 3))
    expected = base64.b64decode(match.group(5))
    return hmac.compare_digest(_scrypt(password, base64.b64decode(match.group(4)), n, r, p, len(expected)), expected)


def check_user_name(name: str) -> str:
    """`name` if it can name a dashboard user, else ValueError saying what a name may be."""
    if not USER_NAME.fullmatch(name):
        raise ValueError(f"user name {name!r}: 1 to 64 letters, digits or . _ @ -, starting with a letter or digit")
    return name


def parse_users(text: str, where: str) -> dict[str, str]:
    """``name:hash`` entries of `text` (lines or separated by commas/whitespace; ``#`` comments) by name."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for entry in re.split(r"[\s,]+", line.split("#", 1)[0].strip()):
            if not entry:
                continue
            name, _, hashed = entry.partition(":")
            if not USER_NAME.fullmatch(name) or not _HASH.fullmatch(hashed):
                raise SettingsError(f"{where}, line {number}: not a 'name:scrypt$...' entry (make one with `lineguard dashboard-user NAME`)")
            users[name] = hashed
    return users


def load_users(users_file: Path | None, users_variable: str | None) -> dict[str, str]:
    """The users of the file and of the variable (the variable's entry wins for a name in both)."""
    users: dict[str, str] = {}
    if users_file is not None:
        try:
            text = users_file.read_text(encoding="utf-8")
        except OSError as error:
            raise SettingsError(f"LINEGUARD_DASHBOARD_USERS_FILE: cannot read {users_file}: {error}") from error
        users.update(parse_users(text, str(users_file)))
    if users_variable:
        users.update(parse_users(users_variable, "LINEGUARD_DASHBOARD_USERS"))
    return users


def authenticate(users: Mapping[str, str], name: str, password: str) -> str | None:
    """The user's name when `password` is theirs, else None; an unknown name costs a hash check too."""
    hashed = users.get(name)
    if hashed is None:
        password_matches(password, _decoy_hash())
        return None
    return name if password_matches(password, hashed) else None


def with_user(users_file: Path, name: str, hashed: str) -> str:
    """The users file's text with `name`'s entry set to `hashed` (replaced in place, or added at the end)."""
    lines = users_file.read_text(encoding="utf-8").splitlines() if users_file.exists() else []
    entry = f"{name}:{hashed}"
    for index, line in enumerate(lines):
        if line.split("#", 1)[0].strip().partition(":")[0] == name:
            lines[index] = entry
            break
    else:
        lines.append(entry)
    return "\n".join(lines) + "\n"


@functools.cache
def _decoy_hash() -> str:
    """Checked against when a name is unknown, so that an unknown name takes as long as a wrong password."""
    return hash_password(secrets.token_hex(16))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = SCRYPT_KEY_BYTES) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * 1024**2)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
