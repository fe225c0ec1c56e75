"""Small pieces shared by every PresaCop package: the bottom floor (imports only the stdlib).

    common.config   typed TOML loader with errors that name the key (`load`, `from_dict`, `field`)
    common.merge    `deep_merge` of nested mappings (config layers)
    common.backoff  `Backoff`: jittered exponential delays (full jitter) and `delay(attempt)`
    common.proc     `ChildProcess`: one owned child process, stopped by PID after a /proc check

Errors (each module raises only its own; nothing here wraps another's):

    ValueError
     +-- common.config.ConfigError   a config key is missing, unknown or invalid; names the key
    common.proc.ProcessError         a child could not be started, or a stop/join did not finish
"""
