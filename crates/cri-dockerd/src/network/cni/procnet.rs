//! Reading a pod's addresses from `/proc/<pid>/net` (IPv4 local addresses from `fib_trie`, IPv6
//! from `if_inet6`) when no cached CNI result exists — no `nsenter`/`ip` processes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The pid of a `/proc/<pid>/ns/net` path.
pub fn pid_of_netns(netns: &Path) -> Option<u32> {
    let s = netns.to_str()?;
    let rest = s.strip_prefix("/proc/")?;
    let (pid, tail) = rest.split_once('/')?;
    if tail != "ns/net" {
        return None;
    }
    pid.parse().ok()
}

/// Global addresses of the netns of `pid` on `ifname` (IPv6) and all non-loopback local IPv4
/// addresses (fib_trie does not name interfaces; a pod has one besides `lo`).
pub fn pod_ips(proc_root: &Path, pid: u32, ifname: &str) -> std::io::Result<Vec<IpAddr>> {
    let base = proc_root.join(pid.to_string()).join("net");
    let mut ips: Vec<IpAddr> =
        parse_fib_trie_locals(&std::fs::read_to_string(base.join("fib_trie"))?)
            .into_iter()
            .map(IpAddr::V4)
            .collect();
    // if_inet6 is absent when IPv6 is disabled.
    if let Ok(s) = std::fs::read_to_string(base.join("if_inet6")) {
        ips.extend(parse_if_inet6(&s, ifname).into_iter().map(IpAddr::V6));
    }
    Ok(ips)
}

/// Local (`/32 host LOCAL`) IPv4 addresses of the main table, without 127.0.0.0/8.
pub fn parse_fib_trie_locals(s: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in s.lines() {
        let t = line.trim_start();
        if let Some(addr) = t.strip_prefix("|-- ").or_else(|| t.strip_prefix("+-- ")) {
            last = addr.split('/').next().and_then(|a| a.trim().parse().ok());
            continue;
        }
        if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// Non-link-local addresses of `ifname` from `/proc/net/if_inet6`.
pub fn parse_if_inet6(s: &str, ifname: &str) -> Vec<Ipv6Addr> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[5] != ifname {
                return None;
            }
            let scope = u8::from_str_radix(f[3], 16).ok()?;
            if scope != 0 {
                return None; // link (0x20), host (0x10) …
            }
            let v = u128::from_str_radix(f[0], 16).ok()?;
            Some(Ipv6Addr::from(v))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const FIB: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.7.0.0/24 2 0 2
        +-- 10.7.0.0/29 2 0 2
           |-- 10.7.0.0
              /24 link UNICAST
           |-- 10.7.0.5
              /32 host LOCAL
        |-- 10.7.0.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 10.7.0.5
              /32 host LOCAL
";

    #[test]
    fn fib_trie_locals() {
        assert_eq!(parse_fib_trie_locals(FIB), vec![Ipv4Addr::new(10, 7, 0, 5)]);
    }

    #[test]
    fn if_inet6_global_only() {
        let s = "fd000000000000000000000000000005 02 40 00 80     eth0\n\
                 fe80000000000000a8bbccfffedd0001 02 40 20 80     eth0\n\
                 00000000000000000000000000000001 01 80 10 80       lo\n\
                 fd000000000000000000000000000009 03 40 00 80     eth1\n";
        assert_eq!(
            parse_if_inet6(s, "eth0"),
            vec!["fd00::5".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn netns_pid() {
        assert_eq!(pid_of_netns(Path::new("/proc/42/ns/net")), Some(42));
        assert_eq!(pid_of_netns(Path::new("/var/run/netns/x")), None);
        assert_eq!(pid_of_netns(Path::new("/proc/self/ns/net")), None);
    }

    #[test]
    fn reads_our_own_process() {
        // The test process's own netns: has at least some IPv4 entries parsed without error.
        let pid = std::process::id();
        assert!(pod_ips(Path::new("/proc"), pid, "eth0").is_ok());
    }
}
