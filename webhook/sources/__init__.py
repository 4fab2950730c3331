"""Version sources: read what a migration tool recorded in a database (edge: drivers live here).

Nothing in the pure core imports this package; `webhook.lookup` hands its results to
`webhook.gate` as plain `Recorded` data. `open_source` makes a configured database's
`VersionSource`. Its `start()` resolves the URL; each connection then picks the engine
from the URL's scheme (`open_engine`) and the queries from the configured tool
(`queries_for`), resolving the URL again after every reset.
"""

from webhook.sources.errors import SourceError
from webhook.sources.source import VersionSource, open_source

__all__ = ["SourceError", "VersionSource", "open_source"]
