"""Provider settings saved from the page: `<data-dir>/settings.json`, over the environment's.

The file holds what `PUT /api/settings` saved, `{"openaiApiKey": ..., "openaiBaseUrl": ...}`,
each member optional. A saved key wins over OPENAI_API_KEY: whoever saves a key in the page
expects it to be used. The file holds a secret, so it is written atomically (engine.atomic) with
mode 0600, and no message here ever quotes the key.

A key is sent only to a base URL it was configured with (`with_saved`): the environment's key to
the environment's base URL (AURA_OPENAI_BASE_URL, else the default) and never to a saved one; a
saved base URL only with the key saved in the same request (`validated`, `merged`). Anyone who
can save settings (any local process, on a server with no token) can thus point no key but its
own at a URL of its choosing.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from aura.engine.config.settings import DEFAULT_OPENAI_BASE_URL, Settings, base_url_fault
from aura.engine.errors.taxonomy import AuraError
from aura.engine.files import atomic

__all__ = [
    "FILE_MODE",
    "KEY_FIELD",
    "MAX_KEY_CHARS",
    "MAX_PAST_KEYS",
    "MIN_KEY_CHARS",
    "SETTINGS_FILE",
    "URL_FIELD",
    "SavedSettings",
    "SettingsUpdate",
    "SettingsView",
    "invalid",
    "key_fault",
    "merged",
    "read_saved",
    "replaced_keys",
    "secret_values",
    "settings_path",
    "url_fault",
    "validated",
    "view",
    "with_saved",
    "write_saved",
]

SETTINGS_FILE = "settings.json"
#: owner-only: the file holds an API key
FILE_MODE = 0o600
KEY_FIELD = "openaiApiKey"
URL_FIELD = "openaiBaseUrl"
#: redaction by value skips values this short (they would blank ordinary words), so a key
#: must be at least this long to be kept out of events and responses
MIN_KEY_CHARS = 4
MAX_KEY_CHARS = 512
MAX_URL_CHARS = 2048
#: keys replaced by later saves that the server still redacts (the newest ones)
MAX_PAST_KEYS = 8
#: a settings file larger than this is not one Aura wrote
_MAX_FILE_BYTES = 64 * 1024


class SavedSettings(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The file's content: the values saved from the page (None: not saved)."""

    openai_api_key: str | None = None
    openai_base_url: str | None = None


class SettingsUpdate(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """The body of PUT /api/settings: a member left out stays as it is, null removes it."""

    openai_api_key: Annotated[
        str | msgspec.UnsetType | None,
        msgspec.Meta(
            description=f"{MIN_KEY_CHARS} to {MAX_KEY_CHARS} printable ASCII characters, no "
            "spaces; never returned"
        ),
    ] = msgspec.UNSET
    openai_base_url: Annotated[
        str | msgspec.UnsetType | None,
        msgspec.Meta(
            description="an absolute http(s) URL with no user, password, query or fragment, "
            "such as https://api.openai.com/v1; saved only with openaiApiKey in the same "
            "request (the only key ever sent to it)"
        ),
    ] = msgspec.UNSET


class KeyState(msgspec.Struct, frozen=True):
    """Whether a key is configured and where it comes from; never the key itself."""

    configured: bool
    source: Literal["settings", "environment"] | None


class UrlState(msgspec.Struct, frozen=True):
    value: str
    source: Literal["settings", "environment", "default"]


class SettingsView(msgspec.Struct, frozen=True, rename="camel"):
    """GET /api/settings (and the answer to PUT)."""

    openai_api_key: KeyState
    openai_base_url: UrlState


def settings_path(data_dir: Path) -> Path:
    return data_dir / SETTINGS_FILE


def key_fault(value: str) -> str | None:
    """What is wrong with an API key, never quoting it; None if it is fine."""
    if not MIN_KEY_CHARS <= len(value) <= MAX_KEY_CHARS:
        return f"it must be {MIN_KEY_CHARS} to {MAX_KEY_CHARS} characters long"
    if not all("!" <= c <= "~" for c in value):  # printable ASCII, no space: a bearer token
        return "it must be printable ASCII with no spaces or line breaks"
    return None


def url_fault(value: str) -> str | None:
    """What is wrong with a speech API base URL, never quoting it; None if it is fine."""
    if len(value) > MAX_URL_CHARS:
        return f"it must be at most {MAX_URL_CHARS} characters long"
    return base_url_fault(value)


def invalid(field: str, fault: str) -> AuraError:
    """InvalidInput for a member of PUT /api/settings."""
    return AuraError.of(
        f"InvalidInput:{field}",
        f"{field} is not usable: {fault}",
        remediation=f"Correct {field} (or send null to remove the saved value) and save again.",
        details={"field": field},
    )


def validated(update: SettingsUpdate) -> SettingsUpdate:
    """`update`, if each value given is usable and a base URL comes with its key; else
    InvalidInput naming the member."""
    for field, value, check in (
        (KEY_FIELD, update.openai_api_key, key_fault),
        (URL_FIELD, update.openai_base_url, url_fault),
    ):
        fault = check(value) if isinstance(value, str) else None
        if fault is not None:
            raise invalid(field, fault)
    if isinstance(update.openai_base_url, str) and not isinstance(update.openai_api_key, str):
        raise _unpaired(
            f"{URL_FIELD} is saved only with the key for it: save the key for this URL with it "
            f"({KEY_FIELD} in the same request); no other key is ever sent to a saved URL"
        )
    return update


def merged(saved: SavedSettings, update: SettingsUpdate) -> SavedSettings:
    """`saved` with the update's members applied (left out: unchanged; null: removed). A key
    and a base URL are saved together: a key saved while a base URL is saved must name its URL
    (InvalidInput otherwise), and removing the key removes the URL."""
    key, url = update.openai_api_key, update.openai_base_url
    if isinstance(key, str) and url is msgspec.UNSET and saved.openai_base_url is not None:
        raise _unpaired(
            f"a base URL is saved, and a key is sent only to the URL saved with it: send "
            f"{URL_FIELD} with the new key ({URL_FIELD}: the saved URL again to keep it, or null "
            "for the environment's or the default)"
        )
    if key is None:
        url = None  # the saved URL goes with its key
    changes = {
        name: value
        for name, value in (("openai_api_key", key), ("openai_base_url", url))
        if value is not msgspec.UNSET
    }
    return msgspec.structs.replace(saved, **changes)


def _unpaired(message: str) -> AuraError:
    return AuraError.of(
        f"InvalidInput:{URL_FIELD}",
        message,
        remediation=f"Send {KEY_FIELD} and {URL_FIELD} together in one request, or send "
        f"{KEY_FIELD}: null to remove the saved key and its URL.",
        details={"field": URL_FIELD},
    )


def replaced_keys(
    past: tuple[str, ...], before: SavedSettings, after: SavedSettings
) -> tuple[str, ...]:
    """`past` (keys saved earlier in this server's life) with the key `before` held, if `after`
    no longer holds it: still secrets (a run may be using one, an answer may quote one), so the
    server keeps redacting the newest MAX_PAST_KEYS of them."""
    key = before.openai_api_key
    if key is None or key == after.openai_api_key:
        return past
    return (*(k for k in past if k != key), key)[-MAX_PAST_KEYS:]


def with_saved(settings: Settings, saved: SavedSettings) -> Settings:
    """The effective settings: `settings` (defaults and environment) with the saved key over
    them, sent to the base URL saved with it (else the environment's or the default). A saved
    base URL without a saved key (a file written by hand) is not used: the environment's key
    never goes to a saved URL."""
    if saved.openai_api_key is None:
        return settings
    return msgspec.structs.replace(
        settings,
        openai_api_key=saved.openai_api_key,
        openai_base_url=saved.openai_base_url or settings.openai_base_url,
    )


def view(base: Settings, saved: SavedSettings) -> SettingsView:
    """Where each effective value comes from: saved from the page, the environment (the
    settings without the saved values), or the built-in default. The key is never shown."""
    key_source: Literal["settings", "environment"] | None = (
        "settings" if saved.openai_api_key else "environment" if base.openai_api_key else None
    )
    url_source: Literal["settings", "environment", "default"] = (
        "settings"
        if saved.openai_api_key and saved.openai_base_url is not None  # as with_saved uses it
        else "default"
        if base.openai_base_url == DEFAULT_OPENAI_BASE_URL
        else "environment"
    )
    effective = with_saved(base, saved)
    return SettingsView(
        openai_api_key=KeyState(configured=key_source is not None, source=key_source),
        openai_base_url=UrlState(value=effective.openai_base_url_shown, source=url_source),
    )


def read_saved(data_dir: Path) -> SavedSettings:
    """The saved settings of the data folder (none saved when the file does not exist).
    A file that cannot be read or is not one Aura wrote is SettingsUnreadable, naming it."""
    path = settings_path(data_dir)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return SavedSettings()
    except OSError as e:
        if e.errno == errno.ENOTDIR:  # the data folder is a file: opening the log says so
            return SavedSettings()
        raise _unreadable(path, os.strerror(e.errno or 0) or type(e).__name__) from None
    if len(raw) > _MAX_FILE_BYTES:
        raise _unreadable(path, f"it is larger than {_MAX_FILE_BYTES} bytes")
    try:
        saved = msgspec.json.decode(raw, type=SavedSettings)
    except UnicodeDecodeError:
        raise _unreadable(path, "it is not UTF-8 JSON") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise _unreadable(path, str(e)[:200]) from None  # msgspec names members, not values
    for field, value, check in (
        (KEY_FIELD, saved.openai_api_key, key_fault),
        (URL_FIELD, saved.openai_base_url, url_fault),
    ):
        fault = check(value) if value is not None else None
        if fault is not None:
            raise _unreadable(path, f"{field} is not usable: {fault}")
    return saved


def write_saved(data_dir: Path, saved: SavedSettings) -> None:
    """Replace the settings file atomically (never half-written), owner-only from the start."""
    atomic.write_bytes(settings_path(data_dir), msgspec.json.encode(saved) + b"\n", mode=FILE_MODE)


def _unreadable(path: Path, reason: str) -> AuraError:
    return AuraError.of(
        "SettingsUnreadable",
        f"the saved settings {path} cannot be used: {reason}",
        details={"path": str(path)},
    )


def secret_values(values: Iterable[str | None]) -> tuple[str, ...]:
    """The values redaction replaces, of `values`: those at least MIN_KEY_CHARS long, longest
    first (a secret that holds another is replaced whole)."""
    found = {v for v in values if v and len(v) >= MIN_KEY_CHARS}
    return tuple(sorted(found, key=lambda v: (-len(v), v)))
