"""SageMaker: the launcher (`python sagemaker/launch.py`, `launch.Job`), the in-job entry point, `--local` mode,
training images and the account stack's outputs.

Its own name, not `sagemaker`: the installed SageMaker SDK is a pkgutil namespace package that takes in every
`sagemaker` folder on sys.path, so modules kept in the repository's sagemaker/ folder would join the SDK's.
Only entry.py runs inside the job, where no SDK is installed; the rest imports the SDK lazily.
"""
