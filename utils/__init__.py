"""Shared helpers for the Procgen toolkit.

Importing this package first sets the environment that TensorFlow and Ray must see before they
are imported anywhere: Keras 3 breaks RLlib's TF policies, so the legacy tf-keras is selected.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter hides the progress lines users and log scrapers read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
