"""sagemaker_tools/images.py: the DLC training image a job gets runs on the job's GPUs.

Real SDK data throughout: sagemaker.core.image_uris lists versions and builds URIs offline from the JSON configs
it ships, so these tests need no network and follow the installed SDK.
"""

import re

import pytest
import yaml

from sagemaker_tools import images
from tests.conftest import ROOT
from utils.errors import UserError

REGION = "us-east-1"
PRICES = yaml.safe_load((ROOT / "sagemaker" / "prices.yaml").read_text())["instances"]


def pin(package):
    """The version requirements.txt pins, read the way launch.py reads it."""
    m = re.search(rf"^\s*{package}==([^\s;#]+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    return m.group(1)


def job(*instance_types, **extra):
    """{instance type: prices.yaml entry} for a job's instance types; `extra` adds entries not in prices.yaml."""
    return {**{t: PRICES[t] for t in instance_types}, **{k.replace("_", "."): v for k, v in extra.items()}}


def version_of(uri):
    m = re.search(r":(\d+\.\d+\.\d+)-(cpu|gpu)-py312$", uri)
    assert m, uri
    return m.group(1), m.group(2)


def key(version):
    return tuple(int(x) for x in version.split("."))


def py312_versions(sdk_fw):
    """The SDK's py312 training versions, newest first: computed here from the SDK, not taken from images.py."""
    from sagemaker.core import image_uris

    found = [v for v in image_uris.list_versions(sdk_fw, "training")
             if v.count(".") == 2 and "py312" in image_uris.list_py_versions(sdk_fw, v, "training")]
    return sorted(found, key=key, reverse=True)


def newest_at_or_below(sdk_fw, pinned):
    return next(v for v in py312_versions(sdk_fw) if key(v) <= key(pinned))


def retrieve(sdk_fw, version, instance_type):
    from sagemaker.core import image_uris

    return image_uris.retrieve(sdk_fw, region=REGION, version=version, py_version="py312",
                               instance_type=instance_type, image_scope="training")


# --------------------------------------------------------------------------- GPU jobs


def test_v100_never_gets_a_cuda13_image_and_gets_the_newest_that_runs_on_it():
    pinned = pin("torch")
    uri, note = images.training_image("torch", pinned, job("ml.p3.2xlarge"), REGION)
    version, processor = version_of(uri)
    assert processor == "gpu" and uri == retrieve("pytorch", version, "ml.p3.2xlarge")
    assert key(version) <= key(pinned)
    assert images.image_cuda("pytorch", version)[0] < 13
    assert images.image_floor("pytorch", version) <= images.COMPUTE_CAPABILITY["V100"]
    newer = [v for v in py312_versions("pytorch") if key(version) < key(v) <= key(pinned)]
    assert newer, "the SDK has no image newer than the chosen one at or below the pin: this test checks nothing"
    for v in newer:  # each newer image was skipped because it cannot run on a V100, and the note says why
        assert images.image_floor("pytorch", v) > images.COMPUTE_CAPABILITY["V100"]
        assert f"pytorch {v} (CUDA" in note and "V100 (7.0)" in note


def test_pytorch_29_image_is_recorded_as_cuda13_so_it_is_refused_on_volta():
    # AWS DLC release notes: pytorch-training:2.9.0-gpu-py312-cu130-ubuntu22.04-sagemaker.
    assert images.image_cuda("pytorch", "2.9.0") == (13, 0)
    assert images.image_floor("pytorch", "2.9.0") == (7, 5)
    uri, _ = images.training_image("torch", "2.9.0", job("ml.p3.2xlarge"), REGION)
    assert version_of(uri)[0] != "2.9.0"


def test_framework_build_can_drop_a_gpu_its_cuda_still_supports():
    # torch 2.7.1's CUDA 12.8 wheels have no sm_70 kernels although CUDA 12.8 has: a V100 job pinned there gets 2.6.0.
    assert images.CUDA_FLOOR[images.image_cuda("pytorch", "2.7.1")[0]] <= images.COMPUTE_CAPABILITY["V100"]
    uri, note = images.training_image("torch", "2.7.1", job("ml.p3.2xlarge"), REGION)
    assert version_of(uri) == ("2.6.0", "gpu") and "pytorch 2.7.1 (CUDA 12.8)" in note


@pytest.mark.parametrize("instance_type", ["ml.g4dn.4xlarge", "ml.g5.xlarge", "ml.g6.xlarge"])
def test_turing_and_newer_get_the_newest_image_at_or_below_the_pin(instance_type):
    pinned = pin("torch")
    uri, note = images.training_image("torch", pinned, job(instance_type), REGION)
    expected = newest_at_or_below("pytorch", pinned)
    assert uri == retrieve("pytorch", expected, instance_type) and version_of(uri) == (expected, "gpu")
    assert "skipped" not in note


@pytest.mark.parametrize("pinned", ["2.8.0", "2.9.0"])
def test_the_pin_bounds_the_version(pinned):
    uri, _ = images.training_image("torch", pinned, job("ml.g5.xlarge"), REGION)
    assert version_of(uri) == (newest_at_or_below("pytorch", pinned), "gpu")


def test_heterogeneous_job_checks_the_gpu_group_not_the_first_group():
    pinned = pin("torch")
    # CPU actors listed first: the learner's V100 still decides, and the image is the GPU one.
    hetero, _ = images.training_image("torch", pinned, job("ml.c5.4xlarge", "ml.p3.2xlarge"), REGION)
    alone, _ = images.training_image("torch", pinned, job("ml.p3.2xlarge"), REGION)
    assert hetero == alone and version_of(hetero)[1] == "gpu"
    # A learner on a newer GPU with CPU actors: the newest image at or below the pin, GPU build.
    uri, _ = images.training_image("torch", pinned, job("ml.c5.4xlarge", "ml.g5.xlarge"), REGION)
    assert version_of(uri) == (newest_at_or_below("pytorch", pinned), "gpu")


@pytest.mark.parametrize("types", [("ml.g5.xlarge", "ml.p3.2xlarge"), ("ml.p3.2xlarge", "ml.g5.xlarge")])
def test_mixed_gpu_models_are_held_to_the_oldest(types):
    pinned = pin("torch")
    mixed, note = images.training_image("torch", pinned, job(*types), REGION)
    v100, _ = images.training_image("torch", pinned, job("ml.p3.2xlarge"), REGION)
    assert version_of(mixed) == version_of(v100) and "ml.p3.2xlarge has V100" in note


# --------------------------------------------------------------------------- CPU-only jobs


@pytest.mark.parametrize("framework, sdk_fw, package", [("torch", "pytorch", "torch"), ("tf", "tensorflow", "tensorflow")])
def test_cpu_only_job_gets_the_cpu_image_of_the_newest_version_at_or_below_the_pin(framework, sdk_fw, package):
    pinned = pin(package)
    uri, note = images.training_image(framework, pinned, job("ml.c5.4xlarge", "ml.m5.xlarge"), REGION)
    expected = newest_at_or_below(sdk_fw, pinned)
    assert uri == retrieve(sdk_fw, expected, "ml.c5.4xlarge") and version_of(uri) == (expected, "cpu")
    assert "CPU" in note and "CUDA" not in note


# --------------------------------------------------------------------------- TensorFlow


@pytest.mark.parametrize("instance_type", ["ml.p3.2xlarge", "ml.g4dn.xlarge", "ml.g5.xlarge"])
def test_tensorflow_gets_the_newest_image_that_runs_on_the_gpu(instance_type):
    pinned = pin("tensorflow")
    uri, _ = images.training_image("tf", pinned, job(instance_type), REGION)
    version, processor = version_of(uri)
    cc = images.COMPUTE_CAPABILITY[PRICES[instance_type]["gpu"]]
    assert processor == "gpu" and key(version) <= key(pinned) and images.image_floor("tensorflow", version) <= cc
    newer = [v for v in py312_versions("tensorflow") if key(version) < key(v) <= key(pinned)]
    assert all(images.image_floor("tensorflow", v) > cc for v in newer)


def test_tensorflow_refuses_a_gpu_below_its_wheels_architectures():
    with pytest.raises(UserError) as e:
        images.training_image("tf", pin("tensorflow"), job(ml_g3_4xlarge={"gpus": 1, "gpu": "M60"}), REGION)
    assert "ml.g3.4xlarge" in str(e.value) and "M60" in str(e.value) and "5.2" in str(e.value)


# --------------------------------------------------------------------------- refusals


def test_refusal_names_instance_gpu_newest_compatible_and_the_flags():
    with pytest.raises(UserError) as e:
        images.training_image("torch", pin("torch"), job("ml.c5.4xlarge", ml_p2_xlarge={"gpus": 1, "gpu": "K80"}), REGION)
    msg = str(e.value)
    assert "ml.p2.xlarge" in msg and "K80" in msg and "3.7" in msg
    assert "Newest compatible image: none" in msg
    assert "--image URI" in msg and "--instance-type" in msg and "--instance-groups" in msg
    assert "ml.g4dn.xlarge" in msg and "ml.g5.xlarge" in msg
    for v in py312_versions("pytorch"):  # every image it looked at, with what it needs
        assert f"{v} needs" in msg


def test_refusal_offers_a_compatible_image_above_the_pin(monkeypatch):
    # Were the 2.6.0 image CUDA 13, a V100 job pinned to torch 2.6.0 would have no image; 2.8.0 would run.
    monkeypatch.setitem(images.DLC_BUILDS, ("pytorch", "2.6.0"), ((13, 0), (7, 5)))
    with pytest.raises(UserError) as e:
        images.training_image("torch", "2.6.0", job("ml.p3.2xlarge"), REGION)
    msg = str(e.value)
    assert "at or below torch 2.6.0" in msg and "Newest compatible image: pytorch 2.8.0, above the pin" in msg


def test_gpu_instance_without_a_known_model_is_refused():
    with pytest.raises(UserError, match=r"ml\.x1\.xlarge has 1 GPU\(s\) but no `gpu:` model"):
        images.training_image("torch", pin("torch"), job(ml_x1_xlarge={"gpus": 1}), REGION)
    with pytest.raises(UserError, match=r'GPU model "Z9" of ml\.x1\.xlarge'):
        images.training_image("torch", pin("torch"), job(ml_x1_xlarge={"gpus": 1, "gpu": "Z9"}), REGION)


def test_unknown_framework_is_refused():
    with pytest.raises(UserError, match=r'config.framework "jax"'):
        images.training_image("jax", None, job("ml.c5.4xlarge"), REGION)


# --------------------------------------------------------------------------- where the CUDA figures come from


def test_a_version_of_unknown_cuda_is_skipped_and_the_note_says_so(monkeypatch):
    monkeypatch.delitem(images.DLC_BUILDS, ("pytorch", "2.9.0"))
    uri, note = images.training_image("torch", "2.9.0", job("ml.g5.xlarge"), REGION)
    assert version_of(uri)[0] != "2.9.0" and "pytorch 2.9.0 (its CUDA version is unknown" in note


def test_cuda_is_read_from_the_sdk_first(monkeypatch):
    # The SDK's pytorch-amzn2023 config records container_version "cu133-amzn2023-sagemaker" for 2.13.
    assert images.image_cuda("pytorch-amzn2023", "2.13") == (13, 3)
    monkeypatch.setitem(images.DLC_BUILDS, ("pytorch-amzn2023", "2.13"), ((12, 0), (5, 0)))
    assert images.image_cuda("pytorch-amzn2023", "2.13") == (13, 3)


@pytest.mark.parametrize("sdk_fw", ["pytorch", "tensorflow"])
def test_every_py312_training_image_of_the_installed_sdk_has_a_known_floor(sdk_fw):
    # Fails when an SDK upgrade lists a new image: record its CUDA (and framework floor) in DLC_BUILDS.
    unknown = [v for v in py312_versions(sdk_fw) if images.image_floor(sdk_fw, v) is None]
    assert not unknown, f"{sdk_fw} {unknown}: add them to DLC_BUILDS in sagemaker_tools/images.py"


def test_every_gpu_instance_in_prices_yaml_has_a_known_compute_capability():
    missing = {t: i.get("gpu") for t, i in PRICES.items() if i["gpus"] and i.get("gpu") not in images.COMPUTE_CAPABILITY}
    assert not missing, f"add these GPU models to COMPUTE_CAPABILITY in sagemaker_tools/images.py: {missing}"
