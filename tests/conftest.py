"""Fixtures shared by all tests: the real database servers of the integration tests."""

pytest_plugins = ["tests.integration.databases", "tests.integration.pgcluster"]
