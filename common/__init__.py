"""Small pieces shared by every PresaCop package: the bottom floor (the stdlib and `protocol`; the
Kafka libraries only in common.kafka, the signature crypto only in common.signing).

    common.config    typed TOML loader with errors that name the key (`load`, `from_dict`,
                     `field`), and `dump_toml` for the configs our programs write
    common.merge     `deep_merge` of nested mappings (config layers)
    common.backoff   `Backoff`: jittered exponential delays (full jitter) and `delay(attempt)`
    common.proc      `ChildProcess`: one owned child process, stopped by PID after a /proc check
    common.maven     `resolve(name, version, *coords)`: jars resolved once into the cache
    common.kafka     every Kafka client, built with the configured security settings
    common.signing   Ed25519 keys and signatures of violation records
    common.accounts  names reserved for the broker's service accounts

Errors (each module raises only its own; nothing here wraps another's):

    ValueError
     +-- common.config.ConfigError     a config key is missing, unknown or invalid; names the key
     +-- common.signing.KeyFileError   a key file cannot be read or parsed
    common.proc.ProcessError           a child could not be started, or a stop/join did not finish
    common.maven.MavenError            jars could not be resolved (mvn's output in the message)
     +-- common.maven.MissingToolError mvn or java is not installed
    common.kafka: the client library's own errors (kafka.errors.KafkaError, KafkaException)
"""
