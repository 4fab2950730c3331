"""The real tools' tests share the gate tests' engines: a fresh database per test on the
session's PostgreSQL and MariaDB, and a SQLite file."""

from tests.component.gate.conftest import scratch

__all__ = ["scratch"]
