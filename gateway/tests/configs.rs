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

/// Every key of the schema, taken from the schema itself: a config using every section (one port,
/// route, service and real server) serialised, keys collected at every depth.
#[test]
fn every_key_of_the_schema_is_documented() {
    /// Leaf keys, and section keys (tables and arrays of tables) marked with a trailing '.'.
    fn keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let section = x.is_object()
                        || x.as_array()
                            .is_some_and(|a| a.iter().any(|e| e.is_object()));
                    out.insert(if section { format!("{k}.") } else { k.clone() });
                    keys(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(conf_dir().join("lab.toml")).unwrap()
        + "\n[[route]]\nprefix = \"10.30.0.0/16\"\nvia = \"10.20.0.254\"\nport = \"server\"\n";
    let c = Config::parse(&text).unwrap();
    assert!(!c.routes.is_empty() && !c.services.is_empty() && !c.services[0].reals.is_empty());
    let mut all = std::collections::BTreeSet::new();
    keys(&serde_json::to_value(&c).unwrap(), &mut all);
    assert!(all.len() > 60, "{all:?}");
    let doc = std::fs::read_to_string(conf_dir().join("README.md")).unwrap();
    // A leaf as `key`; a section as a heading `[key]`, `[[key]]`, `[[parent.key]]` or as `key.*`.
    let documented = |k: &String| match k.strip_suffix('.') {
        Some(s) => {
            doc.contains(&format!("[{s}]"))
                || doc.contains(&format!(".{s}]"))
                || doc.contains(&format!("`{s}.*`"))
        }
        None => doc.contains(&format!("`{k}`")),
    };
    let missing: Vec<_> = all.iter().filter(|k| !documented(k)).collect();
    assert!(
        missing.is_empty(),
        "keys not documented in conf/README.md: {missing:?}"
    );
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
