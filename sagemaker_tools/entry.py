"""Entry point inside a SageMaker training job (and a `launch.py --local` one): SageMaker's files in, train.py out.

SageMaker starts this (`python3 -m sagemaker_tools.entry`) on every host of the job, in the unpacked source
archive. It needs no SageMaker SDK:

    /opt/ml/input/config/hyperparameters.json  `experiment` plus train.py overrides (KEY: VALUE)
    /opt/ml/input/config/resourceconfig.json   hosts and instance groups: who starts the Ray head
    /opt/ml/checkpoints     train.py's run directory. SageMaker mirrors it to S3 and puts it back when a
                            Spot job restarts, so train.py resumes from the newest checkpoint.
    /opt/ml/checkpoints     also result.json and TensorBoard events, beside the checkpoints (synced to S3
                            while the job runs; /opt/ml/output/tensorboard with --tensorboard-output-config)
    /opt/ml/model           at the end: the final checkpoint, the resolved config, summary.json and a
                            rollout summary, laid out as a run directory (rollout.py takes it)

One host: train.py runs alone on this host's CPUs and GPUs. Several hosts: the first host of the
`learner` instance group (or of the job) starts a Ray head, the others join it by hostname, retrying
until it is up; train.py runs on the head and uses every host's CPUs; the other hosts exit 0 when the
head goes away. SIGTERM (Spot interruption, StopTrainingJob, --max-run) is passed to train.py, which
saves a checkpoint before it exits.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from utils.conventions import LEARNER_GROUP, read_pins  # standard library only: runs before pip
from utils.conventions import normalize as _norm

CODE = Path(__file__).resolve().parents[1]

ML = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model")).parent
CONFIG_DIR = Path(os.environ.get("SM_INPUT_CONFIG_DIR", str(ML / "input" / "config")))
MODEL = ML / "model"
CHECKPOINTS = ML / "checkpoints"
OUTPUT = ML / "output"
# TensorBoard events and result.json go beside the checkpoints, which SageMaker syncs to S3 while the job runs;
# with launch.py --tensorboard-output-config they go to TensorBoardOutputConfig's local path instead.
TENSORBOARD = os.environ.get("PROCGEN_SM_TENSORBOARD")
RAY_PORT = int(os.environ.get("PROCGEN_SM_RAY_PORT", "6379"))
JOIN_TIMEOUT_S = float(os.environ.get("PROCGEN_SM_JOIN_TIMEOUT", "900"))
# Hyperparameters that are not train.py overrides.
RESERVED = {"experiment": "the experiment YAML, relative to the source archive", "rollout_episodes": "episodes of the final rollout"}
# The deep-learning framework comes from the image: these pins are never re-installed over it.
# name in requirements.txt -> the distributions that provide it
FRAMEWORK_PACKAGES = {"torch": ("torch",), "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "intel-tensorflow")}


class JobError(Exception):
    """The job cannot go on; the message goes to /opt/ml/output/failure (SageMaker's FailureReason)."""


class State:
    signal = None  # the SIGTERM/SIGINT that arrived, if any
    child = None  # the process a signal is passed on to


def _on_signal(signum, frame):
    State.signal = signum
    child = State.child
    if child is not None and child.poll() is None:
        child.send_signal(signum)


def log(text):
    print(f"sagemaker: {text}", flush=True)


# --------------------------------------------------------------------------- job description


def read_json(path, default=None):
    if not path.is_file():
        if default is not None:
            return default
        raise JobError(f"{path} is missing: this is not a SageMaker job directory.")
    return json.loads(path.read_text())


def split_hyperparameters(hps):
    """hyperparameters.json -> (experiment, rollout episodes, train.py overrides in a stable order)."""
    # launch.py sends each override key with `__` for its dots (the SDK's driver exports hyperparameters as
    # shell variables, which cannot hold a dot); a key sent with dots, as a hand-made job may, is read as it is.
    hps = {k.replace("__", "."): str(v) for k, v in hps.items()}
    experiment = hps.pop("experiment", None)
    if not experiment:
        raise JobError("hyperparameter `experiment` is missing. Launch with: python sagemaker/launch.py EXPERIMENT.yaml")
    episodes = int(hps.pop("rollout_episodes", 5))
    # Parents before children (model=... before model.custom_model=...), as a user would write them.
    keys = sorted(hps, key=lambda k: (k.count("."), k))
    return experiment, episodes, [f"{k}={hps[k]}" for k in keys]


def _host_key(host):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", host)]


def cluster_layout(resource_config):
    """resourceconfig.json -> (this host, all hosts, head host, this host's group)."""
    hosts = sorted(resource_config.get("hosts") or [resource_config.get("current_host", "algo-1")], key=_host_key)
    current = resource_config.get("current_host", hosts[0])
    groups = resource_config.get("instance_groups") or []
    group = resource_config.get("current_group_name")
    if len(groups) > 1:  # a heterogeneous job; a homogeneous one has a single group, homogeneousCluster
        learners = [g for g in groups if g.get("instance_group_name") == LEARNER_GROUP]
        if not learners or not learners[0].get("hosts"):
            names = ", ".join(g.get("instance_group_name", "?") for g in groups)
            raise JobError(f"instance groups {names} have no `{LEARNER_GROUP}` group to run the Ray head and the learner.")
        head = sorted(learners[0]["hosts"], key=_host_key)[0]
    else:
        head = hosts[0]
    return current, hosts, head, group


def host_address(host):
    """A host's IP: SageMaker resolves algo-N names; --local maps them in PROCGEN_SM_HOSTS."""
    local = json.loads(os.environ.get("PROCGEN_SM_HOSTS", "{}"))
    if host in local:
        return local[host]
    deadline = time.monotonic() + 300
    while True:  # SageMaker's host names can take a moment to resolve at start
        try:
            return socket.gethostbyname(host)
        except OSError:
            if time.monotonic() > deadline:
                raise JobError(f"host name {host} does not resolve.") from None
            time.sleep(2)


def host_resources():
    """(CPUs, GPUs) of this host. SM_NUM_CPUS (the SDK's environment.py) counts the machine's CPUs; the CPUs this
    process may run on can be fewer (a container's cpuset; a `--local` host's share of the cores)."""
    cpus = min(int(os.environ.get("SM_NUM_CPUS") or 10**6), len(os.sched_getaffinity(0)))
    gpus = os.environ.get("SM_NUM_GPUS")
    if gpus is None:
        gpus = len([p for p in Path("/dev").glob("nvidia[0-9]*")])
    return cpus, int(gpus)


# --------------------------------------------------------------------------- requirements


def requirements_plan(req_file, framework, installed):
    """What to pip install so the repo's pins hold, keeping the image's own torch / TensorFlow.

    framework: the experiment's ("torch", "tf", "tf2"), or None for everything but the frameworks (the
    experiment's framework is RLlib's default unless it says, and RLlib is among what this installs).
    installed: {normalized name: version}. Returns (specs to install, constraints, notes)."""
    want = None if framework is None else "torch" if framework == "torch" else "tensorflow"
    install, constraints, notes = [], [], []
    for pin in read_pins(req_file)[0]:
        name, extras, version, key = pin.name, pin.extras, pin.version, pin.key
        have = installed.get(key)
        if framework is None and (key in FRAMEWORK_PACKAGES or key == "tf-keras"):
            continue
        if key in FRAMEWORK_PACKAGES:
            provider = next((p for p in FRAMEWORK_PACKAGES[key] if installed.get(p)), None)
            if provider:
                have = installed[provider]
                constraints.append(f"{provider}=={have}")
                if _base(have) != _base(version):
                    notes.append(f"{name} {have} from the image (requirements.txt pins {version})")
            elif key == want:
                install.append(f"{name}=={version}")
            continue
        if key == "tf-keras":
            tf = next((installed[p] for p in FRAMEWORK_PACKAGES["tensorflow"] if installed.get(p)), None)
            if framework == "torch" or not tf:
                continue
            minor = ".".join(tf.split(".")[:2])
            if not have or ".".join(have.split(".")[:2]) != minor:
                install.append(f"tf-keras~={minor}.0")
            continue
        if have is None or _base(have) != _base(version):
            install.append(f"{name}{extras}=={version}")
    return install, constraints, notes


def _base(version):
    return version.split("+")[0]


def ensure_requirements(framework):
    installed = {_norm(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}
    install, constraints, notes = requirements_plan(CODE / "requirements.txt", framework, installed)
    for note in notes:
        log(f"requirements: {note}")
    if not install:
        # Called twice: without the frameworks first (RLlib resolves which one the experiment uses), then with it.
        log(f"requirements: all pinned packages {f'for framework {framework}' if framework else 'but the frameworks'} "
            "are installed")
        return
    log(f"requirements: installing {' '.join(install)}")
    cons = OUTPUT / "constraints.txt"
    cons.parent.mkdir(parents=True, exist_ok=True)
    cons.write_text("\n".join(constraints) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                           "-c", str(cons), *install])
    if proc.returncode != 0:
        raise JobError(f"pip could not install {' '.join(install)} (exit {proc.returncode}). See the log above; "
                       "pass an image that has them with launch.py --image.")


# --------------------------------------------------------------------------- resources


def derive_overrides(exp, total_cpus, head_gpus):
    """(train.py overrides, notes) that spread the resolved experiment over the job's cluster
    (utils.resources.spread_cluster: more env runners over the same games; shrinking is train.py's fitting)."""
    from utils.resources import spread_cluster

    fit = spread_cluster(exp.demand(), total_cpus, head_gpus)
    return fit.as_args(), fit.notes


def describe_resources(exp, derived, total_cpus, total_gpus, hosts):
    from utils.config import apply_overrides

    apply_overrides(exp, derived)
    d = exp.demand()
    log(f"resources: {len(hosts)} host(s), {total_cpus} CPUs, {total_gpus} GPUs; learner (driver) "
        f"{d.driver_cpus:g} CPU + {d.gpus:g} GPU on the head; {d.runners} env runner(s) x {d.envs_per_runner} games, "
        f"{d.cpus_per_runner:g} CPU + {d.gpus_per_runner:g} GPU each; train_batch_size {exp.train_batch}")


# --------------------------------------------------------------------------- Ray cluster


def reachable(addr, port, timeout=2.0):
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_ray(args, cpus, gpus, node_ip):
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args, "--node-ip-address", node_ip,
           f"--num-cpus={cpus}", f"--num-gpus={gpus}", "--disable-usage-stats"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_process(proc, timeout=30):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_nodes(address, expected):
    """Connect to the head, wait until every host has joined, and return per-node resources."""
    import logging

    import ray

    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    signal.signal(signal.SIGTERM, _on_signal)  # ray.init installs its own
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while True:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            if len(nodes) >= expected:
                return [n.get("Resources", {}) for n in nodes]
            if State.signal:
                raise JobError(f"{signal.Signals(State.signal).name} arrived while waiting for the other hosts to join.")
            if time.monotonic() > deadline:
                raise JobError(f"only {len(nodes)} of {expected} hosts joined the Ray head at {address} "
                               f"within {JOIN_TIMEOUT_S:.0f} s. Check the other hosts' logs.")
            time.sleep(1)
    finally:
        ray.shutdown()


def run_worker(head, head_addr, my_addr, cpus, gpus):
    """A non-head host: join the head's Ray cluster, lend it this host's CPUs/GPUs, exit 0 when it is gone."""
    log(f"waiting for the Ray head on {head} ({head_addr}:{RAY_PORT})")
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not reachable(head_addr, RAY_PORT):
        if State.signal:
            return 0
        if time.monotonic() > deadline:
            raise JobError(f"the Ray head on {head} ({head_addr}:{RAY_PORT}) did not come up within {JOIN_TIMEOUT_S:.0f} s.")
        time.sleep(2)
    ray_proc = start_ray(["--address", f"{head_addr}:{RAY_PORT}"], cpus, gpus, my_addr)
    log(f"joined the Ray head on {head} with {cpus} CPUs and {gpus} GPUs")
    misses, restarts, grace_until = 0, 0, None
    try:
        while True:
            time.sleep(2)
            misses = 0 if reachable(head_addr, RAY_PORT) else misses + 1
            if misses >= 3:
                log("the Ray head has stopped: training is over, this host is done")
                return 0
            if ray_proc.poll() is not None and misses == 0:
                restarts += 1
                if restarts > 5:
                    raise JobError(f"Ray on this host keeps exiting ({ray_proc.returncode}) while the head on {head} is up.")
                log(f"Ray on this host exited ({ray_proc.returncode}); joining the head again")
                ray_proc = start_ray(["--address", f"{head_addr}:{RAY_PORT}"], cpus, gpus, my_addr)
            if State.signal and grace_until is None:
                # Keep lending CPUs while the head saves its checkpoint; SageMaker allows 120 s.
                grace_until = time.monotonic() + 100
            if grace_until and time.monotonic() > grace_until:
                return 0
    finally:
        stop_process(ray_proc)


# --------------------------------------------------------------------------- training and artifacts


def run(cmd, env=None):
    """Run a child with signals passed on to it; returns its exit code."""
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    # A session of its own: a signal to this process group then reaches the child once, passed on by
    # _on_signal; a second one would make train.py exit without its checkpoint.
    State.child = subprocess.Popen([str(c) for c in cmd], cwd=CODE, start_new_session=True, env=env)
    if State.signal:
        State.child.send_signal(State.signal)
    rc = State.child.wait()
    State.child = None
    return rc


def collect_model(episodes):
    """/opt/ml/model as a run directory: checkpoints/NEWEST, config.yaml, overrides.yaml, summary.json, rollout.json."""
    from utils.checkpoints import newest_checkpoint

    MODEL.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "overrides.yaml", "summary.json"):
        if (CHECKPOINTS / name).is_file():
            shutil.copy2(CHECKPOINTS / name, MODEL / name)
    newest = newest_checkpoint(CHECKPOINTS)
    if newest is None:
        log("no checkpoint to put in the model (checkpoint_at_end is false and checkpoint_freq is 0)")
        return
    target = MODEL / "checkpoints" / newest.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(newest, target)
    if episodes > 0 and not State.signal:
        # A Ray instance of its own, not the job's cluster (whose head may still be up on this host).
        rc = run([sys.executable, "rollout.py", target, "--episodes", episodes, "--json", MODEL / "rollout.json"],
                 env={**os.environ, "RAY_ADDRESS": "local"})
        if rc != 0:
            # The model is good without it: keep the job's result, say what went wrong.
            (MODEL / "rollout-error.txt").write_text(f"rollout.py exited {rc}; see the job log.\n")
            log(f"warning: rollout.py exited {rc}; the model is saved without rollout.json")
    log(f"model: {MODEL}: {', '.join(sorted(p.name for p in MODEL.iterdir()))}")


def share_model(address):
    """Copy /opt/ml/model to every other host of the Ray cluster (one Ray task pinned to each node), so the
    model SageMaker uploads holds the final checkpoint whichever host ran the head and the learner."""
    import io
    import logging
    import tarfile

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in sorted(MODEL.iterdir()):
            tar.add(item, arcname=item.name)
    data = buffer.getvalue()

    @ray.remote(num_cpus=0)
    def unpack(blob):
        target = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            tar.extractall(target, filter="data")
        return os.environ.get("SM_CURRENT_HOST", socket.gethostname())

    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    signal.signal(signal.SIGTERM, _on_signal)  # ray.init installs its own
    try:
        me = ray.get_runtime_context().get_node_id()
        others = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["NodeID"] != me]
        blob = ray.put(data)
        hosts = ray.get([unpack.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(blob)
                         for node in others], timeout=300)
        log(f"model: copied to {', '.join(sorted(hosts))} ({len(data) / 1e6:.1f} MB), so SageMaker's upload has it "
            "whichever host it takes")
    except Exception as e:  # noqa: BLE001  (the head's own model is complete; say what the others lack)
        log(f"warning: the model could not be copied to the other hosts ({type(e).__name__}: {e}); it is on this host only")
    finally:
        ray.shutdown()


def fail(message):
    log(f"error: {message}")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT / "failure", "a") as f:
        f.write(message + "\n")
    return 1


def main():
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_signal)
    ray_proc = None
    try:
        from utils.config import apply_overrides, read_experiment, translate_old_names
        from utils.errors import UserError
        from utils.resolved import attach_defaults

        hps = read_json(CONFIG_DIR / "hyperparameters.json")
        rc_config = read_json(CONFIG_DIR / "resourceconfig.json", default={"current_host": "algo-1", "hosts": ["algo-1"]})
        experiment, episodes, overrides = split_hyperparameters(hps)
        current, hosts, head, group = cluster_layout(rc_config)
        cpus, gpus = host_resources()
        role = "head" if current == head else "worker"
        log(f"job {os.environ.get('TRAINING_JOB_NAME', '?')}, host {current} ({hosts.index(current) + 1} of {len(hosts)}"
            f"{', group ' + group if group else ''}, {rc_config.get('current_instance_type', '?')}), {cpus} CPUs, {gpus} GPUs"
            f"{', Ray head' if len(hosts) > 1 and role == 'head' else ''}")
        try:
            exp = read_experiment(CODE / experiment)
            apply_overrides(exp, overrides)
            translate_old_names(exp)
        except UserError as e:
            raise JobError(str(e)) from None
        # RLlib first (it knows the experiment's defaults, the framework among them), then that framework.
        ensure_requirements(None)
        try:
            attach_defaults(exp)
        except UserError as e:
            raise JobError(str(e)) from None
        ensure_requirements(exp.framework)

        if len(hosts) > 1 and role == "worker":
            return run_worker(head, host_address(head), host_address(current), cpus, gpus)

        train_args = ["--run-dir", CHECKPOINTS, "--progress-bar", "off", *(["--log-dir", TENSORBOARD] if TENSORBOARD else [])]
        total_cpus, total_gpus, head_gpus = cpus, gpus, gpus
        if len(hosts) > 1:
            addr = host_address(current)
            driver_cpus = exp.driver_cpus
            # The driver (learner) runs in train.py on this host: Ray schedules env runners on the rest.
            ray_proc = start_ray(["--head", f"--port={RAY_PORT}", "--include-dashboard=false"],
                                 max(0, cpus - driver_cpus), gpus, addr)
            log(f"Ray head on {current} ({addr}:{RAY_PORT}); waiting for {len(hosts) - 1} more host(s)")
            while not reachable(addr, RAY_PORT):
                if ray_proc.poll() is not None:
                    raise JobError(f"the Ray head did not start (ray start exited {ray_proc.returncode}).")
                time.sleep(1)
            nodes = wait_for_nodes(f"{addr}:{RAY_PORT}", len(hosts))
            total_cpus = int(sum(n.get("CPU", 0) for n in nodes)) + min(cpus, driver_cpus)
            total_gpus = int(sum(n.get("GPU", 0) for n in nodes))
            per_node = "+".join(str(int(n.get("CPU", 0))) for n in sorted(nodes, key=lambda n: n.get("CPU", 0)))
            log(f"Ray cluster: {len(nodes)} nodes, CPUs for env runners {per_node} (+{min(cpus, driver_cpus)} kept for "
                f"the driver on this host) = {total_cpus} CPUs, {total_gpus} GPUs")
            train_args += ["--ray-address", f"{addr}:{RAY_PORT}"]
        if State.signal:
            return 128 + State.signal
        derived, notes = derive_overrides(exp, total_cpus, head_gpus)
        for note in notes:
            log(f"derived: {note}")
        describe_resources(exp, derived, total_cpus, total_gpus, hosts)
        rc = run([sys.executable, "train.py", "-f", experiment, *overrides, *derived, *train_args,
                  "--num-cpus", total_cpus, "--num-gpus", total_gpus])
        stopped = State.signal or (rc - 128 if rc in (128 + signal.SIGTERM, 128 + signal.SIGINT) else None)
        if rc != 0 and not stopped:
            fail(f"train.py exited {rc}; see the log above.")
            return rc
        # Stopped for good (--max-run, StopTrainingJob): SageMaker still uploads the model, without a rollout.
        collect_model(0 if stopped else episodes)
        if ray_proc is not None:
            share_model(f"{host_address(current)}:{RAY_PORT}")  # the head need not be algo-1
        if stopped:
            log(f"stopped by {signal.Signals(stopped).name}: the newest checkpoint is in {CHECKPOINTS}; "
                "a restarted Spot job resumes from it")
            return 128 + stopped
        return 0
    except JobError as e:
        return fail(str(e))
    finally:
        stop_process(ray_proc)


if __name__ == "__main__":
    sys.exit(main())
