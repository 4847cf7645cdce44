//! The copy engine against a real S3 API (MiniStack): every byte that goes up comes back.
//! Needs `AWS_ENDPOINT_URL` (tests/world/setup.sh && source .world/env).

mod common;

use std::path::Path;

use common::{get, list, md5_hex, put, random_bytes, read_tree, unique_bucket, write_tree, Lines};
use rtb_job::transfer::{CopyOptions, TransferError, Transfers};
use rtb_model::{S3Url, Transfer};

fn flags(value: &str) -> CopyOptions {
    CopyOptions::parse("TEST_FLAGS", value).expect("test flags parse")
}

fn url(bucket: &str, key: &str) -> S3Url {
    S3Url::new(bucket, key).expect("valid test URL")
}

fn no_log(_: String) {}

/// The files a MATLAB job typically has, plus the awkward ones.
fn tree() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("scene.mat", random_bytes(70_000, 1)),
        ("README", b"hello\n".to_vec()),
        ("empty.txt", Vec::new()),
        ("nested/deeper/deepest/leaf.bin", random_bytes(1234, 2)),
        ("nested/empty too", Vec::new()),
        ("with space/file name.txt", b"spaces survive".to_vec()),
        ("ünïcødé/漢字 ファイル.txt", "ünïcødé ✓".as_bytes().to_vec()),
        (
            "odd/#hash%percent+plus&amp=eq.txt",
            b"url-ish characters".to_vec(),
        ),
        // Over the in-memory threshold, under the multipart one: streamed PutObject.
        ("medium/two-mib.bin", random_bytes(2 << 20, 3)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_round_trips_byte_for_byte() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "roundtrip").await;
    let t = Transfers::new(client.clone());
    let src = tempfile::tempdir().unwrap();
    write_tree(src.path(), &tree());

    let lines = Lines::default();
    let up = t
        .upload(
            src.path(),
            &url(&bucket, "job-1/in"),
            &flags("--recursive"),
            &lines.sink(),
        )
        .await
        .map(common::complete)
        .unwrap();
    let total: u64 = tree().iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(
        up,
        Transfer {
            files: tree().len() as u64,
            bytes: total
        }
    );

    // Keys are the relative paths, with `/`, below the prefix.
    let mut want_keys: Vec<(String, u64)> = tree()
        .iter()
        .map(|(p, b)| (format!("job-1/in/{p}"), b.len() as u64))
        .collect();
    want_keys.sort();
    assert_eq!(list(&client, &bucket, "job-1/in/").await, want_keys);
    let logged = lines.take();
    assert_eq!(logged.len(), tree().len() + 1, "{logged:#?}");
    assert!(
        logged
            .iter()
            .any(|l| l.starts_with("upload: ") && l.contains("README") && l.ends_with("(6 B)")),
        "{logged:#?}"
    );
    assert!(
        logged.last().unwrap().starts_with("upload: 9 files, "),
        "{logged:#?}"
    );

    // Folder markers, as the S3 console makes them: they come down as (empty) folders.
    put(&client, &bucket, "job-1/in/", Vec::new()).await;
    put(&client, &bucket, "job-1/in/empty folder/", Vec::new()).await;
    put(&client, &bucket, "job-1/in/nested/marker only/", Vec::new()).await;

    let dest = tempfile::tempdir().unwrap();
    let down = t
        .download(
            &url(&bucket, "job-1/in"),
            dest.path(),
            &flags("--recursive"),
            &lines.sink(),
        )
        .await
        .unwrap();
    assert_eq!(
        down,
        Transfer {
            files: tree().len() as u64,
            bytes: total
        }
    );

    let mut want: Vec<(String, Vec<u8>)> = tree()
        .into_iter()
        .map(|(p, b)| (p.to_string(), b))
        .collect();
    want.sort();
    let got = read_tree(dest.path());
    assert_eq!(
        got.len(),
        want.len(),
        "files: {:?}",
        got.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((gp, gb), (wp, wb)) in got.iter().zip(&want) {
        assert_eq!(gp, wp);
        assert!(
            gb == wb,
            "{gp}: contents differ ({} vs {} bytes)",
            gb.len(),
            wb.len()
        );
    }
    assert!(dest.path().join("empty folder").is_dir());
    assert!(dest.path().join("nested/marker only").is_dir());
    assert!(!logged_partial(dest.path()), "no .rtb-partial files remain");

    // The URL with a trailing slash means the same prefix.
    let again = tempfile::tempdir().unwrap();
    let n = t
        .download(
            &url(&bucket, "job-1/in/"),
            again.path(),
            &flags("--recursive --quiet"),
            &lines.sink(),
        )
        .await
        .unwrap();
    assert_eq!(n.files, tree().len() as u64);
    common::remove_bucket(&client, &bucket).await;
}

fn logged_partial(root: &Path) -> bool {
    read_tree(root)
        .iter()
        .any(|(p, _)| p.ends_with(".rtb-partial"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_in_order_last_match_wins() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "filters").await;
    let t = Transfers::new(client.clone());
    let src = tempfile::tempdir().unwrap();
    write_tree(
        src.path(),
        &[
            ("out/a.mat", b"a".to_vec()),
            ("out/b.png", b"b".to_vec()),
            ("out/tmp/c.mat", b"c".to_vec()),
            ("logs/run.log", b"l".to_vec()),
            ("keep.tmp", b"k".to_vec()),
            ("drop.tmp", b"d".to_vec()),
        ],
    );
    // Upload: everything except *.tmp, but keep keep.tmp; then drop the logs folder.
    t.upload(
        src.path(),
        &url(&bucket, "p"),
        &flags("--recursive --exclude '*.tmp' --include 'keep.tmp' --exclude 'logs/*'"),
        &no_log,
    )
    .await
    .map(common::complete)
    .unwrap();
    let keys: Vec<String> = list(&client, &bucket, "")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "p/keep.tmp",
            "p/out/a.mat",
            "p/out/b.png",
            "p/out/tmp/c.mat"
        ]
    );

    // Download: only .mat files (`*` crosses folders), but not those below out/tmp/.
    let dest = tempfile::tempdir().unwrap();
    let n = t
        .download(
            &url(&bucket, "p"),
            dest.path(),
            &flags("--recursive --exclude '*' --include '*.mat' --exclude 'out/tmp/*'"),
            &no_log,
        )
        .await
        .unwrap();
    assert_eq!(n.files, 1);
    let got: Vec<String> = read_tree(dest.path()).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, ["out/a.mat"]);

    // The same filters in the other order: the later include wins over the exclude.
    let dest = tempfile::tempdir().unwrap();
    t.download(
        &url(&bucket, "p"),
        dest.path(),
        &flags("--recursive --exclude '*' --exclude 'out/tmp/*' --include '*.mat'"),
        &no_log,
    )
    .await
    .unwrap();
    let got: Vec<String> = read_tree(dest.path()).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, ["out/a.mat", "out/tmp/c.mat"]);
    common::remove_bucket(&client, &bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_missing_prefix_copies_nothing() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "empty").await;
    // A sibling whose name starts like the prefix must not be picked up.
    put(&client, &bucket, "inputs-other/x", b"x".to_vec()).await;
    put(&client, &bucket, "inputsx", b"x".to_vec()).await;
    let t = Transfers::new(client.clone());
    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("input-scratch");
    let lines = Lines::default();
    let n = t
        .download(
            &url(&bucket, "inputs"),
            &target,
            &flags("--recursive"),
            &lines.sink(),
        )
        .await
        .unwrap();
    assert_eq!(n, Transfer::default());
    assert!(
        target.is_dir(),
        "the destination folder exists even when nothing was copied"
    );
    assert!(read_tree(&target).is_empty());
    assert!(lines
        .take()
        .last()
        .unwrap()
        .starts_with("download: 0 files, 0 B in "));

    // And an empty folder uploads nothing.
    let n = t
        .upload(
            &target,
            &url(&bucket, "out"),
            &flags("--recursive"),
            &no_log,
        )
        .await
        .map(common::complete)
        .unwrap();
    assert_eq!(n, Transfer::default());
    common::remove_bucket(&client, &bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_an_error_naming_it() {
    let client = common::client().await;
    let t = Transfers::new(client.clone());
    let dest = tempfile::tempdir().unwrap();
    let bucket = format!("no-such-bucket-{}", std::process::id());
    for opts in ["--recursive", ""] {
        let err = t
            .download(
                &url(&bucket, "inputs/x.mat"),
                dest.path(),
                &flags(opts),
                &no_log,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransferError::NoSuchBucket { .. }),
            "{opts:?}: {err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("bucket '{bucket}' does not exist")),
            "{err}"
        );
    }
    // Uploading into it fails the same way.
    let src = tempfile::tempdir().unwrap();
    write_tree(src.path(), &[("a", b"a".to_vec())]);
    let err = t
        .upload(
            src.path(),
            &url(&bucket, "out"),
            &flags("--recursive"),
            &no_log,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::NoSuchBucket { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_escaping_the_destination_are_refused_before_writing() {
    let client = common::client().await;
    let t = Transfers::new(client.clone());
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("input-scratch");
    for bad in [
        "in/../escaped.txt",
        "in/sub/../../escaped.txt",
        "in//abs.txt",
    ] {
        let bucket = unique_bucket(&client, "escape").await;
        put(&client, &bucket, "in/aaa-fine.txt", b"fine".to_vec()).await;
        put(&client, &bucket, bad, b"evil".to_vec()).await;
        // The emulator must have kept the key as sent, or this test proves nothing.
        assert!(
            list(&client, &bucket, "in/")
                .await
                .iter()
                .any(|(k, _)| k == bad),
            "{bad} stored"
        );
        let err = t
            .download(&url(&bucket, "in"), &dest, &flags("--recursive"), &no_log)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransferError::UnsafeKey { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("refusing to download"), "{err}");
        // Nothing at all was written: the check runs before the first byte.
        assert!(
            read_tree(root.path()).is_empty(),
            "{bad}: {:?}",
            read_tree(root.path())
        );
        common::remove_bucket(&client, &bucket).await;
    }
    // An excluded key is never written, so it is skipped like any other excluded key: the
    // way out for a bucket that holds such a key.
    let bucket = unique_bucket(&client, "escape").await;
    put(&client, &bucket, "in/../escaped.txt", b"evil".to_vec()).await;
    put(&client, &bucket, "in/ok.txt", b"ok".to_vec()).await;
    let n = t
        .download(
            &url(&bucket, "in"),
            &dest,
            &flags("--recursive --exclude '../*'"),
            &no_log,
        )
        .await
        .unwrap();
    assert_eq!(n.files, 1);
    assert_eq!(
        read_tree(root.path()),
        [("input-scratch/ok.txt".to_string(), b"ok".to_vec())]
    );
    common::remove_bucket(&client, &bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_object_and_one_file_without_recursive() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "single").await;
    let t = Transfers::new(client.clone());
    put(&client, &bucket, "in/scene one.mat", random_bytes(5000, 7)).await;
    put(&client, &bucket, "in/other.mat", b"other".to_vec()).await;

    let dest = tempfile::tempdir().unwrap();
    let n = t
        .download(
            &url(&bucket, "in/scene one.mat"),
            dest.path(),
            &flags(""),
            &no_log,
        )
        .await
        .unwrap();
    assert_eq!(
        n,
        Transfer {
            files: 1,
            bytes: 5000
        }
    );
    assert_eq!(
        read_tree(dest.path()),
        [("scene one.mat".to_string(), random_bytes(5000, 7))]
    );

    let err = t
        .download(
            &url(&bucket, "in/missing.mat"),
            dest.path(),
            &flags(""),
            &no_log,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::NoSuchKey { .. }), "{err}");
    assert!(err.to_string().contains("in/missing.mat"), "{err}");

    let err = t
        .download(&url(&bucket, "in/"), dest.path(), &flags(""), &no_log)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::NotAnObject { .. }), "{err}");

    // One file up: to the key, or below it when the URL ends in '/'.
    let file = dest.path().join("scene one.mat");
    t.upload(&file, &url(&bucket, "out/renamed.mat"), &flags(""), &no_log)
        .await
        .map(common::complete)
        .unwrap();
    t.upload(&file, &url(&bucket, "out/"), &flags(""), &no_log)
        .await
        .map(common::complete)
        .unwrap();
    assert_eq!(
        get(&client, &bucket, "out/renamed.mat").await,
        random_bytes(5000, 7)
    );
    assert_eq!(
        get(&client, &bucket, "out/scene one.mat").await,
        random_bytes(5000, 7)
    );

    // A folder needs --recursive.
    let err = t
        .upload(dest.path(), &url(&bucket, "out"), &flags(""), &no_log)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::NeedsRecursive { .. }), "{err}");
    assert!(err.to_string().contains("--recursive"), "{err}");
    common::remove_bucket(&client, &bucket).await;
}

/// A key that is both a file and a folder (`x` and `x/y`) cannot be laid out on disk: the copy
/// fails, and no partially written file is left behind under any name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_download_leaves_no_partial_files() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "partial").await;
    put(&client, &bucket, "in/x", random_bytes(3 << 20, 9)).await;
    put(&client, &bucket, "in/x/y", b"y".to_vec()).await;
    let t = Transfers::new(client.clone());
    let dest = tempfile::tempdir().unwrap();
    let err = t
        .download(
            &url(&bucket, "in"),
            dest.path(),
            &flags("--recursive"),
            &no_log,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Local { .. }), "{err}");
    let left: Vec<String> = read_tree(dest.path()).into_iter().map(|(p, _)| p).collect();
    assert!(
        left.iter().all(|p| !p.ends_with(".rtb-partial")),
        "{left:?}"
    );
    common::remove_bucket(&client, &bucket).await;
}

/// Over 1,000 keys: the listing is paginated and every page is followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_files_across_listing_pages() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "many").await;
    let t = Transfers::new(client.clone());
    let src = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..1_050)
        .map(|i| {
            (
                format!("d{}/f{i:04}.txt", i % 7),
                format!("file {i}").into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    write_tree(src.path(), &refs);
    let up = t
        .upload(
            src.path(),
            &url(&bucket, "many"),
            &flags("--recursive --quiet"),
            &no_log,
        )
        .await
        .map(common::complete)
        .unwrap();
    assert_eq!(up.files, 1_050);
    let dest = tempfile::tempdir().unwrap();
    let down = t
        .download(
            &url(&bucket, "many"),
            dest.path(),
            &flags("--recursive --quiet"),
            &no_log,
        )
        .await
        .unwrap();
    assert_eq!(down, up);
    let mut want = files;
    want.sort();
    assert_eq!(read_tree(dest.path()), want);
    common::remove_bucket(&client, &bucket).await;
}

/// 100 MiB of random bytes: multipart upload (13 parts of 8 MiB), ranged download, and the
/// same object fetched plainly; all three agree by MD5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_multipart_up_ranged_down() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "large").await;
    let t = Transfers::new(client.clone());
    let src = tempfile::tempdir().unwrap();
    let data = random_bytes(100 << 20, 42);
    let want = md5_hex(&data);
    std::fs::write(src.path().join("big.bin"), &data).unwrap();
    drop(data);

    let up = t
        .upload(
            src.path(),
            &url(&bucket, "big"),
            &flags("--recursive"),
            &no_log,
        )
        .await
        .map(common::complete)
        .unwrap();
    assert_eq!(
        up,
        Transfer {
            files: 1,
            bytes: 100 << 20
        }
    );
    let head = client
        .head_object()
        .bucket(&bucket)
        .key("big/big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(100 << 20));
    assert!(
        head.e_tag().unwrap_or_default().contains("-13"),
        "multipart ETag: {:?}",
        head.e_tag()
    );
    assert_eq!(
        md5_hex(&get(&client, &bucket, "big/big.bin").await),
        want,
        "stored bytes"
    );

    let dest = tempfile::tempdir().unwrap();
    let down = t
        .download(
            &url(&bucket, "big"),
            dest.path(),
            &flags("--recursive"),
            &no_log,
        )
        .await
        .unwrap();
    assert_eq!(down, up);
    let got = std::fs::read(dest.path().join("big.bin")).unwrap();
    assert_eq!(md5_hex(&got), want, "downloaded bytes");
    common::remove_bucket(&client, &bucket).await;
}

/// An object put in one piece has its MD5 as ETag; a ranged download checks it after the parts
/// land, and a single GET checks it while streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_etag_objects_are_md5_checked() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "md5").await;
    let big = random_bytes(20 << 20, 5);
    put(&client, &bucket, "in/twenty.bin", big.clone()).await;
    put(&client, &bucket, "in/small.bin", random_bytes(100, 6)).await;
    let head = client
        .head_object()
        .bucket(&bucket)
        .key("in/twenty.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.e_tag().map(|e| e.trim_matches('"').to_string()),
        Some(md5_hex(&big))
    );
    let t = Transfers::new(client.clone());
    let dest = tempfile::tempdir().unwrap();
    t.download(
        &url(&bucket, "in"),
        dest.path(),
        &flags("--recursive"),
        &no_log,
    )
    .await
    .unwrap();
    assert!(std::fs::read(dest.path().join("twenty.bin")).unwrap() == big);
    common::remove_bucket(&client, &bucket).await;
}

/// Uploads carry a CRC32 that S3 checks; the emulator keeps it, which shows it arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_carry_a_checksum() {
    let client = common::client().await;
    let bucket = unique_bucket(&client, "crc").await;
    let src = tempfile::tempdir().unwrap();
    write_tree(
        src.path(),
        &[
            ("small", b"abc".to_vec()),
            ("streamed", random_bytes(3 << 20, 8)),
        ],
    );
    Transfers::new(client.clone())
        .upload(
            src.path(),
            &url(&bucket, "c"),
            &flags("--recursive"),
            &no_log,
        )
        .await
        .map(common::complete)
        .unwrap();
    for key in ["c/small", "c/streamed"] {
        let head = client
            .head_object()
            .bucket(&bucket)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert!(head.checksum_crc32().is_some(), "{key}: no CRC32 stored");
    }
    // "abc" has the well-known CRC32 0x352441c2.
    assert_eq!(get(&client, &bucket, "c/small").await, b"abc");
    common::remove_bucket(&client, &bucket).await;
}

/// A body damaged on the way (right size, wrong bytes) fails the copy by MD5, for a single GET
/// and for a ranged download, and leaves no file behind under any name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_download_is_caught_and_not_kept() {
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "damaged").await;
    // Put without a CRC32 so neither the SDK nor the server has anything but the ETag (MD5).
    let plain = common::client_via(&common::endpoint()).await;
    for (key, len) in [("small/one.bin", 100_000), ("large/twenty.bin", 20 << 20)] {
        plain
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(vec![0xFE; len].into())
            .send()
            .await
            .unwrap();
    }
    // Every 0xFE byte of a body becomes 0xFD: the right size, the wrong content, on every
    // attempt.
    let proxy = rtb_testkit::FaultProxy::start();
    proxy.add(rtb_testkit::Rule::on("GetObject").corrupt_body(0xFE, 0xFD));
    let t = Transfers::new(common::client_via(&proxy.endpoint()).await);
    for prefix in ["small", "large"] {
        let dest = tempfile::tempdir().unwrap();
        let err = t
            .download(
                &url(&bucket, prefix),
                dest.path(),
                &flags("--recursive"),
                &no_log,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransferError::Integrity { .. }),
            "{prefix}: {err}"
        );
        assert!(err.to_string().contains("MD5"), "{prefix}: {err}");
        assert!(
            read_tree(dest.path()).is_empty(),
            "{prefix}: {:?}",
            read_tree(dest.path())
                .iter()
                .map(|f| &f.0)
                .collect::<Vec<_>>()
        );
    }
    // The same copy without the proxy works: the damage was on the way, not in the bucket.
    let dest = tempfile::tempdir().unwrap();
    Transfers::new(direct.clone())
        .download(
            &url(&bucket, "large"),
            dest.path(),
            &flags("--recursive"),
            &no_log,
        )
        .await
        .unwrap();
    common::remove_bucket(&direct, &bucket).await;
}

/// A part that can never be uploaded fails its file, after retries, and that multipart upload
/// is aborted: no object, no upload left open (whose parts would be billed). The file is
/// listed as skipped, with the step that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_part_aborts_the_multipart_upload() {
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "abort").await;
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("big.bin"), random_bytes(40 << 20, 11)).unwrap();
    // Part 3's connection is cut before it reaches S3, on every attempt.
    let proxy = rtb_testkit::FaultProxy::start();
    proxy.add(
        rtb_testkit::Rule::on("UploadPart")
            .path_contains("partNumber=3&")
            .drop_request(),
    );
    let t = Transfers::new(common::client_via(&proxy.endpoint()).await);
    let up = t
        .upload(
            src.path(),
            &url(&bucket, "out"),
            &flags("--recursive"),
            &no_log,
        )
        .await
        .unwrap();
    assert_eq!(up.copied, Transfer::default());
    assert_eq!(up.skipped.len(), 1, "{:?}", up.skipped);
    assert!(up.skipped[0].path.ends_with("big.bin"), "{:?}", up.skipped);
    assert!(
        up.skipped[0].reason.starts_with("UploadPart failed: "),
        "{:?}",
        up.skipped
    );
    assert!(
        list(&direct, &bucket, "").await.is_empty(),
        "no object was made"
    );
    let open = direct
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "left open: {:?}", open.uploads());
    common::remove_bucket(&direct, &bucket).await;
}

/// A file that grows all through its upload is not uploaded silently truncated: it is tried
/// again, and listed as skipped, saying the copy in S3 may be incomplete, when it keeps
/// changing. The other files go up as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_growing_during_upload_is_not_silently_truncated() {
    use std::io::Write;
    let client = common::client().await;
    let bucket = unique_bucket(&client, "growing").await;
    let src = tempfile::tempdir().unwrap();
    let growing = src.path().join("render.exr");
    std::fs::write(&growing, random_bytes(40 << 20, 21)).unwrap();
    std::fs::write(src.path().join("done.png"), b"done").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), growing.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(&[7u8; 4096]).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let lines = Lines::default();
    let up = Transfers::new(client.clone())
        .upload(
            src.path(),
            &url(&bucket, "out"),
            &flags("--recursive"),
            &lines.sink(),
        )
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(up.copied.files, 1, "{up:?}");
    assert_eq!(get(&client, &bucket, "out/done.png").await, b"done");
    assert_eq!(up.skipped.len(), 1, "{up:?}");
    let s = &up.skipped[0];
    assert!(s.path.ends_with("render.exr"), "{s:?}");
    assert!(
        s.reason.contains("kept changing") && s.reason.contains("may be incomplete"),
        "{s:?}"
    );
    let logged = lines.take();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("changed while it was uploaded")),
        "{logged:#?}"
    );
    common::remove_bucket(&client, &bucket).await;
}
