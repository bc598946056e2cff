# The Markdown uses en dashes for ranges (1 to 65535, %1 to %9), as the other pages do.
# ruff: noqa: RUF001
"""The words of the configuration reference: what each option and section means.

docs/configuration.md and sockmapd.toml(5) are rendered from these texts and the
config models by sockmapd.config.reference; a new option needs its description here
(or as ``Field(description=...)`` on its model field).
"""

from __future__ import annotations

from sockmapd.config.legacy import LEGACY_ALLOW

REGENERATE_COMMAND = "sockmapd config reference > docs/configuration.md"

# What each option means, keyed by "section.option". Field(description=...) on a
# model field takes precedence, so an option documented there needs no entry here.
DESCRIPTIONS: dict[str, str] = {
    "server.listen": (
        "Addresses to listen on: `tcp://HOST:PORT`, `tcp://[IPV6]:PORT`, "
        "`unix:///absolute/path`. All are served at once. A stale unix socket file is "
        "replaced; one that a live server answers is not, and the socket file is removed "
        "on exit. When the file names no listener, `-p PORT` on the command line picks "
        "the port; a port in the file always wins over `-p`, as it did in the Go daemon."
    ),
    "server.allow": (
        "Networks whose clients may connect over TCP: IPv4 or IPv6 CIDR networks "
        "(`192.0.2.0/24`, `2001:db8::/32`) or single addresses (`192.0.2.1`, `::1`, stored "
        "as `192.0.2.1/32`, `::1/128`). A network with host bits set, such as "
        "`192.0.2.1/24`, is an error (write `192.0.2.0/24`). A client from anywhere else is "
        "closed without a reply and logged once per address per minute. `[]` allows no TCP "
        "client at all: only clients of a `unix://` listener can connect. Unix socket "
        "clients are never checked against `allow`; the socket file's permissions govern "
        "them (see `unix_mode`). The default is loopback only."
    ),
    "server.max_connections": (
        "Most client connections served at once. Past it, new connections wait in the "
        "kernel's listen backlog until one closes; this is logged once per burst."
    ),
    "server.max_request_bytes": (
        "Largest request payload (the same default as Postfix 3.12's "
        "`socketmap_max_query_size`). A longer length header is answered `PERM request "
        "too large` and the connection is closed without reading the payload."
    ),
    "server.max_reply_bytes": (
        "Largest reply payload (Postfix's own default limit). A longer answer is replaced "
        "by `TEMP reply too large` and logged."
    ),
    "server.idle_timeout": (
        "A connection with no request in progress is closed after this long. Postfix "
        "closes idle connections after 10 s itself."
    ),
    "server.request_timeout": (
        "Time allowed from a request's first byte to its reply. A lookup that takes longer "
        "is answered `TIMEOUT`; a request that arrives slower than this is cut. Must be "
        "below Postfix's fixed 100 s."
    ),
    "server.shutdown_grace": (
        "On SIGTERM sockmapd stops accepting and closes idle connections; requests in "
        "flight get this long to be answered, then the rest are cut. `0` cuts them at once."
    ),
    "server.unix_mode": (
        'Permissions of the `unix://` socket files, in octal: `"0660"` or `"660"` (written '
        'back as `"0660"`; at most `"0777"`). Quote it: an unquoted `660` is a decimal '
        "number in TOML and is refused. Applied atomically at bind, so the socket is never "
        "open to everyone. With systemd socket activation, the socket unit's `SocketMode=` "
        "applies instead. Needs a `unix://` address in `listen`."
    ),
    "server.unix_owner": (
        "User name or numeric id owning the `unix://` socket files, applied atomically at "
        "bind. It must exist when the daemon starts. Needs a `unix://` address in `listen`."
    ),
    "server.unix_group": (
        "Group name or numeric id of the `unix://` socket files, applied atomically at "
        'bind; for example Postfix\'s group with `unix_mode = "0660"`. It must exist when '
        "the daemon starts. Needs a `unix://` address in `listen`."
    ),
    "server.run_as_user": (
        "User to switch to after the listeners are bound and the log file is opened."
    ),
    "server.run_as_group": "Group to switch to.",
    "server.allow_root": (
        "When `false`, the daemon refuses to keep running as root after start-up: started "
        "as root, it must switch to `run_as_user`. Set `true` only if it really has to run "
        "as root."
    ),
    "server.workers": (
        "Worker processes that serve the listeners. `1` is one process. With more, a "
        "supervising process binds the listeners once and forks this many workers that "
        "share them; it restarts a worker that dies and passes signals on. Each worker "
        "has its own database pools and answer cache, so a database may see `workers x "
        "(pool_size + max_overflow)` connections. With `metrics.listen`, one more "
        "process serves the metrics of all workers, merged. A reload does not change it."
    ),
    "log.level": (
        "At `info`, one line per request: client, map, key, result and duration in ms. The "
        "key `KEEPALIVE` (health probes) is answered but never logged."
    ),
    "log.file": (
        'Log file; setting it alone selects `target = "file"` (the legacy `logfile`). '
        "It is reopened under its name when it has been moved away: at the next line "
        "written, at once on `SIGUSR1` (which reads nothing else) and on every reload "
        "(`SIGHUP`); rotate without copytruncate."
    ),
    "log.format": (
        "`text`: one `key=value` line per request, close to Postfix's style; `json`: one "
        "JSON object per line (`ts`, `level`, `logger`, `msg`, and for requests `client`, "
        "`map`, `key`, `result`, `ms`)."
    ),
    "log.target": (
        "Where the log goes: `stderr`, `file` (needs `file`) or `syslog` "
        "(`syslog_facility`, `syslog_address`)."
    ),
    "log.syslog_facility": 'Syslog facility of every message when `target = "syslog"`.',
    "log.syslog_address": (
        "Syslog socket: an absolute unix socket path, or `HOST:PORT` for UDP. A unix "
        "socket that nobody answers on stops the start."
    ),
    "log.log_keys": (
        "`false` writes `h:` and 12 hex digits of a salted HMAC-SHA256 in place of every "
        "key, for sites that must not log addresses. The same key gives the same hash "
        "while the salt stays the same."
    ),
    "log.key_salt_file": (
        "File of 16 to 65536 secret bytes used as the hash salt with `log_keys = false`, "
        "so hashes stay comparable across restarts. Without it the salt is random for "
        "each process (kept across reloads)."
    ),
    "metrics.listen": (
        "Address of the Prometheus metrics and health listener (`GET /metrics`, "
        "`GET /healthz`), e.g. `tcp://127.0.0.1:9224` or `unix:///run/sockmapd/metrics.sock`. "
        "Off when unset. It has no access list: bind it to loopback or a management "
        "network. With several `server.workers`, one address serves them all, merged. A "
        "change takes effect at restart, not on reload."
    ),
    "databases.url": (
        "`sqlite+aiosqlite:///file.db`, `mysql+asyncmy://user@host:3306/name`, "
        "`postgresql+asyncpg://user@host:5432/name`. The plain forms `sqlite://`, "
        "`mysql://`, `mariadb://`, `postgresql://` and `postgres://` are accepted and use "
        "the same drivers. A MySQL or PostgreSQL url must name its host, or a Unix socket "
        "with `?unix_socket=/path` (MySQL) or `?host=/socket/dir` (PostgreSQL); no other "
        "url parameter is accepted (use the `tls…` options). Without a port the driver "
        "default is used (MySQL 3306, PostgreSQL 5432). Give either `url` or `driver`."
    ),
    "databases.driver": "Structured form, instead of `url`.",
    "databases.hosts": (
        "Structured form: `host`, `host:port`, `[v6addr]:port` or "
        "`unix:/absolute/path/to/socket` (a Unix socket, such as "
        "`unix:/run/mysqld/mysqld.sock` or `unix:/run/postgresql/.s.PGSQL.5432`). The hosts "
        "of one database are one cluster or replica set, tried one by one (see failover "
        "below). Required for `mysql` and `postgresql`, not used by `sqlite`."
    ),
    "databases.port": ("Port for hosts that name none (default MySQL 3306, PostgreSQL 5432)."),
    "databases.name": "Database (schema) name; for `sqlite`, the file path.",
    "databases.user": "User name.",
    "databases.password": (
        "Password, written in the configuration itself (with `url`: in the url, "
        "`user:password@host`). `sockmapd config convert` masks it unless "
        "`--show-secrets` is given."
    ),
    "databases.password_file": (
        "File holding the password; a trailing line break is removed. It must exist and be "
        "readable when the configuration is loaded, and it is read again for every new "
        "connection, so a changed password needs no reload. Allowed with `url` too (the url "
        "then holds no password). Written as it is by `config convert`."
    ),
    "databases.password_env": (
        "Name of an environment variable holding the password (for example one set by "
        "systemd's `Environment=` or a container runtime). It must be set when the "
        "configuration is loaded, else `environment variable NAME is not set`. Allowed with "
        "`url` too (the url then holds no password)."
    ),
    "databases.init_sql": (
        "SQLite only: when the database file does not exist, create it by running this SQL "
        "script (used by `examples/quickstart.toml`). The file is built under a temporary "
        "name and renamed, so a failed script leaves nothing behind."
    ),
    "databases.tls": (
        "MySQL and PostgreSQL: connect with TLS (the drivers' `ssl` argument: an SSL "
        "context for asyncmy and asyncpg)."
    ),
    "databases.tls_ca_file": (
        "CA certificates (PEM) that the server certificate must chain to. Needs `tls = true`."
    ),
    "databases.tls_cert_file": (
        "Client certificate (PEM), for servers that require one. Needs `tls = true` and "
        "`tls_key_file`."
    ),
    "databases.tls_key_file": (
        "Private key of `tls_cert_file`. Needs `tls = true` and `tls_cert_file`."
    ),
    "databases.tls_verify": (
        "Verify the server certificate and that it names the host connected to. `false` "
        "still encrypts but accepts any server: use it only for testing. Needs `tls = true`."
    ),
    "databases.connect_timeout": (
        "Time allowed to connect to one host, TLS and login included, before the next host "
        "is tried (asyncmy `connect_timeout`, asyncpg `timeout`)."
    ),
    "databases.query_timeout": (
        "Time allowed for one lookup: its wait for a free pooled connection (then `TEMP`), "
        "its queries (every key of a `search`, and the retry after a lost connection) share "
        "it, and a query still running when it is over answers `TIMEOUT`. So an overloaded "
        "database answers within `query_timeout`, not later; a lookup that cannot be "
        "served in time from its place in the queue for a connection is answered `TEMP` "
        "at once. "
        "Opening a connection is not counted (`connect_timeout` bounds it, per host). It "
        "also bounds each statement of `--check-config --connect`."
    ),
    "databases.pool_size": (
        "Connections kept open for lookups (for SQLite, one driver thread each). Lookups "
        "that find every connection busy wait in arrival order, up to `query_timeout` "
        "(then `TEMP`)."
    ),
    "databases.max_overflow": (
        "Extra connections opened when all `pool_size` connections are busy; one is "
        "closed when it comes back and no lookup waits for it. A load that rises and "
        "falls around `pool_size` then opens and closes connections: prefer a larger "
        "`pool_size`."
    ),
    "databases.pool_recycle": (
        "A pooled connection older than this is closed instead of reused, before the "
        "server or a firewall drops it for idleness (MySQL's `wait_timeout`)."
    ),
    "databases.retry_interval": (
        "A host that failed is skipped for this long, unless no other host is left."
    ),
    "databases.host_order": (
        "Order in which `hosts` are tried: as listed (like the Go daemon) or shuffled "
        "(like Postfix's SQL tables)."
    ),
    "databases.target_session_attrs": (
        "PostgreSQL only: accept a host only in this role, as libpq's option of that name: "
        "`primary` and `standby` by `pg_is_in_recovery()`; `prefer-standby` uses a primary "
        "when no standby is reachable. `read-write` and `read-only` count a standby, and "
        "a server whose own `default_transaction_read_only` is `on` (for example set on "
        "the database), as read-only. Every session is read-only whatever the mode; with "
        "`read-write` and `read-only` sockmapd makes it so after the role check, which "
        "costs one more statement per new connection."
    ),
    "databases.pgbouncer": (
        "PostgreSQL only: the database is reached through PgBouncer in transaction or "
        "statement pooling mode (session pooling needs nothing). sockmapd then sends no "
        "startup setting but `application_name` and no `SET`, because a session setting "
        "stays on one server connection, and turns asyncpg's statement cache off, so "
        "each lookup uses the unnamed statement within its own transaction: two round "
        "trips instead of one. The read-only session setting is gone with it: the guards "
        "are the query check at load and the role's privileges (see "
        "[security.md](security.md#behind-pgbouncer)). Cannot be combined with "
        "`target_session_attrs`. Without it, a failure that shows PgBouncer in front of "
        "the database logs once which option to set."
    ),
    "maps.database": "A name defined under `[databases]`.",
    "maps.table": ("Table form: table or view, optionally `schema.table`. A plain SQL identifier."),
    "maps.key": (
        "Table form (required with `table`): column compared with the lookup key. A plain "
        "SQL identifier."
    ),
    "maps.value": (
        "Table form only: column whose content is the answer. Without it, a found key "
        "answers `OK <key as stored>`."
    ),
    "maps.reason": (
        "Table form only: column appended to the value after one space (`OK REJECT spam "
        "source`). NULL or empty adds nothing. Not together with `result_format`."
    ),
    "maps.query": (
        "Query form: one `SELECT` (or `WITH … SELECT`) with Postfix `%` expansions: `%s` "
        "the key, `%u` its local part, `%d` its domain, `%1`–`%9` domain labels from the "
        "right, `%S` `%U` `%D` the same, `%%` a literal `%`. Write `'%s'` in quotes as in "
        "Postfix; every expansion becomes a bound parameter, never text in the SQL. A string "
        "literal that holds expansions (`'@%d'`, `'%u@%d'`, `LIKE '%%%s'`) is one bound "
        "parameter: its text with the expansions filled in. The query is read as its "
        "database reads it: backslash escapes in MySQL strings and PostgreSQL `E'…'` "
        "strings, none in PostgreSQL's standard strings and in SQLite. It is checked when "
        "the configuration is loaded: a query that could write, holds several statements or "
        "comments, or uses no expansion is refused with the reason."
    ),
    "maps.result_format": (
        "Template applied to every result value: `%s` the value, `%u` its local part, `%d` "
        "its domain, `%S` `%U` `%D` `%1`–`%9` parts of the key (a key that lacks one is not "
        "looked up: `NOTFOUND`), `%%` a literal `%` (for example `smtp:[%s]`). A value that "
        "lacks a part used (`%d` of a value without `@`) is skipped. Not together with "
        "`reason`."
    ),
    "maps.expansion_limit": (
        "Most values one answer may have (`0`: no limit); more values answer `TEMP`, as "
        "Postfix does. `1` makes sure a lookup never returns a list."
    ),
    "maps.domain": (
        "Only keys `user@domain` with a non-empty `user` and a listed domain are looked up; "
        "any other key (`user`, `@domain`, a domain not listed) answers `NOTFOUND` without a "
        "query. `[]`: no filter. Entries are domain names (stored in lower case; an "
        "internationalised name matches only in the form listed, as in Postfix: list the "
        "`xn--` form and add `idna_to_ascii` to `key_transform` to match keys in either "
        "form) or `file:/path/to/file`, a file of domain names (one or more per line, "
        "separated by spaces or commas; lines starting with `#` and blank lines are "
        "ignored). Files are read when the configuration is loaded and again at each "
        "reload; a relative path is relative to the config file. The domain of the key must "
        "be listed exactly: subdomains do not match, as in Postfix. The filter applies to "
        "the key asked for (after `key_transform`); the keys a `search` derives from an "
        "eligible key, such as `@domain`, are then looked up."
    ),
    "maps.key_transform": (
        "Changes applied to the key, in the order given, before anything else (domain "
        "filter, search, query): lower-case the whole key or only its domain, remove the "
        "address extension (`user+ext@example.com` → `user@example.com`; with Postfix's "
        "exceptions: postmaster, MAILER-DAEMON, double-bounce, and with `-` as a delimiter "
        "owner-* and *-request, are never split), convert an internationalised domain to "
        "its `xn--` form, remove surrounding whitespace. Each may appear once. Postfix "
        'folds the keys of its SQL tables to lower case: use `["lowercase"]` for the same.'
    ),
    "maps.recipient_delimiter": (
        "Characters that separate an extension from the local part, for `strip_extension` "
        "and `%b`; as in Postfix, every character is a delimiter and the extension starts "
        "at the first one found. It must not be empty nor contain `@`, whitespace or "
        "control characters."
    ),
    "maps.search": (
        "Keys to look up, at most 10, tried in order; the first that is found answers. `[]`: "
        "the key itself. Each is a template over the (transformed) key: `%s` the key, `%u` "
        "its local part, `%d` its domain, `%b` the local part without its extension, "
        '`%1`–`%9` domain labels, `%%` a literal `%`. For example `["%s", "%b@%d", '
        '"@%d"]` tries `user+ext@example.com`, `user@example.com`, then `@example.com`, '
        "like virtual(5). A key that lacks a part a template uses skips that entry. A "
        "`TEMP` or `TIMEOUT` stops the search: a wider key is never answered in place of "
        "one that could not be looked up."
    ),
    "maps.result_columns": (
        "Which columns of each result row are values: all of them (Postfix's mysql and "
        "pgsql tables), or only the first (Postfix's sqlite tables; `import-postfix` sets "
        "it for those)."
    ),
    "maps.cache_ttl": (
        "How long a found answer (`OK`) is reused without asking the database; `0`: off. "
        "A changed or removed row is seen only after this long. See "
        "[maps.md](maps.md#caching)."
    ),
    "maps.negative_cache_ttl": (
        "How long a `NOTFOUND` is reused; `0`: off. **Risk:** a recipient added to the "
        'database is still "not found" for this long, and mail to it bounces; keep it '
        "short (a few seconds) or off."
    ),
    "maps.cache_size": (
        "Most cached answers of this map; the least recently used is dropped first."
    ),
    "maps.stale_ttl": (
        "Stale-if-error (`0`: off): when the database fails (the lookup would answer `TEMP` "
        "or `TIMEOUT` because the database could not be reached, failed or timed out; not "
        "for a result over `expansion_limit`), a cached found answer stored less than this "
        "long ago is served instead. Needs `cache_ttl` > 0 and must be at least "
        "`cache_ttl`. **Risk:** during an outage, an address removed from the database up "
        "to `stale_ttl` seconds earlier is still accepted."
    ),
}

# What an unset option (default None) means, where "unset" alone would not say.
UNSET_MEANS: dict[str, str] = {
    "server.unix_mode": "the umask",
    "server.unix_owner": "the user that binds it",
    "server.unix_group": "that user's group",
    "server.run_as_group": "the user's group",
    "log.file": "none",
    "metrics.listen": "off",
    "databases.port": "driver default",
    "databases.tls_ca_file": "system CAs",
    "databases.target_session_attrs": "any",
    "maps.result_format": "`%s`: each value as it is",
}

# Text before the first section.
INTRO = f"""\
# Configuration reference

<!-- Generated from the configuration models by `{REGENERATE_COMMAND}`.
     Do not edit: change sockmapd/config/descriptions.py and regenerate. -->

This page is generated from the configuration models, so it lists every option the
daemon accepts. Examples of map queries, what each answer means and how caching behaves
are in [maps.md](maps.md); moving from the Go sockmapd or from Postfix's SQL tables is in
[migrating.md](migrating.md).

sockmapd reads one file, TOML or the JSON of the older Go sockmapd. The format is detected
from the content (a file whose first non-blank character is `{{` is legacy JSON), not from
the name. Default path: `/etc/sockmapd/sockmapd.toml`; choose another with `-c FILE`.

Every problem is reported with the file, the path of the field and the reason, one per
line, for example `sockmapd.toml: maps.recipient.table: must be a plain SQL identifier`.
Unknown keys are errors, so a misspelt option never goes unnoticed; the nearest known
key is named when one is close: `maps.recipient.valeu: unknown key (did you mean
"value"?)`. A TOML syntax error names its line and column, also when the file ends too
early: `sockmapd.toml: line 14 column 1 (end of file): Unclosed array`.
`sockmapd --check-config -c FILE` checks a file without starting anything; with
`--connect` it also connects to every database, checks that every map's table and
columns exist, and runs the `[[tests]]` ([testing-maps.md](testing-maps.md)).

Relative paths (a SQLite file, `init_sql`, `log.file`) are relative to the directory of
the config file. In a SQLite URL, `sqlite+aiosqlite:///name.db` is relative and
`sqlite+aiosqlite:////var/lib/sockmapd/mail.db` (four slashes) is absolute.

Durations are in seconds and may have a fraction (`0.5`). A default shown as "unset"
means the option is absent; leave it out rather than write an empty value.
"""

# Text right after a section's heading, keyed by section (NAME placeholders kept).
SECTION_LEADS: dict[str, str] = {
    "databases.NAME": (
        "A database is given either as a SQLAlchemy `url` or in structured form (`driver`, "
        "`hosts`, `port`, `name`, `user`). `NAME` is what maps refer to: 1 to 64 letters, "
        "digits, `_` or `-`."
    ),
    "maps.NAME": (
        "`NAME` is the map name the MTA sends (`socketmap:inet:127.0.0.1:2224:NAME`). It "
        "may not contain spaces, control characters or `:`.\n\n"
        "A map is given in one of two forms: a **table** with `table` and `key` (and "
        "optionally `value` and `reason`), or a **query**, a Postfix query template as in "
        "mysql_table(5), pgsql_table(5) and sqlite_table(5). Exactly one form is required: "
        "a map with both `query` and `table`, or with neither, is an error."
    ),
    "tests": (
        "Map tests: each `[[tests]]` table looks `key` up in `map` and expects the reply "
        "`expect`. `sockmapd --check-config --connect` runs them against the databases and "
        "fails when one fails, so a reload through the systemd units is refused; "
        "`sockmapd test` runs them too, along with test files of the same form. See "
        "[testing-maps.md](testing-maps.md)."
    ),
}

# Text after a section's table, keyed by section (NAME placeholders kept).
SECTION_NOTES: dict[str, str] = {
    "server": """\
`unix_mode`, `unix_owner` and `unix_group` apply only to unix sockets: giving one without
a `unix://` address in `listen` is an error at that option, such as `server.unix_mode`.

```toml
[server]
listen = ["tcp://[::]:2224", "unix:///run/sockmapd/sockmapd.sock"]
allow = ["127.0.0.0/8", "::1", "192.0.2.0/24", "2001:db8::/32"]
unix_mode = "0660"
unix_group = "postfix"
run_as_user = "sockmapd"
```""",
    "databases.NAME": """\
Relative paths in `password_file`, `tls_ca_file`, `tls_cert_file`, `tls_key_file` and
`init_sql` are relative to the directory of the config file, and every one of these
files must exist when the configuration is loaded: a missing or unreadable file is
reported at its option, such as `databases.mail.password_file`. At most one of
`password`, `password_file` and `password_env` (or a password in the url) may be given.

`password_file` and `password_env` are the recommended ways to give a password: the
configuration file then holds no secret and can be readable by more than the daemon,
kept in version control and shown with `config convert` as it is.

Failover: the hosts are tried one by one, each with its own `connect_timeout`, in
config order (`host_order = "in_order"`, like the Go daemon) or shuffled
(`host_order = "random"`, like Postfix's SQL tables). A host that failed is skipped for
`retry_interval` unless no other host is left. The connection, timeout, pool and TLS
options apply to the `url` form too; there the url names the one host.

```toml
[databases.postfix]
driver = "mysql"
hosts = ["db1.example.org", "db2.example.org:3307"]
name = "postfix"
user = "postmap"
password_file = "/etc/sockmapd/postfix.password"
tls = true
tls_ca_file = "/etc/ssl/certs/db-ca.pem"
connect_timeout = 2
```

Lookups run in autocommit mode: a lookup is one `SELECT` and needs no transaction.
Every connection is read-only (PostgreSQL `default_transaction_read_only = on`, MySQL
`SET SESSION TRANSACTION READ ONLY`, SQLite `PRAGMA query_only`), so even a view or
function that writes cannot write through sockmapd; such a lookup answers `TEMP`.
The exception is a database with `pgbouncer = true`, where no session setting
survives: there the role's privileges guard the data.
No database connection is opened at start; a database that cannot be reached makes its
maps answer `TEMP` until it can.""",
    "maps.NAME": """\
Identifiers (`table`, `key`, `value`, `reason`) are letters, digits and `_`, up to 64
characters per part; they are always quoted in the SQL. The lookup key is only ever sent
as a bound parameter, in both forms.

```toml
[maps.recipient]
database = "postfix"
table = "mailbox"
key = "username"
value = "maildir"

[maps.virtual_alias]
database = "postfix"
query = "SELECT goto FROM alias WHERE address = '%s' AND active = 1"
domain = ["example.com", "file:/etc/sockmapd/virtual-domains"]
key_transform = ["lowercase"]
search = ["%s", "%b@%d", "@%d"]
```

More examples, every answer a map can give, and caching: [maps.md](maps.md).""",
    "tests": """\
```toml
[[tests]]
map = "recipient"
key = "alice@example.com"
expect = "OK example.com/alice/"

[[tests]]
map = "access"
key = "spammer@example.net"
expect = "OK REJECT *"
note = "a listed spammer is rejected, whatever the reason says"
```""",
}

LEGACY_INTRO = """\
## Legacy JSON (Go sockmapd)

A JSON file of the Go sockmapd loads unchanged. Its keys become these options. Values are
strings, as the Go daemon wrote them: a port may be a decimal string or a number, `host`
one string or a list, and an empty string counts as absent."""

LEGACY_OUTRO = f"""\
A legacy file also sets what the Go daemon did without saying so: every database gets
`driver = "mysql"` and `name` = the `postmaps[].database` that uses it, the listener is
`tcp://0.0.0.0:PORT` (`sysconfig.port`, from 1025 to 65535, else `-p`, else 2224),
`allow = ["{LEGACY_ALLOW}"]` and `allow_root = true`; the daemon warns at start that every
IPv4 client may connect. `sockmapd config convert old.json` prints the equivalent TOML.
See [migrating.md](migrating.md) for what else changed."""
