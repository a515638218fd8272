"""Peak memory of reading long recordings (issue 19): 24 h and 72 h, 19 channels, 256 Hz.

Usage::

    python bench/memory.py [--hours 24,72] [--reference-hours 24] [--paths embed-one,embed,tokenize,upload]
                           [--jobs 1] [--out DIR]

Writes a synthetic EDF per length into a temporary folder (in ``--out`` if given; the
files are 850 MB per 24 h and are deleted afterwards): 10-minute blocks of
:func:`clef.synthetic.recordings.eeg_signals` written with
:func:`tokenizer.edf_writer.write_edf` (twelve seeds and rhythms, repeated; a fixed
physical range so that the blocks' data records join into one file). Then each path
runs on each file as its own command in a child process (``--jobs`` at a time), whose
peak resident set size is read with ``resource.getrusage(RUSAGE_CHILDREN)`` (the
largest process, pool workers included):

- ``embed-one``: ``clef embed-one FILE --checkpoint CK --out vec.npy`` (streamed);
- ``embed``: ``clef embed FOLDER --checkpoint CK --store STORE --workers 1`` (the batch
  worker, streamed);
- ``tokenize``: ``clef tokenize --archive FOLDER --checkpoint CK/tokenizer --out OUT
  --cache CACHE`` (streamed, the spectrogram cache entry written as it is computed);
- ``upload``: ``POST /embed`` of ``clef serve`` (started in a child process, as a user
  starts it, with a fresh key in ``CLEF_API_KEYS``, ``--max-upload-mb`` raised above the
  file's size and ``TMPDIR`` in the working folder), the file streamed from disk by the
  client (a multipart body read from the open file, never held whole); the peak is the
  service process's ``VmHWM`` (``/proc/PID/status``) after the answer, beside its value
  once ready and idle (after the explorer's drawing-ahead child has exited, so the
  service is the only process). The service's store: one 10-minute recording embedded
  with the same checkpoint (the service needs its model stored);
- ``whole`` (for ``--reference-hours``): the whole-file path,
  ``Embedder.embed(read_recording(FILE))``, the recording and its spectrogram in
  memory as before issue 19; its vector is the reference of the streamed one's cosine.

Random weights of the ``tiny`` preset (memory and cost do not depend on training).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import stop

ROOT = Path(__file__).resolve().parents[1]
BLOCK_S = 600
#: Distinct 10-minute blocks, repeated to the length asked for.
DISTINCT = 12
#: µV range written into every block's header (eeg_signals stays well within it).
RANGE_UV = 500.0


def write_long_edf(path: Path, hours: float, sfreq: int = 256) -> Path:
    """A 19-channel EDF of ``hours``, written a 10-minute block at a time (bounded memory)."""
    from clef.synthetic.recordings import eeg_signals
    from tokenizer.edf_header import read_header
    from tokenizer.edf_writer import EDFSignal, write_edf

    if path.exists():
        return path
    n_blocks = int(round(hours * 3600 / BLOCK_S))
    tmp = path.with_suffix(".part")
    block = path.with_suffix(".block.edf")
    head, bodies = b"", []
    for k in range(min(n_blocks, DISTINCT)):
        sigs = [EDFSignal(s.label, s.data, s.sfreq, physical_min=-RANGE_UV, physical_max=RANGE_UV)
                for s in eeg_signals(BLOCK_S, sfreq, freq=8.0 + (k % 7), seed=k)]
        write_edf(block, sigs, fmt="EDF")
        skip = read_header(block).header_bytes
        raw = block.read_bytes()
        head = head or raw[:skip]
        bodies.append(raw[skip:])
    block.unlink()
    with open(tmp, "wb") as out:
        out.write(head)
        for k in range(n_blocks):
            out.write(bodies[k % len(bodies)])
    with open(tmp, "r+b") as f:  # the record count: every block's records
        f.seek(236)
        f.write(f"{n_blocks * BLOCK_S:<8d}".encode())
    tmp.rename(path)
    return path


def measure(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd`` in a child that measures its own children: peak RSS (GB) and wall time (s)."""
    probe = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
             "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
             "print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t, "
             "'peak_gb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20}))")
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r['rc']}): {out.stderr[-2000:]}")
    return r


def _vm(pid: int, field: str) -> float:
    """A ``/proc/PID/status`` memory field (``VmHWM``: peak RSS, ``VmRSS``: current) in GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _children(pid: int) -> list[str]:
    """The running child processes of ``pid`` (an exited child not yet reaped, a zombie, holds no memory)."""
    def alive(child: str) -> bool:
        try:
            return "State:\tZ" not in Path(f"/proc/{child}/status").read_text()
        except FileNotFoundError:
            return False

    return [c for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if alive(c)]


def serve_store(work: Path, clef: str, ck: Path) -> Path:
    """The store ``clef serve`` needs: one 10-minute recording embedded with ``ck`` (its model stored)."""
    folder = work / "serve_archive"
    folder.mkdir()
    write_long_edf(folder / "eeg_10min.edf", BLOCK_S / 3600)
    store = work / "serve_store"
    subprocess.run([clef, "embed", str(folder), "--checkpoint", str(ck), "--store", str(store), "--workers", "1",
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return store


def measure_upload(clef: str, store: Path, ck: Path, edf: Path, work: Path) -> dict[str, float]:
    """``POST /embed`` of ``edf`` to a fresh ``clef serve``: the service's peak RSS (GB), idle RSS, wall time (s)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = secrets.token_urlsafe(16)
    spool = work / "serve_tmp"  # the service's upload spool and copy, deleted with the working folder
    spool.mkdir(exist_ok=True)
    env = {**os.environ, "CLEF_API_KEYS": key, "TMPDIR": str(spool)}
    limit_mb = edf.stat().st_size / 2**20 + 64
    log = work / f"serve_{edf.stem}.log"
    proc = subprocess.Popen([clef, "serve", str(store), "--checkpoint", str(ck), "--port", str(port),
                             "--max-upload-mb", f"{limit_mb:.0f}", "--reload-seconds", "0"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"clef serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"clef serve not ready: {log.read_text()[-2000:]}") from None
            time.sleep(0.5)
        # The explorer's drawing ahead runs in a child of the service (the store's one recording):
        # let it finish, so that the upload is the only work and the service the only process.
        while _children(proc.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"clef serve's child processes {_children(proc.pid)} did not exit")
            time.sleep(1)
        idle = _vm(proc.pid, "VmHWM")
        t = time.perf_counter()
        with open(edf, "rb") as f:  # httpx sends the multipart body from the open file, a chunk at a time
            r = httpx.post(url + "/embed", files={"file": (edf.name, f, "application/octet-stream")},
                           headers={"X-API-Key": key}, timeout=None)
        seconds = time.perf_counter() - t
        peak = _vm(proc.pid, "VmHWM")
        if r.status_code != 200:
            raise RuntimeError(f"POST /embed answered {r.status_code}: {r.text[:2000]}")
        children = _children(proc.pid)
        if children:  # a live worker process would hold memory this measure does not see
            raise RuntimeError(f"clef serve has child processes {children}: the service's peak is not one process's")
        client = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # this process, the client
        return {"rc": 0, "seconds": seconds, "peak_gb": peak, "idle_gb": idle, "client_peak_gb": client,
                "n_windows": r.json()["n_windows"]}
    finally:
        stop(proc, 30)


WHOLE = """
import sys
import numpy as np
from clef.embedding import Embedder
from tokenizer import read_recording
emb = Embedder(sys.argv[1])
np.save(sys.argv[3], emb.embed(read_recording(sys.argv[2], emb.contract)).vector)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", default="24,72", help="Lengths of the recordings, comma-separated.")
    ap.add_argument("--reference-hours", default="24", help="Lengths also run on the whole-file path ('' for none).")
    ap.add_argument("--paths", default="embed-one,embed,tokenize",
                    help="Streamed paths to measure (embed-one, embed, tokenize, upload).")
    ap.add_argument("--jobs", type=int, default=1, help="Commands run at the same time.")
    ap.add_argument("--out", type=Path, default=None, help="Folder of the temporary working folder.")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    import numpy as np

    from clef.factory import save_random_checkpoint

    clef = str(Path(sys.executable).with_name("clef"))
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - {"embed-one", "embed", "tokenize", "upload"})
    if unknown:
        raise SystemExit(f"--paths: unknown {unknown}; expected embed-one, embed, tokenize or upload")
    reference = {float(h) for h in args.reference_hours.split(",") if h}
    with tempfile.TemporaryDirectory(dir=args.out) as tmpd:
        work = Path(tmpd)
        ck = save_random_checkpoint("tiny", work / "ck_tiny")
        jobs: list[tuple[float, str, Any]] = []
        store: Path | None = None
        for hours in (float(h) for h in args.hours.split(",")):
            folder = work / f"archive_{hours:g}h"
            folder.mkdir()
            t0 = time.perf_counter()
            edf = write_long_edf(folder / f"eeg_{hours:g}h_256Hz.edf", hours)
            print(f"{edf.name}: {edf.stat().st_size / 2**20:.0f} MB written in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            runs = {
                "embed-one": [clef, "embed-one", str(edf), "--checkpoint", str(ck), "--out",
                              str(work / f"vec_{hours:g}h.npy")],
                "embed": [clef, "embed", str(folder), "--checkpoint", str(ck), "--store", str(work / f"store_{hours:g}"),
                          "--workers", "1", "--no-progress"],
                "tokenize": [clef, "tokenize", "--archive", str(folder), "--checkpoint", str(ck / "tokenizer"),
                             "--out", str(work / f"tokens_{hours:g}"), "--cache", str(work / f"cache_{hours:g}")],
            }
            if "upload" in paths:
                store = store or serve_store(work, clef, ck)
                runs["upload"] = lambda edf=edf, store=store: measure_upload(clef, store, ck, edf, work)
            jobs += [(hours, name, runs[name]) for name in paths]
            if hours in reference:
                jobs.append((hours, "whole-file (before)",
                             [sys.executable, "-c", WHOLE, str(ck), str(edf), str(work / f"ref_{hours:g}h.npy")]))

        def run(job: tuple[float, str, Any]) -> dict[str, object]:
            try:
                row = {"hours": job[0], "path": job[1], **(job[2]() if callable(job[2]) else measure(job[2]))}
            except Exception as exc:  # said at once: the pool raises it only after the remaining jobs ran
                print(f"{job[0]:g} h {job[1]} failed: {exc}", flush=True)
                raise
            print(json.dumps(row), flush=True)
            return row

        with ThreadPoolExecutor(max_workers=args.jobs) as ex:
            rows = list(ex.map(run, jobs))
        for row in rows:
            vec, ref = work / f"vec_{row['hours']:g}h.npy", work / f"ref_{row['hours']:g}h.npy"
            if row["path"] == "embed-one" and vec.exists() and ref.exists():
                a, b = np.load(vec), np.load(ref)
                row["cosine"] = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    print(f"\n== Peak RSS of reading a 19-channel 256 Hz recording, tiny model, {os.cpu_count()} CPUs")
    print(f"{'hours':>5s}  {'path':24s} {'peak RSS':>9s} {'wall':>8s}  cosine vs whole-file")
    for r in rows:
        cos = f"{r['cosine']:.6f}" if "cosine" in r else ""
        if "idle_gb" in r:
            cos = f"(service idle after start: {r['idle_gb']:.2f} GB; client: {r['client_peak_gb']:.2f} GB)"
        print(f"{r['hours']:5g}  {r['path']:24s} {r['peak_gb']:7.2f} GB {r['seconds']:7.0f} s  {cos}")
    print(f"(--jobs {args.jobs}: that many commands ran at the same time)")


if __name__ == "__main__":
    main()
