-- Written for these tests: the columns of mailcow's tables that its published queries read,
-- typed as in mailcow's schema (flags TINYINT(1), mailbox attributes JSON). The database's
-- default collation ignores case. mailcow publishes its Postfix maps for MariaDB only.
CREATE TABLE domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  backupmx TINYINT(1) NOT NULL DEFAULT 0,
  relay_all_recipients TINYINT(1) NOT NULL DEFAULT 0,
  relay_unknown_only TINYINT(1) NOT NULL DEFAULT 0,
  relayhost VARCHAR(255) NOT NULL DEFAULT '0',
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE alias_domain (
  alias_domain VARCHAR(255) NOT NULL PRIMARY KEY,
  target_domain VARCHAR(255) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE alias (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  address VARCHAR(255) NOT NULL UNIQUE,
  goto TEXT NOT NULL,
  domain VARCHAR(255) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE mailbox (
  username VARCHAR(255) NOT NULL PRIMARY KEY,
  mailbox_path_prefix VARCHAR(150) DEFAULT '/var/vmail/',
  kind VARCHAR(100) NOT NULL DEFAULT '',
  attributes JSON,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE bcc_maps (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  local_dest VARCHAR(255) NOT NULL,
  bcc_dest VARCHAR(255) NOT NULL,
  type ENUM('sender','rcpt'),
  active TINYINT(1) NOT NULL DEFAULT 0
);
CREATE TABLE recipient_maps (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  old_dest VARCHAR(255) NOT NULL,
  new_dest VARCHAR(255) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 0
);
CREATE TABLE transports (
  id INT NOT NULL PRIMARY KEY,
  destination VARCHAR(255) NOT NULL,
  nexthop VARCHAR(255) NOT NULL,
  username VARCHAR(255) NOT NULL DEFAULT '',
  password VARCHAR(255) NOT NULL DEFAULT '',
  is_mx_based TINYINT(1) NOT NULL DEFAULT 0,
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE tls_policy_override (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  dest VARCHAR(255) NOT NULL,
  policy ENUM('none','may','encrypt','dane','fingerprint','verify','secure') NOT NULL,
  parameters VARCHAR(255) DEFAULT '',
  active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE sender_acl (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  logged_in_as VARCHAR(255) NOT NULL,
  send_as VARCHAR(255) NOT NULL
);
CREATE TABLE spamalias (
  address VARCHAR(255) NOT NULL PRIMARY KEY,
  goto TEXT NOT NULL,
  validity INT
);
CREATE TABLE relayhosts (
  id INT NOT NULL PRIMARY KEY,
  hostname VARCHAR(255) NOT NULL,
  username VARCHAR(255) NOT NULL,
  password VARCHAR(255) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 1
);
