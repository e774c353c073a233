"""The AWS Deep Learning Container (DLC) a SageMaker training job runs.

The newest py312 training image of the experiment's framework at or below the version requirements.txt pins,
whose CUDA and framework build run on every GPU of the job. The SDK picks images by version alone, and
PyTorch 2.9's training image is built on CUDA 13, which has no code for GPUs below compute capability 7.5: a
job on ml.p3 (V100, 7.0) would start an image that cannot use its GPU.

Used by launch.py (`default_image`); imports the SageMaker SDK lazily, like launch.py.
"""

import re

from utils.errors import UserError

PY_VERSION = "py312"
# config.framework -> (the SDK's framework name, the package requirements.txt pins)
FRAMEWORKS = {"torch": ("pytorch", "torch"), "tf": ("tensorflow", "tensorflow"), "tf2": ("tensorflow", "tensorflow")}

# GPU model, as sagemaker/prices.yaml names it (`gpu:`), -> CUDA compute capability.
# Source: NVIDIA, "CUDA GPUs - Compute Capability", https://developer.nvidia.com/cuda-gpus
# (the A10G is AWS's variant of the A10, the same GA102 chip: 8.6).
COMPUTE_CAPABILITY = {
    "K80": (3, 7),  # ml.p2
    "M60": (5, 2),  # ml.g3
    "V100": (7, 0),  # ml.p3
    "T4": (7, 5),  # ml.g4dn
    "A100": (8, 0),  # ml.p4d
    "A10G": (8, 6),  # ml.g5
    "L4": (8, 9),  # ml.g6
    "L40S": (8, 9),  # ml.g6e
    "H100": (9, 0),  # ml.p5
    "H200": (9, 0),  # ml.p5e
}

# The lowest compute capability each CUDA major version builds and ships library code for. NVIDIA CUDA Toolkit
# release notes (https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/): CUDA 11.0 removed compute capability
# 3.0/3.2 (floor 3.5); CUDA 12.0 removed Kepler 3.5/3.7 (floor 5.0); CUDA 13.0 removed Maxwell, Pascal and Volta
# (floor 7.5; https://developer.nvidia.com/blog/navigating-gpu-architecture-support-a-guide-for-nvidia-cuda-developers/).
CUDA_FLOOR = {11: (3, 5), 12: (5, 0), 13: (7, 5)}

# (SDK framework, version) of each DLC GPU training image -> (its CUDA, the lowest compute capability the
# framework's own kernels are built for). The installed SDK's pytorch.json / tensorflow.json carry no CUDA for
# these images (their tags stop at "-gpu-py312"); where a config does (a `container_version` such as
# "cu130-amzn2023-sagemaker", as pytorch-amzn2023.json has), `_sdk_cuda` reads it first and it wins over this table.
# CUDA: AWS DLC release notes, github.com/aws/deep-learning-containers
#   docs/releasenotes/pytorch/pytorch-training-2.{6,7,8,9}-gpu-sagemaker.md (cu126, cu128, cu129, cu130),
#   docs/releasenotes/tensorflow/tensorflow-training-2.19-gpu-sagemaker.md (cu125), docs/tensorflow/changelog/index.md
#   (2.21: CUDA 12.9.1).
# Framework floors: these DLCs install the upstream wheels (Dockerfiles under pytorch/training/docker/2.x/py3/cu1xx/
# and tensorflow/training/docker/2.19/py3/cu125/ of that repository), whose GPU architectures are:
#   torch cu126: 5.0-9.0 (pytorch .ci/manywheel/build_cuda.sh); torch 2.7 cu128: 7.5 and up, sm_70 was dropped from
#   CUDA 12.8 builds for 2.7 (pytorch/pytorch#147607); torch 2.8 cu128/cu129: 7.0 and up, Volta restored, Maxwell
#   and Pascal dropped (pytorch/pytorch#157517, #160269); torch 2.9 cu130: 7.5 and up (CUDA 13);
#   tensorflow 2.19/2.21: sm_60, sm_70, sm_80, sm_89, compute_90 (tensorflow/python/platform/build_info.py of
#   the tensorflow 2.21.0 wheel; 2.19 has the same hermetic CUDA 12.5.1 build, not checked separately).
DLC_BUILDS = {
    ("pytorch", "2.6.0"): ((12, 6), (5, 0)),
    ("pytorch", "2.7.1"): ((12, 8), (7, 5)),
    ("pytorch", "2.8.0"): ((12, 9), (7, 0)),
    ("pytorch", "2.9.0"): ((13, 0), (7, 5)),
    ("tensorflow", "2.19.0"): ((12, 5), (6, 0)),
    ("tensorflow", "2.21.0"): ((12, 9), (6, 0)),
}

_REST = "the rest of requirements.txt is pip-installed when the job starts"

# GPU types to offer when no image runs on the job's GPUs: current, cheap, one GPU each.
SUGGESTED = {"ml.g4dn.xlarge": "T4", "ml.g5.xlarge": "A10G", "ml.g6.xlarge": "L4"}


def training_image(framework, pinned, instances, region):
    """(image URI, note) of the DLC training image for a job.

    framework: config.framework ("torch", "tf" or "tf2"). pinned: the version requirements.txt pins for it, or
    None. instances: {instance type: its sagemaker/prices.yaml entry} for every instance type of the job; an
    entry with `gpus` > 0 must name its `gpu` model. region: the AWS region.

    The newest py312 version <= pinned (the newest of all when none is) whose image supports every GPU of the
    job; a CPU-only job gets the CPU image of the newest version <= pinned. Raises UserError when no image fits.
    """
    sdk_fw, package = _framework(framework)
    versions = _versions(sdk_fw)
    fitting = [v for v in versions if pinned and _version_key(v) <= _version_key(pinned)]
    candidates = fitting or versions
    if not pinned:
        pin_text = f"requirements.txt pins no {package} version"
    else:
        pin_text = f"requirements.txt pins {package} {pinned}{'' if fitting else f', older than every {PY_VERSION} image'}"
    gpus = _job_gpus(instances)
    if not gpus:
        version = candidates[0]
        uri = _retrieve(sdk_fw, version, region, next(iter(instances)))
        return uri, f"{sdk_fw} {version} (CPU, {PY_VERSION}) from the image; {pin_text}; {_REST}"

    weakest = min(gpus, key=lambda g: g[2])
    skipped = []
    for version in candidates:
        fit, why = _supports(sdk_fw, version, weakest)
        if fit:
            break
        skipped.append(why)
    else:
        raise _refusal(sdk_fw, package, pinned, versions, candidates, weakest)
    cuda = image_cuda(sdk_fw, version)
    note = f"{sdk_fw} {version} (GPU, CUDA {_cc(cuda)}, {PY_VERSION}) from the image; {pin_text}"
    if skipped:
        note += f"; newer images skipped: {'; '.join(skipped)}"
    return _retrieve(sdk_fw, version, region, weakest[0]), f"{note}; {_REST}"


def image_floor(sdk_fw, version):
    """Lowest compute capability the DLC GPU training image `version` runs on, or None when its CUDA is unknown."""
    cuda = image_cuda(sdk_fw, version)
    if cuda is None or cuda[0] not in CUDA_FLOOR:
        return None
    framework_floor = DLC_BUILDS.get((sdk_fw, version), (None, (0, 0)))[1]
    return max(CUDA_FLOOR[cuda[0]], framework_floor)


def image_cuda(sdk_fw, version):
    """CUDA (major, minor) of the DLC GPU training image: the SDK's own record first, else DLC_BUILDS; None if neither."""
    table = DLC_BUILDS.get((sdk_fw, version))
    return _sdk_cuda(sdk_fw, version) or (table[0] if table else None)


def _framework(framework):
    if framework not in FRAMEWORKS:
        raise UserError(f'config.framework "{framework}" has no Deep Learning Container. '
                        f"Allowed: {', '.join(FRAMEWORKS)}; or pass --image URI.")
    return FRAMEWORKS[framework]


def _versions(sdk_fw):
    """The framework's py312 training versions in the SDK, newest first (full versions only, not aliases)."""
    from sagemaker.core import image_uris

    versions = [v for v in image_uris.list_versions(sdk_fw, "training")
                if v.count(".") == 2 and PY_VERSION in image_uris.list_py_versions(sdk_fw, v, "training")]
    return sorted(versions, key=_version_key, reverse=True)


def _version_key(version):
    return tuple(int(x) for x in re.findall(r"\d+", version))


def _job_gpus(instances):
    """[(instance type, GPU model, compute capability)] of the job's GPU instance types."""
    gpus = []
    for itype, info in instances.items():
        if not info.get("gpus"):
            continue
        model = info.get("gpu")
        if not model:
            raise UserError(f"{itype} has {info['gpus']} GPU(s) but no `gpu:` model in sagemaker/prices.yaml. Add its model "
                            "(e.g. gpu: T4) so the image's CUDA can be checked against it, or pass --image URI.")
        if model not in COMPUTE_CAPABILITY:
            raise UserError(f'GPU model "{model}" of {itype} (sagemaker/prices.yaml) has no compute capability in '
                            f"sagemaker_tools/images.py (known: {', '.join(COMPUTE_CAPABILITY)}). Add it from "
                            "https://developer.nvidia.com/cuda-gpus, or pass --image URI.")
        gpus.append((itype, model, COMPUTE_CAPABILITY[model]))
    return gpus


def _sdk_cuda(sdk_fw, version):
    """CUDA (major, minor) from the SDK's own config for the GPU training image, when it records one."""
    from sagemaker.core import image_uris

    config = image_uris.config_for_framework(sdk_fw)
    config = config if "scope" in config else config.get("training", {})
    tag = config.get("versions", {}).get(version, {}).get("container_version", {}).get("gpu", "")
    m = re.search(r"\bcu(\d+)(\d)\b", tag)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _supports(sdk_fw, version, gpu):
    """(True, "") when the image runs on `gpu`, else (False, why not)."""
    itype, model, cc = gpu
    floor = image_floor(sdk_fw, version)
    if floor is None:
        return False, f"{sdk_fw} {version} ({_unknown(sdk_fw, version)})"
    if cc < floor:
        cuda = image_cuda(sdk_fw, version)
        return False, (f"{sdk_fw} {version} (CUDA {_cc(cuda)}) needs compute capability >= {_cc(floor)}, "
                       f"{itype} has {model} ({_cc(cc)})")
    return True, ""


def _refusal(sdk_fw, package, pinned, versions, candidates, gpu):
    itype, model, cc = gpu
    needs = []
    for v in candidates:
        floor, cuda = image_floor(sdk_fw, v), image_cuda(sdk_fw, v)
        needs.append(f"{v} needs {_cc(floor)} (CUDA {_cc(cuda)})" if floor else f"{v}: {_unknown(sdk_fw, v)}")
    above = [v for v in versions if v not in candidates and _supports(sdk_fw, v, gpu)[0]]
    newest = f"{sdk_fw} {above[0]}, above the pin (pass it with --image if your code runs on {package} {above[0]})" if above else "none"
    bound = f"at or below {package} {pinned} (requirements.txt)" if pinned and candidates != versions else "in the SDK"
    floors = [f for f in (image_floor(sdk_fw, v) for v in candidates) if f is not None]
    types = [f"{t} ({m}, {_cc(COMPUTE_CAPABILITY[m])})" for t, m in SUGGESTED.items()
             if floors and COMPUTE_CAPABILITY[m] >= min(floors)]
    such_as = f" such as {', '.join(types[:-1])} or {types[-1]}" if len(types) > 1 else f" such as {types[0]}" if types else ""
    return UserError(
        f"{itype} has NVIDIA {model} GPUs (compute capability {_cc(cc)}), and no {sdk_fw} {PY_VERSION} training image "
        f"{bound} runs on them: {'; '.join(needs)}. Newest compatible image: {newest}. Run that part of the job on a "
        f"newer GPU type{such_as} (--instance-type, or its group's type in --instance-groups), or pass --image URI with an "
        f"image built for compute capability {_cc(cc)}.")


def _unknown(sdk_fw, version):
    cuda = image_cuda(sdk_fw, version)
    if cuda is None:
        return "its CUDA version is unknown: add it to DLC_BUILDS in sagemaker_tools/images.py"
    return f"CUDA {_cc(cuda)} has no compute-capability floor: add it to CUDA_FLOOR in sagemaker_tools/images.py"


def _cc(cc):
    return f"{cc[0]}.{cc[1]}"


def _retrieve(sdk_fw, version, region, instance_type):
    from sagemaker.core import image_uris

    try:
        return image_uris.retrieve(sdk_fw, region=region, version=version, py_version=PY_VERSION,
                                   instance_type=instance_type, image_scope="training")
    except ValueError as e:
        raise UserError(f"No {sdk_fw} {version} training image for region {region}: {e} Pass --image URI.") from None
