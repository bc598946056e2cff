"""sockmapd: a socketmap daemon that answers MTA lookups from SQL tables."""

__version__ = "0.1.0"
