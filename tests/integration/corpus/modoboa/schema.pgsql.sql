-- Written for these tests: the columns of Modoboa's tables that its published queries read,
-- typed as Django creates them on PostgreSQL (text compares exactly).
CREATE TABLE admin_domain (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(100) NOT NULL UNIQUE,
  type VARCHAR(20) NOT NULL,
  enabled BOOLEAN NOT NULL
);
CREATE TABLE admin_domainalias (
  id SERIAL PRIMARY KEY,
  name VARCHAR(100) NOT NULL UNIQUE,
  target_id INT NOT NULL,
  enabled BOOLEAN NOT NULL
);
CREATE TABLE admin_mailbox (
  id INT NOT NULL PRIMARY KEY,
  address VARCHAR(252) NOT NULL,
  domain_id INT NOT NULL
);
CREATE TABLE admin_mailboxoperation (
  id SERIAL PRIMARY KEY,
  mailbox_id INT NULL
);
CREATE TABLE core_user (
  id SERIAL PRIMARY KEY,
  email VARCHAR(254) NOT NULL,
  is_active BOOLEAN NOT NULL
);
CREATE TABLE admin_alias (
  id INT NOT NULL PRIMARY KEY,
  address VARCHAR(254) NOT NULL,
  domain_id INT NULL,
  enabled BOOLEAN NOT NULL,
  expire_at TIMESTAMP WITH TIME ZONE NULL
);
CREATE TABLE modoboa_admin_aliasrecipient (
  id SERIAL PRIMARY KEY,
  address VARCHAR(254) NOT NULL,
  alias_id INT NOT NULL,
  r_mailbox_id INT NULL
);
CREATE TABLE admin_senderaddress (
  id SERIAL PRIMARY KEY,
  address VARCHAR(254) NOT NULL,
  mailbox_id INT NOT NULL
);
