"""The man pages and completion scripts: generated from the parser and the config models."""

from __future__ import annotations

import argparse
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from sockmapd.cli import build_parser
from sockmapd.config.reference import describe_options, legacy_keys, table_header
from sockmapd.manual import (
    GENERATED,
    REGENERATE_COMMAND,
    Generated,
    page_date,
    regenerate,
    undated,
)
from sockmapd.manual.arguments import walk
from sockmapd.manual.command import render_command_page
from sockmapd.manual.completion import render_completion
from sockmapd.manual.configuration import render_config_page

ROOT = Path(__file__).resolve().parents[2]
DATE = "2025-01-20"


@pytest.mark.parametrize("item", GENERATED, ids=lambda item: item.path)
def test_the_committed_file_is_up_to_date(item: Generated) -> None:
    committed = (ROOT / item.path).read_text(encoding="utf-8")
    fresh = item.render(DATE)
    if item.dated:
        committed, fresh = undated(committed), undated(fresh)
    assert committed == fresh, f"{item.path} is out of date: run {REGENERATE_COMMAND}"


def test_the_wheel_installs_every_generated_file_under_share() -> None:
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"
    ]
    installed = {
        f"{directory}/{Path(source).name}": source
        for directory, sources in data_files.items()
        for source in sources
    }
    expected = {}
    for item in GENERATED:
        directory, _, name = item.installed_as.rpartition("/")
        expected[f"{directory}/{Path(item.path).name}"] = item.path
        # A file keeps its name when installed: bash-completion looks the script up by
        # the command's name, zsh by _NAME, man by NAME.SECTION.
        assert Path(item.path).name == name
    assert installed == expected


def test_regenerating_an_up_to_date_tree_changes_nothing(tmp_path: Path) -> None:
    for item in GENERATED:
        (tmp_path / item.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / item.path, tmp_path / item.path)
    before = {item.path: (tmp_path / item.path).read_text() for item in GENERATED}
    assert regenerate(tmp_path, "2099-12-31") == []
    assert {item.path: (tmp_path / item.path).read_text() for item in GENERATED} == before


def test_a_page_whose_text_changed_gets_the_new_date(tmp_path: Path) -> None:
    assert regenerate(tmp_path, DATE) == [item.path for item in GENERATED]
    page = tmp_path / "man/sockmapd.8"
    page.write_text(page.read_text().replace("SIGUSR2", "SIGWINCH"))
    assert regenerate(tmp_path, "2099-12-31") == ["man/sockmapd.8"]
    assert page_date(page.read_text()) == "2099-12-31"
    assert page_date((tmp_path / "man/sockmapd.toml.5").read_text()) == DATE


def test_every_command_and_option_of_the_parser_is_in_the_command_page() -> None:
    page = render_command_page(DATE)
    for command in walk(build_parser()):
        assert f'.SS "{command.name}"' in page or not command.words or command.subcommands()
        for action in command.arguments():
            for option in action.option_strings:
                assert f"\\fB{option.replace('-', chr(92) + '-')}\\fR" in page, option


def test_a_new_subcommand_appears_after_regeneration() -> None:
    parser = argparse.ArgumentParser(prog="sockmapd")
    commands = parser.add_subparsers(dest="command")
    probe = commands.add_parser("probe", help="probe the server", epilog="exit status:\n  4  odd")
    probe.add_argument("--deep", action="store_true", help="look deeper")
    page = render_command_page(DATE, parser)
    assert '.SS "sockmapd probe"' in page
    assert "\\%\\fBsockmapd probe\\fR \\%[\\-h] \\%[\\-\\-deep]" in page
    assert "\\fB\\-\\-deep\\fR\nlook deeper" in page
    assert ".TP\n4\nodd" in page
    assert "_shtab_sockmapd_probe_option_strings=(-h --help --deep)" in render_completion(
        "bash", parser
    )


def test_the_page_lists_signals_exit_statuses_and_files() -> None:
    page = render_command_page(DATE)
    sections = re.findall(r"^\.SH (.+)$", page, re.MULTILINE)
    assert sections == [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "SIGNALS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "SEE ALSO",
    ]
    for signal in ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTERM, SIGINT"):
        assert f".TP\n\\fB{signal}\\fR\n" in page
    assert "\\fB/etc/sockmapd/sockmapd.toml\\fR" in page
    assert page.startswith(f'.TH SOCKMAPD 8 {DATE} "sockmapd ')


def test_every_section_and_option_is_in_the_config_page() -> None:
    page = render_config_page(DATE)
    for option in describe_options():
        assert f'.SH "{table_header(option.section)}"' in page
        name = option.name.replace("-", "\\-")
        assert f".TP\n\\fB{name}\\fR\nType: " in page, option.key
    for legacy, _ in legacy_keys():
        assert f".TP\n\\fB{legacy}\\fR\n" in page


def test_the_config_page_carries_the_descriptions_of_the_reference() -> None:
    page = render_config_page(DATE)
    # A description with code, a link and a non-ASCII character, as the reference has it.
    assert "\\fBunix_mode\\fR" in page
    assert "(see\n\\%\\fBunix_mode\\fR)" in page or "(see \\%\\fBunix_mode\\fR)" in page
    assert "\\fIdocs/maps.md\\fR" in page
    assert "\\[u2265]" in page  # ≥ in "seconds, ≥ 0"
    # The section notes' TOML examples are literal blocks.
    assert '.EX\n[server]\nlisten = ["tcp://[::]:2224", ' in page


def test_completion_completes_file_names_for_path_arguments() -> None:
    bash = render_completion("bash")
    assert "_shtab_sockmapd__c_COMPGEN=_shtab_compgen_files" in bash
    assert "_shtab_sockmapd_config_convert_pos_0_COMPGEN=_shtab_compgen_files" in bash
    zsh = render_completion("zsh")
    assert zsh.startswith("#compdef sockmapd\n")
    assert ":_files" in zsh
