"""Languages: the committed catalogues match their sources, every shipped language is complete or falls back
to English, and dates follow the locale."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from qbo_health.i18n import LOCALES_DIR, SUPPORTED_LOCALES, gettext, long_date, supported

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [tag.replace("-", "_") for tag in SUPPORTED_LOCALES if tag != "en-US"]


def _po(locale: str):
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as stream:
        return read_po(stream, locale=locale)


@pytest.mark.parametrize("locale", SHIPPED)
def test_each_committed_mo_is_its_po_compiled(locale):
    compiled = io.BytesIO()
    write_mo(compiled, _po(locale))
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.mo").open("rb") as stream:
        committed = read_mo(stream)
    compiled.seek(0)
    fresh = read_mo(compiled)
    assert _messages(committed) == _messages(fresh), "run `make catalogues`"


def test_the_template_holds_every_message_the_code_and_templates_use():
    with (LOCALES_DIR / "messages.pot").open("rb") as stream:
        template = {message.id for message in read_po(stream) if message.id}
    method_map = [
        ("shared/qbo_health/**.py", "python"),
        ("shared/qbo_health/templates/**.html", "jinja2"),
        ("shared/qbo_health/templates/**.txt", "jinja2"),
    ]
    options = {pattern: {"extensions": "jinja2.ext.i18n"} for pattern, kind in method_map if kind == "jinja2"}
    keywords = {"N_": None, "_": None, "gettext": None, "ngettext": (1, 2)}
    used = {
        found[2] for found in extract_from_dir(str(REPO), method_map, options, keywords=keywords) if found[2]
    }
    assert used == template, "run `make catalogues`"
    for locale in SHIPPED:
        assert {message.id for message in _po(locale) if message.id} == template, locale


@pytest.mark.parametrize("locale", ["fr_CA", "es"])
def test_french_and_spanish_translate_every_message(locale):
    missing = [message.id for message in _po(locale) if message.id and not all(_strings(message))]
    assert missing == []


def test_a_missing_translation_is_english_never_blank():
    assert gettext("Hello,", "en-GB") == "Hello,"
    assert gettext("A message no catalogue has", "fr-CA") == "A message no catalogue has"
    assert gettext("Hello,", "fr-CA") == "Bonjour,"


@pytest.mark.parametrize(
    ("locale", "text"),
    [
        ("en-US", "January 19, 2026"),
        ("en-GB", "19 January 2026"),
        ("en-AU", "19 January 2026"),
        ("fr-CA", "19 janvier 2026"),
        ("es", "19 de enero de 2026"),
    ],
)
def test_dates_follow_the_locale(locale, text):
    assert long_date(date(2026, 1, 19), locale) == text


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("fr-ca", "fr-CA"),
        ("fr_CA", "fr-CA"),
        ("fr", "fr-CA"),
        ("es-MX", "es"),
        ("de-DE", "en-US"),
        (None, "en-US"),
    ],
)
def test_a_requested_language_maps_to_a_shipped_one_or_the_default(tag, expected):
    assert supported(tag) == expected


def _strings(message):
    return message.string if isinstance(message.string, tuple) else (message.string,)


def _messages(catalog):
    def key(value):
        return tuple(value) if isinstance(value, list | tuple) else value

    return {key(message.id): key(message.string) for message in catalog if message.id}
