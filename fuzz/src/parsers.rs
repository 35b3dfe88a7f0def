// The checks of the parser fuzz targets (`fuzz_targets/{admin,ipvsadm,config}.rs`), shared with
// the stable replay of their corpora (gateway/tests/fuzz_replay_parsers.rs), which includes this
// file. Beyond "no panic, whatever the bytes", each asserts a property of what it accepted.

use gateway::control::ipvsadm::{self, Names};
use gateway::control::model::Model;
use gateway::control::proto;

/// The admin protocol's request parser: any bytes are a request or an error naming the problem;
/// an accepted request, written back as JSON, parses to the same request.
pub fn check_request(data: &[u8]) {
    match proto::parse_request(data) {
        Ok(req) => {
            let again = serde_json::to_vec(&req).expect("a request serialises");
            let back = proto::parse_request(&again).expect("a written request parses back");
            assert_eq!(back, req);
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

/// Names as a small /etc/services and /etc/hosts give them.
fn names() -> Names {
    Names::from_files("http 80/tcp\ndomain 53/udp\n", "10.20.0.11 rs1\n")
}

/// ipvsadm's argument parser (the first line, split on white space) and `-R` input (the whole):
/// never a panic; every change of an accepted rule file names a line of the input, and applying
/// the changes to an empty model either works or says why.
pub fn check_ipvsadm(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let names = names();
    let args: Vec<String> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    let _ = ipvsadm::parse(&args, &names);
    if let Ok(changes) = ipvsadm::parse_restore(&text, &names) {
        let lines = text.lines().count();
        let mut model = Model::default();
        for (line, change) in &changes {
            assert!(*line <= lines, "change at line {line} of {lines}");
            if let Err(e) = model.apply(change) {
                assert!(!e.is_empty());
            }
        }
    }
}

/// The config loader: any text is a config or an error naming a key; a config that validates
/// builds its service table.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match gateway::config::Config::parse(text) {
        Ok(c) => {
            if let Ok(v) = c.validate() {
                let _ = gateway::forward::ServiceTable::new(1, v.services, None);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
