"""The event filter language: parsing, errors, and containerd's matching rules."""

from __future__ import annotations

import pytest

from containerd_py import filters
from containerd_py.errdefs import InvalidArgument


def adaptor(fields: dict[str, str]) -> filters.Adaptor:
    def get(path):
        key = ".".join(path)
        return (fields[key], True) if key in fields else ("", False)

    return get


EXIT = adaptor({"topic": "/tasks/exit", "namespace": "pydocker", "event.container_id": "web"})
START = adaptor({"topic": "/tasks/start", "namespace": "default"})


def matches(*texts: str, obj=EXIT) -> bool:
    return filters.parse(*texts).match(obj)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('topic=="/tasks/exit"', True),
        ("topic==/tasks/exit", True),  # a bare value may start with "/"
        ('topic=="/tasks/start"', False),
        ('topic!="/tasks/start"', True),
        ('topic~="/tasks/.*"', True),
        ("topic~=/tasks/.*", True),  # not a /regex/: the closing "/" does not end it
        ('topic~="^/tasks/e"', True),
        ('topic~="^/containers/"', False),
        ("topic~=/exit/", True),  # /.../-quoted regex "exit"
        ("topic~=|^/tasks|", True),
        ("namespace==pydocker", True),
        ("namespace==default", False),
        ('namespace==pydocker,topic=="/tasks/exit"', True),  # comma = AND
        ('namespace==pydocker,topic=="/tasks/start"', False),
        ("event.container_id==web", True),
        ('"event"."container_id"==web', True),  # quoted field names
        ("event", False),  # presence: the adaptor has no bare "event"
        ("topic", True),
        ("labels.missing!=x", True),  # containerd: an absent field reads as ""
        ("labels.missing==x", False),
        ('labels.missing~=""', True),
        ("  topic == /tasks/exit ,  namespace == pydocker ", True),  # spaces around tokens
    ],
)
def test_single_filter(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_several_filters_are_or() -> None:
    assert matches('topic=="/tasks/start"', "namespace==pydocker")
    assert not matches('topic=="/tasks/start"', "namespace==default")


def test_no_filter_or_an_empty_one_matches_everything() -> None:
    assert filters.parse().match(EXIT)
    assert filters.parse("namespace==nope", "  ").match(EXIT)


def test_quoted_value_escapes() -> None:
    f = filters.parse(r'name=="a\"b\\c\n"')
    assert f.match(adaptor({"name": 'a"b\\c\n'}))


def test_regex_delimiters_keep_regex_escapes() -> None:
    f = filters.parse(r"id~=/^c\d+\/x$/")
    assert f.match(adaptor({"id": "c12/x"}))
    assert not f.match(adaptor({"id": "cx/x"}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topic==", "expected a value at position 7"),
        ("==x", "expected a field name at position 0"),
        ("topic=x", "expected an operator"),
        ('topic=="/tasks', "unterminated quoted string at position 7"),
        ('topic~="("', "bad regular expression"),
        ("topic==a b", "expected ','"),
        ("topic==a,", "expected a field name"),
        (r'topic=="\q"', r"unknown escape \q"),
        ("a.", "expected a field name"),
    ],
)
def test_parse_errors_are_invalid_argument_with_position(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        filters.parse(text)
    assert message in str(err.value)
    assert repr(text) in str(err.value)


def test_selectors_are_parsed_into_fieldpaths() -> None:
    (alt,) = filters.parse('event.labels."io.x/y"~=a').alternatives
    (sel,) = alt
    assert sel.fieldpath == ("event", "labels", "io.x/y")
    assert sel.operator == "~="
    assert sel.value == "a"
