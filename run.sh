#!/usr/bin/env bash
# One entry point, as in AIcrowd's starter kit:
#   ./run.sh --train     train $EXPERIMENT (default experiments/impala-baseline.yaml); extra args go to train.py
#   ./run.sh --rollout   evaluate the newest checkpoint of $EXPERIMENT (or $CHECKPOINT) for $EPISODES episodes
#   ./run.sh --test      run the test suite (extra args go to pytest)
#   ./run.sh --validate  preflight for AIcrowd's grader (seconds, no training): aicrowd.json, budget, resources, $ENVS
#   ./run.sh --evaluate  grade locally: train + roll out each game of $ENVS (TIMESTEPS, TIME_LIMIT, EPISODES), score;
#                        NUM_LEVELS=200: the generalization track (unseen levels); WEIGHTS=game:1/12,...: weighted mean
#   ./run.sh --submit "description"   preflight, then aicrowd submission create (pushes a submission- tag)
#   ./run.sh --bench     throughput of this machine against its limits (procgen, RLlib, compute ceiling, training)
#   ./run.sh --migrate OLD.yaml [NEW.yaml]   rewrite a 2020 (Ray 0.8) experiment in today's names, a comment per change
# Outside AIcrowd's grader it installs what is missing itself: a .venv from the pinned requirements.
export EXPERIMENT=${EXPERIMENT:-experiments/impala-baseline.yaml}
export EPISODES=${EPISODES:-5}
export OUTPUTS_DIR=${OUTPUTS_DIR:-./outputs}
export PYTHONUNBUFFERED=1

# AIcrowd's tools read the experiment with `source ./run.sh > /dev/null; echo $EXPERIMENT` (the 2020 kit's
# run.sh has no trailing `exit` for this reason): sourced, it sets the variables above and returns, leaving
# the caller's shell options and directory as they were.
if (return 0 2>/dev/null); then
  return 0
fi

set -euo pipefail
cd "$(dirname "$0")"

usage() {
  sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
}

# Pick a Python that has the pinned packages; build .venv from the requirements when there is none.
python_for() {
  local reqs=("$@")
  if [[ -n "${AICROWD_IS_GRADING:-}" ]]; then
    command -v python3 || command -v python
    return
  fi
  if [[ -x .venv/bin/python ]] && .venv/bin/python -m utils.check_requirements "${reqs[@]}" 2>/dev/null; then
    echo .venv/bin/python
    return
  fi
  local sys_py
  sys_py=$(command -v python3.11 || command -v python3 || true)
  if [[ -z "$sys_py" ]]; then
    echo "error: no python3 found. Install Python 3.11 and run this again." >&2
    return 1
  fi
  if [[ ! -x .venv/bin/python ]] && "$sys_py" -m utils.check_requirements "${reqs[@]}" 2>/dev/null; then
    echo "$sys_py"
    return
  fi
  echo "setup: installing ${reqs[*]} into .venv (once; later runs reuse it)" >&2
  [[ -x .venv/bin/python ]] || "$sys_py" -m venv .venv >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2 || true
  local args=()
  for r in "${reqs[@]}"; do args+=(-r "$r"); done
  .venv/bin/python -m pip install --quiet "${args[@]}" >&2
  echo .venv/bin/python
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
  --train)
    PY=$(python_for requirements.txt)
    exec "$PY" train.py -f "$EXPERIMENT" "$@"
    ;;
  --rollout)
    PY=$(python_for requirements.txt)
    exec "$PY" rollout.py ${CHECKPOINT:+"$CHECKPOINT"} --experiment "$EXPERIMENT" --episodes "$EPISODES" "$@"
    ;;
  --test)
    PY=$(python_for requirements.txt requirements-dev.txt)
    exec "$PY" -m pytest tests "$@"
    ;;
  --validate)
    PY=$(python_for requirements.txt)
    exec "$PY" -m aicrowd_tools validate "$@"
    ;;
  --evaluate)
    PY=$(python_for requirements.txt)
    exec "$PY" -m aicrowd_tools evaluate "$@"
    ;;
  --submit)
    PY=$(python_for requirements.txt requirements-dev.txt)
    exec "$PY" -m aicrowd_tools submit "$@"
    ;;
  --bench)
    PY=$(python_for requirements.txt)
    exec "$PY" scripts/bench.py "$@"
    ;;
  --migrate)
    PY=$(python_for requirements.txt)
    exec "$PY" -m utils.migrate "$@"
    ;;
  -h|--help|"")
    usage
    [[ -n "$cmd" ]]
    ;;
  *)
    echo "error: unknown command \"$cmd\". Use one of: --train, --rollout, --test, --validate, --evaluate, --submit, --bench, --migrate." >&2
    exit 2
    ;;
esac
