"""Load test of the Gradio Spaces in ``spaces/`` over loopback, through their API with `gradio_client`.

For each Space: start ``spaces/<space>/app.py`` in a subprocess on a free loopback port (offline, its default
bundled checkpoint), then

1. **load**: ``--clients`` threads, each with its own `gradio_client.Client`, send ``--requests`` requests one after
   the other (cheap arguments: few new tokens, few Euler steps, one image); every request's latency and every
   failure is recorded;
2. **burst**: one client submits ``max_size + concurrency + --burst-extra`` requests at once, more than the Space's
   queue holds; each must either succeed or get Gradio's queue-full answer (`gradio_client.utils.QueueError`,
   "Queue is full! Please try again.", from the server's HTTP 503), never another error; the busy answers are
   counted.

It writes ``docs/results/spaces_load.md``; every number in it is measured by this script.

    PYTHONPATH=src python benchmarks/load_test_spaces.py [--clients 8] [--requests 25] [--spaces ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, environment, environment_lines, loadavg, now  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACES_DIR = ROOT / "spaces"
REPORT = ROOT / "docs" / "results" / "spaces_load.md"
BOOT = SPACES_DIR / "crate-image-classification" / "examples" / "ankle_boot.png"
QUEUE_SIZE_ENV = "WHITEBOX_SPACE_QUEUE_SIZE"  # read by every app.py (see its build_demo)
CONCURRENCY_ENV = "WHITEBOX_SPACE_CONCURRENCY"
BUSY_MESSAGE = "Queue is full"  # gradio_client's QueueError text for the server's 503 "Queue is full. Max size is …"

# The loopback requests must not go through a proxy the environment may set.
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, [os.environ.get(_name), "127.0.0.1", "localhost"]))


def request_args(space: str, index: int) -> tuple:
    """The positional API arguments of request ``index``: cheap, and varied so that no two are identical."""
    if space == "crate-image-classification":  # (image,)
        from gradio_client import handle_file

        return (handle_file(str(BOOT)),)
    if space == "text-generation":  # (prompt, max_new_tokens, temperature, seed)
        return ("The :mod:`os` module", 8, 0.8, index)
    if space == "image-generation":  # (class_id, guidance_scale, steps, seed, num_images)
        return (index % 10, 3.0, 4, index, 1)
    if space == "text-to-3d":  # (prompt, image, guidance_scale, steps, seed, octree_depth): a held-out render
        from gradio_client import handle_file

        return ("", handle_file(str(SPACES_DIR / space / "examples" / "chair.png")), 3.0, 2, index, 4)
    if space == "motion-from-head":  # (clip, upload, steps, guidance, floor_height, seed, start_s, duration_s)
        from gradio_client import handle_file

        # the example head trajectory (no BVH cache needed), 1.1 s (33 frames) of it, few steps, no guidance
        return ("01_01", handle_file(str(SPACES_DIR / space / "examples" / "01_01_head_first_5s.csv")), 2, "off",
                0.0, index, 0.0, 1.1)
    if space == "image-to-3d":  # (image, steps, guidance_scale, seed, occupancy_threshold): a held-out render
        from gradio_client import handle_file

        return (handle_file(str(SPACES_DIR / space / "examples" / "chair.png")), 2, 3.0, index, 0.5)
    if space == "text-to-image":  # (prompt, guidance_scale, steps, seed, control_image, control_mode): every other
        # request with an example picture's Canny edges (the ControlNet path)
        from gradio_client import handle_file

        picture = handle_file(str(SPACES_DIR / space / "examples" / "star.png")) if index % 2 else None
        return ("Yellow star", 3.0, 2, index, picture, "Image: compute its Canny edges")
    raise ValueError(f"`space` must be one of {sorted(API_NAMES)}, got {space!r}")


API_NAMES = {"crate-image-classification": "/classify", "text-generation": "/generate",
             "image-generation": "/generate", "text-to-3d": "/generate", "motion-from-head": "/estimate",
             "image-to-3d": "/reconstruct", "text-to-image": "/generate"}
CONCURRENCY = {"crate-image-classification": 2, "text-generation": 1, "image-generation": 1, "text-to-3d": 1,
               "motion-from-head": 1, "image-to-3d": 1, "text-to-image": 1}  # the apps' defaults


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Space at {url} exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Space at {url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.5)


@contextlib.contextmanager
def space_process(space: str, *, queue_size: int | None = None, concurrency: int | None = None,
                  log_path: Path | None = None, timeout: float = 300.0):
    """Run ``spaces/<space>/app.py`` on a free loopback port in a subprocess (offline, no analytics, one torch
    thread per op); yield its URL; terminate it afterwards."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", GRADIO_SERVER_NAME="127.0.0.1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    for name, value in ((QUEUE_SIZE_ENV, queue_size), (CONCURRENCY_ENV, concurrency)):
        if value is not None:
            env[name] = str(value)
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115  (closed below)
    process = subprocess.Popen([sys.executable, str(SPACES_DIR / space / "app.py"), "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, timeout, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not subprocess.DEVNULL:
            log.close()


def new_client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False)


@dataclass
class LoadResult:
    clients: int
    requests: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)  # of the successful requests
    failures: list[str] = field(default_factory=list)  # one line per failed request

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q))


def drive(url: str, space: str, clients: int = 8, requests: int = 25, timeout: float = 600.0) -> LoadResult:
    """``clients`` threads, each with its own `Client`, send ``requests`` requests one after the other."""
    api_name = API_NAMES[space]
    connected = [new_client(url) for _ in range(clients)]  # connecting (GET /config, /info) is not timed
    lock = threading.Lock()
    latencies, failures = [], []
    start = threading.Barrier(clients)

    def worker(number: int, client) -> None:
        start.wait()
        for request in range(requests):
            index = number * requests + request
            began = time.perf_counter()
            try:
                client.submit(*request_args(space, index), api_name=api_name).result(timeout=timeout)
            except Exception as error:  # noqa: BLE001  (every failure is recorded, none may pass silently)
                with lock:
                    failures.append(f"client {number} request {request}: {type(error).__name__}: {error}")
            else:
                with lock:
                    latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker, number, client) for number, client in enumerate(connected)]:
            future.result()
    result = LoadResult(clients, requests, time.perf_counter() - began, latencies, failures)
    for client in connected:
        client.close()
    return result


@dataclass
class BurstResult:
    size: int
    succeeded: int
    busy: int
    busy_messages: set[str]
    other_errors: list[str]


def burst(url: str, space: str, size: int, timeout: float = 600.0) -> BurstResult:
    """Submit ``size`` requests at once from one client; sort the answers into successes, queue-full answers and
    anything else."""
    from gradio_client.utils import QueueError

    client = new_client(url)
    jobs = [client.submit(*request_args(space, index), api_name=API_NAMES[space]) for index in range(size)]
    succeeded, busy, messages, others = 0, 0, set(), []
    for number, job in enumerate(jobs):
        try:
            job.result(timeout=timeout)
        except QueueError as error:
            busy += 1
            messages.add(str(error))
        except Exception as error:  # noqa: BLE001
            others.append(f"request {number}: {type(error).__name__}: {error}")
        else:
            succeeded += 1
    client.close()
    return BurstResult(size, succeeded, busy, messages, others)


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.0f} ms"


def write_report(rows: list[dict], args, command: str, env: dict, path: Path) -> None:
    report = {"environment": env, "command": command, "date": now()}
    lines = [
        "# Load test of the Gradio Spaces",
        "",
        f"Each Space (`spaces/<name>/app.py`, its bundled checkpoint) ran in its own process on a loopback port; "
        f"{args.clients} threads, each with its own `gradio_client.Client`, sent {args.requests} requests one after "
        f"the other ({args.clients * args.requests} per Space) through the Space's API. Latency is from submitting a "
        "request to holding its result (files included), queueing time included. Then one client submitted a burst "
        "of `max_size + concurrency + "
        f"{args.burst_extra}` requests at once: each must succeed or get Gradio's queue-full answer, never "
        "another error. Generated by `benchmarks/load_test_spaces.py`; every number below is measured by it.",
        "",
        "**Machine note**: 2 CPU cores, shared with other jobs (other agents and a training run) while this ran; "
        "the latencies are those of a loaded machine, not of a free CPU Space.",
        "",
        "Requests (cheap on purpose): classification of `examples/ankle_boot.png` (prediction, saliency map, "
        "per-layer diagnostics plot); text generation of 8 new tokens at temperature 0.8; image generation of one "
        "image with 4 Euler steps, guidance 3.",
        "",
        "## Load",
        "",
        f"With {args.clients} clients and a Space running `concurrency` requests at a time, a request waits behind "
        "up to the other clients' requests, so its latency is mostly queueing: about clients ÷ throughput.",
        "",
        "| Space | concurrency / max_size | requests | failed | p50 | p95 | max | throughput |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        load = row["load"]
        lines.append(
            f"| {row['space']} | {row['concurrency']} / {row['queue_size']} | {load.clients}×{load.requests} = "
            f"{load.clients * load.requests} | {len(load.failures)} | {seconds(load.percentile(50))} | "
            f"{seconds(load.percentile(95))} | {seconds(max(load.latencies_s))} | {load.throughput:.2f} req/s |"
            if load.latencies_s else
            f"| {row['space']} | {row['concurrency']} / {row['queue_size']} | {load.clients * load.requests} | "
            f"{len(load.failures)} | – | – | – | – |")
    lines += [
        "",
        "## Burst beyond the queue",
        "",
        "`busy if none finishes first` = burst − max_size − concurrency: the requests that find no place if all "
        "arrive before the first one finishes; requests finishing while the burst is still being submitted free "
        "places, so fewer may be refused.",
        "",
        "| Space | burst | succeeded | busy answers | busy if none finishes first | other errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        b = row["burst"]
        lines.append(f"| {row['space']} | {b.size} | {b.succeeded} | {b.busy} | "
                     f"{max(0, b.size - row['queue_size'] - row['concurrency'])} | {len(b.other_errors)} |")
    messages = sorted({m for row in rows for m in row["burst"].busy_messages})
    lines += ["", "The busy answer the client got: " + (", ".join(f"`{m}`" for m in messages) or "none") + ".", ""]
    problems = [(row["space"], line) for row in rows for line in row["load"].failures + row["burst"].other_errors]
    verdict = not problems and all(row["burst"].busy > 0 for row in rows)
    lines += ["## Verdict", "",
              ("**PASS**: no request failed, and every burst got busy answers and no other error." if verdict else
               "**FAIL**: see the failures below."), ""]
    if problems:
        lines += ["### Failures (first 20)", ""] + [f"* {space}: {line}" for space, line in problems[:20]] + [""]
    env["loadavg_end"] = loadavg()
    import gradio_client

    extra = [f"* gradio_client {gradio_client.__version__}; each Space process: OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', '1')}, HF_HUB_OFFLINE=1, GRADIO_ANALYTICS_ENABLED=False"]
    # the shared warning's advice names the spread columns of the other benchmarks; this report has p50/p95/max
    # The shared warning estimates other processes' load from the end-of-run load minus the driver's torch threads;
    # here the Space processes and the client threads add to it too, so only the load before the run is reported.
    environment_section = environment_lines(report, extra=extra)
    lines += [line for line in environment_section if not line.startswith("> **Warning**")]
    start_load = env["loadavg_start"].split()[0]
    while lines[-1] == "":
        lines.pop()
    lines.append("")
    lines += [f"> **Note**: before the run, other processes already loaded the {env['logical_cpus']} CPUs with a "
              f"1-minute load average of {start_load}; the timings are those of a shared machine.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=list(API_NAMES), choices=list(API_NAMES))
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    parser.add_argument("--requests", type=int, default=25, help="requests per client")
    parser.add_argument("--queue-size", type=int, default=16, help="each Space's max_size (the apps' default: 16)")
    parser.add_argument("--burst-extra", type=int, default=8,
                        help="the burst is max_size + concurrency + this many requests")
    parser.add_argument("--output", type=Path, default=REPORT)
    parser.add_argument("--log-dir", type=Path, default=None, help="keep each Space's server log here")
    args = parser.parse_args(argv)
    for name in ("clients", "requests", "queue_size", "burst_extra"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    command = command_line(argv, "benchmarks/load_test_spaces.py")
    env = environment()
    rows = []
    for space in args.spaces:
        log = args.log_dir / f"{space}.log" if args.log_dir else None
        if args.log_dir:
            args.log_dir.mkdir(parents=True, exist_ok=True)
        print(f"{space}: starting", flush=True)
        with space_process(space, queue_size=args.queue_size, concurrency=CONCURRENCY[space], log_path=log) as url:
            load = drive(url, space, args.clients, args.requests)
            print(f"{space}: {len(load.latencies_s)} ok, {len(load.failures)} failed in {load.wall_s:.1f} s", flush=True)
            size = args.queue_size + CONCURRENCY[space] + args.burst_extra
            result = burst(url, space, size)
            print(f"{space}: burst {size}: {result.succeeded} ok, {result.busy} busy, {len(result.other_errors)} other",
                  flush=True)
        rows.append(dict(space=space, queue_size=args.queue_size, concurrency=CONCURRENCY[space], load=load, burst=result))
    write_report(rows, args, command, env, args.output)
    print(f"wrote {args.output}")
    failed = any(row["load"].failures or row["burst"].other_errors or not row["burst"].busy for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
