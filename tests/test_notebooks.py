"""The SageMaker notebooks (sagemaker/notebooks/*.ipynb), executed top to bottom with nbclient as a user runs them.

- Local mode (the notebooks' default `local = True`): each runs its job on this machine with launch.py --local
  (one host, or two forming one Ray cluster), tiny, and the executed notebook must show the plan before the
  launch, a job that exited 0 and a model with a checkpoint; 1_train must also show a rollout video and the
  learning curve.
- `local = False` without AWS credentials: the notebook must stop at the plan cell with the launcher's
  one-line error, no traceback, and run nothing after it.

The kernel is ipykernel's `python3`, which jupyter_client starts with this interpreter (the venv's), in
sagemaker/notebooks as a user's notebook server would. Outputs go to a temporary $OUTPUTS_DIR.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.conftest import ROOT, SLOWEST_START_S, hang_ceiling

NOTEBOOKS = ROOT / "sagemaker" / "notebooks"
TRAIN = "1_train"
NAMES = [TRAIN, "2_train-homo-distributed-cpu", "3_train-homo-distributed-gpu", "train-hetero-distributed"]
HOSTS = {TRAIN: 1, "2_train-homo-distributed-cpu": 2, "3_train-homo-distributed-gpu": 2, "train-hetero-distributed": 2}
# Each notebook's local job: 1,024 env steps, and Ray/TF start-ups in the kernel, the job's hosts and the rollouts.
LOCAL_CEILING = hang_ceiling(1024, runs=4)


def run_notebook(nb, env):
    """Execute `nb` in place as a user's "Run All" would; CellExecutionError when a cell fails (the rest not run).

    No cell timeout: a slow machine makes a run slower, never red (pytest-timeout guards against hangs). The
    kernel's start-up and the wait for a cell's last output are bounded only against hangs, and output that
    does not arrive is an error rather than silently missing."""
    client = NotebookClient(nb, kernel_name="python3", timeout=None, startup_timeout=SLOWEST_START_S,
                            iopub_timeout=SLOWEST_START_S, raise_on_iopub_timeout=True,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env=env)


def kernel_env(**changes):
    """This process's environment for the kernel: matplotlib's inline backend (no MPLBACKEND) and `changes`
    (a value of None removes the variable)."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def cell_with(nb, snippet):
    """The one code cell whose source contains `snippet`."""
    found = [c for c in code_cells(nb) if snippet in c.source]
    assert len(found) == 1, f"{len(found)} code cells contain {snippet!r}"
    return found[0]


def stream(cell, name=None):
    """The text the cell printed (stdout and stderr, or only `name`)."""
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and name in (None, o.name))


def rich(cell, mime):
    """The `mime` data of the cell's displays and results."""
    return [o.data[mime] for o in cell.outputs if o.output_type in ("display_data", "execute_result") and mime in o.data]


def read(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean(name):
    """No stored outputs, the python3 kernel, and the switch `local = True` as the first code cell."""
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: stored output in {cell.source[:60]!r}"
    assert re.search(r"^local = True$", code_cells(nb)[0].source, re.M)


@pytest.mark.timeout(LOCAL_CEILING)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_its_job_locally(name, tmp_path):
    nb = read(name)
    run_notebook(nb, kernel_env(OUTPUTS_DIR=str(tmp_path)))
    check_local_run(nb, name, tmp_path)


def check_local_run(nb, name, outputs):
    """What an executed notebook in local mode must show; `outputs`: the $OUTPUTS_DIR it ran with."""
    cells = code_cells(nb)
    assert all(c.execution_count is not None for c in cells)
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors

    # The plan is printed by its own cell, before the one that launches; start() does not print it again.
    show, start = cell_with(nb, "job.show()"), cell_with(nb, "job.start()")
    assert cells.index(show) < cells.index(start)
    plan = stream(show, "stdout")
    assert re.search(r"^experiment: .*procgen-starter-example\.yaml.*; in the job: ", plan, re.M), plan
    job_line = re.search(r"^job: \S+$", plan, re.M)
    assert job_line, plan
    launched = stream(start, "stdout")
    assert launched.startswith("source archive: ") and job_line.group(0) not in launched, launched[:2000]

    # The local job ran its hosts (two: one Ray cluster) and exited 0.
    assert re.search(rf"^local: {HOSTS[name]} host\(s\) on this machine", launched, re.M), launched[:2000]
    if HOSTS[name] > 1:
        assert re.search(r"^algo-\d \| sagemaker: joined the Ray head", launched, re.M), launched[-4000:]
        assert re.search(rf"^algo-\d \| sagemaker: Ray cluster: {HOSTS[name]} nodes", launched, re.M), launched[-4000:]
    assert "local: job completed; model: " in launched, launched[-4000:]
    assert launched.rstrip().endswith("job exit code: 0"), launched[-4000:]

    # The model: the head host's /opt/ml/model, under this run's outputs, holds the final checkpoint.
    shown = stream(cell_with(nb, "model_dir.glob"), "stdout")
    checkpoint = Path(re.search(r"^checkpoint: (.+)$", shown, re.M).group(1))
    assert re.fullmatch(r"checkpoint_\d+", checkpoint.name) and checkpoint.parent.parent.name == "model", shown
    assert checkpoint.is_relative_to(outputs) and any(checkpoint.iterdir()), shown

    if name == TRAIN:
        played = cell_with(nb, "rollout.py")
        videos = rich(played, "video/mp4") + [h for h in rich(played, "text/html") if "<video" in h]
        assert videos and "data:video/mp4;base64," in videos[0], played.outputs
        curve = cell_with(nb, "result.json")
        assert rich(curve, "image/png"), curve.outputs


@pytest.mark.parametrize("name, region, message", [
    *[(n, "us-east-1", "No AWS credentials found.") for n in NAMES],
    (TRAIN, None, "No AWS region given."),
])
def test_notebook_without_aws_stops_at_the_plan_with_one_line(name, region, message, tmp_path):
    """`local = False` and no AWS set-up: Run All ends at the plan cell with the launcher's one-line error."""
    nb = read(name)
    switch = code_cells(nb)[0]
    switch.source = switch.source.replace("local = True", "local = False")
    assert "local = False" in switch.source
    no_aws = {k: None for k in os.environ if k.startswith("AWS_")}
    env = kernel_env(**no_aws, SAGEMAKER_ROLE=None, OUTPUTS_DIR=str(tmp_path), AWS_EC2_METADATA_DISABLED="true",
                     AWS_CONFIG_FILE=str(tmp_path / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
                     **({"AWS_DEFAULT_REGION": region} if region else {}))
    with pytest.raises(CellExecutionError):
        run_notebook(nb, env)

    cells = code_cells(nb)
    show = cell_with(nb, "job.show()")
    after = cells[cells.index(show) + 1:]
    assert show.execution_count is not None and after and all(c.execution_count is None for c in after)
    assert not [o for o in show.outputs if o.output_type == "error"], show.outputs
    printed = stream(show)
    errors = [line for line in printed.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), printed
    assert "Traceback" not in printed and not re.search(r'^\s*File "', printed, re.M), printed
