"""docs/CONFIG.md's reference table is the config model's: every key with its type, default
and the docstring under its field, so the document cannot drift from what is loaded."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from syncworker.config import load_config
from syncworker.config.modelbase import ConfigModel
from syncworker.config.reference import BEGIN, END, markdown_table, replace_table, rows

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "CONFIG.md"


def test_the_documents_table_is_the_models() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    listed = text.split(BEGIN + "\n", 1)[1].split("\n" + END, 1)[0]
    assert listed == markdown_table(), (
        "docs/CONFIG.md's reference differs from the config model: run "
        "`python -m syncworker.config.reference docs/CONFIG.md`"
    )


def test_each_key_appears_once_with_its_default() -> None:
    found = {row.key: row for row in rows()}
    assert len(found) == len(list(rows()))
    assert found["syncworker.concurrency"].default == "`8`"
    assert found["syncworker.credentialHelperTimeout"].default == "`30s`"
    assert found["syncworker.serve.redirectExpiry"].kind == "duration > 0"
    assert found["extensions.sync.registries[].retryDelay"].kind == "duration"
    assert found["extensions.sync.registries[].urls"].default == "required"
    assert found["extensions.sync.registries[].downloadRate"].kind == "size"
    assert found["storage.storageDriver.regionendpoint"].kind == "string"  # distribution's own keys


def test_a_field_without_a_docstring_is_refused() -> None:
    class Undescribed(ConfigModel):
        documented: int = 1
        """Described."""
        bare: bool = False

    with pytest.raises(ValueError, match="Undescribed.bare"):
        list(rows(Undescribed))


def test_a_field_redeclared_without_a_docstring_is_refused() -> None:
    """The docstring under the base's declaration describes the base's field, not the new one."""

    class Base(ConfigModel):
        size: int = 1
        """Described."""

    class Redeclared(Base):
        size: int = 2

    assert [row.meaning for row in rows(Base)] == ["Described."]
    with pytest.raises(ValueError, match="Redeclared.size"):
        list(rows(Redeclared))


def test_rewriting_keeps_what_surrounds_the_table() -> None:
    text = f"before\n{BEGIN}\nstale\n{END}\nafter\n"
    assert replace_table(text) == f"before\n{BEGIN}\n{markdown_table()}\n{END}\nafter\n"
    with pytest.raises(ValueError, match="config:begin"):
        replace_table("no markers")


def test_the_examples_load() -> None:
    """The examples the document points to are configurations the model accepts."""
    for name in ("mirror.yaml", "mirror-to-registry.yaml", "zot-config.json"):
        load_config(ROOT / "examples" / name)


ENV_NAME = re.compile(r"^SYNCWORKER_[A-Z_]+$")


def _environment_read() -> set[str]:
    """Every ``SYNCWORKER_...`` string constant of the package."""
    trees = [ast.parse(p.read_text(encoding="utf-8")) for p in (ROOT / "syncworker").rglob("*.py")]
    return {
        node.value
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if ENV_NAME.match(node.value)
    }


def test_every_environment_variable_is_documented_once() -> None:
    section = DOC.read_text(encoding="utf-8").split("## Environment\n", 1)[1].split("\n## ", 1)[0]
    rows = [
        line.split(" | ")[0].strip("| `") for line in section.splitlines() if line.startswith("| `")
    ]
    assert len(rows) == len(set(rows))
    assert set(rows) == _environment_read()


# camelCase words in the documents' code that are not our keys: docker's config.json, and
# fields of OCI documents.
NOT_CONFIG = {"credHelpers", "credsStore", "mediaType", "artifactType"}
CAMEL = re.compile(r"^[a-z]+[A-Z]\w*$")
KEY_PATH = re.compile(r"^(?:storage|extensions|syncworker)\.[\w.\[\]]+$")


def test_the_documents_name_only_keys_the_model_has() -> None:
    """A key a document names in code (``walkAhead``, ``syncworker.serve.listen``,
    ``extensions.sync.registries[0].reqPerSec``) is one the reference lists."""
    keys = {row.key for row in rows()}
    names = {key.rsplit(".", 1)[-1].removesuffix("[]") for key in keys}
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    unknown, checked = set(), 0
    for doc in documents:
        for code in re.findall(r"`([^`\n]+)`", doc.read_text(encoding="utf-8")):
            word = code.split(":")[0].strip()
            path = re.sub(r"\[\d+\]", "[]", word)
            if CAMEL.match(word) and word not in names | NOT_CONFIG:
                unknown.add(f"{doc.name}: {word}")
            elif KEY_PATH.match(path) and _is_key_path(path):
                checked += 1
                if path not in keys:
                    unknown.add(f"{doc.name}: {word}")
    assert checked > 10
    assert not unknown, sorted(unknown)


def _is_key_path(path: str) -> bool:
    """``syncworker.`` also begins task, queue and logger names: only a camelCase one there
    is surely a key."""
    return not path.startswith("syncworker.") or any(c.isupper() for c in path)
