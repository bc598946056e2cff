"""The man pages and completion scripts, read by the real groff, mandoc, man, bash and zsh."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools import require_tool, run

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("man/sockmapd.8", "man/sockmapd.toml.5")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def tool(name: str, package: str) -> str:
    return require_tool(name, variable="SOCKMAPD_REQUIRE_MANUAL", package=package)


@pytest.mark.parametrize("page", PAGES)
def test_groff_renders_the_page_without_a_warning(page: str) -> None:
    result = run([tool("groff", "groff-base"), "-man", "-ww", "-z", page], cwd=ROOT)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("page", PAGES)
def test_mandoc_lint_finds_nothing(page: str) -> None:
    # -T lint reports every level, style included; no output means no finding at all.
    result = run([tool("mandoc", "mandoc"), "-T", "lint", page], cwd=ROOT)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("page", "header", "name_line"),
    [
        (
            "man/sockmapd.8",
            "SOCKMAPD(8)",
            "sockmapd - answer Postfix and Sendmail socketmap lookups from SQL tables",
        ),
        (
            "man/sockmapd.toml.5",
            "SOCKMAPD.TOML(5)",
            "sockmapd.toml - configuration file of sockmapd",
        ),
    ],
)
def test_man_shows_the_page(page: str, header: str, name_line: str) -> None:
    result = run(
        [tool("man", "man-db"), "--warnings", "-l", page],
        env={"MANWIDTH": "100"},
        cwd=ROOT,
    )
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0].startswith(header)
    assert lines[0].endswith(header)
    assert lines[2:4] == ["NAME", f"       {name_line}"]


def bash_complete(words: list[str], *, cwd: Path, script: str = "completion/sockmapd") -> list[str]:
    """Return what bash offers for the last of words, with the completion script sourced."""
    program = (
        f"source {ROOT / script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}\n'
        '_shtab_sockmapd sockmapd "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = run([tool("bash", "bash"), "--norc", "--noprofile"], stdin=program, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.split())


def test_bash_registers_the_completion() -> None:
    result = run(
        [
            tool("bash", "bash"),
            "--norc",
            "--noprofile",
            "-c",
            "source completion/sockmapd; complete -p sockmapd",
        ],
        cwd=ROOT,
    )
    assert (result.returncode, result.stdout) == (
        0,
        "complete -o bashdefault -F _shtab_sockmapd sockmapd\n",
    ), result.stderr


def test_bash_completes_commands_options_and_files(tmp_path: Path) -> None:
    (tmp_path / "mail.toml").write_text("")
    (tmp_path / "mailer.json").write_text("")
    assert bash_complete(["sockmapd", ""], cwd=tmp_path) == ["config", "query", "test"]
    assert bash_complete(["sockmapd", "config", ""], cwd=tmp_path) == [
        "convert",
        "import-postfix",
        "reference",
    ]
    assert "--check-config" in bash_complete(["sockmapd", "--ch"], cwd=tmp_path)
    assert bash_complete(["sockmapd", "-c", "mai"], cwd=tmp_path) == ["mail.toml", "mailer.json"]
    assert bash_complete(["sockmapd", "config", "convert", "mail."], cwd=tmp_path) == ["mail.toml"]
    assert bash_complete(["sockmapd", "test", "--ju"], cwd=tmp_path) == ["--junit-xml"]


def test_bash_completion_loads_the_script_from_share_on_demand(tmp_path: Path) -> None:
    """bash-completion finds the script where the wheel installs it, by the command's name."""
    loader = require_tool(
        "bash-completion",
        variable="SOCKMAPD_REQUIRE_MANUAL",
        package="bash-completion",
        path=BASH_COMPLETION,
    )
    share = tmp_path / "share" / "bash-completion" / "completions"
    share.mkdir(parents=True)
    (share / "sockmapd").write_text((ROOT / "completion" / "sockmapd").read_text())
    program = f"source {loader}\n__load_completion sockmapd\ncomplete -p sockmapd\n"
    result = run(
        [tool("bash", "bash"), "--norc", "--noprofile"],
        env={"XDG_DATA_DIRS": str(tmp_path / "share")},
        stdin=program,
        cwd=tmp_path,
    )
    assert result.stdout == "complete -o bashdefault -F _shtab_sockmapd sockmapd\n", result.stderr


def test_zsh_finds_the_completion_function_by_its_name(tmp_path: Path) -> None:
    program = (
        f"fpath=({ROOT / 'completion'} $fpath)\n"
        "autoload -Uz compinit && compinit -u -D\n"
        "print -r -- $_comps[sockmapd]\n"
        "autoload -Uz +X _sockmapd && print loaded\n"
    )
    result = run(
        [tool("zsh", "zsh"), "-f"], env={"HOME": str(tmp_path)}, stdin=program, cwd=tmp_path
    )
    assert (result.returncode, result.stdout) == (0, "_sockmapd\nloaded\n"), result.stderr
