"""sockmapd.toml(5): every option, from the same models and descriptions as the reference.

docs/configuration.md and this page are two renderings of sockmapd.config.reference:
an option, a description or a section note added there appears in both.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from sockmapd import __version__
from sockmapd.cli import DEFAULT_CONFIG
from sockmapd.config import Config
from sockmapd.config.descriptions import (
    INTRO,
    LEGACY_INTRO,
    LEGACY_OUTRO,
    SECTION_LEADS,
    SECTION_NOTES,
)
from sockmapd.config.reference import (
    Option,
    describe_options,
    legacy_keys,
    table_header,
)
from sockmapd.manual import roff

SEE_ALSO = (
    ("sockmapd", 8),
    ("socketmap_table", 5),
    ("mysql_table", 5),
    ("pgsql_table", 5),
    ("sqlite_table", 5),
)


def render_config_page(date: str, config_model: type[BaseModel] = Config) -> str:
    """Return sockmapd.toml(5) as man(7) source, dated date (YYYY-MM-DD)."""
    lines = [
        f'.TH SOCKMAPD.TOML 5 {date} "sockmapd {__version__}" "File Formats Manual"',
        roff.RAGGED_RIGHT,
        ".SH NAME",
        "sockmapd.toml \\- configuration file of sockmapd",
        ".SH SYNOPSIS",
        roff.escape(str(DEFAULT_CONFIG), literal=True),
        ".SH DESCRIPTION",
        *roff.blocks(_intro()),
    ]
    sections: dict[str, list[Option]] = {}
    for option in describe_options(config_model):
        sections.setdefault(option.section, []).append(option)
    for section, options in sections.items():
        lines.append(f".SH {roff.quoted(table_header(section))}")
        lead = SECTION_LEADS.get(section)
        if lead:
            lines += roff.blocks(lead)
        for option in options:
            lines += _option(option)
        note = SECTION_NOTES.get(section)
        if note:
            lines += [".PP", *roff.blocks(note)]
    lines += _legacy()
    lines += [
        ".SH SEE ALSO",
        ",\n".join(f".BR {name} ({section})" for name, section in SEE_ALSO),
    ]
    return "\n".join(lines) + "\n"


def _intro() -> str:
    """Return the reference's introduction without its title and generator comment."""
    text = re.sub(r"\A# [^\n]*\n", "", INTRO)
    return re.sub(r"<!--.*?-->\n", "", text, flags=re.DOTALL)


def _option(option: Option) -> list[str]:
    kind = f"Type: {roff.inline(option.type)}; default: {roff.inline(option.default)}."
    return [
        ".TP",
        f"\\fB{roff.escape(option.name, literal=True)}\\fR",
        *roff.fill(kind),
        ".br",
        *roff.blocks(option.meaning, paragraph=".IP"),
    ]


def _legacy() -> list[str]:
    title, _, body = LEGACY_INTRO.partition("\n")
    lines = [f".SH {roff.quoted(title.removeprefix('## ').upper())}", *roff.blocks(body)]
    for legacy, targets in legacy_keys():
        names = ", ".join(_target(target) for target in targets)
        lines += [".TP", f"\\fB{roff.escape(legacy, literal=True)}\\fR", *roff.fill(names)]
    lines += [".PP", *roff.blocks(LEGACY_OUTRO)]
    return lines


def _target(option: str) -> str:
    if option.startswith("["):
        return f"the NAME of \\fB{roff.escape(option, literal=True)}\\fR"
    return f"\\fB{roff.escape(option, literal=True)}\\fR"
