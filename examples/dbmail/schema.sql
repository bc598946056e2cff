-- dbmail's alias table, as dbmail's own MySQL schema creates it, with example
-- rows, to try examples/dbmail/sockmapd.toml without a dbmail installation:
--   mariadb -e 'CREATE DATABASE dbmail CHARACTER SET utf8mb4' && mariadb dbmail < schema.sql
-- On a dbmail server the table exists already; sockmapd only needs to read it:
--   CREATE USER 'sockmapd'@'localhost' IDENTIFIED BY 'change-me';
--   GRANT SELECT ON dbmail.dbmail_aliases TO 'sockmapd'@'localhost';
--
-- deliver_to is a dbmail user id (a number, delivered to that user's mailbox)
-- or an address mail is forwarded to. An alias "@domain" catches the domain.

CREATE TABLE dbmail_aliases (
    alias_idnr BIGINT NOT NULL AUTO_INCREMENT,
    alias VARCHAR(255) NOT NULL,
    deliver_to VARCHAR(255) NOT NULL,
    client_idnr BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (alias_idnr),
    KEY alias_index (alias),
    KEY client_idnr_index (client_idnr)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO dbmail_aliases (alias, deliver_to) VALUES
    ('alice@example.com', '3'),
    ('bob@example.com', '4'),
    ('postmaster@example.com', '3'),
    ('team@example.com', '3'),
    ('team@example.com', '4'),
    ('carol@example.com', 'carol@elsewhere.example'),
    ('@example.net', '4');
