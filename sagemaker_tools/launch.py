#!/usr/bin/env python
"""Train on Amazon SageMaker: the repo's own train.py on an experiment YAML, as one training job.

    python sagemaker/launch.py experiments/impala-baseline.yaml                 # Spot, one ml.g4dn.4xlarge
    python sagemaker/launch.py EXP --instance-type ml.c5.4xlarge --instance-count 2 --set num_gpus=0
    python sagemaker/launch.py EXP --instance-groups learner=ml.p3.2xlarge:1,actors=ml.c5.4xlarge:2
    python sagemaker/launch.py EXP --dry-run         # print the plan and the request; call nothing
    python sagemaker/launch.py EXP --local           # the same job on this machine: the SDK's driver, no Docker

It prints the job name, the S3 locations and a cost estimate, then submits the job with the SageMaker
Python SDK v3 (ModelTrainer). Inside the job, sagemaker_tools/entry.py runs `train.py -f EXP KEY=VALUE ...`
with /opt/ml/checkpoints as the run directory, so a restarted Spot job resumes by itself.
"""

import argparse
import datetime
import json
import os
import re
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import utils  # noqa: F401  (sets the TF/Keras environment before anything imports them)
from utils.cli import ArgumentParser
from utils.conventions import DEFAULT_OUTPUTS_DIR, LEARNER_GROUP
from utils.errors import UserError, closest, unknown_name

ROOT = Path(__file__).resolve().parents[1]
SDK_PIN = "sagemaker==3.27.0"
PRICES = ROOT / "sagemaker" / "prices.yaml"
DEFAULT_INSTANCE = "ml.g4dn.4xlarge"
LOCAL_INSTANCE = "local"  # --local without --instance-type: this machine
DEFAULT_MAX_RUN = "12h"
DEFAULT_PREFIX = "procgen"
ENTRY = "sagemaker_tools/entry.py"
# sm_train.sh (the SDK's driver) runs this in the unpacked archive (its working directory, so the package
# imports); `exec` makes the entry point the container's main process, so SIGTERM (Spot interruption,
# --max-run) reaches it and train.py.
COMMAND = "exec python3 -m sagemaker_tools.entry"
ARCHIVE_NAME = "sourcedir.tar.gz"
CHECKPOINT_LOCAL = "/opt/ml/checkpoints"
TENSORBOARD_LOCAL = "/opt/ml/output/tensorboard"
# RAY_AUTH_MODE: Ray 2.60's `ray start --head` turns token authentication on and keeps the token in the head
# host's ~/.ray, which the other hosts of a job do not have: they could never join (seen with a two-host
# --local job once each host had a home folder of its own, as each instance has). A SageMaker training job's network connects only its own
# instances (launch.py sets no VpcConfig), so the job's Ray cluster runs without tokens.
ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
ARCHIVE_LIMIT_MB = 200
JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$")


@dataclass
class Group:
    name: str | None  # None: a homogeneous job
    instance_type: str
    count: int


@dataclass(frozen=True)
class Plan:
    """Everything a job is, resolved once by make_plan (experiment, instances, AWS locations, image) and then
    only read: --dry-run prints it, a submit and --local send the request built from it (build_request)."""

    exp: object
    experiment: str  # path inside the source archive
    groups: list
    job_name: str
    spot: bool
    max_run_s: int
    max_wait_s: int | None
    hyperparameters: dict
    metric_definitions: list
    prices: dict
    local: bool = False
    region: str | None = None
    bucket: str | None = None
    prefix: str = DEFAULT_PREFIX
    role: str | None = None
    image: str | None = None
    image_note: str = ""
    checkpoint_s3: str | None = None
    volume_gb: int = 30
    tensorboard_config: bool = False

    @property
    def base_uri(self):
        return f"s3://{self.bucket or 'BUCKET'}/{self.prefix}/{self.job_name}"

    @property
    def code_uri(self):
        return f"{self.base_uri}/input/code/{ARCHIVE_NAME}"

    @property
    def output_uri(self):
        return f"s3://{self.bucket or 'BUCKET'}/{self.prefix}"

    @property
    def checkpoint_uri(self):
        return self.checkpoint_s3 or f"{self.base_uri}/checkpoints"

    @property
    def tensorboard_uri(self):
        return f"{self.base_uri}/tensorboard"


# --------------------------------------------------------------------------- arguments


def parse_args(argv):
    p = ArgumentParser(prog="sagemaker/launch.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", help="experiment YAML, e.g. experiments/impala-baseline.yaml")
    where = p.add_argument_group("instances")
    where.add_argument("--instance-type", help=f"instance type of a homogeneous job (default {DEFAULT_INSTANCE}, one GPU)")
    where.add_argument("--instance-count", type=int, help="instances of a homogeneous job (default 1)")
    where.add_argument("--instance-groups", metavar="NAME=TYPE:COUNT,...",
                       help="heterogeneous job: a `learner` group (GPU, Ray head) plus CPU groups, e.g. "
                            "learner=ml.p3.2xlarge:1,actors=ml.c5.4xlarge:2")
    where.add_argument("--volume-gb", type=int, default=30, help="EBS volume per instance (default %(default)s)")
    spot = p.add_mutually_exclusive_group()
    spot.add_argument("--spot", dest="spot", action="store_true", default=True, help="managed Spot training (default)")
    spot.add_argument("--on-demand", dest="spot", action="store_false", help="on-demand instances")
    p.add_argument("--max-run", default=DEFAULT_MAX_RUN,
                   help="stop the job after this much training time: 90m, 12h, 2d, 3600s; a bare number is hours "
                        "(default %(default)s). train.py saves a checkpoint when it is reached")
    p.add_argument("--max-wait", help="Spot only: give up when the job has not finished after this long, waiting "
                                      "for Spot capacity included (default: twice --max-run)")
    p.add_argument("--env-name", metavar="GAME", help="the procgen game (sets env_config.env_name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a train.py override (repeatable), e.g. --set lr=0.001 --set stop.timesteps_total=2000000")
    p.add_argument("--rollout-episodes", type=int, default=5,
                   help="episodes of the rollout at the end, saved as rollout.json in the model (default %(default)s)")
    aws = p.add_argument_group("AWS")
    aws.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / your AWS config)")
    aws.add_argument("--bucket", help="S3 bucket for code, checkpoints and output (default: sagemaker-REGION-ACCOUNT)")
    aws.add_argument("--s3-prefix", default=DEFAULT_PREFIX, help="key prefix in the bucket (default %(default)s)")
    aws.add_argument("--checkpoint-s3", metavar="S3_URI",
                     help="checkpoint location (default: BUCKET/PREFIX/JOB/checkpoints); pass an earlier job's "
                          "to continue it")
    aws.add_argument("--stack", metavar="NAME",
                     help="the CloudFormation stack made from sagemaker/cloudformation.yaml: its BucketName and RoleArn "
                          "outputs give --bucket and --role")
    aws.add_argument("--role",
                     help="IAM role ARN SageMaker runs the job as (default: $SAGEMAKER_ROLE)")
    aws.add_argument("--job-name", help="training job name (default: EXPERIMENT-GAME-TIMESTAMP)")
    aws.add_argument("--image", help="training image URI (default: the AWS Deep Learning Container for the "
                                     "experiment's framework, py312, CPU or GPU by instance type)")
    aws.add_argument("--wait", action="store_true", help="stream the job's logs until it ends")
    cost = p.add_argument_group("cost")
    cost.add_argument("--budget-usd", type=float, help="refuse to launch when the on-demand worst case (--max-run) costs more")
    cost.add_argument("--steps-per-second", type=float,
                      help="training throughput for the expected duration (default: the figure in sagemaker/prices.yaml)")
    p.add_argument("--tensorboard-output-config", action="store_true",
                   help="also ask SageMaker (TensorBoardOutputConfig, a Debugger-era field) to upload TensorBoard events to "
                        "S3_PREFIX/JOB/tensorboard; without it they are in the checkpoint location, synced while the job runs")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's, Ray's and gym's start-up lines too")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the full request; upload and call nothing")
    local = p.add_argument_group("local")
    local.add_argument("--local", action="store_true",
                       help="run the job on this machine as SageMaker would: the SDK's own driver scripts, one /opt/ml "
                            "per host (a private mount), no Docker and no AWS")
    local.add_argument("--job-dir", help="--local: the job directory, one /opt/ml per host "
                                         "(default outputs/sagemaker-local/JOB); launching again resumes")
    args = p.parse_args(argv)
    if args.job_dir and not args.local:
        p.error("--job-dir is for --local runs. Add --local, or drop --job-dir.")
    if args.local and args.dry_run:
        p.error("--dry-run prints the SageMaker request; --local runs the job here. Choose one.")
    if args.volume_gb < 1:
        p.error(f"--volume-gb {args.volume_gb} must be at least 1.")
    return args


def parse_duration(text, flag):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not m:
        raise UserError(f'{flag} "{text}" is not a duration. Use e.g. 90m, 12h, 2d or 3600s (a bare number is hours).')
    seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 3600}[m.group(2)]
    if seconds < 60:
        raise UserError(f"{flag} {text} is under a minute. Give the job at least 1m (e.g. {flag} 2h).")
    if seconds > 28 * 86400:
        raise UserError(f"{flag} {text} is over SageMaker's limit of 28 days. Use at most 28d.")
    return int(seconds)


# --------------------------------------------------------------------------- prices and instances


def load_prices(path=PRICES):
    import yaml

    return yaml.safe_load(Path(path).read_text())


def instance_info(prices, instance_type, flag):
    table = prices["instances"]
    if instance_type not in table:
        err = unknown_name("instance type", instance_type, table, flag)
        raise UserError(f"{err} To use another type, add it with its price, vCPUs, GPUs and memory to {PRICES.relative_to(ROOT)}.")
    return table[instance_type]


def parse_groups(args, prices):
    if args.instance_groups:
        if args.instance_type or args.instance_count:
            raise UserError("--instance-groups sets every instance of the job: drop --instance-type and --instance-count, "
                            "or drop --instance-groups for a homogeneous job.")
        groups = []
        for part in args.instance_groups.split(","):
            m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9_-]{0,63})=([a-z0-9.]+)(?::(\d+))?\s*", part)
            if not m:
                raise UserError(f'--instance-groups: "{part}" is not NAME=TYPE:COUNT. '
                                "Example: --instance-groups learner=ml.g4dn.4xlarge:1,actors=ml.c5.4xlarge:2")
            name, itype, count = m.group(1), m.group(2), int(m.group(3) or 1)
            if any(g.name == name for g in groups):
                raise UserError(f'--instance-groups: group "{name}" is given twice. Give each group once, with its count.')
            groups.append(Group(name, itype, count))
        if len(groups) > 5:
            raise UserError(f"--instance-groups: {len(groups)} groups; SageMaker allows at most 5. Merge some of them.")
        if not any(g.name == LEARNER_GROUP for g in groups):
            names = ", ".join(g.name for g in groups)
            raise UserError(f"--instance-groups {args.instance_groups}: no `{LEARNER_GROUP}` group among {names}.{closest(LEARNER_GROUP, [g.name for g in groups])} "
                            f"The learner group's first host runs the Ray head and the learner. Name one group {LEARNER_GROUP}, "
                            f"e.g. {LEARNER_GROUP}=ml.g4dn.4xlarge:1,actors=ml.c5.4xlarge:2")
    else:
        default = LOCAL_INSTANCE if args.local else DEFAULT_INSTANCE
        groups = [Group(None, args.instance_type or default, 1 if args.instance_count is None else args.instance_count)]
    for g in groups:
        flag = "--instance-groups" if g.name else "--instance-type"
        if g.instance_type != LOCAL_INSTANCE:
            instance_info(prices, g.instance_type, flag)
        if g.count < 1:
            where = f"group {g.name}" if g.name else "--instance-count"
            raise UserError(f"{where}: instance count {g.count} must be at least 1.")
    return groups


def _source(exp, key):
    return f"config.{key}" if key in exp.config else f"RLlib's default {key} for {exp.run}"


def check_gpus(exp, groups, prices):
    """A GPU experiment needs a GPU where its learner runs (the head: first host of the learner group)."""
    from utils.resources import learner_gpu_problem

    d = exp.demand()
    learner = learner_group(groups)
    problem = learner_gpu_problem(d, bool(prices["instances"][learner.instance_type]["gpus"]),
                                  any(prices["instances"][g.instance_type]["gpus"] for g in groups))
    if problem == "learner":
        where = "--instance-type" if learner.name is None else f"the {LEARNER_GROUP} group's"
        raise UserError(
            f"{exp.path} trains on a GPU ({_source(exp, 'num_gpus')}: {d.gpus:g}) but {where} {learner.instance_type} has none. "
            f"Use a GPU type ({', '.join(t for t, i in prices['instances'].items() if i['gpus'])}), "
            "or train on CPUs with --set num_gpus=0.")
    if problem == "runners":
        raise UserError(f"{exp.path} gives env runners GPUs ({_source(exp, 'num_gpus_per_env_runner')}: {d.gpus_per_runner:g}) but no "
                        "instance of the job has one. Add a GPU instance, or --set num_gpus_per_env_runner=0.")


def learner_group(groups):
    """The group whose first host runs train.py, the learner: the one named LEARNER_GROUP, else the first."""
    return next((g for g in groups if g.name in (None, LEARNER_GROUP)), groups[0])


def check_memory(exp, groups, prices):
    """PPG's auxiliary buffer must fit the learner's instance (its memory_gib in sagemaker/prices.yaml), before
    any money is spent: otherwise the job is killed when the buffer fills, n_pi iterations in."""
    from utils.config import check_memory as check

    learner = learner_group(groups)
    if not exp.demand().replayed_batches:
        return
    memory_gib = prices["instances"][learner.instance_type].get("memory_gib")
    if memory_gib is None:
        exp.notes.append(f"{learner.instance_type} has no memory_gib in {PRICES.relative_to(ROOT)}: PPG's auxiliary "
                         "buffer is not checked against the learner's memory; add its memory in GiB to check it")
        return
    if not isinstance(memory_gib, (int, float)) or isinstance(memory_gib, bool) or memory_gib <= 0:
        raise UserError(f"{PRICES.relative_to(ROOT)}: memory_gib of {learner.instance_type} must be a number of GiB "
                        f"> 0, not {memory_gib!r}. Write it as on the other lines, e.g. memory_gib: 64.")
    where = "--instance-type" if learner.name is None else f"the {LEARNER_GROUP} group's type in --instance-groups"
    check(exp, memory_gib * 2**30, machine=f"the learner's {learner.instance_type}",
          fix=f"or a learner instance type with more memory ({where})")


# --------------------------------------------------------------------------- experiment, hyperparameters, metrics


def load_experiment(args):
    from utils.config import load_experiment as load

    for text in args.overrides:
        if "=" not in text or text.startswith("="):
            raise UserError(f'--set "{text}" is not KEY=VALUE. Example: --set lr=0.001 or --set stop.timesteps_total=100000.')
    overrides = list(args.overrides)
    if args.env_name:
        overrides.append(f"env_config.env_name={args.env_name}")
    exp = load(args.experiment, overrides)  # the same validation as train.py: UserError on any bad key or value
    return exp, overrides


def archive_path(experiment):
    path = Path(experiment).resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return f"experiments/external/{path.name}"


# The SDK's driver (sm_train.sh) runs its scripts/environment.py, which writes every hyperparameter as
# `export SM_HP_<KEY>='<value>'` into sm_training.env and sources that under `set -e`: a key that is not a
# shell name (a dot) or a value with a single quote (after the SDK's own JSON decoding) kills the job before
# the entry point runs. Keys travel with `__` for each dot; values with a single quote as the same YAML
# value re-written with \x27 (which JSON cannot decode, so the SDK leaves it alone). sagemaker_tools/entry.py reads
# hyperparameters.json and undoes the key encoding; train.py's YAML reading undoes the value's.
KEY_DOT = "__"
OVERRIDE_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def hyperparameter_key(key):
    """`env_config.env_name` -> `env_config__env_name` (a shell name once the SDK prefixes SM_HP_).

    Raises UserError for a key the encoding cannot carry."""
    encoded = key.replace(".", KEY_DOT)
    if not OVERRIDE_KEY.match(key) or encoded.replace(KEY_DOT, ".") != key:
        raise UserError(f'--set {key}=...: a key SageMaker cannot pass through its driver script (hyperparameters '
                        "become shell variables). Use letters, digits, _ and - between the dots, with no __ and no _ "
                        "next to a dot, e.g. --set model.custom_model_config.depths=[16,32,32].")
    return encoded


def hyperparameter_value(key, value):
    """A value that survives the SDK's `export SM_HP_KEY='value'`: one with a single quote is re-written."""
    if "'" not in value:
        return value
    from utils.loader import parse_value

    try:
        text = json.dumps(parse_value(value), ensure_ascii=False)
    except (TypeError, ValueError):
        raise UserError(f"--set {key}={value}: a value with a single quote that is not plain YAML data. Write it "
                        'with double quotes, e.g. --set \'name="my value"\'.') from None
    return text.replace("'", "\\x27")


def hyperparameters(experiment, overrides, rollout_episodes):
    """What the job gets: the experiment and train.py's overrides as SageMaker hyperparameters.

    Returns {key: str}: `experiment`, `rollout_episodes`, then each override (the last one of a key wins) with
    its key and value encoded for the SDK's driver script (hyperparameter_key, hyperparameter_value)."""
    hps = {"experiment": archive_path(experiment), "rollout_episodes": str(rollout_episodes)}
    for text in overrides:
        key, _, value = text.partition("=")
        if key in ("experiment", "rollout_episodes"):
            raise UserError(f'--set {key}=... names a launcher setting. Pass the experiment as the first argument and '
                            "--rollout-episodes N.")
        hps[hyperparameter_key(key)] = hyperparameter_value(key, value)
    return hps


def check_driver_environment(hps):
    """Run the installed SDK's own scripts/environment.py on these hyperparameters and source what it writes
    under `set -e`, as sm_train.sh does. Raises UserError naming the hyperparameters when the shell refuses."""
    import subprocess

    from sagemaker.train.constants import SM_DRIVERS_LOCAL_PATH

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from scripts.environment import set_env; "
            "set_env(json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4]), output_file=sys.argv[5])")
    resource = {"current_host": "algo-1", "current_instance_type": "ml.m5.xlarge", "hosts": ["algo-1"],
                "network_interface_name": "eth0"}
    with tempfile.TemporaryDirectory(prefix="procgen-sm-env-") as tmp:
        env_file = Path(tmp) / "sm_training.env"
        made = subprocess.run([sys.executable, "-c", code, SM_DRIVERS_LOCAL_PATH, json.dumps(resource),
                               json.dumps({"code": {}, "sm_drivers": {}}), json.dumps(hps), str(env_file)],
                              capture_output=True, text=True, env={**os.environ, "TRAINING_JOB_NAME": "check"})
        if made.returncode != 0:
            raise UserError(f"The SDK's driver could not write the job's environment: {made.stderr.strip().splitlines()[-1]}")
        sourced = subprocess.run(["bash", "-c", 'set -e; source "$1"', "bash", str(env_file)], capture_output=True, text=True)
    if sourced.returncode != 0:
        shown = ", ".join(f"{k}={v}" for k, v in hps.items() if k not in ("experiment", "rollout_episodes"))
        raise UserError(f"These hyperparameters would stop the job in the SDK's sm_train.sh ({sourced.stderr.strip()}): "
                        f"{shown}. Remove the quote or character it names from --set.")


def metric_definitions():
    """CloudWatch metrics from the `key: value` progress lines train.py prints (utils.progress.PROGRESS_KEYS)."""
    from utils.progress import PROGRESS_KEYS

    number = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
    return [{"Name": name, "Regex": f"{name}: {number}"} for name in PROGRESS_KEYS]


def default_job_name(exp, local):
    base = re.sub(r"[^a-zA-Z0-9]+", "-", f"{exp.name}-{exp.env_name}").strip("-")
    if local:
        return base[:63].strip("-")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{base[:63 - len(stamp) - 1].strip('-')}-{stamp}"


# --------------------------------------------------------------------------- source archive


def source_files(root=ROOT):
    """The files git would ship: tracked ones and untracked ones that .gitignore does not exclude (paths
    relative to root, files only). Outside a git checkout: UserError."""
    import subprocess

    try:
        proc = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                              capture_output=True, text=True)
    except FileNotFoundError:
        proc = None
    if proc is None or proc.returncode != 0:
        why = "git is not installed" if proc is None else proc.stderr.strip().splitlines()[-1]
        raise UserError(f"The source archive lists the repository's files with git ls-files, which failed ({why}). "
                        "Launch from a git clone of the repository, with git installed.")
    return sorted(rel for rel in proc.stdout.split("\0") if rel and (root / rel).is_file() and not (root / rel).is_symlink())


def build_archive(experiment, directory):
    """The repository as git would ship it (tracked files and untracked ones .gitignore lets through, as they are
    in the working tree) plus the experiment: (path of sourcedir.tar.gz, its file list)."""
    files = source_files()
    exp_rel = archive_path(experiment)
    path = Path(directory) / ARCHIVE_NAME
    with tarfile.open(path, "w:gz") as tar:
        for rel in files:
            tar.add(ROOT / rel, arcname=rel, recursive=False)
        if exp_rel not in files:
            tar.add(Path(experiment).resolve(), arcname=exp_rel, recursive=False)
            files.append(exp_rel)
    size_mb = path.stat().st_size / 1e6
    if size_mb > ARCHIVE_LIMIT_MB:
        biggest = sorted(files, key=lambda f: (ROOT / f).stat().st_size if (ROOT / f).exists() else 0)[-3:]
        raise UserError(f"The source archive would be {size_mb:.0f} MB (largest: {', '.join(biggest)}). "
                        "Add big files and folders to .gitignore; the job needs only the code and the experiment.")
    return path, files


# --------------------------------------------------------------------------- AWS: SDK, region, image, preflight


def import_sdk():
    """The SageMaker Python SDK v3, imported only here (the job itself never needs it)."""
    try:
        import boto3  # noqa: F401
        from sagemaker.core import image_uris  # noqa: F401
        from sagemaker.core.helper.session_helper import Session  # noqa: F401
        from sagemaker.core.training import configs  # noqa: F401
        from sagemaker.train.model_trainer import ModelTrainer  # noqa: F401
    except ImportError as e:
        from importlib import metadata

        try:
            version = metadata.version("sagemaker")
        except metadata.PackageNotFoundError:
            version = None
        if version is None:
            found = "The SageMaker Python SDK is not installed. "
        elif not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 3:
            found = f"sagemaker {version} is installed, but this launcher needs the v3 SDK ({SDK_PIN}). "
        else:
            found = f"sagemaker {version} is installed but does not import. "
        raise UserError(f"{found}Install it with: pip install -r requirements-dev.txt (or pip install '{SDK_PIN}'). "
                        f"({type(e).__name__}: {e})") from None
    import sagemaker

    return sagemaker


def resolve_region(args):
    import boto3

    region = args.region or boto3.Session().region_name
    if not region:
        raise UserError("No AWS region given. Pass --region (e.g. --region us-east-1) or set AWS_DEFAULT_REGION.")
    known = set()
    for partition in boto3.Session().get_available_partitions():
        known.update(boto3.Session().get_available_regions("sagemaker", partition_name=partition))
    if region not in known:
        import difflib

        near = difflib.get_close_matches(region, sorted(known), n=2, cutoff=0.8)
        hint = f" Did you mean {' or '.join(near)}?" if near else ""
        public = sorted(r for r in known if "-gov-" not in r and "-iso" not in r)
        raise UserError(f'Unknown AWS region "{region}" for SageMaker.{hint} Allowed: {", ".join(public)} '
                        "(and the GovCloud/ISO regions). Pass one with --region.")
    return region


def default_image(exp, groups, region, prices):
    """(URI, note): the AWS Deep Learning Container (training, py312) for the experiment's framework whose CUDA
    and framework build run on every GPU of the job (sagemaker_tools/images.py); UserError when none does."""
    from sagemaker_tools import images
    from utils.conventions import pinned_version

    framework = exp.framework
    package = images.FRAMEWORKS.get(framework, (None, "torch"))[1]
    instances = {g.instance_type: prices["instances"][g.instance_type] for g in groups}
    return images.training_image(framework, pinned_version(ROOT / "requirements.txt", package), instances, region)


def check_aws(region, role, bucket):
    """Read-only AWS checks before anything is uploaded: credentials, role, account, bucket (and its region).

    Returns the bucket: the given one, else the SDK's default sagemaker-REGION-ACCOUNT."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise UserError("No AWS credentials found. Run `aws configure` (or `aws sso login`), or set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, then launch again. (--dry-run and --local need none.)")
    if not role:
        raise UserError("No IAM role for the job. Pass --role arn:aws:iam::ACCOUNT:role/NAME (a role SageMaker can assume, "
                        "with access to the bucket), set SAGEMAKER_ROLE, or pass --stack NAME of a stack made from "
                        "sagemaker/cloudformation.yaml.")
    try:
        account = session.client("sts").get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as e:
        raise UserError(f"AWS refused the credentials ({_aws_error(e)}). Check them with `aws sts get-caller-identity`.") from None
    bucket = bucket or f"sagemaker-{region}-{account}"
    try:
        head = session.client("s3").head_bucket(Bucket=bucket)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code"))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise UserError(f"Bucket s3://{bucket} does not exist. Create it (aws s3 mb s3://{bucket} --region "
                            f"{region}) or pass --bucket with an existing one.") from None
        raise UserError(f"Cannot use bucket s3://{bucket} ({_aws_error(e)}). Pass --bucket with a bucket you can write to.") from None
    except BotoCoreError as e:
        raise UserError(f"Cannot reach S3 to check s3://{bucket} ({e}).") from None
    bucket_region = head.get("BucketRegion") or head["ResponseMetadata"].get("HTTPHeaders", {}).get("x-amz-bucket-region")
    if bucket_region and bucket_region != region:
        raise UserError(f"Bucket s3://{bucket} is in {bucket_region} but the job would run in {region}. "
                        f"Use --region {bucket_region}, or a bucket in {region}.")
    return bucket


def _aws_error(e):
    err = getattr(e, "response", {}).get("Error", {})
    return f"{err.get('Code')}: {err.get('Message')}" if err else str(e)


# --------------------------------------------------------------------------- plan, cost, request


def make_plan(args):
    prices = load_prices()
    groups = parse_groups(args, prices)
    exp, overrides = load_experiment(args)
    if not args.local:
        check_gpus(exp, groups, prices)
        check_memory(exp, groups, prices)
    max_run = parse_duration(args.max_run, "--max-run")
    max_wait = None
    if args.spot:
        max_wait = parse_duration(args.max_wait, "--max-wait") if args.max_wait else min(2 * max_run, 28 * 86400)
        if max_wait < max_run:
            raise UserError(f"--max-wait {args.max_wait} is shorter than --max-run {args.max_run}. SageMaker needs "
                            "max-wait >= max-run: raise --max-wait or drop it (default: twice --max-run).")
    elif args.max_wait:
        raise UserError("--max-wait is for Spot jobs. Drop it, or drop --on-demand.")
    if args.job_name and not JOB_NAME.match(args.job_name):
        raise UserError(f'--job-name "{args.job_name}" is not a SageMaker job name: 1-63 letters, digits and hyphens, '
                        "starting with a letter or digit.")
    if args.stack and (args.bucket or args.role):
        raise UserError(f"--stack {args.stack} gives the bucket and the role (its outputs BucketName and RoleArn). "
                        "Drop --bucket and --role, or drop --stack.")
    if not args.stack and not args.role:
        args.role = os.environ.get("SAGEMAKER_ROLE") or None
    if args.role and not ROLE_ARN.match(args.role):
        raise UserError(f'--role "{args.role}" is not an IAM role ARN. Use arn:aws:iam::ACCOUNT:role/NAME.')
    if args.rollout_episodes < 0:
        raise UserError(f"--rollout-episodes {args.rollout_episodes} must be 0 (no rollout) or more.")
    if args.steps_per_second is not None and args.steps_per_second <= 0:
        raise UserError(f"--steps-per-second {args.steps_per_second} must be > 0.")
    bucket = args.bucket
    if bucket:
        bucket = bucket.removeprefix("s3://").rstrip("/")
        if "/" in bucket or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise UserError(f'--bucket "{args.bucket}" is not a bucket name. Give the name only (my-bucket); the key '
                            "prefix is --s3-prefix.")
    if args.checkpoint_s3 and not args.checkpoint_s3.startswith("s3://"):
        raise UserError(f'--checkpoint-s3 "{args.checkpoint_s3}" is not an S3 URI. Use s3://BUCKET/PATH.')
    hps = hyperparameters(args.experiment, overrides, args.rollout_episodes)
    import_sdk()  # --local runs the SDK's own driver scripts, so it needs the SDK too
    check_driver_environment(hps)
    region, role, image, image_note = None, args.role, None, ""
    if not args.local:
        region = resolve_region(args)
        if args.stack:
            from sagemaker_tools import stack

            outputs = stack.stack_outputs(args.stack, region=region)
            bucket, role = outputs["bucket"], outputs["role"]
        if args.image:
            image, image_note = args.image, "given with --image; requirements.txt is pip-installed at start where missing"
        else:
            image, image_note = default_image(exp, groups, region, prices)
        if not args.dry_run:
            bucket = check_aws(region, role, bucket)
    return Plan(
        exp=exp, experiment=archive_path(args.experiment), groups=groups, spot=args.spot,
        job_name=args.job_name or default_job_name(exp, args.local),
        max_run_s=max_run, max_wait_s=max_wait, prices=prices, local=args.local,
        hyperparameters=hps, metric_definitions=metric_definitions(), bucket=bucket, prefix=args.s3_prefix.strip("/"),
        role=role, checkpoint_s3=args.checkpoint_s3, volume_gb=args.volume_gb,
        tensorboard_config=args.tensorboard_output_config, region=region, image=image, image_note=image_note,
    )


def cost_lines(plan, steps_per_second=None):
    """The cost table: price per hour of each instance type x count x expected and worst-case hours."""
    prices = plan.prices
    saving = prices.get("spot_savings", 0.7)
    rows, per_hour = [], 0.0
    head = f"  {'instance':<24}{'count':>6}{'vCPU':>6}{'GPU':>5}{'on-demand $/h':>15}{'Spot $/h':>10}"
    for g in plan.groups:
        info = prices["instances"][g.instance_type]
        hourly = info["usd_per_hour"] * g.count
        per_hour += hourly
        label = f"{g.name}: {g.instance_type}" if g.name else g.instance_type
        rows.append(f"  {label:<24}{g.count:>6}{info['vcpus'] * g.count:>6}{info['gpus'] * g.count:>5}"
                    f"{hourly:>15.3f}{hourly * (1 - saving):>10.3f}")
    count = sum(g.count for g in plan.groups)
    vcpus = sum(prices["instances"][g.instance_type]["vcpus"] * g.count for g in plan.groups)
    gpus = sum(prices["instances"][g.instance_type]["gpus"] * g.count for g in plan.groups)
    rows.append(f"  {'total':<24}{count:>6}{vcpus:>6}{gpus:>5}{per_hour:>15.3f}{per_hour * (1 - saving):>10.3f}")
    lines = [f"cost estimate (USD; {prices['region']} list prices as of {prices['as_of']}, {PRICES.relative_to(ROOT)}; "
             f"Spot assumed {saving:.0%} below on-demand):", head, *rows]
    max_run_h = plan.max_run_s / 3600
    expected = expected_hours(plan, steps_per_second)
    if expected:
        hours, why = expected
        capped = hours > max_run_h
        hours = min(hours, max_run_h)
        lines.append(f"  expected {hours:6.2f} h: ${per_hour * hours:,.2f} on-demand, ${per_hour * hours * (1 - saving):,.2f} Spot"
                     f"  ({why}{'; capped by --max-run: the job stops there with a checkpoint' if capped else ''})")
    lines.append(f"  worst    {max_run_h:6.2f} h: ${per_hour * max_run_h:,.2f} on-demand, "
                 f"${per_hour * max_run_h * (1 - saving):,.2f} Spot  (--max-run)")
    return lines, per_hour * max_run_h


def expected_hours(plan, steps_per_second=None):
    stop = plan.exp.stop
    throughput = plan.prices.get("throughput", {})
    learner = next((g for g in plan.groups if g.name in (None, LEARNER_GROUP)), plan.groups[0])
    by_type = throughput.get("by_instance_type", {})
    if steps_per_second:
        sps, source = steps_per_second, "--steps-per-second"
    elif learner.instance_type in by_type:
        sps = by_type[learner.instance_type]["steps_per_second"]
        source = f"{learner.instance_type}: {by_type[learner.instance_type]['measured']}"
    else:
        sps, source = throughput.get("steps_per_second"), f"measured: {throughput.get('measured', '?')}"
    options = []
    steps = stop.get("timesteps_total")
    if steps is None and "training_iteration" in stop:
        steps = stop["training_iteration"] * plan.exp.train_batch
    if steps and sps:
        options.append((steps / sps / 3600, f"{int(steps):,} steps / {sps:g} steps/s, {source}"))
    if "time_total_s" in stop:
        options.append((stop["time_total_s"] / 3600, f"stop.time_total_s {stop['time_total_s']}"))
    return min(options) if options else None


def print_plan(plan, args):
    exp = plan.exp
    print(f"experiment: {exp.path} ({exp.name}, {exp.run}, {exp.env_name}); in the job: {plan.experiment}")
    for item in exp.overrides:
        print(f"override: {item}")
    for note in exp.notes:
        print(f"note: {note}")
    print(f"job: {plan.job_name}")
    if plan.local:
        return
    layout = ", ".join(f"{g.name + '=' if g.name else ''}{g.instance_type} x{g.count}" for g in plan.groups)
    mode = "Spot" if plan.spot else "on-demand"
    wait = f", max wait {plan.max_wait_s / 3600:g} h" if plan.spot else ""
    print(f"instances: {layout}; {mode}, max run {plan.max_run_s / 3600:g} h{wait}")
    print(f"image: {plan.image}")
    print(f"  {plan.image_note}")
    bucket_note = "" if plan.bucket else "  (BUCKET: --bucket, or sagemaker-REGION-ACCOUNT when launched)"
    print(f"region: {plan.region}")
    print(f"code: {plan.code_uri}{bucket_note}")
    print(f"checkpoints: {plan.checkpoint_uri}  (= /opt/ml/checkpoints, train.py's run directory; a Spot restart resumes)")
    print(f"output: {plan.output_uri}/{plan.job_name}/output/model.tar.gz  (final checkpoint, config.yaml, summary.json, rollout.json)")
    print(f"tensorboard: {plan.checkpoint_uri}  (TensorBoard events and result.json beside the checkpoints, synced while "
          f"the job runs: tensorboard --logdir {plan.checkpoint_uri})")
    if plan.tensorboard_config:
        print(f"tensorboard output config: {plan.tensorboard_uri}  (--tensorboard-output-config: a copy uploaded by SageMaker)")
    print(f"metrics: {', '.join(m['Name'] for m in plan.metric_definitions)}  (CloudWatch, from train.py's progress lines)")
    lines, _ = cost_lines(plan, args.steps_per_second)
    print("\n".join(lines))


# --------------------------------------------------------------------------- submit


def model_trainer(plan, archive, work_dir):
    """The SDK's ModelTrainer for this plan, in its LOCAL_CONTAINER mode: it builds the job's request and writes its
    sm_drivers channel (sm_train.sh, scripts/environment.py, ...) under work_dir, uploading and calling nothing."""
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InstanceGroup,
        MetricDefinition,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
        TensorBoardOutputConfig,
    )
    from sagemaker.train.model_trainer import Mode, ModelTrainer

    if plan.groups[0].name is None:
        compute = Compute(instance_type=plan.groups[0].instance_type, instance_count=plan.groups[0].count,
                          volume_size_in_gb=plan.volume_gb, enable_managed_spot_training=plan.spot)
    else:
        compute = Compute(instance_groups=[InstanceGroup(instance_group_name=g.name, instance_type=g.instance_type,
                                                         instance_count=g.count) for g in plan.groups],
                          volume_size_in_gb=plan.volume_gb, enable_managed_spot_training=plan.spot)
    stopping = StoppingCondition(max_runtime_in_seconds=plan.max_run_s,
                                 **({"max_wait_time_in_seconds": plan.max_wait_s} if plan.spot else {}))
    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER, local_container_root=str(work_dir), training_image=plan.image or "local",
        base_job_name=plan.job_name, input_s3_key_prefix=plan.prefix, compute=compute, stopping_condition=stopping,
        source_code=SourceCode(source_dir=str(archive), command=COMMAND),
        checkpoint_config=CheckpointConfig(s3_uri=plan.checkpoint_uri, local_path=CHECKPOINT_LOCAL),
        output_data_config=OutputDataConfig(s3_output_path=plan.output_uri),
        hyperparameters=plan.hyperparameters, environment=environment(plan),
    )
    if plan.tensorboard_config:
        trainer = trainer.with_tensorboard_output_config(
            TensorBoardOutputConfig(s3_output_path=plan.tensorboard_uri, local_path=TENSORBOARD_LOCAL))
    return trainer.with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in plan.metric_definitions])


def environment(plan):
    """The container's environment variables (the request's Environment)."""
    env = dict(ENVIRONMENT)
    if plan.tensorboard_config:
        env["PROCGEN_SM_TENSORBOARD"] = TENSORBOARD_LOCAL  # entry.py: train.py --log-dir there too
    return env


def build_request(plan, archive, work_dir):
    """(trainer, request): the CreateTrainingJob request for this plan, built once by the installed SDK with its
    channels on this machine (the source archive; the sm_drivers folder the SDK generates under work_dir, which
    lives as long as the trainer). `--local` runs it as it is; --dry-run prints and a submit sends
    sagemaker_request(plan, request), the same request with the channels at their S3 locations."""
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    trainer = model_trainer(plan, archive, work_dir)
    # What ModelTrainer.train() builds and sends (a method of the pinned SDK; tests/test_sagemaker.py runs the
    # job it describes through the SDK's own driver scripts and checks what SageMaker receives).
    request = trainer._create_training_job_args(boto3=True)
    # The SDK names a job base_job_name plus a timestamp; the job is named as the plan printed it.
    request["TrainingJobName"] = plan.job_name
    return trainer, request


def _channel_files(channel):
    """[(file, its key under the channel's S3 prefix)] of a channel on this machine."""
    source = Path(channel["DataSource"]["FileSystemDataSource"]["DirectoryPath"])
    if source.is_file():
        return [(source, source.name)]
    return [(f, f.relative_to(source).as_posix()) for f in sorted(source.rglob("*")) if f.is_file()]


def channel_uri(plan, channel):
    """Where a channel of the request goes in S3 (for one file, the file itself: code/sourcedir.tar.gz)."""
    files = _channel_files(channel)
    base = f"{plan.base_uri}/input/{channel['ChannelName']}"
    single = Path(channel["DataSource"]["FileSystemDataSource"]["DirectoryPath"]).is_file()
    return f"{base}/{files[0][1]}" if single else base


def sagemaker_request(plan, request):
    """The request SageMaker gets: build_request's, with the role and each channel at its S3 location."""
    import copy

    out = copy.deepcopy(request)
    out["RoleArn"] = plan.role or "ROLE_ARN (pass --role)"
    for channel in out["InputDataConfig"]:
        uri = channel_uri(plan, channel)
        channel["DataSource"] = {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                  "S3DataDistributionType": "FullyReplicated"}}
    return out


def upload_channels(plan, request, session):
    """Put each channel's files where sagemaker_request points SageMaker at them."""
    s3 = session.client("s3")
    for channel in request["InputDataConfig"]:
        prefix = f"{plan.prefix}/{plan.job_name}/input/{channel['ChannelName']}"
        for path, key in _channel_files(channel):
            s3.upload_file(str(path), plan.bucket, f"{prefix}/{key}")


def submit(plan, request, wait):
    """Upload the channels and create the job (boto3's CreateTrainingJob, with the request build_request made);
    with wait, follow it to its end (the SDK's TrainingJob.wait, logs streamed)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.Session(region_name=plan.region)
    try:
        upload_channels(plan, request, session)
        session.client("sagemaker").create_training_job(**sagemaker_request(plan, request))
    except ClientError as e:
        raise UserError(f"SageMaker refused the job ({_aws_error(e)}).") from None
    except (BotoCoreError, ValueError) as e:
        raise UserError(f"The job could not be created: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if wait:
        wait_for(plan, session)
    print(f"submitted: {plan.job_name} in {plan.region}")
    print(f"  status: aws sagemaker describe-training-job --region {plan.region} --training-job-name {plan.job_name}")
    print(f"  logs:   CloudWatch /aws/sagemaker/TrainingJobs, streams {plan.job_name}/algo-N-...")
    print(f"  model:  {plan.output_uri}/{plan.job_name}/output/model.tar.gz (when it completes)")


def wait_for(plan, session):
    """Stream the job's log until it ends; UserError with SageMaker's reason when it fails or stops."""
    from sagemaker.core.resources import TrainingJob
    from sagemaker.core.utils.exceptions import WaiterError

    try:
        TrainingJob.get(training_job_name=plan.job_name, session=session, region=plan.region).wait(logs=True)
    except WaiterError as e:  # the job ended Failed or Stopped: SageMaker's reason, not a traceback
        raise UserError(f"The job {plan.job_name} did not complete: {e}. Its log: CloudWatch /aws/sagemaker/TrainingJobs, "
                        f"streams {plan.job_name}/algo-N-...") from None


# --------------------------------------------------------------------------- main


class Job:
    """One training job for an experiment, as `launch.py` starts it: the Python API (notebooks, scripts).

        job = Job("experiments/impala-baseline.yaml", "--env-name", "bigfish", "--local")  # the plan, complete
        job.show()         # the plan and the cost table; nothing uploaded yet
        code = job.start()  # SageMaker: submits (0); --local: runs the job here (its exit code)

    `options` are launch.py's command-line options, as strings. The experiment YAML stays the one source of
    the configuration. Raises UserError (one line: the value, what is allowed, the fix) on bad input, before
    anything is uploaded; an unknown option exits as argparse does. Building the plan checks what a launch needs
    of AWS (read only): credentials, role, bucket; not with --dry-run or --local.

    Attributes: plan (Plan), args (the parsed options), job_dir (--local: the job's folder, one /opt/ml per
    host), model_dir (--local: the head host's /opt/ml/model after the job), model_uri (S3: model.tar.gz).
    """

    def __init__(self, experiment, *options):
        self.args = parse_args([str(experiment), *(str(o) for o in options)])
        self.plan = make_plan(self.args)
        self.job_dir = None
        if self.args.local:
            self.job_dir = Path(self.args.job_dir or ROOT / DEFAULT_OUTPUTS_DIR / "sagemaker-local" / self.plan.job_name).resolve()
        self._shown = False

    @property
    def model_uri(self):
        return f"{self.plan.output_uri}/{self.plan.job_name}/output/model.tar.gz"

    @property
    def model_dir(self):
        if self.job_dir is None:
            return None
        from sagemaker_tools import local

        return self.job_dir / local.head_host([(g.name, g.instance_type, g.count) for g in self.plan.groups]) / "model"

    def show(self):
        """Print the plan and the cost table; check --budget-usd (UserError)."""
        args, plan = self.args, self.plan
        print_plan(plan, args)
        if not args.local and args.budget_usd is not None:
            _, worst = cost_lines(plan, args.steps_per_second)
            if worst > args.budget_usd:
                per_hour = worst / (plan.max_run_s / 3600)
                fits = args.budget_usd / per_hour
                raise UserError(f"--budget-usd {args.budget_usd:g}: the on-demand worst case is ${worst:,.2f} "
                                f"({per_hour:.3f} $/h x {plan.max_run_s / 3600:g} h of --max-run). Lower --max-run "
                                f"(at most {fits:.1f}h fits), choose cheaper instances, or raise --budget-usd.")
            print(f"budget: worst case ${worst:,.2f} <= --budget-usd {args.budget_usd:g}")
        self._shown = True

    def start(self):
        """Build the source archive and submit the job (--local: run it here; --dry-run: print the request).

        Returns 0, or a --local job's exit code (128+N after signal N). Shows the plan first if show() was not called."""
        if not self._shown:
            self.show()
        args, plan = self.args, self.plan
        if args.local:
            from sagemaker_tools import local

            local.check_host()
        with tempfile.TemporaryDirectory(prefix="procgen-sm-") as tmp:
            archive, files = build_archive(args.experiment, tmp)
            size = archive.stat().st_size / 1e3
            print(f"source archive: {len(files)} files, {size:,.0f} kB ({ARCHIVE_NAME}: train.py, "
                  f"{plan.experiment}, {ENTRY}, ...)")
            trainer, job_request = build_request(plan, archive, self.job_dir if args.local else Path(tmp) / "sdk")
            if args.local:
                return local.run(plan, job_request, self.job_dir, keep=trainer)
            if args.dry_run:
                print("request (CreateTrainingJob, as it is sent; --dry-run: nothing uploaded, nothing called):")
                print(json.dumps(sagemaker_request(plan, job_request), indent=2))
                return 0
            submit(plan, job_request, args.wait)
            return 0


def main(argv=None):
    command = argv is None
    argv = sys.argv[1:] if command else [str(a) for a in argv]
    if command:  # as a command (not called from a test): TF/gym start-up noise filtered
        from utils import quiet

        quiet.install(verbose="--verbose" in argv)
    try:
        job = Job(*argv)
        job.show()
        return job.start()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing more is done; a job already submitted keeps running (see the AWS console)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
