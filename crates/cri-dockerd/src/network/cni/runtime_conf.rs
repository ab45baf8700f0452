//! What the runtime passes to a plugin besides its configuration: `CNI_ARGS`, the capability
//! arguments (`portMappings`, `bandwidth`, `ipRanges`, `dns`) filtered by what each plugin
//! declares into `runtimeConfig`, and the per-plugin stdin (`name`, `cniVersion`, `prevResult`).

use serde_json::{Map, Value, json};

use super::conf::PluginConf;
use crate::network::{Error, PodNetwork};

/// Annotation: ingress bandwidth limit (bits per second, a Kubernetes quantity).
pub const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
/// Annotation: egress bandwidth limit.
pub const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

/// The arguments of one attachment (libcni's `RuntimeConf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    pub netns: String,
    pub if_name: String,
    pub args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
}

/// `CNI_ARGS` for a pod, as the Go original plus `K8S_POD_UID`.
pub fn pod_cni_args(pod: &PodNetwork) -> Vec<(String, String)> {
    let mut args = vec![
        ("IgnoreUnknown".to_string(), "1".to_string()),
        ("K8S_POD_NAMESPACE".to_string(), pod.namespace.clone()),
        ("K8S_POD_NAME".to_string(), pod.name.clone()),
        (
            "K8S_POD_INFRA_CONTAINER_ID".to_string(),
            pod.sandbox_id.clone(),
        ),
    ];
    if !pod.uid.is_empty() {
        args.push(("K8S_POD_UID".to_string(), pod.uid.clone()));
    }
    args
}

/// The capability arguments of a pod. `pod_cidr` is the effective pod CIDR (comma-separated for
/// dual stack); `ipRanges` is only given when one is known.
pub fn capability_args(
    pod: &PodNetwork,
    pod_cidr: Option<&str>,
) -> Result<Map<String, Value>, Error> {
    let mut caps = Map::new();
    let ports: Vec<Value> = pod
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_str(),
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = Value::String(p.host_ip.clone());
            }
            m
        })
        .collect();
    caps.insert("portMappings".into(), Value::Array(ports));

    if let Some(bw) = bandwidth(pod)? {
        caps.insert("bandwidth".into(), bw);
    }

    if let Some(cidr) = pod_cidr.filter(|c| !c.trim().is_empty()) {
        let ranges: Vec<Value> = cidr
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| json!([{ "subnet": c }]))
            .collect();
        caps.insert("ipRanges".into(), Value::Array(ranges));
    }

    if let Some(dns) = &pod.dns
        && !(dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty())
    {
        caps.insert(
            "dns".into(),
            json!({ "servers": dns.servers, "searches": dns.searches, "options": dns.options }),
        );
    }
    Ok(caps)
}

/// The `bandwidth` capability from the pod's annotations (rates in bit/s, bursts unlimited as
/// the Go original: `math.MaxInt32`).
fn bandwidth(pod: &PodNetwork) -> Result<Option<Value>, Error> {
    let read = |key: &str| -> Result<Option<u64>, Error> {
        match pod.annotations.get(key) {
            None => Ok(None),
            Some(v) => {
                let bits = parse_quantity(v)
                    .map_err(|e| Error::InvalidArgument(format!("annotation {key}={v:?}: {e}")))?;
                validate_bandwidth(bits)
                    .map_err(|e| Error::InvalidArgument(format!("annotation {key}={v:?}: {e}")))?;
                Ok(Some(bits))
            }
        }
    };
    let ingress = read(INGRESS_BANDWIDTH)?;
    let egress = read(EGRESS_BANDWIDTH)?;
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let mut m = Map::new();
    if let Some(i) = ingress {
        m.insert("ingressRate".into(), i.into());
        m.insert("ingressBurst".into(), i64::from(i32::MAX).into());
    }
    if let Some(e) = egress {
        m.insert("egressRate".into(), e.into());
        m.insert("egressBurst".into(), i64::from(i32::MAX).into());
    }
    Ok(Some(Value::Object(m)))
}

/// The kubelet's sanity bounds: at least 1k, at most 1P bit/s.
fn validate_bandwidth(bits: u64) -> Result<(), String> {
    if bits < 1_000 {
        return Err("bandwidth is unreasonably small (< 1kbit)".into());
    }
    if bits > 1_000_000_000_000_000 {
        return Err("bandwidth is unreasonably large (> 1Pbit)".into());
    }
    Ok(())
}

/// Parse a Kubernetes quantity (`10M`, `1.5Gi`, `100k`, `1e6`, `500m`) to an integer, rounding
/// up as `Quantity.Value()` does. Negative values are refused.
pub fn parse_quantity(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty quantity".into());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err("negative quantity".into());
    }
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(format!("invalid quantity {s:?}"));
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // (multiplier numerator, power of ten) — binary suffixes are exact integers.
    let (mul, exp10): (u128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        e if e.starts_with(['e', 'E']) => {
            let n: i32 = e[1..]
                .parse()
                .map_err(|_| format!("invalid exponent in {s:?}"))?;
            (1, n)
        }
        _ => return Err(format!("unknown suffix {suffix:?} in {s:?}")),
    };
    // value = (int_part.frac_part) * mul * 10^exp10, computed exactly on integers.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| format!("quantity {s:?} is too large"))?
    };
    let exp = exp10 - frac_part.len() as i32;
    let scaled = mantissa
        .checked_mul(mul)
        .ok_or_else(|| format!("quantity {s:?} is too large"))?;
    let value = if exp >= 0 {
        10u128
            .checked_pow(exp as u32)
            .and_then(|p| scaled.checked_mul(p))
            .ok_or_else(|| format!("quantity {s:?} is too large"))?
    } else {
        let p = 10u128
            .checked_pow((-exp) as u32)
            .ok_or_else(|| format!("invalid quantity {s:?}"))?;
        scaled.div_ceil(p)
    };
    u64::try_from(value).map_err(|_| format!("quantity {s:?} is too large"))
}

/// The `runtimeConfig` for `plugin`: only the capability arguments it declares.
pub fn runtime_config_for(plugin: &PluginConf, caps: &Map<String, Value>) -> Map<String, Value> {
    plugin
        .capabilities
        .iter()
        .filter_map(|c| caps.get(c).map(|v| (c.clone(), v.clone())))
        .collect()
}

/// The stdin of one plugin of list `name`: its conf with `name`, `cniVersion` set, `prevResult`
/// when given and `runtimeConfig` when any declared capability has arguments (libcni's
/// `buildOneConfig`).
pub fn plugin_stdin(
    name: &str,
    cni_version: &str,
    plugin: &PluginConf,
    prev_result: Option<&Value>,
    caps: Option<&Map<String, Value>>,
) -> Vec<u8> {
    let mut conf = plugin.raw.clone();
    conf.insert("name".into(), Value::String(name.to_string()));
    conf.insert("cniVersion".into(), Value::String(cni_version.to_string()));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    if let Some(caps) = caps {
        let rc = runtime_config_for(plugin, caps);
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
    }
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::network::{DnsConfig, PortMapping, Protocol};

    #[test]
    fn quantities() {
        let ok: &[(&str, u64)] = &[
            ("10M", 10_000_000),
            ("10Mi", 10 * 1024 * 1024),
            ("1k", 1000),
            ("1Ki", 1024),
            ("1.5M", 1_500_000),
            ("1.5Gi", 1_610_612_736),
            ("100", 100),
            ("1e6", 1_000_000),
            ("2E3", 2000),
            ("500m", 1),
            ("1500m", 2),
            ("0.1k", 100),
            ("+5G", 5_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("007", 7),
        ];
        for (s, want) in ok {
            assert_eq!(parse_quantity(s), Ok(*want), "{s}");
        }
        for bad in [
            "",
            "M",
            "-1M",
            "10X",
            "1.2.3",
            "1ki",
            "10 M",
            "1e",
            "99999999999E",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    fn pod() -> PodNetwork {
        PodNetwork {
            name: "web".into(),
            namespace: "default".into(),
            uid: "uid-1".into(),
            sandbox_id: "abc".into(),
            port_mappings: vec![
                PortMapping {
                    container_port: 80,
                    host_port: 8080,
                    protocol: Protocol::Tcp,
                    host_ip: String::new(),
                },
                PortMapping {
                    container_port: 53,
                    host_port: 5353,
                    protocol: Protocol::Udp,
                    host_ip: "127.0.0.1".into(),
                },
                PortMapping {
                    container_port: 9000,
                    host_port: 0,
                    protocol: Protocol::Tcp,
                    host_ip: String::new(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn cni_args_in_go_order_plus_uid() {
        let args = pod_cni_args(&pod());
        let keys: Vec<&str> = args.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "IgnoreUnknown",
                "K8S_POD_NAMESPACE",
                "K8S_POD_NAME",
                "K8S_POD_INFRA_CONTAINER_ID",
                "K8S_POD_UID"
            ]
        );
        assert_eq!(args[3].1, "abc");
    }

    #[test]
    fn capability_args_from_pod() {
        let mut p = pod();
        p.annotations.insert(INGRESS_BANDWIDTH.into(), "10M".into());
        p.dns = Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec![],
        });
        let caps = capability_args(&p, Some("10.1.0.0/24,fd00:1::/64")).unwrap();
        assert_eq!(
            caps["portMappings"],
            json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ])
        );
        assert_eq!(
            caps["bandwidth"],
            json!({"ingressRate": 10_000_000u64, "ingressBurst": 2147483647})
        );
        assert_eq!(
            caps["ipRanges"],
            json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]])
        );
        assert_eq!(caps["dns"]["servers"], json!(["10.96.0.10"]));
        let none = capability_args(&pod(), None).unwrap();
        assert!(none.get("ipRanges").is_none());
        assert!(none.get("bandwidth").is_none());
        assert!(none.get("dns").is_none());
    }

    #[test]
    fn bad_bandwidth_annotation_is_invalid_argument() {
        for v in ["lots", "10", "2E"] {
            let mut p = pod();
            p.annotations.insert(EGRESS_BANDWIDTH.into(), v.into());
            let err = capability_args(&p, None).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{v}: {err}");
            assert!(err.to_string().contains(EGRESS_BANDWIDTH));
        }
    }

    #[test]
    fn runtime_config_filtered_by_declared_capabilities() {
        let caps = capability_args(&pod(), Some("10.1.0.0/24")).unwrap();
        let plugin = |raw: Value| {
            let l = super::super::conf::NetworkConfigList::from_list_bytes(
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": [raw]})
                    .to_string()
                    .as_bytes(),
                "t",
            )
            .unwrap();
            l.plugins[0].clone()
        };
        let portmap = plugin(
            json!({"type": "portmap", "capabilities": {"portMappings": true, "ipRanges": false}}),
        );
        let stdin: Value = serde_json::from_slice(&plugin_stdin(
            "n",
            "1.0.0",
            &portmap,
            Some(&json!({"cniVersion": "1.0.0"})),
            Some(&caps),
        ))
        .unwrap();
        assert_eq!(stdin["name"], "n");
        assert_eq!(stdin["cniVersion"], "1.0.0");
        assert_eq!(stdin["prevResult"]["cniVersion"], "1.0.0");
        let rc = stdin["runtimeConfig"].as_object().unwrap();
        assert_eq!(rc.keys().collect::<Vec<_>>(), vec!["portMappings"]);
        let bridge = plugin(json!({"type": "bridge", "runtimeConfig": {"stale": 1}}));
        let stdin: Value =
            serde_json::from_slice(&plugin_stdin("n", "0.4.0", &bridge, None, Some(&caps)))
                .unwrap();
        assert_eq!(stdin["cniVersion"], "0.4.0");
        assert!(stdin.get("prevResult").is_none());
        // Nothing declared: the plugin's own keys are left alone, nothing injected.
        assert_eq!(stdin["runtimeConfig"], json!({"stale": 1}));
    }
}
