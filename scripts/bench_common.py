"""What scripts/bench.py and scripts/bench_sweep.py share: the experiments measured, the toy sizes of --quick,
one measurement in a child process, summaries, and the machine's description."""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"  # the child processes run its --child measurements
EXPERIMENTS = {"tf": "experiments/impala-baseline.yaml", "torch": "experiments/impala-baseline-torch.yaml",
               "ppg": "experiments/ppg.yaml"}
PACKAGES = ("ray", "procgen-mirror", "tensorflow", "torch", "numpy", "gymnasium")


def sizes(quick):
    """The baseline's batch geometry (Procgen paper PPO), or a toy one for --quick."""
    if quick:
        return {"num_envs": 8, "steps": 40, "train_batch": 256, "minibatch": 128, "epochs": 1, "model": {"depths": [4, 8, 8], "dense_size": 32}}
    return {"num_envs": 64, "steps": 500, "train_batch": 16384, "minibatch": 2048, "epochs": 3, "model": {}}


def quick_overrides(framework, experiment=None):
    """The baseline (or `experiment`, a key of EXPERIMENTS) shrunk to --quick's toy sizes."""
    s = sizes(True)
    model = {"tf": "impala_cnn_tf", "ppg": "ppg_impala_cnn_torch"}.get(experiment or framework, "impala_cnn_torch")
    extra = [f"aux_minibatch_size={s['minibatch']}"] if experiment == "ppg" else []
    return [f"train_batch_size={s['train_batch']}", f"minibatch_size={s['minibatch']}", "num_epochs=1",
            f"num_envs_per_env_runner={s['num_envs']}", "num_env_runners=0", "rollout_fragment_length=auto",
            f"model.custom_model={model}", f"model.custom_model_config={json.dumps(s['model'])}", *extra]


def run_child(args, what, env=None, **kw):
    """One measurement in a fresh process: {"steps_per_second": ..., plus phase_*_s for full training, plus
    tf_onednn (1.0 or 0.0: whether TF's oneDNN kernels were on) for a TF child}.

    env: variables set in that process's environment on top of this one's (a sweep variant's)."""
    cmd = [sys.executable, str(BENCH), "--child", what, "--iterations", str(args.iterations)]
    if args.quick:
        cmd.append("--quick")
    for key, value in kw.items():
        for item in value if isinstance(value, list) else [value]:
            cmd += [f"--{key}", str(item)]
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    env.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    figures = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if line.startswith(("steps_per_second: ", "phase_", "tf_onednn: ")))
    if proc.returncode != 0 or "steps_per_second" not in figures:
        raise RuntimeError(f"{what} {kw} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {key: float(value) for key, value in figures.items()}


def summarize(runs, **fields):
    """A row from repeated runs: median, min, max of steps/s, and the phases of the median run."""
    rates = [run["steps_per_second"] for run in runs]
    median = statistics.median(rates)
    row = {**fields, "median": median, "min": min(rates), "max": max(rates)}
    typical = min(runs, key=lambda run: abs(run["steps_per_second"] - median))
    phases = {key[len("phase_"):-len("_s")]: value for key, value in typical.items() if key.startswith("phase_")}
    if phases:
        row["phases_s"] = phases
    if "tf_onednn" in typical:
        row["tf_onednn"] = bool(typical["tf_onednn"])  # TF's oneDNN kernels were on in that run
    return row


def gpu_count():
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def machine():
    from importlib import metadata

    cpu = cpu_description()
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip() \
        if _which("nvidia-smi") else ""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "gpu": gpu or "none", "python": platform.python_version(),
            "packages": versions, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_before": os.getloadavg()}


# The vector extensions that set a CPU's speed for TF/torch convolutions: two 2-core "AMD EPYC" VMs measured
# 423 (avx512f, avx512_bf16) and 77.7 (avx2 only) steps/s for the same TF compute ceiling.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo=None):
    """'MODEL NAME (family F model M; avx2 avx512f ...)' from /proc/cpuinfo: the model name alone does not tell
    hosts apart (cloud VMs often report just 'AMD EPYC'). Falls back to platform.processor() without it."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    vector = " ".join(f for f in VECTOR_FLAGS if f in flags) or "no avx2"
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    return f"{name} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}; {vector})"


def _which(name):
    return any((Path(p) / name).exists() for p in os.environ.get("PATH", "").split(os.pathsep))
