"""`command`: inject-only, for any tool; the Deployment gives the command."""

from __future__ import annotations

from webhook.tools.base import Tool

TOOL = Tool(name="command", command=None, image=None, locks=True, gate=None)
