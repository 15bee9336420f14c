"""The saved-settings rule (a key goes only to the base URL it was configured with), the bound on
keys remembered for redaction, and /log's line redaction by value."""

from __future__ import annotations

import json

import msgspec
import pytest

from aura.engine.config.saved_settings import (
    MAX_PAST_KEYS,
    SavedSettings,
    SettingsUpdate,
    merged,
    replaced_keys,
    validated,
    with_saved,
)
from aura.engine.config.settings import DEFAULT_OPENAI_BASE_URL, Settings
from aura.engine.errors.taxonomy import AuraError
from aura.http.diagnostics import LineRedactor

KEY = "plainKeyValue0123"
NEW_KEY = "plainNewKeyValue4567"
ENV_KEY = "plainEnvKeyValue8901"
URL = "http://127.0.0.1:9/saved/v1"
ENV_URL = "http://127.0.0.1:9/env/v1"
ENV = Settings(openai_api_key=ENV_KEY, openai_base_url=ENV_URL)


def save(saved: SavedSettings, **members: object) -> SavedSettings:
    return merged(saved, validated(msgspec.convert(members, SettingsUpdate)))


def test_the_environment_key_goes_only_to_the_environment_url() -> None:
    assert with_saved(ENV, SavedSettings(openai_base_url=URL)) == ENV  # a URL with no key
    assert with_saved(ENV, SavedSettings()) == ENV


def test_a_saved_key_goes_to_its_url_else_the_environment_one() -> None:
    both = with_saved(ENV, SavedSettings(openai_api_key=KEY, openai_base_url=URL))
    assert (both.openai_api_key, both.openai_base_url) == (KEY, URL)
    alone = with_saved(ENV, SavedSettings(openai_api_key=KEY))
    assert (alone.openai_api_key, alone.openai_base_url) == (KEY, ENV_URL)
    default = with_saved(Settings(), SavedSettings(openai_api_key=KEY))
    assert default.openai_base_url == DEFAULT_OPENAI_BASE_URL


@pytest.mark.parametrize(
    ("saved", "members"),
    [
        (SavedSettings(), {"openaiBaseUrl": URL}),
        (SavedSettings(openai_api_key=KEY), {"openaiBaseUrl": URL}),  # a key saved earlier
        (SavedSettings(openai_api_key=KEY), {"openaiApiKey": None, "openaiBaseUrl": URL}),
        (SavedSettings(openai_api_key=KEY, openai_base_url=URL), {"openaiApiKey": NEW_KEY}),
        (SavedSettings(openai_base_url=URL), {"openaiApiKey": NEW_KEY}),  # a file by hand
    ],
)
def test_a_url_and_a_key_not_saved_together_are_refused(
    saved: SavedSettings, members: dict[str, object]
) -> None:
    with pytest.raises(AuraError) as caught:
        save(saved, **members)
    assert caught.value.info.code == "InvalidInput:openaiBaseUrl"
    assert KEY not in str(caught.value.info) and NEW_KEY not in str(caught.value.info)


def test_saves_that_keep_each_key_with_its_url() -> None:
    saved = save(SavedSettings(), openaiApiKey=KEY)
    assert saved == SavedSettings(openai_api_key=KEY)
    saved = save(saved, openaiApiKey=KEY, openaiBaseUrl=URL)
    assert saved == SavedSettings(openai_api_key=KEY, openai_base_url=URL)
    assert save(saved) == saved
    assert save(saved, openaiApiKey=NEW_KEY, openaiBaseUrl=URL).openai_api_key == NEW_KEY
    assert save(saved, openaiApiKey=NEW_KEY, openaiBaseUrl=None) == SavedSettings(
        openai_api_key=NEW_KEY
    )
    assert save(saved, openaiBaseUrl=None) == SavedSettings(openai_api_key=KEY)
    assert save(saved, openaiApiKey=None) == SavedSettings()  # its URL goes with it
    assert save(SavedSettings(openai_base_url=URL), openaiBaseUrl=None) == SavedSettings()


def test_replaced_keys_keeps_the_newest_few() -> None:
    past: tuple[str, ...] = ()
    saved = SavedSettings()
    keys = [f"{KEY}{i}" for i in range(MAX_PAST_KEYS + 3)]
    for key in keys:
        after = SavedSettings(openai_api_key=key)
        past = replaced_keys(past, saved, after)
        saved = after
    assert past == tuple(keys[-MAX_PAST_KEYS - 1 : -1])  # the current key is not "past"
    assert replaced_keys(past, saved, saved) == past  # saving the same key again
    assert replaced_keys((), SavedSettings(), SavedSettings(openai_api_key=KEY)) == ()
    # a key saved again, then replaced, is remembered once, as the newest
    assert replaced_keys(("a" * 8, KEY), SavedSettings(openai_api_key="a" * 8), saved) == (
        KEY,
        "a" * 8,
    )


def _line(value: object) -> bytes:
    return msgspec.json.encode(value)


def test_a_line_without_a_secret_is_returned_as_is() -> None:
    line = _line({"seq": 1, "data": {"title": "nothing here"}})
    assert LineRedactor((KEY,))(line) is line


def test_secrets_are_replaced_in_strings_only_and_the_line_stays_json() -> None:
    secrets = ("12345", 'a"b\\c\u0001d', KEY)
    line = _line(
        {
            "seq": 12345,
            "data": {
                "title": f"x{KEY}y",
                "script": ['a"b\\c\u0001d', "n 12345"],
                "brief": {KEY: 12345},
            },
        }
    )
    out = LineRedactor(secrets)(line)
    assert json.loads(out) == {
        "seq": 12345,
        "data": {
            "title": "x[REDACTED]y",
            "script": ["[REDACTED]", "n [REDACTED]"],
            "brief": {"[REDACTED]": 12345},
        },
    }
    assert KEY.encode() not in out and b"12345," in out  # the number is no secret's text
