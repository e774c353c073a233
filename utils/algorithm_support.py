"""Which `run:` algorithms train on Procgen here, and why the others are refused before anything starts.

Measured on RLlib 2.60's old API stack (the stack this project uses) with a tiny experiment per algorithm
(`tests/test_legacy.py::test_every_accepted_algorithm_trains_one_tiny_iteration`, marked slow): PPO, APPO and
IMPALA train (and this project's ProcgenPPO, PPG, RandomPolicy); the algorithms below fail later, inside RLlib,
with a traceback, so they are refused up front. DQN and SAC stop at RLlib's own config check without a replay
buffer; with the one that check asks for, DQN fails in RLlib's set-up and SAC in its model builder
(session 21, by hand), so they are refused too.
"""

from utils.errors import UserError

TRAINS = ("PPO", "APPO", "IMPALA")
_OFFLINE = "an offline algorithm: it learns from recorded episodes (config.input), not from Procgen's sampler"
REFUSED = {
    "BC": f"{_OFFLINE}; on sampled Procgen batches RLlib 2.60 fails inside its learner (MultiAgentBatch.as_multi_agent)",
    "MARWIL": f"{_OFFLINE}; on sampled Procgen batches RLlib 2.60 fails inside its learner",
    "CQL": f"{_OFFLINE}, built on SAC's two models, which a custom Procgen model does not provide",
    "IQL": f"{_OFFLINE}; on Procgen RLlib 2.60 fails inside its config (a None threshold)",
    "DreamerV3": "it exists only on RLlib's new API stack; this project trains on the old one (ModelCatalog models)",
    "DQN": ("RLlib 2.60's old-stack DQN cannot be built: its config check turns replay_buffer_config.type into a class "
            "that its set-up then reads as text (TypeError), even with the buffer RLlib's own message suggests "
            "(checked on CartPole)"),
    "SAC": ("RLlib 2.60's old-stack SAC builds its own policy and Q networks: it hands their configs to a custom "
            "model (which refuses them) and its default vision network does not fit Procgen's 64x64 frames"),
}


def check_algorithm(run, where):
    """UserError for an algorithm RLlib lists but that cannot train on Procgen here, naming what to use."""
    if run in REFUSED:
        raise UserError(f"{where}: run: {run} cannot train here: {REFUSED[run]}. Use PPO (or {', '.join(TRAINS[1:])}), "
                        "which train on Procgen with this project's models.")
