//! Sealing, verifying and proving on a real local archive: each kind of tampering the
//! issue names is made to the stored objects, and `verify` must name it.

use std::time::Duration;

use islets_core::layout::{DataFile, Partition, Table, join};
use islets_core::parquet_file::{FileMetadata, decode_all, encode};
use islets_core::record::EventRecord;
use islets_core::schema::{events_batch, events_from_batch};
use islets_core::store::{Archive, StoreLocation};
use object_store::ObjectStoreExt;

use crate::leaf::tests::record;
use crate::{
    Checkpoint, Ed25519KeyFile, EventLeaf, FindingKind, SealOptions, SealReport, SignedCheckpoint,
    VerifyOptions, VerifyReport, checkpoint_key, prove, seal, verify,
};

const HOUR_MS: i64 = 3_600_000;

struct Fixture {
    _directory: tempfile::TempDir,
    archive: Archive,
    key: Ed25519KeyFile,
    now_ms: i64,
    /// The two sealed hours' files, relative keys.
    files: Vec<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn records(hour_ms: i64, prefix: &str, count: usize) -> Vec<EventRecord> {
    (0..count)
        .map(|index| {
            let mut record = record(
                &format!("{prefix}-{index}"),
                &format!(r#"{{"n":{index},"who":"{prefix}"}}"#),
                &[("aggregate", "listing"), ("event_type", "listing.sold")],
            );
            record.published_at_ms = hour_ms + 1_000 * index as i64;
            record
        })
        .collect()
}

async fn write_file(archive: &Archive, records: &[EventRecord]) -> String {
    let partition = Partition::for_timestamp_ms(Table::Events, records[0].published_at_ms);
    let key = DataFile::new(partition)
        .key(&object_store::path::Path::default())
        .to_string();
    rewrite(archive, &key, records).await;
    key
}

async fn read_records(archive: &Archive, key: &str) -> Vec<EventRecord> {
    let bytes = archive.get(&join(archive.root(), key)).await.expect("get");
    decode_all(bytes)
        .expect("decode")
        .iter()
        .flat_map(|batch| events_from_batch(batch).expect("records"))
        .collect()
}

/// Stores `records` as the events file `key` (relative), replacing what was there.
async fn rewrite(archive: &Archive, key: &str, records: &[EventRecord]) {
    let bytes = encode(
        &events_batch(records).expect("batch"),
        &FileMetadata {
            table: Table::Events,
            source: "test".to_owned(),
            writer_id: "seal-tests".to_owned(),
        },
    )
    .expect("encode");
    archive
        .put(&join(archive.root(), key), bytes)
        .await
        .expect("put");
}

fn hour_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

fn options(now_ms: i64) -> SealOptions {
    SealOptions {
        grace: Duration::from_secs(2 * 3_600),
        now_ms,
        origin: "islets-audit test".to_owned(),
    }
}

fn verify_options(fixture: &Fixture) -> VerifyOptions {
    VerifyOptions {
        trusted_key: fixture.key.public_key(),
        since_ms: None,
        until_ms: None,
        now_ms: fixture.now_ms,
        retention: Duration::from_secs(365 * 86_400),
        grace: Duration::from_secs(2 * 3_600),
        external: Vec::new(),
    }
}

/// Two hours three and two days old, two files of three events each, sealed; and an open
/// hour not sealed.
async fn sealed() -> (Fixture, SealReport) {
    let directory = tempfile::tempdir().expect("tempdir");
    let archive = Archive::open(
        &StoreLocation::Local {
            root: directory.path().join("archive"),
        },
        None,
    )
    .expect("archive");
    let key = Ed25519KeyFile::load_or_create(&directory.path().join("key.pk8")).expect("key");
    let now = now_ms();
    let mut files = Vec::new();
    for (days, name) in [(3, "a"), (2, "b")] {
        let hour = hour_start(now - days * 24 * HOUR_MS);
        files.push(write_file(&archive, &records(hour, &format!("{name}1"), 3)).await);
        files.push(write_file(&archive, &records(hour + 60_000, &format!("{name}2"), 3)).await);
    }
    write_file(&archive, &records(hour_start(now), "open", 2)).await;
    let report = seal(&archive, &key, &[], &options(now))
        .await
        .expect("seal");
    (
        Fixture {
            _directory: directory,
            archive,
            key,
            now_ms: now,
            files,
        },
        report,
    )
}

async fn verified(fixture: &Fixture) -> VerifyReport {
    verify(&fixture.archive, &verify_options(fixture))
        .await
        .expect("verify ran")
}

fn kinds(report: &VerifyReport) -> Vec<FindingKind> {
    let mut kinds: Vec<FindingKind> = report.findings.iter().map(|finding| finding.kind).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

fn assert_found(report: &VerifyReport, kind: FindingKind, about: &str) {
    assert!(!report.clean, "{kind:?} must make the archive unclean");
    assert!(
        report.findings.iter().any(|finding| finding.kind == kind
            && (finding.message.contains(about)
                || finding.event_id.as_deref() == Some(about)
                || finding.key.as_deref() == Some(about))),
        "expected {kind:?} about {about}, got {:#?}",
        report.findings
    );
}

#[tokio::test]
async fn closed_hours_are_sealed_once_signed_and_verify_clean() {
    let (fixture, report) = sealed().await;
    assert_eq!(report.sealed.len(), 2, "{report:?}");
    assert_eq!(report.open, 1);
    assert!(
        report
            .sealed
            .iter()
            .all(|hour| hour.events == 6 && hour.objects == 2)
    );
    let checkpoint = report.checkpoint.expect("a checkpoint");
    assert_eq!(checkpoint.size, 2);
    checkpoint
        .verify(&fixture.key.public_key())
        .expect("signed by the key");

    let clean = verified(&fixture).await;
    assert!(clean.clean, "{:#?}", clean.findings);
    assert_eq!((clean.hours, clean.objects, clean.events), (2, 4, 12));
    assert_eq!(clean.checkpoint.as_ref().map(|c| c.size), Some(2));

    // Nothing changed: nothing sealed, nothing signed.
    let again = seal(&fixture.archive, &fixture.key, &[], &options(now_ms()))
        .await
        .expect("seal");
    assert!(again.sealed.is_empty() && again.checkpoint.is_none());
    assert_eq!(again.unchanged, 2);
}

#[tokio::test]
async fn a_late_file_is_pending_until_the_hour_is_sealed_again_which_appends() {
    let (fixture, _) = sealed().await;
    let hour = hour_start(fixture.now_ms - 3 * 24 * HOUR_MS);
    let late = records(hour + 120_000, "late", 2);
    let key = write_file(&fixture.archive, &late).await;
    // The ingester journals every file it stores.
    let file = DataFile::parse(fixture.archive.root(), &join(fixture.archive.root(), &key))
        .expect("data file");
    fixture
        .archive
        .append_journal(&[file])
        .await
        .expect("journal");
    let pending = verified(&fixture).await;
    assert!(pending.clean, "{:#?}", pending.findings);
    assert_eq!(pending.pending_objects, 1);

    let resealed = seal(&fixture.archive, &fixture.key, &[], &options(now_ms()))
        .await
        .expect("seal");
    assert_eq!(resealed.sealed.len(), 1);
    assert!(resealed.sealed[0].reseal);
    assert_eq!(resealed.sealed[0].events, 8);
    assert_eq!(resealed.log_size, 3, "a re-seal appends");
    let after = verified(&fixture).await;
    assert!(after.clean, "{:#?}", after.findings);
    assert_eq!(after.pending_objects, 0);
    assert_eq!(
        after.checkpoints, 2,
        "both heads, consistent with each other"
    );

    // The late event is provable against the new head.
    let proof = prove(
        &fixture.archive,
        &Partition::for_timestamp_ms(Table::Events, hour),
        &EventLeaf::of(&late[1]),
    )
    .await
    .expect("proof");
    assert_eq!(proof.checkpoint.size, 3);
    proof.verify(&fixture.key.public_key()).expect("valid");
}

#[tokio::test]
async fn a_changed_payload_byte_is_named_by_object_and_event() {
    let (fixture, _) = sealed().await;
    let key = &fixture.files[1];
    let mut rows = read_records(&fixture.archive, key).await;
    rows[1].payload = rows[1].payload.replacen("1", "7", 1);
    let id = rows[1].event_id.clone();
    rewrite(&fixture.archive, key, &rows).await;
    let report = verified(&fixture).await;
    assert_found(&report, FindingKind::ObjectAltered, key);
    assert_found(&report, FindingKind::EventChanged, &id);
    assert_eq!(
        kinds(&report),
        [FindingKind::ObjectAltered, FindingKind::EventChanged]
    );
}

#[tokio::test]
async fn a_removed_row_a_deleted_object_and_an_extra_object_are_each_named() {
    let (fixture, _) = sealed().await;
    // A row removed from one file of the first hour.
    let mut rows = read_records(&fixture.archive, &fixture.files[0]).await;
    let removed = rows.remove(2).event_id;
    rewrite(&fixture.archive, &fixture.files[0], &rows).await;
    // A whole object of the second hour deleted.
    fixture
        .archive
        .object_store()
        .delete(&join(fixture.archive.root(), &fixture.files[3]))
        .await
        .expect("delete");
    // A copy of an object added to the second hour under another name.
    let copy = read_records(&fixture.archive, &fixture.files[2]).await;
    let extra = write_file(&fixture.archive, &copy).await;

    let report = verified(&fixture).await;
    assert_found(&report, FindingKind::EventRemoved, &removed);
    assert_found(&report, FindingKind::ObjectAltered, &fixture.files[0]);
    assert_found(&report, FindingKind::ObjectMissing, &fixture.files[3]);
    assert_found(&report, FindingKind::ObjectNotInManifest, &extra);
    assert_found(&report, FindingKind::EventRemoved, "b2-0");
}

#[tokio::test]
async fn a_deleted_or_edited_manifest_is_named() {
    let (fixture, _) = sealed().await;
    let manifests = fixture
        .archive
        .list_under(crate::MANIFEST_PREFIX)
        .await
        .expect("list");
    assert_eq!(manifests.len(), 2);
    fixture
        .archive
        .object_store()
        .delete(&manifests[0].location)
        .await
        .expect("delete");
    let bytes = fixture
        .archive
        .get(&manifests[1].location)
        .await
        .expect("get");
    let mut manifest = crate::HourManifest::parse(&bytes).expect("manifest");
    manifest.leaves.pop();
    manifest.events -= 1;
    fixture
        .archive
        .put(
            &manifests[1].location,
            serde_json::to_vec(&manifest).expect("json").into(),
        )
        .await
        .expect("put");
    let report = verified(&fixture).await;
    assert_eq!(
        kinds(&report),
        [FindingKind::ManifestMissing, FindingKind::ManifestEdited],
        "{:#?}",
        report.findings
    );
}

#[tokio::test]
async fn a_checkpoint_resigned_with_another_key_and_a_truncated_log_are_named() {
    let (fixture, report) = sealed().await;
    let signed = report.checkpoint.expect("checkpoint");
    let directory = tempfile::tempdir().expect("tempdir");
    let other = Ed25519KeyFile::load_or_create(&directory.path().join("other")).expect("key");
    let checkpoint = Checkpoint {
        origin: signed.origin.clone(),
        size: signed.size,
        root: signed.root_digest().expect("root"),
        time_ms: signed.time_ms,
    };
    let resigned = SignedCheckpoint::sign(&checkpoint, &other);
    let location = join(fixture.archive.root(), &checkpoint_key(signed.size));
    fixture
        .archive
        .put(
            &location,
            serde_json::to_vec(&resigned).expect("json").into(),
        )
        .await
        .expect("put");
    let report = verified(&fixture).await;
    assert_found(
        &report,
        FindingKind::SignatureInvalid,
        "not by the trusted key",
    );
    assert_found(
        &report,
        FindingKind::LogUnsigned,
        "covered by no valid checkpoint",
    );

    // Put the right checkpoint back, then truncate the log.
    fixture
        .archive
        .put(&location, serde_json::to_vec(&signed).expect("json").into())
        .await
        .expect("put");
    assert!(verified(&fixture).await.clean);
    let last = join(fixture.archive.root(), &crate::LogEntry::key(1));
    let kept = fixture.archive.get(&last).await.expect("entry");
    fixture
        .archive
        .object_store()
        .delete(&last)
        .await
        .expect("delete");
    let report = verified(&fixture).await;
    assert_found(
        &report,
        FindingKind::LogInconsistent,
        "the log was truncated",
    );
    // An entry removed from the middle.
    fixture.archive.put(&last, kept).await.expect("put back");
    fixture
        .archive
        .object_store()
        .delete(&join(fixture.archive.root(), &crate::LogEntry::key(0)))
        .await
        .expect("delete");
    let report = verified(&fixture).await;
    assert_found(
        &report,
        FindingKind::LogInconsistent,
        "log entry 0 is missing",
    );
    // A sealer refuses to append to a damaged log.
    let error = seal(&fixture.archive, &fixture.key, &[], &options(now_ms()))
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("the log is damaged"), "{error}");
}

#[tokio::test]
async fn expired_hours_are_not_findings() {
    let (mut fixture, _) = sealed().await;
    // The hour three days old expires: its objects and manifest go.
    let manifests = fixture
        .archive
        .list_under(crate::MANIFEST_PREFIX)
        .await
        .expect("list");
    for location in [
        join(fixture.archive.root(), &fixture.files[0]),
        join(fixture.archive.root(), &fixture.files[1]),
        manifests[0].location.clone(),
    ] {
        fixture
            .archive
            .object_store()
            .delete(&location)
            .await
            .expect("delete");
    }
    let inside = verified(&fixture).await;
    assert_found(&inside, FindingKind::ManifestMissing, "is gone");
    let mut options = verify_options(&fixture);
    options.retention = Duration::from_secs(60 * 3_600);
    fixture.now_ms = now_ms();
    let report = verify(&fixture.archive, &options).await.expect("verify");
    assert!(report.clean, "{:#?}", report.findings);
    assert_eq!(report.expired_hours, 1);
    assert_eq!(report.hours, 1);
}

#[tokio::test]
async fn concurrent_sealers_never_overwrite_each_other() {
    let (fixture, _) = sealed().await;
    for days in [5, 6, 7] {
        let hour = hour_start(fixture.now_ms - days * 24 * HOUR_MS);
        write_file(&fixture.archive, &records(hour, &format!("d{days}"), 2)).await;
    }
    let other = fixture.archive.clone();
    let run = options(now_ms());
    let (one, two) = tokio::join!(
        seal(&fixture.archive, &fixture.key, &[], &run),
        seal(&other, &fixture.key, &[], &run)
    );
    let (one, two) = (one.expect("one"), two.expect("two"));
    assert!(one.sealed.len() + two.sealed.len() >= 3);
    let report = verified(&fixture).await;
    assert!(report.clean, "{:#?}", report.findings);
    assert_eq!(report.hours, 5);
}

#[tokio::test]
async fn a_proof_verifies_offline_and_fails_once_anything_is_changed() {
    let (fixture, _) = sealed().await;
    let hour = hour_start(fixture.now_ms - 2 * 24 * HOUR_MS);
    let rows = read_records(&fixture.archive, &fixture.files[2]).await;
    let partition = Partition::for_timestamp_ms(Table::Events, hour);
    let proof = prove(&fixture.archive, &partition, &EventLeaf::of(&rows[1]))
        .await
        .expect("proof");
    let trusted = fixture.key.public_key();
    let proven = proof.verify(&trusted).expect("valid");
    assert_eq!(proven.event_id, rows[1].event_id);
    assert_eq!(proven.checkpoint_size, 2);
    // Through JSON, as it is handed over.
    let json = serde_json::to_string(&proof).expect("json");
    let back: crate::EventProof = serde_json::from_str(&json).expect("parses");
    back.verify(&trusted).expect("valid after a round trip");

    let mut altered = proof.clone();
    altered.event.payload_sha256 = hex::encode([1u8; 32]);
    assert!(altered.verify(&trusted).is_err(), "an altered leaf");
    let mut renamed = proof.clone();
    renamed.event.event_id.push('x');
    assert!(renamed.verify(&trusted).is_err(), "another event id");
    let mut wrong_path = proof.clone();
    wrong_path.hour.inclusion.hashes[0][0] ^= 1;
    assert!(wrong_path.verify(&trusted).is_err(), "a wrong hour path");
    let mut wrong_index = proof.clone();
    wrong_index.hour.inclusion.index ^= 1;
    assert!(wrong_index.verify(&trusted).is_err(), "a wrong index");
    let mut wrong_log = proof.clone();
    wrong_log.log.hashes[0][5] ^= 1;
    assert!(wrong_log.verify(&trusted).is_err(), "a wrong log path");
    let mut wrong_root = proof.clone();
    wrong_root.log_entry.hour_root = hex::encode([2u8; 32]);
    assert!(wrong_root.verify(&trusted).is_err(), "another hour root");

    let directory = tempfile::tempdir().expect("tempdir");
    let other = Ed25519KeyFile::load_or_create(&directory.path().join("other")).expect("key");
    let mut resigned = proof.clone();
    resigned.checkpoint = SignedCheckpoint::sign(
        &Checkpoint {
            origin: proof.checkpoint.origin.clone(),
            size: proof.checkpoint.size,
            root: proof.checkpoint.root_digest().expect("root"),
            time_ms: proof.checkpoint.time_ms,
        },
        &other,
    );
    let error = resigned.verify(&trusted).expect_err("another key");
    assert!(error.to_string().contains("trusted key"), "{error}");

    // An event that was never archived has no proof.
    let mut stranger = rows[1].clone();
    stranger.event_id = "never-archived".to_owned();
    let error = prove(&fixture.archive, &partition, &EventLeaf::of(&stranger))
        .await
        .expect_err("no proof");
    assert!(matches!(error, crate::Error::NotSealed(_)), "{error}");
}
