//! Job ids: chosen by the client (or the runner's default), used by both in S3 keys and
//! container names, and by the client in EC2's 64-character ClientToken.

/// Longest id: leaves room in a ClientToken for the client's suffix.
pub const MAX_LEN: usize = 48;

/// Ok when `id` is usable everywhere a job id goes; else what is wrong, for the user.
pub fn check(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_LEN
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{id}' is not a job id: 1 to {MAX_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        for good in [
            "j1",
            "rr-20261124-053012-1a2b",
            "rtb-job-20261124T052619Z",
            "a.b_c-d",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "ü", &"x".repeat(MAX_LEN + 1)] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
