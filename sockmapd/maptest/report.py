"""Reports of a test run: text in the manner of pytest, and JUnit XML for CI systems."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from sockmapd.maptest.runner import Outcome

# Characters XML 1.0 cannot carry at all, not even escaped.
_NOT_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _quoted(text: str) -> str:
    # Quotes show where a reply ends (a trailing space); escapes show control characters.
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Summary:
    """How many cases passed, failed (a different reply) or had an error (no reply)."""

    passed: int
    failed: int
    errors: int

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Summary:
        """Return the counts of outcomes."""
        passed = sum(1 for o in outcomes if o.passed)
        errors = sum(1 for o in outcomes if o.got is None)
        return cls(passed, len(outcomes) - passed - errors, errors)

    @property
    def ok(self) -> bool:
        """Return True if every case passed."""
        return not self.failed and not self.errors

    def __str__(self) -> str:
        parts = []
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts.append(f"{self.passed} passed")
        if self.errors:
            parts.append(f"{self.errors} error" + ("s" if self.errors != 1 else ""))
        return ", ".join(parts)


def _mark(outcome: Outcome) -> str:
    if outcome.passed:
        return "."
    return "E" if outcome.got is None else "F"


def problem_line(outcome: Outcome) -> str:
    """Return the one line that says why a case did not pass: where, map, key, expected, got."""
    test = outcome.case.test
    head = f"{outcome.case.where} {test.map} {_quoted(test.key)}"
    if outcome.got is None:
        line = f"ERROR {head}: expected {_quoted(test.expect)}, no reply: {outcome.error}"
    else:
        line = f"FAILED {head}: expected {_quoted(test.expect)}, got {_quoted(outcome.got)}"
    return f"{line} ({test.note})" if test.note else line


def text_report(outcomes: Sequence[Outcome]) -> str:
    """Return the report: one progress line per file, one line per failure, a summary."""
    lines: list[str] = []
    progress: dict[str, list[str]] = {}
    for outcome in outcomes:
        progress.setdefault(outcome.case.source, []).append(_mark(outcome))
    lines += [f"{source} {''.join(marks)}" for source, marks in progress.items()]
    problems = [problem_line(outcome) for outcome in outcomes if not outcome.passed]
    if problems:
        lines += ["", *problems]
    summary = f" {Summary.of(outcomes)} "
    lines.append(summary.center(max(len(summary) + 8, 60), "="))
    return "\n".join(lines) + "\n"


def junit_xml(outcomes: Sequence[Outcome]) -> bytes:
    """Return the outcomes as a JUnit XML document: one testsuite per file, one testcase each."""
    summary = Summary.of(outcomes)
    root = ET.Element(
        "testsuites",
        name="sockmapd test",
        tests=str(len(outcomes)),
        failures=str(summary.failed),
        errors=str(summary.errors),
    )
    suites: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        suites.setdefault(outcome.case.source, []).append(outcome)
    for source, members in suites.items():
        counts = Summary.of(members)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=source,
            tests=str(len(members)),
            failures=str(counts.failed),
            errors=str(counts.errors),
            skipped="0",
        )
        for outcome in members:
            _testcase(suite, outcome)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def _testcase(suite: ET.Element, outcome: Outcome) -> None:
    case = outcome.case
    test = case.test
    element = ET.SubElement(
        suite,
        "testcase",
        classname=case.source,
        name=_xml_text(f"{test.map} {test.key}"),
        file=case.source,
    )
    if case.line is not None:
        element.set("line", str(case.line))
    if outcome.passed:
        return
    if outcome.got is None:
        failure = ET.SubElement(
            element, "error", message=_xml_text(outcome.error or ""), type="no reply"
        )
    else:
        message = f"expected {_quoted(test.expect)}, got {_quoted(outcome.got)}"
        failure = ET.SubElement(element, "failure", message=_xml_text(message), type="wrong reply")
    failure.text = _xml_text(problem_line(outcome))
