"""An Accelerate tracker that appends one JSON object per `accelerator.log` call to a file: works offline,
needs no service, and is trivially parsed for loss curves."""

from __future__ import annotations

import json
import os
import time

from accelerate.tracking import GeneralTracker, on_main_process

__all__ = ["JSONLTracker", "read_jsonl"]


class JSONLTracker(GeneralTracker):
    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str):
        super().__init__()
        self.run_name = run_name
        os.makedirs(logging_dir, exist_ok=True)
        self.path = os.path.join(logging_dir, f"{run_name}.jsonl")

    @property
    def tracker(self):
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict):
        self._write({"type": "config", "config": values})

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs):
        self._write({"type": "metrics", "step": step, "time": time.time(), **values})

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")


def read_jsonl(path: str) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
