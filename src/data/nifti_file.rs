//! NIfTI-1 (`.nii`, `.nii.gz`) volumes. Reading goes through the `nifti` crate; the header it
//! returns is kept in the volume's [`Geometry`] so that outputs carry the input's affine,
//! qform/sform codes and pixdim unchanged. Writing serialises that header ourselves because the
//! crate's writer creates its output file directly, and every semisam output must be written
//! atomically through [`crate::io_util`].

use std::io::{self, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use ndarray::{Array3, Ix3};
use nifti::{
    InMemNiftiObject, InMemNiftiVolume, IntoNdArray, NiftiError, NiftiHeader, NiftiObject,
    NiftiType, NiftiVolume,
};

use super::error::DataError;
use super::labels::labels_from_f64;
use super::volume::{Geometry, SourceFormat, Volume};

const FORMAT: &str = "NIfTI-1";
const HEADER_SIZE: usize = 348;
/// Header plus the 4-byte "no extensions" marker.
const DATA_OFFSET: f32 = 352.0;
/// Header plus the 4-byte extender: where extensions, or else the voxels, begin.
const VOLUME_START: usize = 352;
/// Deflate shrinks data by at most about 1032:1, so a gzip file never decodes to more than this
/// many times its length.
const MAX_DEFLATE_RATIO: u64 = 1032;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// NIfTI `xyzt_units` code for millimetres.
const UNITS_MM: u8 = 2;
/// NIfTI xform code "aligned to another scan", what nibabel also writes for a new affine.
const XFORM_ALIGNED: i16 = 2;

fn error(path: &Path, err: NiftiError) -> DataError {
    match err {
        NiftiError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => DataError::Truncated {
            path: path.to_path_buf(),
            reason: "the header is incomplete".into(),
        },
        NiftiError::IncompatibleLength(got, expected) => DataError::Truncated {
            path: path.to_path_buf(),
            reason: format!("voxel data holds {got} bytes, the header declares {expected}"),
        },
        NiftiError::InvalidFormat => DataError::Format {
            path: path.to_path_buf(),
            format: FORMAT,
            reason: "the magic code is neither `n+1` nor `ni1`".into(),
        },
        other => DataError::Format {
            path: path.to_path_buf(),
            format: FORMAT,
            reason: other.to_string(),
        },
    }
}

/// Read the file (gzip decoded when it is gzip, whatever its name) and parse it. The header is
/// checked against the bytes that are there before the `nifti` crate allocates what it declares.
fn read_object(path: &Path) -> Result<InMemNiftiObject, DataError> {
    let bytes = super::read_file(path)?;
    let decoded;
    let contents = if bytes.starts_with(&GZIP_MAGIC) {
        decoded = decompress(path, &bytes)?;
        decoded.as_slice()
    } else {
        let layout = check_header(path, &bytes)?;
        layout.check_available(path, bytes.len())?;
        bytes.as_slice()
    };
    let layout = check_extensions(path, contents)?;
    // The voxels begin at vox_offset (the NIfTI-1 standard, as nibabel and ITK read it). The
    // nifti crate looks for them right after an extender of zeros instead, so padding up to a
    // larger vox_offset is cut out before it parses the file.
    let realigned;
    let contents = if !layout.extensions && layout.data_start > VOLUME_START {
        realigned = [&contents[..VOLUME_START], &contents[layout.data_start..]].concat();
        realigned.as_slice()
    } else {
        contents
    };
    InMemNiftiObject::from_reader(contents).map_err(|e| error(path, e))
}

fn gzip_error(path: &Path, err: io::Error) -> DataError {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        DataError::Truncated {
            path: path.to_path_buf(),
            reason: "the gzip stream ends early".into(),
        }
    } else {
        DataError::Format {
            path: path.to_path_buf(),
            format: "gzip",
            reason: err.to_string(),
        }
    }
}

/// Decode the header first, then no more than the header declares, and no more than a gzip
/// file of this length can hold: a corrupt header cannot make the reader allocate without
/// bound (a gzip bomb stops at the declared size).
fn decompress(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let mut decoder = MultiGzDecoder::new(bytes);
    let mut decoded = Vec::with_capacity(VOLUME_START);
    (&mut decoder)
        .take(VOLUME_START as u64)
        .read_to_end(&mut decoded)
        .map_err(|e| gzip_error(path, e))?;
    let layout = check_header(path, &decoded)?;
    let declared = layout.end().ok_or_else(|| layout.too_large(path))?;
    let capacity = (bytes.len() as u64).saturating_mul(MAX_DEFLATE_RATIO);
    if declared as u64 > capacity {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            format: FORMAT,
            reason: format!(
                "the header declares {declared} bytes of header and voxel data, more than a \
                 {}-byte gzip file can hold (deflate compresses at most {MAX_DEFLATE_RATIO}:1): \
                 the header is corrupt",
                bytes.len()
            ),
        });
    }
    (&mut decoder)
        .take((declared - decoded.len()) as u64)
        .read_to_end(&mut decoded)
        .map_err(|e| gzip_error(path, e))?;
    layout.check_available(path, decoded.len())?;
    // Reading on to the end of the stream makes the decoder verify its CRC; trailing data a
    // writer left after the volume is read in bounded pieces and dropped.
    io::copy(&mut decoder, &mut io::sink()).map_err(|e| gzip_error(path, e))?;
    Ok(decoded)
}

/// Where the voxel data lies, as the header declares it.
struct DeclaredLayout {
    /// Header, extender, then extensions or padding: `vox_offset`, and at least 352.
    data_start: usize,
    /// The extender announces extensions between it and `data_start`.
    extensions: bool,
    /// `None` when the size overflows.
    data_bytes: Option<usize>,
    dims: Vec<usize>,
    value_bytes: usize,
}

impl DeclaredLayout {
    fn end(&self) -> Option<usize> {
        self.data_bytes?.checked_add(self.data_start)
    }

    fn too_large(&self, path: &Path) -> DataError {
        DataError::Format {
            path: path.to_path_buf(),
            format: FORMAT,
            reason: format!(
                "the header declares shape {:?} of {}-byte values, more than any file can hold",
                self.dims, self.value_bytes
            ),
        }
    }

    /// The file (decoded) holds `available` bytes: it must reach the end of the voxel data.
    fn check_available(&self, path: &Path, available: usize) -> Result<(), DataError> {
        let data_bytes = self.data_bytes.ok_or_else(|| self.too_large(path))?;
        if self.data_start > available {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                format: FORMAT,
                reason: format!(
                    "the voxel data starts at byte {} (vox_offset), beyond the end of the {available}-byte file",
                    self.data_start
                ),
            });
        }
        let held = available - self.data_start;
        if held < data_bytes {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                reason: format!("voxel data holds {held} bytes, the header declares {data_bytes}"),
            });
        }
        Ok(())
    }
}

fn corrupt_header(path: &Path, reason: String) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        format: FORMAT,
        reason: format!("{reason} (the header is corrupt)"),
    }
}

/// Check the fixed header (and the extender after it) in `head`, the first bytes of the file.
fn check_header(path: &Path, head: &[u8]) -> Result<DeclaredLayout, DataError> {
    if head.len() < HEADER_SIZE {
        return Err(if head.len() >= 4 && looks_like_nifti_start(head) {
            DataError::Truncated {
                path: path.to_path_buf(),
                reason: format!("only {} bytes, a header needs 348", head.len()),
            }
        } else {
            DataError::Format {
                path: path.to_path_buf(),
                format: FORMAT,
                reason: format!("only {} bytes", head.len()),
            }
        });
    }
    let big_endian = match head[..4].try_into().map(i32::from_le_bytes) {
        Ok(348) => false,
        _ if i32::from_be_bytes([head[0], head[1], head[2], head[3]]) == 348 => true,
        _ => {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                format: FORMAT,
                reason: format!(
                    "sizeof_hdr is {}, a NIfTI-1 header has 348",
                    i32::from_le_bytes([head[0], head[1], head[2], head[3]])
                ),
            });
        }
    };
    match &head[344..348] {
        b"n+1\0" => {}
        b"ni1\0" => {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                format: FORMAT,
                reason: "the magic code `ni1` means the voxels are in a separate .img file; \
                         semisam reads single-file NIfTI (`n+1`)"
                    .into(),
            });
        }
        _ => return Err(error(path, NiftiError::InvalidFormat)),
    }
    let i16_at = |offset: usize| {
        let pair = [head[offset], head[offset + 1]];
        if big_endian {
            i16::from_be_bytes(pair)
        } else {
            i16::from_le_bytes(pair)
        }
    };
    let ndim = i16_at(40);
    if !(1..=7).contains(&ndim) {
        return Err(corrupt_header(
            path,
            format!("dim[0] = {ndim}: the number of dimensions must be 1 to 7"),
        ));
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    for axis in 1..=ndim as usize {
        let size = i16_at(40 + 2 * axis);
        if size < 1 {
            return Err(corrupt_header(
                path,
                format!("dim[{axis}] = {size}: every axis needs at least one voxel"),
            ));
        }
        dims.push(size as usize);
    }
    let header = NiftiHeader::from_reader(&head[..HEADER_SIZE]).map_err(|e| error(path, e))?;
    let datatype = header.data_type().map_err(|_| {
        corrupt_header(
            path,
            format!("datatype = {} is not a NIfTI-1 data type", header.datatype),
        )
    })?;
    let value_bytes = datatype.size_of();
    if header.bitpix as usize != value_bytes * 8 {
        return Err(corrupt_header(
            path,
            format!(
                "bitpix = {} but datatype {datatype:?} has {} bits",
                header.bitpix,
                value_bytes * 8
            ),
        ));
    }
    if !(header.vox_offset.is_finite() && header.vox_offset >= 0.0) {
        return Err(corrupt_header(
            path,
            format!("vox_offset = {} is not a byte offset", header.vox_offset),
        ));
    }
    let Some(&extender) = head.get(HEADER_SIZE) else {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            reason: "the header is incomplete".into(),
        });
    };
    // A single-file NIfTI's voxels begin at vox_offset, whether extensions or padding fill the
    // bytes before it; an offset inside the header is read as the earliest possible one.
    let data_start = (header.vox_offset as usize).max(VOLUME_START);
    let data_bytes = dims
        .iter()
        .try_fold(value_bytes, |acc, &d| acc.checked_mul(d));
    Ok(DeclaredLayout {
        data_start,
        extensions: extender != 0,
        data_bytes,
        dims,
        value_bytes,
    })
}

/// The extensions between the extender and vox_offset must chain exactly onto the voxel data:
/// the nifti crate trusts each extension's size. Returns the file's layout.
fn check_extensions(path: &Path, contents: &[u8]) -> Result<DeclaredLayout, DataError> {
    let layout = check_header(path, contents)?;
    let big_endian = contents[..4] != 348i32.to_le_bytes();
    let mut offset = VOLUME_START;
    while layout.extensions && offset < layout.data_start {
        let Some(field) = contents.get(offset..offset + 4) else {
            break;
        };
        let field = [field[0], field[1], field[2], field[3]];
        let size = if big_endian {
            i32::from_be_bytes(field)
        } else {
            i32::from_le_bytes(field)
        };
        let fits = usize::try_from(size)
            .ok()
            .filter(|&s| s >= 8)
            .and_then(|s| offset.checked_add(s))
            .filter(|&end| end <= layout.data_start);
        match fits {
            Some(end) => offset = end,
            None => {
                return Err(corrupt_header(
                    path,
                    format!(
                        "the extension at byte {offset} declares {size} bytes, which does not end \
                         by vox_offset = {}",
                        layout.data_start
                    ),
                ));
            }
        }
    }
    Ok(layout)
}

/// `sizeof_hdr` is 348 in either byte order.
fn looks_like_nifti_start(bytes: &[u8]) -> bool {
    let head = [bytes[0], bytes[1], bytes[2], bytes[3]];
    i32::from_le_bytes(head) == HEADER_SIZE as i32 || i32::from_be_bytes(head) == HEADER_SIZE as i32
}

/// Check the dimensionality (3D, or 4D+ with singleton trailing axes) and return the 3D shape.
fn spatial_shape(path: &Path, header: &NiftiHeader) -> Result<[usize; 3], DataError> {
    let ndim = header.dim[0] as usize;
    if !(1..=7).contains(&ndim) {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            format: FORMAT,
            reason: format!("dim[0] = {ndim} is not a dimension count"),
        });
    }
    let dims: Vec<usize> = header.dim[1..=ndim].iter().map(|&d| d as usize).collect();
    if dims.iter().skip(3).any(|&d| d != 1) {
        return Err(DataError::invalid(
            path,
            format!(
                "volume has shape {dims:?}; semisam reads single-channel 3D volumes (extra axes must have size 1)"
            ),
        ));
    }
    let mut shape = [1usize; 3];
    for (s, d) in shape.iter_mut().zip(&dims) {
        *s = *d;
    }
    Ok(shape)
}

fn to_array3<T: Clone>(
    path: &Path,
    array: ndarray::ArrayD<T>,
    shape: [usize; 3],
) -> Result<Array3<T>, DataError> {
    let array = array
        .into_shape_with_order((shape, ndarray::Order::ColumnMajor))
        .map_err(|e| {
            DataError::invalid(path, format!("cannot view voxel data as {shape:?}: {e}"))
        })?;
    let array: Array3<T> = array
        .into_dimensionality::<Ix3>()
        .map_err(|e| DataError::invalid(path, e.to_string()))?;
    Ok(array.as_standard_layout().into_owned())
}

/// Spacing from pixdim. A pixdim that is no voxel size (zero, negative, NaN) gives way to the
/// sform's column lengths when an sform is set; otherwise the spacing is unknown. Either way the
/// file is named in a warning, so that a later "no spacing" error is not a mystery.
fn spacing(path: &Path, header: &NiftiHeader) -> Option<[f64; 3]> {
    let pixdim = [
        header.pixdim[1] as f64,
        header.pixdim[2] as f64,
        header.pixdim[3] as f64,
    ];
    let usable = |s: &[f64; 3]| s.iter().all(|v| v.is_finite() && *v > 0.0);
    // With an sform set, header_affine is the sform, and its column lengths are voxel sizes too.
    let sform_lengths = (header.sform_code > 0).then(|| {
        let affine = header_affine(header);
        std::array::from_fn::<f64, 3, _>(|c| {
            affine[..3]
                .iter()
                .map(|row| row[c].powi(2))
                .sum::<f64>()
                .sqrt()
        })
    });
    if usable(&pixdim) {
        // Readers differ here (ITK and nnU-Net take pixdim, MONAI the affine): say so rather
        // than choose in silence.
        if let Some(lengths) = sform_lengths
            && usable(&lengths)
            && pixdim
                .iter()
                .zip(&lengths)
                .any(|(p, l)| (p - l).abs() > 1e-3 * p.max(*l))
        {
            tracing::warn!(
                "{}: pixdim gives voxel size {pixdim:?} mm but the sform {lengths:?} mm; using \
                 pixdim, as ITK and nnU-Net do (correct the header if the sform is right)",
                path.display()
            );
        }
        return Some(pixdim);
    }
    if let Some(lengths) = sform_lengths
        && usable(&lengths)
    {
        tracing::warn!(
            "{}: pixdim {pixdim:?} is not a voxel size (each must be positive and finite); using the sform's voxel size {lengths:?} mm",
            path.display()
        );
        return Some(lengths);
    }
    tracing::warn!(
        "{}: pixdim {pixdim:?} is not a voxel size (each must be positive and finite) and no sform gives one; the file's spacing is unknown",
        path.display()
    );
    None
}

/// Voxel → world transform as NIfTI-1 defines it: sform when its code is set, else qform, else
/// pixdim scaling ("method 1"; nibabel instead centres the volume in that last case).
pub fn header_affine(header: &NiftiHeader) -> [[f64; 4]; 4] {
    if header.sform_code > 0 {
        let rows = [header.srow_x, header.srow_y, header.srow_z];
        let mut a = [[0.0; 4]; 4];
        for (r, row) in rows.iter().enumerate() {
            for c in 0..4 {
                a[r][c] = row[c] as f64;
            }
        }
        a[3][3] = 1.0;
        a
    } else if header.qform_code > 0 {
        qform_affine(header)
    } else {
        let mut a = [[0.0; 4]; 4];
        for (d, row) in a.iter_mut().enumerate().take(3) {
            row[d] = header.pixdim[d + 1].abs() as f64;
        }
        a[3][3] = 1.0;
        a
    }
}

/// The quaternion form of the NIfTI-1 standard (nifti1.h, "METHOD 2").
fn qform_affine(header: &NiftiHeader) -> [[f64; 4]; 4] {
    let (b, c, d) = (
        header.quatern_b as f64,
        header.quatern_c as f64,
        header.quatern_d as f64,
    );
    let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
    let rotation = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let qfac = if header.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let scale = [
        header.pixdim[1] as f64,
        header.pixdim[2] as f64,
        header.pixdim[3] as f64 * qfac,
    ];
    let offset = [
        header.quatern_x as f64,
        header.quatern_y as f64,
        header.quatern_z as f64,
    ];
    let mut m = [[0.0; 4]; 4];
    for r in 0..3 {
        for col in 0..3 {
            m[r][col] = rotation[r][col] * scale[col];
        }
        m[r][3] = offset[r];
    }
    m[3][3] = 1.0;
    m
}

fn geometry(path: &Path, header: NiftiHeader) -> Geometry {
    Geometry {
        spacing: spacing(path, &header),
        affine: header_affine(&header),
        nifti_header: Some(Box::new(header)),
    }
}

/// Split the object into its header and voxel data. Non-finite scaling fields mean "no scaling"
/// (nibabel reads them so); the nifti crate would multiply by them.
fn header_and_volume(
    path: &Path,
    object: InMemNiftiObject,
) -> Result<(NiftiHeader, InMemNiftiVolume), DataError> {
    let mut header = object.header().clone();
    if !header.scl_slope.is_finite() {
        header.scl_slope = 0.0;
    }
    if !header.scl_inter.is_finite() {
        header.scl_inter = 0.0;
    }
    let raw = object.into_volume().into_raw_data();
    let volume = InMemNiftiVolume::from_raw_data(&header, raw).map_err(|e| error(path, e))?;
    Ok((header, volume))
}

pub fn read_image(path: &Path) -> Result<Volume<f32>, DataError> {
    let (header, volume) = header_and_volume(path, read_object(path)?)?;
    let shape = spatial_shape(path, &header)?;
    let array = volume.into_ndarray::<f32>().map_err(|e| error(path, e))?;
    let data = to_array3(path, array, shape)?;
    Ok(Volume {
        data,
        geometry: geometry(path, header),
        source: SourceFormat::Nifti,
        path: path.to_path_buf(),
    })
}

pub fn read_label(path: &Path) -> Result<Volume<u8>, DataError> {
    let (header, volume) = header_and_volume(path, read_object(path)?)?;
    let shape = spatial_shape(path, &header)?;
    let stored = volume.data_type();
    let unscaled = header.scl_slope == 0.0 || (header.scl_slope == 1.0 && header.scl_inter == 0.0);
    let data = if stored == NiftiType::Uint8 && unscaled {
        to_array3(
            path,
            volume.into_ndarray::<u8>().map_err(|e| error(path, e))?,
            shape,
        )?
    } else {
        let values = volume.into_ndarray::<f64>().map_err(|e| error(path, e))?;
        let values = to_array3(path, values, shape)?;
        let flat: Vec<f64> = values.iter().copied().collect();
        Array3::from_shape_vec(shape, labels_from_f64(path, &flat)?).expect("same element count")
    };
    Ok(Volume {
        data,
        geometry: geometry(path, header),
        source: SourceFormat::Nifti,
        path: path.to_path_buf(),
    })
}

/// Element types semisam writes.
pub trait NiftiElement: Copy {
    const DATATYPE: NiftiType;
    fn extend_le_bytes(values: impl Iterator<Item = Self>, out: &mut Vec<u8>);
}

impl NiftiElement for f32 {
    const DATATYPE: NiftiType = NiftiType::Float32;
    fn extend_le_bytes(values: impl Iterator<Item = Self>, out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

impl NiftiElement for u8 {
    const DATATYPE: NiftiType = NiftiType::Uint8;
    fn extend_le_bytes(values: impl Iterator<Item = Self>, out: &mut Vec<u8>) {
        out.extend(values);
    }
}

/// The header to write for `volume`: the header it was read with (when any), with only the
/// fields that describe the stored array changed; otherwise one built from its geometry.
pub fn output_header<T: NiftiElement>(volume: &Volume<T>) -> NiftiHeader {
    let mut header = match &volume.geometry.nifti_header {
        Some(h) => (**h).clone(),
        None => header_from_geometry(&volume.geometry),
    };
    let shape = volume.shape();
    // A 2D image (dim[0] = 2) read as one slice stays 2D, as its readers expect.
    let read_as_2d = header.dim[0] == 2 && shape[2] == 1;
    let mut dim = [1u16; 8];
    dim[0] = if read_as_2d { 2 } else { 3 };
    for d in 0..3 {
        dim[d + 1] = shape[d] as u16;
    }
    header.dim = dim;
    header.datatype = T::DATATYPE as i16;
    header.bitpix = (T::DATATYPE.size_of() * 8) as i16;
    header.vox_offset = DATA_OFFSET;
    header.scl_slope = 1.0;
    header.scl_inter = 0.0;
    // The stored range changed with the data; 0/0 means "not set".
    header.cal_min = 0.0;
    header.cal_max = 0.0;
    header.magic = *b"n+1\0";
    header.sizeof_hdr = HEADER_SIZE as i32;
    header.endianness = nifti::Endianness::Little;
    header
}

fn header_from_geometry(geometry: &Geometry) -> NiftiHeader {
    let mut header = NiftiHeader {
        qform_code: 0,
        sform_code: 0,
        ..NiftiHeader::default()
    };
    header.pixdim = [1.0; 8];
    if let Some(spacing) = geometry.spacing {
        for (pixdim, s) in header.pixdim[1..4].iter_mut().zip(spacing) {
            *pixdim = s as f32;
        }
        let rows = [&mut header.srow_x, &mut header.srow_y, &mut header.srow_z];
        for (row, affine_row) in rows.into_iter().zip(&geometry.affine) {
            for (out, value) in row.iter_mut().zip(affine_row) {
                *out = *value as f32;
            }
        }
        header.sform_code = XFORM_ALIGNED;
        header.xyzt_units = UNITS_MM;
    }
    header
}

fn header_bytes(h: &NiftiHeader) -> Vec<u8> {
    fn fixed<const N: usize>(out: &mut Vec<u8>, bytes: &[u8]) {
        let mut field = [0u8; N];
        let n = bytes.len().min(N);
        field[..n].copy_from_slice(&bytes[..n]);
        out.extend_from_slice(&field);
    }
    let mut out = Vec::with_capacity(DATA_OFFSET as usize);
    let f32s = |out: &mut Vec<u8>, values: &[f32]| {
        values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()))
    };
    out.extend_from_slice(&h.sizeof_hdr.to_le_bytes());
    fixed::<10>(&mut out, &h.data_type);
    fixed::<18>(&mut out, &h.db_name);
    out.extend_from_slice(&h.extents.to_le_bytes());
    out.extend_from_slice(&h.session_error.to_le_bytes());
    out.extend_from_slice(&[h.regular, h.dim_info]);
    h.dim
        .iter()
        .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
    f32s(&mut out, &[h.intent_p1, h.intent_p2, h.intent_p3]);
    for v in [h.intent_code, h.datatype, h.bitpix, h.slice_start] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    f32s(&mut out, &h.pixdim);
    f32s(&mut out, &[h.vox_offset, h.scl_slope, h.scl_inter]);
    out.extend_from_slice(&h.slice_end.to_le_bytes());
    out.extend_from_slice(&[h.slice_code, h.xyzt_units]);
    f32s(
        &mut out,
        &[h.cal_max, h.cal_min, h.slice_duration, h.toffset],
    );
    out.extend_from_slice(&h.glmax.to_le_bytes());
    out.extend_from_slice(&h.glmin.to_le_bytes());
    fixed::<80>(&mut out, &h.descrip);
    fixed::<24>(&mut out, &h.aux_file);
    out.extend_from_slice(&h.qform_code.to_le_bytes());
    out.extend_from_slice(&h.sform_code.to_le_bytes());
    f32s(
        &mut out,
        &[
            h.quatern_b,
            h.quatern_c,
            h.quatern_d,
            h.quatern_x,
            h.quatern_y,
            h.quatern_z,
        ],
    );
    f32s(&mut out, &h.srow_x);
    f32s(&mut out, &h.srow_y);
    f32s(&mut out, &h.srow_z);
    fixed::<16>(&mut out, &h.intent_name);
    fixed::<4>(&mut out, &h.magic);
    debug_assert_eq!(out.len(), HEADER_SIZE);
    // No extensions follow.
    out.extend_from_slice(&[0; 4]);
    out
}

/// Write `volume` as NIfTI-1 (gzip-compressed when the name ends in `.gz`), atomically.
pub fn write<T: NiftiElement>(volume: &Volume<T>, path: &Path) -> Result<(), DataError> {
    if volume.shape().iter().any(|&d| d > i16::MAX as usize) {
        return Err(DataError::invalid(
            path,
            format!(
                "shape {:?} exceeds the NIfTI-1 limit of 32767 per axis",
                volume.shape()
            ),
        ));
    }
    let mut bytes = header_bytes(&output_header(volume));
    // NIfTI stores the first axis fastest: walk the array with its axes reversed.
    T::extend_le_bytes(volume.data.t().iter().copied(), &mut bytes);
    let gzip = path.to_string_lossy().ends_with(".gz");
    crate::io_util::write_atomic_with(path, |w| {
        if gzip {
            let mut encoder = GzEncoder::new(w, Compression::new(6));
            encoder.write_all(&bytes)?;
            encoder.finish().map(|_| ())
        } else {
            w.write_all(&bytes)
        }
    })
    .map_err(DataError::from)
}
