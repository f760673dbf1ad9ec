"""Secrets at rest: a JSON object of strings whose values are Fernet-encrypted in the database.

Built on django-fernet-encrypted-fields. The key is derived from SECRET_KEY; SECRET_KEY_FALLBACKS
still decrypt, so a key can be rotated (re-save, or `manage.py reencrypt_secrets`, to move rows
to the new key). A value that no key decrypts is never turned into an empty or garbled string:
it loads as `UnreadableSecrets`, whose names can be shown but whose values raise a clear error
when anything tries to use them, and which are written back unchanged if the row is saved.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.conf import settings
from encrypted_fields.fields import EncryptedJSONField


class SecretsUnreadable(ValueError):
    """Saved secrets cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS."""


def unreadable_message(what: str, owner: str = "") -> str:
    where = f"{owner}: " if owner else ""
    return (
        f"{where}saved {what} cannot be decrypted with the current SECRET_KEY or SECRET_KEY_FALLBACKS; "
        "re-enter them in the admin (or put the old key in DJANGO_SECRET_KEY_FALLBACKS)"
    )


class UnreadableSecrets:
    """Saved secrets no configured key decrypts: names usable, values raise `SecretsUnreadable`."""

    def __init__(self, ciphertext: dict[str, Any], what: str, owner: str = "") -> None:
        self.ciphertext = ciphertext
        self.what = what
        self.owner = owner

    def for_owner(self, owner: str) -> UnreadableSecrets:
        return UnreadableSecrets(self.ciphertext, self.what, owner)

    @property
    def message(self) -> str:
        return unreadable_message(self.what, self.owner)

    def _refuse(self, *args: object) -> Any:
        raise SecretsUnreadable(self.message)

    # Names may be listed (the admin shows them masked; exports write ${VAR} placeholders for them).
    def __iter__(self) -> Iterator[str]:
        return iter(self.ciphertext)

    def keys(self) -> list[str]:
        return list(self.ciphertext)

    def __len__(self) -> int:
        return len(self.ciphertext)

    def __bool__(self) -> bool:
        return True

    def __contains__(self, key: object) -> bool:
        return key in self.ciphertext

    # Values never: dict(secrets), secrets[k], .items(), .values() and .get() all raise.
    __getitem__ = _refuse
    items = _refuse
    values = _refuse
    get = _refuse

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnreadableSecrets) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.ciphertext)))

    def __repr__(self) -> str:
        return f"<UnreadableSecrets {self.what}: {', '.join(sorted(self.ciphertext))}>"


@functools.lru_cache(maxsize=8)
def _fernet(secret_keys: tuple[str, ...], salt: str) -> MultiFernet:
    # PBKDF2 as django-fernet-encrypted-fields derives it, so its own fields read the same rows;
    # cached per key set, so tests that override SECRET_KEY get the matching key.
    fernets = []
    for secret_key in secret_keys:
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt.encode(), iterations=100_000)
        fernets.append(Fernet(base64.urlsafe_b64encode(kdf.derive(secret_key.encode()))))
    return MultiFernet(fernets)


def fernet() -> MultiFernet:
    """Encrypts with SECRET_KEY; decrypts with it or any of SECRET_KEY_FALLBACKS."""
    keys = (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    return _fernet(tuple(keys), settings.SALT_KEY)


class EncryptedStringMap(EncryptedJSONField):
    """A JSON object of strings (header or environment values), values encrypted at rest.

    Names stay readable in the database, so the admin can list which headers are saved.
    """

    def __init__(self, *args: Any, secret_label: str = "secrets", **kwargs: Any) -> None:
        self.secret_label = secret_label
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[str, str, list[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["secret_label"] = self.secret_label
        return name, path, args, kwargs

    @property
    def f(self) -> MultiFernet:  # type: ignore[override]
        return fernet()

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableSecrets):
            return json.dumps(value.ciphertext)  # kept as saved, for the day the old key is back
        return super().get_prep_value(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        data = json.loads(value) if isinstance(value, str) else value
        try:
            return self._decrypt_values(data)
        except (InvalidToken, UnicodeEncodeError, TypeError):
            return UnreadableSecrets(data, self.secret_label)

    def to_python(self, value: Any) -> Any:
        return value

    def value_to_string(self, obj: Any) -> Any:
        # dumpdata and other serializers get the names only: a fixture must not carry the secrets.
        value = self.value_from_object(obj)
        return {key: "" for key in value} if value else {}


def encrypt_map(values: dict[str, str]) -> dict[str, str]:
    f = fernet()
    return {key: f.encrypt(value.encode()).decode() for key, value in values.items()}


def is_encrypted_map(values: dict[str, Any]) -> bool:
    """Whether every value decrypts with a configured key (the row is already encrypted)."""
    f = fernet()
    try:
        for value in values.values():
            f.decrypt(str(value).encode())
    except InvalidToken:
        return False
    return True


def secrets_of(value: Any, owner: str) -> dict[str, str] | UnreadableSecrets:
    """A copy for the call path; unreadable secrets stay unreadable (named after `owner`), never empty."""
    if isinstance(value, UnreadableSecrets):
        return value.for_owner(owner)
    return dict(value or {})
