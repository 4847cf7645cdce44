//! Writing the runner's small JSON records to S3 (the result record, a checkpoint's manifest,
//! the interruption record): each is proof that something was saved, worth more than one try.

use std::time::Duration;

/// The pauses between attempts at one record.
const PAUSES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];
/// One attempt that takes longer than this is given up (and tried again): a stalled
/// connection must not hold the job.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Put `body` at `s3://bucket/key` as JSON, trying again after a failure; the last failure's
/// cause when every attempt failed.
pub async fn put_json(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    let mut pauses = PAUSES.iter();
    loop {
        let put = s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.clone().into())
            .send();
        let why = match tokio::time::timeout(ATTEMPT_TIMEOUT, put).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => crate::transfer::S3Cause::from_sdk(&e).to_string(),
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(ATTEMPT_TIMEOUT)
            ),
        };
        match pauses.next() {
            Some(pause) => {
                eprintln!("[rtb-job] writing s3://{bucket}/{key} failed ({why}); trying again");
                tokio::time::sleep(*pause).await;
            }
            None => return Err(why),
        }
    }
}
