"""
1 GiB download and 1 GiB upload through the gateway: MB/s and the front
end's peak RSS, beside the same transfers straight from/to a plain
twisted.web static file server in the same run (Twisted's own ceiling).

    python bench/big_transfer.py [--runs 3] [--size BYTES]

The backend is the libfcgi test responder (tests/apps/responder.c) under
spawn-fcgi: C{?size=N} answers N bytes; a POST without C{echo} is read and
discarded.  The front end is C{bench/frontend.py} (a L{GatewaySite} with one
L{FastCGIResource}).  The client is curl, writing to /dev/null and reading
the upload from a file, so it holds nothing in memory.  Peak RSS is the
front end's VmHWM after each transfer (the process is restarted for every
run, so each figure is that transfer's own peak).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.peers import buildResponder, freePort  # noqa: E402

PLAIN_SERVER = """
import sys
from twisted.internet import reactor
from twisted.web import resource, server, static
class Sink(resource.Resource):
    isLeaf = True
    def render_POST(self, request):
        return b"ok"
root = resource.Resource()
root.putChild(b"file", static.File(sys.argv[2]))
root.putChild(b"sink", Sink())
site = server.Site(root)
site.log = lambda request: None
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
reactor.run()
"""


def waitForPort(port: int, timeout: float = 10.0) -> None:
    """
    Wait until something accepts on 127.0.0.1:C{port}.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def peakRSS(pid: int) -> float:
    """
    The process's peak resident set size in MiB (VmHWM).
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def curl(args: list[str]) -> float:
    """
    Run curl; return the seconds it took.
    """
    started = time.monotonic()
    subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "--fail", *args], check=True, timeout=600
    )
    return time.monotonic() - started


def measure(
    serverArgv: list[str], port: int, url: str, upload: str | None
) -> tuple[float, float]:
    """
    Start a server, run one transfer, return (seconds, peak RSS MiB).
    """
    server = subprocess.Popen(serverArgv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        waitForPort(port)
        if upload is None:
            seconds = curl([url])
        else:
            seconds = curl(["-X", "POST", "-T", upload, "-H", "Expect:", url])
        return seconds, peakRSS(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    """
    Run the transfers and print the table.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024 * 1024 * 1024)
    options = parser.parse_args()
    size = options.size
    work = Path(tempfile.mkdtemp(prefix="txf-big-"))
    sock = work / "app.sock"
    upload = work / "upload.bin"
    with upload.open("wb") as f:
        chunk = os.urandom(1024 * 1024)
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write(chunk[: size % len(chunk)])
    download = work / "download.bin"
    os.link(upload, download)
    app = subprocess.Popen(
        ["spawn-fcgi", "-n", "-s", str(sock), "--", buildResponder(), "-t", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    python = sys.executable
    rows = []
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for label, makeArgv, path, isUpload in [
            ("gateway download", "gateway", f"/?size={size}", False),
            ("plain twisted download (static.File)", "plain", "/file", False),
            ("gateway upload", "gateway", "/", True),
            ("plain twisted upload (discarding Resource)", "plain", "/sink", True),
        ]:
            results = []
            for _ in range(options.runs):
                port = freePort()
                if makeArgv == "gateway":
                    argv = [python, str(REPO / "bench" / "frontend.py"), str(port), str(sock)]
                else:
                    argv = [python, "-c", PLAIN_SERVER, str(port), str(download)]
                results.append(
                    measure(argv, port, f"http://127.0.0.1:{port}{path}", str(upload) if isUpload else None)
                )
            seconds = statistics.median(r[0] for r in results)
            rss = max(r[1] for r in results)
            rows.append((label, size / seconds / 2**20, rss))
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=10)
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    print(f"big_transfer: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{size} bytes, median of {options.runs} runs, Python {sys.version.split()[0]}")
    print()
    print("| transfer | MiB/s | front end peak RSS (max of runs) |")
    print("|---|---:|---:|")
    for label, rate, rss in rows:
        print(f"| {label} | {rate:.0f} | {rss:.1f} MiB |")


if __name__ == "__main__":
    main()
