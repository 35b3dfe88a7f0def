//! End-to-end tests of the admin socket against a running gateway in the lab: `ipvsadm` (gwctl called
//! through a link of that name) with its outputs checked byte for byte, errors, the seeds' command
//! lines verbatim, live changes, save/clear/restore, concurrent clients, malformed requests, and a
//! non-root user.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gwctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gwctl")
}

/// A link named `ipvsadm` to gwctl, so the binary answers as ipvsadm.
fn ipvsadm_bin() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("ipvsadm");
    if !link.exists() {
        let _ = std::os::unix::fs::symlink(gwctl_bin(), &link);
    }
    link
}

struct Admin {
    lab: Lab,
    sock: String,
}

impl Admin {
    fn up(tag: &str, services: &str) -> Admin {
        let lab = Lab::up(tag, &Lab::config_with_services(services));
        let sock = format!("/run/gateway/{}.sock", lab.name);
        Admin { lab, sock }
    }

    fn ipvsadm_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(ipvsadm_bin())
            .args(args)
            .env("GATEWAY_SOCKET", &self.sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut i = c.stdin.take().unwrap();
        i.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(i);
        c.wait_with_output().unwrap()
    }

    /// `ipvsadm ARGS` (a whitespace-separated line), asserting success; returns stdout.
    fn ok(&self, line: &str) -> String {
        let args: Vec<&str> = line.split_whitespace().collect();
        let o = self.ipvsadm_in(&args, None);
        assert!(
            o.status.success(),
            "ipvsadm {line} failed: {}\n{}",
            err_of(&o),
            self.lab.log()
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// `ipvsadm ARGS`, asserting failure with `code`; returns stderr.
    fn fails(&self, line: &str, code: i32) -> String {
        let args: Vec<&str> = line.split_whitespace().collect();
        let o = self.ipvsadm_in(&args, None);
        assert_eq!(
            o.status.code(),
            Some(code),
            "ipvsadm {line}: {}",
            err_of(&o)
        );
        err_of(&o)
    }

    fn gwctl(&self, args: &[&str]) -> Output {
        Command::new(gwctl_bin())
            .args(["--socket", &self.sock])
            .args(args)
            .output()
            .unwrap()
    }

    fn gw_ok(&self, args: &[&str]) -> String {
        let o = self.gwctl(args);
        assert!(o.status.success(), "gwctl {args:?} failed: {}", err_of(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    fn rules(&self) -> String {
        self.ok("-Sn")
    }

    fn generation(&self) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.gw_ok(&["--json", "status"])).unwrap();
        v["generation"].as_u64().unwrap()
    }

    /// One raw protocol exchange: sends `bytes` (then closes the write side if `close`), returns the
    /// response line.
    fn raw(&self, bytes: &[u8], close: bool) -> serde_json::Value {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(bytes);
        if close {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

fn err_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const HEAD: &str = "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

#[test]
fn ipvsadm_commands_formats_and_errors() {
    let a = Admin::up("ad", "");
    let version = "IP Virtual Server version 1.2.1 (size=131072)\n";
    assert_eq!(a.ok("-Ln"), format!("{version}{HEAD}"));

    a.ok("-A -t 10.10.0.100:80 -s wrr");
    a.ok("-P -t 10.10.0.100:80 -z 10.20.0.200 -F server");
    a.ok("-a -t 10.10.0.100:80 -r 10.20.0.11:80 -b -w 2");
    a.ok("-a -t 10.10.0.100:80 -r 10.20.0.12 -b -w 1 -x 100 -y 50");
    a.ok("--add-service --udp-service 10.10.0.53:53 --scheduler sh -b sh-fallback,sh-port -p 60 -M 255.255.255.0");
    a.ok("-a -u 10.10.0.53:53 -r 10.20.0.11:5353 -m -w 1");
    a.ok("-A -t 10.10.0.101:8080");
    a.ok("-a -t 10.10.0.101:8080 -r 10.20.0.12 -g");
    let tcp = "TCP  10.10.0.100:80 wrr\n\
               \x20 -> 10.20.0.11:80                FullNat 2      0          0         \n\
               \x20 -> 10.20.0.12:80                FullNat 1      0          0         \n";
    let udp = "UDP  10.10.0.53:53 sh (sh-fallback,sh-port) persistent 60 mask 255.255.255.0\n\
               \x20 -> 10.20.0.11:5353              Masq    1      0          0         \n";
    let dr = "TCP  10.10.0.101:8080 wlc\n\
              \x20 -> 10.20.0.12:8080              Route   1      0          0         \n";
    assert_eq!(a.ok("-Ln"), format!("{version}{HEAD}{tcp}{udp}{dr}"));
    assert_eq!(a.ok("-l -n"), a.ok("-Ln"));
    // Without -n, ports by their /etc/services names.
    assert!(
        a.ok("-L").contains("TCP  10.10.0.100:http wrr\n"),
        "{}",
        a.ok("-L")
    );
    // One service; --sort.
    assert_eq!(a.ok("-Ln -t 10.10.0.101:8080"), format!("{HEAD}{dr}"));
    assert_eq!(a.ok("-Ln --sort"), format!("{version}{HEAD}{tcp}{dr}{udp}"));
    assert_eq!(
        a.ok("-Ln --thresholds -t 10.10.0.100:80"),
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn\n  -> RemoteAddress:Port\n\
         TCP  10.10.0.100:80 wrr\n\
         \x20 -> 10.20.0.11:80                0          0          0          0         \n\
         \x20 -> 10.20.0.12:80                100        50         0          0         \n"
    );
    let stats = a.ok("-Ln --stats --exact -t 10.10.0.100:80");
    assert_eq!(
        stats.lines().take(3).collect::<Vec<_>>(),
        vec![
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  10.10.0.100:80                      0        0        0        0        0",
        ]
    );
    let rate = a.ok("-Ln --rate");
    assert!(
        rate.contains(
            "\nProt LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
        ),
        "{rate}"
    );
    assert_eq!(
        a.ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    let g = a.ok("-G -t 10.10.0.100:80");
    assert_eq!(
        g,
        "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     \n\
         10.10.0.100:80       1        \n\
         \x20                             10.20.0.200          0          0         \n"
    );
    let rules = "-A -t 10.10.0.100:80 -s wrr\n\
                 -P -t 10.10.0.100:80 -z 10.20.0.200\n\
                 -a -t 10.10.0.100:80 -r 10.20.0.11:80 -b -w 2\n\
                 -a -t 10.10.0.100:80 -r 10.20.0.12:80 -b -w 1 -x 100 -y 50\n\
                 -A -u 10.10.0.53:53 -s sh -b sh-fallback,sh-port -p 60 -M 255.255.255.0\n\
                 -a -u 10.10.0.53:53 -r 10.20.0.11:5353 -m -w 1\n\
                 -A -t 10.10.0.101:8080 -s wlc\n\
                 -a -t 10.10.0.101:8080 -r 10.20.0.12:8080 -g -w 1\n";
    assert_eq!(a.rules(), rules);
    assert!(a.ok("-S").contains("-A -t 10.10.0.100:http -s wrr\n"));

    // Errors: a message naming the problem, exit 1 (refused) or 2 (bad command line); nothing changes.
    let gen = a.generation();
    let e = a.fails("-A -t 10.10.0.102:80 -s foo", 1);
    assert!(
        e.contains("Scheduler or persistence engine not found") && e.contains("`foo`"),
        "{e}"
    );
    assert!(a
        .fails("-A -t 10.10.0.100:80 -s rr", 1)
        .contains("Service already exists: TCP 10.10.0.100:80"));
    assert!(a
        .fails("-a -t 10.10.0.100:80 -r 10.20.0.11:80 -b", 1)
        .contains("Destination already exists"));
    assert!(a
        .fails("-d -t 10.10.0.100:80 -r 10.20.0.99", 1)
        .contains("No such destination: 10.20.0.99:80"));
    assert!(a
        .fails("-e -t 10.10.0.100:80 -r 10.20.0.99:80 -b -w 3", 1)
        .contains("No such destination"));
    assert!(a
        .fails("-D -t 10.10.0.199:80", 1)
        .contains("No such service: TCP 10.10.0.199:80"));
    assert!(a
        .fails("-a -t 10.10.0.199:80 -r 10.20.0.11", 1)
        .contains("No such service"));
    assert!(a
        .fails("-Ln -t 10.10.0.199:80", 1)
        .contains("No such service"));
    let e = a.fails("-a -t 10.10.0.101:8080 -r 10.20.0.11 -b", 1);
    assert!(
        e.contains("service TCP 10.10.0.101:8080") && e.contains("local address"),
        "{e}"
    );
    assert!(a
        .fails("-Q -t 10.10.0.100:80 -z 10.20.0.250", 1)
        .contains("No such local address"));
    assert!(a
        .fails("-P -t 10.10.0.100:80 -z 10.99.0.1", 1)
        .contains("on no port's subnet"));
    assert!(a
        .fails("-A -t 10.10.0.300:80", 2)
        .contains("illegal virtual server address[:port] specified"));
    assert!(a
        .fails("-A -t 10.10.0.102:99999", 2)
        .contains("illegal virtual server address[:port] specified"));
    assert!(a
        .fails("-A -t 10.10.0.102", 2)
        .contains("illegal virtual server address[:port] specified"));
    assert!(a
        .fails("-a -t 10.10.0.100:80 -r 10.20.0.13:0", 2)
        .contains("illegal real server address[:port] specified"));
    assert!(a
        .fails("-a -t 10.10.0.100:80 -r 10.20.0.13 -w 65536", 2)
        .contains("illegal weight specified"));
    assert!(a.fails("-K", 2).contains("unknown option: -K"));
    assert!(a
        .fails("--set 1 2", 2)
        .contains("--set needs three timeouts"));
    assert_eq!(a.rules(), rules, "refused commands changed nothing");
    assert_eq!(
        a.generation(),
        gen,
        "no generation was sent for refused commands"
    );

    // Edits and deletions.
    a.ok("-E -t 10.10.0.101:8080 -s rr -p");
    a.ok("-e -t 10.10.0.100:80 -r 10.20.0.12:80 -b -w 5");
    a.ok("-d -t 10.10.0.100:80 -r 10.20.0.11:80");
    a.ok("-D -u 10.10.0.53:53");
    // The last local address of a service with a FullNAT server cannot go.
    let e = a.fails("-Q -t 10.10.0.100:80 -z 10.20.0.200", 1);
    assert!(e.contains("needs at least one local address"), "{e}");
    let now = a.rules();
    assert!(
        now.contains("-A -t 10.10.0.101:8080 -s rr -p 300\n"),
        "{now}"
    );
    // -e gives the whole server again, as ipvsadm: thresholds not repeated are cleared.
    assert!(
        now.contains("-a -t 10.10.0.100:80 -r 10.20.0.12:80 -b -w 5\n"),
        "{now}"
    );
    assert!(!now.contains("10.10.0.53"), "{now}");
    a.ok("-C");
    assert_eq!(a.ok("-Ln"), format!("{version}{HEAD}"));
    assert_eq!(a.ok("-Z"), "");
    assert!(a.ok("-h").contains("--add-service"));
}

#[test]
fn seeds_commands_verbatim() {
    let a = Admin::up("as", "");
    // The seed's section 2-7, in its order: -C empties the table, so the -a/-d/-e after it find no
    // service, exactly as with ipvsadm.
    a.ok("-A -t 192.16.1.16:80 -s rr");
    assert!(a.ok("-Ln").contains("TCP  192.16.1.16:80 rr\n"));
    a.ok("-E -t 192.16.1.16:80 -s wlc");
    assert!(a.ok("-Ln").contains("TCP  192.16.1.16:80 wlc\n"));
    a.ok("-C");
    for line in [
        "-a -t 192.16.1.16:80 -r 192.16.1.11 -g -w 1",
        "-a -t 192.16.1.16:80 -r 192.16.1.15 -g -w 1",
        "-d -t 192.16.1.16:80 -r 192.16.0.11",
        "-e -t 192.16.1.16:80 -r 192.16.0.11:80 -m -w 2",
    ] {
        assert!(a.fails(line, 1).contains("No such service"), "{line}");
    }
    // The same lines with the service in place: the two -a work; the seed's -d/-e name 192.16.0.11,
    // which was never added.
    a.ok("-A -t 192.16.1.16:80 -s rr");
    a.ok("-E -t 192.16.1.16:80 -s wlc");
    a.ok("-a -t 192.16.1.16:80 -r 192.16.1.11 -g -w 1");
    a.ok("-a -t 192.16.1.16:80 -r 192.16.1.15 -g -w 1");
    assert!(a
        .fails("-d -t 192.16.1.16:80 -r 192.16.0.11", 1)
        .contains("No such destination"));
    assert!(a
        .fails("-e -t 192.16.1.16:80 -r 192.16.0.11:80 -m -w 2", 1)
        .contains("No such destination"));
    a.ok("-e -t 192.16.1.16:80 -r 192.16.1.11:80 -m -w 2");
    let svc = "TCP  192.16.1.16:80 wlc\n\
               \x20 -> 192.16.1.11:80               Masq    2      0          0         \n\
               \x20 -> 192.16.1.15:80               Route   1      0          0         \n";
    assert!(
        a.ok("-Ln").ends_with(&format!("{HEAD}{svc}")),
        "{}",
        a.ok("-Ln")
    );
    let conns = a.ok("-Lcn");
    assert!(conns.starts_with("IPVS connection entries\npro expire state       source             virtual            destination\n"));
    assert!(a.ok("-L --rate").contains("TCP  192.16.1.16:http"));
    assert!(a.ok("-L --sort").contains("TCP  192.16.1.16:http wlc\n"));
    let row = format!(
        "  -> {:<28}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
        "192.16.1.11:http", 0, 0, 0, 0, 0
    );
    assert!(a.ok("-L --stats").contains(&row), "{}", a.ok("-L --stats"));
    assert_eq!(
        a.ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    let saved = a.ok("-Sn");
    assert_eq!(
        saved,
        "-A -t 192.16.1.16:80 -s wlc\n-a -t 192.16.1.16:80 -r 192.16.1.11:80 -m -w 2\n-a -t 192.16.1.16:80 -r 192.16.1.15:80 -g -w 1\n"
    );
    // The seed's systemd unit: -C on stop, -R at boot.
    a.ok("-C");
    let o = a.ipvsadm_in(&["-R"], Some(&saved));
    assert!(o.status.success(), "{}", err_of(&o));
    assert_eq!(a.ok("-Sn"), saved);
    a.ok("-Z");
}

#[test]
fn save_clear_restore_reproduces_the_state_and_restore_is_all_or_nothing() {
    let a = Admin::up("ar", "");
    for line in [
        "-A -t 10.10.0.100:80 -s wrr",
        "-P -t 10.10.0.100:80 -z 10.20.0.200",
        "-P -t 10.10.0.100:80 -z 10.20.0.201",
        "-a -t 10.10.0.100:80 -r 10.20.0.11 -b -w 1",
        "-a -t 10.10.0.100:80 -r 10.20.0.12 -b -w 2 -x 10 -y 5",
        "-A -t 10.10.0.100:8080 -s mh -b mh-port -p 120",
        "-P -t 10.10.0.100:8080 -z 10.20.0.200",
        "-a -t 10.10.0.100:8080 -r 10.20.0.11:8080 -b -w 3",
        "-A -u 10.10.0.100:53 -s lc",
        "-a -u 10.10.0.100:53 -r 10.20.0.12 -m",
    ] {
        a.ok(line);
    }
    let s1 = a.ok("-Sn");
    let l1 = a.ok("-Ln");
    a.ok("-C");
    assert_eq!(a.ok("-Sn"), "");
    let o = a.ipvsadm_in(&["-R"], Some(&s1));
    assert!(o.status.success(), "{}", err_of(&o));
    assert_eq!(a.ok("-Sn"), s1);
    assert_eq!(a.ok("-Ln"), l1);

    // Traffic works through the restored FullNAT service.
    let out = a.lab.sh(
        "cli",
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do curl -sf --max-time 5 http://10.10.0.100/; done",
        ],
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("rs")).count(),
        3,
        "{out}"
    );

    // A restore whose third line is refused changes nothing, and says which line.
    let gen = a.generation();
    let bad = "-C\n-A -t 10.10.0.99:80 -s rr\n-a -t 10.10.0.98:80 -r 10.20.0.11\n";
    let o = a.ipvsadm_in(&["-R"], Some(bad));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err_of(&o).starts_with("line 3: No such service"),
        "{}",
        err_of(&o)
    );
    let bad = "-A -t 10.10.0.99:80 -s rr\n-A -t 10.10.0.99:80 -s nope\n";
    let o = a.ipvsadm_in(&["-R"], Some(bad));
    assert!(
        err_of(&o).starts_with("line 2: Service already exists"),
        "{}",
        err_of(&o)
    );
    let o = a.ipvsadm_in(&["-R"], Some("-A -t 10.10.0.97:80\n-L\n"));
    assert_eq!(o.status.code(), Some(2));
    assert!(err_of(&o).starts_with("line 2:"), "{}", err_of(&o));
    assert_eq!(a.ok("-Sn"), s1);
    assert_eq!(a.generation(), gen);

    // conf/gateway.service: ExecStop saves the rules, ExecStartPost restores them over whatever the
    // configuration started with (run here with the lab's socket and a scratch /etc/gateway).
    let unit = std::fs::read_to_string(repo_root().join("conf/gateway.service")).unwrap();
    let etc = a.lab.run_dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let unit_cmd = |key: &str| {
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"));
        let line = line
            .replace("/usr/local/sbin/gwctl", gwctl_bin())
            .replace("/etc/gateway", etc.to_str().unwrap());
        let o = Command::new("sh")
            .args(["-c", &line])
            .env("GATEWAY_SOCKET", &a.sock)
            .output()
            .unwrap();
        assert!(o.status.success(), "{key} {line}: {}", err_of(&o));
    };
    unit_cmd("ExecStop=");
    assert_eq!(std::fs::read_to_string(etc.join("rules")).unwrap(), s1);
    a.ok("-C");
    a.ok("-A -t 10.10.0.100:80 -s rr");
    unit_cmd("ExecStartPost=");
    assert_eq!(a.ok("-Sn"), s1);

    // gwctl save: a configuration the daemon accepts, with the running services.
    let path = a.lab.run_dir.join("saved.toml");
    a.gw_ok(&["save", path.to_str().unwrap()]);
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = gateway::config::Config::parse(&text).unwrap();
    assert_eq!(cfg.services.len(), 3);
    assert_eq!(cfg.services[1].scheduler, "mh");
    assert_eq!(cfg.services[1].persistence_s, Some(120));
    let o = Command::new(gateway_bin())
        .args(["--check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_of(&o));

    // Persistence end to end, and its templates listed as ipvsadm lists IPVS's: the client's
    // first connection to :8080 made its template to rs1; rs2 then joins with rs1's weight, and
    // mh-port (which alone would send about half the new connections there, all 8 to rs1 once in
    // 256 runs) is overruled by the template for as long as it lives.
    let curl8080 = |n: usize| {
        a.lab.sh(
            "cli",
            &[
                "sh",
                "-c",
                &format!(
                    "for i in $(seq {n}); do curl -sf --max-time 5 http://10.10.0.100:8080/; done"
                ),
            ],
        )
    };
    assert_eq!(curl8080(1).trim(), "rs1");
    a.ok("-a -t 10.10.0.100:8080 -r 10.20.0.12:8080 -b -w 3");
    let out = curl8080(8);
    assert_eq!(out.lines().filter(|l| *l == "rs1").count(), 8, "{out}");
    let listed = a.ok("-Lnc");
    let templates: Vec<&str> = listed.lines().filter(|l| l.contains(" NONE ")).collect();
    assert_eq!(templates.len(), 1, "{listed}");
    // "TCP 01:59  NONE        10.10.0.2:0        10.10.0.100:8080   10.20.0.11:8080   "
    let t = templates[0];
    assert!(
        t.starts_with("TCP 01:5")
            && t.ends_with("NONE        10.10.0.2:0        10.10.0.100:8080   10.20.0.11:8080   "),
        "{listed}"
    );
    // The JSON form counts the templates apart from the connections (`total`).
    let v: serde_json::Value =
        serde_json::from_str(&a.gw_ok(&["--json", "ipvsadm", "-Lnc"])).unwrap();
    let listed_templates = v["conns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["template"] == true)
        .count();
    assert_eq!(
        (v["templates"].as_u64(), listed_templates),
        (Some(1), 1),
        "{v}"
    );
    let pc = a.ok("-Ln --persistent-conn -t 10.10.0.100:8080");
    assert!(
        pc.contains("  -> 10.20.0.11:8080              3         1           0 "),
        "{pc}"
    );
}

/// A keep-alive HTTP client: one request now, one more per line on stdin; prints each body.

#[test]
fn live_change_applies_to_new_connections_while_existing_ones_continue() {
    let a = Admin::up("al", "");
    for line in [
        "-A -t 10.10.0.100:80 -s rr",
        "-P -t 10.10.0.100:80 -z 10.20.0.200",
        "-a -t 10.10.0.100:80 -r 10.20.0.11 -b",
        "-a -t 10.10.0.100:80 -r 10.20.0.12 -b",
    ] {
        a.ok(line);
    }
    // A keep-alive connection that reached rs1.
    let mut kept =
        KeepAlive::open_to(&a.lab, "rs1", 3).expect("no keep-alive connection reached rs1");
    let listed = a.ok("-Lnc");
    assert!(
        listed.lines().any(|l| l.starts_with("TCP ")
            && l.contains("ESTABLISHED 10.10.0.2:")
            && l.ends_with("10.20.0.11:80     ")),
        "{listed}"
    );
    assert!(
        a.ok("-Ln")
            .contains("  -> 10.20.0.11:80                FullNat 1      1          "),
        "{}",
        a.ok("-Ln")
    );
    let f = a.gw_ok(&["conns", "--state", "ESTABLISHED", "--rs", "10.20.0.11:80"]);
    assert!(
        f.contains("10.20.0.200:"),
        "the FullNAT local address is listed: {f}"
    );

    // Remove rs1: answered once every worker runs it.
    a.ok("-d -t 10.10.0.100:80 -r 10.20.0.11");
    let out = a.lab.sh(
        "cli",
        &[
            "sh",
            "-c",
            "for i in $(seq 1 10); do curl -sf --max-time 5 http://10.10.0.100/; done",
        ],
    );
    assert_eq!(out.lines().filter(|l| *l == "rs2").count(), 10, "{out}");
    for _ in 0..3 {
        assert_eq!(
            kept.get(),
            "rs1",
            "the existing connection still reaches rs1"
        );
    }
    drop(kept);
    // Rates and counters come from the workers.
    let stats = a.gw_ok(&["stats"]);
    assert!(
        stats.contains("conns_created") && stats.contains("drop reason"),
        "{stats}"
    );
    // Workers publish their counters every 100 ms: wait for the last connections to show.
    let created = || {
        let v: serde_json::Value = serde_json::from_str(&a.gw_ok(&["--json", "stats"])).unwrap();
        (v["total"]["counters"]["conns_created"].as_u64().unwrap(), v)
    };
    let t = Instant::now();
    while created().0 < 11 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (n, v) = created();
    assert!(n >= 11, "{v}");
    a.gw_ok(&["zero"]);
    let v: serde_json::Value = serde_json::from_str(&a.gw_ok(&["--json", "stats"])).unwrap();
    assert!(
        v["total"]["counters"]["conns_created"].as_u64().unwrap() < 11,
        "zeroed: {v}"
    );
    assert!(a.gw_ok(&["rate"]).starts_with("CPS "));
    let neigh = a.gw_ok(&["neigh"]);
    assert!(
        neigh.contains("10.20.0.12") && neigh.contains("server"),
        "{neigh}"
    );
    assert!(a
        .gw_ok(&["routes"])
        .contains("10.20.0.0/24 port server connected"));
    let addrs = a.gw_ok(&["addrs"]);
    assert!(
        addrs.contains("10.10.0.1/24") && addrs.contains("10.10.0.100 10.20.0.200"),
        "{addrs}"
    );
    assert!(a.gw_ok(&["help"]).contains("conns [FILTERS]"));
    // The interactive shell, fed from a pipe: gwctl commands and bare ipvsadm lines.
    let mut sh = Command::new(gwctl_bin())
        .args(["--socket", &a.sock])
        .env("HOME", &a.lab.run_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sh.stdin
        .take()
        .unwrap()
        .write_all(
            b"status\n-A -t 10.10.0.100:81 -s sh\nipvsadm -Ln -t 10.10.0.100:81\nbogus\nquit\n",
        )
        .unwrap();
    let o = sh.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("gateway ") && out.contains("TCP  10.10.0.100:81 sh\n"),
        "{out}"
    );
    assert!(
        err_of(&o).contains("unknown command `bogus`"),
        "{}",
        err_of(&o)
    );
    assert_eq!(a.gwctl(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn concurrent_clients_bad_requests_and_non_root() {
    let a = Admin::up("ac", "");
    a.ok("-A -t 10.10.0.100:80 -s rr");
    let gen0 = a.generation();

    // 20 clients at once, each adding its own service and a server to the shared one.
    let admin = &a;
    std::thread::scope(|s| {
        for i in 1..=20u32 {
            s.spawn(move || {
                admin.ok(&format!("-A -t 10.10.1.{i}:80 -s wrr"));
                admin.ok(&format!("-a -t 10.10.1.{i}:80 -r 10.20.0.11 -g -w {i}"));
                admin.ok(&format!(
                    "-a -t 10.10.0.100:80 -r 10.20.0.{} -g -w {i}",
                    100 + i
                ));
            });
        }
    });
    let rules = a.rules();
    for i in 1..=20 {
        assert!(
            rules.contains(&format!(
                "-A -t 10.10.1.{i}:80 -s wrr\n-a -t 10.10.1.{i}:80 -r 10.20.0.11:80 -g -w {i}\n"
            )),
            "{rules}"
        );
        assert!(
            rules.contains(&format!("-r 10.20.0.{}:80 -g -w {i}\n", 100 + i)),
            "{rules}"
        );
    }
    assert_eq!(rules.lines().count(), 1 + 20 + 40);
    assert_eq!(
        a.generation(),
        gen0 + 60,
        "one generation per change, none lost"
    );

    // Garbled, wrong-version and unknown requests: an error each, the connection stays usable.
    let mut s = UnixStream::connect(&a.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello there\n{\"v\":7,\"op\":\"list\"}\n{\"v\":1,\"op\":\"explode\"}\n{\"v\":1,\"op\":\"status\"}\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut replies = Vec::new();
    for _ in 0..4 {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        replies.push(serde_json::from_str::<serde_json::Value>(&l).unwrap());
    }
    assert!(
        replies[0]["error"]
            .as_str()
            .unwrap()
            .contains("malformed request"),
        "{:?}",
        replies[0]
    );
    assert!(replies[1]["error"]
        .as_str()
        .unwrap()
        .contains("unsupported protocol version 7"));
    assert!(replies[2]["error"]
        .as_str()
        .unwrap()
        .contains("malformed request"));
    assert_eq!(replies[3]["ok"], true);
    drop(s);

    // Truncated: a clear without its newline is not applied.
    let v = a.raw(
        br#"{"v":1,"op":"apply","changes":[{"change":"clear"}]}"#,
        true,
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("truncated request"),
        "{v}"
    );
    // Oversized (past the 64 MiB bound): refused before parsing, even though it would be valid.
    let mut big = br#"{"v":1,"op":"apply","changes":[{"change":"clear"}"#.to_vec();
    big.extend(std::iter::repeat_n(
        b' ',
        gateway::control::proto::MAX_REQUEST,
    ));
    big.extend_from_slice(b"]}\n");
    let v = a.raw(&big, false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("request too large"),
        "{v}"
    );
    // Valid JSON, invalid change (bypassing the client's checks): refused whole.
    let v = a.raw(
        br#"{"v":1,"op":"apply","changes":[{"change":"clear"},{"change":"add_service","svc":{"proto":"tcp","vip":"10.10.2.1","port":80},"opts":{"scheduler":"rr"}},{"change":"add_real","svc":{"proto":"tcp","vip":"10.10.2.1","port":80},"real":{"addr":"10.20.0.11","port":80,"weight":70000,"mode":"dr"}}]}
"#,
        false,
    );
    assert_eq!(v["at"], 2, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("illegal weight"),
        "{v}"
    );
    assert_eq!(a.rules(), rules, "bad requests changed nothing");

    // A stuck client (connected, silent) does not hold up the others.
    let _stuck = UnixStream::connect(&a.sock).unwrap();
    let mut half = UnixStream::connect(&a.sock).unwrap();
    half.write_all(b"{\"v\":1,").unwrap();
    let t = Instant::now();
    a.ok("-Ln");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let mut buf = [0u8; 1];
    half.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The half-sent request is closed by the server's timeout (without a reply): end of stream,
    // not our own read timeout.
    let t = Instant::now();
    assert!(matches!(half.read(&mut buf), Ok(0)), "closed by the server");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());

    // 200 idle connections cannot lock the operator out: the longest idle ones make room.
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&a.sock).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    a.ok("-Ln");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    drop(idle);
    // A connection listing with a filter and an absurd limit: bounded, filtered in the workers.
    let o = a.gwctl(&["conns", "--vip", "10.10.9.9", "--limit", "999999999999"]);
    assert!(o.status.success(), "{}", err_of(&o));

    // A non-root user is refused by the socket's mode.
    let meta = std::fs::metadata(&a.sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            ipvsadm_bin().to_str().unwrap(),
            "-C",
        ])
        .env("GATEWAY_SOCKET", &a.sock)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(err_of(&o).contains("Permission denied"), "{}", err_of(&o));
    assert_eq!(a.rules(), rules);

    // An idle client does not delay shutdown; the socket goes with the daemon.
    let _idle = UnixStream::connect(&a.sock).unwrap();
    assert!(
        a.lab.terminate_gateway(Duration::from_secs(3)),
        "{}",
        a.lab.log()
    );
    assert!(!std::path::Path::new(&a.sock).exists());
}

/// `services` NAT services of `reals` real servers each, as `ipvsadm -S -n` writes them.
fn rule_file(services: usize, reals: usize, sched: &str) -> String {
    let mut out = String::new();
    for s in 0..services {
        let vip = format!("10.100.{}.{}:80", s / 250, s % 250 + 1);
        out.push_str(&format!("-A -t {vip} -s {sched}\n"));
        for r in 0..reals {
            out.push_str(&format!("-a -t {vip} -r 10.20.0.{}:80 -m -w 1\n", 11 + r));
        }
    }
    out
}

/// A site-sized rule set (1,000 services x 10 NAT real servers, 11,000 lines): restored as one
/// generation, listed, saved, cleared and restored from the saved copy identically; a rule file whose
/// line 7,000 is bad restores nothing and names that line.
#[test]
fn a_thousand_services_restore_in_one_generation_and_round_trip() {
    let a = Admin::up("as", "");
    let rules = rule_file(1000, 10, "rr");
    assert_eq!(rules.lines().count(), 11_000);
    assert!(rules.len() > 400_000, "{} bytes", rules.len());
    let g0 = a.generation();
    let t = Instant::now();
    let o = a.ipvsadm_in(&["-R"], Some(&rules));
    let took = t.elapsed();
    assert!(o.status.success(), "restore failed: {}", err_of(&o));
    assert_eq!(a.generation(), g0 + 1, "one generation for the whole file");
    eprintln!("restore of 1,000 x 10: {took:?}");
    let list = a.ok("-Ln");
    assert_eq!(list.lines().filter(|l| l.starts_with("TCP ")).count(), 1000);
    assert_eq!(
        list.lines().filter(|l| l.contains(" Masq ")).count(),
        10_000
    );
    let saved = a.rules();
    assert_eq!(saved.lines().count(), 11_000);
    a.ok("-C");
    assert_eq!(a.rules(), "");
    let o = a.ipvsadm_in(&["-R"], Some(&saved));
    assert!(
        o.status.success(),
        "restore of the saved copy: {}",
        err_of(&o)
    );
    assert_eq!(a.rules(), saved, "the saved rules restore identically");

    // Line 7,000 refused: nothing restored, the line named.
    let mut bad: Vec<String> = rule_file(1000, 10, "rr")
        .lines()
        .map(|l| l.replace("10.100.", "10.101."))
        .collect();
    bad[6999] = bad[6999].replace("-w 1", "-w 70000");
    let o = a.ipvsadm_in(&["-R"], Some(&(bad.join("\n") + "\n")));
    assert!(!o.status.success());
    assert!(err_of(&o).contains("line 7000"), "{}", err_of(&o));
    assert_eq!(a.rules(), saved, "a refused restore changes nothing");
}

/// 500 single commands, each acknowledged by both workers before it returns.
#[test]
fn five_hundred_single_changes_are_each_acknowledged() {
    let a = Admin::up("a5", "");
    let g0 = a.generation();
    let t = Instant::now();
    for s in 0..250 {
        let vip = format!("10.100.0.{}:80", s + 1);
        a.ok(&format!("-A -t {vip} -s rr"));
        a.ok(&format!("-a -t {vip} -r 10.20.0.11:80 -m"));
    }
    let took = t.elapsed();
    assert_eq!(
        a.generation(),
        g0 + 500,
        "one acknowledged generation per command"
    );
    assert_eq!(
        a.ok("-Ln")
            .lines()
            .filter(|l| l.starts_with("TCP "))
            .count(),
        250
    );
    eprintln!("500 single ipvsadm commands: {took:?}");
}

/// `ipvsadm -Lnc` of a table with about a hundred thousand connections (SYNs from random sources
/// to VIP:8080, whose real server does not exist, held in SYN_RECV): the listing streams chunk by
/// chunk, lists them all, and the workers keep forwarding VIP:80 meanwhile (its real servers are
/// not flooded).
#[test]
fn a_large_connection_listing_streams_while_traffic_flows() {
    let base = std::fs::read_to_string(repo_root().join("conf/lab.toml")).unwrap();
    let config = base.replace("capacity = 65536", "capacity = 262144")
        + r#"
[[service]]
vip = "10.10.0.100"
port = 8080
scheduler = "rr"
local_addresses = ["10.20.0.200", "10.20.0.201"]
[[service.real]]
address = "10.20.0.99"
"#;
    let lab = Lab::up("al", &config);
    let sock = format!("/run/gateway/{}.sock", lab.name);
    // 100,000 SYNs at up to 100 kpps: bounded in count and time.
    lab.exec(
        "cli",
        &[
            "timeout",
            "30",
            "hping3",
            "-q",
            "-S",
            "-p",
            "8080",
            "-i",
            "u10",
            "-c",
            "100000",
            "--rand-source",
            "10.10.0.100",
        ],
    );
    let stats = lab.stats();
    let conns = Lab::conn_counter(&stats, "conns");
    assert!(conns > 50_000, "only {conns} connections\n{stats}");
    // A curl loop through the VIP while the listing runs.
    let curls = std::thread::scope(|s| {
        let t = s.spawn(|| {
            (0..20)
                .filter(|_| {
                    std::thread::sleep(Duration::from_millis(50));
                    lab.exec("cli", &["curl", "-s", "-m", "2", "http://10.10.0.100/"])
                        .status
                        .success()
                })
                .count()
        });
        let t0 = Instant::now();
        let o = Command::new(ipvsadm_bin())
            .args(["-Lnc"])
            .env("GATEWAY_SOCKET", &sock)
            .output()
            .unwrap();
        let took = t0.elapsed();
        assert!(o.status.success(), "{}", err_of(&o));
        let lines = o.stdout.iter().filter(|&&b| b == b'\n').count() - 2;
        eprintln!("ipvsadm -Lnc: {lines} connections in {took:?}");
        assert!(
            lines as u64 >= conns * 9 / 10 && lines as u64 <= conns + 1000,
            "{lines} listed, {conns} in the tables"
        );
        t.join().unwrap()
    });
    assert_eq!(curls, 20, "curl through the VIP during the listing");
}
