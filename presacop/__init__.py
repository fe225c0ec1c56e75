"""PresaCop edge: the top floor, which ties the product packages together for an operator.

The product packages (`protocol`, `drone_agent`, `gateway`, `hw_sim`, `backoffice`) are top level,
with the small shared pieces (typed TOML config, backoff, child processes, Kafka clients) in
`common`. Here:

    cli      the `presacop` command: one subcommand per job, imported only when chosen
    stack/   the local Mosquitto + Kafka (+ s3proxy) on loopback, Maven jars (`presacop stack`)
    demo/    the whole pipeline on this machine, checked for losses (`presacop demo`)
    sim      a fleet of simulated drones, spread over processes if asked (`presacop sim`)
    keys     a drone's Ed25519 signing key pair (`presacop keys gen`)

Each part draws its own error tree in its docstring (`presacop.stack.StackError`,
`presacop.demo.DemoError`); the command turns them into a message and an exit code.
"""

__version__ = "0.1.0"
