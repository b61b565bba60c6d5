"""Which Graph answers are throttles, and a throttled mailbox is not called again before its wait is over."""

from __future__ import annotations

from typing import Any

import pytest

from exactly_once.core.errors import ProviderCallError
from exactly_once.flows.graph.client import GraphClient, GraphThrottledError


class _Http:
    worst_attempt_s = 12.0

    def __init__(self, *answers: ProviderCallError) -> None:
        self.answers = list(answers)
        self.calls = 0

    def request(self, *_: Any, **__: Any) -> Any:
        self.calls += 1
        raise self.answers.pop(0)


class _Tokens:
    def token(self) -> str:
        return "t"


def _client(http: _Http) -> GraphClient:
    return GraphClient("https://graph.test/v1.0", _Tokens(), http)  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "retry_after", "wait"), [(429, 9.0, 9.0), (429, None, 30.0), (503, 4.0, 4.0)])
def test_a_throttle_names_its_wait_and_the_next_fetch_of_that_mailbox_makes_no_call(status, retry_after, wait):
    http = _Http(ProviderCallError(status, "slow down", retry_after=retry_after))
    client = _client(http)
    with pytest.raises(GraphThrottledError) as first:
        client.get_message("Box@contoso.test", "m1")
    assert (first.value.wait, first.value.called) == (wait, True)
    with pytest.raises(GraphThrottledError) as second:
        client.get_message("box@contoso.test", "m2")
    assert second.value.called is False and 0 < second.value.wait <= wait
    assert http.calls == 1


def test_a_503_without_retry_after_is_an_outage_not_a_throttle():
    http = _Http(ProviderCallError(503, "down"), ProviderCallError(503, "down"))
    client = _client(http)
    for _ in range(2):
        with pytest.raises(ProviderCallError) as failed:
            client.get_message("box@contoso.test", "m1")
        assert not isinstance(failed.value, GraphThrottledError)
    assert http.calls == 2
