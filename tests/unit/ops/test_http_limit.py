"""Integer parameters of the HTTP APIs take ASCII digits only; anything else is a 400 naming the parameter."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from crmkit.http import ApiError, limit_param


def _request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/leads", "query_string": query.encode(), "headers": []})


@pytest.mark.parametrize("value", ["²", "١٢", "𝟓", "0", "201", "-1", "1e3", " 5", "5 ", "99999999999999999999999"])
def test_anything_but_a_whole_number_in_range_is_refused(value):
    from urllib.parse import quote

    with pytest.raises(ApiError) as caught:
        limit_param(_request(f"limit={quote(value)}"), 50, 200)
    assert caught.value.status == 400 and "limit" in caught.value.message


def test_a_number_in_range_and_the_default():
    assert limit_param(_request("limit=7"), 50, 200) == 7
    assert limit_param(_request(""), 50, 200) == 50
