"""The NYPD's historical parking violations: a sample generator and a resumable Kafka ingest.

    records   one CSV row -> one normalized record (pure)
    sample    a seeded, realistic file in the data set's schema
    ingest    the file -> `presacop.history` (bad rows -> dead letters), constant memory, resumable
    cli       `presacop history sample|ingest`

Errors:

    records.BadRow (ValueError)   a row that cannot be a record; becomes a dead letter
    ingest.IngestError
     +-- InputError               unreadable file, not the data set's header, bad checkpoint
     +-- DeliveryError            Kafka did not acknowledge; rerun resumes
"""
