//! The letters' rows in any SQL database: [`LetterTx`] over one sqlx transaction, each
//! statement written once (see [`super::sql`] for how a dialect adapts it).

use sqlx::pool::PoolConnection;
use sqlx::{Pool, Transaction};

use super::letters::{LetterRef, LetterTx, chain_from_text, chain_to_text};
use super::sql::{Exec, Value, args};
use crate::dlq::{
    AuditEntry, DeadLetter, LetterFilter, LetterStatus, NewDeadLetter, Redelivery, RedeliverySource,
};
use crate::transport::{Headers, Record, TransportError, now_ms};

/// One transaction on the letters' tables, or, for a read of one statement, a plain connection
/// (no `BEGIN`/`COMMIT` round trips on the consumer's redelivery poll).
pub(crate) struct SqlTx<DB: Exec> {
    conn: Conn<DB>,
    operation: &'static str,
}

enum Conn<DB: sqlx::Database> {
    Tx(Transaction<'static, DB>),
    Plain(PoolConnection<DB>),
}

impl<DB: sqlx::Database> Conn<DB> {
    fn get(&mut self) -> &mut DB::Connection {
        match self {
            Conn::Tx(tx) => tx,
            Conn::Plain(conn) => conn,
        }
    }
}

impl<DB: Exec> SqlTx<DB> {
    /// A transaction that will write (`operation` names it in errors).
    pub(crate) async fn write(
        pool: &Pool<DB>,
        operation: &'static str,
    ) -> Result<Self, TransportError> {
        let tx = DB::begin_write(pool)
            .await
            .map_err(|err| DB::error(operation.to_owned(), err))?;
        Ok(SqlTx {
            conn: Conn::Tx(tx),
            operation,
        })
    }

    /// A connection for one read statement (every read of the letters is one).
    pub(crate) async fn read(
        pool: &Pool<DB>,
        operation: &'static str,
    ) -> Result<Self, TransportError> {
        let conn = pool
            .acquire()
            .await
            .map_err(|err| DB::error(operation.to_owned(), err))?;
        Ok(SqlTx {
            conn: Conn::Plain(conn),
            operation,
        })
    }

    fn error(&self, err: sqlx::Error) -> TransportError {
        DB::error(self.operation.to_owned(), err)
    }

    async fn exec(&mut self, sql: &'static str, args: &[Value<'_>]) -> Result<u64, TransportError> {
        DB::exec(self.conn.get(), DB::sql(sql), args)
            .await
            .map_err(|err| DB::error(self.operation.to_owned(), err))
    }

    async fn rows(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Vec<DB::Row>, TransportError> {
        DB::rows(self.conn.get(), DB::sql(sql), args)
            .await
            .map_err(|err| DB::error(self.operation.to_owned(), err))
    }

    async fn row(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Option<DB::Row>, TransportError> {
        DB::row(self.conn.get(), DB::sql(sql), args)
            .await
            .map_err(|err| DB::error(self.operation.to_owned(), err))
    }

    async fn id(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Option<u64>, TransportError> {
        match self.row(sql, args).await? {
            Some(row) => Ok(Some(
                DB::int(&row, "id").map_err(|err| self.error(err))? as u64
            )),
            None => Ok(None),
        }
    }

    fn letter_ref(&self, row: &DB::Row) -> Result<LetterRef, TransportError> {
        let get = || -> Result<LetterRef, sqlx::Error> {
            Ok(LetterRef {
                id: DB::int(row, "id")? as u64,
                group: DB::text(row, "grp")?,
                topic: DB::text(row, "topic")?,
                partition: DB::int(row, "partition")? as u32,
                offset: DB::int(row, "offset")? as u64,
            })
        };
        get().map_err(|err| self.error(err))
    }

    fn letter(&self, row: &DB::Row) -> Result<DeadLetter, TransportError> {
        let get = || -> Result<DeadLetter, sqlx::Error> {
            let blob = DB::blob(row, "headers")?;
            Ok(DeadLetter {
                id: DB::int(row, "id")? as u64,
                group: DB::text(row, "grp")?,
                record: Record {
                    topic: DB::text(row, "topic")?.into(),
                    partition: DB::int(row, "partition")? as u32,
                    offset: DB::int(row, "offset")? as u64,
                    timestamp_ms: DB::int(row, "record_ts_ms")?,
                    key: DB::opt_blob(row, "record_key")?.map(Into::into),
                    headers: Headers::stored(blob),
                    payload: DB::blob(row, "payload")?.into(),
                },
                event_type: DB::opt_text(row, "event_type")?,
                event_id: DB::opt_text(row, "event_id")?,
                partition_key: DB::opt_text(row, "partition_key")?,
                reason_kind: DB::text(row, "reason_kind")?
                    .parse()
                    .map_err(|err: String| sqlx::Error::Decode(err.into()))?,
                reason: DB::text(row, "reason")?,
                error_chain: chain_from_text(&DB::text(row, "error_chain")?),
                attempts: DB::int(row, "attempts")? as u32,
                first_failure_ms: DB::int(row, "first_failure_ms")?,
                last_failure_ms: DB::int(row, "last_failure_ms")?,
                parked_behind: DB::opt_int(row, "parked_behind")?.map(|id| id as u64),
                status: DB::text(row, "status")?
                    .parse()
                    .unwrap_or(LetterStatus::Dead),
            })
        };
        get().map_err(|err| self.error(err))
    }

    fn refs(&self, rows: &[DB::Row]) -> Result<Vec<LetterRef>, TransportError> {
        rows.iter().map(|row| self.letter_ref(row)).collect()
    }
}

impl<DB: Exec> LetterTx for SqlTx<DB> {
    async fn lock(&mut self, key: &str) -> Result<(), TransportError> {
        if let Some(lock) = DB::LOCK_KEY {
            self.exec(lock, args![key]).await?;
        }
        Ok(())
    }

    async fn open_for_record(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<Option<u64>, TransportError> {
        self.id(
            "SELECT id FROM evt_dead_letters WHERE grp = ? AND topic = ? AND partition = ? \
             AND \"offset\" = ? AND status IN ('dead', 'parked', 'redriving') LIMIT 1",
            args![group, topic, i64::from(partition), offset as i64],
        )
        .await
    }

    async fn oldest_open_for_key(
        &mut self,
        group: &str,
        topic: &str,
        partition_key: Option<&str>,
    ) -> Result<Option<u64>, TransportError> {
        self.id(
            // Locked: a redrive resolving this letter (or a purge) at the same moment either
            // commits first, and the lock then reads it closed and moves on to the key's next
            // open letter, or waits for this transaction, and then sees the letter parked
            // behind it and releases that (`release_parked`). A plain read could park a letter
            // behind one just closed, where nothing would ever release it.
            "SELECT id FROM evt_dead_letters WHERE grp = ? AND topic = ? AND partition_key = ? \
             AND status IN ('dead', 'parked', 'redriving') ORDER BY id LIMIT 1 FOR UPDATE",
            args![group, topic, partition_key],
        )
        .await
    }

    async fn failed_again(
        &mut self,
        id: u64,
        letter: &NewDeadLetter,
    ) -> Result<(), TransportError> {
        let reason = letter.error_chain.first().cloned().unwrap_or_default();
        self.exec(
            "UPDATE evt_dead_letters SET reason_kind = ?, reason = ?, error_chain = ?, \
             attempts = attempts + ?, last_failure_ms = ? WHERE id = ?",
            args![
                letter.reason_kind.as_str(),
                &reason,
                &chain_to_text(&letter.error_chain),
                i64::from(letter.attempts),
                now_ms(),
                id as i64,
            ],
        )
        .await
        .map(drop)
    }

    async fn insert(
        &mut self,
        letter: &NewDeadLetter,
        status: LetterStatus,
    ) -> Result<u64, TransportError> {
        let reason = letter.error_chain.first().cloned().unwrap_or_default();
        let record = &letter.record;
        self.id(
            "INSERT INTO evt_dead_letters (grp, topic, partition, \"offset\", record_ts_ms, \
             record_key, headers, payload, event_type, event_id, partition_key, reason_kind, \
             reason, error_chain, attempts, first_failure_ms, last_failure_ms, parked_behind, \
             status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            args![
                &letter.group,
                &*record.topic,
                i64::from(record.partition),
                record.offset as i64,
                record.timestamp_ms,
                &record.key,
                &record.headers,
                &record.payload,
                &letter.event_type,
                &letter.event_id,
                &letter.partition_key,
                letter.reason_kind.as_str(),
                &reason,
                &chain_to_text(&letter.error_chain),
                i64::from(letter.attempts),
                letter.first_failure_ms,
                now_ms(),
                letter.parked_behind.map(|id| id as i64),
                status.as_str(),
            ],
        )
        .await?
        .ok_or_else(|| self.error(sqlx::Error::RowNotFound))
    }

    async fn audit(
        &mut self,
        letter_id: u64,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), TransportError> {
        self.exec(
            "INSERT INTO evt_dlq_audit (letter_id, at_ms, action, actor, detail) \
             VALUES (?, ?, ?, ?, ?)",
            args![letter_id as i64, now_ms(), action, actor, detail],
        )
        .await
        .map(drop)
    }

    async fn letter_for_update(&mut self, id: u64) -> Result<Option<LetterRef>, TransportError> {
        let row = self
            .row(
                "SELECT id, grp, topic, partition, \"offset\" FROM evt_dead_letters \
                 WHERE id = ? FOR UPDATE",
                args![id as i64],
            )
            .await?;
        row.map(|row| self.letter_ref(&row)).transpose()
    }

    async fn dead_for_update(
        &mut self,
        group: Option<&str>,
    ) -> Result<Vec<LetterRef>, TransportError> {
        let rows = self
            .rows(
                "SELECT id, grp, topic, partition, \"offset\" FROM evt_dead_letters \
                 WHERE status = 'dead' AND (CAST(? AS TEXT) IS NULL OR grp = ?) ORDER BY id \
                 FOR UPDATE",
                args![group, group],
            )
            .await?;
        self.refs(&rows)
    }

    async fn open_for_update(&mut self, group: Option<&str>) -> Result<Vec<u64>, TransportError> {
        let rows = self
            .rows(
                "SELECT id, grp, topic, partition, \"offset\" FROM evt_dead_letters \
                 WHERE status IN ('dead', 'parked', 'redriving') \
                 AND (CAST(? AS TEXT) IS NULL OR grp = ?) ORDER BY id FOR UPDATE",
                args![group, group],
            )
            .await?;
        Ok(self.refs(&rows)?.into_iter().map(|r| r.id).collect())
    }

    async fn first_parked_behind(&mut self, id: u64) -> Result<Option<LetterRef>, TransportError> {
        let row = self
            .row(
                "SELECT id, grp, topic, partition, \"offset\" FROM evt_dead_letters \
                 WHERE parked_behind = ? AND status = 'parked' ORDER BY id LIMIT 1 FOR UPDATE",
                args![id as i64],
            )
            .await?;
        row.map(|row| self.letter_ref(&row)).transpose()
    }

    async fn repark(&mut self, from: u64, to: u64) -> Result<(), TransportError> {
        self.exec(
            "UPDATE evt_dead_letters SET parked_behind = ? \
             WHERE parked_behind = ? AND status = 'parked' AND id <> ?",
            args![to as i64, from as i64, to as i64],
        )
        .await
        .map(drop)
    }

    async fn set_status(&mut self, id: u64, status: LetterStatus) -> Result<(), TransportError> {
        self.exec(
            "UPDATE evt_dead_letters SET status = ? WHERE id = ?",
            args![status.as_str(), id as i64],
        )
        .await
        .map(drop)
    }

    async fn redrive_failed(&mut self, id: u64, chain: &[String]) -> Result<(), TransportError> {
        let reason = chain.first().cloned().unwrap_or_default();
        self.exec(
            "UPDATE evt_dead_letters SET status = 'dead', attempts = attempts + 1, \
             last_failure_ms = ?, reason = ?, error_chain = ? WHERE id = ?",
            args![now_ms(), &reason, &chain_to_text(chain), id as i64],
        )
        .await
        .map(drop)
    }

    async fn insert_redelivery(
        &mut self,
        group: &str,
        source: RedeliverySource,
        letter_id: Option<u64>,
        (topic, partition, offset): (&str, u32, u64),
        bypass_dedupe: bool,
    ) -> Result<(), TransportError> {
        let source = match source {
            RedeliverySource::Redrive => "redrive",
            RedeliverySource::Replay => "replay",
        };
        self.exec(
            "INSERT INTO evt_redeliveries (grp, source, letter_id, topic, partition, \"offset\", \
             bypass_dedupe, requested_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            args![
                group,
                source,
                letter_id.map(|id| id as i64),
                topic,
                i64::from(partition),
                offset as i64,
                bypass_dedupe,
                now_ms(),
            ],
        )
        .await
        .map(drop)
    }

    async fn redelivery_pending(&mut self, id: u64) -> Result<bool, TransportError> {
        Ok(self
            .row(
                "SELECT id FROM evt_redeliveries WHERE id = ?",
                args![id as i64],
            )
            .await?
            .is_some())
    }

    async fn delete_redelivery(&mut self, id: u64) -> Result<bool, TransportError> {
        self.exec(
            "DELETE FROM evt_redeliveries WHERE id = ?",
            args![id as i64],
        )
        .await
        .map(|deleted| deleted == 1)
    }

    async fn delete_redrives_of(&mut self, letter_id: u64) -> Result<u64, TransportError> {
        self.exec(
            "DELETE FROM evt_redeliveries WHERE letter_id = ?",
            args![letter_id as i64],
        )
        .await
    }

    async fn list(&mut self, filter: &LetterFilter) -> Result<Vec<DeadLetter>, TransportError> {
        let group = filter.group.as_deref();
        let rows = self
            .rows(
                "SELECT * FROM evt_dead_letters WHERE (CAST(? AS TEXT) IS NULL OR grp = ?) \
                 AND (? OR status IN ('dead', 'parked', 'redriving')) ORDER BY id LIMIT ?",
                args![
                    group,
                    group,
                    filter.include_closed,
                    i64::from(filter.limit.unwrap_or(1000)),
                ],
            )
            .await?;
        rows.iter().map(|row| self.letter(row)).collect()
    }

    async fn get(&mut self, id: u64) -> Result<Option<DeadLetter>, TransportError> {
        let row = self
            .row(
                "SELECT * FROM evt_dead_letters WHERE id = ?",
                args![id as i64],
            )
            .await?;
        row.map(|row| self.letter(&row)).transpose()
    }

    async fn audit_of(&mut self, letter_id: u64) -> Result<Vec<AuditEntry>, TransportError> {
        let rows = self
            .rows(
                "SELECT at_ms, action, actor, detail FROM evt_dlq_audit WHERE letter_id = ? \
                 ORDER BY id",
                args![letter_id as i64],
            )
            .await?;
        let entry = |row: &DB::Row| -> Result<AuditEntry, sqlx::Error> {
            Ok(AuditEntry {
                letter_id,
                at_ms: DB::int(row, "at_ms")?,
                action: DB::text(row, "action")?,
                actor: DB::text(row, "actor")?,
                detail: DB::text(row, "detail")?,
            })
        };
        rows.iter()
            .map(|row| entry(row).map_err(|err| self.error(err)))
            .collect()
    }

    async fn redeliveries(
        &mut self,
        group: Option<&str>,
        after: u64,
        max: u32,
    ) -> Result<Vec<Redelivery>, TransportError> {
        let rows = self
            .rows(
                "SELECT * FROM evt_redeliveries WHERE (CAST(? AS TEXT) IS NULL OR grp = ?) \
                 AND id > ? ORDER BY id LIMIT ?",
                args![group, group, after as i64, i64::from(max)],
            )
            .await?;
        let redelivery = |row: &DB::Row| -> Result<Redelivery, sqlx::Error> {
            Ok(Redelivery {
                id: DB::int(row, "id")? as u64,
                group: DB::text(row, "grp")?,
                source: if DB::text(row, "source")? == "redrive" {
                    RedeliverySource::Redrive
                } else {
                    RedeliverySource::Replay
                },
                letter_id: DB::opt_int(row, "letter_id")?.map(|id| id as u64),
                topic: DB::text(row, "topic")?,
                partition: DB::int(row, "partition")? as u32,
                offset: DB::int(row, "offset")? as u64,
                bypass_dedupe: DB::flag(row, "bypass_dedupe")?,
            })
        };
        rows.iter()
            .map(|row| redelivery(row).map_err(|err| self.error(err)))
            .collect()
    }

    async fn depth(&mut self) -> Result<Vec<(String, u64)>, TransportError> {
        let rows = self
            .rows(
                "SELECT grp, COUNT(*) AS n FROM evt_dead_letters \
                 WHERE status IN ('dead', 'parked', 'redriving') GROUP BY grp ORDER BY grp",
                &[],
            )
            .await?;
        let depth = |row: &DB::Row| -> Result<(String, u64), sqlx::Error> {
            Ok((DB::text(row, "grp")?, DB::int(row, "n")? as u64))
        };
        rows.iter()
            .map(|row| depth(row).map_err(|err| self.error(err)))
            .collect()
    }

    async fn delete_closed(&mut self, before_ms: i64) -> Result<u64, TransportError> {
        // Closed: resolved or purged, and nothing parked behind it any more (a purge or a
        // resolution releases those; this only guards against a letter still referenced).
        let deleted = self
            .exec(
                "DELETE FROM evt_dead_letters WHERE status IN ('resolved', 'purged') \
                 AND id IN (SELECT letter_id FROM evt_dlq_audit GROUP BY letter_id \
                            HAVING MAX(at_ms) < ?) \
                 AND id NOT IN (SELECT parked_behind FROM evt_dead_letters \
                                WHERE parked_behind IS NOT NULL AND status = 'parked')",
                args![before_ms],
            )
            .await?;
        if deleted > 0 {
            self.exec(
                "DELETE FROM evt_dlq_audit WHERE letter_id NOT IN (SELECT id FROM evt_dead_letters)",
                &[],
            )
            .await?;
        }
        Ok(deleted)
    }

    async fn commit(self) -> Result<(), TransportError> {
        match self.conn {
            Conn::Tx(tx) => tx
                .commit()
                .await
                .map_err(|err| DB::error(self.operation.to_owned(), err)),
            Conn::Plain(_) => Ok(()),
        }
    }
}
