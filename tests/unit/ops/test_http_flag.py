"""Yes/no parameters of the HTTP APIs: a typo is refused, never read as "no"."""

from __future__ import annotations

import pytest

from crmkit.http import ApiError, flag


@pytest.mark.parametrize("text", ["1", "true", "True", " yes ", "on"])
def test_yes(text):
    assert flag(text, "dry_run") is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off", ""])
def test_no(text):
    assert flag(text, "dry_run") is False


def test_absent_takes_the_default():
    assert flag(None, "dry_run") is False and flag(None, "dry_run", default=True) is True


@pytest.mark.parametrize("text", ["ture", "maybe", "2", "да"])
def test_anything_else_is_refused_with_the_parameter_named(text):
    with pytest.raises(ApiError) as caught:
        flag(text, "dry_run")
    assert caught.value.status == 400 and "dry_run" in caught.value.message
