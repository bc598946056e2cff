"""Map tests: run ``[[tests]]`` cases against the databases or a running server, and report."""

from sockmapd.maptest.cases import Case, config_cases, file_cases
from sockmapd.maptest.report import Summary, junit_xml, problem_line, text_report
from sockmapd.maptest.runner import Outcome, run_direct, run_server

__all__ = [
    "Case",
    "Outcome",
    "Summary",
    "config_cases",
    "file_cases",
    "junit_xml",
    "problem_line",
    "run_direct",
    "run_server",
    "text_report",
]
