"""sockmapd test and --check-config --connect on the quick start's SQLite maps; the reports."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sockmapd.cli import main
from sockmapd.config import MapTest
from sockmapd.maptest import Case, Outcome, junit_xml, text_report

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BOB_RENAMED = """
[[tests]]
map = "recipient"
key = "alice@example.com"
expect = "OK example.com/alice/"

[[tests]]
map = "recipient"
key = "bob@example.com"
expect = "OK example.com/robert/"
note = "bob's mailbox was renamed"
"""


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """A copy of the quick start (config, SQL, tests); its SQLite file is made on first use."""
    for name in ("quickstart.toml", "quickstart.sql", "quickstart.tests.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path / "quickstart.toml"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_quickstart_tests_pass(quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = quickstart.with_name("quickstart.tests.toml")
    assert main(["test", "-c", str(quickstart), str(tests)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{quickstart} .."
    assert out[1] == f"{tests} ........"
    assert out[2].strip("= ") == "10 passed"
    assert len(out) == 3


def test_a_wrong_reply_fails_with_map_key_expected_and_got(
    quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = _write(tmp_path / "renamed.toml", BOB_RENAMED)
    assert main(["test", "-c", str(quickstart), str(tests)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == f"{tests} .F"
    assert (
        f'FAILED {tests}:7 recipient "bob@example.com": expected "OK example.com/robert/", '
        'got "OK example.com/bob/" (bob\'s mailbox was renamed)'
    ) in out
    assert out[-1].strip("= ") == "1 failed, 3 passed"


def test_junit_xml_records_each_case(
    quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = _write(tmp_path / "renamed.toml", BOB_RENAMED)
    report = tmp_path / "report.xml"
    assert main(["test", "-c", str(quickstart), "--junit-xml", str(report), str(tests)]) == 1
    root = ET.fromstring(report.read_bytes())
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors")) == (
        "testsuites",
        "4",
        "1",
        "0",
    )
    suites = root.findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [
        (str(quickstart), "2", "0"),
        (str(tests), "2", "1"),
    ]
    cases = suites[1].findall("testcase")
    assert [(c.get("name"), c.get("line")) for c in cases] == [
        ("recipient alice@example.com", "2"),
        ("recipient bob@example.com", "7"),
    ]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == (
        'expected "OK example.com/robert/", got "OK example.com/bob/"'
    )


def test_a_database_failure_is_never_taken_for_notfound(
    quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(
        tmp_path / "broken.toml",
        quickstart.read_text()
        + '\n[maps.gone]\ndatabase = "mail"\ntable = "no_such_table"\nkey = "k"\n',
    )
    tests = _write(
        tmp_path / "gone.toml",
        '[[tests]]\nmap = "gone"\nkey = "a@example.com"\nexpect = "NOTFOUND"\n',
    )
    assert main(["test", "-c", str(config), str(tests)]) == 1
    captured = capsys.readouterr()
    assert f'FAILED {tests}:1 gone "a@example.com": expected "NOTFOUND", got "TEMP ' in (
        captured.out
    )
    # Why it failed is in the log, on stderr.
    assert "no_such_table" in captured.err


def test_a_reply_over_max_reply_bytes_is_what_the_server_sends(
    quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = quickstart.read_text().replace("[server]", "[server]\nmax_reply_bytes = 10")
    config = _write(tmp_path / "small.toml", text)
    tests = _write(
        tmp_path / "t.toml",
        '[[tests]]\nmap = "recipient"\nkey = "alice@example.com"\nexpect = "TEMP *"\n',
    )
    assert main(["test", "-c", str(config), str(tests)]) == 1
    assert 'got "TEMP reply too large, try again later"' in capsys.readouterr().out


def test_a_request_over_max_request_bytes_is_what_the_server_sends(
    quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = quickstart.read_text().replace("[server]", "[server]\nmax_request_bytes = 27")
    config = _write(tmp_path / "small.toml", text)
    # "recipient alice@example.com" is 27 bytes: one more is refused before any lookup.
    tests = _write(
        tmp_path / "t.toml",
        '[[tests]]\nmap = "recipient"\nkey = "alice@example.com"\nexpect = "OK *"\n'
        '[[tests]]\nmap = "recipient"\nkey = "alice@example.coms"\nexpect = "NOTFOUND"\n',
    )
    assert main(["test", "-c", str(config), str(tests)]) == 1
    out = capsys.readouterr().out
    assert f"{tests} .F" in out
    assert 'got "PERM request too large"' in out


def test_check_config_connect_runs_the_config_tests(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check-config", "--connect", "-c", str(quickstart)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{quickstart}: tests: 2 passed"


def test_check_config_connect_refuses_a_config_whose_test_fails(
    quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "renamed.toml", quickstart.read_text() + BOB_RENAMED)
    assert main(["--check-config", "--connect", "-c", str(config)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    line = config.read_text().splitlines().index('expect = "OK example.com/robert/"') - 2
    assert lines[0].startswith(f'FAILED {config}:{line} recipient "bob@example.com": expected')
    assert lines[-1] == f"{config}: tests: 1 failed, 3 passed"


def test_check_config_without_connect_does_not_run_the_tests(
    quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "renamed.toml", quickstart.read_text() + BOB_RENAMED)
    assert main(["--check-config", "-c", str(config)]) == 0
    assert not (tmp_path / "quickstart.sqlite3").exists()


@pytest.mark.parametrize(
    ("config_text", "tests_text", "message"),
    [
        ("[maps.x]\n", None, "maps.x.database: required key is missing"),
        (None, "[[tests]]\nmap = 'recipient'\n", "tests[0].key: required key is missing"),
        (None, "[[tests]]\nmap = 'nope'\nkey = 'k'\nexpect = 'NOTFOUND'\n", "map 'nope'"),
        (None, "[[tests]\n", "line 1 column"),
    ],
)
def test_a_config_or_test_file_that_does_not_load_exits_2(
    quickstart: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config_text: str | None,
    tests_text: str | None,
    message: str,
) -> None:
    config = quickstart if config_text is None else _write(tmp_path / "bad.toml", config_text)
    tests = quickstart.with_name("quickstart.tests.toml")
    if tests_text is not None:
        tests = _write(tmp_path / "bad.tests.toml", tests_text)
    assert main(["test", "-c", str(config), str(tests)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_nothing_to_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path / "empty.toml", "")
    assert main(["test", "-c", str(config)]) == 2
    assert "nothing to run" in capsys.readouterr().err


def test_an_unreachable_server_is_an_error_for_every_case(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = quickstart.with_name("quickstart.tests.toml")
    # Port 1 on loopback: nothing listens there, the connection is refused.
    assert main(["test", "--server", "tcp://127.0.0.1:1", str(tests)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tests} EEEEEEEE"
    assert out[2].startswith(f'ERROR {tests}:6 recipient "bob@example.com": expected ')
    assert "no reply: cannot connect to" in out[2]
    assert out[-1].strip("= ") == "0 passed, 8 errors"


def test_a_bad_server_address_exits_2(quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = quickstart.with_name("quickstart.tests.toml")
    assert main(["test", "--server", "localhost", str(tests)]) == 2
    assert "sockmapd test:" in capsys.readouterr().err


def _outcome(key: str, got: str | None, *, note: str | None = None) -> Outcome:
    test = MapTest(map="m", key=key, expect="OK x", note=note)
    return Outcome(Case(test, "t.toml", 0, None), got, None if got else "connection reset")


def test_text_report_quotes_keys_and_replies_and_names_cases_by_index_without_lines() -> None:
    report = text_report([_outcome("a b\x01", "OK x "), _outcome("c", None, note="why")])
    assert report.splitlines() == [
        "t.toml FE",
        "",
        'FAILED t.toml tests[0] m "a b\\u0001": expected "OK x", got "OK x "',
        'ERROR t.toml tests[0] m "c": expected "OK x", no reply: connection reset (why)',
        "=============== 1 failed, 0 passed, 1 error ================",
    ]


def test_junit_xml_carries_control_characters_as_escapes() -> None:
    document = junit_xml([_outcome("k\x01\x1f", "OK \x02")])
    case = ET.fromstring(document).find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == "m k\\u0001\\u001f"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == 'expected "OK x", got "OK \\u0002"'
