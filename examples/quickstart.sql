-- Example data for examples/quickstart.toml. sockmapd runs this script once,
-- when quickstart.sqlite3 does not exist yet (see init_sql in the config).

CREATE TABLE mailboxes (
    address TEXT PRIMARY KEY NOT NULL,
    maildir TEXT NOT NULL
);
INSERT INTO mailboxes (address, maildir) VALUES
    ('alice@example.com', 'example.com/alice/'),
    ('bob@example.com', 'example.com/bob/'),
    ('postmaster@example.com', 'example.com/postmaster/');

CREATE TABLE aliases (
    alias TEXT NOT NULL,
    destination TEXT
);
INSERT INTO aliases (alias, destination) VALUES
    ('info@example.com', 'alice@example.com'),
    ('info@example.com', 'bob@example.com'),
    ('abuse@example.com', 'postmaster@example.com');

CREATE TABLE access (
    sender TEXT PRIMARY KEY NOT NULL,
    action TEXT NOT NULL,
    reason TEXT
);
INSERT INTO access (sender, action, reason) VALUES
    ('spammer@example.net', 'REJECT', 'spam source'),
    ('partner.example.org', 'OK', NULL);
