"""The main job, end to end, on this machine alone: start a local upstream registry, fill it
with generated images, mirror it with ``syncworker sync``, run again (a no-op), and check
every mirrored tag with skopeo against the upstream's digest.

    python scripts/demo.py [--repos 50] [--keep DIR] [--into-registry | --serve]

``--into-registry`` mirrors into a second local registry (``syncworker.destination``)
instead of OCI layouts, and skopeo reads the tags back from it. ``--serve`` then serves the
mirror with ``syncworker serve`` and reads every tag through it, and pulls the standard
corpus through a second ``serve`` over an empty store (pull-through, ``onDemand: true``).

Everything goes to temporary directories removed at the end (the registries' storage, the
config and the mirror), except the mirror with ``--keep DIR``.

Run by ``scripts/demo.sh``, which installs what is missing first.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.corpus import seed_many, seed_standard  # noqa: E402
from tests.support.mirror import write_sync_config  # noqa: E402
from tests.support.registry_server import RegistryServer  # noqa: E402
from tests.support.serve_server import ServeProcess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=50, help="generated repositories")
    parser.add_argument("--keep", type=Path, help="mirror into this directory and keep it")
    parser.add_argument(
        "--into-registry", action="store_true", help="mirror into a second local registry"
    )
    parser.add_argument(
        "--serve", action="store_true", help="then serve the mirror, and pull through serve"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncworker-demo-"))
    root = args.keep or work / "mirror"
    upstream = RegistryServer()
    dest = RegistryServer() if args.into_registry else None
    try:
        print(f"upstream registry on {upstream.url}; seeding...", flush=True)
        corpus = seed_standard(upstream)
        many = seed_many(upstream, repos=args.repos, tags=5, layers=3, layer_size=256 * 1024)
        # skopeo 1.9, which checks a layout below, skips index entries of Docker types.
        settings = {"destination": {"url": dest.url}} if dest else {"layoutMediaTypes": "oci"}
        config = write_sync_config(work, root, [{"urls": [upstream.url]}], settings=settings)
        print(f"config: {config}\nmirror: {dest.url if dest else root}", flush=True)
        for label in ("cold", "no-op"):
            before = upstream.request_count()
            started = time.monotonic()
            code = subprocess.call(
                [sys.executable, "-m", "syncworker", "sync", "-q", "-c", str(config)]
            )
            took = time.monotonic() - started
            print(
                f"{label} run: exit {code}, {took:.1f}s, "
                f"{upstream.request_count() - before} upstream requests",
                flush=True,
            )
            if code != 0:
                return code
        where = f"docker://{dest.host}" if dest else f"oci:{root}"
        code = _verify(where, {**corpus.tags, **many.tags})
        if args.serve and not dest:
            code |= _serve(config, work, upstream.url, {**corpus.tags, **many.tags}, corpus.tags)
        return code
    finally:
        upstream.stop()
        if dest:
            dest.stop()
        shutil.rmtree(work, ignore_errors=True)
        kept = f"; the mirror stays in {args.keep}" if args.keep else ""
        print(f"removed {work} (config and mirror) and the registries' storage{kept}")


def _serve(
    config: Path,
    work: Path,
    upstream: str,
    mirrored: dict[str, dict[str, str]],
    pulled: dict[str, dict[str, str]],
) -> int:
    """Every mirrored tag read through ``syncworker serve``; then ``pulled`` through a
    second ``serve`` over an empty store, each fetched from the upstream on demand."""
    with ServeProcess(config) as served:
        print(f"syncworker serve on {served.url}, over the mirror", flush=True)
        code = _verify(f"docker://{served.host}", mirrored)
    through = work / "pull-through"
    through.mkdir()
    entry = {"urls": [upstream], "onDemand": True}
    on_demand = write_sync_config(through, through / "store", [entry])
    with ServeProcess(on_demand) as served:
        print(f"syncworker serve on {served.url}, pulling through to {upstream}", flush=True)
        return code | _verify(f"docker://{served.host}", pulled)


def _verify(where: str, tags: dict[str, dict[str, str]]) -> int:
    """skopeo reads every tag from the mirror (``oci:<root>`` or ``docker://<host>``), with
    the upstream's exact digest."""
    bad = 0
    tls = ["--tls-verify=false"] if where.startswith("docker:") else []
    for repo, repo_tags in sorted(tags.items()):
        for tag, digest in sorted(repo_tags.items()):
            raw = subprocess.run(
                ["skopeo", "inspect", "--raw", *tls, f"{where}/{repo}:{tag}"], capture_output=True
            ).stdout
            if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
                print(f"MISMATCH {repo}:{tag}", file=sys.stderr)
                bad += 1
    total = sum(len(t) for t in tags.values())
    print(f"skopeo verified {total - bad}/{total} tags byte for byte")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
