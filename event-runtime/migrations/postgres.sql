-- Schema of the PostgreSQL stores (dead-letter queue, redrive/replay requests, audit trail,
-- dedupe marks, transactional outbox): the same tables and columns as in an SQLite file (which
-- adds evt_leases, as it has no advisory locks). Idempotent; the advisory lock serialises
-- concurrent first starts (CREATE TABLE IF NOT EXISTS alone can race).
BEGIN;
SELECT pg_advisory_xact_lock(7458291034);
CREATE TABLE IF NOT EXISTS evt_dedupe (
    grp         TEXT NOT NULL,
    key         TEXT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    holder      TEXT,
    lease_ms    BIGINT,
    PRIMARY KEY (grp, key)
);
CREATE INDEX IF NOT EXISTS evt_dedupe_seen ON evt_dedupe (seen_ms);
CREATE TABLE IF NOT EXISTS evt_dead_letters (
    id            BIGSERIAL PRIMARY KEY,
    grp           TEXT NOT NULL,
    topic         TEXT NOT NULL,
    partition     BIGINT NOT NULL,
    "offset"      BIGINT NOT NULL,
    record_ts_ms  BIGINT NOT NULL,
    record_key    BYTEA,
    headers       BYTEA NOT NULL,
    payload       BYTEA NOT NULL,
    event_type    TEXT,
    event_id      TEXT,
    partition_key TEXT,
    reason_kind   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    error_chain   TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    first_failure_ms BIGINT NOT NULL,
    last_failure_ms  BIGINT NOT NULL,
    parked_behind BIGINT,
    status        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evt_dead_letters_grp ON evt_dead_letters (grp, status);
CREATE INDEX IF NOT EXISTS evt_dead_letters_record ON evt_dead_letters (grp, topic, partition, "offset");
CREATE INDEX IF NOT EXISTS evt_dead_letters_parked ON evt_dead_letters (parked_behind);
CREATE TABLE IF NOT EXISTS evt_dlq_audit (
    id          BIGSERIAL PRIMARY KEY,
    letter_id   BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evt_dlq_audit_letter ON evt_dlq_audit (letter_id, id);
CREATE TABLE IF NOT EXISTS evt_redeliveries (
    id          BIGSERIAL PRIMARY KEY,
    grp         TEXT NOT NULL,
    source      TEXT NOT NULL,
    letter_id   BIGINT,
    topic       TEXT NOT NULL,
    partition   BIGINT NOT NULL,
    "offset"    BIGINT NOT NULL,
    bypass_dedupe BOOLEAN NOT NULL,
    requested_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS evt_redeliveries_grp ON evt_redeliveries (grp, id);
-- A purge cancels its letters' redrives by letter id.
CREATE INDEX IF NOT EXISTS evt_redeliveries_letter ON evt_redeliveries (letter_id);
-- Events staged in the caller's transaction, relayed to the log in id order and deleted. The
-- record is encoded once (CloudEvents binary mode, Kafka binding: key, headers, payload), so
-- every relay attempt appends the same event id.
CREATE TABLE IF NOT EXISTS evt_outbox (
    id          BIGSERIAL PRIMARY KEY,
    topic       TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    record_key  BYTEA,
    headers     BYTEA NOT NULL,
    payload     BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT
);
-- Saga instances (event_runtime::saga): one row per (saga, key), its state as JSON, written with
-- the inbox transaction of the message that moved it; `version` counts transitions, `timers`
-- maps each pending timer's name to the version that scheduled it (its token).
CREATE TABLE IF NOT EXISTS evt_sagas (
    saga        TEXT NOT NULL,
    key         TEXT NOT NULL,
    version     BIGINT NOT NULL,
    status      TEXT NOT NULL,
    state       BYTEA NOT NULL,
    timers      TEXT NOT NULL,
    reason      TEXT,
    -- The version of the state's stored form (Saga::STATE_VERSION when it was written).
    state_version BIGINT NOT NULL DEFAULT 1,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (saga, key)
);
CREATE INDEX IF NOT EXISTS evt_sagas_status ON evt_sagas (saga, status);
-- One row per transition: what moved the instance, to which version and status.
CREATE TABLE IF NOT EXISTS evt_saga_history (
    id           BIGSERIAL PRIMARY KEY,
    saga         TEXT NOT NULL,
    key          TEXT NOT NULL,
    version      BIGINT NOT NULL,
    message_type TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    at_ms        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS evt_saga_history_instance ON evt_saga_history (saga, key, id);
-- Pending timers, fired through the log when due (deleted in the transaction that fires them).
CREATE TABLE IF NOT EXISTS evt_saga_timers (
    saga           TEXT NOT NULL,
    key            TEXT NOT NULL,
    name           TEXT NOT NULL,
    token          BIGINT NOT NULL,
    due_ms         BIGINT NOT NULL,
    correlation_id TEXT,
    causation_id   TEXT,
    PRIMARY KEY (saga, key, name)
);
CREATE INDEX IF NOT EXISTS evt_saga_timers_due ON evt_saga_timers (due_ms);
COMMIT;
