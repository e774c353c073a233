"""Train on SageMaker: sagemaker/launch.py with the real SDK against a local AWS endpoint, and --local jobs that train.

What is real and what is not:
- The SageMaker Python SDK v3 (ModelTrainer) and boto3 really talk HTTP to a moto server that these tests
  start on 127.0.0.1 (S3, STS, SageMaker). moto stands in for AWS, which cannot be reached from here:
  it stores CreateTrainingJob as sent and marks the job Completed at once without running a container.
  Its DescribeTrainingJob answer replaces MetricDefinitions and leaves out Environment, so those two are
  read from the request itself (moto's request recorder).
- The container side runs for real in --local jobs: the installed SDK builds the job (its request and the
  sm_drivers channel it uploads: sm_train.sh, scripts/environment.py), each host runs the SDK's unmodified
  sm_train.sh with its own /opt/ml (a private mount namespace), which sources the SDK's sm_training.env and
  starts sagemaker_tools/entry.py: real train.py/rollout.py on procgen, a real 2-node Ray cluster. Only Docker,
  S3 and the Deep Learning Container image are left out (this machine's Python runs the code).
"""

import base64
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from sagemaker_tools import entry as sm_entry
from sagemaker_tools import launch
from tests.conftest import ROOT, free_port, run_script, start_moto, stop_moto

STARTER = "experiments/procgen-starter-example.yaml"
TINY = ["--set", "train_batch_size=1024", "--set", "minibatch_size=256", "--set", "num_envs_per_env_runner=8"]
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "procgen-test-bucket"


# --------------------------------------------------------------------------- a local AWS endpoint


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """A moto server on 127.0.0.1 with a bucket, and the environment that points AWS clients at it."""
    tmp = tmp_path_factory.mktemp("moto")
    recording = tmp / "recording.jsonl"
    proc, endpoint = start_moto({"MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(recording)})
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-credentials"),
    }
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    s3.create_bucket(Bucket=BUCKET)
    yield {"env": env, "s3": s3, "sm": session.client("sagemaker", endpoint_url=env["AWS_ENDPOINT_URL"]),
           "recording": recording}
    stop_moto(proc)


@pytest.fixture
def aws(moto, monkeypatch):
    for key, value in moto["env"].items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_REGION", "SAGEMAKER_ROLE"):
        monkeypatch.delenv(key, raising=False)
    return moto


def launch_in_process(capsys, *args):
    rc = launch.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def requests_sent(moto, target):
    """Bodies of the JSON API calls moto received for X-Amz-Target `target`, oldest first."""
    bodies = []
    for line in moto["recording"].read_text().splitlines():
        entry = json.loads(line)
        if entry["headers"].get("X-Amz-Target") == target:
            body = base64.b64decode(entry["body"]) if entry["body_encoded"] else entry["body"]
            bodies.append(json.loads(body))
    return bodies


def dry_run_request(stdout):
    marker = "request (CreateTrainingJob"
    assert marker in stdout, stdout
    return json.loads(stdout.split(marker, 1)[1].split("\n", 1)[1])


# --------------------------------------------------------------------------- fast checks


def test_launcher_runs_as_typed_and_imports_the_sdk(tmp_path):
    """`python sagemaker/launch.py` as the user types it, from the repository and from elsewhere; the launcher's
    code lives in sagemaker_tools/, so the SDK's namespace package finds no module of ours in sagemaker/."""
    assert sorted(p.name for p in (ROOT / "sagemaker").glob("*.py")) == ["launch.py"]
    for cwd in (ROOT, tmp_path):
        proc = subprocess.run([sys.executable, str(ROOT / "sagemaker" / "launch.py"), "--help"], cwd=cwd,
                              capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: sagemaker/launch.py"), proc.stderr[-2000:]
    sdk = launch.import_sdk()
    assert "site-packages" in sdk.__file__ and sdk.__file__.endswith("sagemaker/__init__.py")
    import sagemaker.launch  # what pkgutil.extend_path lets through: the script, which does nothing on import

    assert not [name for name in vars(sagemaker.launch) if not name.startswith("__")]


def test_plan_is_complete_when_made_and_read_only():
    import dataclasses

    args = launch.parse_args([STARTER, "--dry-run", "--region", "us-east-1", "--bucket", BUCKET, "--role", ROLE,
                              "--job-name", "complete-1", "--instance-type", "ml.c5.xlarge"])
    plan = launch.make_plan(args)
    assert (plan.region, plan.bucket, plan.role, plan.job_name) == ("us-east-1", BUCKET, ROLE, "complete-1")
    assert plan.image.endswith("/pytorch-training:2.9.0-cpu-py312") and plan.image_note
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.bucket = "another"


def test_source_archive_lists_what_git_would_ship(tmp_path):
    """git ls-files --cached --others --exclude-standard: tracked and untracked files, not what .gitignore excludes."""
    repo = tmp_path / "repo"
    (repo / "outputs").mkdir(parents=True)
    (repo / ".gitignore").write_text("outputs/\n*.log\n")
    for name in ("train.py", "new.py", "outputs/big.bin", "run.log"):
        (repo / name).write_text("x\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "train.py", ".gitignore"], cwd=repo, check=True)
    assert launch.source_files(repo) == [".gitignore", "new.py", "train.py"]
    (tmp_path / "not-a-repo").mkdir()
    with pytest.raises(launch.UserError, match="git ls-files, which failed .*not a git repository"):
        launch.source_files(tmp_path / "not-a-repo")


def test_missing_sdk_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sagemaker.train.model_trainer", None)  # as if the SDK (v3) were not there
    with pytest.raises(launch.UserError, match=r"pip install -r requirements-dev.txt"):
        launch.import_sdk()


def test_metric_definitions_read_train_py_progress_lines():
    import re

    from utils.progress import PROGRESS_KEYS, format_line

    values = {"training_iteration": 3, "timesteps_total": 6144, "episode_reward_mean": -7.5, "episode_len_mean": 88.25,
              "normalized_return_mean": float("nan"), "episodes_this_iter": 2, "steps_per_second": 315.5, "time_total_s": 27.5}
    line = format_line(values)
    definitions = launch.metric_definitions()
    assert [d["Name"] for d in definitions] == list(PROGRESS_KEYS)
    for d in definitions:
        found = re.findall(d["Regex"], line)
        if d["Name"] == "normalized_return_mean":
            assert found == [], "nan is not a number CloudWatch can chart"
        else:
            assert len(found) == 1 and float(found[0]) == pytest.approx(values[d["Name"]], abs=0.06), d


def test_requirements_keep_the_images_framework(tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("ray[rllib]==2.60.0\ntensorflow==2.21.0\ntf-keras==2.21.0\ntorch==2.13.0\nnumpy==1.26.4\nPyYAML==6.0.4\n")
    # A PyTorch image: its torch stays (and is pinned against replacement); TF is not needed by a torch experiment.
    install, constraints, notes = sm_entry.requirements_plan(reqs, "torch", {"torch": "2.9.0+cu128", "numpy": "2.1.0",
                                                                           "pyyaml": "6.0.4"})
    assert install == ["ray[rllib]==2.60.0", "numpy==1.26.4"]
    assert constraints == ["torch==2.9.0+cu128"] and "torch 2.9.0+cu128 from the image" in notes[0]
    # A TensorFlow image (here its CPU build): its TF stays, tf-keras follows the image's TF version, no torch.
    install, constraints, _ = sm_entry.requirements_plan(reqs, "tf", {"tensorflow-cpu": "2.19.0", "numpy": "1.26.4",
                                                                     "pyyaml": "6.0.4", "ray": "2.60.0"})
    assert install == ["tf-keras~=2.19.0"] and constraints == ["tensorflow-cpu==2.19.0"]
    # Before the experiment is resolved (RLlib, which knows its default framework, not yet there): all but the frameworks.
    install, constraints, _ = sm_entry.requirements_plan(reqs, None, {"numpy": "1.26.4"})
    assert install == ["ray[rllib]==2.60.0", "PyYAML==6.0.4"] and constraints == []
    # Everything in place (this venv, --local): nothing to install.
    installed = {sm_entry._norm(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}
    assert sm_entry.requirements_plan(ROOT / "requirements.txt", "torch", installed)[0] == []


def test_cluster_layout_and_derived_resources():
    hetero = {"current_host": "algo-2", "hosts": ["algo-1", "algo-2", "algo-3"], "current_group_name": "learner",
              "instance_groups": [{"instance_group_name": "actors", "instance_type": "ml.c5.4xlarge", "hosts": ["algo-1", "algo-3"]},
                                  {"instance_group_name": "learner", "instance_type": "ml.p3.2xlarge", "hosts": ["algo-2"]}]}
    assert sm_entry.cluster_layout(hetero) == ("algo-2", ["algo-1", "algo-2", "algo-3"], "algo-2", "learner")
    homogeneous = {"current_host": "algo-10", "hosts": ["algo-10", "algo-2", "algo-1"], "current_group_name": "homogeneousCluster",
                   "instance_groups": [{"instance_group_name": "homogeneousCluster", "hosts": ["algo-10", "algo-2", "algo-1"]}]}
    assert sm_entry.cluster_layout(homogeneous)[2] == "algo-1"
    with pytest.raises(sm_entry.JobError, match="no `learner` group"):
        sm_entry.cluster_layout({**hetero, "instance_groups": [{**g, "instance_group_name": n} for g, n in
                                                                zip(hetero["instance_groups"], ("a", "b"), strict=True)]})

    from utils.config import load_experiment

    exp = load_experiment(ROOT / "experiments" / "impala-baseline.yaml")  # 4 runners x 16 games, num_gpus 0.3
    # learner ml.p3.2xlarge (8 vCPUs, 1 GPU) + 2 x ml.c5.4xlarge (16): 40 CPUs -> 32 runners x 2 games, same 64 games.
    derived, notes = sm_entry.derive_overrides(exp, 40, 1)
    assert derived == ["num_env_runners=32", "num_envs_per_env_runner=2"] and "64 games" in notes[0]
    assert sm_entry.derive_overrides(exp, 16, 1)[0] == ["num_env_runners=8", "num_envs_per_env_runner=8"]
    assert sm_entry.derive_overrides(exp, 2, 0)[0] == [], "shrinking is train.py's own fitting"


def test_dry_run_prints_plan_cost_and_request_and_calls_nothing(tmp_path):
    """As a user runs it, with no credentials and an endpoint nobody listens on: nothing may be called."""
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    proc = run_script("sagemaker/launch.py", "experiments/impala-baseline.yaml", "--dry-run", "--region", "us-east-1",
                      "--bucket", "my-bucket", "--role", ROLE, "--job-name", "ppo-coinrun-1", "--instance-groups",
                      "learner=ml.p3.2xlarge:1,actors=ml.c5.4xlarge:2", "--max-run", "10h", "--set", "lr=0.0003",
                      "--env-name", "bigfish", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "job: ppo-coinrun-1" in out
    assert "code: s3://my-bucket/procgen/ppo-coinrun-1/input/code/sourcedir.tar.gz" in out
    assert "checkpoints: s3://my-bucket/procgen/ppo-coinrun-1/checkpoints" in out
    assert "output: s3://my-bucket/procgen/ppo-coinrun-1/output/model.tar.gz" in out
    assert ("tensorboard: s3://my-bucket/procgen/ppo-coinrun-1/checkpoints  (TensorBoard events and result.json beside "
            "the checkpoints") in out
    # Cost: the dated table's figures x count x hours, Spot beside on-demand.
    assert "as of 2020-08" in out
    assert "  learner: ml.p3.2xlarge       1     8    1          4.284     1.285" in out
    assert "  actors: ml.c5.4xlarge        2    32    0          1.904     0.571" in out
    assert "  total                        3    40    1          6.188     1.856" in out
    assert "  worst     10.00 h: $61.88 on-demand, $18.56 Spot  (--max-run)" in out
    # The learner type's own throughput (AWS's 2020 figure for ml.p3.2xlarge): 8M steps / 3000 steps/s = 0.74 h.
    assert ("  expected   0.74 h: $4.58 on-demand, $1.38 Spot  (8,000,000 steps / 3000 steps/s, ml.p3.2xlarge: "
            "AWS 2020 sample") in out
    assert "capped by --max-run" not in out
    request = dry_run_request(out)
    assert request["TrainingJobName"] == "ppo-coinrun-1"
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("/tensorflow-training:2.21.0-gpu-py312")
    assert "TensorBoardOutputConfig" not in request, "opt-in: --tensorboard-output-config"
    assert request["Environment"]["RAY_AUTH_MODE"] == "disabled"
    assert request["ResourceConfig"]["InstanceGroups"] == [
        {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "InstanceGroupName": "learner"},
        {"InstanceType": "ml.c5.4xlarge", "InstanceCount": 2, "InstanceGroupName": "actors"}]
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 36000, "MaxWaitTimeInSeconds": 72000}
    assert request["HyperParameters"] == {"experiment": "experiments/impala-baseline.yaml", "rollout_episodes": "5",
                                          "lr": "0.0003", "env_config__env_name": "bigfish"}
    assert "nothing uploaded, nothing called" in out


def test_expected_hours_fall_back_to_the_measured_figure_and_cap_at_max_run(capsys):
    """A learner type without a throughput figure of its own uses the repo's measured one; --max-run caps it."""
    rc, out, err = launch_in_process(capsys, "experiments/impala-baseline.yaml", "--dry-run", "--region", "us-east-1",
                                     "--bucket", "my-bucket", "--role", ROLE, "--job-name", "cpu-only",
                                     "--instance-type", "ml.c5.4xlarge", "--set", "num_gpus=0", "--max-run", "2h")
    assert rc == 0, err
    # 8M steps / 209 steps/s = 10.6 h, more than --max-run: 2 h x 0.952 $/h.
    assert "  expected   2.00 h: $1.90 on-demand, $0.57 Spot  (8,000,000 steps / 209 steps/s, measured" in out
    assert "capped by --max-run" in out


def test_ppgs_auxiliary_buffer_is_checked_against_the_learners_instance(capsys):
    """Issue 16: PPG's buffer (n_pi x train batch frames) against the learner type's memory_gib (prices.yaml), before
    a job is paid for and killed n_pi iterations in; over half of it, a note in the plan."""
    common = ["--dry-run", "--region", "us-east-1", "--bucket", "my-bucket", "--role", ROLE, "--job-name", "ppg-memory",
              "--set", "num_gpus=0"]
    rc, out, err = launch_in_process(capsys, "experiments/ppg.yaml", *common, "--instance-type", "ml.c5.xlarge")
    assert rc == 0, err
    assert ("note: PPG's auxiliary buffer needs 6.0 GiB (32 train batches (n_pi) x 16,384 frames x 12,292 bytes): over "
            "half of the 8.0 GiB of memory the learner's ml.c5.xlarge has") in out, out
    rc, out, err = launch_in_process(capsys, "experiments/ppg.yaml", *common, "--instance-type", "ml.c5.xlarge", "--set", "n_pi=64")
    assert rc == 2 and "Traceback" not in out + err
    assert err.startswith("error: experiments/ppg.yaml: PPG's auxiliary buffer needs 12.0 GiB (64 train batches (n_pi) ") \
        and "the 8.0 GiB of memory the learner's ml.c5.xlarge has" in err \
        and err.rstrip().endswith("or a learner instance type with more memory (--instance-type).") and len(err.splitlines()) == 1, err
    # The learner is the `learner` group wherever it is listed; the actors' memory does not count.
    rc, out, err = launch_in_process(capsys, "experiments/ppg.yaml", *common, "--set", "n_pi=64",
                                     "--instance-groups", "actors=ml.c5.4xlarge:1,learner=ml.c5.xlarge:1")
    assert rc == 2 and "the learner's ml.c5.xlarge" in err and "(the learner group's type in --instance-groups)" in err, err
    rc, out, err = launch_in_process(capsys, "experiments/ppg.yaml", *common, "--instance-type", "ml.c5.4xlarge")
    assert rc == 0 and "auxiliary buffer" not in out, "32 GiB: no note"


def test_an_instance_line_without_usable_memory_gib_is_named(capsys, monkeypatch):
    """A line users add to prices.yaml: no memory_gib, a note (nothing to check against); a bad one, a message."""
    prices = yaml.safe_load(launch.PRICES.read_text())
    args = ["experiments/ppg.yaml", "--dry-run", "--region", "us-east-1", "--bucket", "my-bucket", "--role", ROLE,
            "--job-name", "ppg-memory", "--set", "num_gpus=0", "--instance-type", "ml.c5.xlarge"]
    for value, expected in ((None, "note: ml.c5.xlarge has no memory_gib in sagemaker/prices.yaml"),
                            ("8 GiB", "error: sagemaker/prices.yaml: memory_gib of ml.c5.xlarge must be a number of GiB > 0, not '8 GiB'")):
        line = dict(prices["instances"]["ml.c5.xlarge"])
        line.pop("memory_gib")
        if value is not None:
            line["memory_gib"] = value
        edited = {**prices, "instances": {**prices["instances"], "ml.c5.xlarge": line}}
        monkeypatch.setattr(launch, "load_prices", lambda path=None, edited=edited: edited)
        rc, out, err = launch_in_process(capsys, *args)
        assert expected in out + err and "Traceback" not in out + err, out + err
        assert rc == (0 if value is None else 2)


BAD_INPUT = [
    ("no credentials", ["--instance-type", "ml.c5.4xlarge", "--set", "num_gpus=0"], {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
     "No AWS credentials found. Run `aws configure`"),
    ("unknown region", ["--region", "us-est-1"], {}, 'Unknown AWS region "us-est-1" for SageMaker. Did you mean us-west-1 or us-east-1?'),
    ("unknown instance type", ["--instance-type", "ml.c5.4xlarg"], {},
     'Unknown instance type "ml.c5.4xlarg" in --instance-type. Did you mean "ml.c5.4xlarge"?'),
    ("GPU experiment on CPU instances", ["--instance-type", "ml.c5.4xlarge"], {},
     "trains on a GPU (config.num_gpus: 0.3) but --instance-type ml.c5.4xlarge has none"),
    ("groups without a learner", ["--instance-groups", "gpu=ml.g4dn.4xlarge:1,actors=ml.c5.4xlarge:2"], {},
     "no `learner` group among gpu, actors"),
    ("budget exceeded", ["--budget-usd", "5"], {}, "--budget-usd 5: the on-demand worst case is $20.23 (1.686 $/h x 12 h of --max-run)"),
    ("experiment fails validation", ["--set", "gama=0.9"], {}, 'unknown key "config.gama". Did you mean "gamma"?'),
    ("bucket does not exist", ["--bucket", "no-such-bucket"], {}, "Bucket s3://no-such-bucket does not exist. Create it"),
    ("no role", [], {"ROLE": None}, "No IAM role for the job. Pass --role"),
]


@pytest.mark.parametrize("case, args, env, message", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_stops_before_anything_is_uploaded(aws, capsys, monkeypatch, case, args, env, message):
    for key, value in env.items():
        if value is None and key != "ROLE":
            monkeypatch.delenv(key)
    role = [] if "ROLE" in env else ["--role", ROLE]
    before = aws["s3"].list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    rc, out, err = launch_in_process(capsys, "experiments/impala-baseline.yaml", "--bucket", BUCKET, *role,
                                     "--job-name", "bad-input", *args)
    assert rc == 2, (out, err)
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1
    assert aws["s3"].list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == before, "nothing uploaded"
    assert "bad-input" not in [j["TrainingJobName"] for j in aws["sm"].list_training_jobs()["TrainingJobSummaries"]]


# --------------------------------------------------------------------------- jobs created through the real SDK


def check_job(aws, name, dry):
    """DescribeTrainingJob (and the request moto received) hold what --dry-run printed for the same launch."""
    job = aws["sm"].describe_training_job(TrainingJobName=name)
    for key in ("HyperParameters", "ResourceConfig", "StoppingCondition", "EnableManagedSpotTraining", "CheckpointConfig",
                "OutputDataConfig", "TensorBoardOutputConfig", "InputDataConfig", "RoleArn"):
        got = job.get(key)
        if key == "OutputDataConfig":
            got = {k: v for k, v in got.items() if k != "CompressionType"}  # moto adds the service default
        assert got == dry.get(key), key
    for key in ("TrainingImage", "ContainerEntrypoint", "ContainerArguments"):
        assert job["AlgorithmSpecification"][key] == dry["AlgorithmSpecification"][key]
    sent = [r for r in requests_sent(aws, "SageMaker.CreateTrainingJob") if r["TrainingJobName"] == name]
    assert len(sent) == 1
    assert sent[0]["AlgorithmSpecification"]["MetricDefinitions"] == launch.metric_definitions()
    assert sent[0]["Environment"] == dry["Environment"]
    # The source archive in S3: the repo's train.py and entry point, and the experiment.
    code = dry["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    bucket, key = code.removeprefix("s3://").split("/", 1)
    archive = Path(aws["recording"]).parent / f"{name}.tar.gz"
    aws["s3"].download_file(bucket, key, str(archive))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"train.py", "rollout.py", "sagemaker_tools/entry.py", dry["HyperParameters"]["experiment"], "requirements.txt"} <= names
    assert not any(n.startswith((".venv", ".git/", "outputs/")) for n in names)
    return job


def test_single_instance_spot_job(aws, tmp_path):
    """The plain command, as a user types it (a subprocess), then the same with --dry-run."""
    args = ["sagemaker/launch.py", STARTER, "--bucket", BUCKET, "--role", ROLE, "--job-name", "starter-spot-1",
            "--instance-type", "ml.g4dn.xlarge", "--max-run", "2h", "--set", "stop.timesteps_total=50000"]
    proc = run_script(*args, env=aws["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted: starter-spot-1 in us-east-1" in proc.stdout
    assert "worst      2.00 h: $1.47 on-demand, $0.44 Spot" in proc.stdout
    dry = dry_run_request(run_script(*args, "--dry-run", env=aws["env"]).stdout)
    job = check_job(aws, "starter-spot-1", dry)
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert job["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/procgen/starter-spot-1/checkpoints", "LocalPath": "/opt/ml/checkpoints"}
    assert job["ResourceConfig"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert job["AlgorithmSpecification"]["TrainingImage"] == \
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.9.0-gpu-py312"
    assert job["HyperParameters"] == {"experiment": STARTER, "rollout_episodes": "5", "stop__timesteps_total": "50000"}
    # The driver the job runs is the one --local runs: the SDK's sm_train.sh for this job, from the sm_drivers channel.
    drivers = job["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3Uri"]
    bucket, prefix = drivers.removeprefix("s3://").split("/", 1)
    uploaded = aws["s3"].get_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/sm_train.sh")["Body"].read().decode()
    assert "source /opt/ml/input/sm_training.env" in uploaded and "exec python3 -m sagemaker_tools.entry" in uploaded
    plan = launch.make_plan(launch.parse_args(args[1:] + ["--local"]))
    with tempfile.TemporaryDirectory() as tmp:
        archive, _ = launch.build_archive(STARTER, tmp)
        trainer, request = launch.build_request(plan, archive, Path(tmp) / "job")
        local = Path(request["InputDataConfig"][1]["DataSource"]["FileSystemDataSource"]["DirectoryPath"]) / "sm_train.sh"
        assert local.read_text() == uploaded
        assert request["AlgorithmSpecification"]["ContainerArguments"] == job["AlgorithmSpecification"]["ContainerArguments"]


def test_homogeneous_two_instance_on_demand_job(aws, capsys):
    args = [STARTER, "--bucket", BUCKET, "--role", ROLE, "--job-name", "starter-2x-1", "--instance-type", "ml.c5.4xlarge",
            "--instance-count", "2", "--on-demand", "--env-name", "bigfish", "--set", "lr=0.0003", "--wait"]
    rc, out, err = launch_in_process(capsys, *args)
    assert rc == 0, err
    rc, dry_out, _ = launch_in_process(capsys, *args, "--dry-run")
    job = check_job(aws, "starter-2x-1", dry_run_request(dry_out))
    assert job["ResourceConfig"] == {"InstanceType": "ml.c5.4xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}
    assert job["EnableManagedSpotTraining"] is False and "MaxWaitTimeInSeconds" not in job["StoppingCondition"]
    assert job["HyperParameters"]["env_config__env_name"] == "bigfish" and job["HyperParameters"]["lr"] == "0.0003"
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/pytorch-training:2.9.0-cpu-py312")


def test_heterogeneous_gpu_learner_and_cpu_actors_job(aws, capsys):
    args = ["experiments/impala-baseline-torch.yaml", "--bucket", BUCKET, "--role", ROLE, "--job-name", "impala-hetero-1",
            "--instance-groups", "learner=ml.p3.2xlarge:1,actors=ml.c5.4xlarge:2", "--max-run", "3h", "--budget-usd", "20"]
    rc, out, err = launch_in_process(capsys, *args)
    assert rc == 0, err
    assert "budget: worst case $18.56 <= --budget-usd 20" in out
    rc, dry_out, _ = launch_in_process(capsys, *args, "--dry-run")
    job = check_job(aws, "impala-hetero-1", dry_run_request(dry_out))
    assert job["ResourceConfig"]["InstanceGroups"] == [
        {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "InstanceGroupName": "learner"},
        {"InstanceType": "ml.c5.4xlarge", "InstanceCount": 2, "InstanceGroupName": "actors"}]
    assert job["EnableManagedSpotTraining"] is True and job["StoppingCondition"]["MaxWaitTimeInSeconds"] == 21600
    # ml.p3 is a V100 (compute capability 7.0): PyTorch 2.9's image is CUDA 13, which needs 7.5 (sagemaker/images.py).
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/pytorch-training:2.8.0-gpu-py312")


# --------------------------------------------------------------------------- --local jobs: the container side, for real


def progress(stdout):
    rows = []
    for line in stdout.splitlines():
        line = line.split(" | ", 1)[-1]
        if line.startswith("training_iteration: "):
            rows.append({k: float(v) for k, v in (part.split(": ") for part in line.split(", "))})
    return rows


def local_cmd(job_dir, *extra):
    return [sys.executable, "sagemaker/launch.py", STARTER, "--local", "--job-dir", str(job_dir), "--rollout-episodes", "1",
            *TINY, *extra]


def test_local_job_resumes_after_sigterm_and_leaves_model_artifacts(tmp_path):
    """The Spot test: SIGTERM a --local job mid-run, launch it again with the same job dir: it goes on to the end.

    (That train.py itself saves a checkpoint on SIGTERM is tested in test_train_e2e; here the job resumes from the
    newest checkpoint in /opt/ml/checkpoints, whichever it is.)"""
    job_dir = tmp_path / "job"
    # Dotted overrides and a YAML single-quoted value: what the SDK's sm_training.env could not hold as they are.
    cmd = local_cmd(job_dir, "--set", "stop.timesteps_total=3072", "--set", "checkpoint_freq=1", "--env-name", "bigfish",
                    "--set", "env_config.distribution_mode='easy'")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in first.stdout:
        lines.append(line)
        if line.startswith("checkpoint: "):  # iteration 1 is saved; two more to go
            first.send_signal(signal.SIGTERM)
            break
    lines += first.stdout.readlines()
    out1 = "".join(lines)
    assert first.wait() == 128 + signal.SIGTERM, out1[-4000:]
    # The SDK's own start-up ran: its sm_train.sh sourced its sm_training.env (SM_HP_* for every hyperparameter)
    # and executed the entry point, which passed the overrides on to train.py with their dots and quote.
    assert "local: the SDK's start-up: /bin/bash -c chmod +x /opt/ml/input/data/sm_drivers/sm_train.sh" in out1
    assert "Starting training script" in out1 and "Executing command: exec python3 -m sagemaker_tools.entry" in out1
    assert "SM_HP_ENV_CONFIG__ENV_NAME=bigfish" in out1
    assert "override: config.env_config.env_name=bigfish" in out1 and 'override: config.env_config.distribution_mode="easy"' in out1
    assert "local: SIGTERM received: passing SIGTERM to each host, as SageMaker does" in out1
    assert "sagemaker: stopped by SIGTERM" in out1 and "local: stopped by SIGTERM. Launch the same command again" in out1
    newest = sorted((job_dir / "algo-1" / "checkpoints" / "checkpoints").glob("checkpoint_*"))[-1]
    saved = [r for r in progress(out1) if r["training_iteration"] == int(newest.name.split("_")[1])][0]

    host = job_dir / "algo-1"
    hps = json.loads((host / "input" / "config" / "hyperparameters.json").read_text())
    assert hps == {"experiment": STARTER, "rollout_episodes": "1", "train_batch_size": "1024", "minibatch_size": "256",
                   "num_envs_per_env_runner": "8", "stop__timesteps_total": "3072", "checkpoint_freq": "1",
                   "env_config__distribution_mode": '"easy"', "env_config__env_name": "bigfish"}
    assert (host / "input" / "data" / "sm_drivers" / "scripts" / "environment.py").is_file()
    assert (host / "input" / "sm_training.env").is_file(), "written by the SDK's environment.py inside the host's /opt/ml"
    rc_json = json.loads((host / "input" / "config" / "resourceconfig.json").read_text())
    assert rc_json["current_host"] == "algo-1" and rc_json["hosts"] == ["algo-1"]
    # Stopped for good (--max-run, StopTrainingJob), SageMaker still uploads /opt/ml/model: the saved checkpoint, no rollout.
    assert list((host / "model" / "checkpoints").glob("checkpoint_*")) and not (host / "model" / "rollout.json").exists()

    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    out2 = second.stdout
    assert second.returncode == 0, out2[-4000:] + second.stderr[-3000:]
    assert "train.py -f experiments/procgen-starter-example.yaml" in out2 and "--run-dir /opt/ml/checkpoints" in out2
    resumed = [line for line in out2.splitlines() if line.startswith("resumed: ")]
    assert resumed and resumed[0].startswith(f"resumed: /opt/ml/checkpoints/checkpoints/{newest.name} (training_iteration {int(saved['training_iteration'])}, "
                                             f"timesteps_total {int(saved['timesteps_total'])}, time_total_s ")
    rows = progress(out2)
    assert rows[0]["training_iteration"] == saved["training_iteration"] + 1
    assert rows[0]["timesteps_total"] > saved["timesteps_total"], "timesteps continue from the checkpoint"
    assert rows[-1]["timesteps_total"] >= 3072

    model = host / "model"
    checkpoints = list((model / "checkpoints").glob("checkpoint_*/rllib_checkpoint.json"))
    assert len(checkpoints) == 1
    summary = json.loads((model / "summary.json").read_text())
    assert summary["stopped_by"] == "timesteps_total" and summary["timesteps_total"] >= 3072
    assert "timesteps_total: 3072" in (model / "config.yaml").read_text()
    rollout = json.loads((model / "rollout.json").read_text())
    assert rollout["episodes"] == 1 and rollout["env_name"] == "bigfish"
    # TensorBoard events and result.json beside the checkpoints: SageMaker syncs that folder to S3 while the job runs.
    tensorboard = host / "checkpoints"
    assert list(tensorboard.glob("events.out.tfevents.*")) and (tensorboard / "result.json").is_file()


def test_local_two_hosts_form_one_ray_cluster(tmp_path):
    """A learner group and an actors group, the learner second: its host (algo-2) runs the Ray head and train.py,
    and the model reaches algo-1 too, whichever host's /opt/ml/model SageMaker uploads."""
    job_dir = tmp_path / "job"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # as a user runs it (conftest sets it)
    proc = subprocess.run(local_cmd(job_dir, "--instance-groups", "actors=local:1,learner=local:1", "--set",
                                    "stop.timesteps_total=1024"), cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"},
                          capture_output=True, text=True)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-3000:]
    # Each host got its own /opt/ml and a core of its own; the head kept its CPU for the driver, so the env runner
    # ran on algo-1.
    assert "algo-1 (actors, local, core 0), algo-2 (learner, local, core 1, Ray head)" in out
    assert "algo-1 | Executing command: exec python3 -m sagemaker_tools.entry" in out
    assert "algo-2 | sagemaker: Ray head on algo-2" in out
    assert "algo-1 | sagemaker: joined the Ray head on algo-2 with 1 CPUs" in out
    assert "algo-2 | sagemaker: Ray cluster: 2 nodes, CPUs for env runners 0+1" in out
    assert "--ray-address 127.0.0.1:" in out and "--num-cpus 2" in out
    assert progress(out)[-1]["timesteps_total"] >= 1024
    assert "algo-2 | sagemaker: model: copied to algo-1" in out
    assert "algo-1 | sagemaker: the Ray head has stopped: training is over, this host is done" in out
    assert "local: algo-1 exited 0, algo-2 exited 0" in out
    rc = json.loads((job_dir / "algo-1" / "input" / "config" / "resourceconfig.json").read_text())
    assert rc["current_host"] == "algo-1" and rc["hosts"] == ["algo-1", "algo-2"] and rc["current_group_name"] == "actors"
    for host in ("algo-1", "algo-2"):
        model = job_dir / host / "model"
        assert (model / "summary.json").is_file() and (model / "rollout.json").is_file(), host
        assert list((model / "checkpoints").glob("checkpoint_*/rllib_checkpoint.json")), host
    assert not list((job_dir / "algo-1" / "checkpoints").glob("checkpoints/*")), "only the head trains"


def test_entry_point_needs_no_sdk(tmp_path):
    """The job's side imports no SageMaker SDK: the Deep Learning Container need not have it."""
    blocker = tmp_path / "no-sdk" / "sagemaker"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("the SageMaker SDK is blocked in this test")\n')
    code = ("import sys; sys.path[:0] = [sys.argv[1], '.']; from sagemaker_tools import entry as sm_entry; "
            "print(sm_entry.split_hyperparameters({'experiment': 'e.yaml', 'stop__timesteps_total': '5', "
            "'model__custom_model_config__depths': '[16, 32]', 'env_config.env_name': 'bigfish'}))")
    proc = subprocess.run([sys.executable, "-c", code, str(blocker.parent)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == ("('e.yaml', 5, ['env_config.env_name=bigfish', 'stop.timesteps_total=5', "
                                   "'model.custom_model_config.depths=[16, 32]'])")


# Overrides as users type them, each checked by the installed SDK's own environment.py and `source` under set -e.
ROUND_TRIP = [
    ("env_config.env_name", "bigfish"),
    ("model.custom_model_config.depths", "[16, 32, 32]"),
    ("env_config.distribution_mode", "'hard'"),
    ("model.custom_model", "it's a name"),
    ("lr", "0.0003"),
    ("model._private-key", '{"a b": [1, "x\'y"]}'),
    ("run_tag", "two  spaces and \"double\" quotes"),
]


@pytest.mark.parametrize("key, value", ROUND_TRIP, ids=[k for k, _ in ROUND_TRIP])
def test_overrides_survive_the_sdks_driver_environment(key, value):
    from utils.loader import parse_value

    hps = launch.hyperparameters(STARTER, [f"{key}={value}"], 1)
    launch.check_driver_environment(hps)  # raises if the SDK's sm_training.env would not source
    _, _, overrides = sm_entry.split_hyperparameters(hps)
    got_key, _, got_value = overrides[0].partition("=")
    assert got_key == key and parse_value(got_value) == parse_value(value)


def test_what_the_sdks_driver_cannot_take_is_refused():
    # The launcher's first encoding (dotted keys, as the SDK leaves them) is what killed real jobs: the check sees it.
    with pytest.raises(launch.UserError, match=r"would stop the job in the SDK's sm_train.sh .*env_config.env_name"):
        launch.check_driver_environment({"experiment": STARTER, "env_config.env_name": "bigfish"})
    with pytest.raises(launch.UserError, match=r"would stop the job"):
        launch.check_driver_environment({"experiment": STARTER, "name": "it's"})
    for key in ("a_.b", "a..b", "a b", "a__b", "env_config.env$name"):
        with pytest.raises(launch.UserError, match=r"a key SageMaker cannot pass through its driver script"):
            launch.hyperparameters(STARTER, [f"{key}=1"], 1)


def test_a_failed_job_with_wait_ends_in_one_line(monkeypatch):
    """moto completes every job at once, so a job that fails on SageMaker is stood in for here: the SDK's own
    FailedStatusError, as TrainingJob.wait raises it for --wait, becomes the launcher's one line."""
    from sagemaker.core.resources import TrainingJob
    from sagemaker.core.utils.exceptions import FailedStatusError

    class Failing:
        def wait(self, logs):
            raise FailedStatusError(resource_type="TrainingJob", status="Failed", reason="AlgorithmError: exit 2")

    monkeypatch.setattr(TrainingJob, "get", lambda **kw: Failing())
    plan = launch.Plan(exp=None, experiment=STARTER, groups=[], job_name="failing-1", spot=False, max_run_s=3600,
                       max_wait_s=None, hyperparameters={}, metric_definitions=[], prices={}, region="us-east-1")
    with pytest.raises(launch.UserError, match=r"^The job failing-1 did not complete: .*Failure Reason: AlgorithmError: exit 2"):
        launch.wait_for(plan, session=None)
