//! Errors as one readable line, for both programs.

/// An error and its causes, `: `-joined, each message once. The SDK's `DisplayErrorContext`
/// ends with a Debug dump of the whole error, which is not for people; this is.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains_read_as_one_line() {
        let e = Outer(std::io::Error::other("connection reset"));
        assert_eq!(chain(&e), "outer: connection reset");
    }
}
