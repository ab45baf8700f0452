//! kubenet as a built-in CNI configuration: bridge `cbr0` with host-local IPAM on the pod CIDR,
//! portmap for hostPorts (and bandwidth when the plugin is installed), MTU from
//! `--network-plugin-mtu` and hairpin handling from `--hairpin-mode`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::conf::NetworkConfigList;
use crate::config::HairpinMode;
use crate::network::Error;

/// The Go original's bridge name.
pub const BRIDGE_NAME: &str = "cbr0";
/// The network name (cache files are `kubenet-<id>-eth0`, as the Go original's).
pub const NETWORK_NAME: &str = "kubenet";
/// MTU when none is given and no interface tells us (the Go original's `fallbackMTU`).
pub const FALLBACK_MTU: u32 = 1460;
/// Plugins kubenet cannot work without.
pub const REQUIRED_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// Inputs of the kubenet configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubenetSettings {
    pub bridge: String,
    /// 0: derive from the host's interfaces.
    pub mtu: u32,
    pub hairpin: HairpinMode,
    /// host-local's `dataDir` (None: host-local's default `/var/lib/cni/networks`).
    pub ipam_data_dir: Option<PathBuf>,
    /// Add the bandwidth plugin (when its binary exists).
    pub bandwidth: bool,
}

impl Default for KubenetSettings {
    fn default() -> Self {
        KubenetSettings {
            bridge: BRIDGE_NAME.into(),
            mtu: 0,
            hairpin: HairpinMode::PromiscuousBridge,
            ipam_data_dir: None,
            bandwidth: false,
        }
    }
}

/// The kubenet conflist for `pod_cidr` (comma-separated for dual stack).
pub fn conf_list(settings: &KubenetSettings, pod_cidr: &str) -> Result<NetworkConfigList, Error> {
    let cidrs: Vec<&str> = pod_cidr
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if cidrs.is_empty() {
        return Err(Error::NotReady(
            "kubenet does not have a pod CIDR yet".into(),
        ));
    }
    let mut has_v4 = false;
    let mut has_v6 = false;
    let mut ranges = Vec::new();
    for c in &cidrs {
        let (ip, len) = c.split_once('/').ok_or_else(|| Error::InvalidConfig {
            origin: "kubenet".into(),
            reason: format!("pod CIDR {c:?} is not address/prefix"),
        })?;
        let ip: std::net::IpAddr = ip.parse().map_err(|e| Error::InvalidConfig {
            origin: "kubenet".into(),
            reason: format!("pod CIDR {c:?}: {e}"),
        })?;
        let _: u8 = len.parse().map_err(|e| Error::InvalidConfig {
            origin: "kubenet".into(),
            reason: format!("pod CIDR {c:?}: {e}"),
        })?;
        if ip.is_ipv4() {
            has_v4 = true;
        } else {
            has_v6 = true;
        }
        ranges.push(json!([{ "subnet": c }]));
    }
    let mut routes = Vec::new();
    if has_v4 {
        routes.push(json!({"dst": "0.0.0.0/0"}));
    }
    if has_v6 {
        routes.push(json!({"dst": "::/0"}));
    }
    let mut ipam = json!({"type": "host-local", "ranges": ranges, "routes": routes});
    if let Some(d) = &settings.ipam_data_dir {
        ipam["dataDir"] = Value::String(d.display().to_string());
    }
    let mtu = if settings.mtu == 0 {
        host_min_mtu(Path::new("/sys/class/net")).unwrap_or(FALLBACK_MTU)
    } else {
        settings.mtu
    };
    let bridge = json!({
        "type": "bridge",
        "bridge": settings.bridge,
        "mtu": mtu,
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": settings.hairpin == HairpinMode::HairpinVeth,
        "promiscMode": settings.hairpin == HairpinMode::PromiscuousBridge,
        "ipam": ipam,
    });
    let mut plugins = vec![
        bridge,
        json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
    ];
    if settings.bandwidth {
        plugins.push(json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
    }
    let list = json!({"cniVersion": "1.0.0", "name": NETWORK_NAME, "plugins": plugins});
    NetworkConfigList::from_list_bytes(list.to_string().as_bytes(), "kubenet")
}

/// The smallest MTU of the host's up, non-loopback, non-point-to-point interfaces (the Go
/// original's `findMinMTU`), from sysfs.
pub fn host_min_mtu(sys_class_net: &Path) -> Option<u32> {
    const IFF_UP: u32 = 0x1;
    const IFF_LOOPBACK: u32 = 0x8;
    const IFF_POINTOPOINT: u32 = 0x10;
    let mut min: Option<u32> = None;
    for e in std::fs::read_dir(sys_class_net).ok()?.flatten() {
        let p = e.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).ok();
        let Some(flags) = read("flags")
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        else {
            continue;
        };
        if flags & IFF_UP == 0 || flags & (IFF_LOOPBACK | IFF_POINTOPOINT) != 0 {
            continue;
        }
        if let Some(mtu) = read("mtu").and_then(|s| s.trim().parse::<u32>().ok()) {
            min = Some(min.map_or(mtu, |m: u32| m.min(mtu)));
        }
    }
    min.filter(|m| *m >= 576)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn conf_from_pod_cidr_and_modes() {
        let s = KubenetSettings {
            mtu: 1400,
            hairpin: HairpinMode::HairpinVeth,
            ipam_data_dir: Some("/tmp/ipam".into()),
            ..Default::default()
        };
        let l = conf_list(&s, "10.9.0.0/24,fd09::/64").unwrap();
        assert_eq!(l.name, "kubenet");
        let b = &l.plugins[0].raw;
        assert_eq!(b["type"], "bridge");
        assert_eq!(b["bridge"], "cbr0");
        assert_eq!(b["mtu"], 1400);
        assert_eq!(b["hairpinMode"], true);
        assert_eq!(b["promiscMode"], false);
        assert_eq!(
            b["ipam"]["ranges"],
            json!([[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd09::/64"}]])
        );
        assert_eq!(
            b["ipam"]["routes"],
            json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
        );
        assert_eq!(b["ipam"]["dataDir"], "/tmp/ipam");
        assert_eq!(l.plugins[1].plugin_type, "portmap");
        assert!(l.plugins[1].capabilities.contains("portMappings"));
        assert_eq!(l.plugins.len(), 2);

        let promisc = conf_list(
            &KubenetSettings {
                bandwidth: true,
                ..Default::default()
            },
            "10.9.0.0/24",
        )
        .unwrap();
        let b = &promisc.plugins[0].raw;
        assert_eq!(b["hairpinMode"], false);
        assert_eq!(b["promiscMode"], true);
        assert!(b["ipam"].get("dataDir").is_none());
        assert!(b["mtu"].as_u64().unwrap() >= 576);
        assert_eq!(promisc.plugins[2].plugin_type, "bandwidth");

        let none = conf_list(
            &KubenetSettings {
                hairpin: HairpinMode::None,
                ..Default::default()
            },
            "10.9.0.0/24",
        )
        .unwrap();
        assert_eq!(none.plugins[0].raw["hairpinMode"], false);
        assert_eq!(none.plugins[0].raw["promiscMode"], false);
    }

    #[test]
    fn bad_or_missing_cidr() {
        assert!(matches!(
            conf_list(&KubenetSettings::default(), ""),
            Err(Error::NotReady(_))
        ));
        assert!(conf_list(&KubenetSettings::default(), "10.0.0.0").is_err());
        assert!(conf_list(&KubenetSettings::default(), "nope/8").is_err());
    }

    #[test]
    fn min_mtu_from_sysfs() {
        let d = tempfile::tempdir().unwrap();
        let mk = |name: &str, flags: &str, mtu: &str| {
            let p = d.path().join(name);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("flags"), flags).unwrap();
            std::fs::write(p.join("mtu"), mtu).unwrap();
        };
        mk("lo", "0x9\n", "65536\n");
        mk("eth0", "0x1003\n", "1500\n");
        mk("eth1", "0x1003\n", "9000\n");
        mk("down0", "0x1002\n", "1000\n");
        mk("tun0", "0x1091\n", "1300\n");
        assert_eq!(host_min_mtu(d.path()), Some(1500));
    }
}
