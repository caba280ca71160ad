"""What a keyboard does not show: the clean-up the rules and the classifier share.

A zero-width space typed between letters ("fi\u200bre") or a Cyrillic "\u0456" in "f\u0456re" must
not hide a word from either of them; nor may a zero-width space between words ("fire\u200bin
\u200bbay 3") glue them into one.
"""

import unicodedata

# Invisible characters that stand between words (a zero-width space, a word joiner, a
# byte-order mark): a space, or nothing where they split a word.
_SEPARATORS = "\u200b\u2060\ufeff"
_SPACED = str.maketrans(dict.fromkeys(_SEPARATORS, " "))
_JOINED = str.maketrans(dict.fromkeys(_SEPARATORS, ""))
# Lower-case Cyrillic and Greek letters drawn like Latin ones (after casefold).
_CONFUSABLES = str.maketrans("аеорсухіїјѕһԁοαικρτυχε", "aeopcyxiijshdoaikptuxe")


def visible(text: str, *, join: bool = False) -> str:
    """The text without invisible format characters (Unicode category Cf: soft hyphens,
    zero-width joiners, direction marks). A separator becomes a space, or nothing with
    ``join``."""
    if text.isascii():
        return text
    text = text.translate(_JOINED if join else _SPACED)
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def has_separators(text: str) -> bool:
    """Whether ``visible(text)`` and ``visible(text, join=True)`` can differ."""
    return not text.isascii() and any(c in _SEPARATORS for c in text)


def unconfused(text: str) -> str:
    """Lower-case Cyrillic and Greek look-alikes read as the Latin letters they mimic."""
    return text if text.isascii() else text.translate(_CONFUSABLES)
