"""Lookups: map name and key in, socketmap reply out."""

from sockmapd.lookup.router import Router, build_router

__all__ = ["Router", "build_router"]
