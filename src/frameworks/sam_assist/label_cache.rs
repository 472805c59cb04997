//! The SAM term's reused pseudo-labels and their byte format in checkpoints.

use std::collections::HashMap;
use std::ops::Range;

use ndarray::Array3;

use crate::frameworks::FrameworkError;

/// Checkpoint section of the reused pseudo-labels: version 2 stores which voxels are known;
/// version 1 labels were known wherever they covered.
pub(super) const LABELS_MAGIC: &[u8] = b"semisam-sam-labels-2";
pub(super) const LABELS_MAGIC_V1: &[u8] = b"semisam-sam-labels-1";

/// Little-endian reads from a byte slice, `None` past its end.
struct ByteReader<'a>(&'a [u8]);

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: impl TryInto<usize>) -> Option<&'a [u8]> {
        let n = n.try_into().ok()?;
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<usize> {
        let bytes: [u8; 8] = self.take(8usize)?.try_into().ok()?;
        usize::try_from(u64::from_le_bytes(bytes)).ok()
    }
}

/// A pseudo-label kept on the source grid of a case.
pub(super) struct CachedLabel {
    pub(super) step: usize,
    /// Source region the label covers.
    pub(super) region: [Range<usize>; 3],
    /// Class index per voxel of `region`.
    pub(super) classes: Array3<u8>,
    /// Voxels of `region` the term supervises.
    pub(super) known: Array3<bool>,
}

/// The pseudo-labels as checkpoint bytes, cases in identifier order.
pub(super) fn encode(labels: &HashMap<String, CachedLabel>) -> Vec<u8> {
    let mut ids: Vec<&String> = labels.keys().collect();
    ids.sort();
    let mut bytes = LABELS_MAGIC.to_vec();
    bytes.extend((ids.len() as u64).to_le_bytes());
    for id in ids {
        let label = &labels[id];
        bytes.extend((id.len() as u64).to_le_bytes());
        bytes.extend(id.as_bytes());
        bytes.extend((label.step as u64).to_le_bytes());
        for range in &label.region {
            bytes.extend((range.start as u64).to_le_bytes());
            bytes.extend((range.end as u64).to_le_bytes());
        }
        bytes.extend(label.classes.iter());
        bytes.extend(label.known.iter().map(|&k| u8::from(k)));
    }
    bytes
}

/// Read what [`encode`] wrote; a case that `is_unlabeled_case` rejects is an error.
pub(super) fn decode(
    bytes: &[u8],
    is_unlabeled_case: impl Fn(&str) -> bool,
) -> Result<HashMap<String, CachedLabel>, FrameworkError> {
    let corrupt = |what: &str| FrameworkError::Auxiliary {
        name: "sam".into(),
        message: format!("the checkpoint's pseudo-label section is corrupt ({what})"),
    };
    let mut reader = ByteReader(bytes);
    let header = reader
        .take(LABELS_MAGIC.len())
        .ok_or_else(|| corrupt("header"))?;
    let stores_known = match header {
        LABELS_MAGIC => true,
        LABELS_MAGIC_V1 => false,
        _ => return Err(corrupt("header")),
    };
    let count = reader.u64().ok_or_else(|| corrupt("count"))?;
    let mut labels = HashMap::new();
    for _ in 0..count {
        let length = reader.u64().ok_or_else(|| corrupt("case id"))?;
        let id = reader
            .take(length)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .ok_or_else(|| corrupt("case id"))?;
        if !is_unlabeled_case(&id) {
            return Err(corrupt(&format!(
                "case {id} is not an unlabeled case of this run"
            )));
        }
        let step = reader.u64().ok_or_else(|| corrupt("step"))?;
        let mut region: [Range<usize>; 3] = [0..0, 0..0, 0..0];
        for range in &mut region {
            let start = reader.u64().ok_or_else(|| corrupt("region"))?;
            let end = reader.u64().ok_or_else(|| corrupt("region"))?;
            *range = start..end.max(start);
        }
        let shape = (region[0].len(), region[1].len(), region[2].len());
        let voxels = reader
            .take(shape.0 * shape.1 * shape.2)
            .ok_or_else(|| corrupt("classes"))?;
        let classes =
            Array3::from_shape_vec(shape, voxels.to_vec()).map_err(|_| corrupt("classes"))?;
        let known = if stores_known {
            let flags = reader
                .take(classes.len())
                .ok_or_else(|| corrupt("known voxels"))?;
            Array3::from_shape_vec(shape, flags.iter().map(|&k| k != 0).collect())
                .map_err(|_| corrupt("known voxels"))?
        } else {
            Array3::from_elem(shape, true)
        };
        labels.insert(
            id,
            CachedLabel {
                step,
                region,
                classes,
                known,
            },
        );
    }
    if !reader.0.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(labels)
}
