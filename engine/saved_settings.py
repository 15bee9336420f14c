"""Provider settings saved from the page: `<data-dir>/settings.json`, over the environment's.

The file holds what `PUT /api/settings` saved, `{"openaiApiKey": ..., "openaiBaseUrl": ...}`,
each member optional. A saved value wins over its environment variable (OPENAI_API_KEY,
AURA_OPENAI_BASE_URL): whoever saves a key in the page expects it to be used. The file holds a
secret, so it is written atomically (engine.atomic) with mode 0600, and no message here ever
quotes the key.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from aura.engine import atomic
from aura.engine.errors import AuraError
from aura.engine.settings import DEFAULT_OPENAI_BASE_URL, Settings, base_url_fault

__all__ = [
    "FILE_MODE",
    "KEY_FIELD",
    "MAX_KEY_CHARS",
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
            "such as https://api.openai.com/v1"
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
    """`update`, if each value given is usable; else InvalidInput naming the member."""
    for field, value, check in (
        (KEY_FIELD, update.openai_api_key, key_fault),
        (URL_FIELD, update.openai_base_url, url_fault),
    ):
        fault = check(value) if isinstance(value, str) else None
        if fault is not None:
            raise invalid(field, fault)
    return update


def merged(saved: SavedSettings, update: SettingsUpdate) -> SavedSettings:
    """`saved` with the update's members applied (left out: unchanged; null: removed)."""
    changes = {
        name: value
        for name in ("openai_api_key", "openai_base_url")
        if (value := getattr(update, name)) is not msgspec.UNSET
    }
    return msgspec.structs.replace(saved, **changes)


def with_saved(settings: Settings, saved: SavedSettings) -> Settings:
    """The effective settings: `settings` (defaults and environment) with the saved values over
    them."""
    changes = {
        name: value
        for name in ("openai_api_key", "openai_base_url")
        if (value := getattr(saved, name)) is not None
    }
    return msgspec.structs.replace(settings, **changes) if changes else settings


def view(base: Settings, saved: SavedSettings) -> SettingsView:
    """Where each effective value comes from: saved from the page, the environment (the
    settings without the saved values), or the built-in default. The key is never shown."""
    key_source: Literal["settings", "environment"] | None = (
        "settings" if saved.openai_api_key else "environment" if base.openai_api_key else None
    )
    url_source: Literal["settings", "environment", "default"] = (
        "settings"
        if saved.openai_base_url is not None
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
