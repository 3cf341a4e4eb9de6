"""The tag planner and the other pure decisions of the engine (engine/plan.py), with the
special tags it sets aside (filters/tagclasses.py)."""

from __future__ import annotations

import json

from syncworker.engine.plan import blobs_to_copy, plan_tags
from syncworker.filters import expected_children, special_tag_subject
from syncworker.oci import Digest, Platform, parse_manifest
from tests.support.images import make_foreign_layer_image, make_image, make_index

HEX = "ab" * 32


def test_special_tags_are_set_aside_whatever_the_rules_keep() -> None:
    tags = ["v1", "v2", f"sha256-{HEX}.sig", f"sha256-{HEX}", f"sha256-{HEX}.att", "latest"]
    plan = plan_tags(tags, kept=["v2", "v1", f"sha256-{HEX}.sig"])
    assert plan.ordinary == ["v1", "v2"]  # sorted; the rules dropped "latest"
    subject = Digest.parse(f"sha256:{HEX}")
    assert plan.special == {
        f"sha256-{HEX}.sig": subject,
        f"sha256-{HEX}": subject,
        f"sha256-{HEX}.att": subject,
    }


def test_only_well_formed_digest_tags_are_special() -> None:
    assert special_tag_subject(f"sha512-{'cd' * 64}.sbom") == Digest.parse(f"sha512:{'cd' * 64}")
    for tag in (f"sha256-{HEX[:-2]}.sig", f"md5-{HEX}.sig", f"sha256-{HEX}.txt", "sha256-v1"):
        assert special_tag_subject(tag) is None, tag


def test_children_filtered_by_platform_keep_platformless_ones() -> None:
    index = make_index("plan-index")
    body = json.loads(index.raw)
    body["manifests"].append({**body["manifests"][0], "platform": None})
    body["manifests"][-1].pop("platform")
    raw = json.dumps(body).encode()
    manifest = parse_manifest(raw, index.media_type, Digest.of(raw))
    wanted = [Platform("linux", "arm64", "v8")]
    kept = expected_children(manifest, wanted)
    assert [c.platform.architecture if c.platform else None for c in kept] == ["arm64", None]
    assert len(expected_children(manifest, [])) == 3  # no filter: all of them


def test_blobs_to_copy_skips_foreign_layers_and_duplicates() -> None:
    foreign = make_foreign_layer_image("plan-foreign")
    parsed = parse_manifest(foreign.raw, foreign.media_type, Digest.of(foreign.raw))
    assert [str(b.digest) for b in blobs_to_copy(parsed)] == [b.digest for b in foreign.blobs]
    image = make_image("plan-dup", layers=1)
    body = json.loads(image.raw)
    body["layers"].append(body["layers"][0])  # the same layer listed twice
    raw = json.dumps(body).encode()
    twice = parse_manifest(raw, image.media_type, Digest.of(raw))
    assert len(blobs_to_copy(twice)) == 2  # config + the one layer
