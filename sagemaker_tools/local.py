"""`launch.py --local`: the job SageMaker would run, on this machine, with the SDK's own start-up path.

The installed SDK builds the job (ModelTrainer in its LOCAL_CONTAINER mode, launch.build_request): the
CreateTrainingJob request and the `sm_drivers` channel it would upload (sm_train.sh, scripts/environment.py,
sourcecode.json, ...). This module plays SageMaker's part from there, without Docker:

- each host gets a directory laid out as its /opt/ml (JOB_DIR/algo-N/): input/config/ with the request's
  hyperparameters.json, a resourceconfig.json and an inputdataconfig.json as SageMaker writes them,
  input/data/CHANNEL/ with each channel's files, model/ and output/ fresh, checkpoints/ kept;
- each host runs in a mount and PID namespace of its own (`unshare`), with its directory bind-mounted on
  /opt/ml, so the SDK's scripts run unmodified with the paths they hard-code, and everything the host
  started dies with it, as with a container;
- the host runs the request's ContainerEntrypoint + ContainerArguments (`/bin/bash -c "... sm_train.sh"`)
  with the request's Environment and TRAINING_JOB_NAME, on a share of this machine's cores.

Several hosts form one Ray cluster over loopback; host names map to 127.0.0.1 through PROCGEN_SM_HOSTS
(SageMaker resolves algo-N itself). SIGTERM or SIGINT to the launcher goes to each host's first process,
as `docker stop` sends it on a Spot interruption; a host still running after the grace period is killed.
Launching again with the same job directory keeps checkpoints/ (SageMaker restores it from S3 after a
Spot interruption), so training resumes from the newest checkpoint.

What differs from SageMaker: no image (this machine's Python, first on PATH, runs the code), no S3 (the
channels are copied, checkpoints/ stays on disk), and every host shares this machine's network.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from utils.conventions import LEARNER_GROUP

ROOT = Path(__file__).resolve().parents[1]
OPT_ML = Path("/opt/ml")
STOP_GRACE_S = float(os.environ.get("PROCGEN_SM_STOP_GRACE", "120"))  # SageMaker's: 120 s after SIGTERM
WORKER_LINGER_S = 60  # other hosts leave on their own a few seconds after the head; after this they are stopped
HOMOGENEOUS = "homogeneousCluster"  # the group name SageMaker gives a homogeneous job
# What of this machine's environment a host keeps, as an image's ENV would set it: where Python and its
# packages are, locale, and the knobs of TF/Ray/CUDA/this project. Not AWS credentials, not SAGEMAKER_ROLE,
# not the shell's other variables: a job on SageMaker has none of them either.
IMAGE_ENV = ("PATH", "HOME", "LANG", "LC_", "TERM", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR", "PYTHON", "VIRTUAL_ENV",
             "TF_", "RAY_", "PROCGEN_", "CUDA_", "NVIDIA_", "LD_LIBRARY_PATH", "OMP_", "MKL_", "XLA_", "COVERAGE_")
# Mounts /opt/ml for this host inside its own namespaces, then becomes the container's entry point.
MOUNT_AND_EXEC = 'mount --bind "$0" /opt/ml && cd / && exec "$@"'


def _user_error(message):
    from utils.errors import UserError

    return UserError(message)


def namespace_command():
    """The `unshare` prefix that gives a host its own mount and PID namespaces (a user namespace when not root)."""
    cmd = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc"]
    if os.geteuid() != 0:
        cmd[1:1] = ["--user", "--map-root-user"]
    return cmd


def check_host():
    """Raise UserError unless this machine can give each host its own /opt/ml (Linux, unshare, /opt/ml)."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        raise _user_error("--local runs each host in a mount namespace of its own and needs Linux with `unshare` "
                          "(util-linux). On another system, run the job on SageMaker (drop --local).")
    try:
        OPT_ML.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise _user_error(f"--local mounts each host's directory on {OPT_ML}, which does not exist and cannot be "
                          f"created here. Create it once: sudo mkdir -p {OPT_ML}") from None
    probe = subprocess.run([*namespace_command(), "/bin/sh", "-c", "mount --bind /tmp /opt/ml"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise _user_error(f"--local could not create a private mount for {OPT_ML} ({probe.stderr.strip() or probe.returncode}). "
                          "It needs root, or unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1).")


# --------------------------------------------------------------------------- the job, from the SDK's request


def layout(request):
    """[(host, group name, instance type)] in SageMaker's algo-N naming, and the head host."""
    resources = request["ResourceConfig"]
    groups = [(g["InstanceGroupName"], g["InstanceType"], g["InstanceCount"]) for g in resources.get("InstanceGroups") or []]
    return hosts_of(groups or [(None, resources["InstanceType"], resources["InstanceCount"])])


def hosts_of(groups):
    """[(group name or None for a homogeneous job, instance type, count)] -> ([(host, group, type)], head host)."""
    hosts = []
    for name, itype, count in groups:
        for _ in range(count):
            hosts.append((f"algo-{len(hosts) + 1}", name or HOMOGENEOUS, itype))
    learners = [h for h, group, _ in hosts if group in (LEARNER_GROUP, HOMOGENEOUS)]
    return hosts, (learners or [hosts[0][0]])[0]


def head_host(groups):
    """The host that runs the Ray head and the learner (its /opt/ml/model holds the model)."""
    return hosts_of(groups)[1]


def resource_config(host, hosts):
    groups = {}
    for h, group, itype in hosts:
        groups.setdefault(group, {"instance_group_name": group, "instance_type": itype, "hosts": []})["hosts"].append(h)
    mine = next((group, itype) for h, group, itype in hosts if h == host)
    return {"current_host": host, "current_instance_type": mine[1], "current_group_name": mine[0],
            "hosts": [h for h, _, _ in hosts], "instance_groups": list(groups.values()), "network_interface_name": "lo"}


def channel_source(channel):
    """The local file or folder a channel of the request holds (LOCAL_CONTAINER mode: a FileSystemDataSource)."""
    source = channel["DataSource"]
    if "FileSystemDataSource" in source:
        return Path(source["FileSystemDataSource"]["DirectoryPath"])
    raise _user_error(f"--local: channel {channel['ChannelName']} is not on this machine ({json.dumps(source)}).")


def prepare_host(root, request, host, hosts):
    """One host's /opt/ml, as SageMaker lays it out: config files, channels, fresh model/ and output/, checkpoints/ kept."""
    config = root / "input" / "config"
    shutil.rmtree(root / "input", ignore_errors=True)
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {}), indent=2) + "\n")
    (config / "resourceconfig.json").write_text(json.dumps(resource_config(host, hosts), indent=2) + "\n")
    channels = request.get("InputDataConfig", [])
    (config / "inputdataconfig.json").write_text(json.dumps(
        {c["ChannelName"]: {"TrainingInputMode": c.get("InputMode", "File"), "S3DistributionType": "FullyReplicated",
                            "RecordWrapperType": "None"} for c in channels}, indent=2) + "\n")
    for channel in channels:
        target = root / "input" / "data" / channel["ChannelName"]
        source = channel_source(channel)
        if source.is_dir():  # an S3 prefix: its files, as downloaded
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:  # one S3 object: the file under its own name
            target.mkdir(parents=True)
            shutil.copy2(source, target / source.name)
    for fresh in ("model", "output"):  # a new container starts with these empty
        shutil.rmtree(root / fresh, ignore_errors=True)
    checkpoints = request.get("CheckpointConfig", {}).get("LocalPath", "/opt/ml/checkpoints")
    for d in ("model", "output/data", Path(checkpoints).relative_to(OPT_ML)):
        (root / d).mkdir(parents=True, exist_ok=True)


def host_env(request, job_name, extra):
    """The container's environment: this machine's (as an image's ENV) with its Python first on PATH, the
    request's Environment and TRAINING_JOB_NAME. The SM_* variables come from the SDK's environment.py."""
    env = {k: v for k, v in os.environ.items() if k.startswith(IMAGE_ENV) and k != "RAY_ADDRESS"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(request.get("Environment") or {})
    env["TRAINING_JOB_NAME"] = job_name
    env.update(extra)
    return env


def core_shares(n_hosts):
    """This machine's cores split over the hosts (round robin when there are more hosts than cores)."""
    cores = sorted(os.sched_getaffinity(0))
    if n_hosts == 1:
        return [cores]
    if n_hosts >= len(cores):
        return [[cores[i % len(cores)]] for i in range(n_hosts)]
    size = len(cores) // n_hosts
    return [cores[i * size:(i + 1) * size] for i in range(n_hosts)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pump(stream, prefix):
    for line in stream:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


class Host:
    """One host: `unshare` and, inside it, the container's first process (PID 1 of the host's namespace)."""

    def __init__(self, name, proc):
        self.name, self.proc = name, proc

    def first_process(self):
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.Error:
            return None
        return children[0].pid if children else None

    def signal(self, signum):
        """Send to the container's first process, as `docker stop` does (the kernel ignores signals it has no
        handler for, as in a container)."""
        pid = self.first_process()
        if pid is not None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL the container's first process: the kernel then kills everything in its PID namespace."""
        self.signal(signal.SIGKILL)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def run(plan, request, job_dir, keep=None):
    """Run the request's hosts on this machine; returns the job's exit code (128+N after signal N).

    keep: an object to hold on to until every host's directory is prepared (the trainer, whose temporary
    folder holds the sm_drivers channel)."""
    job_dir = Path(job_dir)
    hosts, head = layout(request)
    shares = core_shares(len(hosts))
    resumes = any(any((job_dir / h / "checkpoints" / "checkpoints").glob("checkpoint_*")) for h, _, _ in hosts)
    print(f"local: job dir {job_dir} ({'resuming: its checkpoints/ are kept' if resumes else 'new'})")
    print(f"local: {len(hosts)} host(s) on this machine, each in its own mount and PID namespace with its folder on "
          f"/opt/ml: " + ", ".join(f"{h} ({group}, {itype}, core{'s' if len(share) > 1 else ''} {','.join(map(str, share))}"
                                    f"{', Ray head' if h == head and len(hosts) > 1 else ''})"
                                    for (h, group, itype), share in zip(hosts, shares, strict=True)))
    print(f"local: the SDK's start-up: {' '.join(request['AlgorithmSpecification']['ContainerEntrypoint'])} "
          f"{' '.join(request['AlgorithmSpecification'].get('ContainerArguments', []))}", flush=True)
    ray_tmp = tempfile.mkdtemp(prefix="sm", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    extra = {"RAY_TMPDIR": ray_tmp, "PROCGEN_SM_RAY_PORT": str(free_port()),
             "PROCGEN_SM_HOSTS": json.dumps({h: "127.0.0.1" for h, _, _ in hosts})}
    base_env = host_env(request, request["TrainingJobName"], extra)
    spec = request["AlgorithmSpecification"]
    container = [*spec["ContainerEntrypoint"], *spec.get("ContainerArguments", [])]
    running, pumps, state = {}, [], {"signal": None}

    def on_signal(signum, frame):
        if state["signal"] is not None:  # a second signal: stop everything now
            for h in running.values():
                h.kill()
            return
        state["signal"] = signum
        print(f"local: {signal.Signals(signum).name} received: passing SIGTERM to each host, as SageMaker does", flush=True)
        for h in running.values():
            if h.proc.poll() is None:
                h.signal(signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for host, _, _ in hosts:
            prepare_host(job_dir / host, request, host, hosts)
        cleanup = getattr(getattr(keep, "_temp_code_dir", None), "cleanup", None)
        if cleanup:  # the SDK's folder for the sm_drivers channel: copied into every host now
            cleanup()
        for (host, _, _), share in zip(hosts, shares, strict=True):
            cmd = [*namespace_command(), "taskset", "--cpu-list", ",".join(map(str, share)),
                   "/bin/sh", "-c", MOUNT_AND_EXEC, str(job_dir / host), *container]
            # A home folder of its own, as each instance has (nothing in ~/.ray, ~/.cache is shared between hosts).
            home = job_dir / ".home" / host
            home.mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(cmd, env={**base_env, "HOME": str(home)}, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            running[host] = Host(host, proc)
            t = threading.Thread(target=pump, args=(proc.stdout, f"{host} | " if len(hosts) > 1 else ""), daemon=True)
            t.start()
            pumps.append(t)
            if state["signal"]:
                running[host].signal(signal.SIGTERM)
        wait(running, head, state)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for h in running.values():
            h.kill()  # what is left of the host: Ray daemons and workers go with its PID namespace
            h.proc.wait()
        for t in pumps:
            t.join(timeout=5)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return report(running, head, state, job_dir)


def wait(running, head, state):
    stop_deadline = linger_deadline = None
    while any(h.proc.poll() is None for h in running.values()):
        time.sleep(0.2)
        now = time.monotonic()
        if state["signal"] and stop_deadline is None:
            stop_deadline = now + STOP_GRACE_S
        if running[head].proc.poll() is not None and linger_deadline is None and stop_deadline is None:
            linger_deadline = now + WORKER_LINGER_S
        if linger_deadline and now > linger_deadline and stop_deadline is None:
            print(f"local: hosts still running {WORKER_LINGER_S} s after {head} ended: stopping them", flush=True)
            for h in running.values():
                if h.proc.poll() is None:
                    h.signal(signal.SIGTERM)
            stop_deadline = now + STOP_GRACE_S
        if stop_deadline and now > stop_deadline:
            print(f"local: hosts still running {STOP_GRACE_S:.0f} s after SIGTERM: killing them, as SageMaker does", flush=True)
            for h in running.values():
                h.kill()
            break


def report(running, head, state, job_dir):
    codes = {h: r.proc.returncode for h, r in running.items()}
    if len(codes) > 1:
        print("local: " + ", ".join(f"{h} exited {c}" for h, c in codes.items()))
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
    model = job_dir / head / "model"
    contents = ", ".join(sorted(p.name for p in model.iterdir())) if model.is_dir() else "empty"
    print(f"local: job completed; model: {model} ({contents}); SageMaker would upload it as model.tar.gz")
    return 0
