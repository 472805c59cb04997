//! Morphology against brute-force definitions on small random masks: the distance transform
//! against an all-pairs search, surfaces against an erosion by shifted slices, and connected
//! components against a breadth-first flood fill.

use std::collections::VecDeque;

use ndarray::{Array3, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use semisam::morphology::{
    Connectivity, distance_transform, label_components, largest_component, surface,
};

fn random_mask(rng: &mut ChaCha8Rng, shape: (usize, usize, usize), density: f64) -> Array3<bool> {
    Array3::from_shape_fn(shape, |_| rng.gen_bool(density))
}

fn brute_force_distances(mask: &Array3<bool>, spacing: [f64; 3]) -> Array3<f64> {
    let features: Vec<[f64; 3]> = mask
        .indexed_iter()
        .filter(|(_, v)| **v)
        .map(|((i, j, k), _)| {
            [
                i as f64 * spacing[0],
                j as f64 * spacing[1],
                k as f64 * spacing[2],
            ]
        })
        .collect();
    Array3::from_shape_fn(mask.dim(), |(i, j, k)| {
        let at = [
            i as f64 * spacing[0],
            j as f64 * spacing[1],
            k as f64 * spacing[2],
        ];
        features
            .iter()
            .map(|f| {
                ((at[0] - f[0]).powi(2) + (at[1] - f[1]).powi(2) + (at[2] - f[2]).powi(2)).sqrt()
            })
            .fold(f64::INFINITY, f64::min)
    })
}

#[test]
fn distance_transform_matches_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0;
    for (shape, density) in [
        ((7, 9, 5), 0.05),
        ((12, 6, 10), 0.01),
        ((5, 5, 5), 0.5),
        ((1, 8, 13), 0.1),
        ((10, 11, 3), 0.002),
    ] {
        for _ in 0..4 {
            let mask = random_mask(&mut rng, shape, density);
            let spacing = [
                rng.gen_range(0.3..3.0),
                rng.gen_range(0.3..3.0),
                rng.gen_range(0.3..3.0),
            ];
            let fast = distance_transform(mask.view(), spacing);
            let slow = brute_force_distances(&mask, spacing);
            for ((index, a), b) in fast.indexed_iter().zip(slow.iter()) {
                if b.is_infinite() {
                    assert!(a.is_infinite(), "{index:?}: {a} vs infinity");
                } else {
                    assert!(
                        (a - b).abs() <= 1e-12 * b.max(1.0),
                        "{shape:?} {spacing:?} {index:?}: {a} vs {b}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 5000);
}

#[test]
fn distance_transform_of_a_single_voxel_line_uses_the_spacing_of_each_axis() {
    let mut mask = Array3::from_elem((3, 4, 5), false);
    mask[[0, 0, 0]] = true;
    let d = distance_transform(mask.view(), [0.5, 2.0, 3.0]);
    assert!((d[[2, 0, 0]] - 1.0).abs() < 1e-12);
    assert!((d[[0, 3, 0]] - 6.0).abs() < 1e-12);
    assert!((d[[0, 0, 4]] - 12.0).abs() < 1e-12);
    assert!((d[[2, 3, 4]] - (1.0f64 + 36.0 + 144.0).sqrt()).abs() < 1e-12);
}

#[test]
fn surface_is_the_mask_minus_its_six_connected_erosion() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for density in [0.3, 0.7, 0.95] {
        let mask = random_mask(&mut rng, (8, 7, 6), density);
        // Erosion by shifted slices over a false-padded copy.
        let (ni, nj, nk) = mask.dim();
        let mut padded = Array3::from_elem((ni + 2, nj + 2, nk + 2), false);
        padded
            .slice_mut(s![1..ni + 1, 1..nj + 1, 1..nk + 1])
            .assign(&mask);
        let mut eroded = mask.clone();
        for window in [
            s![0..ni, 1..nj + 1, 1..nk + 1],
            s![2..ni + 2, 1..nj + 1, 1..nk + 1],
            s![1..ni + 1, 0..nj, 1..nk + 1],
            s![1..ni + 1, 2..nj + 2, 1..nk + 1],
            s![1..ni + 1, 1..nj + 1, 0..nk],
            s![1..ni + 1, 1..nj + 1, 2..nk + 2],
        ] {
            eroded.zip_mut_with(&padded.slice(window), |e, &n| *e = *e && n);
        }
        let expected = &mask ^ &eroded;
        assert_eq!(
            surface(mask.view(), [true; 3]),
            expected,
            "density {density}"
        );
    }
}

fn flood_fill_sizes(mask: &Array3<bool>, connectivity: Connectivity) -> Vec<usize> {
    let (ni, nj, nk) = mask.dim();
    let reach: isize = 1;
    let mut seen = Array3::from_elem(mask.dim(), false);
    let mut sizes = Vec::new();
    for ((i, j, k), &v) in mask.indexed_iter() {
        if !v || seen[[i, j, k]] {
            continue;
        }
        let mut queue = VecDeque::from([[i, j, k]]);
        seen[[i, j, k]] = true;
        let mut size = 0;
        while let Some([a, b, c]) = queue.pop_front() {
            size += 1;
            for da in -reach..=reach {
                for db in -reach..=reach {
                    for dc in -reach..=reach {
                        let steps = da.abs() + db.abs() + dc.abs();
                        let allowed = match connectivity {
                            Connectivity::Face => steps == 1,
                            Connectivity::Full => steps >= 1,
                        };
                        let (x, y, z) = (a as isize + da, b as isize + db, c as isize + dc);
                        if !allowed
                            || x < 0
                            || y < 0
                            || z < 0
                            || x >= ni as isize
                            || y >= nj as isize
                            || z >= nk as isize
                        {
                            continue;
                        }
                        let n = [x as usize, y as usize, z as usize];
                        if mask[n] && !seen[n] {
                            seen[n] = true;
                            queue.push_back(n);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    sizes
}

#[test]
fn components_match_flood_fill_for_both_connectivities() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for density in [0.1, 0.25, 0.4] {
        let mask = random_mask(&mut rng, (9, 8, 7), density);
        for connectivity in [Connectivity::Face, Connectivity::Full] {
            let (labels, sizes) = label_components(mask.view(), connectivity);
            // Flood fill visits components in raster order of their first voxel, as labels do.
            assert_eq!(
                sizes,
                flood_fill_sizes(&mask, connectivity),
                "{connectivity:?} density {density}"
            );
            for (l, &size) in sizes.iter().enumerate() {
                assert_eq!(labels.iter().filter(|&&x| x == l as u32 + 1).count(), size);
            }
            assert_eq!(
                labels.iter().filter(|&&x| x == 0).count(),
                mask.iter().filter(|&&v| !v).count()
            );
            let largest = largest_component(mask.view(), connectivity);
            assert_eq!(
                largest.iter().filter(|&&v| v).count(),
                sizes.iter().copied().max().unwrap_or(0)
            );
        }
    }
}
