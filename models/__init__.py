"""Model registry: name -> "module:Class" of a ModelV2 registered with RLlib's ModelCatalog.

The framework each model needs is listed so a config can be checked before anything is built.
"""

MODELS = {
    "impala_cnn_tf": ("models.impala_cnn_tf:ImpalaCNN", "tf"),
    "impala_cnn_torch": ("models.impala_cnn_torch:ImpalaCNN", "torch"),
    "my_vision_network": ("models.my_vision_network:MyVisionNetwork", "tf"),
    "ppg_impala_cnn_torch": ("models.ppg_impala_cnn_torch:PPGImpalaCNN", "torch"),
}

# A model file dropped into models/ (as in the 2020 kit) is found by reading it: usable by the name its
# ModelCatalog.register_custom_model("name", Class) call gives, or by its file name (utils/model_files.py).
from utils.model_files import discover as _discover  # noqa: E402

MODELS.update(_discover(known=MODELS))
