# The image AIcrowd's grader builds when aicrowd.json says "docker_build": true (its 2020 default image has
# Python 3.7, where ray 2.60 cannot install). The grader then runs ./run.sh --train and ./run.sh --rollout in
# it, with AICROWD_IS_GRADING set and no network: everything is installed here, at build time.
#
# CUDA 12 base: the grader's GPU is a V100 (compute capability 7.0), which CUDA 13 no longer supports. The
# nvidia/cuda image also sets NVIDIA_VISIBLE_DEVICES / NVIDIA_DRIVER_CAPABILITIES, which the NVIDIA container
# runtime needs to mount the driver. TensorFlow 2.21 is built for sm_70 with CUDA 12.5 and uses this image's
# CUDA 12.6 and cuDNN 9 libraries.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    SHELL=/bin/bash

# Python 3.11 (Ubuntu 22.04 ships 3.10; its own python3.11 is a release candidate), so from deadsnakes.
# libgl1 and libglib2.0-0: procgen's Qt renderer loads libGL.so.1 and libglib-2.0.so.0.
RUN apt-get -qq update \
 && apt-get -qq install -y --no-install-recommends ca-certificates gnupg software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get -qq update \
 && apt-get -qq install -y --no-install-recommends python3.11 python3.11-venv libgl1 libglib2.0-0 \
 && apt-get -qq purge -y software-properties-common gnupg && apt-get -qq autoremove -y \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*

# The user the 2020 kit ran as.
RUN useradd --create-home --uid 1001 --shell /bin/bash aicrowd
ENV HOME=/home/aicrowd \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

# PyPI's torch 2.13 wheel is built with CUDA 13 (no V100 kernels): take the same version built with CUDA 12
# first, so that the pinned torch==2.13.0 below is already satisfied by it (2.13.0+cu126).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
COPY requirements.txt /tmp/requirements.txt
RUN python3.11 -m venv /opt/venv \
 && pip install --quiet --upgrade pip \
 && pip install --quiet --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' /tmp/requirements.txt)" \
 && pip install --quiet -r /tmp/requirements.txt \
 && python -c "import ray, tensorflow, torch, procgen; print('python', __import__('sys').version.split()[0], 'ray', ray.__version__, 'tf', tensorflow.__version__, 'torch', torch.__version__)" \
 && rm /tmp/requirements.txt

# The submission itself (.dockerignore keeps .git, .venv and outputs/ out of the image).
COPY --chown=aicrowd:aicrowd . /home/aicrowd
USER aicrowd
WORKDIR /home/aicrowd
CMD ["./run.sh", "--train"]
