#!/usr/bin/env python
"""Train on Amazon SageMaker: `python sagemaker/launch.py EXPERIMENT.yaml [options]` (--help lists them).

The launcher is sagemaker_tools/launch.py. This folder holds only what a user opens (this script, the price
table, the account stack, the notebooks): it is named like the SageMaker SDK's package, so it has no modules
to import; the SDK's pkgutil namespace may list it, and finds nothing of ours there.
"""

if __name__ == "__main__":
    import sys
    from pathlib import Path

    # Run as a script, Python puts this folder first on sys.path; the repository root, which holds the
    # launcher's package, takes its place (so `import sagemaker` stays the SDK).
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from sagemaker_tools.launch import main

    sys.exit(main())
