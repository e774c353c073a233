"""The resources model: what an experiment asks Ray for, and how that is fitted to a machine, spread over a
cluster and checked against AIcrowd's grader. Pure functions of plain values: no Ray, no I/O.

Every caller asks this module: train.py (fit to this machine), sagemaker's in-job entry point (spread over
the job's cluster), launch.py (GPU check), `--validate` and `--evaluate` (the grader's limits). Each answer
is a `Fit`: the config overrides to apply plus the notes to print, so what changed is always said.

`Demand` is built from the resolved experiment (utils.config.Experiment: config merged onto RLlib's
defaults for its algorithm), never from the raw YAML with a guessed default.
"""

import math
from dataclasses import dataclass, field

# The grader of the NeurIPS 2020 Procgen challenge: an ml.p3.2xlarge (8 vCPU, 1 V100). It adds one evaluation
# env runner to every experiment unless the experiment's top-level `disable_evaluation_worker: true` is set
# (the 2020 kit's utilities/validate_config.py: runners + 1 < 8, GPU shares with that runner <= 1).
GRADER_CPUS = 8
GRADER_GPUS = 1
GRADER_EVALUATION_RUNNERS = 1

# The grader's machine's memory: 61 GiB (ml.p3.2xlarge; shared/REFERENCE.md, "grader").
GRADER_MEMORY_GIB = 61

# A Procgen frame as RLlib's train batch keeps it (64 x 64 RGB, uint8). An experiment whose env stacks frames or
# preprocesses them passes its own size (utils.config.learner_memory_demand measures it from the env).
FRAME_BYTES = 64 * 64 * 3
# Beside each frame, PPG's auxiliary buffer keeps its float32 value target (algorithms/ppg/aux_buffer.py).
TARGET_BYTES = 4
# The learner's replay may take at most this share of the machine's memory: the rest is for Ray (its object
# store, up to 30% of memory by default, is filled by sampled batches), the env runners and the learner's batches.
# Over MEMORY_NOTE_SHARE a note says that the run may be killed for memory.
MEMORY_REFUSE_SHARE = 0.8
MEMORY_NOTE_SHARE = 0.5

# The torch rule, measured (`./run.sh --bench --sweep --repeats 3`, 2 cores; README "Benchmark"): where only one
# env runner fits beside the learner, a torch learner that samples in its own process trains faster (one runner
# beside the learner reached 0.90 of it, sampling then getting both cores). TF measured 0 runners at 0.92-1.00 of
# one runner, so TF keeps its runner.
TORCH_SAMPLES_IN_LEARNER = True


@dataclass(frozen=True)
class Demand:
    """What an experiment asks Ray for (RLlib's names in comments)."""

    runners: int  # num_env_runners
    envs_per_runner: int  # num_envs_per_env_runner
    cpus_per_runner: float  # num_cpus_per_env_runner
    driver_cpus: float  # num_cpus_for_main_process (the learner)
    gpus: float  # num_gpus (the learner)
    gpus_per_runner: float  # num_gpus_per_env_runner
    framework: str
    evaluation_runners: int = 0  # evaluation_num_env_runners when evaluation_interval is set
    runners_given: bool = True  # False: num_env_runners is RLlib's default, not the experiment's
    replayed_batches: int = 0  # train batches the learner keeps for PPG's auxiliary phase (0: none)
    train_batch: int = 0  # train_batch_size
    frame_bytes: int = FRAME_BYTES  # one observation as the train batch keeps it
    replay_limit: str = "n_pi"  # what bounds replayed_batches: "n_pi", or the stop condition that comes first

    @property
    def learner_buffer_bytes(self):
        """Bytes the learner keeps across iterations for replay: PPG's auxiliary buffer, replayed_batches x
        train_batch rows of frame_bytes + TARGET_BYTES (6,444,548,096 = 6.0 GiB at the paper's 32 x 16384 Procgen
        frames); 0 for PPO. RLlib may return batches up to 10% over train_batch_size, which the buffer then holds."""
        return self.replayed_batches * self.train_batch * (self.frame_bytes + TARGET_BYTES)

    @property
    def all_runners(self):
        return self.runners + self.evaluation_runners

    @property
    def cpus(self):
        return self.driver_cpus + self.all_runners * self.cpus_per_runner

    @property
    def gpu_shares(self):
        return self.gpus + self.all_runners * self.gpus_per_runner

    @property
    def games(self):
        """Games stepped per sampling round: with 0 runners the learner steps envs_per_runner itself."""
        return max(self.runners, 1) * self.envs_per_runner

    def parts(self):
        n = self.all_runners
        return f"{n} env runner{'' if n == 1 else 's'} x {self.cpus_per_runner:g} + {self.driver_cpus:g} for the learner"


@dataclass
class Fit:
    """Config overrides (RLlib key -> value) and the notes that say why, one line each."""

    overrides: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def as_args(self):
        """train.py's KEY=VALUE form."""
        return [f"{k}={v}" for k, v in self.overrides.items()]


def demand(setting, given=()):
    """The Demand of a resolved experiment. setting(key): the config's value, else RLlib's default for the
    algorithm; given: the config keys the experiment itself sets."""
    evaluation = setting("evaluation_num_env_runners") or 0 if setting("evaluation_interval") else 0
    return Demand(
        runners=int(setting("num_env_runners") or 0),
        envs_per_runner=int(setting("num_envs_per_env_runner") or 1),
        cpus_per_runner=setting("num_cpus_per_env_runner") or 0,
        driver_cpus=setting("num_cpus_for_main_process") or 0,
        gpus=setting("num_gpus") or 0,
        gpus_per_runner=setting("num_gpus_per_env_runner") or 0,
        framework=setting("framework"),
        evaluation_runners=int(evaluation),
        runners_given="num_env_runners" in given,
        # PPG keeps n_pi batches when it runs an auxiliary phase; other algorithms have neither key. A value of the
        # wrong type counts as none here: the algorithm's own validation names it.
        replayed_batches=_count(setting("n_pi")) if _count(setting("n_aux_epochs")) else 0,
        train_batch=_count(setting("train_batch_size")),
    )


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def fragment_length(fragment, train_batch, runners, envs_per_runner):
    """rollout_fragment_length as RLlib resolves "auto": the train batch over every env copy, rounded up."""
    if fragment != "auto":
        return fragment
    return math.ceil(train_batch / (envs_per_runner * max(runners, 1)))


def fit_machine(d, cpus, gpus):
    """Fit to one machine of `cpus` CPUs and `gpus` GPUs: env runners that do not fit are removed and the rest
    step more games each, so the train batch stays the same; GPU shares that do not fit become 0."""
    fit = Fit()
    runners, envs = d.runners, d.envs_per_runner
    room = max(0, int((cpus - d.driver_cpus) // d.cpus_per_runner)) if d.cpus_per_runner else runners
    if runners > room:
        why = f"this machine has {cpus} CPUs ({d.driver_cpus:g} for the learner, {d.cpus_per_runner:g} per env runner)"
        if room == 1 and d.framework == "torch" and TORCH_SAMPLES_IN_LEARNER:
            room = 0
            why += "; with torch, sampling in the learner process measured faster than one env runner"
        new_envs = math.ceil(d.games / max(room, 1))
        fit.notes.append(f"num_env_runners {runners} -> {room} and num_envs_per_env_runner {envs} -> {new_envs}: {why}")
        fit.overrides.update(num_env_runners=room, num_envs_per_env_runner=new_envs)
        runners = room
    asked = d.gpus + runners * d.gpus_per_runner
    if asked > gpus:
        fit.notes.append(f"num_gpus {d.gpus:g} -> 0 and num_gpus_per_env_runner -> 0: this machine has {gpus} GPUs")
        fit.overrides.update(num_gpus=0, num_gpus_per_env_runner=0)
    return fit


def spread_cluster(d, total_cpus, head_gpus):
    """Spread over a cluster of `total_cpus` CPUs whose learner host has `head_gpus` GPUs.

    Env runners grow to use the CPUs (the same games in total, split over more runners, so
    rollout_fragment_length and train_batch_size keep their meaning); an experiment that leaves
    num_env_runners to RLlib's default keeps that layout. Shrinking is fit_machine's (train.py's) work."""
    fit = Fit()
    if d.runners_given and d.runners >= 1 and d.cpus_per_runner:
        room = int((total_cpus - d.driver_cpus) // d.cpus_per_runner)
        games = d.games
        if room > d.runners:
            new = max(n for n in range(1, games + 1) if games % n == 0 and n <= room)
            if new > d.runners:
                fit.overrides.update(num_env_runners=new, num_envs_per_env_runner=games // new)
                fit.notes.append(f"num_env_runners {d.runners} -> {new} and num_envs_per_env_runner {d.envs_per_runner} -> "
                                 f"{games // new}: {total_cpus} CPUs in the cluster, still {games} games per sampling round")
    if head_gpus and d.gpus > head_gpus:
        fit.overrides["num_gpus"] = head_gpus
        fit.notes.append(f"num_gpus {d.gpus:g} -> {head_gpus}: the learner host has {head_gpus}")
    elif head_gpus and not d.gpus:
        fit.notes.append(f"the learner host has {head_gpus} GPU(s) but the experiment sets num_gpus 0; "
                         "launch with --set num_gpus=1 to train on it")
    return fit


def learner_gpu_problem(d, learner_has_gpu, any_gpu):
    """Why a job's instances cannot give what the experiment asks of GPUs (None when they can)."""
    if d.gpus > 0 and not learner_has_gpu:
        return "learner"
    if d.gpus_per_runner > 0 and not any_gpu:
        return "runners"
    return None


@dataclass(frozen=True)
class GraderCheck:
    """The grader's arithmetic for one experiment: what it runs and whether that fits."""

    cpus: float  # driver + runners + the evaluation runner the grader adds, at their CPU shares
    gpu_shares: float
    parts: str
    cpu_limit: int
    gpu_limit: int
    problems: tuple  # one message each; empty when it fits

    @property
    def ok(self):
        return not self.problems

    def summary(self):
        return f"{self.cpus:g} vCPUs ({self.parts}) <= {self.cpu_limit}, {self.gpu_shares:g} GPU <= {self.gpu_limit}"


def grader_machine(d, evaluation_worker=True, gpu=True):
    """(CPUs, GPUs) a graded training run can fit itself to: the grader's machine less its evaluation runner."""
    extra = GRADER_EVALUATION_RUNNERS if evaluation_worker else 0
    cpus = math.floor(GRADER_CPUS - extra * d.cpus_per_runner)
    return cpus, max(0, (GRADER_GPUS if gpu else 0) - extra * d.gpus_per_runner)


def grader_check(d, evaluation_worker=True, gpu=True, where="the experiment"):
    """The grader's rule: runners + the evaluation runner it adds + the learner fit its 8 vCPUs, and every GPU
    share, the evaluation runner's included, fits its one GPU (none when aicrowd.json says "gpu": false).

    evaluation_worker: False when the experiment sets `disable_evaluation_worker: true`."""
    extra = GRADER_EVALUATION_RUNNERS if evaluation_worker else 0
    graded = Demand(d.runners, d.envs_per_runner, d.cpus_per_runner, d.driver_cpus, d.gpus, d.gpus_per_runner,
                    d.framework, d.evaluation_runners + extra, d.runners_given)
    gpu_limit = GRADER_GPUS if gpu else 0
    if extra:
        n = d.all_runners
        parts = (f"{n} env runner{'' if n == 1 else 's'} + the grader's evaluation runner, x {d.cpus_per_runner:g} each, "
                 f"+ {d.driver_cpus:g} for the learner")
    else:
        parts = graded.parts() + "; no evaluation runner: disable_evaluation_worker"
    problems = []
    if graded.cpus > GRADER_CPUS:
        room = int((GRADER_CPUS - d.driver_cpus) // d.cpus_per_runner) - graded.evaluation_runners if d.cpus_per_runner else 0
        problems.append(f"{graded.cpus:g} vCPUs ({parts}) but the grader has {GRADER_CPUS}. Lower config.num_env_runners "
                        f"to at most {max(room, 0)} (each runner can step more games: raise num_envs_per_env_runner) in {where}.")
    if graded.gpu_shares > gpu_limit:
        why = 'aicrowd.json has "gpu": false, so the grader gives no GPU' if not gpu else f"the grader has {GRADER_GPUS} GPU"
        runners = graded.all_runners
        problems.append(f"GPU shares sum to {graded.gpu_shares:g} (num_gpus {d.gpus:g} + {runners} runners x "
                        f"num_gpus_per_env_runner {d.gpus_per_runner:g}) but {why}. Lower num_gpus / "
                        f"num_gpus_per_env_runner in {where}" + (' or set "gpu": true in aicrowd.json.' if not gpu else "."))
    return GraderCheck(graded.cpus, graded.gpu_shares, parts, GRADER_CPUS, gpu_limit, tuple(problems))


def memory_check(d, memory_bytes, machine="this machine", fix="", where=""):
    """(problem, note) for the learner's replay memory (Demand.learner_buffer_bytes) on a machine of
    `memory_bytes`; each None when there is nothing to say. A problem when the buffer is more than
    MEMORY_REFUSE_SHARE of the machine's memory (the run would be killed when the buffer fills, n_pi iterations
    in); a note when it is more than MEMORY_NOTE_SHARE. `fix`: a further remedy for the problem's message
    ("or a learner instance type with more memory"); `where`: the file to lower n_pi in, when the message does
    not already start with it."""
    need = d.learner_buffer_bytes
    if not need or not memory_bytes:
        return None, None
    batches = f"{d.replayed_batches} train batches ({d.replay_limit})"
    what = (f"PPG's auxiliary buffer needs {need / 2**30:.1f} GiB ({batches} x {d.train_batch:,} frames x "
            f"{d.frame_bytes + TARGET_BYTES:,} bytes)")
    has = f"{memory_bytes / 2**30:.1f} GiB"
    if need > MEMORY_REFUSE_SHARE * memory_bytes:
        return (f"{what}, over {MEMORY_REFUSE_SHARE:.0%} of the {has} of memory {machine} has (Ray, the env runners and "
                f"the learner need the rest). Lower n_pi (each auxiliary phase then replays fewer batches)"
                f"{' in ' + where if where else ''}{', ' + fix if fix else ''}."), None
    if need > MEMORY_NOTE_SHARE * memory_bytes:
        return None, f"{what}: over half of the {has} of memory {machine} has; if the run is killed for memory, lower n_pi"
    return None, None
