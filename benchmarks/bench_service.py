#!/usr/bin/env python3
"""The door service under load: ``POST /v1/verify`` with 1.5 s clips from 1, 4 and 16 concurrent clients.

Starts ``speechbrain-ext serve`` on 127.0.0.1 (any free port) with a fresh database, enrols one speaker through the
API, then, for each client count, runs that many client threads for ``--seconds``, each sending claims one after
the other over its own keep-alive connection. Every claim is a distinct file (a counter written into the first
samples), so the replay check runs and passes as it would at a real door. Printed per client count: claims, claims
per second, p50 / p95 / p99 latency (ms, client side: upload, decode, embed, score, audit write, answer) and the
number of answers other than 200. Next to them, measured in the same run on the same clip: the bare in-process
embedding time (``Verifier.embed`` on the samples, the model alone) with the same torch threads as one worker.

Model: an exported folder (``--model``), else the demo ECAPA of hparams/pretrain_demo.yaml with random weights
(``bench_embeddings.make_model``; latency does not depend on the weights). CPU.

Usage::

    python benchmarks/bench_service.py [--model FOLDER] [--seconds 30] [--clients 1 4 16] [--workers 1]
                                       [--threads 1] [--output_json FILE]
"""
import argparse
import http.client
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_embeddings import make_model, timings  # noqa: E402
from speechbrain_ext.io_utils import write_json  # noqa: E402
from speechbrain_ext.access.service import ensure_tokens, start_subprocess  # noqa: E402
from speechbrain_ext.access.verifier import Verifier  # noqa: E402

BOUNDARY = "speechbrain-ext-bench"


def clip_wav(seconds: float, seed: int) -> bytes:
    """A 16 kHz 16-bit WAV of ``seconds`` of noise."""
    buffer = io.BytesIO()
    sf.write(buffer, (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype("float32"),
             16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def multipart(fields: Dict[str, str], files: List[tuple]) -> bytes:
    """A multipart/form-data body of text ``fields`` and ``(field, filename, bytes)`` files."""
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts += [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
              f'Content-Type: audio/wav\r\n\r\n'.encode() + data + b"\r\n" for field, name, data in files]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post(connection: http.client.HTTPConnection, path: str, token: str, body: bytes) -> int:
    connection.request("POST", path, body, {"Authorization": f"Bearer {token}",
                                            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    response = connection.getresponse()
    response.read()
    return response.status


def load(port: int, token: str, clip: bytes, clients: int, seconds: float) -> dict:
    """``clients`` threads sending distinct claims for ``seconds``: latencies (s) of the 200s, error count."""
    latencies, errors, lock, counter = [], [0], threading.Lock(), iter(range(1 << 62))
    deadline = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < deadline:
            with lock:
                n = next(counter)
            data = bytearray(clip)
            data[44:52] = n.to_bytes(8, "little")  # the first 4 samples: a distinct file, the same audio
            body = multipart({"speaker": "bench"}, [("audio", "claim.wav", bytes(data))])
            start = time.perf_counter()
            try:
                status = post(connection, "/v1/verify", token, body)
            except (OSError, http.client.HTTPException):
                status = None
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = 1000 * np.array(latencies) if latencies else np.array([np.nan])
    return {"clients": clients, "claims": len(latencies), "claims_per_s": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="exported model folder (default: random demo ECAPA)")
    p.add_argument("--seconds", type=float, default=30.0, help="load time per client count (default: 30)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="client counts (default: 1 4 16)")
    p.add_argument("--workers", type=int, default=1, help="service worker processes (default: 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker, and for the bare embedding")
    p.add_argument("--clip_seconds", type=float, default=1.5, help="claim length (default: 1.5 s)")
    p.add_argument("--output_json", default=None, help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else make_model(tmp)
        if not (model / "threshold.json").is_file() and not args.model:
            (model / "threshold.json").write_text('{"threshold": 0.5}')  # any value: decisions do not change timing
        clip = clip_wav(args.clip_seconds, 0)
        with Verifier(model, tmp / "bare.db") as verifier:
            samples = torch.from_numpy(sf.read(io.BytesIO(clip), dtype="float32")[0])
            bare = float(np.median(timings(lambda: verifier.embed(samples), 30))) * 1000
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        process, url = start_subprocess(["--model", str(model), "--db", str(tmp / "vp.db"), "--port", "0",
                                         "--workers", str(args.workers)], tmp / "serve.log", env=env)
        try:
            tokens = ensure_tokens(str(tmp / "vp.db"))
            port = int(url.rsplit(":", 1)[1])
            enrolment = multipart({"speaker": "bench"}, [("audio", f"e{i}.wav", clip_wav(2.0, 100 + i))
                                                         for i in range(3)])
            assert post(http.client.HTTPConnection("127.0.0.1", port, timeout=120), "/v1/enroll", tokens.admin,
                        enrolment) == 200, "enrolment failed"
            load(port, tokens.door, clip, 1, min(2.0, args.seconds))  # warm-up
            rows = [load(port, tokens.door, clip, c, args.seconds) for c in args.clients]
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(f"model {model.name if args.model else 'demo ECAPA (random weights)'}, {args.clip_seconds:g} s clips, "
          f"{args.workers} worker(s) x {args.threads} thread(s), {args.seconds:g} s per client count, "
          f"{os.cpu_count()} CPUs")
    print(f"bare in-process embedding (Verifier.embed, same clip, {args.threads} thread(s)): {bare:.1f} ms median")
    print("| clients | claims | claims/s | p50 ms | p95 ms | p99 ms | errors | p50 / bare |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['claims']} | {r['claims_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['errors']} | {r['p50_ms'] / bare:.2f} |")
    if args.output_json:
        write_json(args.output_json, {"bare_embed_ms": bare, "workers": args.workers, "threads": args.threads,
                                      "clip_seconds": args.clip_seconds, "seconds": args.seconds, "rows": rows})


if __name__ == "__main__":
    main()
