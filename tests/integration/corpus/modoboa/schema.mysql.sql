-- Written for these tests: the columns of Modoboa's tables that its published queries read,
-- typed as Django creates them on MySQL (booleans as TINYINT(1)). The database's default
-- collation ignores case.
CREATE TABLE admin_domain (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(100) NOT NULL UNIQUE,
  type VARCHAR(20) NOT NULL,
  enabled TINYINT(1) NOT NULL
);
CREATE TABLE admin_domainalias (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) NOT NULL UNIQUE,
  target_id INT NOT NULL,
  enabled TINYINT(1) NOT NULL
);
CREATE TABLE admin_mailbox (
  id INT NOT NULL PRIMARY KEY,
  address VARCHAR(252) NOT NULL,
  domain_id INT NOT NULL
);
CREATE TABLE admin_mailboxoperation (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  mailbox_id INT NULL
);
CREATE TABLE core_user (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(254) NOT NULL,
  is_active TINYINT(1) NOT NULL
);
CREATE TABLE admin_alias (
  id INT NOT NULL PRIMARY KEY,
  address VARCHAR(254) NOT NULL,
  domain_id INT NULL,
  enabled TINYINT(1) NOT NULL,
  expire_at DATETIME(6) NULL
);
CREATE TABLE modoboa_admin_aliasrecipient (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  address VARCHAR(254) NOT NULL,
  alias_id INT NOT NULL,
  r_mailbox_id INT NULL
);
CREATE TABLE admin_senderaddress (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  address VARCHAR(254) NOT NULL,
  mailbox_id INT NOT NULL
);
