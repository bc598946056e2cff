"""Lookups: map name and key in, socketmap reply out."""

from sockmapd.lookup.maps import MapLookup
from sockmapd.lookup.router import Router, build_router, unknown_map

__all__ = ["MapLookup", "Router", "build_router", "unknown_map"]
