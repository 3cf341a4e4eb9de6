"""Content rules (which repositories and tags, under what name), with the glob, Go regex,
tag classes and platform matching they are built from."""

from syncworker.filters.globs import compile_glob
from syncworker.filters.goregex import GoRegex, compile_go_regex
from syncworker.filters.platforms import children_key, expected_children, wants_platform
from syncworker.filters.rules import ContentRule, ContentRules, TagRule
from syncworker.filters.tagclasses import (
    SPECIAL_SUFFIXES,
    is_semver,
    special_tag,
    special_tag_subject,
)

__all__ = [
    "SPECIAL_SUFFIXES",
    "ContentRule",
    "ContentRules",
    "GoRegex",
    "TagRule",
    "children_key",
    "compile_glob",
    "compile_go_regex",
    "expected_children",
    "is_semver",
    "special_tag",
    "special_tag_subject",
    "wants_platform",
]
