"""Algorithm registry: name (what `run:` says) -> "module:Class" of an RLlib Algorithm. Classes load lazily,
when a name is used. Names not listed here are looked up in RLlib's own registry (PPO, APPO, IMPALA, ...)."""

ALGORITHMS = {
    "PPG": "algorithms.ppg.ppg:PPG",
    "ProcgenPPO": "algorithms.procgen_ppo.procgen_ppo:ProcgenPPO",
    "RandomPolicy": "algorithms.random_policy.random_policy:RandomAlgorithm",
}
