"""The configuration reference: complete, up to date, and derived from the models."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, SecretStr

from sockmapd.cli import main
from sockmapd.config import Config
from sockmapd.config.descriptions import (
    DESCRIPTIONS,
    REGENERATE_COMMAND,
    SECTION_LEADS,
    SECTION_NOTES,
    UNSET_MEANS,
)
from sockmapd.config.legacy import LegacyFile
from sockmapd.config.reference import (
    NAME,
    describe_options,
    describe_type,
    legacy_keys,
    render_reference,
    toml_value,
)

REFERENCE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_option_has_a_description() -> None:
    missing = [option.key for option in describe_options() if not option.meaning.strip()]
    assert not missing, (
        f"options without a description: {', '.join(missing)}; add them to DESCRIPTIONS "
        f"in sockmapd/config/descriptions.py and run {REGENERATE_COMMAND}"
    )


def test_no_description_is_left_for_an_option_that_is_gone() -> None:
    keys = {option.key for option in describe_options()}
    sections = {option.section for option in describe_options()}
    assert set(DESCRIPTIONS) - keys == set()
    assert set(UNSET_MEANS) - keys == set()
    assert (set(SECTION_LEADS) | set(SECTION_NOTES)) - sections == set()


def test_the_committed_reference_is_up_to_date() -> None:
    assert REFERENCE_PAGE.read_text() == render_reference(), (
        f"docs/configuration.md is out of date: run {REGENERATE_COMMAND}"
    )


def test_the_command_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == render_reference()


def test_every_section_and_option_is_listed() -> None:
    text = render_reference()
    for section in ("server", "log", "databases.NAME", "maps.NAME"):
        assert f"## `[{section}]`" in text
    for option in describe_options():
        assert f"| `{option.name}` | {option.type} | {option.default} |" in text


def test_new_sections_and_options_are_picked_up_from_the_models() -> None:
    class Probe(BaseModel):
        port: Annotated[int, Field(ge=1, le=65535)] = 9100
        path: str = Field(default="/metrics", description="Where the metrics are served.")

    class Extended(Config):
        probes: Probe = Probe()
        listeners: dict[str, Probe] = Field(default_factory=dict)

    options = {option.key: option for option in describe_options(Extended)}
    assert options["probes.port"].type == "integer, 1\u201365535"
    assert options["probes.port"].default == "`9100`"
    assert options["probes.path"].meaning == "Where the metrics are served."
    assert options["listeners.port"].section == f"listeners.{NAME}"
    # Not described yet: the completeness test would fail for such a field.
    assert options["probes.port"].meaning == ""


@pytest.mark.parametrize(
    ("annotation", "name", "expected"),
    [
        (str, "user", "string"),
        (SecretStr | None, "password", "string"),
        (Path | None, "file", "path"),
        (bool, "tls", "boolean"),
        (list[str], "allow", "list of strings"),
        (Literal["a", "b"], "order", "one of `a`, `b`"),
        (Literal["a", "b"] | None, "order", "one of `a`, `b`"),
        (list[Literal["x", "y"]], "steps", "list of `x`, `y`"),
        (Annotated[float, Field(gt=0)], "query_timeout", "seconds, > 0"),
        (Annotated[float, Field(ge=0)], "cache_ttl", "seconds, ≥ 0"),
        (Annotated[float, Field(ge=0)], "ratio", "number, ≥ 0"),
        (Annotated[int, Field(ge=0)], "limit", "integer, ≥ 0"),
        (Annotated[int, Field(ge=1, le=10)] | None, "size", "integer, 1\u201310"),
    ],
)
def test_types_are_described_for_people(annotation: Any, name: str, expected: str) -> None:
    assert describe_type(annotation, name=name) == expected


def test_an_unknown_type_is_an_error_not_a_guess() -> None:
    with pytest.raises(TypeError, match="option 'when'"):
        describe_type(complex, name="when")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (60.0, "60"),
        (0.5, "0.5"),
        (True, "true"),
        ("info", '"info"'),
        ([], "[]"),
        (["127.0.0.0/8", "::1/128"], '["127.0.0.0/8", "::1/128"]'),
    ],
)
def test_defaults_are_written_as_toml(value: object, expected: str) -> None:
    assert toml_value(value) == expected
    assert tomllib.loads(f"x = {expected}")["x"] == value


def test_every_legacy_key_is_mapped_to_an_option() -> None:
    mapping = dict(legacy_keys())
    assert mapping["database.host"] == ["databases.NAME.hosts"]
    assert mapping["database.username"] == ["databases.NAME.user"]
    assert mapping["sysconfig.port"] == ["server.listen"]
    assert mapping["sysconfig.logfile"] == ["log.file"]
    assert mapping["postmaps[].service"] == ["[maps.NAME]"]
    assert mapping["postmaps[].database"][0] == "[databases.NAME]"
    leaves = {
        f"{section}{'[]' if section == 'postmaps' else ''}.{name}"
        for section, field in LegacyFile.model_fields.items()
        for name in _model_fields(field.annotation)
    }
    assert set(mapping) == leaves


def _model_fields(annotation: Any) -> list[str]:
    model = annotation.__args__[0] if hasattr(annotation, "__args__") else annotation
    return list(model.model_fields)
