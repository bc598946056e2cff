-- Mail tables for examples/mariadb/sockmapd.toml (MariaDB or MySQL), with example rows.
--   mariadb -e 'CREATE DATABASE postfix CHARACTER SET utf8mb4' && mariadb postfix < schema.sql
-- sockmapd only reads; give its user SELECT and nothing else:
--   CREATE USER 'sockmapd'@'localhost' IDENTIFIED BY 'change-me';
--   GRANT SELECT ON postfix.* TO 'sockmapd'@'localhost';
--
-- The tables use the server's default collation, which ignores case (and
-- trailing spaces): Bob@Example.com finds bob@example.com without any
-- key_transform. tests.toml states it, so a change of collation shows.

CREATE TABLE virtual_domains (
    domain VARCHAR(255) NOT NULL PRIMARY KEY
) DEFAULT CHARSET=utf8mb4;
INSERT INTO virtual_domains (domain) VALUES
    ('example.com');

CREATE TABLE virtual_users (
    email VARCHAR(255) NOT NULL PRIMARY KEY,
    maildir VARCHAR(255) NOT NULL,
    quota_bytes BIGINT NOT NULL DEFAULT 0
) DEFAULT CHARSET=utf8mb4;
INSERT INTO virtual_users (email, maildir, quota_bytes) VALUES
    ('alice@example.com', 'example.com/alice/', 1073741824),
    ('bob@example.com', 'example.com/bob/', 0);

-- The sender access table of the Go sockmapd's own tests.
CREATE TABLE blackwhite (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    status VARCHAR(32) NOT NULL,
    reason VARCHAR(255)
) DEFAULT CHARSET=utf8mb4;
INSERT INTO blackwhite (name, status, reason) VALUES
    ('hello@buydirect4u.co.uk', 'REJECT', 'Sender identified as spammer'),
    ('friend@example.org', 'OK', NULL),
    ('bulk.example.net', 'HOLD', 'held for review');
