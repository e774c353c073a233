"""AIcrowd submission tools behind `./run.sh --validate`, `--evaluate` and `--submit`.

    python -m aicrowd_tools validate            # preflight: will the grader accept this repo?
    python -m aicrowd_tools evaluate            # grade locally: train + roll out each game, score
    python -m aicrowd_tools submit "message"    # preflight, then `aicrowd submission create`

grader.py holds the grader's limits, preflight.py the checks, evaluate.py the local grading,
submit.py the push through AIcrowd's CLI, gitrepo.py the read-only git queries they share.
"""
