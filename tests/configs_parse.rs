//! Every profile shipped in configs/ must stay valid as the configuration schema evolves.

use semisam::training::RunConfig;
use semisam::training::config::Protocol;

#[test]
fn shipped_profiles_parse_and_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config =
                RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                config.sam.is_some(),
                name.contains("_semisam"),
                "{name}: [sam] section"
            );
            checked.push(name);
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "hippocampus_cpu",
            "hippocampus_cpu_semisam",
            "la_cpu",
            "la_cpu_sammed3d_semisam",
            "la_cpu_semisam",
            "la_cpu_semisam_pool",
            "la_paper"
        ]
    );
}

#[test]
fn the_pool_profile_is_the_semisam_profile_plus_a_folder_of_label_free_scans() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let pool = RunConfig::load(&dir.join("la_cpu_semisam_pool.toml"), &[]).unwrap();
    assert_eq!(pool.data.protocol, Protocol::Paper);
    assert_eq!((pool.data.labeled, pool.data.validation), (Some(2), 4));
    assert_eq!(
        pool.data.unlabeled_root.as_deref(),
        Some(std::path::Path::new("data/LA-unlabeled"))
    );
    let mut semisam = RunConfig::load(&dir.join("la_cpu_semisam.toml"), &[]).unwrap();
    semisam.data.unlabeled_root = pool.data.unlabeled_root.clone();
    assert_eq!(pool, semisam);
}
