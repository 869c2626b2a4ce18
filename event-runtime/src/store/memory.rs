//! The letters' rows in memory: [`LetterTx`] over a mutex-guarded set of tables, for apps with
//! no SQL database (`Stores::in_memory`). A transaction holds the lock from its first row to its
//! commit, so it is as serial as SQLite's writer; nothing here can fail half-way.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

use super::letters::{LetterRef, LetterTx};
use crate::dlq::{
    AuditEntry, DeadLetter, LetterFilter, LetterStatus, NewDeadLetter, Redelivery, RedeliverySource,
};
use crate::transport::{TransportError, now_ms};

/// The tables.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    letters: BTreeMap<u64, DeadLetter>,
    audit: Vec<AuditEntry>,
    redeliveries: BTreeMap<u64, Redelivery>,
    next_letter: u64,
    next_redelivery: u64,
}

/// Letters in memory; cloning shares them.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemoryLetters(Arc<Mutex<Tables>>);

impl MemoryLetters {
    /// A transaction: holds the tables until it is dropped.
    pub(crate) async fn begin(&self) -> MemoryTx {
        MemoryTx(self.0.clone().lock_owned().await)
    }
}

/// One transaction on the tables in memory.
pub(crate) struct MemoryTx(OwnedMutexGuard<Tables>);

fn letter_ref(letter: &DeadLetter) -> LetterRef {
    LetterRef {
        id: letter.id,
        group: letter.group.clone(),
        topic: letter.record.topic.to_string(),
        partition: letter.record.partition,
        offset: letter.record.offset,
    }
}

impl MemoryTx {
    fn open(&self, group: Option<&str>) -> impl Iterator<Item = &DeadLetter> {
        self.0
            .letters
            .values()
            .filter(move |l| l.status.is_open() && group.is_none_or(|g| l.group == g))
    }

    fn letter_mut(&mut self, id: u64) -> Option<&mut DeadLetter> {
        self.0.letters.get_mut(&id)
    }
}

impl LetterTx for MemoryTx {
    async fn lock(&mut self, _key: &str) -> Result<(), TransportError> {
        Ok(())
    }

    async fn open_for_record(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<Option<u64>, TransportError> {
        Ok(self
            .open(Some(group))
            .find(|l| {
                &*l.record.topic == topic
                    && l.record.partition == partition
                    && l.record.offset == offset
            })
            .map(|l| l.id))
    }

    async fn oldest_open_for_key(
        &mut self,
        group: &str,
        topic: &str,
        partition_key: Option<&str>,
    ) -> Result<Option<u64>, TransportError> {
        // As in SQL, a missing key matches nothing.
        let Some(key) = partition_key else {
            return Ok(None);
        };
        Ok(self
            .open(Some(group))
            .find(|l| &*l.record.topic == topic && l.partition_key.as_deref() == Some(key))
            .map(|l| l.id))
    }

    async fn failed_again(
        &mut self,
        id: u64,
        letter: &NewDeadLetter,
    ) -> Result<(), TransportError> {
        if let Some(open) = self.letter_mut(id) {
            open.reason_kind = letter.reason_kind;
            open.reason = letter.error_chain.first().cloned().unwrap_or_default();
            open.error_chain = letter.error_chain.clone();
            open.attempts += letter.attempts;
            open.last_failure_ms = now_ms();
        }
        Ok(())
    }

    async fn insert(
        &mut self,
        letter: &NewDeadLetter,
        status: LetterStatus,
    ) -> Result<u64, TransportError> {
        self.0.next_letter += 1;
        let id = self.0.next_letter;
        self.0.letters.insert(
            id,
            DeadLetter {
                id,
                group: letter.group.clone(),
                record: letter.record.clone(),
                event_type: letter.event_type.clone(),
                event_id: letter.event_id.clone(),
                partition_key: letter.partition_key.clone(),
                reason_kind: letter.reason_kind,
                reason: letter.error_chain.first().cloned().unwrap_or_default(),
                error_chain: letter.error_chain.clone(),
                attempts: letter.attempts,
                first_failure_ms: letter.first_failure_ms,
                last_failure_ms: now_ms(),
                parked_behind: letter.parked_behind,
                status,
            },
        );
        Ok(id)
    }

    async fn audit(
        &mut self,
        letter_id: u64,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), TransportError> {
        self.0.audit.push(AuditEntry {
            letter_id,
            at_ms: now_ms(),
            action: action.to_owned(),
            actor: actor.to_owned(),
            detail: detail.to_owned(),
        });
        Ok(())
    }

    async fn letter_for_update(&mut self, id: u64) -> Result<Option<LetterRef>, TransportError> {
        Ok(self.0.letters.get(&id).map(letter_ref))
    }

    async fn dead_for_update(
        &mut self,
        group: Option<&str>,
    ) -> Result<Vec<LetterRef>, TransportError> {
        Ok(self
            .open(group)
            .filter(|l| l.status == LetterStatus::Dead)
            .map(letter_ref)
            .collect())
    }

    async fn open_for_update(&mut self, group: Option<&str>) -> Result<Vec<u64>, TransportError> {
        Ok(self.open(group).map(|l| l.id).collect())
    }

    async fn first_parked_behind(&mut self, id: u64) -> Result<Option<LetterRef>, TransportError> {
        Ok(self
            .0
            .letters
            .values()
            .find(|l| l.parked_behind == Some(id) && l.status == LetterStatus::Parked)
            .map(letter_ref))
    }

    async fn repark(&mut self, from: u64, to: u64) -> Result<(), TransportError> {
        for letter in self.0.letters.values_mut() {
            if letter.parked_behind == Some(from)
                && letter.status == LetterStatus::Parked
                && letter.id != to
            {
                letter.parked_behind = Some(to);
            }
        }
        Ok(())
    }

    async fn set_status(&mut self, id: u64, status: LetterStatus) -> Result<(), TransportError> {
        if let Some(letter) = self.letter_mut(id) {
            letter.status = status;
        }
        Ok(())
    }

    async fn redrive_failed(&mut self, id: u64, chain: &[String]) -> Result<(), TransportError> {
        if let Some(letter) = self.letter_mut(id) {
            letter.status = LetterStatus::Dead;
            letter.attempts += 1;
            letter.last_failure_ms = now_ms();
            letter.reason = chain.first().cloned().unwrap_or_default();
            letter.error_chain = chain.to_vec();
        }
        Ok(())
    }

    async fn insert_redelivery(
        &mut self,
        group: &str,
        source: RedeliverySource,
        letter_id: Option<u64>,
        (topic, partition, offset): (&str, u32, u64),
        bypass_dedupe: bool,
    ) -> Result<(), TransportError> {
        self.0.next_redelivery += 1;
        let id = self.0.next_redelivery;
        self.0.redeliveries.insert(
            id,
            Redelivery {
                id,
                group: group.to_owned(),
                source,
                letter_id,
                topic: topic.to_owned(),
                partition,
                offset,
                bypass_dedupe,
            },
        );
        Ok(())
    }

    async fn redelivery_pending(&mut self, id: u64) -> Result<bool, TransportError> {
        Ok(self.0.redeliveries.contains_key(&id))
    }

    async fn delete_redelivery(&mut self, id: u64) -> Result<bool, TransportError> {
        Ok(self.0.redeliveries.remove(&id).is_some())
    }

    async fn delete_redrives_of(&mut self, letter_id: u64) -> Result<u64, TransportError> {
        let before = self.0.redeliveries.len();
        self.0
            .redeliveries
            .retain(|_, r| r.letter_id != Some(letter_id));
        Ok((before - self.0.redeliveries.len()) as u64)
    }

    async fn list(&mut self, filter: &LetterFilter) -> Result<Vec<DeadLetter>, TransportError> {
        let limit = filter.limit.unwrap_or(1000) as usize;
        Ok(self
            .0
            .letters
            .values()
            .filter(|l| filter.group.as_ref().is_none_or(|g| &l.group == g))
            .filter(|l| filter.include_closed || l.status.is_open())
            .take(limit)
            .cloned()
            .collect())
    }

    async fn get(&mut self, id: u64) -> Result<Option<DeadLetter>, TransportError> {
        Ok(self.0.letters.get(&id).cloned())
    }

    async fn audit_of(&mut self, letter_id: u64) -> Result<Vec<AuditEntry>, TransportError> {
        Ok(self
            .0
            .audit
            .iter()
            .filter(|e| e.letter_id == letter_id)
            .cloned()
            .collect())
    }

    async fn redeliveries(
        &mut self,
        group: Option<&str>,
        after: u64,
        max: u32,
    ) -> Result<Vec<Redelivery>, TransportError> {
        Ok(self
            .0
            .redeliveries
            .range(after + 1..)
            .map(|(_, r)| r)
            .filter(|r| group.is_none_or(|g| r.group == g))
            .take(max as usize)
            .cloned()
            .collect())
    }

    async fn depth(&mut self) -> Result<Vec<(String, u64)>, TransportError> {
        let mut depth: BTreeMap<String, u64> = BTreeMap::new();
        for letter in self.open(None) {
            *depth.entry(letter.group.clone()).or_default() += 1;
        }
        Ok(depth.into_iter().collect())
    }

    async fn delete_closed(&mut self, before_ms: i64) -> Result<u64, TransportError> {
        let tables = &mut *self.0;
        let mut last_audit: BTreeMap<u64, i64> = BTreeMap::new();
        for entry in &tables.audit {
            let at = last_audit.entry(entry.letter_id).or_insert(entry.at_ms);
            *at = (*at).max(entry.at_ms);
        }
        let referenced: Vec<u64> = tables
            .letters
            .values()
            .filter(|l| l.status == LetterStatus::Parked)
            .filter_map(|l| l.parked_behind)
            .collect();
        let closed: Vec<u64> = tables
            .letters
            .values()
            .filter(|l| matches!(l.status, LetterStatus::Resolved | LetterStatus::Purged))
            .filter(|l| last_audit.get(&l.id).is_some_and(|at| *at < before_ms))
            .filter(|l| !referenced.contains(&l.id))
            .map(|l| l.id)
            .collect();
        for id in &closed {
            tables.letters.remove(id);
        }
        tables
            .audit
            .retain(|entry| tables.letters.contains_key(&entry.letter_id));
        Ok(closed.len() as u64)
    }

    async fn commit(self) -> Result<(), TransportError> {
        Ok(())
    }
}
