//! Build script for dpdk-sys: find DPDK 22.11 with pkg-config, generate bindings with bindgen (narrow
//! allowlist), compile the C shim for static-inline functions, and turn DPDK's `RTE_BIT64` flag macros
//! into typed Rust constants by compiling and running a tiny C program against the same headers.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// Flag macros that bindgen cannot evaluate (they expand to `RTE_BIT64(n)` or to expressions over it).
const U64_FLAGS: &[&str] = &[
    "RTE_ETH_RSS_IPV4",
    "RTE_ETH_RSS_FRAG_IPV4",
    "RTE_ETH_RSS_NONFRAG_IPV4_TCP",
    "RTE_ETH_RSS_NONFRAG_IPV4_UDP",
    "RTE_ETH_RSS_NONFRAG_IPV4_OTHER",
    "RTE_ETH_RSS_IPV6",
    "RTE_ETH_RSS_NONFRAG_IPV6_TCP",
    "RTE_ETH_RSS_NONFRAG_IPV6_UDP",
    "RTE_ETH_RSS_IP",
    "RTE_ETH_RSS_TCP",
    "RTE_ETH_RSS_UDP",
    "RTE_ETH_RX_OFFLOAD_IPV4_CKSUM",
    "RTE_ETH_RX_OFFLOAD_UDP_CKSUM",
    "RTE_ETH_RX_OFFLOAD_TCP_CKSUM",
    "RTE_ETH_RX_OFFLOAD_CHECKSUM",
    "RTE_ETH_RX_OFFLOAD_RSS_HASH",
    "RTE_ETH_TX_OFFLOAD_IPV4_CKSUM",
    "RTE_ETH_TX_OFFLOAD_UDP_CKSUM",
    "RTE_ETH_TX_OFFLOAD_TCP_CKSUM",
    "RTE_ETH_TX_OFFLOAD_MULTI_SEGS",
    "RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE",
    "RTE_MBUF_F_RX_RSS_HASH",
    "RTE_MBUF_F_RX_IP_CKSUM_MASK",
    "RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN",
    "RTE_MBUF_F_RX_IP_CKSUM_BAD",
    "RTE_MBUF_F_RX_IP_CKSUM_GOOD",
    "RTE_MBUF_F_RX_IP_CKSUM_NONE",
    "RTE_MBUF_F_RX_L4_CKSUM_MASK",
    "RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN",
    "RTE_MBUF_F_RX_L4_CKSUM_BAD",
    "RTE_MBUF_F_RX_L4_CKSUM_GOOD",
    "RTE_MBUF_F_RX_L4_CKSUM_NONE",
    "RTE_MBUF_F_TX_IPV4",
    "RTE_MBUF_F_TX_IP_CKSUM",
    "RTE_MBUF_F_TX_TCP_CKSUM",
    "RTE_MBUF_F_TX_UDP_CKSUM",
    "RTE_MBUF_F_TX_L4_MASK",
];

/// Integer macros bindgen may also miss because they are expressions.
const U32_VALUES: &[&str] = &[
    "RTE_MBUF_DEFAULT_BUF_SIZE",
    "RTE_PKTMBUF_HEADROOM",
    "RTE_MAX_LCORE",
    "RTE_MAX_ETHPORTS",
    "RTE_ETH_RETA_GROUP_SIZE",
];

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: {msg}\n");
    panic!("{msg}");
}

/// Every cflag pkg-config gives (include dirs, `-include rte_config.h`, `-march=corei7`), in order.
fn dpdk_cflags() -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|_| {
            fail("pkg-config not found: install it with `apt-get install pkg-config`")
        });
    if !out.status.success() {
        fail(
            "DPDK not found by pkg-config (libdpdk.pc): install it with `apt-get install libdpdk-dev` \
             (DPDK 22.11 LTS), or run scripts/setup.sh",
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .statik(false)
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            fail(&format!(
                "DPDK >= 22.11 not found ({e}): install it with `apt-get install libdpdk-dev`, \
                 or run scripts/setup.sh"
            ))
        });
    // pkg-config lists -lrte_* libraries behind --as-needed; make sure the ones we call are linked even
    // when only the shim references them.
    for l in [
        "rte_ethdev",
        "rte_mbuf",
        "rte_mempool",
        "rte_ring",
        "rte_eal",
    ] {
        if !lib.libs.iter().any(|x| x == l) {
            println!("cargo:rustc-link-lib={l}");
        }
    }

    let cflags = dpdk_cflags();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());

    // 1. The C shim.
    let mut build = cc::Build::new();
    build.file("csrc/shim.c").include("csrc").warnings(false);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("gw_dpdk_shim");

    // 2. Bindings.
    let mut builder = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(cflags.iter().cloned())
        .clang_arg("-Icsrc")
        .allowlist_function("rte_eal_.*")
        .allowlist_function("rte_eth_.*")
        .allowlist_function("rte_pktmbuf_.*")
        .allowlist_function("rte_mempool_.*")
        .allowlist_function("rte_ring_(create|free|lookup)")
        .allowlist_function("rte_lcore_.*")
        .allowlist_function("rte_get_(main|next)_lcore|rte_get_tsc_hz|rte_socket_id|rte_strerror")
        .allowlist_function("rte_flow_(validate|create|destroy|flush)")
        .allowlist_function("rte_dev_probe|rte_dev_remove")
        .allowlist_function("gw_.*")
        .allowlist_type("rte_mbuf|rte_mempool|rte_ring|rte_eth_.*|rte_flow_.*|rte_ether_addr")
        .allowlist_var("RTE_ETH_.*|RTE_MAX_.*|RING_F_.*|RTE_MEMPOOL_.*|RTE_ETHER_.*|SOCKET_ID_ANY")
        .allowlist_var("E[A-Z]+")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(true)
        .prepend_enum_name(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for t in ["rte_eth_rx_mq_mode", "rte_eth_tx_mq_mode"] {
        builder = builder.constified_enum_module(t);
    }
    let bindings = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.generate())).unwrap_or_else(|_| {
        fail(
            "bindgen could not run: libclang is missing; install it with `apt-get install libclang-dev`, \
             or run scripts/setup.sh",
        )
    });
    let bindings =
        bindings.unwrap_or_else(|e| fail(&format!("bindgen failed on the DPDK headers: {e}")));
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings.rs");

    // 2b. libpcap, for BPF filters on live captures (`gwctl capture`): compile an expression with
    // pcap_compile on a dead handle and run it with pcap_offline_filter (pcap_compile(3PCAP),
    // pcap_offline_filter(3PCAP)). Its own bindings: libpcap is not DPDK.
    pkg_config::Config::new()
        .statik(false)
        .probe("libpcap")
        .unwrap_or_else(|e| {
            fail(&format!(
                "libpcap not found ({e}): install it with `apt-get install libpcap-dev`, \
                 or run scripts/setup.sh"
            ))
        });
    let pcap = bindgen::Builder::default()
        .header("csrc/pcap_wrapper.h")
        .allowlist_function(
            "pcap_(open_dead|close|compile|freecode|geterr|offline_filter|lib_version)",
        )
        .allowlist_type("pcap_pkthdr|bpf_program|bpf_insn")
        .allowlist_var("PCAP_NETMASK_UNKNOWN|DLT_EN10MB")
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed on <pcap/pcap.h>: {e}")));
    pcap.write_to_file(out_dir.join("pcap_bindings.rs"))
        .expect("write pcap_bindings.rs");

    // 3. Typed constants for the RTE_BIT64 flag macros.
    let mut c = String::from(
        "#include <stdio.h>\n#include <inttypes.h>\n#include <rte_ethdev.h>\n#include <rte_mbuf.h>\n\
         int main(void) {\n",
    );
    for name in U64_FLAGS {
        c.push_str(&format!(
            "  printf(\"pub const {name}: u64 = 0x%016\" PRIx64 \";\\n\", (uint64_t)({name}));\n"
        ));
    }
    for name in U32_VALUES {
        c.push_str(&format!(
            "  printf(\"pub const {name}: u32 = %u;\\n\", (unsigned)({name}));\n"
        ));
    }
    c.push_str("  return 0;\n}\n");
    let src = out_dir.join("consts.c");
    let exe = out_dir.join("consts");
    fs::write(&src, c).unwrap();
    let compiler = cc::Build::new().get_compiler();
    let mut cmd = compiler.to_command();
    cmd.args(&cflags).arg("-o").arg(&exe).arg(&src);
    let status = cmd.status().expect("run the C compiler for consts.c");
    if !status.success() {
        fail("compiling consts.c against the DPDK headers failed");
    }
    let out = Command::new(&exe).output().expect("run consts");
    if !out.status.success() {
        fail("running the generated consts program failed");
    }
    fs::write(out_dir.join("consts.rs"), out.stdout).unwrap();
}
