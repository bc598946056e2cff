-- Written for these tests: the columns of Postfix Admin's tables that its published
-- queries read, typed as in its MySQL schema. The database's default collation ignores case.
CREATE TABLE domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  backupmx TINYINT(1) NOT NULL DEFAULT 0,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE alias (
  address VARCHAR(255) NOT NULL PRIMARY KEY,
  goto TEXT NOT NULL,
  domain VARCHAR(255) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE alias_domain (
  alias_domain VARCHAR(255) NOT NULL PRIMARY KEY,
  target_domain VARCHAR(255) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE mailbox (
  username VARCHAR(255) NOT NULL PRIMARY KEY,
  maildir VARCHAR(255) NOT NULL,
  quota BIGINT NULL,
  domain VARCHAR(255) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 1
);
