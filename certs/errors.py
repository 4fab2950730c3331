"""The certificate rounds' error, apart from `certs.bootstrap`: catching it must not
import the Kubernetes client (tens of MiB and a third of a second at start)."""

from __future__ import annotations


class BootstrapError(RuntimeError):
    """The API server refused or could not be reached; str() is a one-line reason."""
