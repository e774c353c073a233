"""Environment registry: name -> module that provides `create(env_context)` and
`check_config(env_config, where)`. Modules load lazily, when a name is used."""

ENVS = {
    "procgen_env_wrapper": "envs.procgen_env_wrapper",
    "stacked_procgen_env": "envs.framestack",
}
