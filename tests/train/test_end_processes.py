"""``end_processes`` leaves a ``torch.distributed`` group the trainer did not set up to its owner."""

from __future__ import annotations

import os
import subprocess
import sys

OWNED_ELSEWHERE = """
import socket
import torch.distributed as dist
from arpo.train.loop import end_processes

with socket.socket() as s:  # a free port
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
# one process, no launcher: as vLLM's in-process engine makes its group next to a single trainer
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
end_processes()
assert dist.is_initialized(), "end_processes destroyed a group accelerate did not set up"
dist.destroy_process_group()  # what the owner does at exit: it fails on a destroyed group
print("left alone")
"""


def test_a_group_accelerate_did_not_set_up_is_left_to_its_owner():
    launcher = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in launcher}  # a single process
    done = subprocess.run(
        [sys.executable, "-c", OWNED_ELSEWHERE], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "left alone" in done.stdout
