//! `${column}` in a template string: the row's value of the column of that header name,
//! exactly as written (spaces included). `$$` is a literal `$`; a `$` before anything else
//! is kept as typed, and so are `{` and `}` (MATLAB cell arrays stay as typed).

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Dollar,
    Column(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("'${{' at byte {at} has no closing '}}' (write $$ for a literal $)")]
    Unclosed { at: usize },
    #[error("${{{0}}} is not a column")]
    Unknown(String),
}

fn pieces(s: &str) -> Result<Vec<Piece<'_>>, ExpandError> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut offset = 0;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push(Piece::Dollar);
            offset += i + 2;
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(ExpandError::Unclosed { at: offset + i });
            };
            out.push(Piece::Column(&tail[..end]));
            offset += i + 2 + end + 1;
            rest = &tail[end + 1..];
        } else {
            out.push(Piece::Text("$"));
            offset += i + 1;
            rest = after;
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// The columns a template names, in order (for checking them against the header once).
pub fn columns(s: &str) -> Result<Vec<&str>, ExpandError> {
    Ok(pieces(s)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Column(c) => Some(c),
            _ => None,
        })
        .collect())
}

/// `s` with every `${column}` replaced by `value(column)`.
pub fn expand<'v>(s: &str, value: impl Fn(&str) -> Option<&'v str>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(s.len());
    for p in pieces(s)? {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Dollar => out.push('$'),
            Piece::Column(c) => {
                out.push_str(value(c).ok_or_else(|| ExpandError::Unknown(c.into()))?)
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(c: &str) -> Option<&'static str> {
        match c {
            "job number" => Some("7"),
            "luminanceLevels" => Some("[0.2000 0.6000]"),
            "" => Some("empty-name"),
            _ => None,
        }
    }

    #[test]
    fn the_table() {
        let table: &[(&str, Result<&str, ExpandError>)] = &[
            ("vwcc2-${job number}", Ok("vwcc2-7")),
            (
                "f('luminanceLevels', ${luminanceLevels})",
                Ok("f('luminanceLevels', [0.2000 0.6000])"),
            ),
            (
                "{'VirtualWorldColorConstancy', 'isetbio'}",
                Ok("{'VirtualWorldColorConstancy', 'isetbio'}"),
            ),
            ("cost: $$5 and $$${job number}", Ok("cost: $5 and $7")),
            ("a lone $ and $x stay", Ok("a lone $ and $x stay")),
            ("trailing $", Ok("trailing $")),
            ("${}", Ok("empty-name")),
            ("${job number", Err(ExpandError::Unclosed { at: 0 })),
            ("ab ${nope}", Err(ExpandError::Unknown("nope".into()))),
            (
                "${Job Number}",
                Err(ExpandError::Unknown("Job Number".into())),
            ),
        ];
        for (template, want) in table {
            assert_eq!(
                expand(template, row),
                want.clone().map(String::from),
                "{template}"
            );
        }
        assert_eq!(columns("${a} $${b} ${c d}").unwrap(), vec!["a", "c d"]);
    }

    proptest! {
        /// Text without `$` comes out as it went in; `$$` always halves.
        #[test]
        fn text_without_dollars_is_kept(s in "[^$]*") {
            prop_assert_eq!(expand(&s, row).unwrap(), s.clone());
            let doubled = s.replace('x', "$$");
            prop_assert_eq!(expand(&doubled, row).unwrap(), s.replace('x', "$"));
        }
    }
}
