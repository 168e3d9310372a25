"""[web] customer_url: a link template the page fills with the customer's number."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fastagi_spy.config import ConfigError, parse

MINIMAL: dict[str, Any] = {
    "server": {"pin_pepper": "a-long-enough-pepper-0123"},
    "asterisk": [{"name": "pbx1", "ami_username": "fastagi-spy", "ami_secret": "s3cret"}],
}


def with_url(url: object) -> dict[str, Any]:
    raw = copy.deepcopy(MINIMAL)
    raw["web"] = {"customer_url": url}
    return raw


def test_absent_means_no_link() -> None:
    assert parse(copy.deepcopy(MINIMAL)).customer_url == ""


@pytest.mark.parametrize("url", [
    "https://crm.example/c?n={number}",
    "http://10.0.0.9:8080/customers/{number}/view#top",
])
def test_a_template_with_one_number_is_kept(url: str) -> None:
    assert parse(with_url(url)).customer_url == url


@pytest.mark.parametrize("url", [
    "https://crm.example/c",  # nowhere to put the number
    "https://crm.example/c?n={number}&m={number}",
    "javascript:alert(1)//{number}",
    "ftp://crm.example/{number}",
    'https://crm.example/c?n={number}"onmouseover="x',
    "https://crm.example/c?n={number}<script>",
    "https://crm.example/c n={number}",
    "https://crm.example/{name}/{number}",
    "https://crm.example/c\\{number}",
    "https://crm.example/" + "a" * 500 + "{number}",
    42,
])
def test_anything_else_is_refused_naming_the_key(url: object) -> None:
    with pytest.raises(ConfigError, match=r"web\.customer_url"):
        parse(with_url(url))


def test_unknown_keys_in_web_are_refused() -> None:
    raw = with_url("")
    raw["web"]["customer_link"] = "x"
    with pytest.raises(ConfigError, match="customer_link"):
        parse(raw)
