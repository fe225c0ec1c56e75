"""The drone agent: camera -> recognizer -> evidence store -> durable outbox -> MQTT.

Runs on the drone's Pi-class companion computer (`presacop agent --config agent.toml`). Heavy
dependencies (OpenCV, paho-mqtt) are imported by the modules that need them, so importing this
package stays cheap.

Modules, one concept each: `config` (AgentConfig), `agent` (the threads), `outbox` (SQLite queue),
`evidence` (JPEG store with quota), `dedupe`, `publisher` (paho-mqtt), `plugins` (factory loading),
`timesource`, `hardware` and `recognizer` (the interfaces), `stub_recognizer`, `opencv_camera`,
`replay_position`, `fixed_sources`, `mavlink_source` (+ `mavlink_link`, `mavlink_transport`: the
flight controller), `gpsd_source`, `shared_link`, `source_extras`, `workers` (the agent's thread
plumbing), `assembly` (an agent from its config), `cli`.

Errors (all in `drone_agent.errors` except `HardwareError`, which lives with the interfaces)::

    AgentError            root of everything the agent raises on purpose
    +-- PluginError       a factory in config cannot be loaded or built (.key names the key)
    +-- OutboxFull        the outbox refused a violation: no room even after dropping telemetry
    +-- OutboxError       the outbox database is unusable (corrupt, foreign schema, seq exhausted)
    +-- EvidenceRefused   the evidence store cannot keep a JPEG (quota, free disk); .evidence_id
    +-- HardwareError     a device failed for good (also a RuntimeError, as in the contract)
        +-- AutopilotTimeout  no MAVLink HEARTBEAT in time (`mavlink_link.wait_connected`)

Bad configuration raises `common.config.ConfigError` (a ValueError) naming the key.
"""
