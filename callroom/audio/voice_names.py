"""Telnyx's voice names for ``speak`` and ``gather_using_speak``, mapped to a language and a gender, which
``tts.resolve_voice`` then speaks with the local espeak-ng voice of that language (male or female variant).

An application written for Telnyx names its voice as Telnyx's examples do, and runs here unchanged:

    AWS.Polly.<Voice>[-Neural]  aws.Polly.<Engine>.<Voice>  Polly.<Voice>[-Neural]   the Polly voice's
                                                                                     language and gender
    Azure.<locale>-<Name>[Multilingual]Neural                the locale's language, the name's gender
    Telnyx.KokoroTTS.<l><g>[_<name>]                         language letter (a: American English, b: British
                                                             English, e: Spanish, f: French, h: Hindi,
                                                             i: Italian, j: Japanese, p: Brazilian
                                                             Portuguese, z: Mandarin), gender letter (f, m)
    Telnyx.Natural.<name>, Telnyx.NaturalHD.<name>           the voices listed below

A name not in these tables is unknown (``lookup`` returns None and the command gets 422): the voice of
another gender or language would be a silent surprise. Names are matched without regard to case.
"""

from __future__ import annotations

import re
from typing import Final, Literal

Gender = Literal["female", "male"]
F: Final = "female"
M: Final = "male"


def _table(rows: dict[str, str], gender: Gender) -> dict[str, tuple[str, Gender]]:
    """``{"Joanna Kendra": "en-US"}`` -> each name with its language and ``gender``."""
    return {name.lower(): (lang, gender) for names, lang in rows.items() for name in names.split()}


# Amazon Polly's voices (standard, neural or generative: the same name is the same person), languages as
# Telnyx's speak names them.
POLLY: Final[dict[str, tuple[str, Gender]]] = {
    **_table({
        "Joanna Kendra Kimberly Salli Ivy Ruth Danielle": "en-US", "Amy Emma": "en-GB", "Nicole Olivia": "en-AU",
        "Aditi Raveena Kajal": "en-IN", "Lupe Penelope": "es-US", "Conchita Lucia": "es-ES", "Mia": "es-MX",
        "Celine Lea": "fr-FR", "Chantal Gabrielle": "fr-CA", "Marlene Vicki": "de-DE", "Carla Bianca": "it-IT",
        "Mizuki Kazuha Tomoko": "ja-JP", "Seoyeon Jihye": "ko-KR", "Camila Vitoria": "pt-BR", "Ines": "pt-PT",
        "Tatyana": "ru-RU", "Astrid Elin": "sv-SE", "Naja Sofie": "da-DK", "Liv Ida": "nb-NO",
        "Lotte Laura": "nl-NL", "Ewa Maja Ola": "pl-PL", "Carmen": "ro-RO", "Filiz Burcu": "tr-TR", "Zeina": "arb",
        "Zhiyu": "cmn-CN", "Gwyneth": "cy-GB", "Dora": "is-IS",
    }, F),
    **_table({
        "Joey Justin Matthew Kevin Gregory Stephen": "en-US", "Brian Arthur": "en-GB", "Russell": "en-AU",
        "Geraint": "en-GB-WLS", "Miguel Pedro": "es-US", "Enrique Sergio": "es-ES", "Andres": "es-MX",
        "Mathieu Remi": "fr-FR", "Liam": "fr-CA", "Hans Daniel": "de-DE", "Giorgio Adriano": "it-IT",
        "Takumi": "ja-JP", "Ricardo Thiago": "pt-BR", "Cristiano": "pt-PT", "Maxim": "ru-RU", "Mads": "da-DK",
        "Ruben": "nl-NL", "Jacek Jan": "pl-PL", "Karl": "is-IS",
    }, M),
}  # fmt: skip

# Azure's neural voices by their name (the locale comes from the voice name itself).
AZURE_FEMALE: Final = (
    "Jenny Aria Ava Emma Michelle Sara Nancy Jane Sonia Libby Natasha Katja Amala Denise Vivienne Elvira Dalia "
    "Elsa Isabella Nanami SunHi Francisca Thalita Raquel Xiaoxiao Xiaoyi Svetlana Sofie Christel Iselin Pernille "
    "Fenna Colette Agnieszka Zofia Alina Emel Zariyah Swara"
)
AZURE_MALE: Final = (
    "Guy Davis Andrew Brian Tony Jason Eric Christopher Roger Steffan Ryan Thomas William Conrad Killian Henri "
    "Remy Alvaro Jorge Diego Giuseppe Keita Daichi InJoon Antonio Duarte Yunxi Yunjian Dmitry Mattias Jeppe Finn "
    "Maarten Marek Emil Ahmet Hamed Madhur Prabhat"
)
AZURE_NAMES: Final[dict[str, Gender]] = {
    **dict.fromkeys(AZURE_FEMALE.lower().split(), F), **dict.fromkeys(AZURE_MALE.lower().split(), M),
}

# Telnyx's own Natural and NaturalHD voices.
TELNYX_NAMED: Final[dict[str, tuple[str, Gender]]] = {
    "astra": ("en-US", F), "luna": ("en-US", F), "albion": ("en-US", M), "amarante": ("fr-FR", F),
    "allison": ("en-US", F), "brook": ("en-US", F),
}  # fmt: skip

KOKORO_LANGUAGES: Final[dict[str, str]] = {
    "a": "en-US", "b": "en-GB", "e": "es-ES", "f": "fr-FR", "h": "hi-IN", "i": "it-IT", "j": "ja-JP", "p": "pt-BR",
    "z": "cmn-CN",
}  # fmt: skip

# Where a provider's locale is not one of Telnyx's speak languages, the nearest that is.
LOCALE_ALIASES: Final[dict[str, str]] = {
    "zh-cn": "cmn-CN", "en-ca": "en-US", "en-nz": "en-AU", "en-ie": "en-GB", "es-419": "es-MX", "fr-be": "fr-FR",
    "fr-ch": "fr-FR", "de-at": "de-DE", "de-ch": "de-DE", "nl-be": "nl-NL", "it-ch": "it-IT",
}  # fmt: skip

_POLLY_PREFIX = re.compile(r"^(?:aws\.)?polly\.(?:(?:standard|neural|generative|long-?form)\.)?(?P<name>[a-z]+)"
                           r"(?:-(?:neural|generative|standard|long-?form))?$", re.IGNORECASE)  # fmt: skip
_AZURE = re.compile(r"^azure\.(?P<lang>[a-z]{2,3})-(?P<region>[a-z]{2,4})-(?P<name>[a-z]+?)(?:multilingual)?neural$",
                    re.IGNORECASE)  # fmt: skip
_KOKORO = re.compile(r"^telnyx\.kokorotts\.(?P<lang>[a-z])(?P<gender>[fm])(?:_[a-z0-9]+)?$", re.IGNORECASE)
_TELNYX_NAMED = re.compile(r"^telnyx\.natural(?:hd)?\.(?P<name>[a-z]+)$", re.IGNORECASE)

FAMILIES: Final = ("AWS.Polly.<Voice>[-Neural]", "Polly.<Voice>", "Azure.<locale>-<Name>Neural",
                   "Telnyx.KokoroTTS.<voice>", "Telnyx.Natural.<voice>", "Telnyx.NaturalHD.<voice>")  # fmt: skip


def lookup(voice: str, languages: tuple[str, ...]) -> tuple[str, Gender] | None:
    """The Telnyx language code (one of ``languages``) and gender a provider's voice name stands for."""
    if found := _POLLY_PREFIX.match(voice):
        return POLLY.get(found["name"].lower())
    if found := _AZURE.match(voice):
        gender = AZURE_NAMES.get(found["name"].lower())
        language = _language(f"{found['lang']}-{found['region']}", languages)
        return (language, gender) if gender and language else None
    if found := _KOKORO.match(voice):
        kokoro = KOKORO_LANGUAGES.get(found["lang"].lower())
        return (kokoro, F if found["gender"].lower() == "f" else M) if kokoro else None
    if found := _TELNYX_NAMED.match(voice):
        return TELNYX_NAMED.get(found["name"].lower())
    return None


def _language(locale: str, languages: tuple[str, ...]) -> str | None:
    by_lower = {code.lower(): code for code in languages}
    if locale.lower() in by_lower:
        return by_lower[locale.lower()]
    if locale.lower() in LOCALE_ALIASES:
        return LOCALE_ALIASES[locale.lower()]
    if locale.lower().startswith("ar-"):
        return "arb"
    return None
