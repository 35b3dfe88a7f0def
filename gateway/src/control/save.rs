//! `gwctl save`: the configuration file the daemon started from, with its `[[service]]` sections
//! replaced by the services as they run now. Every other section is kept as it was (comments are
//! not: the file is rewritten from its parsed form). The result is checked to be a configuration
//! the daemon accepts before it is handed out.

use crate::config::{Config, ServiceEntry};

/// `text` (a configuration file) with `services` instead of its own.
pub fn config_with_services(text: &str, services: &[ServiceEntry]) -> Result<String, String> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("configuration file: {e}"))?;
    table.remove("service");
    let svc = toml::Value::try_from(services).map_err(|e| format!("services: {e}"))?;
    if !services.is_empty() {
        table.insert("service".into(), svc);
    }
    let out = toml::to_string(&table).map_err(|e| e.to_string())?;
    let header =
        "# Written by `gwctl save`: the running services over the daemon's configuration file.\n";
    let out = format!("{header}{out}");
    Config::parse(&out).map_err(|e| format!("the saved configuration does not validate: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[eal]
file_prefix = "t"
[[port]]
name = "client"
device = "net_ring0"
addresses = ["10.10.0.1/24"]
[[port]]
name = "server"
device = "net_ring1"
addresses = ["10.20.0.1/24"]
[[service]]
vip = "10.10.0.100"
port = 80
scheduler = "wrr"
local_addresses = ["10.20.0.200"]
[[service.real]]
address = "10.20.0.11"
"#;

    #[test]
    fn saved_config_parses_back_to_the_same_services() {
        let c = Config::parse(BASE).unwrap();
        let mut services = c.services.clone();
        services[0].reals[0].weight = 7;
        services[0].persistence_s = Some(60);
        let out = config_with_services(BASE, &services).unwrap();
        let back = Config::parse(&out).unwrap();
        assert_eq!(back.services, services);
        assert_eq!(back.ports.len(), 2);
        assert_eq!(back.eal.file_prefix, "t");
        let none = config_with_services(BASE, &[]).unwrap();
        assert!(Config::parse(&none).unwrap().services.is_empty());
    }
}
