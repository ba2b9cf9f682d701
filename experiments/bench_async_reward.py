"""Latency of an async reward that waits on I/O, called the way TRL's GRPO/RLOO trainers call async rewards.

    python experiments/bench_async_reward.py [--requests 8] [--delay_ms 50] [--batches 20]

A local HTTP server answers each request after ``delay_ms`` (a remote judge or solver). The async reward sends one
request per completion, concurrently; it runs through rlrefine's reward wrapper (``rl.build_rewards``) on TRL's own
daemon event loop, as in training. Beside it, the same requests one after another (a sync reward). Prints one JSON
line: seconds per batch for each, their ratio to one request's latency, and what rlrefine's wrapper adds; the
numbers go in README.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REWARD = """
import asyncio

import httpx

URL = "{url}"
CLIENTS = {{}}  # one connection pool per event loop (TRL keeps one loop for the whole run): made once, reused


async def remote_judge(prompts, completions, **kwargs):
    client = CLIENTS.setdefault(asyncio.get_running_loop(), httpx.AsyncClient())
    replies = await asyncio.gather(*[client.post(URL, json={{"completion": c}}) for c in completions])
    return [r.json()["score"] for r in replies]


SYNC = httpx.Client()


def remote_judge_sync(prompts, completions, **kwargs):
    return [SYNC.post(URL, json={{"completion": c}}).json()["score"] for c in completions]
"""


def serve(delay: float) -> ThreadingHTTPServer:
    class Judge(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body leave at once, as from a production server

        def do_POST(self):  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers["content-length"]))
            time.sleep(delay)
            body = json.dumps({"score": 1.0}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.request_queue_size = 128  # the default backlog of 5 drops concurrent connects (1 s SYN retry)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="completions per batch, one request each")
    parser.add_argument("--delay_ms", type=float, default=50.0)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()

    from trl.trainer.utils import shutdown_event_loop_in_daemon, start_event_loop_in_daemon

    from rlrefine.training.rl import build_rewards

    server = serve(args.delay_ms / 1000)
    url = f"http://127.0.0.1:{server.server_address[1]}/judge"
    with tempfile.TemporaryDirectory() as folder:
        plugin = Path(folder) / "judge.py"
        plugin.write_text(REWARD.format(url=url))
        (judge, judge_sync), _ = build_rewards(
            [{"name": f"{plugin}:remote_judge"}, {"name": f"{plugin}:remote_judge_sync"}], "hops=1"
        )
    thread, loop, ready = start_event_loop_in_daemon()
    ready.wait()
    completions = [f"Q1: question {i} ?" for i in range(args.requests)]

    def batch_async(reward=judge, n=args.requests) -> None:
        asyncio.run_coroutine_threadsafe(reward(prompts=None, completions=completions[:n]), loop).result()

    def timed(run) -> float:
        run()  # warm-up: connections, imports
        start = time.perf_counter()
        for _ in range(args.batches):
            run()
        return (time.perf_counter() - start) / args.batches

    single = timed(lambda: judge_sync(None, completions[:1]))
    single_async = timed(lambda: batch_async(n=1))
    async_s = timed(batch_async)
    raw_s = timed(lambda: batch_async(judge.func))  # the plugin's own function, without rlrefine's wrapper
    sync_s = timed(lambda: judge_sync(None, completions))
    shutdown_event_loop_in_daemon(thread, loop)
    server.shutdown()
    report = {
        "requests_per_batch": args.requests,
        "delay_ms": args.delay_ms,
        "one_request_s": round(single, 4),
        "one_async_request_s": round(single_async, 4),
        "async_batch_s": round(async_s, 4),
        "async_batch_unwrapped_s": round(raw_s, 4),
        "sync_batch_s": round(sync_s, 4),
        "async_over_one_request": round(async_s / single, 2),
        "async_over_one_async_request": round(async_s / single_async, 2),
        "sync_over_one_request": round(sync_s / single, 2),
        "wrapper_overhead_ms": round(1000 * (async_s - raw_s), 2),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
