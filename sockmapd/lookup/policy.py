"""Which keys a map queries: key transforms, Postfix's domain filter and partial-key search."""

from __future__ import annotations

from collections.abc import Iterator

from sockmapd.config import MapConfig
from sockmapd.config.expansions import SEARCH_CODES, parse_template
from sockmapd.lookup.keys import Expander, KeyParts, apply_transforms


class KeyPolicy:
    """What a map makes of a key before any query: all of it prepared at load."""

    __slots__ = ("_delimiters", "_domains", "_search", "_transforms")

    def __init__(self, config: MapConfig) -> None:
        self._transforms = tuple(config.key_transform)
        self._delimiters = config.recipient_delimiter
        # An empty domain file still filters: Postfix then queries nothing.
        self._domains = config.domains() if config.domain else None
        self._search = tuple(
            Expander(parse_template(entry, SEARCH_CODES), config.recipient_delimiter)
            for entry in config.search
        )

    @property
    def filters(self) -> bool:
        """Return True if some keys are answered NOTFOUND without a query (the domain filter)."""
        return self._domains is not None

    @property
    def searches(self) -> bool:
        """Return True if the map queries the keys of its search entries, not the key itself."""
        return bool(self._search)

    def transform(self, key: str) -> str:
        """Return key after the map's key_transform steps (raises for a key they refuse)."""
        if self._transforms:
            return apply_transforms(key, self._transforms, self._delimiters)
        return key

    def queried(self, key: str) -> bool:
        """Return False if Postfix's `domain` setting keeps this key from being queried.

        Only user@listed-domain is queried. It applies to the key asked for, so a
        search may still derive "@domain" from an eligible key.
        """
        domains = self._domains
        if domains is None:
            return True
        # Split at the last '@', as KeyParts does, without making one.
        local, _, domain = key.rpartition("@")
        return bool(local) and bool(domain) and domain.lower() in domains

    def candidates(self, key: str) -> Iterator[str]:
        """Yield the keys a map with search entries queries, in order, each once.

        A map without search entries queries the key itself (see searches).
        """
        parts = KeyParts.of(key)
        tried: set[str] = set()
        for expander in self._search:
            candidate = expander.expand(parts)
            if candidate is None or candidate in tried:
                continue
            tried.add(candidate)
            yield candidate
