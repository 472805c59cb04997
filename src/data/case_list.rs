//! Case lists (`train.list`, `test.list`): one case ID per line, in a meaningful order (the
//! paper protocol takes the first N training IDs as labeled). Blank lines are ignored.

use std::collections::HashMap;
use std::path::Path;

use super::error::DataError;

pub fn read_case_list(path: impl AsRef<Path>) -> Result<Vec<String>, DataError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    parse_case_list(path, &text)
}

/// Parse list text; `path` only names the source in errors.
pub fn parse_case_list(path: &Path, text: &str) -> Result<Vec<String>, DataError> {
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    let mut ids = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        if let Some(first) = first_line.insert(id, index + 1) {
            return Err(DataError::DuplicateCase {
                path: path.to_path_buf(),
                id: id.to_string(),
                location: format!("lines {first} and {}", index + 1),
            });
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// Write a case list atomically, one ID per line.
pub fn write_case_list(path: impl AsRef<Path>, ids: &[String]) -> Result<(), DataError> {
    let mut text = ids.join("\n");
    text.push('\n');
    crate::io_util::write_atomic(path.as_ref(), text.as_bytes()).map_err(DataError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_trims_whitespace_and_skips_blank_lines() {
        let ids = parse_case_list(Path::new("train.list"), "b2\r\n  a1 \n\nc3\n").unwrap();
        assert_eq!(ids, vec!["b2", "a1", "c3"]);
    }
}
