"""`launch.py --local`: the job SageMaker would run, on this machine, without Docker or AWS.

Each host gets a directory laid out as its /opt/ml (JOB_DIR/algo-N/): input/config/ with
hyperparameters.json, resourceconfig.json and inputdataconfig.json, input/data/code/ (the unpacked
source archive), model/, checkpoints/ and output/. Its entry point starts as SageMaker starts it: in
the code directory, with the SM_* environment variables, as a process group of its own. Several
hosts form one Ray cluster over loopback; host names map to 127.0.0.1 through PROCGEN_SM_HOSTS
(SageMaker resolves algo-N itself).

SIGTERM or SIGINT to the launcher goes to each host's entry point, as `docker stop` does on a Spot
interruption; whatever is left of a host after it exits (or after the grace period) is killed with
its process group. Launching again with the same job directory keeps checkpoints/ (SageMaker
restores it from S3 after a Spot interruption), so training resumes from the newest checkpoint.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_S = float(os.environ.get("PROCGEN_SM_STOP_GRACE", "120"))  # SageMaker's: 120 s after SIGTERM
WORKER_LINGER_S = 60  # other hosts leave on their own a few seconds after the head; after this they are stopped
LEARNER_GROUP = "learner"
HOMOGENEOUS = "homogeneousCluster"  # the group name SageMaker gives a homogeneous job


def layout(plan):
    """[(host, group name, instance type)] in SageMaker's algo-N naming, and the head host."""
    hosts = []
    for g in plan.groups:
        for _ in range(g.count):
            hosts.append((f"algo-{len(hosts) + 1}", g.name or HOMOGENEOUS, g.instance_type))
    learners = [h for h, group, _ in hosts if group in (LEARNER_GROUP, HOMOGENEOUS)]
    return hosts, (learners or [hosts[0][0]])[0]


def resource_config(host, hosts):
    groups = {}
    for h, group, itype in hosts:
        groups.setdefault(group, {"instance_group_name": group, "instance_type": itype, "hosts": []})["hosts"].append(h)
    mine = next((group, itype) for h, group, itype in hosts if h == host)
    return {"current_host": host, "current_instance_type": mine[1], "current_group_name": mine[0],
            "hosts": [h for h, _, _ in hosts], "instance_groups": list(groups.values()), "network_interface_name": "lo"}


def prepare_host(root, plan, host, hosts):
    """One host's /opt/ml: config files, the unpacked code, fresh model/ and output/, checkpoints/ kept."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    rc = resource_config(host, hosts)
    (config / "hyperparameters.json").write_text(json.dumps(plan.hyperparameters, indent=2) + "\n")
    (config / "resourceconfig.json").write_text(json.dumps(rc, indent=2) + "\n")
    (config / "inputdataconfig.json").write_text(json.dumps(
        {"code": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}) + "\n")
    code = root / "input" / "data" / "code"
    shutil.rmtree(code, ignore_errors=True)
    code.mkdir(parents=True)
    with tarfile.open(plan.archive) as tar:
        tar.extractall(code, filter="data")
    for fresh in ("model", "output"):  # a new container starts with these empty
        shutil.rmtree(root / fresh, ignore_errors=True)
    for d in ("model", "output/data", "output/tensorboard", "checkpoints"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return code, rc


def host_env(root, code, plan, host, hosts, rc, cpus, gpus, extra):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    names = [h for h, _, _ in hosts]
    env.update({
        "SM_MODEL_DIR": str(root / "model"),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_INPUT_DATA_DIR": str(root / "input" / "data"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_OUTPUT_FAILURE": str(root / "output" / "failure"),
        "SM_CHANNELS": json.dumps(["code"]),
        "SM_CHANNEL_CODE": str(code),
        "SM_SOURCE_DIR": str(code),
        "SM_HOSTS": json.dumps(names),
        "SM_CURRENT_HOST": host,
        "SM_CURRENT_INSTANCE_TYPE": rc["current_instance_type"],
        "SM_HOST_COUNT": str(len(names)),
        "SM_CURRENT_HOST_RANK": str(names.index(host)),
        "SM_NUM_CPUS": str(cpus),
        "SM_NUM_GPUS": str(gpus),
        "SM_HPS": json.dumps(plan.hyperparameters),
        "SM_RESOURCE_CONFIG": json.dumps(rc),
        "TRAINING_JOB_NAME": plan.job_name,
        "PYTHONUNBUFFERED": "1",
        **extra,
    })
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pump(stream, prefix):
    for line in stream:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(plan, job_dir=None):
    """Run the job's hosts as local processes; returns the job's exit code (128+N after signal N)."""
    job_dir = Path(job_dir or ROOT / "outputs" / "sagemaker-local" / plan.job_name).resolve()
    hosts, head = layout(plan)
    machine_cpus = len(os.sched_getaffinity(0))
    cpus = max(1, machine_cpus // len(hosts))
    gpus = len(list(Path("/dev").glob("nvidia[0-9]*")))
    resumes = any(any((job_dir / h / "checkpoints" / "checkpoints").glob("checkpoint_*")) for h, _, _ in hosts)
    print(f"local: job dir {job_dir} ({'resuming: its checkpoints/ are kept' if resumes else 'new'})")
    print(f"local: {len(hosts)} host(s) on this machine, {cpus} CPU(s) each"
          f"{f', {gpus} GPU(s) on {head}' if gpus else ''}: "
          + ", ".join(f"{h} ({group}, {itype}{', Ray head' if h == head and len(hosts) > 1 else ''})" for h, group, itype in hosts),
          flush=True)
    ray_tmp = tempfile.mkdtemp(prefix="sm", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    extra = {"RAY_TMPDIR": ray_tmp, "PROCGEN_SM_RAY_PORT": str(free_port()),
             "PROCGEN_SM_HOSTS": json.dumps({h: "127.0.0.1" for h, _, _ in hosts})}
    procs, pumps, state = {}, [], {"signal": None}

    def on_signal(signum, frame):
        if state["signal"] is not None:  # a second signal: stop everything now
            for p in procs.values():
                kill_group(p, signal.SIGKILL)
            return
        state["signal"] = signum
        print(f"local: {signal.Signals(signum).name} received: passing SIGTERM to each host's entry point, as SageMaker does",
              flush=True)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for host, _, _ in hosts:
            root = job_dir / host
            code, rc = prepare_host(root, plan, host, hosts)
            env = host_env(root, code, plan, host, hosts, rc, cpus, gpus if host == head else 0, extra)
            procs[host] = subprocess.Popen([sys.executable, "sagemaker/sm_entry.py"], cwd=code, env=env, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            t = threading.Thread(target=pump, args=(procs[host].stdout, f"{host} | " if len(hosts) > 1 else ""), daemon=True)
            t.start()
            pumps.append(t)
            if state["signal"]:
                procs[host].send_signal(signal.SIGTERM)
        wait(procs, head, state)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
            kill_group(p, signal.SIGKILL)  # what is left of the host: Ray daemons and workers
        for t in pumps:
            t.join(timeout=5)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return report(procs, head, state, job_dir)


def wait(procs, head, state):
    stop_deadline = linger_deadline = None
    while any(p.poll() is None for p in procs.values()):
        time.sleep(0.2)
        now = time.monotonic()
        if state["signal"] and stop_deadline is None:
            stop_deadline = now + STOP_GRACE_S
        if procs[head].poll() is not None and linger_deadline is None and stop_deadline is None:
            linger_deadline = now + WORKER_LINGER_S
        if linger_deadline and now > linger_deadline and stop_deadline is None:
            print(f"local: hosts still running {WORKER_LINGER_S} s after {head} ended: stopping them", flush=True)
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            stop_deadline = now + STOP_GRACE_S
        if stop_deadline and now > stop_deadline:
            print(f"local: hosts still running {STOP_GRACE_S:.0f} s after SIGTERM: killing them, as SageMaker does", flush=True)
            for p in procs.values():
                kill_group(p, signal.SIGKILL)
            break


def report(procs, head, state, job_dir):
    codes = {h: p.returncode for h, p in procs.items()}
    if len(codes) > 1:
        print("local: " + ", ".join(f"{h} exited {c}" for h, c in codes.items()))
    model = job_dir / head / "model"
    if state["signal"]:
        print(f"local: stopped by {signal.Signals(state['signal']).name}. Launch the same command again "
              f"(job dir {job_dir}) to resume from {job_dir / head / 'checkpoints'}")
        return 128 + state["signal"]
    failed = {h: c for h, c in codes.items() if c != 0}
    if failed:
        host = head if head in failed else next(iter(failed))
        failure = job_dir / host / "output" / "failure"
        reason = failure.read_text().strip() if failure.is_file() else "see the log above"
        print(f"local: job failed: {host} exited {failed[host]}: {reason}")
        return failed[host]
    contents = ", ".join(sorted(p.name for p in model.iterdir())) if model.is_dir() else "empty"
    print(f"local: job completed; model: {model} ({contents}); SageMaker would upload it as model.tar.gz")
    return 0
