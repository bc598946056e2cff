-- Written for these tests: the columns of Postfix Admin's tables that its published
-- queries read, typed as in its PostgreSQL schema (text compares exactly, active is boolean).
CREATE TABLE domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  backupmx BOOLEAN NOT NULL DEFAULT false,
  active BOOLEAN NOT NULL DEFAULT true
);
CREATE TABLE alias (
  address VARCHAR(255) NOT NULL PRIMARY KEY,
  goto TEXT NOT NULL,
  domain VARCHAR(255) NOT NULL,
  active BOOLEAN NOT NULL DEFAULT true
);
CREATE TABLE alias_domain (
  alias_domain VARCHAR(255) NOT NULL PRIMARY KEY,
  target_domain VARCHAR(255) NOT NULL,
  active BOOLEAN NOT NULL DEFAULT true
);
CREATE TABLE mailbox (
  username VARCHAR(255) NOT NULL PRIMARY KEY,
  maildir VARCHAR(255) NOT NULL,
  quota BIGINT NULL,
  domain VARCHAR(255) NOT NULL,
  active BOOLEAN NOT NULL DEFAULT true
);
