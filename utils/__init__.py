"""Shared helpers for the Procgen toolkit.

Importing this package first sets the environment that TensorFlow and Ray must see before they
are imported anywhere: Keras 3 breaks RLlib's TF policies, so the legacy tf-keras is selected.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter hides the progress lines users and log scrapers read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 and the like; on an AVX2-only CPU
# (AMD EPYC Milan, for one) it falls back to its slower Eigen kernels and the IMPALA CNN learns 2-2.5x slower
# (README, Benchmark). On, as on the AVX-512 hosts this project's reference runs (reference/runs) were made on;
# TF_ENABLE_ONEDNN_OPTS=0 turns it off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# Ray starts its worker processes (the env runners) at nice 15, below everything else on the machine: on a
# busy machine they starved (3% of a core while two other processes ran) and sampling timed out (issue 10).
# Here the env runners are the work, so they compete as equals with the learner and the rest.
os.environ.setdefault("RAY_worker_niceness", "0")
