"""Archive and statistics on Apache Spark Structured Streaming, and the report.

    jars         the Kafka connector jars, resolved with mvn into the cache once
    spark        the session (local by default, any master) and the Kafka source options
    aggregates   violations + history -> additive counters, exactly once (batch ids)
    job          `presacop stats run`: the archive and statistics queries
    report       `presacop stats report`: HTML + PNG charts + a terminal table
    cli          the `presacop stats` subcommand

Errors:

    jars.JarError (RuntimeError)   mvn/java missing or resolution failed
    report.ReportError (ValueError) no statistics yet (the job has not run)
    Spark's StreamingQueryException from a failed query, re-raised by job.StatsJob.wait
"""
