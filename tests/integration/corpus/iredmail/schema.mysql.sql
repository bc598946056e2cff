-- Written for these tests: the columns of iRedMail's vmail tables that its published
-- queries read; flags are small integers, as in iRedMail's schema. The database's default
-- collation ignores case.
CREATE TABLE domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  backupmx TINYINT(1) NOT NULL DEFAULT 0,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE alias_domain (
  alias_domain VARCHAR(255) NOT NULL PRIMARY KEY,
  target_domain VARCHAR(255) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE forwardings (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  address VARCHAR(255) NOT NULL DEFAULT '',
  forwarding VARCHAR(255) NOT NULL DEFAULT '',
  domain VARCHAR(255) NOT NULL DEFAULT '',
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE mailbox (
  username VARCHAR(255) NOT NULL PRIMARY KEY,
  storagenode VARCHAR(255) NOT NULL DEFAULT '',
  maildir VARCHAR(255) NOT NULL DEFAULT '',
  domain VARCHAR(255) NOT NULL DEFAULT '',
  enabledeliver TINYINT(1) NOT NULL DEFAULT 1,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE recipient_bcc_user (
  username VARCHAR(255) NOT NULL PRIMARY KEY,
  bcc_address VARCHAR(255) NOT NULL DEFAULT '',
  domain VARCHAR(255) NOT NULL DEFAULT '',
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE recipient_bcc_domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  bcc_address VARCHAR(255) NOT NULL DEFAULT '',
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE sender_bcc_domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  bcc_address VARCHAR(255) NOT NULL DEFAULT '',
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE maillists (
  address VARCHAR(255) NOT NULL PRIMARY KEY,
  domain VARCHAR(255) NOT NULL DEFAULT '',
  transport VARCHAR(255) NOT NULL DEFAULT '',
  active TINYINT(1) NOT NULL DEFAULT 1
);
