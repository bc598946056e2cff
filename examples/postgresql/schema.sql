-- Mail tables for examples/postgresql/sockmapd.toml, with example rows.
--   createdb mail && psql -d mail -f schema.sql
-- sockmapd only reads; give its role SELECT and nothing else:
--   CREATE ROLE sockmapd LOGIN PASSWORD 'change-me';
--   GRANT SELECT ON domains, mailboxes, aliases, sender_access TO sockmapd;

CREATE TABLE domains (
    domain TEXT PRIMARY KEY,
    active BOOLEAN NOT NULL DEFAULT TRUE
);
INSERT INTO domains (domain, active) VALUES
    ('example.com', TRUE),
    ('example.net', TRUE),
    ('retired.example.org', FALSE);

-- Addresses are stored in lower case; the maps lower-case the keys Postfix sends.
CREATE TABLE mailboxes (
    address TEXT PRIMARY KEY,
    maildir TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE
);
INSERT INTO mailboxes (address, maildir, active) VALUES
    ('alice@example.com', 'example.com/alice/', TRUE),
    ('bob@example.com', 'example.com/bob/', TRUE),
    ('carol@example.net', 'example.net/carol/', FALSE);

-- One row per destination; "@domain" is a domain's catch-all.
CREATE TABLE aliases (
    address TEXT NOT NULL,
    goto TEXT NOT NULL
);
INSERT INTO aliases (address, goto) VALUES
    ('info@example.com', 'alice@example.com'),
    ('info@example.com', 'bob@example.com'),
    ('postmaster@example.com', 'alice@example.com'),
    ('@example.net', 'alice@example.com');

CREATE TABLE sender_access (
    sender TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    reason TEXT
);
INSERT INTO sender_access (sender, action, reason) VALUES
    ('spammer@example.org', 'REJECT', 'spam source'),
    ('partner.example.org', 'OK', NULL);
