"""Where a configured database lives: resolve its URL and split it for the driver.

The URL comes from the webhook's own configuration (inline, an environment variable or
a mounted Secret file), never from a Deployment. It carries a password, so nothing here
puts the URL in an error: errors name the config key instead, and `Target.redact`
scrubs the password from any driver message before it is shown or logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from webhook.config import ConfigError, DatabaseConfig, engine_of
from webhook.tools.base import Dialect

MYSQL_OPTIONS = ("ssl", "ssl-ca", "unix_socket")


@dataclass(frozen=True)
class Target:
    """A parsed database URL. `password` is kept only to scrub it from messages."""

    engine: Dialect
    url: str = field(repr=False)
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    path: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def redact(self, text: str) -> str:
        """`text` with every spelling of the password replaced by `***`."""
        if self.password:
            for secret in {self.password, quote(self.password, safe=""), quote(self.password)}:
                text = text.replace(secret, "***")
        return text


def resolve(db: DatabaseConfig, environ: Mapping[str, str] = os.environ) -> Target:
    """Read the URL from wherever the config says and parse it; ConfigError names the key."""
    where = f"databases.{db.name}.{db.url_kind}"
    if db.url_kind == "url":
        url = db.url_value
    elif db.url_kind == "url_env":
        url = environ.get(db.url_value, "").strip()
        if not url:
            raise ConfigError(f"{where}: environment variable {db.url_value} is not set")
    else:
        try:
            url = Path(db.url_value).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {db.url_value}: {exc.strerror}") from None
    return parse(url, where)


def parse(url: str, where: str) -> Target:
    engine = engine_of(url, where)
    if engine == "sqlite":
        # sqlite:///var/lib/app.db names /var/lib/app.db (an empty host, then the path);
        # SQLAlchemy's sqlite:////var/lib/app.db means the same file.
        path = url.partition("://")[2].partition("?")[0]
        if not path.startswith("/") or not path.strip("/"):
            raise ConfigError(f"{where}: a SQLite URL is sqlite:///absolute/path")
        return Target("sqlite", url, path="/" + unquote(path).lstrip("/"))
    authority = url.partition("://")[2].partition("/")[0].partition("?")[0]
    if authority.count("@") > 1:
        # The host would be read from what follows the last @, part of the password.
        raise ConfigError(
            f"{where}: more than one @ before the host; percent-encode @ in the user name "
            "or password as %40 (and : as %3A, / as %2F)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: not a valid URL (check the host and port)") from None
    password = unquote(parts.password) if parts.password is not None else None
    options = dict(parse_qsl(parts.query))
    if engine == "mysql":
        unknown = sorted(set(options) - set(MYSQL_OPTIONS))
        if unknown:
            raise ConfigError(
                f"{where}: mysql URL option {unknown[0]!r} is not supported; "
                f"supported: {', '.join(MYSQL_OPTIONS)}"
            )
    return Target(
        engine,
        url,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username is not None else None,
        password=password,
        database=unquote(parts.path.lstrip("/")) or None,
        options=options,
    )
