"""Storage prefixes: what they admit and what they never do."""

from __future__ import annotations

import pytest

from service.security.errors import InvalidPrefix
from service.security.prefixes import StoragePrefix


@pytest.mark.parametrize(
    ("prefix", "uri"),
    [
        ("s3://data/team-a/", "s3://data/team-a/train/"),
        ("s3://data/team-a/", "s3://data/team-a/"),
        ("s3://data/team-a", "s3://data/team-a/x.keras"),  # a prefix always names a folder
        ("s3://data/", "s3://data/anything/at/all"),
        ("s3://data", "s3://data/anything"),
        ("file:///srv/team-a/", "file:///srv/team-a/train/"),
        ("file:///srv//team-a/", "file:///srv/team-a//train/"),  # the file system ignores '//'
    ],
)
def test_admits_what_lies_inside(prefix: str, uri: str) -> None:
    assert StoragePrefix.parse(prefix).admits(uri)


@pytest.mark.parametrize(
    ("prefix", "uri"),
    [
        ("s3://data/team-a/", "s3://data/team-ab/train/"),  # a sibling sharing the name's start
        ("s3://data/team-a", "s3://data/team-ab/train/"),
        ("s3://data/team-a/", "s3://data/team-a"),  # the object named like the folder
        ("s3://data/team-a/", "s3://data-team-a/x"),
        ("s3://data/team-a/", "s3://other/team-a/x"),  # same key, other bucket
        ("s3://data/team-a/", "s3://data/team-a/../team-b/x"),
        ("s3://data/team-a/", "s3://data/team-a/./x"),
        ("s3://data/team-a/", "s3://data/team-a\\..\\team-b/x"),
        ("s3://data/team-a/", "file:///data/team-a/x"),  # another scheme
        ("file:///srv/team-a/", "file:///srv/team-a/../team-b/"),
        ("file:///srv/team-a/", "file:///srv/team-ab/"),
        ("s3://data/team-a/", "http://data/team-a/x"),
        ("s3://data/team-a/", "s3://data/team-a/x?versionId=1"),
        ("s3://data/Team-A/", "s3://data/team-a/x"),  # keys are case-sensitive
    ],
)
def test_never_admits_what_lies_outside(prefix: str, uri: str) -> None:
    assert not StoragePrefix.parse(prefix).admits(uri)


@pytest.mark.parametrize(
    "text",
    ["s3://data/team-a/../", "s3://data/./x/", "https://data/x/", "s3:///x/", "s3://d/a\\b/"],
)
def test_unsafe_prefixes_are_refused(text: str) -> None:
    with pytest.raises(InvalidPrefix):
        StoragePrefix.parse(text)


def test_prefix_prints_as_a_folder() -> None:
    assert str(StoragePrefix.parse("s3://data/team-a")) == "s3://data/team-a/"
    assert str(StoragePrefix.parse("file:///srv//a")) == "file:///srv/a/"
