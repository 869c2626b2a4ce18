//! `evt tail ...`.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Stdout, Write};
use std::time::Duration;

use event_runtime::transport::{Record, Transport};
use serde_json::{Value, json};

use crate::cli::TailArgs;
use crate::db::{Db, Error};
use crate::output::{self, clean, time_ms};

/// Records printed without --from-beginning, unless --limit says otherwise.
const DEFAULT_LAST: usize = 10;
/// Records fetched per partition per read.
const BATCH: usize = 256;
/// How long --follow sleeps when nothing new arrived.
const IDLE: Duration = Duration::from_millis(100);

/// Prints records: lines for people, or JSON (one document, or one object per line in follow
/// mode).
struct Printer {
    out: BufWriter<Stdout>,
    topic: String,
    json: bool,
    lines: bool,
    printed: usize,
}

impl Printer {
    fn start(&mut self) -> io::Result<()> {
        if self.json && !self.lines {
            let topic = serde_json::to_string(&self.topic).map_err(io::Error::other)?;
            write!(self.out, "{{\"topic\":{topic},\"records\":[")?;
        }
        Ok(())
    }

    fn print(&mut self, record: &Record) -> io::Result<()> {
        if self.json {
            let value = record_json(record);
            if !self.lines && self.printed > 0 {
                write!(self.out, ",")?;
            }
            if !self.lines {
                writeln!(self.out)?;
            }
            serde_json::to_writer(&mut self.out, &value).map_err(io::Error::other)?;
            if self.lines {
                writeln!(self.out)?;
            }
        } else {
            writeln!(self.out, "{}", record_line(&self.topic, record))?;
        }
        self.printed += 1;
        Ok(())
    }

    fn end(&mut self) -> io::Result<()> {
        if self.json && !self.lines {
            writeln!(self.out, "\n],\"count\":{}}}", self.printed)?;
        }
        self.out.flush()
    }
}

fn record_line(topic: &str, record: &Record) -> String {
    let position = format!("{}/{}@{}", clean(topic), record.partition, record.offset);
    match output::decode(record) {
        Ok(envelope) => {
            let mut line = format!(
                "{}  {position}  {} v{}  id={}",
                output::time(envelope.time),
                clean(&envelope.ty),
                envelope.version,
                envelope.id
            );
            if let Some(correlation) = &envelope.correlation_id {
                line.push_str(&format!("  corr={}", clean(correlation)));
            }
            if let Some(key) = &envelope.partition_key {
                line.push_str(&format!("  key={}", clean(key)));
            }
            line.push_str("  ");
            line.push_str(&output::data_text(&envelope));
            line
        }
        Err(reason) => {
            let mut line = format!(
                "{}  {position}  <undecodable: {}>",
                time_ms(record.timestamp_ms),
                clean(&reason)
            );
            if let Some(key) = output::record_key(record) {
                line.push_str(&format!("  key={}", clean(&key)));
            }
            line.push_str(&format!("  <{} bytes>", record.payload.len()));
            line
        }
    }
}

fn record_json(record: &Record) -> Value {
    match output::decode(record) {
        Ok(envelope) => {
            let (data, data_base64) = output::data_json(&envelope);
            json!({
                "partition": record.partition,
                "offset": record.offset,
                "appended_at": time_ms(record.timestamp_ms),
                "decoded": true,
                "type": envelope.ty,
                "version": envelope.version,
                "id": envelope.id.to_string(),
                "time": output::time(envelope.time),
                "source": envelope.source,
                "subject": envelope.subject,
                "correlation_id": envelope.correlation_id,
                "causation_id": envelope.causation_id,
                "key": envelope.partition_key,
                "content_type": envelope.content_type,
                "data": data,
                "data_base64": data_base64,
            })
        }
        Err(reason) => json!({
            "partition": record.partition,
            "offset": record.offset,
            "appended_at": time_ms(record.timestamp_ms),
            "decoded": false,
            "error": reason,
            "key": output::record_key(record),
            "payload_base64": output::base64(&record.payload),
        }),
    }
}

/// One partition read between two offsets.
struct Cursor {
    partition: u32,
    next: u64,
    end: u64,
    buffer: VecDeque<Record>,
}

/// Reads `[start, end)` of every partition merged by append time, handing each record to `emit`
/// until it returns `false`.
async fn merged(
    db: &Db,
    topic: &str,
    starts: &[u64],
    ends: &[u64],
    mut emit: impl FnMut(Record) -> Result<bool, Error>,
) -> Result<(), Error> {
    let mut cursors: Vec<Cursor> = starts
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(partition, (start, end))| Cursor {
            partition: partition as u32,
            next: *start,
            end: *end,
            buffer: VecDeque::new(),
        })
        .collect();
    loop {
        for cursor in &mut cursors {
            if cursor.buffer.is_empty() && cursor.next < cursor.end {
                let batch = db
                    .transport
                    .fetch(topic, cursor.partition, cursor.next, BATCH)
                    .await
                    .map_err(|e| db.fail(e))?;
                cursor.next = batch.last().map_or(cursor.end, |r| r.offset + 1);
                let end = cursor.end;
                cursor
                    .buffer
                    .extend(batch.into_iter().filter(|r| r.offset < end));
            }
        }
        let next = cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.buffer
                    .front()
                    .map(|r| ((r.timestamp_ms, r.partition, r.offset), i))
            })
            .min();
        let Some((_, i)) = next else {
            return Ok(());
        };
        let record = cursors[i].buffer.pop_front().expect("a buffered record");
        if !emit(record)? {
            return Ok(());
        }
    }
}

pub(crate) async fn run(db: &Db, args: &TailArgs, json: bool) -> Result<(), Error> {
    let topic = args.topic.as_str();
    db.partitions_of(topic).await?;
    let ends = db
        .transport
        .end_offsets(topic)
        .await
        .map_err(|e| db.fail(e))?;
    let mut printer = Printer {
        out: BufWriter::new(io::stdout()),
        topic: topic.to_owned(),
        json,
        lines: args.follow,
        printed: 0,
    };
    printer.start()?;
    // With --from-beginning, --limit caps everything printed.
    let cap = if args.from_beginning {
        args.limit
    } else {
        None
    };
    if cap == Some(0) {
        return Ok(printer.end()?);
    }
    if args.from_beginning {
        let starts = vec![0; ends.len()];
        merged(db, topic, &starts, &ends, |record| {
            printer.print(&record)?;
            Ok(cap.is_none_or(|cap| printer.printed < cap))
        })
        .await?;
    } else {
        let last = args.limit.unwrap_or(DEFAULT_LAST);
        let starts: Vec<u64> = ends
            .iter()
            .map(|end| end.saturating_sub(last as u64))
            .collect();
        let mut backlog = Vec::new();
        merged(db, topic, &starts, &ends, |record| {
            backlog.push(record);
            Ok(true)
        })
        .await?;
        for record in &backlog[backlog.len().saturating_sub(last)..] {
            printer.print(record)?;
        }
    }
    if !args.follow || cap.is_some_and(|cap| printer.printed >= cap) {
        return Ok(printer.end()?);
    }

    printer.out.flush()?;
    let mut next = ends;
    loop {
        let mut fresh = Vec::new();
        for (partition, next) in next.iter_mut().enumerate() {
            let batch = db
                .transport
                .fetch(topic, partition as u32, *next, BATCH)
                .await
                .map_err(|e| db.fail(e))?;
            if let Some(last) = batch.last() {
                *next = last.offset + 1;
            }
            fresh.extend(batch);
        }
        if fresh.is_empty() {
            printer.out.flush()?;
            tokio::time::sleep(IDLE).await;
            continue;
        }
        fresh.sort_by_key(|r| (r.timestamp_ms, r.partition, r.offset));
        for record in &fresh {
            printer.print(record)?;
            if cap.is_some_and(|cap| printer.printed >= cap) {
                return Ok(printer.end()?);
            }
        }
        // Whoever follows wants to see records as they come.
        printer.out.flush()?;
    }
}
