//! Every example config shipped in conf/ is valid, and every key the schema accepts is documented in
//! conf/README.md.

use gateway::config::Config;
use std::path::PathBuf;

fn conf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

#[test]
fn every_example_config_validates() {
    let mut n = 0;
    for e in std::fs::read_dir(conf_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let c = Config::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            c.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "conf/ has example configs");
}

#[test]
fn every_key_in_the_examples_is_documented() {
    let doc = std::fs::read_to_string(conf_dir().join("README.md")).unwrap();
    for e in std::fs::read_dir(conf_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with('[') || !line.contains('=') {
                continue;
            }
            let key = line.split('=').next().unwrap().trim();
            assert!(
                doc.contains(&format!("`{key}`")),
                "{}: key `{key}` is not documented in conf/README.md",
                p.display()
            );
        }
    }
}
