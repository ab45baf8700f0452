//! CNI spec versions and plugin results: parsing the 0.3.x/0.4.0 and 1.x shapes into one type
//! and writing them back in any supported version (as libcni converts `prevResult`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::network::Error;

/// A CNI specification version this client implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl SpecVersion {
    /// Every supported version, oldest first.
    pub const ALL: [SpecVersion; 5] = [
        SpecVersion::V0_3_0,
        SpecVersion::V0_3_1,
        SpecVersion::V0_4_0,
        SpecVersion::V1_0_0,
        SpecVersion::V1_1_0,
    ];

    /// Parse, rejecting anything not implemented (including 0.1.0/0.2.0 and future versions).
    pub fn parse(s: &str, origin: &str) -> Result<SpecVersion, Error> {
        SpecVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::UnsupportedVersion {
                version: s.to_string(),
                origin: origin.to_string(),
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_3_0 => "0.3.0",
            SpecVersion::V0_3_1 => "0.3.1",
            SpecVersion::V0_4_0 => "0.4.0",
            SpecVersion::V1_0_0 => "1.0.0",
            SpecVersion::V1_1_0 => "1.1.0",
        }
    }

    /// CHECK and a cached `prevResult` on DEL exist from 0.4.0 on.
    pub fn supports_check(self) -> bool {
        self >= SpecVersion::V0_4_0
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn supports_status_gc(self) -> bool {
        self >= SpecVersion::V1_1_0
    }

    /// Results of 0.3.x/0.4.0 carry `"version":"4"|"6"` in each IP entry.
    fn ips_have_version(self) -> bool {
        self < SpecVersion::V1_0_0
    }
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Set for interfaces inside the pod's netns.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// Fields of newer versions (mtu, socketPath, pciID …), kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// "4" or "6"; present in 0.3.x/0.4.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CIDR notation, `10.1.0.5/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IpConfig {
    /// The address without its prefix length.
    pub fn ip(&self) -> Option<IpAddr> {
        let addr = self.address.split('/').next().unwrap_or_default();
        addr.parse().ok()
    }
}

/// A plugin result (`types100.Result` and its 0.3/0.4 predecessors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes are passed through untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Value>,
    #[serde(default, skip_serializing_if = "is_empty_dns")]
    pub dns: Value,
}

fn is_empty_dns(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(|v| match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        }),
        _ => false,
    }
}

impl CniResult {
    /// Parse a result of any supported version. `origin` names the producer for errors.
    pub fn parse(value: &Value, origin: &str) -> Result<CniResult, Error> {
        let version = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        SpecVersion::parse(version, origin)?;
        let mut r: CniResult =
            serde_json::from_value(value.clone()).map_err(|e| Error::InvalidResult {
                plugin: origin.to_string(),
                command: "ADD",
                reason: e.to_string(),
                stdout: value.to_string(),
            })?;
        for ip in &r.ips {
            if ip.ip().is_none() {
                return Err(Error::InvalidResult {
                    plugin: origin.to_string(),
                    command: "ADD",
                    reason: format!("invalid address {:?}", ip.address),
                    stdout: value.to_string(),
                });
            }
        }
        // Normalise to the 1.x shape internally.
        for ip in &mut r.ips {
            ip.version = None;
        }
        Ok(r)
    }

    /// The result as JSON of version `v` (what libcni's `GetAsVersion` produces).
    pub fn to_version(&self, v: SpecVersion) -> Value {
        let mut r = self.clone();
        r.cni_version = v.as_str().to_string();
        for ip in &mut r.ips {
            ip.version = if v.ips_have_version() {
                Some(match ip.ip() {
                    Some(IpAddr::V6(_)) => "6".to_string(),
                    _ => "4".to_string(),
                })
            } else {
                None
            };
        }
        serde_json::to_value(&r).unwrap_or(Value::Null)
    }

    /// Addresses on the pod interface `ifname` (the one with a sandbox and that name); all
    /// addresses when the result does not say which interface they are on.
    pub fn pod_ips(&self, ifname: &str) -> Vec<IpAddr> {
        let pod_if: Vec<usize> = self
            .interfaces
            .iter()
            .enumerate()
            .filter(|(_, i)| i.name == ifname && !i.sandbox.is_empty())
            .map(|(n, _)| n)
            .collect();
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(idx) => pod_if.is_empty() || pod_if.contains(&idx),
                None => true,
            })
            .filter_map(IpConfig::ip)
            .collect()
    }

    /// The host-side interface names (no sandbox), e.g. the bridge and the veth peer.
    pub fn host_interfaces(&self) -> Vec<&str> {
        self.interfaces
            .iter()
            .filter(|i| i.sandbox.is_empty())
            .map(|i| i.name.as_str())
            .collect()
    }
}

/// A plugin's answer to VERSION.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    pub fn supports(&self, v: &str) -> bool {
        self.supported_versions.iter().any(|s| s == v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v04() -> Value {
        json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "crt1", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "veth1", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/proc/1/ns/net"}
            ],
            "ips": [
                {"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2},
                {"version": "6", "address": "fd00::5/64", "gateway": "fd00::1", "interface": 2}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        })
    }

    #[test]
    fn versions_parse_and_order() {
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            assert_eq!(SpecVersion::parse(v, "t").unwrap().as_str(), v);
        }
        for bad in ["", "0.1.0", "0.2.0", "1.2.0", "2.0.0", "v1.0.0"] {
            let err = SpecVersion::parse(bad, "conf x").unwrap_err();
            assert!(matches!(err, Error::UnsupportedVersion { .. }), "{bad}");
            assert!(err.to_string().contains("conf x"));
        }
        assert!(!SpecVersion::V0_3_1.supports_check());
        assert!(SpecVersion::V0_4_0.supports_check());
        assert!(!SpecVersion::V1_0_0.supports_status_gc());
        assert!(SpecVersion::V1_1_0.supports_status_gc());
    }

    #[test]
    fn result_04_to_100_and_back() {
        let r = CniResult::parse(&v04(), "bridge").unwrap();
        let v1 = r.to_version(SpecVersion::V1_0_0);
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert!(v1["ips"][0].get("version").is_none());
        assert_eq!(v1["ips"][1]["address"], "fd00::5/64");
        assert!(v1.get("dns").is_none(), "empty dns dropped: {v1}");
        let back = CniResult::parse(&v1, "x")
            .unwrap()
            .to_version(SpecVersion::V0_3_1);
        assert_eq!(back["ips"][0]["version"], "4");
        assert_eq!(back["ips"][1]["version"], "6");
        assert_eq!(back["routes"], json!([{"dst": "0.0.0.0/0"}]));
    }

    #[test]
    fn pod_ips_only_on_the_sandbox_interface() {
        let mut v = v04();
        v["ips"]
            .as_array_mut()
            .unwrap()
            .push(json!({"version":"4","address":"192.168.9.1/24","interface":0}));
        let r = CniResult::parse(&v, "x").unwrap();
        let ips = r.pod_ips("eth0");
        assert_eq!(
            ips,
            vec![
                "10.1.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert_eq!(r.host_interfaces(), vec!["crt1", "veth1"]);
    }

    #[test]
    fn result_11_fields_are_kept() {
        let v = json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "sandbox": "/x", "mtu": 1400, "socketPath": "/s"}],
            "ips": [{"address": "10.2.0.2/16", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "mtu": 1400, "table": 5}]
        });
        let r = CniResult::parse(&v, "x").unwrap();
        let out = r.to_version(SpecVersion::V1_1_0);
        assert_eq!(out["interfaces"][0]["mtu"], 1400);
        assert_eq!(out["routes"][0]["table"], 5);
    }

    #[test]
    fn bad_results_rejected() {
        let err = CniResult::parse(&json!({"cniVersion": "0.2.0", "ip4": {}}), "p").unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { .. }));
        let err = CniResult::parse(
            &json!({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]}),
            "p",
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = CniResult::parse(&json!({"cniVersion": "1.0.0", "ips": 3}), "p").unwrap_err();
        assert!(matches!(err, Error::InvalidResult { .. }));
    }
}
