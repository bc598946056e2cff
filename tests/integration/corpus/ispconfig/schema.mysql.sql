-- Written for these tests: the columns of ISPConfig's dbispconfig tables that its published
-- queries read, with ISPConfig's enum('n','y') flags. The database's default collation
-- ignores case. ISPConfig publishes its Postfix maps for MySQL/MariaDB only.
CREATE TABLE mail_domain (
  domain_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL DEFAULT 0,
  domain VARCHAR(255) NOT NULL DEFAULT '',
  relay_host VARCHAR(255) NOT NULL DEFAULT '',
  relay_user VARCHAR(255) NOT NULL DEFAULT '',
  relay_pass VARCHAR(255) NOT NULL DEFAULT '',
  active ENUM('n','y') NOT NULL DEFAULT 'n'
);
CREATE TABLE mail_user (
  mailuser_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL DEFAULT 0,
  email VARCHAR(255) NOT NULL DEFAULT '',
  login VARCHAR(255) NOT NULL DEFAULT '',
  cc TEXT,
  sender_cc VARCHAR(255) NOT NULL DEFAULT '',
  postfix ENUM('n','y') NOT NULL DEFAULT 'y',
  disabledeliver ENUM('n','y') NOT NULL DEFAULT 'n',
  disablesmtp ENUM('n','y') NOT NULL DEFAULT 'n',
  greylisting ENUM('n','y') NOT NULL DEFAULT 'n'
);
CREATE TABLE mail_forwarding (
  forwarding_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL DEFAULT 0,
  source VARCHAR(255) NOT NULL DEFAULT '',
  destination TEXT,
  type ENUM('alias','aliasdomain','forward','catchall') NOT NULL DEFAULT 'alias',
  active ENUM('n','y') NOT NULL DEFAULT 'n',
  allow_send_as ENUM('n','y') NOT NULL DEFAULT 'n',
  greylisting ENUM('n','y') NOT NULL DEFAULT 'n'
);
CREATE TABLE mail_transport (
  transport_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL DEFAULT 0,
  domain VARCHAR(255) NOT NULL DEFAULT '',
  transport VARCHAR(255) NOT NULL DEFAULT '',
  active ENUM('n','y') NOT NULL DEFAULT 'n'
);
CREATE TABLE mail_relay_domain (
  relay_domain_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL DEFAULT 0,
  domain VARCHAR(255) NULL,
  active ENUM('n','y') NOT NULL DEFAULT 'n'
);
CREATE TABLE mail_relay_recipient (
  relay_recipient_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL DEFAULT 0,
  source VARCHAR(255) NULL,
  access VARCHAR(255) NOT NULL DEFAULT '',
  active ENUM('n','y') NOT NULL DEFAULT 'n'
);
CREATE TABLE mail_access (
  access_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL DEFAULT 0,
  source VARCHAR(255) NOT NULL DEFAULT '',
  access VARCHAR(255) NOT NULL DEFAULT '',
  type ENUM('recipient','sender','client') NOT NULL DEFAULT 'recipient',
  active ENUM('n','y') NOT NULL DEFAULT 'y'
);
