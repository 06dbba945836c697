use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use futures::StreamExt;
use tempfile::tempdir;

use super::*;
use crate::contract::{self, event, DynLog};

/// Test-only fault injection for the next append (see `write_frame` / `truncate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailPoint {
    /// Half the frame is written, then the write fails.
    PartialWrite,
    /// The whole frame is written, then `fsync` fails.
    Sync,
    /// Half the frame is written, the write fails, and so does the rollback truncation.
    PartialWriteThenTruncate,
}

const WAIT: Duration = Duration::from_secs(20);
const SUBJECT: &str = "signet.events.client.web-app";

fn open(dir: &Path) -> Arc<FileLog> {
    match FileLog::open(dir) {
        Ok(log) => log,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

fn open_err(dir: &Path) -> EventLogError {
    match FileLog::open(dir) {
        Ok(log) => panic!("open succeeded on a damaged log: {log:?}"),
        Err(e) => e,
    }
}

async fn append_n(log: &FileLog, n: u64) {
    for i in 1..=n {
        log.append(event(SUBJECT, i), ExpectedVersion::Any)
            .await
            .unwrap();
    }
}

async fn fail_next(log: &FileLog, fail: FailPoint) {
    log.writer.lock().await.fail_next = Some(fail);
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

fn file_len(dir: &Path) -> u64 {
    fs::metadata(log_path(dir)).unwrap().len()
}

/// Byte offsets of every frame in a (valid) log file.
fn frame_offsets(dir: &Path) -> Vec<usize> {
    let bytes = fs::read(log_path(dir)).unwrap();
    let mut offsets = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    while pos < bytes.len() {
        offsets.push(pos);
        pos += FRAME_HEADER_LEN + le_u32(&bytes, pos) as usize;
    }
    assert_eq!(pos, bytes.len(), "frames do not end at the end of the file");
    offsets
}

fn edit_log(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(log_path(dir)).unwrap();
    edit(&mut bytes);
    fs::write(log_path(dir), bytes).unwrap();
}

/// A log file with a header and the given events, framed like the real writer does.
fn write_raw_log(dir: &Path, events: &[RecordedEvent]) {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(LOG_MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    for e in events {
        bytes.extend_from_slice(&encode_frame(&serde_json::to_vec(e).unwrap()));
    }
    fs::create_dir_all(dir).unwrap();
    fs::write(log_path(dir), bytes).unwrap();
}

fn recorded(seq: Seq) -> RecordedEvent {
    RecordedEvent {
        seq,
        subject: SUBJECT.to_owned(),
        actor: "test".to_owned(),
        at_ms: 1,
        payload: format!(r#"{{"n":{seq}}}"#).into_bytes(),
    }
}

#[track_caller]
fn assert_corrupt(error: EventLogError, dir: &Path, offset: u64, needle: &str) {
    let message = error.to_string();
    match error {
        EventLogError::Corrupt {
            path,
            offset: at,
            reason,
        } => {
            assert!(
                Path::new(&path).starts_with(dir),
                "path {path} not in {}",
                dir.display()
            );
            assert_eq!(at, offset, "offset in {message}");
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
            assert!(message.contains(&path) && message.contains(&format!("byte offset {offset}")));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

async fn next_event(
    stream: &mut BoxStream<'static, Result<RecordedEvent>>,
) -> Option<Result<RecordedEvent>> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("timed out waiting for the follow stream")
}

// ---------------------------------------------------------------------------------------------
// The contract suite against FileLog.
// ---------------------------------------------------------------------------------------------

/// One fresh log per call, each in its own directory under `root`.
fn maker(root: &Path) -> impl Fn() -> std::future::Ready<DynLog> + '_ {
    let counter = AtomicUsize::new(0);
    move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let log: DynLog = open(&root.join(format!("log-{n}")));
        std::future::ready(log)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_run_all_multi_thread() {
    let root = tempdir().unwrap();
    contract::run_all(maker(root.path())).await;
}

#[tokio::test]
async fn contract_run_all_current_thread() {
    let root = tempdir().unwrap();
    contract::run_all(maker(root.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_restart() {
    let dir = tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let log: DynLog = open(&path);
    contract::restart(log, |old| {
        let path = path.clone();
        async move {
            drop(old);
            let log: DynLog = open(&path);
            log
        }
    })
    .await;
}

/// Limits so small that almost every read goes to disk: one cached event, and an index
/// entry every third event (reads start between indexed frames).
const TINY_CACHE: ReadCache = ReadCache {
    events: 1,
    bytes: 1 << 20,
    index_stride: 3,
};

fn open_tiny(dir: &Path) -> Arc<FileLog> {
    match FileLog::open_with(dir, TINY_CACHE) {
        Ok(log) => log,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

/// The whole contract suite again, with reads and followers served from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_run_all_reading_from_disk() {
    let root = tempdir().unwrap();
    let counter = AtomicUsize::new(0);
    contract::run_all(|| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let log: DynLog = open_tiny(&root.path().join(format!("log-{n}")));
        std::future::ready(log)
    })
    .await;
    let dir = tempdir().unwrap();
    let path = dir.path().to_path_buf();
    contract::restart(open_tiny(&path), |old| {
        let path = path.clone();
        async move {
            drop(old);
            let log: DynLog = open_tiny(&path);
            log
        }
    })
    .await;
}

/// The individual checks the task calls out, so a failure names the behaviour.
macro_rules! contract_checks {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let dir = tempdir().unwrap();
            contract::$name(open(dir.path())).await;
        }
    )*};
}

mod contract_checks {
    use super::*;
    contract_checks!(
        empty_log,
        append_and_read,
        payload_round_trip,
        expected_version,
        conflict_leaves_nothing_behind,
        racing_appends_one_winner,
        concurrent_appends_dense,
        read_from_ranges,
        follow_history_then_live,
        follow_from_future_seq,
        follow_races_with_appends,
        snapshots,
        invalid_subjects_rejected,
        invalid_payload_rejected,
    );
}

// ---------------------------------------------------------------------------------------------
// Files and format
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn open_creates_the_directory_and_a_header_only_file() {
    let root = tempdir().unwrap();
    let dir = root.path().join("nested").join("data");
    let log = open(&dir);
    assert_eq!(log.dir(), dir);
    assert_eq!(log.last_seq().await.unwrap(), 0);
    let bytes = fs::read(log_path(&dir)).unwrap();
    assert_eq!(&bytes[..8], b"SIGNETEV");
    assert_eq!(bytes.len(), FILE_HEADER_LEN);
    drop(log);
    // Reopening an empty log does not rewrite or grow it.
    let log = open(&dir);
    assert_eq!(log.last_seq().await.unwrap(), 0);
    assert_eq!(file_len(&dir), FILE_HEADER_LEN as u64);
}

#[tokio::test]
async fn records_are_length_crc_json_frames() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 3).await;
    let bytes = fs::read(log_path(dir.path())).unwrap();
    let offsets = frame_offsets(dir.path());
    assert_eq!(offsets.len(), 3);
    for (i, offset) in offsets.into_iter().enumerate() {
        let len = le_u32(&bytes, offset) as usize;
        let crc = le_u32(&bytes, offset + 4);
        let body = &bytes[offset + 8..offset + 8 + len];
        assert_eq!(crc, crc32fast::hash(body));
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["seq"], i as u64 + 1);
        assert_eq!(json["subject"], SUBJECT);
        // The payload is embedded as JSON, not as a string or base64.
        assert_eq!(json["payload"]["n"], i as u64 + 1);
    }
}

#[tokio::test]
async fn payload_is_stored_without_surrounding_whitespace() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    let new = NewEvent {
        payload: b"  {\"a\": [1, 2]}\n".to_vec(),
        ..event(SUBJECT, 1)
    };
    log.append(new, ExpectedVersion::Any).await.unwrap();
    let before = log.read_from(1, 1).await.unwrap();
    assert_eq!(before[0].payload, b"{\"a\": [1, 2]}");
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.read_from(1, 1).await.unwrap(), before);
}

#[tokio::test]
async fn reopen_after_drop_keeps_everything() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 5).await;
    log.append(event("signet.events.scope.s", 6), ExpectedVersion::Exact(0))
        .await
        .unwrap();
    let snapshot = Snapshot {
        seq: 6,
        data: b"state".to_vec(),
    };
    log.save_snapshot(snapshot.clone()).await.unwrap();
    let events = log.read_from(1, 100).await.unwrap();
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.last_seq().await.unwrap(), 6);
    assert_eq!(log.subject_version(SUBJECT).await.unwrap(), 5);
    assert_eq!(
        log.subject_version("signet.events.scope.s").await.unwrap(),
        6
    );
    assert_eq!(log.read_from(1, 100).await.unwrap(), events);
    assert_eq!(log.load_snapshot().await.unwrap(), Some(snapshot));
    assert_eq!(
        log.append(event(SUBJECT, 7), ExpectedVersion::Exact(5))
            .await
            .unwrap(),
        7
    );
}

// ---------------------------------------------------------------------------------------------
// Torn tails are repaired
// ---------------------------------------------------------------------------------------------

/// Builds a log of 3 events, damages its tail with `edit`, and checks that reopening drops
/// only the torn tail, that the file is cut back to the end of record `kept`, and that the
/// log is fully usable afterwards.
async fn check_torn_tail(kept: u64, edit: impl FnOnce(&mut Vec<u8>, &[usize])) {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 3).await;
    drop(log);
    let offsets = frame_offsets(dir.path());
    let good_len = match offsets.get(kept as usize) {
        Some(offset) => *offset as u64,
        None => file_len(dir.path()),
    };
    edit_log(dir.path(), |bytes| edit(bytes, &offsets));

    let log = open(dir.path());
    assert_eq!(log.last_seq().await.unwrap(), kept);
    assert_eq!(file_len(dir.path()), good_len, "torn tail not truncated");
    assert_eq!(log.read_from(1, 10).await.unwrap().len() as u64, kept);
    assert_eq!(
        log.append(event(SUBJECT, 9), ExpectedVersion::Exact(kept))
            .await
            .unwrap(),
        kept + 1
    );
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.last_seq().await.unwrap(), kept + 1);
    assert_eq!(frame_offsets(dir.path()).len() as u64, kept + 1);
}

#[tokio::test]
async fn torn_final_body_is_truncated() {
    check_torn_tail(2, |bytes, _| {
        let len = bytes.len();
        bytes.truncate(len - 5);
    })
    .await;
}

#[tokio::test]
async fn torn_final_body_with_only_the_frame_header_is_truncated() {
    check_torn_tail(2, |bytes, offsets| {
        bytes.truncate(offsets[2] + FRAME_HEADER_LEN)
    })
    .await;
}

#[tokio::test]
async fn torn_final_length_field_is_truncated() {
    check_torn_tail(2, |bytes, offsets| bytes.truncate(offsets[2] + 3)).await;
}

#[tokio::test]
async fn zero_filled_tail_is_truncated() {
    check_torn_tail(3, |bytes, _| bytes.extend_from_slice(&[0; 100])).await;
    // The whole final frame zero-filled (size extended, data never written).
    check_torn_tail(2, |bytes, offsets| bytes[offsets[2]..].fill(0)).await;
}

#[tokio::test]
async fn final_record_with_intact_length_and_zeroed_body_is_corrupt() {
    // The length says the record is complete, so this is damage, not a torn append.
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 3).await;
    drop(log);
    let offsets = frame_offsets(dir.path());
    edit_log(dir.path(), |bytes| bytes[offsets[2] + 4..].fill(0));
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        offsets[2] as u64,
        "CRC mismatch",
    );
}

#[tokio::test]
async fn torn_file_header_is_rewritten() {
    let dir = tempdir().unwrap();
    fs::write(log_path(dir.path()), &LOG_MAGIC[..5]).unwrap();
    let log = open(dir.path());
    assert_eq!(log.last_seq().await.unwrap(), 0);
    assert_eq!(file_len(dir.path()), FILE_HEADER_LEN as u64);
    append_n(&log, 1).await;
    drop(log);
    assert_eq!(open(dir.path()).last_seq().await.unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// Corruption is refused
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn flipped_byte_in_a_middle_record_is_corrupt() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 3).await;
    drop(log);
    let offsets = frame_offsets(dir.path());
    let before = fs::read(log_path(dir.path())).unwrap();
    edit_log(dir.path(), |bytes| {
        bytes[offsets[1] + FRAME_HEADER_LEN + 10] ^= 0x01
    });

    let error = open_err(dir.path());
    assert_corrupt(
        error,
        dir.path(),
        offsets[1] as u64,
        "record 2: CRC mismatch",
    );
    // Nothing was "repaired": the file is untouched.
    let after = fs::read(log_path(dir.path())).unwrap();
    assert_eq!(after.len(), before.len());
}

#[tokio::test]
async fn complete_final_record_with_bad_crc_is_corrupt_not_dropped() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 3).await;
    drop(log);
    let offsets = frame_offsets(dir.path());
    let len = file_len(dir.path());
    // Damage the CRC field, then (separately) the last body byte.
    edit_log(dir.path(), |bytes| bytes[offsets[2] + 4] ^= 0xFF);
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        offsets[2] as u64,
        "CRC mismatch",
    );
    assert_eq!(file_len(dir.path()), len, "a complete record was dropped");
    edit_log(dir.path(), |bytes| {
        bytes[offsets[2] + 4] ^= 0xFF;
        let last = bytes.len() - 1;
        bytes[last] = b' ';
    });
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        offsets[2] as u64,
        "record 3: CRC mismatch",
    );
}

#[tokio::test]
async fn damaged_length_field_in_a_middle_record_is_corrupt_not_torn() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 3).await;
    drop(log);
    let offsets = frame_offsets(dir.path());
    // A length pointing past the end of the file must not make records 2 and 3 look torn.
    edit_log(dir.path(), |bytes| {
        let at = offsets[1];
        bytes[at..at + 4].copy_from_slice(&100_000u32.to_le_bytes());
    });
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        offsets[1] as u64,
        "damaged length field",
    );
    // A length beyond the record limit.
    edit_log(dir.path(), |bytes| {
        let at = offsets[1];
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    });
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        offsets[1] as u64,
        "exceeds",
    );
    // A length that is too short.
    edit_log(dir.path(), |bytes| {
        let at = offsets[1];
        bytes[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
    });
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        offsets[1] as u64,
        "CRC mismatch",
    );
}

#[tokio::test]
async fn bad_magic_is_corrupt() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 1).await;
    drop(log);
    edit_log(dir.path(), |bytes| bytes[0] = b'X');
    assert_corrupt(open_err(dir.path()), dir.path(), 0, "bad magic");

    let other = tempdir().unwrap();
    fs::write(log_path(other.path()), b"hello").unwrap();
    assert_corrupt(open_err(other.path()), other.path(), 0, "bad magic");
}

#[tokio::test]
async fn unknown_format_version_is_corrupt() {
    let dir = tempdir().unwrap();
    drop(open(dir.path()));
    edit_log(dir.path(), |bytes| bytes[8] = 9);
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        8,
        "unsupported format version 9",
    );
}

#[tokio::test]
async fn non_dense_sequences_are_corrupt() {
    let dir = tempdir().unwrap();
    write_raw_log(dir.path(), &[recorded(1), recorded(3)]);
    let second = frame_offsets(dir.path())[1] as u64;
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        second,
        "sequence 3 where 2 was expected",
    );

    write_raw_log(dir.path(), &[recorded(1), recorded(2), recorded(2)]);
    let third = frame_offsets(dir.path())[2] as u64;
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        third,
        "sequence 2 where 3",
    );

    write_raw_log(dir.path(), &[recorded(0)]);
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        FILE_HEADER_LEN as u64,
        "sequence 0 where 1",
    );

    // The repaired, dense file opens.
    write_raw_log(dir.path(), &[recorded(1), recorded(2)]);
    assert_eq!(open(dir.path()).last_seq().await.unwrap(), 2);
}

#[tokio::test]
async fn body_with_valid_crc_but_not_an_event_is_corrupt() {
    let dir = tempdir().unwrap();
    drop(open(dir.path()));
    edit_log(dir.path(), |bytes| {
        bytes.extend_from_slice(&encode_frame(br#"{"seq":1,"what":"no"}"#));
    });
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        FILE_HEADER_LEN as u64,
        "record 1: body is not a valid event",
    );
    let mut bad_subject = recorded(1);
    bad_subject.subject = "signet.*".to_owned();
    write_raw_log(dir.path(), &[bad_subject]);
    assert_corrupt(
        open_err(dir.path()),
        dir.path(),
        FILE_HEADER_LEN as u64,
        "invalid subject",
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn snapshot_file_is_replaced_atomically_and_verified() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    let snapshot = Snapshot {
        seq: 7,
        data: b"projection".to_vec(),
    };
    log.save_snapshot(snapshot.clone()).await.unwrap();
    assert!(!dir.path().join(SNAPSHOT_TMP_FILE).exists());
    let path = dir.path().join(SNAPSHOT_FILE);
    let good = fs::read(&path).unwrap();
    assert_eq!(&good[..8], b"SIGNETSN");

    // A flipped data byte.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x20;
    fs::write(&path, &bad).unwrap();
    assert_corrupt(
        log.load_snapshot().await.unwrap_err(),
        dir.path(),
        24,
        "snapshot CRC mismatch",
    );
    // A flipped seq byte (covered by the CRC too).
    let mut bad = good.clone();
    bad[12] ^= 0x01;
    fs::write(&path, &bad).unwrap();
    assert_corrupt(
        log.load_snapshot().await.unwrap_err(),
        dir.path(),
        24,
        "CRC mismatch",
    );
    // Truncated.
    fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert_corrupt(
        log.load_snapshot().await.unwrap_err(),
        dir.path(),
        20,
        "length field",
    );
    fs::write(&path, &good[..10]).unwrap();
    assert_corrupt(
        log.load_snapshot().await.unwrap_err(),
        dir.path(),
        0,
        "shorter than",
    );
    // Not a snapshot.
    fs::write(&path, vec![b'x'; 40]).unwrap();
    assert_corrupt(
        log.load_snapshot().await.unwrap_err(),
        dir.path(),
        0,
        "bad magic",
    );

    // Saving again replaces the damaged file.
    log.save_snapshot(snapshot.clone()).await.unwrap();
    assert_eq!(log.load_snapshot().await.unwrap(), Some(snapshot));
}

#[tokio::test]
async fn stale_snapshot_temp_file_is_removed_at_open() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    let snapshot = Snapshot {
        seq: 1,
        data: b"kept".to_vec(),
    };
    log.save_snapshot(snapshot.clone()).await.unwrap();
    drop(log);
    // A crash in the middle of the next save leaves a partial temp file.
    fs::write(dir.path().join(SNAPSHOT_TMP_FILE), b"SIGNETSN partial").unwrap();
    let log = open(dir.path());
    assert!(!dir.path().join(SNAPSHOT_TMP_FILE).exists());
    assert_eq!(log.load_snapshot().await.unwrap(), Some(snapshot));
}

// ---------------------------------------------------------------------------------------------
// Failed appends leave nothing behind
// ---------------------------------------------------------------------------------------------

async fn check_failed_append_is_rolled_back(fail: FailPoint) {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 2).await;
    let len = file_len(dir.path());
    let mut follower = log.follow(3).await.unwrap();

    fail_next(&log, fail).await;
    let result = log
        .append(
            event("signet.events.client.other", 3),
            ExpectedVersion::Exact(0),
        )
        .await;
    assert!(
        matches!(result, Err(EventLogError::Io(_))),
        "{fail:?}: {result:?}"
    );
    assert_eq!(
        file_len(dir.path()),
        len,
        "{fail:?}: partial record left in the file"
    );
    assert_eq!(log.last_seq().await.unwrap(), 2);
    assert_eq!(
        log.subject_version("signet.events.client.other")
            .await
            .unwrap(),
        0
    );
    assert_eq!(log.read_from(1, 10).await.unwrap().len(), 2);

    // The log keeps working, the failed event's sequence is reused, the follower sees only
    // the successful append.
    let seq = log
        .append(
            event("signet.events.client.other", 4),
            ExpectedVersion::Exact(0),
        )
        .await
        .unwrap();
    assert_eq!(seq, 3);
    let next = next_event(&mut follower).await.unwrap().unwrap();
    assert_eq!(next.seq, 3);
    assert_eq!(next.payload, br#"{"n":4}"#);
    drop(follower);
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.last_seq().await.unwrap(), 3);
    assert_eq!(frame_offsets(dir.path()).len(), 3);
}

#[tokio::test]
async fn failed_write_leaves_nothing_behind() {
    check_failed_append_is_rolled_back(FailPoint::PartialWrite).await;
}

#[tokio::test]
async fn failed_fsync_leaves_nothing_behind() {
    check_failed_append_is_rolled_back(FailPoint::Sync).await;
}

#[tokio::test]
async fn failed_rollback_stops_the_writer_and_reopen_repairs_it() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 2).await;
    fail_next(&log, FailPoint::PartialWriteThenTruncate).await;
    let result = log.append(event(SUBJECT, 3), ExpectedVersion::Any).await;
    assert!(matches!(result, Err(EventLogError::Io(_))), "{result:?}");
    assert_eq!(log.last_seq().await.unwrap(), 2);
    // The half-written frame is still in the file, so the writer refuses to go on.
    let result = log.append(event(SUBJECT, 4), ExpectedVersion::Any).await;
    match result {
        Err(EventLogError::Backend(reason)) => assert!(reason.contains("reopen"), "{reason}"),
        other => panic!("expected Backend, got {other:?}"),
    }
    // Reads still work.
    assert_eq!(log.read_from(1, 10).await.unwrap().len(), 2);
    drop(log);

    // Reopening sees a torn final record and truncates it.
    let log = open(dir.path());
    assert_eq!(log.last_seq().await.unwrap(), 2);
    assert_eq!(
        log.append(event(SUBJECT, 5), ExpectedVersion::Exact(2))
            .await
            .unwrap(),
        3
    );
}

#[tokio::test]
async fn rejected_appends_do_not_touch_the_file() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 1).await;
    let len = file_len(dir.path());
    let _ = log
        .append(event(SUBJECT, 2), ExpectedVersion::Exact(0))
        .await
        .unwrap_err();
    let _ = log
        .append(event("bad subject", 2), ExpectedVersion::Any)
        .await
        .unwrap_err();
    let not_json = NewEvent {
        payload: b"{".to_vec(),
        ..event(SUBJECT, 2)
    };
    let _ = log
        .append(not_json, ExpectedVersion::Any)
        .await
        .unwrap_err();
    let too_big = NewEvent {
        payload: format!("\"{}\"", "x".repeat(MAX_RECORD_LEN)).into_bytes(),
        ..event(SUBJECT, 2)
    };
    match log.append(too_big, ExpectedVersion::Any).await {
        Err(EventLogError::Backend(reason)) => assert!(reason.contains("record limit"), "{reason}"),
        other => panic!("expected Backend, got {other:?}"),
    }
    assert_eq!(file_len(dir.path()), len);
    assert_eq!(log.last_seq().await.unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// Followers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_follower_never_lags_or_loses_events() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    let mut stream = log.follow(1).await.unwrap();
    // Far more appends than any broadcast buffer, while the follower is not polled.
    append_n(&log, 1_000).await;
    for seq in 1..=1_000 {
        let e = next_event(&mut stream).await.unwrap().unwrap();
        assert_eq!(e.seq, seq);
    }
}

#[tokio::test]
async fn follow_ends_with_closed_when_the_log_is_dropped() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 3).await;
    let mut behind = log.follow(1).await.unwrap();
    let mut waiting = log.follow(4).await.unwrap();
    drop(log);
    // Undelivered events are still delivered, then Closed, then the end.
    for seq in 1..=3 {
        assert_eq!(next_event(&mut behind).await.unwrap().unwrap().seq, seq);
    }
    assert!(matches!(
        next_event(&mut behind).await,
        Some(Err(EventLogError::Closed))
    ));
    assert!(next_event(&mut behind).await.is_none());
    assert!(matches!(
        next_event(&mut waiting).await,
        Some(Err(EventLogError::Closed))
    ));
    assert!(next_event(&mut waiting).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_followers_and_refuses_calls() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 2).await;
    let mut stream = log.follow(1).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            match next_event(&mut stream).await {
                Some(Ok(e)) => seqs.push(e.seq),
                Some(Err(EventLogError::Closed)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(next_event(&mut stream).await.is_none());
        seqs
    });
    append_n(&log, 1).await;
    log.close().await;
    let seqs = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(seqs, vec![1, 2, 3]);

    assert!(matches!(
        log.append(event(SUBJECT, 4), ExpectedVersion::Any).await,
        Err(EventLogError::Closed)
    ));
    assert!(matches!(log.last_seq().await, Err(EventLogError::Closed)));
    assert!(matches!(
        log.read_from(1, 1).await,
        Err(EventLogError::Closed)
    ));
    assert!(matches!(log.follow(1).await, Err(EventLogError::Closed)));
    assert!(matches!(
        log.load_snapshot().await,
        Err(EventLogError::Closed)
    ));
    drop(log);
    // Closing left a clean file behind.
    assert_eq!(open(dir.path()).last_seq().await.unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// Bounded memory: old events live on disk only
// ---------------------------------------------------------------------------------------------

/// Appends `n` events spread over `subjects` subjects, each payload padded to ~`pad` bytes.
async fn append_spread(log: &FileLog, n: u64, subjects: u64, pad: usize) {
    for i in 1..=n {
        let subject = format!("signet.events.user.u{}", i % subjects);
        let payload = format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(pad)).into_bytes();
        let new = NewEvent {
            subject,
            actor: "test".to_owned(),
            at_ms: i as i64,
            payload,
        };
        log.append(new, ExpectedVersion::Any).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_the_log_grows() {
    let dir = tempdir().unwrap();
    let limits = ReadCache {
        events: 100,
        bytes: 16 << 10,
        index_stride: 16,
    };
    let log = FileLog::open_with(dir.path(), limits).unwrap();
    append_spread(&log, 3_000, 50, 200).await;
    log.save_snapshot(Snapshot {
        seq: 3_000,
        data: b"{}".to_vec(),
    })
    .await
    .unwrap();

    let check = |memory: MemoryUse| {
        assert_eq!(memory.events, 3_000);
        assert!(memory.cached_events <= 100, "{memory:?}");
        assert!(memory.cached_bytes <= 16 << 10, "{memory:?}");
        // ~250 bytes per event: the byte limit bites before the event limit.
        assert!(
            memory.cached_events < 100 && memory.cached_events > 0,
            "{memory:?}"
        );
        assert_eq!(memory.subjects, 50);
        assert_eq!(memory.index_entries, 3_000usize.div_ceil(16));
    };
    check(log.memory());
    drop(log);
    // Opening streams the file and keeps the same bounded image.
    let log = FileLog::open_with(dir.path(), limits).unwrap();
    check(log.memory());

    // Every event is still readable, from disk, in order, from any start.
    let all = log.read_from(1, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 3_000);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as Seq + 1);
        assert_eq!(e.subject, format!("signet.events.user.u{}", (i + 1) % 50));
    }
    for from in [1, 2, 16, 17, 18, 1_234, 2_950, 3_000] {
        let read = log.read_from(from, 5).await.unwrap();
        let expected: Vec<_> = all
            .iter()
            .skip(from as usize - 1)
            .take(5)
            .cloned()
            .collect();
        assert_eq!(read, expected, "read_from({from}, 5)");
    }
    assert_eq!(
        log.subject_version("signet.events.user.u7").await.unwrap(),
        2_957
    );
    // Reading old events does not grow the cache.
    check(log.memory());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_from_the_start_reads_history_from_disk_then_the_live_tail() {
    let dir = tempdir().unwrap();
    let log = open_tiny(dir.path());
    append_n(&log, 500).await;
    let mut stream = log.follow(1).await.unwrap();
    for seq in 1..=500 {
        assert_eq!(next_event(&mut stream).await.unwrap().unwrap().seq, seq);
    }
    append_n(&log, 2).await;
    assert_eq!(next_event(&mut stream).await.unwrap().unwrap().seq, 501);
    assert_eq!(next_event(&mut stream).await.unwrap().unwrap().seq, 502);
    assert_eq!(log.memory().cached_events, 1);
}

#[tokio::test]
async fn damage_after_open_is_reported_when_an_old_event_is_read() {
    let dir = tempdir().unwrap();
    let log = open_tiny(dir.path());
    append_n(&log, 6).await;
    let offsets = frame_offsets(dir.path());
    // Flip a byte inside event 2's body behind the open log's back.
    let at = offsets[1] + FRAME_HEADER_LEN + 3;
    let mut bytes = fs::read(log_path(dir.path())).unwrap();
    bytes[at] ^= 0x20;
    fs::write(log_path(dir.path()), bytes).unwrap();
    assert_corrupt(
        log.read_from(2, 1).await.unwrap_err(),
        dir.path(),
        offsets[1] as u64,
        "CRC mismatch",
    );
    // Event 4 starts an index slot past the damage: still readable.
    assert_eq!(log.read_from(4, 1).await.unwrap()[0].seq, 4);
}

// ---------------------------------------------------------------------------------------------
// Group commit
// ---------------------------------------------------------------------------------------------

/// Waits until `n` appends are queued for a writer.
async fn queued(log: &FileLog, n: usize) {
    while lock_queue(&log.queue).len() < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_appends_share_one_write_and_check_versions_in_order() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 1).await;
    let commits = log.writer.lock().await.commits;
    // Hold the writer: everything queued meanwhile is one batch.
    let guard = log.writer.lock().await;
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let l = Arc::clone(&log);
        // Every one expects version 1 of SUBJECT: exactly one can win.
        tasks.push(tokio::spawn(async move {
            l.append(event(SUBJECT, 100 + i), ExpectedVersion::Exact(1))
                .await
        }));
        queued(&log, 2 * i as usize + 1).await;
        let l = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            l.append(event("signet.events.client.other", i), ExpectedVersion::Any)
                .await
        }));
        queued(&log, 2 * i as usize + 2).await;
    }
    drop(guard);
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    // The first queued append wins (seq 2); the later ones see its version, 2.
    assert_eq!(results[0].as_ref().ok(), Some(&2));
    for (i, r) in results.iter().enumerate().skip(1) {
        if i % 2 == 0 {
            assert!(
                matches!(
                    r,
                    Err(EventLogError::Conflict {
                        expected: 1,
                        actual: 2,
                        ..
                    })
                ),
                "{i}: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    // Sequences are dense in queue order: 2 for the winner, then 3..=18 for the others.
    let seqs: Vec<Seq> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(seqs, (2..=18).collect::<Vec<_>>());
    assert_eq!(
        log.writer.lock().await.commits,
        commits + 1,
        "one write + sync"
    );
    assert_eq!(log.subject_version(SUBJECT).await.unwrap(), 2);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.last_seq().await.unwrap(), 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_fails_every_append_of_its_batch() {
    let dir = tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, 2).await;
    let len = file_len(dir.path());
    let mut guard = log.writer.lock().await;
    guard.fail_next = Some(FailPoint::Sync);
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let l = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            l.append(event(SUBJECT, i), ExpectedVersion::Any).await
        }));
    }
    queued(&log, 8).await;
    drop(guard);
    for t in tasks {
        let r = t.await.unwrap();
        assert!(matches!(r, Err(EventLogError::Io(_))), "{r:?}");
    }
    assert_eq!(file_len(dir.path()), len, "nothing of the batch is left");
    assert_eq!(log.last_seq().await.unwrap(), 2);
    assert_eq!(
        log.append(event(SUBJECT, 9), ExpectedVersion::Exact(2))
            .await
            .unwrap(),
        3
    );
}
