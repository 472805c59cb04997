//! Every profile shipped in configs/ must stay valid as the configuration schema evolves.

use semisam::training::RunConfig;

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
                name.ends_with("_semisam"),
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
            "la_paper"
        ]
    );
}
