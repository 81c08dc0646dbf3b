"""Portable numerics: the pins, and that a process gets them before torch computes."""

import os
import subprocess
import sys
import textwrap

import pytest

from toonvae import numerics

# A script that imports torch first, then pins: the pin must start it again.
LATE_PIN = textwrap.dedent("""
    import os, sys
    import torch
    from toonvae.numerics import pin
    print("started with", os.environ.get("ATEN_CPU_CAPABILITY"), flush=True)
    pin(sys.argv[1], int(sys.argv[2]))
    print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(),
          os.environ.get("MKL_CBWR"))
""")


def run_script(tmp_path, mode, threads=0, env=None, prefix=()):
    script = tmp_path / "late_pin.py"
    script.write_text(LATE_PIN)
    proc = subprocess.run([*prefix, sys.executable, str(script), mode, str(threads)],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_portable_pins_every_kernel_library_and_the_threads():
    pins = numerics.pins("portable")
    assert pins["ATEN_CPU_CAPABILITY"] == "avx2" and pins["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert pins["MKL_CBWR"] == "COMPATIBLE" and pins["OPENBLAS_CORETYPE"] == "Haswell"
    assert {pins[v] for v in numerics.THREAD_VARIABLES} == {"2"}
    assert numerics.pins("portable", threads=6)["OMP_NUM_THREADS"] == "6"
    assert numerics.pins("native") == {}
    with pytest.raises(ValueError):
        numerics.pins("fast")


def test_thread_count_is_fixed_in_portable_mode_and_follows_the_cores_in_native():
    assert numerics.thread_count("portable", 0) == 2
    assert numerics.thread_count("portable", 0, processes=2) == 1
    assert numerics.thread_count("portable", 3) == 3
    assert numerics.thread_count("native", 0) == 0  # torch's choice: one per core
    assert numerics.thread_count("native", 0, processes=2) == max(1, os.cpu_count() // 2)


@pytest.mark.slow  # over 5 s
def test_a_process_that_loaded_torch_first_starts_again_with_the_pins(tmp_path):
    # The caller's environment claims a CPU without AVX2; portable overrides it.
    lines = run_script(tmp_path, "portable", env={"ATEN_CPU_CAPABILITY": "default"})
    assert lines == ["started with default", "started with avx2", "AVX2 2 COMPATIBLE"]


@pytest.mark.slow  # over 5 s
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs taskset")
def test_portable_threads_do_not_follow_the_cores(tmp_path):
    lines = run_script(tmp_path, "portable", prefix=("taskset", "-c", "0"))
    assert lines[-1] == "AVX2 2 COMPATIBLE"


@pytest.mark.slow  # over 5 s
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs taskset")
def test_native_threads_and_kernels_are_what_the_process_finds(tmp_path):
    lines = run_script(tmp_path, "native", prefix=("taskset", "-c", "0"),
                       env={"ATEN_CPU_CAPABILITY": "default"})
    assert lines == ["started with default", "DEFAULT 1 None"]


def test_stage_scripts_pin_before_anything_imports_torch_or_numpy():
    # The pin runs first in the stage scripts, so they start once, not twice.
    code = ("import sys; import toonvae.stage; "
            "print(sorted({'torch', 'numpy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("stage", ["train", "evaluate", "render_figures"])
def test_stages_that_compute_pin_first(stage):
    import ast
    from pathlib import Path

    body = ast.parse((Path(__file__).parents[1] / "stages" / f"{stage}.py").read_text()).body
    first, second = body[1], body[2]  # after the docstring
    assert isinstance(first, ast.ImportFrom) and first.module == "toonvae.stage"
    assert ast.unparse(second) == "pin_numerics()"


# A stage's shape: pin, import, run(main).
STAGE = textwrap.dedent("""
    import gc
    from toonvae.stage import pin_numerics, run
    pin_numerics()
    collecting_while_importing = gc.isenabled()
    import numpy
    def main():
        print(collecting_while_importing, gc.isenabled(), gc.get_freeze_count())
    run(main)
""")


def test_a_stage_keeps_the_collector_off_its_imports_and_on_for_its_work(tmp_path):
    # stage.run's second off every stage process: no collector passes while the libraries
    # import, their objects frozen out of later passes; main's garbage is collected as usual.
    script = tmp_path / "stage.py"
    script.write_text(STAGE)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    importing, working, frozen = proc.stdout.split()
    assert (importing, working) == ("False", "True")
    assert int(frozen) > 1000  # numpy's objects, at least
