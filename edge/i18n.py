"""Translation of user-facing text: gettext domain ``linli``, English built in, Chinese in ``locale/``.

The language is chosen the way gettext does, from the first of ``LANGUAGE``,
``LC_ALL``, ``LC_MESSAGES`` and ``LANG`` that is set (``LANGUAGE`` may list
several, ``zh_CN:en``); text without a translation stays English.
Mark text with ``_("…")`` and counted text with ``ngettext(…)``; put values in
with ``str.format`` after translating, so the translator sees the template.

>>> use_languages(["zh_CN"])
>>> _("unknown key")
'未知的键'
>>> ngettext("{source} has {count} problem:", "{source} has {count} problems:", 2)
'{source} 有 {count} 个问题：'
>>> use_languages(["en"])
>>> _("unknown key")
'unknown key'
>>> use_languages(None)
"""

from __future__ import annotations

import gettext
from collections.abc import Sequence
from pathlib import Path

DOMAIN = "linli"
LOCALEDIR = Path(__file__).resolve().parent / "locale"

_translations: gettext.NullTranslations = gettext.translation(DOMAIN, LOCALEDIR, fallback=True)


def use_languages(languages: Sequence[str] | None) -> None:
    """Translate from now on into the first of ``languages`` that has a catalogue.

    ``None`` goes back to the language chosen by the environment.
    """
    global _translations
    _translations = gettext.translation(
        DOMAIN, LOCALEDIR, languages=None if languages is None else list(languages), fallback=True)


def _(message: str) -> str:
    """``message`` in the current language (itself when there is no translation)."""
    return _translations.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of ``singular``/``plural`` for the count ``n``, in the current language."""
    return _translations.ngettext(singular, plural, n)
