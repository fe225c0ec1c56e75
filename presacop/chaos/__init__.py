"""`presacop chaos`: the project's own fault run on this machine, checked for losses and
duplicates (docs/chaos.md).

Modules, one concern each:

    cli     flags, `run(args)`, exit codes, the summary table (the command's help is its docstring)
    run     Chaos: brokers, topics, gateway, drone processes, the faults one at a time with their
            recovery timed, the drain, the comparison
    plan    the seeded fault schedule (pure)
    parts   the run's own Mosquitto + Kafka, the gateway (presacop.demo's), a drone process
            behind its link proxy (hw_sim.link)
    child   one drone's process: a one-drone hw_sim Fleet with its fsync'ed ledger
    check   the ledgers against the topics: accepted / unique / lost / duplicates, seq gaps

Errors:

    ChaosError     the run could not set itself up or a drone process died (the message says
                   which); presacop.stack.StackError and presacop.demo.DemoError pass through
                   `Chaos.run` to `cli.run`, which reports each of them as exit 1
    ValueError     bad fault kinds (exit 2)
"""

from presacop.chaos.cli import (
           EXIT_FAILED,
           EXIT_INTERRUPTED,
           EXIT_OK,
           EXIT_USAGE,
           add_arguments,
           run,
)
from presacop.chaos.parts import ChaosError
from presacop.chaos.plan import KINDS, Fault, plan_faults

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "KINDS", "ChaosError",
           "Fault", "add_arguments", "plan_faults", "run"]
