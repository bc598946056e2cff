-- Written for these tests: the columns of iRedMail's vmail tables that its published
-- queries read; flags are small integers (INT2), as in iRedMail's schema. Text compares exactly.
CREATE TABLE domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  backupmx INT2 NOT NULL DEFAULT 0,
  active INT2 NOT NULL DEFAULT 1
);
CREATE TABLE alias_domain (
  alias_domain VARCHAR(255) NOT NULL PRIMARY KEY,
  target_domain VARCHAR(255) NOT NULL,
  active INT2 NOT NULL DEFAULT 1
);
CREATE TABLE forwardings (
  id BIGSERIAL PRIMARY KEY,
  address VARCHAR(255) NOT NULL DEFAULT '',
  forwarding VARCHAR(255) NOT NULL DEFAULT '',
  domain VARCHAR(255) NOT NULL DEFAULT '',
  active INT2 NOT NULL DEFAULT 1
);
CREATE TABLE mailbox (
  username VARCHAR(255) NOT NULL PRIMARY KEY,
  storagenode VARCHAR(255) NOT NULL DEFAULT '',
  maildir VARCHAR(255) NOT NULL DEFAULT '',
  domain VARCHAR(255) NOT NULL DEFAULT '',
  enabledeliver INT2 NOT NULL DEFAULT 1,
  active INT2 NOT NULL DEFAULT 1
);
CREATE TABLE recipient_bcc_user (
  username VARCHAR(255) NOT NULL PRIMARY KEY,
  bcc_address VARCHAR(255) NOT NULL DEFAULT '',
  domain VARCHAR(255) NOT NULL DEFAULT '',
  active INT2 NOT NULL DEFAULT 1
);
CREATE TABLE recipient_bcc_domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  bcc_address VARCHAR(255) NOT NULL DEFAULT '',
  active INT2 NOT NULL DEFAULT 1
);
CREATE TABLE sender_bcc_domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  bcc_address VARCHAR(255) NOT NULL DEFAULT '',
  active INT2 NOT NULL DEFAULT 1
);
CREATE TABLE maillists (
  address VARCHAR(255) NOT NULL PRIMARY KEY,
  domain VARCHAR(255) NOT NULL DEFAULT '',
  transport VARCHAR(255) NOT NULL DEFAULT '',
  active INT2 NOT NULL DEFAULT 1
);
