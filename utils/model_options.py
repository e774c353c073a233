"""The custom models' option checks, framework-free: the torch IMPALA CNN takes them without importing
TensorFlow, the TF models without importing torch."""

from utils.errors import UserError, unknown_name


def model_options(cls, model_config, kwargs):
    """DEFAULT_CONFIG updated by custom_model_config (and by the same keys that RLlib's catalog
    passes again as keyword arguments); an unknown key is a typo that would silently do nothing."""
    options = {**(model_config.get("custom_model_config") or {}), **kwargs}
    for key in options:
        if key not in cls.DEFAULT_CONFIG:
            raise unknown_name("option", key, cls.DEFAULT_CONFIG, f"custom_model_config of {cls.__name__}")
    return {**cls.DEFAULT_CONFIG, **options}


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def impala_options(cls, model_config, kwargs):
    """model_options, plus the entry checks a type-against-default validator cannot make."""
    options = model_options(cls, model_config, kwargs)
    where = f"custom_model_config of {cls.__name__}"
    if not isinstance(options["depths"], (list, tuple)) or not all(map(is_count, options["depths"])):
        raise UserError(
            f"depths in {where} must be a list of positive ints (channels per stage), "
            f"got {options['depths']!r}; the default is {cls.DEFAULT_CONFIG['depths']}."
        )
    if not is_count(options["dense_size"]):
        raise UserError(f"dense_size in {where} must be a positive int, got {options['dense_size']!r}.")
    if not isinstance(options["bf16"], bool):
        raise UserError(f"bf16 in {where} must be true or false, got {options['bf16']!r}.")
    return options
