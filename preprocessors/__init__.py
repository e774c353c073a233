"""Preprocessor registry: name -> "module:Class".

RLlib 2.60 no longer runs `model.custom_preprocessor` (it raises), so the name a user writes there
is applied by the env wrapper as an observation transform on every batch of observations.
"""

PREPROCESSORS = {
    "MyPreprocessor": "preprocessors.custom_preprocessor:MyPreprocessor",
    "grayscale": "preprocessors.custom_preprocessor:GrayscalePreprocessor",
}
