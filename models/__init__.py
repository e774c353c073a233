"""Model registry: name -> "module:Class" of a ModelV2 registered with RLlib's ModelCatalog.

The framework each model needs is listed so a config can be checked before anything is built.
"""

MODELS = {
    "impala_cnn_tf": ("models.impala_cnn_tf:ImpalaCNN", "tf"),
    "impala_cnn_torch": ("models.impala_cnn_torch:ImpalaCNN", "torch"),
    "my_vision_network": ("models.my_vision_network:MyVisionNetwork", "tf"),
}
