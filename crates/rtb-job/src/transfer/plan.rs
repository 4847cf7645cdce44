//! Pure decisions about a copy, made before any byte moves: where a key lands on disk, how an
//! object is cut into parts, whether an ETag is an MD5. Table-tested without S3.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// S3 allows at most this many parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// Where one listed key goes below the destination folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The prefix's own folder marker (`prefix/` itself): nothing to do.
    Root,
    /// A folder marker (key ending in `/`): create this folder.
    Folder(PathBuf),
    /// An object: write this file.
    File(PathBuf),
}

/// Map a key, relative to the copied prefix, to a path relative to the destination folder.
/// Refuses anything that could land outside it or that has no faithful local name: `..` and `.`
/// segments, empty segments (`a//b`, a leading `/`), NUL bytes.
pub fn placement(relative_key: &str) -> Result<Placement, &'static str> {
    if relative_key.is_empty() {
        return Ok(Placement::Root);
    }
    if relative_key.contains('\0') {
        return Err("it contains a NUL byte, which no local file name can hold");
    }
    let (body, is_folder) = match relative_key.strip_suffix('/') {
        Some(body) => (body, true),
        None => (relative_key, false),
    };
    let mut path = PathBuf::new();
    for segment in body.split('/') {
        match segment {
            "" => return Err("it has an empty path segment ('//' or a leading '/')"),
            "." | ".." => return Err("it has a '.' or '..' segment, which would leave the folder"),
            s => path.push(s),
        }
    }
    // Belt and braces: whatever `split` missed, the result must be plain names only.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("it is not a plain relative path");
    }
    Ok(if is_folder {
        Placement::Folder(path)
    } else {
        Placement::File(path)
    })
}

/// The key suffix for a file below an upload's source folder: its relative path with `/`.
pub fn relative_key(relative: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(name) => parts.push(name.to_str()?),
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// The part size for an object of `size` bytes: `preferred`, grown (by whole MiB) when the
/// object would otherwise need more than S3's 10,000 parts.
pub fn part_size(size: u64, preferred: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let needed = size.div_ceil(MAX_PARTS);
    if needed <= preferred {
        preferred
    } else {
        needed.div_ceil(MIB) * MIB
    }
}

/// Byte ranges of the parts, in order, covering `0..size`.
pub fn parts(size: u64, part_size: u64) -> Vec<Range<u64>> {
    let part_size = part_size.max(1);
    (0..size.div_ceil(part_size))
        .map(|i| i * part_size..((i + 1) * part_size).min(size))
        .collect()
}

/// The MD5 in an ETag, when it is one: 32 hex digits. Multipart ETags (`<hex>-<parts>`) and
/// SSE-KMS ETags are not the object's MD5 and give `None`.
pub fn md5_etag(etag: &str) -> Option<String> {
    let t = etag.trim_matches('"');
    (t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_ascii_lowercase())
}

/// `12.3 KiB`, `1.0 MiB`, `17 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_below_the_folder() {
        let file = |p: &str| Ok(Placement::File(PathBuf::from(p)));
        let folder = |p: &str| Ok(Placement::Folder(PathBuf::from(p)));
        let table: Vec<(&str, Result<Placement, &str>)> = vec![
            ("", Ok(Placement::Root)),
            ("a.txt", file("a.txt")),
            ("a/b/c.mat", file("a/b/c.mat")),
            ("with space/ü ñ 漢.txt", file("with space/ü ñ 漢.txt")),
            ("sub/", folder("sub")),
            ("sub/deeper/", folder("sub/deeper")),
            ("..dots..", file("..dots..")),
            (".hidden", file(".hidden")),
        ];
        for (key, want) in table {
            assert_eq!(placement(key), want, "{key:?}");
        }
    }

    #[test]
    fn keys_that_escape_are_refused() {
        for key in [
            "..",
            "../x",
            "a/../../x",
            "a/..",
            "./x",
            "a/./b",
            "/etc/passwd",
            "a//b",
            "/",
            "//",
            "nul\0byte",
        ] {
            assert!(placement(key).is_err(), "{key:?} should be refused");
        }
    }

    #[test]
    fn relative_keys_use_slashes() {
        assert_eq!(
            relative_key(Path::new("a/b c/ü.txt")).as_deref(),
            Some("a/b c/ü.txt")
        );
        assert_eq!(relative_key(Path::new("../x")), None);
    }

    #[test]
    fn parts_cover_the_object() {
        let mib = 1u64 << 20;
        assert_eq!(parts(0, 8), Vec::<Range<u64>>::new());
        assert_eq!(parts(8, 8), vec![0..8]);
        assert_eq!(parts(17, 8), vec![0..8, 8..16, 16..17]);
        assert_eq!(part_size(100 * mib, 8 * mib), 8 * mib);
        // 1 TiB in 8 MiB parts would be 131,072 parts: grow to stay under 10,000.
        let big = 1u64 << 40;
        let ps = part_size(big, 8 * mib);
        assert!(big.div_ceil(ps) <= MAX_PARTS && ps % mib == 0, "{ps}");
    }

    #[test]
    fn only_plain_etags_are_md5() {
        assert_eq!(
            md5_etag("\"D41D8CD98F00B204E9800998ECF8427E\"").as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(md5_etag("\"d41d8cd98f00b204e9800998ecf8427e-3\""), None);
        assert_eq!(md5_etag("abc"), None);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(17), "17 B");
        assert_eq!(human_bytes(12_595), "12.3 KiB");
        assert_eq!(human_bytes(1 << 20), "1.0 MiB");
        assert_eq!(human_bytes(256 << 20), "256.0 MiB");
    }
}
