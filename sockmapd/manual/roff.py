"""man(7) source: escaping, and the small Markdown subset that the option descriptions use.

The descriptions in sockmapd.config.reference are Markdown for docs/configuration.md:
paragraphs, `code`, **bold**, [links](page.md) and fenced code blocks. The man pages are
made from the same text, so these are the only constructs converted; anything else is
escaped and printed as it is, never interpreted by roff.
"""

from __future__ import annotations

import re

_INLINE = re.compile(r"(`[^`]*`|\*\*[^*]+\*\*|\[[^\]]+\]\([^)\s]+\))")
# A word that starts with a hyphen is an option (-c, --check-config) or a number: its
# hyphens are minus signs, which copy and paste as ASCII; other hyphens stay hyphens.
_OPTION_WORD = re.compile(r"(?<![\w-])-[-\w]*")
_FENCE = "```"
# Where a sentence ends and the next begins: the source starts each on a line of its own.
_SENTENCE_END = re.compile(r"(?<=[\w)][.!?]) (?=[A-Z])")
WIDTH = 79
# After .TH: lines are not stretched to the right margin, which a long address or path
# alone on a line cannot fill.
RAGGED_RIGHT = ".ad l"
# A word holding code, an option or a path: it is never hyphenated at a line break
# (\% before a word), so that what is printed can be copied as it is.
_LITERAL_WORD = re.compile(r"\\fB|\\-|/")


def escape(text: str, *, literal: bool = False) -> str:
    """Return text as roff text: backslashes and non-ASCII escaped, option hyphens as minus.

    literal: text that must copy and paste unchanged (code): every hyphen is a minus sign.
    """
    out = text.replace("\\", "\\e")
    if literal:
        out = out.replace("-", "\\-")
    else:
        out = _OPTION_WORD.sub(lambda match: match.group().replace("-", "\\-"), out)
    if out.isascii():
        return out
    return "".join(char if char.isascii() else f"\\[u{ord(char):04X}]" for char in out)


def line(text: str) -> str:
    """Return one input line of text, protected from being read as a request or macro."""
    return "\\&" + text if text.startswith((".", "'")) else text


def fill(text: str, width: int = WIDTH) -> list[str]:
    """Return roff text as input lines: one sentence per line, wrapped at spaces.

    A line break in the input is a space in fill mode, so this changes only the source.
    A word longer than width stays whole.
    """
    lines: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        current = ""
        for word in sentence.split(" "):
            if _LITERAL_WORD.search(word):
                word = "\\%" + word
            if current and len(current) + 1 + len(word) > width:
                lines.append(line(current))
                current = word
            else:
                current = f"{current} {word}" if current else word
        if current:
            lines.append(line(current))
    return lines


def inline(markdown: str) -> str:
    """Return Markdown inline text (code, bold, links) as roff text on one line."""
    parts: list[str] = []
    for index, part in enumerate(_INLINE.split(" ".join(markdown.split()))):
        if index % 2 == 0:
            parts.append(escape(part))
        elif part.startswith("`"):
            parts.append(f"\\fB{escape(part[1:-1], literal=True)}\\fR")
        elif part.startswith("**"):
            parts.append(f"\\fB{escape(part[2:-2])}\\fR")
        else:
            parts.append(_link(part))
    return "".join(parts)


def _link(markdown: str) -> str:
    text, target = markdown[1:].split("](", 1)
    page = target.rstrip(")").split("#", 1)[0]
    # Links point at the pages in docs/, which the man page reader may not have open:
    # name the file.
    if text == page:
        return f"\\fIdocs/{escape(page)}\\fR"
    return f"{escape(text)} (\\fIdocs/{escape(page)}\\fR)"


def blocks(markdown: str, *, paragraph: str = ".PP") -> list[str]:
    """Return Markdown paragraphs and fenced code blocks as roff lines.

    paragraph: the macro that separates paragraphs (.PP at the top level, .IP inside
    an indented item), not written before the first one.
    """
    lines: list[str] = []
    text: list[str] = []
    code: list[str] | None = None

    def separate() -> None:
        if lines:
            lines.append(paragraph)

    def flush() -> None:
        if text:
            separate()
            lines.extend(fill(inline(" ".join(text))))
            text.clear()

    for raw in markdown.splitlines():
        if code is not None:
            if raw.strip() == _FENCE:
                separate()
                lines += [".EX", *(line(escape(item, literal=True)) for item in code), ".EE"]
                code = None
            else:
                code.append(raw)
        elif raw.startswith(_FENCE):
            flush()
            code = []
        elif raw.strip():
            text.append(raw.strip())
        else:
            flush()
    if code is not None:
        raise ValueError("unterminated code block")
    flush()
    return lines


def quoted(text: str) -> str:
    """Return text as one quoted macro argument."""
    return '"' + escape(text).replace('"', "\\(dq") + '"'
