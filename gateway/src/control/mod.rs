//! The control plane's admin interface: a Unix stream socket served by a control thread (DESIGN.md
//! decisions 8 and 9), the `gwctl` client and its `ipvsadm` front-end.
//!
//! - [`proto`]: the request/response protocol and its limits.
//! - [`commit`]: the one commit point: the control plane's handle on the workers (generations, health, announcements).
//! - [`server`]: the socket, one thread per client, the request handlers.
//! - [`model`]: the service table as changes edit it; validated by the configuration's own code.
//! - [`dump`]: what a worker reports (connections, neighbours) from its housekeeping.
//! - [`ipvsadm`]: ipvsadm's command line and output formats.
//! - [`retire`]: local addresses removed under load, kept until their connections end.
//! - [`save`]: `gwctl save`, a TOML configuration of the running services.
//! - [`client`]: connect, request, response.
//! - `crate::view`: the data the daemon answers with (shared with `metrics` and the clients).
//!
//! # Protocol, version 1
//!
//! The socket is `control.socket` (default `/run/gateway/<eal.file_prefix>.sock`), mode 0600 owned
//! by root, or 0660 with group `control.socket_group`. A client writes one request per line: a JSON
//! object of at most 64 MiB including the newline (`proto::MAX_REQUEST`: an `ipvsadm -R` of 100,000
//! real servers fits); the daemon answers each with one JSON line, in
//! order, and the client may send further requests on the same connection.
//!
//! ```text
//! -> {"v":1,"op":"list"}
//! <- {"v":1,"ok":true,"data":{"generation":4,"size":131072,"services":[...]}}
//! -> {"v":1,"op":"apply","changes":[{"change":"add_service","svc":{"proto":"tcp","vip":"10.0.0.1","port":80},
//!                                    "opts":{"scheduler":"rr"}}]}
//! <- {"v":1,"ok":true,"data":{"generation":5}}
//! -> {"v":1,"op":"apply","changes":[{"change":"del_service","svc":{"proto":"tcp","vip":"10.0.0.9","port":80}}]}
//! <- {"v":1,"ok":false,"error":"No such service: TCP 10.0.0.9:80","at":0}
//! ```
//!
//! Operations (`op`): `status`, `list`, `apply {changes}`, `conns {filter}`, `stats`, `zero`,
//! `timeouts`, `save`, `net`, `capture`. Changes (`change`): `add_service`, `edit_service`, `del_service`,
//! `clear`, `add_real`, `edit_real`, `del_real`, `add_laddr`, `del_laddr` (fields in [`proto`]).
//!
//! An `apply` is all or nothing: its changes are applied in order to a copy of the running table,
//! the result is validated whole (the same checks as the configuration file), sent to every worker
//! as one new generation, and answered only when every worker runs it. Any error leaves the running
//! table as it was and names the problem (`at` gives the index of the change at fault).
//!
//! `conns` with `"filter": {"stream": true}` is answered in several lines: one per chunk of
//! connections as the workers hand them over (`"more": true`), then one with the total
//! (`"more": false`); `ipvsadm -Lnc` lists a million connections this way in bounded memory, and a
//! worker never spends more than one chunk's scan (`dump::SCAN_SLOTS`) on a listing at a time.
//!
//! `capture {port, filter, count, snaplen, duration_s}` is answered in lines too: the frames one port
//! receives and sends, in hex, with the workers' counters, until the count, the duration or the client
//! closing its side (`crate::capture::stream` describes the lines); `gwctl capture` writes them
//! as pcapng.
//!
//! Errors: a line that is not JSON, lacks `"v"`, has another version or an unknown `op` gets
//! `ok:false` with the reason, and the connection stays usable. A line longer than 64 MiB, or input
//! ending without a newline, gets `ok:false` and the connection is closed. A client that does not
//! complete a request line within 10 s of connecting or of its previous answer is closed; at most 32
//! clients are served at once.

pub mod client;
pub mod commit;
pub mod dump;
pub mod ipvsadm;
pub mod model;
pub mod proto;
pub mod retire;
pub mod save;
pub mod server;
pub mod topology;
