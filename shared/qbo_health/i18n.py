"""Languages: the message catalogues (Babel/gettext) and locale-aware dates, for notices, result pages and
the status API's wording.

The catalogues live in ``qbo_health/locales/<locale>/LC_MESSAGES/messages.po``, compiled to ``.mo`` beside them
(``make catalogues``; a test fails when a ``.mo`` is older than its ``.po``). A message a catalogue lacks is
shown in English, the source language: never blank.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Final

from babel import Locale
from babel.dates import format_date
from babel.support import NullTranslations, Translations

# QuickBooks Online's main markets, plus Spanish. Tags as BCP 47 (what the API takes).
SUPPORTED_LOCALES: Final = ("en-US", "en-GB", "en-AU", "fr-CA", "es")
SOURCE_LOCALE: Final = "en-US"
LOCALES_DIR: Final = Path(__file__).resolve().parent / "locales"
DOMAIN: Final = "messages"


def N_(message: str) -> str:
    """Marks a string for the catalogues without translating it (translated where it is shown)."""
    return message


def supported(tag: str | None, default: str = SOURCE_LOCALE) -> str:
    """The supported locale for ``tag`` (``fr-ca``, ``fr_CA``, ``fr`` -> ``fr-CA``), else ``default``."""
    if not tag:
        return default
    wanted = tag.replace("_", "-").lower()
    for locale in SUPPORTED_LOCALES:
        if locale.lower() == wanted:
            return locale
    language = wanted.split("-")[0]
    return next((locale for locale in SUPPORTED_LOCALES if locale.lower().startswith(language)), default)


@cache
def translations(locale: str) -> NullTranslations:
    """The catalogue for ``locale`` (a supported tag); English (the messages themselves) when there is none."""
    tag = supported(locale)
    if tag == SOURCE_LOCALE:
        return NullTranslations()
    return Translations.load(str(LOCALES_DIR), [_babel_name(tag)], DOMAIN)


def gettext(message: str, locale: str) -> str:
    return translations(locale).ugettext(message) or message


def ngettext(singular: str, plural: str, count: int, locale: str) -> str:
    """The plural form for ``count`` in ``locale`` (English's when the catalogue lacks the message)."""
    return translations(locale).ungettext(singular, plural, count)


def long_date(moment: date | datetime, locale: str) -> str:
    """``2026-01-19`` -> ``January 19, 2026`` (en-US), ``19 January 2026`` (en-GB), ``19 janvier 2026``..."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return format_date(day, format="long", locale=_babel_locale(locale))


def html_lang(locale: str) -> str:
    return supported(locale)


def _babel_name(tag: str) -> str:
    return tag.replace("-", "_")


@cache
def _babel_locale(tag: str) -> Locale:
    return Locale.parse(_babel_name(supported(tag)))
