"""Content rules, with zot's own cases (pkg/extensions/sync/content_test.go) as the yardstick."""

from __future__ import annotations

import re

import pytest

from syncworker.errors import InvalidNameError
from syncworker.filters import (
    ContentRule,
    ContentRules,
    GoRegex,
    TagRule,
    compile_glob,
    compile_go_regex,
    is_semver,
    special_tag,
    special_tag_subject,
    wants_platform,
)
from syncworker.oci import Digest, Platform

# (pattern, name, matches) — doublestar v4's documented behaviour.
GLOB_CASES = [
    ("**", "", True),
    ("**", "a/b/c", True),
    ("a/**", "a", True),
    ("a/**", "a/b", True),
    ("a/**", "a/b/c", True),
    ("a/**", "ab", False),
    ("a/**/", "a", True),
    ("**/c", "c", True),
    ("**/c", "a/b/c", True),
    ("**/c", "a/b", False),
    ("**/c", "abc", False),
    ("**/c", "a/abc", False),
    ("a/**/b", "a/b", True),
    ("a/**/d", "a/b/c/d", True),
    ("a/*", "a/b", True),
    ("a/*", "a/b/c", False),
    ("a/b**", "a/bc", True),  # `**` inside a segment is `*`
    ("a/b**", "a/bc/d", False),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[!a]x", "bx", True),
    ("[!a]x", "/x", False),
    ("{a,b/c}/x", "b/c/x", True),
    ("{a,b/c}/x", "b/x", False),
    ("lib/{alpine,busy*}", "lib/busybox", True),
    ("a\\*", "a*", True),
    ("a\\*", "ab", False),
    ("repo1/repo", "repo1/repo", True),
    ("repo1/repo", "repo1/repo/sub", False),  # a prefix without wildcards is exact
]


@pytest.mark.parametrize(("pattern", "name", "expected"), GLOB_CASES)
def test_glob(pattern: str, name: str, expected: bool) -> None:
    assert bool(compile_glob(pattern).fullmatch(name)) is expected


@pytest.mark.parametrize("pattern", ["[abc", "{a,b", "a\\", "lib/{x,[y}"])
def test_bad_glob_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        compile_glob(pattern)


def test_bad_glob_refused_when_rules_are_built() -> None:
    with pytest.raises(ValueError, match=r"unclosed '\['"):
        ContentRules([ContentRule("[repo%^&")])


def test_first_matching_rule_wins() -> None:
    first = ContentRule("infra/*", destination="/one")
    second = ContentRule("infra/**", destination="/two")
    rules = ContentRules([first, second])
    assert rules.match("infra/busybox") is first
    assert rules.match("infra/x/busybox") is second
    assert rules.match("other") is None
    assert rules.destination("other") is None
    assert rules.filter_tags("other", ["v1"]) == []


def test_leading_slash_of_prefix_is_ignored() -> None:
    rules = ContentRules([ContentRule("/repo3/**")])
    assert rules.match("repo3/a/b") is not None


def test_no_rules_means_everything_under_its_own_name() -> None:
    rules = ContentRules([])
    assert rules.match("any/thing") is not None
    assert rules.destination("any/thing") == "any/thing"
    assert rules.filter_tags("any/thing", ["latest", "v1"]) == ["latest", "v1"]


# (upstream, rule, local) from zot's TestContentManager, minus its two cases whose local
# name is "/" (not a repository name; see test_destination_must_be_a_repository_name).
DESTINATION_CASES = [
    ("zot-fold/alpine", ContentRule("zot-fold/alpine", None, "/alpine"), "alpine/zot-fold/alpine"),
    ("zot-fold/alpine", ContentRule("zot-fold/alpine", None, "/"), "zot-fold/alpine"),
    ("zot-fold/alpine", ContentRule("zot-fold/alpine", None, "/alpine", True), "alpine"),
    ("zot-fold/alpine", ContentRule("zot-fold/*", None, "/", True), "alpine"),
    ("zot-fold/alpine", ContentRule("zot-fold/**", None, "/", True), "alpine"),
    ("zot-fold/alpine", ContentRule("zot-fold/**", None, "/", False), "zot-fold/alpine"),
    # zot's examples/config-sync.json
    ("repo2/repo", ContentRule("/repo2/repo", None, "/repo", True), "repo"),
    ("a/b/c", ContentRule("a/**", None, "mirror", True), "mirror/b/c"),
    ("a/b/c", ContentRule("a/**", None, None, False), "a/b/c"),
    # stripPrefix cuts the glob's literal directories, whole segments only.
    ("lib/x/y", ContentRule("lib/*/y", None, "m", True), "m/x/y"),
    ("team-a/app", ContentRule("team*/**", None, None, True), "team-a/app"),
]


@pytest.mark.parametrize(("upstream", "rule", "local"), DESTINATION_CASES)
def test_destination(upstream: str, rule: ContentRule, local: str) -> None:
    assert ContentRules([rule]).destination(upstream) == local


@pytest.mark.parametrize(("upstream", "rule", "local"), DESTINATION_CASES)
def test_sources_invert_destination(upstream: str, rule: ContentRule, local: str) -> None:
    assert ContentRules([rule]).sources(local) == [upstream]


def test_sources_follow_the_first_matching_rule() -> None:
    rules = ContentRules(
        [ContentRule("a/**", None, "m", True), ContentRule("m/**", None, None, False)]
    )
    # "a/x" lands in "m/x" by the first rule, and "m/x" upstream by the second: two sources.
    assert rules.sources("m/x") == ["a/x", "m/x"]
    assert ContentRules([ContentRule("a/**")]).sources("b/x") == []
    # "a/b" is refused by the rule that does not match it first
    first = ContentRules([ContentRule("a/b", None, "z"), ContentRule("a/**", None, "z", True)])
    assert first.sources("z/b") == []


def test_destination_must_be_a_repository_name() -> None:
    rules = ContentRules([ContentRule("zot-fold/alpine", None, "/", True)])
    with pytest.raises(InvalidNameError):
        rules.destination("zot-fold/alpine")


# zot's TestGetContentByLocalRepo: which rule maps an upstream name onto a local one.
def _tags(rule: TagRule | None, tags: list[str]) -> list[str]:
    return ContentRules([ContentRule("**", rule)]).filter_tags("alpine", tags)


def _rx(pattern: str) -> GoRegex:
    return compile_go_regex(pattern)


def test_regex_is_a_search_not_a_full_match() -> None:
    # Go's MatchString: "4.*" keeps "v14" too (zot's config-sync.json example).
    assert _tags(TagRule(_rx("4.*")), ["4.1", "v14", "3.0"]) == ["4.1", "v14"]


def test_regex_then_exclude_then_semver() -> None:
    rule = TagRule(_rx(".*"), _rx(".*(x86_64|aarch64|amd64|arm64)$"), semver=True)
    tags = ["v1.0.1", "v2-x86_64", "v3-aarch64", "latest", "1.2.3-rc.1+b5"]
    assert _tags(rule, tags) == ["v1.0.1", "1.2.3-rc.1+b5"]


def test_zot_filter_cases() -> None:
    assert _tags(TagRule(_rx(".*")), ["v1", "v2", "v3"]) == ["v1", "v2", "v3"]
    assert _tags(TagRule(), ["v1", "v2"]) == ["v1", "v2"]
    assert _tags(TagRule(_rx(".*"), semver=True), ["1s0", "2v9", "v3.0.3"]) == ["v3.0.3"]
    assert _tags(TagRule(semver=True), ["latest", "v1.0.1"]) == ["v1.0.1"]
    assert _tags(TagRule(_rx("1.5.0"), semver=True), ["1.5.0", "v2.5.0"]) == ["1.5.0"]
    assert _tags(TagRule(exclude_regex=_rx(".*")), ["v1", "v2"]) == []
    assert _tags(TagRule(_rx(".*")), []) == []


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("1", True),
        ("v1", True),
        ("1.2", True),
        ("v1.2.3", True),
        ("1.2.3-rc.1", True),
        ("1.2.3+build.5", True),
        ("1.2.3-alpha-1.x+sha.abc", True),
        ("latest", False),
        ("1.2.3.4", False),
        ("v", False),
        ("1.2.3-", False),
        ("1.2.3-rc..1", False),
        ("99999999999999999999", False),  # over int64, as Go's ParseInt refuses
    ],
)
def test_semver_as_masterminds_v1(tag: str, expected: bool) -> None:
    assert is_semver(tag) is expected


@pytest.mark.parametrize(
    ("pattern", "tag", "expected"),
    [
        (r"^v\d+\z", "v12", True),
        (r"\Qa.b\E", "a.b", True),
        (r"\Qa.b\E", "axb", False),
        (r"^[[:digit:]]+\.x$", "12.x", True),
        (r"^[[:alpha:]_]+$", "ab_c", True),
        (r"(?<major>\d+)\.", "1.", True),
        (r"\x{41}", "A", True),
        (r"(?i)ABC", "abc", True),
        (r"^\w+$", "é", False),  # RE2's \w is ASCII
        (r"^\d+$", "١٢", False),  # and so is \d
        (r"^\pL+$", "é", True),  # \p{...} are Unicode classes
        (r"^[[:^alpha:]]+$", "12", True),
        (r"^[[:^alpha:]]+$", "a2", False),
        (r"a(?i)b", "aB", True),
        (r"a(?i)b", "AB", False),
    ],
)
def test_go_regex_syntax(pattern: str, tag: str, expected: bool) -> None:
    assert bool(compile_go_regex(pattern).search(tag)) is expected


def test_ungreedy_flag_is_gos() -> None:
    # Go's (?U) swaps greediness; Python would have read U as Unicode.
    match = compile_go_regex(r"(?U)v(\d+)")
    assert re.fullmatch(r"v\d", _group(match, "v123"))
    assert _group(compile_go_regex(r"v\d+"), "v123") == "v123"


def _group(pattern: GoRegex, text: str) -> str:
    found = pattern.search(text)
    assert found is not None
    return found.group(0)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("[*", "missing ]: [*"),
        ("(unclosed", "missing ): (unclosed"),
        ("(?<=v)1", "invalid perl operator: (?<="),  # lookbehind: zot refuses it too
        ("(?=v)", "invalid perl operator: (?="),
        (r"(a)\1", "invalid escape sequence: \\1"),  # backreference
        ("x{1001}", "invalid repetition size: {1001}"),
    ],
)
def test_go_regex_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_go_regex(pattern)


HEX = "a" * 64


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (f"sha256-{HEX}.sig", True),
        (f"sha256-{HEX}.att", True),
        (f"sha256-{HEX}.sbom", True),
        (f"sha256-{HEX}", True),
        (f"sha512-{'b' * 128}.sig", True),
        (f"sha256-{HEX}.txt", False),
        (f"sha256-{HEX[:-1]}.sig", False),
        (f"sha256-{HEX.upper()}.sig", False),
        ("latest", False),
    ],
)
def test_special_tags(tag: str, expected: bool) -> None:
    subject = special_tag_subject(tag)
    assert (subject is not None) is expected
    if subject is not None:
        assert special_tag(subject, tag[len(special_tag(subject)) :]) == tag


def test_special_tag_names_its_subject() -> None:
    subject = Digest("sha256", HEX)
    assert special_tag_subject(special_tag(subject, ".sig")) == subject
    assert special_tag(subject) == f"sha256-{HEX}"


def test_wants_platform() -> None:
    amd64, arm64v8 = Platform("linux", "amd64"), Platform("linux", "arm64", "v8")
    assert wants_platform([], arm64v8)
    assert wants_platform([amd64], amd64)
    assert not wants_platform([amd64], arm64v8)
    assert wants_platform([Platform("linux", "arm64")], arm64v8)  # no variant: any variant
    assert not wants_platform([Platform("linux", "arm64", "v7")], arm64v8)
    # Attestations and platform-less children stay with the images they describe.
    assert wants_platform([amd64], None)
    assert wants_platform([amd64], Platform("unknown", "unknown"))
