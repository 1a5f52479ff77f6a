"""The emulated AVX2-only CPU of the benchmarks (``benchmarks/harness.py``) reaches vLLM's choices.

vLLM's CPU backend picks its kernels from ``torch.cpu``'s hardware checks, which the instruction-set
variables do not change; ``benchmarks/avx2_site/sitecustomize.py`` makes them answer as on an
AVX2-only CPU, in every Python process started with :func:`harness.slow_cpu_environ`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from harness import SLOW_CPU_ENV, slow_cpu_environ  # noqa: E402

CHECKS = "import torch.cpu as c; print(c._is_avx512_supported(), c._is_avx512_bf16_supported(), c._is_amx_tile_supported())"


def python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_emulated_cpu_has_no_avx512_or_amx_for_vllm_and_keeps_the_variables() -> None:
    env = slow_cpu_environ({"PATH": "/usr/bin:/bin", "PYTHONPATH": "/elsewhere"})
    assert {k: env[k] for k in SLOW_CPU_ENV} == SLOW_CPU_ENV
    assert env["PYTHONPATH"].split(":") == [str(BENCHMARKS / "avx2_site"), "/elsewhere"]
    assert python(CHECKS, slow_cpu_environ()) == "False False False"
    assert (
        python("import torch; print(torch.backends.cpu.get_cpu_capability())", slow_cpu_environ()) == "AVX2"
    )


def test_a_process_that_never_imports_torch_does_not_load_it() -> None:
    assert python("import sys; print('torch' in sys.modules)", slow_cpu_environ()) == "False"


def test_the_harness_runs_a_command_on_the_emulated_cpu() -> None:
    command = [sys.executable, str(BENCHMARKS / "harness.py"), sys.executable, "-c", CHECKS]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False False False"
