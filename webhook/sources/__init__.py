"""Version sources: read what a migration tool recorded in a database (edge: drivers live here).

Nothing in the pure core imports this package; `webhook.lookup` hands its results to
`webhook.gate` as plain `Recorded` data. `open_source` is the one place that picks an
implementation: the engine from the URL's scheme, the reader from the configured tool.
"""

from webhook.sources.errors import SourceError
from webhook.sources.source import VersionSource, open_source

__all__ = ["SourceError", "VersionSource", "open_source"]
