"""Content rules: which upstream repositories and tags to mirror, and under what name.

The semantics are those of zot's sync extension (``pkg/extensions/sync/content.go``):

- ``prefix`` is a doublestar glob over the whole repository name (a leading ``/`` is
  ignored); the first rule whose glob matches a repository is its rule; an empty rule list
  takes everything under its own name.
- ``destination`` puts the repository under another path; with ``stripPrefix`` the
  literal directories of the glob (everything before its first wildcard segment) are cut
  off first. ``prefix: "/repo2/repo", destination: "/repo", stripPrefix: true`` stores
  ``repo2/repo`` as ``repo``.
- ``tags.regex`` keeps tags it matches *anywhere* (Go's ``MatchString`` is a search, not a
  full match); ``tags.excludeRegex`` then drops tags it matches; ``tags.semver`` then keeps
  only tags that Masterminds/semver v1 parses (``1``, ``v1.2``, ``1.2.3-rc.1+b5``).

Deliberate differences from zot: a glob that does not compile is refused when the rules
are built (zot logs and skips the rule at every match); an empty ``regex`` keeps every tag
(zot keeps none, which no one asks for on purpose); ``stripPrefix`` cuts whole path
segments (zot trims characters: ``prefix: "team*/**"`` turns ``team-a/app`` into
``-a/app``; here it stays ``team-a/app``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from syncworker.errors import InvalidNameError
from syncworker.filters.globs import compile_glob
from syncworker.filters.goregex import GoRegex
from syncworker.filters.tagclasses import is_semver
from syncworker.oci import validate_repository

__all__ = ["ContentRule", "ContentRules", "TagRule"]


@dataclass(frozen=True)
class TagRule:
    regex: GoRegex | None = None
    exclude_regex: GoRegex | None = None
    semver: bool = False

    def keep(self, tag: str) -> bool:
        """Whether this rule keeps ``tag`` (regex, then excludeRegex, then semver)."""
        if self.regex is not None and not self.regex.search(tag):
            return False
        if self.exclude_regex is not None and self.exclude_regex.search(tag):
            return False
        return not self.semver or is_semver(tag)


@dataclass(frozen=True)
class ContentRule:
    prefix: str
    tags: TagRule | None = None
    destination: str | None = None
    strip_prefix: bool = False


# The rule an empty rule list stands for: every repository, every tag, same name.
_EVERYTHING = ContentRule(prefix="**")


class ContentRules:
    """An ordered list of content rules; the first whose prefix glob matches wins."""

    def __init__(self, rules: Sequence[ContentRule]) -> None:
        self._rules = tuple(rules) or (_EVERYTHING,)
        self._globs = tuple(compile_glob(rule.prefix.removeprefix("/")) for rule in self._rules)

    @property
    def rules(self) -> tuple[ContentRule, ...]:
        return self._rules

    def match(self, repo: str) -> ContentRule | None:
        for rule, glob in zip(self._rules, self._globs, strict=True):
            if glob.fullmatch(repo):
                return rule
        return None

    def destination(self, repo: str) -> str | None:
        """The local name of upstream ``repo``, or None if no rule takes it.

        Raises :class:`~syncworker.errors.InvalidNameError` if the rule maps it to a name
        the distribution spec forbids (e.g. ``destination: "/"`` with ``stripPrefix`` on
        a repository equal to the prefix).
        """
        rule = self.match(repo)
        if rule is None:
            return None
        return validate_repository(_forward(repo, rule))

    def sources(self, dest: str) -> list[str]:
        """The upstream repositories these rules store as ``dest``, sorted: each rule's
        inverse mapping, kept only where the forward mapping gives ``dest`` back (so the
        first-match order and the content globs are respected)."""
        found = set()
        for rule in self._rules:
            for repo in _backward(dest, rule):
                with contextlib.suppress(InvalidNameError):
                    if self.destination(repo) == dest:
                        found.add(repo)
        return sorted(found)

    def filter_tags(self, repo: str, tags: Iterable[str]) -> list[str]:
        """The tags of ``repo`` its rule keeps, in their original order (none if no rule)."""
        rule = self.match(repo)
        if rule is None:
            return []
        if rule.tags is None:
            return list(tags)
        keep = rule.tags.keep
        return [tag for tag in tags if keep(tag)]


def _static_base(prefix: str) -> str:
    """The literal directories of a glob: ``a/b/*/c`` → ``a/b``; no wildcard → all of it."""
    segments = prefix.strip("/").split("/")
    for i, segment in enumerate(segments):
        if any(ch in segment for ch in "*?[{\\"):
            return "/".join(segments[:i])
    return "/".join(segments)


def _backward(dest: str, rule: ContentRule) -> list[str]:
    """The names ``_forward`` may have turned into ``dest`` under ``rule``."""
    base = (rule.destination or "").strip("/")
    if base and dest != base and not dest.startswith(base + "/"):
        return []
    rest = dest[len(base) :].strip("/")
    stripped = _static_base(rule.prefix) if rule.strip_prefix else ""
    names = [rest, "/".join(part for part in (stripped, rest) if part)]
    return [name for name in names if name]


def _forward(repo: str, rule: ContentRule) -> str:
    repo = repo.strip("/")
    if rule.strip_prefix:
        base = _static_base(rule.prefix)
        if base and (repo == base or repo.startswith(base + "/")):
            repo = repo[len(base) :].strip("/")
    dest = (rule.destination or "").strip("/")
    return "/".join(part for part in (dest, repo) if part)
