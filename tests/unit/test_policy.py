"""KeyPolicy: key transforms, Postfix's domain filter and partial-key search, without a database."""

from __future__ import annotations

from pathlib import Path

from sockmapd.config import MapConfig
from sockmapd.lookup.policy import KeyPolicy


def policy(**options: object) -> KeyPolicy:
    return KeyPolicy(MapConfig(database="d", table="t", key="k", **options))  # type: ignore[arg-type]


def keys(found: KeyPolicy, key: str) -> list[str]:
    return list(found.candidates(key))


def test_without_options_the_key_is_queried_as_it_is() -> None:
    plain = policy()
    assert plain.transform("User@Example.COM") == "User@Example.COM"
    assert not plain.filters
    assert plain.queried("anything")
    # No search entries: the map queries the key itself, without asking for candidates.
    assert not plain.searches


def test_transforms_apply_in_order() -> None:
    lowered = policy(key_transform=["lowercase", "strip_extension"], recipient_delimiter="+")
    assert lowered.transform("User+Tag@Example.COM") == "user@example.com"


def test_the_domain_filter_queries_only_user_at_listed_domain(tmp_path: Path) -> None:
    listed = policy(domain=["example.com"])
    assert listed.filters
    assert listed.queried("user@Example.com")
    assert not listed.queried("user@other.example")
    assert not listed.queried("@example.com")  # no local part
    assert not listed.queried("example.com")  # no domain
    assert not listed.queried("user@")  # nothing after the '@'


def test_search_yields_each_candidate_once_in_order() -> None:
    search = policy(search=["%s", "%u@%d", "@%d"], recipient_delimiter="+")
    assert search.searches
    # %s and %u@%d are the same key here: asked once.
    assert keys(search, "user@example.com") == ["user@example.com", "@example.com"]
    # An entry the key cannot fill (no domain) is skipped.
    assert keys(search, "user") == ["user"]
