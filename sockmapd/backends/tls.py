"""Build the TLS context for a database connection from its config."""

from __future__ import annotations

import ssl

from sockmapd.config import DatabaseConfig


def client_tls_context(db: DatabaseConfig) -> ssl.SSLContext | None:
    """Return an SSLContext for db, or None when TLS is off."""
    if not db.tls:
        return None
    context = ssl.create_default_context(
        cafile=str(db.tls_ca_file) if db.tls_ca_file is not None else None
    )
    if db.tls_cert_file is not None and db.tls_key_file is not None:
        context.load_cert_chain(str(db.tls_cert_file), str(db.tls_key_file))
    if not db.tls_verify:
        # Encryption without authentication: the admin asked for it explicitly.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
