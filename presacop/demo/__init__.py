"""`presacop demo`: the whole pipeline on this machine for a short time, checked for losses.

Modules, one concern each:

    cli         flags, `run(args)`, signals, exit codes (the command's help is its docstring)
    run         Demo: brokers, topics, gateway, fleet, link cuts, drain, summary, cleanup
    brokers     Endpoints, StackHandle: given brokers, the running local stack or one it starts
    kafka_view  create/delete this run's topics; KafkaWatch reads them into a Tally
    gateway     GatewayProcess: `presacop gateway` as a child (common.proc.ChildProcess)
    ledger      Ledger (what the drones accepted), Tally (what Kafka holds), delivered_all
    report      summarize (the --json object), render (the table), percentile, Check
    faults      plan_cuts: the link cuts from the seed
    progress    the live status line

Errors:

    DemoError      the stack, gateway, Kafka or fleet could not run (the message says which)
    Interrupted    SIGTERM arrived: clean up and exit 130
    presacop.stack.StackError and hw_sim.SimError (FleetError) pass through `Demo.run` to
    `cli.run`, which reports each of them, like a DemoError, as exit 1.
"""

from presacop.demo.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, add_arguments, run
from presacop.demo.errors import DemoError, Interrupted
from presacop.demo.faults import Cut, plan_cuts
from presacop.demo.ledger import ROLES, Ledger, Tally, delivered_all, ledger_of
from presacop.demo.report import (
    Check,
    evidence_check,
    evidence_summary,
    percentile,
    render,
    summarize,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ROLES",
    "Check",
    "Cut",
    "DemoError",
    "Interrupted",
    "Ledger",
    "Tally",
    "add_arguments",
    "delivered_all",
    "evidence_check",
    "evidence_summary",
    "ledger_of",
    "percentile",
    "plan_cuts",
    "render",
    "run",
    "summarize",
]
