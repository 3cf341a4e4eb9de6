"""``syncworker serve`` against Debian's ``docker-registry`` on the same bytes, in one run:
blob throughput, manifest HEADs per second at 20 concurrent clients, memory per open
download; and the server stack it was chosen over (the same routes under uvicorn, with
starlette's ``FileResponse`` for blobs).

    python -m bench.serve            # writes its section of bench/RESULTS.md

Clients are C programs (curl for blobs, ApacheBench for HEADs), so the load generator is
never what is measured. One layer of ``BLOB_MIB`` is pushed to the registry, mirrored by
``syncworker sync`` into a filesystem store, and served from there.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bigblobs import BigLayer, push_big_image
from bench.sections import SERVE_SECTION, splice
from tests.support.mirror import run_sync, write_sync_config
from tests.support.ports import LOOPBACK, free_port, wait_until
from tests.support.process import stop_process
from tests.support.registry_server import RegistryServer
from tests.support.serve_server import ServeProcess

__all__ = ["main", "write_section"]

BLOB_MIB = 512
DOWNLOADS = 5  # sequential whole-blob GETs per server; the median is reported
PARALLEL = 4  # then this many at once
HEADS, CLIENTS = 5000, 20
OPEN_DOWNLOADS = 20  # stalled downloads held open to weigh memory per download
REPO, TAG = "bench/serve", "big"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _blob_seconds(url: str) -> float:
    done = subprocess.run(
        ["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total}", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far (proc(5): stat fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def blob_mib_s(url: str, pid: int) -> tuple[float, float, float]:
    """MiB/s of one download (median of DOWNLOADS), of PARALLEL at once (total), and the
    server's CPU seconds per GiB sent over the sequential ones (what load does not change)."""
    before = _cpu_seconds(pid)
    one = statistics.median(BLOB_MIB / _blob_seconds(url) for _ in range(DOWNLOADS))
    cpu_per_gib = (_cpu_seconds(pid) - before) * 1024 / (BLOB_MIB * DOWNLOADS)
    start = time.monotonic()
    procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", url]) for _ in range(PARALLEL)]
    for proc in procs:
        proc.wait()
    return one, PARALLEL * BLOB_MIB / (time.monotonic() - start), cpu_per_gib


def heads_per_second(url: str) -> float:
    """HEADs per second by curl over CLIENTS keep-alive connections at once (ApacheBench
    speaks HTTP/1.0 keep-alive, which distribution's server stalls on)."""
    config = Path(tempfile.mkstemp(prefix="heads-", suffix=".curl")[1])
    accept = "application/vnd.oci.image.manifest.v1+json"  # distribution needs it for OCI
    config.write_text(
        f'head\nheader = "Accept: {accept}"\n' + f'url = "{url}"\noutput = "/dev/null"\n' * HEADS
    )
    start = time.monotonic()
    done = subprocess.run(
        ["curl", "-sf", "--parallel", "--parallel-max", str(CLIENTS), "-K", str(config),
         "-w", "%{http_code}\\n"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - start
    config.unlink()
    codes = done.stdout.split()
    if len(codes) != HEADS or set(codes) != {"200"}:
        raise RuntimeError(f"{url}: HEAD answers {sorted(set(codes))}, {len(codes)} of {HEADS}")
    return HEADS / seconds


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+)", status)
    return int(found.group(1)) if found else 0


def kib_per_download(pid: int, host: str, port: int, path: str) -> float:
    """Resident memory the server adds per download held open by a client that stopped
    reading (its socket buffers full), over OPEN_DOWNLOADS of them."""
    before = _rss_kib(pid)
    sockets = []
    for _ in range(OPEN_DOWNLOADS):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        sock.recv(1024)
        sockets.append(sock)
    time.sleep(2)
    during = _rss_kib(pid)
    for sock in sockets:
        sock.close()
    return (during - before) / OPEN_DOWNLOADS


def _uvicorn(config: str, port: int) -> None:
    """The same routes as an ASGI app under uvicorn; blobs by starlette's FileResponse."""
    import uvicorn
    from starlette.responses import FileResponse
    from starlette.responses import Response as Answer

    from syncworker.config import load_config
    from syncworker.oci import Digest
    from syncworker.runtime import Runtime
    from syncworker.serve.messages import FileBody, Request
    from syncworker.serve.routes import dispatch
    from syncworker.serve.wiring import open_served

    served = open_served(Runtime.open(load_config(config), upto="store"))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query: dict[str, list[str]] = {}
        request = Request(scope["method"], scope["path"], query, headers)
        _, response = dispatch(served, request)
        if isinstance(response.body, FileBody):
            response.body.close()
            name, digest = scope["path"][4:].rsplit("/blobs/", 1)
            path = served.store.blob_file(name, Digest.parse(digest))
            answer: Any = FileResponse(str(path), headers=response.headers)
        else:
            body = response.body if isinstance(response.body, bytes) else b""
            answer = Answer(body, response.status, response.headers)
            if request.method == "HEAD":
                answer.headers["content-length"] = str(response.content_length)
        await answer(scope, receive, send)

    uvicorn.run(app, host=LOOPBACK, port=port, log_level="warning")


def _measure(name: str, base: str, pid: int, digest: str) -> dict[str, float]:
    blob = f"{base}/v2/{REPO}/blobs/{digest}"
    one, parallel, cpu = blob_mib_s(blob, pid)
    heads = heads_per_second(f"{base}/v2/{REPO}/manifests/{TAG}")
    port = int(base.rsplit(":", 1)[1])
    memory = kib_per_download(pid, LOOPBACK, port, f"/v2/{REPO}/blobs/{digest}")
    print(f"{name}: {one:.0f} MiB/s, {parallel:.0f} MiB/s x{PARALLEL}, {cpu:.2f} CPU s/GiB, "
          f"{heads:.0f} HEAD/s, {memory:.0f} KiB/download", file=sys.stderr)  # fmt: skip
    return {"one": one, "parallel": parallel, "cpu": cpu, "heads": heads, "memory": memory}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    layer = BigLayer.build(work / "cache", BLOB_MIB << 20, "serve")
    with RegistryServer() as registry:
        push_big_image(registry.url, REPO, TAG, [layer])
        config = write_sync_config(work, work / "store", [{"urls": [registry.url]}])
        assert run_sync(config).code == 0
        results = {"docker-registry": _measure("docker-registry", registry.url,
                                               registry._proc.pid, layer.digest)}  # type: ignore[union-attr]  # fmt: skip
        with ServeProcess(config) as serve:
            results["serve"] = _measure("serve", serve.url, serve._proc.pid, layer.digest)
        port = free_port()
        uv = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", "--uvicorn", str(config), str(port)]
        )
        try:
            wait_until(lambda: _answers(port), timeout=60)
            results["uvicorn"] = _measure(
                "uvicorn", f"http://{LOOPBACK}:{port}", uv.pid, layer.digest
            )
        finally:
            stop_process(uv)
    write_section(results)


def _answers(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return False
    return True


def write_section(results: dict[str, dict[str, float]]) -> None:
    registry, serve = results["docker-registry"], results["serve"]
    load = os.getloadavg()[0]
    lines = [
        SERVE_SECTION[0],
        f"## `syncworker serve` vs docker-registry ({BLOB_MIB} MiB blob, filesystem store)",
        "",
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
        f"{load:.2f} at the end, 2 shared cores. `python -m bench.serve`.",
        "",
        "| target | wanted | measured | |",
        "|---|---|---|---|",
        _target("blob throughput, one download", serve["one"] / registry["one"], 1.0),
        _target(
            f"blob throughput, {PARALLEL} at once", serve["parallel"] / registry["parallel"], 1.0
        ),
        _target(f"manifest HEADs/s, {CLIENTS} clients", serve["heads"] / registry["heads"], 0.5),
        "",
        "| server | MiB/s, one download | MiB/s, "
        + f"{PARALLEL} at once | server CPU s per GiB sent | HEAD/s at {CLIENTS} clients "
        "| KiB resident per open download |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {r['one']:.0f} | {r['parallel']:.0f} | {r['cpu']:.2f} "
            f"| {r['heads']:.0f} | {r['memory']:.0f} |"
            for name, r in results.items()
        ),
        "",
        "Wall-clock throughput on this shared box follows its load (other sessions' test "
        "suites); the CPU a server spends per GiB sent does not: `serve` hands a filesystem "
        "blob to the kernel (`sendfile`), distribution's filesystem driver copies it through "
        "a reader in user space, starlette's FileResponse in 64 KiB chunks through Python.",
        "",
        SERVE_SECTION[1],
    ]
    text = RESULTS.read_text() if RESULTS.exists() else ""
    RESULTS.write_text(splice(text, lines, *SERVE_SECTION))


def _target(what: str, ratio: float, wanted: float) -> str:
    met = "**met**" if ratio >= wanted else "**not met**"
    return f"| {what} vs docker-registry | ≥ {wanted:g}× | {ratio:.2f}× | {met} |"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--uvicorn"]:
        _uvicorn(sys.argv[2], int(sys.argv[3]))
    else:
        main()
