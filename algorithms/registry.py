"""Custom algorithms by name: name -> "module:Class" of an RLlib Algorithm.

Names not listed here are looked up in RLlib's own registry (PPO, APPO, IMPALA, ...).
"""

CUSTOM_ALGORITHMS = {
    "RandomPolicy": "algorithms.random_policy.random_policy:RandomAlgorithm",
}
