"""Last in the tier: nothing the webhook said to it shows the database password.

Every server log, response body, metrics page and error output the tier collected
(`harness.TRANSCRIPT`) is searched for the awkward password of the test PostgreSQL, in
every spelling a URL can carry it.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.reliability.harness import TRANSCRIPT, report
from tests.support.servers import PASSWORD

pytestmark = pytest.mark.faults


def test_no_output_of_the_tier_shows_the_password() -> None:
    secrets = {PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)}
    searched = list(TRANSCRIPT.everything())
    leaks = [(where, secret) for where, text in searched for secret in secrets if secret in text]
    report(
        "password search over the tier's output",
        len(searched),
        len(searched),
        len(leaks),
        f"{sum(len(t) for _, t in searched) / 2**20:.1f} MiB in {len(TRANSCRIPT.logs)} server "
        "logs and every answer and metrics page",
    )
    assert leaks == []
