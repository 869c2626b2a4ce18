-- Schema of the stores in an SQLite file (dedupe marks, dead-letter queue, redrive/replay
-- requests, audit trail, transactional outbox): the same tables, columns and indexes as
-- migrations/postgres.sql, in SQLite's types, plus the leases (evt_leases) that stand in for
-- PostgreSQL's advisory locks. Idempotent; run when a file is opened.
CREATE TABLE IF NOT EXISTS evt_dedupe (
    grp         TEXT NOT NULL,
    key         TEXT NOT NULL,
    seen_ms     INTEGER NOT NULL,
    holder      TEXT,
    lease_ms    INTEGER,
    PRIMARY KEY (grp, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS evt_dedupe_seen ON evt_dedupe (seen_ms);
CREATE TABLE IF NOT EXISTS evt_dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    grp           TEXT NOT NULL,
    topic         TEXT NOT NULL,
    partition     INTEGER NOT NULL,
    offset        INTEGER NOT NULL,
    record_ts_ms  INTEGER NOT NULL,
    record_key    BLOB,
    headers       BLOB NOT NULL,
    payload       BLOB NOT NULL,
    event_type    TEXT,
    event_id      TEXT,
    partition_key TEXT,
    reason_kind   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    error_chain   TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    first_failure_ms INTEGER NOT NULL,
    last_failure_ms  INTEGER NOT NULL,
    parked_behind INTEGER,
    status        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evt_dead_letters_grp ON evt_dead_letters (grp, status);
CREATE INDEX IF NOT EXISTS evt_dead_letters_record ON evt_dead_letters (grp, topic, partition, offset);
CREATE INDEX IF NOT EXISTS evt_dead_letters_parked ON evt_dead_letters (parked_behind);
CREATE TABLE IF NOT EXISTS evt_dlq_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    letter_id   INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evt_dlq_audit_letter ON evt_dlq_audit (letter_id, id);
CREATE TABLE IF NOT EXISTS evt_redeliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    grp         TEXT NOT NULL,
    source      TEXT NOT NULL,
    letter_id   INTEGER,
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    offset      INTEGER NOT NULL,
    bypass_dedupe INTEGER NOT NULL,
    requested_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS evt_redeliveries_grp ON evt_redeliveries (grp, id);
-- A purge cancels its letters' redrives by letter id.
CREATE INDEX IF NOT EXISTS evt_redeliveries_letter ON evt_redeliveries (letter_id);
CREATE TABLE IF NOT EXISTS evt_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    record_key  BLOB,
    headers     BLOB NOT NULL,
    payload     BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE TABLE IF NOT EXISTS evt_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    until_ms    INTEGER NOT NULL
) WITHOUT ROWID;
-- Saga instances (event_runtime::saga): one row per (saga, key), its state as JSON, written with
-- the inbox transaction of the message that moved it; `version` counts transitions, `timers`
-- maps each pending timer's name to the version that scheduled it (its token).
CREATE TABLE IF NOT EXISTS evt_sagas (
    saga        TEXT NOT NULL,
    key         TEXT NOT NULL,
    version     INTEGER NOT NULL,
    status      TEXT NOT NULL,
    state       BLOB NOT NULL,
    timers      TEXT NOT NULL,
    reason      TEXT,
    -- The version of the state's stored form (Saga::STATE_VERSION when it was written).
    state_version INTEGER NOT NULL DEFAULT 1,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (saga, key)
);
CREATE INDEX IF NOT EXISTS evt_sagas_status ON evt_sagas (saga, status);
-- One row per transition: what moved the instance, to which version and status.
CREATE TABLE IF NOT EXISTS evt_saga_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    saga         TEXT NOT NULL,
    key          TEXT NOT NULL,
    version      INTEGER NOT NULL,
    message_type TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    at_ms        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS evt_saga_history_instance ON evt_saga_history (saga, key, id);
-- Pending timers, fired through the log when due (deleted in the transaction that fires them).
CREATE TABLE IF NOT EXISTS evt_saga_timers (
    saga           TEXT NOT NULL,
    key            TEXT NOT NULL,
    name           TEXT NOT NULL,
    token          INTEGER NOT NULL,
    due_ms         INTEGER NOT NULL,
    correlation_id TEXT,
    causation_id   TEXT,
    PRIMARY KEY (saga, key, name)
);
CREATE INDEX IF NOT EXISTS evt_saga_timers_due ON evt_saga_timers (due_ms);
