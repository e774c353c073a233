"""One home per convention (utils/conventions.py) and the registry as the one way to the plugins."""

import re
import sys

import pytest

from tests.conftest import ROOT
from utils import conventions
from utils.conventions import Pin, parse_requirement, read_pins


@pytest.fixture(params=["packaging", "standard library"])
def parser(request, monkeypatch):
    """Both ways a pin is read: with `packaging`, and before anything is installed (no packaging)."""
    if request.param == "standard library":
        monkeypatch.setitem(sys.modules, "packaging.requirements", None)
    return request.param


def test_pins_are_read_the_same_with_and_without_packaging(parser):
    assert parse_requirement("ray[rllib]==2.60.0") == Pin("ray", "[rllib]", "2.60.0")
    assert parse_requirement("PyYAML==6.0.4  # a comment") == Pin("PyYAML", "", "6.0.4")
    assert parse_requirement('torch==2.13.0; sys_platform == "linux"').marker == 'sys_platform == "linux"'
    assert parse_requirement("# only a comment") is None and parse_requirement("   ") is None
    for loose in ("numpy>=1.26", "gym", "tqdm==4.*", "a==1,<2"):
        with pytest.raises(ValueError):
            parse_requirement(loose)


def test_read_pins_splits_pins_from_loose_lines(tmp_path, parser):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# header\nray[rllib]==2.60.0\nnumpy>=1.26\n\ntf-keras==2.21.0\n")
    pins, loose = read_pins(reqs)
    assert [(p.key, p.version) for p in pins] == [("ray", "2.60.0"), ("tf-keras", "2.21.0")]
    assert loose == [(3, "numpy>=1.26")]
    assert conventions.pinned_version(reqs, "TF_Keras") == "2.21.0" and conventions.pinned_version(reqs, "torch") is None


def test_the_repositorys_requirements_are_all_pins():
    for name in ("requirements.txt", "requirements-dev.txt"):
        pins, loose = read_pins(ROOT / name)
        assert pins and loose == [], name


def test_run_sh_default_experiment_is_the_pythons():
    """run.sh keeps its default in shell (AIcrowd's tools `source` it to read $EXPERIMENT): the same file."""
    m = re.search(r"^export EXPERIMENT=\$\{EXPERIMENT:-([^}]+)\}$", (ROOT / "run.sh").read_text(), re.M)
    assert m and m.group(1) == conventions.DEFAULT_EXPERIMENT


def test_run_dir_and_same_release():
    assert conventions.run_dir("outputs", "procgen-ppo", "coinrun").as_posix() == "outputs/procgen-ppo/coinrun"
    assert conventions.same_release("2.9.0+cu128", "2.9.0") and not conventions.same_release("2.9.1", "2.9.0")


def test_custom_algorithms_are_registered_with_tune_too():
    import registry

    assert "RandomPolicy" in registry.custom_algorithm_names() and "impala_cnn_torch" in registry.model_names()
    assert registry.model_framework("impala_cnn_tf") == "tf"
    registry.register_all(models=[], algorithms=["RandomPolicy"])
    from ray.tune.registry import get_trainable_cls

    assert get_trainable_cls("RandomPolicy") is registry.algorithm_class("RandomPolicy")
    kinds = {kind: names for kind, names, _ in registry.plugin_kinds()}
    assert kinds["custom algorithm"] == registry.custom_algorithm_names() and "procgen_env_wrapper" in kinds["env"]
