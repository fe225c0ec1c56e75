"""Evidence images in the back office: uploads staged, verified, stored, recorded in Kafka.

    config     [evidence] and [evidence.store] of the gateway's config
    staging    uploads in progress on disk, one fsync'ed file per chunk (staging.Staging)
    store      the object store: open_store(cfg) -> DirStore | S3Store (get / exists / put_file)
    intake     the gateway's thread that turns manifests and chunks into stored objects,
               presacop.evidence records and receipts for the drone (intake.EvidenceIntake)
    gc         retention: what `presacop evidence gc` removes (never evidence of an open alert)

Error tree (store):

    StoreError
    ├── ObjectMissing       get() of an object that is not there
    ├── StoreUnavailable    the store is down or full: retriable (the gateway answers BUSY)
    └── BadObjectName       not a SHA-256 in 64 lowercase hex digits

Bad uploads are not errors but dead letters (intake: reasons evidence_hash_mismatch,
evidence_chunk_out_of_range, evidence_manifest_changed, evidence_unknown, or the protocol's code).
"""
