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
``-a/app``; here it stays ``team-a/app``), which also lets ``upstream_name`` be an exact
inverse, checked against ``destination`` before it answers.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from syncworker.oci import Platform, validate_repository

__all__ = [
    "ContentRule",
    "ContentRules",
    "TagRule",
    "compile_glob",
    "compile_go_regex",
    "is_cosign_tag",
    "is_semver",
    "wants_platform",
]


@dataclass(frozen=True)
class TagRule:
    regex: re.Pattern[str] | None = None
    exclude_regex: re.Pattern[str] | None = None
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

    def filter_tags(self, repo: str, tags: Iterable[str]) -> list[str]:
        """The tags of ``repo`` its rule keeps, in their original order (none if no rule)."""
        rule = self.match(repo)
        if rule is None:
            return []
        if rule.tags is None:
            return list(tags)
        keep = rule.tags.keep
        return [tag for tag in tags if keep(tag)]

    def upstream_name(self, local_repo: str) -> str | None:
        """The upstream name that ``destination`` maps to ``local_repo``, or None.

        As zot's ``GetRepoSource`` (used for on-demand pulls): rules are tried in order and
        the first one that maps some upstream name back onto ``local_repo`` answers.
        """
        local = local_repo.strip("/")
        for rule, glob in zip(self._rules, self._globs, strict=True):
            candidate = _backward(local, rule)
            if (
                candidate is not None
                and glob.fullmatch(candidate)
                and _forward(candidate, rule) == local
            ):
                return candidate
        return None


def _static_base(prefix: str) -> str:
    """The literal directories of a glob: ``a/b/*/c`` → ``a/b``; no wildcard → all of it."""
    segments = prefix.strip("/").split("/")
    for i, segment in enumerate(segments):
        if any(ch in segment for ch in "*?[{\\"):
            return "/".join(segments[:i])
    return "/".join(segments)


def _forward(repo: str, rule: ContentRule) -> str:
    repo = repo.strip("/")
    if rule.strip_prefix:
        base = _static_base(rule.prefix)
        if base and (repo == base or repo.startswith(base + "/")):
            repo = repo[len(base) :].strip("/")
    dest = (rule.destination or "").strip("/")
    return "/".join(part for part in (dest, repo) if part)


def _backward(local: str, rule: ContentRule) -> str | None:
    dest = (rule.destination or "").strip("/")
    if dest:
        if local != dest and not local.startswith(dest + "/"):
            return None
        local = local[len(dest) :].strip("/")
    if rule.strip_prefix:
        local = "/".join(part for part in (_static_base(rule.prefix), local) if part)
    return local or None


# --- globs ------------------------------------------------------------------------------
# doublestar v4 (the library zot uses): `*` and `?` never cross `/`; a `**` that is a whole
# path segment spans any number of segments (`a/**` also matches `a`, `**/c` matches `c`);
# a `**` inside a segment acts as `*`; `[...]`/`[!...]`/`[^...]` classes; `{a,b}`
# alternatives; `\` escapes.


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Translate a doublestar glob into a regex to ``fullmatch``; ``ValueError`` if bad."""
    regex, _ = _translate(pattern, 0, in_braces=False)
    return re.compile(regex, re.DOTALL)


def _translate(pat: str, i: int, *, in_braces: bool) -> tuple[str, int]:
    out: list[str] = []
    while i < len(pat):
        ch = pat[i]
        if in_braces and ch in ",}":
            return "".join(out), i
        if ch == "\\":
            if i + 1 >= len(pat):
                raise ValueError("pattern ends with a lone backslash")
            out.append(re.escape(pat[i + 1]))
            i += 2
        elif ch == "*":
            piece, i = _star(pat, i)
            out.append(piece)
        elif ch == "/" and pat[i + 1 :] in ("**", "**/") and not in_braces:
            out.append("(?:/.*)?")  # `a/**` matches `a` itself too
            i = len(pat)
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            piece, i = _char_class(pat, i)
            out.append(piece)
        elif ch == "{":
            piece, i = _alternatives(pat, i)
            out.append(piece)
        else:
            out.append(re.escape(ch))
            i += 1
    if in_braces:
        raise ValueError("unclosed '{'")
    return "".join(out), i


def _star(pat: str, i: int) -> tuple[str, int]:
    if pat.startswith("**", i):
        whole_segment = (i == 0 or pat[i - 1] == "/") and (i + 2 == len(pat) or pat[i + 2] == "/")
        if whole_segment:
            if i + 2 < len(pat):
                return "(?:.*/)?", i + 3  # `**/` spans zero or more directories
            return ".*", i + 2
        return "[^/]*", i + 2
    return "[^/]*", i + 1


def _char_class(pat: str, i: int) -> tuple[str, int]:
    j = i + 1
    negate = j < len(pat) and pat[j] in "!^"
    if negate:
        j += 1
    items: list[str] = []
    while j < len(pat) and (pat[j] != "]" or not items):
        if pat[j] == "\\" and j + 1 < len(pat):
            j += 1
        if pat[j] == "-" and items and j + 1 < len(pat) and pat[j + 1] != "]":
            items.append("-")
        else:
            items.append(re.escape(pat[j]))
        j += 1
    if j >= len(pat):
        raise ValueError("unclosed '['")
    body = "".join(items)
    return (f"[^/{body}]" if negate else f"(?!/)[{body}]"), j + 1


def _alternatives(pat: str, i: int) -> tuple[str, int]:
    options: list[str] = []
    i += 1
    while True:
        piece, i = _translate(pat, i, in_braces=True)
        options.append(piece)
        if pat[i] == "}":
            return "(?:" + "|".join(options) + ")", i + 1
        i += 1  # past the `,`


# --- Go regular expressions -------------------------------------------------------------
# zot compiles `tags.regex` and `tags.excludeRegex` with Go's RE2 syntax. Python's `re` reads
# most of it the same way; the differences a zot config can hit are translated here:
#   `\z` (end of text) is Python's `\Z`; `\Q...\E` quotes literally; `\x{263a}` is a hex
#   code point; `(?<name>...)` is `(?P<name>...)`; `[[:alpha:]]` POSIX classes become ASCII
#   ranges; `\d \w \s \b` are ASCII-only in RE2, hence `re.ASCII`.
# Refused with a clear message instead of silently meaning something else: the `U` flag
# (ungreedy in Go, Unicode in Python), `\p{...}` classes, negated POSIX classes. Python
# accepts a few things RE2 refuses (backreferences, lookarounds); those are left alone.
# Flags set mid-pattern (`a(?i)b`) are refused by Python 3.11 with its own message.

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_GO_TOKEN = re.compile(
    r"\\Q(?P<quoted>.*?)(?:\\E|$)"
    r"|\\x\{(?P<hex>[0-9A-Fa-f]{1,6})\}"
    r"|\\z"
    r"|\\[pP]"
    r"|\\."
    r"|\(\?<(?P<name>[A-Za-z_][A-Za-z0-9_]*)>"
    r"|\(\?(?P<flags>[a-zA-Z-]*)[:)]"
    r"|\[:(?P<posix>\^?[a-z]+):\]",
    re.DOTALL,
)


def compile_go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go (RE2) regular expression with Go's meaning; ``ValueError`` if bad."""
    try:
        with warnings.catch_warnings():
            # Python warns about `[[`, `--`, `&&` in classes, which RE2 reads literally too.
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile(_GO_TOKEN.sub(_go_token, pattern), re.ASCII)
    except re.error as exc:
        raise ValueError(str(exc)) from None


def _go_token(m: re.Match[str]) -> str:
    text = m.group(0)
    if m.group("quoted") is not None:
        return re.escape(m.group("quoted"))
    if m.group("hex") is not None:
        return f"\\U{int(m.group('hex'), 16):08x}"
    if m.group("name") is not None:
        return f"(?P<{m.group('name')}>"
    if m.group("flags") is not None and "U" in m.group("flags"):
        raise ValueError("the U (ungreedy) flag of Go regular expressions is not supported")
    if m.group("posix") is not None:
        return _posix_class(m.group("posix"))
    if text == "\\z":
        return "\\Z"
    if text in ("\\p", "\\P"):
        raise ValueError("Unicode classes (\\p{...}) are not supported")
    return text


def _posix_class(name: str) -> str:
    if name.startswith("^"):
        raise ValueError(f"negated POSIX class [:{name}:] is not supported")
    try:
        return _POSIX_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown POSIX class [:{name}:]") from None


# --- tags -------------------------------------------------------------------------------

# Masterminds/semver v1.5 (zot's `tags.semver`): optional `v`, one to three numeric parts,
# then optional pre-release and build metadata. Its numbers are parsed as int64.
_SEMVER = re.compile(
    r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_INT64_MAX = 2**63 - 1


def is_semver(tag: str) -> bool:
    """Whether zot's ``tags.semver`` rule keeps ``tag``."""
    m = _SEMVER.fullmatch(tag)
    return m is not None and all(int(n) <= _INT64_MAX for n in m.groups() if n is not None)


# cosign's legacy tags `sha256-<hex>.sig|.att|.sbom` and the referrers tag schema's
# fallback tag `sha256-<hex>` (distribution-spec "Referrers Tag Schema").
_COSIGN_TAG = re.compile(r"(?:sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})(?:\.(?:sig|att|sbom))?")


def is_cosign_tag(tag: str) -> bool:
    """Whether ``tag`` names a signature, attestation, SBOM or referrers index of a digest."""
    return _COSIGN_TAG.fullmatch(tag) is not None


# --- platforms --------------------------------------------------------------------------


def wants_platform(wanted: Sequence[Platform], platform: Platform | None) -> bool:
    """Whether a child of an index with ``platform`` is mirrored when ``wanted`` is asked.

    Nothing wanted means everything. A child with no platform, or the ``unknown/unknown``
    platform BuildKit gives its attestation manifests, is always kept: it describes the
    images next to it rather than running anywhere, and it is small.
    """
    if not wanted or platform is None or platform.os == "unknown":
        return True
    return any(want.matches(platform) for want in wanted)
